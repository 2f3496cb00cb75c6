"""Numba kernels for horizon maps: the convex-hull line sweep and a brute-force reference.

Sampling convention (shared by every kernel here, so the sweep and the line brute force
see *identical* samples and differ only numerically)
-------------------------------------------------------------------------------------
For one azimuth the raster is cut into parallel lines. The *major* axis is the pixel
axis the direction advances along fastest (columns when ``|sin az| / a >= |cos az| / |e|``,
else rows); line ``k`` is ``minor = k + t * major`` for integer ``k``, with ``t`` (|t| <= 1)
the minor pixels per major step. Samples sit at every integer major index ``m``:

* height: linear interpolation along the minor axis between the two pixels the line
  passes (the point lies on a pixel column / row, so this *is* bilinear sampling);
  the minor coordinate is clamped to the raster (edge pixels extend half a pixel), a
  sample touching a NaN pixel with non-zero weight is NaN and is skipped;
* the pixel ``(minor = ceil(y - 0.5), major = m)`` belongs to the line (each pixel to
  exactly one line); its observer sits at that line point (at most half a pixel off its
  centre, perpendicular to the view) at the line's interpolated height there (the
  pixel's own height if that sample is NaN; NaN pixels get NaN). Taking the pixel's own
  height instead biases near sight lines by (cross slope x offset / r): measured against
  rays from exact pixel centres on smooth terrain, p95 error 1.8 deg vs 0.6 deg;
* ground distance along the line: ``sigma`` (below).

Ground distance on polar stereographic grids (IAU_2015:30130/30135, k0 = 1, pole at the
map origin): the scale factor ``k = 1 + rho^2 / (4 R^2)`` (Snyder 1987 eq. 21-4) is
integrated exactly along the straight map line: with ``s`` the map distance along the
line, ``s_c`` its point closest to the pole and ``d`` its distance from the pole,
``A = sqrt(4 R^2 + d^2)``::

    sigma(s) = integral ds / k = (4 R^2 / A) * atan((s - s_c) / A)

the ground length of the mapped path; to first order it is map distance divided by
``k`` at the observer (more exactly, by ``k`` at the midpoint). A straight map line is
not quite a great circle (geodesic curvature ``|grad ln k| ~ rho / 2R^2``): at 80 deg and
150 km its length exceeds the great-circle distance by ~2e-6 and its direction turns by
~0.2 deg, both ignored. ``sigma`` being one coordinate per line is what lets the
curvature term be absorbed exactly (see :func:`_sweep_line`). Planar mode uses map metres.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

PLANAR, POLAR = 0, 1
DEGREES, TANGENT, FAR = 0, 1, 2  # output forms of horizon_sweep_window


_TAN_PI_12 = 0.2679491924311227
#: ``sigma``'s ``atan(x)`` is summed as ``x - x^3/3 + ... + x^9/9`` where ``|x| <= 0.05`` along the
#: whole line (map lines within ~170 km of the pole): the next term is below
#: ``0.05^11 / 11 = 4.4e-16``, ~1.5e-9 m of ground distance
SERIES_MAX_X = 0.05
_INV_SQRT3 = 0.5773502691896258


@njit(nogil=True, cache=True, inline="always")
def fast_atan(x):
    """``atan(x)`` to 3e-10 rad, ~3x faster than libm's (it runs once per pixel and sample).

    Range reduction ``atan(x) = pi/2 - atan(1/x)`` for ``|x| > 1`` and
    ``atan(x) = pi/6 + atan((x - 1/sqrt3) / (1 + x/sqrt3))`` for ``x > tan(pi/12)``
    leaves ``|y| <= tan(pi/12) = 0.268``, where the Taylor series to ``y^13`` errs by
    less than ``y^15 / 15 = 2.6e-10`` (Abramowitz & Stegun 4.4.42; Hart et al. 1968,
    *Computer Approximations*, section 6.5). NaN stays NaN, +-inf gives +-pi/2.
    """
    ax = abs(x)
    big = ax > 1.0
    if big:
        ax = 1.0 / ax
    off = 0.0
    if ax > _TAN_PI_12:
        ax = (ax - _INV_SQRT3) / (1.0 + _INV_SQRT3 * ax)
        off = math.pi / 6.0
    y2 = ax * ax
    p = ax * (
        1.0
        + y2 * (-1.0 / 3.0 + y2 * (0.2 + y2 * (-1.0 / 7.0 + y2 * (1.0 / 9.0 + y2 * (-1.0 / 11.0 + y2 * (1.0 / 13.0))))))
    )
    r = off + p
    if big:
        r = 0.5 * math.pi - r
    return -r if x < 0.0 else r


@njit(nogil=True, cache=True, inline="always")
def atan_series(x):
    """``atan(x)`` for ``|x| <= SERIES_MAX_X``: ``x - x^3/3 + x^5/5 - x^7/7 + x^9/9``, no branch."""
    x2 = x * x
    return x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (0.2 + x2 * (-1.0 / 7.0 + x2 * (1.0 / 9.0)))))


@njit(nogil=True, cache=True)
def _geometry(az_rad, a, e, ny, nx):
    """Line family of one azimuth: (swap, M, N, sign, t, vx, vy).

    ``swap`` False: major axis = columns. ``M``/``N`` major/minor sizes, ``sign`` +1 when
    the view runs toward increasing major index, ``t`` minor pixels per major step,
    ``(vx, vy)`` the map displacement of one +1 major step along a line.
    Azimuth is clockwise from grid up (+y): direction ``(sin az, cos az)`` in map x, y.
    """
    dc = math.sin(az_rad) / a  # columns per map metre
    dr = math.cos(az_rad) / e  # rows per map metre (e < 0: north is toward row 0)
    # cardinal azimuths: sin/cos of a multiple of pi/2 is ~1e-16, not 0; snap it, or
    # the line-range arithmetic below divides by ~1e-17 (and int() overflows)
    if abs(dc) < 1e-12 * abs(dr):
        dc = 0.0
    if abs(dr) < 1e-12 * abs(dc):
        dr = 0.0
    if abs(dc) >= abs(dr):
        t = dr / dc
        sign = 1 if dc > 0 else -1
        return False, nx, ny, sign, t, a, e * t
    t = dc / dr
    sign = 1 if dr > 0 else -1
    return True, ny, nx, sign, t, a * t, e


@njit(nogil=True, cache=True)
def _pixel(z, swap, minor, major):
    if swap:
        return z[major, minor]
    return z[minor, major]


@njit(nogil=True, cache=True)
def _line_samples(
    z, swap, M, N, sign, t, vx, vy, k, mode, x0, y0, a, e, radius, sig, hgt, zobs, pmin, pmaj, mlo=0, mhi=-1
):
    """Fill the samples of line ``k`` in view order; returns their number ``n``.

    ``sig`` ground distance along the line (increasing in the view direction, 0 at the
    first sample), ``hgt`` interpolated height (NaN = no sample), ``zobs`` the observer
    height of the pixel the line owns there (``pmin``, ``pmaj`` its minor / major index).
    Only major indices in ``[mlo, mhi]`` are sampled (``mhi < 0``: up to ``M - 1``).
    """
    if mhi < 0:
        mhi = M - 1
    # major range where the line is inside the raster: minor in (-0.5, N - 0.5]
    if t == 0.0:
        if k < 0 or k > N - 1:
            return 0
        lo, hi = mlo, mhi
    else:
        m1 = (-0.5 - k) / t
        m2 = (N - 0.5 - k) / t
        # clamp in floating point before int(): |t| can be small enough to overflow int64
        flo = max(float(mlo), math.floor(min(m1, m2)) - 1.0)
        fhi = min(float(mhi), math.ceil(max(m1, m2)) + 1.0)
        if flo > fhi:
            return 0
        lo, hi = int(flo), int(fhi)
    # line origin (major index 0) in map coordinates, unit direction along +major
    if swap:
        px0 = x0 + (k + 0.5) * a
        py0 = y0 + 0.5 * e
    else:
        px0 = x0 + 0.5 * a
        py0 = y0 + (k + 0.5) * e
    L = math.sqrt(vx * vx + vy * vy)
    ux, uy = vx / L, vy / L
    A, C, sc = 1.0, 1.0, 0.0
    if mode == POLAR:
        pu = px0 * ux + py0 * uy
        d2 = px0 * px0 + py0 * py0 - pu * pu
        d2 = max(d2, 0.0)
        A = math.sqrt(4.0 * radius * radius + d2)
        C = 4.0 * radius * radius / A
        sc = -pu
    inv_a = 1.0 / A
    # lines near the pole (|x| <= SERIES_MAX_X all along): atan(x) by its short series
    series = mode == POLAR and max(abs(lo * L - sc), abs(hi * L - sc)) * inv_a <= SERIES_MAX_X
    n = 0
    sig_first = 0.0
    count = hi - lo + 1
    for i in range(count):
        m = lo + i if sign > 0 else hi - i
        y = k + t * m
        if not (y > -0.5 and y <= N - 0.5):
            continue
        s = m * L
        if series:
            g = C * atan_series((s - sc) * inv_a)
        elif mode == POLAR:
            g = C * fast_atan((s - sc) * inv_a)
        else:
            g = s
        g = g * sign
        if n == 0:
            sig_first = g
        sig[n] = g - sig_first
        yc = min(max(y, 0.0), N - 1.0)
        i0 = int(math.floor(yc))
        w = yc - i0
        if i0 >= N - 1:
            i0 = N - 1
            w = 0.0
        if w == 0.0:
            h = _pixel(z, swap, i0, m)
        else:
            h = (1.0 - w) * _pixel(z, swap, i0, m) + w * _pixel(z, swap, i0 + 1, m)
        hgt[n] = h
        p = int(math.ceil(y - 0.5))
        pmin[n] = p
        pmaj[n] = m
        # the observer stands on the line, at the line's height there: using the pixel's
        # own height would tilt every sight line by (cross slope) x (offset) / r. Pixel
        # p is one of the two interpolated, so a valid h implies a valid pixel.
        if h == h:
            zobs[n] = h
        else:
            zobs[n] = _pixel(z, swap, p, m)
        n += 1
    return n


@njit(nogil=True, cache=True)
def _k_range(t, M, N):
    """Integer line offsets ``k`` whose line ``k + t m`` can meet the raster."""
    span = t * (M - 1)
    kmin = int(math.floor(-0.5 - max(0.0, span))) - 1
    kmax = int(math.ceil(N - 0.5 - min(0.0, span))) + 1
    return kmin, kmax


@njit(nogil=True, cache=True, inline="always")
def _past_peak(hs, hg, size, reverse, i, s0, g0):
    """Whether the slope from ``(s0, g0)`` to hull vertex ``i + 1`` (left to right) is no larger
    than to vertex ``i``: ``(g2 - g0)(s1 - s0) <= (g1 - g0)(s2 - s0)``, the denominators positive."""
    if reverse:
        k1, k2 = size - 1 - i, size - 2 - i
    else:
        k1, k2 = i, i + 1
    return (hg[k2] - g0) * (hs[k1] - s0) <= (hg[k1] - g0) * (hs[k2] - s0)


@njit(nogil=True, cache=True)
def _tangent(hs, hg, size, reverse, s0, g0):
    """Largest slope from ``(s0, g0)`` (left of every vertex) to an upper hull, and its vertex.

    Vertices left to right are ``hs[0..size-1]`` (``reverse`` False) or
    ``hs[size-1..0]`` (``reverse`` True); returns ``(slope, storage index)``. Slopes from a
    point left of a concave chain are unimodal in the vertex index, so the peak is the first
    index :func:`_past_peak` holds for; neighbouring slopes are compared by cross-multiplication,
    so a query costs one division.
    """
    # gallop from the near end (the tangent vertex is usually one of the first few: terrain
    # close to the observer), then bisect the bracket: the same first index as a plain
    # bisection of the whole hull, so the same vertex
    lo, hi = 0, size - 1
    step = 1
    while lo + step <= hi:
        mid = lo + step - 1
        if _past_peak(hs, hg, size, reverse, mid, s0, g0):
            hi = mid
            break
        lo = mid + 1
        step *= 2
    while lo < hi:
        mid = (lo + hi) // 2
        if _past_peak(hs, hg, size, reverse, mid, s0, g0):
            hi = mid
        else:
            lo = mid + 1
    k = size - 1 - lo if reverse else lo
    return (hg[k] - g0) / (hs[k] - s0), k


@njit(nogil=True, cache=True, inline="always")
def _push_left(ss, sg, ssz, s, g):
    """Add ``(s, g)`` at the left end of an upper hull stored right to left; returns its new size.

    Vertices on or below the chord from the new point to the vertex beyond them are
    popped first (``ss[ssz - 1]`` is the leftmost vertex).
    """
    while ssz >= 2:
        sb, gb = ss[ssz - 1], sg[ssz - 1]
        sa, ga = ss[ssz - 2], sg[ssz - 2]
        if (gb - g) * (sa - sb) <= (ga - gb) * (sb - s):
            ssz -= 1
        else:
            break
    ss[ssz] = s
    sg[ssz] = g
    return ssz + 1


@njit(nogil=True, cache=True)
def _first_in_block(sig, n, inv_width, block):
    """First index ``i`` in ``[0, n]`` with ``floor(sig[i] * inv_width) >= block`` (sig increasing)."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if math.floor(sig[mid] * inv_width) >= block:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(nogil=True, cache=True)
