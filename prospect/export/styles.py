"""QGIS 3.22 layer styles (``.qml``) for the exported maps and vector layers.

A ``.qml`` file is the XML QGIS writes with *Layer > Save Style* and reads with
``QgsMapLayer.loadNamedStyle``; QGIS also applies one automatically when it sits beside
a raster with the same base name, and stores one per layer in a GeoPackage's
``layer_styles`` table (``docs/platform.md``, "QGIS as the real client"). The element
and attribute names below are the ones QGIS 3.22.16 itself writes for the same
renderers (``QgsSingleBandPseudoColorRenderer``, ``QgsSingleBandGrayRenderer``,
``QgsPalettedRasterRenderer``, ``QgsSingleSymbolRenderer``, ``QgsRuleBasedRenderer``,
``QgsVectorLayerSimpleLabeling``; QGIS source ``src/core/raster/*renderer.cpp``,
``src/core/symbology/qgssymbollayerutils.cpp``), trimmed to what QGIS needs and checked
by loading every style into PyQGIS 3.22 (``tests/test_qgis.py``).

Colour ramps are sampled from the matplotlib colour maps of van der Walt & Smith (2015,
viridis / inferno / magma: perceptually uniform) and from ColorBrewer (Harrower &
Brewer 2003: Blues, YlOrBr, RdYlGn, GnBu).

Output is deterministic: attributes are written in sorted order and rule keys are
derived from the rule text, so the same inputs give byte-identical styles.
"""

from __future__ import annotations

import math
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["RASTER_RAMPS", "RENDERERS", "VECTOR_KINDS", "raster_qml", "renderer_type", "vector_qml"]

#: What QGIS writes as the version of a style; QGIS upgrades styles only from 2.x/3.0.
QGIS_VERSION = "3.22.0-Białowieża"
_DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>"

