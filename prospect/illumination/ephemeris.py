"""Offline analytic Sun and Earth directions in the Moon's body-fixed (mean-Earth) frame.

No kernel, no network: three published analytic theories, all in plain numpy.

Model and sources
-----------------
1. **Sun** (geocentric, ecliptic of date): the low-precision solar theory of
   J. Meeus, *Astronomical Algorithms*, 2nd ed. (1998), ch. 25 ("Solar coordinates,
   low accuracy": mean longitude, mean anomaly, equation of the centre, radius
   vector; stated accuracy 0.01 deg). The theory describes the mean (Keplerian) orbit
   of the Earth-Moon barycentre, so it is used as the barycentre-to-Sun vector
   (see 3.).
2. **Moon** (geocentric, ecliptic of date): Meeus ch. 47, the truncated ELP-2000/82
   theory of Chapront-Touze & Chapront (tables 47.A and 47.B: 60 terms each in
   longitude/distance and latitude, plus the additive A1..A3 and eccentricity terms);
   about 10" in longitude, 4" in latitude and a few km in distance.
3. **Selenocentric vectors** (all geometric, i.e. no light time or aberration: the
   apparent Sun is displaced by up to 20.5" = 0.0057 deg of aberration, the Earth's
   light time is 1.3 s; both are well below the 0.27 deg solar radius)::

       Moon - EMB   = Moon_geo * EMRAT / (1 + EMRAT)
       Sun  - Moon  = (Sun - EMB) - (Moon - EMB)
       Earth - Moon = -Moon_geo

4. **Ecliptic of date to ICRF/J2000**: mean obliquity (Meeus eq. 22.2, IAU 1976) and
   the IAU 1976 precession angles zeta, z, theta (Lieske et al. 1977; Meeus eq. 21.2).
   Nutation (< 20") is omitted consistently for both bodies; the 23 mas ICRF frame bias
   is ignored.
5. **Moon orientation**: the IAU WGCCRE rotation model for the Moon (Archinal et al.
   2011, *Celest. Mech. Dyn. Astr.* 109:101, Table 2; unchanged in the 2015 report,
   Archinal et al. 2018, 130:22): pole ``alpha0, delta0`` and prime meridian ``W`` with
   the E1..E13 nutation/libration terms. ICRF -> body-fixed is
   ``R3(W) R1(90 - delta0) R3(90 + alpha0)``.

Frame: the IAU expressions approximate the **mean-Earth/polar-axis (ME)** frame, the
frame of LOLA maps and of the IAU_2015 lunar CRSs (Archinal et al. 2011, sect. 4). The
principal-axis (PA) frame of the JPL ephemerides differs from ME by a fixed rotation of
(67.92", 78.56", 0.30") for DE421 (NAIF ``moon_080317.tf``), i.e. 0.029 deg or ~870 m
on the surface, so using PA instead of ME would matter at map resolution. Against the
DE421 ME frame (JPL PA kernel ``moon_pa_de421_1900-2050.bpc`` + ``moon_080317.tf``, as
shipped by the ``lunarsky`` package) the IAU model's rotation differs by at most
0.0047 deg (~140 m on the surface; mean 0.0023 deg) over 2020-2039
(``tests/test_ephemeris.py``).

Accuracy (``tests/test_ephemeris.py``, 160 epochs 2020-2039, against JPL DE421 positions
and the DE421 ME orientation): Sun direction max 0.0096 deg (median 0.0034 deg), Earth
direction max 0.0047 deg (median 0.0016 deg); see :data:`VALIDATED_MAX_ERROR_DEG`. The
Sun's error is dominated by the Meeus ch. 25 theory (28"), the Earth's by the IAU
rotation model (17"); the Meeus ch. 47 Moon is within 14" and 8.3 km of DE421. Both are
small against the 0.27 deg solar radius and the ~1 deg Earth radius.

Note on the sub-solar latitude: 1.54 deg is the mean inclination of the lunar equator
to the ecliptic; with the physical libration and the Moon's offset from the Earth the
sub-solar latitude actually reaches +-1.588 deg (DE421, 2020-2038; this model 1.587).

Times
-----
Inputs are either ``numpy.datetime64`` (or ISO strings), read as **UTC** and converted
with a fixed ``TT - UTC = 69.184 s`` (32.184 s + 37 leap seconds, valid since
2017-01-01; each leap second before 2017 or after today shifts the Sun by < 0.0002 deg
along its daily path), or floats, read as
**Julian dates in TT**. TT and TDB differ by < 2 ms, which is ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from prospect.errors import ConfigError
from prospect.lunar import EARTH_MOON_MASS_RATIO, MOON_RADIUS_M, SYNODIC_MONTH_DAYS

__all__ = [
    "AU_KM",
    "COARSE_STEP_HOURS",
    "DEFAULT_STEP_HOURS",
    "EARTH_MOON_MASS_RATIO",
    "EARTH_RADIUS_KM",
    "J2000_JD",
    "MAX_TIME_SAMPLES",
    "MIN_STEP_HOURS",
    "SUN_RADIUS_KM",
    "SYNODIC_MONTH_DAYS",
    "TT_MINUS_UTC_S",
    "VALIDATED_MAX_ERROR_DEG",
    "SunEarth",
    "TimeSpanError",
    "check_time_span",
    "default_times",
    "earth_azimuth_elevation",
    "icrf_to_moon_me",
    "julian_date_tt",
    "moon_geocentric_icrf",
    "sun_azimuth_elevation",
    "sun_earth_directions",
    "sun_geocentric_icrf",
    "topocentric_azimuth_elevation",
]

# --- constants (candidates for prospect.lunar) -------------------------------------

#: Astronomical unit [km] (IAU 2012 Resolution B2).
AU_KM: float = 149_597_870.7
#: Nominal solar radius [km] (IAU 2015 Resolution B3).
SUN_RADIUS_KM: float = 695_700.0
#: Nominal equatorial radius of the Earth [km] (IAU 2015 Resolution B3).
EARTH_RADIUS_KM: float = 6_378.1
#: TT - UTC [s] since 2017-01-01 (TT - TAI = 32.184 s, TAI - UTC = 37 s; IERS Bulletin C).
TT_MINUS_UTC_S: float = 69.184
#: Julian date of J2000.0 (2000-01-01 12:00 TT).
J2000_JD: float = 2_451_545.0

#: Default sampling step [h] of :func:`default_times` (see its docstring).
DEFAULT_STEP_HOURS: float = 2.0
#: Start of the default span (UTC date): :func:`default_times`' ``start`` default, which stays a
#: literal in its signature because ``prospect.cli`` reads the defaults from the source.
DEFAULT_START = "2020-01-01"
#: Coarse sampling step [h] for tests and quick looks: resolves the declination swing,
#: not the daily motion; 37 h is incommensurate with the synodic month, so the sampled
#: sub-solar longitudes still sweep all azimuths over the cycle.
COARSE_STEP_HOURS: float = 37.0
#: The shortest time step [h] a span accepts (one minute).
MIN_STEP_HOURS: float = 1.0 / 60.0
#: The most time samples a span may hold (18.6 yr at 10 min; the ephemeris keeps about
#: 15 float64 values per sample, so 120 MB at the limit).
MAX_TIME_SAMPLES: int = 1_000_000

#: Largest angular errors [deg] found against DE421 (positions) + DE421 ME (orientation)
#: at 160 epochs 2020-2039 (tests/test_ephemeris.py asserts slightly looser bounds).
VALIDATED_MAX_ERROR_DEG: dict[str, float] = {"sun": 0.0096, "earth": 0.0047}

_DEG = np.pi / 180.0
_ARCSEC = _DEG / 3600.0
_CHUNK = 16_384  # epochs per vectorised block (bounds the (N, 60) term arrays)

# --- time ----------------------------------------------------------------------------


def julian_date_tt(times: Any) -> np.ndarray:
    """Julian dates (TT) of ``times``.

    ``numpy.datetime64`` values or ISO strings are UTC (``TT = UTC + 69.184 s``); plain
    numbers are already Julian dates in TT and pass through.
    """
    arr = np.asarray(times)
    if arr.dtype.kind in ("U", "S", "O"):
        arr = arr.astype("datetime64[ns]")
    if arr.dtype.kind == "M":
        ns = (arr.astype("datetime64[ns]") - np.datetime64("2000-01-01T12:00:00", "ns")).astype("int64")
        return J2000_JD + (ns.astype("float64") / 1e9 + TT_MINUS_UTC_S) / 86_400.0
    if arr.dtype.kind in ("f", "i", "u"):
        return arr.astype("float64")
    raise TypeError(f"times must be datetime64, ISO strings or Julian dates (TT), not {arr.dtype}")


class TimeSpanError(ConfigError, ValueError):
    """A time span :func:`check_time_span` refuses: a :class:`~prospect.errors.ConfigError` (one line at
    the CLI) that is also the ``ValueError`` :func:`default_times` has always raised."""


def check_time_span(
    start: Any = "2020-01-01", years: Any = 18.6, step_hours: Any = DEFAULT_STEP_HOURS
) -> tuple[np.datetime64, float, float]:
    """The span's ``(start, years, step_hours)`` as ``(datetime64[s], float, float)``, or a
    :class:`TimeSpanError` naming the bad value.

    The rules: ``start`` a UTC date or time (ISO 8601, e.g. ``2020-01-01``); ``years`` and
    ``step_hours`` finite and positive, ``step_hours`` at least :data:`MIN_STEP_HOURS`; the
    span holds at least 2 and at most :data:`MAX_TIME_SAMPLES` samples.
    """
    try:
        t0 = np.datetime64(start, "s")
    except (TypeError, ValueError, OverflowError):
        raise TimeSpanError(f"start must be a UTC date such as 2020-01-01, not {start!r}") from None
    if np.isnat(t0):
        raise TimeSpanError(f"start must be a UTC date such as 2020-01-01, not {start!r}")
    numbers = {}
    for name, value in (("years", years), ("step_hours", step_hours)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(value, bool) or not (math.isfinite(number) and number > 0):
            raise TimeSpanError(f"{name} must be a positive finite number, not {value!r}")
        numbers[name] = number
    years_f, step_f = numbers["years"], numbers["step_hours"]
    if step_f < MIN_STEP_HOURS:
        raise TimeSpanError(f"step_hours must be at least {MIN_STEP_HOURS:.4g} h (one minute), not {step_hours!r}")
    n = math.floor(years_f * 365.25 * 24.0 / step_f) + 1
    if n < 2:
        raise TimeSpanError(f"a span of {years_f:g} years holds less than one step of {step_f:g} h")
    if n > MAX_TIME_SAMPLES:
        raise TimeSpanError(
            f"a span of {years_f:g} years at {step_f:g} h steps holds {n:,} samples, more than "
            f"{MAX_TIME_SAMPLES:,}: use a longer step_hours or fewer years"
        )
    return t0, years_f, step_f


def default_times(
    start: str | np.datetime64 = "2020-01-01",
    years: float = 18.6,
    step_hours: float | None = None,
    *,
    coarse: bool = False,
) -> np.ndarray:
    """UTC sample times (``datetime64[s]``) covering ``years`` Julian years from ``start``.

    The default covers one 18.6-yr nodal (precession) cycle, over which the sub-solar
    latitude swings between its +-1.54 deg extremes (period: one eclipse year, 346.6 d)
    with every phase relation to the synodic month. The default step is
    :data:`DEFAULT_STEP_HOURS` = 2 h (81,524 samples for 18.6 yr, ~1 s to compute): the Sun moves 1.0 deg
    in azimuth per step as seen from the poles (360 deg per 29.53 d), its elevation
    < 0.003 deg, and the Earth < 0.3 deg; the declination swing is sampled ~4,000 times
    per half cycle. Because 2 h does not divide the synodic month, successive lunations
    sample the solar azimuths at drifting phases, so over the cycle the azimuth coverage
    is much finer than 1 deg. ``coarse=True`` uses :data:`COARSE_STEP_HOURS` = 37 h
    (4,407 samples) for tests: it resolves the declination swing but not the daily motion.
    """
    if step_hours is None:
        step_hours = COARSE_STEP_HOURS if coarse else DEFAULT_STEP_HOURS
    t0, years, step_hours = check_time_span(start, years, step_hours)  # a TimeSpanError (ValueError) if bad
    step_s = int(round(step_hours * 3600.0))
    n = int(np.floor(years * 365.25 * 86_400.0 / step_s)) + 1
    return t0 + np.arange(n, dtype="int64") * np.timedelta64(step_s, "s")


# --- rotations ------------------------------------------------------------------------


def _rot(axis: int, angle: np.ndarray) -> np.ndarray:
    """Frame rotations R1/R2/R3 (``axis`` 0/1/2) by ``angle`` [rad], shape (..., 3, 3)."""
    c, s = np.cos(angle), np.sin(angle)
    one, zero = np.ones_like(c), np.zeros_like(c)
    if axis == 0:
        rows = [[one, zero, zero], [zero, c, s], [zero, -s, c]]
    elif axis == 1:
        rows = [[c, zero, -s], [zero, one, zero], [s, zero, c]]
    else:
        rows = [[c, s, zero], [-s, c, zero], [zero, zero, one]]
    return np.moveaxis(np.array(rows), (0, 1), (-2, -1))


def _ecliptic_of_date_to_icrf(lon: np.ndarray, lat: np.ndarray, dist: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Ecliptic (mean equinox of date) spherical -> J2000 equatorial Cartesian, (N, 3)."""
    vec = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1) * dist[:, None]
    # mean obliquity of date, IAU 1976 (Meeus eq. 22.2)
    eps = (84_381.448 - 46.8150 * t - 0.00059 * t**2 + 0.001813 * t**3) * _ARCSEC
    # IAU 1976 precession J2000 -> date (Lieske et al. 1977; Meeus eq. 21.2 with T = 0)
    zeta = (2306.2181 * t + 0.30188 * t**2 + 0.017998 * t**3) * _ARCSEC
    z = (2306.2181 * t + 1.09468 * t**2 + 0.018203 * t**3) * _ARCSEC
    theta = (2004.3109 * t - 0.42665 * t**2 - 0.041833 * t**3) * _ARCSEC
    precess = _rot(2, -z) @ _rot(1, theta) @ _rot(2, -zeta)  # J2000 -> mean equator of date
    to_equator = _rot(0, -eps)  # ecliptic of date -> mean equator of date
    m = np.swapaxes(precess, -1, -2) @ to_equator
    return np.einsum("nij,nj->ni", m, vec)


