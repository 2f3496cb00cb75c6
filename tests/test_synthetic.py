"""prospect.synthetic scenes and prospect.io.writers (PDS3 LOLA-style, GeoTIFF, atomic writes).

Ground truth is checked against independent computations here: the shadow criterion
from the crater numbers, a horizon scan of the finished DEM, and GDAL (rasterio)
reading back what the writers wrote.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
import warnings

import numpy as np
import pytest
import rasterio
from scipy.ndimage import map_coordinates

from prospect import synthetic as S
from prospect.errors import ConfigError, CRSError
from prospect.io.manifests import shared_data_dir
from prospect.io.writers import atomic_write, pds3_lola_label, write_geotiff, write_pds3_lola
from prospect.lunar import (
    METRES_PER_DEGREE,
    MOON_RADIUS_M,
    identify,
    lunar_crs,
    polar_scale_factor,
    xy_to_lonlat,
)

SOUTH = lunar_crs(30135)
NORTH = lunar_crs(30130)
GEOGRAPHIC = lunar_crs(30100)


@pytest.fixture(scope="module")
def scene() -> S.SyntheticScene:
    return S.south_polar_scene(seed=7)


@pytest.fixture(scope="module")
def terrain_only() -> S.SyntheticScene:
    return S.south_polar_scene(seed=7, n_craters=0, n_ridges=0)


@pytest.fixture(scope="module")
def geo_scene() -> S.SyntheticScene:
    return S.geographic_scene(seed=3, lat_range=(-80.0, -74.0), lon_range=(10.0, 22.0), res_deg=1 / 64)


def _ground_r(scene: S.SyntheticScene, c: S.Crater) -> np.ndarray:
    """Ground distance of every pixel of a polar scene from a crater centre [m]."""
    x = scene.dem.x.values[None, :]
    y = scene.dem.y.values[:, None]
    return np.hypot(x - c.x_m, y - c.y_m) / polar_scale_factor(c.lat)


def parse_label(text: str) -> dict[str, str]:
    """Last value of each keyword of a PDS3 label (enough for the keys checked here)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^\s*(\^?[A-Z0-9_]+)\s*=\s*(.*?)\s*$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def num(value: str) -> float:
    return float(value.split()[0].strip('"'))


# --- determinism ---------------------------------------------------------------------


def test_same_seed_gives_identical_scene(scene):
    again = S.south_polar_scene(seed=7)
    assert again.dem.dtype == np.float32
    np.testing.assert_array_equal(again.dem.values, scene.dem.values)
    assert again.craters == scene.craters and again.ridges == scene.ridges
    assert again.params == scene.params


def test_different_seed_gives_different_scene(scene):
    other = S.south_polar_scene(seed=8)
    assert not np.array_equal(other.dem.values, scene.dem.values)
    assert [c.x_m for c in other.craters] != [c.x_m for c in scene.craters]


def test_geographic_scene_is_deterministic(geo_scene):
    again = S.geographic_scene(seed=3, lat_range=(-80.0, -74.0), lon_range=(10.0, 22.0), res_deg=1 / 64)
    np.testing.assert_array_equal(again.dem.values, geo_scene.dem.values)
    assert not np.array_equal(
        S.geographic_scene(seed=4, lat_range=(-80.0, -74.0), lon_range=(10.0, 22.0), res_deg=1 / 64).dem.values,
        geo_scene.dem.values,
    )


def test_scene_grid_and_attrs(scene):
    dem = scene.dem
    assert dem.dims == ("y", "x") and dem.shape == (512, 512)
    assert dem.attrs["units"] == "m" and dem.attrs["crs"] == "IAU_2015:30135"
    assert scene.crs.code == "IAU_2015:30135"
    t = scene.transform
    assert (t.a, t.e, t.c, t.f) == (40.0, -40.0, -10240.0, 10240.0)
    # coordinates are pixel centres, the pole at the grid centre
    assert dem.x.values[0] == pytest.approx(-10220.0) and dem.y.values[0] == pytest.approx(10220.0)
    assert (t @ (0.5, 0.5)) == pytest.approx((dem.x.values[0], dem.y.values[0]))
    north = S.north_polar_scene(seed=1, shape=(128, 160), pixel_m=100.0)
    assert north.crs.code == "IAU_2015:30130" and north.dem.shape == (128, 160)
    assert all(c.lat > 89 for c in north.craters)


