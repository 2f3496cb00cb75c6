"""QGIS styles (prospect.export.styles) and projects (prospect.export.qgis), checked in real QGIS.

The style and project writers are pure Python; what counts is whether QGIS 3.22 accepts
their output. The integration tests build a small run package here (three COGs in
IAU_2015:30135, a GPKG with sites and candidate discs, a ``.qgz``), open it with Debian's
PyQGIS in a separate process (``tests/qgis_check.py``, run by ``/usr/bin/python3``; the
venv has no QGIS) and assert on what QGIS reports. They skip only when that Python
cannot import ``qgis.core``.
"""

from __future__ import annotations

import colorsys
import json
import subprocess
import textwrap
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest

from prospect import lunar
from prospect.export import styles
from prospect.export.qgis import ProjectLayer, layer_id, project_xml, write_project
from prospect.layers import exported_layers

SYSTEM_PYTHON = "/usr/bin/python3"
CHECK_SCRIPT = Path(__file__).with_name("qgis_check.py")
#: every map an export writes (the layer registry's exported layers)
RASTER_STEMS = [layer.name for layer in exported_layers()]


def _parse(qml: str) -> ET.Element:
    assert qml.startswith("<!DOCTYPE qgis")
    return ET.fromstring(qml.encode("utf-8"))


