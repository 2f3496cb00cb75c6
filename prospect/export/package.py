"""``prospect export RUN_DIR``: turn a ranked run into the deliverables users open.

From ``RUN_DIR/ranking.json`` (written by ``prospect rank``) and the inputs it names:

- ``maps/<stem>.tif`` + ``maps/<stem>.qml``: COG maps with QGIS styles, one per layer of
  the registry's exported layers (:mod:`prospect.export.maps`, :mod:`prospect.layers`);
- ``sites.gpkg``: the ranked sites and candidate discs plus the vector inputs (PSR
  polygons, craters, named cold traps, expert regions) clipped to the run's grid, in
  the run's CRS, each with its default style (:mod:`prospect.io.gpkg`);
- ``project.qgz``: every layer grouped and styled, lunar project CRS and ellipsoid
  (:mod:`prospect.export.qgis`);
- ``report.html`` (and ``report.pdf`` on request): :mod:`prospect.export.report`;
- ``run.json``: a STAC Item of every output and input with checksums
  (:mod:`prospect.export.stac`).

Every input is resolved and hashed before anything is written, so a missing or changed
input fails with one line and no partial package; each file is written atomically.
The export time comes from ``SOURCE_DATE_EPOCH`` when set (the reproducible-builds
convention), so a rerun can reproduce every byte.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prospect import layers
from prospect.errors import FormatError, InputNotFoundError

#: GeoPackage layer name of each vector input role of ``ranking.json``. PSR polygons come
#: as role ``psr`` or, from ``prospect rank``, as role ``psr_fraction`` (the site stage
#: turns them into the raster layer psr_fraction).
VECTOR_LAYERS = {
    "psr": "psr",
    "psr_fraction": "psr",
    "craters": "craters",
    "cold_traps": "cold_traps",
    "regions": "regions",
}

#: Display names of the GeoPackage layers in the QGIS project (raster maps are named by
#: the layer registry: :attr:`prospect.layers.Layer.display_name`).
VECTOR_TITLES = {
    "distinct_sites": "Distinct top sites",
    "traverses": "Traverses to cold traps",
    "places": "Places",
    "sites": "Ranked sites",
    "candidates": "Candidate discs",
    "cold_traps": "Named cold traps",
    "regions": "Artemis III candidate regions",
    "craters": "Craters",
    "psr": "Permanently shadowed regions",
}

#: (layer, group, visible) of the QGIS project, top to bottom. Sites over context vectors
#: over resource and illumination maps over terrain, hillshade last.
PROJECT_TREE: tuple[tuple[str, str, bool], ...] = (
    ("distinct_sites", "Sites", True),
    ("traverses", "Sites", True),
    ("places", "Sites", True),
    ("sites", "Sites", True),
    ("candidates", "Sites", True),
    ("cold_traps", "Context", True),
    ("regions", "Context", True),
    ("craters", "Context", False),
    ("psr", "Context", True),
    ("ice_stability_class", "Resources", False),
    ("ice_favourability", "Resources", False),
    ("he3_ppb", "Resources", False),
    ("psr_fraction", "Illumination", False),
    ("psr_mask", "Illumination", False),
    ("illumination_fraction", "Illumination", True),
    ("earth_visibility_fraction", "Illumination", False),
    ("longest_darkness_h", "Illumination", False),
    ("slope_deg", "Terrain", False),
    ("dem_m", "Terrain", False),
    ("hillshade", "Terrain", True),
)


#: The site stage's layers of ``sites.gpkg`` that the package carries on (when present):
#: the distinct top sites first, the full table after them.
SITE_LAYERS = ("distinct_sites", "traverses", "places", "sites", "candidates", "site_power")


def _title(key: str) -> str:
    return VECTOR_TITLES[key] if key in VECTOR_TITLES else layers.get(key).display_name


#: (layer, group, display name, visible) of the QGIS project, top to bottom.
PROJECT_LAYERS: tuple[tuple[str, str, str, bool], ...] = tuple(
    (key, group, _title(key), visible) for key, group, visible in PROJECT_TREE
)


def export_time() -> str:
    """UTC time of the export (ISO 8601, seconds): ``SOURCE_DATE_EPOCH`` when set, else now."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = dt.datetime.fromtimestamp(int(epoch), dt.UTC) if epoch and epoch.isdigit() else dt.datetime.now(dt.UTC)
    return when.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def read_record(run_dir: Path) -> dict[str, Any]:
    """``run_dir/ranking.json``, with one-line errors for a missing or corrupt file."""
    path = Path(run_dir) / "ranking.json"
    if not Path(run_dir).is_dir():
        raise InputNotFoundError(f"{run_dir}: no such run folder")
    if not path.is_file():
        raise InputNotFoundError(f"{path}: no such file; run `prospect rank {run_dir} ...` first")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: not a ranking record ({exc})") from None
    for key in ("inputs", "grid"):
        if not isinstance(record, dict) or not isinstance(record.get(key), dict):
            raise FormatError(f"{path}: not a ranking record (no '{key}' object)")
    return record


