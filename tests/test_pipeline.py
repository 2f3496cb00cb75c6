"""``prospect run``: pipeline definitions, the full layout from the demo and from real
data, the stage cache, resuming after ``kill -9``, and a process-worker Dask cluster.

Runs are compared file by file (sha256 of everything in the run folder except
``logs/``), in the same folder path (stages record absolute input paths) and with
``SOURCE_DATE_EPOCH`` fixed (the export time in the report and ``run.json``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "pipelines"
EPOCH = "1795000000"
LAYOUT = ("sites.gpkg", "project.qgz", "report.html", "run.json")

#: a small real pipeline (3.2 km pixels, 64 azimuths) for the crash and cluster tests
TINY = """\
pipeline: tiny_real
seed: 3
data:
  dem: lunar_toolkit_lola_south_1600m
  psr: lola_psr_south_5km2
  cold_traps: cold_trap_craters
  labels: artemis3_regions_2022
grid:
  crs: IAU_2015:30135
  bounds: {value: [-240, -240, 240, 240], unit: km}
  resolution: {value: 3200, unit: m}
stages:
  terrain: {}
  illumination: {azimuths: 64, step: {value: 48, unit: h}, max_distance: {value: 100, unit: km}}
  resources: {ice: {samples: 8}}
  sites: {evaluate: false, config: {mc_samples: 16, dem_draws: 1, ensemble_members: 4, candidate_spacing_m: 3200}}
  exports: {}
