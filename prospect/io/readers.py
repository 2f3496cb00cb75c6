"""Raster product readers: any supported lunar product -> a lazy, georeferenced DataArray.

:func:`open_product` takes a path or a data-manifest id and returns a dask-backed
``float32`` :class:`xarray.DataArray` with dims ``(y, x)``, map coordinates at pixel
centres, NaN where the product has no data, the lunar CRS assigned (rioxarray
``spatial_ref``), and attrs naming the units, product, instrument and the sha256 of the
file it came from.

Formats:

- PDS3 with detached (``.LBL``) or attached labels, parsed by :mod:`prospect.io.pds3`
  (LOLA GDR global and polar; the Chang'e dialect GDAL cannot open). LOLA heights are
  ``DN * SCALING_FACTOR``; the label's OFFSET is the 1737.4 km reference radius and is
  never added (LOLA label note; ``docs/science.md`` section 1). Georeferencing comes
  from IMAGE_MAP_PROJECTION with MAP_SCALE in km or m per pixel.
- PDS3 labels describing a JPEG2000 file (COMPRESSED_FILE), and bare ``.JP2`` files
  whose detached label sits beside them: pixels through GDAL, scaling and
  georeferencing from the label.
- PDS4 (XML label), ISIS3 cubes, GeoTIFF/COG and JPEG2000 through GDAL (rasterio),
  with scale/offset, nodata and units from the file.

Simple-cylindrical products stay on their native equirectangular grid (IAU_2015:30115
for LOLA IMGs centred on 180 E, 30110 for the JP2 twins centred on 0); 1-D ``lon`` and
``lat`` coordinates give planetocentric degrees, with longitudes normalised explicitly
to ``lon_convention`` (default -180..180).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dask.array as da
import numpy as np
import rioxarray
import xarray as xr
from affine import Affine

from prospect import lunar
from prospect.errors import (
    CRSError,
    FormatError,
    InputNotFoundError,
    LabelError,
    UnitsError,
)
from prospect.io import pds3
from prospect.io.manifests import Manifest, is_manifest_id, load_manifest, manifest_for_file
from prospect.layers import normalise_units

DEFAULT_CHUNK = 2048

_ISIS_SPECIAL_FLOOR = -3.4028e38  # ISIS3 float special pixels (NULL, LRS, LIS, ...) lie below


def _chunks(chunks: Any) -> tuple[int, int] | str:
    if chunks is None:
        return (DEFAULT_CHUNK, DEFAULT_CHUNK)
    if chunks == "auto":
        return "auto"
    if isinstance(chunks, int):
        return (chunks, chunks)
    if isinstance(chunks, dict):
        return (int(chunks.get("y", DEFAULT_CHUNK)), int(chunks.get("x", DEFAULT_CHUNK)))
    if isinstance(chunks, (tuple, list)) and len(chunks) == 2:
        return (int(chunks[0]), int(chunks[1]))
    raise ValueError(f"chunks must be None, 'auto', an int, (y, x) or {{'y':..,'x':..}}, not {chunks!r}")


# --- PDS3 georeferencing -------------------------------------------------------------


def _map_scale_m(proj: pds3.Block, src: str) -> float:
    value = proj.real("MAP_SCALE", src, positive=True)
    unit = proj.unit("MAP_SCALE")
    if unit in ("km/pix", "km/pixel", "kilometers/pixel", "km/px"):
        return value * 1000.0
    if unit in ("m/pix", "m/pixel", "meters/pixel", "metres/pixel", "m/px", "meter/pixel"):
        return value
    if unit == "":
        # PDS3 default unit for MAP_SCALE is KM/PIXEL (PDS Standards Reference, Data Dictionary)
        return value * 1000.0
    raise UnitsError(f"{src}: MAP_SCALE unit <{unit}> is neither km/pixel nor m/pixel")


#: The largest relative disagreement between MAP_SCALE and the scale MAP_RESOLUTION implies
#: before a label is refused as contradicting itself (0.1 %).
SCALE_TOLERANCE = 1e-3


def pds3_georeference(
    label: pds3.Block, src: str, shape: tuple[int, int], *, crs_override: Any = None
) -> tuple[lunar.LunarCRS, Affine, dict[str, Any]]:
    """CRS and affine transform from a PDS3 IMAGE_MAP_PROJECTION object.

    PDS3 convention (DSMAP.CAT / DSMAP_POLAR.CAT): the centre of 1-based sample I, line J
    is at ``x = (I - SAMPLE_PROJECTION_OFFSET - 1) * MAP_SCALE``,
    ``y = -(J - LINE_PROJECTION_OFFSET - 1) * MAP_SCALE``. For simple cylindrical grids
    whose MAP_RESOLUTION (px/deg) is given, the exact scale ``2 pi R / 360 / res`` is used
    (LOLA IMG labels round MAP_SCALE to 7580.84 m, 0.2 px at the map edge); a MAP_SCALE
    that disagrees with MAP_RESOLUTION by more than 0.1 % (:data:`SCALE_TOLERANCE`) is a
    label that lies.

    Polar stereographic labels are held to the same rule at the pole, where the projection
    (``k = 1``) has true scale: MAP_RESOLUTION, pixels per degree of latitude at the pole
    (DSMAP_POLAR.CAT), implies ``2 pi R / 360 / res`` m/px. LOLA writes that resolution
    "approximate" (e.g. 1516 for 20 m/px, exactly 1516.17), so a MAP_RESOLUTION that is the
    exact value rounded to a whole number is accepted too; MAP_SCALE stays the scale used.
    Every number is read through :meth:`~prospect.io.pds3.Block.real`: a value of the wrong
    type or out of range is a :class:`LabelError` naming the file and the key.
    """
    proj = label.block("IMAGE_MAP_PROJECTION")
    if proj is None:
        for b in label.walk():
            if b.name == "IMAGE_MAP_PROJECTION":
                proj = b
                break
    if proj is None:
        raise LabelError(f"{src}: label has no IMAGE_MAP_PROJECTION: the product is not map-projected")
    ptype = proj.text("MAP_PROJECTION_TYPE", src).upper().replace("_", " ").strip()
    a_km = proj.real("A_AXIS_RADIUS", src, positive=True)
    radius_m = a_km * 1000.0 if proj.unit("A_AXIS_RADIUS") in ("km", "") else a_km
    center_lon = proj.real("CENTER_LONGITUDE", src, default=0.0, minimum=-360.0, maximum=360.0)
    center_lat = proj.real("CENTER_LATITUDE", src, default=0.0, minimum=-90.0, maximum=90.0)
    scale = _map_scale_m(proj, src)
    res_v = proj.real("MAP_RESOLUTION", src, default=None, positive=True)
    metres_per_degree = 2 * math.pi * radius_m / 360.0
    extra: dict[str, Any] = {}
    if ptype in ("SIMPLE CYLINDRICAL", "EQUIRECTANGULAR", "EQUIDISTANT"):
        if abs(center_lat) >= 90.0:
            raise LabelError(f"{src}: {ptype} with CENTER_LATITUDE {center_lat} (must lie between -90 and 90)")
        if res_v is not None:
            exact = metres_per_degree / res_v * math.cos(math.radians(center_lat))
            if abs(exact - scale) / exact > SCALE_TOLERANCE:
                raise LabelError(
                    f"{src}: MAP_SCALE {scale:.3f} m/px disagrees with MAP_RESOLUTION {res_v} px/deg "
                    f"({exact:.3f} m/px on the {radius_m / 1000:.1f} km sphere): the label contradicts itself"
                )
            scale = exact
        proj4 = (
            f"+proj=eqc +lat_ts={center_lat} +lat_0=0 +lon_0={center_lon} +x_0=0 +y_0=0 "
            f"+R={radius_m} +units=m +no_defs +type=crs"
        )
        extra["native_longitude_convention"] = _lon_convention(proj, src)
    elif ptype == "POLAR STEREOGRAPHIC":
        if abs(abs(center_lat) - 90) > 1e-9:
            raise LabelError(f"{src}: POLAR STEREOGRAPHIC with CENTER_LATITUDE {center_lat} (must be +-90)")
        if res_v is not None:
            _check_polar_resolution(src, scale, res_v, radius_m)
        proj4 = (
            f"+proj=stere +lat_0={center_lat} +lon_0={center_lon} +k=1 +x_0=0 +y_0=0 "
            f"+R={radius_m} +units=m +no_defs +type=crs"
        )
    else:
        raise FormatError(f"{src}: MAP_PROJECTION_TYPE {ptype!r} is not supported yet")
    crs = lunar.identify(proj4, source=src, crs_override=crs_override)
    line_off = proj.real("LINE_PROJECTION_OFFSET", src, minimum=-1e12, maximum=1e12)
    sample_off = proj.real("SAMPLE_PROJECTION_OFFSET", src, minimum=-1e12, maximum=1e12)
    transform = Affine(scale, 0.0, -(sample_off + 0.5) * scale, 0.0, -scale, (line_off + 0.5) * scale)
    return crs, transform, extra


def _check_polar_resolution(src: str, scale: float, res: float, radius_m: float) -> None:
    """Refuse a polar stereographic MAP_SCALE that contradicts MAP_RESOLUTION (see
    :func:`pds3_georeference`): the scale at the pole, where ``k = 1``
    (``lunar.polar_scale_factor(+-90) == 1``), is ``2 pi R / 360`` metres per degree of
    latitude over the pixels per degree."""
    metres_per_degree = 2 * math.pi * radius_m / 360.0 * float(lunar.polar_scale_factor(90.0))
    exact_res = metres_per_degree / scale
    exact_scale = metres_per_degree / res
    if abs(exact_scale - scale) / scale <= SCALE_TOLERANCE or abs(res - round(exact_res)) < 1e-9:
        return
    raise LabelError(
        f"{src}: MAP_SCALE {scale:.3f} m/px disagrees with MAP_RESOLUTION {res} px/deg ({exact_scale:.3f} m/px at "
        f"the pole of the {radius_m / 1000:.1f} km sphere; {scale:.3f} m/px would be {exact_res:.2f} px/deg): "
        "the label contradicts itself"
    )


def _lon_convention(proj: pds3.Block, src: str) -> str:
    try:
        w = proj.real("WESTERNMOST_LONGITUDE", src)
        e = proj.real("EASTERNMOST_LONGITUDE", src)
    except LabelError:
        return "unknown"
    return "0-360" if (w >= 0 and e > 180) else "-180-180"


# --- building the DataArray ----------------------------------------------------------


def _coords(transform: Affine, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    xs = transform.c + transform.a * (np.arange(shape[1]) + 0.5)
    ys = transform.f + transform.e * (np.arange(shape[0]) + 0.5)
    return xs, ys


def _nodata_marks(dtype: np.dtype, nodata: list[float]) -> tuple[Any, ...]:
    """The stored values that mean nodata, in the stored type (NaN is handled separately)."""
    marks: list[Any] = []
    for nd in nodata:
        if nd is None or (isinstance(nd, float) and math.isnan(nd)):
            continue  # NaN nodata is caught by the isfinite test
        if dtype.kind in "iu":
            if not math.isfinite(float(nd)):
                continue  # an infinite nodata value marks nothing in an integer image
            info = np.iinfo(dtype)
            if float(nd) != int(nd) or not info.min <= int(nd) <= info.max:
                continue  # a nodata value the integer type cannot hold marks nothing
            marks.append(dtype.type(int(nd)))
        else:
            marks.append(dtype.type(nd))
    return tuple(marks)


def _to_physical(raw: da.Array, *, scale: float, offset: float, nodata: list[float], isis: bool = False) -> da.Array:
    """Stored numbers to float32 physical values, NaN where the stored number is nodata.

    One task per chunk doing the conversion in place (``value = stored * scale + offset``),
    not a chain of dask element-wise operations: that chain made four full-size
    temporaries per chunk and doubled the cost of reading a DEM.
    """
    return da.map_blocks(
        _physical_block,
        raw,
        scale=float(scale),
        offset=float(offset),
        marks=_nodata_marks(raw.dtype, nodata),
        isis=isis,
        dtype=np.float32,
        meta=np.empty((0, 0), dtype=np.float32),
    )


class _Float32Image2D:
    """What dask's ``from_array`` asks of an array-like: a 2-D float32 image."""

    ndim = 2
    dtype = np.dtype("float32")


