"""Slope benchmark: ``prospect slope`` against ``gdaldem slope`` and xarray-spatial.

Run::

    python -m benchmarks.bench_slope [--sizes 1024,4096,7584] [--big] [--out build/bench]
                             [--repeat N] [--keep]

One invocation generates fractal int16 LOLA-style PDS3 DEMs (polar stereographic
south, IAU_2015:30135, 20 m pixels, centred on the pole like LDEM_875S_20M) and runs,
on the same files, each tool writing a float32 slope GeoTIFF:

- ``prospect slope DEM.LBL OUT.tif --no-progress`` (Horn slope with ground distances;
  once more per size with ``--planar`` for the comparison with gdaldem);
- ``gdaldem slope DEM.LBL OUT.tif`` twice: with exactly prospect's creation options
  (:data:`prospect.io.writers.STREAM_CREATION_OPTIONS` as ``-co KEY=VALUE``: tiled 512,
  ZSTD level 1, floating-point predictor, ...), which is the headline comparison, and
  with gdaldem's defaults (an uncompressed GeoTIFF: what a user types);
- ``xrspatial.slope`` (numpy and dask backends) in a child Python
  (``python -m benchmarks.bench_slope --run-xrspatial DEM.LBL OUT.tif``);
- compute only, no file written: ``gdaldem slope -q -s 2 -of MEM DEM.LBL mem``, and
  ``python -m benchmarks.bench_slope --run-prospect-compute DEM.LBL``, a child that imports
  first (untimed), then times ``open_product(lbl, chunks=2048)`` +
  ``slope_deg(arr).data.compute(scheduler=dask.threaded.get)`` in-process and prints
  the seconds as JSON; that in-process time is the row's time (interpreter start-up and
  imports excluded), with the child's peak RSS. Not run at 30400^2 (each would hold
  the whole 3.7 GB float32 slope).

Each run is timed on the wall clock; its peak RSS is the ``ru_maxrss`` that
``os.wait4`` returns for that child. Interpreter start-up plus prospect's imports is
timed separately (best of 3 runs of ``python -c "import prospect.cli, ..."``), to say
where prospect's end-to-end time goes. The children are started from a small launcher
Python, never from this process: Linux carries the parent's peak RSS into a child at
``exec`` (``ru_maxrss`` of ``/bin/true`` started by a process that once held 2 GB reads
2 GB), and this process holds whole DEMs while generating them. ``--big`` adds a
30400 x 30400 DEM (LDEM_80S_20M size, 1.85 GB) written strip by strip from mirrored
copies of one 4096 x 4096 fractal tile; its purpose is prospect's peak RSS.

Results go to ``OUT/slope.json`` and ``OUT/slope.md`` (written atomically), and the
table is printed. The exit code is 0 whether or not the targets are met, 2 (with one
line on stderr) if prospect itself fails.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import importlib.metadata
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prospect.io import writers as _writers
from prospect.io.writers import atomic_write, pds3_lola_label, write_pds3_lola
from prospect.lunar import IAU_SOUTH_POLAR_STEREOGRAPHIC, lunar_crs

__all__ = [
    "compare_slopes",
    "main",
    "make_fractal_tile",
    "measure",
    "mirror_index",
    "render_markdown",
    "write_dem",
    "write_results",
    "write_tiled_dem",
]

SCHEMA = "prospect-bench-slope/1"
DEFAULT_SIZES: tuple[int, ...] = (1024, 4096, 7584)
REF_SIZE = 7584  # LDEM_875S_20M: the size the speed target is stated at
BIG_SIZE = 30400  # LDEM_80S_20M: the size the memory target is stated at
BIG_TILE = 4096
PIXEL_M = 20.0
DN_SCALE = 0.5  # LOLA: HEIGHT_m = DN * 0.5
CRS_CODE = IAU_SOUTH_POLAR_STEREOGRAPHIC
SEED = 20250875
FRACTAL_BETA = 2.2
RELIEF_STD_M = 2000.0

#: Creation options of prospect's slope GeoTIFF (``prospect slope`` streams with these), given
#: to gdaldem and xarray-spatial too. The same object as the writer's, never a copy: the
#: commands read ``prospect.io.writers.STREAM_CREATION_OPTIONS`` when they are built.
CREATION_OPTIONS: dict[str, str] = _writers.STREAM_CREATION_OPTIONS
#: gdaldem reads the raw DN (it does not apply the label's SCALING_FACTOR): one metre
#: across is 2 DN up, so ``-s 2`` makes its slopes the slopes of heights in metres.
GDALDEM_SCALE = 1.0 / DN_SCALE

SPEED_TARGET = 2.0  # prospect throughput / gdaldem throughput at REF_SIZE (headline: same creation options)
#: the speed target on three bases: (target name, prospect row, gdaldem row, ratio key, basis)
SPEED_BASES: tuple[tuple[str, str, str, str, str], ...] = (
    ("speed", "prospect", "gdaldem", "ratio_to_gdaldem", "(a) end-to-end, headline"),
    ("speed_vs_defaults", "prospect", "gdaldem_default", "ratio_to_gdaldem_default", "(b) end-to-end"),
    ("speed_compute_only", "prospect_compute", "gdaldem_mem", "ratio_to_gdaldem_mem", "(c) compute only"),
)
RSS_TARGET_MB = 1500.0  # peak RSS at BIG_SIZE, MB = 10^6 bytes
RSS_INDEPENDENCE = 1.25  # peak RSS at BIG_SIZE / peak RSS at REF_SIZE must not exceed this
DEFAULT_TIMEOUT_S = 4 * 3600
COMPUTE_CHUNKS = 2048  # dask chunks of the in-process compute-only run
STARTUP_REPEAT = 3  # interpreter + imports: best of this many runs
#: prospect's imports timed for the start-up share of its end-to-end time
STARTUP_IMPORTS = "import prospect.cli, prospect.terrain, prospect.io.readers, prospect.io.writers"

TOOL_LABELS: dict[str, str] = {
    "prospect": "prospect slope",
    "prospect_planar": "prospect slope --planar",
    "gdaldem": "gdaldem slope (same creation options: {co})",
    "gdaldem_default": "gdaldem slope (defaults: uncompressed)",
    "xrspatial": "xarray-spatial (numpy)",
    "xrspatial_dask": "xarray-spatial (dask)",
    "prospect_compute": "prospect slope_deg in-process (compute only, startup excluded)",
    "gdaldem_mem": "gdaldem slope -of MEM (compute only)",
}


def creation_options_summary(options: Mapping[str, str] | None = None) -> str:
    """A short name for the creation options, e.g. ``tiled ZSTD-1, predictor 3``."""
    co = {k.upper(): str(v) for k, v in (_writers.STREAM_CREATION_OPTIONS if options is None else options).items()}
    parts = ["tiled" if co.get("TILED", "").upper() in ("YES", "TRUE", "1") else "striped"]
    comp = co.get("COMPRESS", "none")
    level = co.get(f"{comp.upper()}_LEVEL") or (co.get("ZLEVEL") if comp.upper() == "DEFLATE" else None)
    parts[0] += f" {comp}-{level}" if level else f" {comp}"
    if "PREDICTOR" in co:
        parts.append(f"predictor {co['PREDICTOR']}")
    return ", ".join(parts)


TOOL_LABELS["gdaldem"] = TOOL_LABELS["gdaldem"].format(co=creation_options_summary())
TOOL_ORDER = tuple(TOOL_LABELS)
#: rows that compute without writing a file; their ratio is to ``gdaldem_mem``
COMPUTE_ONLY = ("prospect_compute", "gdaldem_mem")
#: rows that read a DEM and write a slope GeoTIFF; their ratios are to ``gdaldem`` / ``gdaldem_default``
END_TO_END = tuple(t for t in TOOL_ORDER if t not in COMPUTE_ONLY)


class ProspectFailed(RuntimeError):
    """``prospect slope`` itself failed: the benchmark stops with exit code 2."""


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --- DEM generation -------------------------------------------------------------------


def make_fractal_tile(
    n: int,
    seed: int = SEED,
    *,
    beta: float = FRACTAL_BETA,
    relief_std_m: float = RELIEF_STD_M,
    ref_size: int = REF_SIZE,
) -> np.ndarray:
    """An ``n x n`` fractal terrain as int16 LOLA DN (``height_m = DN * 0.5``).

    Spectral synthesis in float32/complex64: Gaussian noise with amplitude spectrum
    ``|A(f)| ~ f**-beta`` (power ``~ f**-2beta``; beta 2.2 is a Hurst exponent of 1.2 at
    all scales, which gives 20 m slopes of a median ~6 deg and a few tenths of a percent
    above 20 deg, like lunar highlands without crater walls), inverse ``rfft2``, periodic
    (so it tiles seamlessly). The height standard deviation is ``relief_std_m`` for an
    ``ref_size`` grid and scales as ``(n / ref_size) ** (beta - 1)`` for other sizes, as
    the spectrum does, so slopes look alike at every size. Seeded: the same ``(n, seed)``
    gives the same tile. DN are clipped to +-32767 (+-16 km; -32768 is kept free as it
    reads as nodata to some tools).
    """
    if n < 4:
        raise ValueError(f"fractal tile size must be >= 4, got {n}")
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(n).astype(np.float32)
    fx = np.fft.rfftfreq(n).astype(np.float32)
    amp = fy[:, None] ** 2 + fx[None, :] ** 2  # f^2
    amp[0, 0] = 1.0
    np.power(amp, np.float32(-beta / 2.0), out=amp)  # (f^2)^(-beta/2) = f^-beta
    amp[0, 0] = 0.0  # no mean
    spec = np.empty(amp.shape, dtype=np.complex64)
    spec.real = rng.standard_normal(amp.shape, dtype=np.float32)
    spec.imag = rng.standard_normal(amp.shape, dtype=np.float32)
    spec *= amp
    del amp
    h = np.fft.irfft2(spec, s=(n, n))
    del spec
    h = h.astype(np.float32, copy=False)
    h -= np.float32(h.mean(dtype=np.float64))
    std = float(h.std(dtype=np.float64))
    target = relief_std_m * (n / ref_size) ** (beta - 1.0)
    h *= np.float32(target / std / DN_SCALE) if std > 0 else np.float32(0.0)
    np.rint(h, out=h)
    np.clip(h, -32767, 32767, out=h)
    return h.astype(np.int16)


def mirror_index(index: np.ndarray, n: int) -> np.ndarray:
    """Indices into a length-``n`` tile for positions ``index`` of its mirrored tiling.

    Even copies run forwards, odd copies backwards (0..n-1, n-1..0, 0..n-1, ...), so the
    tiling is continuous: neighbours across a seam are the same tile edge pixel.
    """
    m = np.asarray(index) % (2 * n)
    return np.where(m < n, m, 2 * n - 1 - m)


def _label_for(img_path: Path) -> Path:
    return img_path.with_suffix(".LBL" if img_path.suffix.isupper() or not img_path.suffix else ".lbl")


def write_dem(img_path: str | os.PathLike[str], size: int, *, seed: int = SEED) -> Path:
    """Write a ``size x size`` fractal DEM as a LOLA-style PDS3 IMG + ``.LBL``; return the label.

    Polar stereographic south (IAU_2015:30135), 20 m pixels, the pole at the grid centre
    (like LDEM_875S_20M). The whole DEM is built in memory (``size`` up to ~8000).
    """
    dn = make_fractal_tile(size, seed)
    return write_pds3_lola(
        dn,
        img_path,
        crs=lunar_crs(CRS_CODE),
        map_scale_m=PIXEL_M,
        scale_units="m/pix",
        product_id=f"BENCH_FRACTAL_{size}",
    )


def write_tiled_dem(
    img_path: str | os.PathLike[str],
    size: int,
    tile: np.ndarray,
    *,
    strip_rows: int = 512,
    product_id: str | None = None,
    pixel_m: float = PIXEL_M,
) -> Path:
    """Write a ``size x size`` DEM of ``pixel_m`` pixels tiled from mirrored copies of ``tile``, strip by strip.

    Memory is one strip (``strip_rows x size`` int16) plus the tile, never the whole DEM:
    this is how the 30400 x 30400 (1.85 GB) DEM is made. The detached label comes from
    :func:`prospect.io.writers.pds3_lola_label` with the DN range seen while writing;
    both files are written atomically (the IMG first). Returns the label path.
    """
    tile = np.asarray(tile)
    if tile.ndim != 2 or tile.dtype != np.int16:
        raise TypeError(f"tile must be a 2-D int16 array, got {tile.dtype} {tile.shape}")
    if size <= 0 or strip_rows <= 0:
        raise ValueError(f"size and strip_rows must be positive, got {size}, {strip_rows}")
    img = Path(img_path)
    lbl = _label_for(img)
    cols = mirror_index(np.arange(size), tile.shape[1])
    lo, hi = 32767, -32768
    with atomic_write(lbl) as tmp_lbl, atomic_write(img) as tmp_img:
        with open(tmp_img, "wb") as f:
            for r0 in range(0, size, strip_rows):
                rows = mirror_index(np.arange(r0, min(size, r0 + strip_rows)), tile.shape[0])
                strip = tile[rows][:, cols]
                lo, hi = min(lo, int(strip.min())), max(hi, int(strip.max()))
                strip.astype("<i2", copy=False).tofile(f)
        text = pds3_lola_label(
            lines=size,
            samples=size,
            file_name=img.name,
            crs=lunar_crs(CRS_CODE),
            map_scale_m=pixel_m,
            scale_units="m/pix",
            product_id=product_id or f"BENCH_FRACTAL_TILED_{size}",
            minimum=lo,
            maximum=hi,
        )
        with open(tmp_lbl, "w", encoding="ascii", newline="") as f:
            f.write(text)
    return lbl


# --- measuring one child process ------------------------------------------------------

# Runs in a fresh, small Python (-I -S): start the tool with Popen, reap it with wait4,
# print wall time and ru_maxrss. argv: cmd (JSON), stdout file, stderr file, timeout s.
_LAUNCHER = r"""
import json, os, signal, subprocess, sys, time
cmd = json.loads(sys.argv[1])
timeout = float(sys.argv[4])
with open(sys.argv[2], "wb") as out, open(sys.argv[3], "wb") as err:
    t0 = time.perf_counter()
    try:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    except OSError as exc:
        print(json.dumps({"error": str(exc)})); sys.exit(0)
    timed_out = []
    def _kill(*_):
        timed_out.append(1); p.kill()
    signal.signal(signal.SIGALRM, _kill)
    if timeout > 0:
        signal.setitimer(signal.ITIMER_REAL, timeout)
    while True:
        try:
            _, status, ru = os.wait4(p.pid, 0)
            break
        except InterruptedError:
            continue
    seconds = time.perf_counter() - t0
    signal.setitimer(signal.ITIMER_REAL, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
print(json.dumps({"seconds": seconds, "maxrss_kib": ru.ru_maxrss, "returncode": p.returncode,
                  "timed_out": bool(timed_out)}))
"""


@dataclass
class Measurement:
    seconds: float
    peak_rss_mb: float  # MB = 10^6 bytes
    returncode: int
    timed_out: bool = False
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def record(self, cmd: Sequence[str]) -> dict[str, Any]:
        """The run as a results entry: the command, wall seconds, peak RSS, exit, and the error if it failed."""
        rec: dict[str, Any] = {
            "command": " ".join(map(str, cmd)),
            "wall_seconds": self.seconds,
            "peak_rss_mb": self.peak_rss_mb,
            "returncode": self.returncode,
            "timed_out": self.timed_out,
            "ok": self.ok,
        }
        if not self.ok:
            rec["error"] = self.stderr_tail
        return rec


def _tail(path: Path, lines: int = 1, limit: int = 400) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())[:limit]


def measure(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log_stem: Path,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Measurement:
    """Run ``cmd`` once and return its wall time and the peak RSS of that child alone.

    The tool is started with ``subprocess.Popen`` and reaped with ``os.wait4(pid, 0)`` in
    a small launcher process (see the module docstring for why not from here);
    ``ru_maxrss`` is KiB on Linux. The tool's stdout and stderr go to
    ``log_stem.out`` / ``log_stem.err``.
    """
    out_log, err_log = log_stem.with_suffix(".out"), log_stem.with_suffix(".err")
    res = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            _LAUNCHER,
            json.dumps(list(map(str, cmd))),
            str(out_log),
            str(err_log),
            str(timeout),
        ],
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
    )
    try:
        info = json.loads(res.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return Measurement(math.nan, math.nan, -1, stderr_tail=f"launcher failed: {res.stderr.strip()[-300:]}")
    if "error" in info:
        return Measurement(math.nan, math.nan, -1, stderr_tail=info["error"])
    return Measurement(
        seconds=float(info["seconds"]),
        peak_rss_mb=info["maxrss_kib"] * 1024 / 1e6,
        returncode=int(info["returncode"]),
        timed_out=bool(info["timed_out"]),
        stderr_tail=_tail(err_log),
    )


# --- comparing outputs ----------------------------------------------------------------


def compare_slopes(
    a_path: str | os.PathLike[str], b_path: str | os.PathLike[str], *, border: int = 1, rows_per_block: int = 512
) -> dict[str, Any]:
    """Max and mean ``|a - b|`` (degrees) over interior pixels valid in both, read in row blocks.

    A ``border``-pixel frame and nodata/NaN pixels of either file are excluded;
    ``nodata_mismatch`` counts interior pixels valid in one file only. Memory is a few
    row blocks, so it works on 30400 x 30400 outputs.
    """
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(a_path) as A, rasterio.open(b_path) as B:
        if (A.height, A.width) != (B.height, B.width):
            return {"error": f"shapes differ: {A.height}x{A.width} vs {B.height}x{B.width}"}
        h, w = A.height, A.width
        max_d, sum_d, n, mismatch = 0.0, 0.0, 0, 0
        sum_b = 0.0
        for r0 in range(border, h - border, rows_per_block):
            r1 = min(h - border, r0 + rows_per_block)
            win = Window(border, r0, w - 2 * border, r1 - r0)
            a = A.read(1, window=win, masked=True)
            b = B.read(1, window=win, masked=True)
            va = ~np.ma.getmaskarray(a) & np.isfinite(a.filled(np.nan))
            vb = ~np.ma.getmaskarray(b) & np.isfinite(b.filled(np.nan))
            both = va & vb
            mismatch += int(np.count_nonzero(va ^ vb))
            if both.any():
                av = np.asarray(a.data, dtype=np.float64)[both]
                bv = np.asarray(b.data, dtype=np.float64)[both]
                d = np.abs(av - bv)
                max_d = max(max_d, float(d.max()))
                sum_d += float(d.sum())
                sum_b += float(bv.sum())
                n += int(d.size)
    return {
        "max_abs_diff_deg": max_d if n else None,
        "mean_abs_diff_deg": sum_d / n if n else None,
        "mean_slope_deg_reference": sum_b / n if n else None,
        "compared_pixels": n,
        "nodata_mismatch": mismatch,
    }


# --- the xarray-spatial child ---------------------------------------------------------


def run_xrspatial(lbl: str, out: str, backend: str = "numpy") -> None:
    """Slope with ``xrspatial.slope`` (the ``--run-xrspatial`` child), written like ours.

    Reads the DN through GDAL's PDS driver, heights ``DN * 0.5`` (GDAL's offset, the
    reference radius, is ignored), wraps them in a DataArray with x/y map coordinates,
    runs ``xrspatial.slope`` with the numpy or dask backend and writes a float32 GeoTIFF
    with :data:`CREATION_OPTIONS` (NaN nodata).
    """
    import rasterio
    import xarray as xr
    import xrspatial

    with rasterio.open(lbl) as src:
        dn = src.read(1)
        transform, crs, nodata = src.transform, src.crs, src.nodata
    heights = dn.astype(np.float32)
    heights *= np.float32(DN_SCALE)
    if nodata is not None and math.isfinite(nodata):
        heights[dn == nodata] = np.nan
    del dn
    ny, nx = heights.shape
    xs = transform.c + transform.a * (np.arange(nx) + 0.5)
    ys = transform.f + transform.e * (np.arange(ny) + 0.5)
    agg = xr.DataArray(
        heights,
        dims=("y", "x"),
        coords={"y": ys, "x": xs},
        name="height",
        attrs={"res": (abs(transform.a), abs(transform.e))},
    )
    if backend == "dask":
        agg = agg.chunk({"y": 2048, "x": 2048})
    elif backend != "numpy":
        raise ValueError(f"backend must be numpy or dask, not {backend!r}")
    result = xrspatial.slope(agg)
    values = np.asarray(result.data.compute() if backend == "dask" else result.data, dtype=np.float32)
    profile = {
        "driver": "GTiff",
        "width": nx,
        "height": ny,
        "count": 1,
        "dtype": "float32",
        "crs": crs,
        "transform": transform,
        "nodata": float("nan"),
        **{k.lower(): v for k, v in CREATION_OPTIONS.items()},
    }
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(values, 1)


# --- the prospect compute-only child -------------------------------------------------


def run_prospect_compute(lbl: str, chunks: int = COMPUTE_CHUNKS) -> dict[str, Any]:
    """Time prospect's slope in-process, without start-up or output (``--run-prospect-compute``).

    Imports and a 64 x 64 warm-up first (not timed: numba loading its cached kernels is
    start-up, like an import), then times ``open_product(lbl, chunks=chunks)`` +
    ``slope_deg(arr).data.compute(scheduler=dask.threaded.get)`` (ground distances, Horn,
    as ``prospect slope`` computes) with :func:`time.perf_counter`. Returns (and
    ``main`` prints as one JSON line on stdout) ``{"seconds": ..., ...}``.
    """
    import time

    import dask
    import dask.threaded

    from prospect.io.readers import open_product
    from prospect.terrain import slope_deg

    # start-up, not timed: numba loads its cached kernels on first use (~0.3 s), like an import
    _ = slope_deg(open_product(lbl, chunks=chunks)[:64, :64]).values
    t0 = time.perf_counter()
    arr = open_product(lbl, chunks=chunks)
    values = slope_deg(arr).data.compute(scheduler=dask.threaded.get)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "shape": list(values.shape),
        "dtype": str(values.dtype),
        "chunks": chunks,
        "dask": dask.__version__,
    }


# --- tools and their availability -----------------------------------------------------


@dataclass
class Tool:
    id: str
    build: Callable[[Path, Path], list[str]] | None  # (dem label, output) -> command
    env: dict[str, str]
    available: bool = True
    reason: str | None = None
    writes_output: bool = True  # False: compute only, no output file to check
    inprocess_seconds: bool = False  # True: the row's time is the JSON "seconds" the child prints


def _clean_env() -> dict[str, str]:
    """The environment for the children: ours, minus GDAL/PROJ data paths into a Python wheel."""
    env = dict(os.environ)
    for key in ("GDAL_DATA", "PROJ_LIB", "PROJ_DATA"):
        if "site-packages" in env.get(key, ""):
            env.pop(key)
    return env


def _run_quiet(cmd: Sequence[str], log: Path | None = None, timeout: float = 900, env=None) -> tuple[int, str]:
    try:
        res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, str(exc)
    if log is not None:
        with open(log, "a") as f:
            f.write(f"$ {' '.join(cmd)}\n{res.stdout}{res.stderr}\n")
    return res.returncode, (res.stdout + res.stderr).strip()


def ensure_gdaldem(log: Path) -> tuple[str | None, str | None]:
    """``gdaldem``'s path, installing Debian's gdal-bin when missing and root; else (None, reason)."""
    path = shutil.which("gdaldem")
    if path:
        return path, None
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "gdaldem is not on PATH (and apt-get as root is not available to install gdal-bin)"
    _log("gdaldem not on PATH: installing gdal-bin with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    rc, text = _run_quiet(["apt-get", "update"], log, env=env)
    if rc == 0:
        rc, text = _run_quiet(["apt-get", "install", "-y", "--no-install-recommends", "gdal-bin"], log, env=env)
    path = shutil.which("gdaldem")
    if path:
        return path, None
    last = text.strip().splitlines()[-1] if text.strip() else f"exit {rc}"
    return None, f"gdaldem unavailable: installing gdal-bin failed ({last[:200]})"


def _xrspatial_version(env: Mapping[str, str]) -> tuple[str | None, str]:
    rc, text = _run_quiet(
        [sys.executable, "-c", "import xrspatial; print(xrspatial.__version__)"], env=dict(env), timeout=300
    )
    return (text.splitlines()[-1].strip(), "") if rc == 0 else (None, text)


def ensure_xrspatial(log: Path, env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """xarray-spatial's version, ``pip install``-ing it into this interpreter when missing."""
    version, err = _xrspatial_version(env)
    if version:
        return version, None
    if "No module named" not in err:
        return None, f"xarray-spatial does not import: {err.splitlines()[-1][:200] if err else '?'}"
    _log("xarray-spatial not importable: pip install xarray-spatial")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "xarray-spatial"]
    constraints = Path(__file__).resolve().parents[1] / "constraints.txt"
    if constraints.is_file():  # keep the project's locked versions (numpy, numba, ...) as they are
        cmd[4:4] = ["-c", str(constraints)]
    rc, text = _run_quiet(cmd, log)
    if rc != 0:
        return None, f"xarray-spatial unavailable: pip install failed ({text.splitlines()[-1][:200] if text else rc})"
    version, err = _xrspatial_version(env)
    if version:
        return version, None
    return None, f"xarray-spatial installed but does not import: {err.splitlines()[-1][:200] if err else '?'}"