"""


def _tree(run: Path) -> dict[str, str]:
    return {
        p.relative_to(run).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.relative_to(run).parts[0] != "logs"
    }


def _assert_layout(run: Path, *, maps: set[str]) -> None:
    for name in LAYOUT:
        assert (run / name).is_file(), name
    assert {p.stem for p in (run / "maps").glob("*.tif")} >= maps
    assert len(list((run / "logs").glob("run-*.log"))) >= 1
    assert not [p for p in run.rglob("*") if ".partial" in p.as_posix() or p.name.endswith(".tmp")]
    item = json.loads((run / "run.json").read_text())
    assert item["properties"]["prospect:pipeline"]["stages"].keys() >= {"sites", "exports"}


def _env(**extra: str) -> dict[str, str]:
    return {"SOURCE_DATE_EPOCH": EPOCH, **extra}


# --- definitions -----------------------------------------------------------------------------


def test_every_shipped_pipeline_validates():
    from prospect.pipeline.spec import load_pipeline

    names = {p.stem for p in PIPELINES.glob("*.yaml")}
    assert names >= {"demo", "south_pole_coarse", "south_pole_lola", "global_he3"}
    for path in PIPELINES.glob("*.yaml"):
        spec = load_pipeline(path)
        assert spec.name == path.stem and spec.stages


BASE = {"pipeline": "t", "data": {"dem": "lunar_toolkit_lola_south_1600m"}, "stages": {"terrain": {}}}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"stagez": {}}, "(top level): unknown key 'stagez'"),
        ({"stages": {"illumination": {"azimuth": 64}}}, "stages.illumination: unknown key 'azimuth'"),
        (
            {"stages": {"illumination": {"darkness_min_disk_fraction": 1.5}}},
            "stages.illumination.darkness_min_disk_fraction: 1.5 is greater than the maximum of 1",
        ),
        (
            {"stages": {"illumination": {"step": {"value": 24, "unit": "kg"}}}},
            "stages.illumination.step: unit 'kg' is not a duration",
        ),
        (
            {
                "grid": {
                    "crs": "IAU_2015:30135",
                    "bounds": {"value": [-1, -1, 1, 1], "unit": "furlong"},
                    "resolution": 100,
                }
            },
            "grid.bounds: unit 'furlong' is not a length",
        ),
        ({"stages": {"resources": {"he3": {}}}}, "stages.resources.he3 needs data.tio2"),
        ({"data": {"tio2": "lp_grs_ti_5deg"}, "stages": {"sites": {}}}, "stages.sites needs data.dem"),
        ({"stages": {"sites": {"config": {"site_radius": 100}}}}, "stages.sites.config:"),
        ({"data": {"dem": "no_such_product"}}, "data.dem: 'no_such_product' is neither a data-manifest id"),
        ({"grid": {"crs": "EPSG:4326", "bounds": [0, 0, 1, 1], "resolution": 1}}, "grid"),
    ],
)
def test_bad_pipelines_fail_in_one_line_naming_file_and_key(tmp_path, change, message):
    import yaml

    spec = {**BASE, **change}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    res = run_cli("run", str(path), "--out", str(tmp_path / "out"))
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and str(path) in res.stderr and message in res.stderr, res.stderr
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.shared_data
def test_a_run_folder_is_not_reused_without_resume(shared, tmp_path):
    spec = tmp_path / "p.yaml"
    spec.write_text(
        "pipeline: p\ndata: {tio2: lp_grs_ti_5deg}\nstages: {resources: {he3: {samples: 0}}}\n"
        "grid: {global_resolution: {value: 5, unit: deg}}\n"
    )
    res = run_cli("run", str(spec), "--out", str(tmp_path / "r"), "--no-progress")
    assert res.returncode == 0, res.stderr
    res = run_cli("run", str(spec), "--out", str(tmp_path / "r"))
    assert res.returncode == 2 and "pass --resume" in res.stderr
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("mine")
    res = run_cli("run", str(spec), "--out", str(tmp_path / "other"))
    assert res.returncode == 2 and "not empty and holds no prospect run" in res.stderr


# --- the embedded demo -----------------------------------------------------------------------


def test_make_demo_runs_the_demo_pipeline():
    res = subprocess.run(["make", "-n", "demo"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0
    assert "prospect run --resume pipelines/demo.yaml --out runs/demo" in res.stdout


def test_demo_pipeline_produces_the_full_layout_offline(tmp_path):
    """What `make demo` runs, from an empty cache: the synthetic scene is generated, every stage runs."""
    run = tmp_path / "demo"
    res = run_cli(
        "run",
        str(PIPELINES / "demo.yaml"),
        "--out",
        str(run),
        "--no-progress",
        env=_env(PROSPECT_CACHE=str(tmp_path / "cache")),
    )
    assert res.returncode == 0, res.stderr[-3000:]
    _assert_layout(
        run, maps={"dem_m", "hillshade", "slope_deg", "illumination_fraction", "ice_favourability", "he3_ppb"}
    )
    assert f"{run / 'report.html'}: report.html" in res.stdout and f"{run / 'project.qgz'}" in res.stdout
    record = json.loads((run / "ranking.json").read_text())
    assert record["passing_all"] > 1000 and record["learned"]["positives"] > 0
    assert (tmp_path / "cache" / "synthetic").is_dir()  # the scene was written to the cache


# --- the real coarse pipeline ------------------------------------------------------------------


@pytest.mark.shared_data
def test_real_coarse_pipeline_full_layout_then_a_rerun_is_all_cached(shared, tmp_path):
    run = tmp_path / "south_pole"
    res = run_cli("run", str(PIPELINES / "south_pole_coarse.yaml"), "--out", str(run), "--no-progress", env=_env())
    assert res.returncode == 0, res.stderr[-3000:]
    _assert_layout(
        run,
        maps={
            "dem_m",
            "hillshade",
            "slope_deg",
            "illumination_fraction",
            "longest_darkness_h",
            "ice_favourability",
            "ice_stability_class",
            "he3_ppb",
        },
    )
    record = json.loads((run / "ranking.json").read_text())
    assert record["learned"]["regions_with_candidates"] == 13
    assert record["inputs"]["psr_fraction"] == "lola_psr_south_5km2"
    first = _tree(run)
    res = run_cli(
        "run", str(PIPELINES / "south_pole_coarse.yaml"), "--out", str(run), "--no-progress", "--resume", env=_env()
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stderr.count("current (cached), skipped") == 5, res.stderr
    assert _tree(run) == first


# --- crash and resume, Dask cluster --------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, shared):
    """The tiny pipeline's uninterrupted run: its folder path and its files' sha256."""
    root = tmp_path_factory.mktemp("tiny")
    (root / "tiny.yaml").write_text(TINY)
    run = root / "run"
    res = run_cli("run", str(root / "tiny.yaml"), "--out", str(run), "--no-progress", env=_env())
    assert res.returncode == 0, res.stderr[-3000:]
    tree = _tree(run)
    shutil.rmtree(run)
    return root, run, tree


def _kill_during(root: Path, run: Path, marker: str, after_s: float) -> str:
    """Start the run, SIGKILL its process group ``after_s`` seconds after ``marker`` is logged."""
    err_path = root / "killed.err"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prospect.cli", "run", str(root / "tiny.yaml"), "--out", str(run), "--no-progress"],
            stderr=err,
            env={**os.environ, **_env()},
            start_new_session=True,
        )
        while marker not in err_path.read_text():
            assert proc.poll() is None, "the run ended before the stage to interrupt"
            time.sleep(0.05)
        time.sleep(after_s)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return err_path.read_text()


@pytest.mark.shared_data
@pytest.mark.parametrize("stage, after_s", [("illumination", 0.2), ("sites", 2.0), ("exports", 3.0)])
def test_kill_mid_stage_then_resume_gives_identical_files(tiny, stage, after_s):
    root, run, reference = tiny
    shutil.rmtree(run, ignore_errors=True)
    log = _kill_during(root, run, f"{stage} ...", after_s)
    assert f"{stage} done" not in log  # killed inside the stage
    assert not (run / "stages" / stage / "stage.json").exists()
    res = run_cli("run", str(root / "tiny.yaml"), "--out", str(run), "--no-progress", "--resume", env=_env())
    assert res.returncode == 0, res.stderr[-3000:]
    assert "terrain current (cached), skipped" in res.stderr and f"{stage} done" in res.stderr
    assert _tree(run) == reference
    shutil.rmtree(run)


CLUSTER = """\
import subprocess, sys
if __name__ == "__main__":
    from distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        res = subprocess.run([sys.executable, "-m", "prospect.cli", "run", sys.argv[1], "--out", sys.argv[2],
                              "--no-progress", "--scheduler", cluster.scheduler_address], capture_output=True, text=True)
        sys.stderr.write(res.stderr)
        sys.exit(res.returncode)
