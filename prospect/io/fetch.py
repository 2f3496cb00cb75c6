"""Fetching the files of a data manifest: find them locally or download and verify them.

Every file of a manifest is looked up, in this order:

1. the shared real-data folder, ``shared_data_dir()/<shared_path>/<name>``, when the
   manifest has ``shared_path`` (the file is verified and used where it is, never copied);
2. the cache, ``cache_dir()/<manifest id>/<name>`` (``PROSPECT_CACHE``, else
   ``~/.cache/prospect``);
3. the mirror (the ``mirror`` argument, else ``PROSPECT_MIRROR``): a local folder, searched
   recursively for the file name (exact, then case-insensitive: PDS URLs are lowercase,
   labels uppercase), or a base URL (``<base>/<name>``, ``<base>/<shared_path>/<name>``,
   then the lowercase name); the file is copied/downloaded into the cache under the
   manifest's name so that a label and its data file stay side by side;
4. the manifest URL, downloaded with :func:`pooch.retrieve` into the cache.

Nothing enters the cache under its real name before it has been verified against the
manifest checksum: downloads and copies land in a hidden staging folder inside the cache
and are moved into place with :func:`os.replace` only once they match. A file whose
manifest publishes no checksum is refused in strict mode
(:class:`~prospect.errors.UnverifiedFileError`) and accepted with an
:class:`UnverifiedFileWarning` otherwise.

Hashing a multi-gigabyte raster on every open would be slow, so :func:`sha256_file`
keeps a persistent index (``<cache>/sha256-index.json``) of digests keyed by absolute
path, valid only while the file's size, ``mtime_ns`` and inode are unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from prospect.errors import (
    CachePathError,
    ChecksumError,
    FetchError,
    InputNotFoundError,
    ManifestError,
    UnverifiedFileError,
)
from prospect.io.manifests import Manifest, ManifestFile, load_manifest, shared_data_dir

__all__ = [
    "UnverifiedFileWarning",
    "cache_dir",
    "ensure_local",
    "fetch",
    "file_digest",
    "sha256_file",
    "verify_file",
]

log = logging.getLogger(__name__)

INDEX_NAME = "sha256-index.json"
_BLOCK = 1 << 20  # 1 MiB
_STAGING_PREFIX = ".fetch-"
_ALGORITHMS = ("sha256", "md5")
_index_lock = threading.Lock()


class UnverifiedFileWarning(UserWarning):
    """A file was accepted although its manifest publishes no checksum (non-strict mode)."""


# --------------------------------------------------------------------------- cache dir


def cache_dir() -> Path:
    """The download cache: ``PROSPECT_CACHE`` if set, else ``~/.cache/prospect``."""
    env = os.environ.get("PROSPECT_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "prospect"


def _cache_root(cache: Path | str | None) -> Path:
    return Path(cache).expanduser() if cache is not None else cache_dir()


# --------------------------------------------------------------------------- hashing


def hash_stream(path: Path, algorithm: str) -> str:
    """Hash a file in 1 MiB blocks (the only place that reads file contents to hash)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def hash_file(path: Path | str, algorithm: str = "sha256") -> str:
    """Hex digest of a file, streamed, without the memo index (for files being checked for
    corruption, or outside the cache's concern)."""
    return hash_stream(Path(path), algorithm)


def _stat_key(st: os.stat_result) -> dict[str, int]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


