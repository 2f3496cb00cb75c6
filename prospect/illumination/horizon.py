"""Horizon maps of a lunar DEM: the elevation angle of the skyline toward every azimuth.

For pixel ``p`` and grid azimuth ``u`` (``docs/science.md`` section 3)::

    horizon(p, u) = max over 0 < r <= max_distance of atan((h(p + r u) - h(p) - r^2 / (2R)) / r)

with ``R`` the lunar radius (:data:`prospect.lunar.MOON_RADIUS_M`, or the grid CRS's) and
``r`` the ground distance; the curvature drop ``r^2 / 2R`` is always included (2.9 km at
100 km).

Azimuth convention
    Degrees clockwise from grid up (map +y, "map north" of the north-up raster): 0 = up,
    90 = +x (right), 180 = down, 270 = -x. On a polar stereographic grid this is *not*
    geographic azimuth (grid up is a fixed meridian, not north); callers convert Sun /
    Earth directions into grid azimuths at each pixel. The projection is conformal, so
    an angle measured at the observer is the same on the map and on the ground.

Ground distance
    Along each straight map line the scale factor ``k = 1 + rho^2/(4R^2)`` is integrated
    exactly (``sigma = integral ds / k``, :mod:`prospect.illumination._horizon_kernels`),
    which to first order is the map distance divided by ``k`` at the observer. A straight
    map line is close to a great circle near the pole (at 80 deg and 150 km it is ~2e-6
    longer and bends by ~0.2 deg); that difference is ignored. ``planar=True`` uses map
    metres as ground metres.

Method
    Convex-hull line sweep (after Dozier, Bruno & Downey 1981, Computers & Geosciences 7,
    145-151, and the horizon sweeps of GRASS ``r.horizon``-style tools): for each azimuth
    the raster is walked along parallel lines at one sample per major-axis pixel
    (bilinear heights), backward from the far end, keeping the upper convex hull of the
    points ahead; the curvature term is absorbed exactly into the hull coordinates and
    ``max_distance`` is honoured exactly with a block decomposition (see
    ``_sweep_line``). An observer on the surface is itself the next point the hull
    takes in, so its horizon is the hull edge leaving it: amortised O(1) per pixel and
    azimuth, independent of ``max_distance``. An observer above the surface (a mast) or
    a far-field annulus needs a binary search on the hull (O(log hull size)).

Limitations
    * :func:`horizon_angles` computes the whole DEM in memory (dask input is loaded);
      large DEMs go through :class:`prospect.illumination.tiles.TiledHorizon` (tiles
      with a halo, multi-resolution far field), which uses the same kernel.
    * Near the raster edge the terrain beyond it is unknown: the horizon there is a lower
      bound; a pixel with no sample at all ahead (looking off the edge) is NaN.
    * Each observer sits on its line up to half a pixel from its centre, perpendicular to
      the view direction, at the line's interpolated height, and the nearest sample is
      one major-axis pixel away (the sweep's sampling convention). Against rays from
      exact pixel centres (``horizon_brute_force(..., sampling="ray")``) this costs
      ~0.1 deg median / ~0.6 deg p95 on smooth terrain, more near pixel-scale roughness,
      where near-field horizons depend on sub-pixel sampling anyway.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
import xarray as xr

from prospect.errors import ConfigError, GridError
from prospect.grid import AnalysisGrid
from prospect.illumination import _horizon_kernels as K
from prospect.terrain.metric import PLANAR, POLAR_NORTH, POLAR_SOUTH, ground_metric, heights_in_metres

#: The kernels' geometry code of a polar stereographic grid (the first of :func:`kernel_geometry`'s values).
POLAR_KERNEL = K.POLAR

METHOD = (
    "convex-hull line sweep (Dozier et al. 1981): parallel lines per azimuth, one bilinear sample per "
    "major-axis pixel, upper hull of (s, h - s^2/2R), exact max_distance by block decomposition"
)


def resolve_azimuths(azimuths_deg: Sequence[float] | np.ndarray | float | None, n_azimuths: int) -> np.ndarray:
    """The azimuths [deg] to sweep: ``azimuths_deg`` as float64, or ``n_azimuths`` evenly spaced from 0.

    A bad value is a :class:`~prospect.errors.ConfigError`.
    """
    if azimuths_deg is None:
        if not isinstance(n_azimuths, (int, np.integer)) or n_azimuths < 1:
            raise ConfigError(f"n_azimuths must be a positive integer, not {n_azimuths!r}")
        return np.arange(int(n_azimuths), dtype=np.float64) * (360.0 / int(n_azimuths))
    az = np.atleast_1d(np.asarray(azimuths_deg, dtype=np.float64))
    if az.ndim != 1 or az.size == 0 or not np.all(np.isfinite(az)):
        raise ConfigError(f"azimuths_deg must be a non-empty 1-D sequence of finite degrees, not {azimuths_deg!r}")
    return az


def check_max_distance(max_distance_m: float) -> float:
    """``max_distance_m`` as a float, refused (:class:`~prospect.errors.ConfigError`) unless positive."""
    try:
        d = float(max_distance_m)
    except (TypeError, ValueError):
        raise ConfigError(f"max_distance_m must be a positive number of metres, not {max_distance_m!r}") from None
    if not (d > 0.0) or math.isnan(d):
        raise ConfigError(f"max_distance_m must be a positive number of metres, not {max_distance_m!r}")
    return d


def kernel_geometry(dem: xr.DataArray, planar: bool) -> tuple[tuple, AnalysisGrid, str]:
    """The kernel's geometry arguments ``(mode, x0, y0, a, e, R)``, the grid and the metric's name."""
    grid = AnalysisGrid.from_dataarray(dem)
    metric = ground_metric(grid, planar=planar)
    if metric.mode in (POLAR_SOUTH, POLAR_NORTH):
        mode = K.POLAR
    elif metric.mode == PLANAR:
        mode = K.PLANAR
    else:
        raise GridError(
            f"horizon maps need a projected grid with straight-line sight lines; {grid.crs} is not polar "
            "stereographic: reproject onto IAU_2015:30135/30130 (or pass planar=True for a small metric grid)"
        )
    args = (mode, metric.x0, metric.y0, metric.a, metric.e, metric.radius_m)
    return args, grid, metric.description


def check_observer_height(observer_height_m: float) -> float:
    """``observer_height_m`` as a float, refused (:class:`~prospect.errors.ConfigError`) unless finite and >= 0."""
    if not (math.isfinite(observer_height_m) and observer_height_m >= 0.0):
        raise ConfigError(f"observer_height_m must be a non-negative number of metres, not {observer_height_m!r}")
    return float(observer_height_m)


def kernel_inputs(dem: xr.DataArray, planar: bool) -> tuple[np.ndarray, tuple, AnalysisGrid, str]:
    """Heights in m as C-contiguous float64 plus the kernel's geometry arguments, the grid and the metric's name."""
    args, grid, desc = kernel_geometry(dem, planar)
    z = np.ascontiguousarray(np.asarray(heights_in_metres(dem).values, dtype=np.float64))
    return z, args, grid, desc


def horizon_dataarray(dem: xr.DataArray, data: np.ndarray, az: np.ndarray, attrs: dict) -> xr.DataArray:
    """A horizon cube ``data`` (azimuth, y, x) as a DataArray on ``dem``'s grid, with ``attrs``."""
    ydim, xdim = dem.dims
    out = xr.DataArray(
        data,
        dims=("azimuth", ydim, xdim),
        coords={
            "azimuth": ("azimuth", az, {"units": "deg", "long_name": "grid azimuth, clockwise from grid up"}),
            ydim: dem[ydim].values,
            xdim: dem[xdim].values,
        },
        name="horizon",
    )
    for c in (ydim, xdim):
        out[c].attrs.update(dem[c].attrs)
    if "crs" in dem.attrs:
        out.attrs["crs"] = dem.attrs["crs"]
    if "spatial_ref" in dem.coords:
        out = out.assign_coords(spatial_ref=dem.coords["spatial_ref"])
    out.attrs.update(attrs)
    return out


