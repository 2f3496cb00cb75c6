"""Out-of-core horizons: windows, the far-field annulus, multi-resolution accuracy, tiled products, resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio

from benchmarks.bench_slope import make_fractal_tile
from prospect.illumination import _horizon_kernels as K
from prospect.illumination.ephemeris import default_times, sun_earth_directions
from prospect.illumination.horizon import horizon_angles, kernel_inputs
from prospect.illumination.maps import PRODUCTS
from prospect.illumination.products import SunSamples, illumination_products
from prospect.illumination.tiles import TiledHorizon
from prospect.pipeline.stages import PARTIAL_DIR, write_illumination
from prospect.synthetic import south_polar_scene


@pytest.fixture(scope="module")
def scene():
    return south_polar_scene(seed=5, shape=(150, 130), pixel_m=200.0)


@pytest.fixture(scope="module")
def fractal_dem(scene):
    """A 20 m fractal DEM on a south polar grid 40 km from the pole (rough at every scale)."""
    dn = make_fractal_tile(384, seed=11).astype("float32") * 0.5
    dem = scene.dem[:1, :1]  # only for its CRS encoding
    import xarray as xr

    x = 40_000.0 + (np.arange(384) + 0.5) * 20.0
    y = 20_000.0 - (np.arange(384) + 0.5) * 20.0
    out = xr.DataArray(dn, dims=("y", "x"), coords={"y": y, "x": x}, attrs={"units": "m", "product_id": "FRACTAL"})
    return out.rio.write_crs(dem.rio.crs).rio.write_transform()


def test_fast_atan_matches_libm():
    x = np.concatenate([np.linspace(-60, 60, 120_001), np.linspace(-1.1, 1.1, 50_001), [0.0, np.inf, -np.inf]])
    got = np.array([K.fast_atan(v) for v in x[::7]] + [K.fast_atan(v) for v in x[-3:]])
    want = np.arctan(np.concatenate([x[::7], x[-3:]]))
    assert np.abs(got - want).max() < 1e-9
    assert math.isnan(K.fast_atan(float("nan")))


def test_atan_series_matches_libm_where_it_is_used():
    x = np.linspace(-K.SERIES_MAX_X, K.SERIES_MAX_X, 20_001)
    got = np.array([K.atan_series(v) for v in x])
    # the first term left out, x^11 / 11, bounds the error (4.4e-16: ~1.5e-9 m of sigma)
    assert np.abs(got - np.arctan(x)).max() <= 1.01 * K.SERIES_MAX_X**11 / 11


@pytest.mark.parametrize("az", [0.0, 90.0, 180.0, 270.0, 45.0])
def test_every_pixel_is_written_at_cardinal_azimuths(az):
    """Regression: cos(90 deg) = 6e-17, and the line range overflowed int64, leaving 70 % of pixels unwritten."""
    z = np.random.default_rng(0).normal(0.0, 5.0, (64, 50))
    out = np.full(z.shape, 1e30, dtype=np.float32)
    K.horizon_sweep(z, math.radians(az), K.PLANAR, 0.0, 0.0, 20.0, -20.0, 1737400.0, 1e6, 0.0, out)
    assert not (out == np.float32(1e30)).any()


@pytest.mark.parametrize("az", [0.0, 45.0, 33.0, 90.0, 121.0, 179.0])
def test_an_opposite_pair_swept_at_once_equals_two_sweeps(fractal_dem, az):
    """horizon_sweep_window_pair (each line sampled once, swept both ways) against the single
    sweeps toward az and az + 180 on a window with halo: every form, a mast, a far-field annulus."""
    z, args, _, _ = kernel_inputs(fractal_dem[:200, :190], False)
    azr = math.radians(az)
    window = (40, 35, 110, 120)  # row0, col0, rows, cols
    r0, c0, nr, nc = window
    for dmin, dmax, hobs, form in (
        (0.0, 3000.0, 2.0, K.DEGREES),
        (0.0, 2500.0, 0.0, K.TANGENT),
        (600.0, 4000.0, 0.0, K.FAR),
    ):
        pair = [np.full((nr, nc), np.nan, np.float32) for _ in range(4)]
        K.horizon_sweep_window_pair(z, azr, *args, dmin, dmax, hobs, r0, c0, *pair, form)
        for azs, (out, out_b) in ((az, pair[:2]), (az + 180.0, pair[2:])):
            one = [np.full((nr, nc), np.nan, np.float32) for _ in range(2)]
            K.horizon_sweep_window(z, math.radians(azs), *args, dmin, dmax, hobs, r0, c0, *one, form)
            assert np.array_equal(np.isnan(out), np.isnan(one[0])), (az, azs, form)
            assert np.isfinite(out).mean() > 0.9
            if form == K.FAR:  # the tangent at the observer's own height (the targets may tie to rounding)
                zo = z[r0 : r0 + nr, c0 : c0 + nc]
                got, want = out - zo * out_b, one[0] - zo * one[1]
                assert np.nanmax(np.abs(got - want)) < 1e-5, (az, azs)
            else:
                assert np.nanmax(np.abs(out - one[0])) < (1e-5 if form == K.DEGREES else 1e-7), (az, azs, form)


def test_far_field_annulus_matches_brute_force(fractal_dem):
    """Targets only beyond dmin: the sweep's annulus against a direct march over the same samples."""
    z, args, _, _ = kernel_inputs(fractal_dem[:160, :170], False)
    for az in (0.0, 33.0, 90.0, 200.0, 311.0):
        azr = math.radians(az)
        tan = np.empty(z.shape, np.float32)
        K.horizon_sweep_window(z, azr, *args, 600.0, 2500.0, 0.0, 0, 0, tan, tan, K.TANGENT)
        ref = np.empty(z.shape, np.float32)
        K.horizon_brute_lines(z, azr, *args, 2500.0, ref, 600.0)
        got = np.degrees(np.arctan(tan))
        assert np.array_equal(np.isnan(got), np.isnan(ref)), az
        assert np.nanmax(np.abs(got - ref)) < 1e-4, az
        # the far-field form: A - z B gives back tan(angle) at the observer's own height (t = 0 lines)
        if az in (0.0, 90.0):
            A = np.empty(z.shape, np.float32)
            B = np.empty(z.shape, np.float32)
            K.horizon_sweep_window(z, azr, *args, 600.0, 2500.0, 0.0, 0, 0, A, B, K.FAR)
            ok = ~np.isnan(tan)
            assert np.allclose((A - z * B)[ok], tan[ok], atol=2e-5)