#: Colour ramp per raster layer (by name, :mod:`prospect.layers`): ``(stops, why)`` where
#: ``stops`` is a list of ``(fraction of vmin..vmax, "#rrggbb", alpha 0..255)``. Layers not
#: listed get ``_DEFAULT_RAMP`` (viridis); ``hillshade`` and ``ice_stability_class`` have
#: their own renderers (grey and paletted, :data:`RENDERERS`) and are not ramps.
RASTER_RAMPS: dict[str, tuple[list[tuple[float, str, int]], str]] = {
    # Traffic-light convention for trafficability: flat (green) is good, the 15 deg
    # lander/rover limit yellow, steep red (ColorBrewer RdYlGn reversed).
    "slope_deg": (
        [
            (0.0, "#1a9850", 255),
            (0.25, "#91cf60", 255),
            (0.5, "#fee08b", 255),
            (0.75, "#fc8d59", 255),
            (1.0, "#d73027", 255),
        ],
        "green (flat, safe) -> yellow (~15 deg) -> red (steep)",
    ),
    # Light is the quantity: dark-to-bright inferno reads as "more sunlight is brighter".
    "illumination_fraction": (
        [
            (0.0, "#000004", 255),
            (0.2, "#420a68", 255),
            (0.4, "#932667", 255),
            (0.6, "#dd513a", 255),
            (0.8, "#fca50a", 255),
            (1.0, "#fcffa4", 255),
        ],
        "inferno: never lit is black, always lit is pale yellow",
    ),
    # Direct-to-Earth communication: a cool sequential blue, more visibility = deeper blue.
    "earth_visibility_fraction": (
        [
            (0.0, "#f7fbff", 255),
            (0.2, "#d0e1f2", 255),
            (0.4, "#94c4df", 255),
            (0.6, "#4a98c9", 255),
            (0.8, "#1764ab", 255),
            (1.0, "#08306b", 255),
        ],
        "ColorBrewer Blues: Earth never visible pale, always visible deep blue",
    ),
    # Long nights are the hazard (power, thermal): reversed magma so long darkness is dark.
    "longest_darkness_h": (
        [
            (0.0, "#fcfdbf", 255),
            (0.2, "#fe9f6d", 255),
            (0.4, "#de4968", 255),
            (0.6, "#8c2981", 255),
            (0.8, "#3b0f70", 255),
            (1.0, "#000004", 255),
        ],
        "magma reversed: short nights bright, the longest nights black",
    ),
    # Permanent shadow: blue like cold; 0 (never permanently shadowed) is transparent so
    # the terrain shows through everywhere except the shadows.
    "psr_fraction": (
        [(0.0, "#c6dbef", 0), (0.02, "#c6dbef", 170), (0.5, "#4292c6", 200), (1.0, "#08306b", 230)],
        "transparent at 0, light to deep blue as the cell is more permanently shadowed",
    ),
    # The illumination stage's 0/1 mask: the ends of the PSR ramp, 0 transparent, 1 deep blue.
    "psr_mask": (
        [(0.0, "#c6dbef", 0), (0.5, "#4292c6", 200), (1.0, "#08306b", 230)],
        "transparent at 0 (lit at some time), deep blue at 1 (permanently shadowed)",
    ),
    # Water ice: white/cyan (unfavourable, like frost) to deep blue (most favourable).
    "ice_favourability": (
        [
            (0.0, "#f7fcf0", 255),
            (0.25, "#ccebc5", 255),
            (0.5, "#7bccc4", 255),
            (0.75, "#2b8cbe", 255),
            (1.0, "#084081", 255),
        ],
        "ColorBrewer GnBu: white/cyan for poor, deep blue for favourable ice",
    ),
    # Helium-3 follows TiO2-rich (dark, brownish) mare regolith: YlOrBr yellow -> brown.
    "he3_ppb": (
        [
            (0.0, "#ffffe5", 255),
            (0.2, "#feeba2", 255),
            (0.4, "#febb47", 255),
            (0.6, "#f07818", 255),
            (0.8, "#b84203", 255),
            (1.0, "#662506", 255),
        ],
        "ColorBrewer YlOrBr: low He-3 pale yellow, high He-3 brown",
    ),
    # Elevation: low blue-green to high pale (hypsometric tints), drawn half transparent
    # over the hillshade so relief reads through it.
    "dem_m": (
        [
            (0.0, "#333399", 255),
            (0.2, "#00b2b2", 255),
            (0.4, "#99eb85", 255),
            (0.6, "#ccbe7d", 255),
            (0.8, "#997c76", 255),
            (1.0, "#ffffff", 255),
        ],
        "matplotlib 'terrain' hypsometric tints, 50 % opacity over the hillshade",
    ),
}
#: Generic sequential ramp for layers prospect does not know: viridis (perceptually
#: uniform, colour-blind safe, monotonic lightness).
_DEFAULT_RAMP: list[tuple[float, str, int]] = [
    (0.0, "#440154", 255),
    (0.2, "#414487", 255),
    (0.4, "#2a788e", 255),
    (0.6, "#22a884", 255),
    (0.8, "#7ad151", 255),
    (1.0, "#fde725", 255),
]
#: Layer opacity per layer name (1 when not listed).
_OPACITY = {"dem_m": 0.5}
#: Raster layers whose exact 0 is fully transparent (never permanently shadowed).
_ZERO_TRANSPARENT = frozenset({"psr_fraction", "psr_mask"})
#: Raster layers with a renderer of their own (every other layer: a pseudocolour ramp).
RENDERERS: dict[str, str] = {"hillshade": "singlebandgray", "ice_stability_class": "paletted"}
#: Ice stability classes (``prospect.resources.ice``): value, label, colour, alpha.
ICE_CLASSES: list[tuple[int, str, str, int]] = [
    (0, "not stable", "#000000", 0),
    (1, "shallow subsurface", "#6baed6", 200),
    (2, "surface", "#08306b", 230),
    (3, "shadowed, likely too warm", "#a8a29e", 200),
]

#: Sites ranked this high or better are drawn as red stars; up to TOP_LABELLED as orange
#: circles with a "site_id (#rank)" label; the rest as small translucent dots.
TOP_HIGHLIGHT = 3
TOP_LABELLED = 10

#: Vector kinds and their default geometry type.
VECTOR_KINDS: dict[str, str] = {
    "distinct_sites": "Point",
    "traverses": "LineString",
    "places": "Polygon",
    "site_power": "Point",
    "sites": "Point",
    "candidates": "Polygon",
    "psr": "Polygon",
    "craters": "Point",
    "cold_traps": "Point",
    "regions": "Polygon",
}
_GEOMETRY_CODES = {"Point": "0", "LineString": "1", "Polygon": "2"}
_SYMBOL_TYPES = {"Point": "marker", "LineString": "line", "Polygon": "fill"}


# --- XML helpers -------------------------------------------------------------------


def element(
    tag: str, attrib: Mapping[str, object] | None = None, *children: ET.Element | None, text: str | None = None
) -> ET.Element:
    """An element with its attributes in sorted order (deterministic output)."""
    e = ET.Element(tag, {k: str(v) for k, v in sorted((attrib or {}).items())})
    for c in children:
        if c is not None:
            e.append(c)
    if text is not None:
        e.text = text
    return e