@dataclass(frozen=True)
class PhysicalWindowSource(_Float32Image2D):
    """Physical values of any window of a raw PDS3 image, read on demand.

    The array-like behind :func:`open_product`'s PDS3 arrays: ``source[rows, cols]``
    reads just that window from disk and converts it. Terrain stencils use it (through
    :func:`window_source`) to read each chunk together with its halo in one read, instead
    of computing the neighbouring chunks. Picklable (paths and numbers only).
    """

    raw: pds3.RawImageSource
    scale: float
    offset: float
    marks: tuple[Any, ...]

    @property
    def shape(self) -> tuple[int, int]:
        return self.raw.shape

    def __getitem__(self, key: Any) -> np.ndarray:
        return _physical_block(
            np.asarray(self.raw[key]), scale=self.scale, offset=self.offset, marks=self.marks, isis=False
        )


@dataclass(frozen=True)
class GDALWindowSource(_Float32Image2D):
    """Physical values of any window of one band of a GeoTIFF/COG, read on demand through GDAL.

    The GeoTIFF counterpart of :class:`PhysicalWindowSource` (same conversion, same
    values as the chunked array). Each read opens the file (about a millisecond), so it
    pickles and works from any thread or process.
    """

    path: str
    band: int
    shape: tuple[int, int]
    scale: float
    offset: float
    marks: tuple[Any, ...]

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        import rasterio
        from rasterio.windows import Window

        rows, cols = key
        r0, r1, _ = rows.indices(self.shape[0])
        c0, c1, _ = cols.indices(self.shape[1])
        with rasterio.open(self.path) as ds:
            raw = ds.read(self.band, window=Window(c0, r0, c1 - c0, r1 - r0))
        return _physical_block(raw, scale=self.scale, offset=self.offset, marks=self.marks, isis=False)


