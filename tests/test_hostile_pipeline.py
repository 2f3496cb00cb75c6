"""Hostile YAML, pipeline files and run folders (issue 17): every one is refused by the real
CLI (a separate process) with exit code 2, exactly one line on stderr that starts
``prospect: error:`` and names the file and the key, no traceback, and nothing left behind
(no run folder, no state file, no log).

The runs use a small synthetic DEM (128 x 128 px of 200 m) written once per module, so a
pipeline that passes every check runs in seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli

BOMB = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def _indent(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line + "\n" for line in text.splitlines())


@pytest.fixture(scope="module")
def dem(tmp_path_factory) -> Path:
    """A small synthetic south-polar DEM (GeoTIFF)."""
    from prospect.synthetic import south_polar_scene, write_scene

    files = write_scene(south_polar_scene(seed=3, shape=(128, 128), pixel_m=200.0), tmp_path_factory.mktemp("scene"))
    return Path(files["dem_tif"])


def _pipeline(folder: Path, dem: Path, stages: str = "  terrain: {}\n", extra: str = "") -> Path:
    path = folder / "p.yaml"
    path.write_text(f"pipeline: p\n{extra}data:\n  dem: {{path: {dem}}}\ngrid: {{from: dem}}\nstages:\n{stages}")
    return path


def _snapshot(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def _refused(res: subprocess.CompletedProcess, *names: str, code: int = 2) -> str:
    """One ``prospect: error:`` line naming every one of ``names``; exit ``code``; no traceback."""
    assert res.returncode == code, (res.returncode, res.stderr[-2000:])
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr[-2000:]
    line = lines[0]
    assert line.startswith("prospect: error: "), line
    assert "Traceback" not in res.stderr
    for name in names:
        assert name in line, (name, line)
    return line


def _run_refused(tmp_path: Path, spec: Path, *names: str, args: tuple[str, ...] = ()) -> str:
    before = _snapshot(tmp_path)
    out = tmp_path / "run"
    res = run_cli("run", str(spec), "--out", str(out), "--no-progress", *args)
    line = _refused(res, *names)
    assert not out.exists(), sorted(_snapshot(out))
    assert _snapshot(tmp_path) == before  # nothing left behind anywhere
    return line


# --- YAML: aliases, nesting, size, encoding, shape ---------------------------------------------


def test_a_billion_laughs_in_a_pipeline_is_refused_in_well_under_a_second(tmp_path):
    from prospect.io.manifests import parse_yaml
    from prospect.pipeline.spec import PipelineError

    text = "pipeline: bomb\ndata: {dem: x}\nstages: {terrain: {}}\nlaughs:\n" + _indent(BOMB, 2)
    start = time.perf_counter()
    with pytest.raises(PipelineError, match="alias bomb"):
        parse_yaml(text, "bomb.yaml", PipelineError)
    assert time.perf_counter() - start < 0.2
    spec = tmp_path / "bomb.yaml"
    spec.write_text(text)
    start = time.perf_counter()
    line = _run_refused(tmp_path, spec, str(spec), "laughs.", "nodes")
    assert time.perf_counter() - start < 20  # the process's start and imports; the check itself is instant
    assert "line " in line


def test_a_billion_laughs_in_a_sites_config_block_is_refused(tmp_path, dem):
    stages = "  terrain: {}\n  sites:\n    config:\n" + _indent(BOMB, 6)
    spec = _pipeline(tmp_path, dem, stages)
    _run_refused(tmp_path, spec, str(spec), "stages.sites.config.", "alias bomb")


def test_too_many_aliases_are_refused_naming_the_key(tmp_path, dem):
    stages = "  terrain: {}\n  sites:\n    config:\n      x: &x 1\n      y: [" + ", ".join(["*x"] * 101) + "]\n"
    spec = _pipeline(tmp_path, dem, stages)
    _run_refused(tmp_path, spec, str(spec), "stages.sites.config.y[100]", "more than 100 YAML aliases")


def test_a_few_aliases_are_still_read(tmp_path, dem):
    from prospect.pipeline.spec import load_pipeline

    stages = "  terrain: &t {}\n  exports: {}\n"
    spec = _pipeline(tmp_path, dem, stages, extra="description: &d text\n")
    assert load_pipeline(spec).stages["terrain"] == {}


@pytest.mark.parametrize("flow", [True, False])
def test_yaml_nested_very_deep_is_one_line(tmp_path, flow):
    spec = tmp_path / "deep.yaml"
    if flow:
        spec.write_text("pipeline: deep\ndata: {}\nstages: " + "[" * 5000 + "]" * 5000 + "\n")
    else:
        spec.write_text("pipeline: deep\nstages:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(500)))
    _run_refused(tmp_path, spec, str(spec), "stages", "nested deeper than 100 levels")


@pytest.mark.parametrize(
    "text, key",
    [
        ("- pipeline: p\n- stages: {}\n", "(top level)"),
        ("just a string\n", "(top level)"),
        ("42\n", "(top level)"),
        ("", "(top level)"),
        ("pipeline: p\npipeline: q\ndata: {}\nstages: {terrain: {}}\n", "duplicate key 'pipeline'"),
        ("pipeline: p\ndata: [\n", "not valid YAML"),
        ("pipeline: p\n? [a, b]\n: c\n", "a mapping or list as a key"),
    ],
)
def test_a_pipeline_that_is_not_a_mapping_or_not_yaml_is_one_line(tmp_path, text, key):
    spec = tmp_path / "p.yaml"
    spec.write_text(text)
    _run_refused(tmp_path, spec, str(spec), key)


def test_a_binary_file_is_one_line(tmp_path):
    spec = tmp_path / "p.yaml"
    spec.write_bytes(bytes(range(256)) * 8)
    _run_refused(tmp_path, spec, str(spec), "not UTF-8")
    spec.write_bytes(b"pipeline: p\x00\x01\x02\n")  # valid UTF-8, but control characters
    _run_refused(tmp_path, spec, str(spec), "not valid YAML")


def test_a_huge_file_is_refused_without_reading_it_whole(tmp_path):
    from prospect.io.manifests import YAML_MAX_BYTES

    spec = tmp_path / "p.yaml"
    with open(spec, "w") as f:
        f.write("pipeline: p\n")
        f.write(("# " + "x" * 1000 + "\n") * (2 * YAML_MAX_BYTES // 1000))
    _run_refused(tmp_path, spec, str(spec), f"larger than {YAML_MAX_BYTES} bytes")


def test_a_folder_as_pipeline_is_one_line(tmp_path):
    (tmp_path / "folder.yaml").mkdir()
    _run_refused(tmp_path, tmp_path / "folder.yaml", "folder.yaml", "is a folder")


def test_manifests_and_parameter_files_share_the_limits(tmp_path, monkeypatch):
    from prospect import config
    from prospect.errors import ConfigError, ManifestError
    from prospect.io.manifests import load_manifest_file

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    for load, error in (
        (lambda: load_manifest_file(bomb), ManifestError),
        (lambda: config.load("ice", bomb), ConfigError),
    ):
        start = time.perf_counter()
        with pytest.raises(error, match="alias bomb") as info:
            load()
        assert time.perf_counter() - start < 0.5
        assert str(bomb) in str(info.value) and "\n" not in str(info.value)
    deep = tmp_path / "deep.yaml"
    deep.write_text("ice: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n")
    with pytest.raises(ConfigError, match="nested deeper"):
        config.load("ice", deep)


def test_a_config_bomb_through_the_cli_is_one_line(tmp_path, dem):
    """``--config`` of a model command goes through the same reader."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    out = tmp_path / "ice"
    res = run_cli("ice", "--dem", str(dem), "--config", str(bomb), str(out))
    if res.returncode == 2 and "alias bomb" not in res.stderr:  # the command's options differ: use the library
        pytest.skip(f"prospect ice takes other options: {res.stderr.strip()}")
    _refused(res, str(bomb), "alias bomb")
    assert not out.exists()