def _read_index(index_path: Path) -> dict[str, Any]:
    try:
        data = json.loads(index_path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_index(index_path: Path, data: dict[str, Any]) -> None:
    """Write the index atomically (temp file in the same folder + os.replace)."""
    try:
        index_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".sha256-index-", suffix=".tmp", dir=index_path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh, indent=0, sort_keys=True)
            os.replace(tmp, index_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:  # a read-only cache only costs a re-hash next time
        log.debug("could not write the hash index %s: %s", index_path, exc)


def _update_index(index_path: Path, changes: dict[str, dict[str, Any] | None]) -> None:
    """Merge ``changes`` (absolute path -> entry, or None to drop) into the index file."""
    with _index_lock:
        data = _read_index(index_path)  # re-read: another process may have added entries
        for key, entry in changes.items():
            if entry is None:
                data.pop(key, None)
            else:
                data[key] = entry
        _write_index(index_path, data)


def file_digest(path: Path | str, algorithm: str = "sha256", *, cache: Path | str | None = None) -> str:
    """Hex digest (``sha256`` or ``md5``) of ``path``, memoised in the cache's hash index.

    The index entry of a file is keyed by its absolute path and is used only while the
    file's size, ``mtime_ns`` and inode are those recorded, so a modified or replaced
    file is hashed again.
    """
    if algorithm not in _ALGORITHMS:
        raise ValueError(f"unsupported checksum algorithm {algorithm!r}; use one of {_ALGORITHMS}")
    p = Path(path).resolve()
    st = p.stat()
    key = str(p)
    index_path = _cache_root(cache) / INDEX_NAME
    stamp = _stat_key(st)
    with _index_lock:
        entry = _read_index(index_path).get(key)
    if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items()):
        cached = entry.get(algorithm)
        if isinstance(cached, str):
            return cached
    digest = hash_stream(p, algorithm)
    if _stat_key(p.stat()) != stamp:  # changed while we read it: do not record
        return digest
    new_entry: dict[str, int | str] = dict(stamp)
    if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items()):
        new_entry.update({a: entry[a] for a in _ALGORITHMS if isinstance(entry.get(a), str)})
    new_entry[algorithm] = digest
    _update_index(index_path, {key: new_entry})
    return digest


def sha256_file(path: Path | str, *, cache: Path | str | None = None) -> str:
    """Hex sha256 of ``path``, streamed in 1 MiB blocks and memoised in the hash index.

    The index (``<cache>/sha256-index.json``) is keyed by absolute path + size +
    ``mtime_ns`` (and inode), so a large file is hashed once, not on every open.
    """
    return file_digest(path, "sha256", cache=cache)


def _record_digest(path: Path, algorithm: str, digest: str, cache: Path | str | None, drop: Path | None = None) -> None:
    """Record a digest already known for ``path`` (e.g. verified while downloading)."""
    p = path.resolve()
    entry: dict[str, Any] = _stat_key(p.stat())
    entry[algorithm] = digest
    changes: dict[str, dict[str, Any] | None] = {str(p): entry}
    if drop is not None:
        changes[str(drop)] = None
    _update_index(_cache_root(cache) / INDEX_NAME, changes)


# --------------------------------------------------------------------------- verification


def _fetch_hint(manifest: Manifest | None) -> str:
    return f"`prospect fetch {manifest.id}`" if manifest is not None else "`prospect fetch <id>`"


def _where(manifest: Manifest | None) -> str:
    return f"manifest {manifest.path}" if manifest is not None else "its manifest"


def _unverified(mf: ManifestFile, manifest: Manifest | None, *, strict: bool, label: str | None) -> None:
    mpath = manifest.path if manifest is not None else "its manifest"
    what = f"{mf.name} ({label})" if label else mf.name
    whose = f"manifest {manifest.id}" if manifest is not None else "its manifest"
    if strict:
        raise UnverifiedFileError(
            f"{what}: {whose} publishes no checksum; strict mode refuses unverified files; "
            f"run without --strict or add a checksum to {mpath}"
        )
    warnings.warn(
        UnverifiedFileWarning(f"{what}: {whose} ({mpath}) publishes no checksum; accepted unverified"),
        stacklevel=4,
    )


def _check(
    path: Path,
    mf: ManifestFile,
    manifest: Manifest | None,
    *,
    strict: bool,
    label: str,
    advice: str,
    cache: Path | str | None,
) -> bool:
    """Verify ``path`` against ``mf``; ``label`` names the file in messages."""
    if not mf.checksum:
        if mf.size is not None and path.stat().st_size != mf.size:
            raise ChecksumError(
                f"{label}: {path.stat().st_size} bytes but {_where(manifest)} says {mf.size} for {mf.name}; {advice}"
            )
        _unverified(mf, manifest, strict=strict, label=label)
        return False
    algorithm, expected = mf.checksum.split(":", 1)
    expected = expected.lower()
    if algorithm not in _ALGORITHMS:
        raise ManifestError(
            f"{_where(manifest)}: file {mf.name!r}: unsupported checksum algorithm {algorithm!r}; use sha256: or md5:"
        )
    actual = file_digest(path, algorithm, cache=cache)
    if actual != expected:
        size = path.stat().st_size
        sizes = f" ({size} bytes, expected {mf.size})" if mf.size is not None and size != mf.size else ""
        raise ChecksumError(
            f"{label}: {algorithm} {actual[:12]} differs from {expected[:12]} published in "
            f"{_where(manifest)}{sizes}; {advice}"
        )
    return True