def _sweep_line(
    n, sig, hgt, zobs, radius, dmin, dmax, jlo, jhi, res, dist, ss, sg, ps, pg, lsize, lpos, lold_s, lold_g
):
    """Horizon tangents of observers ``jlo..jhi`` of one line (samples in view order).

    Curvature absorbed exactly: observer at ``s0`` with height ``z0``, target at
    ``s > s0`` with height ``h``, ``r = s - s0``. With ``g(s) = h - s^2 / (2R)`` and
    ``g0 = z0 - s0^2 / (2R)``::

        h - z0 - r^2/(2R) = g - g0 + (s^2 - s0^2)/(2R) - (s - s0)^2/(2R)
                          = g - g0 + s0 (s - s0) / R
        tan(angle) = max_s (g - g0) / (s - s0)  +  s0 / R

    The max is the tangent from ``(s0, g0)`` to the upper convex hull of the ``(s, g)``
    targets with ``dmin < s - s0 <= dmax`` (an annulus: ``dmin = 0`` for the whole
    view, ``dmin > 0`` for a far field). With ``W = dmax - dmin``, targets are cut into
    blocks ``floor(s / W)``; the window ``(u, u + W]``, ``u = s0 + dmin``, meets block
    ``b = floor(u / W)`` in a suffix, an upper hull grown right to left as the sweep
    walks backward and ``u`` decreases, and block ``b + 1`` in a prefix, whose hull is
    built left to right once with an undo log and rolled back as ``u + W`` moves left.
    O(n) hull updates per line plus two galloping tangent queries per observer.
    ``res`` gets ``tan(angle)`` and ``dist`` the ground distance ``r`` of the tangent
    target, or NaN without any valid target in the annulus or with a NaN observer.
    """
    inv2r = 0.5 / radius
    inv_width = 1.0 / (dmax - dmin)  # block index floor(s * inv_width), one expression for all
    have = False
    cur_b = 0.0
    ti = 0
    ssz = 0
    psz = 0
    q = -1
    nxt_start = 0
    for j in range(jhi, jlo - 1, -1):
        s0 = sig[j]
        u = s0 + dmin
        bu = math.floor(u * inv_width)
        if not have or bu != cur_b:
            have = True
            cur_b = bu
            nxt_start = _first_in_block(sig, n, inv_width, bu + 1.0)
            nxt_end = _first_in_block(sig, n, inv_width, bu + 2.0)
            # prefix hull of block b + 1, left to right, with an undo log
            psz = 0
            for qq in range(nxt_start, nxt_end):
                h = hgt[qq]
                if h != h:
                    lpos[qq] = -1
                    continue
                s = sig[qq]
                g = h - s * s * inv2r
                lsize[qq] = psz
                while psz >= 2:
                    sa, ga = ps[psz - 2], pg[psz - 2]
                    sb, gb = ps[psz - 1], pg[psz - 1]
                    if (gb - ga) * (s - sb) <= (g - gb) * (sb - sa):
                        psz -= 1
                    else:
                        break
                lpos[qq] = psz
                lold_s[qq] = ps[psz]
                lold_g[qq] = pg[psz]
                ps[psz] = s
                pg[psz] = g
                psz += 1
            q = nxt_end - 1
            ssz = 0
            ti = nxt_start
        # suffix hull of block b: insert every target beyond u at its left end
        while ti > 0 and sig[ti - 1] > u:
            ti -= 1
            h = hgt[ti]
            if h == h:
                s = sig[ti]
                ssz = _push_left(ss, sg, ssz, s, h - s * s * inv2r)
        # prefix hull of block b + 1: roll back the targets beyond s0 + dmax
        cutoff = s0 + dmax
        while q >= nxt_start and sig[q] > cutoff:
            pos = lpos[q]
            if pos >= 0:
                ps[pos] = lold_s[q]
                pg[pos] = lold_g[q]
                psz = lsize[q]
            q -= 1
        z0 = zobs[j]
        best = -np.inf
        bs = 0.0
        if z0 == z0:
            g0 = z0 - s0 * s0 * inv2r
            if dmin == 0.0 and ti == j + 1 and hgt[j] == z0:
                # the observer is itself the next target (dmin = 0, no mast): insert it;
                # the hull edge leaving it is the tangent, with no search
                ti = j
                ssz = _push_left(ss, sg, ssz, s0, g0)
                if ssz >= 2:
                    best = (sg[ssz - 2] - g0) / (ss[ssz - 2] - s0)
                    bs = ss[ssz - 2]
            elif ssz > 0:
                v, kk = _tangent(ss, sg, ssz, True, s0, g0)
                if v > best:
                    best = v
                    bs = ss[kk]
            if psz > 0:
                v, kk = _tangent(ps, pg, psz, False, s0, g0)
                if v > best:
                    best = v
                    bs = ps[kk]
        if best > -np.inf:
            res[j] = best + s0 / radius
            dist[j] = bs - s0
        else:
            res[j] = np.nan
            dist[j] = np.nan


