"""Data manifests: one YAML file per data product in ``data_manifests/``.

A manifest says what a product is (mission, instrument, product id and version,
citation, licence), where its files come from (URL, published checksum or sha256,
size), and how to read it (format, the file to open, units and the rule that turns
stored numbers into physical values, nodata, CRS, resolution). Every manifest is
validated against ``prospect/schemas/manifest.schema.json``; a violation is one line
naming the file and the key.

Manifests are looked up in ``PROSPECT_MANIFEST_DIR`` if set, else in the package's
data manifests (:func:`package_data_dir`): the repository's ``data_manifests/`` in a
checkout, ``prospect/data_manifests/`` in an installed wheel.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from prospect.errors import ManifestError, ProspectError

_PACKAGE = Path(__file__).resolve().parents[1]
_SCHEMA_PATH = _PACKAGE / "schemas" / "manifest.schema.json"

#: The data folders shipped with the package (top-level folders of the repository).
PACKAGE_DATA_FOLDERS = ("data_manifests", "pipelines")


def package_data_dir(name: str) -> Path:
    """A data folder shipped with the package: ``"data_manifests"`` or ``"pipelines"``.

    A wheel installs them inside the package (``prospect/<name>/``, by the package-dir
    mapping in pyproject.toml); in a source checkout (an editable install, or the checkout
    on ``PYTHONPATH``) they are the repository's top-level folders beside ``prospect/``.
    The installed folder wins when both exist. Wheels install as plain files, so this is a
    real :class:`~pathlib.Path` (manifests and pipelines record their own path).
    """
    if name not in PACKAGE_DATA_FOLDERS:
        raise ValueError(f"{name!r} is not one of the package's data folders {PACKAGE_DATA_FOLDERS}")
    installed = _PACKAGE / name
    return installed if installed.is_dir() else _PACKAGE.parent / name


def manifest_dir() -> Path:
    """Folder holding the manifests (``PROSPECT_MANIFEST_DIR``, else the package's data manifests)."""
    env = os.environ.get("PROSPECT_MANIFEST_DIR")
    if env:
        return Path(env)
    return package_data_dir("data_manifests")


def shared_data_dir() -> Path:
    """The real-data folder: ``PROSPECT_SHARED_DATA``, else ``../shared/data``.

    ``..`` is the parent of the checkout for a source checkout, and of the working folder
    for an installed package (which has no checkout to be relative to).
    """
    env = os.environ.get("PROSPECT_SHARED_DATA")
    if env:
        return Path(env)
    root = _PACKAGE.parent
    base = root if (root / "pyproject.toml").is_file() else Path.cwd()
    return base.parent / "shared" / "data"


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    return json.loads(_SCHEMA_PATH.read_text())


@dataclass(frozen=True)
class ManifestFile:
    name: str
    url: str
    checksum: str | None
    size: int | None = None
    checksum_source: str | None = None

    @property
    def algorithm(self) -> str | None:
        return self.checksum.split(":", 1)[0] if self.checksum else None

    @property
    def digest(self) -> str | None:
        return self.checksum.split(":", 1)[1] if self.checksum else None


@dataclass(frozen=True)
class Manifest:
    """A validated data manifest. ``raw`` keeps every key as written."""

    id: str
    path: Path
    format: str
    open: str
    files: tuple[ManifestFile, ...]
    units: str
    crs: str
    nodata: float | None
    scale: float = 1.0
    offset: float = 0.0
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    def file(self, name: str) -> ManifestFile:
        for f in self.files:
            if f.name == name:
                return f
        raise ManifestError(f"{self.path}: no file named {name!r} in 'files'")

    @property
    def open_file(self) -> ManifestFile:
        return self.file(self.open)

    @property
    def verified(self) -> bool:
        """True when every file has a published or recorded checksum."""
        return all(f.checksum for f in self.files)


def _key_path(error: Any) -> str:
    parts: list[str] = []
    for p in error.absolute_path:
        parts.append(f"[{p}]" if isinstance(p, int) else (f".{p}" if parts else str(p)))
    return "".join(parts) or "(top level)"


def validate(data: Any, source: Path | str) -> None:
    """Validate a parsed manifest against the schema; raise one-line :class:`ManifestError`."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(list(e.absolute_path)), str(e.message)))
    if errors:
        e = errors[0]
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        if e.validator == "additionalProperties":
            msg = f"unknown key: {e.message}"
        else:
            msg = e.message
        raise ManifestError(f"{source}: key '{_key_path(e)}': {msg}{more}")
    stem = Path(str(source)).stem
    if isinstance(source, Path) and data["id"] != stem:
        raise ManifestError(f"{source}: key 'id': {data['id']!r} must equal the file name {stem!r}")
    names = [f["name"] for f in data["files"]]
    if data["open"] not in names:
        raise ManifestError(f"{source}: key 'open': {data['open']!r} is not one of files[].name {names}")
    if len(set(names)) != len(names):
        raise ManifestError(f"{source}: key 'files': duplicate file names")


_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's when built with it: ~10x faster


class _UniqueKeyLoader(_SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


#: The largest YAML file prospect reads (a manifest, a parameter file, a pipeline): 1 MiB.
#: The shipped ones are a few kB; anything near this is a mistake or an attack.
YAML_MAX_BYTES = 1 << 20
#: The most aliases (``*name``) one YAML document may use.
YAML_MAX_ALIASES = 100
#: The most nodes one YAML document may hold with every alias expanded to what it names
#: (a "billion laughs" alias bomb is a few hundred bytes that expand to 10**9 nodes).
YAML_MAX_NODES = 100_000
#: The deepest nesting of mappings and sequences in one YAML document.
YAML_MAX_DEPTH = 100


class _Frame:
    """One open mapping or sequence of :func:`_check_yaml_events`: its anchor, expanded size and key."""

    __slots__ = ("anchor", "expect_key", "index", "is_mapping", "key", "size")

    def __init__(self, anchor: str | None, is_mapping: bool) -> None:
        self.anchor, self.is_mapping, self.size = anchor, is_mapping, 1
        self.expect_key, self.key, self.index = True, "", -1


def _key_of(stack: list[_Frame]) -> str:
    """The key path (``stages.sites.config``, ``files[2].url``) of the node the parser is at."""
    parts: list[str] = []
    for frame in stack:
        if frame.is_mapping and frame.key:
            parts.append(f".{frame.key}" if parts else frame.key)
        elif not frame.is_mapping and frame.index >= 0:
            parts.append(f"[{frame.index}]")
    return "".join(parts) or "(top level)"


def _check_yaml_events(text: str, source: Any, error: type[ProspectError]) -> None:
    """Refuse a YAML document whose aliases or nesting would blow up its loading.

    Walks the parser's events (no object is built): more than :data:`YAML_MAX_ALIASES`
    aliases, more than :data:`YAML_MAX_NODES` nodes with aliases expanded, or nesting
    deeper than :data:`YAML_MAX_DEPTH` is one ``error`` naming the key.
    """
    stack: list[_Frame] = []
    sizes: dict[str, int] = {}  # anchor -> expanded size of the node it names
    aliases = 0

    def refuse(why: str, mark: Any) -> None:
        line = f" line {mark.line + 1}:" if mark is not None else ""
        raise error(f"{source}:{line} {_key_of(stack)}: {why}")

    def add(size: int, anchor: str | None, mark: Any, scalar: str | None = None) -> None:
        if anchor:
            sizes[anchor] = size
        if not stack:
            return
        top = stack[-1]
        top.size += size
        if top.is_mapping:
            if top.expect_key:
                top.key = scalar if scalar is not None else "?"
            top.expect_key = not top.expect_key
        if sum(f.size for f in stack) > YAML_MAX_NODES:
            refuse(f"YAML expands to more than {YAML_MAX_NODES} nodes (an alias bomb?); refused", mark)

    for event in yaml.parse(text, Loader=_SafeLoader):
        if stack and not stack[-1].is_mapping and isinstance(event, yaml.NodeEvent):
            stack[-1].index += 1
        if isinstance(event, yaml.ScalarEvent):
            add(1, event.anchor, event.start_mark, event.value)
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > YAML_MAX_ALIASES:
                refuse(f"more than {YAML_MAX_ALIASES} YAML aliases; refused", event.start_mark)
            add(sizes.get(event.anchor or "", 1), None, event.start_mark)
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if stack and stack[-1].is_mapping and stack[-1].expect_key:
                refuse("a mapping or list as a key is not supported", event.start_mark)
            stack.append(_Frame(event.anchor, isinstance(event, yaml.MappingStartEvent)))
            if len(stack) > YAML_MAX_DEPTH:
                refuse(f"nested deeper than {YAML_MAX_DEPTH} levels; refused", event.start_mark)
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            frame = stack.pop()
            add(frame.size, frame.anchor, event.start_mark)


def parse_yaml(text: str, source: Any, error: type[ProspectError]) -> Any:
    """YAML text to data, every problem one ``error`` naming the line (or key).

    Duplicate keys are refused (PyYAML silently keeps the last one), and so are documents
    that exceed :data:`YAML_MAX_BYTES`, :data:`YAML_MAX_ALIASES`, :data:`YAML_MAX_NODES` or
    :data:`YAML_MAX_DEPTH`: they are checked on the parser's events before anything is built.
    """
    if len(text) > YAML_MAX_BYTES:
        raise error(f"{source}: larger than {YAML_MAX_BYTES} bytes; YAML files prospect reads are small")
    try:
        _check_yaml_events(text, source, error)
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error(f"{source}:{where} not valid YAML ({' '.join(str(problem).split())})") from None
    except RecursionError:  # the depth limit above makes this unreachable; kept as a last guard
        raise error(f"{source}: nested too deeply to read") from None


def read_yaml_file(
    path: Any,
    label: Any,
    error: type[ProspectError],
    *,
    kind: str,
    missing: type[ProspectError] | None = None,
    missing_text: str | None = None,
) -> Any:
    """A UTF-8 YAML file (manifest, parameter file, pipeline) to data, every problem one line.

    ``path`` is a :class:`~pathlib.Path` or an :mod:`importlib.resources` traversable.
    A missing file is ``missing`` (default ``error``) saying ``missing_text`` (default
    "no such <kind> file"); a folder, a file larger than :data:`YAML_MAX_BYTES`, an
    unreadable or non-UTF-8 file and bad YAML (:func:`parse_yaml`) are ``error``.
    """
    if isinstance(path, Path) and path.is_dir():
        raise error(f"{label}: is a folder, not a {kind} file")
    try:
        with path.open("rb") as f:
            raw = f.read(YAML_MAX_BYTES + 1)  # never more: a huge file (or /dev/zero) is not read whole
        if len(raw) > YAML_MAX_BYTES:
            raise error(f"{label}: larger than {YAML_MAX_BYTES} bytes; {kind} files are small YAML files")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise (missing or error)(f"{label}: {missing_text or f'no such {kind} file'}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{label}: not UTF-8 text (byte {exc.start}); {kind} files are UTF-8 YAML") from None
    except OSError as exc:
        raise error(f"{label}: cannot read ({exc.strerror})") from None
    return parse_yaml(text, label, error)


def load_manifest_file(path: Path) -> Manifest:
    """Parse and validate one manifest file."""
    data = read_yaml_file(path, path, ManifestError, kind="manifest", missing_text="manifest file not found")
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: a manifest must be a mapping of keys to values")
    validate(data, path)
    files = tuple(
        ManifestFile(
            name=f["name"],
            url=f["url"],
            checksum=f["checksum"],
            size=f.get("size"),
            checksum_source=f.get("checksum_source"),
        )
        for f in data["files"]
    )
    return Manifest(
        id=data["id"],
        path=path,
        format=data["format"],
        open=data["open"],
        files=files,
        units=data["units"],
        crs=data["crs"],
        nodata=data["nodata"],
        scale=float(data.get("scale", 1.0)),
        offset=float(data.get("offset", 0.0)),
        raw=data,
    )


def _manifest_ids() -> list[str]:
    return sorted(p.stem for p in manifest_dir().glob("*.yaml"))


def list_manifests() -> list[str]:
    """Ids of every manifest in :func:`manifest_dir`; :class:`ManifestError` when there is none.

    An empty or missing folder is an installation or ``PROSPECT_MANIFEST_DIR`` mistake, never
    an empty catalogue: the package ships its manifests.
    """
    ids = _manifest_ids()
    if not ids:
        folder = manifest_dir()
        why = "no such folder" if not folder.is_dir() else "no *.yaml manifests in it"
        src = "PROSPECT_MANIFEST_DIR" if os.environ.get("PROSPECT_MANIFEST_DIR") else "the package's data manifests"
        raise ManifestError(f"{folder}: {why} ({src}); the package ships its data manifests there")
    return ids


def load_manifest(id_or_path: str | Path) -> Manifest:
    """A manifest by id (``"lola_ldem_4"``) or by path to its YAML file."""
    p = Path(id_or_path)
    if p.suffix in (".yaml", ".yml"):
        return load_manifest_file(p)
    candidate = manifest_dir() / f"{id_or_path}.yaml"
    if candidate.exists():
        return load_manifest_file(candidate)
    known = ", ".join(_manifest_ids()[:12])
    raise ManifestError(f"no data manifest with id {str(id_or_path)!r} in {manifest_dir()} (known: {known}, ...)")


def is_manifest_id(value: str) -> bool:
    """True when ``value`` names a manifest (and is not an existing path)."""
    return not Path(value).exists() and (manifest_dir() / f"{value}.yaml").exists()


def manifest_for_file(path: Path, digest: str) -> Manifest | None:
    """The manifest that lists this exact file (same name and sha256 hex ``digest``), if any."""
    name = path.name.lower()
    for mid in _manifest_ids():
        try:
            if name not in (manifest_dir() / f"{mid}.yaml").read_text(encoding="utf-8").lower():
                continue  # cheap pre-filter: this manifest cannot list the file
            m = load_manifest(mid)
        except Exception:  # a broken manifest must not stop a path open
            continue
        for f in m.files:
            if f.name.lower() == name and f.checksum == f"sha256:{digest}":
                return m
    return None