def test_512_scene_is_fast():
    S.south_polar_scene(seed=11)  # warm imports and PROJ
    t0 = time.perf_counter()
    S.south_polar_scene(seed=12)
    assert time.perf_counter() - t0 < 1.0


# --- constructed geometry ----------------------------------------------------------------


def test_crater_depth_and_bowl_as_constructed(scene, terrain_only):
    dem = scene.dem.values.astype(np.float64)
    terrain = terrain_only.dem.values.astype(np.float64)
    for c in scene.craters:
        r = _ground_r(scene, c)
        datum = terrain[r <= S.BLEND_EXTENT * c.radius_m].mean()
        centre = dem[c.row, c.col]
        assert centre == pytest.approx(c.floor_elevation_m, abs=1e-3)
        # depth below the local datum of the fractal terrain, as constructed
        assert datum - centre == pytest.approx(c.depth_m, abs=2e-3)
        # the fractal moved the floor by no more than a few terrain RMS
        assert abs(terrain[c.row, c.col] - centre - c.depth_m) < 4 * scene.params.terrain_rms_m
        # inside the rim the surface is exactly the bowl on the datum
        inside = r <= c.radius_m
        bowl = datum - c.depth_m + (c.depth_m + c.rim_height_m) * (r[inside] / c.radius_m) ** 2
        np.testing.assert_allclose(dem[inside], bowl, atol=2e-3)
        assert dem[inside].max() <= datum + c.rim_height_m + 1e-3


def test_features_touch_nothing_else(scene, terrain_only):
    changed = scene.dem.values != terrain_only.dem.values
    allowed = np.zeros_like(changed)
    for c in scene.craters:
        allowed |= _ground_r(scene, c) < S.EJECTA_EXTENT * c.radius_m
    masks = S.truth_masks(scene)
    allowed |= masks["ridge"].values
    assert not (changed & ~allowed).any()


def test_ridge_crest_height(scene, terrain_only):
    diff = scene.dem.values.astype(np.float64) - terrain_only.dem.values
    masks = S.truth_masks(scene)
    assert len(scene.ridges) == 2
    x = scene.dem.x.values[None, :]
    y = scene.dem.y.values[:, None]
    for rd in scene.ridges:
        dx, dy = rd.x1_m - rd.x0_m, rd.y1_m - rd.y0_m
        t = np.clip(((x - rd.x0_m) * dx + (y - rd.y0_m) * dy) / (dx * dx + dy * dy), 0, 1)
        d = np.hypot(x - (rd.x0_m + t * dx), y - (rd.y0_m + t * dy)) / polar_scale_factor(rd.lat0)
        on = d < rd.half_width_m
        expected = rd.height_m * np.cos(0.5 * np.pi * d[on] / rd.half_width_m) ** 2
        np.testing.assert_allclose(diff[on], expected, atol=2e-3)
        crest = masks["ridge_crest"].values & on
        assert crest.sum() > 10
        assert diff[crest].max() == pytest.approx(rd.height_m, rel=2e-3)


# --- shadow ground truth -------------------------------------------------------------------


def _expected_psr(c: S.Crater) -> tuple[bool, float, float]:
    rise = c.depth_m + c.rim_height_m - c.radius_m**2 / (2 * MOON_RADIUS_M)
    angle = math.degrees(math.atan(rise / c.radius_m))
    sun = 1.54 + (90 - abs(c.lat))
    return angle > sun, angle, sun


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5, 6, 7])
def test_shadow_criterion_and_anchors(seed):
    scene = S.south_polar_scene(seed=seed, shape=(256, 256), pixel_m=60.0)
    assert len(scene.craters) == 6
    for c in scene.craters:
        psr, angle, sun = _expected_psr(c)
        assert c.floor_psr_by_construction is psr
        assert c.rim_elevation_angle_deg == pytest.approx(angle, abs=1e-9)
        assert c.max_sun_elevation_deg == pytest.approx(sun, abs=1e-9)
        assert abs(angle - sun) >= scene.params.psr_margin_deg  # no borderline crater
        lon, lat = xy_to_lonlat(SOUTH, c.x_m, c.y_m)
        assert (lon, lat) == pytest.approx((c.lon, c.lat), abs=1e-9)
    assert scene.crater("PSR-anchor").floor_psr_by_construction is True
    assert scene.crater("LIT-anchor").floor_psr_by_construction is False


