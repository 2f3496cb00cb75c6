"""Hostile inputs through the single-stage commands (issue 17): bad parameters, output paths that
cannot be written, degenerate DEMs, and Ctrl-C during a write.

Every refusal asserts: exit code 2, exactly one stderr line ``prospect: error: ...`` naming the
option or file, no traceback, and nothing left behind (the work folder and the inputs are byte
for byte as before). The cases the issue names, and one or more of every kind, run the real
``prospect`` in a subprocess (about 2 s each, mostly imports); their variants (``IN_PROCESS``)
run :func:`prospect.cli.main` in this process, the same code after the imports, so the file
stays well under two minutes.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from prospect import cli
from tests.conftest import run_cli, run_main

REPO = Path(__file__).resolve().parents[1]


def _write(folder: Path, name: str, values: np.ndarray, *, nodata: float | None = -32768.0, units: str = "m") -> None:
    from prospect.io.writers import write_geotiff
    from prospect.lunar import lunar_crs

    n = values.shape[0]
    transform = Affine(100.0, 0.0, -n * 50.0, 0.0, -100.0, n * 50.0)  # 100 m pixels around the south pole
    write_geotiff(
        values.astype("float32"), folder / name, crs=lunar_crs(30135), transform=transform, nodata=nodata, units=units
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny south-polar rasters: a DEM, a TiO2 map, and the degenerate DEMs."""
    folder = tmp_path_factory.mktemp("hostile_inputs")
    rng = np.random.default_rng(0)
    _write(folder, "dem.tif", rng.normal(0.0, 50.0, (32, 32)))
    _write(folder, "tio2.tif", rng.uniform(1.0, 8.0, (32, 32)), units="wt%")
    _write(folder, "tio2_nan.tif", np.full((32, 32), np.nan), nodata=None, units="wt%")
    _write(folder, "nodata.tif", np.full((32, 32), -32768.0))  # every pixel the nodata value
    _write(folder, "nan.tif", np.full((32, 32), np.nan), nodata=None)  # every pixel NaN, no nodata value
    _write(folder, "one.tif", np.ones((1, 1)))
    _write(folder, "two.tif", np.ones((2, 2)))
    checker = np.full((8, 8), np.nan)
    checker[::2, ::2] = 1.0  # valid heights, but no 3 x 3 neighbourhood of them
    _write(folder, "sparse.tif", checker, nodata=None)
    (folder / "a_file").write_text("not a folder\n")
    return folder


def _snapshot(*folders: Path) -> dict[Path, bytes | None]:
    return {p: (p.read_bytes() if p.is_file() else None) for f in folders for p in sorted(f.rglob("*"))}


def _refused(
    args: list[str], names: list[str], work: Path, inputs: Path, capsys: pytest.CaptureFixture[str] | None = None
) -> None:
    """Run ``prospect ARGS`` (in a subprocess; in this process when given ``capsys``) and assert a
    clean refusal naming every string of ``names``."""
    before = _snapshot(work, inputs)
    if capsys is None:
        res = run_cli(*args)
        code, stderr = res.returncode, res.stderr
    else:
        code, stderr = run_main(args, capsys)
    lines = stderr.splitlines()
    assert code == 2, (args, code, stderr[-2000:])
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("prospect: error: "), stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert _snapshot(work, inputs) == before, f"{args}: left files behind or changed an input"


#: Case ids run in this process (variants of a case that runs in a subprocess).
IN_PROCESS = {
    "step-tiny",
    "start-nat",
    "years-inf",
    "years-too-many-samples",
    "height-nan",
    "max-distance-inf",
    "near-zero",
    "far-factor-zero",
    "chunks-negative",
    "baseline-nan",
    "method-unknown",
    "he3--samples1",
    "he3--samples100000",
    "he3--resolution0",
    "he3--resolutionnan",
    "ice--samples-3",
    "ice--samples100000",
    "slope-under-a-file",
    "slope-onto-its-input",
    "he3-file",
    "ice-file",
    "rank-file",
    "he3-missing-parent",
    "ice-missing-parent",
    "he3-read-only",
    "ice-read-only",
    "rank-read-only",
    "illumination-nan.tif",
    "illumination-one.tif",
    "ice-nan.tif",
    "ice-one.tif",
    "ice-two.tif",
    "rank-nodata.tif",
    "rank-nan.tif",
    "rank-one.tif",
}