def _luminance(hex_colour: str) -> float:
    r, g, b = (int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return colorsys.rgb_to_hls(r, g, b)[1]


# --- styles: pure XML -------------------------------------------------------------------


@pytest.mark.parametrize("stem", RASTER_STEMS + ["mystery_quantity"])
def test_raster_qml_parses_with_the_renderer_for_its_stem(stem):
    root = _parse(styles.raster_qml(stem, vmin=-2.0, vmax=40.0, units="u"))
    renderer = root.find("pipe/rasterrenderer")
    assert renderer is not None
    assert renderer.get("type") == styles.renderer_type(stem)
    assert renderer.get("nodataColor") == ""  # nodata drawn transparent
    if renderer.get("type") == "singlebandpseudocolor":
        shader = renderer.find("rastershader/colorrampshader")
        items = shader.findall("item")
        assert shader.get("colorRampType") == "INTERPOLATED"
        assert float(items[0].get("value")) == -2.0 and float(items[-1].get("value")) == 40.0
        assert [float(i.get("value")) for i in items] == sorted(float(i.get("value")) for i in items)
        assert float(renderer.get("classificationMin")) == -2.0 and float(renderer.get("classificationMax")) == 40.0
        assert root.find("pipe/rasterrenderer/minMaxOrigin/limits").text == "None"  # fixed, not re-stretched
        assert items[-1].get("label").endswith(" u")


def test_each_known_stem_has_its_own_ramp_and_unknown_stems_get_viridis():
    ramps = {
        s: tuple(i.get("color") for i in _parse(styles.raster_qml(s, vmin=0, vmax=1)).iter("item"))
        for s in RASTER_STEMS
        if styles.renderer_type(s) == "singlebandpseudocolor"
    }
    assert len(set(ramps.values())) == len(ramps)
    generic = [i.get("color") for i in _parse(styles.raster_qml("mystery", vmin=0, vmax=1)).iter("item")]
    assert generic[0] == "#440154" and generic[-1] == "#fde725"  # viridis ends
    assert all(len(why) > 10 for _, why in styles.RASTER_RAMPS.values())


def test_ramp_directions_fit_the_quantity():
    def ends(stem):
        items = list(_parse(styles.raster_qml(stem, vmin=0, vmax=1)).iter("item"))
        return items[0], items[-1]

    lo, hi = ends("illumination_fraction")
    assert _luminance(lo.get("color")) < 0.05 and _luminance(hi.get("color")) > 0.8  # never lit = black
    lo, hi = ends("longest_darkness_h")
    assert _luminance(lo.get("color")) > 0.8 and _luminance(hi.get("color")) < 0.05  # long nights dark
    lo, hi = ends("slope_deg")
    assert int(lo.get("color")[3:5], 16) > int(lo.get("color")[1:3], 16)  # flat: green
    assert int(hi.get("color")[1:3], 16) > int(hi.get("color")[3:5], 16)  # steep: red
    for name in ("psr_fraction", "psr_mask"):  # never shadowed (exactly 0) is transparent, shadow deep blue
        lo, hi = ends(name)
        assert lo.get("alpha") == "0" and hi.get("alpha") != "0" and hi.get("color") == "#08306b", name
        psr = _parse(styles.raster_qml(name, vmin=0, vmax=1))
        entry = psr.find("pipe/rasterrenderer/rasterTransparency/singleValuePixelList/pixelListEntry")
        assert (entry.get("min"), entry.get("max"), entry.get("percentTransparent")) == ("0", "0", "100"), name
    lo, hi = ends("ice_favourability")
    assert _luminance(lo.get("color")) > _luminance(hi.get("color"))  # white/cyan -> deep blue


def test_hillshade_is_grey_and_ice_classes_are_paletted():
    grey = _parse(styles.raster_qml("hillshade", vmin=0, vmax=255)).find("pipe/rasterrenderer")
    assert grey.get("type") == "singlebandgray" and grey.get("gradient") == "BlackToWhite"
    assert grey.find("contrastEnhancement/minValue").text == "0"
    assert grey.find("contrastEnhancement/maxValue").text == "255"
    pal = _parse(styles.raster_qml("ice_stability_class", vmin=0, vmax=2)).find("pipe/rasterrenderer")
    assert pal.get("type") == "paletted"
    entries = {e.get("value"): e for e in pal.iter("paletteEntry")}
    assert {k: e.get("label") for k, e in entries.items()} == {
        "0": "not stable",
        "1": "shallow subsurface",
        "2": "surface",
        "3": "shadowed, likely too warm",
    }
    assert entries["0"].get("alpha") == "0" and entries["2"].get("alpha") != "0" and entries["3"].get("alpha") != "0"


def test_raster_qml_range_checks_and_determinism():
    with pytest.raises(ValueError):
        styles.raster_qml("slope_deg", vmin=float("nan"), vmax=1.0)
    with pytest.raises(ValueError):
        styles.raster_qml("slope_deg", vmin=2.0, vmax=1.0)
    flat = _parse(styles.raster_qml("slope_deg", vmin=5.0, vmax=5.0))  # a constant map still draws
    values = [float(i.get("value")) for i in flat.iter("item")]
    assert values[0] < 5.0 < values[-1]
    assert styles.raster_qml("he3_ppb", vmin=0, vmax=20) == styles.raster_qml("he3_ppb", vmin=0, vmax=20)


@pytest.mark.parametrize("kind", list(styles.VECTOR_KINDS))
def test_vector_qml_parses_with_a_symbol_for_its_geometry(kind):
    root = _parse(styles.vector_qml(kind))
    renderer = root.find("renderer-v2")
    geometry = styles.VECTOR_KINDS[kind]
    assert root.find("layerGeometryType").text == {"Point": "0", "LineString": "1", "Polygon": "2"}[geometry]
    symbol_types = {s.get("type") for s in renderer.iter("symbol")}
    assert symbol_types == {{"Point": "marker", "LineString": "line", "Polygon": "fill"}[geometry]}
    labelled = root.get("labelsEnabled") == "1"
    assert labelled == (kind in ("sites", "distinct_sites", "cold_traps", "regions"))
    if labelled:
        assert root.find("labeling/settings/text-style").get("fieldName")
    props = {p.get("k"): p.get("v") for p in renderer.iter("prop")}
    if kind == "regions":
        assert props["outline_style"] == "dash" and props["style"] == "no"
        assert "'name'" in root.find("labeling/settings/text-style").get("fieldName")
    if kind == "psr":
        red, _, blue, _ = (int(v) for v in props["color"].split(","))
        assert blue > red  # blue
        assert 0 < int(props["color"].split(",")[3]) < 255  # semi-transparent
    if kind == "craters":
        assert props["color"].endswith(",0")  # hollow
    if kind == "candidates":
        assert props["style"] == "no"  # outline only


def test_sites_style_highlights_the_top_ranks_and_labels_id_and_rank():
    root = _parse(styles.vector_qml("sites"))
    renderer = root.find("renderer-v2")
    assert renderer.get("type") == "RuleRenderer"
    rules = renderer.findall("rules/rule")
    assert rules[0].get("filter") == '"rank" <= 3' and rules[-1].get("filter") == "ELSE"
    sizes = [float({p.get("k"): p.get("v") for p in s.iter("prop")}["size"]) for s in renderer.iter("symbol")]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]
    label = root.find("labeling/settings/text-style").get("fieldName")
    assert '"site_id"' in label and '"rank"' in label
    assert styles.vector_qml("sites") == styles.vector_qml("sites")  # stable rule keys


