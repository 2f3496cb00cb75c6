"""Surface roughness of a lunar DEM at a stated baseline.

Two measures, both in metres and both carrying the baseline they were computed at:

* :func:`rms_deviation`: the RMS deviation ``nu(L) = sqrt(<(z(x + L) - z(x))^2>)`` of
  Shepard, M. K. et al. (2001), The roughness of natural terrain: a planetary and remote
  sensing perspective, JGR 106(E12), 32777-32795, eq. 4; the measure Rosenburg et al.
  (2011, JGR 116, E02001) mapped from LOLA. Evaluated per pixel over the window of radius
  ``L`` around it, from every row- and column-wise pair ``L`` apart in that window. Not
  detrended: a plane tilted by ``s`` contributes ``L tan(s)`` along its dip.
* :func:`terrain_ruggedness`: the Terrain Ruggedness Index of Riley, S. J. et al. (1999),
  Intermountain J. Sci. 5, 23-27 (``sqrt(sum (z_i - z_0)^2)``), or Wilson, M. F. J. et al.
  (2007), Marine Geodesy 30, 3-35 (``mean |z_i - z_0|``), with the 8 neighbours ``L``
  away instead of adjacent; at one pixel it equals ``gdaldem TRI -alg Riley|Wilson``.

The baseline in pixels is ``n = max(1, round(L / d))`` with ``d`` the nominal ground step
of the grid (:meth:`prospect.terrain.metric.GroundMetric.nominal_spacing_m`); the
effective ``n d`` is in ``attrs['baseline_m']``. On polar stereographic grids a pixel
step is up to 1.7 % shorter on the ground at 75 deg than at the pole; on geographic
grids east-west steps shrink with cos(lat), so use a projected grid for roughness.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import xarray as xr

from prospect.errors import ConfigError
from prospect.terrain import _kernels as K
from prospect.terrain.metric import GroundMetric, heights_in_metres, metric_of
from prospect.terrain.stencil import apply_stencil
from prospect.terrain.surface import check_baseline


def lag_steps(metric: GroundMetric, baseline_m: float | None) -> int:
    """Lag ``n`` [pixels] for a roughness baseline ``L`` [m]: ``max(1, round(L / d))``; ``None`` = 1."""
    if baseline_m is None:
        return 1
    check_baseline(baseline_m)
    return max(1, int(round(baseline_m / metric.nominal_spacing_m())))


def _attrs(dem: xr.DataArray, metric: GroundMetric, n: int, baseline_m: float | None) -> dict:
    return {
        "units": "m",
        "baseline_m": float(round(n * metric.nominal_spacing_m(), 6)),
        "baseline_requested_m": "1 pixel" if baseline_m is None else float(baseline_m),
        "lag_px": n,
        "crs": dem.attrs.get("crs", ""),
        "source_product": dem.attrs.get("product_id", dem.name or ""),
    }


def rms_deviation(dem: xr.DataArray, *, baseline_m: float | None = None) -> xr.DataArray:
    """RMS deviation [m] at baseline ``baseline_m`` (Shepard et al. 2001), per pixel.

    Pixels whose window (radius ``L``) touches nodata or the raster edge are NaN.
    """
    heights = heights_in_metres(dem)
    metric = metric_of(dem)
    n = lag_steps(metric, baseline_m)

    def kernel(block: np.ndarray, row0: int, col0: int) -> np.ndarray:
        return K.rms_deviation_block(block, n)

    out = apply_stencil(heights, n, kernel)
    out.name = "rms_deviation"
    out.attrs = _attrs(dem, metric, n, baseline_m)
    out.attrs.update(
        long_name=f"RMS deviation at {out.attrs['baseline_m']:g} m baseline",
        method="Shepard et al. (2001) RMS deviation, eq. 4; not detrended",
    )
    return out


def terrain_ruggedness(
    dem: xr.DataArray, *, baseline_m: float | None = None, alg: Literal["riley", "wilson"] = "riley"
) -> xr.DataArray:
    """Terrain Ruggedness Index [m] with neighbours ``baseline_m`` away (Riley 1999 / Wilson 2007)."""
    algs = {"riley": K.TRI_RILEY, "wilson": K.TRI_WILSON}
    if str(alg).lower() not in algs:
        raise ConfigError(f"TRI algorithm must be 'riley' or 'wilson', not {alg!r}")
    code = algs[str(alg).lower()]
    heights = heights_in_metres(dem)
    metric = metric_of(dem)
    n = lag_steps(metric, baseline_m)

    def kernel(block: np.ndarray, row0: int, col0: int) -> np.ndarray:
        return K.tri_block(block, n, code)

    out = apply_stencil(heights, n, kernel)
    out.name = "tri"
    out.attrs = _attrs(dem, metric, n, baseline_m)
    source = (
        "Riley et al. (1999): sqrt(sum (z_i - z_0)^2)"
        if code == K.TRI_RILEY
        else "Wilson et al. (2007): mean |z_i - z_0|"
    )
    out.attrs.update(long_name=f"terrain ruggedness index at {out.attrs['baseline_m']:g} m", method=source)
    return out