def _horizon(dem: np.ndarray, row: int, col: int, drow: float, dcol: float, metres_per_step: float) -> float:
    """Independent horizon scan: bilinear heights every quarter pixel along (drow, dcol)."""
    ny, nx = dem.shape
    t = np.arange(0.25, 2 * (ny + nx), 0.25)
    rows, cols = row + t * drow, col + t * dcol
    ok = (rows >= 0) & (rows <= ny - 1) & (cols >= 0) & (cols <= nx - 1)
    h = map_coordinates(dem, [rows[ok], cols[ok]], order=1)
    g = t[ok] * metres_per_step
    return float(np.degrees(np.arctan((h - dem[row, col] - g**2 / (2 * MOON_RADIUS_M)) / g)).max())


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 31])
def test_anchor_horizons_on_the_dem(seed):
    """The PSR anchor's rim hides the highest Sun in every azimuth; the LIT anchor sees it."""
    scene = S.south_polar_scene(seed=seed)
    dem = scene.dem.values.astype(np.float64)
    px = scene.params.pixel_m
    psr, lit = scene.crater("PSR-anchor"), scene.crater("LIT-anchor")
    lowest = min(
        _horizon(dem, psr.row, psr.col, -math.cos(a), math.sin(a), px / polar_scale_factor(psr.lat))
        for a in np.radians(np.arange(0, 360, 10))
    )
    assert lowest > psr.max_sun_elevation_deg
    rho = math.hypot(lit.x_m, lit.y_m)  # the Sun culminates in the equatorward azimuth
    sunward = _horizon(dem, lit.row, lit.col, -lit.y_m / rho, lit.x_m / rho, px / polar_scale_factor(lit.lat))
    assert sunward < lit.max_sun_elevation_deg


def test_geographic_scene_truth(geo_scene):
    dem = geo_scene.dem
    assert dem.attrs["crs"] == "IAU_2015:30100" and dem.shape == (384, 768)
    assert dem.x.values[0] == pytest.approx(10 + 1 / 128) and dem.y.values[0] == pytest.approx(-74 - 1 / 128)
    values = dem.values.astype(np.float64)
    for c in geo_scene.craters:
        assert c.lat == pytest.approx(dem.y.values[c.row], abs=1e-9)
        assert c.lon == pytest.approx(dem.x.values[c.col], abs=1e-9)
        assert values[c.row, c.col] == pytest.approx(c.floor_elevation_m, abs=1e-3)
        assert c.floor_psr_by_construction is _expected_psr(c)[0]
    psr, lit = geo_scene.crater("PSR-anchor"), geo_scene.crater("LIT-anchor")
    assert psr.floor_psr_by_construction and not lit.floor_psr_by_construction
    dy = METRES_PER_DEGREE / 64
    # north (up the column) is equatorward in the south
    assert _horizon(values, lit.row, lit.col, -1.0, 0.0, dy) < lit.max_sun_elevation_deg
    assert _horizon(values, psr.row, psr.col, -1.0, 0.0, dy) > psr.max_sun_elevation_deg


def test_truth_masks(scene):
    masks = S.truth_masks(scene)
    assert {"crater_floor", "crater_interior", "psr", "ridge", "ridge_crest"} <= set(masks)
    for m in masks.values():
        assert m.dtype == bool and m.dims == ("y", "x") and m.shape == scene.dem.shape
        np.testing.assert_array_equal(m.x.values, scene.dem.x.values)
    floor, interior, psr = (masks[k].values for k in ("crater_floor", "crater_interior", "psr"))
    assert not (floor & ~interior).any() and not (psr & ~interior).any()
    for c in scene.craters:
        assert floor[c.row, c.col] and interior[c.row, c.col]
        assert psr[c.row, c.col] == c.floor_psr_by_construction
        # floor area ~ pi (R/2)^2
        r = _ground_r(scene, c)
        n_floor = int((r <= S.FLOOR_FRACTION * c.radius_m).sum())
        assert n_floor == pytest.approx(math.pi * (0.5 * c.radius_m / 40.0) ** 2, rel=0.1)


