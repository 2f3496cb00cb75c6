"""GeoPackages that QGIS opens with a valid lunar CRS and a default style per layer.

Two facts measured on QGIS 3.22 / PROJ 9.1 (``docs/platform.md``, "GeoPackage + lunar
CRS"): a GeoPackage whose ``gpkg_spatial_ref_sys`` row carries the IAU_2015 definition
with ``AUTHORITY["IAU",...]`` nodes (what GDAL writes from the venv, GPKG 1.4) opens
with an *unknown, invalid* CRS; GPKG ``VERSION=1.3`` with a WKT1 definition stripped of
its AUTHORITY nodes (:meth:`prospect.lunar.LunarCRS.to_wkt1_without_authority`) opens
valid, as ``+proj=stere +lat_0=-90 ... +R=1737400``. QGIS loads the row of the
``layer_styles`` table marked ``useAsDefault`` when it opens a layer (the table layout
is QGIS's own, ``QgsOgrProviderUtils::saveStyle``).

Timestamps (``gpkg_contents.last_change``, ``layer_styles.update_time``) are fixed
(:data:`FIXED_TIMESTAMP`) so that a rerun writes a byte-identical file; the run's real
time is in ``run.json``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from prospect import lunar
from prospect.errors import FormatError
from prospect.io.writers import atomic_write

#: GeoPackage version QGIS 3.22 reads lunar CRSs from (docs/platform.md).
GPKG_VERSION = "1.3"
#: ``gpkg_contents.last_change`` and ``layer_styles.update_time`` of every layer written.
FIXED_TIMESTAMP = "2000-01-01T00:00:00.000Z"
#: Name of the geometry column (GDAL's GPKG default), recorded in ``layer_styles``.
GEOMETRY_COLUMN = "geom"


@contextlib.contextmanager
def _gdal_options(**options: str) -> Iterator[None]:
    """Set GDAL config options for pyogrio's GDAL during a block, then restore them."""
    import pyogrio

    old = {k: pyogrio.get_gdal_config_option(k) for k in options}
    pyogrio.set_gdal_config_options(options)
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options(old)


def _layer_styles_frame(styles: Mapping[str, str], descriptions: Mapping[str, str]) -> Any:
    import pandas as pd

    names = list(styles)
    return pd.DataFrame(
        {
            "f_table_catalog": [""] * len(names),
            "f_table_schema": [""] * len(names),
            "f_table_name": names,
            "f_geometry_column": [GEOMETRY_COLUMN] * len(names),
            "styleName": names,
            "styleQML": [styles[n] for n in names],
            "styleSLD": [""] * len(names),
            "useAsDefault": [True] * len(names),
            "description": [descriptions.get(n, "") for n in names],
            "owner": ["prospect"] * len(names),
            "ui": [""] * len(names),
            "update_time": pd.to_datetime([FIXED_TIMESTAMP] * len(names)),
        }
    )


def write_gpkg(
    path: str | os.PathLike[str],
    layers: Mapping[str, Any],
    styles: Mapping[str, str] | None = None,
    *,
    crs: lunar.LunarCRS | None = None,
    descriptions: Mapping[str, str] | None = None,
) -> Path:
    """Write GeoDataFrames as the layers of one GeoPackage QGIS 3.22 opens without a fix-up.

    Every layer is reprojected to ``crs`` (default: the first layer's CRS, which must be
    lunar) and written with the authority-free WKT1 of that CRS into a GPKG 1.3 file;
    ``styles`` maps layer names to QML documents stored as each layer's default style
    in ``layer_styles``. Atomic: the file appears complete or not at all.
    """
    import pyogrio

    if not layers:
        raise ValueError("write_gpkg needs at least one layer")
    first = next(iter(layers.values()))
    target = crs or lunar.identify(first.crs, source=f"layer {next(iter(layers))!r}")
    target_pyproj = target.to_pyproj()
    wkt1 = target.to_wkt1_without_authority()
    unknown = set(styles or {}) - set(layers)
    if unknown:
        raise ValueError(f"styles for layers that are not written: {sorted(unknown)}")
    final = Path(path)
    with atomic_write(final) as tmp:
        staging = tmp.with_name(tmp.name + ".gpkg")  # GDAL picks the driver from the extension
        try:
            with _gdal_options(OGR_CURRENT_DATE=FIXED_TIMESTAMP):
                for name, gdf in layers.items():
                    if gdf.crs is None:
                        raise FormatError(f"{final}: layer {name!r} has no CRS")
                    source = lunar.identify(gdf.crs, source=f"{final} layer {name!r}")  # refuses Earth CRSs
                    # Same lunar CRS: no transform, which would move coordinates by an ulp per rewrite
                    # (the authority-free WKT1 reads back as an equivalent but different PROJ pipeline).
                    same = source.code is not None and source.code == target.code
                    out = (gdf if same else gdf.to_crs(target_pyproj)).set_crs(wkt1, allow_override=True)
                    pyogrio.write_dataframe(
                        out,
                        staging,
                        layer=name,
                        driver="GPKG",
                        dataset_options={"VERSION": GPKG_VERSION},
                        layer_options={"GEOMETRY_NAME": GEOMETRY_COLUMN},
                    )
                if styles:
                    pyogrio.write_dataframe(
                        _layer_styles_frame(styles, descriptions or {}),
                        staging,
                        layer="layer_styles",
                        driver="GPKG",
                        layer_options={"FID": "id"},
                    )
            os.replace(staging, tmp)
        finally:  # also SQLite's sidecars, left by a write interrupted mid-transaction
            for leftover in (staging, *(staging.with_name(staging.name + s) for s in ("-journal", "-wal", "-shm"))):
                leftover.unlink(missing_ok=True)
    return final


def read_styles(path: str | os.PathLike[str]) -> dict[str, str]:
    """The default QML style of each layer of a GeoPackage (``layer_styles``), by layer name."""
    import pyogrio

    if "layer_styles" not in {name for name, _ in pyogrio.list_layers(path)}:
        return {}
    df = pyogrio.read_dataframe(path, layer="layer_styles", read_geometry=False)
    df = df[df["useAsDefault"].astype(bool)]
    return dict(zip(df["f_table_name"], df["styleQML"]))
