"""The run's maps as Cloud Optimized GeoTIFFs, each with a QGIS ``.qml`` style beside it.

Every raster input of the ranking (DEM, illumination, Earth visibility, longest
darkness, PSR fraction, ice favourability and classes, He-3) plus two maps derived from
the DEM (slope, hillshade) is streamed window by window through
:func:`prospect.io.writers.stream_geotiff` into GDAL's COG driver (tiled 512 px, ZSTD,
overviews averaged, or nearest for classes; nodata set; the lunar CRS of the source),
so memory does not grow with the raster. Each file carries its unit on the band and, as
dataset tags, the quantity, the source it was copied or derived from, that source's
sha256, manifest id and citation, and the ``prospect_*`` tags the producing stage wrote.

QGIS loads ``<stem>.qml`` beside ``<stem>.tif`` as the layer's style
(``docs/platform.md``); the colour ramp is chosen per quantity in
:mod:`prospect.export.styles`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prospect import lunar
from prospect.errors import InputNotFoundError
from prospect.io.writers import atomic_write


@dataclass(frozen=True)
class MapSpec:
    """How one map is written and styled."""

    units: str
    long_name: str
    dtype: str = "float32"
    nodata: float = -9999.0
    categorical: bool = False
    #: fixed style range (min, max); None: the 2nd..98th percentile of the map
    style_range: tuple[float, float] | None = None


#: The maps a run can export, in the order QGIS draws them (top first), by file stem.
SPECS: dict[str, MapSpec] = {
    "ice_stability_class": MapSpec(
        "1",
        "ice stability class: 0 not stable, 1 shallow subsurface, 2 surface",
        dtype="uint8",
        nodata=255,
        categorical=True,
        style_range=(0, 2),
    ),
    "ice_favourability": MapSpec("1", "water-ice favourability", style_range=(0.0, 1.0)),
    "he3_ppb": MapSpec("ppb", "helium-3 concentration in the regolith"),
    "psr_fraction": MapSpec("1", "permanently shadowed fraction of the pixel", style_range=(0.0, 1.0)),
    "illumination_fraction": MapSpec("1", "time-averaged visible fraction of the solar disk", style_range=(0.0, 1.0)),
    "earth_visibility_fraction": MapSpec(
        "1", "fraction of time the Earth is above the horizon", style_range=(0.0, 1.0)
    ),
    "longest_darkness_h": MapSpec("h", "longest continuous darkness"),
    "slope_deg": MapSpec(
        "deg", "slope (Horn 1981 on lunar ground distances, one-pixel baseline)", style_range=(0.0, 30.0)
    ),
    "dem_m": MapSpec("m", f"height above the {lunar.MOON_RADIUS_M / 1000:g} km lunar sphere"),
    "hillshade": MapSpec(
        "1",
        "shaded relief for display: 1 (dark) .. 255 (lit), 0 nodata; light from 315 deg azimuth, 45 deg altitude",
        dtype="uint8",
        nodata=0,
        categorical=False,
        style_range=(1.0, 255.0),
    ),
}

#: ``ranking.json`` input roles whose maps are exported, and the stem each becomes.
ROLE_STEMS: dict[str, str] = {
    "dem": "dem_m",
    "slope_deg": "slope_deg",
    "illumination_fraction": "illumination_fraction",
    "longest_darkness_h": "longest_darkness_h",
    "earth_visibility_fraction": "earth_visibility_fraction",
    "psr_fraction": "psr_fraction",
    "ice_favourability": "ice_favourability",
    "ice_class": "ice_stability_class",
    "he3_ppb": "he3_ppb",
}
#: Maps derived from the DEM (stem -> derivation recorded in the tags).
DERIVED: dict[str, str] = {
    "slope_deg": "prospect.terrain.slope_deg(dem, method='horn')",
    "hillshade": "prospect.terrain.hillshade(dem, azimuth_deg=315, altitude_deg=45) * 254 + 1",
}


def raster_sources(inputs: Mapping[str, str]) -> dict[str, str]:
    """Stem -> source of every raster input of a ranking (vector sources go to the GeoPackage)."""
    from prospect.io.vectors import is_vector_source

    return {ROLE_STEMS[role]: src for role, src in inputs.items() if role in ROLE_STEMS and not is_vector_source(src)}


def _style_range(path: Path, spec: MapSpec) -> tuple[float, float]:
    """The fixed range of ``spec`` or the 2..98th percentile of a decimated read of ``path``."""
    if spec.style_range is not None:
        return spec.style_range
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
    arr: Any, stem: str, out_dir: Path, *, tags: Mapping[str, Any], grid: Any = None, progress: bool = False
) -> dict[str, Path]:
    """Stream ``arr`` (a lunar DataArray from :func:`prospect.io.readers.open_product` or a stage)
    as ``out_dir/<stem>.tif`` (COG) and write its style ``<stem>.qml``; both atomic."""
    from prospect.export import styles
    from prospect.grid import AnalysisGrid
    from prospect.io.writers import stream_geotiff

    spec = SPECS[stem]
    grid = grid or AnalysisGrid.from_dataarray(arr)
    tif, qml = out_dir / f"{stem}.tif", out_dir / f"{stem}.qml"
    all_tags = {
        **{k: v for k, v in tags.items() if v is not None},
        "prospect_quantity": stem,
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
        label=f"maps/{stem}.tif",
    )
    vmin, vmax = _style_range(tif, spec)
    with atomic_write(qml) as tmp:
        tmp.write_text(styles.raster_qml(stem, vmin=vmin, vmax=vmax, units=spec.units), encoding="utf-8")
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
    role to its :func:`prospect.export.provenance.input_record`. Returns stem -> COG path
    in :data:`SPECS` order.
    """
    from prospect.grid import AnalysisGrid
    from prospect.io.readers import open_product
    from prospect.terrain import hillshade, slope_deg

    prov = provenance or {}
    stems = raster_sources(inputs)
    if not stems:
        raise InputNotFoundError("the run's inputs hold no raster map to export")
    out_dir.mkdir(parents=True, exist_ok=True)
    role_of = {stem: role for role, stem in ROLE_STEMS.items()}
    written: dict[str, Path] = {}
    for stem, source in stems.items():
        arr = open_product(source)
        grid = AnalysisGrid.from_dataarray(arr)
        written[stem] = write_map(
            arr, stem, out_dir, tags=_source_tags(prov.get(role_of[stem]), source), grid=grid, progress=progress
        )["tif"]
        if stem == "dem_m":
            dem_tags = _source_tags(prov.get("dem"), source)
            for derived, how in DERIVED.items():
                if derived in stems:  # already made by the terrain stage
                    continue
                layer = slope_deg(arr) if derived == "slope_deg" else hillshade(arr) * 254.0 + 1.0
                written[derived] = write_map(
                    layer, derived, out_dir, tags={**dem_tags, "prospect_derivation": how}, grid=grid, progress=progress
                )["tif"]
    return {stem: written[stem] for stem in SPECS if stem in written}