def _vector_layers(record: Mapping[str, Any], run_dir: Path, grid: Any, *, sites: bool = True) -> dict[str, Any]:
    """The GeoPackage layers: ranked sites and candidates (``sites``), then the vector inputs on the grid."""
    import geopandas as gpd
    import pyogrio
    import shapely

    from prospect.io.vectors import is_vector_source, open_vector
    from prospect.sites.learn import region_polygons

    gpkg = run_dir / "sites.gpkg"
    found: dict[str, Any] = {}
    if sites and not gpkg.is_file():
        raise InputNotFoundError(f"{gpkg}: no such file; the run folder is incomplete (rerun `prospect rank`)")
    try:
        if sites:
            present = {str(row[0]) for row in pyogrio.list_layers(gpkg)}
            found = {
                name: gpd.read_file(gpkg, layer=name, engine="pyogrio")
                for name in SITE_LAYERS
                if name in present or name in ("sites", "candidates")
            }
    except (pyogrio.errors.DataLayerError, pyogrio.errors.DataSourceError) as exc:
        raise FormatError(f"{gpkg}: not a prospect site GeoPackage ({str(exc).splitlines()[0]})") from None
    frame = shapely.box(*grid.bounds)
    crs = grid.crs.to_pyproj()
    for role, layer in VECTOR_LAYERS.items():
        source = record["inputs"].get(role)
        if source is None or not is_vector_source(source):
            continue
        gdf = open_vector(source)
        gdf = region_polygons(gdf, grid.crs) if role == "regions" else gdf.to_crs(crs)
        gdf = gdf[gdf.intersects(frame)].reset_index(drop=True)
        found[layer] = gdf
    return found


def _geometry(gdf: Any) -> str | None:
    """``Point`` / ``LineString`` / ``Polygon`` of a layer (its first feature; None when empty)."""
    return gdf.geometry.iloc[0].geom_type.replace("Multi", "") if len(gdf) else None


def _raster_layer_info(path: Path) -> tuple[Any, tuple[float, float, float, float]]:
    import rasterio

    from prospect import lunar

    with rasterio.open(path) as src:
        return lunar.identify(src.crs.to_wkt(), source=str(path)), tuple(src.bounds)


def _project_layers(maps: Mapping[str, Path], vectors: Mapping[str, Any], grid: Any, run_dir: Path) -> list[Any]:
    from prospect.export import styles
    from prospect.export.qgis import ProjectLayer

    out = []
    present = [row for row in PROJECT_LAYERS if row[0] in maps or row[0] in vectors]
    if present and not any(row[3] for row in present):  # e.g. a He-3-only run: show its first map
        present[0] = (*present[0][:3], True)
    for key, group, title, visible in present:
        if key in maps:
            path = Path(maps[key])
            crs, extent = _raster_layer_info(path)
            out.append(
                ProjectLayer(
                    name=title,
                    source=path.relative_to(run_dir).as_posix(),
                    kind="raster",
                    group=group,
                    style_qml=path.with_suffix(".qml").read_text(encoding="utf-8"),
                    crs=crs,
                    extent=extent,
                    visible=visible,
                )
            )
        elif key in vectors:
            gdf = vectors[key]
            geom = _geometry(gdf)
            x0, y0, x1, y1 = (float(v) for v in (gdf.total_bounds if len(gdf) else grid.bounds))
            bounds = (x0, y0, x1, y1)
            out.append(
                ProjectLayer(
                    name=title,
                    source=f"sites.gpkg|layername={key}",
                    kind="vector",
                    group=group,
                    style_qml=styles.vector_qml(key, geometry=geom),
                    crs=grid.crs,
                    extent=bounds,
                    geometry=geom,
                    visible=visible,
                )
            )
    return out


def package_outputs(run: Path) -> dict[str, Path]:
    """Every deliverable present in a run folder, by asset key (what ``run.json`` describes)."""
    named = {
        "ranking": "ranking.json",
        "sites": "sites.gpkg",
        "project": "project.qgz",
        "model": "model.skops",
        "report": "report.html",
        "report_pdf": "report.pdf",
        "power_series": "power_series.npz",
    }
    out = {key: run / name for key, name in named.items() if (run / name).is_file()}
    for layer in layers.exported_layers():
        for prefix, suffix in (("map", ".tif"), ("style", ".qml")):
            path = run / "maps" / f"{layer.stem}{suffix}"
            if path.is_file():
                out[f"{prefix}_{layer.stem}"] = path
    return out


