"""Binned tables (Lunar Prospector GRS/NS) as area-weighted rasters on any analysis grid.

:func:`rasterize_binned` puts a :class:`~prospect.io.tables.BinnedTable` (e.g. LP GRS Ti
and Al wt% in 5 deg quasi-equal-area cells, Prettyman et al. 2006, JGR 111, E12007; FeO
wt% in 0.5 deg cells, Lawrence et al. 2002, JGR 107(E12), 5130) on an
:class:`~prospect.grid.AnalysisGrid`. Each output pixel is the **area-weighted mean of
the table cells it overlaps**: ``integral of value dA over the pixel / pixel area`` on
the lunar sphere. So a pixel inside one cell holds that cell's value, and the
area-weighted mean of a global raster (weights :meth:`AnalysisGrid.cell_area_m2`)
equals the table's own area-weighted mean: the resampling conserves the inventory.

**Geographic and equirectangular grids: exact.** A pixel is a lon/lat rectangle
(equirectangular x and y are linear in lon and lat, :func:`prospect.grid.lonlat_edges`).
The table's cells come in latitude bands; within band ``k`` the value depends on
longitude only, so ``F_k(lon) = integral of value d(lon)`` from the band's start is
piecewise linear (cumulative sums at the cell edges), extended periodically
(``F_k(lon + 360) = F_k(lon) + F_k(one turn)``) so pixels that cross +-180 or use
0..360 longitudes need no special case. With ``w_k = sin(min(top, band top)) -
sin(max(bottom, band bottom))`` the sin-latitude overlap of the pixel's rows with band
``k`` (proportional to area on the sphere), the pixel's mean is::

    sum_k w_k (F_k(lon1) - F_k(lon0)) / sum_k w_k (lon1 - lon0)

exact up to float64 rounding. A pixel inside one cell takes the cell's value itself.
Rows beyond the poles of a cylindrical grid count only their part on the sphere; a row
entirely beyond a pole is NaN.

**Polar stereographic grids: sub-sampled.** Each pixel is sampled at ``s x s`` points
(the centres of an ``s x s`` split of the pixel), each point takes the value of the cell
containing it (:meth:`BinnedTable.cell_index`) and is weighted by the area element
``1/k^2`` (``k = 2 / (1 + sin|lat|)``, :func:`prospect.lunar.polar_scale_factor`): the
midpoint rule for ``integral of value dA / integral of dA``. It is exact in the limit
``s -> infinity``; a pixel whose points all fall in one cell gets that cell's value
exactly; in a pixel that a cell edge crosses, the area fraction on each side is off by
at most about ``1/(2s)``, so the value by at most ``|value step| / (2 s)`` per edge
crossing it (1/8 of the step at the default minimum s = 4). By default ``s`` is 4 times
the ratio of the pixel size to the smallest cell height on the ground (at least 4, at
most 64); ``supersample`` overrides it and the attrs record it.

The output is lazy: one dask task per chunk (``chunks`` as for
:meth:`AnalysisGrid.template`), float32, with attrs ``units``, ``quantity``,
``long_name``, ``product_id``, ``source_sha256``, ``manifest_id``, ``citation`` and
``resampling``.
"""

from __future__ import annotations

import math
import threading
import warnings
from typing import Any

import dask.array as da
import dask.base
import numpy as np
import xarray as xr
from dask.highlevelgraph import HighLevelGraph
from dask.typing import Key

from prospect import lunar
from prospect.errors import GridError
from prospect.grid import AnalysisGrid, chunk_spans, lonlat_edges, normalise_chunks
from prospect.io.tables import BinnedTable, CellIndex

#: Default sub-samples per smallest cell height (see the module docstring).
SAMPLES_PER_CELL = 4
#: Bounds of the automatic sub-sampling factor ``s`` (per axis).
MIN_SUPERSAMPLE, MAX_SUPERSAMPLE = 4, 64
#: ``resampling`` attr on geographic / equirectangular grids.
EXACT_RESAMPLING = "area-weighted (exact on geographic grids)"

_local = threading.local()


def _sin_diff(a_deg: np.ndarray, b_deg: np.ndarray) -> np.ndarray:
    """``sin(a) - sin(b)`` without cancellation: ``2 cos((a+b)/2) sin((a-b)/2)``."""
    a, b = np.radians(a_deg), np.radians(b_deg)
    return 2.0 * np.cos((a + b) / 2.0) * np.sin((a - b) / 2.0)


