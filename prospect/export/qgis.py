"""A QGIS 3.22 project (``.qgz``) of a run, written without PyQGIS.

A ``.qgz`` is a zip archive holding one ``<name>.qgs`` XML document (QGIS source
``src/core/qgsarchive.cpp``: the first member ending in ``.qgs`` is the project; the
auxiliary-storage ``.qgd`` member is optional). The XML below is the subset of what
QGIS 3.22.16 writes itself (``QgsProject::writeProjectFile``) that a project needs,
learnt by saving projects from PyQGIS and checked by opening the output in PyQGIS
(``tests/test_qgis.py``, ``tests/qgis_check.py``):

- ``projectCrs/spatialrefsys``: QGIS reads the ``wkt`` element when ``srsid`` is 0 or
  absent (``QgsCoordinateReferenceSystem::readXml``), so each CRS is written as its
  WKT2_2019 definition; QGIS 3.22 / PROJ 9.1 accepts the IAU_2015 lunar definitions
  and recognises the ``IAU_2015:*`` code from them. The project CRS is only read when
  the ``SpatialRefSys/ProjectionsEnabled`` property is 1.
- ``properties/Measure/Ellipsoid`` = :func:`prospect.lunar.qgis_ellipsoid`
  (``PARAMETER:<a>:<b>``, a custom sphere), so distances and areas QGIS measures in the
  project are on the lunar sphere, not an Earth ellipsoid.
- Each ``maplayer`` carries the layer's own CRS (it overrides what the data provider
  reports, ``QgsMapLayer::readLayerXml``) and its style: the children of the layer's QML
  document (``prospect.export.styles``) are embedded as they are.
- Paths are relative (``Paths/Absolute`` false, sources ``./...``), resolved against the
  folder of the ``.qgz``, so the run folder can be moved or zipped.

Output is deterministic: attributes are sorted, layer ids are derived from the layer
name and source (uuid5), no timestamps or user names are written and zip members have
a fixed date, so the same inputs give a byte-identical ``.qgz``. The archive is written
atomically (:func:`prospect.io.writers.atomic_write`).
"""

from __future__ import annotations

import math
import os
import re
import uuid
import warnings
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from prospect import lunar
from prospect.export.styles import element, qgis_number
from prospect.io.writers import atomic_write

__all__ = ["ProjectLayer", "layer_id", "project_xml", "write_project"]