#: ``DataArray.encoding`` keys that tie an array to the window source it was read from
WINDOW_SOURCE_KEY, WINDOW_NAME_KEY = "prospect_window_source", "prospect_window_dask_name"


def window_source(arr: xr.DataArray) -> PhysicalWindowSource | GDALWindowSource | None:
    """The on-demand window reader behind ``arr``, if ``arr`` is still exactly what was read.

    ``None`` once anything (arithmetic, rechunking, selection) has changed the dask array,
    because the reader would no longer give the same values.
    """
    src = arr.encoding.get(WINDOW_SOURCE_KEY)
    if src is None or not isinstance(arr.data, da.Array) or arr.data.name != arr.encoding.get(WINDOW_NAME_KEY):
        return None
    return src


def _physical_block(raw: np.ndarray, *, scale: float, offset: float, marks: tuple[Any, ...], isis: bool) -> np.ndarray:
    values = raw.astype(np.float32)
    if scale != 1.0:
        values *= np.float32(scale)
    if offset != 0.0:
        values += np.float32(offset)
    for mark in marks:
        values[raw == mark] = np.nan
    if raw.dtype.kind == "f":
        bad = ~np.isfinite(raw)
        if isis:
            bad |= raw < _ISIS_SPECIAL_FLOOR
        values[bad] = np.nan
    return values


