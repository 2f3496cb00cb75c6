"""``prospect export``: COG maps with styles, a QGIS-valid GeoPackage, the project, run.json.

A synthetic ranked run (``tests/export_fixtures.py``) is exported; GDAL's own validators
(``osgeo_utils`` under Debian's Python, installed by ``make sysdeps``) check the COGs
and the GeoPackage. The real-data test exports a ranking of the LOLA 1.6 km DEM with
LOLA PSR polygons, HKPolyU craters, the named cold traps and the Artemis III regions,
and QGIS itself (``tests/qgis_check.py``) opens the project.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio

from prospect import layers, lunar
from prospect.export import stac
from prospect.export.package import run_export
from prospect.io.gpkg import read_styles
from prospect.io.writers import stream_geotiff
from tests.conftest import run_cli
from tests.export_fixtures import make_synthetic_run

SYSTEM_PYTHON = "/usr/bin/python3"
EPOCH = "1795000000"  # SOURCE_DATE_EPOCH of the exports: 2026-11-18


def _system_python_has(module: str) -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    return subprocess.run([SYSTEM_PYTHON, "-c", f"import {module}"], capture_output=True).returncode == 0


needs_gdal_utils = pytest.mark.skipif(
    not _system_python_has("osgeo_utils.samples.validate_cloud_optimized_geotiff"),
    reason="Debian python3-gdal (GDAL's COG/GPKG validators) is not installed; `make sysdeps` installs it",
)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): _sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    run = make_synthetic_run(root)
    before = gpd.read_file(run / "sites.gpkg", layer="sites")
    os.environ["SOURCE_DATE_EPOCH"] = EPOCH
    try:
        outputs = run_export(run)
    finally:
        del os.environ["SOURCE_DATE_EPOCH"]
    return run, outputs, before


def test_package_layout(exported):
    run, outputs, _ = exported
    for name in ("sites.gpkg", "project.qgz", "report.html", "run.json", "ranking.json", "model.skops"):
        assert (run / name).is_file(), name
    stems = {p.stem for p in (run / "maps").glob("*.tif")}
    assert stems == {
        "dem_m",
        "hillshade",
        "slope_deg",
        "illumination_fraction",
        "earth_visibility_fraction",
        "longest_darkness_h",
        "psr_fraction",
        "ice_favourability",
        "ice_stability_class",
        "he3_ppb",
    }
    assert {p.stem for p in (run / "maps").glob("*.qml")} == stems
    assert not list(run.rglob("*.tmp")) and not list(run.rglob(".*tmp*"))
    assert set(outputs) >= {"run", "sites", "project", "report", "map_slope_deg", "style_slope_deg"}


@needs_gdal_utils
def test_maps_are_valid_cogs_with_lunar_crs_units_and_provenance(exported):
    run, _, _ = exported
    record = json.loads((run / "ranking.json").read_text())
    for tif in sorted((run / "maps").glob("*.tif")):
        res = subprocess.run(
            [SYSTEM_PYTHON, "-m", "osgeo_utils.samples.validate_cloud_optimized_geotiff", "-q", str(tif)],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, f"{tif.name}: {res.stdout}{res.stderr}"
        with rasterio.open(tif) as src:
            tags = src.tags()
            assert lunar.identify(src.crs.to_wkt()).code == "IAU_2015:30135", tif.name
            assert src.nodata is not None and src.units[0], tif.name
            assert src.profile["compress"].lower() == "zstd" and src.profile["tiled"]
            assert tags["prospect_quantity"] == tif.stem
            source = Path(tags["prospect_source"])
            assert source == Path(record["inputs"]["dem"]) or str(source) in record["inputs"].values()
            assert tags["prospect_source_sha256"] == _sha(source), tif.name
    with rasterio.open(run / "maps" / "ice_stability_class.tif") as src:
        assert src.dtypes[0] == "uint8" and src.nodata == 255
        assert set(np.unique(src.read(1))) <= {0, 1, 2, 255}
    with rasterio.open(run / "maps" / "slope_deg.tif") as src:
        assert "slope_deg" in src.tags()["prospect_derivation"] and src.units[0] == "deg"


def test_every_map_has_a_qml_style_of_the_right_kind(exported):
    run, _, _ = exported
    kinds = {}
    for qml in sorted((run / "maps").glob("*.qml")):
        root = ET.fromstring(qml.read_text(encoding="utf-8"))
        renderer = root.find(".//rasterrenderer")
        assert renderer is not None, qml.name
        kinds[qml.stem] = renderer.get("type")
    assert kinds["hillshade"] == "singlebandgray"
    assert kinds["ice_stability_class"] == "paletted"
    assert kinds["slope_deg"] == kinds["illumination_fraction"] == kinds["he3_ppb"] == "singlebandpseudocolor"


@needs_gdal_utils
def test_geopackage_is_gpkg_13_with_an_authority_free_lunar_crs_and_default_styles(exported):
    run, _, before = exported
    gpkg = run / "sites.gpkg"
    res = subprocess.run(
        [SYSTEM_PYTHON, "-m", "osgeo_utils.samples.validate_gpkg", str(gpkg)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
    con = sqlite3.connect(gpkg)
    try:
        assert con.execute("pragma user_version").fetchone()[0] == 10300
        srs = dict(
            con.execute(
                "select c.table_name, s.definition from gpkg_geometry_columns c "
                "join gpkg_spatial_ref_sys s on s.srs_id = c.srs_id"
            ).fetchall()
        )
    finally:
        con.close()
    # the site stage's layers (the distinct options first) and the clipped vector inputs
    assert set(srs) >= {"distinct_sites", "places", "sites", "candidates", "craters", "cold_traps", "regions"}
    assert set(srs) <= {"distinct_sites", "traverses", "places", "sites", "candidates", "site_power"} | {
        "craters",
        "cold_traps",
        "regions",
    }
    for table, wkt in srs.items():
        assert "AUTHORITY" not in wkt and "1737400" in wkt, table
        assert lunar.identify(wkt).code == "IAU_2015:30135", table
    styles = read_styles(gpkg)
    assert set(styles) == set(srs)
    for name, qml in styles.items():
        assert ET.fromstring(qml).find(".//renderer-v2") is not None, name
    after = gpd.read_file(gpkg, layer="sites")  # geopandas round trip: the ranking is unchanged
    assert list(after["site_id"]) == list(before["site_id"])
    np.testing.assert_allclose(after["score"], before["score"])
    np.testing.assert_allclose(after.geometry.x, before.geometry.x)


def test_vector_inputs_are_on_the_run_grid(exported):
    run, _, _ = exported
    regions = gpd.read_file(run / "sites.gpkg", layer="regions")
    source = gpd.read_file(run.parent / "regions.csv")
    assert len(regions) == len(source) == 4 and set(regions.geom_type) == {"Polygon"}
    cx, cy = lunar.lonlat_to_xy(
        lunar.lunar_crs(30135), source["center_lon"].astype(float), source["center_lat"].astype(float)
    )
    assert all(poly.contains(gpd.points_from_xy([x], [y])[0]) for poly, x, y in zip(regions.geometry, cx, cy))
    craters = gpd.read_file(run / "sites.gpkg", layer="craters")
    x0, _y0, x1, _y1 = gpd.read_file(run / "sites.gpkg", layer="candidates").total_bounds
    assert len(craters) > 100
    assert craters.geometry.x.between(x0 - 1000, x1 + 1000).all()
    traps = gpd.read_file(run / "sites.gpkg", layer="cold_traps")
    assert list(traps["name"]) == ["Trap0", "Trap1", "Trap2", "Trap3", "Trap4"]


def test_run_json_is_a_stac_item_describing_every_output_and_input(exported):
    import pystac

    run, _outputs, _ = exported
    text = (run / "run.json").read_text()
    assert not re.search(r"EPSG\W*4326", text)  # no Earth CRS (EPSG ids of projection methods are fine)
    item = pystac.Item.from_dict(json.loads(text))
    assert item.properties["ssys:targets"] == ["Moon"]
    assert item.properties["proj:code"] == "IAU_2015:30135"
    assert item.properties["prospect:seed"] == 7
    assert item.datetime is not None and item.datetime.isoformat().startswith("2026-11-18")
    on_disk = {p for p in run.rglob("*") if p.is_file() and p.name != "run.json"}
    assert {run / a.href for a in item.assets.values()} == on_disk
    assert all(stac.verify_assets(run / "run.json").values())
    inputs = {i["role"]: i for i in item.properties["prospect:inputs"]}
    assert inputs["dem"]["files"][0]["sha256"] == _sha(run.parent / "dem.tif")
    names = {p["name"] for p in item.properties["prospect:parameters"]}
    assert names >= {"site_radius_m", "weight_illumination_fraction"}
    assert "numpy" in item.properties["prospect:software"]
    assert item.bbox is not None
    w, s, e, n = item.bbox
    assert (w, s, e) == (-180.0, -90.0, 180.0) and -89.6 < n < -89.0  # a 30 km cap around the pole


def test_rerun_is_byte_identical(exported, tmp_path):
    run, _, _ = exported
    first = _tree(run)
    res = run_cli("export", str(run), env={"SOURCE_DATE_EPOCH": EPOCH})
    assert res.returncode == 0, res.stderr
    assert _tree(run) == first


def test_bad_runs_fail_in_one_line_without_partial_output(tmp_path, exported):
    res = run_cli("export", str(tmp_path / "nope"))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "no such run folder" in res.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ranking.json").write_text("{not json")
    res = run_cli("export", str(bad))
    assert res.returncode == 2 and "ranking.json: not a ranking record" in res.stderr, res.stderr
    # an input that vanished: nothing is written
    run, _, _ = exported
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("ranking.json", "sites.gpkg"):
        (moved / name).write_bytes((run / name).read_bytes())
    rec = json.loads((moved / "ranking.json").read_text())
    rec["inputs"]["he3_ppb"] = str(tmp_path / "gone.tif")
    (moved / "ranking.json").write_text(json.dumps(rec))
    res = run_cli("export", str(moved))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "gone.tif" in res.stderr, res.stderr
    assert sorted(p.name for p in moved.iterdir()) == ["ranking.json", "sites.gpkg"]
    res = run_cli("report", str(moved))
    assert res.returncode == 2 and "prospect export" in res.stderr, res.stderr


def test_maps_carry_the_registry_facts(exported):
    run, _, _ = exported
    for tif in sorted((run / "maps").glob("*.tif")):
        layer = layers.get(tif.stem)
        with rasterio.open(tif) as src:
            tags = src.tags()
            assert tags["prospect_long_name"] == layer.long_name and tags["prospect_units"] == layer.units
            assert src.units[0] == layer.units and src.dtypes[0] == layer.dtype and src.nodata == layer.nodata


def test_a_run_without_sites_exports_the_psr_mask_as_its_own_layer(exported, tmp_path):
    """The illumination stage's 0/1 mask is ``psr_mask``, not a PSR fraction: its own map, style and title."""
    run, _, _ = exported
    record = json.loads((run / "ranking.json").read_text())
    out = tmp_path / "maps_only"
    out.mkdir()
    with rasterio.open(run.parent / "illumination" / "psr_mask.tif") as src:  # the fixture holds fractions
        profile, shadow = src.profile, src.read(1) >= 0.5
    mask_tif = tmp_path / "psr_mask.tif"  # a 0/1 mask as the illumination stage writes it
    with rasterio.open(mask_tif, "w", **profile) as dst:
        dst.write(shadow.astype("float32"), 1)
    inputs = {"dem": str(run.parent / "dem.tif"), "psr_mask": str(mask_tif)}
    outputs = run_export(out, record={"inputs": inputs, "grid": record["grid"]}, created="2026-11-18T00:00:00Z")
    assert {p.stem for p in (out / "maps").glob("*.tif")} == {"dem_m", "slope_deg", "hillshade", "psr_mask"}
    assert {"map_psr_mask", "style_psr_mask"} <= set(outputs) and "map_psr_fraction" not in outputs
    mask = layers.get("psr_mask")
    with rasterio.open(out / "maps" / "psr_mask.tif") as src:
        tags = src.tags()
        assert tags["prospect_quantity"] == "psr_mask" and tags["prospect_long_name"] == mask.long_name
        assert src.units[0] == "1" and src.nodata == mask.nodata
        np.testing.assert_array_equal(src.read(1), shadow.astype("float32"))
    qml = ET.fromstring((out / "maps" / "psr_mask.qml").read_text(encoding="utf-8"))
    entry = qml.find("pipe/rasterrenderer/rasterTransparency/singleValuePixelList/pixelListEntry")
    assert entry is not None
    assert (entry.get("min"), entry.get("max"), entry.get("percentTransparent")) == ("0", "0", "100")
    with zipfile.ZipFile(out / "project.qgz") as zf:
        project = ET.fromstring(zf.read(next(n for n in zf.namelist() if n.endswith(".qgs"))))
    groups = {g.get("name"): g for g in project.iter("layer-tree-group") if g.get("name")}
    assert [n.get("name") for n in groups["Illumination"].findall("layer-tree-layer")] == [mask.display_name]