def _mode(case: str, capsys: pytest.CaptureFixture[str]) -> pytest.CaptureFixture[str] | None:
    return capsys if case in IN_PROCESS else None


# --- parameters: refused before anything is written ------------------------------------------

ILLUMINATION = [
    ("step-zero", ["--step-hours", "0"], ["step_hours", "0"]),
    ("step-negative", ["--step-hours", "-2"], ["step_hours", "-2"]),
    ("step-nan", ["--step-hours", "nan"], ["step_hours", "nan"]),
    ("step-tiny", ["--step-hours", "1e-9"], ["step_hours", "one minute"]),
    ("start-notadate", ["--start", "notadate"], ["start", "notadate"]),
    ("start-nat", ["--start", "NaT"], ["start", "NaT"]),
    ("years-zero", ["--years", "0"], ["years"]),
    ("years-inf", ["--years", "inf"], ["years", "inf"]),
    ("years-too-many-samples", ["--years", "1000000"], ["years", "1,000,000"]),
    ("azimuths-too-many", ["--azimuths", "100000"], ["azimuths", "3600", "100000"]),
    ("azimuths-too-few", ["--azimuths", "63"], ["azimuths", "64", "63"]),
    ("height-negative", ["--height", "-5"], ["height", "-5"]),
    ("height-nan", ["--height", "nan"], ["height", "nan"]),
    ("max-distance-zero", ["--max-distance", "0"], ["max_distance"]),
    ("max-distance-inf", ["--max-distance", "inf"], ["max_distance", "inf"]),
    ("tile-zero", ["--tile", "0"], ["tile", "16"]),
    ("memory-too-small", ["--memory", "10"], ["memory", "1000", "10"]),
    ("memory-nan", ["--memory", "nan"], ["memory", "nan"]),
    ("near-zero", ["--near", "0"], ["near"]),
    ("far-factor-zero", ["--far-factor", "0"], ["far_factor"]),
]


@pytest.mark.parametrize(("case", "option", "names"), ILLUMINATION, ids=[c[0] for c in ILLUMINATION])
def test_illumination_refuses_a_bad_parameter(case, option, names, inputs, tmp_path, capsys):
    args = ["illumination", str(inputs / "dem.tif"), str(tmp_path / "ill"), *option]
    _refused(args, names, tmp_path, inputs, _mode(case, capsys))


SLOPE = [
    ("chunks-zero", ["--chunks", "0"], ["chunks", "0"]),
    ("chunks-negative", ["--chunks", "-512"], ["chunks", "-512"]),
    ("baseline-negative", ["--baseline", "-5"], ["baseline", "-5"]),
    ("baseline-nan", ["--baseline", "nan"], ["baseline", "nan"]),
    ("method-unknown", ["--method", "sobel"], ["method", "sobel"]),
]


@pytest.mark.parametrize(("case", "option", "names"), SLOPE, ids=[c[0] for c in SLOPE])
def test_slope_refuses_a_bad_parameter(case, option, names, inputs, tmp_path, capsys):
    args = ["slope", str(inputs / "dem.tif"), str(tmp_path / "slope.tif"), *option]
    _refused(args, names, tmp_path, inputs, _mode(case, capsys))


def _stage_args(command: str, inputs: Path, out: Path) -> list[str]:
    return {
        "he3": ["he3", str(inputs / "tio2.tif"), str(out)],
        "ice": ["ice", str(out), "--dem", str(inputs / "dem.tif")],
        "rank": ["rank", str(out), "--dem", str(inputs / "dem.tif")],
    }[command]


SEEDED = [
    (command, option, names)
    for command in ("he3", "ice", "rank")
    for option, names in ((["--seed", "-1"], ["seed", "-1"]), (["--seed", str(2**40)], ["seed", str(2**40)]))
] + [
    ("he3", ["--samples", "-3"], ["samples", "-3"]),
    ("he3", ["--samples", "1"], ["samples", "1"]),
    ("he3", ["--samples", "100000"], ["samples", "1000"]),
    ("he3", ["--resolution", "0"], ["resolution_deg"]),
    ("he3", ["--resolution", "nan"], ["resolution_deg", "nan"]),
    ("ice", ["--samples", "-3"], ["samples", "-3"]),
    ("ice", ["--samples", "100000"], ["samples", "10000"]),
]


