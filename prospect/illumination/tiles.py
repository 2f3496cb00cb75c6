"""Out-of-core horizon maps: tiles with a halo, and a multi-resolution far field.

A ``(azimuth, y, x)`` horizon cube of a large DEM does not fit in memory (7584^2 pixels x
360 azimuths x 4 bytes = 83 GB), and the illumination products need, at each pixel, the
horizon in every direction. So the raster is cut into square output tiles; each tile's
cube (``360 x tile^2`` floats, 3.4 GB at 1536^2) is computed, reduced to the products,
written and dropped. Peak memory is set by the tile and the halo, not by the raster.

Near field (full resolution)
    The tile plus a halo of ``near_px`` pixels is read from the DEM and swept
    (:func:`prospect.illumination._horizon_kernels.horizon_sweep_window`: only the lines
    through the tile, each from the tile's near edge to the window's far edge; opposite
    azimuths share their lines, so each pair is sampled once and swept both ways by
    :func:`~prospect.illumination._horizon_kernels.horizon_sweep_window_pair`). Every
    target within ground distance ``D0 = near_px * pixel / k_max`` of a tile pixel lies
    in the window (``k_max`` the largest polar scale factor of the raster: a ground
    distance ``r`` is at most ``r k_max`` on the map).

Far field (coarse)
    Beyond ``D0`` the DEM is averaged over ``far_factor^2`` blocks (held in memory:
    ``1 / far_factor^2`` of the raster) and swept again from a coarse observer grid
    around the tile, counting only targets in the annulus ``D0 - 0.75 far_factor pixel <
    r <= max_distance`` (the overlap closes the gap between coarse and fine observer
    positions; counting a target twice cannot change a maximum). Each coarse observer
    keeps ``A = tan(angle) + z/r*`` and ``B = 1/r*`` (``r*`` the distance of its tangent
    target); a fine pixel at height ``z`` gets the bilinear ``A``, ``B`` and
    ``tan(angle) = A - z B``: first order in the height difference between the coarse
    and the fine observer, which is what matters at ``r* >= D0``, where the observer's
    position within one coarse cell changes the view of a target by at most about
    ``far_factor * pixel / D0`` radians. This is the multi-resolution far field of
    horizon codes for the lunar poles (full-resolution near field, degraded DEMs far
    away: Mazarico et al. 2011, Icarus 211, 1066-1081, section 2.2).

    The horizon is the larger of the two fields. With ``far_factor = 1``, or when the
    halo covers ``max_distance`` anyway, there is no far field and the tile's horizon is
    :func:`prospect.illumination.horizon.horizon_angles` of the whole DEM to rounding (the
    same lines and samples; a pair's reversed view measures distance from the other end of
    each line, ~1e-6 deg; tested).

Accuracy of the far field against the exact sweep is measured by ``make
bench-illumination`` on the benchmark DEM and tested in ``tests/test_tiles.py``.

Away from the raster (a task on a Dask cluster)
    :func:`tile_job` reads one tile's near-field window into a picklable :class:`TileJob`;
    :func:`shared_state` and :meth:`TiledHorizon.coarse_heights` are what all tiles share
    (sent once); :func:`worker_horizon` rebuilds from them a :class:`TiledHorizon` that
    computes that tile with :meth:`TiledHorizon.compute` itself, so the cube is the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from prospect.errors import ConfigError
from prospect.illumination import _horizon_kernels as K
from prospect.illumination.horizon import (
    check_max_distance,
    check_observer_height,
    horizon_attrs,
    horizon_dataarray,
    kernel_geometry,
    resolve_azimuths,
)
from prospect.lunar import polar_scale_factor_xy
from prospect.terrain.metric import heights_in_metres

#: default peak resident memory of one process computing illumination tiles [MB = 10^6 bytes];
#: the output tile side follows from it (:func:`tile_for_memory`); the fewest and most accepted
MEMORY_MB = 3000
MIN_MEMORY_MB = 1000
MAX_MEMORY_MB = 1_000_000
#: resident memory of a process that has loaded the illumination stage (Python, numpy, numba,
#: rasterio, dask, the compiled kernels), before its first tile [MB]: a margin over the 374 MB
#: measured by ``python -m benchmarks.profile_illumination --size 7584`` (``rss_before_tile_mb``)
BASE_MB = 640
#: bytes per output-tile pixel besides the horizon cube and the near-field window: the products
#: and their float copies, latitude / longitude / grid-north maps, the checkpoint and write buffers
EXTRA_BYTES_PER_PX = 160
#: tile sides are multiples of this [px]
TILE_QUANTUM_PX = 64
#: default full-resolution halo [px] around a tile (3.8 km at 20 m)
NEAR_PX = 192
#: default far-field coarsening (20 m -> 160 m beyond the near field)
FAR_FACTOR = 8
#: the accepted ranges of the three (the largest tile's cube at 360 azimuths is 24 GB)
MIN_TILE_PX = 16
MAX_TILE_PX = 4096
MIN_NEAR_PX = 8
MAX_NEAR_PX = 8192
MIN_FAR_FACTOR = 1
MAX_FAR_FACTOR = 64


@dataclass(frozen=True)
class TilePlan:
    """How a DEM is cut and how far each field reaches."""

    shape: tuple[int, int]
    tile_px: int
    halo_px: int  # full-resolution halo around a tile [px]
    far_factor: int  # 1: no far field
    near_distance_m: float  # ground distance the near field is complete to (D0)
    far_inner_m: float  # the far field counts targets beyond this ground distance
    far_halo_px: int  # coarse halo [coarse px]
    max_distance_m: float
    k_max: float

    @property
    def multiresolution(self) -> bool:
        return self.far_factor > 1

    def windows(self) -> list[tuple[int, int, int, int]]:
        """Output tiles ``(row0, row1, col0, col1)`` in row-major order."""
        ny, nx = self.shape
        t = self.tile_px
        return [(r, min(r + t, ny), c, min(c + t, nx)) for r in range(0, ny, t) for c in range(0, nx, t)]

    def describe(self) -> str:
        if not self.multiresolution:
            return f"tiles of {self.tile_px} px with a {self.halo_px} px halo covering max_distance (exact)"
        return (
            f"tiles of {self.tile_px} px; full resolution within {self.near_distance_m:.0f} m "
            f"({self.halo_px} px halo), DEM averaged {self.far_factor}x{self.far_factor} for "
            f"{self.far_inner_m:.0f} m < r <= {self.max_distance_m:.0f} m"
        )


def _int_param(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return int(value)


def tile_memory_bytes(tile_px: int, n_azimuths: int, near_px: int, workers: int = 1) -> int:
    """Bytes one output tile of ``tile_px`` holds at its peak, besides :data:`BASE_MB`: the horizon
    cube (float32), the near-field window read and held as float64 with its float32 source, two
    float32 planes per azimuth thread (an opposite pair's near fields), and
    :data:`EXTRA_BYTES_PER_PX` per pixel."""
    t2 = tile_px * tile_px
    window = (tile_px + 2 * near_px) ** 2
    return 4 * n_azimuths * t2 + 12 * window + 8 * max(1, workers) * t2 + EXTRA_BYTES_PER_PX * t2


def tile_for_memory(memory_mb: float, n_azimuths: int, near_px: int = 0, workers: int = 1) -> int:
    """The largest tile side (a multiple of :data:`TILE_QUANTUM_PX`, at most :data:`MAX_TILE_PX`)
    whose peak (:func:`tile_memory_bytes` plus :data:`BASE_MB`) fits in ``memory_mb``; a
    :class:`~prospect.errors.ConfigError` when not even :data:`MIN_TILE_PX` fits."""
    budget = (float(memory_mb) - BASE_MB) * 1e6
    best = 0
    t = TILE_QUANTUM_PX
    while t <= MAX_TILE_PX and tile_memory_bytes(t, n_azimuths, near_px, workers) <= budget:
        best = t
        t += TILE_QUANTUM_PX
    if best == 0:
        if budget > 0 and tile_memory_bytes(MIN_TILE_PX, n_azimuths, near_px, workers) <= budget:
            return MIN_TILE_PX
        raise ConfigError(
            f"memory {memory_mb:g} MB cannot hold one tile of {MIN_TILE_PX} px at {n_azimuths} azimuths "
            f"(the process alone takes about {BASE_MB} MB)"
        )
    return best


def balanced_tile(side: int, largest: int) -> int:
    """The tile side that cuts ``side`` pixels into as few tiles as ``largest`` allows, of nearly
    equal size (a ragged last tile would pay a whole halo for a sliver): a multiple of
    :data:`TILE_QUANTUM_PX` when that still fits, never above ``largest``."""
    n = max(1, -(-side // largest))
    even = -(-side // n)
    quantised = -(-even // TILE_QUANTUM_PX) * TILE_QUANTUM_PX
    return max(MIN_TILE_PX, min(largest, quantised if quantised <= largest else even))


class TiledHorizon:
    """Horizon cubes of a DEM, one output tile at a time (see the module docstring).

    ``dem`` may be dask-backed (from :func:`prospect.io.readers.open_product`): each tile
    reads only its window; the coarse far-field DEM is computed once, chunk by chunk.
    """

    def __init__(
        self,
        dem: xr.DataArray,
        n_azimuths: int = 360,
        max_distance_m: float = 150_000.0,
        *,
        tile_px: int | None = None,
        near_px: int = NEAR_PX,
        far_factor: int = FAR_FACTOR,
        planar: bool = False,
        workers: int = 1,
        observer_height_m: float = 0.0,
        memory_mb: float = MEMORY_MB,
    ) -> None:
        self.az = resolve_azimuths(None, n_azimuths)
        dmax = check_max_distance(max_distance_m)
        near_px = _int_param(near_px, "near_px", MIN_NEAR_PX)
        if tile_px is not None:
            tile_px = _int_param(tile_px, "tile_px", MIN_TILE_PX)
        far_factor = _int_param(far_factor, "far_factor", MIN_FAR_FACTOR)
        check_observer_height(observer_height_m)
        self.dem = dem
        self.args, self.grid, self.desc = kernel_geometry(dem, planar)
        self.heights = heights_in_metres(dem)
        self.workers = max(1, int(workers))
        self.observer_height_m = float(observer_height_m)
        mode, x0, y0, a, e, radius = self.args
        ny, nx = dem.shape
        if mode == K.POLAR:
            xs = np.array([x0, x0 + nx * a])
            ys = np.array([y0, y0 + ny * e])
            k_max = float(polar_scale_factor_xy(np.abs(xs).max(), np.abs(ys).max(), radius))
        else:
            k_max = 1.0
        pixel = min(abs(a), abs(e))
        full_halo = int(math.ceil(dmax * k_max / pixel)) + 1
        exact = far_factor == 1 or full_halo <= near_px
        if tile_px is None:  # the largest tile whose window fits the memory budget
            halo = min(full_halo, max(ny, nx)) if exact else near_px
            tile_px = balanced_tile(max(ny, nx), tile_for_memory(memory_mb, self.az.size, halo, self.workers))
        if exact:
            self.plan = TilePlan((ny, nx), tile_px, min(full_halo, max(ny, nx)), 1, dmax, dmax, 0, dmax, k_max)
        else:
            d0 = near_px * pixel / k_max
            inner = max(0.0, d0 - 0.75 * far_factor * pixel)
            far_halo = int(math.ceil(dmax * k_max / (pixel * far_factor))) + 2
            self.plan = TilePlan((ny, nx), tile_px, near_px, far_factor, d0, inner, far_halo, dmax, k_max)
        self._coarse: np.ndarray | None = None
        self._cube_buffer: np.ndarray | None = None

    # --- the coarse DEM ------------------------------------------------------------

    def coarse_heights(self) -> np.ndarray:
        """The DEM averaged over ``far_factor^2`` blocks (NaN-ignoring; the last block may be partial)."""
        if self._coarse is None:
            f = self.plan.far_factor
            ydim, xdim = self.heights.dims
            coarse = self.heights.coarsen({ydim: f, xdim: f}, boundary="pad").mean()
            self._coarse = np.ascontiguousarray(np.asarray(coarse.values, dtype=np.float64))
        return self._coarse

    # --- one tile --------------------------------------------------------------------

    def compute(self, window: tuple[int, int, int, int], *, reuse: bool = False) -> xr.DataArray:
        """The horizon cube ``(azimuth, y, x)`` [deg] of one output tile ``(row0, row1, col0, col1)``.

        ``reuse``: write it into this object's cube buffer, kept from the previous call with
        ``reuse`` (the previous cube's values are overwritten: for callers that are done with
        it, like the stage's tile loop). A fresh 1.7 GB cube costs a page fault and the
        zeroing of every page on first write: 9 ms of every azimuth's 16 ms combination step
        on a 1088 px tile, 3.3 CPU-s a tile."""
        r0, r1, c0, c1 = window
        plan = self.plan
        ny, nx = plan.shape
        mode, x0, y0, a, e, radius = self.args
        h = plan.halo_px
        rr0, rr1, cc0, cc1 = max(0, r0 - h), min(ny, r1 + h), max(0, c0 - h), min(nx, c1 + h)
        zwin = np.ascontiguousarray(np.asarray(self.heights[rr0:rr1, cc0:cc1].values, dtype=np.float64))
        gx0, gy0 = x0 + cc0 * a, y0 + rr0 * e
        th, tw = r1 - r0, c1 - c0
        n = self.az.size * th * tw
        if not reuse:
            cube = np.empty((self.az.size, th, tw), dtype=np.float32)
        else:
            if self._cube_buffer is None or self._cube_buffer.size < n:
                self._cube_buffer = np.empty(self.az.size * plan.tile_px * plan.tile_px, dtype=np.float32)
            cube = self._cube_buffer[:n].reshape(self.az.size, th, tw)
        hobs = self.observer_height_m
        dmax = plan.max_distance_m

        # azimuths i and i + n/2 are opposite (n even, evenly spaced from 0): their lines are the
        # same, sampled once and swept both ways (horizon_sweep_window_pair)
        n_az = self.az.size
        paired = n_az % 2 == 0
        firsts = range(n_az // 2) if paired else range(n_az)

        def sweep(zz, azr, x0_, y0_, a_, e_, dmin, obs, row0, col0, outs, form, g0):
            """One azimuth (``outs`` = (out, out_b)) or an opposite pair (+ (rout, rout_b))."""
            # numba dispatchers: their signatures are the kernels'
            kernel: Any = K.horizon_sweep_window_pair if len(outs) == 4 else K.horizon_sweep_window
            kernel(zz, azr, mode, x0_, y0_, a_, e_, radius, dmin, dmax, obs, row0, col0, *outs, form, *g0)

        def members(i: int) -> list[int]:
            return [i, i + n_az // 2] if paired else [i]

        if not plan.multiresolution:

            def one(i: int) -> None:
                azr = math.radians(float(self.az[i]) % 360.0)
                outs = tuple(x for m in members(i) for x in (cube[m], cube[m]))
                sweep(zwin, azr, gx0, gy0, a, e, 0.0, hobs, r0 - rr0, c0 - cc0, outs, K.DEGREES, (rr0, cc0))
        else:
            f = plan.far_factor
            zc = self.coarse_heights()
            cny, cnx = zc.shape
            # coarse observers whose bilinear stencil covers the tile's pixel centres
            fy = (np.arange(r0, r1) + 0.5) / f - 0.5
            fx = (np.arange(c0, c1) + 0.5) / f - 0.5
            or0 = max(0, int(math.floor(fy[0])))
            or1 = min(cny, int(math.floor(fy[-1])) + 2)
            oc0 = max(0, int(math.floor(fx[0])))
            oc1 = min(cnx, int(math.floor(fx[-1])) + 2)
            ri, rw = _bilinear_index(fy - or0, or1 - or0)
            ci, cw = _bilinear_index(fx - oc0, oc1 - oc0)
            H = plan.far_halo_px
            wr0, wr1, wc0, wc1 = max(0, or0 - H), min(cny, or1 + H), max(0, oc0 - H), min(cnx, oc1 + H)
            zcw = np.ascontiguousarray(zc[wr0:wr1, wc0:wc1])
            cx0, cy0 = x0 + wc0 * a * f, y0 + wr0 * e * f
            zf = np.ascontiguousarray(zwin[r0 - rr0 : r1 - rr0, c0 - cc0 : c1 - cc0])
            inner = plan.far_inner_m

            def one(i: int) -> None:
                azr = math.radians(float(self.az[i]) % 360.0)
                ms = members(i)
                near = [np.empty((th, tw), dtype=np.float32) for _ in ms]
                sweep(
                    zwin,
                    azr,
                    gx0,
                    gy0,
                    a,
                    e,
                    0.0,
                    hobs,
                    r0 - rr0,
                    c0 - cc0,
                    tuple(x for nr in near for x in (nr, nr)),
                    K.TANGENT,
                    (rr0, cc0),
                )
                far = [tuple(np.empty((or1 - or0, oc1 - oc0), dtype=np.float32) for _ in "AB") for _ in ms]
                sweep(
                    zcw,
                    azr,
                    cx0,
                    cy0,
                    a * f,
                    e * f,
                    inner,
                    0.0,
                    or0 - wr0,
                    oc0 - wc0,
                    tuple(x for ab in far for x in ab),
                    K.FAR,
                    (wr0, wc0),
                )
                for m, nr, (A, B) in zip(ms, near, far, strict=True):
                    K.combine_far(nr, A, B, ri, rw, ci, cw, zf, hobs, cube[m])

        if self.workers == 1:
            for i in firsts:
                one(i)
        else:
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                list(pool.map(one, firsts))
        attrs = horizon_attrs(self.args, self.desc, dmax, hobs)
        attrs["tiling"] = plan.describe()
        return horizon_dataarray(self.dem[r0:r1, c0:c1], cube, self.az, attrs)

    def __iter__(self) -> Iterator[tuple[tuple[int, int, int, int], xr.DataArray]]:
        for w in self.plan.windows():
            yield w, self.compute(w)


def _bilinear_index(pos: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower neighbour index and weight of fractional positions in ``[0, n - 1]`` (clamped)."""
    p = np.clip(pos, 0.0, n - 1.0)
    i0 = np.minimum(np.floor(p).astype(np.int64), max(n - 2, 0))
    w = p - i0
    if n == 1:
        w = np.zeros_like(p)
    return np.ascontiguousarray(i0), np.ascontiguousarray(w)


# --- one tile away from the raster (a task on a Dask cluster) ---------------------------------------

#: The attributes of a :class:`TiledHorizon` that hold the raster (sent per tile or once, not with the state).
_RASTER_ATTRS = frozenset({"dem", "heights", "_coarse", "_cube_buffer"})


@dataclass(frozen=True)
class TileJob:
    """One output tile's own inputs, picklable: what a task on a cluster worker receives.

    ``heights`` is the tile's near-field DEM window (the tile plus its halo, in metres, in
    memory) whose first pixel is raster pixel ``origin`` (row, col); ``template`` carries the
    tile's coordinates and CRS (its values are placeholders). Made on the driver by
    :func:`tile_job`, turned back into a horizon by :func:`worker_horizon`.
    """

    window: tuple[int, int, int, int]
    origin: tuple[int, int]
    heights: xr.DataArray
    template: xr.DataArray


class _WindowOf:
    """Stands in for a raster of which only ``data`` (starting at raster pixel ``origin``) is
    loaded: ``view[r0:r1, c0:c1]`` in raster indices is the same part of ``data``."""

    def __init__(self, data: xr.DataArray, origin: tuple[int, int]) -> None:
        self.data = data
        self.origin = origin

    def __getitem__(self, key: tuple[slice, slice]) -> xr.DataArray:
        rows, cols = key
        o_r, o_c = self.origin
        ny, nx = self.data.shape
        r0, r1, c0, c1 = rows.start - o_r, rows.stop - o_r, cols.start - o_c, cols.stop - o_c
        if not (0 <= r0 <= r1 <= ny and 0 <= c0 <= c1 <= nx):
            raise IndexError(f"rows {rows.start}:{rows.stop}, cols {cols.start}:{cols.stop} outside the tile's window")
        return self.data[r0:r1, c0:c1]


def near_window(plan: TilePlan, window: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The full-resolution window ``(row0, row1, col0, col1)`` an output tile reads: the tile
    plus ``plan.halo_px``, clipped to the raster (what :meth:`TiledHorizon.compute` reads)."""
    r0, r1, c0, c1 = window
    ny, nx = plan.shape
    h = plan.halo_px
    return max(0, r0 - h), min(ny, r1 + h), max(0, c0 - h), min(nx, c1 + h)


def shared_state(th: TiledHorizon) -> dict:
    """What every tile of ``th`` shares apart from the coarse DEM: the plan, the geometry, the
    azimuths and the options (small; sent once to each worker; never a raster or the cube buffer)."""
    return {k: v for k, v in vars(th).items() if k not in _RASTER_ATTRS}


def tile_job(th: TiledHorizon, window: tuple[int, int, int, int]) -> TileJob:
    """The :class:`TileJob` of one output tile: its near-field window read here (from a lazily
    opened DEM, only that window), so the worker needs no access to the file."""
    rr0, rr1, cc0, cc1 = near_window(th.plan, window)
    r0, r1, c0, c1 = window
    heights = th.heights[rr0:rr1, cc0:cc1].compute()
    tile = th.dem[r0:r1, c0:c1]
    template = tile.copy(data=np.zeros(tile.shape, dtype=np.uint8))
    return TileJob(window, (rr0, cc0), heights, template)


def worker_horizon(state: dict, coarse: np.ndarray | None, job: TileJob, workers: int | None = None) -> TiledHorizon:
    """A :class:`TiledHorizon` rebuilt from :func:`shared_state`, the coarse DEM
    (:meth:`TiledHorizon.coarse_heights`, None without a far field) and one :class:`TileJob`,
    that can compute exactly that tile (:meth:`TiledHorizon.compute`, the same code and so the
    same bytes as on the driver), with at most ``workers`` azimuth threads."""
    th = TiledHorizon.__new__(TiledHorizon)
    vars(th).update(state)
    th.heights = _WindowOf(job.heights, job.origin)  # type: ignore[assignment]
    r0, _r1, c0, _c1 = job.window
    th.dem = _WindowOf(job.template, (r0, c0))  # type: ignore[assignment]
    th._coarse = coarse
    th._cube_buffer = None
    if workers is not None:
        th.workers = max(1, min(th.workers, int(workers)))
    return th
