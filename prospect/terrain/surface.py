"""Slope, aspect, multi-baseline slope and hillshade of a lunar DEM.

Pure functions from a DEM :class:`xarray.DataArray` (heights in m or km, a lunar CRS, as
:func:`prospect.io.readers.open_product` returns it) to DataArrays on the same grid.
Dask-backed input stays lazy and streams chunk by chunk; numpy input is computed eagerly.

Sources (``docs/science.md`` section 2):

* Horn, B. K. P. (1981), Hill shading and the reflectance map, Proc. IEEE 69(1), 14-47:
  the 3x3 weighted differences, GDAL's default.
* Zevenbergen, L. W. & Thorne, C. R. (1987), Quantitative analysis of land surface
  topography, Earth Surf. Process. Landforms 12, 47-56: central differences.
* Rosenburg, M. A. et al. (2011), Global surface slopes and roughness of the Moon from
  the Lunar Orbiter Laser Altimeter, JGR 116, E02001: slopes depend on baseline; LOLA
  reports them at 57, 225 and 560 m. Every slope here carries its baseline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import xarray as xr

from prospect.errors import ConfigError
from prospect.terrain import _kernels as K
from prospect.terrain.metric import GroundMetric, heights_in_metres, metric_of
from prospect.terrain.stencil import apply_stencil

Method = Literal["horn", "zt"]

#: LOLA slope baselines [m] (Rosenburg et al. 2011, JGR 116, E02001)
LOLA_BASELINES_M: tuple[float, ...] = (57.0, 225.0, 560.0)

_METHODS = {"horn": K.HORN, "zt": K.ZEVENBERGEN_THORNE, "zevenbergen-thorne": K.ZEVENBERGEN_THORNE}
_METHOD_NAMES = {K.HORN: "Horn (1981)", K.ZEVENBERGEN_THORNE: "Zevenbergen & Thorne (1987)"}


def check_method(method: str) -> None:
    """Refuse (:class:`~prospect.errors.ConfigError`) a slope method other than ``horn`` or ``zt``."""
    _method_code(method)


def _method_code(method: str) -> int:
    try:
        return _METHODS[str(method).lower()]
    except KeyError:
        raise ConfigError(f"slope method must be 'horn' or 'zt', not {method!r}") from None


def gradient_steps(metric: GroundMetric, baseline_m: float | None) -> int:
    """Neighbour offset ``n`` [pixels] for a slope baseline: the differenced samples are ``2 n`` steps apart.

    ``None`` gives the 3x3 stencil (``n = 1``). Otherwise ``n = max(1, round(L / (2 d)))``
    with ``d`` the nominal ground step (:meth:`GroundMetric.nominal_spacing_m`), so the
    effective baseline is ``2 n d``, the nearest one the grid can represent.
    """
    if baseline_m is None:
        return 1
    check_baseline(baseline_m)
    return max(1, int(round(baseline_m / (2.0 * metric.nominal_spacing_m()))))


def check_baseline(baseline_m: float) -> None:
    """Refuse (:class:`~prospect.errors.ConfigError`) a baseline that is not a positive finite number of metres."""
    if not (isinstance(baseline_m, (int, float)) and math.isfinite(baseline_m) and baseline_m > 0):
        raise ConfigError(f"baseline must be a positive number of metres, not {baseline_m!r}")


def _gradient_product(
    dem: xr.DataArray,
    *,
    output: int,
    method: str,
    baseline_m: float | None,
    planar: bool,
    sun_az: float = 315.0,
    sun_alt: float = 45.0,
) -> tuple[xr.DataArray, GroundMetric, int]:
    code = _method_code(method)
    heights = heights_in_metres(dem)
    metric = metric_of(dem, planar=planar)
    n = gradient_steps(metric, baseline_m)
    args = metric.kernel_args()

    def kernel(block: np.ndarray, row0: int, col0: int) -> np.ndarray:
        if output == K.SLOPE:  # the fused, vectorised path; atan in place with numpy's SIMD loop
            tan_s = K.tan_slope_block(block, row0, col0, n, code, *args)
            np.arctan(tan_s, out=tan_s)
            tan_s *= np.float32(180.0 / np.pi)
            return tan_s
        return K.gradient_block(block, row0, col0, n, code, output, *args, float(sun_az), float(sun_alt))

    out = apply_stencil(heights, n, kernel)
    effective = 2 * n * metric.nominal_spacing_m()
    out.attrs = {
        "method": _METHOD_NAMES[code],
        "baseline_m": float(round(effective, 6)),
        "baseline_requested_m": "3x3 stencil" if baseline_m is None else float(baseline_m),
        "stencil_offset_px": n,
        "ground_distance": metric.description,
        "crs": dem.attrs.get("crs", ""),
        "source_product": dem.attrs.get("product_id", dem.name or ""),
    }
    return out, metric, n


def slope_deg(
    dem: xr.DataArray, *, method: Method = "horn", baseline_m: float | None = None, planar: bool = False
) -> xr.DataArray:
    """Slope [deg] of a DEM from ground distances on the lunar sphere.

    ``slope = atan(hypot(dz/dx, dz/dy))`` with Horn (default) or Zevenbergen-Thorne
    derivatives; ``dx``, ``dy`` are ground metres from :mod:`prospect.terrain.metric`
    (``map / k`` on polar stereographic grids, lunar metres per degree and ``cos(lat)`` on
    geographic ones), or map units with ``planar=True`` (``gdaldem slope``'s behaviour:
    on a polar grid ``tan(slope) = tan(planar slope) * k``).

    ``baseline_m`` differences samples about that far apart (see :func:`gradient_steps`);
    the effective baseline is in ``attrs['baseline_m']``. Pixels within the stencil of the
    raster edge or of nodata are NaN.
    """
    out, _, _ = _gradient_product(dem, output=K.SLOPE, method=method, baseline_m=baseline_m, planar=planar)
    out.name = "slope"
    out.attrs.update(units="deg", long_name=f"slope at {out.attrs['baseline_m']:g} m baseline")
    return out


def aspect_deg(
    dem: xr.DataArray, *, method: Method = "horn", baseline_m: float | None = None, planar: bool = False
) -> xr.DataArray:
    """Aspect [deg]: the azimuth the slope faces (downslope), clockwise from true north.

    On polar stereographic grids true north differs from grid up by the pixel's
    longitude (south: grid azimuth of north = ``atan2(x, y)``; north: ``atan2(-x, -y)``),
    which is removed, so a crater wall facing the pole has aspect 180 deg at the south
    pole. ``planar=True`` gives grid-relative aspect (``gdaldem aspect``). Flat pixels
    (zero gradient) are NaN.
    """
    out, metric, _ = _gradient_product(dem, output=K.ASPECT, method=method, baseline_m=baseline_m, planar=planar)
    out.name = "aspect"
    reference = "grid up" if metric.planar else "true north"
    out.attrs.update(
        units="deg", long_name=f"aspect (downslope azimuth, clockwise from {reference})", azimuth_reference=reference
    )
    return out


def hillshade(
    dem: xr.DataArray,
    *,
    azimuth_deg: float = 315.0,
    altitude_deg: float = 45.0,
    method: Method = "horn",
    planar: bool = False,
) -> xr.DataArray:
    """Shaded relief in [0, 1] for maps: ``max(0, n . s)`` with the unit surface normal ``n``.

    ``s`` points to a light source at ``azimuth_deg`` (clockwise from grid up, the map's
    top: cartographic convention) and ``altitude_deg`` above the horizon. Gradients use
    ground distances, so relief is not exaggerated by the projection. For maps only:
    real lunar illumination is :mod:`prospect.illumination`.
    """
    if not 0.0 <= float(altitude_deg) <= 90.0:
        raise ConfigError(f"hillshade altitude must be within 0..90 deg, not {altitude_deg!r}")
    out, _, _ = _gradient_product(
        dem, output=K.HILLSHADE, method=method, baseline_m=None, planar=planar, sun_az=azimuth_deg, sun_alt=altitude_deg
    )
    out.name = "hillshade"
    out.attrs.update(
        units="1", long_name="hillshade", light_azimuth_deg=float(azimuth_deg), light_altitude_deg=float(altitude_deg)
    )
    return out


def slope_baselines(
    dem: xr.DataArray, baselines_m: Sequence[float] = LOLA_BASELINES_M, *, method: Method = "horn", planar: bool = False
) -> xr.DataArray:
    """Slope [deg] at several baselines, stacked along a ``baseline`` dimension.

    The default baselines are LOLA's 57 / 225 / 560 m (Rosenburg et al. 2011). The
    ``baseline`` coordinate holds the requested values, ``effective_baseline_m`` the ones
    the grid represents (e.g. 40 / 240 / 560 m on a 20 m grid).
    """
    if len(baselines_m) == 0:
        raise ConfigError("slope_baselines needs at least one baseline")
    layers = [slope_deg(dem, method=method, baseline_m=float(b), planar=planar) for b in baselines_m]
    stacked = xr.concat(layers, dim="baseline", coords="minimal", compat="override", combine_attrs="drop")
    stacked = stacked.assign_coords(
        baseline=("baseline", [float(b) for b in baselines_m], {"units": "m", "long_name": "requested baseline"}),
        effective_baseline_m=("baseline", [lay.attrs["baseline_m"] for lay in layers], {"units": "m"}),
    )
    stacked.name = "slope"
    stacked.attrs = {
        k: v
        for k, v in layers[0].attrs.items()
        if k not in ("baseline_m", "baseline_requested_m", "stencil_offset_px", "long_name")
    }
    stacked.attrs["long_name"] = "slope at several baselines"
    return stacked
