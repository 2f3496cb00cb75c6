"""Illumination products from horizon maps and the Sun/Earth ephemeris.

Products (``docs/science.md`` section 3), each a DataArray on the DEM's grid:

``illumination_fraction`` [1]
    Time-averaged visible fraction of the solar disk (finite disk, radius from the Sun's
    distance) over the span.
``longest_darkness_h`` [h]
    The longest run of consecutive time samples with no part of the disk above the
    horizon (a run that wraps from the end of the span to its start is not joined); with
    ``darkness_min_disk_fraction`` > 0 (:class:`SunSamples`), the longest run with less
    than that share of the disk up (a sliver of Sun does not run a base; the disk's
    centre ``disk_offset(f)`` radii above the horizon, at the mean solar radius).
``psr_mask`` [bool]
    Never lit over the span: the upper limb of the Sun stays below the horizon at every
    sub-solar longitude, for the largest sub-solar latitude reached
    (:data:`prospect.lunar.OBSERVED_MAX_SUBSOLAR_LATITUDE_DEG`-like, from the samples).
``earth_visibility_fraction`` [1]
    Fraction of the time the Earth's centre is above the horizon (with the observer's
    parallax, up to 0.26 deg).

Method. Over many years the sub-solar longitude ``lambda`` and latitude ``beta`` are
nearly independent, and ``|beta| <= 1.59 deg`` is small, so at each pixel the Sun's
elevation is ``el(lambda, beta) ~ el0(lambda) + kappa(lambda) beta`` with
``kappa = sin(lat) / cos(el0)`` (exact derivative at ``beta = 0``) and its azimuth is
``az(lambda, 0)``. Every pixel is evaluated on ``n_lambda`` sub-solar longitudes (the
horizon looked up once each), and:

* the fraction is the mean over ``lambda`` of ``E_beta[disk fraction]`` with ``beta``
  distributed as in the ephemeris samples (a precomputed table);
* the PSR test uses the extreme ``beta`` reached;
* the darkness runs walk the real time series: with the per-``lambda`` thresholds a time
  step costs one lookup and one comparison.

``tests/test_illumination.py`` compares all products with a direct per-time-step
evaluation (exact Sun directions, no linearisation) on rough terrain.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from numba import njit, prange

from prospect.errors import ConfigError, GridError
from prospect.grid import AnalysisGrid
from prospect.illumination.ephemeris import SunEarth


@dataclass(frozen=True)
class SunSamples:
    """What the products need from the ephemeris, reduced."""

    beta_deg: np.ndarray  # sub-solar latitude per time sample
    lambda_deg: np.ndarray  # sub-solar longitude per time sample
    rho_deg: np.ndarray  # solar angular radius per time sample
    step_h: float  # time step [h] (uniform)
    earth_lon_deg: np.ndarray  # sub-Earth longitude per sample
    earth_lat_deg: np.ndarray
    earth_distance_km: np.ndarray
    #: the share of the solar disk below which a time step counts as dark for ``longest_darkness_h``
    #: (0: dark only with no limb up; :func:`disk_offset`)
    darkness_min_disk_fraction: float = 0.0

    @functools.cached_property
    def beta_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(kappas, us, T)``: :func:`_beta_table` on the grid the products interpolate, made once
        per set of samples (every tile of a stage shares it)."""
        beta_max = float(np.abs(self.beta_deg).max())
        rho_mean = float(self.rho_deg.mean())
        kappas = np.linspace(-1.3, 1.3, 53)
        umax = 1.0 + 1.3 * beta_max / rho_mean + 0.5
        us = np.linspace(-umax, umax, 1601)
        return kappas, us, _beta_table(self.beta_deg, rho_mean, kappas, us)

    @classmethod
    def from_ephemeris(cls, se: SunEarth, *, darkness_min_disk_fraction: float = 0.0) -> SunSamples:
        """The samples of ``se``; ``darkness_min_disk_fraction`` (0..1): a time step is dark for
        ``longest_darkness_h`` while less than this share of the disk is up (0: no limb up)."""
        check_disk_fraction(darkness_min_disk_fraction)
        jd = np.asarray(se.jd_tt, dtype="float64")
        steps = np.diff(jd) * 24.0
        if len(jd) < 2 or np.ptp(steps) > 1e-6 * max(1.0, steps.mean()):
            raise ConfigError("illumination products need uniformly spaced time samples (default_times)")
        lam, beta = se.subsolar_lon_lat
        elon, elat = se.subearth_lon_lat
        return cls(
            np.asarray(beta),
            np.asarray(lam),
            np.asarray(se.sun_angular_radius_deg),
            float(steps.mean()),
            np.asarray(elon),
            np.asarray(elat),
            np.asarray(se.earth_distance_km),
            float(darkness_min_disk_fraction),
        )