@pytest.mark.parametrize(("command", "option", "names"), SEEDED, ids=[f"{c}{''.join(o)}" for c, o, _ in SEEDED])
def test_resource_and_site_stages_refuse_a_bad_seed_or_sample_count(command, option, names, inputs, tmp_path, capsys):
    args = [*_stage_args(command, inputs, tmp_path / "out"), *option]
    _refused(args, names, tmp_path, inputs, _mode(f"{command}{''.join(option)}", capsys))


def test_run_refuses_a_bad_seed_before_it_creates_the_run_folder(inputs, tmp_path):
    _refused(
        ["run", str(REPO / "pipelines" / "demo.yaml"), "--out", str(tmp_path / "run"), "--seed", "-1"],
        ["seed", "-1"],
        tmp_path,
        inputs,
    )


# --- output paths ---------------------------------------------------------------------------


def test_slope_into_an_existing_folder_is_refused(inputs, tmp_path):
    (tmp_path / "existing").mkdir()
    _refused(
        ["slope", str(inputs / "dem.tif"), str(tmp_path / "existing") + "/"], ["existing", "folder"], tmp_path, inputs
    )


def test_slope_with_a_missing_parent_is_refused(inputs, tmp_path):
    _refused(
        ["slope", str(inputs / "dem.tif"), str(tmp_path / "no" / "s.tif")], [str(tmp_path / "no")], tmp_path, inputs
    )


def test_slope_under_a_file_is_refused(inputs, tmp_path, capsys):
    (tmp_path / "f").write_text("")
    args = ["slope", str(inputs / "dem.tif"), str(tmp_path / "f" / "s.tif")]
    _refused(args, [str(tmp_path / "f")], tmp_path, inputs, _mode("slope-under-a-file", capsys))


def test_slope_onto_its_own_input_is_refused(inputs, tmp_path, capsys):
    args = ["slope", str(inputs / "dem.tif"), str(inputs / "dem.tif")]
    _refused(args, ["dem.tif", "input"], tmp_path, inputs, _mode("slope-onto-its-input", capsys))


FOLDER_COMMANDS = ("illumination", "he3", "ice", "rank")


def _folder_args(command: str, inputs: Path, out: Path) -> list[str]:
    if command == "illumination":
        return ["illumination", str(inputs / "dem.tif"), str(out), "--no-progress"]
    return _stage_args(command, inputs, out)


@pytest.mark.parametrize("command", FOLDER_COMMANDS)
def test_a_folder_output_that_is_a_file_is_refused(command, inputs, tmp_path, capsys):
    (tmp_path / "taken").write_text("mine\n")
    args = _folder_args(command, inputs, tmp_path / "taken")
    _refused(args, ["taken", "not a folder"], tmp_path, inputs, _mode(f"{command}-file", capsys))


@pytest.mark.parametrize("command", ("he3", "ice"))
def test_a_folder_output_with_a_missing_parent_is_refused(command, inputs, tmp_path, capsys):
    args = _folder_args(command, inputs, tmp_path / "no" / "out")
    _refused(args, ["does not exist"], tmp_path, inputs, _mode(f"{command}-missing-parent", capsys))


def _read_only_folder() -> Path:
    """A folder on a read-only (or pseudo) file system where even root cannot create a file: /sys
    in a container (sysfs, mounted read-only), else /proc (procfs: no new files)."""
    for candidate in (Path("/sys"), Path("/proc")):
        probe = candidate / f".prospect-test-{uuid.uuid4().hex}"
        try:
            fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except OSError:
            return candidate
        os.close(fd)
        probe.unlink()
    pytest.skip("no read-only file system to write into on this machine")


@pytest.mark.parametrize("command", ("slope", *FOLDER_COMMANDS))
def test_an_output_on_a_read_only_file_system_is_refused(command, inputs, tmp_path, capsys):
    ro = _read_only_folder()
    target = ro / f"prospect-{uuid.uuid4().hex[:8]}"
    if command == "slope":
        args = ["slope", str(inputs / "dem.tif"), f"{target}.tif", "--no-progress"]
    else:
        args = _folder_args(command, inputs, target)
    _refused(args, [str(ro), "cannot write"], tmp_path, inputs, _mode(f"{command}-read-only", capsys))
    assert not target.exists() and not Path(f"{target}.tif").exists()