@njit(nogil=True, cache=True)
def _window_axes(swap, row0, col0, wr, wc):
    """The window's major and minor index ranges ``(wm0, wm1, wn0, wn1)``."""
    if swap:
        return row0, row0 + wr, col0, col0 + wc
    return col0, col0 + wc, row0, row0 + wr


@njit(nogil=True, cache=True)
def _line_offsets(t, wm0, wm1, wn0, wn1, swap, grow0, gcol0):
    """Lines ``k + phase`` (``kmin <= k <= kmax``) whose owned pixels can fall in the window's minor
    range; ``phase`` puts them on the lines of the larger raster at ``(grow0, gcol0)``."""
    ta, tb = t * wm0, t * (wm1 - 1)
    kmin = int(math.floor(wn0 - 1.5 - max(ta, tb)))
    kmax = int(math.ceil(wn1 + 0.5 - min(ta, tb)))
    # line k of the full raster, minor_g = k + t major_g, is minor = k - n_off + t m_off + t major here
    goff = t * (grow0 if swap else gcol0)
    return kmin, kmax, goff - math.floor(goff)


@njit(nogil=True, cache=True)
def _sweep_observers(
    n, sig, hgt, zobs, pmin, pmaj, window, swap, obs_height, radius, dmin, dmax, work, form, out, out_b
):
    """Sweep one line's samples (in view order) for the observers it owns in ``window``
    (``wm0, wm1, wn0, wn1``) and write their horizons; ``zobs`` gets the mast height added.
    ``work``: the sweep's scratch arrays (:func:`_sweep_work`)."""
    wm0, wm1, wn0, wn1 = window
    res, dist, ss, sg, ps, pg, lsize, lpos, lold_s, lold_g = work
    # observers in the window: samples are in view order, so they are one run
    jlo, jhi = -1, -1
    for j in range(n):
        m = pmaj[j]
        p = pmin[j]
        if m >= wm0 and m < wm1 and p >= wn0 and p < wn1:
            if jlo < 0:
                jlo = j
            jhi = j
    if jlo < 0:
        return
    if obs_height != 0.0:
        for j in range(jlo, jhi + 1):
            zobs[j] += obs_height
    _sweep_line(n, sig, hgt, zobs, radius, dmin, dmax, jlo, jhi, res, dist, ss, sg, ps, pg, lsize, lpos, lold_s, lold_g)
    deg = 180.0 / math.pi
    for j in range(jlo, jhi + 1):
        p = pmin[j] - wn0
        m = pmaj[j] - wm0
        if p < 0 or p >= wn1 - wn0 or m < 0 or m >= wm1 - wm0:
            continue
        v = res[j]
        if form == FAR:
            if v == v:
                bb = 1.0 / dist[j]
                v = v + zobs[j] * bb
            else:
                bb = np.nan
            if swap:
                out[m, p] = v
                out_b[m, p] = bb
            else:
                out[p, m] = v
                out_b[p, m] = bb
            continue
        if form == DEGREES and v == v:
            v = fast_atan(v) * deg
        if swap:
            out[m, p] = v
        else:
            out[p, m] = v


