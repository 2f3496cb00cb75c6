"""prospect.io.fetch: shared data, cache, mirrors and downloads, all over loopback HTTP."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import socket
import threading
import warnings
from pathlib import Path

import pytest
import yaml

from prospect.errors import CachePathError, ChecksumError, FetchError, ManifestError, UnverifiedFileError
from prospect.io import fetch as F
from prospect.io.manifests import Manifest, ManifestFile, load_manifest, shared_data_dir

REPO_MANIFEST = Path(__file__).resolve().parents[1] / "data_manifests" / "lola_ldem_4.yaml"
SHARED = shared_data_dir()
LDEM = SHARED / "lola_ldem4"


def _need_shared() -> None:
    if not (LDEM / "LDEM_4.IMG").is_file() or not REPO_MANIFEST.is_file():
        pytest.skip(f"real data not found in {LDEM}")


# --------------------------------------------------------------------------- fixtures


class _Server:
    """A loopback HTTP server in a thread that records the paths it is asked for."""

    def __init__(self, directory: Path) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(directory))
        )
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers: list[_Server] = []

    def start(directory: Path) -> _Server:
        s = _Server(directory)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


@pytest.fixture
def closed_url() -> str:
    """A loopback URL where nothing listens: any request to it fails at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Isolated manifest dir and cache; no proxies, no mirror from the environment."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy", "PROSPECT_MIRROR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    mdir = tmp_path / "manifests"
    mdir.mkdir()
    cache = tmp_path / "cache"
    monkeypatch.setenv("PROSPECT_MANIFEST_DIR", str(mdir))
    monkeypatch.setenv("PROSPECT_CACHE", str(cache))
    return {"manifests": mdir, "cache": cache, "tmp": tmp_path}


