"""Power at candidate sites: the horizon of one point at full DEM resolution, then the exact Sun
and Earth visibility at every time step, for sizing solar panels on masts and night batteries.

For a site's point (map ``x, y`` on a polar stereographic lunar DEM) and each mast height ``H``:

1. **Point horizon** (:func:`points_horizon`, :func:`point_horizon`): one straight map ray per
   azimuth from the point itself (not a pixel centre), bilinear heights every ``step_px``
   pixels out to ``max_distance_m`` of ground distance, and the defining formula of
   ``docs/science.md`` section 3 with the eye raised by ``H``::

       horizon(u) = max over samples of atan((h(r) - (h0 + H) - r^2 / (2R)) / r)

   ``h0`` is the bilinear ground height at the point, ``R`` the radius of the DEM's CRS
   (:mod:`prospect.lunar`) and ``r`` the ground distance along the map line (the exact
   integral of ``1/k``, as :func:`prospect.illumination.horizon.horizon_brute_force`'s
   ``sampling="ray"``, whose sampling, bilinear rule, raster-edge rule and distances this
   reproduces sample for sample: at a pixel centre and ``H = 0`` the two agree to float32
   rounding). The DEM is used at its own resolution everywhere (no multi-resolution far
   field as in :class:`prospect.illumination.tiles.TiledHorizon`).

   Memory: the DEM is never loaded whole. Its chunks (2048 x 2048 for
   :func:`prospect.io.readers.open_product`) are visited one at a time, only those some ray
   crosses, each read with a one-pixel halo (straight from the file through
   :func:`prospect.io.readers.window_source` when the array is still what was read, else
   from the chunk and the first row / column of its already visited neighbours), and every
   ray keeps only its running maximum. Peak memory is one chunk plus a few numbers per ray,
   whatever the raster's size; the work is the number of samples (``n_points x n_azimuths x
   max_distance / (step_px x pixel)``) plus one read of each chunk crossed.

2. **Time series** (:func:`point_power`): at every time step of the span the Sun's and the
   Earth's topocentric azimuth and elevation from :mod:`prospect.illumination.ephemeris`
   (exact directions, no linearisation in the sub-solar latitude and no longitude bins: the
   conventions of :func:`prospect.illumination.products.products_at_pixels_brute_force`,
   i.e. no solar parallax, the Earth with its parallax on the sphere), the horizon
   interpolated linearly in azimuth (periodic), and

   * ``disk_fraction`` per step: the visible fraction of the solar disk above a straight
     horizon, centre ``(el - horizon) / rho`` radii above it
     (:func:`prospect.illumination.products.disk_fraction`, ``rho`` the apparent solar
     radius at that step). Some of the disk is up exactly when ``el + rho > horizon`` (the
     test of the illumination products); the fraction is made to agree with that test to
     the last bit: 0 on every step without a limb up, and at least the smallest normal
     float32 (~1e-38) on every step with one (the formula alone rounds a limb less than
     ~1e-16 of the disk to 0 or -2e-16), so "no limb" is ``disk_fraction == 0`` in the
     float64 values and in the float32 series alike;
   * ``illumination_fraction``: its mean over the span;
   * ``longest_night_h``: the longest run of consecutive steps with no part of the disk
     above the horizon (``disk_fraction == 0``, i.e. ``el + rho <= horizon``) times the
     step; a run that wraps from the end of the span to its start is not joined (as the
     illumination products' ``longest_darkness_h``);
   * ``longest_usable_night_h``: the same with a step counted as night unless at least
     ``min_disk_fraction`` (``power_min_disk_fraction``) of the disk is up, and some of it
     (:func:`usable_sun`): a sliver of Sun on the horizon does not run a base. Never
     shorter than ``longest_night_h``; equal to it, step for step, at ``min_disk_fraction
     = 0``;
   * ``usable_sun_fraction``: the share of steps of usable sunlight (:func:`usable_sun`).
     A count of steps, not a mean of the disk: a step with 60 % of the disk up adds 1 here
     and 0.6 to ``illumination_fraction``, so neither bounds the other in general; at
     threshold 0 it is the share of steps with any limb up (>= ``illumination_fraction``);
   * ``earth_visibility_fraction``: the share of steps with the Earth's centre above the
     horizon;
   * ``battery_wh = load_w x longest_usable_night_h``: the energy a battery must hold to
     carry the load through the longest stretch without usable sunlight (no
     depth-of-discharge, ageing or efficiency margin). ``longest_night_h`` (no limb at all)
     is kept alongside: the battery it would give, ``load_w x longest_night_h``, is a lower
     bound that assumes any sliver of Sun runs the load.

   All of it is vectorised over the time steps (numpy): ~160,000 hourly steps (18.6 yr) cost
   a few milliseconds per site and height.

Azimuth convention of the point horizons
    **True-north azimuths**: degrees clockwise from local geographic north at the point
    (the convention of :func:`prospect.illumination.ephemeris.topocentric_azimuth_elevation`),
    ``azimuths[j] = j * 360 / n_azimuths``. The ray of true azimuth ``A`` runs along grid
    azimuth ``A + gamma`` (``gamma`` from :func:`grid_north_azimuth_at`, the point version of
    :func:`prospect.illumination.products.grid_north_azimuth_deg`), so a point horizon can be
    compared with a horizon cube (grid azimuths) at grid azimuths ``azimuths + gamma``.

Parameters (``prospect/config/sites.yaml``, ``power_*``; :func:`power_params`): the mast
heights, the azimuths, the horizon reach, the time step and span, the night load, the share of
the solar disk that makes a step's sunlight usable (``power_min_disk_fraction``) and how many
of the best distinct sites get a power analysis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import xarray as xr
from numba import njit

from prospect import config as _config
from prospect import lunar
from prospect.config import ParameterSet
from prospect.errors import ConfigError, GridError
from prospect.grid import AnalysisGrid
from prospect.illumination.ephemeris import (
    DEFAULT_START,
    SunEarth,
    check_time_span,
    default_times,
    earth_azimuth_elevation,
    sun_azimuth_elevation,
    sun_earth_directions,
)
from prospect.illumination.horizon import POLAR_KERNEL, check_max_distance, check_observer_height, kernel_geometry
from prospect.illumination.maps import MAX_AZIMUTHS, MAX_DISTANCE_LIMIT_M, MAX_OBSERVER_HEIGHT_M
from prospect.illumination.products import check_disk_fraction, disk_fraction
from prospect.terrain.metric import heights_in_metres

__all__ = [
    "DEFAULT_MIN_DISK_FRACTION",
    "DEFAULT_STEP_PX",
    "PowerParams",
    "PowerSeries",
    "grid_north_azimuth_at",
    "night_steps",
    "point_horizon",
    "point_power",
    "points_horizon",
    "power_params",
    "select_power_sites",
    "site_power",
    "sites_power",
    "usable_sun",
]

#: Ray sampling step along the map line [pixels] by default: the step of
#: :func:`prospect.illumination.horizon.horizon_brute_force`'s ``sampling="ray"``.
DEFAULT_STEP_PX = 0.5
#: Block size [px] for DEMs without dask chunks (numpy-backed): views, nothing is copied.
NUMPY_BLOCK_PX = 2048
#: The highest mast, the longest reach and the most azimuths accepted: the illumination stage's limits.
MAX_MAST_HEIGHT_M = MAX_OBSERVER_HEIGHT_M
MAX_REACH_M = MAX_DISTANCE_LIMIT_M
MAX_POWER_AZIMUTHS = MAX_AZIMUTHS
#: Fewest azimuths accepted from the configuration (one ray per azimuth is cheap at a point).
MIN_POWER_AZIMUTHS = 8
#: Share of the solar disk that must be up for a step's sunlight to count as usable, by default:
#: the packaged value of ``sites.power_min_disk_fraction`` (see its source there), read from it.
DEFAULT_MIN_DISK_FRACTION = float(_config.defaults("sites")["power_min_disk_fraction"])
#: The smallest normal float32: the disk fraction of a step with a limb up that rounds to 0.
_TINY_FRACTION = float(np.finfo(np.float32).tiny)
_POLAR = POLAR_KERNEL  # a plain int for the numba kernel


# --- parameters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerParams:
    """The power analysis' parameters, checked (see ``prospect/config/sites.yaml``)."""

    heights_m: tuple[float, ...]
    n_azimuths: int
    max_distance_m: float
    step_hours: float
    span_years: float
    load_w: float
    top_n: int
    min_disk_fraction: float = DEFAULT_MIN_DISK_FRACTION


