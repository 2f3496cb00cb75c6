"""Data manifests: every YAML in data_manifests/ validates, covers the products the
pipeline needs, and (where it describes files in the shared data folder) matches those
files byte for byte.

The shared-data tests are marked ``shared_data`` and skip only when the shared folder
(``PROSPECT_SHARED_DATA``, default ``../shared/data``) is absent.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import pytest
import yaml

from prospect.errors import ManifestError
from prospect.io.manifests import Manifest, load_manifest, shared_data_dir
from prospect.lunar import lunar_crs

REPO_MANIFESTS = Path(__file__).resolve().parents[1] / "data_manifests"
MANIFEST_PATHS = sorted(REPO_MANIFESTS.glob("*.yaml"))
RASTER_FORMATS = {"pds3", "pds3-change", "pds4", "isis3", "geotiff", "cog", "jp2"}


def _load_all() -> dict[str, Manifest]:
    return {p.stem: load_manifest(p) for p in MANIFEST_PATHS}


@pytest.fixture(scope="module")
def manifests() -> dict[str, Manifest]:
    return _load_all()


def _ids(paths):
    return [p.stem for p in paths]


# --------------------------------------------------------------------- validity


def test_manifest_folder_is_not_empty():
    assert len(MANIFEST_PATHS) >= 20, f"expected the full manifest set in {REPO_MANIFESTS}"


@pytest.mark.parametrize("path", MANIFEST_PATHS, ids=_ids(MANIFEST_PATHS))
def test_manifest_loads_and_validates(path: Path):
    m = load_manifest(path)
    assert m.id == path.stem
    assert m.path == path
    assert m.open in [f.name for f in m.files]
    # a null checksum is only allowed with an explanation
    if any(f.checksum is None for f in m.files):
        assert m.get("checksum_note"), f"{path.name}: null checksum without checksum_note"


def test_manifest_ids_unique_and_equal_to_stems(manifests):
    ids = [m.id for m in manifests.values()]
    assert len(ids) == len(set(ids))
    for stem, m in manifests.items():
        assert m.id == stem


def test_load_by_id_uses_repo_folder(monkeypatch):
    monkeypatch.delenv("PROSPECT_MANIFEST_DIR", raising=False)
    m = load_manifest("lola_ldem_4")
    assert m.path.resolve() == (REPO_MANIFESTS / "lola_ldem_4.yaml").resolve()


@pytest.mark.parametrize("path", MANIFEST_PATHS, ids=_ids(MANIFEST_PATHS))
def test_crs_parses_as_lunar(path: Path):
    m = load_manifest(path)
    lunar_crs(m.crs)
    if m.get("crs_override"):
        lunar_crs(m["crs_override"])


def test_every_raster_manifest_crs_parses(manifests):
    rasters = [m for m in manifests.values() if m.format in RASTER_FORMATS]
    assert len(rasters) >= 12
    for m in rasters:
        crs = lunar_crs(m.crs)
        assert crs.code == m.crs, m.id


# --------------------------------------------------------------------- coverage


def _product_ids(manifests) -> set[str]:
    return {m["product_id"] for m in manifests.values()}


def test_required_lola_products_present(manifests):
    pids = _product_ids(manifests)
    required = {
        "LDEM_4",
        "LDEM_16",
        "LDEM_875S_20M",
        "LDEM_80S_20M",
        "LDEM_80S_80M",
        "LPSR_85S_060M_201608",
        "AVGVISIB_75S_120M_201608",
    }
    assert required <= pids, f"missing: {sorted(required - pids)}"
    assert any(p.startswith("LPSR_") for p in pids)
    assert any(p.startswith("AVGVISIB_") for p in pids)


def _any(manifests, predicate) -> list[str]:
    return [m.id for m in manifests.values() if predicate(m)]


def test_required_thematic_products_present(manifests):
    def text(m):
        return " ".join(str(m.get(k, "")) for k in ("instrument", "product_id", "description")).lower()

    diviner = _any(manifests, lambda m: "diviner" in text(m) and m.units == "K")
    hydrogen = _any(manifests, lambda m: "neutron" in text(m) and "hydrogen" in text(m) and m.units == "ppm")
    tio2 = _any(manifests, lambda m: "tio2" in text(m) and m.units == "wt%")
    ce2_dem = _any(
        manifests,
        lambda m: m["mission"] == "Chang'e-2" and m["product_id"].startswith("CE2_GRAS_DEM_"),
    )
    mrm = _any(
        manifests,
        lambda m: m["mission"].startswith("Chang'e") and "microwave radiometer" in text(m) and m.units == "K",
    )
    assert diviner, "no Diviner temperature manifest"
    assert hydrogen, "no neutron hydrogen (ppm H) manifest"
    assert tio2, "no TiO2 manifest"
    assert ce2_dem, "no Chang'e-2 DEM manifest"
    assert mrm, "no Chang'e MRM brightness-temperature manifest"
    assert manifests[ce2_dem[0]].format == "pds3-change"


def test_required_shared_manifests_present(manifests):
    shared = {m.id: m["shared_path"] for m in manifests.values() if m.get("shared_path")}
    expected_paths = {
        "lola_ldem4",
        "lola_polar_1600m",
        "lola_psr_south_5km2",
        "craters_hkpolyu_60_90S",
        "cold_trap_craters",
        "lp_grs",
        "artemis3_2022",
        "apollo_soils",
    }
    assert expected_paths <= set(shared.values())
    lp = [m for m in manifests.values() if m.get("shared_path") == "lp_grs"]
    assert {m.open for m in lp} == {"MoonTi.data.gz", "MoonFe.data.gz", "MoonTh.data.gz", "MoonAl.data.gz"}
    toolkit = [m for m in manifests.values() if m.get("shared_path") == "lola_polar_1600m"]
    assert {m.crs for m in toolkit} == {"IAU_2015:30135", "IAU_2015:30130", "IAU_2015:30100"}


# ------------------------------------------------------- the science we know


def test_ldem_4_scale_and_offset(manifests):
    m = manifests["lola_ldem_4"]
    assert m.scale == 0.5
    assert m.offset == 0.0
    assert m.units == "m"
    assert m.crs == "IAU_2015:30115"


def test_lola_height_manifests_never_add_the_reference_radius(manifests):
    heights = [m for m in manifests.values() if m["product_id"].startswith("LDEM_")]
    assert len(heights) >= 6
    for m in heights:
        assert m.offset == 0.0, m.id
        assert m.units == "m", m.id
        if m.format in ("pds3", "jp2"):
            assert m.scale == 0.5, m.id


def test_ldem_4_jp2_twin(manifests):
    m = manifests["lola_ldem_4_jp2"]
    assert m.format == "jp2"
    assert m.crs == "IAU_2015:30110"
    assert m["longitude_convention"] == "-180-180"
    assert {f.name for f in m.files} == {"LDEM_4.JP2", "LDEM_4_JP2.LBL"}


def test_polar_ldem_sizes_match_grid(manifests):
    for mid, n in {
        "lola_ldem_875s_20m": 7584,
        "lola_ldem_80s_20m": 30400,
        "lola_ldem_80s_80m": 7600,
    }.items():
        m = manifests[mid]
        assert m.crs == "IAU_2015:30135"
        assert m["shape"] == [n, n]
        img = next(f for f in m.files if f.name.endswith(".IMG"))
        assert img.size == n * n * 2


def test_hkpolyu_overrides_the_earth_prj(manifests):
    m = manifests["hkpolyu_craters_60_90s"]
    assert m["crs_override"] == "IAU_2015:30100"
    assert m["open_all"] is True
    assert m.open.endswith(".shp")
    shp = [f for f in m.files if f.name.endswith(".shp")]
    assert len(shp) == 12


def test_cold_trap_columns(manifests):
    m = manifests["cold_trap_craters"]
    assert m.format == "csv"
    assert m["columns"]["lon"] == "Lon (deg)"
    assert m["columns"]["lat"] == "Lat (deg)"
    assert m["longitude_convention"] == "0-360"


def test_unverified_archive_files_explain_missing_checksums(manifests):
    for m in manifests.values():
        if m.get("shared_path"):
            assert m.verified, f"{m.id}: shared-data manifests must carry sha256 for every file"
        nulls = [f.name for f in m.files if f.checksum is None]
        if nulls:
            assert not m.verified
            assert "strict mode refuses" in m["checksum_note"], m.id


# ------------------------------------------------------------ shared data


SHARED_MANIFESTS = [p for p in MANIFEST_PATHS if (yaml.safe_load(p.read_text()) or {}).get("shared_path")]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@pytest.mark.shared_data
@pytest.mark.parametrize("path", SHARED_MANIFESTS, ids=_ids(SHARED_MANIFESTS))
def test_shared_files_exist_and_match_checksums(path: Path):
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"shared data folder {root} is absent")
    m = load_manifest(path)
    folder = root / m["shared_path"]
    assert folder.is_dir(), f"{m.id}: shared_path {m['shared_path']!r} not found under {root}"
    for f in m.files:
        p = folder / f.name
        assert p.is_file(), f"{m.id}: {f.name} missing from {folder}"
        assert f.algorithm == "sha256", f"{m.id}: {f.name} has no sha256"
        assert _sha256(p) == f.digest, f"{m.id}: sha256 mismatch for {p}"
        if f.size is not None:
            assert p.stat().st_size == f.size, f"{m.id}: size mismatch for {p}"


@pytest.mark.shared_data
def test_shared_folder_files_all_described():
    """Every data file in the described shared folders is listed by some manifest."""
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"shared data folder {root} is absent")
    listed: dict[str, set[str]] = {}
    for p in SHARED_MANIFESTS:
        m = load_manifest(p)
        listed.setdefault(m["shared_path"], set()).update(f.name for f in m.files)
    for folder, names in listed.items():
        present = {p.name for p in (root / folder).iterdir() if p.is_file()}
        assert present <= names, f"{folder}: not described by any manifest: {sorted(present - names)}"


# ----------------------------------------------------------- schema negatives


@pytest.fixture
def good(manifests) -> dict:
    return copy.deepcopy(manifests["lola_ldem_4"].raw)


def _write(tmp_path: Path, data, name: str | None = None) -> Path:
    name = name or f"{data['id']}.yaml"
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def _error(path: Path) -> str:
    with pytest.raises(ManifestError) as exc:
        load_manifest(path)
    msg = str(exc.value)
    assert "\n" not in msg, f"not one line: {msg!r}"
    assert str(path) in msg, f"file not named: {msg!r}"
    return msg


def test_good_copy_loads(tmp_path, good):
    assert load_manifest(_write(tmp_path, good)).id == "lola_ldem_4"


def test_unknown_key_is_refused(tmp_path, good):
    good["colour"] = "grey"
    msg = _error(_write(tmp_path, good))
    assert "unknown key" in msg and "colour" in msg


def test_unknown_file_key_is_refused(tmp_path, good):
    good["files"][0]["md5"] = "abc"
    msg = _error(_write(tmp_path, good))
    assert "files[0]" in msg and "md5" in msg


def test_bad_checksum_string_is_refused(tmp_path, good):
    good["files"][1]["checksum"] = "sha256:not-a-digest"
    msg = _error(_write(tmp_path, good))
    assert "files[1].checksum" in msg


def test_checksum_without_algorithm_is_refused(tmp_path, good):
    good["files"][0]["checksum"] = good["files"][0]["checksum"].split(":", 1)[1]
    msg = _error(_write(tmp_path, good))
    assert "files[0].checksum" in msg


def test_null_checksum_needs_checksum_note(tmp_path, good):
    good["files"][0]["checksum"] = None
    good.pop("checksum_note", None)
    msg = _error(_write(tmp_path, good))
    assert "checksum_note" in msg


def test_null_checksum_with_note_loads(tmp_path, good):
    good["files"][0]["checksum"] = None
    good["checksum_note"] = "No checksum published; recorded at first fetch."
    m = load_manifest(_write(tmp_path, good))
    assert not m.verified


def test_open_must_be_a_listed_file(tmp_path, good):
    good["open"] = "LDEM_4.JP2"
    msg = _error(_write(tmp_path, good))
    assert "key 'open'" in msg and "LDEM_4.JP2" in msg


def test_id_must_equal_file_stem(tmp_path, good):
    msg = _error(_write(tmp_path, good, name="lola_ldem_4_copy.yaml"))
    assert "key 'id'" in msg and "lola_ldem_4_copy" in msg


def test_missing_required_key_is_refused(tmp_path, good):
    del good["units"]
    msg = _error(_write(tmp_path, good))
    assert "units" in msg


def test_bad_crs_pattern_is_refused(tmp_path, good):
    good["crs"] = "EPSG:4326"
    msg = _error(_write(tmp_path, good))
    assert "key 'crs'" in msg


def test_invalid_yaml_is_refused(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("id: broken\nfiles: [\n  {name: a.img\n")
    msg = _error(p)
    assert "not valid YAML" in msg and "line" in msg


def test_non_mapping_yaml_is_refused(tmp_path):
    p = tmp_path / "list.yaml"
    p.write_text("- a\n- b\n")
    msg = _error(p)
    assert "mapping" in msg


def test_unknown_id_is_refused():
    with pytest.raises(ManifestError) as exc:
        load_manifest("no_such_product")
    assert "no_such_product" in str(exc.value)
