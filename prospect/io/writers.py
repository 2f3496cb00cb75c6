"""Writers at the edge of the pipeline: atomic files, LOLA-style PDS3 products, GeoTIFFs.

Everything here writes through :func:`atomic_write`: a file appears complete under its
final name or not at all (temp file in the same directory, ``fsync``, ``os.replace``).

PDS3 (``write_pds3_lola``): a raw LSB int16 IMG plus a detached ``.LBL`` shaped like a
real LOLA GDR label (``/work/shared/data/lola_ldem4/LDEM_4.LBL``; polar geometry from
DSMAP_POLAR.CAT, ``docs/science.md`` section 1). Pixel ``(I, J)`` (1-based sample,
line) has its centre at map ``x = (I - SAMPLE_PROJECTION_OFFSET - 1) * MAP_SCALE``,
``y = -(J - LINE_PROJECTION_OFFSET - 1) * MAP_SCALE``; GDAL's PDS driver reads that as
the geotransform ``(-(s_off + 0.5) * scale, scale, 0, (l_off + 0.5) * scale, 0, -scale)``
in metres, also for SIMPLE CYLINDRICAL labels (equirectangular metres, not degrees).

GeoTIFF (``write_geotiff``): tiled, deflate-compressed, with the lunar CRS, the unit in
the band's ``units`` tag and GDAL band unit, NaN encoded as an explicit nodata value.

Streamed GeoTIFF / COG (``stream_geotiff``): a dask-backed raster computed and written
one window at a time (tiled ZSTD, floating-point predictor), so rasters larger than
memory stream from reader to file; ``make bench`` measures its peak memory.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from prospect.errors import CRSError, OutputPathError
from prospect.lunar import MOON_RADIUS_M, LunarCRS, polar_stereographic_latitude

__all__ = [
    "LOLA_GDR_DATA_SET_ID",
    "STREAM_CREATION_OPTIONS",
    "TiledGeoTIFFs",
    "atomic_write",
    "connected_client",
    "pds3_lola_label",
    "stream_geotiff",
    "window_groups",
    "window_scheduler",
    "write_geotiff",
    "write_pds3_lola",
]

#: DATA_SET_ID of the LOLA gridded data records (real LOLA GDR labels).
LOLA_GDR_DATA_SET_ID = "LRO-L-LOLA-4-GDR-V1.0"
#: LOLA heights are stored as DN with ``HEIGHT_m = DN * 0.5`` (docs/science.md section 1).
LOLA_SCALING_FACTOR = 0.5
_PDS3_EOL = "\r\n"  # real LOLA labels use CRLF
_INT16_MIN, _INT16_MAX = -32768, 32767


# --- atomic files -------------------------------------------------------------------


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it into place atomically.

    The caller writes the temp file (with ``open``, rasterio, ``ndarray.tofile``, ...).
    On normal exit the file is ``fsync``-ed and ``os.replace``-d onto ``path`` (and the
    directory is ``fsync``-ed where the OS allows it); on an exception the temp file
    (and any GDAL ``.aux.xml`` sidecar of it) is removed and ``path`` is untouched.
    The temp file is created with mode ``0o666`` minus the umask, like a plain ``open``.
    A ``path`` that is a folder, or a folder that cannot be written in, is an
    :class:`~prospect.errors.OutputPathError` before anything is written.
    """
    final = Path(path)
    directory = final.parent if str(final.parent) else Path(".")
    if final.is_dir():
        raise OutputPathError(f"{final}: is a folder, not a file")
    tmp = directory / f".{final.name}.{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except OSError as exc:
        raise OutputPathError(f"{final}: cannot write in {directory} ({exc.strerror or exc})") from None
    os.close(fd)
    sidecar = Path(f"{tmp}.aux.xml")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            sidecar.unlink()
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- PDS3 (LOLA GDR style) ------------------------------------------------------------


def _num(value: float, decimals: int | None = None) -> str:
    """A number as a label writes it: integral values without a fraction, others shortest-exact.

    With ``decimals`` the fixed-point form is used when it represents ``value`` exactly
    (``0.020`` for 20 m in km), so labels look like LOLA's and GDAL reads the same double.
    """
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"cannot write non-finite number {value!r} into a PDS3 label")
    if decimals is not None:
        fixed = f"{value:.{decimals}f}"
        if float(fixed) == value:
            return fixed
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _rounded(value: float, decimals: int) -> str:
    """Informational numbers (latitudes, pix/deg): fixed decimals, trailing zeros trimmed."""
    text = f"{float(value):.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _pds_value(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return _num(float(value))
    text = str(value)
    if '"' in text:
        raise ValueError(f"PDS3 string values cannot contain double quotes: {text!r}")
    return f'"{text}"'


