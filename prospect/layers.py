"""The layer registry: every raster prospect reads or writes, named once.

A :class:`Layer` holds a layer's facts: its name, file stem, units, long name, dtype,
nodata, whether it is a class map, its fixed style range and the stage that makes it.
Readers, writers, the pipeline runner, the exports and the report all look layers up
here instead of typing file names, units and nodata themselves.

Units follow one vocabulary (:data:`UNITS`): UDUNITS-style strings as written into the
GeoTIFF band (``"1"`` for dimensionless fractions, ``"m"``, ``"deg"``, ``"h"``, ``"K"``,
``"ppb"``, ``"ppm"``, ``"wt%"``, ``"kg m-2"``). :func:`normalise_units` maps the other
spellings found in PDS3/PDS4/ISIS labels and GeoTIFF tags onto it, and
:func:`unit_factor` converts between compatible units (``"%"`` to ``"1"``, ``"cm"`` to
``"m"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prospect import lunar
from prospect.errors import UnitsError

__all__ = [
    "LAYERS",
    "UNITS",
    "UNIT_ALIASES",
    "Layer",
    "filename",
    "get",
    "normalise_units",
    "unit_factor",
]

#: prospect's unit strings (one vocabulary for every layer, tag and reader)
UNITS: frozenset[str] = frozenset(
    {"1", "%", "m", "km", "cm", "deg", "h", "K", "ppm", "ppb", "wt%", "kg m-2", "W m-2", "DN"}
)

#: Unit spellings found in PDS3/PDS4/ISIS labels and GeoTIFF tags -> prospect's unit strings.
UNIT_ALIASES: dict[str, str] = {
    "m": "m",
    "meter": "m",
    "meters": "m",
    "metre": "m",
    "metres": "m",
    "km": "km",
    "kilometer": "km",
    "kilometers": "km",
    "cm": "cm",
    "k": "K",
    "kelvin": "K",
    "deg": "deg",
    "degree": "deg",
    "degrees": "deg",
    "degrees_north": "deg",
    "ppm": "ppm",
    "ppm h": "ppm",
    "ppmh": "ppm",
    "ppm_h": "ppm",
    "ppb": "ppb",
    "wt%": "wt%",
    "wt.%": "wt%",
    "weight percent": "wt%",
    "percent": "%",
    "%": "%",
    "1": "1",
    "none": "1",
    "n/a": "1",
    "unitless": "1",
    "dimensionless": "1",
    "fraction": "1",
    "dn": "DN",
    "w/m**2": "W m-2",
    "w m-2": "W m-2",
    # what prospect's own maps declare (illumination, ice, He-3), so a stage reads its predecessor's output
    "h": "h",
    "hour": "h",
    "hours": "h",
    "kg m-2": "kg m-2",
    "kg/m**2": "kg m-2",
    "kg/m2": "kg m-2",
}

#: (from, to) -> factor, for the conversions prospect makes on input
_FACTORS: dict[tuple[str, str], float] = {
    ("%", "1"): 0.01,
    ("cm", "m"): 0.01,
    ("km", "m"): 1000.0,
    ("m", "km"): 0.001,
}


def normalise_units(text: Any, source: str) -> str:
    """A unit string from a label or tag in prospect's spelling; unknown units raise UnitsError."""
    key = " ".join(str(text).strip().strip('"').lower().split())
    if key in UNIT_ALIASES:
        return UNIT_ALIASES[key]
    raise UnitsError(
        f"{source}: unknown units {text!r}; prospect knows {sorted(set(UNIT_ALIASES.values()))}; "
        "declare the product's units in its data manifest"
    )


def unit_factor(units: str, to: str, source: str = "layer") -> float:
    """The factor that converts a value in ``units`` (prospect's spelling) to ``to``; UnitsError if none."""
    if units == to:
        return 1.0
    if (units, to) in _FACTORS:
        return _FACTORS[(units, to)]
    raise UnitsError(f"{source}: units {units!r} cannot be converted to {to!r}")


@dataclass(frozen=True)
class Layer:
    """One raster layer's facts (module docstring)."""

    name: str
    units: str
    long_name: str
    stage: str
    dtype: str = "float32"
    nodata: float = -9999.0
    categorical: bool = False
    #: fixed style range (min, max); None: the 2nd..98th percentile of the map
    style_range: tuple[float, float] | None = None
    #: the file stem (default: the name)
    stem: str = ""

    def __post_init__(self) -> None:
        if self.units not in UNITS:
            raise ValueError(f"layer {self.name}: units {self.units!r} are not in prospect's vocabulary")
        if not self.stem:
            object.__setattr__(self, "stem", self.name)

    @property
    def filename(self) -> str:
        """``<stem>.tif``."""
        return f"{self.stem}.tif"