def verify_file(
    path: Path | str,
    manifest_file: ManifestFile,
    *,
    strict: bool,
    manifest: Manifest | None = None,
    cache: Path | str | None = None,
) -> bool:
    """Check ``path`` against the checksum of ``manifest_file``.

    Returns True when the checksum matched, False when the manifest publishes no checksum
    and the file was accepted (non-strict mode, with an :class:`UnverifiedFileWarning`).
    Raises :class:`ChecksumError` on a mismatch and :class:`UnverifiedFileError` for an
    unverifiable file in strict mode. ``manifest`` (optional) only improves messages.
    """
    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(f"{p}: no such file to verify against {_where(manifest)}")
    advice = f"the file is corrupt or outdated: delete it and re-fetch it ({_fetch_hint(manifest)})"
    return _check(p, manifest_file, manifest, strict=strict, label=str(p), advice=advice, cache=cache)


# --------------------------------------------------------------------------- paths


def _plain_name(name: str) -> bool:
    return (
        bool(name)
        and name not in (".", "..")
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
        and not os.path.isabs(name)
        and not os.path.splitdrive(name)[0]
    )


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


def _target_dir(manifest: Manifest, root: Path) -> Path:
    target = root / manifest.id
    if not _plain_name(manifest.id) or not _inside(target, root) or target.resolve() == root.resolve():
        raise CachePathError(
            f"manifest id {manifest.id!r} ({manifest.path}) would resolve outside the cache "
            f"directory {root}; ids must be plain names (letters, digits, _): fix the manifest"
        )
    return target


def _target(manifest: Manifest, mf: ManifestFile, target_dir: Path) -> Path:
    path = target_dir / mf.name
    if not _plain_name(mf.name) or not _inside(path, target_dir) or path.resolve() == target_dir.resolve():
        raise CachePathError(
            f"file name {mf.name!r} in manifest {manifest.path} would resolve outside the cache "
            f"directory {target_dir}; file names must be plain names without '/', '\\' or '..': "
            f"fix the manifest"
        )
    return path


def _shared_folder(manifest: Manifest) -> Path | None:
    sub = manifest.get("shared_path")
    if not sub:
        return None
    root = shared_data_dir()
    folder = root / sub
    if os.path.isabs(sub) or not _inside(folder, root):
        raise ManifestError(
            f"{manifest.path}: key 'shared_path': {sub!r} leaves the shared data folder {root}; "
            f"give a folder relative to it"
        )
    return folder


# --------------------------------------------------------------------------- progress bar


class _RichBar:
    """A pooch-compatible progress bar (total / update / reset / close) drawn with rich."""

    def __init__(self, description: str) -> None:
        self.description = description
        self._progress: Any = None
        self._task: Any = None
        self._total: int | None = None

    @property
    def total(self) -> int | None:
        return self._total

    @total.setter
    def total(self, value: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._total = int(value) or None
        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self._total)
        else:
            self._progress.update(self._task, total=self._total)

    def update(self, n: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=n)

    def reset(self) -> None:
        if self._progress is not None:
            self._progress.reset(self._task, total=self._total)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self._total or 0)
            self._progress.stop()
            self._progress = None


def _progressbar(url: str, name: str, progress: bool) -> Any:
    if not progress:
        return False
    if urlsplit(url).scheme in ("http", "https"):
        return _RichBar(f"{name} <- {urlsplit(url).netloc}")
    try:  # pooch's FTP downloader only knows tqdm
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    """Pooch logs staging paths and 'use this known_hash' advice: not for our users."""
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


# --------------------------------------------------------------------------- downloads


