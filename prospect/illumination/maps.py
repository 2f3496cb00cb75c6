"""Illumination maps of a whole DEM, tile by tile: horizons -> products.

:func:`illumination_tiles` yields the four products of
:func:`prospect.illumination.products.illumination_products` for each output tile of a
:class:`prospect.illumination.tiles.TiledHorizon`, so no horizon cube larger than one
tile ever exists. The illumination stage
(:func:`prospect.pipeline.stages.run_illumination`) streams them into GeoTIFFs and keeps
each finished tile so that an interrupted run resumes. On a Dask cluster each tile is a
task, :func:`cluster_tile_products` (the same computation, rebuilt on the worker from a
:class:`~prospect.illumination.tiles.TileJob` and the scattered shared inputs).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import xarray as xr

from prospect import lunar
from prospect.errors import ConfigError
from prospect.illumination.products import SunSamples, illumination_products
from prospect.illumination.tiles import (
    FAR_FACTOR,
    MAX_FAR_FACTOR,
    MAX_MEMORY_MB,
    MAX_NEAR_PX,
    MAX_TILE_PX,
    MEMORY_MB,
    MIN_FAR_FACTOR,
    MIN_MEMORY_MB,
    MIN_NEAR_PX,
    MIN_TILE_PX,
    NEAR_PX,
    TiledHorizon,
    TileJob,
    worker_horizon,
)

#: The four products, each a layer of :mod:`prospect.layers`.
PRODUCTS = ("illumination_fraction", "longest_darkness_h", "psr_mask", "earth_visibility_fraction")
#: Horizon azimuths by default, and the fewest and the most the illumination stage accepts
#: (3600: 0.1 deg steps; a tile's horizon cube grows with the azimuths).
N_AZIMUTHS = 360
MIN_AZIMUTHS = 64
MAX_AZIMUTHS = 3600
#: Horizon search distance by default [m], and the longest accepted (the Moon's half circumference).
MAX_DISTANCE_M = 150_000.0
MAX_DISTANCE_LIMIT_M = math.pi * lunar.MOON_RADIUS_M
#: Observer height above the surface by default [m], and the highest accepted.
OBSERVER_HEIGHT_M = 0.0
MAX_OBSERVER_HEIGHT_M = 10_000.0
#: Tiles computed in parallel by default, and the most accepted.
WORKERS = 2
MAX_WORKERS = 256

#: The illumination stage's parameters: stage key -> (keyword of :func:`horizon_tiling`, integer?,
#: smallest, largest, unit). The smallest distance (0 m) is excluded; every other bound is
#: included. The stage (:func:`prospect.pipeline.stages.run_illumination`), and so ``prospect
#: illumination`` and ``prospect run``, checks them with :func:`check_tiling_params`.
TILING_RULES: dict[str, tuple[str, bool, float, float, str]] = {
    "azimuths": ("n_azimuths", True, MIN_AZIMUTHS, MAX_AZIMUTHS, ""),
    "max_distance": ("max_distance_m", False, 0.0, MAX_DISTANCE_LIMIT_M, "m"),
    "height": ("observer_height_m", False, 0.0, MAX_OBSERVER_HEIGHT_M, "m"),
    "tile": ("tile_px", True, MIN_TILE_PX, MAX_TILE_PX, "px"),
    "memory": ("memory_mb", False, MIN_MEMORY_MB, MAX_MEMORY_MB, "MB"),
    "near": ("near_px", True, MIN_NEAR_PX, MAX_NEAR_PX, "px"),
    "far_factor": ("far_factor", True, MIN_FAR_FACTOR, MAX_FAR_FACTOR, ""),
    "workers": ("workers", True, 1, MAX_WORKERS, ""),
}
#: The keywords whose smallest value is excluded.
_EXCLUSIVE_MINIMUM = frozenset({"max_distance_m"})


def check_number(
    value: Any, name: str, *, integer: bool, minimum: float, maximum: float, unit: str = "", exclusive: bool = False
) -> Any:
    """``value`` as an int (``integer``) or a finite float within ``[minimum, maximum]`` (``(minimum,
    maximum]`` when ``exclusive``), or a :class:`~prospect.errors.ConfigError` naming ``name`` and the range."""
    unit_text = f" {unit}" if unit else ""
    kind = "an integer" if integer else "a number"
    low = f"more than {minimum:g}" if exclusive else f"at least {minimum:g}"
    rule = f"{name} must be {kind} {low} and at most {maximum:g}{unit_text}, not {value!r}"
    if isinstance(value, bool):
        raise ConfigError(rule)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(rule) from None
    if not math.isfinite(number) or number > maximum or number < minimum or (exclusive and number == minimum):
        raise ConfigError(rule)
    if integer:
        if number != int(number):
            raise ConfigError(rule)
        return int(number)
    return number


def check_tiling_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The illumination stage's ``params`` (keys of :data:`TILING_RULES`; others ignored, None is the
    default) as the keywords of :func:`horizon_tiling`, each checked against its rule."""
    options: dict[str, Any] = {}
    for key, (keyword, integer, low, high, unit) in TILING_RULES.items():  # messages name the stage's keys
        if params.get(key) is not None:
            options[keyword] = check_number(
                params[key],
                key,
                integer=integer,
                minimum=low,
                maximum=high,
                unit=unit,
                exclusive=keyword in _EXCLUSIVE_MINIMUM,
            )
    return options


