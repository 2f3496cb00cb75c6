"""Lunar geodesy and coordinate reference systems: the only module that knows the Moon.

Everything else in prospect asks this module for the body radius, metres per degree,
the polar stereographic scale factor and the IAU_2015 CRS codes; no other module may
hard-code 1737400 or a CRS string.

Facts and sources (``docs/science.md`` section 1):

- The Moon is a sphere of radius 1,737,400 m for all LOLA, Diviner and Chang'e map
  products (LOLA GDR labels ``A_AXIS_RADIUS = 1737.4 <km>``; Smith et al. 2010).
  Legacy Clementine/ULCN grids use 1,738,000 m: recognised as lunar, with a warning.
- PROJ's IAU_2015 codes (IAU WGCCRE 2015 report, Archinal et al. 2018, as shipped in
  proj.db): 30100 geographic (planetocentric degrees), 30110 / 30115 equirectangular
  centred on 0 / 180 E, 30130 north and 30135 south polar stereographic
  (``+proj=stere +lat_0=-90 +lon_0=0 +k=1 +R=1737400``).
- Metres per degree of latitude: ``2 pi R / 360`` = 30,323.35 m.
- Polar stereographic scale factor ``k = 2 / (1 + sin|lat|)`` (Snyder 1987, eq. 21-4
  with k0 = 1); LOLA polar grids (DSMAP_POLAR.CAT) place the pole at the grid centre
  with latitude ``-90 + (360/pi) atan(rho / 2R)`` at map radius ``rho``.

CRS comparison is done on PROJ parameters, never with ``CRS.equals``: rasterio and
pyproj bundle different PROJ builds whose IAU_2015 definitions differ in axis naming
(``docs/platform.md``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from prospect.errors import CRSError, EarthCRSError

#: Reference radius of the Moon for LOLA, Diviner and Chang'e map products [m].
MOON_RADIUS_M: float = 1_737_400.0
#: Legacy Clementine / ULCN 2005 reference radius [m]: a datum trap (1738 km).
LEGACY_MOON_RADIUS_M: float = 1_738_000.0
#: Ground length of one degree of latitude (and of longitude at the equator) [m].
METRES_PER_DEGREE: float = 2.0 * math.pi * MOON_RADIUS_M / 360.0
#: Maximum sub-solar latitude [deg]: the Sun stays within +-1.54 deg of the lunar equator,
#: so at latitude phi it climbs at most ``1.54 + (90 - |phi|)`` deg (docs/science.md
#: section 3; the 1.54 deg obliquity of the lunar equator to the ecliptic).
MAX_SUBSOLAR_LATITUDE_DEG: float = 1.54
#: The sub-solar latitude actually reached [deg]: 1.588 in JPL DE421 over 2020-2039 (the
#: 1.54 deg mean tilt plus the physical libration; measured with
#: :mod:`prospect.illumination.ephemeris`, tests/test_ephemeris.py). Use this, not the
#: mean tilt, wherever a bound on the Sun's elevation matters.
OBSERVED_MAX_SUBSOLAR_LATITUDE_DEG: float = 1.588
#: Earth/Moon mass ratio (JPL DE421 constant EMRAT; Folkner et al. 2008, IOM 343R-08-003).
EARTH_MOON_MASS_RATIO: float = 81.3005690699
#: Mean synodic month [d] (Meeus 1998, ch. 49; docs/science.md section 3).
SYNODIC_MONTH_DAYS: float = 29.530588861
#: Tolerance when deciding whether an ellipsoid is the lunar sphere [m].
_RADIUS_TOLERANCE_M = 1.0

IAU_AUTHORITY = "IAU_2015"
IAU_GEOGRAPHIC = 30100
IAU_EQUIRECTANGULAR_0 = 30110
IAU_EQUIRECTANGULAR_180 = 30115
IAU_NORTH_POLAR_STEREOGRAPHIC = 30130
IAU_SOUTH_POLAR_STEREOGRAPHIC = 30135

CRSKind = Literal["geographic", "equirectangular", "polar_north", "polar_south", "other"]
#: A longitude convention: east longitudes in [-180, 180) or [0, 360).
LonConvention = Literal["180", "360"]

#: The IAU_2015 codes prospect writes, with their PROJ definitions. The definitions are
#: spelled out so that a code can be built identically by rasterio and pyproj.
IAU_CODES: dict[int, str] = {
    IAU_GEOGRAPHIC: f"+proj=longlat +R={MOON_RADIUS_M:.0f} +no_defs +type=crs",
    IAU_EQUIRECTANGULAR_0: (
        f"+proj=eqc +lat_ts=0 +lat_0=0 +lon_0=0 +x_0=0 +y_0=0 +R={MOON_RADIUS_M:.0f} +units=m +no_defs +type=crs"
    ),
    IAU_EQUIRECTANGULAR_180: (
        f"+proj=eqc +lat_ts=0 +lat_0=0 +lon_0=180 +x_0=0 +y_0=0 +R={MOON_RADIUS_M:.0f} +units=m +no_defs +type=crs"
    ),
    IAU_NORTH_POLAR_STEREOGRAPHIC: (
        f"+proj=stere +lat_0=90 +lon_0=0 +k=1 +x_0=0 +y_0=0 +R={MOON_RADIUS_M:.0f} +units=m +no_defs +type=crs"
    ),
    IAU_SOUTH_POLAR_STEREOGRAPHIC: (
        f"+proj=stere +lat_0=-90 +lon_0=0 +k=1 +x_0=0 +y_0=0 +R={MOON_RADIUS_M:.0f} +units=m +no_defs +type=crs"
    ),
}

_EARTH_DATUM_WORDS = ("WGS", "NAD", "ETRS", "GRS_1980", "GRS 1980", "EARTH", "OSGB", "ED50", "CLARKE")


class LegacyDatumWarning(UserWarning):
    """A lunar CRS on the legacy 1738 km sphere (Clementine / ULCN): heights differ by 600 m."""


@dataclass(frozen=True)
class LunarCRS:
    """A CRS recognised as lunar.

    ``wkt`` is the definition to write (WKT2 from the IAU code where one applies);
    ``code`` is ``"IAU_2015:NNNNN"`` or ``None`` for lunar CRSs outside the table
    (e.g. an equirectangular grid with a true-scale parallel other than the equator).
    """

    wkt: str
    code: str | None
    kind: CRSKind
    radius_m: float
    #: standard parallel / true-scale latitude of an equirectangular grid [deg]
    lat_ts: float = 0.0
    #: central meridian [deg E]
    lon_0: float = 0.0

    @property
    def is_geographic(self) -> bool:
        return self.kind == "geographic"

    @property
    def is_polar(self) -> bool:
        return self.kind in ("polar_north", "polar_south")

    def to_rasterio(self):
        """This CRS as a :class:`rasterio.crs.CRS`."""
        from rasterio.crs import CRS

        return CRS.from_wkt(self.wkt)

    def to_pyproj(self):
        """This CRS as a :class:`pyproj.CRS`."""
        import pyproj

        return pyproj.CRS.from_wkt(self.wkt)

    def __str__(self) -> str:
        return self.code or f"lunar {self.kind} (R={self.radius_m:.0f} m)"

    def to_wkt1_without_authority(self) -> str:
        """GDAL-style WKT1 of this CRS with every ``AUTHORITY[...]`` node removed.

        QGIS 3.22 (PROJ 9.1) reads a GeoPackage CRS carrying ``AUTHORITY["IAU",...]``
        nodes as unknown and invalid; GPKG 1.3 plus this definition opens with a valid
        lunar CRS (``docs/platform.md``, "GeoPackage + lunar CRS").
        """
        import re

        wkt1 = self.to_pyproj().to_wkt("WKT1_GDAL")
        while True:  # AUTHORITY nodes are leaves: ,AUTHORITY["IAU","30135"]
            stripped = re.sub(r',\s*AUTHORITY\["[^"]*",\s*"?[^"\]]*"?\]', "", wkt1)
            if stripped == wkt1:
                return stripped
            wkt1 = stripped


def qgis_ellipsoid(radius_m: float = MOON_RADIUS_M) -> str:
    """A QGIS project ellipsoid (``Measure/Ellipsoid``) for a sphere of ``radius_m``: QGIS
    measures distances and areas on it, so a project's measurements are lunar."""
    return f"PARAMETER:{radius_m:.15g}:{radius_m:.15g}"


