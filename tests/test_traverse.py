"""Least-cost traverses (prospect.sites.traverse): paths, their costs, and the unchanged cost field.

Every scene is on the IAU_2015:30135 south polar stereographic grid (lunar sphere), small
enough to run in well under a second each.
"""

from __future__ import annotations

import math
import warnings

import dask.array as da
import numpy as np
import pytest
import shapely
from scipy import sparse
from scipy.sparse import csgraph

from prospect import lunar
from prospect.grid import AnalysisGrid
from prospect.sites import features as F
from prospect.sites import traverse as T

SCALE, MAX_SLOPE = 5.0, 25.0


def _field(slope, src, grid, *, max_cells=1e6, psr=None):
    return T.traverse_field(
        grid.wrap(slope),
        grid.wrap(src),
        grid,
        scale_deg=SCALE,
        max_slope_deg=MAX_SLOPE,
        max_cells=max_cells,
        psr_mask=None if psr is None else grid.wrap(psr),
    )


def _cells(line, field):
    """Coarse (row, col) of the vertices of a path line (the site point, when drawn, dropped)."""
    xy = np.asarray(line.coords)
    t, f = field.grid.transform, field.factor
    col = (xy[:, 0] - t.c) / (t.a * f) - 0.5
    row = (xy[:, 1] - t.f) / (t.e * f) - 0.5
    on_centre = np.isclose(col, np.round(col)) & np.isclose(row, np.round(row))
    return np.round(row[on_centre]).astype(int), np.round(col[on_centre]).astype(int)


# --- (a) a wall with one gap --------------------------------------------------------------