def test_exact_tiles_equal_the_whole_raster(scene):
    """far_factor=1: tiles (not dividing the raster) with a halo of max_distance reproduce horizon_angles."""
    full = horizon_angles(scene.dem, n_azimuths=24, max_distance_m=20_000.0).values
    th = TiledHorizon(scene.dem, 24, 20_000.0, tile_px=48, far_factor=1, workers=2)
    assert not th.plan.multiresolution and th.plan.halo_px == 102
    got = np.full_like(full, np.nan)
    for (r0, r1, c0, c1), cube in th:
        assert cube.dims == ("azimuth", "y", "x") and cube.attrs["units"] == "deg"
        got[:, r0:r1, c0:c1] = cube.values
    assert np.array_equal(np.isnan(got), np.isnan(full))
    assert np.nanmax(np.abs(got - full)) < 1e-4


def test_a_reused_cube_buffer_gives_the_same_cubes_and_stays_home(fractal_dem):
    """compute(reuse=True) writes into one kept buffer (the stage's tile loop): each cube equals a
    fresh one, a smaller edge tile fits the buffer, and the buffer is never part of what is sent
    to cluster workers (shared_state)."""
    from prospect.illumination.tiles import shared_state

    th = TiledHorizon(fractal_dem, 12, 150_000.0, tile_px=128, near_px=48, far_factor=4, workers=2)
    windows = [(0, 128, 0, 128), (128, 256, 256, 384), (256, 384, 320, 384)]
    for w in windows:
        fresh = th.compute(w).values
        reused = th.compute(w, reuse=True)
        assert np.array_equal(reused.values, fresh, equal_nan=True), w
    assert th._cube_buffer is not None and th._cube_buffer.size == 12 * 128 * 128
    assert "_cube_buffer" not in shared_state(th)


def test_multiresolution_far_field_is_close_to_exact(fractal_dem):
    """Full resolution within 48 px, a 4x coarser DEM beyond: p99 and median error against the exact sweep."""
    full = horizon_angles(fractal_dem, n_azimuths=36, max_distance_m=150_000.0, workers=2).values
    th = TiledHorizon(fractal_dem, 36, 150_000.0, tile_px=128, near_px=48, far_factor=4, workers=2)
    assert th.plan.multiresolution and th.plan.near_distance_m == pytest.approx(960.0, rel=1e-3)
    got = np.full_like(full, np.nan)
    for (r0, r1, c0, c1), cube in th:
        got[:, r0:r1, c0:c1] = cube.values
    assert np.array_equal(np.isnan(got), np.isnan(full))
    err = np.abs(got - full)
    assert np.nanmedian(err) < 0.01
    assert np.nanpercentile(err, 99) < 0.25
    # without the far field the horizon would be far too low: the coarse field carries real information
    near_only = TiledHorizon(fractal_dem, 36, 960.0, tile_px=128, far_factor=1).compute((128, 256, 128, 256)).values
    assert np.nanmean(full[:, 128:256, 128:256] - near_only) > 5 * np.nanmean(err[:, 128:256, 128:256])