def _run(kernel, z: np.ndarray, az: np.ndarray, extra: tuple, workers: int) -> np.ndarray:
    out = np.empty((az.size, *z.shape), dtype=np.float32)

    def one(i: int) -> None:
        kernel(z, math.radians(float(az[i]) % 360.0), *extra, out[i])

    if workers <= 1 or az.size == 1:
        for i in range(az.size):
            one(i)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, range(az.size)))
    return out


def horizon_angles(
    dem: xr.DataArray,
    azimuths_deg: Sequence[float] | np.ndarray | None = None,
    n_azimuths: int = 360,
    max_distance_m: float = 150_000.0,
    *,
    planar: bool = False,
    workers: int = 1,
    observer_height_m: float = 0.0,
) -> xr.DataArray:
    """Horizon elevation angle [deg] of every pixel toward every azimuth.

    Parameters
    ----------
    dem
        2-D (y, x) DataArray of heights (``attrs['units']`` m or km) on a polar
        stereographic lunar grid (IAU_2015:30135 / 30130); NaN = no data. Dask-backed
        input is loaded into memory (for out-of-core tiles see
        :class:`prospect.illumination.tiles.TiledHorizon`).
    azimuths_deg
        Grid azimuths, degrees clockwise from grid up (map +y); default ``n_azimuths``
        evenly spaced from 0.
    max_distance_m
        Only terrain within this ground distance counts (points exactly at it do).
    planar
        Use map metres as ground metres (any metric grid; no scale factor).
    workers
        Threads over azimuths (the kernel releases the GIL).
    observer_height_m
        Height of the observer above the surface [m] (e.g. 2 for a mast, 10 for a
        tower): raises the eye, not the terrain ahead.

    Returns
    -------
    DataArray ``(azimuth, y, x)`` float32 degrees: ``max atan((h - h0 - r^2/2R) / r)``
    over the samples within ``max_distance_m``. NaN where the DEM is NaN and where no
    valid sample lies ahead (looking off the raster edge). Near the edge the value is a
    lower bound (terrain beyond the raster is unknown).
    """
    az = resolve_azimuths(azimuths_deg, n_azimuths)
    dmax = check_max_distance(max_distance_m)
    z, args, _grid, desc = kernel_inputs(dem, planar)
    check_observer_height(observer_height_m)
    data = _run(K.horizon_sweep, z, az, (*args, dmax, float(observer_height_m)), int(workers))
    return horizon_dataarray(dem, data, az, horizon_attrs(args, desc, dmax, observer_height_m))