def test_derived_layers(scene):
    layers = S.derived_layers(scene)
    masks = S.truth_masks(scene)
    temp, hyd, tio2 = (layers[k] for k in ("temperature_k", "hydrogen_ppm", "tio2_wt_pct"))
    assert temp.attrs["units"] == "K" and hyd.attrs["units"] == "ppm H" and tio2.attrs["units"] == "wt%"
    assert all(a.dtype == np.float32 and a.shape == scene.dem.shape for a in (temp, hyd, tio2))
    psr = masks["psr"].values
    assert psr.any() and np.all(temp.values[psr] == 50.0)
    lit = scene.crater("LIT-anchor")
    assert temp.values[lit.row, lit.col] > 110.0  # not a cold trap (Paige et al. 2010 threshold)
    assert float(temp.max()) < 400.0
    # hydrogen: smooth (neutron footprint), highest near shadowed craters
    assert np.abs(np.diff(hyd.values, axis=1)).max() < 0.05
    anchor = scene.crater("PSR-anchor")
    assert hyd.values[anchor.row, anchor.col] > float(hyd.min()) + 0.2
    assert float(hyd.min()) >= 50.0
    assert float(tio2.min()) >= 0.2 - 1e-6 and float(tio2.max()) <= 1.0 + 1e-6
    again = S.derived_layers(scene)
    for k in layers:
        np.testing.assert_array_equal(again[k].values, layers[k].values)


def test_bad_parameters_are_config_errors():
    with pytest.raises(ConfigError, match="n_craters"):
        S.south_polar_scene(n_craters=1)
    with pytest.raises(ConfigError, match="permanently shadowed"):
        S.geographic_scene(lat_range=(-10.0, 10.0), lon_range=(0.0, 20.0), res_deg=1 / 16)
    with pytest.raises(ConfigError, match="multiples"):
        S.geographic_scene(lat_range=(-80.0, -70.3), lon_range=(0.0, 20.0), res_deg=1 / 16)
    with pytest.raises(ConfigError):
        S.south_polar_scene(pixel_m=-1.0)


# --- PDS3 writer ------------------------------------------------------------------------------


def _dn(shape=(12, 10)) -> np.ndarray:
    return (np.arange(shape[0] * shape[1], dtype=np.int16).reshape(shape) - 40) * 3


@pytest.mark.parametrize("crs", [SOUTH, NORTH], ids=["south", "north"])
@pytest.mark.parametrize("units", ["km/pix", "m/pix"])
def test_pds3_roundtrip_through_gdal(tmp_path, crs, units):
    dn = _dn()
    scale = 20.0
    lbl = write_pds3_lola(dn, tmp_path / "TEST.IMG", crs=crs, map_scale_m=scale, scale_units=units, product_id="TEST")
    assert lbl == tmp_path / "TEST.LBL"
    assert (tmp_path / "TEST.IMG").stat().st_size == dn.size * 2
    np.testing.assert_array_equal(np.fromfile(tmp_path / "TEST.IMG", dtype="<i2").reshape(dn.shape), dn)
    l_off, s_off = 12 / 2 - 0.5, 10 / 2 - 0.5
    with rasterio.open(lbl) as ds:
        assert ds.shape == dn.shape and ds.dtypes == ("int16",)
        assert ds.transform.to_gdal() == pytest.approx(
            (-(s_off + 0.5) * scale, scale, 0.0, (l_off + 0.5) * scale, 0.0, -scale), abs=1e-9
        )
        np.testing.assert_array_equal(ds.read(1), dn)
        assert identify(ds.crs).code == crs.code
        assert ds.scales == (0.5,) and ds.offsets == (MOON_RADIUS_M,)
    label = parse_label(lbl.read_text())
    assert label["MAP_SCALE"] == ("0.020 <km/pix>" if units == "km/pix" else "20 <m/pix>")
    assert label["MAP_PROJECTION_TYPE"] == '"POLAR STEREOGRAPHIC"'
    assert num(label["CENTER_LATITUDE"]) == (-90.0 if crs is SOUTH else 90.0)


