"""Packaging: what the wheel holds and how the package finds its data, checked fast in the
checkout (``make test-wheel`` builds and installs the real wheel: tests/wheel_check.py).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from prospect.errors import InputNotFoundError, ManifestError
from prospect.io.manifests import list_manifests, manifest_dir, package_data_dir
from prospect.pipeline.spec import find_pipeline, load_pipeline, shipped_pipelines

ROOT = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_the_package_list_names_every_package_folder():
    """The list is explicit (a package-dir mapping cannot be combined with packages.find): a new
    subpackage must be added to it, or the wheel would ship without it."""
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "prospect").rglob("__init__.py")} - {""}
    listed = set(SETUPTOOLS["packages"])
    mapped = set(SETUPTOOLS["package-dir"])
    assert listed - mapped == on_disk
    assert not any(p.startswith(("benchmarks", "tests")) for p in listed)


def test_the_mapped_data_folders_are_the_repository_folders():
    for package, folder in SETUPTOOLS["package-dir"].items():
        assert package in SETUPTOOLS["packages"]
        assert (ROOT / folder).is_dir() and any((ROOT / folder).glob("*.yaml")), folder
        assert SETUPTOOLS["package-data"][package] == ["*.yaml"]
        name = package.removeprefix("prospect.")
        assert package_data_dir(name).resolve() == (ROOT / folder).resolve()  # the checkout's, here


def test_package_data_dir_refuses_other_names():
    with pytest.raises(ValueError, match="data folders"):
        package_data_dir("benchmarks")


def test_manifests_come_from_the_package(monkeypatch):
    monkeypatch.delenv("PROSPECT_MANIFEST_DIR", raising=False)
    assert manifest_dir().resolve() == (ROOT / "data_manifests").resolve()
    assert len(list_manifests()) >= 20


def test_no_manifests_is_an_error_not_an_empty_list(tmp_path, monkeypatch):
    monkeypatch.setenv("PROSPECT_MANIFEST_DIR", str(tmp_path))
    with pytest.raises(ManifestError, match=r"no \*\.yaml manifests"):
        list_manifests()
    monkeypatch.setenv("PROSPECT_MANIFEST_DIR", str(tmp_path / "absent"))
    with pytest.raises(ManifestError, match="no such folder"):
        list_manifests()


def test_a_shipped_pipeline_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert set(shipped_pipelines()) == {p.stem for p in (ROOT / "pipelines").glob("*.yaml")}
    demo = ROOT / "pipelines" / "demo.yaml"
    assert find_pipeline("demo").resolve() == demo.resolve()
    assert find_pipeline(Path("demo.yaml")).resolve() == demo.resolve()
    spec = load_pipeline("demo")
    assert spec.name == "demo" and spec.path == demo.resolve()


def test_an_existing_path_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "demo.yaml"
    mine.write_text(
        (ROOT / "pipelines" / "demo.yaml").read_text(encoding="utf-8").replace("pipeline: demo", "pipeline: mine")
    )
    assert load_pipeline("demo.yaml").name == "mine"
    assert load_pipeline(mine).name == "mine"
    folder = tmp_path / "demo"
    folder.mkdir()
    with pytest.raises(InputNotFoundError, match="is a folder"):
        load_pipeline("demo")


def test_an_unknown_name_is_one_line_naming_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputNotFoundError, match="shipped: demo") as err:
        load_pipeline("nonesuch")
    assert "\n" not in str(err.value)
    with pytest.raises(InputNotFoundError, match="no such pipeline file"):
        load_pipeline("sub/nonesuch.yaml")
