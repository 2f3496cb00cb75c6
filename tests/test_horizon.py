"""Horizon maps: analytic surfaces on polar grids, the sweep against brute force, NaN, max_distance.

Speed is measured by `make bench-illumination` (benchmarks/bench_illumination.py), not here.

Analytic references use great-circle distances between pixel centres
(:func:`prospect.lunar.great_circle_distance_m`), independent of the sweep's own ground
distance (the integral of 1/k along the map line), and the defining formula of
``docs/science.md`` section 3: ``atan((H - r^2 / (2R)) / r)``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from affine import Affine

from prospect import lunar
from prospect.errors import ConfigError, GridError
from prospect.grid import AnalysisGrid
from prospect.illumination import horizon_angles, horizon_brute_force
from prospect.synthetic import fractal_surface, rim_elevation_angle_deg

R = lunar.MOON_RADIUS_M


def _dem(grid: AnalysisGrid, heights: np.ndarray, units: str = "m") -> xr.DataArray:
    arr = grid.template().copy(data=np.asarray(heights, dtype="float32"))
    arr.attrs.update(units=units, product_id="test-dem")
    return arr


def _grid_at(code: int, y_centre_m: float, n: int, res: float) -> AnalysisGrid:
    """An ``n x n`` grid of ``res`` m pixels centred on map (0, y_centre_m)."""
    half = n * res / 2.0
    return AnalysisGrid(lunar.lunar_crs(code), Affine(res, 0.0, -half, 0.0, -res, y_centre_m + half), (n, n))


def _centre_xy(grid: AnalysisGrid, row: int, col: int) -> tuple[float, float]:
    t = grid.transform
    return t.c + (col + 0.5) * t.a, t.f + (row + 0.5) * t.e


def _ground_m(grid: AnalysisGrid, p: tuple[int, int], q: tuple[int, int]) -> float:
    (x1, y1), (x2, y2) = _centre_xy(grid, *p), _centre_xy(grid, *q)
    lon, lat = lunar.xy_to_lonlat(grid.crs, np.array([x1, x2]), np.array([y1, y2]))
    return float(lunar.great_circle_distance_m(lon[0], lat[0], lon[1], lat[1]))


def _analytic_deg(rise_m: float, r_m: float) -> float:
    return math.degrees(math.atan((rise_m - r_m * r_m / (2.0 * R)) / r_m))


# --- flat ground: curvature only ----------------------------------------------------------


@pytest.mark.parametrize(
    "grid",
    [
        AnalysisGrid.polar_cap("south", -89.0, resolution_m=400.0),  # k ~ 1
        _grid_at(30135, 300_000.0, 64, 100.0),  # ~ -80 deg, k ~ 1.0075
        _grid_at(30130, 300_000.0, 64, 100.0),  # north pole grid
    ],
    ids=["south-89", "south-80", "north-80"],
)
def test_flat_plane_sees_only_the_curvature_drop(grid):
    az = np.array([0.0, 30.0, 45.0, 90.0, 135.0, 200.0, 270.0, 333.0])
    hz = horizon_angles(_dem(grid, np.zeros(grid.shape)), az, max_distance_m=50_000.0)
    assert hz.dims == ("azimuth", "y", "x") and hz.dtype == np.float32
    xs, ys = np.meshgrid(grid.x, grid.y)
    k = lunar.polar_scale_factor_xy(xs, ys)
    res = grid.transform.a
    for i, a in enumerate(az):
        v = hz.values[i]
        # nearest sample: one major-axis pixel along the line, res / max(|sin|, |cos|) map metres
        step = res / max(abs(math.sin(math.radians(a))), abs(math.cos(math.radians(a))))
        expected = np.degrees(np.arctan(-step / k / (2.0 * R)))
        ok = np.isfinite(v)
        assert ok.mean() > 0.9
        assert np.all(v[ok] <= 0.0)
        np.testing.assert_allclose(v[ok], expected[ok], rtol=2e-5)
    # looking off the raster there is no sample ahead: NaN (not a fake horizon)
    assert np.isnan(hz.sel(azimuth=0.0).values[0]).all() and np.isfinite(hz.sel(azimuth=0.0).values[1:]).all()
    assert np.isnan(hz.sel(azimuth=90.0).values[:, -1]).all()
    assert np.isnan(hz.sel(azimuth=270.0).values[:, 0]).all()


# --- a conical peak ----------------------------------------------------------------------


def _cone_scene(code: int = 30135, n: int = 200, res: float = 200.0, height: float = 3000.0, base: float = 4000.0):
    grid = _grid_at(code, 300_000.0, n, res)
    apex = (n // 2, n // 2)
    xs, ys = np.meshgrid(grid.x, grid.y)
    ax, ay = _centre_xy(grid, *apex)
    rho = np.hypot(xs - ax, ys - ay)
    z = np.clip(height * (1.0 - rho / base), 0.0, None)
    return grid, apex, _dem(grid, z), height


@pytest.mark.parametrize("code", [30135, 30130])
def test_conical_peak_matches_analytic_horizon(code):
    grid, (ar, ac), dem, height = _cone_scene(code)
    # observers due south / west / south-east of the apex on pixel centres look at it exactly
    az = np.array([0.0, 90.0, 135.0, 180.0, 270.0, 315.0])
    hz = horizon_angles(dem, az, max_distance_m=150_000.0)
    flat = -0.01
    for n in (30, 50, 70, 95):
        cases = [
            ((ar + n, ac), 0.0),
            ((ar, ac - n), 90.0),
            ((ar - n, ac), 180.0),
            ((ar, ac + n), 270.0),
            ((ar + n, ac + n), 315.0),
        ]
        for (r, c), a in cases:
            if not (0 <= r < grid.shape[0] and 0 <= c < grid.shape[1]):
                continue
            dist = _ground_m(grid, (r, c), (ar, ac))
            got = float(hz.sel(azimuth=a).values[r, c])
            assert abs(got - _analytic_deg(height, dist)) < 0.01, (r, c, a, got, _analytic_deg(height, dist))
            # facing away from the peak the ground is flat: only the curvature drop
            back = float(hz.sel(azimuth=(a + 180.0) % 360.0).values[r, c])
            assert flat < back <= 0.0 or np.isnan(back)


def test_max_distance_excludes_a_far_peak():
    grid, (ar, ac), dem, height = _cone_scene()
    r, c = ar + 90, ac  # 18 km due south of the apex
    dist = _ground_m(grid, (r, c), (ar, ac))
    near = horizon_angles(dem, [0.0], max_distance_m=12_000.0).values[0, r, c]
    far = horizon_angles(dem, [0.0], max_distance_m=40_000.0).values[0, r, c]
    assert -0.01 < near <= 0.0  # the peak (and its 4 km flank) is beyond 12 km: flat ground
    assert abs(far - _analytic_deg(height, dist)) < 0.01
    # exactly at the apex distance along the line it still counts (r <= max_distance)
    line_dist = 90 * 200.0 / float(lunar.polar_scale_factor_xy(*_centre_xy(grid, ar + 45, ac)))
    at = horizon_angles(dem, [0.0], max_distance_m=line_dist * (1 + 1e-9)).values[0, r, c]
    assert abs(at - far) < 1e-4


# --- a bowl crater -----------------------------------------------------------------------


def test_bowl_crater_interior_sees_its_rim():
    grid = AnalysisGrid.polar_cap("south", -89.5, resolution_m=100.0)
    rc, cc = 100, 120
    depth, radius = 600.0, 4000.0  # a 40-pixel radius paraboloid bowl
    xs, ys = np.meshgrid(grid.x, grid.y)
    x0, y0 = _centre_xy(grid, rc, cc)
    rho = np.hypot(xs - x0, ys - y0)
    z = np.where(rho < radius, -depth * (1.0 - (rho / radius) ** 2), 0.0)
    az = np.arange(0.0, 360.0, 10.0)
    hz = horizon_angles(_dem(grid, z), az, max_distance_m=100_000.0)
    centre = hz.values[:, rc, cc]
    rim = rim_elevation_angle_deg(radius, depth, 0.0, R)
    on_axis = np.isin(az, [0.0, 90.0, 180.0, 270.0])
    np.testing.assert_allclose(centre[on_axis], rim, atol=0.01)
    # off-axis lines sample the rim kink between pixels: within a tenth of a degree or so
    np.testing.assert_allclose(centre, rim, atol=0.15)
    # off-centre observers looking outward along an axis: rim at (radius - offset)
    for off in (10, 20, 30):
        for (r, c), a in (((rc - off, cc), 0.0), ((rc, cc + off), 90.0), ((rc + off, cc), 180.0)):
            rim_px = {0.0: (rc - 40, cc), 90.0: (rc, cc + 40), 180.0: (rc + 40, cc)}[a]
            dist = _ground_m(grid, (r, c), rim_px)
            rise = depth * (1.0 - (off * 100.0 / radius) ** 2)
            got = float(hz.sel(azimuth=a).values[r, c])
            assert abs(got - _analytic_deg(rise, dist)) < 0.01, (off, a, got)


# --- the sweep against brute force ---------------------------------------------------------


def _fractal_dem(n: int = 96, seed: int = 1, rms: float = 300.0, code: int = 30135) -> xr.DataArray:
    grid = _grid_at(code, 300_000.0, n, 100.0)
    z = fractal_surface(np.random.default_rng(seed), grid.shape, dx_m=100.0, dy_m=100.0, hurst=0.8, rms_m=rms)
    return _dem(grid, z)


@pytest.mark.parametrize("max_distance", [150_000.0, 2_500.0, 1_000.0])
def test_sweep_agrees_with_brute_force_on_fractal_terrain(max_distance):
    dem = _fractal_dem()
    az = np.arange(0.0, 360.0, 10.0) + 3.0  # 36 azimuths, none axis-aligned
    sweep = horizon_angles(dem, az, max_distance_m=max_distance)
    brute = horizon_brute_force(dem, az, max_distance_m=max_distance)
    a, b = sweep.values, brute.values
    assert np.array_equal(np.isnan(a), np.isnan(b))
    diff = np.nanmax(np.abs(a - b))
    print(f"\nmax_distance {max_distance:.0f} m: sweep vs brute force max |diff| = {diff:.2e} deg")
    assert diff <= 0.05  # the acceptance criterion
    assert diff <= 1e-3  # identical samples: only rounding differs
    # max_distance binds: a shorter reach never raises the horizon
    if max_distance < 150_000.0:
        full = horizon_angles(dem, az, max_distance_m=150_000.0).values
        assert np.all((a <= full + 1e-6) | np.isnan(a))
        assert np.nanmean(full - a) > 0.01


def test_sweep_against_independent_ray_reference():
    """Rays from exact pixel centres with 0.25 px bilinear steps vs the sweep's line samples.

    The two differ by sampling alone (observer up to half a pixel off its line, nearest
    sample one pixel away): measured median ~0.1 deg, p95 ~0.6 deg on this smooth surface.
    """
    from scipy.ndimage import gaussian_filter

    dem = _fractal_dem(64, seed=3, rms=100.0)
    dem = dem.copy(data=gaussian_filter(dem.values, 2.0))
    az = np.arange(0.0, 360.0, 22.5) + 1.0
    sweep = horizon_angles(dem, az).values[:, 8:-8, 8:-8]
    ray = horizon_brute_force(dem, az, sampling="ray", step_px=0.25).values[:, 8:-8, 8:-8]
    d = np.abs(sweep - ray)
    p50, p95 = np.nanpercentile(d, [50, 95])
    print(f"\nsweep vs ray reference: median {p50:.3f}, p95 {p95:.3f}, max {np.nanmax(d):.3f} deg")
    assert p50 < 0.2 and p95 < 1.0 and abs(np.nanmean(sweep - ray)) < 0.1


# --- NaN ---------------------------------------------------------------------------------


def test_nan_pixels_are_nan_and_skipped_as_terrain():
    dem = _fractal_dem(64, seed=5)
    z = dem.values.copy()
    z[20:26, 30:40] = np.nan
    z[50, 5] = np.nan
    dem = dem.copy(data=z)
    az = np.arange(0.0, 360.0, 15.0) + 7.0
    sweep = horizon_angles(dem, az, max_distance_m=3_000.0)
    brute = horizon_brute_force(dem, az, max_distance_m=3_000.0)
    assert np.isnan(sweep.values[:, 20:26, 30:40]).all() and np.isnan(sweep.values[:, 50, 5]).all()
    assert np.array_equal(np.isnan(sweep.values), np.isnan(brute.values))
    assert np.nanmax(np.abs(sweep.values - brute.values)) <= 1e-3
    # a pixel beside the hole still has a horizon in every direction
    assert np.isfinite(sweep.values[:, 30, 35]).all()


def test_hole_does_not_hide_terrain_beyond_it():
    grid, (ar, ac), dem, height = _cone_scene()
    z = dem.values.copy()
    z[ar + 20 : ar + 30, :] = np.nan  # a no-data band between observer and peak
    r, c = ar + 60, ac
    got = horizon_angles(dem.copy(data=z), [0.0]).values[0, r, c]
    assert abs(got - _analytic_deg(height, _ground_m(grid, (r, c), (ar, ac)))) < 0.01


# --- API ---------------------------------------------------------------------------------


def test_output_metadata_and_units():
    dem = _fractal_dem(32)
    hz = horizon_angles(dem, n_azimuths=8, max_distance_m=5_000.0)
    np.testing.assert_array_equal(hz.azimuth.values, np.arange(8) * 45.0)
    np.testing.assert_array_equal(hz.x.values, dem.x.values)
    np.testing.assert_array_equal(hz.y.values, dem.y.values)
    assert hz.attrs["units"] == "deg" and hz.attrs["max_distance_m"] == 5_000.0
    assert "curvature" in hz.attrs and "sweep" in hz.attrs["method"]
    assert "clockwise from grid up" in hz.attrs["azimuth_convention"]
    assert hz.attrs["crs"] == "IAU_2015:30135"
    km = dem.copy(data=dem.values / 1000.0)
    km.attrs["units"] = "km"
    np.testing.assert_allclose(horizon_angles(km, n_azimuths=8, max_distance_m=5_000.0).values, hz.values, atol=1e-4)
    # threads over azimuths give the same answer
    np.testing.assert_array_equal(
        horizon_angles(dem, n_azimuths=8, max_distance_m=5_000.0, workers=2).values, hz.values
    )


def test_bad_inputs_are_errors():
    dem = _fractal_dem(16)
    with pytest.raises(ConfigError):
        horizon_angles(dem, [0.0], max_distance_m=0.0)
    with pytest.raises(ConfigError):
        horizon_angles(dem, [np.nan])
    with pytest.raises(ConfigError):
        horizon_brute_force(dem, [0.0], sampling="nope")  # type: ignore[arg-type]  # the refusal under test
    geo = AnalysisGrid(lunar.lunar_crs(30100), Affine(0.1, 0.0, 0.0, 0.0, -0.1, -80.0), (8, 8))
    with pytest.raises(GridError):
        horizon_angles(_dem(geo, np.zeros((8, 8))), [0.0])


def test_a_raised_observer_sees_the_curvature_horizon():
    """Flat ground, eye H above it: the horizon dips to about -sqrt(2H/R) (the tangent to the sphere)."""
    import math

    import numpy as np

    from prospect.grid import AnalysisGrid
    from prospect.illumination.horizon import horizon_angles
    from prospect.lunar import MOON_RADIUS_M

    grid = AnalysisGrid.polar_cap("south", -89.0, resolution_m=100.0)
    dem = grid.template().copy(data=np.zeros(grid.shape, dtype="float32"))
    dem.attrs["units"] = "m"
    ground = horizon_angles(dem, n_azimuths=8, max_distance_m=20_000.0)
    mast = horizon_angles(dem, n_azimuths=8, max_distance_m=20_000.0, observer_height_m=10.0)
    r, c = grid.shape[0] // 2, grid.shape[1] // 2
    expected = -math.degrees(math.atan(math.sqrt(2 * 10.0 / MOON_RADIUS_M)))  # dip at the tangent distance 5.9 km
    assert np.allclose(mast.values[:, r, c], expected, atol=2e-3)
    assert (mast.values[:, r, c] < ground.values[:, r, c]).all()
    assert mast.attrs["observer_height_m"] == 10.0
