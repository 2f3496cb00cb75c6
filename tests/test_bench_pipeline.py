"""Fast checks of the pipeline benchmark's pieces (the full run is `make bench-pipeline`)."""

from __future__ import annotations

from benchmarks import bench_pipeline as B
from benchmarks.bench_slope import write_dem
from prospect.pipeline.spec import load_pipeline


def test_stage_lines_parse_the_run_log():
    log = (
        "2026-12-03 INFO [1/5] terrain ...\n"
        "2026-12-03 INFO [1/5] terrain done in 12.5 s (peak RSS so far 812 MB)\n"
        "2026-12-03 INFO [2/5] illumination current (cached), skipped\n"
        "2026-12-03 INFO resources: ice done in 1.0 s (peak RSS so far 850 MB)\n"
        "2026-12-03 INFO resources: he3 done in 1.9 s (peak RSS so far 900 MB)\n"
        "2026-12-03 INFO [3/5] resources done in 3.0 s (peak RSS so far 900 MB)\n"
    )
    assert B.stage_lines(log) == [
        {"stage": "terrain", "seconds": 12.5, "peak_rss_so_far_mb": 812.0},
        {"stage": "resources", "seconds": 3.0, "peak_rss_so_far_mb": 900.0},
        {"stage": "resources.ice", "seconds": 1.0, "peak_rss_so_far_mb": 850.0},
        {"stage": "resources.he3", "seconds": 1.9, "peak_rss_so_far_mb": 900.0},
    ]


def test_the_benchmark_pipeline_is_a_valid_pipeline_on_the_written_dem(tmp_path, monkeypatch):
    monkeypatch.setattr(B, "write_dem", lambda img, size: write_dem(img, 32))
    spec = B.inputs(tmp_path, 32)
    pipeline = load_pipeline(spec)
    assert list(pipeline.stages) == ["terrain", "illumination", "resources", "sites", "exports"]
    assert pipeline.stages["illumination"]["azimuths"] == 360
    assert "fractal_32.LBL" in pipeline.data["dem"].describe()
