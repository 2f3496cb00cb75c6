"""``make test-wheel``: build the wheel, install it into a fresh venv outside the checkout,
and use it from a folder outside the checkout as a user would.

Steps (each must succeed, else the exit code is 1 with one line saying which):

1. create a fresh venv (``--venv``, default ``/tmp/prospect-wheel-venv``); copy the
   checkout's source (no ``.git``, venvs, ``build/``, ``dist/``, run folders) to a
   temporary folder and build the wheel there with the venv's ``pip wheel --no-deps`` (a
   clean copy: setuptools' ``build/`` folder keeps files deleted from the source, so an
   in-tree build could hide a missing file);
2. check the wheel's contents: the data manifests, pipelines, schemas, configs and
   templates are in it; the benchmarks and the tests are not;
3. install the wheel into the venv with the lock (``pip install -c constraints.txt``);
4. from a temporary folder outside the checkout, with ``PYTHONPATH`` and
   ``PROSPECT_MANIFEST_DIR`` unset and a private ``PROSPECT_CACHE``, run
   ``prospect manifests`` (at least 20 ids, ``lola_ldem_4`` among them),
   ``prospect info lola_ldem_4`` with ``PROSPECT_SHARED_DATA`` (the product is named), and
   ``prospect run demo --out <tmp>/demo --no-progress`` (the shipped demo pipeline by name,
   offline: it writes report.html, project.qgz, sites.gpkg and run.json).

Run with the Python that should create the venv: ``python tests/wheel_check.py [--venv DIR]
[--keep]``. ``PROSPECT_SHARED_DATA`` defaults to ``../shared/data`` beside the checkout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: What the wheel must hold (path patterns inside it) and must not.
MUST_HOLD = (
    "prospect/data_manifests/lola_ldem_4.yaml",
    "prospect/pipelines/demo.yaml",
    "prospect/schemas/manifest.schema.json",
    "prospect/schemas/pipeline.schema.json",
    "prospect/config/sites.yaml",
    "prospect/export/templates/report.html.j2",
    "prospect/py.typed",
)
MUST_NOT_START = ("benchmarks/", "tests/", "prospect/bench")
#: What the demo run must write at the top of its run folder.
DEMO_DELIVERABLES = ("report.html", "project.qgz", "sites.gpkg", "run.json")
#: Copied from the checkout to build from; everything else (venvs, runs, caches) is left out.
IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
    "runs",
    "out",
    "test-artifacts",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".cache",
)


class CheckFailed(Exception):
    """One step failed; the message says which and why."""


def _run(cmd: Sequence[str | Path], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 3600) -> str:
    """Run ``cmd``; its output, or :class:`CheckFailed` with the tail of it."""
    shown = " ".join(str(c) for c in cmd)
    print(f"wheel-check: $ {shown}", flush=True)
    t0 = time.monotonic()
    try:
        res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"{shown}: timed out after {timeout:.0f} s") from None
    print(f"wheel-check:   exit {res.returncode} in {time.monotonic() - t0:.0f} s", flush=True)
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-30:])
        raise CheckFailed(f"{shown}: exit {res.returncode}\n{tail}")
    return res.stdout


def make_venv(venv: Path) -> Path:
    if venv.resolve().is_relative_to(ROOT):
        raise CheckFailed(f"{venv}: the venv must be outside the checkout {ROOT}")
    shutil.rmtree(venv, ignore_errors=True)
    _run([sys.executable, "-m", "venv", venv], cwd=ROOT.parent)
    _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip"], cwd=ROOT.parent)
    return venv / "bin"


def build_wheel(bin_dir: Path, work: Path) -> Path:
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    dist = work / "dist"
    _run([bin_dir / "python", "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", dist, src], cwd=work)
    wheels = sorted(dist.glob("prospect-*.whl"))
    if len(wheels) != 1:
        raise CheckFailed(f"expected one prospect wheel in {dist}, found {[w.name for w in wheels]}")
    return wheels[0]


def check_contents(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    missing = [n for n in MUST_HOLD if n not in names]
    if missing:
        raise CheckFailed(f"{wheel.name}: missing {missing}")
    manifests = [n for n in names if n.startswith("prospect/data_manifests/") and n.endswith(".yaml")]
    if len(manifests) != len(list((ROOT / "data_manifests").glob("*.yaml"))):
        raise CheckFailed(f"{wheel.name}: {len(manifests)} manifests, the checkout has more")
    pipelines = [n for n in names if n.startswith("prospect/pipelines/") and n.endswith(".yaml")]
    if len(pipelines) != len(list((ROOT / "pipelines").glob("*.yaml"))):
        raise CheckFailed(f"{wheel.name}: {len(pipelines)} pipelines, the checkout has more")
    stray = [n for n in names if n.startswith(MUST_NOT_START)]
    if stray:
        raise CheckFailed(f"{wheel.name}: must not ship {stray[:5]}")
    print(f"wheel-check: {wheel.name}: {len(manifests)} manifests, {len(pipelines)} pipelines, no benchmarks")


def install(bin_dir: Path, wheel: Path) -> None:
    _run(
        [bin_dir / "python", "-m", "pip", "install", "--quiet", "-c", ROOT / "constraints.txt", wheel], cwd=ROOT.parent
    )


def user_env(cache: Path, shared: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PROSPECT_MANIFEST_DIR", "VIRTUAL_ENV")}
    env.update(PROSPECT_CACHE=str(cache), PROSPECT_SHARED_DATA=str(shared), PYTHONNOUSERSITE="1")
    env.pop("PROSPECT_MIRROR", None)
    return env


def use_it(bin_dir: Path, work: Path, shared: Path) -> None:
    here = work / "user"
    here.mkdir()
    env = user_env(work / "cache", shared)
    probe = "import importlib.util, prospect; print(prospect.__file__, importlib.util.find_spec('benchmarks') is None)"
    where, no_benchmarks = _run([bin_dir / "python", "-c", probe], cwd=here, env=env).split()
    if not Path(where).resolve().is_relative_to(bin_dir.parent.resolve()):
        raise CheckFailed(f"prospect imported from {where}, not from the wheel's venv {bin_dir.parent}")
    if no_benchmarks != "True":
        raise CheckFailed("the benchmarks are importable from the installed wheel")
    prospect = bin_dir / "prospect"

    ids = [line.split()[0] for line in _run([prospect, "manifests"], cwd=here, env=env).splitlines() if line.strip()]
    if len(ids) < 20 or "lola_ldem_4" not in ids:
        raise CheckFailed(f"prospect manifests listed {len(ids)} ids ({ids[:5]}...): expected >= 20 with lola_ldem_4")
    print(f"wheel-check: prospect manifests: {len(ids)} manifests")

    if not (shared / "SHA256SUMS").is_file():
        raise CheckFailed(f"shared data not found at {shared} (set PROSPECT_SHARED_DATA)")
    info = _run([prospect, "info", "lola_ldem_4"], cwd=here, env=env)
    if "LDEM_4" not in info or "lola_ldem_4" not in info:
        raise CheckFailed(f"prospect info lola_ldem_4 does not name the product:\n{info}")
    print("wheel-check: prospect info lola_ldem_4: names LDEM_4")

    out = work / "demo"
    _run([prospect, "run", "demo", "--out", out, "--no-progress"], cwd=here, env=env, timeout=3600)
    missing = [name for name in DEMO_DELIVERABLES if not (out / name).is_file() or (out / name).stat().st_size == 0]
    if missing:
        raise CheckFailed(f"prospect run demo: {out} lacks {missing}")
    print(f"wheel-check: prospect run demo: {', '.join(DEMO_DELIVERABLES)} written")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python tests/wheel_check.py", description=__doc__.splitlines()[0])
    p.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "prospect-wheel-venv")
    p.add_argument("--keep", action="store_true", help="Keep the work folder (wheel, demo run) for inspection.")
    args = p.parse_args(argv)
    shared = Path(os.environ.get("PROSPECT_SHARED_DATA") or ROOT.parent / "shared" / "data").resolve()
    work = Path(tempfile.mkdtemp(prefix="prospect-wheel-check-"))
    try:
        bin_dir = make_venv(args.venv.resolve())
        wheel = build_wheel(bin_dir, work)
        check_contents(wheel)
        install(bin_dir, wheel)
        use_it(bin_dir, work, shared)
    except CheckFailed as exc:
        print(f"wheel-check: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"wheel-check: work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("wheel-check: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