def iau_code_string(code: int) -> str:
    """``30135 -> "IAU_2015:30135"``."""
    return f"{IAU_AUTHORITY}:{code}"


def lunar_crs(code: int | str) -> LunarCRS:
    """The lunar CRS for an IAU_2015 code (``30135``, ``"30135"`` or ``"IAU_2015:30135"``)."""
    if isinstance(code, str):
        tail = code.split(":")[-1].strip()
        if not tail.isdigit() or (":" in code and code.split(":")[0].upper() != IAU_AUTHORITY):
            raise CRSError(f"{code!r} is not an IAU_2015 code; use e.g. 'IAU_2015:30135'")
        code = int(tail)
    if code not in IAU_CODES:
        known = ", ".join(iau_code_string(c) for c in IAU_CODES)
        raise CRSError(f"IAU_2015:{code} is not a lunar CRS prospect supports (known: {known})")
    import pyproj

    crs = pyproj.CRS.from_user_input(IAU_CODES[code])
    return identify(crs.to_wkt(), source=iau_code_string(code))


def _proj_params(crs: Any) -> dict[str, Any]:
    """PROJ.4-style parameters of any CRS-like object (WKT, PROJ string, rasterio/pyproj CRS)."""
    import pyproj

    if hasattr(crs, "to_wkt"):
        crs = crs.to_wkt()
    p = pyproj.CRS.from_user_input(crs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        params = p.to_dict()
    params["_name"] = p.name or ""
    params["_datum"] = p.datum.name if p.datum else ""
    params["_is_geographic"] = p.is_geographic
    params["_authority"] = p.to_authority(min_confidence=100) if not p.is_bound else None
    ell = p.ellipsoid
    params["_a"] = ell.semi_major_metre if ell else None
    params["_b"] = ell.semi_minor_metre if ell else None
    return params


def identify(crs: Any, *, source: str = "input", crs_override: str | int | None = None) -> LunarCRS:
    """Recognise a lunar CRS in any WKT / PROJ string / CRS object, or refuse it.

    Recognises GDAL's PDS3 "SIMPLE_CYLINDRICAL MOON" and "POLAR_STEREOGRAPHIC MOON"
    definitions, the ``lat_ts=-90`` stereographic that GeoTIFFs written with
    IAU_2015:30135 read back as, and ESRI ``GCS_Moon_2000`` .prj files, and maps each
    to its IAU_2015 code when the parameters match one.

    ``crs_override``: for files whose CRS declaration is known to lie (the HKPolyU
    crater shapefiles carry a WGS84 ``.prj`` around lunar degrees): the declared CRS is
    ignored and this IAU_2015 code is used instead.

    Raises :class:`EarthCRSError` for an Earth CRS and :class:`CRSError` for a missing
    or non-lunar one; ``source`` names the file in the message.
    """
    if crs_override is not None:
        return lunar_crs(crs_override)
    if crs is None or (isinstance(crs, str) and not crs.strip()):
        raise CRSError(f"{source}: no coordinate reference system; give one (e.g. crs_override='IAU_2015:30135')")
    try:
        p = _proj_params(crs)
    except Exception as exc:  # pyproj raises its own CRSError for garbage
        raise CRSError(f"{source}: unreadable CRS definition ({exc})") from None
    a = p["_a"]
    name = f"{p['_name']} / {p['_datum']}".strip(" /")
    authority = p["_authority"]
    if a is None:
        raise CRSError(f"{source}: CRS {name!r} has no ellipsoid; cannot tell which body it is on")
    if (
        6.3e6 < a < 6.4e6
        or (authority and authority[0] == "EPSG")
        or any(w in name.upper() for w in _EARTH_DATUM_WORDS)
    ):
        raise EarthCRSError(
            f"{source}: declares an Earth CRS ({name}, semi-major axis {a:.0f} m), not a lunar one; "
            f"if the coordinates are really lunar and the declaration is known to be wrong, "
            f"override it with crs_override='IAU_2015:30100' (CLI: --assume-crs IAU_2015:30100)"
        )
    if abs(a - LEGACY_MOON_RADIUS_M) <= _RADIUS_TOLERANCE_M:
        warnings.warn(
            f"{source}: lunar CRS on the legacy 1738 km sphere (Clementine/ULCN); "
            "heights referenced to it are 600 m off the 1737.4 km LOLA sphere",
            LegacyDatumWarning,
            stacklevel=2,
        )
    elif abs(a - MOON_RADIUS_M) > _RADIUS_TOLERANCE_M:
        raise CRSError(
            f"{source}: CRS {name!r} has semi-major axis {a:.0f} m: not the Moon "
            f"({MOON_RADIUS_M:.0f} m); prospect reads lunar data only"
        )
    if p["_b"] is not None and abs(p["_a"] - p["_b"]) > _RADIUS_TOLERANCE_M:
        raise CRSError(f"{source}: CRS {name!r} is an ellipsoid, but lunar map products use a sphere")

    wkt = crs.to_wkt() if hasattr(crs, "to_wkt") else _to_wkt(crs)
    kind, code, lat_ts, lon_0 = _classify(p)
    if code is not None and abs(a - MOON_RADIUS_M) <= _RADIUS_TOLERANCE_M:
        wkt = _iau_wkt(code)
        return LunarCRS(wkt=wkt, code=iau_code_string(code), kind=kind, radius_m=a, lat_ts=lat_ts, lon_0=lon_0)
    return LunarCRS(wkt=wkt, code=None, kind=kind, radius_m=a, lat_ts=lat_ts, lon_0=lon_0)


def _iau_wkt(code: int) -> str:
    """WKT2 of an IAU_2015 code, with its name and ID when this PROJ has them, else from parameters."""
    import pyproj

    try:
        return pyproj.CRS.from_user_input(iau_code_string(code)).to_wkt()
    except pyproj.exceptions.CRSError:
        return pyproj.CRS.from_user_input(IAU_CODES[code]).to_wkt()


def _to_wkt(crs: Any) -> str:
    import pyproj

    return pyproj.CRS.from_user_input(crs).to_wkt()


def _close(value: Any, target: float, tol: float = 1e-9) -> bool:
    try:
        return abs(float(value) - target) <= tol
    except (TypeError, ValueError):
        return False


def _classify(p: dict[str, Any]) -> tuple[CRSKind, int | None, float, float]:
    """Kind and IAU code from PROJ parameters (offsets and scale must be the canonical ones)."""
    proj = p.get("proj")
    lon_0 = float(p.get("lon_0", 0.0))
    no_offsets = _close(p.get("x_0", 0), 0) and _close(p.get("y_0", 0), 0)
    if p["_is_geographic"] or proj in ("longlat", "latlong", "lonlat"):
        return "geographic", IAU_GEOGRAPHIC, 0.0, 0.0
    if proj == "eqc":
        lat_ts = float(p.get("lat_ts", 0.0))
        code = None
        if no_offsets and _close(lat_ts, 0) and _close(p.get("lat_0", 0), 0):
            if _close(lon_0, 0):
                code = IAU_EQUIRECTANGULAR_0
            elif _close(abs(lon_0), 180):
                code = IAU_EQUIRECTANGULAR_180
        return "equirectangular", code, lat_ts, lon_0
    if proj in ("stere", "ups"):
        lat_0 = float(p.get("lat_0", 0.0))
        # A polar stereographic with lat_ts = +-90 is the k0 = 1 form; GeoTIFFs written
        # with IAU_2015:30135 read back this way (docs/platform.md).
        k = float(p.get("k", p.get("k_0", 1.0)))
        stere_lat_ts = p.get("lat_ts")
        true_scale_at_pole = stere_lat_ts is None or _close(abs(float(stere_lat_ts)), 90)
        if _close(abs(lat_0), 90):
            kind: CRSKind = "polar_south" if lat_0 < 0 else "polar_north"
            canonical = no_offsets and _close(lon_0, 0) and _close(k, 1) and true_scale_at_pole
            code = (
                (IAU_SOUTH_POLAR_STEREOGRAPHIC if lat_0 < 0 else IAU_NORTH_POLAR_STEREOGRAPHIC) if canonical else None
            )
            return kind, code, lat_0, lon_0
    return "other", None, 0.0, lon_0


def recover_iau_code(crs: Any) -> str | None:
    """The IAU_2015 code string of a lunar CRS, or ``None`` when it matches none."""
    return identify(crs).code


# --- geodesy ---------------------------------------------------------------------


def polar_scale_factor(lat_deg: Any) -> Any:
    """Point scale factor of the polar stereographic projection with k0 = 1.

    ``k = 2 / (1 + sin|lat|)`` (Snyder 1987, eq. 21-4): map distances are ``k`` times
    ground distances (1.008 at 80 deg, 1.017 at 75 deg), so ground = map / k.
    """
    return 2.0 / (1.0 + np.sin(np.radians(np.abs(lat_deg))))


def polar_scale_factor_xy(x_m: Any, y_m: Any, radius_m: float = MOON_RADIUS_M) -> Any:
    """The polar stereographic scale factor from map coordinates: ``k = 1 + rho^2 / (4 R^2)``.

    Identical to ``2 / (1 + sin|lat|)`` (Snyder 1987, eqs. 21-4 and 21-33 with k0 = 1,
    ``rho = 2 R tan(45 deg - |lat|/2)``), but needs no inverse projection, so the terrain
    kernels evaluate it per pixel. Valid for the IAU_2015:30130 / 30135 grids (k0 = 1
    at the pole, no false origin).
    """
    x = np.asarray(x_m, dtype="float64")
    y = np.asarray(y_m, dtype="float64")
    return 1.0 + (x * x + y * y) / (4.0 * radius_m * radius_m)


def polar_stereographic_latitude(rho_m: Any, *, south: bool = True, radius_m: float = MOON_RADIUS_M) -> Any:
    """Latitude [deg] at map radius ``rho`` from the pole (LOLA DSMAP_POLAR.CAT).

    South: ``LAT = -90 + (360/pi) atan(rho / (2 R))``; north: the mirror image.
    """
    colat = np.degrees(2.0 * np.arctan(np.asarray(rho_m, dtype="float64") / (2.0 * radius_m)))
    return -90.0 + colat if south else 90.0 - colat


def geographic_ground_spacing(res_deg: float, lat_deg: Any, radius_m: float = MOON_RADIUS_M) -> tuple[Any, float]:
    """Ground size ``(dx, dy)`` in metres of a geographic cell of ``res_deg`` at latitude.

    ``dy = 2 pi R / 360 * res``; ``dx = dy * cos(lat)`` (``docs/science.md`` section 2).
    """
    dy = 2.0 * math.pi * radius_m / 360.0 * res_deg
    return dy * np.cos(np.radians(lat_deg)), dy


def equirectangular_true_scale(lat_ts_deg: float) -> float:
    """East-west ground / map distance ratio on an equirectangular grid: ``cos(lat_ts)`` at lat_ts."""
    return math.cos(math.radians(lat_ts_deg))


def normalize_longitude(lon: Any, convention: LonConvention = "180") -> Any:
    """Longitudes east in ``[-180, 180)`` (``"180"``) or ``[0, 360)`` (``"360"``).

    Products differ: LOLA IMGs are 0..360 E (centre 180), their JPEG2000 twins and the
    LP GRS tables -180..180 E. Every comparison of positions normalises explicitly.
    """
    lon = np.asarray(lon, dtype="float64")
    if convention == "360":
        return np.mod(lon, 360.0)
    if convention == "180":
        return np.mod(lon + 180.0, 360.0) - 180.0
    raise ValueError(f"longitude convention must be '180' or '360', not {convention!r}")


def great_circle_distance_m(lon1: Any, lat1: Any, lon2: Any, lat2: Any, radius_m: float = MOON_RADIUS_M) -> Any:
    """Haversine distance on the lunar sphere [m]."""
    l1, p1, l2, p2 = (np.radians(np.asarray(v, dtype="float64")) for v in (lon1, lat1, lon2, lat2))
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin((l2 - l1) / 2) ** 2
    return 2.0 * radius_m * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def cell_area_m2(lat_min: Any, lat_max: Any, lon_width_deg: Any, radius_m: float = MOON_RADIUS_M) -> Any:
    """Exact area of a latitude-longitude cell on the sphere: ``R^2 dlon (sin lat2 - sin lat1)``."""
    return (
        radius_m**2
        * np.radians(np.asarray(lon_width_deg, dtype="float64"))
        * (np.sin(np.radians(lat_max)) - np.sin(np.radians(lat_min)))
    )


def polar_cap_area_m2(lat_deg: float, radius_m: float = MOON_RADIUS_M) -> float:
    """Area poleward of ``|lat|``: ``2 pi R^2 (1 - sin|lat|)`` (18,052 km^2 at 87.5 deg)."""
    return 2.0 * math.pi * radius_m**2 * (1.0 - math.sin(math.radians(abs(lat_deg))))


def spherical_cap_area_m2(arc_m: Any, radius_m: float = MOON_RADIUS_M) -> Any:
    """Area of the disc of great-circle radius ``arc_m`` on the lunar sphere: ``2 pi R^2 (1 - cos(arc/R))``."""
    return 2.0 * np.pi * radius_m**2 * (1.0 - np.cos(np.asarray(arc_m, dtype="float64") / radius_m))


def unit_vectors(lon_deg: Any, lat_deg: Any) -> np.ndarray:
    """``(n, 3)`` unit vectors of planetocentric lon/lat [deg]: chord distances for nearest-neighbour search."""
    lon, lat = np.radians(np.asarray(lon_deg, dtype="float64")), np.radians(np.asarray(lat_deg, dtype="float64"))
    return np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)]).reshape(-1, 3)