_RESERVED_KEYS = {
    "PDS_VERSION_ID", "DATA_SET_ID", "PRODUCT_ID", "TARGET_NAME", "OBJECT", "END_OBJECT",
    "END", "^IMAGE", "FILE_NAME", "RECORD_TYPE", "FILE_RECORDS", "RECORD_BYTES",
}  # fmt: skip


def _projection_geometry(
    crs: LunarCRS, lines: int, samples: int, scale_m: float, line_off: float, sample_off: float
) -> dict[str, Any]:
    """Projection type, centre and the lat/lon bounds a label states for this grid."""
    # Pixel-edge extent in map metres (PDS3 convention, module docstring).
    x_min = -(sample_off + 0.5) * scale_m
    x_max = x_min + samples * scale_m
    y_max = (line_off + 0.5) * scale_m
    y_min = y_max - lines * scale_m
    if crs.is_polar:
        south = crs.kind == "polar_south"
        pole_inside = x_min <= 0.0 <= x_max and y_min <= 0.0 <= y_max
        # distance from the pole to the nearest / farthest point of the grid boundary
        nearest_x = min(max(0.0, x_min), x_max)
        nearest_y = min(max(0.0, y_min), y_max)
        rho_near_outside = math.hypot(nearest_x, nearest_y)
        rho_inscribed = min(-x_min, x_max, -y_min, y_max)
        rho_far = max(math.hypot(x, y) for x in (x_min, x_max) for y in (y_min, y_max))
        if pole_inside:
            # LOLA convention: the bound is the circle fully covered (LDEM_875S_20M: -87.4994)
            rho_lo, rho_hi = 0.0, rho_inscribed
            west, east = -180.0, 180.0
        else:
            rho_lo, rho_hi = rho_near_outside, rho_far
            corners = [(x, y) for x in (x_min, x_max) for y in (y_min, y_max)]
            lons = [math.degrees(math.atan2(x, y if south else -y)) + crs.lon_0 for x, y in corners]
            west, east = min(lons), max(lons)
        lat_a = float(polar_stereographic_latitude(rho_lo, south=south, radius_m=crs.radius_m))
        lat_b = float(polar_stereographic_latitude(rho_hi, south=south, radius_m=crs.radius_m))
        return {
            "type": "POLAR STEREOGRAPHIC",
            "catalog": "DSMAP_POLAR.CAT",
            "center_lat": -90.0 if south else 90.0,
            "center_lon": crs.lon_0,
            "min_lat": min(lat_a, lat_b),
            "max_lat": max(lat_a, lat_b),
            "west": west,
            "east": east,
        }
    if crs.kind in ("geographic", "equirectangular"):
        metres_per_degree = 2.0 * math.pi * crs.radius_m / 360.0
        x_scale = metres_per_degree * math.cos(math.radians(crs.lat_ts))
        return {
            "type": "SIMPLE CYLINDRICAL",
            "catalog": "DSMAP.CAT",
            "center_lat": crs.lat_ts,
            "center_lon": crs.lon_0,
            "min_lat": y_min / metres_per_degree,
            "max_lat": y_max / metres_per_degree,
            "west": crs.lon_0 + x_min / x_scale,
            "east": crs.lon_0 + x_max / x_scale,
        }
    raise CRSError(
        f"cannot write a PDS3 map projection for a {crs.kind} CRS ({crs}); use a polar, "
        "equirectangular or geographic IAU_2015 CRS"
    )


