"""Product readers on the real data in ../shared/data and on files written here in real formats."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Literal

import dask.array as da
import numpy as np
import pytest
import rasterio
from affine import Affine

from prospect import lunar
from prospect.errors import EarthCRSError, LabelError, UnitsError
from prospect.io import pds3
from prospect.io.readers import describe, open_product, resolve_source, sha256_of, sniff_format
from prospect.io.vectors import open_vector
from prospect.io.writers import pds3_lola_label, write_pds3_lola
from tests.conftest import run_cli

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# --- real LOLA LDEM_4 -------------------------------------------------------------------


@pytest.mark.shared_data
def test_ldem4_heights_are_dn_times_scaling_factor(shared):
    arr = open_product(shared / "lola_ldem4" / "LDEM_4.LBL")
    assert isinstance(arr.data, da.Array) and arr.dtype == np.float32
    info = describe(arr)
    assert (info["min"], info["max"]) == (-8878.5, 10504.0)  # DN x 0.5; OFFSET never added
    assert info["crs"] == "IAU_2015:30115" and info["units"] == "m"
    assert arr.attrs["reference_radius_m"] == lunar.MOON_RADIUS_M
    assert arr.attrs["source_sha256"] == "972d66d7f330abca62abc21aae270661516c00dd1a881ec102b94df9563656b5"
    assert arr.attrs["product_id"] == "LDEM_4" and arr.attrs["instrument"] == "LOLA"
    raw = np.fromfile(shared / "lola_ldem4" / "LDEM_4.IMG", dtype="<i2").reshape(720, 1440)
    np.testing.assert_array_equal(arr.values, raw.astype("float32") * 0.5)


@pytest.mark.shared_data
def test_ldem4_georeferencing_is_lunar_and_pixel_registered(shared):
    arr = open_product(shared / "lola_ldem4" / "LDEM_4.LBL")
    # pixel centres at 0.125 .. 359.875 E (native 0..360), normalised explicitly to -180..180
    assert arr.lon.values[0] == pytest.approx(0.125) and arr.lon.values[-1] == pytest.approx(-0.125)
    assert arr.lat.values[0] == pytest.approx(89.875) and arr.lat.values[-1] == pytest.approx(-89.875)
    assert arr.attrs["native_longitude_convention"] == "0-360"
    lon360 = open_product(shared / "lola_ldem4" / "LDEM_4.LBL", lon_convention="360").lon.values
    assert lon360[0] == pytest.approx(0.125) and lon360[-1] == pytest.approx(359.875)
    assert lunar.identify(arr.rio.crs).code == "IAU_2015:30115"


@pytest.mark.shared_data
def test_ldem4_jp2_gives_the_same_heights_at_the_same_lonlat(shared):
    img = open_product("lola_ldem_4")
    for jp2_source in (
        "lola_ldem_4_jp2",
        shared / "lola_ldem4" / "LDEM_4.JP2",
        shared / "lola_ldem4" / "LDEM_4_JP2.LBL",
    ):
        jp2 = open_product(jp2_source)
        assert jp2.attrs["crs"] == "IAU_2015:30110" and jp2.attrs["units"] == "m"
        # every pixel: same lon/lat -> same height within one DN (0.5 m; JP2 is not exactly lossless)
        order_img = np.argsort(img.lon.values)
        order_jp2 = np.argsort(jp2.lon.values)
        np.testing.assert_allclose(img.lon.values[order_img], jp2.lon.values[order_jp2])
        diff = np.abs(img.values[:, order_img] - jp2.values[:, order_jp2])
        assert diff.max() <= 0.5
    # and at named places, through each product's own CRS
    for lon, lat in [(-0.1, 0.1), (179.9, -45.0), (-179.9, 45.0), (45.0, -88.0), (300.0, 10.0)]:
        values = []
        for arr in (img, jp2):
            crs = lunar.identify(arr.rio.crs)
            x, y = lunar.lonlat_to_xy(crs, lunar.normalize_longitude(lon), lat)
            values.append(float(arr.sel(x=x, y=y, method="nearest")))
        assert abs(values[0] - values[1]) <= 0.5


@pytest.mark.shared_data
def test_our_transform_matches_gdal_where_the_label_is_exact(shared):
    # LDEM_4_JP2.LBL states MAP_SCALE to 1e-10 km: GDAL's PDS driver and we must agree exactly
    arr = open_product(shared / "lola_ldem4" / "LDEM_4_JP2.LBL")
    with rasterio.open(shared / "lola_ldem4" / "LDEM_4_JP2.LBL") as ds:
        assert arr.rio.transform().almost_equals(ds.transform, precision=1e-3)
    # LDEM_4.LBL rounds MAP_SCALE to 7580.84 m; we use MAP_RESOLUTION's exact 2 pi R / 1440
    with rasterio.open(shared / "lola_ldem4" / "LDEM_4.LBL") as ds:
        assert ds.transform.a == pytest.approx(7580.84)
    assert open_product(shared / "lola_ldem4" / "LDEM_4.LBL").rio.transform().a == pytest.approx(
        2 * math.pi * lunar.MOON_RADIUS_M / 1440
    )


# --- real polar GeoTIFFs ------------------------------------------------------------------


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "name,code,south", [("lola_dem_south.tif", "IAU_2015:30135", True), ("lola_dem_north.tif", "IAU_2015:30130", False)]
)
def test_polar_geotiffs_are_iau_polar_stereographic(shared, name, code, south):
    arr = open_product(shared / "lola_polar_1600m" / name)
    assert arr.attrs["crs"] == code and arr.attrs["units"] == "m"  # units from the matching manifest
    assert arr.attrs["manifest_id"].startswith("lunar_toolkit_lola_")
    crs = lunar.identify(arr.rio.crs)
    n = arr.sizes["x"]
    scale = arr.rio.transform().a
    # LOLA polar formula (DSMAP_POLAR.CAT): X = (I - N/2 - 0.5) * S, Y = (J - N/2 - 0.5) * S, 1-based
    for i, j in [(1, 1), (100, 600), (381, 382), (762, 40)]:
        X = (i - n / 2 - 0.5) * scale
        Y = (j - n / 2 - 0.5) * scale
        lat_formula = lunar.polar_stereographic_latitude(math.hypot(X, Y), south=south)
        x, y = float(arr.x[i - 1]), float(arr.y[j - 1])
        assert (x, y) == pytest.approx((X, -Y))  # map y grows up, lines grow down
        lon, lat = lunar.xy_to_lonlat(crs, x, y)
        assert lat == pytest.approx(lat_formula, abs=1e-9)
        expected_lon = math.degrees(math.atan2(x, y if south else -y))
        assert lunar.normalize_longitude(lon - expected_lon) == pytest.approx(0.0, abs=1e-9)


# --- PDS3 geometry of the big LOLA polar products -------------------------------------------


def _sparse_lola_product(tmp_path: Path, n: int, scale_m: float, units: Literal["km/pix", "m/pix"]) -> Path:
    crs = lunar.lunar_crs(lunar.IAU_SOUTH_POLAR_STEREOGRAPHIC)
    label = pds3_lola_label(
        lines=n,
        samples=n,
        file_name="LDEM_875S_20M.IMG",
        crs=crs,
        map_scale_m=scale_m,
        scale_units=units,
        product_id="LDEM_875S_20M",
        minimum=-100,
        maximum=100,
    )
    (tmp_path / "LDEM_875S_20M.LBL").write_text(label)
    with open(tmp_path / "LDEM_875S_20M.IMG", "wb") as fh:  # sparse: right size, no disk used
        fh.truncate(n * n * 2)
    return tmp_path / "LDEM_875S_20M.LBL"


@pytest.mark.parametrize("units", ["km/pix", "m/pix"])
def test_ldem_875s_20m_geometry_edge_and_corner_latitudes(tmp_path, units):
    label = _sparse_lola_product(tmp_path, 7584, 20.0, units)
    assert "3791.5" in label.read_text()
    arr = open_product(label)
    assert arr.shape == (7584, 7584) and arr.attrs["crs"] == "IAU_2015:30135"
    left, _bottom, _right, top = arr.rio.bounds()
    crs = lunar.identify(arr.rio.crs)
    _, edge_lat = lunar.xy_to_lonlat(crs, 0.0, top)
    _, corner_lat = lunar.xy_to_lonlat(crs, left, top)
    assert edge_lat == pytest.approx(-87.4994, abs=5e-5)
    assert corner_lat == pytest.approx(-86.464, abs=5e-4)
    # GDAL agrees on the transform, whatever unit MAP_SCALE is written in
    with rasterio.open(label) as ds:
        assert arr.rio.transform().almost_equals(ds.transform, precision=1e-6)


def test_synthetic_lola_product_round_trip_and_chunk_invariance(tmp_path):
    rng = np.random.default_rng(3)
    dn = rng.integers(-20000, 20000, size=(61, 47), dtype=np.int16)
    label = write_pds3_lola(dn, tmp_path / "TEST.IMG", crs=lunar.lunar_crs(30135), map_scale_m=80.0, product_id="TEST")
    a = open_product(label, chunks=(7, 11))
    b = open_product(label, chunks=64)
    assert a.data.chunks[0][0] == 7
    np.testing.assert_array_equal(a.values, dn * np.float32(0.5))
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(open_product(tmp_path / "TEST.IMG").values, a.values)  # label found beside the IMG


def test_public_helpers_sniff_resolve_and_hash(tmp_path):
    """The helpers other modules use (CLI ``info``, binned tables): format sniffing, source resolution, sha256."""
    import hashlib

    from prospect.errors import InputNotFoundError

    label = write_pds3_lola(
        np.zeros((4, 4), np.int16), tmp_path / "T.IMG", crs=lunar.lunar_crs(30135), map_scale_m=80.0, product_id="T"
    )
    tif = tmp_path / "t.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=2, height=2, count=1, dtype="float32") as dst:
        dst.write(np.zeros((1, 2, 2), "float32"))
    (tmp_path / "pts.csv").write_text("lon,lat\n0,0\n")
    assert sniff_format(label) == "pds3" and sniff_format(tmp_path / "T.IMG") == "raw"
    assert sniff_format(tif) == "geotiff" and sniff_format(tmp_path / "pts.csv") == "vector"
    assert resolve_source(str(tif)) == (tif, None)
    assert sha256_of(tif) == hashlib.sha256(tif.read_bytes()).hexdigest()
    with pytest.raises(InputNotFoundError, match="no such file"):
        resolve_source(tmp_path / "nope.tif")


# --- Chang'e dialect ------------------------------------------------------------------------


def _change_product(tmp_path: Path, *, lines=40, samples=32, row_suffix=None, unit="METER") -> tuple[Path, np.ndarray]:
    """A Chang'e-2 DEM-style product with the dialect of the real CE1 label in shared/change_labels:
    attached label, tab indentation, empty values, lowercase-z times, unquoted text, and an
    IMAGE_PREFIX table row before every image line."""
    record = 24 + samples * 4
    heights = (np.arange(lines * samples, dtype="<f4").reshape(lines, samples) - 500.0) * 1.5
    heights[3, 5] = -3.4028227e38  # a NULL
    label_records = 16
    label = (
        "PDS_VERSION_ID                 = PDS3\r\n"
        "RECORD_TYPE                    = FIXED_LENGTH\r\n"
        f"RECORD_BYTES                   = {record}\r\n"
        f"FILE_RECORDS                   = {lines + label_records}\r\n"
        f"LABEL_RECORDS                  = {label_records}\r\n"
        f"^IMAGE_PREFIX                  = {label_records + 1}\r\n"
        f"^IMAGE                         = {label_records + 1}\r\n"
        "DATA_SET_ID                    = \r\n"
        "PRODUCT_NAME                   = CE2 GRAS DEM Science Data Product\r\n"
        "PRODUCT_ID                     = CE2_GRAS_DEM_TEST_A\r\n"
        "PRODUCT_CREATION_TIME          = 2012-02-24T00:38:45.000z\r\n"
        'SPACECRAFT_NAME                = "CE2"\r\n'
        "INSTRUMENT_ID                  = CCD\r\n"
        "  OBJECT\t\t\t\t\t\t = IMAGE_PREFIX\r\n"
        "  INTERCHANGE_FORMAT\t\t\t = Binary\r\n"
        f"  ROWS\t\t\t\t\t\t = {lines}\r\n"
        "  ROW_BYTES\t\t\t\t\t = 24\r\n"
        f"  ROW_SUFFIX_BYTES\t\t\t = {row_suffix if row_suffix is not None else samples * 4}\r\n"
        "  COLUMNS\t\t\t\t\t\t = 1\r\n"
        "  OBJECT\t\t\t\t\t\t = COLUMN\r\n"
        '    NAME\t\t        \t     = "Time"\r\n'
        "    DATA_TYPE\t\t\t\t\t = DATE\r\n"
        "    START_BYTE\t\t\t\t = 1\r\n"
        "    BYTES\t\t\t\t\t\t = 24\r\n"
        "    UNIT\t\t\t\t\t\t = N/A\r\n"
        "  END_OBJECT\t\t\t\t\t = COLUMN\r\n"
        "  END_OBJECT\t\t\t\t\t = IMAGE_PREFIX\r\n"
        "  OBJECT\t\t\t\t\t\t = IMAGE\r\n"
        f"    LINES\t\t\t\t\t = {lines}\r\n"
        f"    LINE_SAMPLES\t\t\t = {samples}\r\n"
        "    SAMPLE_TYPE\t\t\t\t = PC_REAL\r\n"
        "    SAMPLE_BITS\t\t\t\t = 32\r\n"
        f"    UNIT\t\t\t\t\t\t = {unit}\r\n"
        "    MISSING_CONSTANT\t\t\t = -3.4028227e38\r\n"
        "  END_OBJECT\t\t\t\t\t = IMAGE\r\n"
        "  OBJECT\t\t\t\t\t\t = IMAGE_MAP_PROJECTION\r\n"
        '    MAP_PROJECTION_TYPE\t\t = "POLAR STEREOGRAPHIC"\r\n'
        "    A_AXIS_RADIUS\t\t\t = 1737.4 <KM>\r\n"
        "    CENTER_LATITUDE\t\t\t = -90.0 <DEG>\r\n"
        "    CENTER_LONGITUDE\t\t\t = 0.0 <DEG>\r\n"
        "    MAP_SCALE\t\t\t\t = 20.0 <METERS/PIXEL>\r\n"
        "    LINE_PROJECTION_OFFSET\t = 1000.5 <PIXEL>\r\n"
        "    SAMPLE_PROJECTION_OFFSET\t = -200.5 <PIXEL>\r\n"
        "  END_OBJECT\t\t\t\t\t = IMAGE_MAP_PROJECTION\r\n"
        "END\r\n"
    ).encode("ascii")
    assert len(label) <= record * label_records
    body = bytearray(label.ljust(record * label_records, b" "))
    for i in range(lines):
        body += f"2012-02-24T00:38:{i:02d}.000z".encode().ljust(24)
        body += heights[i].tobytes()
    path = tmp_path / "CE2_GRAS_DEM_TEST_A.img"
    path.write_bytes(bytes(body))
    return path, heights


def test_change_dialect_attached_label_with_image_prefix(tmp_path):
    path, heights = _change_product(tmp_path)
    with pytest.raises(rasterio.errors.RasterioIOError):
        rasterio.open(path)  # what GDAL issue 796 is about
    arr = open_product(path, chunks=(9, 7))
    expected = heights.copy()
    expected[3, 5] = np.nan
    np.testing.assert_array_equal(arr.values, expected)  # prefix rows skipped, NULL -> NaN
    assert arr.attrs["crs"] == "IAU_2015:30135" and arr.attrs["units"] == "m"
    assert arr.rio.transform() == Affine(20.0, 0, 200.0 * 20.0, 0, -20.0, 1001.0 * 20.0)
    label = pds3.read_label(path)
    assert label.get("DATA_SET_ID") is None
    assert label.get("PRODUCT_NAME") == "CE2 GRAS DEM Science Data Product"
    assert label.get("PRODUCT_CREATION_TIME") == "2012-02-24T00:38:45.000z"


def test_change_label_that_contradicts_itself_is_refused(tmp_path):
    path, _ = _change_product(tmp_path, row_suffix=100)
    with pytest.raises(LabelError, match="ROW_SUFFIX_BYTES = 100"):
        open_product(path)


@pytest.mark.shared_data
def test_real_truncated_change_label_gives_a_one_line_error(shared):
    with pytest.raises(LabelError) as exc:
        pds3.read_label(shared / "change_labels" / "CE1_CCD_2C_label_partial.LBL")
    assert "line 36" in str(exc.value) and "truncated" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.shared_data
def test_our_label_parser_agrees_with_pvl(shared):
    import pvl

    ours = pds3.read_label(shared / "lola_ldem4" / "LDEM_4.LBL")
    theirs = pvl.load(str(shared / "lola_ldem4" / "LDEM_4.LBL"))
    uncompressed = ours.block("UNCOMPRESSED_FILE")
    assert uncompressed is not None
    img_ours = uncompressed.block("IMAGE")
    assert img_ours is not None
    img_theirs = theirs["UNCOMPRESSED_FILE"]["IMAGE"]
    for key in ("LINES", "LINE_SAMPLES", "SAMPLE_BITS", "SCALING_FACTOR", "OFFSET", "MAXIMUM", "MINIMUM"):
        assert img_ours.get(key) == img_theirs[key]
    proj_o, proj_t = ours.block("IMAGE_MAP_PROJECTION"), theirs["IMAGE_MAP_PROJECTION"]
    assert proj_o is not None
    assert float(proj_o.get("MAP_SCALE")) == float(proj_t["MAP_SCALE"].value)
    assert proj_o.get("MAP_SCALE").unit == proj_t["MAP_SCALE"].units


# --- PDS4, ISIS3, GeoTIFF through GDAL ------------------------------------------------------


def _write_gdal(
    path: Path, driver: str, data: np.ndarray, *, code=30135, nodata=None, scale=1.0, offset=0.0, unit="m", **opts
) -> Path:
    crs = lunar.lunar_crs(code).to_rasterio()
    with rasterio.open(
        path,
        "w",
        driver=driver,
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=data.dtype,
        crs=crs,
        transform=Affine(100, 0, -2000, 0, -100, 3000),
        nodata=nodata,
        **opts,
    ) as ds:
        ds.scales = (scale,)  # before the pixels: GDAL's ISIS3 writer fixes Base/Multiplier then
        ds.offsets = (offset,)
        if unit:
            ds.units = (unit,)
        ds.write(data, 1)
    return path


@pytest.mark.parametrize("driver,name", [("PDS4", "dem.xml"), ("ISIS3", "dem.cub"), ("GTiff", "dem.tif")])
def test_gdal_formats_scale_offset_nodata_units(tmp_path, driver, name):
    data = np.arange(30 * 20, dtype=np.int16).reshape(30, 20)
    data[0, 0] = -32768
    path = _write_gdal(tmp_path / name, driver, data, nodata=-32768, scale=0.5, offset=10.0)
    arr = open_product(path, chunks=(7, 9))
    assert arr.attrs["crs"] == "IAU_2015:30135"
    assert np.isnan(arr.values[0, 0])
    np.testing.assert_allclose(arr.values[1:], data[1:] * 0.5 + 10.0)
    assert arr.rio.transform().almost_equals(Affine(100, 0, -2000, 0, -100, 3000))
    assert arr.attrs["units"] == "m"


def test_isis3_float_special_pixels_are_nan(tmp_path):
    data = np.linspace(-5, 5, 12 * 10, dtype=np.float32).reshape(12, 10)
    data[2, 3] = -3.4028226550889045e38  # ISIS NULL
    data[4, 4] = -3.4028228579130005e38  # ISIS LRS
    arr = open_product(_write_gdal(tmp_path / "t.cub", "ISIS3", data, unit=None))
    assert np.isnan(arr.values[2, 3]) and np.isnan(arr.values[4, 4])
    assert np.isfinite(arr.values).sum() == data.size - 2


def test_earth_geotiff_is_refused(tmp_path):
    path = tmp_path / "earth.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=4,
        height=4,
        count=1,
        dtype="float32",
        crs="EPSG:4326",
        transform=Affine(1, 0, 0, 0, -1, 4),
    ) as ds:
        ds.write(np.zeros((1, 4, 4), "float32"))
    with pytest.raises(EarthCRSError):
        open_product(path)
    assert open_product(path, crs_override="IAU_2015:30100").attrs["crs"] == "IAU_2015:30100"


# --- vectors ----------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_crater_shapefile_with_wgs84_prj_is_refused_then_loaded_with_override(shared):
    shp = shared / "craters_hkpolyu_60_90S" / "HKPolyU_030E_6090S.shp"
    with pytest.raises(EarthCRSError) as exc:
        open_vector(shp)
    msg = str(exc.value)
    assert "HKPolyU_030E_6090S.prj" in msg and "WGS" in msg and "IAU_2015:30100" in msg
    gdf = open_vector(shp, crs_override="IAU_2015:30100")
    assert gdf.attrs["crs_code"] == "IAU_2015:30100" and len(gdf) > 9000
    # planetocentric lunar degrees: the tile spans 0..30 E, 60..90 S, points equal Longitude/Latitude
    assert gdf.geometry.x.between(0, 30).all() and gdf.geometry.y.between(-90, -60).all()
    np.testing.assert_allclose(gdf.geometry.x, gdf["Longitude"])


@pytest.mark.shared_data
def test_vector_manifests_psr_polygons_and_csv_tables(shared):
    psr = open_vector("lola_psr_south_5km2")
    assert len(psr) == 653 and psr.attrs["crs_code"] == "IAU_2015:30135"
    craters = open_vector("hkpolyu_craters_60_90s")  # 12 tiles, manifest override
    assert len(craters) == 99_334
    cold = open_vector("cold_trap_craters")
    assert cold.attrs["longitude_convention_source"] == "0-360"
    haworth = cold[cold["Crater Name"] == "Haworth"].iloc[0]
    assert haworth.geometry.x == pytest.approx(354.8 - 360.0) and haworth.geometry.y == pytest.approx(-87.5)
    assert len(open_vector("artemis3_regions_2022")) == 13


# --- bad input through the CLI: one line, exit 2, no traceback ---------------------------------


def _assert_one_line_error(result, *needles):
    assert result.returncode == 2, result.stderr
    err = result.stderr.strip()
    assert err.startswith("prospect: error:") and "\n" not in err and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    assert result.stdout == ""


@pytest.fixture
def ldem4_copy(shared, tmp_path) -> Path:
    for name in ("LDEM_4.LBL", "LDEM_4.IMG"):
        shutil.copy(shared / "lola_ldem4" / name, tmp_path / name)
    return tmp_path


@pytest.mark.shared_data
def test_cli_info_json_on_real_ldem4(shared):
    result = run_cli("info", str(shared / "lola_ldem4" / "LDEM_4.LBL"), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["crs"] == "IAU_2015:30115" and (info["width"], info["height"]) == (1440, 720)
    assert (info["min"], info["max"], info["units"]) == (-8878.5, 10504.0, "m")
    assert info["resolution_m"] == pytest.approx(7580.84, abs=0.01) and info["nodata_fraction"] == 0.0
    assert info["sha256"].startswith("972d66d7") and info["driver"] == "PDS3"
    south = json.loads(run_cli("info", "lunar_toolkit_lola_south_1600m", "--json").stdout)
    assert south["crs"] == "IAU_2015:30135" and south["resolution_m"] == 1600.0


@pytest.mark.shared_data
def test_cli_truncated_img(ldem4_copy):
    img = ldem4_copy / "LDEM_4.IMG"
    img.write_bytes(img.read_bytes()[:1_000_000])
    _assert_one_line_error(run_cli("info", str(ldem4_copy / "LDEM_4.LBL")), "truncated", "LDEM_4.IMG")


@pytest.mark.shared_data
def test_cli_label_file_size_mismatch(ldem4_copy):
    with open(ldem4_copy / "LDEM_4.IMG", "ab") as fh:
        fh.write(b"\0" * 100_000)
    _assert_one_line_error(run_cli("info", str(ldem4_copy / "LDEM_4.LBL")), "size mismatch")


@pytest.mark.shared_data
def test_cli_missing_label(ldem4_copy):
    (ldem4_copy / "LDEM_4.LBL").unlink()
    _assert_one_line_error(run_cli("info", str(ldem4_copy / "LDEM_4.IMG")), "missing label")


@pytest.mark.shared_data
def test_cli_unknown_units(ldem4_copy):
    lbl = ldem4_copy / "LDEM_4.LBL"
    lbl.write_text(lbl.read_text().replace("UNIT                  = METER", "UNIT                  = FURLONG"))
    _assert_one_line_error(run_cli("info", str(lbl)), "unknown units", "FURLONG")
    with pytest.raises(UnitsError):
        open_product(lbl)


@pytest.mark.shared_data
def test_cli_earth_crs_and_override(shared):
    shp = str(shared / "craters_hkpolyu_60_90S" / "HKPolyU_030E_6090S.shp")
    _assert_one_line_error(run_cli("info", shp), "Earth CRS", "--assume-crs")
    ok = run_cli("info", shp, "--assume-crs", "IAU_2015:30100", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["crs"] == "IAU_2015:30100"


def _manifest_env(tmp_path: Path, shared: Path, *, name="LDEM_4.IMG", checksum=None) -> dict[str, str]:
    import yaml

    text = (Path(__file__).resolve().parents[1] / "data_manifests" / "lola_ldem_4.yaml").read_text()
    data = yaml.safe_load(text)
    data.pop("shared_path")
    data["id"] = "bad_product"
    data["files"][1]["name"] = name
    if checksum:
        data["files"][1]["checksum"] = checksum
    mdir = tmp_path / "manifests"
    mdir.mkdir()
    (mdir / "bad_product.yaml").write_text(yaml.safe_dump(data))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for f in ("LDEM_4.LBL", "LDEM_4.IMG"):
        shutil.copy(shared / "lola_ldem4" / f, mirror / f)
    return {
        "PROSPECT_MANIFEST_DIR": str(mdir),
        "PROSPECT_MIRROR": str(mirror),
        "PROSPECT_CACHE": str(tmp_path / "cache"),
    }


@pytest.mark.shared_data
def test_cli_wrong_checksum_is_refused_and_nothing_is_cached(shared, tmp_path):
    env = _manifest_env(tmp_path, shared, checksum="sha256:" + "0" * 64)
    _assert_one_line_error(run_cli("info", "bad_product", env=env), "checksum", "LDEM_4.IMG")
    assert not (tmp_path / "cache" / "bad_product" / "LDEM_4.IMG").exists()


@pytest.mark.shared_data
def test_cli_path_outside_the_cache_is_refused(shared, tmp_path):
    env = _manifest_env(tmp_path, shared, name="..")
    _assert_one_line_error(run_cli("fetch", "bad_product", env=env), "cache")


def test_cli_missing_file_and_unknown_id():
    _assert_one_line_error(run_cli("info", "/nonexistent/LDEM_4.LBL"), "/nonexistent/LDEM_4.LBL")
    _assert_one_line_error(run_cli("info", "no_such_product"), "no_such_product")