def _exact_block(idx: CellIndex, lon_edges: np.ndarray, lat_edges: np.ndarray) -> np.ndarray:
    """Area-weighted means of the lon/lat pixels between the given edges (lat decreasing).

    ``lon_edges`` (ncols + 1, increasing, any convention), ``lat_edges`` (nrows + 1).
    """
    top = np.clip(lat_edges[:-1], -90.0, 90.0)
    bottom = np.clip(lat_edges[1:], -90.0, 90.0)
    nrows, ncols = top.size, lon_edges.size - 1
    out = np.full((nrows, ncols), np.nan, dtype="float64")
    blat = idx.band_lat
    bands = np.flatnonzero((blat[1:] > bottom.min()) & (blat[:-1] < top.max()))
    if bands.size == 0:
        return out
    # w[r, k]: sin-latitude overlap of pixel row r with band k (proportional to area)
    lo = np.maximum(bottom[:, None], blat[bands][None, :])
    hi = np.minimum(top[:, None], blat[bands + 1][None, :])
    w = np.where(hi > lo, _sin_diff(hi, lo), 0.0)
    # m[k, c]: mean over column c's longitudes within band k
    kk = np.broadcast_to(bands[:, None], (bands.size, ncols + 1))
    lon = np.broadcast_to(lon_edges[None, :], kk.shape)
    f = idx.integral(kk, lon)
    dlon = np.diff(lon_edges)
    m = np.diff(f, axis=1) / dlon[None, :]
    first = idx.position(kk[:, :-1], lon[:, :-1])
    last = idx.position(kk[:, 1:], lon[:, 1:], from_west=True)
    single = (first == last) & (dlon[None, :] <= idx.width[first])  # not once round the band and back
    m = np.where(single, idx.value[first], m)
    # sparse rows: each pixel row overlaps few bands; weighted sum over them
    nz = w > 0.0
    wsum = w.sum(axis=1)
    per_row = nz.sum(axis=1)
    width = int(per_row.max())
    slots = np.argsort(~nz, axis=1, kind="stable")[:, :width]
    acc = np.zeros((nrows, ncols), dtype="float64")
    for j in range(width):
        kj = slots[:, j]
        acc += w[np.arange(nrows), kj][:, None] * m[kj, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(wsum[:, None] > 0.0, acc / wsum[:, None], np.nan)
    one = per_row == 1
    if one.any():
        out[one] = m[slots[one, 0], :]  # the row lies inside one band: that band's mean, exactly
    return out


def _exact_chunk(idx: CellIndex, grid: AnalysisGrid, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    lon, lat = lonlat_edges(grid, r0, r1, c0, c1)
    return _exact_block(idx, lon, lat).astype("float32")


def _transformer(grid: AnalysisGrid):
    """A per-thread pyproj transformer grid CRS -> lunar lon/lat (Transformers are not thread-safe)."""
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    key = grid.crs.wkt
    if key not in cache:
        geo = lunar.lunar_crs(lunar.IAU_GEOGRAPHIC)
        if abs(grid.crs.radius_m - geo.radius_m) > 1.0:
            geo = lunar.geographic_of(grid.crs)
        cache[key] = lunar.transformer(grid.crs, geo)
    return cache[key]


def _polar_lonlat(grid: AnalysisGrid, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lon/lat [deg] of polar stereographic map points.

    For the IAU_2015:30130 / 30135 grids (k0 = 1, lon_0 = 0, no false origin) in closed
    form, Snyder (1987) eqs. 20-14, 20-16, 21-30..21-33: ``lat = -+(90 - 2 atan(rho / 2R))``,
    ``lon = atan2(x, +-y)`` (south: +y), as :func:`prospect.lunar.polar_stereographic_latitude`;
    other polar stereographic CRSs through pyproj.
    """
    crs = grid.crs
    if crs.code is not None:
        south = crs.kind == "polar_south"
        rho = np.hypot(x, y)
        lat = lunar.polar_stereographic_latitude(rho, south=south, radius_m=crs.radius_m)
        lon = np.degrees(np.arctan2(x, y if south else -y))
        return lon, lat
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lon, lat = _transformer(grid).transform(x, y)
    return np.asarray(lon, dtype="float64"), np.asarray(lat, dtype="float64")


def _supersampled_chunk(
    table: BinnedTable, grid: AnalysisGrid, s: int, r0: int, r1: int, c0: int, c1: int
) -> np.ndarray:
    """Area-weighted means by ``s x s`` sub-points per pixel weighted by ``1/k^2`` (polar stereographic)."""
    t = grid.transform
    cols = np.arange(c0, c1, dtype="float64")
    rows = np.arange(r0, r1, dtype="float64")
    shape = (r1 - r0, c1 - c0)
    num = np.zeros(shape, dtype="float64")
    den = np.zeros(shape, dtype="float64")
    first = np.full(shape, -1, dtype="int64")
    uniform = np.ones(shape, dtype=bool)
    for i in range(s):
        y = t.f + t.e * (rows + (i + 0.5) / s)
        for j in range(s):
            x = t.c + t.a * (cols + (j + 0.5) / s)
            xx, yy = np.meshgrid(x, y)
            lon, lat = _polar_lonlat(grid, xx, yy)
            cell = table.cell_index(lon, lat)
            ok = cell >= 0
            wgt = np.where(ok, 1.0 / lunar.polar_scale_factor(np.where(ok, lat, 0.0)) ** 2, 0.0)
            num += wgt * np.where(ok, table.value[np.clip(cell, 0, None)], 0.0)
            den += wgt
            if i == 0 and j == 0:
                first = cell
            else:
                uniform &= cell == first
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0.0, num / den, np.nan)
    same = uniform & (first >= 0)
    out[same] = table.value[first[same]]  # every sub-point in one cell: that cell's value, exactly
    return out.astype("float32")


def _auto_supersample(table: BinnedTable, grid: AnalysisGrid) -> int:
    """``s`` from the ratio of the pixel size to the smallest cell height on the ground."""
    cell_m = float(np.min(table.lat_max - table.lat_min)) * lunar.METRES_PER_DEGREE
    pixel_m = max(grid.resolution)
    return int(min(MAX_SUPERSAMPLE, max(MIN_SUPERSAMPLE, math.ceil(SAMPLES_PER_CELL * pixel_m / cell_m))))


def rasterize_binned(
    table: BinnedTable, grid: AnalysisGrid, *, chunks: Any = None, supersample: int | None = None
) -> xr.DataArray:
    """``table`` on ``grid``, each pixel the area-weighted mean of the cells it overlaps (lazy, float32).

    Exact on geographic (IAU_2015:30100, global or regional, longitudes -180..180 or
    0..360) and equirectangular grids; on polar stereographic grids (IAU_2015:30130 /
    30135) by ``s x s`` sub-points per pixel weighted by the area element ``1/k^2``,
    ``s = supersample`` or chosen from the ratio of pixel to cell size (module
    docstring: exact as ``s`` grows; error at most ``|value step| / (2 s)`` in pixels a
    cell edge crosses). ``chunks`` as for :meth:`AnalysisGrid.template`.
    """
    if not isinstance(table, BinnedTable):
        raise GridError(
            f"rasterize_binned needs a BinnedTable (prospect.io.tables.read_binned_table), not {type(table).__name__}"
        )
    if not isinstance(grid, AnalysisGrid):
        raise GridError(f"grid must be an AnalysisGrid, not {type(grid).__name__}")
    kind = grid.crs.kind
    if kind in ("geographic", "equirectangular"):
        if supersample is not None:
            raise GridError(
                f"supersample applies to polar stereographic grids; on a {kind} grid the "
                "area-weighted mean is computed exactly"
            )
        s = None
        resampling = EXACT_RESAMPLING
    elif grid.crs.is_polar:
        if supersample is None:
            s = _auto_supersample(table, grid)
        else:
            try:
                s = int(supersample)
            except (TypeError, ValueError):
                raise GridError(f"supersample must be a positive integer, not {supersample!r}") from None
            if s < 1 or s != supersample:
                raise GridError(f"supersample must be a positive integer, not {supersample!r}")
        resampling = (
            f"area-weighted, {s}x{s} sub-samples per pixel weighted by 1/k^2 (polar stereographic): "
            f"exact as the sub-sampling grows; error <= |value step| / {2 * s} where a cell edge "
            "crosses a pixel"
        )
    else:
        raise GridError(
            f"rasterize_binned: no area rule for a {kind} grid ({grid.crs}); use a geographic, "
            "equirectangular or polar stereographic grid"
        )

    cy, cx = normalise_chunks(chunks, grid.shape)
    row_spans, col_spans = chunk_spans(grid.shape[0], cy), chunk_spans(grid.shape[1], cx)
    token = dask.base.tokenize(
        table.source_sha256, table.value, table.lat_min, table.lat_max, table.lon_min, table.lon_max, grid, cy, cx, s
    )
    name = "rasterize-binned-" + token
    layer: dict[Key, Any] = {}
    for i, (r0, r1) in enumerate(row_spans):
        for j, (c0, c1) in enumerate(col_spans):
            if s is None:
                layer[(name, i, j)] = (_exact_chunk, table.lookup, grid, r0, r1, c0, c1)
            else:
                layer[(name, i, j)] = (_supersampled_chunk, table, grid, s, r0, r1, c0, c1)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[])
    data = da.Array(
        graph, name, chunks=(tuple(b - a for a, b in row_spans), tuple(b - a for a, b in col_spans)), dtype="float32"
    )
    attrs: dict[str, Any] = {
        "units": table.units,
        "quantity": table.quantity,
        "long_name": f"{table.quantity} ({table.units}), {table.product_id}, area-weighted mean of the table cells",
        "product_id": table.product_id,
        "source_sha256": table.source_sha256 or "",
        "manifest_id": table.manifest_id or "",
        "citation": table.citation or "",
        "resampling": resampling,
    }
    if s is not None:
        attrs["supersample"] = s
    return grid.wrap(data, name=table.quantity, attrs=attrs)