def pds3_lola_label(
    *,
    lines: int,
    samples: int,
    file_name: str,
    crs: LunarCRS,
    map_scale_m: float,
    scale_units: Literal["km/pix", "m/pix"] = "km/pix",
    product_id: str,
    minimum: int,
    maximum: int,
    scaling_factor: float = LOLA_SCALING_FACTOR,
    offset: float = MOON_RADIUS_M,
    line_projection_offset: float | None = None,
    sample_projection_offset: float | None = None,
    extra_keys: Mapping[str, Any] | None = None,
) -> str:
    """The text of a detached LOLA GDR-style PDS3 label (CRLF lines) for an int16 IMG.

    Pure function: :func:`write_pds3_lola` writes it; tests parse it directly for
    geometries too big to write (a 7584 x 7584 LDEM_875S_20M-like label).
    Offsets default to a centred grid, ``N/2 - 0.5`` (3791.5 for N = 7584). ``MAP_SCALE``
    is written ``0.020 <km/pix>`` or ``20 <m/pix>``; ``MAP_RESOLUTION`` is pixels per
    degree of latitude at the projection's true-scale point; latitude bounds of a polar
    grid that contains the pole are the pole and the inscribed circle (LOLA's
    convention), otherwise the range covered by the grid.
    """
    if lines <= 0 or samples <= 0:
        raise ValueError(f"a PDS3 image needs positive LINES and LINE_SAMPLES, got {lines} x {samples}")
    if not (map_scale_m > 0 and math.isfinite(map_scale_m)):
        raise ValueError(f"map_scale_m must be a positive number of metres, got {map_scale_m!r}")
    if scale_units not in ("km/pix", "m/pix"):
        raise ValueError(f"scale_units must be 'km/pix' or 'm/pix', not {scale_units!r}")
    if not product_id or '"' in product_id:
        raise ValueError(f"invalid PRODUCT_ID {product_id!r}")
    l_off = lines / 2.0 - 0.5 if line_projection_offset is None else float(line_projection_offset)
    s_off = samples / 2.0 - 0.5 if sample_projection_offset is None else float(sample_projection_offset)
    geo = _projection_geometry(crs, lines, samples, map_scale_m, l_off, s_off)
    scale_text = (
        f"{_num(map_scale_m / 1000.0, 3)} <km/pix>" if scale_units == "km/pix" else f"{_num(map_scale_m)} <m/pix>"
    )
    radius_km = _num(crs.radius_m / 1000.0)
    metres_per_degree = 2.0 * math.pi * crs.radius_m / 360.0

    out: list[str] = []

    def kv(key: str, value: str, indent: int = 0, width: int = 26) -> None:
        out.append(f"{' ' * indent}{key:<{width - indent}}= {value}")

    kv("PDS_VERSION_ID", '"PDS3"')
    out.append("")
    out.append("/*** GENERAL DATA DESCRIPTION PARAMETERS ***/")
    kv("DATA_SET_ID", f'"{LOLA_GDR_DATA_SET_ID}"')
    kv("PRODUCT_ID", f'"{product_id}"')
    kv("INSTRUMENT_HOST_NAME", '"LUNAR RECONNAISSANCE ORBITER"')
    kv("INSTRUMENT_NAME", '"LUNAR ORBITER LASER ALTIMETER"')
    kv("INSTRUMENT_ID", '"LOLA"')
    kv("TARGET_NAME", "MOON")
    for key, value in (extra_keys or {}).items():
        if not key or not all(c.isupper() or c.isdigit() or c in "_^" for c in key):
            raise ValueError(f"PDS3 keyword {key!r} must be upper case letters, digits and '_'")
        if key in _RESERVED_KEYS:
            raise ValueError(f"extra_keys cannot override the writer's own keyword {key}")
        kv(key, _pds_value(value))
    out.append("")
    kv("OBJECT", "UNCOMPRESSED_FILE")
    kv("FILE_NAME", f'"{file_name}"')
    kv("RECORD_TYPE", "FIXED_LENGTH")
    kv("FILE_RECORDS", str(lines))
    kv("RECORD_BYTES", str(samples * 2))
    kv("^IMAGE", f'"{file_name}"')
    out.append("")
    kv("OBJECT", "IMAGE", 2)
    kv("NAME", "HEIGHT", 4)
    kv("DESCRIPTION", '"Each sample represents height relative to a reference radius (OFFSET)."', 4)
    kv("LINES", str(lines), 4)
    kv("LINE_SAMPLES", str(samples), 4)
    kv("MAXIMUM", str(int(maximum)), 4)
    kv("MINIMUM", str(int(minimum)), 4)
    kv("SAMPLE_TYPE", "LSB_INTEGER", 4)
    kv("SAMPLE_BITS", "16", 4)
    kv("UNIT", "METER", 4)
    kv("SCALING_FACTOR", _num(scaling_factor), 4)
    kv("OFFSET", _num(offset), 4)
    out.append("")
    out.append("/* NOTE:                                                                   */")
    out.append("/* Conversion from Digital Number to HEIGHT, i.e. elevation in meters, is: */")
    out.append("/* HEIGHT = (DN * SCALING_FACTOR).                                         */")
    out.append("/* The conversion from Digital Number to PLANETARY_RADIUS in meters is:    */")
    out.append("/* PLANETARY_RADIUS = (DN * SCALING_FACTOR) + OFFSET                       */")
    out.append("/* where OFFSET is the radius of a reference sphere.                       */")
    out.append("")
    kv("END_OBJECT", "IMAGE", 2)
    kv("END_OBJECT", "UNCOMPRESSED_FILE")
    out.append("")
    kv("OBJECT", "IMAGE_MAP_PROJECTION")
    w = 30
    kv("^DATA_SET_MAP_PROJECTION", f'"{geo["catalog"]}"', 1, w)
    kv("MAP_PROJECTION_TYPE", f'"{geo["type"]}"', 1, w)
    kv("MAP_RESOLUTION", f"{_rounded(metres_per_degree / map_scale_m, 4)} <pix/deg>", 1, w)
    kv("A_AXIS_RADIUS", f"{radius_km} <km>", 1, w)
    kv("B_AXIS_RADIUS", f"{radius_km} <km>", 1, w)
    kv("C_AXIS_RADIUS", f"{radius_km} <km>", 1, w)
    kv("FIRST_STANDARD_PARALLEL", "'N/A'", 1, w)
    kv("SECOND_STANDARD_PARALLEL", "'N/A'", 1, w)
    kv("POSITIVE_LONGITUDE_DIRECTION", '"EAST"', 1, w)
    kv("CENTER_LATITUDE", f"{_num(geo['center_lat'])} <deg>", 1, w)
    kv("CENTER_LONGITUDE", f"{_num(geo['center_lon'])} <deg>", 1, w)
    kv("REFERENCE_LATITUDE", "'N/A'", 1, w)
    kv("REFERENCE_LONGITUDE", "'N/A'", 1, w)
    kv("LINE_FIRST_PIXEL", "1", 1, w)
    kv("LINE_LAST_PIXEL", str(lines), 1, w)
    kv("SAMPLE_FIRST_PIXEL", "1", 1, w)
    kv("SAMPLE_LAST_PIXEL", str(samples), 1, w)
    kv("MAP_PROJECTION_ROTATION", "0.0", 1, w)
    kv("MAP_SCALE", scale_text, 1, w)
    kv("MAXIMUM_LATITUDE", f"{_rounded(geo['max_lat'], 4)} <deg>", 1, w)
    kv("MINIMUM_LATITUDE", f"{_rounded(geo['min_lat'], 4)} <deg>", 1, w)
    kv("WESTERNMOST_LONGITUDE", f"{_rounded(geo['west'], 4)} <deg>", 1, w)
    kv("EASTERNMOST_LONGITUDE", f"{_rounded(geo['east'], 4)} <deg>", 1, w)
    kv("LINE_PROJECTION_OFFSET", f"{_num(l_off)} <pix>", 1, w)
    kv("SAMPLE_PROJECTION_OFFSET", f"{_num(s_off)} <pix>", 1, w)
    kv("COORDINATE_SYSTEM_TYPE", '"BODY-FIXED ROTATING"', 1, w)
    kv("COORDINATE_SYSTEM_NAME", '"MEAN EARTH/POLAR AXIS OF DE421"', 1, w)
    kv("END_OBJECT", "IMAGE_MAP_PROJECTION")
    out.append("")
    out.append("END")
    return _PDS3_EOL.join(out) + _PDS3_EOL