def test_pds3_km_and_m_labels_give_the_same_transform(tmp_path):
    transforms = []
    for units, scale in (("km/pix", 240.0), ("m/pix", 240.0)):
        d = tmp_path / units.replace("/", "_")
        d.mkdir()
        lbl = write_pds3_lola(
            _dn((16, 20)), d / "A.IMG", crs=SOUTH, map_scale_m=scale, scale_units=units, product_id="A",
            line_projection_offset=100.25, sample_projection_offset=-3.5,
        )  # fmt: skip
        with rasterio.open(lbl) as ds:
            transforms.append(ds.transform.to_gdal())
    assert transforms[0] == pytest.approx(transforms[1], abs=1e-9)
    assert transforms[0] == pytest.approx((-(-3.5 + 0.5) * 240, 240, 0, (100.25 + 0.5) * 240, 0, -240), abs=1e-9)


def test_pds3_geographic_label_reads_as_equirectangular_metres(tmp_path, geo_scene):
    paths = S.write_scene(geo_scene, tmp_path)
    t = geo_scene.transform
    with rasterio.open(paths["dem_lbl"]) as ds:
        assert identify(ds.crs).code == "IAU_2015:30110"  # GDAL's SIMPLE CYLINDRICAL: metres
        gt = ds.transform.to_gdal()
    assert gt == pytest.approx((t.c * METRES_PER_DEGREE, t.a * METRES_PER_DEGREE, 0, t.f * METRES_PER_DEGREE, 0,
                                t.e * METRES_PER_DEGREE), rel=1e-12)  # fmt: skip
    label = parse_label(paths["dem_lbl"].read_text())
    assert label["MAP_PROJECTION_TYPE"] == '"SIMPLE CYLINDRICAL"'
    assert num(label["MAXIMUM_LATITUDE"]) == -74 and num(label["MINIMUM_LATITUDE"]) == -80
    assert num(label["WESTERNMOST_LONGITUDE"]) == 10 and num(label["EASTERNMOST_LONGITUDE"]) == 22
    assert num(label["MAP_RESOLUTION"]) == 64


@pytest.mark.parametrize(
    ("n", "scale", "edge_lat"),
    [(7584, 20.0, -87.4994), (7600, 80.0, -80.0002), (30400, 20.0, -80.0002), (30336, 5.0, -87.4994)],
    ids=["LDEM_875S_20M", "LDEM_80S_80M", "LDEM_80S_20M", "LDEM_875S_5M"],
)
def test_lola_polar_label_geometry(n, scale, edge_lat):
    text = pds3_lola_label(
        lines=n, samples=n, file_name="LDEM.IMG", crs=SOUTH, map_scale_m=scale, product_id="LDEM",
        minimum=-1000, maximum=1000,
    )  # fmt: skip
    assert "\r\n" in text and text.rstrip().endswith("END")
    label = parse_label(text)
    assert num(label["LINE_PROJECTION_OFFSET"]) == n / 2 - 0.5
    assert num(label["SAMPLE_PROJECTION_OFFSET"]) == n / 2 - 0.5
    assert num(label["MAXIMUM_LATITUDE"]) == pytest.approx(edge_lat, abs=1e-4)
    assert num(label["MINIMUM_LATITUDE"]) == -90
    assert num(label["MAP_SCALE"]) * 1000 == pytest.approx(scale, abs=1e-9)
    assert label["MAP_SCALE"].endswith("<km/pix>")
    assert num(label["MAP_RESOLUTION"]) == pytest.approx(METRES_PER_DEGREE / scale, abs=1e-3)
    assert num(label["A_AXIS_RADIUS"]) == MOON_RADIUS_M / 1000 and label["A_AXIS_RADIUS"].endswith("<km>")
    assert num(label["RECORD_BYTES"]) == 2 * n and num(label["FILE_RECORDS"]) == n
    assert num(label["LINES"]) == n and num(label["LINE_SAMPLES"]) == n
    assert label["DATA_SET_ID"] == '"LRO-L-LOLA-4-GDR-V1.0"' and label["TARGET_NAME"] == "MOON"
    assert label["SAMPLE_TYPE"] == "LSB_INTEGER" and num(label["SAMPLE_BITS"]) == 16
    assert num(label["SCALING_FACTOR"]) == 0.5 and num(label["OFFSET"]) == MOON_RADIUS_M
    if n == 7584:
        assert label["LINE_PROJECTION_OFFSET"] == "3791.5 <pix>" and label["MAP_SCALE"] == "0.020 <km/pix>"
    # an independent ODL parser reads the same numbers and units
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # pvl's own import-time notice
        import pvl
    odl = pvl.loads(text)
    proj = odl["IMAGE_MAP_PROJECTION"]
    assert proj["MAP_SCALE"].value * 1000 == pytest.approx(scale) and proj["MAP_SCALE"].units == "km/pix"
    assert proj["LINE_PROJECTION_OFFSET"].value == n / 2 - 0.5 and proj["LINE_PROJECTION_OFFSET"].units == "pix"
    assert odl["UNCOMPRESSED_FILE"]["IMAGE"]["LINES"] == n and odl["UNCOMPRESSED_FILE"]["^IMAGE"] == "LDEM.IMG"