#: The QGIS version a written project claims (QGIS upgrades projects only from < 3.0).
QGIS_VERSION = "3.22.0-Białowieża"
_DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>"
#: Fixed timestamp of the zip member (the zip format's earliest date).
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_PROVIDERS = {"raster": "gdal", "vector": "ogr"}
_WKB_TYPES = {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"}
#: Root attributes of a QML document that are not maplayer attributes.
_QML_ROOT_SKIP = {"version"}
#: QML children that a project maplayer does not hold (the import-time geometry check).
_QML_CHILD_SKIP = {"layerGeometryType"}


@dataclass(frozen=True)
class ProjectLayer:
    """One layer of the project.

    ``source`` is relative to the project folder (``"maps/slope_deg.tif"``,
    ``"sites.gpkg|layername=sites"``); ``style_qml`` the full QML document
    (:mod:`prospect.export.styles`); ``extent`` ``(xmin, ymin, xmax, ymax)`` in ``crs``;
    ``geometry`` the vector geometry type ("Point", "Polygon", ...).
    """

    name: str
    source: str
    kind: str
    group: str
    style_qml: str
    crs: lunar.LunarCRS
    extent: tuple[float, float, float, float]
    geometry: str | None = None
    visible: bool = True


# --- XML helpers -------------------------------------------------------------------


def _sort_attributes(elem: ET.Element) -> None:
    for e in elem.iter():
        if len(e.attrib) > 1:
            items = sorted(e.attrib.items())
            e.attrib.clear()
            e.attrib.update(items)


def _check_extent(extent: Sequence[float], what: str) -> tuple[float, float, float, float]:
    if len(extent) != 4:
        raise ValueError(f"{what}: extent must be (xmin, ymin, xmax, ymax), got {extent!r}")
    xmin, ymin, xmax, ymax = (float(v) for v in extent)
    if not all(math.isfinite(v) for v in (xmin, ymin, xmax, ymax)) or xmin > xmax or ymin > ymax:
        raise ValueError(f"{what}: invalid extent {extent!r}")
    return xmin, ymin, xmax, ymax


def _rect(tag: str, extent: Sequence[float]) -> ET.Element:
    xmin, ymin, xmax, ymax = extent
    return element(
        tag,
        None,
        element("xmin", text=qgis_number(xmin)),
        element("ymin", text=qgis_number(ymin)),
        element("xmax", text=qgis_number(xmax)),
        element("ymax", text=qgis_number(ymax)),
    )


# --- CRS -----------------------------------------------------------------------------


def _crs_wkt(crs: lunar.LunarCRS) -> str:
    """WKT2_2019 of a lunar CRS, as QGIS writes it, minus the ``ID["EPSG",...]`` nodes
    of units and projection methods (PROJ resolves them by name; keeping EPSG out of
    the project keeps every reference in it lunar). The ``ID["IAU",...]`` nodes stay:
    QGIS recognises the IAU_2015 code from them."""
    wkt = crs.to_pyproj().to_wkt("WKT2_2019")
    return re.sub(r',\s*ID\["EPSG",\s*\d+\]', "", wkt)


def _spatialrefsys(crs: lunar.LunarCRS) -> ET.Element:
    """``<spatialrefsys>`` as ``QgsCoordinateReferenceSystem::writeXml`` writes a custom CRS.

    ``srsid`` 0 makes QGIS build the CRS from ``wkt`` (the installation-specific srs.db
    ids QGIS writes for authority codes are not portable).
    """
    p = crs.to_pyproj()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        proj4 = p.to_proj4()
        params = p.to_dict()
    if abs(crs.radius_m - 6.378e6) < 1e5 or p.ellipsoid is None:
        raise ValueError(f"not a lunar CRS: {p.name}")  # LunarCRS guarantees this; belt and braces
    return element(
        "spatialrefsys",
        None,
        element("wkt", text=_crs_wkt(crs)),
        element("proj4", text=proj4),
        element("srsid", text="0"),
        element("srid", text="0"),
        element("authid", text=crs.code or ""),
        element("description", text=p.name or str(crs)),
        element("projectionacronym", text=str(params.get("proj", ""))),
        element("ellipsoidacronym", text=lunar.qgis_ellipsoid(crs.radius_m)),
        element("geographicflag", text="true" if crs.is_geographic else "false"),
    )


def _map_units(crs: lunar.LunarCRS) -> str:
    return "degrees" if crs.is_geographic else "meters"


# --- layers --------------------------------------------------------------------------


def layer_id(name: str, source: str) -> str:
    """A stable QGIS layer id: the name made identifier-safe plus a uuid5 of name and source
    (QGIS's own ids are ``<name>_<uuid4>``)."""
    base = re.sub(r"\W", "_", name, flags=re.ASCII).strip("_") or "layer"
    return f"{base}_{uuid.uuid5(uuid.NAMESPACE_URL, f'prospect-qgis:{name}|{source}')}".replace("-", "_")


def _relative_source(source: str, folder: Path) -> str:
    """``./``-prefixed POSIX path of a layer source relative to the project folder,
    keeping an OGR ``|layername=...`` suffix."""
    path, sep, suffix = source.partition("|")
    p = Path(path)
    if p.is_absolute():
        p = Path(os.path.relpath(p, folder.resolve()))
    posix = PurePosixPath(*p.parts).as_posix() if p.parts else "."
    if posix.startswith(("../", "./")) or posix == "..":
        rel = posix
    else:
        rel = "./" + posix
    return rel + sep + suffix


def _parse_qml(qml: str, what: str) -> ET.Element:
    try:
        root = ET.fromstring(qml.encode("utf-8"))
    except ET.ParseError as exc:
        raise ValueError(f"{what}: style is not valid XML ({exc})") from None
    if root.tag != "qgis":
        raise ValueError(f"{what}: style root is <{root.tag}>, not a QGIS QML <qgis> document")
    return root


def _maplayer(layer: ProjectLayer, lid: str, source: str) -> ET.Element:
    if layer.kind not in _PROVIDERS:
        raise ValueError(f"layer {layer.name!r}: kind must be 'raster' or 'vector', not {layer.kind!r}")
    if not isinstance(layer.crs, lunar.LunarCRS):
        raise TypeError(f"layer {layer.name!r}: crs must be a prospect.lunar.LunarCRS")
    extent = _check_extent(layer.extent, f"layer {layer.name!r}")
    qml = _parse_qml(layer.style_qml, f"layer {layer.name!r}")
    attrs = {k: v for k, v in qml.attrib.items() if k not in _QML_ROOT_SKIP}
    attrs["type"] = layer.kind
    if layer.kind == "vector" and layer.geometry is not None:
        if layer.geometry not in _WKB_TYPES:
            raise ValueError(f"layer {layer.name!r}: unknown geometry {layer.geometry!r}")
        attrs["geometry"] = layer.geometry.replace("Multi", "")
        attrs["wkbType"] = layer.geometry
    provider = _PROVIDERS[layer.kind]
    e = element(
        "maplayer",
        attrs,
        _rect("extent", extent),
        element("id", text=lid),
        element("datasource", text=source),
        element("keywordList", None, element("value", text="")),
        element("layername", text=layer.name),
        element("srs", None, _spatialrefsys(layer.crs)),
        element("provider", {"encoding": "UTF-8"} if layer.kind == "vector" else None, text=provider),
    )
    if layer.kind == "raster":
        e.append(element("noData", None, element("noDataList", {"bandNo": "1", "useSrcNoData": "1"})))
    e.append(
        element("map-layer-style-manager", {"current": "default"}, element("map-layer-style", {"name": "default"}))
    )
    for child in qml:
        if child.tag not in _QML_CHILD_SKIP:
            e.append(child)
    return e


def _tree_layer(layer: ProjectLayer, lid: str, source: str) -> ET.Element:
    return element(
        "layer-tree-layer",
        {
            "checked": "Qt::Checked" if layer.visible else "Qt::Unchecked",
            "expanded": "1" if layer.visible else "0",
            "id": lid,
            "legend_exp": "",
            "legend_split_behavior": "0",
            "name": layer.name,
            "patch_size": "-1,-1",
            "providerKey": _PROVIDERS[layer.kind],
            "source": source,
        },
        element("customproperties", None, element("Option")),
    )


def _property(tag: str, kind: str, value: str) -> ET.Element:
    return element(tag, {"type": kind}, text=value)


# --- project -------------------------------------------------------------------------


def project_xml(
    layers: Sequence[ProjectLayer],
    *,
    crs: lunar.LunarCRS,
    title: str,
    extent: Sequence[float],
    folder: str | os.PathLike[str] = ".",
) -> str:
    """The ``.qgs`` XML document of a project (see :func:`write_project`)."""
    if not isinstance(crs, lunar.LunarCRS):
        raise TypeError("crs must be a prospect.lunar.LunarCRS (the run's lunar CRS)")
    extent = _check_extent(extent, "project")
    folder = Path(folder)
    ids: list[str] = []
    sources: list[str] = []
    for layer in layers:
        if not layer.name:
            raise ValueError("every project layer needs a name")
        if layer.kind not in _PROVIDERS:
            raise ValueError(f"layer {layer.name!r}: kind must be 'raster' or 'vector', not {layer.kind!r}")
        lid = layer_id(layer.name, layer.source)
        if lid in ids:
            raise ValueError(f"layer {layer.name!r} with source {layer.source!r} is given twice")
        ids.append(lid)
        sources.append(_relative_source(layer.source, folder))

    # layer tree: groups in order of first appearance, layers in the given order inside
    # them; layers with an empty group sit at the root
    tree = element("layer-tree-group", None, element("customproperties", None, element("Option")))
    groups: dict[str, ET.Element] = {}
    tree_order: list[str] = []
    slots: list[tuple[str, list[int]]] = []
    for i, layer in enumerate(layers):
        if layer.group:
            if layer.group not in groups:
                groups[layer.group] = element(
                    "layer-tree-group",
                    {"checked": "Qt::Checked", "expanded": "1", "name": layer.group},
                    element("customproperties", None, element("Option")),
                )
                slots.append((layer.group, []))
            next(s for g, s in slots if g == layer.group).append(i)
        else:
            slots.append(("", [i]))
    for group, members in slots:
        parent = tree
        if group:
            parent = groups[group]
            tree.append(parent)
        for i in members:
            parent.append(_tree_layer(layers[i], ids[i], sources[i]))
            tree_order.append(ids[i])
    # rendering order = the given order; QGIS follows the tree unless a custom order is on
    custom = element(
        "custom-order", {"enabled": "0" if tree_order == ids else "1"}, *(element("item", text=lid) for lid in ids)
    )
    tree.append(custom)

    srs = _spatialrefsys(crs)
    view_extent = element(
        "DefaultViewExtent",
        {
            "xmax": qgis_number(extent[2]),
            "xmin": qgis_number(extent[0]),
            "ymax": qgis_number(extent[3]),
            "ymin": qgis_number(extent[1]),
        },
        _spatialrefsys(crs),
    )
    canvas = element(
        "mapcanvas",
        {"annotationsVisible": "1", "name": "theMapCanvas"},
        element("units", text=_map_units(crs)),
        _rect("extent", extent),
        element("rotation", text="0"),
        element("destinationsrs", None, _spatialrefsys(crs)),
        element("rendermaptile", text="0"),
        element("expressionContextScope"),
    )
    properties = element(
        "properties",
        None,
        element(
            "Gui",
            None,
            _property("CanvasColorBluePart", "int", "255"),
            _property("CanvasColorGreenPart", "int", "255"),
            _property("CanvasColorRedPart", "int", "255"),
        ),
        element("Measure", None, _property("Ellipsoid", "QString", lunar.qgis_ellipsoid(crs.radius_m))),
        element(
            "Measurement",
            None,
            _property("AreaUnits", "QString", "km2"),
            _property("DistanceUnits", "QString", "meters"),
        ),
        element("Paths", None, _property("Absolute", "bool", "false")),
        element("SpatialRefSys", None, _property("ProjectionsEnabled", "int", "1")),
    )
    root = element(
        "qgis",
        {"projectname": title, "version": QGIS_VERSION},
        element("homePath", {"path": ""}),
        element("title", text=title),
        element("autotransaction", {"active": "0"}),
        element("evaluateDefaultValues", {"active": "0"}),
        element("trust", {"active": "0"}),
        element("projectCrs", None, srs),
        tree,
        canvas,
        element("projectlayers", None, *(_maplayer(layer, lid, src) for layer, lid, src in zip(layers, ids, sources))),
        element("layerorder", None, *(element("layer", {"id": lid}) for lid in ids)),
        properties,
        element("visibility-presets"),
        element("transformContext"),
        element(
            "projectMetadata",
            None,
            element("identifier", text=""),
            element("parentidentifier", text=""),
            element("language", text=""),
            element("type", text=""),
            element("title", text=title),
            element("abstract", text=""),
            element("links"),
        ),
        element("ProjectViewSettings", {"UseProjectScales": "0", "rotation": "0"}, element("Scales"), view_extent),
    )
    _sort_attributes(root)
    ET.indent(root, space="  ")
    return _DOCTYPE + "\n" + ET.tostring(root, encoding="unicode") + "\n"


def write_project(
    path: str | os.PathLike[str],
    layers: Sequence[ProjectLayer],
    *,
    crs: lunar.LunarCRS,
    title: str,
    extent: Sequence[float],
) -> Path:
    """Write a QGIS 3.22 project of ``layers`` to ``path`` (``.qgz``; ``.qgs`` writes the bare XML).

    Layers appear in the layer tree and are drawn in the given order, top to bottom
    (first = on top), inside groups ordered by first appearance; the project CRS is
    ``crs``, the measurement ellipsoid the lunar sphere of ``crs``, the initial view
    ``extent`` (in ``crs``). Sources are written relative to the project folder.
    Returns the path written.
    """
    final = Path(path)
    xml = project_xml(layers, crs=crs, title=title, extent=extent, folder=final.parent)
    data = xml.encode("utf-8")
    with atomic_write(final) as tmp:
        if final.suffix.lower() == ".qgs":
            tmp.write_bytes(data)
        else:
            info = zipfile.ZipInfo(f"{final.stem}.qgs", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, whatever the host
            info.external_attr = 0o644 << 16
            with zipfile.ZipFile(tmp, "w") as zf:
                zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)
    return final