def _assemble(
    data: da.Array, crs: lunar.LunarCRS, transform: Affine, attrs: dict[str, Any], lon_convention: Literal["180", "360"]
) -> xr.DataArray:
    xs, ys = _coords(transform, data.shape)
    arr = xr.DataArray(data, dims=("y", "x"), coords={"y": ys, "x": xs}, name=attrs.get("product_id"))
    if crs.kind == "equirectangular":
        # lon depends on x only, lat on y only: 1-D coordinates on the native grid
        lon, _ = lunar.xy_to_lonlat(crs, xs, np.zeros_like(xs))
        _, lat = lunar.xy_to_lonlat(crs, np.zeros_like(ys), ys)
        arr = arr.assign_coords(lon=("x", lunar.normalize_longitude(lon, lon_convention)), lat=("y", np.asarray(lat)))
        attrs["longitude_convention"] = "-180-180" if lon_convention == "180" else "0-360"
    elif crs.kind == "geographic":
        arr = arr.assign_coords(lon=("x", lunar.normalize_longitude(xs, lon_convention)), lat=("y", ys))
        attrs["longitude_convention"] = "-180-180" if lon_convention == "180" else "0-360"
    arr = arr.rio.write_crs(crs.to_rasterio()).rio.write_transform(transform)
    attrs["crs"] = crs.code or crs.kind
    attrs["resolution_m"] = lunar.ground_resolution_m(crs, transform.a)
    arr.attrs.update(attrs)
    return arr


def sha256_of(path: Path) -> str:
    """The sha256 of a product file (hex), as recorded in ``source_sha256``."""
    from prospect.io.fetch import sha256_file

    return sha256_file(path)


def _base_attrs(path: Path, manifest: Manifest | None, fmt: str) -> dict[str, Any]:
    digest = sha256_of(path)
    if manifest is None:
        manifest = manifest_for_file(path, digest)
    attrs: dict[str, Any] = {
        "source_file": path.name,
        "source_path": str(path),
        "source_sha256": digest,
        "format": fmt,
    }
    if manifest is not None:
        attrs.update(
            manifest_id=manifest.id,
            product_id=manifest["product_id"],
            instrument=manifest["instrument"],
            mission=manifest["mission"],
            citation=" ".join(str(manifest["citation"]).split()),
            value_rule=" ".join(str(manifest["value_rule"]).split()),
        )
    return attrs


# --- format handlers -----------------------------------------------------------------


def _open_pds3(
    label_path: Path,
    manifest: Manifest | None,
    chunks: Any,
    crs_override: Any,
    lon_convention: Literal["180", "360"],
    allowed: dict[str, Path] | None = None,
) -> xr.DataArray:
    label = pds3.read_label(label_path)
    src = label_path.name
    compressed = next((b for b in label.walk() if b.name == "COMPRESSED_FILE"), None)
    if compressed is not None and str(compressed.get("ENCODING_TYPE", "")).upper().startswith("JP2"):
        jp2 = pds3.locate_data_file(label_path, compressed.require("FILE_NAME", src), "FILE_NAME", allowed=allowed)
        return _open_jp2_with_label(jp2, label, label_path, manifest, chunks, crs_override, lon_convention)
    layout = pds3.image_layout(label, label_path, allowed=allowed)
    image = layout.image
    shape = layout.source.shape
    crs, transform, extra = pds3_georeference(label, src, shape, crs_override=crs_override)
    scale, offset, attrs_rule = _pds3_value_rule(image, src, manifest, crs)
    nodata = _pds3_nodata(image, manifest)
    units = _units(image.get("UNIT"), manifest, src)
    physical = PhysicalWindowSource(
        layout.source, float(scale), float(offset), _nodata_marks(layout.source.dtype, nodata)
    )
    data = da.from_array(
        physical, chunks=_chunks(chunks), lock=False, asarray=True, name=False, meta=np.empty((0, 0), dtype=np.float32)
    )
    attrs = _base_attrs(layout.data_path, manifest, "PDS3")
    attrs.setdefault("product_id", str(label.get("PRODUCT_ID", label_path.stem)))
    attrs.setdefault("instrument", str(label.get("INSTRUMENT_ID", label.get("INSTRUMENT_NAME", "unknown"))))
    attrs.setdefault("mission", str(label.get("INSTRUMENT_HOST_NAME", label.get("SPACECRAFT_NAME", "unknown"))))
    attrs.update(attrs_rule, units=units, label_file=label_path.name, **extra)
    _check_manifest_shape(manifest, shape, src)
    arr = _assemble(data, crs, transform, attrs, lon_convention)
    arr.encoding.update({WINDOW_SOURCE_KEY: physical, WINDOW_NAME_KEY: arr.data.name})
    return arr