@pytest.mark.shared_data
def test_our_ldem4_label_matches_the_real_one(tmp_path):
    real = shared_data_dir() / "lola_ldem4" / "LDEM_4.LBL"
    if not real.is_file():
        pytest.skip(f"real data not found: {real}")
    (tmp_path / "LDEM_4.IMG").symlink_to(real.with_suffix(".IMG"))
    ours = pds3_lola_label(
        lines=720, samples=1440, file_name="LDEM_4.IMG", crs=lunar_crs(30115), map_scale_m=7580.84,
        scale_units="m/pix", product_id="LDEM_4", minimum=-17758, maximum=21008,
        line_projection_offset=359.5, sample_projection_offset=719.5,
    )  # fmt: skip
    (tmp_path / "LDEM_4.LBL").write_text(ours, newline="")
    theirs = parse_label(real.read_text())
    mine = parse_label(ours)
    for key in ("FILE_RECORDS", "RECORD_BYTES", "LINES", "LINE_SAMPLES", "SAMPLE_BITS", "SCALING_FACTOR", "OFFSET",
                "MAP_RESOLUTION", "A_AXIS_RADIUS", "CENTER_LATITUDE", "CENTER_LONGITUDE", "MAP_SCALE",
                "MAXIMUM_LATITUDE", "MINIMUM_LATITUDE", "WESTERNMOST_LONGITUDE", "EASTERNMOST_LONGITUDE",
                "LINE_PROJECTION_OFFSET", "SAMPLE_PROJECTION_OFFSET"):  # fmt: skip
        assert num(mine[key]) == pytest.approx(num(theirs[key]), abs=1e-4), key
    for key in ("SAMPLE_TYPE", "UNIT", "TARGET_NAME", "DATA_SET_ID", "MAP_PROJECTION_TYPE", "RECORD_TYPE"):
        assert mine[key] == theirs[key], key
    with rasterio.open(real) as a, rasterio.open(tmp_path / "LDEM_4.LBL") as b:
        assert b.transform.to_gdal() == pytest.approx(a.transform.to_gdal(), abs=1e-6)
        assert b.shape == a.shape
        window = rasterio.windows.Window(700, 300, 40, 30)
        np.testing.assert_array_equal(b.read(1, window=window), a.read(1, window=window))


def test_pds3_writer_refuses_bad_input(tmp_path):
    with pytest.raises(TypeError, match="int16"):
        write_pds3_lola(_dn().astype(np.float32), tmp_path / "X.IMG", crs=SOUTH, map_scale_m=20.0, product_id="X")
    with pytest.raises(ValueError, match="upper case"):
        write_pds3_lola(_dn(), tmp_path / "X.IMG", crs=SOUTH, map_scale_m=20.0, product_id="X",
                        extra_keys={"bad key": 1})  # fmt: skip
    with pytest.raises(ValueError, match="override"):
        write_pds3_lola(_dn(), tmp_path / "X.IMG", crs=SOUTH, map_scale_m=20.0, product_id="X",
                        extra_keys={"PRODUCT_ID": "Y"})  # fmt: skip
    other = dataclasses.replace(SOUTH, kind="other", code=None)  # e.g. a Mercator: no PDS3 mapping here
    with pytest.raises(CRSError):
        write_pds3_lola(_dn(), tmp_path / "X.IMG", crs=other, map_scale_m=20.0, product_id="X")
    assert list(tmp_path.iterdir()) == []