def write_manifest(
    mdir: Path,
    mid: str,
    base_url: str,
    *,
    shared: bool = False,
    null_checksum: str | None = None,
    names: dict[str, str] | None = None,
) -> Manifest:
    """A copy of lola_ldem_4.yaml under a new id whose URLs point at ``base_url``."""
    data = yaml.safe_load(REPO_MANIFEST.read_text())
    data["id"] = mid
    if not shared:
        data.pop("shared_path", None)
    for f in data["files"]:
        f["url"] = f"{base_url}/{(names or {}).get(f['name'], 'lola_ldem4/' + f['name'])}"
        if f["name"] == null_checksum:
            f["checksum"] = None
    if null_checksum:
        data["checksum_note"] = "test: no checksum published for this file"
    (mdir / f"{mid}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return load_manifest(mid)


def files_under(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- download


@pytest.mark.shared_data
def test_download_verifies_and_caches(env, serve):
    _need_shared()
    server = serve(SHARED)
    m = write_manifest(env["manifests"], "ldem_dl", server.url)
    paths = F.fetch(["ldem_dl"], progress=False)["ldem_dl"]
    assert set(paths) == {"LDEM_4.LBL", "LDEM_4.IMG"}
    for name, p in paths.items():
        assert p == env["cache"] / "ldem_dl" / name
        assert p.read_bytes() == (LDEM / name).read_bytes()
        assert F.sha256_file(p) == m.file(name).digest
    assert sorted(server.requests) == ["/lola_ldem4/LDEM_4.IMG", "/lola_ldem4/LDEM_4.LBL"]
    # nothing but the two files (no staging leftovers) in the manifest's cache folder
    assert files_under(env["cache"] / "ldem_dl") == ["LDEM_4.IMG", "LDEM_4.LBL"]

    again = F.ensure_local(m, progress=False)
    assert again == paths
    assert len(server.requests) == 2  # served from the cache, no new request

    # download=False works once cached, and fails with the fetch hint when not
    assert F.ensure_local(m, download=False) == paths
    (env["cache"] / "ldem_dl" / "LDEM_4.IMG").unlink()
    with pytest.raises(FetchError, match=r"not available locally.*prospect fetch ldem_dl"):
        F.ensure_local(m, download=False)
    assert len(server.requests) == 2


@pytest.mark.shared_data
def test_download_with_rich_progress_bar(env, serve, capsys):
    _need_shared()
    server = serve(SHARED)
    write_manifest(env["manifests"], "ldem_bar", server.url)
    paths = F.fetch(["ldem_bar"], progress=True)["ldem_bar"]
    assert paths["LDEM_4.IMG"].stat().st_size == 2073600


@pytest.mark.shared_data
def test_corrupt_download_refused_and_not_cached(env, serve):
    _need_shared()
    bad = env["tmp"] / "bad" / "lola_ldem4"
    bad.mkdir(parents=True)
    shutil.copy(LDEM / "LDEM_4.LBL", bad / "LDEM_4.LBL")
    raw = bytearray((LDEM / "LDEM_4.IMG").read_bytes())
    for i in (0, 1000, 500000):
        raw[i] ^= 0xFF
    (bad / "LDEM_4.IMG").write_bytes(bytes(raw))
    server = serve(bad.parent)
    write_manifest(env["manifests"], "ldem_bad", server.url)
    with pytest.raises(ChecksumError) as info:
        F.fetch(["ldem_bad"], progress=False)
    msg = str(info.value)
    assert "\n" not in msg
    assert "LDEM_4.IMG" in msg and "972d66d7f330" in msg and "discarded" in msg
    assert not (env["cache"] / "ldem_bad" / "LDEM_4.IMG").exists()
    # only the intact label is left: no corrupt file or staging copy under any name
    assert files_under(env["cache"] / "ldem_bad") == ["LDEM_4.LBL"]


def test_network_error_names_url(env, closed_url):
    m = Manifest(
        id="nowhere",
        path=env["manifests"] / "nowhere.yaml",
        format="pds3",
        open="A.IMG",
        files=(ManifestFile("A.IMG", f"{closed_url}/a.img", None),),
        units="m",
        crs="IAU_2015:30115",
        nodata=None,
    )
    with pytest.raises(FetchError, match=rf"{closed_url}/a.img"):
        F.ensure_local(m, progress=False)
    assert files_under(env["cache"]) == []


def test_http_404_is_fetch_error(env, serve, tmp_path):
    server = serve(tmp_path)
    m = Manifest(
        id="missing",
        path=env["manifests"] / "missing.yaml",
        format="pds3",
        open="A.IMG",
        files=(ManifestFile("A.IMG", f"{server.url}/nope/a.img", None),),
        units="m",
        crs="IAU_2015:30115",
        nodata=None,
    )
    with pytest.raises(FetchError, match=r"/nope/a.img.*HTTP 404"):
        F.ensure_local(m, progress=False)


def test_unknown_id_is_manifest_error(env):
    with pytest.raises(ManifestError, match="no_such_product"):
        F.fetch(["no_such_product"], progress=False)


# --------------------------------------------------------------------------- mirrors


@pytest.mark.shared_data
def test_mirror_base_url(env, serve, closed_url, monkeypatch):
    """<base>/<shared_path>/<name>; the manifest URL (a closed port) is never needed."""
    _need_shared()
    server = serve(SHARED)
    empty_shared = env["tmp"] / "empty_shared"
    empty_shared.mkdir()
    monkeypatch.setenv("PROSPECT_SHARED_DATA", str(empty_shared))  # shared route misses
    monkeypatch.setenv("PROSPECT_MIRROR", server.url)
    write_manifest(env["manifests"], "ldem_mirror", closed_url, shared=True)
    paths = F.fetch(["ldem_mirror"], progress=False)["ldem_mirror"]
    for name, p in paths.items():
        assert p == env["cache"] / "ldem_mirror" / name
        assert p.read_bytes() == (LDEM / name).read_bytes()
    # <base>/<name> first (404), then <base>/<shared_path>/<name>
    assert "/LDEM_4.IMG" in server.requests and "/lola_ldem4/LDEM_4.IMG" in server.requests


@pytest.mark.shared_data
def test_mirror_base_url_lowercase_names(env, serve, closed_url):
    _need_shared()
    flat = env["tmp"] / "pds"
    flat.mkdir()
    for name in ("LDEM_4.LBL", "LDEM_4.IMG"):
        shutil.copy(LDEM / name, flat / name.lower())
    server = serve(flat)
    m = write_manifest(env["manifests"], "ldem_lower", closed_url)
    paths = F.ensure_local(m, mirror=server.url + "/", progress=False)
    assert paths["LDEM_4.IMG"].name == "LDEM_4.IMG"  # cached under the manifest's name
    assert paths["LDEM_4.IMG"].read_bytes() == (LDEM / "LDEM_4.IMG").read_bytes()
    assert "/ldem_4.img" in server.requests


@pytest.mark.shared_data
def test_mirror_local_folder(env, closed_url, monkeypatch):
    _need_shared()
    mirror = env["tmp"] / "mirror"
    (mirror / "deep" / "er").mkdir(parents=True)
    shutil.copy(LDEM / "LDEM_4.LBL", mirror / "deep" / "LDEM_4.LBL")  # exact name, nested
    shutil.copy(LDEM / "LDEM_4.IMG", mirror / "deep" / "er" / "ldem_4.img")  # lowercase
    monkeypatch.setenv("PROSPECT_MIRROR", str(mirror))
    write_manifest(env["manifests"], "ldem_folder", closed_url)
    paths = F.fetch(["ldem_folder"], progress=False)["ldem_folder"]
    for name, p in paths.items():
        assert p == env["cache"] / "ldem_folder" / name
        assert p.read_bytes() == (LDEM / name).read_bytes()
    assert files_under(env["cache"] / "ldem_folder") == ["LDEM_4.IMG", "LDEM_4.LBL"]


@pytest.mark.shared_data
def test_mirror_local_folder_skips_corrupt_candidate(env, closed_url):
    _need_shared()
    mirror = env["tmp"] / "mirror"
    (mirror / "a").mkdir(parents=True)
    (mirror / "b").mkdir()
    raw = bytearray((LDEM / "LDEM_4.IMG").read_bytes())
    raw[7] ^= 0x01
    (mirror / "a" / "LDEM_4.IMG").write_bytes(bytes(raw))  # corrupt, found first
    shutil.copy(LDEM / "LDEM_4.IMG", mirror / "b" / "LDEM_4.IMG")
    shutil.copy(LDEM / "LDEM_4.LBL", mirror / "LDEM_4.LBL")
    m = write_manifest(env["manifests"], "ldem_pick", closed_url)
    paths = F.ensure_local(m, mirror=mirror, progress=False)
    assert paths["LDEM_4.IMG"].read_bytes() == (LDEM / "LDEM_4.IMG").read_bytes()

    # only a corrupt copy: ChecksumError, and nothing enters the cache
    shutil.rmtree(mirror / "b")
    m2 = write_manifest(env["manifests"], "ldem_pick2", closed_url)
    with pytest.raises(ChecksumError, match=r"mirror file .*LDEM_4.IMG.*972d66d7f330"):
        F.ensure_local(m2, mirror=mirror, progress=False)
    assert "LDEM_4.IMG" not in files_under(env["cache"] / "ldem_pick2")


def test_bad_mirror_value(env, tmp_path):
    m = Manifest(
        id="x",
        path=env["manifests"] / "x.yaml",
        format="pds3",
        open="A.IMG",
        files=(ManifestFile("A.IMG", "http://127.0.0.1:9/a.img", None),),
        units="m",
        crs="IAU_2015:30115",
        nodata=None,
    )
    with pytest.raises(FetchError, match="neither an http"):
        F.ensure_local(m, mirror=str(tmp_path / "does-not-exist"), progress=False)


# --------------------------------------------------------------------------- strict / unverified


@pytest.mark.shared_data
def test_strict_refuses_null_checksum_nonstrict_warns(env, serve):
    _need_shared()
    server = serve(SHARED)
    m = write_manifest(env["manifests"], "ldem_nochk", server.url, null_checksum="LDEM_4.LBL")
    assert m.file("LDEM_4.LBL").checksum is None
    with pytest.raises(UnverifiedFileError) as info:
        F.ensure_local(m, strict=True, progress=False)
    msg = str(info.value)
    assert "strict mode refuses unverified files" in msg and str(m.path) in msg and "--strict" in msg
    assert server.requests == []  # refused before any download

    with pytest.warns(F.UnverifiedFileWarning, match="LDEM_4.LBL"):
        paths = F.ensure_local(m, strict=False, progress=False)
    assert paths["LDEM_4.LBL"].read_bytes() == (LDEM / "LDEM_4.LBL").read_bytes()

    # the cached copy is still unverifiable: strict refuses it, non-strict warns again
    with pytest.raises(UnverifiedFileError):
        F.ensure_local(m, strict=True, progress=False)
    with pytest.warns(F.UnverifiedFileWarning):
        F.ensure_local(m, progress=False)


def test_verify_file_messages(env, tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"hello")
    good = ManifestFile(
        "f.bin", "http://x/f.bin", "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    )
    assert F.verify_file(p, good, strict=True) is True
    assert (
        F.verify_file(p, ManifestFile("f.bin", "http://x", "md5:5d41402abc4b2a76b9719d911017c592"), strict=True) is True
    )
    bad = ManifestFile("f.bin", "http://x/f.bin", "sha256:" + "0" * 64)
    with pytest.raises(ChecksumError) as info:
        F.verify_file(p, bad, strict=False)
    msg = str(info.value)
    assert str(p) in msg and "2cf24dba5fb0" in msg and "000000000000" in msg and "delete" in msg
    assert "\n" not in msg
    with pytest.raises(UnverifiedFileError, match="publishes no checksum"):
        F.verify_file(p, ManifestFile("f.bin", "http://x", None), strict=True)
    with pytest.warns(F.UnverifiedFileWarning):
        assert F.verify_file(p, ManifestFile("f.bin", "http://x", None), strict=False) is False


# --------------------------------------------------------------------------- cache paths


@pytest.mark.parametrize("name", ["../evil.img", "/tmp/prospect-evil.img", "..", "a/../../evil.img"])
def test_escaping_file_name_refused(env, serve, tmp_path, name):
    src = tmp_path / "srv"
    src.mkdir()
    (src / "evil.img").write_bytes(b"evil")
    server = serve(src)
    m = Manifest(
        id="evil_test",
        path=env["manifests"] / "evil_test.yaml",
        format="pds3",
        open=name,
        files=(ManifestFile(name, f"{server.url}/evil.img", None),),
        units="m",
        crs="IAU_2015:30115",
        nodata=None,
    )
    before = files_under(tmp_path)
    with pytest.raises(CachePathError, match="outside the cache"):
        F.ensure_local(m, progress=False)
    assert server.requests == []
    assert files_under(tmp_path) == before  # nothing written anywhere
    assert not Path("/tmp/prospect-evil.img").exists()


def test_escaping_manifest_id_refused(env):
    m = Manifest(
        id="..",
        path=env["manifests"] / "x.yaml",
        format="pds3",
        open="a.img",
        files=(ManifestFile("a.img", "http://127.0.0.1:9/a.img", None),),
        units="m",
        crs="IAU_2015:30115",
        nodata=None,
    )
    with pytest.raises(CachePathError):
        F.ensure_local(m, progress=False)


# --------------------------------------------------------------------------- shared data


@pytest.mark.shared_data
def test_shared_path_returns_shared_file(env, closed_url):
    _need_shared()
    m = write_manifest(env["manifests"], "ldem_shared", closed_url, shared=True)
    paths = F.ensure_local(m, strict=True, progress=False, download=False)
    assert paths == {"LDEM_4.LBL": LDEM / "LDEM_4.LBL", "LDEM_4.IMG": LDEM / "LDEM_4.IMG"}
    assert not (env["cache"] / "ldem_shared").exists()  # verified, never copied


@pytest.mark.shared_data
def test_shared_file_with_wrong_checksum(env, closed_url):
    _need_shared()
    data = yaml.safe_load(REPO_MANIFEST.read_text())
    data["id"] = "ldem_wrong"
    data["files"][1]["checksum"] = "sha256:" + "ab" * 32
    (env["manifests"] / "ldem_wrong.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ChecksumError, match=r"shared file .*LDEM_4.IMG.*972d66d7f330.*abababababab"):
        F.fetch(["ldem_wrong"], progress=False)


# --------------------------------------------------------------------------- sha256 index


def test_sha256_index_hashes_once_and_rehashes_modified(env, monkeypatch, tmp_path):
    calls: list[Path] = []
    real = F.hash_stream

    def counting(path, algorithm):
        calls.append(Path(path))
        return real(path, algorithm)

    monkeypatch.setattr(F, "hash_stream", counting)
    p = tmp_path / "data.bin"
    p.write_bytes(os.urandom(3 * (1 << 20) + 17))  # more than one 1 MiB block
    import hashlib

    expected = hashlib.sha256(p.read_bytes()).hexdigest()
    assert F.sha256_file(p) == expected
    assert F.sha256_file(p) == expected
    assert F.sha256_file(str(p)) == expected
    assert len(calls) == 1
    index = env["cache"] / F.INDEX_NAME
    assert index.is_file() and str(p.resolve()) in index.read_text()

    # same size, new content and mtime: hashed again
    p.write_bytes(b"\0" * p.stat().st_size)
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert F.sha256_file(p) == hashlib.sha256(p.read_bytes()).hexdigest()
    assert len(calls) == 2
    assert F.sha256_file(p) == hashlib.sha256(p.read_bytes()).hexdigest()
    assert len(calls) == 2

    # a corrupt index is ignored, not fatal
    index.write_text("{not json")
    assert F.sha256_file(p) == hashlib.sha256(p.read_bytes()).hexdigest()
    assert len(calls) == 3
    # no temp files left next to the index
    assert [q.name for q in env["cache"].iterdir()] == [F.INDEX_NAME]


@pytest.mark.shared_data
def test_downloaded_file_is_not_rehashed(env, serve, monkeypatch):
    _need_shared()
    server = serve(SHARED)
    m = write_manifest(env["manifests"], "ldem_idx", server.url)
    F.ensure_local(m, progress=False)  # verified by pooch during the download
    calls: list[Path] = []
    real = F.hash_stream

    def counting(p: Path, a: str) -> str:
        calls.append(p)
        return real(p, a)

    monkeypatch.setattr(F, "hash_stream", counting)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.ensure_local(m, strict=True, progress=False)
    assert calls == []


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PROSPECT_CACHE", str(tmp_path / "c"))
    assert F.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("PROSPECT_CACHE")
    assert F.cache_dir() == Path.home() / ".cache" / "prospect"
