"""The layer registry: every raster prospect reads or writes, named once.

A :class:`Layer` holds a layer's facts: its name, file stem, units, long name, dtype,
nodata, whether it is a class map, its fixed style range, the stage that makes it,
whether ``prospect export`` writes it as a map and its display title. Readers, writers,
the pipeline runner, the exports and the report all look layers up here instead of
typing file names, units and nodata themselves.

A few layers carry two long names: ``long_name`` is what the exported map says,
``stage_long_name`` what the producing stage writes into its own file (e.g. He-3's
"He-3 concentration (mass ppb)" against the map's "helium-3 concentration in the
regolith"). Both texts are kept so every file stays byte-identical.

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

import numpy as np

from prospect import lunar
from prospect.errors import UnitsError

__all__ = [
    "LAYERS",
    "THERMAL_PROXY_LABEL",
    "UNITS",
    "UNIT_ALIASES",
    "Layer",
    "exported_layers",
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
    #: what the exported map (``maps/<stem>.tif``, ``prospect_long_name``) says the layer is
    long_name: str
    #: the stage that makes the layer ("terrain", "illumination", "resources", "sites", "exports")
    stage: str
    dtype: str = "float32"
    nodata: float = -9999.0
    categorical: bool = False
    #: fixed style range (min, max); None: the 2nd..98th percentile of the map
    style_range: tuple[float, float] | None = None
    #: the file stem (default: the name)
    stem: str = ""
    #: exported by ``prospect export`` as ``maps/<stem>.tif`` with a ``.qml`` style
    exported: bool = False
    #: short display name (QGIS layer tree, report), without units (default: the name)
    title: str = ""
    #: the long name the producing stage writes into its own file, where it differs from
    #: ``long_name`` (default: ``long_name``); both texts are kept so files stay byte-identical
    stage_long_name: str = ""

    def __post_init__(self) -> None:
        if self.units not in UNITS:
            raise ValueError(f"layer {self.name}: units {self.units!r} are not in prospect's vocabulary")
        if not self.stem:
            object.__setattr__(self, "stem", self.name)
        if not self.title:
            object.__setattr__(self, "title", self.name)
        if not self.stage_long_name:
            object.__setattr__(self, "stage_long_name", self.long_name)
        kind = np.dtype(self.dtype)
        if kind.kind == "u" or kind.kind == "i":
            info = np.iinfo(kind)
            if not (info.min <= self.nodata <= info.max and float(self.nodata).is_integer()):
                raise ValueError(f"layer {self.name}: nodata {self.nodata!r} is not a {self.dtype} value")
        elif kind.kind != "f":
            raise ValueError(f"layer {self.name}: dtype {self.dtype!r} is neither an integer nor a float type")
        if self.style_range is not None and not self.style_range[0] < self.style_range[1]:
            raise ValueError(f"layer {self.name}: style range {self.style_range} is empty")

    @property
    def filename(self) -> str:
        """``<stem>.tif``."""
        return f"{self.stem}.tif"

    @property
    def display_name(self) -> str:
        """The title with the units in brackets (none for dimensionless layers): ``"Slope [deg]"``."""
        return self.title if self.units == "1" else f"{self.title} [{self.units}]"


def _layers(*layers: Layer) -> dict[str, Layer]:
    table = {layer.name: layer for layer in layers}
    stems = [layer.stem for layer in layers]
    if len(table) != len(layers) or len(set(stems)) != len(stems):
        raise ValueError("layer names and file stems must be unique")
    return table


_FRACTION = (0.0, 1.0)
#: the label of the thermal proxy (``prospect.resources.ice``), part of thermal_proxy_k's long name
THERMAL_PROXY_LABEL = "proxy: radiative equilibrium from illumination fraction (not a temperature measurement)"

#: Every layer, by name. The order is the drawing order of exported maps (top first).
LAYERS: dict[str, Layer] = _layers(
    # --- resources: water ice (prospect.resources.ice)
    Layer(
        "ice_stability_class",
        "1",
        "ice stability class: 0 not stable, 1 shallow subsurface, 2 surface, 3 shadowed but likely too warm",
        "resources",
        dtype="uint8",
        nodata=255,
        categorical=True,
        style_range=(0, 3),
        exported=True,
        title="Ice stability class",
        stage_long_name="water-ice stability class: 0 not stable, 1 shallow-subsurface, 2 surface, "
        "3 shadowed but likely too warm (equatorward of the cold-trap latitude limit), 255 nodata",
    ),
    Layer(
        "ice_favourability",
        "1",
        "water-ice favourability",
        "resources",
        style_range=_FRACTION,
        exported=True,
        title="Ice favourability",
        stage_long_name="water-ice favourability (0..1): weighted mean of the available layer scores",
    ),
    Layer("coverage", "1", "weight of the layers valid at the pixel / weight of all configured layers", "resources"),
    Layer("score_thermal", "1", "thermal score from the stability class", "resources"),
    Layer("score_psr", "1", "permanent-shadow score (PSR fraction)", "resources"),
    Layer(
        "score_hydrogen",
        "1",
        "hydrogen score clip(WEH / reference, 0, 1) (neutron footprint 30-150 km: smooth)",
        "resources",
    ),
    Layer("score_pole_facing", "1", "pole-facing slope score", "resources"),
    Layer(
        "weh_wt_pct",
        "wt%",
        "water-equivalent hydrogen, 9e-4 x ppm H (neutron footprint 30-150 km: smooth)",
        "resources",
    ),
    Layer("thermal_proxy_k", "K", "PROXY annual mean surface temperature: " + THERMAL_PROXY_LABEL, "resources"),
    Layer(
        "water_column_kg_m2",
        "kg m-2",
        "water-equivalent column: WEH / 100 x bulk density x neutron sensing depth",
        "resources",
    ),
    # --- resources: helium-3 (prospect.resources.he3)
    Layer(
        "he3_ppb",
        "ppb",
        "helium-3 concentration in the regolith",
        "resources",
        exported=True,
        title="Helium-3",
        stage_long_name="He-3 concentration (mass ppb)",
    ),
    Layer("he3_column_kg_m2", "kg m-2", "He-3 column mass over the whole regolith thickness", "resources"),
    Layer(
        "he3_column_counting_kg_m2",
        "kg m-2",
        "He-3 column mass over the counting (mining) depth, min(counting_depth_m, thickness)",
        "resources",
    ),
    Layer("regolith_thickness_m", "m", "regolith thickness of the thickness model used", "resources"),
    Layer("mare_fraction", "1", "mare fraction (thickness rules and the mare/highland inventory split)", "resources"),
    Layer("fluence_factor", "1", "lunation-mean solar-wind fluence relative to the unshielded equator", "resources"),
    Layer("maturity_index", "1", "maturity index used (0 immature .. 1 mature)", "resources"),
    Layer("tio2_wt", "wt%", "TiO2 used", "resources"),
    # --- permanent shadow: the fraction of a pixel inside PSR polygons (sites) and the
    # illumination stage's 0/1 mask are different quantities with different names
    Layer(
        "psr_fraction",
        "1",
        "permanently shadowed fraction of the pixel",
        "sites",
        style_range=_FRACTION,
        exported=True,
        title="PSR fraction",
    ),
    Layer(
        "psr_mask",
        "1",
        "permanently shadowed (1) over the span, NaN where the horizon is unknown",
        "illumination",
        style_range=_FRACTION,
        exported=True,
        title="PSR mask",
    ),
    # --- illumination (prospect.illumination)
    Layer(
        "illumination_fraction",
        "1",
        "time-averaged visible fraction of the solar disk",
        "illumination",
        style_range=_FRACTION,
        exported=True,
        title="Illumination fraction",
    ),
    Layer(
        "earth_visibility_fraction",
        "1",
        "fraction of time the Earth is above the horizon",
        "illumination",
        style_range=_FRACTION,
        exported=True,
        title="Earth visibility fraction",
        stage_long_name="fraction of time the Earth's centre is above the horizon",
    ),
    Layer(
        "longest_darkness_h",
        "h",
        "longest continuous darkness",
        "illumination",
        exported=True,
        title="Longest darkness",
        stage_long_name="longest continuous darkness (no solar limb)",
    ),
    # --- terrain (prospect.terrain)
    Layer(
        "slope_deg",
        "deg",
        "slope (Horn 1981 on lunar ground distances, one-pixel baseline)",
        "terrain",
        style_range=(0.0, 30.0),
        exported=True,
        title="Slope",
    ),
    Layer(
        "dem_m",
        "m",
        f"height above the {lunar.MOON_RADIUS_M / 1000:g} km lunar sphere",
        "terrain",
        exported=True,
        title="Elevation",
    ),
    Layer(
        "hillshade",
        "1",
        "shaded relief for display: 1 (dark) .. 255 (lit), 0 nodata; light from 315 deg azimuth, 45 deg altitude",
        "exports",
        dtype="uint8",
        nodata=0,
        style_range=(1.0, 255.0),
        exported=True,
        title="Hillshade",
    ),
)

if not set(UNIT_ALIASES.values()) <= UNITS:  # the readers' spellings map into the vocabulary
    raise ValueError(f"UNIT_ALIASES maps to units outside UNITS: {sorted(set(UNIT_ALIASES.values()) - UNITS)}")


def get(name: str) -> Layer:
    """The layer called ``name`` (KeyError naming the known layers otherwise)."""
    try:
        return LAYERS[name]
    except KeyError:
        raise KeyError(f"no layer {name!r}; prospect knows {sorted(LAYERS)}") from None


def filename(name: str) -> str:
    """The file name of layer ``name`` (``<stem>.tif``)."""
    return get(name).filename


def exported_layers() -> tuple[Layer, ...]:
    """The layers ``prospect export`` writes as maps, in drawing order (top first)."""
    return tuple(layer for layer in LAYERS.values() if layer.exported)
