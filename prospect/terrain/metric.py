"""Ground distances on lunar map grids: how far apart two neighbouring pixels really are.

A slope is a height difference over a *ground* distance. Map units are ground metres
only on some grids, so every terrain kernel takes a :class:`GroundMetric` that says how
to turn one pixel step into metres on the lunar sphere (``docs/science.md`` section 2):

``polar`` (IAU_2015:30130 / 30135)
    Conformal: both axes are ``map size / k`` with the stereographic scale factor
    ``k = 1 + rho^2/(4 R^2) = 2 / (1 + sin|lat|)`` of :func:`prospect.lunar.polar_scale_factor_xy`
    at the centre pixel (exact at the pole, 1.008 at 80 deg, 1.017 at 75 deg).
``geographic`` (IAU_2015:30100)
    ``dy = (2 pi R / 360) * res_y`` and ``dx = dy_per_deg * res_x * cos(lat)``, lunar
    metres per degree from :mod:`prospect.lunar`.
``equirectangular`` (IAU_2015:30110 / 30115 and other ``eqc`` grids)
    ``dy = res_y`` metres; ``dx = res_x * cos(lat) / cos(lat_ts)``: map x is true only on
    the true-scale parallel ``lat_ts``.
``planar``
    Map units as they are, what ``gdaldem`` does without ``-s``. Meaningful only for
    comparison: on a geographic grid it divides metres by degrees.

The metric is computed inside the kernels from the pixel's map coordinates, so a result
depends only on the pixel, never on the chunk it was computed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import xarray as xr

from prospect import lunar
from prospect.errors import GridError, UnitsError
from prospect.grid import AnalysisGrid

#: kernel codes for the ground-distance model (shared with :mod:`prospect.terrain._kernels`)
PLANAR, POLAR_SOUTH, POLAR_NORTH, GEOGRAPHIC, EQUIRECTANGULAR = 0, 1, 2, 3, 4

_DESCRIPTIONS = {
    PLANAR: "planar: map units used as ground metres (as gdaldem without -s)",
    POLAR_SOUTH: "polar stereographic (south): ground = map / k, k = 1 + rho^2/(4R^2) (Snyder 1987 eq. 21-4)",
    POLAR_NORTH: "polar stereographic (north): ground = map / k, k = 1 + rho^2/(4R^2) (Snyder 1987 eq. 21-4)",
    GEOGRAPHIC: "geographic: dy = 2 pi R/360 * res, dx = dy * cos(lat) (lunar metres per degree)",
    EQUIRECTANGULAR: "equirectangular: dy = res_y, dx = res_x * cos(lat) / cos(lat_ts)",
}


@dataclass(frozen=True)
class GroundMetric:
    """Everything a terrain kernel needs to turn pixel steps into ground metres.

    ``x0, y0, a, e`` are the grid's affine terms (pixel ``(row, col)`` has its centre at
    ``x0 + (col + 0.5) a``, ``y0 + (row + 0.5) e``); ``radius_m`` is the sphere's radius;
    ``cos_lat_ts`` is used by equirectangular grids only.
    """

    mode: int
    x0: float
    y0: float
    a: float
    e: float
    radius_m: float
    cos_lat_ts: float = 1.0

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self.mode]

    @property
    def planar(self) -> bool:
        return self.mode == PLANAR

    def kernel_args(self) -> tuple[int, float, float, float, float, float, float]:
        return (self.mode, self.x0, self.y0, self.a, self.e, self.radius_m, self.cos_lat_ts)

    def nominal_spacing_m(self) -> float:
        """Ground size of one pixel step used to turn a baseline in metres into pixels.

        The north-south step: exact at the pole for polar grids (k = 1 there; up to 1.7 %
        shorter at 75 deg), ``2 pi R / 360 * res`` on geographic grids, ``|res_y|`` on
        equirectangular ones, ``|res_y|`` map units when planar.
        """
        if self.mode == GEOGRAPHIC:
            return abs(self.e) * 2.0 * math.pi * self.radius_m / 360.0
        return abs(self.e)


def ground_metric(grid: AnalysisGrid, *, planar: bool = False) -> GroundMetric:
    """The :class:`GroundMetric` of an analysis grid.

    Raises :class:`~prospect.errors.GridError` for grids whose ground distances prospect
    cannot compute exactly (a polar stereographic grid with a false origin or a scale
    other than 1 at the pole, or a projection it does not know); ``planar=True`` always
    works.
    """
    t = grid.transform
    crs = grid.crs
    args = dict(x0=t.c, y0=t.f, a=t.a, e=t.e, radius_m=crs.radius_m)
    if planar:
        return GroundMetric(PLANAR, **args)
    if crs.is_polar:
        if crs.code is None:
            raise GridError(
                f"polar stereographic grid {crs} is not IAU_2015:30130/30135 (k0 = 1 at the pole, no false "
                "origin): prospect cannot compute its ground distances; reproject it or pass planar=True / --planar"
            )
        mode = POLAR_SOUTH if crs.kind == "polar_south" else POLAR_NORTH
        return GroundMetric(mode, **args)
    if crs.kind == "geographic":
        return GroundMetric(GEOGRAPHIC, **args)
    if crs.kind == "equirectangular":
        return GroundMetric(EQUIRECTANGULAR, cos_lat_ts=lunar.equirectangular_true_scale(crs.lat_ts), **args)
    raise GridError(
        f"prospect does not know the ground distances of {crs}; reproject it or pass planar=True / --planar"
    )


def heights_in_metres(dem: xr.DataArray) -> xr.DataArray:
    """The DEM in metres (km are converted); other or missing units are an error."""
    units = str(dem.attrs.get("units", "")).strip()
    name = dem.attrs.get("product_id") or dem.name or "DEM"
    if units in ("m", "metre", "metres", "meter", "meters"):
        return dem
    if units in ("km", "kilometre", "kilometres", "kilometer", "kilometers"):
        return dem * 1000.0
    raise UnitsError(
        f"{name}: a DEM must be heights in m or km, but its units are {units or 'missing'!r}; "
        "set dem.attrs['units'] (or the data manifest's units)"
    )


def metric_of(dem: Any, *, planar: bool = False) -> GroundMetric:
    """The :class:`GroundMetric` of a georeferenced DEM DataArray."""
    return ground_metric(AnalysisGrid.from_dataarray(dem), planar=planar)