def check_disk_fraction(value: Any, name: str = "darkness_min_disk_fraction") -> float:
    """A share of the solar disk, 0..1 (a one-line :class:`ConfigError` naming ``name`` otherwise)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not 0.0 <= v <= 1.0:  # NaN fails too
        raise ConfigError(f"{name} must be a number from 0 to 1 (a share of the solar disk), not {value!r}")
    return v


def disk_offset(min_fraction: float) -> float:
    """The height of the disk's centre above a straight horizon, in disk radii, at which
    :func:`disk_fraction` reaches ``min_fraction``: -1 at 0 (the upper limb on the horizon), 0 at
    0.5, 1 at 1. Bisection to 1e-15 (the fraction rises monotonically with the height)."""
    f = check_disk_fraction(min_fraction)
    if f == 0.0:
        return -1.0
    if f == 1.0:
        return 1.0
    lo, hi = -1.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if float(disk_fraction(np.array(mid))) < f:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def disk_fraction(d: np.ndarray) -> np.ndarray:
    """Fraction of a disk above a straight horizon, centre ``d`` radii above it."""
    d = np.clip(d, -1.0, 1.0)
    return 1.0 - (np.arccos(d) - d * np.sqrt(1.0 - d * d)) / np.pi


_disk_fraction = disk_fraction  # the name this module's kernels use


def _beta_table(beta_deg: np.ndarray, rho_deg: float, kappas: np.ndarray, us: np.ndarray) -> np.ndarray:
    """``T[k, j] = mean over samples of disk_fraction(us[j] + kappas[k] * beta / rho)``."""
    hist, edges = np.histogram(beta_deg, bins=128)
    centres = 0.5 * (edges[:-1] + edges[1:])
    w = hist / hist.sum()
    out = np.empty((len(kappas), len(us)))
    for k, kap in enumerate(kappas):
        out[k] = (_disk_fraction(us[:, None] + kap * centres[None, :] / rho_deg) * w[None, :]).sum(axis=1)
    return out


#: the darkness walk goes through the time series for this many pixels of a row at a time
WALK_BLOCK_PX = 128
#: Sun and Earth directions are computed exactly every this many pixels along a row and
#: interpolated linearly between (see :func:`_products_kernel`).
NODE_PX = 16
#: margin [deg] between a bin's Earth elevation and a pixel's horizon bound for the bin to be
#: decided without a lookup: far above the rounding of the interpolated values (~1e-14 deg), so
#: every bin is decided as the lookup would decide it
EARTH_BOUND_EPS_DEG = 1e-9


@njit(nogil=True, cache=True)
def _horizon_at(hz, r, c, az_deg, step):
    n = hz.shape[0]
    a = az_deg % 360.0
    x = a / step
    i = int(math.floor(x))
    f = x - i
    i0 = i % n
    i1 = (i + 1) % n
    return (1.0 - f) * hz[i0, r, c] + f * hz[i1, r, c]


@njit(nogil=True, cache=True)
def _row_horizon_at(hrow, c, x):
    """The horizon of pixel ``c`` of a row held as ``(x, azimuth)`` at ``x`` azimuth steps
    (any real number within two turns), linear in azimuth."""
    n = hrow.shape[1]
    while x < 0.0:
        x += n
    while x >= n:
        x -= n
    i0 = int(x)
    f = x - i0
    i1 = i0 + 1
    if i1 == n:
        i1 = 0
    return (1.0 - f) * hrow[c, i0] + f * hrow[c, i1]


@njit(nogil=True, cache=True)
def _row_nodes(w, node_px):
    """Columns where directions are computed exactly; pixels between two are interpolated."""
    n = (w - 1) // node_px + 1
    last = (n - 1) * node_px
    if last != w - 1:
        n += 1
    nodes = np.empty(n, np.int64)
    for k in range(n):
        nodes[k] = min(k * node_px, w - 1)
    return nodes


@njit(parallel=True, cache=True)
def _products_kernel(
    hz,
    az_step,
    lat,
    lon,
    gamma,
    lam_c,
    beta_max,
    rho_max,
    rho_mean,
    table,
    k0,
    dk,
    u0,
    du,
    t_bin,
    t_beta,
    e_lon,
    e_lat,
    e_w,
    e_dist,
    radius_km,
    node_px,
    dark_u,
    frac,
    dark,
    psr,
    earth,
):
    """Blocks of ``node_px`` rows in parallel. The Sun's elevation, grid azimuth and ``kappa`` at
    each sub-solar longitude, and the Earth's elevation and grid azimuth in each direction bin,
    are computed exactly at nodes every ``node_px`` pixels along the block's first and last rows
    and interpolated linearly between them, down the columns and then along each row (these
    directions are smooth in the grid: the second order error over ``node_px`` pixels of 20 m is
    below 1e-6 deg). Each row then goes through :func:`_products_row`: its horizons transposed
    to ``(x, azimuth)``, the fraction and PSR test, the darkness walk over the time series (a
    block of the row's pixels per time step), and the Earth visibility."""
    naz, h_rows, w_cols = hz.shape
    nlam = lam_c.shape[0]
    ne = e_lon.shape[0]
    nodes = _row_nodes(w_cols, node_px)
    nn = nodes.shape[0]
    # the Earth's direction per bin, Moon-fixed [km]
    evx = np.empty(ne)
    evy = np.empty(ne)
    evz = np.empty(ne)
    for j in range(ne):
        cl = math.cos(e_lat[j])
        evx[j] = e_dist[j] * cl * math.cos(e_lon[j])
        evy[j] = e_dist[j] * cl * math.sin(e_lon[j])
        evz[j] = e_dist[j] * math.sin(e_lat[j])
    # directions exactly at the node rows, linearly in between (azimuths the short way round)
    rnodes = _row_nodes(h_rows, node_px)
    nrn = rnodes.shape[0]
    nblocks = max(nrn - 1, 1)
    half = 0.5 * naz
    for blk in prange(nblocks):
        r_top = rnodes[blk]
        r_bot = rnodes[blk + 1] if nrn > 1 else r_top
        r_last = r_bot if (blk == nblocks - 1) else r_bot - 1
        t_el = np.empty((nn, nlam))
        t_az = np.empty((nn, nlam))
        t_kp = np.empty((nn, nlam))
        t_mel = np.empty((nn, ne))
        t_maz = np.empty((nn, ne))
        b_el = np.empty((nn, nlam))
        b_az = np.empty((nn, nlam))
        b_kp = np.empty((nn, nlam))
        b_mel = np.empty((nn, ne))
        b_maz = np.empty((nn, ne))
        _node_directions(
            lat, lon, gamma, r_top, nodes, lam_c, evx, evy, evz, radius_km, az_step, t_el, t_az, t_kp, t_mel, t_maz
        )
        _node_directions(
            lat, lon, gamma, r_bot, nodes, lam_c, evx, evy, evz, radius_km, az_step, b_el, b_az, b_kp, b_mel, b_maz
        )
        n_el = np.empty((nn, nlam))
        n_az = np.empty((nn, nlam))
        n_kp = np.empty((nn, nlam))
        m_el = np.empty((nn, ne))
        m_az = np.empty((nn, ne))
        for r in range(r_top, r_last + 1):
            fr = (r - r_top) / (r_bot - r_top) if r_bot > r_top else 0.0
            for k in range(nn):
                for i in range(nlam):
                    n_el[k, i] = t_el[k, i] + fr * (b_el[k, i] - t_el[k, i])
                    n_kp[k, i] = t_kp[k, i] + fr * (b_kp[k, i] - t_kp[k, i])
                    d = b_az[k, i] - t_az[k, i]
                    d = d - naz if d > half else (d + naz if d < -half else d)
                    n_az[k, i] = t_az[k, i] + fr * d
                for j in range(ne):
                    m_el[k, j] = t_mel[k, j] + fr * (b_mel[k, j] - t_mel[k, j])
                    d = b_maz[k, j] - t_maz[k, j]
                    d = d - naz if d > half else (d + naz if d < -half else d)
                    m_az[k, j] = t_maz[k, j] + fr * d
            _products_row(
                hz,
                r,
                nodes,
                node_px,
                n_el,
                n_az,
                n_kp,
                m_el,
                m_az,
                beta_max,
                rho_max,
                rho_mean,
                table,
                k0,
                dk,
                u0,
                du,
                t_bin,
                t_beta,
                e_w,
                dark_u,
                frac,
                dark,
                psr,
                earth,
            )


@njit(nogil=True, cache=True)
def _node_directions(lat, lon, gamma, r, nodes, lam_c, evx, evy, evz, radius_km, az_step, n_el, n_az, n_kp, m_el, m_az):
    """The Sun's elevation, grid azimuth (in azimuth steps) and ``kappa`` at each sub-solar longitude,
    and the Earth's elevation and grid azimuth in each direction bin, at the node columns of row ``r``."""
    nlam = lam_c.shape[0]
    ne = evx.shape[0]
    for k in range(nodes.shape[0]):
        c = nodes[k]
        th = math.radians(lat[r, c])
        ph = math.radians(lon[r, c])
        g = gamma[r, c]
        sth, cth = math.sin(th), math.cos(th)
        for i in range(nlam):
            dl = lam_c[i] - ph
            sel = cth * math.cos(dl)
            e0 = math.degrees(math.asin(sel))
            n_el[k, i] = e0
            n_az[k, i] = (math.degrees(math.atan2(math.sin(dl), -sth * math.cos(dl))) + g) % 360.0 / az_step
            n_kp[k, i] = sth / math.cos(math.radians(e0))
        nx, ny, nz = cth * math.cos(ph), cth * math.sin(ph), sth
        ex, ey = -math.sin(ph), math.cos(ph)
        qx, qy, qz = -sth * math.cos(ph), -sth * math.sin(ph), cth
        for j in range(ne):
            vx = evx[j] - radius_km * nx
            vy = evy[j] - radius_km * ny
            vz = evz[j] - radius_km * nz
            up = vx * nx + vy * ny + vz * nz
            east = vx * ex + vy * ey
            north = vx * qx + vy * qy + vz * qz
            m_el[k, j] = math.degrees(math.atan2(up, math.sqrt(east * east + north * north)))
            m_az[k, j] = (math.degrees(math.atan2(east, north)) + g) % 360.0 / az_step


@njit(nogil=True, cache=True)
def _products_row(
    hz,
    r,
    nodes,
    node_px,
    n_el,
    n_az,
    n_kp,
    m_el,
    m_az,
    beta_max,
    rho_max,
    rho_mean,
    table,
    k0,
    dk,
    u0,
    du,
    t_bin,
    t_beta,
    e_w,
    dark_u,
    frac,
    dark,
    psr,
    earth,
):
    """The four products of row ``r`` from its directions at the nodes (see :func:`_products_kernel`)."""
    naz, _, w_cols = hz.shape
    nlam = n_el.shape[1]
    ne = m_el.shape[1]
    nk, nu = table.shape
    nt = t_bin.shape[0]
    nn = nodes.shape[0]
    inv_dk = 1.0 / dk
    inv_du = 1.0 / du
    inv_rho = 1.0 / rho_mean
    half = 0.5 * naz
    hrow = np.empty((w_cols, naz), np.float32)
    bad = np.zeros(w_cols, np.bool_)
    for a in range(naz):
        for c in range(w_cols):
            v = hz[a, r, c]
            hrow[c, a] = v
            if v != v:
                bad[c] = True
    # per segment between nodes k and k + 1: the change of each direction (azimuths the short way round)
    ns = max(nn - 1, 1)
    d_el = np.zeros((ns, nlam))
    d_az = np.zeros((ns, nlam))
    d_kp = np.zeros((ns, nlam))
    d_mel = np.zeros((ns, ne))
    d_maz = np.zeros((ns, ne))
    for k in range(nn - 1):
        for i in range(nlam):
            d_el[k, i] = n_el[k + 1, i] - n_el[k, i]
            d = n_az[k + 1, i] - n_az[k, i]
            d_az[k, i] = d - naz if d > half else (d + naz if d < -half else d)
            d_kp[k, i] = n_kp[k + 1, i] - n_kp[k, i]
        for j in range(ne):
            d_mel[k, j] = m_el[k + 1, j] - m_el[k, j]
            d = m_az[k + 1, j] - m_az[k, j]
            d_maz[k, j] = d - naz if d > half else (d + naz if d < -half else d)
    # per segment, the range of the Earth's grid azimuth over all bins (azimuth steps, unwrapped
    # from the first bin's): each pixel bounds its horizon over that range once, and a bin whose
    # elevation clears the bound (by EARTH_BOUND_EPS_DEG) needs no horizon lookup
    s_azlo = np.zeros(ns)
    s_azhi = np.zeros(ns)
    for k in range(ns):
        lo, hi = np.inf, -np.inf
        ref = m_az[k, 0] if ne > 0 else 0.0
        for j in range(ne):
            d = m_az[k, j] - ref
            d = d - naz if d > half else (d + naz if d < -half else d)
            d1 = d + d_maz[k, j]
            lo = min(lo, d, d1)
            hi = max(hi, d, d1)
        s_azlo[k] = ref + lo
        s_azhi[k] = ref + hi
    kap = np.empty((nlam, w_cols), np.float32)
    thr = np.empty((nlam, w_cols), np.float32)
    for c in range(w_cols):
        k = min(c // node_px, nn - 2) if nn > 1 else 0
        span = nodes[k + 1] - nodes[k] if nn > 1 else 0
        f = (c - nodes[k]) / span if span > 0 else 0.0
        if bad[c]:
            frac[r, c] = np.nan
            dark[r, c] = np.nan
            psr[r, c] = 255
            earth[r, c] = np.nan
            for i in range(nlam):
                kap[i, c] = 0.0
                thr[i, c] = -1.0  # always lit: the pixel's walk is never read
            continue
        lit_possible = False
        acc = 0.0
        for i in range(nlam):
            e0 = n_el[k, i] + f * d_el[k, i]
            kp = n_kp[k, i] + f * d_kp[k, i]
            hh = _row_horizon_at(hrow, c, n_az[k, i] + f * d_az[k, i])
            kap[i, c] = kp
            # dark while the disk's centre is at most dark_u radii above the horizon (-1: no limb up)
            thr[i, c] = hh - e0 + dark_u * rho_mean
            if e0 + abs(kp) * beta_max + rho_max > hh:
                lit_possible = True
            # E_beta[disk fraction] from the table (bilinear, clamped)
            u = (e0 - hh) * inv_rho
            x = (kp - k0) * inv_dk
            y = (u - u0) * inv_du
            x = max(x, 0.0)
            x = min(x, nk - 1.000001)
            if y <= 0.0:
                continue  # the whole beta range keeps the Sun below the horizon
            if y >= nu - 1.000001:
                acc += 1.0
                continue
            ix = int(x)
            iy = int(y)
            fx = x - ix
            fy = y - iy
            acc += (
                (1 - fx) * (1 - fy) * table[ix, iy]
                + fx * (1 - fy) * table[ix + 1, iy]
                + (1 - fx) * fy * table[ix, iy + 1]
                + fx * fy * table[ix + 1, iy + 1]
            )
        frac[r, c] = acc / nlam
        psr[r, c] = 0 if lit_possible else 1
        # the horizon's range over the Earth's azimuths here (between two azimuth steps the
        # interpolated horizon lies between their values)
        hmin, hmax = np.inf, -np.inf
        i_lo = int(math.floor(s_azlo[k])) - 1
        i_hi = int(math.ceil(s_azhi[k])) + 1
        if i_hi - i_lo >= naz:
            i_lo, i_hi = 0, naz - 1
        for ii in range(i_lo, i_hi + 1):
            hv = hrow[c, ii % naz]
            hmin = min(hmin, hv)
            hmax = max(hmax, hv)
        above = hmax + EARTH_BOUND_EPS_DEG
        below = hmin - EARTH_BOUND_EPS_DEG
        vis = 0.0
        for j in range(ne):
            el = m_el[k, j] + f * d_mel[k, j]
            # above every horizon value here: seen; else look the horizon up unless below them all
            if el > above or (el > below and el > _row_horizon_at(hrow, c, m_az[k, j] + f * d_maz[k, j])):
                vis += e_w[j]
        earth[r, c] = vis
    # darkness runs over the time series, a block of the row's pixels at each step (a block's
    # thresholds stay in cache over the whole series): lit iff kappa * beta > threshold
    run = np.zeros(w_cols, np.int32)
    best = np.zeros(w_cols, np.int32)
    for b0 in range(0, w_cols, WALK_BLOCK_PX):
        b1 = min(b0 + WALK_BLOCK_PX, w_cols)
        nb = b1 - b0
        # kappa and threshold of one longitude bin side by side: one time step reads one
        # contiguous run of memory (30 % faster than two separate arrays)
        kt = np.empty((nlam, 2, WALK_BLOCK_PX), np.float32)
        for i in range(nlam):
            for c in range(nb):
                kt[i, 0, c] = kap[i, b0 + c]
                kt[i, 1, c] = thr[i, b0 + c]
        rb = run[b0:b1]
        bb = best[b0:b1]
        for t in range(nt):
            i = t_bin[t]
            beta_t = np.float32(t_beta[t])
            for c in range(nb):
                d = np.int32(kt[i, 0, c] * beta_t <= kt[i, 1, c])
                rb[c] = (rb[c] + 1) * d
                bb[c] = max(bb[c], rb[c])
    for c in range(w_cols):
        if not bad[c]:
            dark[r, c] = best[c]


def grid_north_azimuth_deg(grid: AnalysisGrid) -> np.ndarray:
    """Grid azimuth of true north at every pixel [deg] (0 on geographic grids).

    South polar stereographic: ``atan2(x, y)``; north: ``atan2(-x, -y)`` (as in
    :mod:`prospect.terrain._kernels`): a true azimuth plus this is a grid azimuth.
    """
    x, y = np.meshgrid(grid.x, grid.y)
    if grid.crs.kind == "polar_south":
        return np.degrees(np.arctan2(x, y))
    if grid.crs.kind == "polar_north":
        return np.degrees(np.arctan2(-x, -y))
    raise GridError(f"illumination products need a polar stereographic grid, not {grid.crs}")


@dataclass
class _Prepared:
    """The products kernel's inputs for one horizon cube."""

    template: xr.DataArray
    az: np.ndarray
    lat: np.ndarray
    kernel_args: tuple

    @property
    def beta_max(self) -> float:
        return float(self.kernel_args[6])

    def args(self, *, walk: bool = True, earth: bool = True) -> tuple:
        a = list(self.kernel_args)
        if not walk:  # an empty time series: no darkness walk
            a[14] = a[14][:0]
            a[15] = a[15][:0]
        if not earth:  # no Earth directions
            a[16], a[17], a[18], a[19] = (v[:0] for v in a[16:20])
        return tuple(a)


def _run_kernel(args: tuple, outputs: tuple) -> None:
    """The products kernel, its blocks of rows handed to the threads one at a time: with numba's
    default (the range split into one contiguous chunk per thread) a thread that drew the costlier
    rows kept the other waiting (1.77 of 2 cores busy on a 1088 px tile). Each block's results
    do not depend on which thread computed it."""
    import numba

    kernel: Any = _products_kernel  # a numba dispatcher: its signature is the kernel's
    with numba.parallel_chunksize(1):
        kernel(*args, *outputs)


def _outputs(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.empty(shape, np.float32),
        np.empty(shape, np.float32),
        np.empty(shape, np.uint8),
        np.empty(shape, np.float32),
    )


def _prepare(horizon: xr.DataArray, samples: SunSamples, n_lambda: int, earth_bin_deg: float) -> _Prepared:
    if horizon.ndim != 3 or horizon.dims[0] != "azimuth":
        raise ConfigError(f"expected a horizon cube with dims (azimuth, y, x), got {horizon.dims}")
    az = np.asarray(horizon["azimuth"].values, dtype="float64")
    step = 360.0 / len(az)
    if not np.allclose(az, np.arange(len(az)) * step):
        raise ConfigError("the horizon cube must have evenly spaced azimuths starting at 0 (n_azimuths=...)")
    template = horizon.isel(azimuth=0, drop=True)
    grid = AnalysisGrid.from_dataarray(template)
    lon, lat = grid.lonlat()
    lon = np.asarray(lon, dtype="float64")
    lat = np.asarray(lat, dtype="float64")
    gamma = grid_north_azimuth_deg(grid)
    hz = np.ascontiguousarray(np.asarray(horizon.values, dtype="float32"))

    lam_c = np.radians((np.arange(n_lambda) + 0.5) * (360.0 / n_lambda) - 180.0)
    beta = samples.beta_deg
    beta_max = float(np.abs(beta).max())
    rho_mean = float(samples.rho_deg.mean())
    rho_max = float(samples.rho_deg.max())
    kappas, us, table = samples.beta_table
    t_bin = np.floor((np.mod(samples.lambda_deg + 180.0, 360.0)) / (360.0 / n_lambda)).astype(np.int64)
    t_bin = np.minimum(t_bin, n_lambda - 1)

    # Earth: 2-D histogram of sub-Earth points, mean distance per bin
    elon = np.mod(samples.earth_lon_deg + 180.0, 360.0) - 180.0
    lon_edges = np.arange(math.floor(elon.min()), math.ceil(elon.max()) + earth_bin_deg, earth_bin_deg)
    lat_edges = np.arange(
        math.floor(samples.earth_lat_deg.min()), math.ceil(samples.earth_lat_deg.max()) + earth_bin_deg, earth_bin_deg
    )
    counts, _, _ = np.histogram2d(elon, samples.earth_lat_deg, bins=(lon_edges, lat_edges))
    dsum, _, _ = np.histogram2d(
        elon, samples.earth_lat_deg, bins=(lon_edges, lat_edges), weights=samples.earth_distance_km
    )
    keep = counts > 0
    lc = 0.5 * (lon_edges[:-1] + lon_edges[1:])
    bc = 0.5 * (lat_edges[:-1] + lat_edges[1:])
    e_lon = np.radians(np.broadcast_to(lc[:, None], counts.shape)[keep])
    e_lat = np.radians(np.broadcast_to(bc[None, :], counts.shape)[keep])
    e_w = counts[keep] / counts.sum()
    e_dist = dsum[keep] / counts[keep]

    args = (
        hz,
        step,
        lat,
        lon,
        gamma,
        lam_c,
        beta_max,
        rho_max,
        rho_mean,
        table,
        kappas[0],
        kappas[1] - kappas[0],
        us[0],
        us[1] - us[0],
        t_bin,
        beta,
        e_lon,
        e_lat,
        e_w,
        e_dist,
        grid.crs.radius_m / 1000.0,
        NODE_PX,
        disk_offset(samples.darkness_min_disk_fraction),
    )
    return _Prepared(template, az, lat, args)


def products_profile(
    horizon: xr.DataArray, samples: SunSamples, *, n_lambda: int = 720, earth_bin_deg: float = 0.5
) -> dict[str, float]:
    """Seconds of the parts of :func:`illumination_products` on ``horizon``: ``prepare`` (tables),
    ``sun`` (the sub-solar longitude pass: fraction and PSR), ``darkness`` (the walk over the time
    series) and ``earth`` (Earth visibility), each as wall seconds and as ``<part>_cpu`` (CPU
    seconds of all threads). Each pass is the kernel run with the others' inputs emptied, so
    ``darkness`` and ``earth`` are differences from ``sun``. For ``benchmarks/``."""
    import time

    t, c = time.perf_counter(), time.process_time()
    prep = _prepare(horizon, samples, n_lambda, earth_bin_deg)
    out: dict[str, float] = {"prepare": time.perf_counter() - t, "prepare_cpu": time.process_time() - c}
    runs = {"sun": (False, False), "sun+darkness": (True, False), "sun+earth": (False, True)}
    for name, (walk, earth) in runs.items():
        arrays = _outputs(prep.lat.shape)
        t, c = time.perf_counter(), time.process_time()
        _run_kernel(prep.args(walk=walk, earth=earth), arrays)
        out[name] = time.perf_counter() - t
        out[f"{name}_cpu"] = time.process_time() - c
    for part in ("darkness", "earth"):
        for suffix in ("", "_cpu"):
            out[f"{part}{suffix}"] = out.pop(f"sun+{part}{suffix}") - out[f"sun{suffix}"]
    return out


def illumination_products(
    horizon: xr.DataArray, samples: SunSamples, *, n_lambda: int = 720, earth_bin_deg: float = 0.5
) -> xr.Dataset:
    """The four products from a horizon cube (``horizon_angles``) and ephemeris samples.

    ``n_lambda`` sub-solar longitudes (0.5 deg by default, finer than the Sun's ~1 deg
    per 2 h step) and Earth directions binned at ``earth_bin_deg`` in sub-Earth
    longitude and latitude (weights from the samples; the mean distance per bin).
    """
    prep = _prepare(horizon, samples, n_lambda, earth_bin_deg)
    lat = prep.lat
    frac, dark, psr, earth = _outputs(lat.shape)
    _run_kernel(prep.args(), (frac, dark, psr, earth))
    beta = samples.beta_deg
    beta_max = prep.beta_max
    az = prep.az
    template = prep.template
    dark_h = np.where(np.isnan(dark), np.nan, dark * samples.step_h).astype("float32")
    span_years = len(beta) * samples.step_h / (24.0 * 365.25)
    common = {
        "span_years": round(span_years, 3),
        "time_step_h": samples.step_h,
        "n_time_samples": int(len(beta)),
        "n_azimuths": int(len(az)),
        "max_distance_m": horizon.attrs.get("max_distance_m"),
        "max_subsolar_latitude_deg": round(beta_max, 4),
        "ephemeris": "prospect.illumination.ephemeris (ME frame)",
        "crs": template.attrs.get("crs", horizon.attrs.get("crs", "")),
    }

    def wrap(values, name, units, long_name):
        da = template.copy(data=values)
        da.name = name
        da.attrs = dict(common, units=units, long_name=long_name)
        return da

    psr_da = wrap(
        np.where(psr == 255, np.nan, psr).astype("float32"),
        "psr_mask",
        "1",
        "permanently shadowed (1) over the span, NaN where the horizon is unknown",
    )
    return xr.Dataset(
        {
            "illumination_fraction": wrap(
                frac, "illumination_fraction", "1", "time-averaged visible fraction of the solar disk"
            ),
            "longest_darkness_h": _darkness_attrs(
                wrap(dark_h, "longest_darkness_h", "h", "longest continuous darkness (no solar limb)"),
                samples.darkness_min_disk_fraction,
            ),
            "psr_mask": psr_da,
            "earth_visibility_fraction": wrap(
                earth, "earth_visibility_fraction", "1", "fraction of time the Earth's centre is above the horizon"
            ),
        }
    )


def _darkness_attrs(da: xr.DataArray, min_fraction: float) -> xr.DataArray:
    """``longest_darkness_h`` says which darkness it counts: no limb up, or less than a share of the disk."""
    da.attrs["darkness_min_disk_fraction"] = float(min_fraction)
    if min_fraction > 0.0:
        da.attrs["long_name"] = (
            f"longest continuous darkness (less than {min_fraction:g} of the solar disk up: a sliver of Sun "
            "does not run a base)"
        )
    return da


def products_at_pixels_brute_force(
    horizon: xr.DataArray, se: SunEarth, pixels: list[tuple[int, int]], *, darkness_min_disk_fraction: float = 0.0
) -> dict:
    """Reference: the products at a few pixels from every time sample, exact Sun directions.

    No linearisation in ``beta`` and no longitude bins: for each sample the Sun's
    topocentric elevation and azimuth are computed from its unit vector, the horizon is
    interpolated at that azimuth and the disk fraction evaluated. For tests.
    """
    from prospect.illumination.ephemeris import earth_azimuth_elevation, sun_azimuth_elevation

    template = horizon.isel(azimuth=0, drop=True)
    grid = AnalysisGrid.from_dataarray(template)
    lon, lat = (np.asarray(v) for v in grid.lonlat())
    gamma = grid_north_azimuth_deg(grid)
    hz = np.asarray(horizon.values, dtype="float64")
    step = 360.0 / hz.shape[0]
    rho = np.asarray(se.sun_angular_radius_deg)
    out = {}
    for r, c in pixels:
        az, el = sun_azimuth_elevation(lon[r, c], lat[r, c], se.sun)
        h = np.array([_horizon_at(hz, r, c, a + gamma[r, c], step) for a in np.asarray(az)])
        f = _disk_fraction((np.asarray(el) - h) / rho)
        lit = np.asarray(el) + rho > h
        usable = lit if darkness_min_disk_fraction == 0.0 else lit & (f >= darkness_min_disk_fraction)
        best = run = 0
        for v in usable:
            run = 0 if v else run + 1
            best = max(best, run)
        eaz, eel = earth_azimuth_elevation(lon[r, c], lat[r, c], se.earth, se.earth_distance_km)
        eh = np.array([_horizon_at(hz, r, c, a + gamma[r, c], step) for a in np.asarray(eaz)])
        jd = np.asarray(se.jd_tt)
        out[(r, c)] = {
            "illumination_fraction": float(f.mean()),
            "psr": bool(not lit.any()),
            "longest_darkness_h": best * float(np.diff(jd).mean() * 24.0),
            "earth_visibility_fraction": float((np.asarray(eel) > eh).mean()),
        }
    return out