def test_vector_qml_geometry_override_and_unknown_kind():
    pts = _parse(styles.vector_qml("regions", geometry="Point"))
    assert pts.find("layerGeometryType").text == "0"
    assert {s.get("type") for s in pts.iter("symbol")} == {"marker"}
    assert pts.get("labelsEnabled") == "1"
    assert _parse(styles.vector_qml("psr", geometry="MultiPolygon")).find("layerGeometryType").text == "2"
    with pytest.raises(ValueError):
        styles.vector_qml("volcanoes")
    with pytest.raises(ValueError):
        styles.vector_qml("sites", geometry="Surface")


@pytest.mark.shared_data
def test_regions_label_column_exists_in_the_real_artemis3_table(shared):
    import csv

    table = shared / "artemis3_2022" / "artemis3_candidate_regions_2022.csv"
    with table.open(newline="", encoding="utf-8") as fh:
        columns = next(csv.reader(fh))
    label = _parse(styles.vector_qml("regions")).find("labeling/settings/text-style").get("fieldName")
    first = label.split("attribute('")[1].split("'")[0]  # the preferred column
    assert first in columns


# --- project writer: pure XML -----------------------------------------------------------

CRS = lunar.lunar_crs(lunar.IAU_SOUTH_POLAR_STEREOGRAPHIC)
EXTENT = (-16000.0, -16000.0, 16000.0, 16000.0)


def _layer(name, group, kind="raster", source=None, **kw):
    source = source or (f"maps/{name}.tif" if kind == "raster" else f"sites.gpkg|layername={name}")
    qml = styles.raster_qml(name, vmin=0, vmax=1) if kind == "raster" else styles.vector_qml(kw.pop("style", "sites"))
    return ProjectLayer(
        name=name,
        source=source,
        kind=kind,
        group=group,
        style_qml=qml,
        crs=CRS,
        extent=EXTENT,
        geometry=kw.pop("geometry", "Point" if kind == "vector" else None),
        **kw,
    )


def _qgs_of(path: Path) -> ET.Element:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert names == [path.with_suffix(".qgs").name]
        assert zf.getinfo(names[0]).date_time == (1980, 1, 1, 0, 0, 0)
        return ET.fromstring(zf.read(names[0]))


def test_project_xml_crs_ellipsoid_paths_and_tree(tmp_path):
    layers = [
        _layer("sites", "Sites", "vector"),
        _layer("slope_deg", "Terrain"),
        _layer("ice_stability_class", "Resources", visible=False),
        _layer("hillshade", "Terrain"),
    ]
    out = write_project(tmp_path / "project.qgz", layers, crs=CRS, title="t", extent=EXTENT)
    root = _qgs_of(out)
    text = ET.tostring(root, encoding="unicode")
    for earth in ("EPSG", "WGS", "4326", "6378137", "wgs84"):
        assert earth not in text
    srs = root.find("projectCrs/spatialrefsys")
    assert "1737400" in srs.find("wkt").text and srs.find("srsid").text == "0"
    assert srs.find("authid").text == "IAU_2015:30135"
    assert root.find("properties/Measure/Ellipsoid").text == lunar.qgis_ellipsoid()
    assert root.find("properties/SpatialRefSys/ProjectionsEnabled").text == "1"  # else QGIS ignores projectCrs
    assert root.find("properties/Paths/Absolute").text == "false"
    assert [d.text for d in root.iter("datasource")] == [
        "./sites.gpkg|layername=sites",
        "./maps/slope_deg.tif",
        "./maps/ice_stability_class.tif",
        "./maps/hillshade.tif",
    ]
    groups = root.findall("layer-tree-group/layer-tree-group")
    assert [g.get("name") for g in groups] == ["Sites", "Terrain", "Resources"]
    assert [n.get("name") for n in groups[1].findall("layer-tree-layer")] == ["slope_deg", "hillshade"]
    hidden = root.find(".//layer-tree-layer[@name='ice_stability_class']")
    assert hidden.get("checked") == "Qt::Unchecked"
    order = [e.get("id") for e in root.findall("layerorder/layer")]
    assert order == [layer_id(lay.name, lay.source) for lay in layers]
    custom = root.find("layer-tree-group/custom-order")
    assert custom.get("enabled") == "1"  # tree (grouped) order differs from the given order
    assert [i.text for i in custom.findall("item")] == order
    for maplayer in root.iter("maplayer"):
        assert maplayer.find("srs/spatialrefsys/ellipsoidacronym").text == lunar.qgis_ellipsoid()
        assert maplayer.find("renderer-v2") is not None or maplayer.find("pipe/rasterrenderer") is not None
        assert maplayer.find("layerGeometryType") is None