def chord_to_arc_m(chord: Any, radius_m: float = MOON_RADIUS_M) -> Any:
    """Great-circle distance [m] on the lunar sphere from a unit-sphere chord length."""
    return 2.0 * radius_m * np.arcsin(np.clip(np.asarray(chord, dtype="float64") / 2.0, 0.0, 1.0))


def arc_to_chord(arc_m: Any, radius_m: float = MOON_RADIUS_M) -> Any:
    """Unit-sphere chord length of a great-circle distance [m] on the lunar sphere."""
    return 2.0 * np.sin(np.asarray(arc_m, dtype="float64") / (2.0 * radius_m))


#: Most Gauss-Legendre points per axis :func:`polar_stereographic_area_m2` picks by itself.
_MAX_AUTO_GL_ORDER = 64


def _gauss_legendre_order(size_m: float, radius_m: float) -> int:
    """Points per axis for ~1e-16 relative error on a map square of side ``size_m`` (see below)."""
    ratio = 4.0 * radius_m / max(size_m, 1e-300)
    if ratio <= 1.0:
        return _MAX_AUTO_GL_ORDER
    return int(min(_MAX_AUTO_GL_ORDER, max(2, math.ceil(8.0 / math.log10(ratio)))))


def polar_stereographic_area_m2(
    x0: Any, x1: Any, y0: Any, y1: Any, *, radius_m: float = MOON_RADIUS_M, order: int | None = None
) -> Any:
    """Area on the sphere [m^2] of the polar stereographic map rectangle ``[x0, x1] x [y0, y1]``.

    The polar stereographic projection with k0 = 1 (IAU_2015:30130 / 30135, no false
    origin) has point scale factor ``k = 1 + rho^2 / (4 R^2)`` in both directions
    (:func:`polar_scale_factor_xy`; Snyder 1987, eqs. 21-4 and 21-33), so the ground
    area of a map rectangle is ``integral of dx dy / k^2`` over it. It is evaluated by
    tensor Gauss-Legendre quadrature with ``order`` points per axis.

    Accuracy: ``1/k^2 = (4R^2)^2 / (4R^2 + x^2 + y^2)^2`` is analytic, its poles lie at
    imaginary distance >= 2R from the real plane, so the quadrature error falls like
    ``(h / 4R)^(2 n)`` for a rectangle of side ``h`` (Bernstein-ellipse bound, Trefethen
    2013, *Approximation Theory and Approximation Practice*, thm 19.3). ``order=None``
    picks the smallest ``n >= 2`` with ``(h / 4R)^(2 n) <= 1e-16`` (2 points for
    pixels under 0.7 km, 3 under 15 km, 4 under 70 km, 8 for a 600 km square; at most
    64): the relative error is then at float64 rounding level (at most 3e-15 measured
    against 200-point quadrature for squares of 20 m to 3000 km; tests/test_cell_area.py).

    Arguments broadcast against each other (e.g. ``x0, x1`` of shape ``(1, cols)`` and
    ``y0, y1`` of shape ``(rows, 1)`` give ``(rows, cols)`` areas); the order of the
    two bounds of an axis does not matter. Returns float64.
    """
    x0, x1, y0, y1 = (np.asarray(v, dtype="float64") for v in (x0, x1, y0, y1))
    xm, xh = (x0 + x1) / 2.0, np.abs(x1 - x0) / 2.0
    ym, yh = (y0 + y1) / 2.0, np.abs(y1 - y0) / 2.0
    if order is None:
        size = float(max(np.max(2.0 * xh, initial=0.0), np.max(2.0 * yh, initial=0.0)))
        order = _gauss_legendre_order(size, radius_m)
    order = int(order)
    if order < 1:
        raise ValueError(f"order must be a positive number of points, not {order}")
    t, w = np.polynomial.legendre.leggauss(order)
    inv4r2 = 1.0 / (4.0 * radius_m * radius_m)
    xs2 = [(xm + xh * ti) ** 2 * inv4r2 for ti in t]
    acc = np.zeros(np.broadcast_shapes(xm.shape, ym.shape), dtype="float64")
    for j, tj in enumerate(t):
        ys2 = (ym + yh * tj) ** 2 * inv4r2
        row = np.zeros_like(acc)
        for i in range(order):
            row += w[i] / (1.0 + xs2[i] + ys2) ** 2
        acc += w[j] * row
    return acc * xh * yh


