"""Fast checks of the horizon benchmark's pieces on tiny DEMs (the full run is `make bench-illumination`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import bench_illumination as B
from benchmarks.bench_slope import write_dem
from prospect.illumination import horizon as H
from prospect.io.readers import open_product


@pytest.fixture(scope="module")
def dem64(tmp_path_factory):
    lbl = write_dem(tmp_path_factory.mktemp("dem") / "D.IMG", 64)
    return open_product(lbl).load()


@pytest.mark.parametrize("workers", [1, 2])
def test_streamed_runner_equals_cube_reduction(dem64, workers):
    az = np.arange(8) * 45.0 + 3.0
    dmax = 5_000.0
    cube = H.horizon_angles(dem64, az, max_distance_m=dmax, workers=1).values
    z, args = B.kernel_inputs(dem64)  # what horizon_angles hands its kernel: the cube below must match
    stats = B.stream_horizon_stats(z, args, az, dmax, workers=workers)
    with np.errstate(all="ignore"):
        ref_max = np.fmax.reduce(cube, axis=0)
        cnt = np.isfinite(cube).sum(axis=0)
        ref_mean = np.where(cnt > 0, np.nansum(cube, axis=0) / np.maximum(cnt, 1), np.nan)
    np.testing.assert_array_equal(stats["max"], ref_max)
    np.testing.assert_array_equal(stats["count"], cnt)
    np.testing.assert_allclose(stats["mean"], ref_mean, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert stats["max"].dtype == np.float32 and stats["max"].shape == dem64.shape


def test_crop_is_central_and_georeferenced(dem64):
    sub = B.crop(dem64, 16)
    assert sub.shape == (16, 16)
    np.testing.assert_array_equal(sub.values, dem64.values[24:40, 24:40])
    B.kernel_inputs(sub)  # still a valid grid for the kernels


def test_brute_force_ratios_rows(dem64):
    rows = B.brute_force_ratios(dem64, 2_000.0, sizes=[32], counts={(32, "lines"): 4, (32, "ray"): 2})
    assert [(r["size"], r["sampling"]) for r in rows] == [(32, "lines"), (32, "ray")]
    lines = rows[0]
    assert lines["max_abs_diff_deg"] < 1e-6 and lines["nan_mismatch"] == 0
    for r in rows:
        assert r["sweep_s_per_az"] > 0 and r["brute_s_per_az"] > 0 and r["ratio"] > 0


def test_run_stream_child(tmp_path):
    lbl = write_dem(tmp_path / "D.IMG", 48)
    res = B.run_stream_child(str(lbl), 4, 3_000.0, 2)
    assert res["shape"] == [48, 48] and res["azimuths"] == 4
    assert res["seconds"] >= res["sweep_seconds"] > 0
    assert np.isfinite(res["checksum_mean_of_max_deg"])


def test_tiled_child_equals_the_in_memory_child(tmp_path):
    """The timed production path (tiles, lazily read DEM) reduces to the same maps as the whole-raster sweep."""
    lbl = write_dem(tmp_path / "D.IMG", 80)
    whole = B.run_stream_child(str(lbl), 8, 3_000.0, 2)
    tiled = B.run_stream_child(str(lbl), 8, 3_000.0, 2, tile_px=32)
    assert tiled["plan"].startswith("tiles of 32 px") and whole["plan"].startswith("whole raster")
    assert tiled["checksum_mean_of_max_deg"] == pytest.approx(whole["checksum_mean_of_max_deg"], abs=1e-5)
    assert tiled["nan_pixels_in_max"] == whole["nan_pixels_in_max"]


def test_far_field_accuracy_report(dem64):
    acc = B.far_field_accuracy(
        dem64, 50_000.0, (16, 48, 16, 48), n_azimuths=36, every=6, tile_px=32, near_px=8, far_factor=4
    )
    assert len(acc["azimuths"]) == 6 and acc["nan_mismatch"] == 0
    assert 0.0 <= acc["median_abs_diff_deg"] <= acc["p99_abs_diff_deg"] <= acc["max_abs_diff_deg"] < 20.0
    assert "averaged 4x4" in acc["plan"]


def test_grass_angle_parsing():
    assert B.parse_grass_angle("hz_000", 10) == 0.0
    assert B.parse_grass_angle("hz_350", 10) == 350.0
    assert B.parse_grass_angle("hz_022_5", 22.5) == 22.5
    assert B.parse_grass_angle("hz_xyz", 10) is None


def test_grass_skip_never_fails(dem64, tmp_path):
    res = B.run_grass(dem64, 1_000.0, tmp_path, tmp_path, None, skip=True)
    assert res["status"] == "skipped"


def _fake_results():
    return {
        "schema": B.SCHEMA,
        "date": "2025-01-01T00:00:00+00:00",
        "size": 64,
        "n_azimuths": 8,
        "max_distance_km": 5.0,
        "workers": 2,
        "target_seconds": B.TARGET_S,
        "machine": {"cpu_model": "x"},
        "stream": {"ok": True, "seconds": 1.0, "wall_seconds": 2.0, "mpix_az_per_s": 3.0, "peak_rss_mb": 100.0},
        "verdict": "PASS",
        "brute_force": [
            {
                "size": 32,
                "sampling": "lines",
                "n_azimuths": 4,
                "sweep_s_per_az": 0.001,
                "brute_s_per_az": 0.01,
                "ratio": 10.0,
                "max_abs_diff_deg": 0.0,
                "median_abs_diff_deg": 0.0,
                "p95_abs_diff_deg": 0.0,
            }
        ],
        "grass": {"status": "unavailable", "reason": "not installed"},
        "total_seconds": 5.0,
    }


def test_write_results_keys_and_markdown(tmp_path):
    jp, mp = B.write_results(_fake_results(), tmp_path / "out")
    assert jp.name == "illumination.json" and mp.name == "illumination.md"
    data = json.loads(jp.read_text())
    for key in (
        "schema",
        "size",
        "n_azimuths",
        "max_distance_km",
        "workers",
        "target_seconds",
        "stream",
        "verdict",
        "brute_force",
        "grass",
        "total_seconds",
        "machine",
    ):
        assert key in data
    md = mp.read_text()
    assert "**PASS**" in md and "| 32^2 | lines |" in md and "unavailable" in md
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_tile_lines_parse_the_stage_progress():
    err = (
        "illumination: tile 1/4 rows 0:64 cols 0:64 (12 s)\n"
        "something else\n"
        "illumination: tile 2/4 rows 0:64 cols 64:100 (20 s)\n"
    )
    assert B.tile_lines(err) == [
        {"tile": 1, "of": 4, "rows": 64, "cols": 64, "elapsed_s": 12},
        {"tile": 2, "of": 4, "rows": 64, "cols": 36, "elapsed_s": 20},
    ]


def test_run_stage_times_the_real_command_and_hashes_its_products(tmp_path):
    lbl = write_dem(tmp_path / "D.IMG", 48)
    res = B.run_stage(
        lbl, tmp_path / "out", tmp_path, stem="stage", n_azimuths=64, step_hours=240.0, extra=["--tile", "32"]
    )
    assert res["ok"], res.get("error")
    assert res["wall_seconds"] > 0 and res["peak_rss_mb"] > 0
    assert res["n_tiles"] == 4 and res["tile_px"] == 32
    assert sorted(res["sha256"]) == sorted(
        ["illumination_fraction.tif", "longest_darkness_h.tif", "psr_mask.tif", "earth_visibility_fraction.tif"]
    )


def test_probe_child_times_production_tiles(tmp_path):
    lbl = write_dem(tmp_path / "D.IMG", 64)
    res = B.probe_child(str(lbl), [[0, 32, 0, 32]], 64, 240.0, 2.0)
    assert res["windows"] == [[0, 32, 0, 32]] and len(res["tile_seconds"]) == 1 and res["tile_seconds"][0] > 0
    assert res["n_tiles"] >= 1 and res["shape"] == [64, 64]
