"""Site features that look beyond the site disc: distances, traverse cost, crater density.

Every distance is a great circle on the lunar sphere (radius from :mod:`prospect.lunar`):
points become unit vectors and a k-d tree finds the nearest target by chord length,
which is monotonic in the arc, then ``arc = 2 R asin(chord / 2)``. Targets are the
boundary pixels of a mask (the nearest point of a region seen from outside lies on its
boundary), collected chunk by chunk, so the search scales with the boundary length.

- :func:`nearest_distance_km`: to the nearest PSR, ice-favourable or He-3-high pixel.
- :func:`traverse_cost_km`: slope-weighted cost-distance to the nearest cold trap: a
  multi-source Dijkstra over the 8-connected pixel graph (the r.cost / Dijkstra 1959
  formulation), edge cost = ground length x the mean of ``1 + slope / scale`` at its
  ends, pixels steeper than ``traverse_max_slope_deg`` impassable. Grids larger than
  ``traverse_max_cells`` are block-averaged first (the resolution used is returned).
- :func:`crater_density_km2`: catalogue craters of diameter >= ``crater_min_diameter_m``
  per km2 of spherical cap within ``crater_radius_m``.
- :func:`nearest_named`: the nearest named cold trap (moonpies crater list: PSR centroid).
"""

from __future__ import annotations

import math
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from scipy import ndimage, sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

from prospect import lunar
from prospect.errors import ConfigError
from prospect.grid import AnalysisGrid, as_dask


def _edge(block: np.ndarray) -> np.ndarray:
    return block & ~ndimage.binary_erosion(block, border_value=1)  # halo ring is trimmed


def boundary_lonlat(mask: xr.DataArray | np.ndarray, grid: AnalysisGrid) -> tuple[np.ndarray, np.ndarray]:
    """Lon/lat [deg] of the boundary pixels of a boolean mask (chunk by chunk)."""
    data = as_dask(mask).astype(bool)
    edge = data.map_overlap(_edge, depth=1, boundary=False, dtype=bool)  # raster edge = region edge
    row_off = np.cumsum((0,) + edge.chunks[0])
    col_off = np.cumsum((0,) + edge.chunks[1])
    blocks = edge.to_delayed()
    found = dask.compute(
        *[dask.delayed(np.nonzero)(blocks[i, j]) for i in range(blocks.shape[0]) for j in range(blocks.shape[1])]
    )
    rows, cols = [], []
    for (i, j), (r, c) in zip(np.ndindex(blocks.shape), found):
        rows.append(r + row_off[i])
        cols.append(c + col_off[j])
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    return lunar.xy_to_lonlat(grid.crs, grid.x[c], grid.y[r])


