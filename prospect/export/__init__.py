"""Deliverables of a run: COG maps with QGIS styles, a GeoPackage, a QGIS project, the
site-ranking report and a STAC record (``prospect export`` / ``prospect report``)."""