def _whole(name: str, value: Any, lo: int, hi: int) -> int:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not math.isfinite(v) or v != int(v) or not lo <= v <= hi:
        raise ConfigError(f"sites.{name}: must be a whole number from {lo} to {hi}, not {value!r}")
    return int(v)


def _number(name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False, unit: str = "") -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi
    if isinstance(value, bool) or not ok:
        bound = f"{'above' if lo_open else 'at least'} {lo:g} and at most {hi:g}{(' ' + unit) if unit else ''}"
        raise ConfigError(f"sites.{name}: must be a number {bound}, not {value!r}")
    return v


def _heights(value: Any, name: str = "power_mast_heights_m") -> tuple[float, ...]:
    """Mast heights [m] as a tuple: a number or a non-empty list of numbers in [0, 10 km], distinct."""
    items = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
    if not items:
        raise ConfigError(f"sites.{name}: give at least one mast height in m, e.g. [2, 10]")
    out = tuple(_number(name, v, 0.0, MAX_MAST_HEIGHT_M, unit="m") for v in items)
    if len(set(out)) != len(out):
        raise ConfigError(f"sites.{name}: the mast heights must differ, not {list(items)!r}")
    return out


def power_params(params: ParameterSet | Mapping[str, Any] | None = None) -> PowerParams:
    """The ``power_*`` parameters of the ``sites`` set, checked: a :class:`ParameterSet`
    (``prospect.config.load("sites", ...)``), a mapping ``{name: value}`` of overrides of the
    packaged defaults, or None (the defaults). A bad value is a one-line
    :class:`~prospect.errors.ConfigError` naming the parameter.
    """
    if params is None or not isinstance(params, ParameterSet):
        params = _config.load("sites", {"sites": dict(params or {})})
    heights = _heights(params["power_mast_heights_m"])
    n_az = _whole("power_azimuths", params["power_azimuths"], MIN_POWER_AZIMUTHS, MAX_POWER_AZIMUTHS)
    dmax = _number("power_max_distance_m", params["power_max_distance_m"], 0.0, MAX_REACH_M, lo_open=True, unit="m")
    step = _number("power_step_hours", params["power_step_hours"], 0.0, 24.0 * 366.0, lo_open=True, unit="h")
    years = _number("power_span_years", params["power_span_years"], 0.0, 200.0, lo_open=True, unit="yr")
    try:
        check_time_span(DEFAULT_START, years, step)
    except ConfigError as exc:
        raise ConfigError(f"sites.power_span_years / power_step_hours: {exc}") from None
    load = _number("power_load_w", params["power_load_w"], 0.0, 1e9, unit="W")
    top_n = _whole("power_sites_top_n", params["power_sites_top_n"], 1, 10_000)
    min_disk = _number("power_min_disk_fraction", params["power_min_disk_fraction"], 0.0, 1.0)
    return PowerParams(heights, n_az, dmax, step, years, load, top_n, min_disk)