def nearest_distance_km(
    lon: np.ndarray, lat: np.ndarray, target_lon: np.ndarray, target_lat: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Great-circle distance [km] from each point to its nearest target, and that target's index.

    NaN (and index -1) everywhere when there is no target.
    """
    n = np.size(lon)
    if np.size(target_lon) == 0:
        return np.full(n, np.nan), np.full(n, -1, dtype=np.int64)
    tree = cKDTree(lunar.unit_vectors(target_lon, target_lat))
    chord, idx = tree.query(lunar.unit_vectors(lon, lat))
    return lunar.chord_to_arc_m(chord) / 1e3, np.asarray(idx, dtype=np.int64)


def distance_to_mask_km(
    lon: np.ndarray,
    lat: np.ndarray,
    mask: xr.DataArray | np.ndarray,
    grid: AnalysisGrid,
    rows: np.ndarray,
    cols: np.ndarray,
) -> np.ndarray:
    """Great-circle distance [km] from each point (pixel ``rows, cols``) to the nearest ``True`` pixel of ``mask``.

    0 for points on a ``True`` pixel; NaN everywhere when the mask is empty.
    """
    tlon, tlat = boundary_lonlat(mask, grid)
    dist = nearest_distance_km(lon, lat, tlon, tlat)[0]
    inside = np.asarray(as_dask(mask).astype(bool).vindex[np.asarray(rows), np.asarray(cols)].compute())
    return np.where(inside, 0.0, dist)


def crater_density_km2(
    lon: np.ndarray,
    lat: np.ndarray,
    crater_lon: np.ndarray,
    crater_lat: np.ndarray,
    diameter_m: np.ndarray,
    *,
    radius_m: float,
    min_diameter_m: float,
) -> np.ndarray:
    """Craters with ``D >= min_diameter_m`` per km2 within ``radius_m`` (great circle) of each point."""
    keep = np.asarray(diameter_m) >= min_diameter_m
    cap_km2 = lunar.spherical_cap_area_m2(radius_m) / 1e6
    if not keep.any():
        return np.zeros(np.size(lon))
    tree = cKDTree(lunar.unit_vectors(np.asarray(crater_lon)[keep], np.asarray(crater_lat)[keep]))
    counts = tree.query_ball_point(
        lunar.unit_vectors(lon, lat), r=float(lunar.arc_to_chord(radius_m)), return_length=True
    )
    return np.asarray(counts, dtype="float64") / cap_km2


def diameters_m(gdf: Any, source: str) -> np.ndarray:
    """Crater diameters [m] from a catalogue table (``Diameter_m``, ``diam_m`` or ``Diam (km)``)."""
    lower = {str(c).lower().strip(): c for c in gdf.columns}
    for name, scale in (
        ("diameter_m", 1.0),
        ("diam_m", 1.0),
        ("diameter", 1.0),
        ("diam (km)", 1e3),
        ("diameter_km", 1e3),
        ("diam_km", 1e3),
    ):
        if name in lower:
            return np.asarray(gdf[lower[name]], dtype="float64") * scale
    raise ConfigError(
        f"{source}: no crater diameter column (Diameter_m, diam_m, Diam (km), diameter_km); "
        f"columns: {list(gdf.columns)}"
    )


def point_lonlat(gdf: Any) -> tuple[np.ndarray, np.ndarray]:
    """Planetocentric lon/lat [deg] of point features (reprojected to the lunar geographic CRS)."""
    geo = gdf.to_crs(lunar.lunar_crs(lunar.IAU_GEOGRAPHIC).to_pyproj())
    return np.asarray(geo.geometry.x, dtype="float64"), np.asarray(geo.geometry.y, dtype="float64")


def nearest_named(lon: np.ndarray, lat: np.ndarray, named: Any) -> tuple[np.ndarray, np.ndarray]:
    """Name of the nearest named cold trap and the distance [km] to its PSR centroid.

    ``named`` is the moonpies crater list (``Crater Name``, ``PSR centroid Lat/Lon (deg)``)
    or any point table with a ``name`` column.
    """
    cols = {str(c).lower(): c for c in named.columns}
    name_col = cols.get("crater name") or cols.get("name")
    if name_col is None:
        raise ConfigError(f"cold-trap list: no 'Crater Name' or 'name' column; columns: {list(named.columns)}")
    if "psr centroid lat (deg)" in cols and "psr centroid lon (deg)" in cols:
        tlat = np.asarray(named[cols["psr centroid lat (deg)"]], dtype="float64")
        tlon = lunar.normalize_longitude(np.asarray(named[cols["psr centroid lon (deg)"]], dtype="float64"))
    else:
        tlon, tlat = point_lonlat(named)
    names = np.asarray(named[name_col].astype(str))
    known = np.isfinite(tlon) & np.isfinite(tlat)  # some craters of the list have no PSR centroid
    tlon, tlat, names = tlon[known], tlat[known], names[known]
    dist, idx = nearest_distance_km(lon, lat, tlon, tlat)
    return np.where(idx >= 0, names[np.clip(idx, 0, None)], ""), dist


def traverse_cost_km(
    slope: xr.DataArray,
    sources: xr.DataArray,
    rows: np.ndarray,
    cols: np.ndarray,
    grid: AnalysisGrid,
    *,
    scale_deg: float,
    max_slope_deg: float,
    max_cells: float,
) -> tuple[np.ndarray, float]:
    """Least slope-weighted traverse cost [flat-ground km] from pixels ``(rows, cols)`` to any source.

    Returns the costs (NaN where no passable path exists or there is no source) and the
    ground resolution [m] of the graph.
    """
    h, w = grid.shape
    f = max(1, int(math.ceil(math.sqrt(h * w / max_cells))))
    s = as_dask(slope).astype("float64")
    src = as_dask(sources).astype("float64")
    if f > 1:
        pad = ((0, (-h) % f), (0, (-w) % f))
        s = da.coarsen(np.nanmean, da.pad(s, pad, constant_values=np.nan), {0: f, 1: f}, trim_excess=False)
        src = da.coarsen(np.nanmax, da.pad(src, pad, constant_values=0.0), {0: f, 1: f}, trim_excess=False)
    s_np, src_np = (np.asarray(a) for a in dask.compute(s, src))
    is_src = np.nan_to_num(src_np) > 0.5
    n_rows, n_cols = s_np.shape
    x = grid.transform.c + grid.transform.a * f * (np.arange(n_cols) + 0.5)
    y = grid.transform.f + grid.transform.e * f * (np.arange(n_rows) + 0.5)
    gx, gy = np.meshgrid(x, y)
    k = lunar.polar_scale_factor_xy(gx, gy) if grid.crs.is_polar else np.ones_like(gx)
    step_m = abs(grid.transform.a) * f / k
    factor = 1.0 + np.where(np.isfinite(s_np), s_np, np.inf) / scale_deg
    passable = (np.isfinite(s_np) & (s_np <= max_slope_deg)) | is_src
    factor = np.where(is_src & ~np.isfinite(factor), 1.0, factor)  # a source without slope still counts
    # 32-bit cell indices while they fit, and the edge arrays filled in place (no lists to
    # concatenate): at the default 4e6 cells the graph peaks at about 0.5 GB, not 1 GB
    idx = np.arange(n_rows * n_cols, dtype=np.int32 if n_rows * n_cols < 2**31 else np.int64)
    idx = idx.reshape(n_rows, n_cols)
    pairs = []
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = (slice(0, n_rows - dr), slice(max(0, -dc), n_cols - max(0, dc)))
        b = (slice(dr, n_rows), slice(max(0, dc), n_cols - max(0, -dc)))
        ok = passable[a] & passable[b]
        pairs.append((dr, dc, a, b, ok, int(ok.sum())))
    n_edges = sum(p[-1] for p in pairs)
    heads = np.empty(n_edges, idx.dtype)
    tails = np.empty(n_edges, idx.dtype)
    weights = np.empty(n_edges)
    i = 0
    for dr, dc, a, b, ok, n_ok in pairs:
        j = i + n_ok
        length = 0.5 * (step_m[a] + step_m[b]) * math.hypot(dr, dc)
        heads[i:j] = idx[a][ok]
        tails[i:j] = idx[b][ok]
        weights[i:j] = (length * 0.5 * (factor[a] + factor[b]))[ok]
        i = j
    del pairs
    graph = sparse.coo_matrix((weights, (heads, tails)), shape=(idx.size, idx.size)).tocsr()
    del heads, tails, weights
    start = idx[is_src]
    out = np.full(np.size(rows), np.nan)
    if start.size:
        dist = csgraph.dijkstra(graph, directed=False, indices=start, min_only=True)
        at = dist[idx[np.asarray(rows) // f, np.asarray(cols) // f]]
        out = np.where(np.isfinite(at), at / 1e3, np.nan)
    return out, float(abs(grid.transform.a) * f)
