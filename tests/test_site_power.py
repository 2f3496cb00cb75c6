"""Power at candidate sites (prospect.sites.power): point horizons against the brute-force rays,
a flat sphere against the ephemeris alone, masts, the battery rule, the usable-sunlight threshold
(longest usable night), bad parameters, a real site.

References are independent of the module: :func:`horizon_brute_force` (``sampling="ray"``) for
the horizon, and the Sun / Earth elevations of :mod:`prospect.illumination.ephemeris` against a
0 deg horizon for the flat plane.
"""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from affine import Affine

from prospect import config, lunar
from prospect.errors import ConfigError
from prospect.grid import AnalysisGrid
from prospect.illumination import horizon_brute_force
from prospect.illumination.ephemeris import (
    default_times,
    earth_azimuth_elevation,
    sun_azimuth_elevation,
    sun_earth_directions,
)
from prospect.illumination.products import grid_north_azimuth_deg
from prospect.sites.power import (
    DEFAULT_MIN_DISK_FRACTION,
    grid_north_azimuth_at,
    night_steps,
    point_horizon,
    point_power,
    power_params,
    site_power,
    sites_power,
    usable_sun,
)
from prospect.synthetic import fractal_surface

R = lunar.MOON_RADIUS_M


def _dem(grid: AnalysisGrid, heights: np.ndarray, chunks: int | None = None) -> xr.DataArray:
    arr = grid.template().copy(data=np.asarray(heights, dtype="float32"))
    arr.attrs.update(units="m", product_id="test-dem")
    if chunks:
        arr = arr.copy(data=da.from_array(arr.values, chunks=chunks))
    return arr


def _grid_at(code: int, y_centre_m: float, n: int, res: float) -> AnalysisGrid:
    """An ``n x n`` grid of ``res`` m pixels centred on map (0, y_centre_m)."""
    half = n * res / 2.0
    return AnalysisGrid(lunar.lunar_crs(code), Affine(res, 0.0, -half, 0.0, -res, y_centre_m + half), (n, n))


def _rough(grid: AnalysisGrid, rms: float = 300.0, seed: int = 7) -> np.ndarray:
    res = abs(grid.transform.a)
    return fractal_surface(np.random.default_rng(seed), grid.shape, dx_m=res, dy_m=res, hurst=0.8, rms_m=rms)


@pytest.fixture(scope="module")
def rough():
    """A 72 x 72 rough DEM at 100 m, about 1 deg from the south pole (off-centre: gamma != 0)."""
    grid = _grid_at(lunar.IAU_SOUTH_POLAR_STEREOGRAPHIC, 20_000.0, 72, 100.0)
    return grid, _rough(grid)


@pytest.fixture(scope="module")
def coarse_se():
    return sun_earth_directions(default_times(start="2024-01-01", years=1.0, step_hours=6.0))


def _xy(grid: AnalysisGrid, row: int, col: int) -> tuple[float, float]:
    return float(grid.x[col]), float(grid.y[row])


# --- (a) the point horizon is the brute-force ray horizon ------------------------------------


def test_point_horizon_equals_brute_force_rays_at_pixel_centres(rough):
    grid, z = rough
    dem = _dem(grid, z)
    n_az, dmax = 48, 4_000.0
    gamma = grid_north_azimuth_deg(grid)
    true_az = np.arange(n_az) * (360.0 / n_az)
    for r, c in [(36, 36), (10, 60), (65, 4)]:
        x, y = _xy(grid, r, c)
        assert float(grid_north_azimuth_at(grid.crs.kind, x, y)) == pytest.approx(gamma[r, c], abs=1e-9)
        ours = point_horizon(dem, x, y, [0.0], n_az, dmax)
        assert ours.shape == (1, n_az)
        ref = horizon_brute_force(dem, np.mod(true_az + gamma[r, c], 360.0), dmax, 0.5, sampling="ray")
        want = ref.values[:, r, c].astype("float64")
        np.testing.assert_allclose(ours[0], want, atol=5e-5, rtol=0)  # float32 output of the reference
        assert np.ptp(ours[0]) > 5.0  # rough terrain: the test has teeth