def prospect_command(lbl: Path, out: Path, *, planar: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "prospect.cli", "slope", str(lbl), str(out), "--no-progress"]
    return cmd + (["--planar"] if planar else [])


def creation_option_flags(options: Mapping[str, str] | None = None) -> list[str]:
    """``-co KEY=VALUE`` flags, by default of :data:`prospect.io.writers.STREAM_CREATION_OPTIONS`.

    Read when called (not copied at import), so gdaldem always gets exactly what
    ``prospect slope`` writes with.
    """
    flags: list[str] = []
    for key, value in (_writers.STREAM_CREATION_OPTIONS if options is None else options).items():
        flags += ["-co", f"{key}={value}"]
    return flags


def gdaldem_command(gdaldem: str, lbl: Path, out: Path, *, compressed: bool) -> list[str]:
    cmd = [gdaldem, "slope", str(lbl), str(out), "-s", f"{GDALDEM_SCALE:g}", "-q"]
    return cmd + (creation_option_flags() if compressed else [])


def gdaldem_mem_command(gdaldem: str, lbl: Path) -> list[str]:
    """gdaldem's compute alone: the slope goes to an in-memory dataset, no file is written."""
    return [gdaldem, "slope", "-q", "-s", f"{GDALDEM_SCALE:g}", "-of", "MEM", str(lbl), "mem"]