@njit(nogil=True, cache=True)
def _sweep_work(M):
    """Scratch arrays of :func:`_sweep_line` for lines of up to ``M`` samples."""
    return (
        np.empty(M),
        np.empty(M),
        np.empty(M + 1),
        np.empty(M + 1),
        np.empty(M + 1),
        np.empty(M + 1),
        np.empty(M, dtype=np.int64),
        np.empty(M, dtype=np.int64),
        np.empty(M),
        np.empty(M),
    )


@njit(nogil=True, cache=True)
def horizon_sweep_window(
    z, az_rad, mode, x0, y0, a, e, radius, dmin, dmax, obs_height, row0, col0, out, out_b, form, grow0=0, gcol0=0
):
    """Horizon of the observers in one window of ``z`` toward one azimuth.

    The window is ``out.shape`` pixels from ``(row0, col0)``; the rest of ``z`` is halo
    (terrain that may be seen, no output). Only lines through the window are swept, and
    each only from the window's near edge onward. Targets in the annulus
    ``dmin < r <= dmax`` [m].

    ``(grow0, gcol0)`` is the position of ``z[0, 0]`` in a larger raster ``z`` is a window
    of: the lines are then that raster's lines (same samples whichever window is swept,
    so neighbouring tiles agree to rounding).

    ``form`` :data:`DEGREES`: ``out`` gets the horizon elevation [deg] (float32;
    ``out_b`` unused). :data:`TANGENT`: ``out`` gets ``tan(angle)``.
    :data:`FAR`: the far-field form for a multi-resolution combination: ``out`` gets
    ``A = tan(angle) + z0 / r*`` and ``out_b`` gets ``B = 1 / r*``, with ``z0`` the
    observer height used and ``r*`` the distance of the tangent target, so an observer at
    height ``z`` nearby sees ``tan(angle) ~ A - z B`` (first order in the height, exact
    if the tangent target stays the same).
    """
    ny, nx = z.shape
    swap, M, N, sign, t, vx, vy = _geometry(az_rad, a, e, ny, nx)
    window = _window_axes(swap, row0, col0, out.shape[0], out.shape[1])
    # samples from the window's near edge to the raster's far edge (in view order)
    if sign > 0:
        mlo, mhi = window[0], M - 1
    else:
        mlo, mhi = 0, window[1] - 1
    sig = np.empty(M)
    hgt = np.empty(M)
    zobs = np.empty(M)
    pmin = np.empty(M, dtype=np.int64)
    pmaj = np.empty(M, dtype=np.int64)
    work = _sweep_work(M)
    kmin, kmax, phase = _line_offsets(t, window[0], window[1], window[2], window[3], swap, grow0, gcol0)
    for kk in range(kmin, kmax + 1):
        n = _line_samples(
            z, swap, M, N, sign, t, vx, vy, kk + phase, mode, x0, y0, a, e, radius, sig, hgt, zobs, pmin, pmaj, mlo, mhi
        )
        if n > 0:
            _sweep_observers(
                n, sig, hgt, zobs, pmin, pmaj, window, swap, obs_height, radius, dmin, dmax, work, form, out, out_b
            )


