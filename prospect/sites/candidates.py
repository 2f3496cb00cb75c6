"""Candidate base sites: a lattice of site discs, zonal statistics and hard constraints.

A candidate is a disc of ground radius ``site_radius_m`` (Artemis: ~100 m sites inside
~15 km regions, docs/science.md section 6) centred on a point of a square lattice of
spacing ``candidate_spacing_m``. The lattice is anchored at the CRS origin (a lattice
point every ``step`` pixels counted from x = 0, y = 0), so a site keeps its id
``x<kx>y<ky>`` between runs, grid windows and constraint changes.

Zonal statistics of a layer over every disc are taken from the pixels whose centres lie
inside the disc (at least the pixel under the centre: on grids coarser than the site
the support is that pixel, recorded as ``support_m2``). They are computed lazily with
dask: the layer is padded with NaN, sliced once per disc offset with the lattice stride,
and reduced over the offsets, so memory follows the lattice and the chunk size, never
the whole raster. Wide discs (He-3 within 10 km on a 20 m grid) are taken on a block
mean of the layer and an FFT convolution with the disc (means only).

Hard constraints (parameters in ``prospect/config/sites.yaml`` with units and sources):

========================  ============================================================
``lat_band``              ``lat_min_deg <= lat <= lat_max_deg`` at the centre
``max_site_slope_deg``    mean slope over the disc
``min_illumination``      mean illumination fraction over the disc
``max_psr_fraction``      permanently shadowed share of the disc (no landing on PSR floors)
``min_flat_area_m2``      area of the 8-connected patch of lattice cells passing the
                          slope limit that holds the site
``valid_data``            every zonal statistic of the constraint layers is finite
========================  ============================================================

When nothing passes, :class:`~prospect.errors.ConstraintError` names the *binding*
constraint: the one whose removal would let the most sites through.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage

from prospect import lunar
from prospect.config import ParameterSet
from prospect.errors import ConfigError, ConstraintError
from prospect.grid import AnalysisGrid, as_dask

#: Most pixels a disc statistic gathers one by one; wider discs are FFT convolutions (means only).
MAX_DISC_OFFSETS = 400

Stat = Literal["mean", "max", "p95"]


def _index(v: np.ndarray, size: float) -> np.ndarray:
    """``floor(v / size)``, robust to rounding when ``v`` is a multiple of ``size``."""
    return np.floor(np.asarray(v) / size + 1e-6).astype(np.int64)


@dataclass(frozen=True)
class Lattice:
    """The candidate lattice of a grid: every ``step``-th pixel from ``(row0, col0)``."""

    grid: AnalysisGrid
    step: int
    row0: int
    col0: int
    shape: tuple[int, int]

    @classmethod
    def of(cls, grid: AnalysisGrid, spacing_m: float) -> Lattice:
        """The lattice of pixel centres whose CRS index ``floor(x / px)`` is a multiple of ``step``."""
        if grid.crs.kind == "geographic":
            raise ConfigError(
                f"site candidates need a projected analysis grid (polar stereographic or "
                f"equirectangular, metres), not the geographic grid {grid.crs}"
            )
        px = abs(grid.transform.a)
        if not math.isclose(px, abs(grid.transform.e), rel_tol=1e-6):
            raise ConfigError(f"site candidates need square pixels, not {px:g} x {abs(grid.transform.e):g} m")
        step = max(1, int(round(spacing_m / px)))
        ix, iy = _index(grid.x, px), _index(grid.y, px)
        col0 = int(np.argmax(ix % step == 0)) if np.any(ix % step == 0) else 0
        row0 = int(np.argmax(iy % step == 0)) if np.any(iy % step == 0) else 0
        shape = (len(range(row0, grid.shape[0], step)), len(range(col0, grid.shape[1], step)))
        return cls(grid=grid, step=step, row0=row0, col0=col0, shape=shape)

    @property
    def pixel_m(self) -> float:
        return abs(self.grid.transform.a)

    @property
    def spacing_m(self) -> float:
        return self.step * self.pixel_m

    @property
    def rows(self) -> np.ndarray:
        return self.row0 + self.step * np.arange(self.shape[0])

    @property
    def cols(self) -> np.ndarray:
        return self.col0 + self.step * np.arange(self.shape[1])

    def xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates of every lattice point, ``(shape)`` arrays."""
        return np.meshgrid(self.grid.x[self.cols], self.grid.y[self.rows])

    def lonlat(self) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.xy()
        return lunar.xy_to_lonlat(self.grid.crs, x, y)

    def ids(self) -> np.ndarray:
        """Stable ids ``x<kx>y<ky>``: the lattice index counted from the CRS origin."""
        kx, ky = _index(self.grid.x[self.cols], self.spacing_m), _index(self.grid.y[self.rows], self.spacing_m)
        gx, gy = np.meshgrid(kx, ky)
        return np.char.add(np.char.add("x", gx.astype(str)), np.char.add("y", gy.astype(str)))

    def cell_area_m2(self) -> np.ndarray:
        """Ground area each lattice point stands for: its pixel's area on the sphere x ``step^2``."""
        area = self.grid.cell_area_m2().data[self.rows][:, self.cols].compute()
        return np.asarray(area) * self.step**2

    def scale_factor(self) -> float:
        """Median map scale factor ``k`` over the lattice (1 off polar grids)."""
        if not self.grid.crs.is_polar:
            return 1.0
        x, y = self.xy()
        return float(np.median(lunar.polar_scale_factor_xy(x, y)))