def prospect_compute_command(lbl: Path) -> list[str]:
    return [sys.executable, "-m", "benchmarks.bench_slope", "--run-prospect-compute", str(lbl)]


def startup_command() -> list[str]:
    return [sys.executable, "-c", STARTUP_IMPORTS]


def xrspatial_command(lbl: Path, out: Path, *, backend: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.bench_slope", "--run-xrspatial", str(lbl), str(out), "--backend", backend]


def build_tools(
    gdaldem: str | None, gdal_reason: str | None, xrs: str | None, xrs_reason: str | None, env: dict[str, str]
) -> dict[str, Tool]:
    penv = dict(env, PROSPECT_BENCH="1")
    tools = {
        "prospect": Tool("prospect", prospect_command, penv),
        "prospect_planar": Tool("prospect_planar", lambda lbl, out: prospect_command(lbl, out, planar=True), penv),
        "gdaldem": Tool("gdaldem", None, env, False, gdal_reason),
        "gdaldem_default": Tool("gdaldem_default", None, env, False, gdal_reason),
        "xrspatial": Tool("xrspatial", None, env, False, xrs_reason),
        "xrspatial_dask": Tool("xrspatial_dask", None, env, False, xrs_reason),
        "prospect_compute": Tool(
            "prospect_compute",
            lambda lbl, out: prospect_compute_command(lbl),
            penv,
            writes_output=False,
            inprocess_seconds=True,
        ),
        "gdaldem_mem": Tool("gdaldem_mem", None, env, False, gdal_reason, writes_output=False),
    }
    if gdaldem:
        tools["gdaldem"] = Tool("gdaldem", lambda lbl, out: gdaldem_command(gdaldem, lbl, out, compressed=True), env)
        tools["gdaldem_default"] = Tool(
            "gdaldem_default", lambda lbl, out: gdaldem_command(gdaldem, lbl, out, compressed=False), env
        )
        tools["gdaldem_mem"] = Tool(
            "gdaldem_mem", lambda lbl, out: gdaldem_mem_command(gdaldem, lbl), env, writes_output=False
        )
    if xrs:
        tools["xrspatial"] = Tool("xrspatial", lambda lbl, out: xrspatial_command(lbl, out, backend="numpy"), env)
        tools["xrspatial_dask"] = Tool(
            "xrspatial_dask", lambda lbl, out: xrspatial_command(lbl, out, backend="dask"), env
        )
    return tools


# --- running one size -----------------------------------------------------------------


@dataclass
class _Entry:
    tool: str
    status: str = "ok"
    reason: str | None = None
    runs: list[Measurement] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)  # child wall times when the runs hold in-process times
    output_mb: float | None = None
    command: list[str] | None = None
    diff: dict[str, Any] | None = None