def test_project_rendering_order_follows_the_tree_when_groups_are_contiguous(tmp_path):
    layers = [_layer("sites", "Sites", "vector"), _layer("slope_deg", "Terrain"), _layer("hillshade", "Terrain")]
    root = ET.fromstring(project_xml(layers, crs=CRS, title="t", extent=EXTENT).split("\n", 1)[1])
    assert root.find("layer-tree-group/custom-order").get("enabled") == "0"


def test_project_is_byte_identical_for_the_same_inputs(tmp_path):
    layers = [_layer("sites", "Sites", "vector"), _layer("slope_deg", "Terrain")]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = write_project(tmp_path / "a" / "project.qgz", layers, crs=CRS, title="t", extent=EXTENT)
    b = write_project(tmp_path / "b" / "project.qgz", layers, crs=CRS, title="t", extent=EXTENT)
    assert a.read_bytes() == b.read_bytes()
    c = write_project(tmp_path / "b" / "project.qgz", layers[::-1], crs=CRS, title="t", extent=EXTENT)
    assert c.read_bytes() != a.read_bytes()
    assert layer_id("Slope (deg)", "maps/slope_deg.tif") == layer_id("Slope (deg)", "maps/slope_deg.tif")
    assert layer_id("a", "x.tif") != layer_id("a", "y.tif")


def test_project_refuses_bad_layers_and_leaves_no_partial_file(tmp_path):
    good = [_layer("slope_deg", "Terrain")]
    target = write_project(tmp_path / "project.qgz", good, crs=CRS, title="t", extent=EXTENT)
    before = target.read_bytes()
    bad_cases = [
        [_layer("slope_deg", "Terrain"), _layer("slope_deg", "Terrain")],  # same layer twice
        [ProjectLayer("x", "maps/x.tif", "mesh", "G", styles.raster_qml("x", vmin=0, vmax=1), CRS, EXTENT)],
        [ProjectLayer("x", "maps/x.tif", "raster", "G", "<not xml", CRS, EXTENT)],
        [
            ProjectLayer(
                "x", "maps/x.tif", "raster", "G", styles.raster_qml("x", vmin=0, vmax=1), CRS, (1.0, 0.0, 0.0, 1.0)
            )
        ],
    ]
    for layers in bad_cases:
        with pytest.raises(ValueError):
            write_project(target, layers, crs=CRS, title="t", extent=EXTENT)
    with pytest.raises(TypeError):
        write_project(target, good, crs=CRS.wkt, title="t", extent=EXTENT)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project.qgz"]


# --- real QGIS --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def qgis_python() -> str:
    try:
        probe = subprocess.run(
            [SYSTEM_PYTHON, "-c", "import qgis.core"],
            capture_output=True,
            text=True,
            timeout=120,
            env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"},
        )
    except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"{SYSTEM_PYTHON} is not usable ({exc}); QGIS 3.22 checks need Debian's python3-qgis")
    if probe.returncode != 0:
        pytest.skip(f"{SYSTEM_PYTHON} cannot import qgis.core (install python3-qgis): {probe.stderr.strip()[-300:]}")
    return SYSTEM_PYTHON


def _run_check(python: str, project: Path, png: Path, *extra: str) -> dict:
    proc = subprocess.run(
        [python, str(CHECK_SCRIPT), str(project), str(png), *extra], capture_output=True, text=True, timeout=300
    )
    assert proc.stdout.strip(), f"qgis_check printed nothing; stderr:\n{proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


GRID_N, GRID_RES, GRID_X0, GRID_Y0 = 64, 500.0, -16000.0, 16000.0
SITE_LON = np.array([0.0, 45.0, 90.0, 135.0, 180.0, -45.0, -90.0, -135.0, 20.0, 70.0])
SITE_LAT = np.array([-89.8, -89.85, -89.9, -89.75, -89.8, -89.7, -89.9, -89.85, -89.95, -89.72])