class _NotFound(Exception):
    """The source does not have the file (HTTP 404, no match in a mirror folder)."""


class _Unreachable(Exception):
    """The host could not be reached at all: skip its other candidate URLs."""


@contextlib.contextmanager
def _staging(target_dir: Path) -> Iterator[Path]:
    target_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=target_dir))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _net_reason(exc: BaseException) -> str:
    """'Connection refused' out of requests' nested ConnectionError text."""
    m = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
    if m:
        return m.group(1).strip()
    text = _short(exc)
    return "connection failed" if "Max retries exceeded" in text else text


def _download(
    url: str, manifest: Manifest, mf: ManifestFile, final: Path, *, strict: bool, progress: bool, cache: Path
) -> Path:
    """Download ``url`` to a staging folder, verify, then move it to ``final``."""
    import pooch
    import requests

    bar = _progressbar(url, mf.name, progress)
    advice_dl = (
        "the download was discarded (nothing kept in the cache); try again, use another "
        f"mirror (PROSPECT_MIRROR) or correct the checksum in {manifest.path}"
    )
    with _staging(final.parent) as staging:
        log.info("downloading %s -> %s", url, final)
        try:
            with _quiet_pooch():
                got = Path(pooch.retrieve(url, known_hash=mf.checksum, fname=mf.name, path=staging, progressbar=bar))
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status in (404, 410):
                raise _NotFound(f"{url}: HTTP {status}") from None
            raise FetchError(f"{url}: HTTP {status or '?'}") from None
        except requests.Timeout:
            raise _Unreachable(f"{url}: timed out") from None
        except requests.ConnectionError as exc:
            raise _Unreachable(f"{url}: {_net_reason(exc)}") from None
        except requests.RequestException as exc:
            raise FetchError(f"{url}: {_short(exc)}") from None
        except ValueError as exc:
            msg = str(exc)
            if "does not match the known hash" in msg:
                m = re.search(r"but got ([0-9a-fA-F]+)", msg)
                actual = m.group(1).lower() if m else "unknown"
                algorithm, expected = (mf.checksum or ":").split(":", 1)
                raise ChecksumError(
                    f"download of {mf.name} from {url}: {algorithm} {actual[:12]} differs from "
                    f"{expected[:12]} published in manifest {manifest.path}; {advice_dl}"
                ) from None
            raise FetchError(f"{url}: {_short(exc)}") from None
        except OSError as exc:  # ftplib errors, disk full, ...
            raise FetchError(f"{url}: {_short(exc)}") from None
        finally:
            if isinstance(bar, _RichBar):
                bar.close()
        # pooch has verified the checksum (known_hash) inside its own temporary file;
        # check the size as well (the only check possible for an unpublished checksum).
        if mf.size is not None and got.stat().st_size != mf.size:
            raise ChecksumError(
                f"download of {mf.name} from {url}: {got.stat().st_size} bytes but manifest "
                f"{manifest.path} says {mf.size}; {advice_dl}"
            )
        if not mf.checksum:
            _unverified(mf, manifest, strict=strict, label=f"downloaded from {url}")
        os.replace(got, final)
    if mf.checksum:
        algorithm, digest = mf.checksum.split(":", 1)
        _record_digest(final, algorithm, digest.lower(), cache)
    return final


def _copy_in(src: Path, manifest: Manifest, mf: ManifestFile, final: Path, *, strict: bool, cache: Path) -> Path:
    """Copy a local mirror file into the cache: staging copy, verify, then move into place."""
    advice = (
        f"the mirror copy is corrupt or a different version: fix or remove it, or fetch from "
        f"the manifest URL ({_fetch_hint(manifest)} without PROSPECT_MIRROR)"
    )
    with _staging(final.parent) as staging:
        staged = staging / mf.name
        shutil.copyfile(src, staged)
        _check(staged, mf, manifest, strict=strict, label=f"mirror file {src}", advice=advice, cache=cache)
        os.replace(staged, final)
    if mf.checksum:
        algorithm, digest = mf.checksum.split(":", 1)
        _record_digest(final, algorithm, digest.lower(), cache, drop=staged.resolve())
    return final