# --- pipeline data paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["../../../etc/passwd", "{path: ../../../etc/passwd}", "sub/../../outside.tif", "../no_such_file.tif"]
)
def test_a_relative_data_path_stays_in_the_pipeline_folder(tmp_path, value):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (tmp_path / "outside.tif").write_bytes(b"not opened")
    spec = folder / "p.yaml"
    spec.write_text(f"pipeline: p\ndata:\n  dem: {value}\nstages:\n  terrain: {{}}\n")
    given = value.removeprefix("{path: ").removesuffix("}")
    # the same message for a file that exists and one that does not: refused by the text, before any look-up
    _run_refused(tmp_path, spec, str(spec), "data.dem", repr(given), "outside the pipeline's folder")


def test_an_absolute_data_path_is_accepted_on_purpose(tmp_path, dem):
    from prospect.pipeline.spec import load_pipeline

    folder = tmp_path / "elsewhere"
    folder.mkdir()
    spec = folder / "p.yaml"
    spec.write_text(f"pipeline: p\ndata:\n  dem: {dem}\nstages:\n  terrain: {{}}\n")
    assert load_pipeline(spec).data["dem"].path == dem.resolve()
    inside = folder / "dem.tif"
    inside.write_bytes(dem.read_bytes())
    spec.write_text("pipeline: p\ndata:\n  dem: ./sub/../dem.tif\nstages:\n  terrain: {}\n")
    assert load_pipeline(spec).data["dem"].path == inside.resolve()