def _layers(*layers: Layer) -> dict[str, Layer]:
    return {layer.name: layer for layer in layers}


_FRACTION = (0.0, 1.0)

#: Every layer, by name. The order is the drawing order of exported maps (top first).
LAYERS: dict[str, Layer] = _layers(
    # --- resources: water ice (prospect.resources.ice)
    Layer(
        "ice_stability_class",
        "1",
        "ice stability class: 0 not stable, 1 shallow subsurface, 2 surface",
        "resources",
        dtype="uint8",
        nodata=255,
        categorical=True,
        style_range=(0, 2),
    ),
    Layer("ice_favourability", "1", "water-ice favourability", "resources", style_range=_FRACTION),
    Layer("coverage", "1", "weight of the layers valid at the pixel / weight of all configured layers", "resources"),
    Layer("score_thermal", "1", "thermal score from the stability class", "resources"),
    Layer("score_psr", "1", "permanent-shadow score (PSR fraction)", "resources"),
    Layer("score_hydrogen", "1", "hydrogen score clip(WEH / reference, 0, 1)", "resources"),
    Layer("score_pole_facing", "1", "pole-facing slope score", "resources"),
    Layer("weh_wt_pct", "wt%", "water-equivalent hydrogen, 9e-4 x ppm H", "resources"),
    Layer("thermal_proxy_k", "K", "PROXY annual mean surface temperature (radiative equilibrium)", "resources"),
    Layer("water_column_kg_m2", "kg m-2", "water-equivalent column", "resources"),
    # --- resources: helium-3 (prospect.resources.he3)
    Layer("he3_ppb", "ppb", "helium-3 concentration in the regolith", "resources"),
    Layer("he3_column_kg_m2", "kg m-2", "He-3 column mass over the regolith thickness", "resources"),
    Layer("regolith_thickness_m", "m", "regolith thickness used for the column", "resources"),
    Layer("mare_fraction", "1", "mare fraction of the mare/highland thickness rule", "resources"),
    Layer("fluence_factor", "1", "lunation-mean solar-wind fluence relative to the unshielded equator", "resources"),
    Layer("maturity_index", "1", "maturity index used (0 immature .. 1 mature)", "resources"),
    Layer("tio2_wt", "wt%", "TiO2 used", "resources"),
    # --- permanent shadow: the fraction of a pixel inside PSR polygons (sites) and the
    # illumination stage's 0/1 mask are different quantities with different names
    Layer("psr_fraction", "1", "permanently shadowed fraction of the pixel", "sites", style_range=_FRACTION),
    Layer(
        "psr_mask",
        "1",
        "permanently shadowed (1) or not (0) at the pixel centre over the span",
        "illumination",
        style_range=_FRACTION,
    ),
    # --- illumination (prospect.illumination)
    Layer(
        "illumination_fraction",
        "1",
        "time-averaged visible fraction of the solar disk",
        "illumination",
        style_range=_FRACTION,
    ),
    Layer(
        "earth_visibility_fraction",
        "1",
        "fraction of time the Earth is above the horizon",
        "illumination",
        style_range=_FRACTION,
    ),
    Layer("longest_darkness_h", "h", "longest continuous darkness", "illumination"),
    # --- terrain (prospect.terrain)
    Layer(
        "slope_deg",
        "deg",
        "slope (Horn 1981 on lunar ground distances, one-pixel baseline)",
        "terrain",
        style_range=(0.0, 30.0),
    ),
    Layer("dem_m", "m", f"height above the {lunar.MOON_RADIUS_M / 1000:g} km lunar sphere", "terrain"),
    Layer(
        "hillshade",
        "1",
        "shaded relief for display: 1 (dark) .. 255 (lit), 0 nodata; light from 315 deg azimuth, 45 deg altitude",
        "exports",
        dtype="uint8",
        nodata=0,
        style_range=(1.0, 255.0),
    ),
)


def get(name: str) -> Layer:
    """The layer called ``name`` (KeyError naming the known layers otherwise)."""
    try:
        return LAYERS[name]
    except KeyError:
        raise KeyError(f"no layer {name!r}; prospect knows {sorted(LAYERS)}") from None


def filename(name: str) -> str:
    """The file name of layer ``name`` (``<stem>.tif``)."""
    return get(name).filename