def disc_offsets(radius_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets ``(dr, dc)`` whose centres lie within ``radius_px`` of the centre (always ``(0, 0)``)."""
    r = int(math.floor(radius_px))
    dr, dc = np.mgrid[-r : r + 1, -r : r + 1]
    inside = dr**2 + dc**2 <= radius_px**2 + 1e-9
    return dr[inside], dc[inside]


def nan_percentile(stack: np.ndarray, q: float) -> np.ndarray:
    """``np.nanpercentile(stack, q, axis=0)`` (its default ``linear`` method), bit for bit, vectorised.

    NumPy applies its 1-D routine column by column (a Python call per site); this sorts
    all columns at once and takes the same order statistics with NumPy's own
    interpolation formula: virtual index ``(n - 1) q / 100`` over the ``n`` non-NaN
    values, ``a + (b - a) g`` below ``g = 0.5`` and ``b - (b - a)(1 - g)`` from it. NaN
    where a column has no value.
    """
    data = np.asarray(stack, dtype="float64")
    cols = data.reshape(data.shape[0], -1).T  # one row per site: the sort runs on contiguous memory
    ordered = np.sort(cols, axis=1)  # NaN sorts last
    n = np.count_nonzero(~np.isnan(cols), axis=1)
    vi = (n - 1) * np.true_divide(q, 100)
    prev = np.floor(vi)
    last = np.maximum(n - 1, 0)
    top = vi >= n - 1
    i_prev = np.where(top, last, prev).astype(np.intp)
    i_next = np.where(top, last, prev + 1).astype(np.intp)
    a = np.take_along_axis(ordered, i_prev[:, None], axis=1)[:, 0]
    b = np.take_along_axis(ordered, i_next[:, None], axis=1)[:, 0]
    gamma = vi - np.where(top, -1.0, prev)  # numpy's previous index is -1 at the top (a == b there)
    with np.errstate(invalid="ignore"):  # inf - inf in a disc holding infinities is NaN, as in NumPy
        diff = b - a
        out = a + diff * gamma
        np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    out[n == 0] = np.nan
    return out.reshape(data.shape[1:])


def _reduce(stack: np.ndarray, stat: Stat) -> np.ndarray:
    with warnings.catch_warnings():  # an all-NaN disc (off the DEM) is NaN by design
        warnings.simplefilter("ignore", RuntimeWarning)
        if stat == "mean":
            return np.nanmean(stack, axis=0)
        if stat == "max":
            return np.nanmax(stack, axis=0)
        return nan_percentile(stack, 95)


def _disc_mean_block(block: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """NaN-aware mean over ``kernel`` around every pixel: FFT convolution of the values and of the valid mask."""
    from scipy.signal import fftconvolve

    valid = np.isfinite(block)
    total = fftconvolve(np.where(valid, block, 0.0), kernel, mode="same")
    count = fftconvolve(valid.astype("float64"), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0.5, total / np.maximum(count, 1e-12), np.nan)


def disc_stat(layer: xr.DataArray, lattice: Lattice, radius_m: float, stat: Stat = "mean") -> np.ndarray:
    """``stat`` of ``layer`` over the disc of ground radius ``radius_m`` at every lattice point.

    Returns a float64 array of ``lattice.shape`` (see :func:`disc_stat_lazy`).
    """
    return np.asarray(dask.compute(disc_stat_lazy(layer, lattice, radius_m, stat))[0], dtype="float64")


def disc_stats(
    requests: Mapping[str, tuple[xr.DataArray, Stat]], lattice: Lattice, radius_m: float
) -> dict[str, np.ndarray]:
    """:func:`disc_stat` of several ``{name: (layer, stat)}`` in one dask computation, so layers
    derived from the same input (slope and roughness of one DEM draw) share its reading and
    intermediate chunks, and the threads work on all of them at once."""
    names = list(requests)
    lazy = [disc_stat_lazy(layer, lattice, radius_m, stat) for layer, stat in requests.values()]
    return {n: np.asarray(v, dtype="float64") for n, v in zip(names, dask.compute(*lazy))}


def disc_stat_lazy(layer: xr.DataArray, lattice: Lattice, radius_m: float, stat: Stat = "mean") -> da.Array:
    """The dask array of ``stat`` of ``layer`` over the disc of ground radius ``radius_m``
    at every lattice point (float64, ``lattice.shape``).

    Returns a float64 array of ``lattice.shape``. The disc in map units is
    ``radius_m x k`` (median scale factor of the lattice, within 0.3 % of the local one
    inside 6 deg of the pole). Layers on the lattice's grid only.

    Small discs (up to :data:`MAX_DISC_OFFSETS` pixels) gather every pixel: the padded
    layer is sliced once per offset with the lattice stride and reduced. Wider discs
    (means only) are a NaN-aware FFT convolution with the disc, chunk by chunk with a
    halo, on a block mean of the layer coarse enough to keep the disc within 64 pixels.
    """
    if tuple(layer.shape) != lattice.grid.shape:
        raise ConfigError(f"layer {layer.name!r} has shape {tuple(layer.shape)}, not the grid's {lattice.grid.shape}")
    data = as_dask(layer).astype("float64")
    radius_px = radius_m * lattice.scale_factor() / lattice.pixel_m
    rows, cols, step = lattice.rows, lattice.cols, lattice.step
    dr, dc = disc_offsets(radius_px)
    if dr.size > MAX_DISC_OFFSETS:
        if stat != "mean":
            raise ConfigError(
                f"disc_stat: a {stat} over a {radius_m:g} m disc ({dr.size} pixels) is not supported; "
                "only means over wide discs"
            )
        factor = max(1, int(math.ceil(radius_px / 64.0)))
        h, w = data.shape
        if factor > 1:
            data = da.pad(data, ((0, (-h) % factor), (0, (-w) % factor)), constant_values=np.nan)
            data = da.coarsen(np.nanmean, data, {0: factor, 1: factor}, trim_excess=False)
        kr, kc = disc_offsets(radius_px / factor)
        r = int(max(np.abs(kr).max(), np.abs(kc).max()))
        kernel = np.zeros((2 * r + 1, 2 * r + 1))
        kernel[kr + r, kc + r] = 1.0
        mean = data.map_overlap(_disc_mean_block, depth=r, boundary=np.nan, kernel=kernel, dtype="float64")
        return mean[rows // factor][:, cols // factor]
    r = int(max(np.abs(dr).max(), np.abs(dc).max()))
    padded = da.pad(data, r, constant_values=np.nan)
    n_rows, n_cols = len(rows), len(cols)
    if n_rows == 0 or n_cols == 0:
        return da.zeros((n_rows, n_cols), dtype="float64")
    # Bands of lattice rows: each is one task on a full-width strip of the padded layer (its
    # discs' rows only), so the graph has a few tasks per band instead of one per disc offset.
    per_band = max(1, BAND_ROWS_PX // step)
    bands = []
    for k0 in range(0, n_rows, per_band):
        band = rows[k0 : k0 + per_band]
        strip = padded[band[0] : band[-1] + 2 * r + 1, :].rechunk(-1)
        bands.append(
            strip.map_blocks(
                _band_stat,
                len(band),
                step,
                cols[0] + r,
                n_cols,
                dr + r,
                dc,
                stat,
                chunks=((len(band),), (n_cols,)),
                dtype="float64",
            )
        )
    return da.concatenate(bands, axis=0)


#: Rows of the layer per band of :func:`disc_stat_lazy` (a full-width float64 strip: 8 x 512 x width bytes).
BAND_ROWS_PX = 512


def _band_stat(
    strip: np.ndarray, n_rows: int, step: int, col0: int, n_cols: int, dr: np.ndarray, dc: np.ndarray, stat: Stat
) -> np.ndarray:
    """``stat`` over the discs of ``n_rows x n_cols`` lattice points of a strip of the padded layer.

    The strip's first row is the top of the first lattice row's disc (``dr`` counted from
    there), ``col0`` the first lattice column in the strip. The disc pixels are gathered
    offset by offset, in :func:`disc_offsets`' order, and reduced by :func:`_reduce`.
    """
    if len(dr) == 1:
        a, b = int(dr[0]), int(dc[0])
        return np.array(
            strip[a : a + (n_rows - 1) * step + 1 : step, col0 + b : col0 + b + (n_cols - 1) * step + 1 : step]
        )
    stack = np.stack(
        [
            strip[a : a + (n_rows - 1) * step + 1 : step, col0 + b : col0 + b + (n_cols - 1) * step + 1 : step]
            for a, b in zip(dr.tolist(), dc.tolist())
        ]
    )
    return _reduce(stack, stat)


@dataclass(frozen=True)
class ConstraintResult:
    """Per-lattice-point pass masks of every constraint, and the combined mask."""

    masks: dict[str, np.ndarray]
    descriptions: dict[str, str]
    flat_area_m2: np.ndarray

    @property
    def passed(self) -> np.ndarray:
        out = np.ones(next(iter(self.masks.values())).shape, dtype=bool)
        for m in self.masks.values():
            out &= m
        return out

    def counts(self) -> dict[str, int]:
        """Lattice points passing each constraint on its own."""
        return {k: int(m.sum()) for k, m in self.masks.items()}

    def binding(self) -> tuple[str, int]:
        """The constraint whose removal lets the most sites through (with that count)."""
        names = list(self.masks)
        if not names:
            raise ValueError("binding() needs at least one constraint")
        best, best_n = names[0], -1  # the first name always wins the first round (n >= 0)
        for name in names:
            others = np.ones_like(self.passed)
            for k, m in self.masks.items():
                if k != name:
                    others &= m
            n = int(others.sum())
            if n > best_n or (n == best_n and self.masks[name].sum() < self.masks[best].sum()):
                best, best_n = name, n
        return best, best_n

    def require_some(self) -> None:
        """Raise :class:`ConstraintError` naming the binding constraint when no site passes."""
        if self.passed.any():
            return
        name, n = self.binding()
        total = self.passed.size
        if n > 0:
            detail = f"without it {n:,} of {total:,} lattice sites would pass"
        else:
            detail = (
                f"more than one constraint binds; on its own it passes {int(self.masks[name].sum()):,} of {total:,}"
            )
        counts = ", ".join(f"{k} {v:,}" for k, v in self.counts().items())
        raise ConstraintError(
            f"no candidate site passes the constraints: the binding constraint is {name} "
            f"({self.descriptions[name]}); {detail} (sites passing each alone: {counts})"
        )


def apply_constraints(
    stats: dict[str, np.ndarray], lat: np.ndarray, lattice: Lattice, params: ParameterSet
) -> ConstraintResult:
    """Evaluate the hard constraints on the lattice from zonal statistics.

    ``stats`` holds ``slope_mean_deg`` (required) and, when the layer exists,
    ``illumination_fraction`` and ``psr_fraction``; a missing layer's constraint is
    not applied (the site table's attrs say which were).
    """
    p = params
    masks: dict[str, np.ndarray] = {}
    desc: dict[str, str] = {}
    lo, hi = p["lat_min_deg"], p["lat_max_deg"]
    if lo > hi:
        raise ConfigError(f"sites: lat_min_deg {lo:g} is north of lat_max_deg {hi:g}")
    masks["lat_band"] = (lat >= lo) & (lat <= hi)
    desc["lat_band"] = f"latitude {lo:g}..{hi:g} deg"
    slope = stats["slope_mean_deg"]
    valid = np.isfinite(slope)
    masks["max_site_slope_deg"] = slope <= p["max_site_slope_deg"]
    desc["max_site_slope_deg"] = f"mean slope over the site <= {p['max_site_slope_deg']:g} deg"
    if "illumination_fraction" in stats:
        ill = stats["illumination_fraction"]
        valid &= np.isfinite(ill)
        masks["min_illumination_fraction"] = ill >= p["min_illumination_fraction"]
        desc["min_illumination_fraction"] = f"mean illumination fraction >= {p['min_illumination_fraction']:g}"
    if "psr_fraction" in stats:
        psr = np.nan_to_num(stats["psr_fraction"], nan=0.0)
        masks["max_psr_fraction"] = psr <= p["max_psr_fraction"]
        desc["max_psr_fraction"] = f"permanently shadowed share of the site <= {p['max_psr_fraction']:g}"
    flat = masks["max_site_slope_deg"] & valid
    labels, n = ndimage.label(flat, structure=np.ones((3, 3), dtype=bool))
    cell = lattice.cell_area_m2()
    patch = ndimage.sum_labels(cell, labels, index=np.arange(n + 1)) if n else np.zeros(1)
    flat_area = np.where(labels > 0, patch[labels], 0.0)
    masks["min_flat_area_m2"] = flat_area >= p["min_flat_area_m2"]
    desc["min_flat_area_m2"] = (
        f"connected area passing the slope limit >= {p['min_flat_area_m2'] / 1e6:g} km2 "
        f"(lattice cells of {lattice.spacing_m:g} m)"
    )
    masks["valid_data"] = valid
    desc["valid_data"] = "finite slope (and illumination) over the site: inside the DEM, away from its edge"
    return ConstraintResult(masks=masks, descriptions=desc, flat_area_m2=flat_area)


def candidate_frame(lattice: Lattice, passed: np.ndarray, radius_m: float) -> pd.DataFrame:
    """The passing lattice points as a table: ``site_id``, ``x``, ``y``, ``lon``, ``lat``, ``row``, ``col``."""
    x, y = lattice.xy()
    lon, lat = lattice.lonlat()
    rows, cols = np.meshgrid(lattice.rows, lattice.cols, indexing="ij")
    sel = np.nonzero(passed)
    r_px = radius_m * lattice.scale_factor() / lattice.pixel_m
    n_support = disc_offsets(r_px)[0].size
    frame = pd.DataFrame(
        {
            "site_id": lattice.ids()[sel],
            "x": x[sel],
            "y": y[sel],
            "lon": lon[sel],
            "lat": lat[sel],
            "row": rows[sel],
            "col": cols[sel],
        }
    )
    frame.attrs.update(
        site_radius_m=float(radius_m),
        support_px=int(n_support),
        support_m2=float(n_support * lattice.pixel_m**2 / lattice.scale_factor() ** 2),
        spacing_m=lattice.spacing_m,
        step_px=lattice.step,
    )
    return frame