@njit(nogil=True, cache=True)
def horizon_sweep_window_pair(
    z,
    az_rad,
    mode,
    x0,
    y0,
    a,
    e,
    radius,
    dmin,
    dmax,
    obs_height,
    row0,
    col0,
    out,
    out_b,
    rout,
    rout_b,
    form,
    grow0=0,
    gcol0=0,
):
    """:func:`horizon_sweep_window` toward ``az_rad`` (into ``out``, ``out_b``) and toward the
    opposite azimuth ``az_rad + pi`` (into ``rout``, ``rout_b``) at once.

    Opposite azimuths cut the raster into the same lines and sample them at the same points, only
    in reverse order, so each line is sampled once (over its whole length) and swept both ways:
    the reverse view's distances are ``sig[n - 1] - sig[n - 1 - i]``, the same to rounding
    (~1e-9 m) as sampling it on its own.
    """
    ny, nx = z.shape
    swap, M, N, sign, t, vx, vy = _geometry(az_rad, a, e, ny, nx)
    window = _window_axes(swap, row0, col0, out.shape[0], out.shape[1])
    sig = np.empty(M)
    hgt = np.empty(M)
    zobs = np.empty(M)
    pmin = np.empty(M, dtype=np.int64)
    pmaj = np.empty(M, dtype=np.int64)
    vsig = np.empty(M)
    vhgt = np.empty(M)
    vzobs = np.empty(M)
    vpmin = np.empty(M, dtype=np.int64)
    vpmaj = np.empty(M, dtype=np.int64)
    work = _sweep_work(M)
    kmin, kmax, phase = _line_offsets(t, window[0], window[1], window[2], window[3], swap, grow0, gcol0)
    for kk in range(kmin, kmax + 1):
        # samples in increasing major index: the view of the direction with sign +1
        n = _line_samples(
            z, swap, M, N, 1, t, vx, vy, kk + phase, mode, x0, y0, a, e, radius, sig, hgt, zobs, pmin, pmaj, 0, M - 1
        )
        if n == 0:
            continue
        last = sig[n - 1]
        for i in range(n):
            q = n - 1 - i
            vsig[i] = last - sig[q]
            vhgt[i] = hgt[q]
            vzobs[i] = zobs[q]
            vpmin[i] = pmin[q]
            vpmaj[i] = pmaj[q]
        if sign > 0:
            fo, fb, ro, rb = out, out_b, rout, rout_b
        else:
            fo, fb, ro, rb = rout, rout_b, out, out_b
        # the reversed view first: the forward sweep adds the mast height to zobs in place
        _sweep_observers(
            n, vsig, vhgt, vzobs, vpmin, vpmaj, window, swap, obs_height, radius, dmin, dmax, work, form, ro, rb
        )
        _sweep_observers(
            n, sig, hgt, zobs, pmin, pmaj, window, swap, obs_height, radius, dmin, dmax, work, form, fo, fb
        )


