"""Resource maps: water-ice favourability and stability, helium-3 concentration and inventory.

Pure functions on xarray objects on an :class:`~prospect.grid.AnalysisGrid`; every
coefficient comes from :mod:`prospect.config` (``ice.yaml``, ``he3.yaml``) with its
unit and source. These modules compute; they do not read or write files (each stage's
file I/O lives in :mod:`prospect.pipeline`).
"""
