"""The analytic Sun/Earth ephemeris against a JPL-kernel reference, and its physics.

Reference (offline, no network): JPL DE421 positions from the ``de421`` package read
by ``jplephem``, and the DE421 lunar ME orientation from the PA kernel
``moon_pa_de421_1900-2050.bpc`` + the ``moon_080317.tf`` PA->ME rotation shipped by
``lunarsky`` (``lunarsky.spice_utils.j2000_to_moon_me``). The reference tests skip when
those packages are missing; the physics tests need only numpy.
"""

from __future__ import annotations

import socket
import warnings

import numpy as np
import pytest

from prospect.illumination import ephemeris as eph
from prospect.lunar import MOON_RADIUS_M

J2000 = 2_451_545.0


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), np.sum(a * b, axis=-1)))


def _rotation_angle_deg(r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    d = np.einsum("nij,nkj->nik", r1, r2)
    return np.degrees(np.arccos(np.clip((np.trace(d, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)))


# --- kernel reference ------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference():
    """160 epochs 2020-2039 with the DE421 + ME-kernel Sun/Earth vectors, built with no network."""
    pytest.importorskip("lunarsky", reason="lunarsky (Moon PA kernel) not installed: pip install lunarsky")
    de421 = pytest.importorskip("de421", reason="de421 (JPL DE421 for jplephem) not installed: pip install de421")
    from astropy.time import Time
    from astropy.utils.data import conf as astropy_data_conf
    from jplephem.ephem import Ephemeris

    def no_network(*args, **kwargs):
        raise OSError("network access attempted while building the offline reference")

    times = np.datetime64("2020-01-01T00:00:00", "s") + (
        np.linspace(0.0, 19.9 * 365.25 * 86_400.0, 160).astype("int64") * np.timedelta64(1, "s")
    )
    with (
        pytest.MonkeyPatch.context() as mp,
        astropy_data_conf.set_temp("allow_internet", False),
        warnings.catch_warnings(),
    ):
        mp.setattr(socket.socket, "connect", no_network)
        # ERFA calls post-2027 UTC dates "dubious" (no leap-second table yet): TT-UTC stays 69.184 s
        warnings.simplefilter("ignore")
        from lunarsky.spice_utils import _PA_TO_ME, j2000_to_moon_me

        t = Time(times.astype(str).tolist(), scale="utc")
        jd_tdb = t.tdb.jd1 + t.tdb.jd2
        jd_tt = np.asarray(t.tt.jd1 + t.tt.jd2)
        de = Ephemeris(de421)
        moon = de.position("moon", jd_tdb).T  # geocentric, ICRF, km
        emb = de.position("earthmoon", jd_tdb).T
        sun = de.position("sun", jd_tdb).T
        emrat = float(de.EMRAT)
        rot_me = j2000_to_moon_me((jd_tdb - J2000) * 86_400.0)
    mu = 1.0 / (1.0 + emrat)
    sun_sel = sun - emb - moon * (1.0 - mu)
    return {
        "times": times,
        "jd_tt": jd_tt,
        "rot_me": rot_me,
        "rot_pa": np.einsum("ji,njk->nik", _PA_TO_ME, rot_me),
        "sun": np.einsum("nij,nj->ni", rot_me, sun_sel),
        "earth": np.einsum("nij,nj->ni", rot_me, -moon),
        "moon_geo_icrf": moon,
        "emrat": emrat,
    }


def test_time_conversion_matches_astropy(reference):
    jd = eph.julian_date_tt(reference["times"])
    assert np.max(np.abs(jd - reference["jd_tt"])) * 86_400.0 < 1e-3  # < 1 ms
    np.testing.assert_allclose(eph.julian_date_tt(reference["jd_tt"]), reference["jd_tt"])


def test_emrat_constant_is_de421(reference):
    assert reference["emrat"] == pytest.approx(eph.EARTH_MOON_MASS_RATIO, rel=1e-9)


def test_sun_and_earth_directions_match_de421_me(reference, record_property):
    se = eph.sun_earth_directions(reference["times"])
    sun_err = _angle_deg(se.sun, reference["sun"])
    earth_err = _angle_deg(se.earth, reference["earth"])
    stats = {
        "sun_max_deg": float(sun_err.max()),
        "sun_median_deg": float(np.median(sun_err)),
        "earth_max_deg": float(earth_err.max()),
        "earth_median_deg": float(np.median(earth_err)),
    }
    for k, v in stats.items():
        record_property(k, v)
    print("analytic vs DE421/ME:", {k: round(v, 5) for k, v in stats.items()})
    # Measured 0.0096 / 0.0047 deg max: well inside 5 % of the solar radius (0.27 deg).
    assert stats["sun_max_deg"] < 0.015
    assert stats["earth_max_deg"] < 0.008
    assert stats["sun_median_deg"] < 0.006
    assert stats["earth_median_deg"] < 0.003
    # distances: Meeus ch. 47 is good to ~10 km for the Moon; ch. 25 (no planetary
    # perturbations) to ~5e-5 relative for the Sun, i.e. 0.05" in the solar radius
    np.testing.assert_allclose(se.earth_distance_km, np.linalg.norm(reference["earth"], axis=1), atol=15.0)
    np.testing.assert_allclose(se.sun_distance_km, np.linalg.norm(reference["sun"], axis=1), rtol=1e-4)


def test_moon_theory_matches_de421(reference):
    moon = eph.moon_geocentric_icrf(reference["jd_tt"])
    assert _angle_deg(moon, reference["moon_geo_icrf"]).max() * 3600.0 < 20.0  # Meeus: ~10"
    assert np.abs(np.linalg.norm(moon, axis=1) - np.linalg.norm(reference["moon_geo_icrf"], axis=1)).max() < 15.0


def test_rotation_model_is_mean_earth_not_principal_axis(reference):
    rot = eph.icrf_to_moon_me(reference["jd_tt"])
    to_me = _rotation_angle_deg(rot, reference["rot_me"])
    to_pa = _rotation_angle_deg(rot, reference["rot_pa"])
    assert to_me.max() < 0.006  # measured 0.0047 deg (~140 m on the surface)
    assert to_pa.min() > 0.02  # the PA frame is 0.029 deg (~870 m) away


def test_subsolar_latitude_extremes_match_de421(reference):
    _, lat = eph.SunEarth(
        jd_tt=reference["jd_tt"],
        sun=reference["sun"],
        sun_distance_km=np.ones(160),
        earth=reference["earth"],
        earth_distance_km=np.ones(160),
    ).subsolar_lon_lat
    se = eph.sun_earth_directions(reference["times"])
    np.testing.assert_allclose(se.subsolar_lon_lat[1], lat, atol=0.01)


# --- physics over the 18.6-yr cycle (no reference needed) ------------------------------


@pytest.fixture(scope="module")
def cycle():
    times = eph.default_times(coarse=True)
    return times, eph.sun_earth_directions(times)


def test_default_times_cover_the_nodal_cycle():
    fine = eph.default_times()
    coarse = eph.default_times(coarse=True)
    assert fine[0] == np.datetime64("2020-01-01T00:00:00")
    assert np.all(np.diff(fine) == np.timedelta64(2 * 3600, "s"))
    assert len(fine) == 81_524
    assert len(coarse) == 4_407
    span_yr = (fine[-1] - fine[0]).astype("float64") / (365.25 * 86_400.0)
    assert 18.599 < span_yr <= 18.6
    assert len(eph.default_times("2030-06-01", years=1.0, step_hours=6)) == 1462  # endpoint included
    with pytest.raises(ValueError):
        eph.default_times(step_hours=0)


def test_subsolar_latitude_stays_within_the_lunar_obliquity(cycle):
    _, se = cycle
    _, lat = se.subsolar_lon_lat
    assert np.abs(lat).max() < 1.6
    assert lat.max() > 1.5 and lat.min() < -1.5


def test_synodic_period_of_subsolar_longitude(cycle):
    times, se = cycle
    lon, _ = se.subsolar_lon_lat
    days = (times - times[0]).astype("float64") / 86_400.0
    unwrapped = np.degrees(np.unwrap(np.radians(lon)))
    slope = np.polyfit(days, unwrapped, 1)[0]  # deg/day, negative: the Sun moves west
    assert slope < 0
    assert 360.0 / abs(slope) == pytest.approx(eph.SYNODIC_MONTH_DAYS, abs=0.01)


def test_angular_radii(cycle):
    _, se = cycle
    sun_r = se.sun_angular_radius_deg
    assert sun_r.min() > 0.26 and sun_r.max() < 0.275
    earth_r = se.earth_angular_radius_deg
    assert earth_r.min() > 0.89 and earth_r.max() < 1.03


def test_earth_librates_about_7_degrees_near_the_south_pole(cycle):
    _, se = cycle
    az, el = eph.earth_azimuth_elevation(0.0, -89.5, se.earth, se.earth_distance_km)
    assert np.abs(el).max() < 8.0
    assert el.max() > 6.0 and el.min() < -6.0
    # the Earth hangs over the nearside: azimuth near 0 (north = toward 0 E here)
    az180 = np.mod(az + 180.0, 360.0) - 180.0
    assert np.abs(az180).max() < 11.0
    # sub-Earth point (optical libration) stays within ~+-8 deg lon, +-7 deg lat
    lon, lat = se.subearth_lon_lat
    assert np.abs(lon).max() < 8.5 and np.abs(lat).max() < 7.0


def test_sun_elevation_bound_at_high_latitude(cycle):
    _, se = cycle
    _, el = eph.sun_azimuth_elevation(30.0, -85.0, se.sun, se.sun_distance_km)
    assert el.max() < 1.6 + 5.0
    assert el.max() > 1.4 + 5.0


def test_earth_parallax_is_applied(cycle):
    _, se = cycle
    _, el_topo = eph.earth_azimuth_elevation(0.0, -89.5, se.earth, se.earth_distance_km)
    _, el_geo = eph.topocentric_azimuth_elevation(0.0, -89.5, se.earth)
    shift = el_geo - el_topo  # observer 1737 km up: the Earth appears lower
    expected_max = np.degrees(np.arcsin(MOON_RADIUS_M / 1000.0 / se.earth_distance_km.min()))
    assert 0.2 < shift.max() <= expected_max + 1e-9
    assert shift.min() > 0
    with pytest.raises(ValueError):
        eph.earth_azimuth_elevation(0.0, -89.5, se.earth, None)


# --- azimuth / elevation geometry ----------------------------------------------------


@pytest.mark.parametrize(
    ("lon", "lat", "vec", "az", "el"),
    [
        (0.0, 0.0, (1.0, 0.0, 0.0), None, 90.0),  # zenith
        (0.0, 0.0, (0.0, 0.0, 1.0), 0.0, 0.0),  # north on the horizon
        (0.0, 0.0, (0.0, 1.0, 0.0), 90.0, 0.0),  # east
        (0.0, 0.0, (0.0, -1.0, 0.0), 270.0, 0.0),  # west
        (90.0, 0.0, (-1.0, 0.0, 0.0), 90.0, 0.0),  # at 90 E, east is -x
        (0.0, -90.0, (1.0, 0.0, 0.0), 0.0, 0.0),  # south pole: north = toward 0 E
        (0.0, -90.0, (0.0, 1.0, 0.0), 90.0, 0.0),  # south pole: east = toward 90 E
        (0.0, -90.0, (0.0, 0.0, -1.0), None, 90.0),  # south pole zenith
        (0.0, -89.0, (1.0, 0.0, 0.0), 0.0, 1.0),  # 1 deg from the pole: Sun at 0 E is 1 deg up
        (180.0, -89.0, (1.0, 0.0, 0.0), 180.0, -1.0),
    ],
)
def test_azimuth_elevation_geometry(lon, lat, vec, az, el):
    a, e = eph.sun_azimuth_elevation(lon, lat, np.array(vec))
    assert float(e) == pytest.approx(el, abs=1e-9)
    if az is not None:
        assert float(np.mod(a - az + 180.0, 360.0) - 180.0) == pytest.approx(0.0, abs=1e-9)


def test_azimuth_elevation_broadcasts_points_against_times(cycle):
    _, se = cycle
    lon = np.array([0.0, 45.0, 200.0])
    lat = np.array([-89.0, -88.0, -85.0])
    az, el = eph.sun_azimuth_elevation(lon[:, None], lat[:, None], se.sun[:10])
    assert az.shape == el.shape == (3, 10)
    a1, e1 = eph.sun_azimuth_elevation(lon[1], lat[1], se.sun[:10])
    np.testing.assert_allclose(az[1], a1)
    np.testing.assert_allclose(el[1], e1)
    assert np.all((az >= 0) & (az < 360))


def test_subsolar_point_sees_the_sun_overhead(cycle):
    _, se = cycle
    lon, lat = se.subsolar_lon_lat
    _, el = eph.sun_azimuth_elevation(lon[:50], lat[:50], se.sun[:50], se.sun_distance_km[:50])
    np.testing.assert_allclose(el, 90.0, atol=1e-6)


def test_scalar_and_string_times():
    one = eph.sun_earth_directions("2024-04-08T18:00:00")
    assert len(one) == 1 and one.sun.shape == (1, 3)
    jd = eph.julian_date_tt(np.datetime64("2000-01-01T12:00:00"))
    assert float(jd) == pytest.approx(J2000 + eph.TT_MINUS_UTC_S / 86_400.0, abs=1e-9)
    np.testing.assert_allclose(np.linalg.norm(one.sun, axis=1), 1.0)
    assert set(one.as_dict()) == {"jd_tt", "sun", "sun_distance_km", "earth", "earth_distance_km"}
    with pytest.raises(TypeError):
        eph.julian_date_tt(np.array([True]))


def test_azimuth_elevation_matches_lunarsky_topocentric_rotation():
    """Cross-check the local frame against lunarsky's MOON_ME -> topocentric matrix (rows N, E, U)."""
    pytest.importorskip("lunarsky", reason="lunarsky not installed: pip install lunarsky")
    from lunarsky.spice_utils import topo_rotation_matrix

    rng = np.random.default_rng(7)
    for _ in range(25):
        lon, lat = rng.uniform(-180.0, 180.0), rng.uniform(-90.0, 90.0)
        v = rng.normal(size=3)
        north, east, up = topo_rotation_matrix(lat, lon) @ v
        az, el = eph.sun_azimuth_elevation(lon, lat, v)
        assert float(el) == pytest.approx(np.degrees(np.arctan2(up, np.hypot(east, north))), abs=1e-9)
        ref_az = np.degrees(np.arctan2(east, north)) % 360.0
        assert float(np.mod(az - ref_az + 180.0, 360.0) - 180.0) == pytest.approx(0.0, abs=1e-9)


def test_the_observed_subsolar_latitude_bound_in_the_lunar_module():
    """lunar.OBSERVED_MAX_SUBSOLAR_LATITUDE_DEG is what the ephemeris reaches over 18.6 years (not the 1.54 mean tilt)."""
    from prospect import lunar
    from prospect.illumination.ephemeris import default_times, sun_earth_directions

    _, lat = sun_earth_directions(default_times(coarse=True)).subsolar_lon_lat
    reached = float(np.abs(lat).max())
    assert lunar.MAX_SUBSOLAR_LATITUDE_DEG < reached <= lunar.OBSERVED_MAX_SUBSOLAR_LATITUDE_DEG
    assert reached > lunar.OBSERVED_MAX_SUBSOLAR_LATITUDE_DEG - 0.005