def read_inprocess_seconds(out_log: Path) -> float | None:
    """The ``"seconds"`` of the last JSON line a child printed, or None."""
    try:
        lines = out_log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        with contextlib.suppress(json.JSONDecodeError, TypeError, ValueError):
            info = json.loads(line)
            if isinstance(info, dict) and "seconds" in info:
                value = float(info["seconds"])
                return value if math.isfinite(value) and value >= 0 else None
    return None


def _run_tool(
    tool: Tool, lbl: Path, out: Path, logs: Path, tag: str, timeout: float
) -> tuple[Measurement, float | None]:
    """Run one tool once; returns the measurement and, for an in-process timer, the child's wall time.

    For ``inprocess_seconds`` tools the measurement's ``seconds`` is replaced by the time
    the child printed (its wall time is returned beside it). A failure of ``prospect
    slope`` itself raises :class:`ProspectFailed`.
    """
    with contextlib.suppress(FileNotFoundError):
        out.unlink()
    assert tool.build is not None, f"{tool.id} is not available"  # only available tools are run
    m = measure(tool.build(lbl, out), env=tool.env, log_stem=logs / tag, timeout=timeout)
    if tool.id in ("prospect", "prospect_planar") and not m.ok:
        why = "timed out" if m.timed_out else f"exit {m.returncode}"
        raise ProspectFailed(f"prospect slope failed on {lbl.name} ({why}): {m.stderr_tail or 'no message'}")
    wall = None
    if m.ok and tool.writes_output and not out.exists():
        m.returncode, m.stderr_tail = -1, f"exit 0 but no output file {out.name}"
    if m.ok and tool.inprocess_seconds:
        inproc = read_inprocess_seconds((logs / tag).with_suffix(".out"))
        if inproc is None:
            m.returncode, m.stderr_tail = -1, "exit 0 but no JSON seconds on stdout"
        else:
            wall, m.seconds = m.seconds, inproc
    return m, wall


