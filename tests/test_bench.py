"""The slope benchmark's pieces (prospect.bench): DEM generators and the results writer.

Fast and timing-free: the benchmark itself is run by hand (``python -m prospect.bench``).
"""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from prospect import bench
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
    assert label.block("UNCOMPRESSED_FILE").get("FILE_NAME") == "BIG.IMG"
    arr = open_product(lbl)
    assert arr.shape == (size, size)
    np.testing.assert_array_equal(arr.values, dn.astype(np.float32) * 0.5)


def _fake_results() -> dict:
    def row(tid, seconds, rss, ratio=None, diff=None, status="ok", reason=None):
        return {"label": bench.TOOL_LABELS[tid], "status": status, "reason": reason, "seconds": seconds,
                "mpix_per_s": None if seconds is None else 57.5 / seconds, "peak_rss_mb": rss,
                "ratio_to_gdaldem": ratio, "max_abs_diff_deg_vs_gdaldem_planar": diff, "runs": 1 if seconds else 0,
                "output_mb": 100.0 if seconds else None}

    def size_entry(size, prospect_rss, ratio):
        return {"size": size, "pixels": size * size, "tools": {
            "prospect": row("prospect", 2.0, prospect_rss, ratio, 0.3),
            "prospect_planar": row("prospect_planar", 2.1, prospect_rss, ratio, 2e-5),
            "gdaldem": row("gdaldem", 5.0, 60.0, 1.0),
            "gdaldem_default": row("gdaldem_default", 3.0, 60.0, 1.6),
            "xrspatial": row("xrspatial", None, None, status="skipped", reason="skipped | too big"),
            "xrspatial_dask": row("xrspatial_dask", None, None, status="unavailable", reason="not installed"),
        }}

    return {
        "schema": bench.SCHEMA, "created": "2025-01-01T00:00:00+00:00",
        "machine": {"cpu_count": 2, "python": "3.11", "gdaldem_version": "GDAL 3.6.2", "xarray_spatial": None},
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
            assert {"seconds", "mpix_per_s", "peak_rss_mb", "ratio_to_gdaldem",
                    "max_abs_diff_deg_vs_gdaldem_planar", "status", "reason"} <= set(row)
    targets = {t["name"]: t for t in data["targets"]}
    assert targets["speed"]["status"] == "PASS" and targets["speed"]["value"] == 2.5
    assert targets["memory"]["status"] == "PASS" and targets["memory"]["value"] == 1000.0
    assert targets["memory_scaling"]["status"] == "PASS"
    assert targets["memory_scaling"]["rss_mb"] == {"30400": 1000.0, "7584": 900.0}
    assert data["prospect_peak_rss_mb_by_size"] == {"7584": 900.0, "30400": 1000.0}
    md = md_path.read_text()
    assert "| 7584^2 | prospect slope | ok |" in md and "**PASS**" in md
    assert "skipped / too big" in md  # a '|' in a reason does not break the table
    assert not list((tmp_path / "out").glob(".*.tmp"))  # atomic writes left no temp files


def test_targets_fail_and_not_run():
    results = _fake_results()
    results["sizes"]["30400"]["tools"]["prospect"]["peak_rss_mb"] = 2000.0
    results["sizes"]["7584"]["tools"]["prospect"]["ratio_to_gdaldem"] = 1.5
    targets = {t["name"]: t for t in bench.evaluate_targets(results)}
    assert targets["speed"]["status"] == "FAIL"
    assert targets["memory"]["status"] == "FAIL"
    assert targets["memory_scaling"]["status"] == "FAIL"  # 2000 / 900 > 1.25
    del results["sizes"]["30400"]
    targets = {t["name"]: t for t in bench.evaluate_targets(results)}
    assert targets["memory"]["status"] == "NOT RUN" and targets["memory_scaling"]["status"] == "NOT RUN"
    assert "--big" in bench.render_markdown({**results, "targets": list(targets.values())})
