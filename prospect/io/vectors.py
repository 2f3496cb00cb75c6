"""Vector inputs (shapefile, GeoPackage, CSV with lon/lat) as lunar GeoDataFrames.

The same CRS rules as rasters (:func:`prospect.lunar.identify`): a lunar CRS is
recognised from any ``.prj`` WKT and mapped to its IAU_2015 code; an Earth CRS is
refused with a message naming the file and the override, because real lunar
catalogues do ship Earth ``.prj`` files (the HKPolyU crater tiles say GCS_WGS_1984
around lunar planetocentric degrees). ``crs_override`` (or the manifest's
``crs_override``) replaces the declared CRS for such files.

CSV tables carry planetocentric lon/lat in degrees; their longitudes are normalised
explicitly to -180..180 (``lon_convention``) and the source convention is recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from prospect import lunar
from prospect.errors import ConfigError, FormatError, InputNotFoundError
from prospect.io.manifests import Manifest, is_manifest_id, load_manifest

#: File suffix -> the vector format :func:`open_vector` reads it as.
VECTOR_SUFFIXES = {".csv": "csv", ".shp": "shapefile", ".gpkg": "gpkg", ".fgb": "flatgeobuf", ".geojson": "geojson"}
#: Manifest formats :func:`open_vector` reads.
VECTOR_FORMATS = frozenset(VECTOR_SUFFIXES.values())


def is_vector_source(source: str | Path) -> bool:
    """Whether ``source`` (a path or a data-manifest id) is a vector product :func:`open_vector` reads."""
    s = str(source)
    if is_manifest_id(s):
        return load_manifest(s).format in VECTOR_FORMATS
    return Path(s).suffix.lower() in VECTOR_SUFFIXES


_LON_NAMES = ("lon", "longitude", "center_lon", "lon (deg)", "long", "lon_e", "longitude_e")
_LAT_NAMES = ("lat", "latitude", "center_lat", "lat (deg)", "lat_n")


def _pick(columns: list[str], wanted: str | None, names: tuple[str, ...], role: str, src: str) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise ConfigError(f"{src}: no column {wanted!r} for {role} (columns: {columns})")
        return wanted
    lower = {c.lower().strip(): c for c in columns}
    for n in names:
        if n in lower:
            return lower[n]
    raise ConfigError(f"{src}: cannot tell which column holds {role}; name it (columns: {columns})")


def _read_csv(
    path: Path,
    manifest: Manifest | None,
    lon_column: str | None,
    lat_column: str | None,
    lon_convention: Literal["180", "360"],
) -> Any:
    import geopandas as gpd
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except Exception as exc:
        raise FormatError(f"{path}: not a readable CSV table ({str(exc).splitlines()[0]})") from None
    cols = list(df.columns)
    mcols = (manifest.get("columns") or {}) if manifest else {}
    lon_c = _pick(cols, lon_column or mcols.get("lon"), _LON_NAMES, "longitude", path.name)
    lat_c = _pick(cols, lat_column or mcols.get("lat"), _LAT_NAMES, "latitude", path.name)
    lon = pd.to_numeric(df[lon_c], errors="coerce").to_numpy(dtype="float64")
    lat = pd.to_numeric(df[lat_c], errors="coerce").to_numpy(dtype="float64")
    bad = ~np.isfinite(lon) | ~np.isfinite(lat) | (np.abs(lat) > 90) | (lon < -180) | (lon > 360)
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 2  # header is line 1
        raise FormatError(
            f"{path}: line {row}: longitude/latitude {df[lon_c].iloc[row - 2]!r}, "
            f"{df[lat_c].iloc[row - 2]!r} is not a position in degrees"
        )
    source_conv = "0-360" if (lon > 180).any() else "-180-180"
    norm = lunar.normalize_longitude(lon, lon_convention)
    df = df.assign(lon=norm, lat=lat)
    crs = lunar.lunar_crs(lunar.IAU_GEOGRAPHIC)
    gdf = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(norm, lat), crs=crs.to_pyproj())
    gdf.attrs["longitude_convention_source"] = source_conv
    gdf.attrs["crs_code"] = crs.code
    return gdf


def _read_ogr(paths: list[Path], crs_override: Any, layer: str | None) -> Any:
    import geopandas as gpd
    import pandas as pd
    import pyogrio

    frames = []
    crs_out: lunar.LunarCRS | None = None
    for p in paths:
        try:
            info = pyogrio.read_info(p, layer=layer)
            frame = gpd.read_file(p, layer=layer, engine="pyogrio")
        except Exception as exc:
            raise FormatError(f"{p}: not a readable vector file ({str(exc).splitlines()[0]})") from None
        declared = info.get("crs")
        prj = p.with_suffix(".prj")
        if declared is None and prj.exists():
            declared = prj.read_text(errors="replace")
        crs = lunar.identify(declared, source=str(p.name if not prj.exists() else prj.name), crs_override=crs_override)
        if crs_out is not None and crs.wkt != crs_out.wkt:
            frame = frame.set_crs(crs.to_pyproj(), allow_override=True).to_crs(crs_out.to_pyproj())
        crs_out = crs_out or crs
        frames.append(frame.set_crs(crs_out.to_pyproj(), allow_override=True))
    if crs_out is None:
        raise FormatError("no vector file to read")
    gdf = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=crs_out.to_pyproj())
    gdf.attrs["crs_code"] = crs_out.code
    return gdf


def open_vector(
    source: str | Path,
    *,
    crs_override: str | int | None = None,
    lon_column: str | None = None,
    lat_column: str | None = None,
    layer: str | None = None,
    lon_convention: Literal["180", "360"] = "180",
    strict: bool = False,
) -> Any:
    """Open a vector product (path or manifest id) as a GeoDataFrame with a lunar CRS.

    Shapefiles and GeoPackages keep their (lunar) CRS, identified to an IAU_2015 code;
    CSV tables become points on IAU_2015:30100. Manifests with ``open_all`` read every
    tile (same extension as ``open``) and concatenate them.
    """
    manifest: Manifest | None = None
    s = str(source)
    if isinstance(source, str) and is_manifest_id(s):
        from prospect.io.fetch import ensure_local

        manifest = load_manifest(s)
        local = ensure_local(manifest, strict=strict)
        ext = Path(manifest.open).suffix.lower()
        paths = (
            [local[f.name] for f in manifest.files if Path(f.name).suffix.lower() == ext]
            if manifest.get("open_all")
            else [local[manifest.open]]
        )
        crs_override = crs_override or manifest.get("crs_override")
        fmt = manifest.format
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise InputNotFoundError(f"{s}: no such file")
        paths = [path]
        suffix = path.suffix.lower()
        known = VECTOR_SUFFIXES.get(suffix)
        if known is None:
            raise FormatError(f"{path}: not a vector format prospect reads ({', '.join(VECTOR_SUFFIXES)})")
        fmt = known
    if fmt == "csv":
        gdf = _read_csv(paths[0], manifest, lon_column, lat_column, lon_convention)
    elif fmt in ("shapefile", "gpkg", "flatgeobuf", "geojson"):
        gdf = _read_ogr(paths, crs_override, layer)
    else:
        raise FormatError(f"{paths[0]}: manifest format {fmt!r} is not a vector format open_vector reads")
    gdf.attrs.update(
        source_files=[p.name for p in paths],
        manifest_id=manifest.id if manifest else None,
        crs_override=str(crs_override) if crs_override else None,
    )
    return gdf
