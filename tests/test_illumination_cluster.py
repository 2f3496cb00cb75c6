"""The illumination stage on a Dask cluster: every tile a task, the same bytes as local threads.

A 96 x 96 DEM in 9 tiles of 32 px with a far field (``--near 16 --far-factor 4``, so the
scattered coarse DEM is used), 64 azimuths and 240 h steps: local threads, a process
``LocalCluster`` and a cluster started the way users start one (``dask scheduler`` and
``dask worker`` processes) give files with the same sha256; an interrupted cluster run
resumes from its finished tiles; an unreachable scheduler is refused in one line.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from prospect import cli
from tests.conftest import run_cli, run_main

REPO = Path(__file__).resolve().parents[1]
OPTIONS = [
    "--azimuths", "64", "--step-hours", "240", "--max-distance", "20",
    "--tile", "32", "--near", "16", "--far-factor", "4",
]  # fmt: skip
N_TILES = 9


def _env() -> dict[str, str]:
    """The environment of worker processes: they import this checkout's prospect."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), path) if p)}


def _sha256(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.tif"))}


@pytest.fixture(scope="module")
def dem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ridges and a bowl, 100 m pixels around the south pole, with noise."""
    from prospect.io.writers import write_geotiff
    from prospect.lunar import lunar_crs

    n = 96
    y, x = np.mgrid[0:n, 0:n]
    z = 800 * np.sin(x / 9.0) * np.cos(y / 13.0) + 40 * np.hypot(x - 40, y - 50)
    z += np.random.default_rng(0).normal(0.0, 30.0, (n, n))
    path = tmp_path_factory.mktemp("cluster_dem") / "dem.tif"
    transform = Affine(100.0, 0.0, -n * 50.0, 0.0, -100.0, n * 50.0)
    write_geotiff(z.astype("float32"), path, crs=lunar_crs(30135), transform=transform, nodata=-32768.0, units="m")
    return path


@pytest.fixture(scope="module")
def reference(dem: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The sha256 of the four products computed with local threads (in this process)."""
    out = tmp_path_factory.mktemp("threads") / "ill"
    with pytest.raises(SystemExit) as exc:
        cli.main(["illumination", str(dem), str(out), *OPTIONS, "--no-progress"])
    assert exc.value.code in (0, None)
    sums = _sha256(out)
    assert len(sums) == 4
    return sums


@pytest.fixture(scope="module")
def local_cluster():
    """A LocalCluster of 2 worker processes x 1 thread."""
    from distributed import LocalCluster

    mp = pytest.MonkeyPatch()
    mp.setenv("PYTHONPATH", _env()["PYTHONPATH"])  # the worker processes import this checkout
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            yield cluster.scheduler_address
    finally:
        mp.undo()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen) -> None:
    """End a process this test started (and its children: it leads its own session)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def dask_cli_cluster(tmp_path: Path):
    """``dask scheduler`` and ``dask worker --nworkers 2 --nthreads 1`` as users start them; stopped after."""
    from distributed import Client

    dask_exe = str(Path(sys.executable).parent / "dask")
    address = f"tcp://127.0.0.1:{_free_port()}"
    procs: list[subprocess.Popen] = []
    logs = [open(tmp_path / name, "w") for name in ("scheduler.log", "worker.log")]  # noqa: SIM115  # closed below
    try:
        procs.append(
            subprocess.Popen(
                [dask_exe, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
                stdout=logs[0],
                stderr=subprocess.STDOUT,
                env=_env(),
                start_new_session=True,
            )
        )
        procs.append(
            subprocess.Popen(
                [dask_exe, "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard"],
                stdout=logs[1],
                stderr=subprocess.STDOUT,
                env=_env(),
                start_new_session=True,
            )
        )
        deadline = time.monotonic() + 60
        while True:  # the scheduler may not listen yet
            try:
                with Client(address, timeout="5s") as client:
                    client.wait_for_workers(2, timeout=max(1.0, deadline - time.monotonic()))
                break
            except OSError:
                assert time.monotonic() < deadline and all(p.poll() is None for p in procs), (
                    tmp_path / "scheduler.log"
                ).read_text() + (tmp_path / "worker.log").read_text()
                time.sleep(0.5)
        yield address
    finally:
        for proc in reversed(procs):  # the workers first, then the scheduler
            _stop(proc)
        for fh in logs:
            fh.close()


def test_threads_a_local_cluster_and_a_dask_cli_cluster_give_the_same_files(
    dem, reference, local_cluster, dask_cli_cluster, tmp_path, capsys
):
    from distributed import Client, get_task_stream

    out = tmp_path / "local_cluster"
    with Client(local_cluster, set_as_default=False) as watcher, get_task_stream(watcher) as stream:
        code, err = run_main(["illumination", str(dem), str(out), *OPTIONS, "--scheduler", local_cluster], capsys)
    assert code == 0, err
    # the workers ran the tiles and nothing else: the DEM was read by the prospect process
    keys = [str(task["key"]) for task in stream.data]
    assert len(keys) == N_TILES and all(k.startswith("illumination-tile-") for k in keys), keys
    assert f"0 tiles reused from checkpoints, {N_TILES} computed on the Dask cluster {local_cluster}" in err, err
    assert _sha256(out) == reference

    out = tmp_path / "dask_cli"
    res = run_cli("illumination", str(dem), str(out), *OPTIONS, "--scheduler", dask_cli_cluster, env=_env())
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"{N_TILES} computed on the Dask cluster {dask_cli_cluster} (2 workers)" in res.stderr, res.stderr
    assert _sha256(out) == reference
    assert not list(out.rglob(".prospect-partial"))


def test_an_interrupted_cluster_run_resumes_from_its_finished_tiles(
    dem, reference, local_cluster, tmp_path, monkeypatch, capsys
):
    """Ctrl-C after the fourth tile was saved (tiles are saved as their futures complete, in any
    order): the rerun loads those four, computes the other five, and the files are the same."""
    from prospect.pipeline import stages

    real = stages._save_tile
    saves = []

    def save_then_interrupt(path, ds):
        real(path, ds)
        saves.append(path.name)
        if len(saves) == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(stages, "_save_tile", save_then_interrupt)
    out = tmp_path / "ill"
    args = ["illumination", str(dem), str(out), *OPTIONS, "--scheduler", local_cluster]
    code, err = run_main(args, capsys)
    assert code == 130, err
    kept = sorted(p.name for p in out.rglob("tile_*.npz"))
    assert kept == sorted(saves) and len(kept) == 4
    assert not list(out.glob("*.tif"))

    monkeypatch.setattr(stages, "_save_tile", real)
    code, err = run_main(args, capsys)
    assert code == 0, err
    assert f"{N_TILES} tiles, 4 finished in checkpoints, 5 to compute on the Dask cluster" in err, err
    assert "4 tiles reused from checkpoints, 5 computed on the Dask cluster" in err, err
    assert err.count(", from its checkpoint)") == 4
    assert _sha256(out) == reference
    assert not (out / stages.PARTIAL_DIR).exists()


def test_an_unreachable_scheduler_is_refused_in_one_line(dem, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ill"
    res = run_cli("illumination", str(dem), str(out), *OPTIONS, "--scheduler", "tcp://127.0.0.1:1")
    assert res.returncode == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("prospect: error: --scheduler tcp://127.0.0.1:1: "), res.stderr
    assert "cannot connect to the Dask scheduler" in lines[0]
    assert not out.exists()

    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:1")
    code, err = run_main(["illumination", str(dem), str(out), *OPTIONS], capsys)
    assert code == 2 and err.startswith("prospect: error: DASK_SCHEDULER_ADDRESS tcp://127.0.0.1:1: "), err
    assert len(err.splitlines()) == 1 and not out.exists()


def test_a_task_limits_its_threads_to_the_workers(monkeypatch):
    """On a worker of 1 thread a tile runs 1 azimuth thread and 1 numba thread (2 workers x 1
    thread do not oversubscribe 2 cores); numba's setting is restored after the task."""
    import numba

    from prospect.illumination import maps
    from prospect.illumination.tiles import TileJob

    seen: dict[str, object] = {}

    def fake_products(th, window, samples):
        seen.update(workers=th.workers, numba=numba.get_num_threads(), window=window)
        return "products"

    monkeypatch.setattr(maps, "_worker_threads", lambda: 1)
    monkeypatch.setattr(maps, "tile_products", fake_products)
    before = numba.get_num_threads()
    job = TileJob((0, 32, 32, 64), (0, 16), None, None)  # type: ignore[arg-type]  # not read by the fake
    assert maps.cluster_tile_products(job, {"workers": 4}, None, None) == "products"  # type: ignore[arg-type]
    assert seen == {"workers": 1, "numba": 1, "window": (0, 32, 32, 64)}
    assert numba.get_num_threads() == before