# --- GeoTIFF and atomic writes ----------------------------------------------------------------


def test_geotiff_roundtrip(tmp_path, scene):
    da = scene.dem.copy()
    da.values[0, :5] = np.nan
    path = write_geotiff(da, tmp_path / "dem.tif", crs=scene.crs, transform=scene.transform, units="m",
                         tags={"source": "test"})  # fmt: skip
    with rasterio.open(path) as ds:
        assert identify(ds.crs).code == "IAU_2015:30135"
        assert ds.tags(1)["units"] == "m" and ds.units == ("m",)
        assert ds.tags()["source"] == "test"
        assert ds.transform == scene.transform
        assert ds.profile["tiled"] and ds.block_shapes == [(256, 256)] and ds.compression.name == "deflate"
        assert ds.nodata == -32768.0
        data = ds.read(1, masked=True)
    assert data.mask[0, :5].all() and not data.mask[1:].any()
    np.testing.assert_array_equal(data.data[1:], scene.dem.values[1:])
    assert [p.name for p in tmp_path.iterdir()] == ["dem.tif"]


def test_atomic_write_leaves_nothing_on_exception(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError, match="boom"), atomic_write(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_bytes(b"new but broken")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]
    with atomic_write(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and list(tmp_path.iterdir()) == [target]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_geotiff_failure_leaves_nothing(tmp_path, scene):
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("tag value fails after GDAL created the file")

    target = tmp_path / "dem.tif"
    with pytest.raises(RuntimeError, match="tag value"):
        write_geotiff(scene.dem, target, crs=scene.crs, transform=scene.transform, units="m",
                      tags={"bad": Unprintable()})  # fmt: skip
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(TypeError):
        write_geotiff(scene.dem, target, crs=scene.crs, transform=scene.transform, units="m", dtype="not-a-dtype")
    assert list(tmp_path.iterdir()) == []


# --- write_scene -------------------------------------------------------------------------------


def test_write_scene(tmp_path, scene):
    paths = S.write_scene(scene, tmp_path / "out")
    assert set(paths) == {"dem_img", "dem_lbl", "dem_tif", "temperature_tif", "hydrogen_tif", "tio2_tif", "truth_json"}
    assert all(p.is_file() for p in paths.values())
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files
    with rasterio.open(paths["dem_lbl"]) as ds:
        assert ds.transform == scene.transform
        heights = ds.read(1).astype(np.float64) * 0.5  # LOLA: HEIGHT = DN * SCALING_FACTOR
    np.testing.assert_allclose(heights, scene.dem.values, atol=0.25 + 1e-6)
    for key, units in (("dem_tif", "m"), ("temperature_tif", "K"), ("hydrogen_tif", "ppm H"), ("tio2_tif", "wt%")):
        with rasterio.open(paths[key]) as ds:
            assert identify(ds.crs).code == "IAU_2015:30135"
            assert ds.tags(1)["units"] == units
    truth = json.loads(paths["truth_json"].read_text())
    assert truth["seed"] == 7 and truth["crs"] == "IAU_2015:30135"
    assert truth["shadow_criterion"]["max_subsolar_latitude_deg"] == 1.54
    assert [c["name"] for c in truth["craters"]] == [c.name for c in scene.craters]
    assert truth["craters"][0]["floor_psr_by_construction"] is True
    again = S.scene_from_truth(paths["truth_json"])
    np.testing.assert_array_equal(again.dem.values, scene.dem.values)
    assert again.craters == scene.craters
    # deterministic outputs: a second write gives byte-identical truth and label
    paths2 = S.write_scene(scene, tmp_path / "out2")
    assert paths2["truth_json"].read_text().replace("out2", "out") == paths["truth_json"].read_text()
    assert paths2["dem_lbl"].read_bytes() == paths["dem_lbl"].read_bytes()
