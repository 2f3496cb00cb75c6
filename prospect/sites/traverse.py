"""Least-cost traverses to the nearest cold trap: the cost field and the paths behind it.

The cost model (the r.cost / Dijkstra 1959 formulation) is the one of
:func:`prospect.sites.features.traverse_cost_km`, which is now a thin wrapper of this module:

- The analysis grid is block-averaged by an integer factor ``f`` (the smallest with at
  most ``traverse_max_cells`` cells; ``f = 1`` when the grid fits): the coarse slope is
  the NaN-mean of each ``f x f`` block, a coarse cell is a source (cold trap) when any of
  its pixels is (block maximum of the source mask > 0.5). The coarsening runs on dask,
  chunk by chunk, so full-resolution rasters are never loaded whole.
- The graph is the 8-connected coarse grid. A cell is passable when its slope is known
  and at most ``traverse_max_slope_deg``, or when it is a source. An edge between cells
  ``a`` and ``b`` costs ``L * (F_a + F_b) / 2`` [flat-ground m], with the ground length
  ``L = (s_a + s_b) / 2 * hypot(dr, dc)``, ``s = f * pixel size / k`` the ground step of
  a cell (``k`` the polar stereographic scale factor, :func:`prospect.lunar.polar_scale_factor_xy`;
  1 on other grids) and ``F = 1 + slope / traverse_slope_scale_deg`` (1 for a source
  without a slope).
- :func:`traverse_field` runs ONE multi-source Dijkstra (``scipy.sparse.csgraph.dijkstra``,
  ``min_only=True, return_predecessors=True``) from all source cells and keeps, per coarse
  cell, the least cost, the predecessor on the least-cost path and the source it reaches:
  a :class:`TraverseField`. The graph itself is freed before it returns.
- :func:`paths` follows the predecessors from given sites to their cold trap and returns
  the traverses as lines (grid CRS) with their length, cost, slopes and PSR share.

Memory at the default ``traverse_max_cells`` = 4e6: the graph peaks at about 0.5 GB while
it is built and solved (as before); the field then holds the coarse slope and cost
(float64), the predecessor and reached-source indices (int32) and the masks (bool):
about 110 MB.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from scipy import sparse
from scipy.sparse import csgraph

from prospect import lunar
from prospect.grid import AnalysisGrid, as_dask

#: scipy.sparse.csgraph's "no predecessor / no source" marker
NO_CELL = -9999

#: the 8 neighbour offsets, each edge counted once (the graph is undirected)
_HALF_NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1))


def coarsening_factor(shape: tuple[int, int], max_cells: float) -> int:
    """The block size ``f`` of the traverse graph: the smallest with ``ceil(h/f) * ceil(w/f)`` <= about ``max_cells``."""
    h, w = shape
    return max(1, int(math.ceil(math.sqrt(h * w / max_cells))))


def _pad(grid: AnalysisGrid, f: int) -> tuple[tuple[int, int], tuple[int, int]]:
    h, w = grid.shape
    return ((0, (-h) % f), (0, (-w) % f))


def _coarse_slope(slope: Any, grid: AnalysisGrid, f: int) -> da.Array:
    s = as_dask(slope).astype("float64")
    if f > 1:
        s = da.coarsen(np.nanmean, da.pad(s, _pad(grid, f), constant_values=np.nan), {0: f, 1: f}, trim_excess=False)
    return s


def _coarse_mask(mask: Any, grid: AnalysisGrid, f: int) -> da.Array:
    """Block maximum of a (boolean or 0/1) mask as float64: ``> 0.5`` after ``nan_to_num`` marks the cell."""
    m = as_dask(mask).astype("float64")
    if f > 1:
        m = da.coarsen(np.nanmax, da.pad(m, _pad(grid, f), constant_values=0.0), {0: f, 1: f}, trim_excess=False)
    return m


def _as_cell_mask(coarse: np.ndarray) -> np.ndarray:
    return np.asarray(np.nan_to_num(coarse) > 0.5)


@dataclass(frozen=True, eq=False)
class TraverseField:
    """The solved traverse cost field on the coarse graph grid (arrays are ``(n_rows, n_cols)``).

    ``cost_m`` is the least cost [flat-ground m] to the nearest source (``inf`` where none is
    reachable), ``predecessors`` the flat index (``row * n_cols + col``) of the previous cell
    on that least-cost path seen from the source (:data:`NO_CELL` at sources and unreachable
    cells), ``origin`` the flat index of the source cell the path starts from (:data:`NO_CELL`
    where unreachable). ``slope`` is the coarse slope [deg] (NaN where unknown), ``sources``
    and ``passable`` the coarse cell masks, ``psr`` the coarse permanent-shadow mask (when
    given, coarsened like the sources: a cell with any PSR pixel), ``factor`` the coarsening
    factor ``f`` of the full-resolution ``grid``.
    """

    grid: AnalysisGrid
    factor: int
    scale_deg: float
    max_slope_deg: float
    slope: np.ndarray
    sources: np.ndarray
    passable: np.ndarray
    cost_m: np.ndarray
    predecessors: np.ndarray
    origin: np.ndarray
    psr: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_rows, n_cols)`` of the coarse graph grid."""
        return (int(self.slope.shape[0]), int(self.slope.shape[1]))

    @property
    def resolution_m(self) -> float:
        """The graph's cell size in grid units (``f x`` the pixel size: metres on projected grids)."""
        return float(abs(self.grid.transform.a) * self.factor)

    def coarse_cell(self, rows: Any, cols: Any) -> tuple[np.ndarray, np.ndarray]:
        """The coarse cell ``(row, col)`` holding full-resolution pixels ``(rows, cols)``."""
        return np.asarray(rows) // self.factor, np.asarray(cols) // self.factor

    def cell_xy(self, crow: Any, ccol: Any) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates (grid CRS) of coarse cell centres."""
        t, f = self.grid.transform, self.factor
        x = t.c + t.a * f * (np.asarray(ccol, dtype="float64") + 0.5)
        y = t.f + t.e * f * (np.asarray(crow, dtype="float64") + 0.5)
        return x, y

    def step_m(self, crow: Any, ccol: Any) -> np.ndarray:
        """Ground step [m] of coarse cells: ``f x`` pixel size / polar scale factor (as the graph uses)."""
        x, y = self.cell_xy(crow, ccol)
        k = lunar.polar_scale_factor_xy(x, y) if self.grid.crs.is_polar else np.ones_like(x)
        return np.asarray(abs(self.grid.transform.a) * self.factor / k)

    def cost_factor(self, crow: Any, ccol: Any) -> np.ndarray:
        """``1 + slope / scale`` of coarse cells (1 for a source without slope, inf where unknown)."""
        s = self.slope[np.asarray(crow), np.asarray(ccol)]
        factor = 1.0 + np.where(np.isfinite(s), s, np.inf) / self.scale_deg
        return np.where(self.sources[np.asarray(crow), np.asarray(ccol)] & ~np.isfinite(factor), 1.0, factor)

    def edge_weight_m(self, r0: Any, c0: Any, r1: Any, c1: Any) -> np.ndarray:
        """Weights [flat-ground m] of the edges between neighbouring coarse cells, as in the graph."""
        r0, c0, r1, c1 = (np.asarray(v) for v in (r0, c0, r1, c1))
        s0, s1 = self.step_m(r0, c0), self.step_m(r1, c1)
        f0, f1 = self.cost_factor(r0, c0), self.cost_factor(r1, c1)
        diag = np.hypot(r1 - r0, c1 - c0)
        return (0.5 * (s0 + s1) * diag) * 0.5 * (f0 + f1)

    def cost_km(self, rows: Any, cols: Any) -> np.ndarray:
        """Least traverse cost [flat-ground km] from full-resolution pixels ``(rows, cols)``; NaN if unreachable."""
        at = self.cost_m[self.coarse_cell(rows, cols)]
        return np.where(np.isfinite(at), at / 1e3, np.nan)

    def path_cells(self, row: int, col: int) -> tuple[np.ndarray, np.ndarray]:
        """Coarse cells ``(rows, cols)`` of the least-cost path from pixel ``(row, col)`` to its source.

        Ordered from the site's cell to the source cell; empty when no source is reachable
        (one cell when the site's cell is a source).
        """
        n_cols = self.shape[1]
        j = int(row) // self.factor * n_cols + int(col) // self.factor
        if not np.isfinite(self.cost_m.flat[j]):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        pred = self.predecessors.ravel()
        cells = [j]
        for _ in range(pred.size):
            j = int(pred[j])
            if j < 0:
                break
            cells.append(j)
        flat = np.asarray(cells, dtype=np.int64)
        return flat // n_cols, flat % n_cols


def traverse_field(
    slope: xr.DataArray,
    sources: xr.DataArray,
    grid: AnalysisGrid,
    *,
    scale_deg: float,
    max_slope_deg: float,
    max_cells: float,
    psr_mask: xr.DataArray | None = None,
) -> TraverseField:
    """Solve the traverse cost field: one multi-source Dijkstra from all ``sources`` cells.

    ``slope`` [deg] and the boolean ``sources`` (cold traps) are full-resolution layers on
    ``grid`` (numpy- or dask-backed); ``psr_mask`` (optional, boolean) is coarsened in the
    same dask pass for :func:`paths`' ``psr_share``. Costs of sites:
    ``field.cost_km(rows, cols)``; the graph resolution: ``field.resolution_m``.
    """
    f = coarsening_factor(grid.shape, max_cells)
    todo = [_coarse_slope(slope, grid, f), _coarse_mask(sources, grid, f)]
    if psr_mask is not None:
        todo.append(_coarse_mask(psr_mask, grid, f))
    computed = [np.asarray(a) for a in dask.compute(*todo)]
    s_np, is_src = computed[0], _as_cell_mask(computed[1])
    psr = _as_cell_mask(computed[2]) if psr_mask is not None else None
    del computed, todo
    n_rows, n_cols = s_np.shape
    passable = (np.isfinite(s_np) & (s_np <= max_slope_deg)) | is_src
    n = n_rows * n_cols
    cost = np.full(n, np.inf)
    pred = np.full(n, NO_CELL, dtype=np.int32)
    origin = np.full(n, NO_CELL, dtype=np.int32)
    if is_src.any():
        graph, idx = _graph(s_np, is_src, passable, grid, f, scale_deg)
        start = idx[is_src]
        del idx
        solved = csgraph.dijkstra(graph, directed=False, indices=start, min_only=True, return_predecessors=True)
        del graph
        cost, pred, origin = solved[0], solved[1], solved[2]
        del solved
    return TraverseField(
        grid=grid,
        factor=f,
        scale_deg=float(scale_deg),
        max_slope_deg=float(max_slope_deg),
        slope=s_np,
        sources=is_src,
        passable=passable,
        cost_m=np.asarray(cost, dtype="float64").reshape(n_rows, n_cols),
        predecessors=np.asarray(pred, dtype=np.int32).reshape(n_rows, n_cols),
        origin=np.asarray(origin, dtype=np.int32).reshape(n_rows, n_cols),
        psr=psr,
    )


def _graph(
    s_np: np.ndarray, is_src: np.ndarray, passable: np.ndarray, grid: AnalysisGrid, f: int, scale_deg: float
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """The 8-connected cost graph (CSR, each undirected edge once) and the cell index array."""
    n_rows, n_cols = s_np.shape
    x = grid.transform.c + grid.transform.a * f * (np.arange(n_cols) + 0.5)
    y = grid.transform.f + grid.transform.e * f * (np.arange(n_rows) + 0.5)
    gx, gy = np.meshgrid(x, y)
    k = lunar.polar_scale_factor_xy(gx, gy) if grid.crs.is_polar else np.ones_like(gx)
    del gx, gy
    step_m = abs(grid.transform.a) * f / k
    del k
    factor = 1.0 + np.where(np.isfinite(s_np), s_np, np.inf) / scale_deg
    factor = np.where(is_src & ~np.isfinite(factor), 1.0, factor)  # a source without slope still counts
    # 32-bit cell indices while they fit, and the edge arrays filled in place (no lists to
    # concatenate): at the default 4e6 cells the graph peaks at about 0.5 GB, not 1 GB
    idx = np.arange(n_rows * n_cols, dtype=np.int32 if n_rows * n_cols < 2**31 else np.int64)
    idx = idx.reshape(n_rows, n_cols)
    pairs = []
    for dr, dc in _HALF_NEIGHBOURS:
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
    return graph, idx


PATH_COLUMNS = (
    "site_id",
    "n_cells",
    "length_km",
    "cost_km",
    "max_slope_deg",
    "mean_slope_deg",
    "psr_share",
    "end_x",
    "end_y",
    "end_lon",
    "end_lat",
)


def paths(
    field: TraverseField,
    rows: Any,
    cols: Any,
    site_ids: Sequence[Any] | np.ndarray,
    psr_mask: xr.DataArray | None = None,
) -> Any:
    """The least-cost traverse of each site pixel ``(rows, cols)`` to its nearest cold trap.

    Returns a GeoDataFrame (grid CRS), one row per site in the given order, with
    :data:`PATH_COLUMNS` and a LineString ``geometry``: the site's own pixel centre, then
    the centres of the coarse cells of the path (the site's cell first, the cold-trap
    source cell last; the site point is left out when it is its cell's centre, as at
    ``f = 1``). Columns:

    - ``n_cells``: coarse cells on the path (0 when no path);
    - ``length_km``: ground length along the cells, ``sum (s_a + s_b) / 2 * hypot(dr, dc)``
      as in the cost (the stub from the site point to its cell centre, at most
      ``(f - 1) / sqrt(2)`` pixels, is drawn but not counted);
    - ``cost_km``: the least cost, equal to :meth:`TraverseField.cost_km` (and to
      :func:`prospect.sites.features.traverse_cost_km`) at the site;
    - ``max_slope_deg``: the steepest coarse cell on the path (NaN-max);
    - ``mean_slope_deg``: the length-weighted mean of the edge slopes ``(S_a + S_b) / 2``,
      with slopes as the cost sees them (a source cell without slope counts 0), so that
      ``cost = length * (1 + mean_slope / scale)``;
    - ``psr_share``: share of the length in permanent shadow (each edge's length split
      between its two cells; a coarse cell is PSR when any of its pixels is), from
      ``psr_mask`` (full resolution, coarsened here) or else the field's own ``psr``;
      NaN when neither is given;
    - ``end_x, end_y, end_lon, end_lat``: the centre of the cold-trap (source) cell reached.

    A site on a cold-trap cell gets a zero-length two-vertex line (its point twice, or
    point then cell centre). Sites with no path (NaN cost: no reachable cold trap) are NOT
    skipped: their row has an empty LineString and NaN numbers, so the table stays aligned
    with the inputs. Cost: a walk of the predecessors per site (milliseconds each).
    """
    import geopandas as gpd
    import shapely

    rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
    cols = np.atleast_1d(np.asarray(cols, dtype=np.int64))
    ids = list(np.asarray(site_ids).reshape(-1))
    if not (len(rows) == len(cols) == len(ids)):
        raise ValueError(f"rows, cols and site_ids must have one length, not {len(rows)}, {len(cols)}, {len(ids)}")
    psr = field.psr
    if psr_mask is not None:
        psr = _as_cell_mask(np.asarray(_coarse_mask(psr_mask, field.grid, field.factor).compute()))
    grid = field.grid
    site_x = grid.transform.c + grid.transform.a * (cols.astype("float64") + 0.5)
    site_y = grid.transform.f + grid.transform.e * (rows.astype("float64") + 0.5)
    records: list[dict[str, Any]] = []
    lines = []
    for sid, r, c, sx, sy in zip(ids, rows, cols, site_x, site_y):
        pr, pc = field.path_cells(int(r), int(c))
        rec: dict[str, Any] = dict.fromkeys(PATH_COLUMNS, np.nan)
        rec["site_id"] = sid
        rec["n_cells"] = int(pr.size)
        if pr.size == 0:
            records.append(rec)
            lines.append(shapely.LineString())
            continue
        x, y = field.cell_xy(pr, pc)
        slope = field.slope[pr, pc]
        s_cost = np.where(np.isfinite(slope), slope, 0.0)  # as the cost factor: a source without slope is flat
        rec["cost_km"] = float(field.cost_m[pr[0], pc[0]] / 1e3)
        rec["max_slope_deg"] = float(np.nanmax(slope)) if np.isfinite(slope).any() else np.nan
        if pr.size > 1:
            step = field.step_m(pr, pc)
            edge_len = 0.5 * (step[:-1] + step[1:]) * np.hypot(np.diff(pr), np.diff(pc))
            length = float(edge_len.sum())
            rec["length_km"] = length / 1e3
            rec["mean_slope_deg"] = float(np.sum(edge_len * 0.5 * (s_cost[:-1] + s_cost[1:])) / length)
            if psr is not None:
                p = psr[pr, pc].astype("float64")
                rec["psr_share"] = float(np.sum(edge_len * 0.5 * (p[:-1] + p[1:])) / length)
        else:
            rec["length_km"] = 0.0
            rec["mean_slope_deg"] = float(s_cost[0])
            if psr is not None:
                rec["psr_share"] = float(psr[pr[0], pc[0]])
        rec["end_x"], rec["end_y"] = float(x[-1]), float(y[-1])
        coords = np.column_stack([x, y])
        if not (np.isclose(sx, x[0]) and np.isclose(sy, y[0])) or pr.size == 1:
            coords = np.vstack([[sx, sy], coords])
        records.append(rec)
        lines.append(shapely.LineString(coords))
    frame = gpd.GeoDataFrame(_records_frame(records), geometry=lines, crs=grid.crs.to_pyproj())
    frame["site_id"] = np.asarray(site_ids).reshape(-1)  # the caller's ids and dtype
    ok = np.isfinite(frame["end_x"].to_numpy(dtype="float64"))
    if ok.any():
        lon, lat = lunar.xy_to_lonlat(grid.crs, frame.loc[ok, "end_x"].to_numpy(), frame.loc[ok, "end_y"].to_numpy())
        frame.loc[ok, "end_lon"] = np.asarray(lon, dtype="float64")
        frame.loc[ok, "end_lat"] = np.asarray(lat, dtype="float64")
    return frame


def _records_frame(records: list[dict[str, Any]]) -> Any:
    import pandas as pd

    frame = pd.DataFrame.from_records(records, columns=list(PATH_COLUMNS))
    for name in PATH_COLUMNS[2:]:
        frame[name] = frame[name].astype("float64")
    frame["n_cells"] = frame["n_cells"].astype("int64")
    return frame
