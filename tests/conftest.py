"""Shared fixtures: the real-data folder, an isolated cache, and a CLI runner.

Real-data tests use ``PROSPECT_SHARED_DATA`` (default ``../shared/data``) and skip only
when that folder is absent; ``.ci/run`` refuses to run without it, so CI always runs them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prospect.io.manifests import shared_data_dir


@pytest.fixture(scope="session")
def shared() -> Path:
    root = shared_data_dir()
    if not (root / "SHA256SUMS").exists():
        pytest.skip(f"shared real data folder {root} is absent")
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache so the user's ~/.cache is never touched."""
    if "PROSPECT_CACHE" not in os.environ or not os.environ["PROSPECT_CACHE"].startswith(
        str(tmp_path_factory.getbasetemp())
    ):
        monkeypatch.setenv("PROSPECT_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("PROSPECT_MIRROR", raising=False)


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``prospect ARGS`` in this process (``cli.main``): its exit code and stderr; the warning
    format the CLI installs is put back afterwards."""
    import warnings

    from prospect import cli

    formatwarning = warnings.formatwarning
    try:
        with warnings.catch_warnings(), pytest.raises(SystemExit) as exc:
            cli.main(args)
    finally:
        warnings.formatwarning = formatwarning
    return int(exc.value.code or 0), capsys.readouterr().err


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``prospect`` as a user would (a separate process) and capture its output."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "prospect.cli", *args], capture_output=True, text=True, env=full_env, timeout=300
    )


@pytest.fixture(scope="session")
def real_site_run(shared, tmp_path_factory):
    """The site stage on real layers: the LOLA 1.6 km DEM cropped to a 680 km square around
    the south pole (the 6 deg cap plus a 150 km horizon reach), its illumination (64
    azimuths, 24 h steps), LOLA PSR polygons, HKPolyU craters, the named cold traps and the
    Artemis III regions as labels. Returns ``(ranking, paths, folder)``; the run is in
    ``folder / "out"``. Shared by the site and export tests (computed once per worker)."""
    import rasterio
    from rasterio.windows import Window

    from prospect.pipeline.stages import rank_from_sources, write_ranking

    tmp = tmp_path_factory.mktemp("real_sites")
    with rasterio.open(shared / "lola_polar_1600m" / "lola_dem_south.tif") as src:
        h, w = src.shape
        win = Window(w // 2 - 212, h // 2 - 212, 425, 425)
        profile = {**src.profile, "width": 425, "height": 425, "transform": src.window_transform(win)}
        with rasterio.open(tmp / "dem.tif", "w", **profile) as dst:
            dst.write(src.read(1, window=win), 1)
            dst.update_tags(**src.tags())
            dst.update_tags(1, **src.tags(1), units="m")  # the manifest (matched by checksum) said so
    res = run_cli("illumination", str(tmp / "dem.tif"), str(tmp / "ill"), "--azimuths", "64", "--step-hours", "24")
    assert res.returncode == 0, res.stderr
    sources = {
        "dem": str(tmp / "dem.tif"),
        "illumination": str(tmp / "ill"),
        "psr": "lola_psr_south_5km2",
        "craters": "hkpolyu_craters_60_90s",
        "cold_traps": "cold_trap_craters",
        "labels": "artemis3_regions_2022",
    }
    ranking, grid = rank_from_sources(sources=sources, params={"config": {"sites": {"mc_samples": 64, "dem_draws": 2}}})
    paths = write_ranking(ranking, tmp / "out", grid)
    return ranking, paths, tmp
