"""The stage cache knows the code: a change to one stage's source recomputes that stage and the
stages after it, and leaves the earlier ones cached (prospect.pipeline.digest)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import prospect
from prospect.pipeline import digest

PIPELINE = """\
pipeline: code_change
seed: 1
data:
  dem: {{path: {dem}}}
  tio2: {{path: {tio2}}}
grid:
  from: dem
stages:
  terrain: {{}}
  illumination: {{azimuths: 64, years: 0.1, step: {{value: 96, unit: h}}, max_distance: {{value: 8, unit: km}}}}
  resources: {{he3: {{samples: 0}}}}
  exports: {{}}
"""


def _run(package_root: Path, spec: Path, out: Path, *extra: str) -> dict[str, bool]:
    """``prospect run`` with ``package_root`` first on the path; returns stage -> ran."""
    code = (
        "import json, sys\n"
        "from prospect.pipeline.runner import run_pipeline\n"
        "from prospect.pipeline.spec import load_pipeline\n"
        "import prospect\n"
        "assert prospect.__file__.startswith(sys.argv[3]), prospect.__file__\n"
        "s = run_pipeline(load_pipeline(sys.argv[1]), sys.argv[2], resume=True, progress=False)\n"
        "print(json.dumps({k: v['ran'] for k, v in s['stages'].items()}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(package_root), "SOURCE_DATE_EPOCH": "1780000000"}
    res = subprocess.run(
        [sys.executable, "-c", code, str(spec), str(out), str(package_root)],
        capture_output=True,
        text=True,
        env=env,
        cwd=package_root,  # not the checkout: `python -c` puts the working folder first on the path
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def scene_files(tmp_path_factory):
    from prospect.synthetic import south_polar_scene, write_scene

    root = tmp_path_factory.mktemp("code_scene")
    files = write_scene(south_polar_scene(seed=3, shape=(128, 128), pixel_m=200.0), root / "scene")
    spec = root / "pipeline.yaml"
    spec.write_text(PIPELINE.format(dem=files["dem_lbl"], tio2=files["tio2_tif"]))
    return root, spec


def test_a_changed_stage_module_recomputes_that_stage_and_the_later_ones(scene_files, tmp_path):
    _root, spec = scene_files
    copy = tmp_path / "code"
    shutil.copytree(
        Path(prospect.__file__).parent, copy / "prospect", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    out = tmp_path / "run"
    assert _run(copy, spec, out) == {"terrain": True, "illumination": True, "resources": True, "exports": True}
    assert set(_run(copy, spec, out).values()) == {False}  # unchanged code: all cached
    keys = {s: json.loads((out / "stages" / s / "stage.json").read_text())["key"] for s in ("terrain", "resources")}

    he3 = copy / "prospect" / "resources" / "he3.py"
    he3.write_text(he3.read_text(encoding="utf-8") + "\n# a change to the He-3 model\n", encoding="utf-8")
    ran = _run(copy, spec, out)
    assert ran == {"terrain": False, "illumination": False, "resources": True, "exports": True}
    after = {s: json.loads((out / "stages" / s / "stage.json").read_text())["key"] for s in ("terrain", "resources")}
    assert after["terrain"] == keys["terrain"] and after["resources"] != keys["resources"]

    terrain = copy / "prospect" / "terrain" / "surface.py"
    terrain.write_text(terrain.read_text(encoding="utf-8") + "\n# a change to the slope\n", encoding="utf-8")
    assert set(_run(copy, spec, out).values()) == {True}  # the first stage: everything after it too


def test_stage_code_follows_the_imports():
    """Each stage's code holds its own science modules and the common ones, not another stage's."""
    terrain, resources = set(digest.stage_modules("terrain")), set(digest.stage_modules("resources"))
    common = {"prospect.grid", "prospect.layers", "prospect.pipeline.stages", "prospect.pipeline.runner"}
    assert common <= terrain and common <= resources
    assert "prospect.terrain.surface" in terrain and "prospect.resources.he3" not in terrain
    assert {"prospect.resources.he3", "prospect.resources.ice", "prospect.terrain.surface"} <= resources
    assert "prospect.export.package" in set(digest.stage_modules("exports"))
    assert "prospect.export.package" not in resources
    assert len({digest.code_digest(s) for s in digest.STAGE_FUNCTIONS}) == len(digest.STAGE_FUNCTIONS)
    names = dict(digest.dependency_versions())
    assert {"numpy", "xarray", "rasterio"} <= set(names)