def run_size(
    size: int,
    lbl: Path,
    tools: dict[str, Tool],
    *,
    repeat: int,
    timed: Sequence[str],
    skipped: Mapping[str, str],
    work: Path,
    timeout: float,
    keep: bool,
    compute_repeat: int | None = None,
) -> dict[str, Any]:
    """Time the ``timed`` tools ``repeat`` times (round robin) on one DEM; diff against gdaldem.

    The compute-only rows are run ``compute_repeat`` times (default ``repeat``): they are
    cheap, and their ratio is the noisiest.
    """
    compute_repeat = repeat if compute_repeat is None else max(1, compute_repeat)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    entries: dict[str, _Entry] = {}
    for tid in TOOL_ORDER:
        tool = tools[tid]
        if tid in skipped:
            entries[tid] = _Entry(tid, "skipped", skipped[tid])
        elif not tool.available:
            entries[tid] = _Entry(tid, "unavailable", tool.reason)
        elif tid not in timed:
            entries[tid] = _Entry(tid, "skipped", "not run at this size")
        else:
            assert tool.build is not None  # an available tool has a command
            entries[tid] = _Entry(tid, command=tool.build(lbl, work / f"{tid}_{size}.tif"))
    outputs = {tid: work / f"{tid}_{size}.tif" for tid in entries}

    # --planar is run once (not repeated): it exists for the comparison with gdaldem
    def runs_of(tid: str) -> int:
        return 1 if tid == "prospect_planar" else (compute_repeat if tid in COMPUTE_ONLY else repeat)

    for rep in range(max(repeat, compute_repeat)):
        for tid in timed:
            e = entries[tid]
            if e.status != "ok" or rep >= runs_of(tid):
                continue
            m, wall = _run_tool(tools[tid], lbl, outputs[tid], logs, f"{tid}_{size}_{rep}", timeout)
            if not m.ok:
                e.status = "failed"
                e.reason = ("timed out" if m.timed_out else f"exit {m.returncode}") + (
                    f": {m.stderr_tail}" if m.stderr_tail else ""
                )
                _log(f"{size}^2 {tid}: FAILED ({e.reason})")
                continue
            e.runs.append(m)
            if wall is not None:
                e.wall.append(wall)
            _log(
                f"{size}^2 {tid} run {rep + 1}/{runs_of(tid)}: {m.seconds:.2f} s"
                + (f" in-process ({wall:.2f} s child wall)" if wall is not None else "")
                + f", peak RSS {m.peak_rss_mb:.0f} MB"
            )
    for tid, e in entries.items():
        if e.status == "ok" and tools[tid].writes_output and outputs[tid].exists():
            e.output_mb = outputs[tid].stat().st_size / 1e6
    ref = outputs["gdaldem"]
    if entries["gdaldem"].status == "ok" and ref.exists():
        for tid in ("prospect_planar", "prospect", "xrspatial", "xrspatial_dask"):
            if entries[tid].status == "ok" and outputs[tid].exists():
                entries[tid].diff = compare_slopes(outputs[tid], ref)
    default_vs_planar = None
    if all(entries[t].status == "ok" and outputs[t].exists() for t in ("prospect", "prospect_planar")):
        default_vs_planar = compare_slopes(outputs["prospect"], outputs["prospect_planar"])
    if not keep:
        for path in outputs.values():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return _summarise(size, entries, default_vs_planar)


def _summarise(size: int, entries: dict[str, _Entry], default_vs_planar: dict[str, Any] | None) -> dict[str, Any]:
    mpix = size * size / 1e6
    tools: dict[str, Any] = {}
    for tid, e in entries.items():
        row: dict[str, Any] = {
            "label": TOOL_LABELS[tid],
            "status": e.status,
            "reason": e.reason,
            "seconds": None,
            "mpix_per_s": None,
            "peak_rss_mb": None,
            "ratio_to_gdaldem": None,
            "ratio_to_gdaldem_default": None,
            "ratio_to_gdaldem_mem": None,
            "max_abs_diff_deg_vs_gdaldem_planar": None,
            "runs": len(e.runs),
            "all_seconds": [round(m.seconds, 4) for m in e.runs],
            "output_mb": e.output_mb,
            "command": e.command,
            "kind": "compute_only" if tid in COMPUTE_ONLY else "end_to_end",
        }
        if e.wall:
            row["timing"] = (
                "in-process (open_product + slope_deg compute; interpreter start-up, imports and numba kernel loading excluded)"
            )
            row["child_wall_seconds"] = [round(w, 4) for w in e.wall]
        if e.runs:
            best = min(m.seconds for m in e.runs)
            row.update(seconds=best, mpix_per_s=mpix / best, peak_rss_mb=max(m.peak_rss_mb for m in e.runs))
        if e.diff is not None:
            row["max_abs_diff_deg_vs_gdaldem_planar"] = e.diff.get("max_abs_diff_deg")
            row["diff_vs_gdaldem_planar"] = e.diff
        tools[tid] = row
    # end-to-end rows against the gdaldem runs that write a file; compute-only rows against -of MEM
    for ref_id, key, group in (
        ("gdaldem", "ratio_to_gdaldem", END_TO_END),
        ("gdaldem_default", "ratio_to_gdaldem_default", END_TO_END),
        ("gdaldem_mem", "ratio_to_gdaldem_mem", COMPUTE_ONLY),
    ):
        ref = tools.get(ref_id, {}).get("mpix_per_s")
        if ref:
            for tid, row in tools.items():
                if tid in group and row["mpix_per_s"]:
                    row[key] = row["mpix_per_s"] / ref
    return {
        "size": size,
        "pixels": size * size,
        "megapixels": mpix,
        "dem_mb": size * size * 2 / 1e6,
        "tools": tools,
        "prospect_default_vs_planar": default_vs_planar,
    }


