"""prospect: an open lunar resource-prospecting pipeline.

Data flows one way: manifests and readers (:mod:`prospect.io`) -> analysis grid
(:mod:`prospect.grid`) -> terrain -> illumination -> resources -> sites -> exports.
:mod:`prospect.lunar` is the only module that knows the Moon.
"""

__version__ = "0.1.0"
