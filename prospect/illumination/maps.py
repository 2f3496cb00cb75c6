"""Illumination maps of a whole DEM, tile by tile: horizons -> products.

:func:`illumination_tiles` yields the four products of
:func:`prospect.illumination.products.illumination_products` for each output tile of a
:class:`prospect.illumination.tiles.TiledHorizon`, so no horizon cube larger than one
tile ever exists. The illumination stage
(:func:`prospect.pipeline.stages.run_illumination`) streams them into GeoTIFFs and keeps
each finished tile so that an interrupted run resumes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import xarray as xr

from prospect.illumination.products import SunSamples, illumination_products
from prospect.illumination.tiles import FAR_FACTOR, NEAR_PX, TILE_PX, TiledHorizon

#: The four products, each a layer of :mod:`prospect.layers`.
PRODUCTS = ("illumination_fraction", "longest_darkness_h", "psr_mask", "earth_visibility_fraction")
#: Horizon azimuths by default, and the fewest the illumination stage accepts.
N_AZIMUTHS = 360
MIN_AZIMUTHS = 64
#: Horizon search distance by default [m].
MAX_DISTANCE_M = 150_000.0
#: Observer height above the surface by default [m].
OBSERVER_HEIGHT_M = 0.0
#: Tiles computed in parallel by default.
WORKERS = 2


def horizon_tiling(
    dem: xr.DataArray,
    *,
    n_azimuths: int = N_AZIMUTHS,
    max_distance_m: float = MAX_DISTANCE_M,
    observer_height_m: float = OBSERVER_HEIGHT_M,
    tile_px: int = TILE_PX,
    near_px: int = NEAR_PX,
    far_factor: int = FAR_FACTOR,
    workers: int = WORKERS,
) -> TiledHorizon:
    """The :class:`~prospect.illumination.tiles.TiledHorizon` of ``dem`` (parameters checked here)."""
    return TiledHorizon(
        dem,
        n_azimuths,
        max_distance_m,
        tile_px=tile_px,
        near_px=near_px,
        far_factor=far_factor,
        workers=workers,
        observer_height_m=observer_height_m,
    )


def tile_products(th: TiledHorizon, window: tuple[int, int, int, int], samples: SunSamples) -> xr.Dataset:
    """The four products of one output tile ``(row0, row1, col0, col1)`` of ``th``."""
    return illumination_products(th.compute(window), samples)


def describe_tiling(th: TiledHorizon, ds: xr.Dataset) -> None:
    """Record the horizon tiling in every product's attributes (``horizon_tiling``)."""
    for name in PRODUCTS:
        ds[name].attrs["horizon_tiling"] = th.plan.describe()


def illumination_tiles(
    dem: xr.DataArray, samples: SunSamples, **params: Any
) -> Iterator[tuple[tuple[int, int, int, int], xr.Dataset]]:
    """Yield ``(window, products)`` for every output tile ``(row0, row1, col0, col1)``.

    ``params`` are those of :func:`horizon_tiling` (``n_azimuths``, ``max_distance_m``,
    ``observer_height_m``, ``tile_px``, ``near_px``, ``far_factor``, ``workers``).
    """
    th = horizon_tiling(dem, **params)
    for w in th.plan.windows():
        ds = tile_products(th, w, samples)
        describe_tiling(th, ds)
        yield w, ds