def _label_path(img_path: Path) -> Path:
    suffix = ".LBL" if img_path.suffix.isupper() or not img_path.suffix else ".lbl"
    return img_path.with_suffix(suffix)


def write_pds3_lola(
    dn: np.ndarray,
    img_path: str | os.PathLike[str],
    *,
    crs: LunarCRS,
    map_scale_m: float,
    scale_units: Literal["km/pix", "m/pix"] = "km/pix",
    product_id: str,
    scaling_factor: float = LOLA_SCALING_FACTOR,
    offset: float = MOON_RADIUS_M,
    line_projection_offset: float | None = None,
    sample_projection_offset: float | None = None,
    extra_keys: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``dn`` as a raw LSB int16 IMG with a detached LOLA GDR-style ``.LBL``; return the label path.

    ``dn`` is the stored number (LOLA: ``HEIGHT_m = DN * SCALING_FACTOR``; ``OFFSET`` is the
    reference radius, 1737.4 km from :mod:`prospect.lunar`, never added to get height).
    ``map_scale_m`` is the pixel size in metres (for geographic grids: degrees per pixel
    times metres per degree). Offsets default to a centred grid (``N/2 - 0.5``). The label
    goes next to the IMG with the same stem (``.LBL`` for an upper-case suffix, else
    ``.lbl``); open the label, not the IMG, with GDAL. Both files are written atomically,
    the IMG first.
    """
    arr = np.asarray(dn)
    if arr.ndim != 2:
        raise ValueError(f"a PDS3 image is 2-D (lines, samples), got shape {arr.shape}")
    if arr.dtype != np.int16:
        raise TypeError(f"LOLA IMGs hold int16 DN; got {arr.dtype} (convert with np.round(h / 0.5).astype('int16'))")
    img = Path(img_path)
    if img.suffix.lower() == ".lbl":
        raise ValueError(f"{img}: give the IMG path; the label is written next to it with a .LBL suffix")
    lbl = _label_path(img)
    lines, samples = arr.shape
    text = pds3_lola_label(
        lines=lines,
        samples=samples,
        file_name=img.name,
        crs=crs,
        map_scale_m=map_scale_m,
        scale_units=scale_units,
        product_id=product_id,
        minimum=int(arr.min()),
        maximum=int(arr.max()),
        scaling_factor=scaling_factor,
        offset=offset,
        line_projection_offset=line_projection_offset,
        sample_projection_offset=sample_projection_offset,
        extra_keys=extra_keys,
    )
    # label outer, image inner: the IMG is in place before its label appears
    with atomic_write(lbl) as tmp_lbl, atomic_write(img) as tmp_img:
        with open(tmp_img, "wb") as f:
            np.ascontiguousarray(arr, dtype="<i2").tofile(f)
        with open(tmp_lbl, "w", encoding="ascii", newline="") as f:
            f.write(text)
    return lbl


# --- GeoTIFF --------------------------------------------------------------------------


def _block(n: int) -> int:
    return min(256, (n // 16) * 16)


def write_geotiff(
    da: Any,
    path: str | os.PathLike[str],
    *,
    crs: LunarCRS,
    transform: Any,
    nodata: float | int | None = -32768.0,
    units: str,
    tags: Mapping[str, Any] | None = None,
    dtype: Any = None,
) -> Path:
    """Write a 2-D (``y, x``) or 3-D (``band, y, x``) DataArray as a tiled, deflated GeoTIFF.

    NaN becomes ``nodata`` on disk (the explicit encoded value; NaN inside, a number on
    disk). ``units`` goes into each band's ``units`` tag and GDAL band unit; ``tags`` are
    written as dataset tags. ``transform`` is the :class:`affine.Affine` of pixel corners.
    Atomic: the file appears complete or not at all.
    """
    import rasterio

    values = np.asarray(getattr(da, "values", da))
    if values.ndim == 2:
        values = values[np.newaxis]
    if values.ndim != 3:
        raise ValueError(f"write_geotiff takes a 2-D (y, x) or 3-D (band, y, x) array, got shape {values.shape}")
    out_dtype = np.dtype(dtype) if dtype is not None else values.dtype
    if out_dtype == np.float16 or out_dtype == np.bool_:
        out_dtype = np.dtype("float32") if out_dtype == np.float16 else np.dtype("uint8")
    if nodata is not None and np.issubdtype(values.dtype, np.floating):
        values = np.where(np.isnan(values), nodata, values)
    if np.issubdtype(out_dtype, np.integer) and np.issubdtype(values.dtype, np.floating):
        values = np.round(values)
    if nodata is not None and np.issubdtype(out_dtype, np.integer):
        info = np.iinfo(out_dtype)
        if not info.min <= nodata <= info.max or nodata != int(nodata):
            raise ValueError(f"nodata {nodata!r} is not representable as {out_dtype.name}; pass a nodata value that is")
    values = values.astype(out_dtype, copy=False)
    count, height, width = values.shape
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": out_dtype.name,
        "crs": crs.to_rasterio(),
        "transform": transform,
        "compress": "deflate",
        "nodata": nodata,
    }
    if _block(width) >= 16 and _block(height) >= 16:
        profile.update(tiled=True, blockxsize=_block(width), blockysize=_block(height))
    if np.issubdtype(out_dtype, np.floating):
        profile["predictor"] = 3 if out_dtype.itemsize in (4, 8) else 1
    else:
        profile["predictor"] = 2
    name = getattr(da, "name", None)
    final = Path(path)
    with atomic_write(final) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(values)
        if tags:
            dst.update_tags(**{str(k): str(v) for k, v in tags.items()})
        for band in range(1, count + 1):
            dst.update_tags(band, units=units)
            dst.set_band_unit(band, units)
            if name is not None:
                dst.set_band_description(band, str(name))
    return final


# --- streamed GeoTIFF / COG ------------------------------------------------------------

#: GDAL block cache while streaming [MB]: bounded so peak memory does not grow with the raster
STREAM_GDAL_CACHE_MB = 128
# rasterio.Env hands GDAL_CACHEMAX to GDALSetCacheMax64 as BYTES (128 would be 128 bytes): always pass MB * 2**20.

#: GeoTIFF creation options of streamed rasters. ZSTD level 1 with the floating-point
#: predictor compresses slope as well as DEFLATE level 6 (and ZSTD 3) at ~4x the speed (measured in
#: the issue 3 note); QGIS >= 3.22 / GDAL >= 3.6 read it. ``make bench`` gives gdaldem
#: the same options so the comparison is like for like.
STREAM_CREATION_OPTIONS: dict[str, str] = {
    "TILED": "YES",
    "BLOCKXSIZE": "512",
    "BLOCKYSIZE": "512",
    "COMPRESS": "ZSTD",
    "ZSTD_LEVEL": "1",
    "PREDICTOR": "3",
    "NUM_THREADS": "ALL_CPUS",
    "BIGTIFF": "IF_SAFER",
}


#: side of the square window a stream computes at once [pixels]. Peak memory is about
#: three windows (one computing, one queued, one being compressed) plus GDAL's cache.
#: Stencils on arrays read by open_product read their own halos (no recomputation);
#: on other arrays a window recomputes the chunks bordering it.
STREAM_WINDOW_PX = 2048


def window_groups(chunks: tuple[int, ...], target: int) -> list[tuple[int, int]]:
    """Consecutive chunks grouped into spans of at most ``target`` pixels (at least one chunk)."""
    spans: list[tuple[int, int]] = []
    start = pos = 0
    for c in chunks:
        if pos > start and pos + c - start > target:
            spans.append((start, pos))
            start = pos
        pos += c
    spans.append((start, pos))
    return spans


def connected_client() -> Any:
    """The connected Dask cluster client (``prospect run --scheduler``, ``prospect illumination
    --scheduler``, or ``DASK_SCHEDULER_ADDRESS``: :func:`prospect.pipeline.runner.connect_dask`),
    or None."""
    import sys

    if "distributed" in sys.modules:  # a client can only exist once distributed is imported
        from distributed import default_client

        try:
            return default_client()
        except ValueError:
            pass
    return None


def window_scheduler() -> Any:
    """The dask scheduler that computes a streamed window: the active Dask cluster client
    when one is connected (:func:`connected_client`), else local threads.

    Either way the window comes back to this process, which writes it: the open file
    never leaves it. A callable scheduler skips dask's 0.2 s probe for a cluster.
    """
    import dask.threaded

    client = connected_client()
    return dask.threaded.get if client is None else client


def _stream_windows(data: Any, write: Any, window_px: int) -> None:
    """Compute ``data`` window by window (row-major) and hand each to ``write(r0, c0, block)``.

    Why not ``dask.array.store`` over the whole array: with stencil graphs (every chunk
    needs its 8 neighbours) the threaded scheduler reads ahead and peak memory grew with
    the raster (603 MB at 7584^2, 841 MB at 15168^2, measured). Here one window is
    computed while the previous one is written by a separate thread (a queue of one), so
    at most two windows are in memory. The open file lives in this process; the chunks
    are computed by :func:`window_scheduler` (local threads, or the connected cluster).
    """
    import queue
    import threading

    pending: queue.Queue = queue.Queue(maxsize=1)
    failure: list[BaseException] = []

    def writer() -> None:
        while True:
            item = pending.get()
            if item is None:
                return
            if failure:
                continue  # drain after an error
            try:
                write(*item)
            except BaseException as exc:  # re-raised in the caller's thread
                failure.append(exc)

    thread = threading.Thread(target=writer, name="prospect-writer", daemon=True)
    thread.start()
    scheduler = window_scheduler()
    try:
        for r0, r1 in window_groups(data.chunks[0], window_px):
            for c0, c1 in window_groups(data.chunks[1], window_px):
                if failure:
                    break
                block = data[r0:r1, c0:c1].compute(scheduler=scheduler)
                pending.put((r0, c0, block))
    finally:
        pending.put(None)
        thread.join()
    if failure:
        raise failure[0]


def _stream_profile(
    crs: LunarCRS, transform: Any, shape: tuple[int, int], nodata: float, dtype: str = "float32"
) -> dict[str, Any]:
    """rasterio profile of one band with :data:`STREAM_CREATION_OPTIONS` (integer bands: predictor 2)."""
    profile = {
        "driver": "GTiff",
        "width": shape[1],
        "height": shape[0],
        "count": 1,
        "dtype": dtype,
        "crs": crs.to_rasterio(),
        "transform": transform,
        "nodata": nodata,
        **{k.lower(): v for k, v in STREAM_CREATION_OPTIONS.items()},
    }
    if not np.issubdtype(np.dtype(dtype), np.floating):
        profile["predictor"] = "2"  # the floating-point predictor applies to float bands only
    return profile


def _to_cog(staging: Path, dest: Path, *, categorical: bool = False) -> None:
    """Rewrite a tiled GeoTIFF as a Cloud Optimized GeoTIFF with overviews (nearest for classes)."""
    from rasterio.shutil import copy as rio_copy

    rio_copy(
        staging,
        dest,
        driver="COG",
        compress="ZSTD",
        level="1",
        predictor="YES",
        num_threads="ALL_CPUS",
        blocksize="512",
        overview_resampling="NEAREST" if categorical else "AVERAGE",
        bigtiff="IF_SAFER",
    )


def _write_window(dst: Any, row0: int, col0: int, block: np.ndarray, nodata: float) -> None:
    """Write a 2-D block at ``(row0, col0)`` of band 1: floats as float32 with NaN as ``nodata``,
    integer classes as they are."""
    from rasterio.windows import Window

    values = np.asarray(block)
    if np.issubdtype(values.dtype, np.floating):
        values = values.astype("float32", copy=False)
        values = np.where(np.isnan(values), np.float32(nodata), values)
    dst.write(values, 1, window=Window(col0, row0, values.shape[1], values.shape[0]))


class _Progress:
    """Pixels written so far, on stderr: a rich bar on a terminal; in logs, a line each time
    the share written passes another 10 %, with the share and the count written so far (one
    line when a single block passes several steps, e.g. a raster written in one piece)."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        import sys
        import threading

        self.total, self.done, self.label = max(total, 1), 0, label
        self.enabled = enabled
        self._lock = threading.Lock()
        self._bar = None
        self._next_pct = 10
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            self._task = self._bar.add_task(label, total=self.total)
            self._bar.start()

    def advance(self, n: int) -> None:
        if not self.enabled:
            return
        import sys

        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(self._task, completed=self.done)
                return
            pct = 100 * self.done // self.total
            if pct >= self._next_pct:
                print(f"{self.label}: {pct}% ({self.done:,}/{self.total:,} pixels)", file=sys.stderr)
                self._next_pct = (pct // 10 + 1) * 10

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def stream_geotiff(
    arr: Any,
    path: str | os.PathLike[str],
    *,
    crs: LunarCRS,
    transform: Any,
    units: str,
    nodata: float = -9999.0,
    tags: Mapping[str, Any] | None = None,
    cog: bool = False,
    progress: bool = False,
    label: str = "writing",
    window_px: int = STREAM_WINDOW_PX,
    dtype: str = "float32",
    categorical: bool = False,
    on_block: Callable[[np.ndarray], None] | None = None,
) -> Path:
    """Write a 2-D (``y, x``) float DataArray, chunk by chunk, as a tiled compressed GeoTIFF.

    A dask-backed ``arr`` is never held whole: it is computed one window of about
    ``window_px`` squared pixels at a time (whole chunks, dask threads on all cores) while a
    writer thread compresses and writes the previous window, with the GDAL block cache
    capped at ``STREAM_GDAL_CACHE_MB``; so peak memory depends on the window, not on the
    raster. NaN becomes ``nodata``. Chunks that are multiples of 512 write whole tiles;
    the creation options are :data:`STREAM_CREATION_OPTIONS`.

    ``cog=True`` then rewrites the tiled file as a Cloud Optimized GeoTIFF with overviews
    (GDAL's COG driver, which also streams). Atomic either way: the file appears
    complete or not at all. ``progress`` reports on stderr. ``dtype`` is the band type on
    disk (an integer type rounds, with NaN as ``nodata``); ``categorical`` builds COG
    overviews by nearest neighbour (classes) instead of averaging. ``on_block`` is called with
    each computed block (float, NaN for nodata) before it is written, e.g. to tally valid pixels.
    """
    import dask.array as dska
    import rasterio

    data = getattr(arr, "data", arr)
    if data.ndim != 2:
        raise ValueError(f"stream_geotiff writes one 2-D band, got shape {data.shape}")
    height, width = data.shape
    profile = _stream_profile(crs, transform, (height, width), nodata, dtype)
    meter = _Progress(height * width, label, progress)
    final = Path(path)
    integer = not np.issubdtype(np.dtype(dtype), np.floating)

    def put(dst: Any, r0: int, c0: int, block: np.ndarray) -> None:
        if on_block is not None:
            on_block(block)
        if integer:
            values = np.asarray(block, dtype="float64")
            block = np.where(np.isnan(values), nodata, np.round(values)).astype(dtype)
        _write_window(dst, r0, c0, block, nodata)
        meter.advance(block.size)

    def write_into(dst: Any) -> None:
        if isinstance(data, dska.Array):
            _stream_windows(data, lambda r0, c0, block: put(dst, r0, c0, block), window_px)
        else:
            put(dst, 0, 0, np.asarray(data, dtype="float32"))
        if tags:
            dst.update_tags(**{str(k): str(v) for k, v in tags.items()})
        dst.update_tags(1, units=units)
        dst.set_band_unit(1, units)

    try:
        with rasterio.Env(GDAL_CACHEMAX=STREAM_GDAL_CACHE_MB * 2**20), atomic_write(final) as tmp:
            if not cog:
                with rasterio.open(tmp, "w", **profile) as dst:
                    write_into(dst)
            else:
                staging = tmp.with_name(tmp.name + ".tiled.tif")
                try:
                    with rasterio.open(staging, "w", **profile) as dst:
                        write_into(dst)
                    _to_cog(staging, tmp, categorical=categorical)
                finally:
                    staging.unlink(missing_ok=True)
    finally:
        meter.close()
    return final


class TiledGeoTIFFs:
    """Several single-band GeoTIFFs on one grid, written window by window, published together.

    Use as a context manager: :meth:`write` puts a window of one layer into its
    temporary file (:data:`STREAM_CREATION_OPTIONS`, NaN -> ``nodata``); on a clean exit
    every file is closed (converted to a COG with ``cog=True``), ``fsync``-ed and moved
    onto its final name; on an exception the temporary files are removed and no final
    file appears. Layers are float32 unless ``dtypes`` says otherwise (e.g. ``uint8``
    classes); ``nodata`` is one value or one per layer. Memory is GDAL's capped block
    cache plus the caller's window.
    """

    def __init__(
        self,
        paths: Mapping[str, str | os.PathLike[str]],
        *,
        crs: LunarCRS,
        transform: Any,
        shape: tuple[int, int],
        units: Mapping[str, str],
        tags: Mapping[str, Mapping[str, Any]] | None = None,
        nodata: float | Mapping[str, float] = -9999.0,
        dtypes: Mapping[str, str] | None = None,
        cog: bool = False,
    ) -> None:
        self.paths = {k: Path(v) for k, v in paths.items()}
        self.crs, self.transform, self.shape = crs, transform, shape
        self.units = dict(units)
        self.nodata = {k: float(nodata[k] if isinstance(nodata, Mapping) else nodata) for k in self.paths}
        self.dtypes = {k: str((dtypes or {}).get(k, "float32")) for k in self.paths}
        self.cog = cog
        self.tags = {k: dict(v) for k, v in (tags or {}).items()}
        self._stack: contextlib.ExitStack | None = None
        self._dst: dict[str, Any] = {}

    def __enter__(self) -> TiledGeoTIFFs:
        import rasterio

        stack = contextlib.ExitStack()
        try:
            stack.enter_context(rasterio.Env(GDAL_CACHEMAX=STREAM_GDAL_CACHE_MB * 2**20))
            for name, path in self.paths.items():
                tmp = stack.enter_context(atomic_write(path))
                target = tmp
                if self.cog:
                    target = tmp.with_name(tmp.name + ".tiled.tif")
                    # runs after the dataset closes and before atomic_write publishes (LIFO)
                    stack.push(self._cog_exit(target, tmp, not np.issubdtype(np.dtype(self.dtypes[name]), np.floating)))
                profile = _stream_profile(self.crs, self.transform, self.shape, self.nodata[name], self.dtypes[name])
                self._dst[name] = stack.enter_context(rasterio.open(target, "w", **profile))
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    @staticmethod
    def _cog_exit(staging: Path, dest: Path, categorical: bool) -> Any:
        def finish(exc_type, exc, tb) -> bool:
            try:
                if exc_type is None:
                    _to_cog(staging, dest, categorical=categorical)
            finally:
                staging.unlink(missing_ok=True)
            return False

        return finish

    def set_tags(self, name: str, tags: Mapping[str, Any]) -> None:
        """Dataset tags of one layer, written when the files are published."""
        self.tags[name] = dict(tags)

    def write(self, name: str, row0: int, col0: int, block: np.ndarray) -> None:
        _write_window(self._dst[name], row0, col0, block, self.nodata[name])

    def __exit__(self, exc_type, exc, tb) -> bool:
        assert self._stack is not None
        if exc_type is None:
            for name, dst in self._dst.items():
                if self.tags.get(name):
                    dst.update_tags(**{str(k): str(v) for k, v in self.tags[name].items()})
                dst.update_tags(1, units=self.units[name])
                dst.set_band_unit(1, self.units[name])
                dst.set_band_description(1, name)
        # datasets close before their atomic_write contexts publish them (LIFO)
        return bool(self._stack.__exit__(exc_type, exc, tb))
