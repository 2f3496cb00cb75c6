"""The public API: ``prospect.__all__`` resolves, ``import prospect`` is cheap, and no module
uses another module's private (underscore) names."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import prospect

PKG = Path(prospect.__file__).resolve().parent
ROOT = PKG.parent


def test_every_public_name_resolves():
    assert len(set(prospect.__all__)) == len(prospect.__all__)
    assert set(prospect.__all__) == {"__version__", *prospect._EXPORTS, *prospect._SUBMODULES}
    for name in prospect.__all__:
        value = getattr(prospect, name)
        assert value is not None, name
        if name in prospect._EXPORTS:
            assert getattr(value, "__module__", None) == prospect._EXPORTS[name], name
    assert set(prospect.__all__) <= set(dir(prospect))
    with pytest.raises(AttributeError, match="no_such_name"):
        prospect.no_such_name  # noqa: B018


def test_subpackage_all_resolves():
    for init in sorted(PKG.rglob("__init__.py")):
        name = ".".join(init.parent.relative_to(ROOT).parts)
        module = importlib.import_module(name)
        for public in getattr(module, "__all__", ()):
            assert hasattr(module, public), f"{name}.__all__ names {public!r}, which it does not define"


def test_import_prospect_is_cheap():
    heavy = ("dask", "rasterio", "xarray", "pyproj")
    code = (
        f"import sys, prospect; print(','.join(m for m in {heavy!r} if m in sys.modules)); print(prospect.__version__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout.splitlines()
    assert out[0] == "", f"import prospect imported {out[0]}"
    assert out[1] == prospect.__version__


# --- no module uses another's private names --------------------------------------------


def _is_private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _module_of(path: Path) -> tuple[str, str]:
    """(module name, its package) of a file under prospect/."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        name = ".".join(parts[:-1])
        return name, name
    name = ".".join(parts)
    return name, name.rpartition(".")[0]


def _foreign_private(target: str, module: str, package: str) -> str | None:
    """The first private component of the dotted ``target`` that ``module`` may not use, or None.

    A module may use its own private names and its own package's private *modules*
    (``from prospect.terrain import _kernels as K`` inside prospect/terrain/); nothing else.
    """
    parts = target.split(".")
    for i, part in enumerate(parts):
        if not _is_private(part):
            continue
        owner, here = ".".join(parts[:i]), ".".join(parts[: i + 1])
        if owner == module:
            continue
        if owner == package and _is_module(here):
            continue
        return here
    return None


def _dotted(node: ast.AST) -> list[str] | None:
    """``a.b.c`` as ['a', 'b', 'c'] for a chain of attributes on a name, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def private_attributes(path: Path) -> set[str]:
    """Private attribute names ``path`` defines on its classes: methods, class-level fields, ``self._x = ...``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(item.target.id)
                elif isinstance(item, ast.Assign):
                    names.update(t.id for t in item.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
        elif (
            isinstance(node, ast.Call)
            and _dotted(node.func) == ["object", "__setattr__"]
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            names.add(node.args[1].value)  # frozen dataclasses set fields in __post_init__
    return {n for n in names if _is_private(n)}


def private_name_uses(path: Path, foreign_attributes: frozenset[str] = frozenset()) -> list[str]:
    """Every use in ``path`` of another prospect module's private name, as 'file:line: name'.

    Names reached through a module (``from prospect.grid import _x``, ``grid._x`` after
    ``from prospect import grid``) are resolved exactly; on other objects
    (``table._index``), an attribute in ``foreign_attributes`` (private attributes that
    other modules' classes define and this one does not) is reported.
    """
    module, package = _module_of(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    bound: dict[str, str] = {}  # local name -> the prospect module it is bound to

    def check(target: str, line: int) -> None:
        bad = _foreign_private(target, module, package)
        if bad is not None:
            found.append(f"{path.relative_to(ROOT)}:{line}: {bad}")

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "prospect":
            base = node.module or ""
            for alias in node.names:
                target = f"{base}.{alias.name}"
                check(target, node.lineno)
                if _is_module(target):
                    bound[alias.asname or alias.name] = target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != "prospect":
                    continue
                check(alias.name, node.lineno)
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    bound["prospect"] = "prospect"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain = _dotted(node)
            if chain is not None and chain[0] in bound:
                check(".".join([bound[chain[0]], *chain[1:]]), node.lineno)
            elif node.attr in foreign_attributes and not (
                isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr} of another module's class")
    return sorted(set(found))


def test_private_name_checker_finds_what_it_should(tmp_path, monkeypatch):
    pkg = tmp_path / "prospect"
    (pkg / "sub").mkdir(parents=True)
    for f in ("__init__.py", "grid.py", "sub/__init__.py", "sub/_kernels.py", "sub/a.py", "sub/b.py"):
        (pkg / f).write_text("")
    (pkg / "sub" / "a.py").write_text(
        "from prospect.sub import _kernels as K\n"  # fine: the package's own private module
        "from prospect.grid import _wrap, lonlat\n"  # not fine
        "from prospect import grid\n"
        "import prospect.sub.b as B\n"
        "x = grid._split(1) + B._helper() + K.kernel() + grid.public()\n"  # two uses
        "def f(self, table):\n    return self._own + table._index\n"
    )
    (pkg / "grid.py").write_text("from prospect.sub import _kernels\n")  # another package's private module
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert private_name_uses(pkg / "sub" / "a.py") == [
        "prospect/sub/a.py:2: prospect.grid._wrap",
        "prospect/sub/a.py:5: prospect.grid._split",
        "prospect/sub/a.py:5: prospect.sub.b._helper",
    ]
    assert private_name_uses(pkg / "sub" / "a.py", frozenset({"_index", "_own"})) == [
        "prospect/sub/a.py:2: prospect.grid._wrap",
        "prospect/sub/a.py:5: prospect.grid._split",
        "prospect/sub/a.py:5: prospect.sub.b._helper",
        "prospect/sub/a.py:7: ._index of another module's class",
    ]
    (pkg / "sub" / "b.py").write_text(
        "class T:\n    _index: int = 0\n    def _m(self):\n        self._cache = 1\n"
        "    def __post_init__(self):\n        object.__setattr__(self, '_frozen', 2)\n"
    )
    assert private_attributes(pkg / "sub" / "b.py") == {"_index", "_m", "_cache", "_frozen"}
    assert private_name_uses(pkg / "grid.py") == ["prospect/grid.py:1: prospect.sub._kernels"]


def test_no_module_uses_another_modules_private_names():
    paths = sorted(PKG.rglob("*.py"))
    defined = {path: private_attributes(path) for path in paths}
    found = []
    for path in paths:
        foreign = set().union(*(names for other, names in defined.items() if other != path)) - defined[path]
        found += private_name_uses(path, frozenset(foreign))
    assert not found, "private names used across modules (give them public names):\n" + "\n".join(found)