# --- degenerate DEMs ------------------------------------------------------------------------

DEGENERATE = {
    "nodata.tif": "every pixel is nodata",
    "nan.tif": "every pixel is nodata",
    "one.tif": "1 x 1",
    "two.tif": "2 x 2",
}


def _dem_args(command: str, dem: Path, out: Path) -> list[str]:
    return {
        "slope": ["slope", str(dem), str(out.with_suffix(".tif")), "--no-progress"],
        "illumination": [
            "illumination",
            str(dem),
            str(out),
            "--azimuths",
            "64",
            "--step-hours",
            "240",
            "--no-progress",
        ],
        "ice": ["ice", str(out), "--dem", str(dem)],
        "rank": ["rank", str(out), "--dem", str(dem)],
    }[command]


@pytest.mark.parametrize("command", ("slope", "illumination", "ice", "rank"))
@pytest.mark.parametrize("name", sorted(DEGENERATE))
def test_a_degenerate_dem_is_refused_naming_the_file(command, name, inputs, tmp_path, capsys):
    args = _dem_args(command, inputs / name, tmp_path / "out")
    _refused(args, [name, DEGENERATE[name]], tmp_path, inputs, _mode(f"{command}-{name}", capsys))


def test_a_slope_map_without_one_value_is_a_warning(inputs, tmp_path):
    res = run_cli("slope", str(inputs / "sparse.tif"), str(tmp_path / "s.tif"), "--no-progress")
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == [
        (
            f"prospect: warning: {tmp_path / 's.tif'}: every pixel is nodata "
            "(the DEM has no 3 x 3 neighbourhood of valid heights)"
        )
    ], res.stderr
    assert (tmp_path / "s.tif").is_file()


def test_a_he3_map_without_one_value_is_a_warning(inputs, tmp_path):
    res = run_cli("he3", str(inputs / "tio2_nan.tif"), str(tmp_path / "h"), "--samples", "4")
    assert res.returncode == 0, res.stderr
    warned = [line for line in res.stderr.splitlines() if "warning" in line]
    assert len(warned) == 1 and warned[0].startswith(f"prospect: warning: {tmp_path / 'h'}: every pixel is nodata in ")
    assert "he3_ppb.tif" in warned[0] and "Traceback" not in res.stderr
    assert (tmp_path / "h" / "he3_inventory.json").is_file()


# --- Ctrl-C during a write: exit 130, no partial file, no folder the command created ------------


@pytest.mark.parametrize("command", ("slope", "he3", "ice"))
def test_ctrl_c_during_a_write_leaves_nothing(command, inputs, tmp_path, monkeypatch, capsys):
    from prospect.io import writers

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(writers, "_write_window", interrupted)
    out = tmp_path / "out"
    args = _dem_args("slope", inputs / "dem.tif", out) if command == "slope" else _stage_args(command, inputs, out)
    before = _snapshot(tmp_path, inputs)
    code, err = run_main(args, capsys)
    assert code == 130 and err == "prospect: interrupted\n", err
    assert _snapshot(tmp_path, inputs) == before


def test_ctrl_c_during_illumination_keeps_only_the_finished_tiles_to_resume_from(inputs, tmp_path, monkeypatch, capsys):
    """The illumination stage's documented exception: finished tiles stay in OUTDIR/.prospect-partial
    so that a rerun resumes; no GeoTIFF (nor temporary) is left."""
    from prospect.io import writers
    from prospect.pipeline.stages import PARTIAL_DIR

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(writers, "_write_window", interrupted)
    out = tmp_path / "ill"
    code, err = run_main(_dem_args("illumination", inputs / "dem.tif", out), capsys)
    assert code == 130 and err == "prospect: interrupted\n", err
    left = sorted(p.relative_to(out).parts[0] for p in out.rglob("*") if p.is_file())
    assert left and set(left) == {PARTIAL_DIR}, left
    monkeypatch.undo()
    code, err = run_main(_dem_args("illumination", inputs / "dem.tif", out), capsys)
    assert code == 0, err
    assert not (out / PARTIAL_DIR).exists() and len(list(out.glob("*.tif"))) == 4