@njit(nogil=True, cache=True)
def combine_far(near_tan, A, B, ri, rw, ci, cw, zf, obs_height, out):
    """Near and far field into horizon degrees: ``out = atan(max(near, A~ - (z + h) B~))``.

    ``A~``, ``B~`` are the far-field terms (``horizon_sweep_window`` form FAR, computed on
    a coarse grid) interpolated bilinearly at the fine pixel (coarse row ``ri[r] +
    rw[r]``, column ``ci[c] + cw[c]``), ignoring NaN neighbours (no target in the
    annulus); ``z`` the fine pixel's height, ``h`` the observer height. NaN where the
    pixel's height is NaN or neither field has a target. Rows are interpolated once per
    fine row (the coarse grid is ``far_factor`` times smaller), then columns per pixel.
    """
    nr, nc = near_tan.shape
    ncc = A.shape[1]
    deg = 180.0 / math.pi
    ra = np.empty(ncc)
    rb = np.empty(ncc)
    last = -1
    last_w = -1.0
    for r in range(nr):
        i0 = ri[r]
        wy = rw[r]
        if i0 != last or wy != last_w:
            last, last_w = i0, wy
            for j in range(ncc):
                a0 = A[i0, j]
                b0 = B[i0, j]
                if wy > 0.0:
                    a1 = A[i0 + 1, j]
                    b1 = B[i0 + 1, j]
                    if a0 != a0:
                        a0, b0 = a1, b1
                    elif a1 == a1:
                        a0 = a0 + wy * (a1 - a0)
                        b0 = b0 + wy * (b1 - b0)
                ra[j] = a0
                rb[j] = b0
        zrow = zf[r]
        nrow = near_tan[r]
        orow = out[r]
        for c in range(nc):
            z = zrow[c]
            if z != z:
                orow[c] = np.nan
                continue
            j0 = ci[c]
            wx = cw[c]
            av = ra[j0]
            bv = rb[j0]
            if wx > 0.0:
                a1 = ra[j0 + 1]
                if av != av:
                    av, bv = a1, rb[j0 + 1]
                elif a1 == a1:
                    av = av + wx * (a1 - av)
                    bv = bv + wx * (rb[j0 + 1] - bv)
            best = nrow[c]
            if av == av:
                f = av - (z + obs_height) * bv
                if not (best >= f):
                    best = f
            orow[c] = fast_atan(best) * deg if best == best else np.nan


