"""``run.json``: a STAC Item (pystac) describing every output and input of a run.

Each output file is an asset with its media type, roles, size and checksum (STAC *file*
extension: ``file:checksum`` is a multihash, ``1220`` + the sha256 hex); COG assets add
their nodata, unit and data type (*raster* extension). The Item carries the run's
projection (*projection* extension: ``proj:code`` IAU_2015, WKT2, shape, transform),
the seed, the parameters (the config in force), the software versions and every input
with its files and sha256.

The Moon is not the Earth: STAC's ``geometry``/``bbox`` are written in planetocentric
lunar longitude/latitude (IAU_2015:30100) and the Item declares ``ssys:targets:
["Moon"]`` (*Solar System* extension), the convention of planetary STAC catalogues such
as USGS Astrogeology's. A grid containing a pole gets a bbox spanning all longitudes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from prospect import lunar
from prospect.io.writers import atomic_write

FILE_EXT = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
PROJECTION_EXT = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER_EXT = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
SSYS_EXT = "https://stac-extensions.github.io/ssys/v1.1.0/schema.json"
#: multihash prefix of a sha2-256 digest (code 0x12, length 0x20)
SHA256_MULTIHASH = "1220"

#: (media type, roles) by file suffix
_MEDIA: dict[str, tuple[str, list[str]]] = {
    ".tif": ("image/tiff; application=geotiff; profile=cloud-optimized", ["data"]),
    ".qml": ("application/xml", ["style"]),
    ".gpkg": ("application/geopackage+sqlite3", ["data"]),
    ".qgz": ("application/zip", ["visual"]),
    ".html": ("text/html", ["overview"]),
    ".pdf": ("application/pdf", ["overview"]),
    ".json": ("application/json", ["metadata"]),
    ".skops": ("application/octet-stream", ["metadata"]),
    ".npz": ("application/octet-stream", ["data"]),
}


def lunar_bbox(grid: Any, samples: int = 64) -> list[float]:
    """[west, south, east, north] in planetocentric degrees of a grid's footprint (its edge,
    densified); all longitudes when the grid contains a pole."""
    x0, y0, x1, y1 = grid.bounds
    t = np.linspace(0.0, 1.0, samples)
    xs = np.concatenate([x0 + (x1 - x0) * t, np.full(samples, x1), x1 - (x1 - x0) * t, np.full(samples, x0)])
    ys = np.concatenate([np.full(samples, y0), y0 + (y1 - y0) * t, np.full(samples, y1), y1 - (y1 - y0) * t])
    lon, lat = (np.asarray(v, dtype="float64") for v in lunar.xy_to_lonlat(grid.crs, xs, ys))
    south, north = float(lat.min()), float(lat.max())
    if grid.crs.is_polar and x0 <= 0 <= x1 and y0 <= 0 <= y1:  # the pole is inside the grid
        return [-180.0, -90.0, 180.0, north] if grid.crs.kind == "polar_south" else [-180.0, south, 180.0, 90.0]
    return [float(lon.min()), south, float(lon.max()), north]


def _asset(path: Path, root: Path, digest: str) -> Any:
    import pystac

    media, roles = _MEDIA.get(path.suffix.lower(), ("application/octet-stream", ["data"]))
    extra: dict[str, Any] = {"file:size": path.stat().st_size, "file:checksum": SHA256_MULTIHASH + digest}
    if path.suffix.lower() == ".tif":
        import rasterio

        with rasterio.open(path) as src:
            extra["raster:bands"] = [
                {"nodata": src.nodata, "unit": src.units[0] or src.tags(1).get("units"), "data_type": src.dtypes[0]}
            ]
            extra["title"] = src.tags().get("prospect_long_name")
    return pystac.Asset(href=path.relative_to(root).as_posix(), media_type=media, roles=roles, extra_fields=extra)


def build_item(
    run_dir: Path,
    outputs: Mapping[str, Path],
    *,
    record: Mapping[str, Any],
    provenance: Mapping[str, Any],
    grid: Any,
    properties: Mapping[str, Any] | None = None,
) -> Any:
    """The STAC Item of a run: one asset per output (key -> path inside ``run_dir``), plus
    ``properties`` (e.g. ``prospect:pipeline``)."""
    import pystac

    from prospect.io.fetch import sha256_file

    created = dt.datetime.fromisoformat(str(provenance["created"]))
    bbox = lunar_bbox(grid)
    w, s, e, n = bbox
    geometry = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    identity = run_dir / "ranking.json" if (run_dir / "ranking.json").is_file() else None
    ranking_sha = (
        sha256_file(identity)
        if identity
        else hashlib.sha256(json.dumps(dict(record), sort_keys=True, default=str).encode()).hexdigest()
    )
    properties = {
        "title": "prospect site ranking",
        "created": provenance["created"],
        "ssys:targets": ["Moon"],
        "proj:code": grid.crs.code,
        "proj:wkt2": grid.crs.wkt,
        "proj:shape": [int(v) for v in grid.shape],
        "proj:transform": [float(v) for v in list(grid.transform)[:6]],
        "prospect:seed": record.get("seed"),
        "prospect:parameters": list(record.get("parameters") or []),
        "prospect:software": dict(provenance.get("software") or {}),
        "prospect:inputs": list(provenance.get("inputs") or []),
        "prospect:passing_sites": record.get("passing_all"),
        "prospect:lattice_sites": record.get("lattice_sites"),
        **dict(properties or {}),
    }
    item = pystac.Item(
        id=f"prospect-run-{ranking_sha[:16]}",
        geometry=geometry,
        bbox=bbox,
        datetime=created,
        properties=properties,
        stac_extensions=[FILE_EXT, PROJECTION_EXT, RASTER_EXT, SSYS_EXT],
    )
    for key, path in outputs.items():
        item.add_asset(key, _asset(Path(path), run_dir, sha256_file(path)))
    return item


def write_run_json(
    run_dir: Path,
    outputs: Mapping[str, Path],
    *,
    record: Mapping[str, Any],
    provenance: Mapping[str, Any],
    grid: Any,
    properties: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``run_dir/run.json`` (atomic); see :func:`build_item`."""
    item = build_item(run_dir, outputs, record=record, provenance=provenance, grid=grid, properties=properties)
    path = run_dir / "run.json"
    with atomic_write(path) as tmp:
        tmp.write_text(
            json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False), indent=2, default=_json_default)
            + "\n",
            encoding="utf-8",
        )
    return path


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def verify_assets(run_json: str | os.PathLike[str]) -> dict[str, bool]:
    """Asset key -> whether the file beside ``run.json`` still has the recorded sha256."""
    from prospect.io.fetch import sha256_file

    path = Path(run_json)
    item = json.loads(path.read_text(encoding="utf-8"))
    return {
        key: sha256_file(path.parent / a["href"]) == a["file:checksum"][len(SHA256_MULTIHASH) :]
        for key, a in item["assets"].items()
    }