def test_a_task_shares_its_workers_threads_with_the_tasks_running_beside_it(monkeypatch):
    from types import SimpleNamespace

    import distributed

    from prospect.illumination import maps

    assert maps._worker_threads() is None  # not on a worker
    for nthreads, running, want in ((1, 1, 1), (4, 1, 4), (4, 2, 2), (4, 4, 1), (2, 3, 1)):
        worker = SimpleNamespace(state=SimpleNamespace(nthreads=nthreads, executing_count=running))
        monkeypatch.setattr(distributed, "get_worker", lambda worker=worker: worker)
        assert maps._worker_threads() == want, (nthreads, running)


def test_kill_9_during_the_threaded_stage_then_rerun_reuses_the_finished_tiles(dem, tmp_path):
    """``kill -9`` of ``prospect illumination`` once two tiles are checkpointed: the rerun of the
    same command says how many tiles it reused, computes only the others, and gives the same files
    as an uninterrupted run (more azimuths than the other tests, so a tile takes long enough to
    be caught between checkpoints)."""
    options = [*OPTIONS, "--azimuths", "1440"]
    whole = run_cli("illumination", str(dem), str(tmp_path / "whole"), *options, env=_env())
    assert whole.returncode == 0, whole.stderr[-3000:]
    reference = _sha256(tmp_path / "whole")
    out = tmp_path / "ill"
    cmd = [str(Path(sys.executable).parent / "prospect"), "illumination", str(dem), str(out), *options]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while len(list(out.rglob("tile_*.npz"))) < 2:
            assert proc.poll() is None, "the stage finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    kept = len(list(out.rglob("tile_*.npz")))
    assert 2 <= kept < N_TILES and not list(out.glob("*.tif"))
    res = run_cli("illumination", str(dem), str(out), *options, env=_env())
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"{kept} tiles reused from checkpoints, {N_TILES - kept} computed on local threads" in res.stderr, res.stderr
    assert res.stderr.count(", from its checkpoint)") == kept
    assert _sha256(out) == reference