def _build_package(run: Path, *, lon_shift_deg: float = 0.0, missing_raster: bool = False) -> Path:
    """A small run folder: three COGs + .qml, sites.gpkg (sites, candidates), project.qgz."""
    import geopandas as gpd
    import rasterio
    import shapely
    from rasterio.transform import from_origin

    from prospect.io.gpkg import write_gpkg

    (run / "maps").mkdir(parents=True)
    transform = from_origin(GRID_X0, GRID_Y0, GRID_RES, GRID_RES)
    yy, xx = np.mgrid[0:GRID_N, 0:GRID_N]
    maps = {
        "slope_deg": ((xx + yy) / (2.0 * GRID_N) * 30.0).astype("float32"),
        "hillshade": (np.sin(xx / 5.0) * 100 + 128).astype("uint8"),
        "ice_stability_class": ((xx // 22) % 3).astype("uint8"),
    }
    maps["slope_deg"][:4, :4] = -9999.0  # some nodata
    ranges = {"slope_deg": (0.0, 30.0, "deg"), "hillshade": (0.0, 255.0, ""), "ice_stability_class": (0.0, 2.0, "")}
    for stem, data in maps.items():
        nodata = {"slope_deg": -9999.0, "ice_stability_class": 255}.get(stem)
        with rasterio.open(
            run / "maps" / f"{stem}.tif",
            "w",
            driver="COG",
            width=GRID_N,
            height=GRID_N,
            count=1,
            dtype=data.dtype.name,
            crs=CRS.to_rasterio(),
            transform=transform,
            nodata=nodata,
        ) as ds:
            ds.write(data, 1)
        vmin, vmax, units = ranges[stem]
        (run / "maps" / f"{stem}.qml").write_text(
            styles.raster_qml(stem, vmin=vmin, vmax=vmax, units=units), encoding="utf-8"
        )
    x, y = lunar.lonlat_to_xy(CRS, SITE_LON, SITE_LAT)
    n = len(SITE_LON)
    sites = gpd.GeoDataFrame(
        {
            "site_id": [f"S{i:02d}" for i in range(1, n + 1)],
            "rank": np.arange(1, n + 1),
            "score": np.linspace(1.0, 0.1, n),
            "lon": SITE_LON + lon_shift_deg,
            "lat": SITE_LAT,
        },
        geometry=shapely.points(x, y),
        crs=CRS.to_pyproj(),
    )
    candidates = gpd.GeoDataFrame(sites[["site_id", "rank"]].copy(), geometry=sites.buffer(800.0), crs=CRS.to_pyproj())
    write_gpkg(
        run / "sites.gpkg",
        {"sites": sites, "candidates": candidates},
        {"sites": styles.vector_qml("sites"), "candidates": styles.vector_qml("candidates")},
        crs=CRS,
    )
    grid_extent = (GRID_X0, GRID_Y0 - GRID_N * GRID_RES, GRID_X0 + GRID_N * GRID_RES, GRID_Y0)
    layers = [
        ProjectLayer(
            "Sites",
            "sites.gpkg|layername=sites",
            "vector",
            "Sites",
            styles.vector_qml("sites"),
            CRS,
            tuple(float(v) for v in sites.total_bounds),
            "Point",
        ),
        ProjectLayer(
            "Candidate discs",
            "sites.gpkg|layername=candidates",
            "vector",
            "Sites",
            styles.vector_qml("candidates"),
            CRS,
            tuple(float(v) for v in candidates.total_bounds),
            "Polygon",
        ),
        ProjectLayer(
            "Ice stability",
            "maps/ice_stability_class.tif",
            "raster",
            "Resources",
            (run / "maps" / "ice_stability_class.qml").read_text(encoding="utf-8"),
            CRS,
            grid_extent,
        ),
        ProjectLayer(
            "Slope",
            "maps/slope_deg.tif",
            "raster",
            "Terrain",
            (run / "maps" / "slope_deg.qml").read_text(encoding="utf-8"),
            CRS,
            grid_extent,
        ),
        ProjectLayer(
            "Hillshade",
            "maps/hillshade.tif",
            "raster",
            "Terrain",
            (run / "maps" / "hillshade.qml").read_text(encoding="utf-8"),
            CRS,
            grid_extent,
        ),
    ]
    if missing_raster:
        layers.append(
            ProjectLayer(
                "Missing",
                "maps/missing.tif",
                "raster",
                "Terrain",
                styles.raster_qml("dem_m", vmin=0, vmax=1),
                CRS,
                grid_extent,
            )
        )
    return write_project(run / "project.qgz", layers, crs=CRS, title="test run", extent=grid_extent)


@pytest.fixture(scope="module")
def qgis_report(qgis_python, tmp_path_factory) -> dict:
    run = tmp_path_factory.mktemp("run")
    project = _build_package(run)
    return _run_check(qgis_python, project, run / "render.png", "--sites-layer", "sites")


def test_qgis_opens_every_layer_valid_with_a_lunar_crs(qgis_report):
    assert qgis_report["project"]["read_ok"], qgis_report["project"]["error"]
    layers = qgis_report["layers"]
    assert [lay["name"] for lay in layers] == ["Sites", "Candidate discs", "Ice stability", "Slope", "Hillshade"]
    for lay in layers:
        assert lay["valid"], lay
        assert lay["crs_valid"] and lay["crs_is_lunar"], lay
        assert "+R=1737400" in lay["crs_proj"], lay
        assert lay["source"].startswith(str(Path(qgis_report["render"]["png"]).parent)), lay  # relative -> resolved
    renderers = {lay["name"]: lay["renderer"] for lay in layers}
    assert renderers == {
        "Sites": "RuleRenderer",
        "Candidate discs": "singleSymbol",
        "Ice stability": "paletted",
        "Slope": "singlebandpseudocolor",
        "Hillshade": "singlebandgray",
    }
    assert layers[0]["features"] == len(SITE_LON) and layers[0]["labels"]


def test_qgis_project_crs_and_lunar_measurements(qgis_report):
    project = qgis_report["project"]
    assert project["title"] == "test run"
    assert project["crs"]["valid"] and project["crs"]["is_lunar"]
    assert project["crs"]["semi_major_m"] == pytest.approx(lunar.MOON_RADIUS_M)
    assert project["ellipsoid"].startswith("PARAMETER:1737400")
    assert project["will_use_ellipsoid"]
    # 1 degree of latitude on the lunar sphere: 2 pi R / 360 = 30,323.35 m (an Earth
    # ellipsoid would give ~111 km, no ellipsoid 1.0 "degree")
    assert project["one_degree_latitude_m"] == pytest.approx(lunar.METRES_PER_DEGREE, rel=1e-3)
    assert project["one_degree_latitude_m"] == pytest.approx(30323.35, abs=0.5)


def test_qgis_renders_the_project(qgis_report):
    render = qgis_report["render"]
    assert render["png"] and Path(render["png"]).is_file()
    assert render["errors"] == []
    assert render["distinct_colours"] >= 8
    assert render["non_background_fraction"] > 0.05
    assert render["layers_rendered"][0] == "Sites" and render["layers_rendered"][-1] == "Hillshade"


def test_qgis_sites_sit_where_their_lon_lat_say_and_are_drawn(qgis_report):
    sites = qgis_report["sites"]
    assert sites["found"] and sites["valid"] and sites["has_lon_lat"]
    assert sites["features"] == len(SITE_LON) and sites["rows_without_geometry"] == 0
    assert sites["max_distance_m"] < 1.0
    assert "4326" not in (sites["geographic_crs"]["authid"] or "")
    assert len(sites["top"]) == 10 and sites["all_top_visible"], sites["top"]


def test_qgis_check_reports_broken_projects(qgis_python, tmp_path):
    """The checker can fail: a missing raster, a non-lunar ellipsoid and sites whose
    lon/lat disagree with their geometry are all reported."""
    project = _build_package(tmp_path, lon_shift_deg=0.5, missing_raster=True)
    with zipfile.ZipFile(project) as zf:
        name = zf.namelist()[0]
        xml = zf.read(name).decode("utf-8")
    xml = xml.replace(f">{lunar.qgis_ellipsoid()}</Ellipsoid>", ">NONE</Ellipsoid>")
    broken = tmp_path / "broken.qgs"
    broken.write_text(xml, encoding="utf-8")
    report = _run_check(qgis_python, broken, tmp_path / "broken.png")
    validity = {lay["name"]: lay["valid"] for lay in report["layers"]}
    assert validity["Missing"] is False and validity["Slope"] is True
    assert report["project"]["ellipsoid"] == "NONE"
    assert report["project"]["one_degree_latitude_m"] != pytest.approx(lunar.METRES_PER_DEGREE, rel=1e-3)
    # 0.5 deg of longitude at ~89.8 S: about 50 m
    assert report["sites"]["max_distance_m"] > 20.0


def test_styles_load_in_qgis(qgis_python, tmp_path):
    """Every style is accepted by QgsMapLayer.loadNamedStyle with the intended renderer."""
    import rasterio
    from rasterio.transform import from_origin

    tif = tmp_path / "grid.tif"
    with rasterio.open(
        tif,
        "w",
        driver="GTiff",
        width=8,
        height=8,
        count=1,
        dtype="float32",
        crs=CRS.to_rasterio(),
        transform=from_origin(0, 8000, 1000, 1000),
        nodata=-9999.0,
    ) as ds:
        ds.write(np.arange(64, dtype="float32").reshape(8, 8), 1)
    expected = {}
    for stem in RASTER_STEMS + ["mystery_quantity"]:
        (tmp_path / f"r_{stem}.qml").write_text(styles.raster_qml(stem, vmin=0, vmax=63), encoding="utf-8")
        expected[f"r_{stem}"] = styles.renderer_type(stem)
    for kind, geometry in styles.VECTOR_KINDS.items():
        (tmp_path / f"v_{geometry}_{kind}.qml").write_text(styles.vector_qml(kind), encoding="utf-8")
        expected[f"v_{geometry}_{kind}"] = "RuleRenderer" if kind == "sites" else "singleSymbol"
    (tmp_path / "v_Point_regions-as-points.qml").write_text(
        styles.vector_qml("regions", geometry="Point"), encoding="utf-8"
    )
    expected["v_Point_regions-as-points"] = "singleSymbol"
    script = textwrap.dedent(f"""
        import glob, json, os, tempfile
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp())
        from qgis.core import (QgsApplication, QgsExpression, QgsExpressionContext, QgsExpressionContextUtils,
                               QgsFeature, QgsRasterLayer, QgsVectorLayer)
        app = QgsApplication([], False); app.initQgis()
        out = {{}}
        folder = {str(tmp_path)!r}
        for path in sorted(glob.glob(os.path.join(folder, "*.qml"))):
            key = os.path.basename(path)[:-4]
            if key.startswith("r_"):
                layer = QgsRasterLayer(os.path.join(folder, "grid.tif"), key)
            else:
                geometry = key.split("_")[1]
                layer = QgsVectorLayer(geometry + "?field=site_id:string&field=rank:integer&field=name:string"
                                       "&field=Crater%20Name:string", key, "memory")
            message, ok = layer.loadNamedStyle(path)
            info = {{"ok": bool(ok), "message": message, "renderer": layer.renderer().type()}}
            if key.startswith("v_"):
                info["labels"] = bool(layer.labelsEnabled())
                if layer.labeling() is not None:
                    # evaluate the label expression on a feature without a 'name' value
                    expr = QgsExpression(layer.labeling().settings().fieldName)
                    feat = QgsFeature(layer.fields())
                    feat.setAttributes(["S07", 7, None, "Haworth"])
                    ctx = QgsExpressionContext(QgsExpressionContextUtils.globalProjectLayerScopes(layer))
                    ctx.setFeature(feat)
                    info["label"] = expr.evaluate(ctx)
                    info["label_error"] = expr.evalErrorString()
                    feat.setAttributes(["S50", 50, "Shackleton", None])
                    ctx.setFeature(feat)
                    info["label_low_rank"] = expr.evaluate(ctx)
            out[key] = info
        # a polygon style on a point layer is refused (QGIS checks layerGeometryType)
        points = QgsVectorLayer("Point", "p", "memory")
        message, ok = points.loadNamedStyle(os.path.join(folder, "v_Polygon_psr.qml"))
        out["mismatch"] = {{"ok": bool(ok), "message": message}}
        print(json.dumps(out))
        app.exitQgis()
    """)
    proc = subprocess.run([qgis_python, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for key, renderer in expected.items():
        assert out[key]["ok"], (key, out[key])
        assert out[key]["renderer"] == renderer, (key, out[key])
    assert out["v_Point_sites"]["label"] == "S07 (#7)"
    assert out["v_Point_sites"]["label_low_rank"] is None  # only the top sites are labelled
    assert out["v_Point_cold_traps"]["label_low_rank"] == "Shackleton"
    assert out["v_Point_cold_traps"]["label"] == "Haworth", out["v_Point_cold_traps"]  # 'Crater Name' if no 'name'
    assert out["v_Polygon_regions"]["labels"] and not out["v_Polygon_psr"]["labels"]
    assert not out["mismatch"]["ok"]