# --- point horizons --------------------------------------------------------------------------


def grid_north_azimuth_at(kind: str, x: Any, y: Any) -> np.ndarray:
    """Grid azimuth of true north [deg] at map points ``x, y`` of a polar stereographic grid.

    The formulas of :func:`prospect.illumination.products.grid_north_azimuth_deg` (south:
    ``atan2(x, y)``, north: ``atan2(-x, -y)``) at single points, without a whole-grid mesh:
    a true azimuth plus this is a grid azimuth.
    """
    x = np.asarray(x, dtype="float64")
    y = np.asarray(y, dtype="float64")
    if kind == "polar_south":
        return np.degrees(np.arctan2(x, y))
    if kind == "polar_north":
        return np.degrees(np.arctan2(-x, -y))
    raise GridError(f"point horizons need a polar stereographic grid (IAU_2015:30135/30130), not a {kind} grid")


@njit(nogil=True, cache=True, inline="always")
def _t_range(q, d, a0, a1, lo, hi):
    """Narrow ``[lo, hi]`` to the ray parameters ``i`` with ``a0 <= q + i d <= a1``."""
    if d == 0.0:
        if q < a0 or q > a1:
            return 1.0, 0.0
        return lo, hi
    t1 = (a0 - q) / d
    t2 = (a1 - q) / d
    return max(lo, min(t1, t2)), min(hi, max(t1, t2))


@njit(nogil=True, cache=True)
def _block_ranges(R0, R1, C0, C1, pr, pc, drs, dcs, nmax, i_lo, i_hi):
    """Per ray, the sample indices that may fall in block rows [R0, R1) x cols [C0, C1) (one
    pixel of margin); returns the number of rays with any."""
    n = 0
    for p in range(pr.shape[0]):
        lo, hi = _t_range(pr[p], drs[p], R0 - 1.0, R1 + 1.0, 1.0, float(nmax[p]))
        lo, hi = _t_range(pc[p], dcs[p], C0 - 1.0, C1 + 1.0, lo, hi)
        a = int(math.ceil(lo))
        b = int(math.floor(hi))
        i_lo[p] = a
        i_hi[p] = b
        if b >= a:
            n += 1
    return n


@njit(nogil=True, cache=True)
def _rays_block(
    zb,
    R0,
    R1,
    C0,
    C1,
    ny,
    nx,
    scale,
    pr,
    pc,
    drs,
    dcs,
    z0,
    i_lo,
    i_hi,
    mode,
    pu,
    A,
    C,
    sig0,
    step,
    radius,
    dmax,
    heights,
    best,
):
    """Update every ray's running maximum of ``(h - (h0 + H) - r^2/2R) / r`` with its samples
    owned by the block rows [R0, R1) x cols [C0, C1) (the samples whose bilinear cell's
    upper-left pixel lies there; ``zb`` holds the block plus one row and column of halo where
    the raster goes on). Sampling, bilinear rule, edge and distance rules of
    :func:`prospect.illumination._horizon_kernels.horizon_brute_ray`."""
    nh = heights.shape[0]
    inv2r = 1.0 / (2.0 * radius)
    for p in range(pr.shape[0]):
        if math.isnan(z0[p]):
            continue
        for i in range(i_lo[p], i_hi[p] + 1):
            s = i * step
            if mode == _POLAR:
                r = C[p] * math.atan((s + pu[p]) / A[p]) - sig0[p]
            else:
                r = s
            if r > dmax:
                break
            rr = pr[p] + i * drs[p]
            cc = pc[p] + i * dcs[p]
            if not (rr > -0.5 and rr <= ny - 0.5 and cc > -0.5 and cc <= nx - 0.5):
                break  # the ray has left the raster (samples inside form a prefix)
            rc = min(max(rr, 0.0), ny - 1.0)
            ccl = min(max(cc, 0.0), nx - 1.0)
            r0 = int(math.floor(rc))
            c0 = int(math.floor(ccl))
            wr = rc - r0
            wc = ccl - c0
            if r0 >= ny - 1:
                r0 = ny - 1
                wr = 0.0
            if c0 >= nx - 1:
                c0 = nx - 1
                wc = 0.0
            if r0 < R0 or r0 >= R1 or c0 < C0 or c0 >= C1:
                continue
            lr = r0 - R0
            lc = c0 - C0
            v = zb[lr, lc] * (1.0 - wr) * (1.0 - wc)
            if wc > 0.0:
                v += zb[lr, lc + 1] * (1.0 - wr) * wc
            if wr > 0.0:
                v += zb[lr + 1, lc] * wr * (1.0 - wc)
                if wc > 0.0:
                    v += zb[lr + 1, lc + 1] * wr * wc
            if math.isnan(v):
                continue
            base = (v * scale - z0[p] - r * r * inv2r) / r
            for k in range(nh):
                best[p, k] = max(best[p, k], base - heights[k] / r)


