"""The lunar geodesy/CRS module: constants, IAU_2015 recognition, Earth refusal."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prospect import lunar
from prospect.errors import CRSError, EarthCRSError


def test_constants_follow_science_md():
    assert lunar.MOON_RADIUS_M == 1_737_400.0
    # science.md quotes 30,323.6 m per degree; 2 pi R / 360 is 30,323.35 m
    assert pytest.approx(30323.6, abs=0.3) == lunar.METRES_PER_DEGREE
    assert lunar.polar_scale_factor(-80.0) == pytest.approx(1.0077, abs=1e-4)
    assert lunar.polar_scale_factor(75.0) == pytest.approx(1.0173, abs=1e-4)
    assert lunar.polar_scale_factor(-90.0) == pytest.approx(1.0)


@pytest.mark.parametrize("lat,km2", [(87.5, 18_052), (85.0, 72_172), (80.0, 288_139)])
def test_cap_areas_match_science_md(lat, km2):
    assert lunar.polar_cap_area_m2(lat) / 1e6 == pytest.approx(km2, rel=1e-4)


def test_cell_areas_sum_to_the_sphere():
    lat_edges = np.linspace(-90, 90, 181)
    areas = lunar.cell_area_m2(lat_edges[:-1], lat_edges[1:], 360.0)
    assert areas.sum() == pytest.approx(4 * math.pi * lunar.MOON_RADIUS_M**2, rel=1e-9)


@pytest.mark.parametrize(
    "code,kind",
    [
        (30100, "geographic"),
        (30110, "equirectangular"),
        (30115, "equirectangular"),
        (30130, "polar_north"),
        (30135, "polar_south"),
    ],
)
def test_iau_codes_round_trip(code, kind):
    crs = lunar.lunar_crs(code)
    assert crs.code == f"IAU_2015:{code}" and crs.kind == kind
    # through rasterio's PROJ and back, and through a PROJ string
    assert lunar.identify(crs.to_rasterio()).code == crs.code
    assert lunar.identify(lunar.IAU_CODES[code]).code == crs.code


def test_gdal_pds_polar_wkt_is_recognised():
    wkt = (
        'PROJCS["POLAR_STEREOGRAPHIC MOON",GEOGCS["GCS_MOON",DATUM["D_MOON",SPHEROID["MOON",1737400,0]],'
        'PRIMEM["Reference_Meridian",0],UNIT["degree",0.0174532925199433]],PROJECTION["Polar_Stereographic"],'
        'PARAMETER["latitude_of_origin",-90],PARAMETER["central_meridian",0],PARAMETER["scale_factor",1],'
        'PARAMETER["false_easting",0],PARAMETER["false_northing",0],UNIT["unknown",1]]'
    )
    assert lunar.identify(wkt).code == "IAU_2015:30135"
    # GeoTIFFs written with 30135 read back as the lat_ts=-90 form (docs/platform.md)
    assert lunar.identify("+proj=stere +lat_0=-90 +lat_ts=-90 +lon_0=0 +R=1737400").code == "IAU_2015:30135"


def test_non_canonical_lunar_crs_has_no_code():
    crs = lunar.identify("+proj=eqc +lat_ts=30 +lon_0=0 +R=1737400 +units=m")
    assert crs.code is None and crs.kind == "equirectangular" and crs.lat_ts == 30


@pytest.mark.parametrize(
    "earth",
    [
        "EPSG:4326",
        "EPSG:3031",
        "+proj=longlat +ellps=WGS84",
        (
            'GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,'
            '298.257223563]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]]'
        ),
    ],
)
def test_earth_crs_is_refused_with_the_override_named(earth):
    with pytest.raises(EarthCRSError) as exc:
        lunar.identify(earth, source="craters.prj")
    msg = str(exc.value)
    assert "craters.prj" in msg and "Earth" in msg and "crs_override" in msg and "\n" not in msg


def test_override_replaces_a_lying_declaration():
    assert lunar.identify("EPSG:4326", crs_override="IAU_2015:30100").code == "IAU_2015:30100"


def test_other_bodies_and_missing_crs_are_refused():
    with pytest.raises(CRSError, match="not the Moon"):
        lunar.identify("+proj=longlat +R=3396190")  # Mars
    with pytest.raises(CRSError, match="no coordinate reference system"):
        lunar.identify(None, source="x.tif")
    with pytest.raises(CRSError):
        lunar.lunar_crs("EPSG:4326")


def test_legacy_1738km_sphere_warns():
    with pytest.warns(lunar.LegacyDatumWarning):
        crs = lunar.identify("+proj=longlat +R=1738000")
    assert crs.code is None and crs.radius_m == 1_738_000


def test_polar_latitude_formula_and_projection_agree():
    south = lunar.lunar_crs(30135)
    x, y = 123_456.0, -78_900.0
    lon, lat = lunar.xy_to_lonlat(south, x, y)
    assert lat == pytest.approx(lunar.polar_stereographic_latitude(math.hypot(x, y)), abs=1e-9)
    # lon 0 points up (+y), 90 E points right (+x) at the south pole
    assert lunar.xy_to_lonlat(south, 0.0, 1000.0)[0] == pytest.approx(0.0, abs=1e-9)
    assert lunar.xy_to_lonlat(south, 1000.0, 0.0)[0] == pytest.approx(90.0, abs=1e-9)
    assert lunar.lonlat_to_xy(south, lon, lat) == pytest.approx((x, y), abs=1e-6)


def test_longitude_normalisation_and_distance():
    np.testing.assert_allclose(lunar.normalize_longitude([359.5, 180.0, -180.0, 0.0]), [-0.5, -180.0, -180.0, 0.0])
    np.testing.assert_allclose(lunar.normalize_longitude([-0.5, 190.0], "360"), [359.5, 190.0])
    quarter = lunar.great_circle_distance_m(0, 0, 90, 0)
    assert quarter == pytest.approx(math.pi * lunar.MOON_RADIUS_M / 2)
