"""Where every number of a run came from: input products, files, checksums, citations,
parameters and software versions.

An input is named in ``ranking.json`` ``inputs`` either by a data-manifest id (the
manifest gives product id, mission, instrument, citation and licence; the files are
resolved locally without downloading and hashed) or by a path. A path is hashed and
matched to the manifest that lists that exact file (same name and sha256), so a DEM
opened by path still gets its citation; a prospect stage output (a GeoTIFF with
``prospect_*`` tags) records the tags that say how it was made, including the file it
was derived from.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from prospect.errors import InputNotFoundError

#: Distributions whose versions a run records (the numerical and geospatial stack).
SOFTWARE = (
    "prospect",
    "numpy",
    "scipy",
    "xarray",
    "dask",
    "rasterio",
    "rioxarray",
    "pyproj",
    "pyogrio",
    "geopandas",
    "shapely",
    "scikit-learn",
    "skops",
    "numba",
    "matplotlib",
    "jinja2",
    "pystac",
)
#: Files that travel with a path input (PDS3 labels and images, shapefile parts).
_SIDECARS = (".lbl", ".img", ".shp", ".shx", ".dbf", ".prj", ".cpg", ".xml", ".cub")


def software_versions() -> dict[str, str]:
    """Versions of Python, the libraries in :data:`SOFTWARE` and the GDAL / PROJ builds they use."""
    import pyogrio
    import pyproj
    import rasterio

    out = {"python": platform.python_version()}
    for dist in SOFTWARE:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    out["gdal (rasterio)"] = rasterio.__gdal_version__
    out["gdal (pyogrio)"] = pyogrio.__gdal_version_string__
    out["proj (pyproj)"] = pyproj.proj_version_str
    return out


def _files_of(path: Path) -> list[Path]:
    """``path`` and the files with its stem that belong to it (label + image, shapefile parts)."""
    if path.suffix.lower() not in _SIDECARS:
        return [path]
    return sorted(
        p for p in path.parent.glob(path.stem + ".*") if p.suffix.lower() in _SIDECARS and p.stem == path.stem
    )


def _manifest_fields(manifest: Any) -> dict[str, Any]:
    def text(key: str) -> str | None:
        value = manifest.get(key)
        return " ".join(str(value).split()) if value is not None else None

    return {
        "manifest_id": manifest.id,
        "product_id": text("product_id"),
        "mission": text("mission"),
        "instrument": text("instrument"),
        "citation": text("citation"),
        "licence": text("licence"),
        "landing_page": text("landing_page"),
    }


def _stage_tags(path: Path) -> dict[str, str]:
    """The ``prospect_*`` tags of a GeoTIFF written by a prospect stage (empty otherwise)."""
    if path.suffix.lower() not in (".tif", ".tiff"):
        return {}
    import rasterio

    try:
        with rasterio.open(path) as src:
            return {k: v for k, v in src.tags().items() if k.lower().startswith("prospect_")}
    except rasterio.errors.RasterioIOError:
        return {}


def input_record(role: str, source: str) -> dict[str, Any]:
    """Provenance of one input: its product, files with sha256, citation (see module docstring)."""
    from prospect.io.fetch import ensure_local, sha256_file
    from prospect.io.manifests import is_manifest_id, load_manifest, manifest_for_file

    rec: dict[str, Any] = {
        "role": role,
        "source": str(source),
        "manifest_id": None,
        "product_id": None,
        "mission": None,
        "instrument": None,
        "citation": None,
        "licence": None,
        "landing_page": None,
        "files": [],
    }
    if is_manifest_id(str(source)):
        manifest = load_manifest(str(source))
        rec.update(_manifest_fields(manifest))
        local = ensure_local(manifest, progress=False, download=False)
        for mf in manifest.files:
            digest = sha256_file(local[mf.name])
            published = mf.checksum if mf.checksum and mf.checksum.startswith("sha256:") else None
            rec["files"].append(
                {
                    "name": mf.name,
                    "sha256": digest,
                    "verified": None if published is None else published == f"sha256:{digest}",
                }
            )
        return rec
    path = Path(str(source)).expanduser()
    if not path.exists():
        raise InputNotFoundError(f"{source}: input {role!r} of the run no longer exists")
    for f in _files_of(path):
        digest = sha256_file(f)
        rec["files"].append({"name": f.name, "sha256": digest, "verified": None})
        known = manifest_for_file(f, digest)
        if known is not None and rec["manifest_id"] is None:
            rec.update(_manifest_fields(known))
        if known is not None:
            rec["files"][-1]["verified"] = True
    tags = _stage_tags(path)
    if tags:
        rec["stage_tags"] = tags
        rec["derived_from"] = tags.get("prospect_source")
    return rec


def collect(
    record: Mapping[str, Any], *, created: str, extra_inputs: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The provenance of a ranked run from its ``ranking.json`` ``record``.

    ``created`` is the ISO time of the export (UTC); ``extra_inputs`` adds role -> source
    pairs not in the record. Inputs are listed in the record's order.
    """
    inputs = dict(record.get("inputs") or {})
    inputs.update(extra_inputs or {})
    return {
        "created": created,
        "seed": record.get("seed"),
        "inputs": [input_record(role, src) for role, src in inputs.items()],
        "software": software_versions(),
        "parameters": list(record.get("parameters") or []),
    }