def _spans(chunks: tuple[int, ...]) -> list[tuple[int, int]]:
    out, start = [], 0
    for size in chunks:
        out.append((start, start + size))
        start += size
    return out


class _BlockReader:
    """Blocks of a DEM with a one-pixel halo below and to the right, one at a time.

    numpy-backed: views. Window source (:func:`prospect.io.readers.window_source`): each block
    with its halo in one read from the file. Any other dask array: the chunk, plus the first
    row / column of the neighbouring chunks kept from when they were visited (blocks are
    visited bottom-right first), or computed if they were not.
    """

    def __init__(self, dem: xr.DataArray):
        import dask.array as da

        from prospect.io.readers import window_source

        self.data = dem.data
        self.ny, self.nx = (int(n) for n in dem.shape)
        self.is_dask = isinstance(self.data, da.Array)
        self.source = window_source(dem) if self.is_dask else None
        if self.is_dask:
            self.rows, self.cols = _spans(self.data.chunks[0]), _spans(self.data.chunks[1])
        else:
            self.rows = [(r, min(r + NUMPY_BLOCK_PX, self.ny)) for r in range(0, self.ny, NUMPY_BLOCK_PX)]
            self.cols = [(c, min(c + NUMPY_BLOCK_PX, self.nx)) for c in range(0, self.nx, NUMPY_BLOCK_PX)]
        self._edges: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def _get(self, rs: slice, cs: slice) -> np.ndarray:
        if self.source is not None:
            return np.asarray(self.source[rs, cs])
        if self.is_dask:
            return np.asarray(self.data[rs, cs].compute())
        return np.asarray(self.data[rs, cs])

    def points(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Values at integer pixels (a few: the corners of the observers' cells)."""
        if self.is_dask and self.source is None:
            return np.asarray(self.data.vindex[rows, cols].compute(), dtype="float64")
        return np.array([self._get(slice(r, r + 1), slice(c, c + 1))[0, 0] for r, c in zip(rows, cols)], "float64")

    def block(self, bi: int, bj: int) -> np.ndarray:
        (r0, r1), (c0, c1) = self.rows[bi], self.cols[bj]
        r1h, c1h = min(r1 + 1, self.ny), min(c1 + 1, self.nx)
        if not self.is_dask or self.source is not None:
            out = self._get(slice(r0, r1h), slice(c0, c1h))
        else:
            core = np.asarray(self.data.blocks[bi, bj].compute())
            out = np.empty((r1h - r0, c1h - c0), dtype=np.result_type(core.dtype, np.float32))
            out[: r1 - r0, : c1 - c0] = core
            self._edges[(bi, bj)] = (core[0, :].copy(), core[:, 0].copy())
            if c1h > c1:  # right halo column: the first column of block (bi, bj + 1)
                e = self._edges.get((bi, bj + 1))
                out[: r1 - r0, -1] = e[1] if e is not None else self._get(slice(r0, r1), slice(c1, c1 + 1))[:, 0]
            if r1h > r1:  # bottom halo row: the first rows of blocks (bi + 1, bj) and (bi + 1, bj + 1)
                e = self._edges.get((bi + 1, bj))
                out[-1, : c1 - c0] = e[0] if e is not None else self._get(slice(r1, r1 + 1), slice(c0, c1))[0]
                if c1h > c1:
                    e = self._edges.get((bi + 1, bj + 1))
                    out[-1, -1] = e[0][0] if e is not None else self._get(slice(r1, r1 + 1), slice(c1, c1 + 1))[0, 0]
            for key in [k for k in self._edges if k[0] > bi + 1]:
                del self._edges[key]
        if not np.issubdtype(out.dtype, np.floating):
            out = out.astype(np.float64)
        return out


def _bilinear_at(reader: _BlockReader, rr: np.ndarray, cc: np.ndarray) -> np.ndarray:
    """Bilinear heights at fractional (row, col) (the rule of ``_horizon_kernels._bilinear``)."""
    ny, nx = reader.ny, reader.nx
    rc = np.clip(rr, 0.0, ny - 1.0)
    ccl = np.clip(cc, 0.0, nx - 1.0)
    r0 = np.minimum(np.floor(rc).astype(np.int64), ny - 1)
    c0 = np.minimum(np.floor(ccl).astype(np.int64), nx - 1)
    wr = np.where(r0 >= ny - 1, 0.0, rc - r0)
    wc = np.where(c0 >= nx - 1, 0.0, ccl - c0)
    r1 = np.minimum(r0 + 1, ny - 1)
    c1 = np.minimum(c0 + 1, nx - 1)
    n = rr.size
    vals = reader.points(np.concatenate([r0, r0, r1, r1]), np.concatenate([c0, c1, c0, c1]))
    z00, z01, z10, z11 = vals[:n], vals[n : 2 * n], vals[2 * n : 3 * n], vals[3 * n :]
    out = z00 * (1.0 - wr) * (1.0 - wc)
    out = out + np.where(wc > 0.0, z01 * (1.0 - wr) * wc, 0.0)
    out = out + np.where(wr > 0.0, z10 * wr * (1.0 - wc), 0.0)
    out = out + np.where((wr > 0.0) & (wc > 0.0), z11 * wr * wc, 0.0)
    return out


def _units_scale(dem: xr.DataArray) -> float:
    """Metres per DEM unit (1 or 1000), from :func:`heights_in_metres` on a one-pixel probe."""
    probe = dem.isel({dem.dims[0]: slice(0, 1), dem.dims[1]: slice(0, 1)})
    return 1.0 if heights_in_metres(probe) is probe else 1000.0


def _azimuth_count(n_azimuths: Any) -> int:
    if isinstance(n_azimuths, bool) or not isinstance(n_azimuths, (int, np.integer)) or n_azimuths < 1:
        raise ConfigError(f"n_azimuths must be a positive whole number, not {n_azimuths!r}")
    return int(n_azimuths)


def points_horizon(
    dem: xr.DataArray,
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    heights_m: Sequence[float] | float = (0.0,),
    n_azimuths: int = 720,
    max_distance_m: float = 150_000.0,
    *,
    step_px: float = DEFAULT_STEP_PX,
) -> np.ndarray:
    """Horizons [deg] of several points at full DEM resolution, each seen from several heights.

    ``dem``: a 2-D (y, x) DataArray of heights (m or km) on a polar stereographic lunar grid,
    numpy- or dask-backed (never loaded whole: see the module docstring). ``x, y``: map
    coordinates of the points (any position, not only pixel centres; inside the raster).
    ``heights_m``: eye heights above the ground (masts). Returns float64
    ``(n_points, n_heights, n_azimuths)`` at **true-north** azimuths ``j * 360 / n_azimuths``
    (see the module docstring); NaN where the ground under a point is NaN or a ray has no
    valid sample (looking off the raster edge at once). Near the raster edge the values are
    lower bounds (the terrain beyond is unknown).
    """
    n_az = _azimuth_count(n_azimuths)
    dmax = check_max_distance(max_distance_m)
    hts = np.array([check_observer_height(float(h)) for h in np.atleast_1d(np.asarray(heights_m, dtype="float64"))])
    if hts.size == 0:
        raise ConfigError("heights_m must hold at least one height in m")
    step_f = float(step_px)
    if not (math.isfinite(step_f) and step_f > 0.0):
        raise ConfigError(f"step_px must be a positive number of pixels, not {step_px!r}")
    if dem.ndim != 2:
        raise GridError(f"point horizons take a 2-D (y, x) DEM, got dims {dem.dims}")
    scale = _units_scale(dem)
    (mode, x0, y0, a, e, radius), grid, _desc = kernel_geometry(dem, planar=False)
    xs = np.atleast_1d(np.asarray(x, dtype="float64"))
    ys = np.atleast_1d(np.asarray(y, dtype="float64"))
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ConfigError("x and y must be 1-D sequences of the same length")
    ny, nx = grid.shape
    prow = (ys - y0) / e - 0.5
    pcol = (xs - x0) / a - 0.5
    outside = ~((prow > -0.5) & (prow <= ny - 0.5) & (pcol > -0.5) & (pcol <= nx - 0.5))
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise GridError(f"point {i} (x={xs[i]:.1f}, y={ys[i]:.1f} m) lies outside the DEM; give points inside it")
    gamma = grid_north_azimuth_at(grid.crs.kind, xs, ys)
    reader = _BlockReader(dem)
    z0 = _bilinear_at(reader, prow, pcol) * scale

    # one ray per (point, azimuth): grid azimuth = true azimuth + gamma
    true_az = np.arange(n_az, dtype="float64") * (360.0 / n_az)
    u = np.radians(np.mod(true_az[None, :] + gamma[:, None], 360.0)).ravel()
    pid = np.repeat(np.arange(xs.size), n_az)
    ux, uy = np.sin(u), np.cos(u)
    step = step_f * min(abs(a), abs(e))  # map metres per sample, as horizon_brute_ray
    pr, pc = prow[pid], pcol[pid]
    drs, dcs = step * uy / e, step * ux / a
    px, py = xs[pid], ys[pid]
    if mode == POLAR_KERNEL:
        pu = px * ux + py * uy
        d2 = np.maximum(px * px + py * py - pu * pu, 0.0)
        A = np.sqrt(4.0 * radius * radius + d2)
        C = 4.0 * radius * radius / A
        sig0 = C * np.arctan(pu / A)
        arg = (dmax + sig0) / C
        with np.errstate(invalid="ignore", over="ignore"):
            s_max = np.where(arg < 0.5 * math.pi - 1e-9, A * np.tan(np.minimum(arg, 0.5 * math.pi - 1e-9)) - pu, np.inf)
    else:
        pu = A = C = sig0 = np.zeros_like(u)
        s_max = np.full(u.shape, dmax)
    n_edge = math.ceil(math.hypot(nx * a, ny * e) / step) + 2
    nmax = np.minimum(np.floor(np.minimum(s_max / step, n_edge)) + 1, n_edge).astype(np.int64)
    best = np.full((u.size, hts.size), -np.inf)
    i_lo = np.empty(u.size, np.int64)
    i_hi = np.empty(u.size, np.int64)
    zp = z0[pid]
    for bi in range(len(reader.rows) - 1, -1, -1):  # bottom-right first: see _BlockReader
        R0, R1 = reader.rows[bi]
        for bj in range(len(reader.cols) - 1, -1, -1):
            C0, C1 = reader.cols[bj]
            if _block_ranges(float(R0), float(R1), float(C0), float(C1), pr, pc, drs, dcs, nmax, i_lo, i_hi) == 0:
                continue
            zb = reader.block(bi, bj)
            _rays_block(
                zb, R0, R1, C0, C1, ny, nx, scale, pr, pc, drs, dcs, zp, i_lo, i_hi,
                mode, pu, A, C, sig0, step, float(radius), dmax, hts, best,
            )  # fmt: skip
    with np.errstate(invalid="ignore"):
        out = np.where(np.isfinite(best), np.degrees(np.arctan(best)), np.nan)
    out[np.isnan(zp)] = np.nan
    return out.reshape(xs.size, n_az, hts.size).transpose(0, 2, 1).copy()


def point_horizon(
    dem: xr.DataArray,
    x: float,
    y: float,
    heights_m: Sequence[float] | float = (2.0, 10.0),
    n_azimuths: int = 720,
    max_distance_m: float = 150_000.0,
    *,
    step_px: float = DEFAULT_STEP_PX,
) -> np.ndarray:
    """The horizon [deg] of one point, ``(n_heights, n_azimuths)`` at true-north azimuths
    ``j * 360 / n_azimuths`` (:func:`points_horizon` for one point)."""
    return points_horizon(dem, [x], [y], heights_m, n_azimuths, max_distance_m, step_px=step_px)[0]


# --- time series ------------------------------------------------------------------------------


def _step_hours(se: SunEarth) -> float:
    jd = np.asarray(se.jd_tt, dtype="float64")
    steps = np.diff(jd) * 24.0
    if len(jd) < 2 or np.ptp(steps) > 1e-6 * max(1.0, float(steps.mean())):
        raise ConfigError("power time series need uniformly spaced time samples (default_times)")
    return float(steps.mean())


def _interp_periodic(az: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``values`` (at azimuths ``az`` [deg]) linearly interpolated at ``at``, periodic in 360 deg."""
    return np.interp(np.mod(at, 360.0), az, values, period=360.0)


def _longest_false_run(lit: np.ndarray) -> int:
    """Length of the longest run of consecutive False (not wrapped round the end)."""
    idx = np.flatnonzero(lit)
    if idx.size == 0:
        return int(lit.size)
    return int((np.diff(np.concatenate(([-1], idx, [lit.size]))) - 1).max())


def _check_min_disk_fraction(value: Any) -> float:
    return check_disk_fraction(value, "min_disk_fraction")


def usable_sun(disk_fraction: np.ndarray, min_disk_fraction: float = DEFAULT_MIN_DISK_FRACTION) -> np.ndarray:
    """Steps of usable sunlight: some of the solar disk up (``disk_fraction > 0``) and at least
    ``min_disk_fraction`` of it (``disk_fraction >= min_disk_fraction``). Boolean, the shape of
    ``disk_fraction`` (compared in float64). At ``min_disk_fraction = 0`` it is "any limb up",
    the complement of the no-limb night; at 1 only the whole disk counts.
    """
    t = _check_min_disk_fraction(min_disk_fraction)
    f = np.asarray(disk_fraction, dtype="float64")
    return (f > 0.0) & (f >= t)


def night_steps(disk_fraction: np.ndarray, min_disk_fraction: float = 0.0) -> int:
    """The longest run of consecutive steps of a 1-d ``disk_fraction`` series without usable
    sunlight (:func:`usable_sun`), not wrapped round the end: the steps of
    ``longest_night_h`` at ``min_disk_fraction = 0`` (no limb up), of
    ``longest_usable_night_h`` at the threshold."""
    return _longest_false_run(usable_sun(np.ravel(disk_fraction), min_disk_fraction))


def point_power(
    horizon: np.ndarray,
    azimuths: np.ndarray,
    lon: float,
    lat: float,
    se: SunEarth,
    load_w: float,
    *,
    min_disk_fraction: float = DEFAULT_MIN_DISK_FRACTION,
    radius_m: float = lunar.MOON_RADIUS_M,
) -> dict[str, Any]:
    """Sun and Earth visibility at every time step of ``se`` behind ``horizon`` at one point.

    ``horizon``: ``(n_azimuths,)`` or ``(n_heights, n_azimuths)`` degrees at **true-north**
    ``azimuths`` (sorted, in [0, 360)); ``lon``/``lat``: the point's planetocentric degrees;
    ``load_w``: the night load [W]; ``min_disk_fraction``: the share of the solar disk a step
    needs up for usable sunlight (0 to 1, :func:`usable_sun`). Returns a dict of numpy arrays,
    one value per height: ``illumination_fraction``, ``longest_night_h`` (no limb up),
    ``longest_usable_night_h`` (less than ``min_disk_fraction`` of the disk up; equal to
    ``longest_night_h`` at 0, never shorter), ``usable_sun_fraction``,
    ``earth_visibility_fraction``, ``battery_wh`` (``load_w x longest_usable_night_h``),
    ``longest_night_steps``, ``longest_usable_night_steps``; the per-step ``disk_fraction``
    ``(n_heights, n_steps)`` float32 (exactly 0 on the steps without a limb up, > 0 on the
    others); and ``step_h``, ``n_steps``, ``span_years``, ``load_w``, ``min_disk_fraction``.
    A height whose horizon holds NaN gives NaN values (steps -1).
    """
    hz = np.atleast_2d(np.asarray(horizon, dtype="float64"))
    az = np.asarray(azimuths, dtype="float64")
    if hz.ndim != 2 or hz.shape[1] != az.size or az.size < 2:
        raise ConfigError(f"horizon {hz.shape} and azimuths {az.shape} disagree (one value per azimuth)")
    load = float(load_w)
    if not (math.isfinite(load) and load >= 0.0):
        raise ConfigError(f"load_w must be a non-negative number of watts, not {load_w!r}")
    min_disk = _check_min_disk_fraction(min_disk_fraction)
    step_h = _step_hours(se)
    n = len(se)
    saz, sel = sun_azimuth_elevation(lon, lat, se.sun, radius_m=radius_m)
    eaz, eel = earth_azimuth_elevation(lon, lat, se.earth, se.earth_distance_km, radius_m=radius_m)
    rho = np.asarray(se.sun_angular_radius_deg, dtype="float64")
    nh = hz.shape[0]
    frac = np.full(nh, np.nan)
    night = np.full(nh, np.nan)
    dark_steps = np.full(nh, -1, dtype=np.int64)
    usable_night = np.full(nh, np.nan)
    usable_steps = np.full(nh, -1, dtype=np.int64)
    usable_frac = np.full(nh, np.nan)
    earth = np.full(nh, np.nan)
    disk = np.full((nh, n), np.nan, dtype=np.float32)
    for k in range(nh):
        if not np.isfinite(hz[k]).all():
            continue
        h_sun = _interp_periodic(az, hz[k], saz)
        limb = sel + rho > h_sun  # some of the disk up: the illumination products' test
        # the fraction agrees with the limb test to the bit: 0 without a limb, > 0 (at least a
        # normal float32) with one, where the formula alone may round a sliver to 0 or -2e-16
        f = np.where(limb, np.clip(disk_fraction((sel - h_sun) / rho), _TINY_FRACTION, 1.0), 0.0)
        disk[k] = f
        frac[k] = float(f.mean())
        dark_steps[k] = _longest_false_run(limb)  # == night_steps(f, 0.0)
        night[k] = dark_steps[k] * step_h
        usable = usable_sun(f, min_disk)
        usable_steps[k] = _longest_false_run(usable)
        usable_night[k] = usable_steps[k] * step_h
        usable_frac[k] = float(usable.mean())
        earth[k] = float((eel > _interp_periodic(az, hz[k], eaz)).mean())
    return {
        "illumination_fraction": frac,
        "longest_night_h": night,
        "longest_night_steps": dark_steps,
        "longest_usable_night_h": usable_night,
        "longest_usable_night_steps": usable_steps,
        "usable_sun_fraction": usable_frac,
        "earth_visibility_fraction": earth,
        "battery_wh": load * usable_night,
        "disk_fraction": disk,
        "step_h": step_h,
        "n_steps": n,
        "span_years": n * step_h / (24.0 * 365.25),
        "load_w": load,
        "min_disk_fraction": min_disk,
    }


class PowerSeries(NamedTuple):
    """The time series of one site for a plot: ``times`` (``datetime64[s]`` UTC, or Julian
    dates TT when the ephemeris was given without times), ``disk_fraction``
    ``(n_heights, n_steps)`` float32 and the mast ``heights_m``."""

    times: np.ndarray
    disk_fraction: np.ndarray
    heights_m: tuple[float, ...]


_COLUMNS = (
    "site_id",
    "height_m",
    "illumination_fraction",
    "longest_night_h",
    "longest_usable_night_h",
    "usable_sun_fraction",
    "earth_visibility_fraction",
    "battery_wh",
    "load_w",
    "min_disk_fraction",
    "x",
    "y",
    "lon",
    "lat",
    "start",
    "span_years",
    "step_h",
    "n_steps",
    "n_azimuths",
    "max_distance_m",
)


def sites_power(
    dem: xr.DataArray,
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    lon: Sequence[float] | np.ndarray,
    lat: Sequence[float] | np.ndarray,
    site_ids: Sequence[Any] | np.ndarray,
    se: SunEarth,
    *,
    heights_m: Sequence[float] = (2.0, 10.0),
    n_azimuths: int = 720,
    max_distance_m: float = 150_000.0,
    load_w: float = 0.0,
    min_disk_fraction: float = DEFAULT_MIN_DISK_FRACTION,
    times: np.ndarray | None = None,
    step_px: float = DEFAULT_STEP_PX,
) -> tuple[pd.DataFrame, dict[Any, PowerSeries]]:
    """Point horizons (:func:`points_horizon`, all sites in one pass over the DEM) and power
    (:func:`point_power`) of several sites.

    Returns ``(table, series)``: ``table`` one row per site and mast height (columns
    ``site_id, height_m, illumination_fraction, longest_night_h, longest_usable_night_h,
    usable_sun_fraction, earth_visibility_fraction, battery_wh, load_w, min_disk_fraction, x,
    y, lon, lat, start, span_years, step_h, n_steps, n_azimuths, max_distance_m``;
    ``battery_wh = load_w x longest_usable_night_h``), in the order of the sites then the
    heights; ``series`` maps each site_id to its :class:`PowerSeries`.
    """
    xs = np.atleast_1d(np.asarray(x, dtype="float64"))
    ids = list(np.atleast_1d(np.asarray(site_ids)))
    lons = np.atleast_1d(np.asarray(lon, dtype="float64"))
    lats = np.atleast_1d(np.asarray(lat, dtype="float64"))
    if not (len(ids) == xs.size == lons.size == lats.size):
        raise ConfigError("x, y, lon, lat and site_ids must have one value per site")
    hts = tuple(float(h) for h in np.atleast_1d(np.asarray(heights_m, dtype="float64")))
    min_disk = _check_min_disk_fraction(min_disk_fraction)  # before the horizons' work
    radius = float(AnalysisGrid.from_dataarray(dem).crs.radius_m)  # the Earth's parallax on the DEM's sphere
    hz = points_horizon(dem, xs, y, hts, n_azimuths, max_distance_m, step_px=step_px)
    az = np.arange(hz.shape[2], dtype="float64") * (360.0 / hz.shape[2])
    t = np.asarray(times) if times is not None else np.asarray(se.jd_tt)
    start = str(t[0]) if t.size else ""
    rows, series = [], {}
    ys = np.atleast_1d(np.asarray(y, dtype="float64"))
    for i, sid in enumerate(ids):
        res = point_power(
            hz[i], az, float(lons[i]), float(lats[i]), se, load_w, min_disk_fraction=min_disk, radius_m=radius
        )
        series[sid] = PowerSeries(t, res["disk_fraction"], hts)
        for k, h in enumerate(hts):
            rows.append(
                {
                    "site_id": sid,
                    "height_m": h,
                    "illumination_fraction": res["illumination_fraction"][k],
                    "longest_night_h": res["longest_night_h"][k],
                    "longest_usable_night_h": res["longest_usable_night_h"][k],
                    "usable_sun_fraction": res["usable_sun_fraction"][k],
                    "earth_visibility_fraction": res["earth_visibility_fraction"][k],
                    "battery_wh": res["battery_wh"][k],
                    "load_w": res["load_w"],
                    "min_disk_fraction": res["min_disk_fraction"],
                    "x": xs[i],
                    "y": ys[i],
                    "lon": lons[i],
                    "lat": lats[i],
                    "start": start,
                    "span_years": res["span_years"],
                    "step_h": res["step_h"],
                    "n_steps": res["n_steps"],
                    "n_azimuths": int(hz.shape[2]),
                    "max_distance_m": float(max_distance_m),
                }
            )
    table = pd.DataFrame(rows, columns=list(_COLUMNS))
    table.attrs.update(
        azimuth_convention="true-north azimuths, clockwise from local north",
        method="point horizons at full DEM resolution (bilinear rays); exact Sun/Earth per time step",
        battery=(
            "battery_wh = load_w x longest_usable_night_h (the longest run of steps without usable"
            f" sunlight: less than min_disk_fraction = {min_disk:g} of the solar disk up, or none of it;"
            " no margins); longest_night_h: the longest run with no part of the disk up"
        ),
    )
    return table, series


def select_power_sites(sites: pd.DataFrame, top_n: int) -> pd.DataFrame:
    """The sites to analyse: the ``top_n`` best distinct sites (``rank_distinct`` 1, 2, ...) when
    the table has that column, else the ``top_n`` best by ``rank``, else the first ``top_n`` rows."""
    if "rank_distinct" in sites:
        kept = sites[sites["rank_distinct"].to_numpy() > 0]
        return kept.sort_values("rank_distinct", kind="stable").head(top_n)
    if "rank" in sites:
        return sites.sort_values("rank", kind="stable").head(top_n)
    return sites.head(top_n)


def site_power(
    dem: xr.DataArray,
    sites_df: pd.DataFrame,
    params: ParameterSet | Mapping[str, Any] | None = None,
    *,
    se: SunEarth | None = None,
    start: str = DEFAULT_START,
    select: bool = True,
    step_px: float = DEFAULT_STEP_PX,
) -> tuple[pd.DataFrame, dict[Any, PowerSeries]]:
    """Power at the best distinct sites of ``sites_df`` (columns ``site_id, x, y, lon, lat``).

    ``params``: the ``sites`` parameters (see :func:`power_params`). ``select``: keep only the
    ``power_sites_top_n`` best distinct sites (:func:`select_power_sites`); False analyses every
    row. ``se``: the ephemeris (default: ``power_span_years`` from ``start`` at
    ``power_step_hours`` steps, computed here, ~2 s for 18.6 yr hourly). Returns
    :func:`sites_power`'s ``(table, series)``.
    """
    p = power_params(params)
    missing = [c for c in ("site_id", "x", "y", "lon", "lat") if c not in sites_df]
    if missing:
        raise ConfigError(f"the site table lacks column(s) {missing}; it needs site_id, x, y, lon, lat")
    sites = select_power_sites(sites_df, p.top_n) if select else sites_df
    times = None
    if se is None:
        times = default_times(start, p.span_years, p.step_hours)
        se = sun_earth_directions(times)
    return sites_power(
        dem,
        sites["x"].to_numpy(),
        sites["y"].to_numpy(),
        sites["lon"].to_numpy(),
        sites["lat"].to_numpy(),
        sites["site_id"].to_numpy(),
        se,
        heights_m=p.heights_m,
        n_azimuths=p.n_azimuths,
        max_distance_m=p.max_distance_m,
        load_w=p.load_w,
        min_disk_fraction=p.min_disk_fraction,
        times=times,
        step_px=step_px,
    )