def horizon_attrs(args: tuple, desc: str, dmax: float, observer_height_m: float) -> dict:
    """Attributes of a horizon cube from the sweep (``args``, ``desc`` from :func:`kernel_geometry`)."""
    return {
        "observer_height_m": float(observer_height_m),
        "units": "deg",
        "long_name": "horizon elevation angle",
        "azimuth_convention": "degrees clockwise from grid up (map +y)",
        "method": METHOD,
        "max_distance_m": dmax,
        "curvature": f"included: r^2/(2R), R = {args[5]} m",
        "ground_distance": "integral of 1/k along the map line" if args[0] == K.POLAR else desc,
        "edge": "lower bound near the raster edge; NaN with no sample ahead",
    }


def horizon_brute_force(
    dem: xr.DataArray,
    azimuths_deg: Sequence[float] | np.ndarray | None = None,
    max_distance_m: float = 150_000.0,
    step_px: float = 0.5,
    *,
    sampling: Literal["lines", "ray"] = "lines",
    n_azimuths: int = 360,
    planar: bool = False,
) -> xr.DataArray:
    """Slow reference horizon map that marches every distance of every pixel (small DEMs only).

    ``sampling="lines"`` (default) uses exactly the samples of :func:`horizon_angles`
    (same lines, heights, observer positions and ground distances; ``step_px`` is then
    unused) and evaluates the defining formula directly, so any difference from the sweep
    is numerical. ``sampling="ray"`` marches a straight map ray from every pixel *centre*
    with bilinear heights every ``step_px`` pixels, an independent check of the sweep's
    sampling convention. Same output as :func:`horizon_angles`.
    """
    az = resolve_azimuths(azimuths_deg, n_azimuths)
    dmax = check_max_distance(max_distance_m)
    z, args, _grid, _desc = kernel_inputs(dem, planar)
    if sampling == "lines":
        data = _run(K.horizon_brute_lines, z, az, (*args, dmax), 1)
        method = "brute force on the sweep's line samples"
    elif sampling == "ray":
        step = float(step_px)
        if not (step > 0.0 and math.isfinite(step)):
            raise ConfigError(f"step_px must be a positive number of pixels, not {step_px!r}")
        data = _run(K.horizon_brute_ray, z, az, (*args, dmax, step), 1)
        method = f"brute force: ray from each pixel centre, bilinear heights every {step} px"
    else:
        raise ConfigError(f"sampling must be 'lines' or 'ray', not {sampling!r}")
    return horizon_dataarray(
        dem,
        data,
        az,
        {
            "units": "deg",
            "long_name": "horizon elevation angle (brute-force reference)",
            "azimuth_convention": "degrees clockwise from grid up (map +y)",
            "method": method,
            "max_distance_m": dmax,
            "curvature": f"included: r^2/(2R), R = {args[5]} m",
        },
    )
