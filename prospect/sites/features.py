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
  The model, the solver and the least-cost paths are in :mod:`prospect.sites.traverse`.
- :func:`crater_density_km2`: catalogue craters of diameter >= ``crater_min_diameter_m``
  per km2 of spherical cap within ``crater_radius_m``.
- :func:`nearest_named`: the nearest named cold trap (moonpies crater list: PSR centroid).
"""

from __future__ import annotations

from typing import Any, Literal, overload

import dask
import numpy as np
import xarray as xr
from scipy import ndimage
from scipy.spatial import cKDTree

from prospect import lunar
from prospect.errors import ConfigError
from prospect.grid import AnalysisGrid, as_dask
from prospect.sites.traverse import TraverseField, traverse_field


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


@overload
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
    return_field: Literal[False] = False,
    psr_mask: xr.DataArray | None = None,
) -> tuple[np.ndarray, float]: ...


@overload
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
    return_field: Literal[True],
    psr_mask: xr.DataArray | None = None,
) -> tuple[np.ndarray, float, TraverseField]: ...


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
    return_field: bool = False,
    psr_mask: xr.DataArray | None = None,
) -> tuple[np.ndarray, float] | tuple[np.ndarray, float, TraverseField]:
    """Least slope-weighted traverse cost [flat-ground km] from pixels ``(rows, cols)`` to any source.

    Returns the costs (NaN where no passable path exists or there is no source) and the
    ground resolution [m] of the graph. The cost model and the solver live in
    :mod:`prospect.sites.traverse`; with ``return_field=True`` the solved
    :class:`~prospect.sites.traverse.TraverseField` comes third (the same single Dijkstra
    run), ready for :func:`prospect.sites.traverse.paths` (``psr_mask``, optional, is
    coarsened into it for the paths' PSR share).
    """
    field = traverse_field(
        slope,
        sources,
        grid,
        scale_deg=scale_deg,
        max_slope_deg=max_slope_deg,
        max_cells=max_cells,
        psr_mask=psr_mask,
    )
    cost = field.cost_km(rows, cols)
    if return_field:
        return cost, field.resolution_m, field
    return cost, field.resolution_m