@pytest.mark.parametrize("factor", [1, 2])
def test_path_goes_through_the_gap_and_never_over_impassable_cells(factor):
    # 40 x 40 px of 200 m; a 40 deg wall (impassable above 25 deg) over columns 20..21 with
    # a gap at rows 10..11; cold trap: column 0; site: far side, low down
    grid = AnalysisGrid.from_bounds(30135, (20000, 20000, 28000, 28000), resolution=200)
    slope = np.zeros(grid.shape)
    slope[:, 20:22] = 40.0
    slope[10:12, 20:22] = 0.0
    src = np.zeros(grid.shape, dtype=bool)
    src[:, 0] = True
    max_cells = grid.shape[0] * grid.shape[1] / factor**2
    slope_d = da.from_array(slope, chunks=16)  # dask-backed, chunks not aligned with the blocks
    field = T.traverse_field(
        grid.wrap(slope_d),
        grid.wrap(da.from_array(src, chunks=16)),
        grid,
        scale_deg=SCALE,
        max_slope_deg=MAX_SLOPE,
        max_cells=max_cells,
    )
    assert field.factor == factor
    site = (np.array([36]), np.array([36]))
    table = T.paths(field, *site, site_ids=[7])
    row = table.iloc[0]
    assert row.site_id == 7
    pr, pc = field.path_cells(36, 36)
    assert pr.size >= 2 and field.sources[pr[-1], pc[-1]]
    # every cell of the path is passable, and the wall is crossed at the gap only
    assert (field.slope[pr, pc] <= MAX_SLOPE).all()
    assert row.max_slope_deg <= MAX_SLOPE
    wall_cols = {20 // factor, 21 // factor}
    in_wall = np.isin(pc, list(wall_cols))
    assert in_wall.any() and set(pr[in_wall]) <= {10 // factor, 11 // factor}
    # geometrically too: the line never runs over a steep pixel (touching a corner is not crossing)
    t = grid.transform
    steep = shapely.union_all(
        [
            shapely.box(t.c + t.a * c, t.f + t.e * (r + 1), t.c + t.a * (c + 1), t.f + t.e * r)
            for r, c in zip(*np.nonzero(slope > MAX_SLOPE))
        ]
    )
    assert table.geometry.iloc[0].intersection(steep).length == pytest.approx(0.0, abs=1e-6)
    # the vertices are the path cells
    vr, vc = _cells(table.geometry.iloc[0], field)
    np.testing.assert_array_equal(vr, pr)
    np.testing.assert_array_equal(vc, pc)
    # closing the gap leaves no path: a row with an empty line and NaN numbers, not a skipped site
    slope[10:12, 20:22] = 40.0
    closed = T.paths(_field(slope, src, grid, max_cells=max_cells), *site, site_ids=[7])
    assert len(closed) == 1 and closed.geometry.iloc[0].is_empty and closed.n_cells.iloc[0] == 0
    assert np.isnan(closed[["length_km", "cost_km", "max_slope_deg", "end_x"]].to_numpy(dtype=float)).all()


# --- (b) the path's cost is the Dijkstra cost ---------------------------------------------


def _random_scene(seed, shape=(45, 37)):
    rng = np.random.default_rng(seed)
    slope = rng.gamma(2.0, 5.0, size=shape)  # mean 10 deg, ~9 % above 25 deg
    slope[rng.random(shape) < 0.02] = np.nan  # no-data pixels
    src = np.zeros(shape, dtype=bool)
    src[3:7, 4:9] = True
    src[38:41, 30:34] = True
    slope[4, 5] = np.nan  # a cold-trap pixel without slope still counts
    psr = np.zeros(shape, dtype=bool)
    psr[:12, :15] = True
    return slope, src, psr


def _edge_weights(grid, f, coarse_slope, sources, pr, pc):
    """Edge weights [m] along a cell path: mean ground step x (1 or sqrt 2) x mean of 1 + slope / scale."""
    t = grid.transform
    x = t.c + t.a * f * (pc + 0.5)
    y = t.f + t.e * f * (pr + 0.5)
    step = 200.0 * f / lunar.polar_scale_factor_xy(x, y)
    s = coarse_slope[pr, pc]
    assert np.isfinite(s[~sources[pr, pc]]).all()
    fac = 1.0 + np.where(np.isfinite(s), s, 0.0) / SCALE  # a cold trap without slope counts as flat
    diag = np.where((np.diff(pr) != 0) & (np.diff(pc) != 0), math.sqrt(2.0), 1.0)
    return 0.5 * (step[:-1] + step[1:]) * diag * 0.5 * (fac[:-1] + fac[1:])


@pytest.mark.parametrize("max_cells", [1e6, 500.0])  # f = 1 and f = 2 (45 x 37 -> 23 x 19 cells)
def test_path_cost_equals_the_dijkstra_cost_and_the_sum_of_its_edges(max_cells):
    grid = AnalysisGrid.from_bounds(30135, (-40000, 60000, -40000 + 37 * 200, 60000 + 45 * 200), resolution=200)
    slope, src, psr = _random_scene(1)
    rows = np.array([0, 20, 22, 30, 44, 10, 5, 40])
    cols = np.array([36, 18, 3, 10, 0, 30, 6, 31])
    cost, res, field = F.traverse_cost_km(
        grid.wrap(slope),
        grid.wrap(src),
        rows,
        cols,
        grid,
        scale_deg=SCALE,
        max_slope_deg=MAX_SLOPE,
        max_cells=max_cells,
        return_field=True,
        psr_mask=grid.wrap(psr),
    )
    plain, plain_res = F.traverse_cost_km(
        grid.wrap(slope),
        grid.wrap(src),
        rows,
        cols,
        grid,
        scale_deg=SCALE,
        max_slope_deg=MAX_SLOPE,
        max_cells=max_cells,
    )
    np.testing.assert_array_equal(cost, plain)
    assert res == plain_res == 200.0 * field.factor
    assert np.isfinite(cost).sum() >= 5
    table = T.paths(field, rows, cols, site_ids=np.arange(len(rows)) + 100)
    np.testing.assert_array_equal(table["site_id"], np.arange(len(rows)) + 100)
    np.testing.assert_array_equal(table["cost_km"].to_numpy(), cost)  # same numbers, NaN where no path
    for i, (r, c) in enumerate(zip(rows, cols)):
        pr, pc = field.path_cells(r, c)
        if not np.isfinite(cost[i]):
            assert pr.size == 0 and table.geometry.iloc[i].is_empty
            continue
        # the path runs site cell -> source over neighbouring passable cells
        assert (pr[0], pc[0]) == (r // field.factor, c // field.factor)
        assert field.sources[pr[-1], pc[-1]] and not field.sources[pr[:-1], pc[:-1]].any()
        assert field.origin[pr[0], pc[0]] == pr[-1] * field.shape[1] + pc[-1]
        assert (np.abs(np.diff(pr)) <= 1).all() and (np.abs(np.diff(pc)) <= 1).all()
        assert field.passable[pr, pc].all()
        # the sum of the edge weights along the cells (written out here): the cost
        w = _edge_weights(grid, field.factor, field.slope, field.sources, pr, pc)
        assert w.sum() / 1e3 == pytest.approx(cost[i], rel=1e-12, abs=0)
        np.testing.assert_allclose(field.edge_weight_m(pr[:-1], pc[:-1], pr[1:], pc[1:]), w, rtol=1e-15)
        # cost = length x (1 + mean slope / scale): the mean slope is the one the cost sees
        row = table.iloc[i]
        if pr.size > 1:
            assert row.cost_km == pytest.approx(row.length_km * (1 + row.mean_slope_deg / SCALE), rel=1e-9)
        end_x, end_y = field.cell_xy(pr[-1], pc[-1])
        assert (row.end_x, row.end_y) == (float(end_x), float(end_y))
        assert 0.0 <= row.psr_share <= 1.0
    # the site on a cold trap: cost 0, a zero-length line at the site
    on_trap = table.iloc[6]
    assert on_trap.cost_km == 0.0 and on_trap.length_km == 0.0 and on_trap.n_cells == 1
    assert on_trap.psr_share == 1.0 and on_trap.geometry.length == pytest.approx(0.0, abs=300.0 * field.factor)
    # the PSR mask given to paths() instead of the field: the same shares
    again = T.paths(field, rows, cols, site_ids=np.arange(len(rows)), psr_mask=grid.wrap(psr))
    np.testing.assert_array_equal(again["psr_share"].to_numpy(), table["psr_share"].to_numpy())


# --- (c) flat ground: length = cost = great-circle distance -------------------------------


@pytest.mark.parametrize(("site", "label"), [((20, 2), "row"), ((38, 38), "diagonal"), ((2, 38), "anti-diagonal")])
def test_on_flat_ground_length_equals_cost_and_the_great_circle(site, label):
    # 40 x 40 px of 250 m, ~110 km from the south pole: scale factor k - 1 ~ 1e-3
    grid = AnalysisGrid.from_bounds(30135, (60000, 90000, 70000, 100000), resolution=250)
    src = np.zeros(grid.shape, dtype=bool)
    src[20, 20] = True
    field = _field(np.zeros(grid.shape), src, grid)
    rows, cols = np.array([site[0]]), np.array([site[1]])
    row = T.paths(field, rows, cols, site_ids=[label]).iloc[0]
    pr, pc = field.path_cells(*site)
    assert (pr[-1], pc[-1]) == (20, 20)
    n = max(abs(site[0] - 20), abs(site[1] - 20))
    assert pr.size == n + 1  # the straight row / diagonal of cells: any detour costs >= 0.8 px
    # slope 0: each edge costs its ground length exactly (factor 1); the sums differ by rounding only
    assert row.length_km == pytest.approx(row.cost_km, rel=1e-12)
    assert row.mean_slope_deg == 0.0 and row.max_slope_deg == 0.0 and np.isnan(row.psr_share)
    lon, lat = lunar.xy_to_lonlat(grid.crs, grid.x[cols], grid.y[rows])
    end_lon, end_lat = lunar.xy_to_lonlat(grid.crs, grid.x[[20]], grid.y[[20]])
    assert (row.end_lon, row.end_lat) == pytest.approx((end_lon[0], end_lat[0]), abs=1e-9)
    great_circle = F.nearest_distance_km(lon, lat, end_lon, end_lat)[0][0]
    # Tolerance: the graph integrates ground length = map length / k by the trapezoid rule
    # over cells along the straight map segment between the two pixel centres (the end
    # points are exact). k = 1 + rho^2 / 4R^2 is smooth (k'' ~ 1/(2R^2)), so the trapezoid
    # error is ~ step^2 / (24 R^2) ~ 1e-9 relative, and the great circle departs from the
    # straight map segment at second order in the variation of k along it (~1e-9 here; the
    # three cases measure 0.7-1.7e-9). 1e-6 covers both with room and is 1000x smaller than
    # the error of ignoring k (~1e-3, checked below).
    assert row.length_km == pytest.approx(great_circle, rel=1e-6)
    map_km = math.hypot(float(grid.x[cols[0]] - grid.x[20]), float(grid.y[rows[0]] - grid.y[20])) / 1e3
    assert abs(map_km - great_circle) / great_circle > 5e-4
    # the line: straight, site to cold trap
    line = T.paths(field, rows, cols, site_ids=[label]).geometry.iloc[0]
    assert line.length / 1e3 == pytest.approx(map_km, rel=1e-12)


def test_psr_share_is_the_shaded_share_of_the_length():
    grid = AnalysisGrid.from_bounds(30135, (0, 0, 20000, 2000), resolution=200)  # 10 x 100 px
    src = np.zeros(grid.shape, dtype=bool)
    src[:, 0] = True
    psr = np.zeros(grid.shape, dtype=bool)
    psr[:, :40] = True
    field = _field(np.zeros(grid.shape), src, grid, psr=psr)
    row = T.paths(field, np.array([5]), np.array([80]), site_ids=[0]).iloc[0]
    # 80 edges along the row: 39 inside the PSR, 1 across its edge (half counted), 40 outside;
    # the ground steps vary by < 3e-5 along the row (k - 1 <= x^2 / 4R^2), hence rel=1e-4
    assert row.psr_share == pytest.approx(39.5 / 80, rel=1e-4)


# --- (d) the cost field is unchanged: an independent graph and csgraph.dijkstra -----------


def _independent_costs(slope, src, grid, f, rows, cols):
    """Costs [km] by a plain re-implementation: numpy block means, an explicit neighbour loop."""
    h, w = slope.shape
    H, W = -(-h // f), -(-w // f)
    pad_s = np.full((H * f, W * f), np.nan)
    pad_s[:h, :w] = slope
    pad_src = np.zeros((H * f, W * f), dtype=bool)
    pad_src[:h, :w] = src
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN block: mean of empty slice
        s = np.nanmean(pad_s.reshape(H, f, W, f), axis=(1, 3))
    is_src = pad_src.reshape(H, f, W, f).any(axis=(1, 3))
    t = grid.transform
    x = t.c + t.a * f * (np.arange(W) + 0.5)
    y = t.f + t.e * f * (np.arange(H) + 0.5)
    step = abs(t.a) * f / (1.0 + (x[None, :] ** 2 + y[:, None] ** 2) / (4 * lunar.MOON_RADIUS_M**2))
    ok = (np.isfinite(s) & (s <= MAX_SLOPE)) | is_src
    fac = np.where(np.isfinite(s), 1.0 + s / SCALE, 1.0)
    heads, tails, weights = [], [], []
    for r in range(H):
        for c in range(W):
            for dr, dc in ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)):
                r2, c2 = r + dr, c + dc
                if 0 <= r2 < H and 0 <= c2 < W and ok[r, c] and ok[r2, c2]:
                    heads.append(r * W + c)
                    tails.append(r2 * W + c2)
                    length = 0.5 * (step[r, c] + step[r2, c2]) * math.hypot(dr, dc)
                    weights.append(length * 0.5 * (fac[r, c] + fac[r2, c2]))
    graph = sparse.csr_matrix((weights, (heads, tails)), shape=(H * W, H * W))
    dist = csgraph.dijkstra(graph, directed=True, indices=np.flatnonzero(is_src)).min(axis=0)
    at = dist[(rows // f) * W + cols // f]
    return np.where(np.isfinite(at), at / 1e3, np.nan)


@pytest.mark.parametrize(("seed", "max_cells"), [(2, 1e6), (3, 500.0), (4, 200.0)])  # f = 1, 2, 3
def test_traverse_costs_equal_an_independent_dijkstra(seed, max_cells):
    grid = AnalysisGrid.from_bounds(30135, (-40000, 60000, -40000 + 37 * 200, 60000 + 45 * 200), resolution=200)
    slope, src, _ = _random_scene(seed)
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(0, 45, 40), rng.integers(0, 37, 40)
    f = T.coarsening_factor(grid.shape, max_cells)
    cost, res = F.traverse_cost_km(
        grid.wrap(da.from_array(slope, chunks=(16, 11))),
        grid.wrap(da.from_array(src, chunks=(16, 11))),
        rows,
        cols,
        grid,
        scale_deg=SCALE,
        max_slope_deg=MAX_SLOPE,
        max_cells=max_cells,
    )
    assert res == 200.0 * f
    expected = _independent_costs(slope, src, grid, f, rows, cols)
    np.testing.assert_array_equal(np.isnan(cost), np.isnan(expected))
    np.testing.assert_allclose(cost, expected, rtol=1e-12)
    assert np.isfinite(cost).sum() >= 20


def test_no_cold_trap_gives_nan_costs_and_empty_paths():
    grid = AnalysisGrid.from_bounds(30135, (0, 0, 4000, 4000), resolution=200)
    field = _field(np.zeros(grid.shape), np.zeros(grid.shape, dtype=bool), grid)
    assert np.isnan(field.cost_km(np.array([1, 2]), np.array([3, 4]))).all()
    table = T.paths(field, np.array([1, 2]), np.array([3, 4]), site_ids=["a", "b"])
    assert list(table.site_id) == ["a", "b"] and table.geometry.is_empty.all()
    assert table.crs == grid.crs.to_pyproj()