@njit(nogil=True, cache=True)
def horizon_sweep(z, az_rad, mode, x0, y0, a, e, radius, dmax, obs_height, out):
    """Horizon elevation [deg] of every pixel of ``z`` toward one azimuth into ``out`` (float32).

    ``obs_height`` [m] raises every observer above the surface (a mast); the terrain
    ahead is unchanged.
    """
    horizon_sweep_window(z, az_rad, mode, x0, y0, a, e, radius, 0.0, dmax, obs_height, 0, 0, out, out, DEGREES)


@njit(nogil=True, cache=True)
def horizon_brute_lines(z, az_rad, mode, x0, y0, a, e, radius, dmax, out, dmin=0.0):
    """Reference on the sweep's own samples: every observer marches every sample ahead.

    Evaluates ``atan((h - z0 - r^2 / (2R)) / r)`` directly (no hull, no change of
    variables) over ``dmin < r <= dmax``, O(samples within dmax) per pixel.
    """
    ny, nx = z.shape
    swap, M, N, sign, t, vx, vy = _geometry(az_rad, a, e, ny, nx)
    sig = np.empty(M)
    hgt = np.empty(M)
    zobs = np.empty(M)
    pmin = np.empty(M, dtype=np.int64)
    pmaj = np.empty(M, dtype=np.int64)
    kmin, kmax = _k_range(t, M, N)
    deg = 180.0 / math.pi
    for k in range(kmin, kmax + 1):
        n = _line_samples(z, swap, M, N, sign, t, vx, vy, k, mode, x0, y0, a, e, radius, sig, hgt, zobs, pmin, pmaj)
        for j in range(n):
            z0 = zobs[j]
            best = -np.inf
            if z0 == z0:
                cutoff = sig[j] + dmax
                for jj in range(j + 1, n):
                    if sig[jj] > cutoff:
                        break
                    h = hgt[jj]
                    if h != h:
                        continue
                    r = sig[jj] - sig[j]
                    if r <= dmin:
                        continue
                    v = (h - z0 - r * r / (2.0 * radius)) / r
                    best = max(best, v)
            v = math.atan(best) * deg if best > -np.inf else np.nan
            if swap:
                out[pmaj[j], pmin[j]] = v
            else:
                out[pmin[j], pmaj[j]] = v


