"""The run's maps as Cloud Optimized GeoTIFFs, each with a QGIS ``.qml`` style beside it.

Every raster input of the ranking (DEM, illumination, Earth visibility, longest
darkness, PSR fraction or the illumination stage's 0/1 PSR mask, ice favourability and
classes, He-3) plus two maps derived from the DEM (slope, hillshade) is streamed window by window through
:func:`prospect.io.writers.stream_geotiff` into GDAL's COG driver (tiled 512 px, ZSTD,
overviews averaged, or nearest for classes; nodata set; the lunar CRS of the source),
so memory does not grow with the raster. Each file carries its unit on the band and, as
dataset tags, the quantity, the source it was copied or derived from, that source's
sha256, manifest id and citation, and the ``prospect_*`` tags the producing stage wrote.

Names, file stems, units, long names, dtypes, nodata and style ranges come from the
layer registry (:mod:`prospect.layers`); which layers are maps, and their drawing order,
too (:func:`prospect.layers.exported_layers`). QGIS loads ``<stem>.qml`` beside
``<stem>.tif`` as the layer's style (``docs/platform.md``); the colour ramp is chosen per
layer in :mod:`prospect.export.styles`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from prospect import layers
from prospect.errors import InputNotFoundError
from prospect.io.writers import atomic_write

#: ``ranking.json`` input roles named differently from the layer their map is exported as;
#: every other role that names an exported layer (:func:`prospect.layers.exported_layers`)
#: is exported under its own name.
ROLE_ALIASES: dict[str, str] = {"dem": "dem_m", "ice_class": "ice_stability_class"}
#: Maps derived from the DEM (layer name -> derivation recorded in the tags).
DERIVED: dict[str, str] = {
    "slope_deg": "prospect.terrain.slope_deg(dem, method='horn')",
    "hillshade": "prospect.terrain.hillshade(dem, azimuth_deg=315, altitude_deg=45) * 254 + 1",
}


def map_layers() -> dict[str, layers.Layer]:
    """The layers an export writes as maps, by name, in drawing order (top first)."""
    return {layer.name: layer for layer in layers.exported_layers()}


def layer_of_role(role: str) -> str | None:
    """The exported layer a ``ranking.json`` input role becomes (None: the role has no map)."""
    name = ROLE_ALIASES.get(role, role)
    return name if name in map_layers() else None


def raster_sources(inputs: Mapping[str, str]) -> dict[str, str]:
    """Layer name -> source of every raster input of a ranking (vector sources go to the GeoPackage)."""
    from prospect.io.vectors import is_vector_source

    out: dict[str, str] = {}
    for role, src in inputs.items():
        name = layer_of_role(role)
        if name is not None and not is_vector_source(src):
            out[name] = src
    return out


def _style_range(path: Path, layer: layers.Layer) -> tuple[float, float]:
    """The fixed range of ``layer`` or the 2..98th percentile of a decimated read of ``path``."""
    if layer.style_range is not None:
        return layer.style_range
    import rasterio

    with rasterio.open(path) as src:
        scale = max(1, int(np.ceil(max(src.height, src.width) / 1024)))
        values = src.read(1, out_shape=(max(1, src.height // scale), max(1, src.width // scale)), masked=True)
    finite = np.asarray(values.compressed(), dtype="float64")
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, [2.0, 98.0]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def write_map(
    arr: Any, name: str, out_dir: Path, *, tags: Mapping[str, Any], grid: Any = None, progress: bool = False
) -> dict[str, Path]:
    """Stream ``arr`` (a lunar DataArray from :func:`prospect.io.readers.open_product` or a stage)
    as layer ``name``'s ``out_dir/<stem>.tif`` (COG) and write its style ``<stem>.qml``; both atomic."""
    from prospect.export import styles
    from prospect.grid import AnalysisGrid
    from prospect.io.writers import stream_geotiff

    spec = layers.get(name)
    grid = grid or AnalysisGrid.from_dataarray(arr)
    tif, qml = out_dir / spec.filename, out_dir / f"{spec.stem}.qml"
    all_tags = {
        **{k: v for k, v in tags.items() if v is not None},
        "prospect_quantity": spec.name,
        "prospect_long_name": spec.long_name,
        "prospect_units": spec.units,
        "prospect_crs": grid.crs.code or grid.crs.kind,
    }
    stream_geotiff(
        arr,
        tif,
        crs=grid.crs,
        transform=grid.transform,
        units=spec.units,
        nodata=spec.nodata,
        tags=all_tags,
        cog=True,
        dtype=spec.dtype,
        categorical=spec.categorical,
        progress=progress,
        label=f"maps/{spec.filename}",
    )
    vmin, vmax = _style_range(tif, spec)
    with atomic_write(qml) as tmp:
        tmp.write_text(styles.raster_qml(spec.name, vmin=vmin, vmax=vmax, units=spec.units), encoding="utf-8")
    return {"tif": tif, "qml": qml}


def _source_tags(prov: Mapping[str, Any] | None, source: str) -> dict[str, Any]:
    """Tags naming a map's source: path or manifest id, sha256, manifest, citation, producer tags."""
    tags: dict[str, Any] = {"prospect_source": source}
    if prov:
        files = prov.get("files") or []
        tags.update(
            prospect_source_sha256=files[0]["sha256"] if len(files) == 1 else None,
            prospect_manifest_id=prov.get("manifest_id"),
            prospect_citation=prov.get("citation"),
        )
        for k, v in (prov.get("stage_tags") or {}).items():
            if k != "prospect_source":
                tags.setdefault(k, v)
        if prov.get("derived_from"):
            tags["prospect_derived_from"] = prov["derived_from"]
    return tags


def export_maps(
    inputs: Mapping[str, str],
    out_dir: Path,
    *,
    provenance: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = False,
) -> dict[str, Path]:
    """Write every raster input of a run, plus slope (unless given) and hillshade of its DEM, to ``out_dir``.

    ``inputs`` is ``ranking.json`` ``inputs`` (role -> source); ``provenance`` maps a
    role to its :func:`prospect.export.provenance.input_record`. Returns layer name -> COG
    path in the registry's drawing order (:func:`map_layers`).
    """
    from prospect.grid import AnalysisGrid
    from prospect.io.readers import open_product
    from prospect.terrain import hillshade, slope_deg

    prov = provenance or {}
    sources = raster_sources(inputs)
    if not sources:
        raise InputNotFoundError("the run's inputs hold no raster map to export")
    out_dir.mkdir(parents=True, exist_ok=True)
    role_of = {layer_of_role(role): role for role in inputs}
    written: dict[str, Path] = {}
    for name, source in sources.items():
        arr = open_product(source)
        grid = AnalysisGrid.from_dataarray(arr)
        written[name] = write_map(
            arr, name, out_dir, tags=_source_tags(prov.get(role_of[name]), source), grid=grid, progress=progress
        )["tif"]
        if name == "dem_m":
            dem_tags = _source_tags(prov.get(role_of[name]), source)
            for derived, how in DERIVED.items():
                if derived in sources:  # already made by the terrain stage
                    continue
                layer = slope_deg(arr) if derived == "slope_deg" else hillshade(arr) * 254.0 + 1.0
                written[derived] = write_map(
                    layer, derived, out_dir, tags={**dem_tags, "prospect_derivation": how}, grid=grid, progress=progress
                )["tif"]
    return {name: written[name] for name in map_layers() if name in written}