def _small_grid():
    from affine import Affine

    from prospect.grid import AnalysisGrid

    return AnalysisGrid(lunar.lunar_crs(30135), Affine(100.0, 0.0, 0.0, 0.0, -100.0, 0.0), (64, 64))


def test_stream_progress_counts_what_was_written(tmp_path, capsys):
    """Progress lines in logs show the pixels written so far, rising to the total (not the total each time)."""
    import dask.array as da

    grid = _small_grid()
    values = np.arange(64 * 64, dtype="float32").reshape(64, 64)
    data = da.from_array(values, chunks=16)
    tif = tmp_path / "p.tif"
    # 16 windows of 256 pixels: 6.25 % each, so some windows pass a 10 % step and some do not
    stream_geotiff(data, tif, crs=grid.crs, transform=grid.transform, units="1", progress=True, label="p", window_px=16)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("p: ")]
    found = [re.fullmatch(r"p: (\d+)% \(([\d,]+)/([\d,]+) pixels\)", line) for line in lines]
    assert lines and all(found), lines
    pct = [int(m.group(1)) for m in found if m]
    done = [int(m.group(2).replace(",", "")) for m in found if m]
    assert {m.group(3) for m in found if m} == {"4,096"} and len(lines) == 10
    assert done == sorted(set(done)) and done[-1] == 64 * 64  # strictly rising, ending at the total
    assert pct == [100 * d // (64 * 64) for d in done] and pct[-1] == 100
    with rasterio.open(tif) as src:
        np.testing.assert_array_equal(src.read(1), values)


def test_one_block_gives_one_progress_line(tmp_path, capsys):
    grid = _small_grid()
    ones = np.ones((64, 64), "float32")
    stream_geotiff(
        ones, tmp_path / "q.tif", crs=grid.crs, transform=grid.transform, units="1", progress=True, label="q"
    )
    assert [line for line in capsys.readouterr().err.splitlines() if line.startswith("q: ")] == [
        "q: 100% (4,096/4,096 pixels)"
    ]


# --- real data: QGIS opens the package of a ranking of the LOLA polar DEM ------------------------


@pytest.fixture(scope="module")
def real_export(real_site_run, tmp_path_factory):
    """The real ranking copied into its own folder (its inputs stay where they are), exported."""
    _, paths, _ = real_site_run
    run = tmp_path_factory.mktemp("real_export") / "run"
    run.mkdir()
    for path in paths.values():
        (run / Path(path).name).write_bytes(Path(path).read_bytes())
    run_export(run)
    return run


def _qgis_check(project: Path, png: Path) -> dict:
    if not _system_python_has("qgis.core"):
        pytest.skip("QGIS (python3-qgis) is not installed for /usr/bin/python3; `make sysdeps` installs it")
    script = Path(__file__).with_name("qgis_check.py")
    res = subprocess.run(
        [SYSTEM_PYTHON, str(script), str(project), str(png)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout)


@pytest.mark.shared_data
def test_real_package_opens_in_qgis_with_lunar_crs_and_sites_in_place(real_export):
    run = real_export
    artifacts = Path(__file__).resolve().parents[1] / "build" / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    report = _qgis_check(run / "project.qgz", artifacts / "qgis_real_project.png")
    project = report["project"]
    assert project["read_ok"] and project["crs"]["valid"] and project["crs"]["is_lunar"]
    assert project["crs"]["authid"] == "IAU_2015:30135"
    assert project["one_degree_latitude_m"] == pytest.approx(lunar.METRES_PER_DEGREE, rel=1e-3)
    names = [layer["name"] for layer in report["layers"]]
    # the project leads with the distinct options; the full ranked table follows
    assert names[0] == "Distinct top sites" and names[-1] == "Hillshade"
    assert names.index("Ranked sites") > names.index("Places") > 0
    assert "Permanently shadowed regions" in names and "Artemis III candidate regions" in names
    for layer in report["layers"]:
        assert layer["valid"] and layer["crs_valid"] and layer["crs_is_lunar"], layer
    counts = {layer["name"]: layer.get("features") for layer in report["layers"]}
    sites = gpd.read_file(run / "sites.gpkg", layer="sites")
    assert counts["Ranked sites"] == len(sites) > 1000 and counts["Artemis III candidate regions"] == 13
    assert counts["Distinct top sites"] == 30 and counts["Traverses to cold traps"] >= 1
    render = report["render"]
    assert render["distinct_colours"] > 1000 and render["non_background_fraction"] > 0.5
    check = report["sites"]
    assert check["max_distance_m"] < 1e-3 and check["rows_without_geometry"] == 0
    assert check["all_top_visible"]


@pytest.mark.shared_data
@needs_gdal_utils
def test_real_package_maps_and_provenance(real_export):
    run = real_export
    for tif in sorted((run / "maps").glob("*.tif")):
        res = subprocess.run(
            [SYSTEM_PYTHON, "-m", "osgeo_utils.samples.validate_cloud_optimized_geotiff", "-q", str(tif)],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, f"{tif.name}: {res.stdout}{res.stderr}"
    item = json.loads((run / "run.json").read_text())
    inputs = {i["role"]: i for i in item["properties"]["prospect:inputs"]}
    assert inputs["psr_fraction"]["manifest_id"] == "lola_psr_south_5km2"
    assert all(f["verified"] for f in inputs["craters"]["files"])  # every HKPolyU tile matches its manifest
    assert "Mazarico" in inputs["psr_fraction"]["citation"]
    assert inputs["illumination_fraction"]["derived_from"].endswith("dem.tif")
    with rasterio.open(run / "maps" / "illumination_fraction.tif") as src:
        assert src.tags()["prospect_n_azimuths"] == "64"  # the producing stage's tags travel with the map
    psr = gpd.read_file(run / "sites.gpkg", layer="psr")
    assert len(psr) > 100 and lunar.identify(psr.crs).code == "IAU_2015:30135"