# --------------------------------------------------------------------------- mirror


def _is_url(value: str) -> bool:
    return urlsplit(value).scheme in ("http", "https", "ftp")


def _resolve_mirror(mirror: str | os.PathLike[str] | None) -> str | Path | None:
    value = os.fspath(mirror) if mirror is not None else os.environ.get("PROSPECT_MIRROR") or None
    if not value:
        return None
    if _is_url(value):
        return value.rstrip("/")
    if value.startswith("file://"):
        value = unquote(urlsplit(value).path)
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise FetchError(
            f"mirror {value!r} (mirror argument or PROSPECT_MIRROR) is neither an http(s)/ftp "
            f"base URL nor an existing folder; fix or unset it"
        )
    return folder


class _FolderMirror:
    """A local mirror folder, walked once, looked up by exact then case-insensitive name."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._exact: dict[str, list[Path]] | None = None
        self._lower: dict[str, list[Path]] = {}

    def _walk(self) -> None:
        exact: dict[str, list[Path]] = {}
        lower: dict[str, list[Path]] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(_STAGING_PREFIX))
            for fn in filenames:
                p = Path(dirpath) / fn
                exact.setdefault(fn, []).append(p)
                lower.setdefault(fn.lower(), []).append(p)
        self._exact, self._lower = exact, lower

    def candidates(self, name: str, shared_path: str | None) -> list[Path]:
        if self._exact is None:
            self._walk()
        assert self._exact is not None

        def depth(p: Path) -> tuple[int, str]:
            return (len(p.relative_to(self.root).parts), str(p))

        ordered: list[Path] = []
        if shared_path:
            ordered.append(self.root / shared_path / name)
        ordered.append(self.root / name)
        ordered += sorted(self._exact.get(name, []), key=depth)
        ordered += sorted(self._lower.get(name.lower(), []), key=depth)
        seen: set[Path] = set()
        out = []
        for p in ordered:
            if p not in seen and p.is_file():
                seen.add(p)
                out.append(p)
        return out


def _mirror_urls(base: str, name: str, shared_path: str | None) -> list[str]:
    urls = [f"{base}/{quote(name)}"]
    if shared_path:
        urls.append(f"{base}/{quote(shared_path.strip('/'))}/{quote(name)}")
    urls.append(f"{base}/{quote(name.lower())}")
    if shared_path:
        urls.append(f"{base}/{quote(shared_path.strip('/'))}/{quote(name.lower())}")
    return list(dict.fromkeys(urls))


# --------------------------------------------------------------------------- public API


def ensure_local(
    manifest: Manifest,
    *,
    strict: bool = False,
    mirror: str | os.PathLike[str] | None = None,
    cache: Path | str | None = None,
    progress: bool = True,
    download: bool = True,
) -> dict[str, Path]:
    """The local, verified path of every file of ``manifest`` (file name -> path).

    Looks in the shared data folder (``shared_path``), the cache, the mirror (argument or
    ``PROSPECT_MIRROR``: local folder or base URL) and finally the manifest URL. Downloads
    and mirror copies are verified before they are moved into the cache. With
    ``download=False`` nothing is downloaded (a local mirror folder is still used) and a
    missing file raises :class:`FetchError`.
    """
    root = _cache_root(cache)
    target_dir = _target_dir(manifest, root)
    # Check every name before touching the disk or the network.
    targets = {mf.name: _target(manifest, mf, target_dir) for mf in manifest.files}
    if strict:
        for mf in manifest.files:
            if not mf.checksum:
                _unverified(mf, manifest, strict=True, label=None)
    shared = _shared_folder(manifest)
    shared_path = manifest.get("shared_path")
    mirror_src: str | Path | None = None
    folder_mirror: _FolderMirror | None = None
    mirror_resolved = False
    fetch_hint = _fetch_hint(manifest)

    out: dict[str, Path] = {}
    for mf in manifest.files:
        final = targets[mf.name]
        # (1) shared data folder: verify in place, never copy.
        if shared is not None and (shared / mf.name).is_file():
            src = shared / mf.name
            _check(
                src,
                mf,
                manifest,
                strict=strict,
                label=f"shared file {src}",
                cache=root,
                advice=f"the shared copy differs from the manifest: correct the checksum in "
                f"{manifest.path} or point PROSPECT_SHARED_DATA at an intact copy",
            )
            out[mf.name] = src
            continue
        # (2) cache.
        if final.is_file():
            _check(
                final,
                mf,
                manifest,
                strict=strict,
                label=f"cached file {final}",
                cache=root,
                advice=f"the cached copy is corrupt or outdated: delete it and run {fetch_hint}",
            )
            out[mf.name] = final
            continue
        tried: list[str] = []
        checksum_errors: list[ChecksumError] = []
        if not mirror_resolved:  # only now: a bad mirror must not break files found locally
            mirror_src = _resolve_mirror(mirror)
            folder_mirror = _FolderMirror(mirror_src) if isinstance(mirror_src, Path) else None
            mirror_resolved = True
        # (3a) local mirror folder.
        if folder_mirror is not None:
            for src in folder_mirror.candidates(mf.name, shared_path):
                if mf.size is not None and src.stat().st_size != mf.size:
                    tried.append(f"{src}: {src.stat().st_size} bytes, expected {mf.size}")
                    continue
                try:
                    out[mf.name] = _copy_in(src, manifest, mf, final, strict=strict, cache=root)
                    break
                except ChecksumError as exc:
                    if isinstance(exc, UnverifiedFileError):
                        raise
                    checksum_errors.append(exc)
                    tried.append(f"{src}: checksum mismatch")
            else:
                tried.append(f"mirror folder {folder_mirror.root}: no file named {mf.name}")
            if mf.name in out:
                continue
        if not download:
            if checksum_errors:
                raise checksum_errors[0]
            places = [str(final)] + ([str(shared / mf.name)] if shared is not None else [])
            if folder_mirror is not None:
                places.append(f"mirror {folder_mirror.root}")
            raise FetchError(
                f"{mf.name} of manifest {manifest.id} is not available locally "
                f"(looked in {', '.join(places)}); run {fetch_hint}"
            )
        # (3b) mirror base URL, then (4) the manifest URL.
        urls = _mirror_urls(mirror_src, mf.name, shared_path) if isinstance(mirror_src, str) else []
        mirror_dead = False
        for url, from_mirror in [*((u, True) for u in urls), (mf.url, False)]:
            if from_mirror and mirror_dead:
                continue
            try:
                out[mf.name] = _download(url, manifest, mf, final, strict=strict, progress=progress, cache=root)
                break
            except _NotFound as exc:
                tried.append(str(exc))
            except _Unreachable as exc:
                tried.append(str(exc))
                mirror_dead = mirror_dead or from_mirror
            except UnverifiedFileError:
                raise
            except ChecksumError as exc:
                checksum_errors.append(exc)
                tried.append(f"{url}: checksum mismatch")
            except FetchError as exc:
                tried.append(str(exc))
        if mf.name in out:
            continue
        if checksum_errors:
            raise checksum_errors[0]
        raise FetchError(
            f"could not fetch {mf.name} of manifest {manifest.id} from {mf.url} "
            f"(tried: {'; '.join(tried)}); check the network or set PROSPECT_MIRROR to a mirror "
            f"folder or URL"
        )
    return out


def fetch(
    ids: list[str],
    *,
    strict: bool = False,
    mirror: str | os.PathLike[str] | None = None,
    cache: Path | str | None = None,
    progress: bool = True,
) -> dict[str, dict[str, Path]]:
    """Download and verify the files of the data manifests ID... into the cache.

    Files already present in the shared data folder or in the cache (PROSPECT_CACHE,
    default ~/.cache/prospect) are only verified. A mirror (--mirror or PROSPECT_MIRROR:
    a local folder or a base URL) is tried before the manifest URL. Every file is checked
    against the manifest checksum before it enters the cache; with --strict a file whose
    manifest publishes no checksum is refused.

    Returns ``{manifest id: {file name: local path}}``.
    """
    manifests = [load_manifest(i) for i in ids]  # unknown ids fail before any download
    return {m.id: ensure_local(m, strict=strict, mirror=mirror, cache=cache, progress=progress) for m in manifests}
