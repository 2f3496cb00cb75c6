"""The CLI is a thin layer over the stage functions: library defaults, one-line failures, quiet warnings."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest

from prospect import cli
from prospect.errors import OutputPathError
from prospect.pipeline import stages
from tests.conftest import run_cli


def test_option_help_quotes_the_library_defaults():
    """The defaults the help shows are read from the library's source: they equal the imported constants."""
    from prospect.illumination import ephemeris, maps, tiles
    from prospect.resources import he3, ice

    assert cli.N_AZIMUTHS == maps.N_AZIMUTHS and cli.MIN_AZIMUTHS == maps.MIN_AZIMUTHS
    assert cli.MAX_DISTANCE_M == maps.MAX_DISTANCE_M and cli.OBSERVER_HEIGHT_M == maps.OBSERVER_HEIGHT_M
    assert (cli.MEMORY_MB, cli.NEAR_PX, cli.FAR_FACTOR) == (tiles.MEMORY_MB, tiles.NEAR_PX, tiles.FAR_FACTOR)
    assert (cli.MIN_MEMORY_MB, cli.MAX_MEMORY_MB) == (tiles.MIN_MEMORY_MB, tiles.MAX_MEMORY_MB)
    assert cli.DEFAULT_STEP_HOURS == ephemeris.DEFAULT_STEP_HOURS == 2.0
    import inspect

    signature = inspect.signature(ephemeris.default_times).parameters
    assert (signature["start"].default, signature["years"].default) == (cli.SPAN_START, cli.SPAN_YEARS)
    assert cli.HE3_SAMPLES == he3.MC_SAMPLES and cli.TABLE_RESOLUTION_DEG == he3.TABLE_RESOLUTION_DEG
    assert cli.ICE_SAMPLES == ice.MC_SAMPLES
    res = run_cli("illumination", "--help")
    assert res.returncode == 0 and "(default 2)" in " ".join(res.stdout.split())


def _show(message, category, filename, lineno, file=None, line=None):  # as Python's own, not pytest's recorder
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``prospect ARGS`` in this process (its warning filters restored afterwards): exit code and stderr."""
    formatwarning = warnings.formatwarning
    try:
        with warnings.catch_warnings(), pytest.raises(SystemExit) as exc:
            warnings.showwarning = _show
            cli.main(args)
    finally:
        warnings.formatwarning = formatwarning
    return int(exc.value.code or 0), capsys.readouterr().err


def test_failures_are_one_line(monkeypatch, capsys, tmp_path):
    def boom(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(stages, "run_slope", boom)
    code, err = _main(["slope", "dem.tif", str(tmp_path / "s.tif")], capsys)
    assert code == 1 and err == "prospect: error: unexpected RuntimeError: a bug\n"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "run_slope", interrupted)
    code, err = _main(["slope", "dem.tif", str(tmp_path / "s.tif")], capsys)
    assert code == 130 and err == "prospect: interrupted\n"

    code, err = _main(["slope", "dem.tif"], capsys)  # a usage error: one line, not typer's box
    assert code == 2 and err.startswith("prospect: error: ") and err.count("\n") == 1, err


def test_developer_warnings_are_filtered_at_the_cli(monkeypatch, capsys, tmp_path):
    from dask.array.core import PerformanceWarning

    def noisy(out, **kwargs):
        warnings.warn("Increasing number of chunks by factor of 42", PerformanceWarning, stacklevel=1)
        warnings.warn("the DEM has no published checksum", UserWarning, stacklevel=1)
        record = tmp_path / "ice_provenance.json"
        record.write_text(json.dumps({"provenance": {}}))
        return {"provenance": record}

    monkeypatch.setattr(stages, "run_ice", noisy)
    code, err = _main(["ice", str(tmp_path / "out"), "--dem", "dem.tif"], capsys)
    assert code == 0, err
    assert err == "prospect: warning: the DEM has no published checksum\n"


def test_every_stage_checks_its_output_folder_the_same_way(tmp_path):
    """One helper (stages.check_output), so every stage says the same thing about a bad output folder."""
    missing = tmp_path / "no" / "out"
    for run, sources in (
        (stages.run_terrain, {"dem": "x"}),
        (stages.run_illumination, {"dem": "x"}),
        (stages.run_ice, {"psr": "x"}),
        (stages.run_he3, {"tio2": "x"}),
        (stages.run_sites, {"dem": "x"}),
    ):
        with pytest.raises(OutputPathError, match=r"parent directory .* does not exist"):
            run(missing, sources=sources)
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputPathError, match="not a folder"):
        stages.run_he3(tmp_path / "file", sources={"tio2": "x"})
    with pytest.raises(OutputPathError, match="output directory"):
        stages.run_slope(Path(missing) / "slope.tif", sources={"dem": "x"})


def test_an_unexpected_error_in_a_run_leaves_its_traceback_in_the_log(tmp_path, monkeypatch, capsys):
    from prospect.pipeline import runner
    from prospect.synthetic import south_polar_scene, write_scene

    files = write_scene(south_polar_scene(seed=3, shape=(128, 128), pixel_m=200.0), tmp_path / "scene")
    spec = tmp_path / "p.yaml"
    spec.write_text(
        f"pipeline: p\ndata:\n  dem: {{path: {files['dem_lbl']}}}\ngrid:\n  from: dem\nstages:\n  terrain: {{}}\n"
    )

    def bug(ctx, params, out):
        raise ZeroDivisionError("a bug in a stage")

    monkeypatch.setitem(runner.STAGE_FUNCTIONS, "terrain", bug)
    code, err = _main(["run", str(spec), "--out", str(tmp_path / "run"), "--no-progress"], capsys)
    assert code == 1
    line = err.strip().splitlines()[-1]
    assert line.startswith("prospect: error: unexpected ZeroDivisionError: a bug in a stage (traceback in ")
    (log,) = (tmp_path / "run" / "logs").glob("run-*.log")
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "ZeroDivisionError: a bug in a stage" in text
    assert "Traceback" not in err