def transformer(src: LunarCRS, dst: LunarCRS):
    """A pyproj Transformer between two lunar CRSs, lon/lat order (``always_xy``)."""
    import pyproj

    return pyproj.Transformer.from_crs(src.to_pyproj(), dst.to_pyproj(), always_xy=True)


def xy_to_lonlat(crs: LunarCRS, x: Any, y: Any) -> tuple[Any, Any]:
    """Map coordinates to planetocentric lon/lat [deg] on the same sphere."""
    geo = lunar_crs(IAU_GEOGRAPHIC) if abs(crs.radius_m - MOON_RADIUS_M) <= _RADIUS_TOLERANCE_M else geographic_of(crs)
    return transformer(crs, geo).transform(x, y)


def lonlat_to_xy(crs: LunarCRS, lon: Any, lat: Any) -> tuple[Any, Any]:
    """Planetocentric lon/lat [deg] to map coordinates of ``crs``."""
    geo = lunar_crs(IAU_GEOGRAPHIC) if abs(crs.radius_m - MOON_RADIUS_M) <= _RADIUS_TOLERANCE_M else geographic_of(crs)
    return transformer(geo, crs).transform(lon, lat)


def geographic_of(crs: LunarCRS) -> LunarCRS:
    """The planetocentric lon/lat CRS (``+proj=longlat``) on the sphere of ``crs`` (its radius)."""
    import pyproj

    wkt = pyproj.CRS.from_user_input(f"+proj=longlat +R={crs.radius_m} +no_defs +type=crs").to_wkt()
    return LunarCRS(wkt=wkt, code=None, kind="geographic", radius_m=crs.radius_m)


def ground_resolution_m(crs: LunarCRS, pixel_size: float) -> float:
    """Nominal ground size of a pixel [m]: degrees times metres per degree for geographic grids."""
    if crs.is_geographic:
        return abs(pixel_size) * 2.0 * math.pi * crs.radius_m / 360.0
    return abs(pixel_size)