@njit(nogil=True, cache=True)
def _bilinear(z, r, c):
    """Bilinear height at fractional (row, col); NaN outside (-0.5, size - 0.5] or next to NaN."""
    ny, nx = z.shape
    if not (r > -0.5 and r <= ny - 0.5 and c > -0.5 and c <= nx - 0.5):
        return np.nan
    rc = min(max(r, 0.0), ny - 1.0)
    cc = min(max(c, 0.0), nx - 1.0)
    r0 = int(math.floor(rc))
    c0 = int(math.floor(cc))
    wr = rc - r0
    wc = cc - c0
    if r0 >= ny - 1:
        r0 = ny - 1
        wr = 0.0
    if c0 >= nx - 1:
        c0 = nx - 1
        wc = 0.0
    v = z[r0, c0] * (1.0 - wr) * (1.0 - wc)
    if wc > 0.0:
        v += z[r0, c0 + 1] * (1.0 - wr) * wc
    if wr > 0.0:
        v += z[r0 + 1, c0] * wr * (1.0 - wc)
        if wc > 0.0:
            v += z[r0 + 1, c0 + 1] * wr * wc
    return v


@njit(nogil=True, cache=True)
def horizon_brute_ray(z, az_rad, mode, x0, y0, a, e, radius, dmax, step_px, out):
    """Independent reference: a ray from every pixel *centre*, bilinear heights every ``step_px``.

    Steps are ``step_px * min(|a|, |e|)`` map metres; ground distance is ``sigma``
    along the ray (the same exact integral of 1/k as the sweep's lines).
    """
    ny, nx = z.shape
    ux, uy = math.sin(az_rad), math.cos(az_rad)
    step = step_px * min(abs(a), abs(e))
    nmax = int(math.ceil(math.sqrt((nx * a) ** 2 + (ny * e) ** 2) / step)) + 2
    deg = 180.0 / math.pi
    for row in range(ny):
        for col in range(nx):
            z0 = z[row, col]
            best = -np.inf
            if z0 == z0:
                px = x0 + (col + 0.5) * a
                py = y0 + (row + 0.5) * e
                pu, A, C, sig0 = 0.0, 1.0, 1.0, 0.0
                if mode == POLAR:
                    pu = px * ux + py * uy
                    d2 = max(px * px + py * py - pu * pu, 0.0)
                    A = math.sqrt(4.0 * radius * radius + d2)
                    C = 4.0 * radius * radius / A
                    sig0 = C * math.atan(pu / A)
                for i in range(1, nmax):
                    s = i * step
                    if mode == POLAR:
                        r = C * math.atan((s + pu) / A) - sig0
                    else:
                        r = s
                    if r > dmax:
                        break
                    xs = px + s * ux
                    ys = py + s * uy
                    cc = (xs - x0) / a - 0.5
                    rr = (ys - y0) / e - 0.5
                    if not (rr > -0.5 and rr <= ny - 0.5 and cc > -0.5 and cc <= nx - 0.5):
                        break
                    h = _bilinear(z, rr, cc)
                    if h != h:
                        continue
                    v = (h - z0 - r * r / (2.0 * radius)) / r
                    best = max(best, v)
            out[row, col] = math.atan(best) * deg if best > -np.inf else np.nan