def _pds3_value_rule(
    image: pds3.Block, src: str, manifest: Manifest | None, crs: lunar.LunarCRS
) -> tuple[float, float, dict[str, Any]]:
    """Scale and offset of a PDS3 image; OFFSET equal to the body radius is never added.

    LOLA labels: ``HEIGHT = DN * SCALING_FACTOR``; ``PLANETARY_RADIUS = HEIGHT + OFFSET``
    where OFFSET is the reference radius (1737400). A generic scale/offset reader adds it
    and returns radii instead of heights (``docs/platform.md``).
    """
    sf = image.real("SCALING_FACTOR", src, default=1.0) or 1.0
    off = image.real("OFFSET", src, default=0.0)
    attrs: dict[str, Any] = {"scaling_factor": sf}
    if manifest is not None and "scale" in manifest.raw:
        if abs(manifest.scale - sf) > 1e-12 and "SCALING_FACTOR" in image:
            raise LabelError(f"{src}: label SCALING_FACTOR {sf} but manifest {manifest.id} says scale {manifest.scale}")
        sf = manifest.scale
    radius_like = any(abs(off - r) < 1000.0 for r in (lunar.MOON_RADIUS_M, lunar.LEGACY_MOON_RADIUS_M))
    if radius_like:
        attrs["reference_radius_m"] = off
        attrs["value_rule"] = attrs.get("value_rule") or (
            f"height = DN * {sf}; label OFFSET {off:.0f} m is the reference radius (radius = height + OFFSET), not added"
        )
        off = 0.0
    if manifest is not None and "offset" in manifest.raw:
        off = manifest.offset
    attrs.setdefault("value_rule", f"value = DN * {sf} + {off}")
    return sf, off, attrs


def _pds3_nodata(image: pds3.Block, manifest: Manifest | None) -> list[float]:
    values = []
    for key in ("MISSING_CONSTANT", "NULL", "CORE_NULL", "INVALID_CONSTANT"):
        v = image.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            values.append(float(v) if not isinstance(v, int) else v)
    if manifest is not None and manifest.nodata is not None:
        values.append(manifest.nodata)
    return values


def _units(label_unit: Any, manifest: Manifest | None, src: str) -> str:
    label_u = normalise_units(label_unit, src) if label_unit not in (None, "") else None
    if manifest is not None:
        man_u = manifest.units
        if label_u is not None and label_u != man_u and label_u not in ("1", "DN"):
            raise UnitsError(f"{src}: the file says units {label_u!r} but manifest {manifest.id} says {man_u!r}")
        return man_u
    if label_u is None:
        warnings.warn(f"{src}: no units in the file and no manifest: units recorded as 'unspecified'", stacklevel=3)
        return "unspecified"
    return label_u


def _check_manifest_shape(manifest: Manifest | None, shape: tuple[int, int], src: str) -> None:
    if manifest is not None and manifest.get("shape") and tuple(manifest["shape"]) != tuple(shape):
        raise LabelError(
            f"{src}: raster is {shape[0]} x {shape[1]} but manifest {manifest.id} says {manifest['shape']}"
        )


def _gdal_dask(path: Path, chunks: Any, band: int = 1) -> tuple[da.Array, Any]:

    try:
        rx = rioxarray.open_rasterio(
            path,
            chunks=dict(zip(("y", "x"), _chunks(chunks))) if _chunks(chunks) != "auto" else True,
            masked=False,
            mask_and_scale=False,
            lock=False,
            cache=False,
        )
    except Exception as exc:
        raise FormatError(f"{path}: GDAL cannot read this file ({str(exc).splitlines()[0]})") from None
    if not isinstance(rx, xr.DataArray):  # subdatasets (e.g. HDF, NetCDF) open as a Dataset or a list
        raise FormatError(f"{path}: holds several subdatasets; open one of them (GDAL subdataset name)")
    if "band" in rx.dims:
        if band > rx.sizes["band"]:
            raise FormatError(f"{path}: band {band} requested but the file has {rx.sizes['band']}")
        rx = rx.isel(band=band - 1)
    return rx.data, rx