def test_point_horizon_is_the_same_from_dask_chunks_and_numpy(rough):
    """Chunks of 20 px (rays cross many chunk seams: the halo logic) give the numpy values."""
    grid, z = rough
    x, y = float(grid.x[30]) + 37.0, float(grid.y[41]) - 12.5  # off the pixel centre
    a = point_horizon(_dem(grid, z), x, y, [0.0, 2.0, 10.0], 90, 6_000.0)
    b = point_horizon(_dem(grid, z, chunks=20), x, y, [0.0, 2.0, 10.0], 90, 6_000.0)
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)


def test_mast_horizon_on_a_sphere_is_the_dip_angle():
    """Flat sphere, eye at H: the horizon is the dip ``-sqrt(2 H / R)`` (tangent at r = sqrt(2 H R))."""
    grid = _grid_at(lunar.IAU_SOUTH_POLAR_STEREOGRAPHIC, 20_000.0, 160, 100.0)
    dem = _dem(grid, np.zeros(grid.shape))
    hz = point_horizon(dem, *_xy(grid, 80, 80), [2.0, 10.0], 36, 7_000.0)
    for k, h in enumerate((2.0, 10.0)):
        assert np.abs(hz[k] - (-math.degrees(math.sqrt(2.0 * h / R)))).max() < 5e-4


# --- (b) a flat plane: the ephemeris alone ---------------------------------------------------