def test_a_refused_stage_removes_the_folder_it_created(inputs, tmp_path, monkeypatch):
    """In process: a refusal after the folder was created (here: the writer refuses) removes it."""
    from prospect.errors import OutputPathError
    from prospect.io import writers
    from prospect.pipeline import stages

    def refused(*args, **kwargs):
        raise OutputPathError("disk full")

    monkeypatch.setattr(writers, "_write_window", refused)
    with pytest.raises(OutputPathError):
        stages.run_ice(tmp_path / "ice", sources={"dem": str(inputs / "dem.tif")}, params={"samples": 0})
    assert not (tmp_path / "ice").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(OutputPathError):
        stages.run_ice(tmp_path / "kept", sources={"dem": str(inputs / "dem.tif")}, params={"samples": 0})
    assert (tmp_path / "kept").is_dir() and not list((tmp_path / "kept").iterdir())  # not ours to remove


def test_the_parameter_rules_live_next_to_the_constants_and_the_help_quotes_them():
    from prospect.illumination import ephemeris, maps, tiles
    from prospect.pipeline import stages
    from prospect.resources import he3, ice

    assert cli.MAX_AZIMUTHS == maps.MAX_AZIMUTHS and maps.TILING_RULES["azimuths"][3] == maps.MAX_AZIMUTHS
    assert (cli.MIN_TILE_PX, cli.MAX_TILE_PX) == (tiles.MIN_TILE_PX, tiles.MAX_TILE_PX)
    assert cli.MAX_TIME_SAMPLES == ephemeris.MAX_TIME_SAMPLES and cli.MAX_SEED == stages.MAX_SEED == 2**31 - 1
    assert (cli.HE3_MAX_SAMPLES, cli.ICE_MAX_SAMPLES) == (he3.MAX_MC_SAMPLES, ice.MAX_MC_SAMPLES)
    with pytest.raises(ValueError):  # default_times still raises a ValueError, now also a ConfigError
        ephemeris.default_times(step_hours=0)
    assert sys.modules["prospect.cli"] is cli


@pytest.mark.parametrize(
    ("stage", "params", "seed", "needle"),
    [
        ("illumination", {"step": 0}, 0, "step_hours"),
        ("illumination", {"azimuths": 100_000}, 0, "azimuths"),
        ("resources", {"he3": {"samples": 1}}, 0, "samples"),
        ("resources", {"ice": {"samples": -1}}, 0, "samples"),
        ("terrain", {"method": "sobel"}, 0, "method"),
        ("sites", {}, -1, "seed"),
    ],
)
def test_a_pipeline_can_check_a_stage_before_its_run_folder_exists(stage, params, seed, needle):
    """stages.check_stage_params: the stage's own checks, no file opened, for ``prospect run`` to call first."""
    from prospect.errors import ConfigError
    from prospect.pipeline.stages import check_stage_params

    with pytest.raises(ConfigError, match=needle):
        check_stage_params(stage, params, seed)
    check_stage_params(stage, None, 0)  # the defaults pass


def test_a_folder_without_write_permission_is_refused(inputs, tmp_path, monkeypatch, capsys):
    """A mode 0o555 folder does not stop root (the tests' user here), so the refusal of the
    writability probe is simulated: the probe is what every stage's output check runs."""
    import tempfile

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", denied)
    for args in (
        ["slope", str(inputs / "dem.tif"), str(locked / "s.tif")],
        ["he3", str(inputs / "tio2.tif"), str(locked / "he3")],
        ["ice", str(locked), "--dem", str(inputs / "dem.tif")],
    ):
        _refused(args, [str(locked), "Permission denied"], tmp_path, inputs, capsys)


@pytest.mark.parametrize("value", ["abc", "0", "-2"])
def test_a_bad_site_worker_count_is_refused_before_the_folder(value, inputs, tmp_path):
    env = {**os.environ, "PROSPECT_SITE_WORKERS": value}
    res = run_cli("rank", str(tmp_path / "out"), "--dem", str(inputs / "dem.tif"), "--no-progress", env=env)
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines() == [
        f"prospect: error: PROSPECT_SITE_WORKERS must be a whole number of at least 1, not {value!r}"
    ]
    assert not (tmp_path / "out").exists()