def _open_jp2_with_label(
    jp2: Path,
    label: pds3.Block,
    label_path: Path,
    manifest: Manifest | None,
    chunks: Any,
    crs_override: Any,
    lon_convention: Literal["180", "360"],
) -> xr.DataArray:
    """A JPEG2000 file described by a PDS3 label: pixels from GDAL, meaning from the label."""
    import rasterio

    src = label_path.name
    try:
        with rasterio.open(jp2) as ds:
            shape = (ds.height, ds.width)
    except rasterio.errors.RasterioIOError as exc:
        raise FormatError(f"{jp2}: named by {src}, cannot be read as JPEG2000 ({str(exc).splitlines()[0]})") from None
    image = next((b for b in label.walk() if b.name == "IMAGE" and b.kind == "OBJECT"), None)
    compressed = next(b for b in label.walk() if b.name == "COMPRESSED_FILE")
    if (
        image is not None
        and (
            image.integer("LINES", src, default=shape[0]),
            image.integer("LINE_SAMPLES", src, default=shape[1]),
        )
        != shape
    ):
        raise LabelError(
            f"{src}: label says {image.get('LINES')} x {image.get('LINE_SAMPLES')} but {jp2.name} is "
            f"{shape[0]} x {shape[1]}"
        )
    rule_block = compressed if "SCALING_FACTOR" in compressed else (image or compressed)
    crs, transform, extra = pds3_georeference(label, src, shape, crs_override=crs_override)
    raw, _ = _gdal_dask(jp2, chunks)
    scale, offset, attrs_rule = _pds3_value_rule(rule_block, src, manifest, crs)
    units = _units(rule_block.get("UNIT"), manifest, src)
    data = _to_physical(raw, scale=scale, offset=offset, nodata=_pds3_nodata(rule_block, manifest))
    attrs = _base_attrs(jp2, manifest, "JPEG2000 (PDS3 label)")
    attrs.setdefault("product_id", str(label.get("PRODUCT_ID", jp2.stem)))
    attrs.setdefault("instrument", str(label.get("INSTRUMENT_ID", "unknown")))
    attrs.setdefault("mission", str(label.get("INSTRUMENT_HOST_NAME", "unknown")))
    attrs.update(attrs_rule, units=units, label_file=label_path.name, **extra)
    _check_manifest_shape(manifest, shape, src)
    return _assemble(data, crs, transform, attrs, lon_convention)


def _open_gdal(
    path: Path,
    manifest: Manifest | None,
    chunks: Any,
    crs_override: Any,
    lon_convention: Literal["180", "360"],
    fmt: str,
    band: int = 1,
) -> xr.DataArray:
    """GeoTIFF/COG, PDS4, ISIS3, JPEG2000 (no label): GDAL reads pixels, CRS, scale/offset, nodata."""
    import rasterio

    try:
        with rasterio.open(path) as ds:
            crs_in = ds.crs
            transform = ds.transform
            nodata = ds.nodatavals[band - 1]
            gdal_scale = ds.scales[band - 1]
            gdal_offset = ds.offsets[band - 1]
            unit = ds.units[band - 1] if ds.units else None
            tags = ds.tags(band)
            driver = ds.driver
            shape = (ds.height, ds.width)
    except rasterio.errors.RasterioIOError as exc:
        raise FormatError(f"{path}: cannot be opened as a raster ({str(exc).splitlines()[0]})") from None
    if transform.b != 0 or transform.d != 0:
        raise FormatError(f"{path}: rotated rasters are not supported")
    if crs_in is None and crs_override is None and manifest is not None:
        crs_override = manifest.get("crs_override")
    if crs_in is None and crs_override is None:
        raise CRSError(f"{path}: the file has no CRS; pass crs_override='IAU_2015:NNNNN' (CLI: --assume-crs)")
    crs = lunar.identify(
        crs_in.to_wkt() if crs_in is not None else None,
        source=str(path),
        crs_override=crs_override or (manifest.get("crs_override") if manifest else None),
    )
    raw, _ = _gdal_dask(path, chunks, band)
    scale, offset = float(gdal_scale or 1.0), float(gdal_offset or 0.0)
    if manifest is not None and "scale" in manifest.raw:
        scale = manifest.scale
    if manifest is not None and "offset" in manifest.raw:
        offset = manifest.offset
    unit = unit or tags.get("units") or tags.get("UNITS") or tags.get("unit")
    units = _units(unit, manifest, path.name)
    nd = [nodata] if nodata is not None else []
    if manifest is not None and manifest.nodata is not None:
        nd.append(manifest.nodata)
    data = _to_physical(raw, scale=scale, offset=offset, nodata=nd, isis=(driver == "ISIS3"))
    window = None
    if driver in ("GTiff", "COG"):
        window = GDALWindowSource(str(path), band, shape, float(scale), float(offset), _nodata_marks(raw.dtype, nd))
    attrs = _base_attrs(path, manifest, fmt or driver)
    attrs.setdefault("product_id", tags.get("PRODUCT_ID", path.stem).strip('"'))
    attrs.setdefault("instrument", tags.get("INSTRUMENT_ID", "unknown").strip('"'))
    attrs.update(units=units, scaling_factor=scale, value_offset=offset, gdal_driver=driver)
    attrs.setdefault("value_rule", f"value = stored * {scale} + {offset}")
    _check_manifest_shape(manifest, shape, path.name)
    arr = _assemble(data, crs, transform, attrs, lon_convention)
    if window is not None:
        arr.encoding.update({WINDOW_SOURCE_KEY: window, WINDOW_NAME_KEY: arr.data.name})
    return arr


# --- dispatch ------------------------------------------------------------------------

_VECTOR_FORMATS = {"shapefile", "gpkg", "csv", "lp-grs-table", "diviner-prp-table", "pds3-table"}