# --- targets, tables, files -----------------------------------------------------------


def evaluate_targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The benchmark's targets with PASS / FAIL / NOT RUN and the numbers behind them."""
    sizes = results.get("sizes", {})

    def tool(size: int, tid: str) -> dict[str, Any]:
        return sizes.get(str(size), {}).get("tools", {}).get(tid, {})

    targets = []
    for name, pid, rid, key, basis in SPEED_BASES:
        t: dict[str, Any] = {
            "name": name,
            "basis": basis,
            "target": f"{basis}: {TOOL_LABELS[pid]} >= {SPEED_TARGET:g}x {TOOL_LABELS[rid]} at {REF_SIZE}^2",
            "value": None,
        }
        prow, rrow = tool(REF_SIZE, pid), tool(REF_SIZE, rid)
        ratio = prow.get(key)
        if ratio is not None:
            t.update(
                value=round(ratio, 3),
                status="PASS" if ratio >= SPEED_TARGET else "FAIL",
                seconds={pid: round(prow["seconds"], 3), rid: round(rrow["seconds"], 3)},
                note=f"{prow['seconds']:.2f} s vs {rrow['seconds']:.2f} s; "
                f"{prow['mpix_per_s']:.1f} vs {rrow['mpix_per_s']:.1f} Mpix/s",
            )
        elif str(REF_SIZE) not in sizes:
            t.update(status="NOT RUN", note=f"{REF_SIZE}^2 not run")
        elif prow.get("status") == "failed":  # prospect failing is a failure, not a missing number
            t.update(status="FAIL", note=f"{pid} failed: {prow.get('reason') or '?'}")
        else:
            missing = [(i, r) for i, r in ((pid, prow), (rid, rrow)) if r.get("status") != "ok" or not r.get("seconds")]
            why = "; ".join(
                f"{i} {r.get('status', 'missing')}" + (f" ({r['reason']})" if r.get("reason") else "")
                for i, r in missing
            )
            t.update(status="NOT RUN", note=why or "no timing")
        targets.append(t)
    big = tool(BIG_SIZE, "prospect").get("peak_rss_mb")
    normal = [int(s) for s in sizes if int(s) != BIG_SIZE and tool(int(s), "prospect").get("peak_rss_mb")]
    ref_size = REF_SIZE if REF_SIZE in normal else (max(normal) if normal else None)
    ref_rss = tool(ref_size, "prospect").get("peak_rss_mb") if ref_size else None
    if big is None:
        targets.append(
            {
                "name": "memory",
                "target": f"prospect peak RSS <= {RSS_TARGET_MB:g} MB at {BIG_SIZE}^2",
                "value": None,
                "status": "NOT RUN",
                "note": "run with --big",
            }
        )
        targets.append(
            {
                "name": "memory_scaling",
                "target": f"prospect peak RSS independent of size "
                f"({BIG_SIZE}^2 / {REF_SIZE}^2 <= {RSS_INDEPENDENCE:g})",
                "value": None,
                "status": "NOT RUN",
                "note": "run with --big",
            }
        )
    else:
        targets.append(
            {
                "name": "memory",
                "target": f"prospect peak RSS <= {RSS_TARGET_MB:g} MB at {BIG_SIZE}^2",
                "value": round(big, 1),
                "status": "PASS" if big <= RSS_TARGET_MB else "FAIL",
                "note": f"{big:.0f} MB",
            }
        )
        t = {
            "name": "memory_scaling",
            "target": f"prospect peak RSS independent of size ({BIG_SIZE}^2 / {REF_SIZE}^2 <= {RSS_INDEPENDENCE:g})",
            "rss_mb": {str(BIG_SIZE): round(big, 1)},
        }
        if ref_rss:
            t["rss_mb"][str(ref_size)] = round(ref_rss, 1)
            t["value"] = round(big / ref_rss, 3)
            t["status"] = "PASS" if big / ref_rss <= RSS_INDEPENDENCE else "FAIL"
            t["note"] = f"{BIG_SIZE}^2: {big:.0f} MB; {ref_size}^2: {ref_rss:.0f} MB"
            if ref_size != REF_SIZE:
                t["note"] += f"; compared with {ref_size}^2: {REF_SIZE}^2 was not run"
        else:
            t.update(value=None, status="NOT RUN", note="no smaller size with a prospect result")
        targets.append(t)
    return targets


def time_breakdown(results: Mapping[str, Any], size: int = REF_SIZE) -> dict[str, Any] | None:
    """Where prospect's end-to-end time goes at ``size``: start-up + imports, compute, the rest.

    Start-up is the best of the ``python -c "import prospect..."`` runs, compute the
    in-process compute-only time (chunks 2048, so the split is approximate: ``prospect
    slope`` computes in 1024-pixel chunks, window by window), the rest is what remains:
    reading, scheduling the streaming windows, compressing and writing the GeoTIFF.
    None when the end-to-end run is missing.
    """
    tools = results.get("sizes", {}).get(str(size), {}).get("tools", {})
    e2e = tools.get("prospect", {}).get("seconds")
    if not e2e:
        return None
    startup = (results.get("startup") or {}).get("seconds")
    compute = tools.get("prospect_compute", {}).get("seconds")
    out: dict[str, Any] = {
        "size": size,
        "end_to_end_s": e2e,
        "startup_imports_s": startup,
        "compute_s": compute,
        "rest_s": None,
    }
    if startup is not None and compute is not None:
        out["rest_s"] = e2e - startup - compute
    return out


def fmt(v: Any, spec: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec)


