"""Fused numba kernels for the terrain stencils.

Each kernel takes a block padded by ``n`` pixels on every side (``n`` = the stencil
radius, NaN outside the raster) plus the global row/column of the block's first output
pixel, and returns the unpadded result. Everything a pixel's value depends on (its
neighbours, its map coordinates, the ground metric) is computed from global indices in a
fixed order, so results are bit-identical for any chunking. The kernels release the GIL:
dask threads run them on all cores.

Stencil naming follows Horn (1981) and GDAL (``docs/science.md`` section 2)::

    a b c        row - n   (north on a north-up grid)
    d e f        row
    g h i        row + n
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from prospect.terrain.metric import GEOGRAPHIC, PLANAR, POLAR_NORTH, POLAR_SOUTH

HORN, ZEVENBERGEN_THORNE = 0, 1
SLOPE, ASPECT, HILLSHADE = 0, 1, 2
TRI_RILEY, TRI_WILSON = 0, 1


@njit(nogil=True, cache=True)
def _metric(mode, x0, y0, a, e, radius, cos_lat_ts, row, col):
    """Ground metres per pixel step in x and y, and the grid azimuth of true north [rad]."""
    y = y0 + (row + 0.5) * e
    if mode == PLANAR:
        return abs(a), abs(e), 0.0
    if mode in (POLAR_SOUTH, POLAR_NORTH):
        x = x0 + (col + 0.5) * a
        k = 1.0 + (x * x + y * y) / (4.0 * radius * radius)
        if mode == POLAR_SOUTH:
            conv = math.atan2(x, y) if (x != 0.0 or y != 0.0) else 0.0
        else:
            conv = math.atan2(-x, -y) if (x != 0.0 or y != 0.0) else 0.0
        return abs(a) / k, abs(e) / k, conv
    if mode == GEOGRAPHIC:
        mpd = 2.0 * math.pi * radius / 360.0
        return abs(a) * mpd * math.cos(math.radians(y)), abs(e) * mpd, 0.0
    # EQUIRECTANGULAR: y = R * lat
    return abs(a) * math.cos(y / radius) / cos_lat_ts, abs(e), 0.0


@njit(nogil=True, cache=True)
def gradient_block(z, row0, col0, n, method, output, mode, x0, y0, a, e, radius, cos_lat_ts, sun_az, sun_alt):
    """Aspect [deg from true north] or hillshade [0..1] of a padded block.

    ``method``: Horn (1981) 3x3 weighted differences or Zevenbergen & Thorne (1987)
    central differences, both with neighbours ``n`` pixels away (baseline ``2 n`` pixel
    steps). ``sun_az`` / ``sun_alt`` [deg] are for the hillshade only (azimuth clockwise
    from grid up). Slope has its own vectorised loop, :func:`tan_slope_block`.
    """
    hp, wp = z.shape
    h_out = hp - 2 * n
    w_out = wp - 2 * n
    out = np.empty((h_out, w_out), dtype=np.float32)
    sin_alt = math.sin(math.radians(sun_alt))
    cos_alt = math.cos(math.radians(sun_alt))
    lx = math.sin(math.radians(sun_az)) * cos_alt
    ly = math.cos(math.radians(sun_az)) * cos_alt
    for r in range(h_out):
        pr = r + n
        for c in range(w_out):
            pc = c + n
            centre = z[pr, pc]
            if math.isnan(centre):
                out[r, c] = np.nan
                continue
            b = float(z[pr - n, pc])
            d = float(z[pr, pc - n])
            f = float(z[pr, pc + n])
            h = float(z[pr + n, pc])
            if method == HORN:
                ta = float(z[pr - n, pc - n])
                tc = float(z[pr - n, pc + n])
                tg = float(z[pr + n, pc - n])
                ti = float(z[pr + n, pc + n])
                num_x = ((tc + 2.0 * f + ti) - (ta + 2.0 * d + tg)) / 8.0
                num_y = ((ta + 2.0 * b + tc) - (tg + 2.0 * h + ti)) / 8.0
            else:
                num_x = (f - d) / 2.0
                num_y = (b - h) / 2.0
            gx, gy, conv = _metric(mode, x0, y0, a, e, radius, cos_lat_ts, row0 + r, col0 + c)
            p = num_x / (n * gx)  # dz/dx, east on the grid
            q = num_y / (n * gy)  # dz/dy, north (up) on the grid
            if output == ASPECT:
                if p == 0.0 and q == 0.0:
                    out[r, c] = np.nan  # flat: no downslope direction
                elif math.isnan(p) or math.isnan(q):
                    out[r, c] = np.nan
                else:
                    az = math.degrees(math.atan2(-p, -q) - conv)
                    az = az % 360.0
                    out[r, c] = az if az < 360.0 else 0.0
            else:
                # unit normal (-p, -q, 1)/|.| dotted with the unit vector to the Sun
                s = (-p * lx - q * ly + sin_alt) / math.sqrt(1.0 + p * p + q * q)
                out[r, c] = s if s > 0.0 else (np.nan if math.isnan(s) else 0.0)
    return out


@njit(nogil=True, cache=True)
def tri_block(z, n, alg):
    """Terrain Ruggedness Index with the 8 neighbours ``n`` pixels away [height units].

    Riley et al. (1999): ``sqrt(sum (z_i - z_0)^2)``; Wilson et al. (2007):
    ``mean |z_i - z_0|`` (GDAL's two ``-alg`` choices). Any NaN in the stencil gives NaN.
    """
    hp, wp = z.shape
    h_out = hp - 2 * n
    w_out = wp - 2 * n
    out = np.empty((h_out, w_out), dtype=np.float32)
    for r in range(h_out):
        pr = r + n
        for c in range(w_out):
            pc = c + n
            z0 = float(z[pr, pc])
            acc = 0.0
            for dr in (-n, 0, n):
                for dc in (-n, 0, n):
                    if dr == 0 and dc == 0:
                        continue
                    diff = float(z[pr + dr, pc + dc]) - z0
                    if alg == TRI_RILEY:
                        acc += diff * diff
                    else:
                        acc += abs(diff)
            if alg == TRI_RILEY:
                out[r, c] = math.sqrt(acc)
            else:
                out[r, c] = acc / 8.0
    return out


@njit(nogil=True, cache=True)
def rms_deviation_block(z, n):
    """RMS deviation at lag ``n`` pixels over the ``(2n+1)^2`` window of each pixel.

    ``nu = sqrt(mean (z(p + n) - z(p))^2)`` over every row- and column-wise pair ``n``
    pixels apart with both ends inside the window (Shepard et al. 2001, JGR 106 E12,
    eq. 4). Sums run in a fixed order (row segments, then columns) so the value does not
    depend on the chunking. Any NaN in the window gives NaN.
    """
    hp, wp = z.shape
    h_out = hp - 2 * n
    w_out = wp - 2 * n
    out = np.empty((h_out, w_out), dtype=np.float32)
    # row-wise pairs: seg_h[r, c] = sum over starts c..c+n of (z[r, s+n] - z[r, s])^2
    seg_h = np.empty((hp, w_out), dtype=np.float64)
    for r in range(hp):
        for c in range(w_out):
            acc = 0.0
            for s in range(c, c + n + 1):
                dz = float(z[r, s + n]) - float(z[r, s])
                acc += dz * dz
            seg_h[r, c] = acc
    # column-wise pairs: seg_v[r, c] = sum over starts r..r+n of (z[s+n, c] - z[s, c])^2
    seg_v = np.empty((h_out, wp), dtype=np.float64)
    for r in range(h_out):
        for c in range(wp):
            acc = 0.0
            for s in range(r, r + n + 1):
                dz = float(z[s + n, c]) - float(z[s, c])
                acc += dz * dz
            seg_v[r, c] = acc
    pairs = 2.0 * (n + 1) * (2 * n + 1)
    for r in range(h_out):
        for c in range(w_out):
            acc = 0.0
            for rr in range(r, r + 2 * n + 1):
                acc += seg_h[rr, c]
            for cc in range(c, c + 2 * n + 1):
                acc += seg_v[r, cc]
            out[r, c] = math.sqrt(acc / pairs)
    return out


@njit(nogil=True, cache=True)
def tan_slope_block(z, row0, col0, n, method, mode, x0, y0, a, e, radius, cos_lat_ts):
    """``tan(slope)`` of a padded block: the hot loop of :func:`prospect.terrain.slope_deg`.

    Same stencils and ground metric as :func:`gradient_block`, arranged so the inner loop
    has no branches and vectorises: per row, the metric reduces to ``sx``, ``sy`` (inverse
    ground step times stencil weight) and, on polar grids, the scale factor
    ``k = 1 + (x^2 + y^2) / (4 R^2)`` multiplies both. NaN anywhere in the stencil or at
    the centre propagates arithmetically. The caller takes ``atan`` (numpy's SIMD one).
    """
    hp, wp = z.shape
    h_out = hp - 2 * n
    w_out = wp - 2 * n
    out = np.empty((h_out, w_out), dtype=np.float32)
    polar = mode in (POLAR_SOUTH, POLAR_NORTH)
    cpol = 1.0 / (4.0 * radius * radius) if polar else 0.0
    kx = np.empty(w_out, dtype=np.float64)  # 1 + x^2 / (4 R^2) on polar grids, else 1
    for c in range(w_out):
        x = x0 + (col0 + c + 0.5) * a
        kx[c] = 1.0 + x * x * cpol
    weight = 8.0 if method == HORN else 2.0
    m = 2 * n
    for r in range(h_out):
        y = y0 + (row0 + r + 0.5) * e
        if polar:
            gx = abs(a)
            gy = abs(e)
        else:
            gx, gy, _ = _metric(mode, x0, y0, a, e, radius, cos_lat_ts, row0 + r, 0)
        ky = y * y * cpol
        sx = 1.0 / (weight * n * gx)
        sy = 1.0 / (weight * n * gy)
        top = z[r]
        mid = z[r + n]
        bot = z[r + m]
        o = out[r]
        if method == HORN:
            for c in range(w_out):
                num_x = (float(top[c + m]) + 2.0 * mid[c + m] + bot[c + m]) - (float(top[c]) + 2.0 * mid[c] + bot[c])
                num_y = (float(top[c]) + 2.0 * top[c + n] + top[c + m]) - (
                    float(bot[c]) + 2.0 * bot[c + n] + bot[c + m]
                )
                k = kx[c] + ky
                p = num_x * sx
                q = num_y * sy
                o[c] = k * math.sqrt(p * p + q * q) + 0.0 * mid[c + n]
        else:
            for c in range(w_out):
                num_x = float(mid[c + m]) - float(mid[c])
                num_y = float(top[c + n]) - float(bot[c + n])
                k = kx[c] + ky
                p = num_x * sx
                q = num_y * sy
                o[c] = k * math.sqrt(p * p + q * q) + 0.0 * mid[c + n]
    return out