def _sibling_label_for(path: Path) -> Path | None:
    """A detached PDS3 label beside ``path`` whose pointer or FILE_NAME names it."""
    name = path.name.lower()
    for cand in sorted(path.parent.iterdir()):
        try:
            if cand.suffix.lower() != ".lbl" or not cand.is_file() or cand.stat().st_size > pds3.MAX_LABEL_BYTES:
                continue
            text = cand.read_text(errors="replace")
        except OSError:
            continue
        if re.search(r'(\^IMAGE|FILE_NAME)\s*=\s*\(?\s*"?' + re.escape(name) + r'"?', text, re.IGNORECASE):
            # prefer the label whose COMPRESSED_FILE names a JP2, or whose ^IMAGE names an IMG
            return cand
    return None


_PDS4_FILE_NAME = re.compile(r"<(?:[\w.-]+:)?file_name\s*>([^<]*)</(?:[\w.-]+:)?file_name\s*>")
_ISIS_POINTER = re.compile(r"^[ \t]*\^(\w+)[ \t]*=[ \t]*\(?[ \t]*\"?([^\"\s,)]+)", re.MULTILINE)


def check_label_pointers(path: Path, fmt: str, allowed: dict[str, Path] | None = None) -> None:
    """Refuse a PDS4 (``<file_name>``) or ISIS3 (``^Core = ...``) label whose data file lies
    outside the label's folder, before GDAL follows it.

    The same rule as PDS3 pointers (:func:`prospect.io.pds3.locate_data_file`): a relative
    name resolving, symlinks followed, to a regular file beside the label (or one of the
    product's manifest files). A PDS4 label larger than
    :data:`prospect.io.pds3.MAX_LABEL_BYTES` is refused.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(pds3.MAX_LABEL_BYTES)
    except OSError as exc:
        raise InputNotFoundError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    text = head.decode("latin-1")
    if fmt == "pds4":
        if size > pds3.MAX_LABEL_BYTES:
            raise LabelError(
                f"{path}: a PDS4 label of {size:,} bytes is larger than the {pds3.MAX_LABEL_BYTES:,}-byte limit "
                "(prospect.io.pds3.MAX_LABEL_BYTES)"
            )
        for m in _PDS4_FILE_NAME.finditer(text):
            pds3.locate_data_file(path, m.group(1).strip(), "file_name", allowed=allowed)
        return
    end = re.search(r"^[ \t]*End[ \t]*\r?$", text, re.MULTILINE)
    for m in _ISIS_POINTER.finditer(text[: end.end()] if end else text):
        name = m.group(2)
        if not re.fullmatch(r"[+-]?\d+", name):
            pds3.locate_data_file(path, name, f"^{m.group(1)}", allowed=allowed)


def sniff_format(path: Path) -> str:
    """The format of ``path`` from its first bytes and suffix: ``pds3``, ``isis3``, ``pds4``,
    ``geotiff``, ``jp2``, ``raw``, ``vector`` or ``unknown``."""
    suffix = path.suffix.lower()
    with open(path, "rb") as fh:
        head = fh.read(512)
    text = head.decode("latin-1")
    if re.match(r"\s*(PDS_VERSION_ID|ODL_VERSION_ID)", text):
        return "pds3"
    if "IsisCube" in text or suffix == ".cub":
        return "isis3"
    if suffix == ".xml" or text.lstrip().startswith("<?xml"):
        return "pds4"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "geotiff"
    if head[4:8] == b"jP  " or head[:4] == b"\xff\x4f\xff\x51" or suffix in (".jp2", ".j2k"):
        return "jp2"
    if suffix in (".img", ".dat", ".raw"):
        return "raw"
    if suffix in (".shp", ".gpkg", ".csv", ".fgb", ".geojson"):
        return "vector"
    return "unknown"


def resolve_source(source: str | Path, strict: bool = False) -> tuple[Path, Manifest | None]:
    """The local file of ``source`` (a path, or a data-manifest id fetched and verified by
    :func:`prospect.io.fetch.ensure_local`) and its manifest (None for a plain path).
    ``strict`` refuses manifest files without a published checksum."""
    path, manifest, _ = _resolve(source, strict)
    return path, manifest


def _resolve(source: str | Path, strict: bool) -> tuple[Path, Manifest | None, dict[str, Path]]:
    """:func:`resolve_source` and, for a manifest id, the local path of each of its files
    (the files a label's pointer may name besides those in the label's own folder)."""
    s = str(source)
    if isinstance(source, str) and is_manifest_id(s):
        from prospect.io.fetch import ensure_local

        manifest = load_manifest(s)
        paths = ensure_local(manifest, strict=strict)
        return paths[manifest.open], manifest, dict(paths)
    path = Path(source).expanduser()
    if not path.exists():
        hint = "" if any(c in s for c in "/\\.") else " (no data manifest has that id either)"
        raise InputNotFoundError(f"{s}: no such file{hint}")
    if path.is_dir():
        raise InputNotFoundError(f"{s}: is a directory, not a product file")
    return path, None, {}


def open_product(
    source: str | Path,
    *,
    chunks: Any = None,
    crs_override: str | int | None = None,
    strict: bool = False,
    lon_convention: Literal["180", "360"] = "180",
    band: int = 1,
) -> xr.DataArray:
    """Open a lunar raster product lazily.

    Parameters
    ----------
    source
        A path (``.LBL``/``.IMG`` PDS3, PDS4 ``.xml``, ISIS3 ``.cub``, GeoTIFF/COG,
        JPEG2000) or a data-manifest id (files located and verified by
        :func:`prospect.io.fetch.ensure_local`).
    chunks
        Dask chunks: ``None`` (2048 x 2048), ``"auto"``, an int, ``(y, x)`` or a dict.
    crs_override
        An IAU_2015 code for files whose declared CRS is known to be wrong.
    strict
        Refuse manifest files that have no published checksum.
    lon_convention
        ``"180"`` (-180..180) or ``"360"`` (0..360) for the ``lon`` coordinate of
        cylindrical products; the pixels stay in the product's native order.

    Returns a float32 DataArray (dims ``y, x``) with NaN for nodata, the lunar CRS, and
    attrs ``units``, ``product_id``, ``instrument``, ``source_sha256``, ``crs``, ...
    """
    if lon_convention not in ("180", "360"):
        raise ValueError("lon_convention must be '180' or '360'")
    path, manifest, allowed = _resolve(source, strict)
    if manifest is None:
        manifest = manifest_for_file(path, sha256_of(path))
    fmt = manifest.format if manifest is not None else sniff_format(path)
    if fmt in ("geotiff", "cog", "jp2") and sniff_format(path) == "pds3":
        fmt = "pds3"  # a manifest whose 'open' is the PDS3 label of a JP2/TIFF twin
    if fmt == "lp-grs-table":
        raise FormatError(
            f"{path}: is a binned lat/lon table ({fmt}), not a raster; read it with "
            "prospect.io.tables.read_binned_table (and rasterize it with "
            "prospect.resources.binned.rasterize_binned)"
        )
    if fmt in _VECTOR_FORMATS or fmt == "vector":
        raise FormatError(f"{path}: is a vector/table product ({fmt}); open it with prospect.io.vectors.open_vector")
    if fmt in ("pds3", "pds3-change"):
        if sniff_format(path) == "pds3":
            return _open_pds3(path, manifest, chunks, crs_override, lon_convention, allowed)
        fmt = "raw"
    if fmt == "raw":
        label = _sibling_label_for(path)
        if label is None:
            raise LabelError(
                f"{path}: missing label: a raw PDS3 image needs its detached .LBL beside it (none in "
                f"{path.parent} names {path.name}); fetch the label too"
            )
        return _open_pds3(label, manifest, chunks, crs_override, lon_convention, allowed)
    if fmt == "jp2":
        label = _sibling_label_for(path)
        if label is not None:
            lab = pds3.read_label(label)
            if any(b.name == "COMPRESSED_FILE" for b in lab.walk()):
                return _open_jp2_with_label(path, lab, label, manifest, chunks, crs_override, lon_convention)
        return _open_gdal(path, manifest, chunks, crs_override, lon_convention, "JPEG2000")
    if fmt in ("geotiff", "cog", "pds4", "isis3"):
        names = {"geotiff": "GeoTIFF", "cog": "COG", "pds4": "PDS4", "isis3": "ISIS3"}
        if fmt in ("pds4", "isis3"):
            check_label_pointers(path, fmt, allowed)
        return _open_gdal(path, manifest, chunks, crs_override, lon_convention, names[fmt])
    if path.suffix.lower() == ".lbl":
        pds3.read_label(path)  # raises the precise reason (binary, no PDS_VERSION_ID, ...)
    raise FormatError(
        f"{path}: unrecognised raster format; prospect reads PDS3 (.LBL/.IMG), PDS4 (.xml), ISIS3 (.cub), "
        "GeoTIFF/COG and JPEG2000"
    )


def describe(arr: xr.DataArray) -> dict[str, Any]:
    """Summary statistics of an opened product, computed chunk by chunk (``prospect info``)."""
    data = arr.data
    valid = da.isfinite(data)
    vmin, vmax, nvalid = da.compute(da.nanmin(data), da.nanmax(data), valid.sum())
    total = int(np.prod(arr.shape))
    tr = arr.rio.transform()
    return {
        "driver": arr.attrs.get("format"),
        "crs": arr.attrs.get("crs"),
        "width": int(arr.sizes["x"]),
        "height": int(arr.sizes["y"]),
        "resolution_m": float(arr.attrs["resolution_m"]),
        "pixel_size": [float(tr.a), float(-tr.e)],
        "bounds": [float(v) for v in arr.rio.bounds()],
        "units": arr.attrs.get("units"),
        "min": None if int(nvalid) == 0 else float(vmin),
        "max": None if int(nvalid) == 0 else float(vmax),
        "nodata_fraction": 1.0 - int(nvalid) / total,
        "sha256": arr.attrs.get("source_sha256"),
        "product_id": arr.attrs.get("product_id"),
        "instrument": arr.attrs.get("instrument"),
        "manifest_id": arr.attrs.get("manifest_id"),
        "source_file": arr.attrs.get("source_file"),
        "value_rule": arr.attrs.get("value_rule"),
    }
