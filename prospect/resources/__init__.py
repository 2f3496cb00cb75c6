"""Resource maps: water-ice favourability and stability, helium-3 concentration and inventory.

Pure functions on xarray objects on an :class:`~prospect.grid.AnalysisGrid`; every
coefficient comes from :mod:`prospect.config` (``ice.yaml``, ``he3.yaml``) with its
unit and source. Files are read and written only by the ``write_*`` / ``run_*`` edges.
"""