def horizon_tiling(
    dem: xr.DataArray,
    *,
    n_azimuths: int = N_AZIMUTHS,
    max_distance_m: float = MAX_DISTANCE_M,
    observer_height_m: float = OBSERVER_HEIGHT_M,
    tile_px: int | None = None,
    near_px: int = NEAR_PX,
    far_factor: int = FAR_FACTOR,
    workers: int = WORKERS,
    memory_mb: float = MEMORY_MB,
) -> TiledHorizon:
    """The :class:`~prospect.illumination.tiles.TiledHorizon` of ``dem`` (parameters checked here).

    ``tile_px`` None (the default): the largest tile whose peak memory fits ``memory_mb``
    (:func:`prospect.illumination.tiles.tile_for_memory`), balanced over the raster."""
    return TiledHorizon(
        dem,
        n_azimuths,
        max_distance_m,
        tile_px=tile_px,
        near_px=near_px,
        far_factor=far_factor,
        workers=workers,
        observer_height_m=observer_height_m,
        memory_mb=memory_mb,
    )


def tile_products(th: TiledHorizon, window: tuple[int, int, int, int], samples: SunSamples) -> xr.Dataset:
    """The four products of one output tile ``(row0, row1, col0, col1)`` of ``th``.

    The horizon cube (the stage's largest allocation) is written into ``th``'s kept buffer
    (:meth:`TiledHorizon.compute` with ``reuse``), so the tiles of a stage fault its pages in
    once. A full garbage collection follows: in the stage, a reference cycle made while the
    first tiles were computed held a cube until Python's next full collection, so two cubes
    were alive at once (found with tracemalloc). At the defaults, 1088 px tiles of a 7584^2 DEM,
    the stage peaked at 3.9 GB before (``make bench-illumination``) and 2.47 GB after
    (``make bench-pipeline``, the process's peak after terrain and illumination)."""
    import gc

    ds = illumination_products(th.compute(window, reuse=True), samples)
    gc.collect()
    return ds


def _worker_threads() -> int | None:
    """The threads this task may use on its Dask worker: the worker's threads shared among the
    tasks it is running (at least 1), or None outside a worker."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    state = getattr(worker, "state", None)
    n = getattr(state, "nthreads", None) or getattr(worker, "nthreads", None)
    if not n:
        return None
    running = int(getattr(state, "executing_count", 1) or 1)
    return max(1, int(n) // max(1, running))


def cluster_tile_products(job: TileJob, state: dict, coarse: Any, samples: SunSamples) -> xr.Dataset:
    """:func:`tile_products` of one tile as a task on a Dask worker (the illumination stage's
    cluster path, :func:`prospect.pipeline.stages.write_illumination`).

    ``job`` is the tile's own :class:`~prospect.illumination.tiles.TileJob` (its near-field
    DEM window); ``state`` (:func:`~prospect.illumination.tiles.shared_state`), ``coarse`` (the
    far-field DEM or None) and ``samples`` are shared by all tiles and scattered once. The
    horizon is rebuilt by :func:`~prospect.illumination.tiles.worker_horizon` and computed by
    the same code as a local tile, so the products are the same bytes. The azimuth threads and
    numba's threads are limited to the worker's threads (shared among the tasks it runs at
    the time), so workers sharing a machine do not oversubscribe it: 2 workers x 1 thread run
    each tile on 1 thread (numba's setting is per calling thread, restored after the task).
    """
    import numba

    threads = _worker_threads()
    th = worker_horizon(state, coarse, job, threads)
    if threads is None:
        return tile_products(th, job.window, samples)
    before = numba.get_num_threads()
    most = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]  # set at import from the env
    numba.set_num_threads(max(1, min(threads, most)))
    try:
        return tile_products(th, job.window, samples)
    finally:
        numba.set_num_threads(before)


def describe_tiling(th: TiledHorizon, ds: xr.Dataset) -> None:
    """Record the horizon tiling in every product's attributes (``horizon_tiling``)."""
    for name in PRODUCTS:
        ds[name].attrs["horizon_tiling"] = th.plan.describe()


def illumination_tiles(
    dem: xr.DataArray, samples: SunSamples, **params: Any
) -> Iterator[tuple[tuple[int, int, int, int], xr.Dataset]]:
    """Yield ``(window, products)`` for every output tile ``(row0, row1, col0, col1)``.

    ``params`` are those of :func:`horizon_tiling` (``n_azimuths``, ``max_distance_m``,
    ``observer_height_m``, ``tile_px``, ``near_px``, ``far_factor``, ``workers``, ``memory_mb``).
    """
    th = horizon_tiling(dem, **params)
    for w in th.plan.windows():
        ds = tile_products(th, w, samples)
        describe_tiling(th, ds)
        yield w, ds
