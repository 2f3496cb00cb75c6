#!/usr/bin/python3
"""Open a prospect QGIS project in real QGIS (PyQGIS 3.22) and report what QGIS sees.

Run with Debian's Python, not the project venv (PyQGIS lives there; this script does
not import prospect)::

    /usr/bin/python3 tests/qgis_check.py RUN/project.qgz OUT.png [--sites-layer sites]

Prints ONE JSON object:

- ``project``: read ok, title, CRS (valid, authid, description, PROJ string, lunar?),
  ellipsoid and the length QGIS measures for 1 degree of latitude on it (QgsDistanceArea
  with the project's ellipsoid; 30,323.6 m on the 1737.4 km lunar sphere);
- ``layers``: per layer, in layer-tree order: name, valid, provider, CRS validity,
  ``crs_is_lunar`` (semi-major axis / PROJ ``+R`` is 1,737,400 m or the description
  says Moon), renderer type, feature count (vectors), checked in the tree;
- ``render``: a PNG of the whole project (visible layers, the project's default view
  extent) rendered headless with QgsMapRendererSequentialJob, with its number of
  distinct colours and the fraction of pixels that differ from the background;
- ``sites``: for each feature of the sites layer, its ``lon``/``lat`` attributes
  transformed from the lunar geographic CRS on the layer's own sphere (built from the
  layer CRS's PROJ radius; never EPSG:4326) into the layer CRS, the largest distance in
  metres to the feature's geometry; and, with the sites layer rendered alone on a
  transparent background, whether the pixel at each top site's position is drawn.
- ``messages``: warnings and errors QGIS logged while reading and rendering.

``QT_QPA_PLATFORM=offscreen`` and a private ``XDG_RUNTIME_DIR`` (mode 0700) are set here
when missing (``docs/platform.md``, "QGIS as the real client").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
if not os.environ.get("XDG_RUNTIME_DIR") or not os.path.isdir(os.environ["XDG_RUNTIME_DIR"]):
    os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="qgis-xdg-")  # mkdtemp: mode 0700

MOON_RADIUS_M = 1737400.0  # LOLA reference sphere (Smith et al. 2010); this script cannot import prospect
BACKGROUND = (255, 255, 255)


def _sphere(crs) -> tuple[float, float] | None:
    """(semi-major, semi-minor) in metres of a CRS, from its PROJ string or its ellipsoid."""
    proj = crs.toProj() or ""
    m = re.search(r"\+R=([0-9.eE+-]+)", proj)
    if m:
        r = float(m.group(1))
        return r, r
    a = re.search(r"\+a=([0-9.eE+-]+)", proj)
    if a:
        b = re.search(r"\+b=([0-9.eE+-]+)", proj)
        return float(a.group(1)), float(b.group(1)) if b else float(a.group(1))
    from qgis.core import QgsEllipsoidUtils

    params = QgsEllipsoidUtils.ellipsoidParameters(crs.ellipsoidAcronym())
    if params.valid:
        return params.semiMajor, params.semiMinor
    return None


def _crs_info(crs) -> dict:
    sphere = _sphere(crs) if crs.isValid() else None
    description = crs.description() or ""
    lunar = bool(sphere and abs(sphere[0] - MOON_RADIUS_M) <= 1.0) or "moon" in description.lower()
    return {
        "valid": crs.isValid(),
        "authid": crs.authid(),
        "description": description,
        "proj": crs.toProj(),
        "semi_major_m": sphere[0] if sphere else None,
        "is_lunar": lunar,
        "is_geographic": crs.isGeographic(),
    }


def _scan(text: str):
    """``(index, char, depth, quoted)`` for each character of WKT ``text``: the bracket depth
    after the character (relative to the start) and whether it is inside a quoted name."""
    depth, quoted = 0, False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "[":
            depth += 1
        elif not quoted and ch == "]":
            depth -= 1
        yield i, ch, depth, quoted


def _top_level(wkt_body: str) -> list[str]:
    """The comma-separated top-level items of the inside of a WKT node."""
    items, start = [], 0
    for i, ch, depth, quoted in _scan(wkt_body):
        if ch == "," and depth == 0 and not quoted:
            items.append(wkt_body[start:i].strip())
            start = i + 1
    items.append(wkt_body[start:].strip())
    return items


def _base_geographic_wkt(crs) -> str | None:
    """WKT2 of the geographic CRS a projected CRS is based on (its BASEGEOGCRS: same datum,
    so same celestial body), with lon/lat axes."""
    from qgis.core import QgsCoordinateReferenceSystem

    wkt = crs.toWkt(QgsCoordinateReferenceSystem.WKT2_2019)
    m = re.search(r"BASEGEO[GD]CRS\[", wkt)
    if not m:
        return None
    body = wkt[m.end() :]
    close = next((i for i, _, depth, _ in _scan(body) if depth < 0), len(body))  # the node's own "]"
    items = _top_level(body[:close])
    keep = [items[0]] + [it for it in items[1:] if re.match(r"(DATUM|ENSEMBLE|PRIMEM|TRF|GEODETICDATUM)\[", it)]
    return (
        "GEOGCRS[" + ",".join(keep) + ',CS[ellipsoidal,2],AXIS["geodetic longitude (Lon)",east,ORDER[1],'
        'ANGLEUNIT["degree",0.0174532925199433]],AXIS["geodetic latitude (Lat)",north,ORDER[2],'
        'ANGLEUNIT["degree",0.0174532925199433]]]'
    )


def _geographic_of(crs, context):
    """The lunar geographic CRS (lon/lat degrees) on the same body and sphere as ``crs``.

    QGIS 3.22 / PROJ 9.1 will not transform between a ``+proj=longlat +R=1737400``
    CRS and the IAU_2015 lunar CRSs ("Cannot create transform", the celestial bodies do
    not match), so the geographic CRS is taken, in order of preference, from QGIS's own
    ``geographicCrsAuthId()`` (IAU_2015:30100 for IAU_2015:30135), from the layer's base
    geographic CRS in its WKT, and only then from the sphere radius; the first one that
    transforms into ``crs`` is used. Returns (crs, how) or (None, reason).
    """
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsPointXY

    if crs.isGeographic():
        return crs, "layer CRS is geographic"
    candidates = []
    auth = crs.geographicCrsAuthId()
    if auth and all(part for part in auth.split(":", 1)) and ":" in auth:
        candidates.append((QgsCoordinateReferenceSystem(auth), f"geographicCrsAuthId {auth}"))
    base = _base_geographic_wkt(crs)
    if base:
        candidates.append((QgsCoordinateReferenceSystem.fromWkt(base), "BASEGEOGCRS of the CRS WKT"))
    sphere = _sphere(crs) or (MOON_RADIUS_M, MOON_RADIUS_M)
    candidates.append(
        (
            QgsCoordinateReferenceSystem.fromProj(
                f"+proj=longlat +a={sphere[0]!r} +b={sphere[1]!r} +no_defs +type=crs"
            ),
            "PROJ +proj=longlat on the CRS sphere",
        )
    )
    for cand, how in candidates:
        if not cand.isValid():
            continue
        tr = QgsCoordinateTransform(cand, crs, context)
        if not tr.isValid():
            continue
        try:
            tr.transform(QgsPointXY(0.0, -89.0 if "lat_0=-90" in crs.toProj() else 0.0))
        except Exception:  # QgsCsException
            continue
        return cand, how
    return None, "no geographic CRS transforms into this CRS"


def _pixels(image):
    """The pixels of a QImage as a list of 0xAARRGGBB integers (ARGB32, not premultiplied)."""
    from qgis.PyQt.QtGui import QImage

    img = image.convertToFormat(QImage.Format_ARGB32)
    w, h = img.width(), img.height()
    ptr = img.constBits()
    ptr.setsize(img.bytesPerLine() * h)
    raw = bytes(ptr)
    stride = img.bytesPerLine()
    out = []
    for y in range(h):
        row = memoryview(raw[y * stride : y * stride + 4 * w]).cast("I")
        out.extend(row.tolist())
    return out, w, h


def _render(project, layers, extent, crs, size_px: int, transparent: bool):
    from qgis.core import QgsMapRendererSequentialJob, QgsMapSettings
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    width = size_px
    height = max(1, int(round(size_px * extent.height() / extent.width()))) if extent.width() > 0 else size_px
    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setDestinationCrs(crs)
    settings.setTransformContext(project.transformContext())
    settings.setEllipsoid(project.ellipsoid())
    settings.setOutputSize(QSize(width, height))
    settings.setExtent(extent)
    settings.setBackgroundColor(QColor(0, 0, 0, 0) if transparent else QColor(*BACKGROUND))
    settings.setFlag(QgsMapSettings.Antialiasing, True)
    settings.setFlag(QgsMapSettings.DrawLabeling, True)
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    errors = [f"{e.layerID}: {e.message}" for e in job.errors()]
    return job.renderedImage(), settings, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project")
    parser.add_argument("png")
    parser.add_argument("--sites-layer", default="sites", help="layer name (or GPKG layername) of the sites")
    parser.add_argument("--size", type=int, default=800, help="rendered width in pixels")
    parser.add_argument("--top", type=int, default=10, help="how many top-ranked sites to look for in the render")
    args = parser.parse_args(argv)

    from qgis.core import (
        QgsApplication,
        QgsCoordinateTransform,
        QgsDistanceArea,
        QgsFeatureRequest,
        QgsGeometry,
        QgsMapLayerType,
        QgsPointXY,
        QgsProject,
        QgsRectangle,
    )

    app = QgsApplication([], False)
    app.initQgis()
    messages: list[str] = []

    def log(message, tag, level):
        if int(level) >= 1:  # Warning, Critical
            messages.append(f"[{tag}] {message}"[:500])

    QgsApplication.messageLog().messageReceived.connect(log)
    report: dict = {"project": {}, "layers": [], "render": {}, "sites": {}, "messages": messages}
    project = QgsProject.instance()
    ok = project.read(os.path.abspath(args.project))
    report["project"]["read_ok"] = bool(ok)
    report["project"]["error"] = project.error() if not ok else ""
    report["project"]["title"] = project.title()
    report["project"]["crs"] = _crs_info(project.crs())
    report["project"]["ellipsoid"] = project.ellipsoid()
    report["project"]["distance_units"] = int(project.distanceUnits())

    # 1 degree of latitude on the project ellipsoid: a lon/lat segment in the lunar
    # geographic CRS, measured by QgsDistanceArea with the project's ellipsoid
    geo, how = _geographic_of(project.crs(), project.transformContext()) if project.crs().isValid() else (None, "")
    da = QgsDistanceArea()
    if geo is not None:
        da.setSourceCrs(geo, project.transformContext())
    da.setEllipsoid(project.ellipsoid())
    report["project"]["geographic_crs"] = {
        "how": how,
        "proj": geo.toProj() if geo else None,
        "authid": geo.authid() if geo else None,
    }
    report["project"]["will_use_ellipsoid"] = da.willUseEllipsoid()
    report["project"]["one_degree_latitude_m"] = (
        da.measureLine(QgsPointXY(0.0, -45.5), QgsPointXY(0.0, -44.5)) if geo is not None else None
    )

    root = project.layerTreeRoot()
    tree_layers = [node.layer() for node in root.findLayers()]
    checked = {lay.id() for lay in root.checkedLayers()}
    for lay in tree_layers:
        if lay is None:
            continue
        info = {
            "name": lay.name(),
            "id": lay.id(),
            "valid": lay.isValid(),
            "provider": lay.providerType(),
            "source": lay.source(),
            "visible": lay.id() in checked,
        }
        crs = _crs_info(lay.crs())
        info.update(
            {
                "crs_valid": crs["valid"],
                "crs_is_lunar": crs["is_lunar"],
                "crs_authid": crs["authid"],
                "crs_description": crs["description"],
                "crs_proj": crs["proj"],
            }
        )
        renderer = lay.renderer() if lay.isValid() else None
        info["renderer"] = renderer.type() if renderer is not None else None
        if lay.type() == QgsMapLayerType.VectorLayer:
            info["features"] = lay.featureCount() if lay.isValid() else None
            info["labels"] = bool(lay.labelsEnabled())
        report["layers"].append(info)

    # the whole project, as a user opens it: visible layers in render order, default view
    order = root.customLayerOrder() if root.hasCustomLayerOrder() else root.layerOrder()
    visible = [lay for lay in order if lay is not None and lay.id() in checked and lay.isValid()]
    extent = project.viewSettings().defaultViewExtent()
    view = QgsRectangle(extent) if not extent.isNull() else QgsRectangle()
    if view.isNull() or view.isEmpty():
        view = QgsRectangle()
        for lay in visible:
            tr = QgsCoordinateTransform(lay.crs(), project.crs(), project)
            view.combineExtentWith(tr.transformBoundingBox(lay.extent()))
    render_errors: list[str] = []
    if visible and not view.isEmpty():
        image, settings, render_errors = _render(project, visible, view, project.crs(), args.size, transparent=False)
        image.save(args.png, "PNG")
        pixels, w, h = _pixels(image)
        bg = 0xFF000000 | (BACKGROUND[0] << 16) | (BACKGROUND[1] << 8) | BACKGROUND[2]
        report["render"] = {
            "png": os.path.abspath(args.png),
            "width": w,
            "height": h,
            "distinct_colours": len(set(pixels)),
            "non_background_fraction": 1.0 - pixels.count(bg) / float(len(pixels)),
            "layers_rendered": [lay.name() for lay in visible],
            "extent": [view.xMinimum(), view.yMinimum(), view.xMaximum(), view.yMaximum()],
            "errors": render_errors,
        }
    else:
        report["render"] = {"png": None, "error": "no valid visible layer or empty extent"}

    # sites: positions from lon/lat attributes, and visibility in a render of the layer alone
    sites = None
    for lay in tree_layers:
        if lay is None or lay.type() != QgsMapLayerType.VectorLayer:
            continue
        if lay.name() == args.sites_layer or re.search(
            rf"\|layername={re.escape(args.sites_layer)}(\||$)", lay.source()
        ):
            sites = lay
            break
    if sites is None or not sites.isValid():
        report["sites"] = {"found": sites is not None, "valid": False}
    else:
        fields = sites.fields().names()
        geo, how = _geographic_of(sites.crs(), project.transformContext())
        if geo is None:
            raise SystemExit(json.dumps({"error": f"sites layer: {how}"}))
        to_layer = QgsCoordinateTransform(geo, sites.crs(), project)
        da_layer = QgsDistanceArea()
        da_layer.setSourceCrs(sites.crs(), project.transformContext())
        da_layer.setEllipsoid(project.ellipsoid())
        rows = []
        for f in sites.getFeatures(QgsFeatureRequest()):
            g = f.geometry()
            if g is None or g.isEmpty():
                rows.append({"fid": f.id(), "error": "no geometry"})
                continue
            lon, lat = float(f["lon"]), float(f["lat"])
            p = to_layer.transform(QgsPointXY(lon, lat))
            if sites.crs().isGeographic():
                dist = da_layer.measureLine(p, g.asPoint() if not g.isMultipart() else g.asMultiPoint()[0])
            else:
                dist = g.distance(QgsGeometry.fromPointXY(p))
            rank = f["rank"] if "rank" in fields else None
            rows.append(
                {
                    "fid": f.id(),
                    "site_id": str(f["site_id"]) if "site_id" in fields else str(f.id()),
                    "rank": rank,
                    "lon": lon,
                    "lat": lat,
                    "distance_m": dist,
                    "point": [p.x(), p.y()],
                }
            )
        good = [
            r for r in rows if "distance_m" in r and r["distance_m"] is not None and not math.isnan(r["distance_m"])
        ]
        ranked = sorted(good, key=lambda r: (r["rank"] is None, r["rank"] if r["rank"] is not None else 0))
        top = ranked[: args.top]
        visibility = []
        if top and not view.isEmpty():
            image, settings, errs = _render(project, [sites], view, project.crs(), args.size, transparent=True)
            render_errors.extend(errs)
            pixels, w, h = _pixels(image)
            to_map = QgsCoordinateTransform(sites.crs(), project.crs(), project)
            m2p = settings.mapToPixel()
            for r in top:
                q = m2p.transform(to_map.transform(QgsPointXY(*r["point"])))
                px, py = int(math.floor(q.x())), int(math.floor(q.y()))
                inside = 0 <= px < w and 0 <= py < h
                alpha = (pixels[py * w + px] >> 24) & 0xFF if inside else 0
                visibility.append(
                    {
                        "site_id": r["site_id"],
                        "rank": r["rank"],
                        "px": px,
                        "py": py,
                        "inside": inside,
                        "alpha": alpha,
                        "visible": inside and alpha > 0,
                    }
                )
        report["sites"] = {
            "found": True,
            "valid": True,
            "layer": sites.name(),
            "features": len(rows),
            "geographic_crs": {"how": how, "proj": geo.toProj(), "authid": geo.authid()},
            "has_lon_lat": "lon" in fields and "lat" in fields,
            "max_distance_m": max((r["distance_m"] for r in good), default=None),
            "rows_without_geometry": len(rows) - len(good),
            "top": visibility,
            "all_top_visible": bool(visibility) and all(v["visible"] for v in visibility),
        }

    QgsApplication.messageLog().messageReceived.disconnect(log)
    print(json.dumps(report, default=str))
    sys.stdout.flush()
    project.clear()
    app.exitQgis()
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