def icrf_to_moon_me(jd_tt: Any) -> np.ndarray:
    """Rotation matrices ICRF/J2000 -> Moon body-fixed (IAU model, ~ME), shape (N, 3, 3).

    IAU WGCCRE Moon model (Archinal et al. 2011, Table 2; 2018 report unchanged),
    ``d`` days and ``T`` centuries from J2000 TDB::

        alpha0 = 269.9949 + 0.0031 T - 3.8787 sin E1 - 0.1204 sin E2 + ...
        delta0 =  66.5392 + 0.0130 T + 1.5419 cos E1 + 0.0239 cos E2 - ...
        W      =  38.3213 + 13.17635815 d - 1.4e-12 d^2 + 3.5610 sin E1 + ...
    """
    jd = np.atleast_1d(np.asarray(jd_tt, dtype="float64"))
    d = jd - J2000_JD
    t = d / 36_525.0
    e = np.radians(
        np.array(
            [
                125.045 - 0.0529921 * d,
                250.089 - 0.1059842 * d,
                260.008 + 13.0120009 * d,
                176.625 + 13.3407154 * d,
                357.529 + 0.9856003 * d,
                311.589 + 26.4057084 * d,
                134.963 + 13.0649930 * d,
                276.617 + 0.3287146 * d,
                34.226 + 1.7484877 * d,
                15.134 - 0.1589763 * d,
                119.743 + 0.0036096 * d,
                239.961 + 0.1643573 * d,
                25.053 + 12.9590088 * d,
            ]
        )
    )
    s, c = np.sin(e), np.cos(e)
    # coefficients of sin/cos E1..E13 [deg]
    ra_k = np.array([-3.8787, -0.1204, 0.0700, -0.0172, 0.0, 0.0072, 0.0, 0.0, 0.0, -0.0052, 0.0, 0.0, 0.0043])
    dec_k = np.array([1.5419, 0.0239, -0.0278, 0.0068, 0.0, -0.0029, 0.0009, 0.0, 0.0, 0.0008, 0.0, 0.0, -0.0009])
    w_k = np.array(
        [3.5610, 0.1208, -0.0642, 0.0158, 0.0252, -0.0066, -0.0047, -0.0046, 0.0028, 0.0052, 0.0040, 0.0019, -0.0044]
    )
    alpha0 = 269.9949 + 0.0031 * t + ra_k @ s
    delta0 = 66.5392 + 0.0130 * t + dec_k @ c
    w = 38.3213 + np.mod(13.17635815 * d, 360.0) - 1.4e-12 * d**2 + w_k @ s
    return _rot(2, np.radians(w)) @ _rot(0, np.radians(90.0 - delta0)) @ _rot(2, np.radians(90.0 + alpha0))


