"""Where the illumination stage's time goes, on one output tile.

Run::

    python -m benchmarks.profile_illumination [--out build/bench] [--size 7584] [--tile 1536]
                                             [--azimuths 360] [--step-hours 6]

On the ``make bench`` fractal 20 m DEM (``size x size``, the pole at the centre), one
output tile of ``tile`` pixels next to the centre goes through exactly what the stage does
(:func:`prospect.illumination.maps.tile_products`), and each part is timed on its own:

* ``coarse``: the far-field DEM (once per run, not per tile);
* ``cube``: the tile's horizon cube (near-field sweep, far-field sweep, combination),
  :meth:`prospect.illumination.tiles.TiledHorizon.compute`;
* ``products``: :func:`prospect.illumination.products.illumination_products` on that cube,
  split by :func:`prospect.illumination.products.products_profile` into its passes (Sun
  longitudes, darkness walk over the time series, Earth);
* ``write``: the four products into tiled GeoTIFFs.

Times are wall seconds on this machine with the stage's thread counts (numba's threads for
the products, ``--workers`` threads for the cube); ``<part>_cpu`` are the CPU seconds of all
threads (steadier when the machine is shared). Writes ``OUT/profile_illumination.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_slope import write_dem
from prospect import layers
from prospect.grid import AnalysisGrid
from prospect.illumination.ephemeris import default_times, sun_earth_directions
from prospect.illumination.maps import describe_tiling, horizon_tiling
from prospect.illumination.products import SunSamples, illumination_products, products_profile
from prospect.illumination.tiles import MEMORY_MB, tile_memory_bytes
from prospect.io.readers import open_product
from prospect.io.writers import TiledGeoTIFFs, atomic_write


def _dem(out: Path, size: int) -> Path:
    label = out / f"fractal_{size}.LBL"
    if not label.exists():
        write_dem(out / f"fractal_{size}.IMG", size)
    return label


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("build/bench"))
    ap.add_argument("--size", type=int, default=7584)
    ap.add_argument("--tile", type=int, default=None, help="tile side [px] (default: from --memory)")
    ap.add_argument("--memory", type=float, default=MEMORY_MB, help="the stage's memory budget [MB]")
    ap.add_argument("--azimuths", type=int, default=360)
    ap.add_argument("--step-hours", type=float, default=6.0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}

    dem = open_product(str(_dem(args.out, args.size)))
    se = sun_earth_directions(default_times(step_hours=args.step_hours))
    samples = SunSamples.from_ephemeris(se)
    th = horizon_tiling(dem, n_azimuths=args.azimuths, tile_px=args.tile, workers=args.workers, memory_mb=args.memory)
    tile = th.plan.tile_px
    c = args.size // 2
    window = (c, min(c + tile, args.size), c, min(c + tile, args.size))
    predicted = tile_memory_bytes(tile, args.azimuths, th.plan.halo_px, args.workers) / 1e6
    illumination_products(th.compute((0, 16, 0, 16)), samples)  # numba compile, untimed
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    t = time.perf_counter()
    if th.plan.multiresolution:
        th.coarse_heights()
    times["coarse"] = time.perf_counter() - t
    t, c = time.perf_counter(), time.process_time()
    cube = th.compute(window)
    times["cube"] = time.perf_counter() - t
    times["cube_cpu"] = time.process_time() - c
    parts = products_profile(cube, samples)
    times.update({f"products.{k}": v for k, v in parts.items()})
    t = time.perf_counter()
    ds = illumination_products(cube, samples)
    times["products"] = time.perf_counter() - t
    describe_tiling(th, ds)
    del cube
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        names = [str(n) for n in ds.data_vars]
        grid = AnalysisGrid.from_dataarray(ds[names[0]])
        with TiledGeoTIFFs(
            {n: Path(tmp) / f"{n}.tif" for n in names},
            crs=grid.crs,
            transform=grid.transform,
            shape=grid.shape,
            units={n: layers.get(n).units for n in names},
        ) as dst:
            for n in names:
                dst.write(n, 0, 0, ds[n].values)
    times["write"] = time.perf_counter() - t
    pixels = (window[1] - window[0]) * (window[3] - window[2])
    record = {
        "schema": "prospect-profile-illumination/1",
        "command": " ".join(["python -m benchmarks.profile_illumination", *(argv or sys.argv[1:])]),
        "size": args.size,
        "tile": tile,
        "memory_mb": args.memory,
        "predicted_tile_mb": round(predicted, 1),
        "rss_before_tile_mb": round(rss_before, 1),
        "window": window,
        "pixels": pixels,
        "azimuths": args.azimuths,
        "step_hours": args.step_hours,
        "time_samples": int(len(samples.beta_deg)),
        "plan": th.plan.describe(),
        "seconds": {k: round(v, 3) for k, v in times.items()},
        "microseconds_per_pixel": {k: round(v / pixels * 1e6, 3) for k, v in times.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    with atomic_write(args.out / "profile_illumination.json") as tmp_path:
        Path(tmp_path).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