# --- parameter ranges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stages, key, why",
    [
        ("illumination: {step: {value: 0, unit: h}}", "stages.illumination.step", "must be above 0 h"),
        ("illumination: {step: {value: -1, unit: d}}", "stages.illumination.step", "must be above 0 h"),
        ("illumination: {step: .inf}", "stages.illumination.step", "not a finite number"),
        ("illumination: {step: {value: .nan, unit: h}}", "stages.illumination.step", "not a finite number"),
        ("illumination: {step: {value: 2, unit: a}}", "stages.illumination.step", "unit 'a'"),
        ("illumination: {azimuths: 100000}", "stages.illumination.azimuths", "maximum of 3600"),
        ("illumination: {azimuths: 10}", "stages.illumination.azimuths", "minimum of 64"),
        ("illumination: {azimuths: 64.5}", "stages.illumination.azimuths", "integer"),
        ("illumination: {years: 0}", "stages.illumination.years", "0"),
        ("illumination: {years: 1000000}", "stages.illumination.years", "maximum of 100"),
        ("illumination: {height: {value: -2, unit: m}}", "stages.illumination.height", "at least 0 m"),
        ("illumination: {max_distance: {value: 0, unit: km}}", "stages.illumination.max_distance", "above 0 m"),
        ("resources: {ice: {samples: -1}}", "stages.resources.ice.samples", "minimum of 0"),
        ("resources: {ice: {samples: 1000000000}}", "stages.resources.ice.samples", "maximum of 100000"),
        ("sites: {config: {mc_samples: -5}}", "stages.sites.config", "mc_samples"),
    ],
)
def test_pipeline_parameters_out_of_range_are_refused(tmp_path, dem, stages, key, why):
    spec = _pipeline(tmp_path, dem, f"  terrain: {{}}\n  {stages}\n")
    _run_refused(tmp_path, spec, str(spec), key, why)


@pytest.mark.parametrize("seed, why", [("-1", "minimum of 0"), ("2147483648", "maximum of 2147483647")])
def test_a_seed_out_of_range_in_the_pipeline_is_refused(tmp_path, dem, seed, why):
    spec = _pipeline(tmp_path, dem, extra=f"seed: {seed}\n")
    _run_refused(tmp_path, spec, str(spec), "seed", why)


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_a_seed_out_of_range_on_the_command_line_is_refused(tmp_path, dem, seed):
    spec = _pipeline(tmp_path, dem)
    _run_refused(tmp_path, spec, "--seed", seed, args=("--seed", seed))


def test_all_site_weights_zero_is_refused_before_the_run_folder_exists(tmp_path, dem):
    from prospect import config

    zero = ", ".join(f"{k}: 0" for k in config.defaults("sites").params if k.startswith("weight_"))
    spec = _pipeline(tmp_path, dem, f"  terrain: {{}}\n  sites: {{config: {{{zero}}}}}\n")
    _run_refused(tmp_path, spec, str(spec), "stages.sites.config", "weight_", "every criterion weight is 0")


def test_all_ice_weights_zero_is_refused(tmp_path, dem):
    stages = (
        "  terrain: {}\n  resources: {ice: {config: {weights: {thermal: 0, psr: 0, hydrogen: 0, pole_facing: 0}}}}\n"
    )
    spec = _pipeline(tmp_path, dem, stages)
    _run_refused(tmp_path, spec, str(spec), "stages.resources.ice.config", "ice.weights", "every layer weight is 0")


def test_an_all_nodata_dem_is_refused_before_the_run_folder_exists(tmp_path, dem):
    import numpy as np
    import rasterio

    empty = tmp_path / "empty_dem.tif"
    with rasterio.open(dem) as src:
        profile = {**src.profile, "nodata": -32768.0, "dtype": "float32"}
        with rasterio.open(empty, "w", **profile) as dst:
            dst.write(np.full(src.shape, -32768.0, dtype="float32"), 1)
            dst.update_tags(**src.tags())
            dst.update_tags(1, **src.tags(1))
    spec = _pipeline(tmp_path, empty)
    _run_refused(tmp_path, spec, str(spec), "data.dem", "every pixel is nodata")


