"""Illumination benchmark: the whole stage on a 7584^2 DEM, a Dask cluster, a time model, and the horizon
against brute force and GRASS ``r.horizon``.

Run::

    python -m benchmarks.bench_illumination [--out build/bench] [--size 7584] [--azimuths 360]
                                          [--max-distance-km 150] [--skip-grass] [--skip-model]
                                          [--skip-cluster] [--cubes]

Targets (issue 18): the whole stage at 7584^2, 360 azimuths, 6 h steps, 2 m height in at most
15 minutes and 3 GB on 2 cores; 2 worker processes at least 1.7x one.

1. A ``size x size`` 20 m fractal LOLA-style PDS3 DEM (polar stereographic south, the pole
   at the centre; :func:`benchmarks.bench_slope.write_dem`, heights ``DN * 0.5``) is written.
2. The whole stage, :func:`run_stage`: ``prospect illumination DEM OUT --azimuths 360
   --step-hours 6 --height 2`` in a child process (default tiling and memory budget), timed
   start to exit, its peak RSS from ``os.wait4``, its per-tile progress lines, the products'
   sha256. Then :func:`cluster_scaling`: the same command on a smaller DEM against a cluster
   started with ``dask scheduler`` and ``dask worker`` (1 thread each), with 1 worker process
   and then 2, and byte-identity with the threaded run. ``--cubes`` also times the horizon
   cubes alone (:func:`run_stream`: every tile's ``(azimuth, y, x)`` cube reduced, untimed, to
   per-pixel max and mean; ``--tile 0`` sweeps the whole raster in memory instead).
2b. Accuracy of the far field: one production tile near the centre, every 10th
   azimuth, multi-resolution against exact (full resolution to ``max_distance``).
3. Brute-force ratio on central crops (256^2 and 512^2) of the same DEM:
   ``horizon_sweep`` vs ``horizon_brute_force(sampling="lines")`` (the same samples, so
   the maximum |difference| should be 0) and vs ``sampling="ray"`` (rays from pixel
   centres, 0.5 px steps; an independent check of the sampling). Both single-threaded;
   the brute-force runs use a subset of the azimuths (listed in the results) and the
   ratio is computed per azimuth (seconds / azimuth), i.e. extrapolated to any count.
4. GRASS ``r.horizon`` (unless ``--skip-grass``): ``apt-get install grass-core`` if
   ``grass`` is missing, then in a temporary location built from the 512^2 crop's
   GeoTIFF (``--tmp-location dem.tif``: the lunar south polar stereographic CRS, sphere
   R = 1737.4 km; r.horizon refuses XY locations): ``r.in.gdal`` of the crop (map units =
   metres), ``g.region raster=``, ``r.horizon -d step=10
   maxdistance=<m>``, timed inside the GRASS session, then every output map is exported
   with ``r.out.gdal`` and compared with the sweep at the same azimuths. Conventions:
   r.horizon azimuths are degrees counter-clockwise from east (grid +x); prospect's are
   clockwise from grid up (+y): ``prospect = (90 - grass) mod 360``. r.horizon has no
   planetary-radius option (its curvature correction, if any, uses Earth's radius) and
   samples along rays with its own step, so values differ by design; the comparison is
   statistics of the difference, not a test. Any GRASS failure is recorded, never fatal.
4b. The time model (:func:`time_model`, unless ``--skip-model``): two production tiles timed on
   the geometry of each of :data:`MODEL_CAPS` (LDEM_80S_20M, LDEM_875S_5M), and the predicted
   wall time on N workers.
5. ``OUT/illumination.json`` and ``OUT/illumination.md`` are written atomically and the
   markdown is printed. Exit code 0 whether or not the target is met.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

from benchmarks.bench_slope import fmt, write_report
from prospect.grid import AnalysisGrid
from prospect.illumination.tiles import FAR_FACTOR, MEMORY_MB, NEAR_PX

SCHEMA = "prospect-bench-illumination/1"
REF_SIZE = 7584
N_AZIMUTHS = 360
MAX_DISTANCE_KM = 150.0
TARGET_S = 600.0
#: the whole stage at ``REF_SIZE``^2, 360 azimuths, 6 h steps, 2 m height: wall seconds and peak RSS [MB]
STAGE_TARGET_S = 900.0
STAGE_RSS_TARGET_MB = 3000.0
STAGE_STEP_HOURS = 6.0
STAGE_HEIGHT_M = 2.0
#: the caps the time model predicts: (name, side [px], pixel [m])
MODEL_CAPS = (("LDEM_80S_20M", 30400, 20.0), ("LDEM_875S_5M", 30336, 5.0))
MODEL_WORKERS = (1, 2, 4, 8, 16, 32)
#: DEM side of the 1 vs 2 process workers comparison (the same stage settings)
CLUSTER_SIZE = 2176  # two default tiles a side: 4 tiles, as many for each of 2 workers
#: the fractal tile the model's DEMs are mirrored from [px]
MODEL_TILE_SOURCE_PX = 2048
WORKERS = 2
CROP_SIZES = (256, 512)
GRASS_SIZE = 512
GRASS_STEP_DEG = 10.0
GRASS_INSTALL_TIMEOUT_S = 300.0
GRASS_RUN_TIMEOUT_S = 900.0
# r.horizon refuses an XY location ("Can't get projection info"); the temporary location is
# built from the crop's own GeoTIFF, i.e. the lunar south polar stereographic CRS (R = 1737.4 km).
# brute-force azimuth subsets: (crop size, sampling) -> number of evenly spaced azimuths
BRUTE_AZIMUTHS = {(256, "lines"): 36, (512, "lines"): 12, (256, "ray"): 8, (512, "ray"): 2}


def _log(msg: str) -> None:
    print(f"[bench-illumination] {msg}", file=sys.stderr, flush=True)


# --- the streamed runner ---------------------------------------------------------------


def stream_horizon_stats(
    z: np.ndarray,
    args: tuple,
    azimuths_deg: Sequence[float] | np.ndarray,
    max_distance_m: float,
    *,
    workers: int = WORKERS,
    observer_height_m: float = 0.0,
) -> dict[str, np.ndarray]:
    """Run the sweep for every azimuth and reduce on the fly; never hold the cube.

    ``z`` and ``args`` come from :func:`kernel_inputs`. Each azimuth
    is swept into one of ``max(workers, 1)`` reused float32 planes by a thread pool (the
    kernel releases the GIL); the main thread folds each finished plane into the running
    per-pixel ``max`` (NaN-ignoring ``np.fmax``), ``sum`` and ``count`` of valid values,
    then hands the plane back for the next azimuth. Returns ``max`` (float32, NaN where
    no azimuth had a valid value), ``mean`` (float32) and ``count`` (int16).
    """
    from prospect.illumination import _horizon_kernels as K

    az = np.asarray(azimuths_deg, dtype=np.float64).ravel()
    nbuf = max(1, int(workers))
    bufs = [np.empty(z.shape, dtype=np.float32) for _ in range(nbuf)]
    acc_max = np.full(z.shape, np.nan, dtype=np.float32)
    acc_sum = np.zeros(z.shape, dtype=np.float32)
    acc_cnt = np.zeros(z.shape, dtype=np.int16)
    valid = np.empty(z.shape, dtype=bool)
    mode, x0, y0, a, e, radius = args
    dmax, height = float(max_distance_m), float(observer_height_m)

    def sweep(i: int, b: int) -> int:
        K.horizon_sweep(z, math.radians(float(az[i]) % 360.0), mode, x0, y0, a, e, radius, dmax, height, bufs[b])
        return b

    def reduce(plane: np.ndarray) -> None:
        _fold(plane, acc_max, acc_sum, acc_cnt, valid)

    if nbuf == 1:
        for i in range(az.size):
            sweep(i, 0)
            reduce(bufs[0])
    else:
        with ThreadPoolExecutor(max_workers=nbuf) as pool:
            pending = {}
            nxt = 0
            for b in range(min(nbuf, az.size)):
                pending[b] = pool.submit(sweep, nxt, b)
                nxt += 1
            order = list(pending)  # buffers in submission order: reduce in azimuth order
            while order:
                b = order.pop(0)
                pending.pop(b).result()
                reduce(bufs[b])
                if nxt < az.size:
                    pending[b] = pool.submit(sweep, nxt, b)
                    order.append(b)
                    nxt += 1
    return {"max": acc_max, "mean": _mean(acc_sum, acc_cnt), "count": acc_cnt}


def _fold(plane: np.ndarray, acc_max: np.ndarray, acc_sum: np.ndarray, acc_cnt: np.ndarray, valid: np.ndarray) -> None:
    """Fold one horizon plane into running NaN-ignoring max, sum and count (``plane``'s NaN become 0)."""
    np.fmax(acc_max, plane, out=acc_max)
    np.isfinite(plane, out=valid)
    np.add(acc_cnt, valid, out=acc_cnt, casting="unsafe")
    np.copyto(plane, 0.0, where=~valid)
    np.add(acc_sum, plane, out=acc_sum)


def _mean(acc_sum: np.ndarray, acc_cnt: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(acc_cnt > 0, acc_sum / np.maximum(acc_cnt, 1), np.nan).astype(np.float32)


def tiled_horizon_stats(
    dem, n_azimuths: int, max_distance_m: float, *, tile_px: int, near_px: int, far_factor: int, workers: int = WORKERS
) -> dict[str, Any]:
    """The production path: :class:`prospect.illumination.tiles.TiledHorizon` tile by tile.

    Each tile's ``(azimuth, y, x)`` cube (what the illumination products consume) is
    reduced to the per-pixel max and mean over azimuths and dropped; returns those maps,
    the plan and the seconds spent in tiles.
    """
    from prospect.illumination.tiles import TiledHorizon

    th = TiledHorizon(
        dem, n_azimuths, max_distance_m, tile_px=tile_px, near_px=near_px, far_factor=far_factor, workers=workers
    )
    th.compute((0, 8, 0, 8))  # compile / load kernels and build the coarse DEM, untimed
    acc_max = np.full(dem.shape, np.nan, dtype=np.float32)
    acc_mean = np.full(dem.shape, np.nan, dtype=np.float32)
    seconds = 0.0
    for w in th.plan.windows():
        r0, r1, c0, c1 = w
        t0 = time.perf_counter()
        v = th.compute(w).values  # timed: the cube the products consume
        seconds += time.perf_counter() - t0
        # untimed bench bookkeeping, plane by plane (no cube-sized temporaries)
        mx = np.full(v.shape[1:], np.nan, dtype=np.float32)
        tot = np.zeros(v.shape[1:], dtype=np.float32)
        cnt = np.zeros(v.shape[1:], dtype=np.int16)
        valid = np.empty(v.shape[1:], dtype=bool)
        for plane in v:
            _fold(plane, mx, tot, cnt, valid)
        acc_max[r0:r1, c0:c1] = mx
        acc_mean[r0:r1, c0:c1] = _mean(tot, cnt)
        del v
    return {"max": acc_max, "mean": acc_mean, "seconds": seconds, "plan": th.plan.describe()}


def far_field_accuracy(
    dem,
    max_distance_m: float,
    window: tuple[int, int, int, int],
    *,
    n_azimuths: int = 360,
    every: int = 10,
    tile_px: int = 1088,
    near_px: int = NEAR_PX,
    far_factor: int = FAR_FACTOR,
    workers: int = WORKERS,
) -> dict[str, Any]:
    """One production tile, multi-resolution against exact (full resolution to ``max_distance``).

    Uses every ``every``-th of the ``n_azimuths`` azimuths (the same azimuths as the run).
    """
    from prospect.illumination.tiles import TiledHorizon

    multi = TiledHorizon(
        dem, n_azimuths, max_distance_m, tile_px=tile_px, workers=workers, near_px=near_px, far_factor=far_factor
    )
    exact = TiledHorizon(dem, n_azimuths, max_distance_m, tile_px=tile_px, workers=workers, far_factor=1)
    keep = np.arange(0, n_azimuths, every)
    multi.az = multi.az[keep]
    exact.az = exact.az[keep]
    t0 = time.perf_counter()
    a = multi.compute(window).values.astype(np.float64)
    tm = time.perf_counter() - t0
    t0 = time.perf_counter()
    b = exact.compute(window).values.astype(np.float64)
    te = time.perf_counter() - t0
    d = a - b
    ok = np.isfinite(d)
    ad = np.abs(d[ok])
    return {
        "window": list(window),
        "azimuths": [float(x) for x in multi.az],
        "plan": multi.plan.describe(),
        "multi_seconds": tm,
        "exact_seconds": te,
        "nan_mismatch": int((np.isnan(a) != np.isnan(b)).sum()),
        "median_abs_diff_deg": float(np.median(ad)),
        "p99_abs_diff_deg": float(np.percentile(ad, 99)),
        "p999_abs_diff_deg": float(np.percentile(ad, 99.9)),
        "max_abs_diff_deg": float(ad.max()),
        "mean_diff_deg": float(d[ok].mean()),
        "fraction_within_0p1_deg": float((ad <= 0.1).mean()),
    }


def kernel_inputs(dem) -> tuple[np.ndarray, tuple]:
    """Heights in m as C-contiguous float64 and the sweep kernel's geometry ``(mode, x0, y0, a, e, R)``.

    What :func:`prospect.illumination.horizon.horizon_angles` hands its kernel on a polar
    stereographic grid (the benchmark's DEMs), built from the public metric API.
    """
    from prospect.illumination import _horizon_kernels as K
    from prospect.terrain.metric import PLANAR, ground_metric, heights_in_metres

    metric = ground_metric(AnalysisGrid.from_dataarray(dem), planar=False)
    mode = K.PLANAR if metric.mode == PLANAR else K.POLAR
    args = (mode, metric.x0, metric.y0, metric.a, metric.e, metric.radius_m)
    z = np.ascontiguousarray(np.asarray(heights_in_metres(dem).values, dtype=np.float64))
    return z, args


def _warm_kernel() -> None:
    """Compile / load the cached numba kernel on a tiny planar grid (untimed)."""
    from prospect.illumination import _horizon_kernels as K
    from prospect.lunar import MOON_RADIUS_M

    z = np.zeros((8, 8), dtype=np.float64)
    out = np.empty((8, 8), dtype=np.float32)
    K.horizon_sweep(z, 0.3, K.PLANAR, 0.0, 0.0, 20.0, -20.0, MOON_RADIUS_M, 1000.0, 0.0, out)


def run_stream_child(
    lbl: str,
    n_azimuths: int,
    max_distance_m: float,
    workers: int,
    *,
    tile_px: int = 0,
    near_px: int = NEAR_PX,
    far_factor: int = FAR_FACTOR,
) -> dict[str, Any]:
    """The child of step 2; returns timings + checksums.

    ``tile_px > 0`` (the default of ``main``): the production tiled path
    (:func:`tiled_horizon_stats`), reading the DEM lazily. ``tile_px = 0``: the whole
    DEM in memory, swept plane by plane (:func:`stream_horizon_stats`; exact).
    """
    import resource

    from prospect.io.readers import open_product

    t0 = time.perf_counter()
    _warm_kernel()
    t_warm = time.perf_counter() - t0
    plan = "whole raster in memory, plane by plane (exact)"
    if tile_px > 0:
        t0 = time.perf_counter()
        dem = open_product(lbl)
        t_open = time.perf_counter() - t0
        t0 = time.perf_counter()
        stats = tiled_horizon_stats(
            dem, n_azimuths, max_distance_m, tile_px=tile_px, near_px=near_px, far_factor=far_factor, workers=workers
        )
        # everything else in the call: kernel load, coarse DEM and the per-tile reductions
        # (counted in the headline, which is therefore an upper bound of the cube time)
        t_prep = time.perf_counter() - t0 - stats["seconds"]
        t_sweep = stats["seconds"]
        plan = stats["plan"]
        shape = dem.shape
    else:
        t0 = time.perf_counter()
        dem = open_product(lbl).load()
        t_open = time.perf_counter() - t0
        az = np.arange(int(n_azimuths), dtype=np.float64) * (360.0 / int(n_azimuths))  # horizon_angles' default
        t0 = time.perf_counter()
        z, args = kernel_inputs(dem)
        del dem
        t_prep = time.perf_counter() - t0
        t1 = time.perf_counter()
        stats = stream_horizon_stats(z, args, az, max_distance_m, workers=workers)
        t_sweep = time.perf_counter() - t1
        shape = z.shape
    mx, mean = stats["max"], stats["mean"]
    return {
        "shape": list(shape),
        "azimuths": int(n_azimuths),
        "max_distance_m": float(max_distance_m),
        "workers": int(workers),
        "plan": plan,
        "warm_seconds": t_warm,
        "open_seconds": t_open,
        "prepare_seconds": t_prep,
        "sweep_seconds": t_sweep,
        "seconds": t_prep + t_sweep,
        "checksum_mean_of_max_deg": float(np.nanmean(mx)),
        "max_of_max_deg": float(np.nanmax(mx)),
        "mean_horizon_deg": float(np.nanmean(mean)),
        "nan_pixels_in_max": int(np.isnan(mx).sum()),
        "inprocess_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6,
    }


def run_stream(
    lbl: Path, n_azimuths: int, max_distance_m: float, logs: Path, workers: int = WORKERS, tile_px: int = 1088
) -> dict[str, Any]:
    from benchmarks.bench_slope import measure

    cmd = [
        sys.executable,
        "-m",
        "benchmarks.bench_illumination",
        "--run-stream",
        str(lbl),
        "--azimuths",
        str(n_azimuths),
        "--max-distance-km",
        repr(max_distance_m / 1000.0),
        "--workers",
        str(workers),
        "--tile",
        str(tile_px),
    ]
    m = measure(cmd, log_stem=logs / "stream", timeout=4 * 3600)
    res = m.record(cmd)
    if not m.ok:
        return res
    try:
        text = (logs / "stream.out").read_text().strip().splitlines()[-1]
        res.update(json.loads(text))
    except (OSError, IndexError, json.JSONDecodeError) as exc:
        res["ok"] = False
        res["error"] = f"could not read the child's JSON: {exc}"
        return res
    ny, nx = res["shape"]
    res["mpix_az_per_s"] = ny * nx * res["azimuths"] / 1e6 / res["seconds"]
    return res


# --- the whole stage ------------------------------------------------------------------


def prospect_command() -> list[str]:
    """The ``prospect`` console script of this interpreter's environment."""
    exe = Path(sys.executable).with_name("prospect")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from prospect.cli import main; sys.exit(main())"]


_TILE_LINE = re.compile(r"illumination: tile (\d+)/(\d+) rows (\d+):(\d+) cols (\d+):(\d+) \((\d+) s\)")


def tile_lines(stderr: str) -> list[dict[str, int]]:
    """The per-tile progress lines of ``prospect illumination`` (cumulative seconds since the first tile)."""
    rows = []
    for m in _TILE_LINE.finditer(stderr):
        i, n, r0, r1, c0, c1, el = map(int, m.groups())
        rows.append({"tile": i, "of": n, "rows": r1 - r0, "cols": c1 - c0, "elapsed_s": el})
    return rows


def sha256_files(folder: Path) -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.tif"))}


def run_stage(
    lbl: Path,
    out: Path,
    logs: Path,
    *,
    stem: str,
    n_azimuths: int = N_AZIMUTHS,
    step_hours: float = STAGE_STEP_HOURS,
    height_m: float = STAGE_HEIGHT_M,
    scheduler: str | None = None,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """``prospect illumination LBL OUT --azimuths N --step-hours S --height H`` in a child process, end to
    end (interpreter start, imports, DEM read, ephemeris, every tile's cube and products, the four
    GeoTIFFs): its wall time, its peak RSS (``os.wait4``), the per-tile progress and the products' sha256."""
    from benchmarks.bench_slope import measure

    cmd = [
        *prospect_command(),
        "illumination",
        str(lbl),
        str(out),
        "--azimuths",
        str(n_azimuths),
        "--step-hours",
        repr(step_hours),
        "--height",
        repr(height_m),
        *(["--scheduler", scheduler] if scheduler else []),
        *extra,
    ]
    m = measure(cmd, log_stem=logs / stem, timeout=6 * 3600)
    res = m.record(cmd)
    if not m.ok:
        return res
    stderr = (logs / f"{stem}.err").read_text(errors="replace")
    tiles = tile_lines(stderr)
    res["tiles"] = tiles
    res["n_tiles"] = tiles[-1]["of"] if tiles else None
    if len(tiles) >= 2:
        steps = np.diff([0] + [t["elapsed_s"] for t in tiles])
        full = [s for s, t in zip(steps, tiles, strict=True) if t["rows"] == tiles[0]["rows"] == t["cols"]]
        res["tile_px"] = tiles[0]["rows"]
        res["seconds_per_full_tile"] = float(np.mean(full)) if full else None
    res["sha256"] = sha256_files(out)
    return res


def probe_child(
    lbl: str, windows: list[list[int]], n_azimuths: int, step_hours: float, height_m: float
) -> dict[str, Any]:
    """The child of the time model: the stage's own tile computation (:func:`prospect.illumination.maps.tile_products`,
    default tiling) on a few ``windows``, each timed (cube + products), after the coarse DEM and the ephemeris."""
    import resource

    from prospect.illumination.ephemeris import default_times, sun_earth_directions
    from prospect.illumination.maps import horizon_tiling, tile_products
    from prospect.illumination.products import SunSamples
    from prospect.io.readers import open_product

    dem = open_product(lbl)
    samples = SunSamples.from_ephemeris(sun_earth_directions(default_times(step_hours=step_hours)))
    th = horizon_tiling(dem, n_azimuths=n_azimuths, observer_height_m=height_m)
    t0 = time.perf_counter()
    th.coarse_heights()
    coarse_s = time.perf_counter() - t0
    tile_products(th, (0, 16, 0, 16), samples)  # kernels loaded, untimed
    plan = th.plan
    wins: list[tuple[int, int, int, int]] = [(w[0], w[1], w[2], w[3]) for w in windows] or [
        plan.windows()[len(plan.windows()) // 2]
    ]
    seconds = []
    for w in wins:
        t0 = time.perf_counter()
        tile_products(th, w, samples)
        seconds.append(time.perf_counter() - t0)
    return {
        "shape": list(dem.shape),
        "plan": plan.describe(),
        "tile_px": plan.tile_px,
        "n_tiles": len(plan.windows()),
        "windows": [list(w) for w in wins],
        "coarse_seconds": coarse_s,
        "tile_seconds": seconds,
        "inprocess_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6,
    }


def time_model(
    work: Path, logs: Path, *, n_azimuths: int = N_AZIMUTHS, step_hours: float = STAGE_STEP_HOURS
) -> list[dict]:
    """Predicted wall time of the whole stage on the :data:`MODEL_CAPS`, from measured tiles.

    For each cap a fractal DEM of its geometry (side, pixel, the pole at the centre; mirrored
    copies of one fractal tile, :func:`benchmarks.bench_slope.write_tiled_dem`) is written, and
    two production tiles are timed in a child (:func:`probe_child`): one at the pole and one half
    way to the edge, both with the whole far field inside the DEM. Model: ``coarse DEM + n_tiles x
    mean tile seconds / N`` for N workers of this machine's 2 cores each (tiles are independent
    tasks; the far-field DEM is sent once), writing excluded (measured separately by the
    whole-stage run, where it is part of the wall time).
    """
    from benchmarks.bench_slope import make_fractal_tile, measure, write_tiled_dem

    out = []
    source = make_fractal_tile(MODEL_TILE_SOURCE_PX, 7)
    for name, side, pixel in MODEL_CAPS:
        _log(f"time model: writing the {name} geometry ({side}^2, {pixel:g} m)")
        lbl = write_tiled_dem(work / f"{name}.IMG", side, source, pixel_m=pixel, product_id=f"BENCH_{name}")
        from prospect.illumination.maps import horizon_tiling
        from prospect.io.readers import open_product

        plan = horizon_tiling(open_product(lbl), n_azimuths=n_azimuths).plan
        t = plan.tile_px
        centre = (side // 2 // t) * t
        half = ((side // 2 + side // 4) // t) * t
        windows = [
            [centre, min(centre + t, side), centre, min(centre + t, side)],
            [half, min(half + t, side), centre, min(centre + t, side)],
        ]
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.bench_illumination",
            "--probe-tiles",
            str(lbl),
            "--windows",
            json.dumps(windows),
            "--azimuths",
            str(n_azimuths),
            "--step-hours",
            repr(step_hours),
        ]
        _log(f"time model: timing tiles {windows} of {name}")
        m = measure(cmd, log_stem=logs / f"model_{name}", timeout=3 * 3600)
        rec: dict[str, Any] = {
            "cap": name,
            "side": side,
            "pixel_m": pixel,
            "command": " ".join(cmd),
            "ok": m.ok,
            "peak_rss_mb": m.peak_rss_mb,
        }
        if m.ok:
            rec.update(json.loads((logs / f"model_{name}.out").read_text().strip().splitlines()[-1]))
            per_tile = float(np.mean(rec["tile_seconds"]))
            rec["seconds_per_tile"] = per_tile
            rec["predicted_hours"] = {
                str(n): round((rec["coarse_seconds"] + rec["n_tiles"] * per_tile / n) / 3600.0, 2)
                for n in MODEL_WORKERS
            }
        else:
            rec["error"] = m.stderr_tail
        out.append(rec)
        lbl.unlink(missing_ok=True)
        lbl.with_suffix(".IMG").unlink(missing_ok=True)
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cluster_scaling(work: Path, logs: Path, size: int, n_azimuths: int = N_AZIMUTHS) -> dict[str, Any]:
    """The whole stage on one Dask cluster started the way users start one (``dask scheduler`` and
    ``dask worker`` command-line processes on loopback), first with 1 worker process, then with 2
    (1 thread each), against the threaded run on the same ``size``^2 DEM: wall times, speed-up and
    whether every product is byte-identical to the threaded run."""
    from benchmarks.bench_slope import write_dem

    lbl = write_dem(work / f"DEM_cluster_{size}.IMG", size)
    res: dict[str, Any] = {"size": size, "note": f"{size}^2 DEM, same stage settings; workers of 1 thread each"}
    _log(f"cluster: threaded reference on {size}^2")
    threads = run_stage(lbl, work / "cluster_threads", logs, stem="cluster_threads", n_azimuths=n_azimuths)
    res["threads"] = {k: threads.get(k) for k in ("wall_seconds", "peak_rss_mb", "ok", "error")}
    dask_cli = str(Path(sys.executable).with_name("dask"))
    address = f"tcp://127.0.0.1:{_free_port()}"
    procs: list[subprocess.Popen] = []
    runs: list[dict[str, Any]] = []
    try:
        host, port = address[len("tcp://") :].split(":")
        with open(logs / "cluster_scheduler.log", "w") as log:
            procs.append(
                subprocess.Popen(
                    [dask_cli, "scheduler", "--host", host, "--port", port, "--no-dashboard"], stdout=log, stderr=log
                )
            )
        for n in (1, 2):
            with open(logs / f"cluster_worker_{n}.log", "w") as log:
                procs.append(
                    subprocess.Popen(
                        [dask_cli, "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard"],
                        stdout=log,
                        stderr=log,
                    )
                )
            from distributed import Client

            with Client(address, timeout="30s") as client:
                client.wait_for_workers(n, timeout=120)
            _log(f"cluster: {n} worker process(es)")
            r = run_stage(
                lbl, work / f"cluster_{n}", logs, stem=f"cluster_{n}", n_azimuths=n_azimuths, scheduler=address
            )
            r["workers"] = n
            r["identical"] = bool(r.get("sha256")) and r.get("sha256") == threads.get("sha256")
            runs.append(
                {k: r.get(k) for k in ("workers", "wall_seconds", "peak_rss_mb", "ok", "identical", "error", "command")}
            )
    except Exception as exc:  # recorded, never fatal
        res["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    if runs and runs[0].get("wall_seconds"):
        for r in runs:
            r["speedup"] = runs[0]["wall_seconds"] / r["wall_seconds"] if r.get("wall_seconds") else None
    res["runs"] = runs
    return res


# --- brute force -----------------------------------------------------------------------


def crop(dem, size: int):
    """The central ``size x size`` window of ``dem`` (keeps coords and attrs)."""
    ny, nx = dem.shape
    y0, x0 = max(0, (ny - size) // 2), max(0, (nx - size) // 2)
    return dem.isel({dem.dims[0]: slice(y0, y0 + size), dem.dims[1]: slice(x0, x0 + size)}).load()


def _even_azimuths(n: int) -> np.ndarray:
    # offset by a non-axis angle so the subset is not only the easy axis-aligned sweeps
    return (np.arange(n) * (360.0 / n) + 7.0) % 360.0


def _sweep_timed(dem, az: np.ndarray, dmax: float) -> tuple[np.ndarray, float]:
    from prospect.illumination import horizon as H

    _warm_kernel()
    t0 = time.perf_counter()
    cube = H.horizon_angles(dem, az, max_distance_m=dmax, workers=1).values
    return cube, time.perf_counter() - t0


def brute_force_ratios(
    dem, dmax: float, sizes: Sequence[int] = CROP_SIZES, counts: dict | None = None
) -> list[dict[str, Any]]:
    """Per-azimuth time of the sweep vs both brute-force samplings on central crops."""
    from prospect.illumination import horizon as H

    counts = dict(BRUTE_AZIMUTHS if counts is None else counts)
    rows = []
    for size in sizes:
        sub = crop(dem, size)
        # compile the brute-force kernels on a tiny crop, untimed
        tiny = crop(dem, 8)
        samplings: tuple[Literal["lines", "ray"], ...] = ("lines", "ray")
        for sampling in samplings:
            H.horizon_brute_force(tiny, [10.0], max_distance_m=dmax, sampling=sampling)
        for sampling in samplings:
            n = counts.get((size, sampling))
            if not n:
                continue
            az = _even_azimuths(n)
            sweep, ts = _sweep_timed(sub, az, dmax)
            t0 = time.perf_counter()
            ref = H.horizon_brute_force(sub, az, max_distance_m=dmax, sampling=sampling).values
            tb = time.perf_counter() - t0
            d = np.abs(sweep.astype(np.float64) - ref.astype(np.float64))
            finite = np.isfinite(d)
            nan_mismatch = int((np.isnan(sweep) != np.isnan(ref)).sum())
            dd = d[finite]
            row = {
                "size": size,
                "sampling": sampling,
                "azimuths": [float(a) for a in az],
                "n_azimuths": int(n),
                "sweep_s_per_az": ts / n,
                "brute_s_per_az": tb / n,
                "ratio": (tb / ts) if ts > 0 else None,
                "max_abs_diff_deg": float(dd.max()) if dd.size else None,
                "median_abs_diff_deg": float(np.median(dd)) if dd.size else None,
                "p95_abs_diff_deg": float(np.percentile(dd, 95)) if dd.size else None,
                "nan_mismatch": nan_mismatch,
            }
            _log(
                f"brute {sampling} {size}^2 x {n} az: sweep {ts / n:.4f} s/az, brute {tb / n:.3f} s/az, "
                f"ratio {row['ratio']:.1f}, max|d| {row['max_abs_diff_deg']}"
            )
            rows.append(row)
    return rows


# --- GRASS r.horizon -------------------------------------------------------------------


def _grass_bin() -> str | None:
    for name in ("grass", "grass84", "grass83", "grass82", "grass80", "grass78"):
        p = shutil.which(name)
        if p:
            return p
    return None


def ensure_grass(log: Path, timeout: float = GRASS_INSTALL_TIMEOUT_S) -> tuple[str | None, str]:
    """``grass`` executable (installing Debian ``grass-core`` if needed) and a status line."""
    g = _grass_bin()
    if g:
        return g, "already installed"
    if os.geteuid() != 0 and not shutil.which("sudo"):
        return None, "grass not installed and not root (no sudo)"
    pre = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    deadline = time.monotonic() + timeout
    with open(log, "ab") as f:
        for cmd in (
            pre + ["apt-get", "update", "-qq"],
            pre + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "grass-core"],
        ):
            left = deadline - time.monotonic()
            if left <= 0:
                return None, f"gave up installing grass-core after {timeout:.0f} s"
            try:
                rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=left).returncode
            except subprocess.TimeoutExpired:
                return None, f"gave up installing grass-core after {timeout:.0f} s ({' '.join(cmd[-2:])})"
            except OSError as exc:
                return None, f"could not run {cmd[0]}: {exc}"
            if rc != 0:
                return None, f"`{' '.join(cmd)}` exited {rc} (see {log})"
    g = _grass_bin()
    return (g, "installed grass-core") if g else (None, "grass-core installed but no grass executable on PATH")


def _write_geotiff(dem, path: Path) -> None:
    import rasterio
    from rasterio.transform import from_origin

    x = dem[dem.dims[1]].values.astype(np.float64)
    y = dem[dem.dims[0]].values.astype(np.float64)
    dx, dy = float(x[1] - x[0]), float(y[0] - y[1])
    if not (dx > 0 and dy > 0):
        raise ValueError("expected x increasing and y decreasing coordinates")
    data = np.asarray(dem.values, dtype=np.float32)
    crs = AnalysisGrid.from_dataarray(dem).crs.to_rasterio()  # the lunar CRS: GRASS builds its location from it
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        crs=crs,
        dtype="float32",
        transform=from_origin(x[0] - dx / 2, y[0] + dy / 2, dx, dy),
    ) as ds:
        ds.write(data, 1)


_GRASS_SCRIPT = r"""#!/bin/sh
set -e
r.in.gdal --quiet input="{tif}" output=dem
g.region raster=dem
t0=$(date +%s.%N)
r.horizon -d --quiet elevation=dem step={step} maxdistance={dmax} output=hz
t1=$(date +%s.%N)
echo "RHORIZON_SECONDS $(echo "$t1 - $t0" | awk '{{print $1 - $3}}')"
for m in $(g.list type=raster pattern='hz_*'); do
  r.out.gdal --quiet -f input="$m" output="{outdir}/$m.tif" format=GTiff type=Float32 createopt=COMPRESS=NONE
done
g.list type=raster pattern='hz_*' separator=comma | sed 's/^/MAPS /'
"""


def parse_grass_angle(name: str, step: float) -> float | None:
    """The azimuth [deg] in an r.horizon output map name (`hz_022_5`: 22.5), or None."""
    suf = name.split("hz_", 1)[-1]
    try:
        return float(suf.replace("_", "."))
    except ValueError:
        return None


def run_grass(
    dem,
    dmax: float,
    work: Path,
    logs: Path,
    sweep_s_per_az: float | None,
    step: float = GRASS_STEP_DEG,
    skip: bool = False,
) -> dict[str, Any]:
    res: dict[str, Any] = {"status": "skipped", "reason": "--skip-grass"}
    if skip:
        return res
    try:
        grass, why = ensure_grass(logs / "grass_install.log")
        res = {"status": "unavailable", "install": why}
        if grass is None:
            res["reason"] = why
            return res
        rc, ver = _run([grass, "--version"], timeout=120)
        res["version"] = ver.splitlines()[0].strip() if ver else None
        gdir = work / "grass"
        outdir = gdir / "out"
        outdir.mkdir(parents=True, exist_ok=True)
        tif = gdir / "dem.tif"
        _write_geotiff(dem, tif)
        script = gdir / "run.sh"
        script.write_text(_GRASS_SCRIPT.format(tif=tif, step=step, dmax=dmax, outdir=outdir))
        script.chmod(0o755)
        cmd = [grass, "--tmp-location", str(tif), "--exec", "sh", str(script)]
        t0 = time.perf_counter()
        rc, text = _run(cmd, timeout=GRASS_RUN_TIMEOUT_S, log=logs / "grass_run.log")
        wall = time.perf_counter() - t0
        res.update(
            {
                "command": " ".join(cmd),
                "wall_seconds_session": wall,
                "size": int(dem.shape[0]),
                "step_deg": step,
                "maxdistance_map_units": dmax,
            }
        )
        secs = [ln.split()[1] for ln in text.splitlines() if ln.startswith("RHORIZON_SECONDS")]
        if rc != 0 or not secs:
            res.update(status="failed", reason=f"grass session exited {rc}: {text.strip()[-400:]}")
            return res
        tr = float(secs[-1])
        files = sorted(outdir.glob("hz_*.tif"))
        n = len(files)
        res.update(status="ok", r_horizon_seconds=tr, n_maps=n, r_horizon_s_per_az=tr / n if n else None)
        if n and sweep_s_per_az:
            res["ratio_vs_sweep"] = (tr / n) / sweep_s_per_az
        res["comparison"] = _compare_grass(dem, files, dmax, step)
        return res
    except Exception as exc:  # GRASS never fails the harness
        res.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
        return res


def _compare_grass(dem, files: list[Path], dmax: float, step: float) -> dict[str, Any]:
    import rasterio

    from prospect.illumination import horizon as H

    g_list: list[float] = []
    planes = []
    for f in files:
        a = parse_grass_angle(f.stem, step)
        if a is None:
            continue
        with rasterio.open(f) as ds:
            arr = ds.read(1).astype(np.float64)
            if ds.nodata is not None:
                arr[arr == ds.nodata] = np.nan
        g_list.append(a)
        planes.append(arr)
    if not planes:
        return {"note": "no r.horizon maps could be read"}
    g_az = np.asarray(g_list)
    ours_az = (90.0 - g_az) % 360.0
    sweep = H.horizon_angles(dem, ours_az, max_distance_m=dmax, workers=WORKERS).values.astype(np.float64)
    grass = np.stack(planes)
    b = 32  # leave out an edge band where both are lower bounds / NaN
    g_in = grass[:, b:-b, b:-b]
    sentinel = g_in <= -89.9  # r.horizon writes -90 at some pixels (seen at ~no-horizon pixels)
    n_sentinel = int(sentinel.sum())
    d = np.where(sentinel, np.nan, sweep[:, b:-b, b:-b] - g_in)
    d = d[np.isfinite(d)]
    ny, nx = dem.shape
    pts = [(ny // 2, nx // 2), (ny // 3, 2 * nx // 3), (2 * ny // 3, nx // 4)]
    samples = []
    for r, c in pts:
        for k in (0, len(g_az) // 4, len(g_az) // 2):
            samples.append(
                {
                    "row": r,
                    "col": c,
                    "grass_az_ccw_from_east": float(g_az[k]),
                    "prospect_az_cw_from_up": float(ours_az[k]),
                    "grass_deg": float(grass[k, r, c]),
                    "prospect_deg": float(sweep[k, r, c]),
                }
            )
    return {
        "convention": "prospect azimuth = (90 - r.horizon azimuth) mod 360; edge band of 32 px excluded",
        "n_values": int(d.size),
        "n_grass_minus90_excluded": n_sentinel,
        "fraction_within_0p5_deg": float(np.mean(np.abs(d) <= 0.5)) if d.size else None,
        "fraction_within_2_deg": float(np.mean(np.abs(d) <= 2.0)) if d.size else None,
        "median_diff_deg": float(np.median(d)) if d.size else None,
        "median_abs_diff_deg": float(np.median(np.abs(d))) if d.size else None,
        "p95_abs_diff_deg": float(np.percentile(np.abs(d), 95)) if d.size else None,
        "max_abs_diff_deg": float(np.abs(d).max()) if d.size else None,
        "samples": samples,
    }


def _run(cmd: Sequence[str], timeout: float, log: Path | None = None) -> tuple[int, str]:
    try:
        p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        text = (p.stdout or "") + (p.stderr or "")
        rc = p.returncode
    except subprocess.TimeoutExpired as exc:
        text, rc = f"timed out after {timeout:.0f} s: {exc}", -1
    except OSError as exc:
        text, rc = str(exc), -1
    if log is not None:
        log.write_text(text)
    return rc, text


# --- results ---------------------------------------------------------------------------


def render_stage(results: dict[str, Any]) -> list[str]:
    """The whole-stage, cluster and time-model sections."""
    st = results.get("stage", {})
    lines = [f"# Illumination stage benchmark ({results.get('date', '')})", ""]
    lines.append(
        f"The whole stage, end to end in a child process: `{st.get('command', '-')}` "
        f"({results['size']}^2, 20 m, {results['n_azimuths']} azimuths, {STAGE_STEP_HOURS:g} h steps over 18.6 years, "
        f"{STAGE_HEIGHT_M:g} m height, default tiling and memory budget {MEMORY_MB} MB)."
    )
    lines += [
        "",
        "| run | wall s | peak RSS MB | tiles | tile px | s per full tile | verdict |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    lines.append(
        f"| whole stage, 2 cores | {fmt(st.get('wall_seconds'), '.0f')} | {fmt(st.get('peak_rss_mb'), '.0f')} | "
        f"{st.get('n_tiles', '-')} | {st.get('tile_px', '-')} | {fmt(st.get('seconds_per_full_tile'), '.1f')} | "
        f"**{results.get('stage_verdict', '-')}** (targets: <= {STAGE_TARGET_S:.0f} s, <= {STAGE_RSS_TARGET_MB:.0f} MB) |"
    )
    if not st.get("ok", True):
        lines.append(f"\nStage run failed: {st.get('error', '')}")
    cl = results.get("cluster")
    if cl:
        lines += [
            "",
            f"Cluster scaling ({cl.get('note', '')}):",
            "",
            "| workers | wall s | speed-up | identical to threads |",
            "|---:|---:|---:|---|",
        ]
        for r in cl.get("runs", []):
            lines.append(
                f"| {r['workers']} | {fmt(r.get('wall_seconds'), '.1f')} | {fmt(r.get('speedup'), '.2f')}x | {r.get('identical')} |"
            )
        if cl.get("error"):
            lines.append(f"\nCluster run failed: {cl['error']}")
    model = results.get("model")
    if model:
        lines += [
            "",
            (
                "Time model (two production tiles timed on each cap's geometry; predicted wall = coarse DEM + tiles x "
                "mean tile seconds / N workers of 2 cores; writing excluded):"
            ),
            "",
            "| cap | side | tile px | tiles | s per tile | " + " | ".join(f"N={n} h" for n in MODEL_WORKERS) + " |",
            "|---|---:|---:|---:|---:|" + "---:|" * len(MODEL_WORKERS),
        ]
        for r in model:
            if not r.get("ok"):
                lines.append(f"| {r['cap']} | {r['side']} | failed: {r.get('error', '')} |")
                continue
            lines.append(
                f"| {r['cap']} | {r['side']}^2 x {r['pixel_m']:g} m | {r['tile_px']} | {r['n_tiles']} | "
                f"{fmt(r['seconds_per_tile'], '.1f')} | "
                + " | ".join(str(r["predicted_hours"][str(n)]) for n in MODEL_WORKERS)
                + " |"
            )
    return lines + [""]


def render_markdown(results: dict[str, Any]) -> str:
    s = results.get("stream", {})
    lines = render_stage(results) if "stage" in results else []
    lines += [f"# Horizon benchmark ({results.get('date', '')})", ""]
    lines.append(
        f"Target: {results['n_azimuths']} azimuths on a {results['size']}^2 DEM in <= {TARGET_S:.0f} s "
        f"on {results['workers']} cores; max distance {results['max_distance_km']} km."
    )
    lines.append("")
    if not s:
        lines.append("Horizon cubes alone: not timed in this run (`--cubes` times them).")
    if s:
        lines += ["| run | seconds | Mpix*az/s | peak RSS MB | result |", "|---|---:|---:|---:|---|"]
        lines.append(
            f"| streamed sweep, {results['size']}^2 x {results['n_azimuths']} az, {results['workers']} threads "
            f"(in-process: horizon cubes of every tile + coarse DEM + per-tile max/mean reductions) | "
            f"{fmt(s.get('seconds'), '.1f')} | {fmt(s.get('mpix_az_per_s'), '.1f')} | {fmt(s.get('peak_rss_mb'), '.0f')} | "
            f"**{results.get('verdict', '-')}** |"
        )
        lines.append(
            f"| same child, wall (interpreter + imports + open DEM + above) | {fmt(s.get('wall_seconds'), '.1f')} | | | |"
        )
        lines += ["", f"Timed path: {s.get('plan', '-')}."]
    acc = results.get("accuracy")
    if acc:
        lines += [
            "",
            (
                f"Multi-resolution against exact on tile {acc['window']} ({len(acc['azimuths'])} azimuths, "
                f"exact = full resolution to max distance, {fmt(acc['exact_seconds'], '.1f')} s vs "
                f"{fmt(acc['multi_seconds'], '.1f')} s): |difference| median {acc['median_abs_diff_deg']:.4f} deg, "
                f"p99 {acc['p99_abs_diff_deg']:.3f}, p99.9 {acc['p999_abs_diff_deg']:.3f}, max "
                f"{acc['max_abs_diff_deg']:.2f}; mean difference {acc['mean_diff_deg']:+.4f} deg; "
                f"{acc['fraction_within_0p1_deg']:.2%} within 0.1 deg; NaN mismatches {acc['nan_mismatch']}."
            ),
        ]
    if s and not s.get("ok", False):
        lines.append(f"\nStreamed run failed: {s.get('error', '')}")
    lines += [
        "",
        (
            "Brute-force reference (single thread, central crops; ratio = brute s/az / sweep s/az, "
            "measured on the listed number of azimuths and extrapolated per azimuth):"
        ),
        "",
        (
            "| crop | sampling | azimuths timed | sweep s/az | brute s/az | ratio | max abs diff deg | "
            "median / p95 abs diff deg |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results.get("brute_force", []):
        lines.append(
            f"| {r['size']}^2 | {r['sampling']} | {r['n_azimuths']} | {fmt(r['sweep_s_per_az'], '.4f')} | "
            f"{fmt(r['brute_s_per_az'], '.3f')} | {fmt(r['ratio'], '.1f')}x | "
            f"{fmt(r['max_abs_diff_deg'], '.3g')} | {fmt(r['median_abs_diff_deg'], '.3g')} / "
            f"{fmt(r['p95_abs_diff_deg'], '.3g')} |"
        )
    g = results.get("grass", {})
    lines += [
        "",
        f"GRASS r.horizon: **{g.get('status', '-')}**"
        + (f" ({g.get('version')})" if g.get("version") else "")
        + (f": {g.get('reason')}" if g.get("reason") else ""),
    ]
    if g.get("status") == "ok":
        lines += [
            "",
            "| tool | crop | maps | s/az | ratio (r.horizon / sweep) |",
            "|---|---|---:|---:|---:|",
            (
                f"| r.horizon -d step={g['step_deg']:g} maxdistance={g['maxdistance_map_units']:g} | "
                f"{g['size']}^2 | {g['n_maps']} | {fmt(g.get('r_horizon_s_per_az'), '.3f')} | "
                f"{fmt(g.get('ratio_vs_sweep'), '.1f')}x |"
            ),
        ]
        c = g.get("comparison", {})
        if c.get("n_values"):
            lines += [
                "",
                (
                    f"Values (prospect - r.horizon, {c['convention']}): median {c['median_diff_deg']:.3f} deg, "
                    f"median |d| {c['median_abs_diff_deg']:.3f}, p95 |d| {c['p95_abs_diff_deg']:.3f}, "
                    f"max |d| {c['max_abs_diff_deg']:.3f}; within 0.5 deg: {c['fraction_within_0p5_deg']:.1%}, within 2 deg: "
                    f"{c['fraction_within_2_deg']:.1%}; {c['n_grass_minus90_excluded']} r.horizon values of -90 "
                    "excluded. r.horizon: no lunar radius option (Earth-based "
                    "curvature), its own ray sampling; differences are expected, not errors."
                ),
            ]
    lines += [
        "",
        f"Total harness time: {fmt(results.get('total_seconds'), '.0f')} s. Peak RSS: `ru_maxrss` of the "
        "child (os.wait4). Machine: " + str(results.get("machine", {}).get("cpu_model")),
        "",
    ]
    return "\n".join(lines)


def write_results(results: dict[str, Any], out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return write_report(results, out, "illumination", render_markdown(results))


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "cpu_model": None}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


# --- main ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_illumination", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="build/bench")
    p.add_argument("--size", type=int, default=REF_SIZE)
    p.add_argument("--azimuths", type=int, default=N_AZIMUTHS)
    p.add_argument("--max-distance-km", type=float, default=MAX_DISTANCE_KM)
    p.add_argument("--skip-grass", action="store_true")
    p.add_argument("--workers", type=int, default=WORKERS)
    p.add_argument("--crop-sizes", default=",".join(map(str, CROP_SIZES)), help=argparse.SUPPRESS)
    p.add_argument(
        "--tile",
        type=int,
        default=None,
        help="output tile [px] of the cubes run (--cubes); 0 = whole raster in memory, exact",
    )
    p.add_argument(
        "--cubes", action="store_true", help="also time the horizon cubes alone (the stage without products)"
    )
    p.add_argument("--skip-model", action="store_true", help="skip the time model (writes two ~1.8 GB DEMs)")
    p.add_argument("--skip-cluster", action="store_true", help="skip the 1 vs 2 process workers comparison")
    p.add_argument("--cluster-size", type=int, default=CLUSTER_SIZE, help="DEM side of the cluster comparison")
    p.add_argument("--skip-accuracy", action="store_true")
    p.add_argument("--run-stream", metavar="LBL", help=argparse.SUPPRESS)
    p.add_argument("--probe-tiles", metavar="LBL", help=argparse.SUPPRESS)
    p.add_argument("--windows", default="[]", help=argparse.SUPPRESS)
    p.add_argument("--step-hours", type=float, default=STAGE_STEP_HOURS, help=argparse.SUPPRESS)
    return p


def _default_tile(dem, n_azimuths: int, workers: int) -> int:
    from prospect.illumination.maps import horizon_tiling

    return horizon_tiling(dem, n_azimuths=n_azimuths, workers=workers).plan.tile_px


def main(argv: Sequence[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    dmax = a.max_distance_km * 1000.0
    if a.run_stream:
        tile = a.tile
        if tile is None:
            from prospect.io.readers import open_product

            tile = _default_tile(open_product(a.run_stream), a.azimuths, a.workers)
        print(json.dumps(run_stream_child(a.run_stream, a.azimuths, dmax, a.workers, tile_px=tile)), flush=True)
        return 0
    if a.probe_tiles:
        print(json.dumps(probe_child(a.probe_tiles, json.loads(a.windows), a.azimuths, a.step_hours, STAGE_HEIGHT_M)))
        return 0
    from benchmarks.bench_slope import write_dem
    from prospect.io.readers import open_product

    t_start = time.perf_counter()
    out = Path(a.out)
    logs = out / "logs_illumination"
    logs.mkdir(parents=True, exist_ok=True)
    crop_sizes = [int(s) for s in a.crop_sizes.split(",") if s.strip()]
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "size": a.size,
        "n_azimuths": a.azimuths,
        "max_distance_km": a.max_distance_km,
        "workers": a.workers,
        "target_seconds": TARGET_S,
        "stage_target_seconds": STAGE_TARGET_S,
        "stage_rss_target_mb": STAGE_RSS_TARGET_MB,
        "machine": _machine(),
        "timing_note": "stage.wall_seconds = the whole `prospect illumination` command in a child process (start to exit); "
        "stream.seconds (with --cubes) = in-process horizon cubes of every tile + preparation; peak RSS from os.wait4",
    }
    with tempfile.TemporaryDirectory(prefix="prospect-bench-illum-", dir=out) as tmpd:
        work = Path(tmpd)
        _log(f"writing {a.size}^2 fractal DEM")
        t0 = time.perf_counter()
        lbl = write_dem(work / f"DEM_{a.size}.IMG", a.size)
        results["dem_write_seconds"] = time.perf_counter() - t0
        _log(f"whole stage: {a.azimuths} azimuths, {STAGE_STEP_HOURS:g} h steps, {STAGE_HEIGHT_M:g} m height")
        results["stage"] = st = run_stage(lbl, work / "stage", logs, stem="stage", n_azimuths=a.azimuths)
        ok = st.get("ok") and st.get("wall_seconds") is not None
        results["stage_verdict"] = (
            ("PASS" if st["wall_seconds"] <= STAGE_TARGET_S and st["peak_rss_mb"] <= STAGE_RSS_TARGET_MB else "FAIL")
            if ok
            else "FAIL (run failed)"
        )
        _log(f"whole stage: {st.get('wall_seconds')} s, {st.get('peak_rss_mb')} MB, {results['stage_verdict']}")
        shutil.rmtree(work / "stage", ignore_errors=True)
        if not a.skip_cluster:
            results["cluster"] = cluster_scaling(work, logs, a.cluster_size, a.azimuths)
        dem = open_product(lbl)
        tile = a.tile if a.tile is not None else _default_tile(dem, a.azimuths, a.workers)
        if a.cubes:
            _log(f"horizon cubes alone: {a.azimuths} azimuths, {a.workers} threads")
            results["stream"] = s = run_stream(lbl, a.azimuths, dmax, logs, a.workers, tile)
            ok = s.get("ok") and s.get("seconds") is not None
            results["verdict"] = ("PASS" if s["seconds"] <= TARGET_S else "FAIL") if ok else "FAIL (run failed)"
        if not a.skip_accuracy and a.size >= 2 * tile:
            c = (a.size // 2 // tile) * tile  # a production tile near the centre
            _log(f"far-field accuracy on tile rows/cols {c}:{c + tile}")
            results["accuracy"] = far_field_accuracy(
                dem, dmax, (c, c + tile, c, c + tile), n_azimuths=a.azimuths, workers=a.workers, tile_px=tile
            )
        try:
            results["brute_force"] = brute_force_ratios(dem, dmax, crop_sizes)
        except Exception as exc:
            results["brute_force"] = []
            results["brute_force_error"] = f"{type(exc).__name__}: {exc}"
        gsize = min(GRASS_SIZE, a.size)
        sweep_per_az = None
        for r in results["brute_force"]:
            if r["size"] == gsize and r["sampling"] == "lines":
                sweep_per_az = r["sweep_s_per_az"]
        results["grass"] = run_grass(crop(dem, gsize), dmax, work, logs, sweep_per_az, skip=a.skip_grass)
        _log(f"grass: {results['grass'].get('status')} {results['grass'].get('reason', '')}")
        if not a.skip_model:
            results["model"] = time_model(work, logs, n_azimuths=a.azimuths)
    results["total_seconds"] = time.perf_counter() - t_start
    write_results(results, out)
    print(render_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