# --- Sun (Meeus ch. 25) ------------------------------------------------------------


def _sun_ecliptic(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Geometric longitude [rad, mean equinox of date] and radius [km] of the Sun (Meeus ch. 25)."""
    l0 = 280.46646 + 36_000.76983 * t + 0.0003032 * t**2
    m = np.radians(357.52911 + 35_999.05029 * t - 0.0001537 * t**2)
    ecc = 0.016708634 - 0.000042037 * t - 0.0000001267 * t**2
    centre = (
        (1.914602 - 0.004817 * t - 0.000014 * t**2) * np.sin(m)
        + (0.019993 - 0.000101 * t) * np.sin(2 * m)
        + 0.000289 * np.sin(3 * m)
    )
    lon = np.radians(l0 + centre)
    nu = m + np.radians(centre)
    r_au = 1.000001018 * (1.0 - ecc**2) / (1.0 + ecc * np.cos(nu))
    return lon, r_au * AU_KM


def sun_geocentric_icrf(jd_tt: Any) -> np.ndarray:
    """Sun relative to the Earth-Moon barycentre, ICRF/J2000 axes [km], shape (N, 3).

    Meeus ch. 25 low-accuracy theory (0.01 deg); its mean orbit is that of the
    Earth-Moon barycentre, which is how :func:`sun_earth_directions` uses it.
    """
    jd = np.atleast_1d(np.asarray(jd_tt, dtype="float64"))
    t = (jd - J2000_JD) / 36_525.0
    lon, r = _sun_ecliptic(t)
    return _ecliptic_of_date_to_icrf(lon, np.zeros_like(lon), r, t)


# --- Moon (Meeus ch. 47, truncated ELP-2000/82) ---------------------------------------

# Table 47.A: multiples of D, M, M', F; sum_l [1e-6 deg] (sine); sum_r [1e-3 km] (cosine)
_MOON_LR = np.array(
    [
        (0, 0, 1, 0, 6288774, -20905355),
        (2, 0, -1, 0, 1274027, -3699111),
        (2, 0, 0, 0, 658314, -2955968),
        (0, 0, 2, 0, 213618, -569925),
        (0, 1, 0, 0, -185116, 48888),
        (0, 0, 0, 2, -114332, -3149),
        (2, 0, -2, 0, 58793, 246158),
        (2, -1, -1, 0, 57066, -152138),
        (2, 0, 1, 0, 53322, -170733),
        (2, -1, 0, 0, 45758, -204586),
        (0, 1, -1, 0, -40923, -129620),
        (1, 0, 0, 0, -34720, 108743),
        (0, 1, 1, 0, -30383, 104755),
        (2, 0, 0, -2, 15327, 10321),
        (0, 0, 1, 2, -12528, 0),
        (0, 0, 1, -2, 10980, 79661),
        (4, 0, -1, 0, 10675, -34782),
        (0, 0, 3, 0, 10034, -23210),
        (4, 0, -2, 0, 8548, -21636),
        (2, 1, -1, 0, -7888, 24208),
        (2, 1, 0, 0, -6766, 30824),
        (1, 0, -1, 0, -5163, -8379),
        (1, 1, 0, 0, 4987, -16675),
        (2, -1, 1, 0, 4036, -12831),
        (2, 0, 2, 0, 3994, -10445),
        (4, 0, 0, 0, 3861, -11650),
        (2, 0, -3, 0, 3665, 14403),
        (0, 1, -2, 0, -2689, -7003),
        (2, 0, -1, 2, -2602, 0),
        (2, -1, -2, 0, 2390, 10056),
        (1, 0, 1, 0, -2348, 6322),
        (2, -2, 0, 0, 2236, -9884),
        (0, 1, 2, 0, -2120, 5751),
        (0, 2, 0, 0, -2069, 0),
        (2, -2, -1, 0, 2048, -4950),
        (2, 0, 1, -2, -1773, 4130),
        (2, 0, 0, 2, -1595, 0),
        (4, -1, -1, 0, 1215, -3958),
        (0, 0, 2, 2, -1110, 0),
        (3, 0, -1, 0, -892, 3258),
        (2, 1, 1, 0, -810, 2616),
        (4, -1, -2, 0, 759, -1897),
        (0, 2, -1, 0, -713, -2117),
        (2, 2, -1, 0, -700, 2354),
        (2, 1, -2, 0, 691, 0),
        (2, -1, 0, -2, 596, 0),
        (4, 0, 1, 0, 549, -1423),
        (0, 0, 4, 0, 537, -1117),
        (4, -1, 0, 0, 520, -1571),
        (1, 0, -2, 0, -487, -1739),
        (2, 1, 0, -2, -399, 0),
        (0, 0, 2, -2, -381, -4421),
        (1, 1, 1, 0, 351, 0),
        (3, 0, -2, 0, -340, 0),
        (4, 0, -3, 0, 330, 0),
        (2, -1, 2, 0, 327, 0),
        (0, 2, 1, 0, -323, 1165),
        (1, 1, -1, 0, 299, 0),
        (2, 0, 3, 0, 294, 0),
        (2, 0, -1, -2, 0, 8752),
    ],
    dtype="float64",
)

# Table 47.B: multiples of D, M, M', F; sum_b [1e-6 deg] (sine)
_MOON_B = np.array(
    [
        (0, 0, 0, 1, 5128122),
        (0, 0, 1, 1, 280602),
        (0, 0, 1, -1, 277693),
        (2, 0, 0, -1, 173237),
        (2, 0, -1, 1, 55413),
        (2, 0, -1, -1, 46271),
        (2, 0, 0, 1, 32573),
        (0, 0, 2, 1, 17198),
        (2, 0, 1, -1, 9266),
        (0, 0, 2, -1, 8822),
        (2, -1, 0, -1, 8216),
        (2, 0, -2, -1, 4324),
        (2, 0, 1, 1, 4200),
        (2, 1, 0, -1, -3359),
        (2, -1, -1, 1, 2463),
        (2, -1, 0, 1, 2211),
        (2, -1, -1, -1, 2065),
        (0, 1, -1, -1, -1870),
        (4, 0, -1, -1, 1828),
        (0, 1, 0, 1, -1794),
        (0, 0, 0, 3, -1749),
        (0, 1, -1, 1, -1565),
        (1, 0, 0, 1, -1491),
        (0, 1, 1, 1, -1475),
        (0, 1, 1, -1, -1410),
        (0, 1, 0, -1, -1344),
        (1, 0, 0, -1, -1335),
        (0, 0, 3, 1, 1107),
        (4, 0, 0, -1, 1021),
        (4, 0, -1, 1, 833),
        (0, 0, 1, -3, 777),
        (4, 0, -2, 1, 671),
        (2, 0, 0, -3, 607),
        (2, 0, 2, -1, 596),
        (2, -1, 1, -1, 491),
        (2, 0, -2, 1, -451),
        (0, 0, 3, -1, 439),
        (2, 0, 2, 1, 422),
        (2, 0, -3, -1, 421),
        (2, 1, -1, 1, -366),
        (2, 1, 0, 1, -351),
        (4, 0, 0, 1, 331),
        (2, -1, 1, 1, 315),
        (2, -2, 0, -1, 302),
        (0, 0, 1, 3, -283),
        (2, 1, 1, -1, -229),
        (1, 1, 0, -1, 223),
        (1, 1, 0, 1, 223),
        (0, 1, -2, -1, -220),
        (2, 1, -1, -1, -220),
        (1, 0, 1, 1, -185),
        (2, -1, -2, -1, 181),
        (0, 1, 2, 1, -177),
        (4, 0, -2, -1, 176),
        (4, -1, -1, -1, 166),
        (1, 0, 1, -1, -164),
        (4, 0, 1, -1, 132),
        (1, 0, -1, -1, -119),
        (4, -1, 0, -1, 115),
        (2, -2, 0, 1, 107),
    ],
    dtype="float64",
)


def _moon_ecliptic(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Geocentric lon, lat [rad, mean ecliptic/equinox of date] and distance [km] (Meeus ch. 47)."""
    lp = 218.3164477 + 481_267.88123421 * t - 0.0015786 * t**2 + t**3 / 538_841.0 - t**4 / 65_194_000.0
    d = 297.8501921 + 445_267.1114034 * t - 0.0018819 * t**2 + t**3 / 545_868.0 - t**4 / 113_065_000.0
    m = 357.5291092 + 35_999.0502909 * t - 0.0001536 * t**2 + t**3 / 24_490_000.0
    mp = 134.9633964 + 477_198.8675055 * t + 0.0087414 * t**2 + t**3 / 69_699.0 - t**4 / 14_712_000.0
    f = 93.2720950 + 483_202.0175233 * t - 0.0036539 * t**2 - t**3 / 3_526_000.0 + t**4 / 863_310_000.0
    a1 = np.radians(119.75 + 131.849 * t)
    a2 = np.radians(53.09 + 479_264.290 * t)
    a3 = np.radians(313.45 + 481_266.484 * t)
    ecc = 1.0 - 0.002516 * t - 0.0000074 * t**2
    args = np.radians(np.stack([np.mod(d, 360.0), np.mod(m, 360.0), np.mod(mp, 360.0), np.mod(f, 360.0)], axis=-1))
    lp_r, mp_r, f_r = np.radians(lp), np.radians(mp), np.radians(f)

    def ecc_factor(m_mult: np.ndarray) -> np.ndarray:
        return ecc[:, None] ** np.abs(m_mult)[None, :]

    phase = args @ _MOON_LR[:, :4].T  # (N, 60)
    fac = ecc_factor(_MOON_LR[:, 1])
    sum_l = (fac * np.sin(phase)) @ _MOON_LR[:, 4]
    sum_r = (fac * np.cos(phase)) @ _MOON_LR[:, 5]
    phase_b = args @ _MOON_B[:, :4].T
    sum_b = (ecc_factor(_MOON_B[:, 1]) * np.sin(phase_b)) @ _MOON_B[:, 4]
    sum_l = sum_l + 3958.0 * np.sin(a1) + 1962.0 * np.sin(lp_r - f_r) + 318.0 * np.sin(a2)
    sum_b = (
        sum_b
        - 2235.0 * np.sin(lp_r)
        + 382.0 * np.sin(a3)
        + 175.0 * np.sin(a1 - f_r)
        + 175.0 * np.sin(a1 + f_r)
        + 127.0 * np.sin(lp_r - mp_r)
        - 115.0 * np.sin(lp_r + mp_r)
    )
    lon = np.radians(lp + sum_l / 1e6)
    lat = np.radians(sum_b / 1e6)
    dist = 385_000.56 + sum_r / 1000.0
    return lon, lat, dist


def moon_geocentric_icrf(jd_tt: Any) -> np.ndarray:
    """Geocentric Moon, ICRF/J2000 axes [km], shape (N, 3) (Meeus ch. 47 + IAU 1976 precession)."""
    jd = np.atleast_1d(np.asarray(jd_tt, dtype="float64"))
    out = np.empty((jd.size, 3))
    for i in range(0, jd.size, _CHUNK):
        t = (jd[i : i + _CHUNK] - J2000_JD) / 36_525.0
        lon, lat, dist = _moon_ecliptic(t)
        out[i : i + _CHUNK] = _ecliptic_of_date_to_icrf(lon, lat, dist, t)
    return out


# --- public API ------------------------------------------------------------------------


@dataclass(frozen=True)
class SunEarth:
    """Sun and Earth as seen from the Moon's centre, in the Moon body-fixed (ME) frame.

    Cartesian axes: x toward 0 E on the equator, y toward 90 E, z toward the north pole.
    ``sun`` / ``earth`` are unit vectors, shape (N, 3); distances are from the Moon's
    centre in km, shape (N,). ``jd_tt`` are the epochs as Julian dates (TT).
    """

    jd_tt: np.ndarray
    sun: np.ndarray
    sun_distance_km: np.ndarray
    earth: np.ndarray
    earth_distance_km: np.ndarray

    def __len__(self) -> int:
        return int(self.jd_tt.size)

    @property
    def sun_angular_radius_deg(self) -> np.ndarray:
        """Apparent solar radius ``arcsin(R_sun / d)`` [deg] (0.262-0.271 deg)."""
        return np.degrees(np.arcsin(SUN_RADIUS_KM / self.sun_distance_km))

    @property
    def earth_angular_radius_deg(self) -> np.ndarray:
        """Angular radius of the Earth (equatorial) ``arcsin(R_earth / d)`` [deg] (~0.9-1.0 deg)."""
        return np.degrees(np.arcsin(EARTH_RADIUS_KM / self.earth_distance_km))

    @property
    def subsolar_lon_lat(self) -> tuple[np.ndarray, np.ndarray]:
        """Planetocentric sub-solar longitude [-180, 180) E and latitude [deg]."""
        return _lon_lat(self.sun)

    @property
    def subearth_lon_lat(self) -> tuple[np.ndarray, np.ndarray]:
        """Planetocentric sub-Earth longitude [-180, 180) E and latitude [deg] (the libration)."""
        return _lon_lat(self.earth)

    def as_dict(self) -> dict[str, np.ndarray]:
        return {
            "jd_tt": self.jd_tt,
            "sun": self.sun,
            "sun_distance_km": self.sun_distance_km,
            "earth": self.earth,
            "earth_distance_km": self.earth_distance_km,
        }


def _lon_lat(unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lon = np.degrees(np.arctan2(unit[..., 1], unit[..., 0]))
    lat = np.degrees(np.arctan2(unit[..., 2], np.hypot(unit[..., 0], unit[..., 1])))
    return np.mod(lon + 180.0, 360.0) - 180.0, lat


def sun_earth_directions(times: Any) -> SunEarth:
    """Sun and Earth directions and distances from the Moon's centre in the body-fixed frame.

    ``times``: ``datetime64`` / ISO strings (UTC) or Julian dates (TT), any 1-d array
    (scalars are promoted to length 1). See the module docstring for the model (Meeus
    chs. 25 and 47, IAU 1976 precession, IAU WGCCRE Moon rotation ~ ME frame) and its
    validated accuracy (< 0.01 deg for both bodies against DE421).
    Valid roughly 1900-2100 (the theories' polynomial terms); tested 2020-2039.
    """
    jd = np.atleast_1d(julian_date_tt(times)).ravel()
    moon_geo = moon_geocentric_icrf(jd)  # Earth -> Moon
    sun_emb = sun_geocentric_icrf(jd)  # EMB -> Sun (mean orbit)
    moon_from_emb = moon_geo * (EARTH_MOON_MASS_RATIO / (1.0 + EARTH_MOON_MASS_RATIO))
    sun_sel = sun_emb - moon_from_emb
    earth_sel = -moon_geo
    rot = icrf_to_moon_me(jd)
    sun_bf = np.einsum("nij,nj->ni", rot, sun_sel)
    earth_bf = np.einsum("nij,nj->ni", rot, earth_sel)
    sun_d = np.linalg.norm(sun_bf, axis=-1)
    earth_d = np.linalg.norm(earth_bf, axis=-1)
    return SunEarth(
        jd_tt=jd,
        sun=sun_bf / sun_d[:, None],
        sun_distance_km=sun_d,
        earth=earth_bf / earth_d[:, None],
        earth_distance_km=earth_d,
    )


def topocentric_azimuth_elevation(
    lon_deg: Any,
    lat_deg: Any,
    direction: Any,
    distance_km: Any = None,
    *,
    radius_m: float = MOON_RADIUS_M,
) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth (deg clockwise from local north, [0, 360)) and elevation (deg) of a body.

    The observer stands on the lunar sphere of ``radius_m`` at planetocentric
    ``lon_deg`` E / ``lat_deg``. ``direction`` (..., 3) is the body's unit (or any)
    vector from the Moon's centre in the body-fixed frame; ``distance_km`` its distance
    from the centre (None: infinitely far, no parallax). Parallax is applied exactly:
    the topocentric vector is ``distance * u - R * n_obs`` (the Earth shifts by up to
    0.26 deg; the Sun by 2.4").

    Shapes broadcast like numpy: ``lon/lat`` with ``direction[..., 0]`` (and with
    ``distance_km``). For P points times N epochs pass ``lon[:, None], lat[:, None]`` and
    ``direction`` of shape (N, 3) to get (P, N) arrays. At the exact poles azimuth is
    measured from the 0 E meridian's north (at the south pole, north = toward 0 E; at
    the north pole, north = toward 180 E), i.e. the limit of the formulas.
    """
    lon = np.radians(np.asarray(lon_deg, dtype="float64"))
    lat = np.radians(np.asarray(lat_deg, dtype="float64"))
    v = np.asarray(direction, dtype="float64")
    vx, vy, vz = v[..., 0], v[..., 1], v[..., 2]
    if distance_km is not None:
        norm = np.sqrt(vx * vx + vy * vy + vz * vz)
        scale = np.asarray(distance_km, dtype="float64") / norm
        vx, vy, vz = vx * scale, vy * scale, vz * scale
        r_km = radius_m / 1000.0
        vx = vx - r_km * np.cos(lat) * np.cos(lon)
        vy = vy - r_km * np.cos(lat) * np.sin(lon)
        vz = vz - r_km * np.sin(lat)
    sl, cl, sp, cp = np.sin(lon), np.cos(lon), np.sin(lat), np.cos(lat)
    east = -sl * vx + cl * vy
    north = -sp * cl * vx - sp * sl * vy + cp * vz
    up = cp * cl * vx + cp * sl * vy + sp * vz
    az = np.mod(np.degrees(np.arctan2(east, north)), 360.0)
    el = np.degrees(np.arctan2(up, np.hypot(east, north)))
    return az, el


def sun_azimuth_elevation(
    lon_deg: Any, lat_deg: Any, sun_vec: Any, distance_km: Any = None, *, radius_m: float = MOON_RADIUS_M
) -> tuple[np.ndarray, np.ndarray]:
    """Topocentric azimuth/elevation [deg] of the Sun's centre (see :func:`topocentric_azimuth_elevation`).

    The solar parallax from the lunar surface is < 2.4" and is applied only when
    ``distance_km`` (e.g. ``SunEarth.sun_distance_km``) is given.
    """
    return topocentric_azimuth_elevation(lon_deg, lat_deg, sun_vec, distance_km, radius_m=radius_m)


def earth_azimuth_elevation(
    lon_deg: Any, lat_deg: Any, earth_vec: Any, distance_km: Any, *, radius_m: float = MOON_RADIUS_M
) -> tuple[np.ndarray, np.ndarray]:
    """Topocentric azimuth/elevation [deg] of the Earth's centre, with the parallax of the
    observer on the lunar sphere (up to 0.26 deg); ``distance_km`` is required
    (``SunEarth.earth_distance_km``)."""
    if distance_km is None:
        raise ValueError("the Earth's parallax needs its distance: pass SunEarth.earth_distance_km")
    return topocentric_azimuth_elevation(lon_deg, lat_deg, earth_vec, distance_km, radius_m=radius_m)