def existing_maps(run: Path) -> dict[str, Path]:
    """Layer name -> COG of the maps an export wrote into ``run/maps``."""
    return {
        layer.name: run / "maps" / layer.filename
        for layer in layers.exported_layers()
        if (run / "maps" / layer.filename).is_file()
    }


def run_export(
    run_dir: str | os.PathLike[str],
    *,
    report: bool = True,
    pdf: bool = False,
    progress: bool = False,
    record: Mapping[str, Any] | None = None,
    properties: Mapping[str, Any] | None = None,
    extra_inputs: Mapping[str, str] | None = None,
    created: str | None = None,
) -> dict[str, Path]:
    """Write the package of a ranked run into ``run_dir`` (see the module docstring).

    ``record`` replaces ``ranking.json`` for runs without a site stage (e.g. a global
    He-3 map): ``inputs`` and ``grid`` only; then there is no ``sites`` layer and no
    report, only maps, vector inputs, the project and ``run.json``. ``properties`` are
    added to ``run.json`` (a pipeline's name, digest and stage keys); ``extra_inputs``
    (role -> source) are maps made outside the ranking to export too (a pipeline's slope
    map); ``created`` is the export time written into the report and ``run.json``
    (default :func:`export_time`). Returns output key -> path (the assets of
    ``run.json``, plus ``run`` itself).
    """
    from prospect.export import provenance as prov_mod
    from prospect.export import stac, styles
    from prospect.export.maps import export_maps
    from prospect.export.qgis import write_project
    from prospect.grid import AnalysisGrid
    from prospect.io.gpkg import write_gpkg

    run = Path(run_dir)
    ranked = record is None
    record = read_record(run) if record is None else dict(record)
    grid = AnalysisGrid.from_dict(record["grid"])
    # resolves and hashes every input first
    prov = prov_mod.collect(record, created=created or export_time(), extra_inputs=extra_inputs)
    by_role = {p["role"]: p for p in prov["inputs"]}
    vectors = _vector_layers(record, run, grid, sites=ranked)

    maps = export_maps(
        {**record["inputs"], **(extra_inputs or {})}, run / "maps", provenance=by_role, progress=progress
    )
    descriptions = {
        "distinct_sites": "the distinct top sites: the best site of each place, separated (ranking.json places)",
        "traverses": "least-cost traverses from the distinct top sites to their nearest cold traps",
        "places": "places: connected passing areas cut at a region's size, each with its best site",
        "sites": "ranked candidate base sites (ranking.json)",
        "candidates": "candidate site discs",
        "site_power": (
            "power at the distinct top sites per mast height: light, longest night (no limb up),"
            " longest usable night (less than power_min_disk_fraction of the disk up), battery"
        ),
    }
    layer_styles = {k: styles.vector_qml(k, geometry=_geometry(v)) for k, v in vectors.items()}
    descriptions.update(
        {
            layer: f"input {record['inputs'][role]}"
            for role, layer in VECTOR_LAYERS.items()
            if layer in vectors and role in record["inputs"]
        }
    )
    if vectors:
        write_gpkg(run / "sites.gpkg", vectors, layer_styles, crs=grid.crs, descriptions=descriptions)
    write_project(
        run / "project.qgz",
        _project_layers(maps, vectors, grid, run),
        crs=grid.crs,
        title=f"prospect run {run.resolve().name}",
        extent=tuple(grid.bounds),
    )
    if report and ranked:
        from prospect.export.report import write_report

        write_report(run, maps=maps, provenance=prov, pdf=pdf)
    outputs = package_outputs(run)
    outputs["run"] = stac.write_run_json(run, outputs, record=record, provenance=prov, grid=grid, properties=properties)
    return outputs


def run_report(run_dir: str | os.PathLike[str], *, pdf: bool = False) -> dict[str, Path]:
    """Rewrite ``report.html`` (and ``report.pdf``) of an exported run, then its ``run.json``."""
    from prospect.export import provenance as prov_mod
    from prospect.export import stac
    from prospect.export.report import write_report
    from prospect.grid import AnalysisGrid

    run = Path(run_dir)
    record = read_record(run)
    maps = existing_maps(run)
    if not maps:
        raise InputNotFoundError(f"{run / 'maps'}: no exported maps; run `prospect export {run}` first")
    prov = prov_mod.collect(record, created=export_time())
    written = write_report(run, maps=maps, provenance=prov, pdf=pdf)
    outputs = package_outputs(run)
    stac.write_run_json(run, outputs, record=record, provenance=prov, grid=AnalysisGrid.from_dict(record["grid"]))
    return dict(written)