def test_an_unreachable_scheduler_is_refused_fast_before_the_run_folder_exists(tmp_path, dem):
    spec = _pipeline(tmp_path, dem)
    start = time.perf_counter()
    _run_refused(tmp_path, spec, "--scheduler", "tcp://127.0.0.1:9", args=("--scheduler", "tcp://127.0.0.1:9"))
    assert time.perf_counter() - start < 40
    _run_refused(tmp_path, spec, "--scheduler", "not an address", args=("--scheduler", "not an address"))


# --- the run folder: state file, lock -------------------------------------------------------------


@pytest.mark.parametrize(
    "content, why",
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b"[1, 2, 3]", "no 'started' time"),
        (b'{"started": "2026-01-01T00:00:00Z", "seed": "zero"}', "key 'seed'"),
        (b"[" * 100000 + b"]" * 100000, "not JSON"),
    ],
)
def test_a_corrupt_state_file_on_resume_is_one_line(tmp_path, dem, content, why):
    spec = _pipeline(tmp_path, dem)
    run = tmp_path / "run"
    run.mkdir()
    (run / ".prospect-run.json").write_bytes(content)
    before = _snapshot(tmp_path)
    res = run_cli("run", str(spec), "--out", str(run), "--no-progress", "--resume")
    _refused(res, str(run / ".prospect-run.json"), why)
    assert _snapshot(tmp_path) == before  # no log, no stage folder


def test_a_folder_left_with_only_its_lock_is_a_new_run(tmp_path, dem):
    """A run killed between creating its folder and writing its state left only the lock."""
    spec = _pipeline(tmp_path, dem)
    run = tmp_path / "run"
    run.mkdir()
    (run / ".prospect-run.lock").touch()
    res = run_cli("run", str(spec), "--out", str(run), "--no-progress")
    assert res.returncode == 0, res.stderr[-2000:]
    assert (run / ".prospect-run.json").is_file()


def test_two_concurrent_resumes_into_one_folder_one_runs_the_other_refuses(tmp_path, dem):
    spec = _pipeline(tmp_path, dem, "  terrain: {}\n  illumination: {azimuths: 64, step: {value: 48, unit: h}}\n")
    run = tmp_path / "run"
    err_path = tmp_path / "first.err"
    args = [sys.executable, "-m", "prospect.cli", "run", str(spec), "--out", str(run), "--no-progress", "--resume"]
    with open(err_path, "w") as err:
        first = subprocess.Popen(args, stderr=err, env=dict(os.environ), start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while "illumination ..." not in err_path.read_text():
                assert first.poll() is None, err_path.read_text()
                assert time.monotonic() < deadline
                time.sleep(0.05)
            # the first run is paused while it holds the lock, so the overlap does not depend on timing
            os.killpg(first.pid, signal.SIGSTOP)
            try:
                logs = set((run / "logs").glob("*"))
                second = run_cli("run", str(spec), "--out", str(run), "--no-progress", "--resume")
                running = first.poll() is None
            finally:
                os.killpg(first.pid, signal.SIGCONT)
        finally:
            first.wait(timeout=300)
    assert running, "the first run ended before the second started: the test proves nothing"
    _refused(second, str(run), "another prospect run is running")
    assert first.returncode == 0, err_path.read_text()[-2000:]
    assert set((run / "logs").glob("*")) == logs  # the refused run wrote no log
    # the lock dies with its process: a third run, after the first, resumes (all cached)
    third = run_cli("run", str(spec), "--out", str(run), "--no-progress", "--resume")
    assert third.returncode == 0 and "illumination current (cached), skipped" in third.stderr, third.stderr


def test_the_lock_is_released_by_kill_9(tmp_path, dem):
    spec = _pipeline(tmp_path, dem, "  terrain: {}\n  illumination: {azimuths: 64, step: {value: 48, unit: h}}\n")
    run = tmp_path / "run"
    err_path = tmp_path / "first.err"
    args = [sys.executable, "-m", "prospect.cli", "run", str(spec), "--out", str(run), "--no-progress"]
    with open(err_path, "w") as err:
        first = subprocess.Popen(args, stderr=err, env=dict(os.environ), start_new_session=True)
        while "terrain ..." not in err_path.read_text():
            assert first.poll() is None, err_path.read_text()
            time.sleep(0.05)
        os.killpg(first.pid, 9)
        first.wait()
    res = run_cli("run", str(spec), "--out", str(run), "--no-progress", "--resume")
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((run / ".prospect-run.json").read_text())["started"]
