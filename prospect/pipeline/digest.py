"""What a stage's code is: a digest of the source files it runs and of the locked dependencies.

The stage cache (:func:`prospect.pipeline.runner.stage_key`) must know the code, not only
the package version (always the same between releases): a bug fix in the He-3 model must
recompute the resources stage and the stages after it, and nothing before.

A stage's code is the stage layer (the files of :mod:`prospect.pipeline.stages`, the
runner and the pipeline definition, and the modules they import at module level) plus
the prospect modules its ``run_<stage>`` function imports (with the ``stages`` helpers it
calls), followed transitively through their imports (every ``import`` statement of a
module, at any level: a function-level import runs too). Package data files
(``.yaml``, ``.json``, ``.j2``) belong to the package folder that holds them: with it
when one of its modules is used, always when they are outside any subpackage (e.g.
``schemas/``). Files are read in sorted order; the digests are computed once per process.

The dependency part is the installed version of every distribution in prospect's
dependency list (:func:`importlib.metadata.requires`): an upgrade of numpy or GDAL's
bindings recomputes every stage.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import re
from importlib import metadata
from pathlib import Path

import prospect

__all__ = ["STAGE_FUNCTIONS", "code_digest", "dependency_versions", "package_digest", "stage_modules"]

#: the stage layer's function for each pipeline stage
STAGE_FUNCTIONS = {
    "terrain": "run_terrain",
    "illumination": "run_illumination",
    "resources": "run_resources",
    "sites": "run_sites",
    "exports": "run_exports",
}
#: modules every stage runs (the runner and the pipeline definition), besides ``stages``' module-level imports
_COMMON = ("prospect", "prospect.pipeline", "prospect.pipeline.runner", "prospect.pipeline.spec")
_STAGES = "prospect.pipeline.stages"
_DATA_SUFFIXES = (".yaml", ".json", ".j2")


def _root() -> Path:
    return Path(prospect.__file__).resolve().parent


@functools.cache
def _modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    root = _root()
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = ("prospect", *path.relative_to(root).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _package_of(name: str) -> str:
    """The package a module is in (itself for a package's ``__init__``)."""
    path = _modules()[name]
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _resolve(node: ast.Import | ast.ImportFrom, package: str) -> set[str]:
    """The prospect modules an import statement in ``package`` loads (with their parent packages)."""
    modules = _modules()
    targets: list[str] = []
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
    loaded: set[str] = set()
    for target in targets:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name in modules:
                loaded.add(name)
    return loaded


@functools.cache
def _tree(name: str) -> ast.Module:
    return ast.parse(_modules()[name].read_bytes())


def _type_checking_only(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): imports for type checkers, never run."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST) -> list[ast.AST]:
    """Every node below ``node`` (itself included), skipping ``if TYPE_CHECKING:`` bodies."""
    found: list[ast.AST] = []
    todo = [node]
    while todo:
        current = todo.pop()
        found.append(current)
        if _type_checking_only(current):
            assert isinstance(current, ast.If)
            todo.extend(current.orelse)
            continue
        todo.extend(ast.iter_child_nodes(current))
    return found


def _imports(nodes: list[ast.stmt] | ast.AST, package: str) -> set[str]:
    body = nodes if isinstance(nodes, list) else [nodes]
    found: set[str] = set()
    for stmt in body:
        for node in _walk(stmt):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found |= _resolve(node, package)
    return found


def _closure(start: set[str]) -> set[str]:
    """``start`` and every prospect module they import, transitively."""
    seen: set[str] = set()
    todo = sorted(start)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(sorted(_imports(_tree(name).body, _package_of(name)) - seen))
    return seen


def _stage_roots(function: str) -> set[str]:
    """The modules the stage layer's ``function`` imports, with the stage helpers it calls."""
    tree = _tree(_STAGES)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    todo, done = [function], set()
    roots: set[str] = set()
    while todo:
        fn = todo.pop()
        if fn in done:
            continue
        done.add(fn)
        node = functions[fn]
        roots |= _imports(node, "prospect.pipeline")
        called = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in functions}
        todo.extend(sorted(called - done))
    return roots


@functools.cache
def stage_modules(stage: str) -> tuple[str, ...]:
    """The modules whose source is part of ``stage``'s code (module docstring), sorted."""
    modules = _modules()
    layer = [name for name in (*_COMMON, _STAGES) if name in modules]
    start = _stage_roots(STAGE_FUNCTIONS[stage])
    for name in layer:  # the stage layer's own files, and what they import at module level
        top = [n for n in _tree(name).body if not isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        start |= _imports(top, _package_of(name))
    return tuple(sorted(set(layer) | _closure(start - set(layer))))


def _data_files(packages: set[str]) -> list[Path]:
    """The package data files of ``packages``, and those outside any subpackage."""
    root = _root()
    files = []
    for path in sorted(root.rglob("*")):
        if path.suffix not in _DATA_SUFFIXES or not path.is_file():
            continue
        folder = path.parent
        while folder != root and not (folder / "__init__.py").is_file():
            folder = folder.parent
        owner = ".".join(("prospect", *folder.relative_to(root).parts))
        if owner == "prospect" or owner in packages:
            files.append(path)
    return files


def _digest(paths: list[Path]) -> str:
    root = _root()
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


@functools.cache
def code_digest(stage: str) -> str:
    """sha256 of the source and data files of ``stage``'s code (module docstring)."""
    names = stage_modules(stage)
    modules = _modules()
    packages = {_package_of(n) for n in names}
    return _digest([modules[n] for n in names] + _data_files(packages))


@functools.cache
def package_digest() -> str:
    """sha256 of every ``.py``, ``.yaml``, ``.json`` and ``.j2`` file of the package, in sorted order."""
    root = _root()
    return _digest([p for p in root.rglob("*") if p.is_file() and p.suffix in (".py", *_DATA_SUFFIXES)])


@functools.cache
def dependency_versions() -> tuple[tuple[str, str], ...]:
    """(distribution, installed version) of prospect's dependencies (not the optional extras), sorted."""
    try:
        requires = metadata.requires("prospect") or []
    except metadata.PackageNotFoundError:
        return ()
    versions = {}
    for req in requires:
        if "extra ==" in req.replace('"', " ").replace("'", " ") or "extra==" in req:
            continue
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
        if not match:
            continue
        name = match.group(1)
        try:
            versions[name.lower()] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name.lower()] = "not installed"
    return tuple(sorted(versions.items()))