def qgis_number(value: float) -> str:
    """A number the way QGIS writes one: shortest round-trip form, integers without ``.0``."""
    value = float(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _hex_to_rgb(colour: str) -> tuple[int, int, int]:
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def _rgba(colour: str, alpha: int = 255) -> str:
    r, g, b = _hex_to_rgb(colour)
    return f"{r},{g},{b},{alpha}"


def _options(props: dict[str, str]) -> list[ET.Element]:
    """A symbol layer's properties as QGIS 3.22 writes them: an ``Option`` map and the
    legacy ``prop`` list (read by older QGIS)."""
    opt = element(
        "Option",
        {"type": "Map"},
        *(element("Option", {"name": k, "type": "QString", "value": v}) for k, v in sorted(props.items())),
    )
    return [opt, *(element("prop", {"k": k, "v": v}) for k, v in sorted(props.items()))]


def _empty_dd(tag: str = "data_defined_properties") -> ET.Element:
    return element(
        tag,
        None,
        element(
            "Option",
            {"type": "Map"},
            element("Option", {"name": "name", "type": "QString", "value": ""}),
            element("Option", {"name": "properties"}),
            element("Option", {"name": "type", "type": "QString", "value": "collection"}),
        ),
    )


def _symbol_layer(cls: str, props: dict[str, str], render_pass: int = 0) -> ET.Element:
    e = element("layer", {"class": cls, "enabled": "1", "locked": "0", "pass": str(render_pass)})
    for child in _options(props):
        e.append(child)
    e.append(_empty_dd())
    return e


def _symbol(name: str, kind: str, layers: Iterable[ET.Element], alpha: float = 1.0) -> ET.Element:
    e = element(
        "symbol", {"alpha": qgis_number(alpha), "clip_to_extent": "1", "force_rhr": "0", "name": name, "type": kind}
    )
    e.append(_empty_dd())
    for layer in layers:
        e.append(layer)
    return e


def _marker(
    shape: str,
    fill: str,
    size_mm: float,
    *,
    outline: str = "35,35,35,255",
    outline_mm: float = 0.2,
    render_pass: int = 0,
) -> ET.Element:
    return _symbol_layer(
        "SimpleMarker",
        render_pass=render_pass,
        props={
            "angle": "0",
            "color": fill,
            "horizontal_anchor_point": "1",
            "joinstyle": "bevel",
            "name": shape,
            "offset": "0,0",
            "offset_map_unit_scale": "3x:0,0,0,0,0,0",
            "offset_unit": "MM",
            "outline_color": outline,
            "outline_style": "solid",
            "outline_width": qgis_number(outline_mm),
            "outline_width_map_unit_scale": "3x:0,0,0,0,0,0",
            "outline_width_unit": "MM",
            "scale_method": "diameter",
            "size": qgis_number(size_mm),
            "size_map_unit_scale": "3x:0,0,0,0,0,0",
            "size_unit": "MM",
            "vertical_anchor_point": "1",
        },
    )


def _fill(
    fill: str,
    *,
    style: str = "solid",
    outline: str = "35,35,35,255",
    outline_mm: float = 0.26,
    outline_style: str = "solid",
) -> ET.Element:
    return _symbol_layer(
        "SimpleFill",
        {
            "border_width_map_unit_scale": "3x:0,0,0,0,0,0",
            "color": fill,
            "joinstyle": "bevel",
            "offset": "0,0",
            "offset_map_unit_scale": "3x:0,0,0,0,0,0",
            "offset_unit": "MM",
            "outline_color": outline,
            "outline_style": outline_style,
            "outline_width": qgis_number(outline_mm),
            "outline_width_unit": "MM",
            "style": style,
        },
    )


def _line(colour: str, width_mm: float = 0.4, style: str = "solid") -> ET.Element:
    return _symbol_layer(
        "SimpleLine",
        {
            "capstyle": "square",
            "joinstyle": "bevel",
            "line_color": colour,
            "line_style": style,
            "line_width": qgis_number(width_mm),
            "line_width_unit": "MM",
            "offset": "0",
            "offset_map_unit_scale": "3x:0,0,0,0,0,0",
            "offset_unit": "MM",
            "use_custom_dash": "0",
            "width_map_unit_scale": "3x:0,0,0,0,0,0",
        },
    )


def _labeling(
    expression: str,
    *,
    size_pt: float = 8.0,
    colour: str = "20,20,20,255",
    geometry: str = "Point",
    bold: bool = False,
    priority: int = 5,
) -> ET.Element:
    """Simple labeling by an expression, with a white buffer so labels read on any map.

    Placement: points "around point" (``placement="0"``, 1.5 mm away), polygons "around
    centroid" ``placement="0"`` too (QgsPalLayerSettings::AroundPoint), lines parallel.
    ``priority`` 0..10: which labels win when labels collide (sites: 10).
    """
    text_style = element(
        "text-style",
        {
            "fieldName": expression,
            "isExpression": "1",
            "fontSize": qgis_number(size_pt),
            "fontSizeUnit": "Point",
            "fontWeight": "75" if bold else "50",
            "textColor": colour,
            "textOpacity": "1",
            "allowHtml": "0",
            "fontItalic": "0",
            "fontUnderline": "0",
            "fontStrikeout": "0",
            "multilineHeight": "1",
            "textOrientation": "horizontal",
            "capitalization": "0",
            "blendMode": "0",
            "namedStyle": "",
            "useSubstitutions": "0",
            "previewBkgrdColor": "255,255,255,255",
            "fontSizeMapUnitScale": "3x:0,0,0,0,0,0",
            "fontLetterSpacing": "0",
            "fontWordSpacing": "0",
            "fontKerning": "1",
            "legendString": "Aa",
        },
        element("families"),
        element(
            "text-buffer",
            {
                "bufferDraw": "1",
                "bufferSize": "0.8",
                "bufferSizeUnits": "MM",
                "bufferColor": "255,255,255,255",
                "bufferOpacity": "0.85",
                "bufferNoFill": "1",
                "bufferJoinStyle": "128",
                "bufferBlendMode": "0",
                "bufferSizeMapUnitScale": "3x:0,0,0,0,0,0",
            },
        ),
        element(
            "text-mask",
            {
                "maskEnabled": "0",
                "maskType": "0",
                "maskSize": "1.5",
                "maskSizeUnits": "MM",
                "maskOpacity": "1",
                "maskJoinStyle": "128",
                "maskedSymbolLayers": "",
                "maskSizeMapUnitScale": "3x:0,0,0,0,0,0",
            },
        ),
        element("background", {"shapeDraw": "0"}),
        element("shadow", {"shadowDraw": "0"}),
        _empty_dd("dd_properties"),
        element("substitutions"),
    )
    layer_type = {"Point": "PointGeometry", "LineString": "LineGeometry", "Polygon": "PolygonGeometry"}[geometry]
    placement = {"Point": "0", "LineString": "2", "Polygon": "0"}[geometry]  # AroundPoint / Line / AroundPoint
    settings = element(
        "settings",
        {"calloutType": "simple"},
        text_style,
        element(
            "text-format",
            {
                "multilineAlign": "3",
                "wrapChar": "",
                "autoWrapLength": "0",
                "useMaxLineLengthForAutoWrap": "1",
                "addDirectionSymbol": "0",
                "formatNumbers": "0",
                "decimals": "3",
                "plussign": "0",
            },
        ),
        element(
            "placement",
            {
                "placement": placement,
                "placementFlags": "10",
                "dist": "1.5",
                "distUnits": "MM",
                "distMapUnitScale": "3x:0,0,0,0,0,0",
                "quadOffset": "4",
                "priority": str(priority),
                "offsetType": "0",
                "layerType": layer_type,
                "centroidInside": "1",
                "centroidWhole": "0",
                "fitInPolygonOnly": "0",
                "polygonPlacementFlags": "2",
                "xOffset": "0",
                "yOffset": "0",
                "offsetUnits": "MM",
                "labelOffsetMapUnitScale": "3x:0,0,0,0,0,0",
                "rotationAngle": "0",
                "preserveRotation": "1",
                "repeatDistance": "0",
                "repeatDistanceUnits": "MM",
                "overrunDistance": "0",
                "overrunDistanceUnit": "MM",
                "geometryGenerator": "",
                "geometryGeneratorEnabled": "0",
                "geometryGeneratorType": "PointGeometry",
                "predefinedPositionOrder": "TR,TL,BR,BL,R,L,TSR,BSR",
            },
        ),
        element(
            "rendering",
            {
                "drawLabels": "1",
                "obstacle": "1",
                "obstacleType": "1",
                "obstacleFactor": "1",
                "displayAll": "0",
                "upsidedownLabels": "0",
                "labelPerPart": "0",
                "mergeLines": "0",
                "minFeatureSize": "0",
                "limitNumLabels": "0",
                "maxNumLabels": "2000",
                "scaleVisibility": "0",
                "scaleMin": "0",
                "scaleMax": "0",
                "fontLimitPixelSize": "0",
                "fontMinPixelSize": "0",
                "fontMaxPixelSize": "10000",
                "zIndex": "0",
                "unplacedVisibility": "0",
            },
        ),
        _empty_dd("dd_properties"),
        element(
            "callout",
            {"type": "simple"},
            element("Option", {"type": "Map"}, element("Option", {"name": "enabled", "type": "QString", "value": "0"})),
        ),
    )
    return element("labeling", {"type": "simple"}, settings)


def _document(root: ET.Element) -> str:
    ET.indent(root, space="  ")
    return _DOCTYPE + "\n" + ET.tostring(root, encoding="unicode") + "\n"


def _flags() -> ET.Element:
    return element(
        "flags",
        None,
        element("Identifiable", text="1"),
        element("Removable", text="1"),
        element("Searchable", text="1"),
        element("Private", text="0"),
    )


# --- rasters -------------------------------------------------------------------------


def _min_max_origin() -> ET.Element:
    """Fixed min/max (``limits=None``): QGIS keeps the given vmin/vmax instead of
    re-stretching to the statistics of whatever extent is on screen."""
    return element(
        "minMaxOrigin",
        None,
        element("limits", text="None"),
        element("extent", text="WholeRaster"),
        element("statAccuracy", text="Estimated"),
        element("cumulativeCutLower", text="0.02"),
        element("cumulativeCutUpper", text="0.98"),
        element("stdDevFactor", text="2"),
    )


def _legend_settings(units: str) -> ET.Element:
    return element(
        "rampLegendSettings",
        {
            "direction": "0",
            "maximumLabel": "",
            "minimumLabel": "",
            "orientation": "2",
            "prefix": "",
            "suffix": f" {units}" if units else "",
            "useContinuousLegend": "1",
        },
    )


def _label(value: float, units: str) -> str:
    text = f"{value:.6g}"
    return f"{text} {units}" if units else text


def _pipe(renderer: ET.Element, *, resample: str) -> ET.Element:
    return element(
        "pipe",
        None,
        element(
            "provider",
            None,
            element(
                "resampling",
                {
                    "enabled": "false",
                    "maxOversampling": "2",
                    "zoomedInResamplingMethod": "nearestNeighbour",
                    "zoomedOutResamplingMethod": "nearestNeighbour",
                },
            ),
        ),
        renderer,
        element("brightnesscontrast", {"brightness": "0", "contrast": "0", "gamma": "1"}),
        element(
            "huesaturation",
            {
                "colorizeBlue": "128",
                "colorizeGreen": "128",
                "colorizeOn": "0",
                "colorizeRed": "255",
                "colorizeStrength": "100",
                "grayscaleMode": "0",
                "invertColors": "0",
                "saturation": "0",
            },
        ),
        element(
            "rasterresampler",
            {"maxOversampling": "2", **({"zoomedInResampler": resample} if resample != "nearestNeighbour" else {})},
        ),
        element("resamplingStage", text="resamplingFilter"),
    )


def _raster_document(renderer: ET.Element, *, resample: str = "bilinear") -> str:
    root = element(
        "qgis",
        {
            "hasScaleBasedVisibilityFlag": "0",
            "maxScale": "0",
            "minScale": "1e+08",
            "styleCategories": "AllStyleCategories",
            "version": QGIS_VERSION,
        },
        _flags(),
        element(
            "customproperties",
            None,
            element(
                "Option",
                {"type": "Map"},
                element("Option", {"name": "identify/format", "type": "QString", "value": "Value"}),
            ),
        ),
        _pipe(renderer, resample=resample),
        element("blendMode", text="0"),
    )
    return _document(root)


def _check_range(stem: str, vmin: float, vmax: float) -> tuple[float, float]:
    vmin, vmax = float(vmin), float(vmax)
    if not (math.isfinite(vmin) and math.isfinite(vmax)):
        raise ValueError(f"{stem}: colour range must be finite, got vmin={vmin!r}, vmax={vmax!r}")
    if vmax < vmin:
        raise ValueError(f"{stem}: vmax {vmax!r} < vmin {vmin!r}")
    if vmax == vmin:  # a constant map: give the ramp a non-empty span so QGIS draws it
        span = abs(vmin) * 1e-6 or 1.0
        vmin, vmax = vmin - span / 2, vmax + span / 2
    return vmin, vmax


def raster_qml(name: str, *, vmin: float, vmax: float, units: str = "") -> str:
    """The full QGIS 3.22 ``.qml`` style of layer ``name``'s single-band map ``maps/<stem>.tif``.

    ``vmin``/``vmax`` fix the ends of the colour ramp (QGIS ``limits=None``, so the
    stretch does not change with the view); ``units`` is appended to the legend labels.
    ``hillshade`` gets a grey renderer, ``ice_stability_class`` a paletted one with the
    classes of :data:`ICE_CLASSES` (class 0 transparent); every other layer a
    pseudocolour renderer with the ramp from :data:`RASTER_RAMPS` (unknown layers:
    viridis), exact 0 transparent on the PSR layers. Nodata pixels are left transparent (QGIS default, ``nodataColor=""``).
    """
    if name == "hillshade":
        vmin, vmax = _check_range(name, vmin, vmax)
        ce = element(
            "contrastEnhancement",
            None,
            element("minValue", text=qgis_number(vmin)),
            element("maxValue", text=qgis_number(vmax)),
            element("algorithm", text="StretchToMinimumMaximum"),
        )
        renderer = element(
            "rasterrenderer",
            {
                "alphaBand": "-1",
                "gradient": "BlackToWhite",
                "grayBand": "1",
                "nodataColor": "",
                "opacity": "1",
                "type": "singlebandgray",
            },
            element("rasterTransparency"),
            _min_max_origin(),
            ce,
            _legend_settings(units),
        )
        return _raster_document(renderer, resample="bilinear")
    if name == "ice_stability_class":
        palette = element(
            "colorPalette",
            None,
            *(
                element("paletteEntry", {"alpha": str(alpha), "color": colour, "label": label, "value": str(value)})
                for value, label, colour, alpha in ICE_CLASSES
            ),
        )
        renderer = element(
            "rasterrenderer",
            {"alphaBand": "-1", "band": "1", "nodataColor": "", "opacity": "1", "type": "paletted"},
            element("rasterTransparency"),
            _min_max_origin(),
            palette,
        )
        return _raster_document(renderer, resample="nearestNeighbour")

    vmin, vmax = _check_range(name, vmin, vmax)
    stops = RASTER_RAMPS[name][0] if name in RASTER_RAMPS else _DEFAULT_RAMP
    items = []
    for frac, colour, alpha in stops:
        value = vmin + frac * (vmax - vmin)
        items.append(
            element(
                "item",
                {"alpha": str(alpha), "color": colour, "label": _label(value, units), "value": qgis_number(value)},
            )
        )
    # the same ramp as a QGIS gradient, so "Classify" in the GUI keeps these colours
    inner = ":".join(f"{qgis_number(f)};{_rgba(c, a)}" for f, c, a in stops[1:-1])
    ramp = element(
        "colorramp",
        {"name": "[source]", "type": "gradient"},
        element("prop", {"k": "color1", "v": _rgba(stops[0][1], stops[0][2])}),
        element("prop", {"k": "color2", "v": _rgba(stops[-1][1], stops[-1][2])}),
        element("prop", {"k": "discrete", "v": "0"}),
        element("prop", {"k": "rampType", "v": "gradient"}),
        element("prop", {"k": "stops", "v": inner}),
    )
    shader = element(
        "colorrampshader",
        {
            "classificationMode": "1",
            "clip": "0",
            "colorRampType": "INTERPOLATED",
            "labelPrecision": "4",
            "maximumValue": qgis_number(vmax),
            "minimumValue": qgis_number(vmin),
        },
        ramp,
        *items,
        _legend_settings(units),
    )
    transparency = element("rasterTransparency")
    if name in _ZERO_TRANSPARENT:  # exactly 0 (never permanently shadowed) is fully transparent
        transparency.append(
            element(
                "singleValuePixelList",
                None,
                element("pixelListEntry", {"max": "0", "min": "0", "percentTransparent": "100"}),
            )
        )
    renderer = element(
        "rasterrenderer",
        {
            "alphaBand": "-1",
            "band": "1",
            "classificationMax": qgis_number(vmax),
            "classificationMin": qgis_number(vmin),
            "nodataColor": "",
            "opacity": qgis_number(_OPACITY.get(name, 1.0)),
            "type": "singlebandpseudocolor",
        },
        transparency,
        _min_max_origin(),
        element("rastershader", None, shader),
    )
    return _raster_document(renderer)


def renderer_type(name: str) -> str:
    """The QGIS raster renderer type :func:`raster_qml` uses for layer ``name``."""
    return RENDERERS.get(name, "singlebandpseudocolor")


# --- vectors -------------------------------------------------------------------------


def _stable_key(*parts: str) -> str:
    return "{" + str(uuid.uuid5(uuid.NAMESPACE_URL, "prospect-qml:" + "|".join(parts))) + "}"


def _rule_renderer(
    kind: str, rules: Sequence[tuple[str, str, ET.Element]], *, symbol_levels: bool = False
) -> ET.Element:
    """A rule-based renderer; ``rules`` are ``(filter expression, legend label, symbol)``."""
    rules_el = element("rules", {"key": _stable_key(kind, "root")})
    symbols = element("symbols")
    for i, (flt, label, sym) in enumerate(rules):
        rules_el.append(
            element("rule", {"filter": flt, "key": _stable_key(kind, str(i), flt), "label": label, "symbol": str(i)})
        )
        sym.set("name", str(i))
        symbols.append(sym)
    return element(
        "renderer-v2",
        {
            "enableorderby": "0",
            "forceraster": "0",
            "referencescale": "-1",
            "symbollevels": "1" if symbol_levels else "0",
            "type": "RuleRenderer",
        },
        rules_el,
        symbols,
    )


def _single_renderer(sym: ET.Element) -> ET.Element:
    sym.set("name", "0")
    return element(
        "renderer-v2",
        {"enableorderby": "0", "forceraster": "0", "referencescale": "-1", "symbollevels": "0", "type": "singleSymbol"},
        element("symbols", None, sym),
        element("rotation"),
        element("sizescale"),
    )


def _any_field(*names: str) -> str:
    """An expression taking the first non-NULL of several possible columns: ``attribute()``
    returns NULL for a missing field, where a plain ``"column"`` reference makes the whole
    expression fail. The one-argument form reads the current feature; in QGIS 3.22
    ``attribute(@feature, ...)`` evaluated to NULL in a plain feature context."""
    parts = [f"attribute('{n}')" for n in names]
    return parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"


#: Why each vector kind looks as it does.
VECTOR_STYLE_NOTES: dict[str, str] = {
    "distinct_sites": "the distinct top N (one site per place): large numbered red circles, labelled "
    "'#rank_distinct site_id', drawn above everything",
    "traverses": "least-cost traverse from a distinct site to its nearest cold trap: solid dark cyan line",
    "places": "places (connected passing areas, at most a region across): thin green outline, faint green fill",
    "site_power": "power at the distinct sites (a row per mast height): small orange triangles",
    "sites": "rule-based: top 3 red stars, ranks 4-10 orange circles (both labelled 'site_id (#rank)' "
    "and drawn on top), the rest small translucent yellow dots",
    "candidates": "thin translucent orange outline only (the candidate disc around a site), no fill",
    "psr": "permanently shadowed regions: semi-transparent blue fill, thin dark blue outline",
    "craters": "small hollow grey circles (catalogue centres), unlabelled (thousands of them)",
    "cold_traps": "cyan diamonds labelled with the crater name",
    "regions": "Artemis III candidate regions: dashed magenta outline, labelled with 'name'",
}


def _vector_symbol(kind: str, geometry: str) -> ET.Element:
    st = _SYMBOL_TYPES[geometry]
    if geometry == "Point":
        if kind == "craters":
            return _symbol("0", st, [_marker("circle", "0,0,0,0", 1.6, outline="90,90,90,255", outline_mm=0.25)])
        if kind == "cold_traps":
            return _symbol("0", st, [_marker("diamond", "0,200,230,255", 3.2, outline="0,60,90,255")])
        if kind == "site_power":
            return _symbol("0", st, [_marker("triangle", "255,150,0,255", 3.0, outline="90,50,0,255")])
        if kind in ("candidates", "psr", "regions"):  # point versions of the area layers
            colour = {"candidates": "240,120,0,255", "psr": "30,80,200,160", "regions": "200,0,160,255"}[kind]
            return _symbol("0", st, [_marker("circle", "0,0,0,0", 6.0, outline=colour, outline_mm=0.5)])
        return _symbol("0", st, [_marker("circle", "120,120,120,255", 2.0)])
    if geometry == "LineString":
        if kind == "traverses":
            return _symbol("0", st, [_line("0,110,130,255", 0.7)])
        return _symbol("0", st, [_line("200,0,160,255", 0.4, "dash" if kind == "regions" else "solid")])
    if kind == "places":
        return _symbol("0", st, [_fill("40,160,60,40", outline="20,110,40,220", outline_mm=0.3)])
    if kind == "candidates":
        return _symbol("0", st, [_fill("0,0,0,0", style="no", outline="240,120,0,170", outline_mm=0.3)])
    if kind == "psr":
        return _symbol("0", st, [_fill("30,80,200,110", outline="20,50,140,200", outline_mm=0.15)])
    if kind == "regions":
        return _symbol(
            "0", st, [_fill("0,0,0,0", style="no", outline="200,0,160,255", outline_mm=0.6, outline_style="dash")]
        )
    if kind == "craters":
        return _symbol("0", st, [_fill("0,0,0,0", style="no", outline="90,90,90,255", outline_mm=0.2)])
    return _symbol("0", st, [_fill("120,120,120,120")])


def vector_qml(kind: str, *, geometry: str | None = None) -> str:
    """The full QGIS 3.22 ``.qml`` style of a vector layer of ``sites.gpkg``.

    ``kind``: one of :data:`VECTOR_KINDS` (sites, candidates, psr, craters, cold_traps,
    regions; see :data:`VECTOR_STYLE_NOTES`). ``geometry`` ("Point", "LineString" or
    "Polygon") overrides the kind's default geometry, e.g. regions read from the
    Artemis III CSV as centre points. QGIS refuses a style whose geometry type differs
    from the layer's, so the two must agree.
    """
    if kind not in VECTOR_KINDS:
        raise ValueError(f"unknown vector kind {kind!r}; known: {', '.join(VECTOR_KINDS)}")
    geometry = geometry or VECTOR_KINDS[kind]
    geometry = {"MultiPoint": "Point", "MultiPolygon": "Polygon", "MultiLineString": "LineString"}.get(
        geometry, geometry
    )
    if geometry not in _GEOMETRY_CODES:
        raise ValueError(f"{kind}: geometry must be Point, LineString or Polygon, not {geometry!r}")
    labeling = None
    if kind == "sites" and geometry == "Point":
        # symbol levels (render passes) draw the best sites last, on top of the thousands of
        # lattice sites a run may rank
        renderer = _rule_renderer(
            kind,
            [
                (
                    f'"rank" <= {TOP_HIGHLIGHT}',
                    f"top {TOP_HIGHLIGHT}",
                    _symbol(
                        "0",
                        "marker",
                        [
                            _marker(
                                "star", "220,20,30,255", 6.0, outline="255,255,255,255", outline_mm=0.4, render_pass=2
                            )
                        ],
                    ),
                ),
                (
                    f'"rank" > {TOP_HIGHLIGHT} AND "rank" <= {TOP_LABELLED}',
                    f"top {TOP_HIGHLIGHT + 1}-{TOP_LABELLED}",
                    _symbol(
                        "0",
                        "marker",
                        [_marker("circle", "255,140,0,255", 3.6, outline="60,30,0,255", outline_mm=0.3, render_pass=1)],
                    ),
                ),
                (
                    "ELSE",
                    "other sites",
                    _symbol(
                        "0",
                        "marker",
                        [_marker("circle", "255,220,60,150", 1.4, outline="80,80,80,120", outline_mm=0.1)],
                    ),
                ),
            ],
            symbol_levels=True,
        )
        # only the top sites are labelled: labelling ~10^4 lattice sites takes QGIS ~45 s
        # per render and buries the map
        labeling = _labeling(
            f'if("rank" <= {TOP_LABELLED}, concat("site_id", \' (#\', "rank", \')\'), NULL)',
            size_pt=8,
            bold=True,
            geometry=geometry,
            priority=10,
        )
    elif kind == "distinct_sites" and geometry == "Point":
        renderer = _single_renderer(
            _symbol("0", "marker", [_marker("circle", "200,20,30,255", 5.0, outline="255,255,255,255", outline_mm=0.5)])
        )
        labeling = _labeling(
            "concat('#', \"rank_distinct\", ' ', \"site_id\")", size_pt=9, bold=True, geometry=geometry, priority=10
        )
    else:
        renderer = _single_renderer(_vector_symbol(kind, geometry))
        if kind == "cold_traps":
            labeling = _labeling(
                _any_field("name", "Crater Name", "crater_name"), size_pt=7.5, colour="0,60,90,255", geometry=geometry
            )
        elif kind == "regions":
            labeling = _labeling(
                _any_field("name", "region", "site_name", "id"), size_pt=8, colour="140,0,110,255", geometry=geometry
            )
    attrs = {
        "hasScaleBasedVisibilityFlag": "0",
        "labelsEnabled": "1" if labeling is not None else "0",
        "maxScale": "0",
        "minScale": "1e+08",
        "readOnly": "0",
        "simplifyAlgorithm": "0",
        "simplifyDrawingHints": "1" if geometry != "Point" else "0",
        "simplifyDrawingTol": "1",
        "simplifyLocal": "1",
        "simplifyMaxScale": "1",
        "styleCategories": "AllStyleCategories",
        "symbologyReferenceScale": "-1",
        "version": QGIS_VERSION,
    }
    root = element(
        "qgis",
        attrs,
        _flags(),
        renderer,
        labeling,
        element("blendMode", text="0"),
        element("featureBlendMode", text="0"),
        element("layerOpacity", text="1"),
        element("layerGeometryType", text=_GEOMETRY_CODES[geometry]),
    )
    return _document(root)