def render_markdown(results: Mapping[str, Any]) -> str:
    """The results as a readable markdown report (the content of ``slope.md``)."""
    m = results.get("machine", {})
    co = (results.get("config") or {}).get("creation_options") or CREATION_OPTIONS
    co_text = " ".join(f"{k}={v}" for k, v in co.items())
    lines = [
        "# Slope benchmark: prospect vs gdaldem vs xarray-spatial",
        "",
        (
            f"{results.get('created', '')} | {m.get('cpu_model', '?')}, {m.get('cpu_count', '?')} CPUs, "
            f"{fmt(m.get('mem_total_gb'), '.0f')} GB RAM | Python {m.get('python', '?')} | "
            f"prospect {m.get('prospect', '?')} (GDAL {m.get('rasterio_gdal', '?')} via rasterio) | "
            f"gdaldem: {m.get('gdaldem_version') or 'unavailable'} | xarray-spatial {m.get('xarray_spatial') or 'unavailable'}"
        ),
        "",
        (
            "Input: fractal int16 LOLA-style PDS3 DEM (heights = DN x 0.5 m), polar stereographic south "
            "(IAU_2015:30135), 20 m pixels, pole-centred. Output: float32 slope GeoTIFF (degrees); "
            f"creation options (prospect's, given to gdaldem as `-co`): `{co_text}`. "
            "Time = best wall time of the repeats, including interpreter start-up; for the row "
            '"prospect slope_deg in-process" it is the in-process time of open_product(chunks=2048) + '
            "slope_deg(...).compute() only (start-up, imports and numba kernel loading excluded; the child's wall time is in the note). "
            "Peak RSS = max `ru_maxrss` of the child. Ratios are throughput ratios: "
            "x same-CO = / gdaldem slope with the same creation options, x defaults = / gdaldem slope with its "
            "defaults (uncompressed output), both for the rows that write a file; "
            "x MEM = / gdaldem slope -of MEM, for the compute-only rows. "
            "max abs diff = max |difference| (deg) from gdaldem over interior pixels; compare `--planar` "
            "(prospect's default uses ground distances, gdaldem is planar)."
        ),
        "",
        (
            "| size | tool | status | time s | Mpix/s | peak RSS MB | x same-CO | x defaults | x MEM "
            "| max abs diff deg | output MB | note |"
        ),
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key in sorted(results.get("sizes", {}), key=int):
        entry = results["sizes"][key]
        size = entry["size"]
        for tid in TOOL_ORDER:
            row = entry["tools"].get(tid)
            if row is None:
                continue
            notes = [row["reason"]] if row.get("reason") else []
            if row.get("runs", 0) > 1:
                notes.append(f"best of {row['runs']}")
            if row.get("child_wall_seconds"):
                notes.append(f"child wall {min(row['child_wall_seconds']):.2f} s")
            note = "; ".join(notes)
            lines.append(
                f"| {size}^2 | {row.get('label', tid)} | {row.get('status', '?')} | {fmt(row.get('seconds'), '.2f')} | "
                f"{fmt(row.get('mpix_per_s'), '.1f')} | {fmt(row.get('peak_rss_mb'), '.0f')} | "
                f"{fmt(row.get('ratio_to_gdaldem'), '.2f')} | {fmt(row.get('ratio_to_gdaldem_default'), '.2f')} | "
                f"{fmt(row.get('ratio_to_gdaldem_mem'), '.2f')} | "
                f"{fmt(row.get('max_abs_diff_deg_vs_gdaldem_planar'), '.2g')} | {fmt(row.get('output_mb'), '.0f')} | "
                f"{note.replace('|', '/')} |"
            )
    targets = results.get("targets") or []
    if targets:
        lines += ["", "## Targets", "", "| target | value | result |", "|---|---:|---|"]
        for t in targets:
            note = f" ({t['note']})" if t.get("note") else ""
            lines.append(f"| {t['target']} | {fmt(t.get('value'), 'g')} | **{t['status']}**{note} |")
    tb = results.get("time_breakdown")
    if tb:
        lines += ["", f"## Where prospect's time goes at {tb['size']}^2", ""]
        if tb.get("rest_s") is not None:
            lines.append(
                f"prospect slope end-to-end {tb['end_to_end_s']:.2f} s = interpreter start-up + imports "
                f'{tb["startup_imports_s"]:.2f} s (best of {STARTUP_REPEAT}: `python -c "{STARTUP_IMPORTS}"`) '
                f"+ compute {tb['compute_s']:.2f} s (in-process, chunks {COMPUTE_CHUNKS}) "
                f"+ the rest {tb['rest_s']:.2f} s (reading in 1024-pixel chunks window by window, compressing and writing "
                f"the GeoTIFF; approximate, as the compute-only run uses larger chunks)."
            )
        else:
            lines.append(
                f"prospect slope end-to-end {tb['end_to_end_s']:.2f} s; interpreter start-up + imports "
                f"{fmt(tb.get('startup_imports_s'), '.2f')} s; in-process compute "
                f"{fmt(tb.get('compute_s'), '.2f')} s (a missing part was not measured)."
            )
    rss = results.get("prospect_peak_rss_mb_by_size") or {}
    if rss:
        lines += [
            "",
            "## prospect peak RSS by size",
            "",
            "| " + " | ".join(f"{s}^2" for s in rss) + " |",
            "|" + "---:|" * len(rss),
            "| " + " | ".join(fmt(v, ".0f") + " MB" for v in rss.values()) + " |",
        ]
    if results.get("error"):
        lines += ["", f"**ERROR:** {results['error']}"]
    return "\n".join(lines) + "\n"


def write_results(results: dict[str, Any], out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Fill in targets and the RSS summary, write ``slope.json`` and ``slope.md`` atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results["targets"] = evaluate_targets(results)
    results["time_breakdown"] = time_breakdown(results)
    results["prospect_peak_rss_mb_by_size"] = {
        k: v["tools"]["prospect"]["peak_rss_mb"]
        for k, v in sorted(results.get("sizes", {}).items(), key=lambda kv: int(kv[0]))
        if v.get("tools", {}).get("prospect", {}).get("peak_rss_mb") is not None
    }
    return write_report(results, out, "slope", render_markdown(results))


def write_report(results: dict[str, Any], out: Path, stem: str, markdown: str) -> tuple[Path, Path]:
    """Write ``<stem>.json`` (the results) and ``<stem>.md`` (``markdown``) in ``out``, each atomically."""
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    with atomic_write(json_path) as tmp:
        tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    with atomic_write(md_path) as tmp:
        tmp.write_text(markdown)
    return json_path, md_path


def machine_info(gdaldem: str | None, xrs_version: str | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": None,
        "mem_total_gb": None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "prospect": None,
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_total_gb"] = int(line.split()[1]) * 1024 / 1e9
    for dist in ("prospect", "numpy", "numba", "dask", "xarray", "rasterio"):
        try:
            info[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[dist] = None
    try:
        import rasterio

        info["rasterio_gdal"] = rasterio.__gdal_version__
    except ImportError:
        info["rasterio_gdal"] = None
    info["gdaldem"] = gdaldem
    info["gdaldem_version"] = None
    if gdaldem:
        # GDAL 3.6's gdaldem prints the version, then usage, and exits 1
        _, text = _run_quiet([gdaldem, "--version"], timeout=60, env=_clean_env())
        first = text.splitlines()[0].strip() if text else ""
        info["gdaldem_version"] = first if first.startswith("GDAL") else None
    info["xarray_spatial"] = xrs_version
    rc, text = _run_quiet(
        ["git", "-C", str(Path(__file__).resolve().parents[1]), "describe", "--always", "--dirty"], timeout=30
    )
    info["git"] = text if rc == 0 else None
    return info


# --- main -----------------------------------------------------------------------------


def _parse_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(s) for s in text.replace(" ", "").split(",") if s})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes must be comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 16:
        raise argparse.ArgumentTypeError(f"--sizes must be integers >= 16, got {text!r}")
    return sizes


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_slope", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sizes",
        type=_parse_sizes,
        default=list(DEFAULT_SIZES),
        help="comma-separated DEM sizes (pixels per side); default 1024,4096,7584",
    )
    p.add_argument(
        "--big",
        action="store_true",
        help=f"also run {BIG_SIZE}^2 (1.85 GB int16, LDEM_80S_20M size): prospect and gdaldem "
        "end-to-end only, for peak RSS",
    )
    p.add_argument("--out", type=Path, default=Path("build/bench"), help="output directory (default build/bench)")
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timed runs per tool and size, best kept (default 3 up to 4096^2, 1 above; "
        "the compute-only rows at least 3)",
    )
    p.add_argument("--keep", action="store_true", help="keep the DEMs, outputs and logs (in OUT/work-*)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds before a run is killed")
    p.add_argument("--seed", type=int, default=SEED, help="fractal terrain seed")
    p.add_argument("--run-xrspatial", nargs=2, metavar=("DEM_LBL", "OUT_TIF"), help=argparse.SUPPRESS)
    p.add_argument("--backend", choices=("numpy", "dask"), default="numpy", help=argparse.SUPPRESS)
    p.add_argument("--run-prospect-compute", metavar="DEM_LBL", help=argparse.SUPPRESS)
    return p


def measure_startup(env: Mapping[str, str], logs: Path, timeout: float, repeat: int = STARTUP_REPEAT) -> dict[str, Any]:
    """Interpreter start-up + prospect's imports: ``python -c "import prospect.cli, ..."``, best of ``repeat``."""
    cmd = startup_command()
    runs = [measure(cmd, env=env, log_stem=logs / f"startup_{i}", timeout=timeout) for i in range(repeat)]
    ok = [m for m in runs if m.ok]
    info: dict[str, Any] = {
        "command": cmd,
        "runs": len(ok),
        "all_seconds": [round(m.seconds, 4) for m in ok],
        "seconds": min(m.seconds for m in ok) if ok else None,
        "peak_rss_mb": max(m.peak_rss_mb for m in ok) if ok else None,
    }
    if not ok:
        info["error"] = runs[-1].stderr_tail or f"exit {runs[-1].returncode}"
        _log(f"start-up timing failed: {info['error']}")
    else:
        _log(f"interpreter start-up + imports: {info['seconds']:.2f} s (best of {len(ok)})")
    return info


def _repeat_for(size: int, repeat: int | None) -> int:
    if repeat is not None:
        return max(1, repeat)
    return 3 if size <= 4096 else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.run_xrspatial:
        run_xrspatial(args.run_xrspatial[0], args.run_xrspatial[1], args.backend)
        return 0
    if args.run_prospect_compute:
        print(json.dumps(run_prospect_compute(args.run_prospect_compute)), flush=True)
        return 0

    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    env = _clean_env()
    work = Path(tempfile.mkdtemp(prefix="work-", dir=out_dir))
    setup_log = work / "setup.log"
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config": {
            "sizes": args.sizes,
            "big": args.big,
            "big_size": BIG_SIZE if args.big else None,
            "big_tile": BIG_TILE,
            "repeat": {str(s): _repeat_for(s, args.repeat) for s in args.sizes},
            "pixel_m": PIXEL_M,
            "crs": f"IAU_2015:{CRS_CODE}",
            "dn_scale": DN_SCALE,
            "seed": args.seed,
            "fractal_beta": FRACTAL_BETA,
            "relief_std_m_at_ref_size": RELIEF_STD_M,
            "creation_options": dict(_writers.STREAM_CREATION_OPTIONS),
            "creation_options_source": "prospect.io.writers.STREAM_CREATION_OPTIONS",
            "compute_only_chunks": COMPUTE_CHUNKS,
            "startup_command": startup_command(),
            "gdaldem_scale": GDALDEM_SCALE,
            "rss_unit": "MB = 10^6 bytes",
            "speed_target": SPEED_TARGET,
            "rss_target_mb": RSS_TARGET_MB,
            "rss_independence_ratio": RSS_INDEPENDENCE,
        },
        "sizes": {},
    }
    code = 0
    try:
        rc, text = _run_quiet(
            [*prospect_command(Path("x"), Path("y"))[:4], "--help"], timeout=300, env=dict(env, PROSPECT_BENCH="1")
        )
        if rc != 0:
            raise ProspectFailed(
                f"`prospect slope --help` failed (exit {rc}): {text.splitlines()[-1] if text else 'no message'}"
            )
        gdaldem, gdal_reason = ensure_gdaldem(setup_log)
        xrs_version, xrs_reason = ensure_xrspatial(setup_log, env)
        results["machine"] = machine_info(gdaldem, xrs_version)
        tools = build_tools(gdaldem, gdal_reason, xrs_version, xrs_reason, env)
        for t in tools.values():
            if not t.available:
                _log(f"{t.id}: {t.reason}")

        sizes = args.sizes
        smallest = work / f"DEM_{sizes[0]}.IMG"
        _log(f"generating {sizes[0]}^2 DEM")
        lbl = write_dem(smallest, sizes[0], seed=args.seed)
        _log("warm-up (not recorded): each tool once on the smallest DEM")
        logs = work / "logs"
        logs.mkdir(exist_ok=True)
        for tid in TOOL_ORDER:
            if tools[tid].available:
                m, _ = _run_tool(tools[tid], lbl, work / f"warmup_{tid}.tif", logs, f"warmup_{tid}", args.timeout)
                _log(f"  {tid}: {m.seconds:.2f} s" + ("" if m.ok else f" (failed: {m.stderr_tail})"))
                with contextlib.suppress(FileNotFoundError):
                    (work / f"warmup_{tid}.tif").unlink()
        results["startup"] = measure_startup(tools["prospect"].env, logs, args.timeout)

        all_timed = TOOL_ORDER
        for size in sizes:
            img = work / f"DEM_{size}.IMG"
            if size != sizes[0]:
                _log(f"generating {size}^2 DEM")
                lbl = write_dem(img, size, seed=args.seed)
            results["sizes"][str(size)] = run_size(
                size,
                lbl,
                tools,
                repeat=_repeat_for(size, args.repeat),
                timed=all_timed,
                skipped={},
                work=work,
                timeout=args.timeout,
                keep=args.keep,
                compute_repeat=max(3, _repeat_for(size, args.repeat)) if args.repeat is None else args.repeat,
            )
            if not args.keep:
                for p in (img, lbl):
                    p.unlink(missing_ok=True)

        if args.big:
            need = BIG_SIZE * BIG_SIZE * (2 + 4 * 4) / 1e9  # the DEM + four float32 outputs, before compression
            free = shutil.disk_usage(work).free / 1e9
            if free < need:
                _log(f"warning: {free:.0f} GB free in {work}, the {BIG_SIZE}^2 run may need up to {need:.0f} GB")
            _log(f"generating {BIG_SIZE}^2 DEM from mirrored {BIG_TILE}^2 tiles")
            tile = make_fractal_tile(BIG_TILE, args.seed)
            img = work / f"DEM_{BIG_SIZE}.IMG"
            lbl = write_tiled_dem(img, BIG_SIZE, tile)
            del tile
            why = f"skipped at {BIG_SIZE}^2: it would hold the whole DEM (1.85 GB int16, 3.7 GB float32) in RAM"
            why_compute = (
                f"skipped at {BIG_SIZE}^2: compute only keeps the whole 3.7 GB float32 slope in RAM "
                "(no file to stream to), so it says nothing about streaming"
            )
            results["sizes"][str(BIG_SIZE)] = run_size(
                BIG_SIZE,
                lbl,
                tools,
                repeat=_repeat_for(BIG_SIZE, args.repeat),
                timed=("prospect", "prospect_planar", "gdaldem", "gdaldem_default"),
                skipped={
                    "xrspatial": why,
                    "xrspatial_dask": why,
                    "prospect_compute": why_compute,
                    "gdaldem_mem": why_compute,
                },
                work=work,
                timeout=args.timeout,
                keep=args.keep,
            )
            if not args.keep:
                for p in (img, lbl):
                    p.unlink(missing_ok=True)
    except ProspectFailed as exc:
        results["error"] = str(exc)
        code = 2
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            _log(f"kept DEMs, outputs and logs in {work}")

    results.setdefault("machine", {})
    _, md_path = write_results(results, out_dir)
    if code:
        print(f"prospect bench: error: {' '.join(results['error'].split())}", file=sys.stderr)
        return code
    print(md_path.read_text())
    _log(f"wrote {out_dir / 'slope.json'} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