"""


@pytest.mark.shared_data
def test_process_worker_local_cluster_gives_identical_outputs(tiny):
    root, run, reference = tiny
    shutil.rmtree(run, ignore_errors=True)
    script = root / "cluster.py"
    script.write_text(CLUSTER)
    res = subprocess.run(
        [sys.executable, str(script), str(root / "tiny.yaml"), str(run)],
        capture_output=True,
        text=True,
        env={**os.environ, **_env()},
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "on Dask cluster tcp://" in res.stderr and "(2 workers)" in res.stderr
    assert _tree(run) == reference
    shutil.rmtree(run)


# --- file names and roles -----------------------------------------------------------------------


def test_a_run_without_sites_exports_the_psr_mask_under_its_own_name(tmp_path):
    """The illumination stage's 0/1 mask is ``psr_mask``, not the ``psr_fraction`` of PSR polygons;
    every file name comes from the layer registry."""
    from types import SimpleNamespace

    from prospect import layers
    from prospect.pipeline.runner import _map_inputs

    dirs = {s: tmp_path / s for s in ("terrain", "illumination")}
    ctx = SimpleNamespace(stage_dirs=dirs, sources={"psr": "lola_psr_south_5km2"})
    inputs = _map_inputs(ctx)  # type: ignore[arg-type]
    assert inputs["psr_mask"] == str(dirs["illumination"] / layers.filename("psr_mask"))
    assert inputs["psr_fraction"] == "lola_psr_south_5km2"  # polygons: a fraction of each pixel
    assert inputs["dem"] == str(dirs["terrain"] / layers.filename("dem_m"))
    runner = (ROOT / "prospect" / "pipeline" / "runner.py").read_text(encoding="utf-8")
    assert ".tif" not in runner.replace("*.tif", "")
