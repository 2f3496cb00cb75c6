"""Illumination maps of a whole DEM, tile by tile, resumable: horizons -> products -> GeoTIFFs.

:func:`illumination_tiles` yields the four products of
:func:`prospect.illumination.products.illumination_products` for each output tile of a
:class:`prospect.illumination.tiles.TiledHorizon`, so no horizon cube larger than one
tile ever exists. :func:`write_illumination` streams them into
``OUTDIR/<product>.tif`` (:class:`prospect.io.writers.TiledGeoTIFFs`: all four files
appear complete at the end, or none).

Resume. Each finished tile's products are saved in
``OUTDIR/.prospect-partial/<run key>/`` (atomic ``.npz`` files; the key hashes the DEM's
identity and every parameter). A rerun of the same command after a crash or an
interrupt loads the finished tiles instead of recomputing them, and gives results
identical to an uninterrupted run (the computation per tile is deterministic). The
folder is removed once the GeoTIFFs are in place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from prospect.grid import AnalysisGrid
from prospect.illumination.products import SunSamples, illumination_products
from prospect.illumination.tiles import FAR_FACTOR, NEAR_PX, TILE_PX, TiledHorizon
from prospect.io.writers import TiledGeoTIFFs, atomic_write

PRODUCTS = ("illumination_fraction", "longest_darkness_h", "psr_mask", "earth_visibility_fraction")
UNITS = {"illumination_fraction": "1", "longest_darkness_h": "h", "psr_mask": "1", "earth_visibility_fraction": "1"}
PARTIAL_DIR = ".prospect-partial"


def run_key(dem: xr.DataArray, samples: SunSamples, params: Mapping[str, Any]) -> str:
    """A short hash of the DEM's identity (checksum or name and shape), the ephemeris and the parameters."""
    h = hashlib.sha256()
    ident = {k: str(dem.attrs.get(k, "")) for k in ("source_sha256", "product_id", "source_path")}
    h.update(
        json.dumps(
            {"dem": ident, "shape": list(dem.shape), "params": dict(params)}, sort_keys=True, default=str
        ).encode()
    )
    for arr in (samples.beta_deg, samples.lambda_deg, samples.earth_lon_deg, samples.earth_lat_deg):
        h.update(np.ascontiguousarray(arr, dtype="float64").tobytes())
    h.update(repr(samples.step_h).encode())
    return h.hexdigest()[:16]


def illumination_tiles(
    dem: xr.DataArray,
    samples: SunSamples,
    *,
    n_azimuths: int = 360,
    max_distance_m: float = 150_000.0,
    observer_height_m: float = 0.0,
    tile_px: int = TILE_PX,
    near_px: int = NEAR_PX,
    far_factor: int = FAR_FACTOR,
    workers: int = 2,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> Iterator[tuple[tuple[int, int, int, int], xr.Dataset]]:
    """Yield ``(window, products)`` for every output tile ``(row0, row1, col0, col1)``.

    With ``checkpoint_dir``, each tile is saved there when done and loaded from there
    if present (see the module docstring). ``progress`` prints a line per tile on stderr.
    """
    th = TiledHorizon(
        dem,
        n_azimuths,
        max_distance_m,
        tile_px=tile_px,
        near_px=near_px,
        far_factor=far_factor,
        workers=workers,
        observer_height_m=observer_height_m,
    )
    yield from _tiles(th, samples, checkpoint_dir, progress)


def _tiles(
    th: TiledHorizon, samples: SunSamples, checkpoint_dir: str | os.PathLike[str] | None, progress: bool
) -> Iterator[tuple[tuple[int, int, int, int], xr.Dataset]]:
    dem = th.dem
    windows = th.plan.windows()
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt is not None:
        ckpt.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    for i, w in enumerate(windows):
        r0, r1, c0, c1 = w
        template = dem[r0:r1, c0:c1]
        saved = ckpt / f"tile_{r0}_{c0}.npz" if ckpt is not None else None
        ds = None
        if saved is not None and saved.exists():
            try:
                with np.load(saved) as npz:
                    ds = xr.Dataset({name: template.copy(data=npz[name]) for name in PRODUCTS})
                    attrs = json.loads(str(npz["attrs"]))
                for name in PRODUCTS:
                    ds[name].attrs = attrs[name]
                    ds[name].name = name
            except (OSError, KeyError, ValueError):
                ds = None  # a damaged checkpoint is recomputed
        if ds is None:
            ds = illumination_products(th.compute(w), samples)
            if saved is not None:
                with atomic_write(saved) as tmp, open(tmp, "wb") as fh:
                    np.savez(
                        fh,
                        attrs=json.dumps({n: ds[n].attrs for n in PRODUCTS}, default=str),
                        **{n: ds[n].values for n in PRODUCTS},
                    )
        for name in PRODUCTS:
            ds[name].attrs["horizon_tiling"] = th.plan.describe()
        if progress:
            el = time.monotonic() - t_start
            print(
                f"illumination: tile {i + 1}/{len(windows)} rows {r0}:{r1} cols {c0}:{c1} ({el:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
        yield w, ds


def write_illumination(
    dem: xr.DataArray,
    outdir: str | os.PathLike[str],
    samples: SunSamples,
    *,
    source: str = "",
    progress: bool = False,
    **params: Any,
) -> dict[str, Path]:
    """All four products of ``dem`` as ``outdir/<product>.tif`` (lunar CRS, units and provenance in tags).

    ``params`` go to :func:`illumination_tiles` (``n_azimuths``, ``max_distance_m``,
    ``observer_height_m``, ``tile_px``, ``near_px``, ``far_factor``, ``workers``).
    Resumable (module docstring). Returns ``{product: path}``.
    """
    tiling = {k: params[k] for k in ("tile_px", "near_px", "far_factor", "workers", "observer_height_m") if k in params}
    th = TiledHorizon(dem, params.get("n_azimuths", 360), params.get("max_distance_m", 150_000.0), **tiling)
    out = Path(outdir)  # created only once the parameters have been accepted
    out.mkdir(exist_ok=True)
    grid = AnalysisGrid.from_dataarray(dem)
    key = run_key(dem, samples, params)
    ckpt = out / PARTIAL_DIR / key
    paths = {name: out / f"{name}.tif" for name in PRODUCTS}
    first = True
    with TiledGeoTIFFs(paths, crs=grid.crs, transform=grid.transform, shape=dem.shape, units=UNITS) as dst:
        for (r0, _r1, c0, _c1), ds in _tiles(th, samples, ckpt, progress):
            for name in PRODUCTS:
                layer = ds[name]
                dst.write(name, r0, c0, layer.values)
                if first:
                    tags = {f"prospect_{k}": v for k, v in layer.attrs.items() if k != "units"}
                    tags["prospect_observer_height_m"] = params.get("observer_height_m", 0.0)
                    tags["prospect_source"] = source
                    dst.set_tags(name, tags)
            first = False
    shutil.rmtree(ckpt, ignore_errors=True)
    with contextlib.suppress(OSError):
        (out / PARTIAL_DIR).rmdir()
    return paths