def test_bad_tiling_parameters_are_config_errors(scene):
    from prospect.errors import ConfigError

    for kw in ({"tile_px": 4}, {"near_px": 0}, {"far_factor": 0}, {"tile_px": 64.5}, {"observer_height_m": -1.0}):
        with pytest.raises(ConfigError):
            TiledHorizon(scene.dem, 64, 20_000.0, **kw)


@pytest.fixture(scope="module")
def samples():
    se = sun_earth_directions(default_times(start="2024-01-01", years=1.0, step_hours=12.0))
    return SunSamples.from_ephemeris(se)


def test_tiled_products_equal_in_memory_products_and_resume_after_a_crash(scene, samples, tmp_path, monkeypatch):
    params = dict(n_azimuths=64, max_distance_m=20_000.0, tile_px=64, far_factor=1, workers=2)
    want = illumination_products(horizon_angles(scene.dem, n_azimuths=64, max_distance_m=20_000.0), samples)

    # a crash in the fourth tile: no product file appears, three tiles are kept
    import prospect.illumination.maps as maps

    real = maps.illumination_products
    calls = {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(maps, "illumination_products", crashing)
    out = tmp_path / "ill"
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_illumination(scene.dem, out, samples, **params)
    assert not any((out / f"{p}.tif").exists() for p in PRODUCTS)
    assert not list(out.glob(".*.tmp"))
    assert len(list((out / PARTIAL_DIR).rglob("tile_*.npz"))) == 3

    # the rerun computes only the missing tiles and gives the in-memory result
    calls["n"] = -100
    paths = write_illumination(scene.dem, out, samples, **params)
    assert calls["n"] == -100 + 9 - 3  # 3 x 3 tiles of 64 px over 150 x 130, three loaded
    assert not (out / PARTIAL_DIR).exists()
    for name in PRODUCTS:
        with rasterio.open(paths[name]) as ds:
            got = ds.read(1, masked=True).filled(np.nan)
            assert ds.crs.to_wkt().count("Moon") >= 1 and ds.tags(1)["units"] == want[name].attrs["units"]
            assert ds.tags()["prospect_horizon_tiling"].startswith("tiles of 64 px")
        ref = want[name].values.astype("float32")
        assert np.array_equal(np.isnan(got), np.isnan(ref)), name
        assert np.nanmax(np.abs(got - ref)) <= 1e-6 * max(1.0, np.nanmax(np.abs(ref))), name


# --- the tile side follows from the memory budget ---------------------------------------------


def test_the_tile_follows_from_the_memory_budget():
    from prospect.errors import ConfigError
    from prospect.illumination.tiles import BASE_MB, TILE_QUANTUM_PX, tile_for_memory, tile_memory_bytes

    for memory_mb, n_az in ((3072, 360), (2048, 360), (8192, 720), (1536, 64)):
        t = tile_for_memory(memory_mb, n_az, 192, 2)
        assert t % TILE_QUANTUM_PX == 0
        budget = (memory_mb - BASE_MB) * 1e6
        assert tile_memory_bytes(t, n_az, 192, 2) <= budget < tile_memory_bytes(t + TILE_QUANTUM_PX, n_az, 192, 2)
    assert tile_for_memory(2048, 360, 192) < tile_for_memory(3072, 360, 192) < tile_for_memory(6144, 360, 192)
    assert tile_for_memory(3072, 720, 192) < tile_for_memory(3072, 360, 192)
    with pytest.raises(ConfigError, match="cannot hold one tile"):
        tile_for_memory(BASE_MB, 360, 192)


@pytest.mark.parametrize(("side", "largest"), [(7584, 1216), (30400, 1216), (96, 1216), (1000, 448), (5000, 4096)])
def test_balanced_tiles_are_as_few_as_the_budget_allows_and_nearly_equal(side, largest):
    from prospect.illumination.tiles import balanced_tile

    t = balanced_tile(side, largest)
    assert t <= largest
    n = math.ceil(side / t)
    assert n == math.ceil(side / largest)  # no more tiles than the largest allowed tile needs
    assert side - (n - 1) * t >= t - 64 * n or n == 1  # the last tile is not a sliver


def test_the_default_tile_fits_the_budget_and_an_explicit_one_wins(scene):
    th = TiledHorizon(scene.dem, 64, 20_000.0, workers=2, memory_mb=1000)
    assert th.plan.tile_px >= 128
    assert TiledHorizon(scene.dem, 64, 20_000.0, tile_px=32, memory_mb=1000).plan.tile_px == 32