def test_flat_plane_power_follows_from_the_ephemeris_alone(coarse_se):
    se = coarse_se
    grid = AnalysisGrid.polar_cap("south", -89.0, resolution_m=400.0)
    dem = _dem(grid, np.zeros(grid.shape))
    lon_g, lat_g = (np.asarray(v) for v in grid.lonlat())
    step_h = 6.0
    for r, c in [(grid.shape[0] // 2 + 3, grid.shape[1] // 2 - 5), (20, 30)]:
        lon, lat = float(lon_g[r, c]), float(lat_g[r, c])
        hz = point_horizon(dem, *_xy(grid, r, c), [0.0], 72, 30_000.0)
        assert np.abs(hz).max() < 0.01  # the curvature drop of the nearest sample only
        res = point_power(hz, np.arange(72) * 5.0, lon, lat, se, 50.0)
        # independent reference: a 0 deg horizon
        _, el = sun_azimuth_elevation(lon, lat, se.sun)
        rho = np.asarray(se.sun_angular_radius_deg)
        d = np.clip(np.asarray(el) / rho, -1, 1)
        frac = 1.0 - (np.arccos(d) - d * np.sqrt(1 - d * d)) / np.pi
        lit = np.asarray(el) + rho > 0.0
        runs, run = [], 0
        for v in lit:
            run = 0 if v else run + 1
            runs.append(run)
        night_h = max(runs) * step_h
        _, eel = earth_azimuth_elevation(lon, lat, se.earth, se.earth_distance_km)
        assert 0.2 < frac.mean() < 0.8 and night_h > 100.0
        assert res["illumination_fraction"][0] == pytest.approx(frac.mean(), abs=2e-3)
        assert abs(res["longest_night_h"][0] - night_h) <= 2 * step_h
        assert res["earth_visibility_fraction"][0] == pytest.approx(float((np.asarray(eel) > 0).mean()), abs=0.01)
        assert res["step_h"] == pytest.approx(step_h) and res["n_steps"] == len(se)
        np.testing.assert_allclose(res["disk_fraction"][0], frac, atol=0.05)


# --- (c) a higher mast never sees less ------------------------------------------------------------


def test_ten_metre_mast_never_sees_less_than_two_metres(coarse_se):
    grid = _grid_at(lunar.IAU_SOUTH_POLAR_STEREOGRAPHIC, 25_000.0, 96, 100.0)  # ~ -89.2 deg
    dem = _dem(grid, _rough(grid, rms=400.0, seed=3))
    xs = [float(grid.x[c]) for c in (20, 48, 70)]
    ys = [float(grid.y[r]) for r in (30, 48, 75)]
    lon, lat = lunar.xy_to_lonlat(grid.crs, np.array(xs), np.array(ys))
    table, series = sites_power(dem, xs, ys, lon, lat, ["a", "b", "c"], coarse_se, heights_m=(2.0, 10.0),
                                n_azimuths=120, max_distance_m=8_000.0, load_w=80.0)  # fmt: skip
    assert list(table["site_id"]) == ["a", "a", "b", "b", "c", "c"]
    assert list(table["height_m"]) == [2.0, 10.0] * 3
    low = table[table.height_m == 2.0].set_index("site_id")
    high = table[table.height_m == 10.0].set_index("site_id")
    assert (high.illumination_fraction >= low.illumination_fraction).all()
    assert (high.longest_night_h <= low.longest_night_h).all()
    assert (high.earth_visibility_fraction >= low.earth_visibility_fraction).all()
    assert low.illumination_fraction.nunique() == 3  # the terrain matters
    for sid, s in series.items():
        assert s.disk_fraction.shape == (2, len(coarse_se)) and s.heights_m == (2.0, 10.0)
        assert (s.disk_fraction[1] >= s.disk_fraction[0] - 1e-6).all()
        assert s.disk_fraction.mean(axis=1) == pytest.approx(
            table[table.site_id == sid].illumination_fraction.to_numpy(), abs=1e-6
        )
    hz = point_horizon(dem, xs[1], ys[1], [2.0, 10.0], 120, 8_000.0)
    assert (hz[1] <= hz[0]).all() and (hz[1] < hz[0]).any()


# --- (d) battery = load x longest usable night ----------------------------------------------------


def test_battery_is_load_times_longest_usable_night(rough, coarse_se):
    grid, z = rough
    dem = _dem(grid, z)
    x, y = _xy(grid, 36, 36)
    lon, lat = lunar.xy_to_lonlat(grid.crs, x, y)
    hz = point_horizon(dem, x, y, [2.0, 10.0], 72, 4_000.0)
    res = point_power(hz, np.arange(72) * 5.0, float(lon), float(lat), coarse_se, 125.0)
    assert res["min_disk_fraction"] == DEFAULT_MIN_DISK_FRACTION == 0.5
    np.testing.assert_allclose(res["battery_wh"], 125.0 * res["longest_usable_night_h"])
    np.testing.assert_allclose(res["longest_night_h"], res["longest_night_steps"] * 6.0)
    np.testing.assert_allclose(res["longest_usable_night_h"], res["longest_usable_night_steps"] * 6.0)
    assert (res["longest_night_h"] > 0).all()
    assert (res["longest_usable_night_h"] >= res["longest_night_h"]).all()
    table, _ = sites_power(dem, [x], [y], [lon], [lat], [1], coarse_se, n_azimuths=72, max_distance_m=4_000.0,
                           load_w=125.0)  # fmt: skip
    np.testing.assert_allclose(table.battery_wh, 125.0 * table.longest_usable_night_h)
    np.testing.assert_allclose(table.battery_wh, res["battery_wh"])
    np.testing.assert_allclose(table.longest_night_h, res["longest_night_h"])
    assert (table.min_disk_fraction == 0.5).all()
    assert "longest_usable_night_h" in table.attrs["battery"] and "longest_night_h" in table.attrs["battery"]


# --- (d') the usable-sunlight threshold -----------------------------------------------------------


def test_night_steps_on_a_hand_built_disk_fraction_series():
    f = np.array([0.0, 0.1, 0.6, 0.0, 0.0, 0.3, 0.49, 1.0, 0.5, 0.0, 0.2])
    # threshold 0: night = no limb up (f == 0): steps 3-4
    assert night_steps(f, 0.0) == 2
    np.testing.assert_array_equal(usable_sun(f, 0.0), f > 0)
    assert night_steps(f, 1e-12) == 2  # any sliver passes a near-0 threshold
    # 0.5: 0.1 and 0.3 and 0.49 are night now, 0.5 itself is usable (at or above): steps 3-6
    np.testing.assert_array_equal(usable_sun(f, 0.5), [0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0])
    assert night_steps(f, 0.5) == 4
    assert night_steps(f, 0.55) == 4  # 0.5 falls, 8-10 is 3 long
    assert night_steps(f, 0.65) == 7  # only the full disk at step 7 is left; 0-6 is 7 long
    assert night_steps(f, 1.0) == 7  # the whole disk up counts at 1
    # never shorter than the no-limb night, never shorter at a higher threshold
    got = [night_steps(f, t) for t in np.linspace(0.0, 1.0, 21)]
    assert got[0] == night_steps(f) and (np.diff(got) >= 0).all()
    # a run wrapping from the end to the start is not joined; all night; no night; float32 input
    assert night_steps([0.0, 1.0, 0.0, 0.0], 0.0) == 2
    assert night_steps(np.zeros(5), 0.0) == 5 and night_steps(np.ones(5), 1.0) == 0
    tiny = np.array([0.0, np.finfo(np.float32).tiny, 0.0], dtype=np.float32)
    assert night_steps(tiny, 0.0) == 1 and night_steps(tiny, 0.5) == 3


def _runs(lit: np.ndarray) -> int:
    """Longest run of False, by a plain loop (independent of the module)."""
    best = run = 0
    for v in lit:
        run = 0 if v else run + 1
        best = max(best, run)
    return best


def test_threshold_zero_reproduces_the_no_limb_night_at_a_real_site(rough, coarse_se):
    """At threshold 0 the usable night is the no-limb night step for step: the geometric test
    ``el + rho > horizon`` (recomputed here), ``disk_fraction > 0`` of the series and the module's
    runs all agree; the threshold then only lengthens the night and shortens the usable sun."""
    grid, z = rough
    dem = _dem(grid, z)
    az = np.arange(72) * 5.0
    for r, c in [(36, 36), (20, 50), (60, 15)]:
        x, y = _xy(grid, r, c)
        lon, lat = (float(v) for v in lunar.xy_to_lonlat(grid.crs, x, y))
        hz = point_horizon(dem, x, y, [0.0, 2.0, 10.0], 72, 4_000.0)
        zero = point_power(hz, az, lon, lat, coarse_se, 10.0, min_disk_fraction=0.0)
        saz, sel = (np.asarray(v) for v in sun_azimuth_elevation(lon, lat, coarse_se.sun))
        rho = np.asarray(coarse_se.sun_angular_radius_deg)
        for k in range(3):
            limb = sel + rho > np.interp(np.mod(saz, 360.0), az, hz[k], period=360.0)  # the old definition
            assert 0 < limb.sum() < limb.size  # days and nights: the test has teeth
            want = _runs(limb)
            assert zero["longest_night_steps"][k] == want
            assert zero["longest_usable_night_steps"][k] == want
            assert zero["longest_usable_night_h"][k] == zero["longest_night_h"][k] == want * 6.0
            np.testing.assert_array_equal(zero["disk_fraction"][k] > 0, limb)  # the float32 series agrees
            assert night_steps(zero["disk_fraction"][k], 0.0) == want
            assert zero["usable_sun_fraction"][k] == pytest.approx(limb.mean(), abs=1e-15)
            assert zero["usable_sun_fraction"][k] >= zero["illumination_fraction"][k]
        np.testing.assert_allclose(zero["battery_wh"], 10.0 * zero["longest_night_h"])
        # the threshold moves the night one way only; the no-limb outputs do not move
        prev = zero
        for t in (0.25, 0.5, 0.75, 1.0):
            res = point_power(hz, az, lon, lat, coarse_se, 10.0, min_disk_fraction=t)
            for key in ("longest_night_h", "illumination_fraction", "earth_visibility_fraction"):
                np.testing.assert_array_equal(res[key], zero[key])
            np.testing.assert_array_equal(res["disk_fraction"], zero["disk_fraction"])
            assert (res["longest_usable_night_h"] >= prev["longest_usable_night_h"]).all()
            assert (res["usable_sun_fraction"] <= prev["usable_sun_fraction"]).all()
            np.testing.assert_allclose(res["battery_wh"], 10.0 * res["longest_usable_night_h"])
            prev = res
        # the full disk is rarer than any limb: at 1 the night is longer somewhere
        assert (prev["longest_usable_night_h"] > zero["longest_night_h"]).any()


def test_a_limb_a_hair_above_the_horizon_is_lit_at_threshold_zero(coarse_se):
    """The edge of ``el + rho > horizon`` vs ``disk_fraction > 0``: a flat horizon one ulp below the
    Sun's highest upper limb lets exactly that limb up. The raw disk formula rounds it to <= 0; the
    module still calls the step lit in both nights at threshold 0, and its series says > 0."""
    from prospect.illumination.products import disk_fraction

    lon, lat = 30.0, -88.5
    _, sel = sun_azimuth_elevation(lon, lat, coarse_se.sun)
    sel = np.asarray(sel, dtype="float64")
    rho = np.asarray(coarse_se.sun_angular_radius_deg, dtype="float64")
    top = sel + rho
    i = int(np.argmax(top))
    h = float(np.nextafter(top[i], -np.inf))
    limb = top > h
    assert limb.sum() == 1 and limb[i]
    assert disk_fraction((sel[i] - h) / rho[i]) <= 0.0  # the formula alone loses this limb
    res = point_power(np.full(8, h), np.arange(8) * 45.0, lon, lat, coarse_se, 1.0, min_disk_fraction=0.0)
    want = _runs(limb)
    assert want < len(coarse_se)
    assert res["longest_night_steps"][0] == res["longest_usable_night_steps"][0] == want
    np.testing.assert_array_equal(res["disk_fraction"][0] > 0, limb)
    assert res["usable_sun_fraction"][0] == pytest.approx(1.0 / len(coarse_se))
    # any positive threshold drops the hair of a limb: the whole span is one usable night
    tiny = point_power(np.full(8, h), np.arange(8) * 45.0, lon, lat, coarse_se, 1.0, min_disk_fraction=1e-9)
    assert tiny["longest_usable_night_steps"][0] == len(coarse_se) and tiny["longest_night_steps"][0] == want


def test_usable_night_on_a_flat_plane_follows_from_the_ephemeris(coarse_se):
    """0 deg horizon: the usable night at 0.5 is the longest run of the Sun's centre below the
    horizon (half the disk up exactly when the centre is on it), from the ephemeris alone."""
    lon, lat = 30.0, -88.5
    az = np.arange(72) * 5.0
    res = point_power(np.zeros(72), az, lon, lat, coarse_se, 1.0, min_disk_fraction=0.5)
    _, el = sun_azimuth_elevation(lon, lat, coarse_se.sun)
    centre_up = np.asarray(el) >= 0.0
    assert 0 < centre_up.sum() < centre_up.size
    assert res["longest_usable_night_steps"][0] == _runs(centre_up)
    assert res["usable_sun_fraction"][0] == pytest.approx(centre_up.mean(), abs=1e-12)
    assert res["longest_usable_night_steps"][0] > res["longest_night_steps"][0]


@pytest.mark.parametrize("bad", [1.5, -0.1, "x", math.nan, None, True])
def test_bad_threshold_in_point_power_is_a_one_line_config_error(bad, coarse_se):
    for call in (
        lambda: point_power(np.zeros(8), np.arange(8) * 45.0, 0.0, -89.0, coarse_se, 1.0, min_disk_fraction=bad),
        lambda: usable_sun(np.zeros(3), bad),
    ):
        with pytest.raises(ConfigError) as exc:
            call()
        msg = str(exc.value)
        assert "min_disk_fraction" in msg and "\n" not in msg, msg


# --- (e) parameters -------------------------------------------------------------------------------


def test_power_parameters_load_with_units_and_sources():
    p = config.load("sites")
    for name in ("power_mast_heights_m", "power_azimuths", "power_max_distance_m", "power_step_hours",
                 "power_span_years", "power_load_w", "power_sites_top_n", "power_min_disk_fraction"):  # fmt: skip
        par = p.param(name)
        assert par.unit and par.source and par.status in config.STATUS, name
    pp = power_params(p)
    assert pp.heights_m == (2.0, 10.0) and pp.n_azimuths == 720 and pp.max_distance_m == 150_000.0
    assert pp.step_hours == 1.0 and pp.span_years == 18.6 and pp.top_n == 10
    assert power_params({"power_mast_heights_m": 5}).heights_m == (5.0,)
    # the threshold: a documented choice (status ?) with a range, 0 to 1
    par = p.param("power_min_disk_fraction")
    assert par.unit == "1" and par.status == "?" and (par.min, par.max) == (0, 1)
    assert par.range is not None and par.range[0] <= par.value <= par.range[1]
    assert pp.min_disk_fraction == par.value == DEFAULT_MIN_DISK_FRACTION  # the code's default is the config's
    assert power_params({"power_min_disk_fraction": 0}).min_disk_fraction == 0.0
    assert power_params({"power_min_disk_fraction": 1}).min_disk_fraction == 1.0


@pytest.mark.parametrize(
    "bad, needle",
    [
        ({"power_mast_heights_m": [-2, 10]}, "power_mast_heights_m"),
        ({"power_mast_heights_m": -2}, "power_mast_heights_m"),
        ({"power_mast_heights_m": []}, "power_mast_heights_m"),
        ({"power_azimuths": 0}, "power_azimuths"),
        ({"power_azimuths": 90.5}, "power_azimuths"),
        ({"power_max_distance_m": -1}, "power_max_distance_m"),
        ({"power_step_hours": 0}, "power_step_hours"),
        ({"power_span_years": 0}, "power_span_years"),
        ({"power_load_w": -5}, "power_load_w"),
        ({"power_sites_top_n": 0}, "power_sites_top_n"),
        ({"power_min_disk_fraction": 1.5}, "power_min_disk_fraction"),
        ({"power_min_disk_fraction": -0.1}, "power_min_disk_fraction"),
        ({"power_min_disk_fraction": "x"}, "power_min_disk_fraction"),
        ({"power_min_disk_fraction": [0.5]}, "power_min_disk_fraction"),
        ({"power_min_disk_fraction": True}, "power_min_disk_fraction"),
    ],
)
def test_bad_power_parameters_are_one_line_config_errors(bad, needle):
    with pytest.raises(ConfigError) as exc:
        power_params(bad)
    msg = str(exc.value)
    assert needle in msg and "\n" not in msg, msg


def test_bad_point_horizon_arguments_are_one_line_config_errors(rough):
    grid, z = rough
    dem = _dem(grid, z)
    x, y = _xy(grid, 36, 36)
    for kwargs in ({"heights_m": [-1.0]}, {"n_azimuths": 0}, {"max_distance_m": 0.0}, {"step_px": 0.0}):
        with pytest.raises(ConfigError) as exc:
            point_horizon(dem, x, y, **{"heights_m": [2.0], "n_azimuths": 36, "max_distance_m": 1_000.0, **kwargs})
        assert "\n" not in str(exc.value), kwargs


# --- the entry point and a real site ---------------------------------------------------------------


def test_site_power_takes_the_best_distinct_sites(rough, coarse_se):
    grid, z = rough
    dem = _dem(grid, z, chunks=32)
    rows, cols = np.array([10, 20, 36, 50, 60]), np.array([15, 50, 36, 20, 55])
    lon, lat = lunar.xy_to_lonlat(grid.crs, grid.x[cols], grid.y[rows])
    sites = pd.DataFrame(
        {
            "site_id": [11, 12, 13, 14, 15],
            "x": grid.x[cols],
            "y": grid.y[rows],
            "lon": lon,
            "lat": lat,
            "rank_distinct": [2, 0, 1, 3, 0],
        }
    )
    params = {"power_azimuths": 36, "power_max_distance_m": 3_000.0, "power_sites_top_n": 2}
    table, series = site_power(dem, sites, params, se=coarse_se)
    assert list(table.site_id) == [13, 13, 11, 11] and set(series) == {13, 11}
    cols = ["illumination_fraction", "longest_night_h", "longest_usable_night_h", "usable_sun_fraction",
            "earth_visibility_fraction", "battery_wh"]  # fmt: skip
    assert table[cols].notna().all().all()
    assert (table.min_disk_fraction == 0.5).all() and "= 0.5 " in table.attrs["battery"]
    # the threshold parameter reaches the table: at 0 the usable night is the no-limb night
    zero, _ = site_power(dem, sites, {**params, "power_min_disk_fraction": 0.0}, se=coarse_se)
    np.testing.assert_array_equal(zero.longest_usable_night_h, zero.longest_night_h)
    np.testing.assert_array_equal(zero.longest_night_h, table.longest_night_h)
    assert (table.longest_usable_night_h >= zero.longest_usable_night_h).all()
    np.testing.assert_allclose(zero.battery_wh, zero.load_w * zero.longest_night_h)
    assert (table.span_years > 0.99).all() and (table.step_h == 6.0).all()
    with pytest.raises(ConfigError, match="lacks column"):
        site_power(dem, sites.drop(columns="lon"), params, se=coarse_se)


@pytest.mark.shared_data
def test_real_south_polar_sites_are_sane(shared):
    """LOLA 1.6 km south polar DEM (dask, read by windows): Shackleton's PSR floor stays dark at
    10 m; the highest ground within 40 km of the pole is lit most of the time."""
    from prospect.io.readers import open_product

    dem = open_product(shared / "lola_polar_1600m" / "lola_dem_south.tif")
    assert isinstance(dem.data, da.Array)
    table = pd.read_csv(shared / "cold_trap_craters" / "crater_list.csv")
    row = table[table["Crater Name"].str.strip().str.lower() == "shackleton"].iloc[0]
    crs = lunar.lunar_crs(lunar.IAU_SOUTH_POLAR_STEREOGRAPHIC)
    psr_xy = lunar.lonlat_to_xy(crs, float(row["PSR centroid Lon (deg)"]), float(row["PSR centroid Lat (deg)"]))
    near = dem.sel(x=slice(-40_000, 40_000), y=slice(40_000, -40_000)).compute()
    i, j = np.unravel_index(int(np.nanargmax(near.values)), near.shape)
    peak_xy = (float(near.x[j]), float(near.y[i]))
    xs, ys = np.array([psr_xy[0], peak_xy[0]]), np.array([psr_xy[1], peak_xy[1]])
    lon, lat = lunar.xy_to_lonlat(crs, xs, ys)
    se = sun_earth_directions(default_times(start="2024-01-01", years=2.0, step_hours=6.0))
    out, _ = sites_power(dem, xs, ys, lon, lat, ["psr", "peak"], se, heights_m=(2.0, 10.0), load_w=100.0)
    out = out.set_index(["site_id", "height_m"])
    assert out.loc[("psr", 10.0), "illumination_fraction"] < 0.01
    assert out.loc[("psr", 2.0), "longest_night_h"] > 0.9 * 2 * 8766
    assert out.loc[("peak", 10.0), "illumination_fraction"] > 0.5
    assert out.loc[("peak", 10.0), "longest_night_h"] < 24 * 20  # shorter than a lunar night
    assert (out["longest_usable_night_h"] >= out["longest_night_h"]).all()
    assert out.loc[("peak", 10.0), "usable_sun_fraction"] > 0.4
    assert 0.0 < out.loc[("peak", 10.0), "earth_visibility_fraction"] <= 1.0


def test_power_series_figure_is_a_png(rough, coarse_se):
    from prospect.export.figures import power_series_figure

    grid, z = rough
    dem = _dem(grid, z)
    times = default_times(start="2024-01-01", years=1.0, step_hours=6.0)
    xs, ys = [float(grid.x[20]), float(grid.x[50])], [float(grid.y[30]), float(grid.y[40])]
    lon, lat = lunar.xy_to_lonlat(grid.crs, np.array(xs), np.array(ys))
    table, series = sites_power(dem, xs, ys, lon, lat, [1, 2], coarse_se, n_azimuths=36, max_distance_m=3_000.0,
                                times=times)  # fmt: skip
    assert series[1].times.dtype.kind == "M" and series[1].times.size == len(coarse_se)
    for kwargs in ({}, {"days": 60}):
        png = power_series_figure(series, table, **kwargs)
        assert png is not None and png.startswith(b"\x89PNG")
    # a table without the threshold columns (written before them) and one with NULLs still draw
    old = table.drop(columns=["longest_usable_night_h", "usable_sun_fraction", "min_disk_fraction"])
    nulls = table.astype({"min_disk_fraction": object, "longest_usable_night_h": object})
    nulls.loc[:, ["min_disk_fraction", "longest_usable_night_h"]] = None
    for t in (old, nulls):
        png = power_series_figure(series, t)
        assert png is not None and png.startswith(b"\x89PNG")
    assert power_series_figure({}) is None
