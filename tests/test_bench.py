"""The slope benchmark's pieces (benchmarks.bench_slope): DEM generators and the results writer.

Fast and timing-free: the benchmark itself is run by hand (``python -m benchmarks.bench_slope``).
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from benchmarks import bench_slope as bench
from prospect.io import pds3
from prospect.io.readers import open_product

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_fractal_tile_is_seeded_int16_with_lunar_relief():
    a = bench.make_fractal_tile(256, seed=7)
    assert a.dtype == np.int16 and a.shape == (256, 256)
    np.testing.assert_array_equal(a, bench.make_fractal_tile(256, seed=7))
    assert not np.array_equal(a, bench.make_fractal_tile(256, seed=8))
    heights = a * bench.DN_SCALE
    expected_std = bench.RELIEF_STD_M * (256 / bench.REF_SIZE) ** (bench.FRACTAL_BETA - 1)
    assert heights.std() == pytest.approx(expected_std, rel=0.01)
    assert a.min() > -32768  # -32768 stays free: some tools read it as nodata
    # slopes of a lunar-looking terrain at 20 m: mostly gentle, not a field of cliffs
    gy, gx = np.gradient(heights.astype(np.float64), bench.PIXEL_M)
    slope = np.degrees(np.arctan(np.hypot(gx, gy)))
    assert 1.0 < np.median(slope) < 20.0 and slope.max() < 60.0


def test_write_dem_opens_with_our_reader_and_heights_are_half_the_dn(tmp_path):
    lbl = bench.write_dem(tmp_path / "DEM_256.IMG", 256, seed=3)
    assert lbl == tmp_path / "DEM_256.LBL" and lbl.exists()
    dn = np.fromfile(tmp_path / "DEM_256.IMG", dtype="<i2").reshape(256, 256)
    np.testing.assert_array_equal(dn, bench.make_fractal_tile(256, seed=3))
    arr = open_product(lbl)
    assert arr.shape == (256, 256) and arr.attrs["units"] == "m"
    assert arr.attrs["crs"] == "IAU_2015:30135"
    np.testing.assert_array_equal(arr.values, dn.astype(np.float32) * 0.5)
    # pole-centred 20 m grid, like LDEM_875S_20M
    assert float(arr.x[1] - arr.x[0]) == pytest.approx(20.0)
    assert float(arr.x.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(arr.y.mean()) == pytest.approx(0.0, abs=1e-6)


def test_mirror_index_is_continuous():
    idx = bench.mirror_index(np.arange(10), 3)
    np.testing.assert_array_equal(idx, [0, 1, 2, 2, 1, 0, 0, 1, 2, 2])
    assert np.all(np.abs(np.diff(idx)) <= 1)


def test_tiled_dem_is_mirrored_continuous_and_written_strip_by_strip(tmp_path):
    tile = bench.make_fractal_tile(64, seed=11)
    size = 200
    img = tmp_path / "BIG.IMG"
    bench.write_tiled_dem(tmp_path / "WARM.IMG", 32, tile, strip_rows=16)  # first-call imports are not the writer
    tracemalloc.start()
    try:
        lbl = bench.write_tiled_dem(img, size, tile, strip_rows=16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    full_bytes = size * size * 2
    assert peak < full_bytes / 2, f"peak {peak} B: the writer built (close to) the full {full_bytes} B array"
    assert img.stat().st_size == full_bytes
    dn = np.fromfile(img, dtype="<i2").reshape(size, size)
    # the reference: reflect-tiling (numpy 'symmetric' padding repeats the edge pixel)
    expected = np.pad(tile, ((0, size - 64), (0, size - 64)), mode="symmetric")
    np.testing.assert_array_equal(dn, expected)
    # continuous: steps across the seams are no bigger than steps inside the tile
    inside = max(np.abs(np.diff(tile.astype(int), axis=a)).max() for a in (0, 1))
    for axis in (0, 1):
        assert np.abs(np.diff(dn.astype(int), axis=axis)).max() <= inside
    label = pds3.read_label(lbl)
    image = next(b for b in label.walk() if b.name == "IMAGE")
    assert (image.get("LINES"), image.get("LINE_SAMPLES")) == (size, size)
    assert (image.get("MINIMUM"), image.get("MAXIMUM")) == (int(tile.min()), int(tile.max()))
    uncompressed = label.block("UNCOMPRESSED_FILE")
    assert uncompressed is not None and uncompressed.get("FILE_NAME") == "BIG.IMG"
    arr = open_product(lbl)
    assert arr.shape == (size, size)
    np.testing.assert_array_equal(arr.values, dn.astype(np.float32) * 0.5)


def _fake_results() -> dict:
    def row(tid, seconds, rss, ratio=None, diff=None, status="ok", reason=None, ratio_default=None, ratio_mem=None):
        return {
            "label": bench.TOOL_LABELS[tid],
            "status": status,
            "reason": reason,
            "seconds": seconds,
            "mpix_per_s": None if seconds is None else 57.5 / seconds,
            "peak_rss_mb": rss,
            "ratio_to_gdaldem": ratio,
            "ratio_to_gdaldem_default": ratio_default,
            "ratio_to_gdaldem_mem": ratio_mem,
            "max_abs_diff_deg_vs_gdaldem_planar": diff,
            "runs": 1 if seconds else 0,
            "output_mb": 100.0 if seconds and tid not in bench.COMPUTE_ONLY else None,
        }

    def size_entry(size, prospect_rss, ratio):
        return {
            "size": size,
            "pixels": size * size,
            "tools": {
                "prospect": row("prospect", 2.0, prospect_rss, ratio, 0.3, ratio_default=1.5),
                "prospect_planar": row("prospect_planar", 2.1, prospect_rss, ratio, 2e-5, ratio_default=1.4),
                "gdaldem": row("gdaldem", 5.0, 60.0, 1.0, ratio_default=0.6),
                "gdaldem_default": row("gdaldem_default", 3.0, 60.0, 1.6, ratio_default=1.0),
                "xrspatial": row("xrspatial", None, None, status="skipped", reason="skipped | too big"),
                "xrspatial_dask": row("xrspatial_dask", None, None, status="unavailable", reason="not installed"),
                "prospect_compute": {**row("prospect_compute", 0.5, 500.0, ratio_mem=2.6), "child_wall_seconds": [1.6]},
                "gdaldem_mem": row("gdaldem_mem", 1.3, 300.0, ratio_mem=1.0),
            },
        }

    return {
        "schema": bench.SCHEMA,
        "created": "2025-01-01T00:00:00+00:00",
        "machine": {"cpu_count": 2, "python": "3.11", "gdaldem_version": "GDAL 3.6.2", "xarray_spatial": None},
        "startup": {"seconds": 1.0, "runs": 3},
        "sizes": {"7584": size_entry(7584, 900.0, 2.5), "30400": size_entry(30400, 1000.0, 2.2)},
    }


def test_results_writer_json_and_markdown(tmp_path):
    results = _fake_results()
    json_path, md_path = bench.write_results(results, tmp_path / "out")
    assert json_path.name == "slope.json" and md_path.name == "slope.md"
    data = json.loads(json_path.read_text())
    assert {"schema", "machine", "sizes", "targets", "prospect_peak_rss_mb_by_size"} <= set(data)
    for entry in data["sizes"].values():
        for row in entry["tools"].values():
            assert {
                "seconds",
                "mpix_per_s",
                "peak_rss_mb",
                "ratio_to_gdaldem",
                "max_abs_diff_deg_vs_gdaldem_planar",
                "status",
                "reason",
            } <= set(row)
    targets = {t["name"]: t for t in data["targets"]}
    assert targets["speed"]["status"] == "PASS" and targets["speed"]["value"] == 2.5
    assert targets["speed"]["seconds"] == {"prospect": 2.0, "gdaldem": 5.0}
    # the other two bases are shown too, a failure included
    assert targets["speed_vs_defaults"]["status"] == "FAIL" and targets["speed_vs_defaults"]["value"] == 1.5
    assert targets["speed_compute_only"]["status"] == "PASS" and targets["speed_compute_only"]["value"] == 2.6
    assert "0.50 s vs 1.30 s" in targets["speed_compute_only"]["note"]
    assert data["time_breakdown"] == {
        "size": 7584,
        "end_to_end_s": 2.0,
        "startup_imports_s": 1.0,
        "compute_s": 0.5,
        "rest_s": 0.5,
    }
    assert targets["memory"]["status"] == "PASS" and targets["memory"]["value"] == 1000.0
    assert targets["memory_scaling"]["status"] == "PASS"
    assert targets["memory_scaling"]["rss_mb"] == {"30400": 1000.0, "7584": 900.0}
    assert data["prospect_peak_rss_mb_by_size"] == {"7584": 900.0, "30400": 1000.0}
    md = md_path.read_text()
    assert "| 7584^2 | prospect slope | ok |" in md and "**PASS**" in md and "**FAIL**" in md
    assert "| 7584^2 | prospect slope_deg in-process (compute only, startup excluded) | ok | 0.50 |" in md
    assert "child wall 1.60 s" in md and "Where prospect's time goes at 7584^2" in md
    assert "DEFLATE" not in md and "ZSTD" in md
    assert "skipped / too big" in md  # a '|' in a reason does not break the table
    assert not list((tmp_path / "out").glob(".*.tmp"))  # atomic writes left no temp files


def test_targets_fail_and_not_run():
    results = _fake_results()
    results["sizes"]["30400"]["tools"]["prospect"]["peak_rss_mb"] = 2000.0
    results["sizes"]["7584"]["tools"]["prospect"]["ratio_to_gdaldem"] = 1.5
    results["sizes"]["7584"]["tools"]["prospect_compute"].update(
        status="failed", reason="exit 1", seconds=None, ratio_to_gdaldem_mem=None
    )
    results["sizes"]["7584"]["tools"]["gdaldem_default"].update(status="unavailable", seconds=None, reason="no gdaldem")
    results["sizes"]["7584"]["tools"]["prospect"]["ratio_to_gdaldem_default"] = None
    targets = {t["name"]: t for t in bench.evaluate_targets(results)}
    assert targets["speed"]["status"] == "FAIL"
    assert targets["speed_compute_only"]["status"] == "FAIL"  # prospect failing is never "not run"
    assert targets["speed_vs_defaults"]["status"] == "NOT RUN" and "no gdaldem" in targets["speed_vs_defaults"]["note"]
    assert targets["memory"]["status"] == "FAIL"
    assert targets["memory_scaling"]["status"] == "FAIL"  # 2000 / 900 > 1.25
    del results["sizes"]["30400"]
    targets = {t["name"]: t for t in bench.evaluate_targets(results)}
    assert targets["memory"]["status"] == "NOT RUN" and targets["memory_scaling"]["status"] == "NOT RUN"
    assert "--big" in bench.render_markdown({**results, "targets": list(targets.values())})


def test_gdaldem_gets_exactly_prospects_creation_options(monkeypatch):
    from prospect.io import writers

    cmd = bench.gdaldem_command("gdaldem", Path("DEM.LBL"), Path("out.tif"), compressed=True)
    expected = [x for k, v in writers.STREAM_CREATION_OPTIONS.items() for x in ("-co", f"{k}={v}")]
    assert cmd[:7] == ["gdaldem", "slope", "DEM.LBL", "out.tif", "-s", "2", "-q"] and cmd[7:] == expected
    assert "-co" not in bench.gdaldem_command("gdaldem", Path("DEM.LBL"), Path("out.tif"), compressed=False)
    # read from the writer when the command is built, not copied
    monkeypatch.setitem(writers.STREAM_CREATION_OPTIONS, "ZSTD_LEVEL", "9")
    assert "ZSTD_LEVEL=9" in bench.gdaldem_command("gdaldem", Path("a"), Path("b"), compressed=True)
    assert "ZSTD" in bench.TOOL_LABELS["gdaldem"] and "DEFLATE" not in bench.TOOL_LABELS["gdaldem"]
    assert bench.gdaldem_mem_command("gdaldem", Path("DEM.LBL")) == [
        "gdaldem",
        "slope",
        "-q",
        "-s",
        "2",
        "-of",
        "MEM",
        "DEM.LBL",
        "mem",
    ]


def test_prospect_compute_child_times_and_reports_json(tmp_path):
    lbl = bench.write_dem(tmp_path / "DEM_128.IMG", 128, seed=5)
    info = bench.run_prospect_compute(str(lbl), chunks=64)
    assert info["shape"] == [128, 128] and info["dtype"] == "float32" and info["seconds"] > 0
    out = tmp_path / "child.out"
    out.write_text("some noise\n" + json.dumps(info) + "\n")
    assert bench.read_inprocess_seconds(out) == info["seconds"]
    out.write_text("no json here\n")
    assert bench.read_inprocess_seconds(out) is None
