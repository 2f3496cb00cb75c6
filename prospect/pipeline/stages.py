"""The pipeline's stages: every file a stage opens or writes is opened or written here.

The science modules (:mod:`prospect.terrain`, :mod:`prospect.illumination`,
:mod:`prospect.resources`, :mod:`prospect.sites`) compute on xarray objects; a stage
opens its inputs (:mod:`prospect.io.readers`, :mod:`prospect.io.vectors`,
:mod:`prospect.io.tables`), calls them, and writes, tags and publishes the results
(:mod:`prospect.io.writers`, :mod:`prospect.io.gpkg`). Every stage has one signature::

    run_<stage>(out, *, sources, grid, params, seed, progress) -> dict[str, Path]

- ``out``: the stage's output folder (its parent must exist; see :func:`check_output`);
- ``sources``: role -> a path or data-manifest id (``dem``, ``psr``, ``tmax``, ...;
  a role may also name an earlier stage's output file or folder);
- ``grid``: the analysis grid (:class:`~prospect.grid.AnalysisGrid` or its ``to_dict``
  mapping), or None for the grid of the stage's main input;
- ``params``: the stage's parameters; a missing key or None means the library's
  default (the constants the option help of ``prospect <stage>`` quotes);
- ``seed``: the seed of every random draw; ``progress``: report progress on stderr.

It returns ``{output name: path}``. ``prospect run`` (:mod:`prospect.pipeline.runner`)
and the ``prospect`` commands (:mod:`prospect.cli`) call the same functions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from prospect import layers
from prospect.errors import ConfigError, GridError, OutputPathError, UnitsError
from prospect.grid import AnalysisGrid

PathLike = str | os.PathLike[str]
Sources = Mapping[str, Any]
Params = Mapping[str, Any] | None

__all__ = [
    "HE3_OUTPUT_MAPS",
    "ICE_ROLES",
    "MAX_SEED",
    "PARTIAL_DIR",
    "SITE_ROLES",
    "WRITE_WINDOW_PX",
    "check_output",
    "check_output_file",
    "check_samples",
    "check_seed",
    "check_stage_params",
    "created_folder",
    "open_he3_layer",
    "open_site_inputs",
    "rank_from_sources",
    "run_exports",
    "run_he3",
    "run_ice",
    "run_illumination",
    "run_resources",
    "run_sites",
    "run_slope",
    "run_terrain",
    "write_he3",
    "write_ice",
    "write_illumination",
    "write_ranking",
]


# --- shared -------------------------------------------------------------------------------------


#: The largest seed accepted: every random generator prospect seeds takes it (scikit-learn's need
#: ``seed + fold < 2**32``; numpy's any non-negative integer).
MAX_SEED = 2_147_483_647  # 2**31 - 1


def check_seed(seed: Any, name: str = "seed") -> int:
    """``seed`` as an int in ``0..MAX_SEED``, or a :class:`~prospect.errors.ConfigError` naming it
    (as ``name``: the option or key it came from)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{name} must be an integer from 0 to {MAX_SEED}, not {seed!r}")
    return int(seed)


def check_samples(samples: Any, *, maximum: int, minimum_mc: int = 1) -> int:
    """Monte Carlo ``samples`` as an int: 0 (none) or ``minimum_mc..maximum``; else a
    :class:`~prospect.errors.ConfigError` naming the accepted values."""
    ok = (
        not isinstance(samples, bool)
        and isinstance(samples, (int, np.integer))
        and (samples == 0 or minimum_mc <= samples <= maximum)
    )
    if not ok:
        least = f"at least {minimum_mc} and " if minimum_mc > 1 else ""
        raise ConfigError(f"samples must be 0 (no Monte Carlo) or an integer {least}at most {maximum}, not {samples!r}")
    return int(samples)


def _check_writable(folder: Path, path: Path) -> None:
    """Open a temporary file in ``folder``: a read-only file system, a folder without write
    permission or a pseudo file system (``/proc``) is an :class:`~prospect.errors.OutputPathError`
    before any work (``os.access`` does not see all of them, and root passes its permission test).
    On Linux the file has no name (``O_TMPFILE``), so even a ``kill -9`` leaves nothing behind."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".prospect-probe-"):
            pass
    except OSError as exc:
        raise OutputPathError(f"{path}: cannot write in {folder} ({exc.strerror or exc})") from None


def check_output(out: PathLike) -> Path:
    """The output-folder check of every stage: ``out`` is a folder or does not exist yet, its
    parent is a folder, and the folder (or its parent) can be written in
    (:class:`~prospect.errors.OutputPathError` otherwise). The folder itself is created by the
    stage (:func:`created_folder`) only once its parameters and inputs have been accepted."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{path}: exists and is not a folder")
    if not path.parent.exists():
        raise OutputPathError(f"{path}: parent directory {path.parent} does not exist")
    if not path.parent.is_dir():
        raise OutputPathError(f"{path}: parent {path.parent} is not a folder")
    _check_writable(path if path.is_dir() else path.parent, path)
    return path


def check_output_file(out: PathLike) -> Path:
    """The same check for a stage that writes one file: ``out`` is not a folder, and its folder
    exists and can be written in."""
    path = Path(out)
    if path.is_dir():
        raise OutputPathError(f"{path}: is a folder; give the output file's name (e.g. {path / 'slope.tif'})")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.exists():
        raise OutputPathError(f"{path}: output directory {folder} does not exist")
    if not folder.is_dir():
        raise OutputPathError(f"{path}: {folder} is not a folder")
    _check_writable(folder, path)
    return path


@contextlib.contextmanager
def created_folder(folder: Path, *, keep: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Create the stage's output ``folder`` (checked by :func:`check_output`) for the ``with`` body.

    If the body fails (an error, Ctrl-C) and the folder did not exist before, it is removed with
    whatever the body put in it (writers publish nothing partial; this removes the folder
    itself), unless ``keep(folder)`` says it holds state worth keeping (the illumination stage's
    finished tiles, from which a rerun resumes).
    """
    created = not folder.exists()
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"{folder}: cannot create the output folder ({exc.strerror or exc})") from None
    try:
        yield folder
    except BaseException:
        if created and not (keep is not None and keep(folder)):
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _finite_number(value: Any, name: str, minimum: float, maximum: float) -> float:
    """``value`` as a finite float in ``(minimum, maximum]``, else a ConfigError naming ``name``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not (math.isfinite(number) and minimum < number <= maximum):
        raise ConfigError(f"{name} must be a number more than {minimum:g} and at most {maximum:g}, not {value!r}")
    return number


def _darkness_min_disk_fraction(p: Mapping[str, Any]) -> float:
    """The illumination stage's ``darkness_min_disk_fraction`` (0..1, default 0: dark with no limb up)."""
    from prospect.illumination.products import check_disk_fraction

    value = p.get("darkness_min_disk_fraction")
    return 0.0 if value is None else check_disk_fraction(value)


def _check_illumination(p: Mapping[str, Any]) -> dict[str, Any]:
    """The illumination stage's span and tiling checked; returns the keywords of ``horizon_tiling``."""
    from prospect.illumination.ephemeris import check_time_span
    from prospect.illumination.maps import check_tiling_params

    _darkness_min_disk_fraction(p)

    check_time_span(
        **{k: p[k] for k in ("start", "years") if k in p}, **({"step_hours": p["step"]} if "step" in p else {})
    )
    return check_tiling_params({**p, "workers": p.get("workers", 2)})


def _check_ice(p: Mapping[str, Any]) -> int:
    from prospect.resources.ice import MAX_MC_SAMPLES, MC_SAMPLES

    return check_samples(p.get("samples", MC_SAMPLES), maximum=MAX_MC_SAMPLES)


def _check_he3(p: Mapping[str, Any]) -> int:
    from prospect.resources.he3 import MAX_MC_SAMPLES, MAX_TABLE_RESOLUTION_DEG, MC_SAMPLES, MIN_TABLE_RESOLUTION_DEG

    samples = check_samples(p.get("samples", MC_SAMPLES), maximum=MAX_MC_SAMPLES, minimum_mc=2)
    if "resolution_deg" in p:
        resolution = _finite_number(p["resolution_deg"], "resolution_deg", 0.0, MAX_TABLE_RESOLUTION_DEG)
        if resolution < MIN_TABLE_RESOLUTION_DEG:
            raise ConfigError(f"resolution_deg must be at least {MIN_TABLE_RESOLUTION_DEG:g}, not {resolution:g}")
    return samples


def check_stage_params(stage: str, params: Params = None, seed: Any = 0) -> None:
    """The checks a stage makes of its ``params`` and ``seed`` before it opens or writes anything,
    without running it: ``prospect run`` can refuse a bad pipeline before it creates the run folder.
    ``stage``: ``terrain``, ``illumination``, ``resources`` (params ``ice`` / ``he3``), ``sites``
    or ``exports``; a :class:`~prospect.errors.ConfigError` names the bad value."""
    check_seed(seed)
    p = _params(params)
    if stage == "illumination":
        _check_illumination(p)
    elif stage == "resources":
        if p.get("ice") is not None:
            _check_ice(_params(p["ice"]))
        if p.get("he3") is not None:
            _check_he3(_params(p["he3"]))
    elif stage in ("terrain", "slope") and "method" in p:
        from prospect.terrain import check_method

        check_method(p["method"])


def _params(params: Params) -> dict[str, Any]:
    """The given parameters without the None values (None: the library's default)."""
    return {k: v for k, v in (params or {}).items() if v is not None}


def _grid(grid: AnalysisGrid | Mapping[str, Any] | None) -> AnalysisGrid | None:
    if grid is None or isinstance(grid, AnalysisGrid):
        return grid
    if isinstance(grid, Mapping):
        return AnalysisGrid.from_dict(grid)
    raise ConfigError(f"grid must be an AnalysisGrid or a grid mapping, not {type(grid).__name__}")


def _tag_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)


def _json_default(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def _even(n: int, size: int) -> tuple[int, ...]:
    """``n`` pixels as pieces of ``size`` (the last one shorter), for unchunked maps."""
    return tuple(min(size, n - s) for s in range(0, n, size))


# --- terrain ------------------------------------------------------------------------------------


def _write_slope(
    dem: xr.DataArray,
    path: Path,
    *,
    grid: AnalysisGrid,
    params: Mapping[str, Any],
    tags: Mapping[str, Any],
    source_tag: tuple[str, str] | None,
    progress: bool,
    label: str,
) -> Path:
    from prospect.io.writers import stream_geotiff
    from prospect.terrain import slope_deg

    options = {k: params[k] for k in ("method", "baseline_m", "planar") if k in params}
    result = slope_deg(dem, **options)
    all_tags = {**tags, **{f"prospect_{k}": v for k, v in result.attrs.items()}}
    if source_tag is not None:
        all_tags[source_tag[0]] = source_tag[1]
    valid = _ValidTally()
    stream_geotiff(
        result,
        path,
        crs=grid.crs,
        transform=grid.transform,
        units=layers.get("slope_deg").units,
        tags=all_tags,
        cog=bool(params.get("cog", False)),
        progress=progress,
        label=label,
        on_block=valid,
    )
    valid.warn_if_empty(path, "the DEM has no 3 x 3 neighbourhood of valid heights")
    return path


class _ValidTally:
    """Called with each block written: remembers whether any value was finite (and not ``nodata``)."""

    def __init__(self, nodata: float | None = None) -> None:
        self.any = False
        self.nodata = nodata

    def __call__(self, block: np.ndarray) -> None:
        if not self.any:
            valid = np.isfinite(block)
            if self.nodata is not None:
                valid &= block != self.nodata
            self.any = bool(valid.any())

    def warn_if_empty(self, path: Path, why: str) -> None:
        if not self.any:
            warnings.warn(f"{path}: every pixel is nodata ({why})", UserWarning, stacklevel=3)


def _warn_empty_maps(tallies: Mapping[str, _ValidTally], paths: Mapping[str, Path], why: str) -> None:
    """One warning naming every map of a stage that came out without a single value."""
    empty = [name for name, tally in tallies.items() if not tally.any]
    if not empty:
        return
    folder = paths[empty[0]].parent
    files = ", ".join(paths[name].name for name in empty)
    warnings.warn(f"{folder}: every pixel is nodata in {files} ({why})", UserWarning, stacklevel=3)


def run_slope(
    out: PathLike,
    *,
    sources: Sources,
    grid: AnalysisGrid | Mapping[str, Any] | None = None,
    params: Params = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Path]:
    """Slope [deg] of ``sources["dem"]`` streamed into the GeoTIFF ``out`` (``prospect slope``).

    The one stage that writes a file, not a folder. ``params``: ``method`` (``horn`` or
    ``zt``), ``baseline_m``, ``planar`` (:func:`prospect.terrain.slope_deg`), ``chunks``
    (dask chunk side in pixels), ``crs_override`` and ``cog``. ``grid`` and ``seed`` are
    unused (the DEM's own grid; no random draw).
    """
    from prospect.io.readers import open_product
    from prospect.terrain import check_baseline, check_dem, check_method, metric_of
    from prospect.terrain.surface import gradient_steps

    p = _params(params)
    chunks = p.get("chunks")
    if chunks is not None and (isinstance(chunks, bool) or not isinstance(chunks, (int, np.integer)) or chunks <= 0):
        raise ConfigError(f"chunks must be a positive number of pixels, not {chunks!r}")
    if "method" in p:
        check_method(p["method"])
    if "baseline_m" in p:
        check_baseline(p["baseline_m"])
    path = check_output_file(out)
    dem = sources["dem"]
    if Path(str(dem)).exists() and Path(str(dem)).resolve() == path.resolve():
        raise OutputPathError(f"{path}: is the input DEM; give another output file")
    arr = open_product(dem, chunks=chunks, crs_override=p.get("crs_override"))
    own = AnalysisGrid.from_dataarray(arr)
    reach = gradient_steps(metric_of(arr, planar=bool(p.get("planar"))), p.get("baseline_m"))
    check_dem(arr, dem, stencil_px=2 * reach + 1)
    _write_slope(
        arr,
        path,
        grid=own,
        params=p,
        tags={},
        source_tag=("prospect_source", str(dem)),
        progress=progress,
        label=f"slope {Path(str(dem)).name}",
    )
    return {"slope_deg": path}


def run_terrain(
    out: PathLike,
    *,
    sources: Sources,
    grid: AnalysisGrid | Mapping[str, Any] | None = None,
    params: Params = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Path]:
    """The DEM on the analysis grid (bilinear when the grids differ) and its slope.

    ``sources``: ``dem``. ``params``: ``method`` of the slope (default Horn), and
    ``source_label``, the DEM's description recorded in the tags (default: the source).
    """
    from prospect.grid import resample
    from prospect.io.readers import open_product
    from prospect.terrain import check_dem

    p = _params(params)
    folder = check_output(out)
    dem = open_product(sources["dem"])
    check_dem(dem, sources["dem"])
    target = _grid(grid) or AnalysisGrid.from_dataarray(dem)
    if not AnalysisGrid.from_dataarray(dem).matches(target):
        dem = resample(dem, target, method="bilinear")
    with created_folder(folder):
        return _write_terrain(dem, folder, target, p, sources, progress)


def _write_terrain(
    dem: xr.DataArray, folder: Path, target: AnalysisGrid, p: Mapping[str, Any], sources: Sources, progress: bool
) -> dict[str, Path]:
    from prospect.io.readers import open_product
    from prospect.io.writers import stream_geotiff

    tags = {"prospect_source": str(p.get("source_label", sources["dem"])), "prospect_crs": target.crs.code}
    dem_name, slope_name = layers.filename("dem_m"), layers.filename("slope_deg")
    paths = {"dem_m": folder / dem_name, "slope_deg": folder / slope_name}
    stream_geotiff(
        dem,
        paths["dem_m"],
        crs=target.crs,
        transform=target.transform,
        units=layers.get("dem_m").units,
        tags=tags,
        progress=progress,
        label=f"terrain: {dem_name}",
    )
    _write_slope(
        open_product(paths["dem_m"]),
        paths["slope_deg"],
        grid=target,
        params={k: p[k] for k in ("method",) if k in p},
        tags=tags,
        source_tag=None,
        progress=progress,
        label=f"terrain: {slope_name}",
    )
    return paths


# --- illumination -------------------------------------------------------------------------------

#: The folder of the finished tiles of an interrupted illumination stage (in its output folder).
PARTIAL_DIR = ".prospect-partial"


def _run_key(dem: xr.DataArray, samples: Any, params: Mapping[str, Any]) -> str:
    """A short hash of the DEM's identity (checksum or name and shape), the ephemeris and the parameters."""
    h = hashlib.sha256()
    ident = {k: str(dem.attrs.get(k, "")) for k in ("source_sha256", "product_id", "source_path")}
    h.update(
        json.dumps(
            {"dem": ident, "shape": list(dem.shape), "params": dict(params)}, sort_keys=True, default=str
        ).encode()
    )
    for arr in (samples.beta_deg, samples.lambda_deg, samples.earth_lon_deg, samples.earth_lat_deg):
        h.update(np.ascontiguousarray(arr, dtype="float64").tobytes())
    h.update(repr(samples.step_h).encode())
    if samples.darkness_min_disk_fraction:  # 0 (the default) keeps the keys of earlier runs
        h.update(f"darkness_min_disk_fraction={samples.darkness_min_disk_fraction!r}".encode())
    return h.hexdigest()[:16]


def _load_tile(saved: Path, template: xr.DataArray) -> xr.Dataset | None:
    """A finished tile's products from its checkpoint, or None when it is damaged."""
    from prospect.illumination import maps

    try:
        with np.load(saved) as npz:
            ds = xr.Dataset({name: template.copy(data=npz[name]) for name in maps.PRODUCTS})
            attrs = json.loads(str(npz["attrs"]))
        for name in maps.PRODUCTS:
            ds[name].attrs = attrs[name]
            ds[name].name = name
    except (OSError, KeyError, ValueError):
        return None  # a damaged checkpoint is recomputed
    return ds


def _save_tile(saved: Path, ds: xr.Dataset) -> None:
    """A finished tile's products as its checkpoint (atomic ``.npz``)."""
    from prospect.illumination import maps
    from prospect.io.writers import atomic_write

    payload: dict[str, Any] = {n: ds[n].values for n in maps.PRODUCTS}
    with atomic_write(saved) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, attrs=json.dumps({n: ds[n].attrs for n in maps.PRODUCTS}, default=str), **payload)


def _stage_log(message: str, progress: bool) -> None:
    """A line of a stage's report (illumination tiles, resource models): the run log (and its stderr echo) under
    ``prospect run``, else stderr when ``progress`` is on."""
    import logging

    log = logging.getLogger("prospect.pipeline")  # prospect.pipeline.runner.LOGGER
    if log.handlers:
        log.info("%s", message)
    elif progress:
        print(message, file=sys.stderr, flush=True)


class _LocalTiles:
    """Tiles computed in this process, one at a time (each with ``th.workers`` azimuth threads)."""

    def __init__(self, th: Any, samples: Any, save: Callable[[Any, xr.Dataset], None]) -> None:
        self.th, self.samples, self.save = th, samples, save
        self.where = f"local threads ({th.workers} per tile)"

    def take(self, window: Any) -> xr.Dataset:
        from prospect.illumination import maps

        ds = maps.tile_products(self.th, window, self.samples)
        self.save(window, ds)
        return ds

    def close(self) -> None:
        pass


class _ClusterTiles:
    """Tiles computed as tasks on the connected Dask cluster (``client.submit``).

    The far-field DEM, the Sun samples and the tiling state are scattered to every worker
    once; each task gets its own near-field window (read here). Tasks are submitted in
    row-major order, at most ``ahead`` of them (running or finished but not yet taken), so
    memory stays bounded; each finished tile is saved (``save``) as soon as its future
    completes, in whatever order they complete, and :meth:`take` hands them out in order.
    """

    def __init__(self, client: Any, th: Any, samples: Any, todo: list, save: Callable[[Any, xr.Dataset], None]) -> None:
        import collections

        import dask
        from distributed import as_completed

        from prospect.illumination import tiles

        self.client, self.th, self.save = client, th, save
        nthreads = client.nthreads()  # worker -> its threads
        self.where = f"the Dask cluster {client.scheduler.address} ({len(nthreads)} workers)"
        self.ahead = max(2, 2 * sum(nthreads.values()))
        self.queue = collections.deque(todo)
        self.running: dict[Any, Any] = {}
        self.done: dict[Any, xr.Dataset] = {}
        self.completed = as_completed()
        self.shared: list[Any] = []
        if todo:
            with dask.config.set(scheduler="threads"):  # the DEM is read here, not on the workers
                coarse = th.coarse_heights() if th.plan.multiresolution else None
            state = tiles.shared_state(th)
            self.shared = client.scatter([state, coarse, samples], broadcast=True)

    def _submit(self, window: Any) -> None:
        import uuid

        import dask

        from prospect.illumination import maps, tiles

        with dask.config.set(scheduler="threads"):  # the window is read here, not on the workers
            job = tiles.tile_job(self.th, window)
        r0, _r1, c0, _c1 = window
        future = self.client.submit(
            maps.cluster_tile_products, job, *self.shared, key=f"illumination-tile-{r0}-{c0}-{uuid.uuid4().hex}"
        )
        self.running[future] = window
        self.completed.add(future)

    def _top_up(self) -> None:
        while self.queue and len(self.running) + len(self.done) < self.ahead:
            self._submit(self.queue.popleft())

    def take(self, window: Any) -> xr.Dataset:
        if window not in self.done and window not in self.running.values():
            if window in self.queue:
                self.queue.remove(window)
            self._submit(window)  # out of turn: a damaged checkpoint
        self._top_up()
        while window not in self.done:
            future = next(self.completed)
            w = self.running.pop(future)
            ds = future.result()  # a failed task raises here
            self.save(w, ds)
            self.done[w] = ds
        ds = self.done.pop(window)
        self._top_up()
        return ds

    def close(self) -> None:
        if self.running:
            self.client.cancel(list(self.running))
        self.running.clear()
        self.done.clear()
        self.shared = []


def _checkpointed_tiles(th: Any, samples: Any, checkpoint: Path, progress: bool) -> Iterator[tuple[Any, xr.Dataset]]:
    """:func:`prospect.illumination.maps.tile_products` of every tile in row-major order, each
    saved in ``checkpoint`` when done and loaded from there if present (a rerun after a crash
    resumes: finished tiles are not computed again).

    The tiles are computed in this process (``th.workers`` azimuth threads), or, when a Dask
    cluster client is connected (:func:`prospect.io.writers.connected_client`), as tasks on the
    cluster (:class:`_ClusterTiles`: shared inputs scattered once, each tile's near-field window
    sent with its task, each tile saved as its future completes). Either way the products are
    the same bytes. How many tiles were reused and computed, and where, goes to the run log
    (or stderr with ``progress``)."""
    from prospect.illumination import maps
    from prospect.io.writers import connected_client

    dem = th.dem
    windows = th.plan.windows()
    checkpoint.mkdir(parents=True, exist_ok=True)
    saved = {w: checkpoint / f"tile_{w[0]}_{w[2]}.npz" for w in windows}
    finished = {w for w in windows if saved[w].exists()}
    todo = [w for w in windows if w not in finished]

    def save(w: Any, ds: xr.Dataset) -> None:
        _save_tile(saved[w], ds)

    client = connected_client()
    tiles: _LocalTiles | _ClusterTiles
    tiles = _LocalTiles(th, samples, save) if client is None else _ClusterTiles(client, th, samples, todo, save)
    _stage_log(
        f"illumination: {len(windows)} tiles, {len(finished)} finished in checkpoints, "
        f"{len(todo)} to compute on {tiles.where}",
        progress,
    )
    reused = computed = 0
    t_start = time.monotonic()
    try:
        for i, w in enumerate(windows):
            r0, r1, c0, c1 = w
            ds = _load_tile(saved[w], dem[r0:r1, c0:c1]) if w in finished else None
            loaded = ds is not None
            if ds is None:
                ds = tiles.take(w)
                computed += 1
            else:
                reused += 1
            maps.describe_tiling(th, ds)
            if progress:
                el = time.monotonic() - t_start
                how = ", from its checkpoint" if loaded else ""
                print(
                    f"illumination: tile {i + 1}/{len(windows)} rows {r0}:{r1} cols {c0}:{c1} ({el:.0f} s{how})",
                    file=sys.stderr,
                    flush=True,
                )
            yield w, ds
    finally:
        tiles.close()
    _stage_log(f"illumination: {reused} tiles reused from checkpoints, {computed} computed on {tiles.where}", progress)


def write_illumination(
    dem: xr.DataArray,
    outdir: PathLike,
    samples: Any,
    *,
    source: str = "",
    progress: bool = False,
    **params: Any,
) -> dict[str, Path]:
    """All four products of ``dem`` as ``outdir/<product>.tif`` (lunar CRS, units and provenance in tags).

    ``samples`` is a :class:`prospect.illumination.products.SunSamples`; ``params`` go to
    :func:`prospect.illumination.maps.horizon_tiling` (``n_azimuths``, ``max_distance_m``,
    ``observer_height_m``, ``tile_px``, ``near_px``, ``far_factor``, ``workers``). The
    files are streamed by :class:`prospect.io.writers.TiledGeoTIFFs`: all four appear
    complete at the end, or none.

    Resume. Each finished tile's products are saved in
    ``OUTDIR/.prospect-partial/<run key>/`` (atomic ``.npz`` files; the key hashes the DEM's
    identity and every parameter). A rerun of the same command after a crash or an
    interrupt loads the finished tiles instead of recomputing them, and gives results
    identical to an uninterrupted run (the computation per tile is deterministic). The
    folder is removed once the GeoTIFFs are in place. Returns ``{product: path}``.

    Cluster. When a Dask cluster client is connected (``prospect run --scheduler``,
    ``prospect illumination --scheduler``, ``DASK_SCHEDULER_ADDRESS``), every tile not yet
    finished is a task on it (``client.submit`` of
    :func:`prospect.illumination.maps.cluster_tile_products`): the far-field DEM, the Sun
    samples and the tiling state are scattered to the workers once, and each task carries its
    own near-field DEM window, read here, so workers need no shared file system. Each tile is
    saved as soon as its task completes; the tiles are written in row-major order (at most
    twice the cluster's threads of them submitted ahead), so the GeoTIFFs are byte-identical
    to the local run. Without a client the tiles run here, one after another, each with
    ``workers`` azimuth threads. How many tiles were reused and computed, and where, is
    reported (run log, or stderr with ``progress``).
    """
    from prospect.illumination import maps

    th = maps.horizon_tiling(dem, **params)
    out = Path(outdir)  # created only once the parameters have been accepted
    with created_folder(out, keep=_has_finished_tiles):
        return _write_illumination_tiles(th, dem, out, samples, source, progress, params)


def _has_finished_tiles(folder: Path) -> bool:
    """Whether an illumination folder keeps finished tiles to resume from."""
    return any((folder / PARTIAL_DIR).glob("*/tile_*.npz"))


def _write_illumination_tiles(
    th: Any, dem: xr.DataArray, out: Path, samples: Any, source: str, progress: bool, params: Mapping[str, Any]
) -> dict[str, Path]:
    from prospect.illumination import maps
    from prospect.io.writers import TiledGeoTIFFs

    grid = AnalysisGrid.from_dataarray(dem)
    key = _run_key(dem, samples, params)
    ckpt = out / PARTIAL_DIR / key
    paths = {name: out / layers.filename(name) for name in maps.PRODUCTS}
    units = {name: layers.get(name).units for name in maps.PRODUCTS}
    first = True
    valid = _ValidTally()
    with TiledGeoTIFFs(paths, crs=grid.crs, transform=grid.transform, shape=grid.shape, units=units) as dst:
        for (r0, _r1, c0, _c1), ds in _checkpointed_tiles(th, samples, ckpt, progress):
            valid(ds["illumination_fraction"].values)
            for name in maps.PRODUCTS:
                layer = ds[name]
                dst.write(name, r0, c0, layer.values)
                if first:
                    tags = {f"prospect_{k}": v for k, v in layer.attrs.items() if k != "units"}
                    tags["prospect_observer_height_m"] = params.get("observer_height_m", 0.0)
                    tags["prospect_source"] = source
                    dst.set_tags(name, tags)
            first = False
    shutil.rmtree(ckpt, ignore_errors=True)
    with contextlib.suppress(OSError):
        (out / PARTIAL_DIR).rmdir()
    valid.warn_if_empty(paths["illumination_fraction"], "no pixel has a horizon")
    return paths


def run_illumination(
    out: PathLike,
    *,
    sources: Sources,
    grid: AnalysisGrid | Mapping[str, Any] | None = None,
    params: Params = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Path]:
    """Horizon maps, then Sun and Earth visibility over the span: four GeoTIFFs in ``out``.

    ``sources``: ``dem`` (a polar stereographic DEM; the analysis grid is its grid).
    ``params`` (library defaults in brackets): ``start`` of the span (UTC date) and its
    length ``years`` [:func:`prospect.illumination.ephemeris.default_times`], ``step``
    [h] of the darkness series [``DEFAULT_STEP_HOURS``], ``azimuths``
    [:data:`prospect.illumination.maps.N_AZIMUTHS`, at least
    :data:`~prospect.illumination.maps.MIN_AZIMUTHS`], ``max_distance`` [m]
    [:data:`~prospect.illumination.maps.MAX_DISTANCE_M`], observer ``height`` [m],
    ``tile`` (default: the largest that fits ``memory`` [MB], 3000), ``near``, ``far_factor``
    (:mod:`prospect.illumination.tiles`), ``workers`` (azimuth threads per tile, 2; on a
    cluster at most the worker's threads), ``crs_override``, and ``source_label`` (the DEM's
    description in the tags; default the source). Resumable tile by tile; the tiles are tasks
    on the connected Dask cluster if there is one, and the DEM is read in this process either
    way (:func:`write_illumination`).
    """
    import dask

    from prospect.grid import on_grid
    from prospect.illumination.ephemeris import default_times, sun_earth_directions
    from prospect.illumination.products import SunSamples
    from prospect.io.readers import open_product
    from prospect.terrain import check_dem

    p = _params(params)
    span: dict[str, Any] = {k: p[k] for k in ("start", "years") if k in p}
    options = _check_illumination(p)
    darkness = _darkness_min_disk_fraction(p)
    folder = check_output(out)
    # the DEM is read in this process even with a cluster connected: the tiles are sent to the
    # cluster explicitly, with their windows (write_illumination), so workers need no shared files
    with dask.config.set(scheduler="threads"):
        dem = open_product(sources["dem"], crs_override=p.get("crs_override"))
        check_dem(dem, sources["dem"])
        target = _grid(grid)
        if target is not None and not AnalysisGrid.from_dataarray(dem).matches(target):
            dem = on_grid(dem, target, method="bilinear")
        if "years" in span:
            span["years"] = float(span["years"])
        se = sun_earth_directions(default_times(**span, step_hours=p.get("step")))
        return write_illumination(
            dem,
            folder,
            SunSamples.from_ephemeris(se, darkness_min_disk_fraction=darkness),
            source=str(p.get("source_label", sources["dem"])),
            progress=progress,
            **options,
        )


# --- resources: water ice -----------------------------------------------------------------------

#: maps are computed and written in windows of about this many pixels a side
WRITE_WINDOW_PX = 2048


def write_ice(
    dataset: xr.Dataset,
    outdir: PathLike,
    *,
    cog: bool = False,
    source_info: Mapping[str, Any] | None = None,
    window_px: int = WRITE_WINDOW_PX,
) -> dict[str, Path]:
    """Write every 2-D map of ``dataset`` as ``outdir/<name>.tif``, all or nothing.

    ``ice_stability_class`` is uint8 with nodata 255; the other maps float32 with NaN
    as -9999. Each file carries the lunar CRS, the band's ``units`` tag and GDAL unit,
    and provenance tags (``prospect_*``: the layers used and missing, effective
    weights, thermal source, class rules, parameter values and sources, and
    ``source_info``); ``ice_provenance.json`` holds the same. The maps are computed
    window by window (all maps of a window in one dask pass, so the Monte Carlo is
    evaluated once) and streamed by :class:`prospect.io.writers.TiledGeoTIFFs` (tiled
    ZSTD; ``cog=True`` converts each to a Cloud Optimized GeoTIFF with overviews), which
    moves them into place only when all are complete: an error leaves no partial outputs.
    Returns ``{map name: path}`` plus ``"provenance"``.
    """
    import dask
    import dask.array as da

    from prospect.io.writers import TiledGeoTIFFs, atomic_write, window_groups, window_scheduler
    from prospect.resources.ice import CLASS_NODATA, FLOAT_NODATA

    if not isinstance(dataset, xr.Dataset):
        raise ConfigError(
            f"write_ice takes the Dataset of ice_favourability / ice_monte_carlo, not {type(dataset).__name__}"
        )
    names = [str(k) for k in dataset.data_vars if dataset[k].ndim == 2]
    if not names:
        raise ConfigError("write_ice: the dataset has no 2-D maps to write")
    grid = AnalysisGrid.from_dataarray(dataset[names[0]])
    for k in names[1:]:
        if not AnalysisGrid.from_dataarray(dataset[k]).matches(grid):
            raise GridError(f"write_ice: map {k!r} is not on the grid of {names[0]!r}")
    out = Path(outdir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"{out}: cannot create the output directory ({exc.strerror})") from None
    if not os.access(out, os.W_OK):
        raise OutputPathError(f"{out}: the output directory is not writable")
    paths = {k: out / f"{k}.tif" for k in names}
    provenance_path = out / "ice_provenance.json"
    common = {f"prospect_{k}": _tag_value(v) for k, v in dataset.attrs.items()}
    if source_info:
        common["prospect_source_info"] = _tag_value(dict(source_info))
    common["prospect_software"] = "prospect.resources.ice"
    height, width = grid.shape
    dtypes = {k: "uint8" if dataset[k].dtype == np.uint8 else "float32" for k in names}
    nodata = {k: float(CLASS_NODATA) if dtypes[k] == "uint8" else FLOAT_NODATA for k in names}
    units = {k: str(dataset[k].attrs.get("units", "1")) for k in names}
    tags = {
        k: {**common, **{f"prospect_{a}": _tag_value(val) for a, val in dataset[k].attrs.items() if a != "units"}}
        for k in names
    }
    data = {k: dataset[k].data for k in names}
    chunks = next((x.chunks for x in data.values() if isinstance(x, da.Array)), None)
    row_spans = window_groups(chunks[0] if chunks else _even(height, window_px), window_px)
    col_spans = window_groups(chunks[1] if chunks else _even(width, window_px), window_px)
    record = {
        "maps": {k: {"file": paths[k].name, "units": units[k], "attrs": dict(dataset[k].attrs.items())} for k in names},
        "provenance": dict(dataset.attrs),
        "source_info": dict(source_info or {}),
        "grid": grid.to_dict(),
    }
    tallies = {k: _ValidTally(nodata[k] if dtypes[k] == "uint8" else None) for k in names}
    # the maps are published when TiledGeoTIFFs exits, the provenance record right after; an error discards all
    with (
        atomic_write(provenance_path) as tmp_provenance,
        TiledGeoTIFFs(
            paths,
            crs=grid.crs,
            transform=grid.transform,
            shape=grid.shape,
            units=units,
            tags=tags,
            nodata=nodata,
            dtypes=dtypes,
            cog=cog,
        ) as dst,
    ):
        for r0, r1 in row_spans:
            for c0, c1 in col_spans:
                window = [data[k][r0:r1, c0:c1] for k in names]
                if chunks is not None:
                    window = list(dask.compute(*window, scheduler=window_scheduler()))
                for k, block in zip(names, window, strict=True):
                    tallies[k](np.asarray(block))
                    dst.write(k, r0, c0, block)
        tmp_provenance.write_text(json.dumps(record, indent=2, default=str, sort_keys=True), encoding="utf-8")
    _warn_empty_maps(tallies, paths, "no pixel has the inputs the map needs")
    return {**paths, "provenance": provenance_path}


def _source_record(source: Any, attrs: Mapping[str, Any]) -> dict[str, Any]:
    rec: dict[str, Any] = {"source": str(source)}
    for k in ("product_id", "manifest_id", "source_sha256", "source_files", "units", "instrument"):
        if attrs.get(k) not in (None, ""):
            rec[k] = attrs[k]
    return rec


#: the ice stage's source roles -> the :class:`prospect.resources.ice.IceLayers` field they fill
ICE_ROLES = {
    "dem": "dem",
    "psr": "psr",
    "tmax": "tmax_k",
    "tmean": "tmean_k",
    "ice_depth": "ice_depth_m",
    "illumination": "illumination_fraction",
    "hydrogen": "hydrogen_ppm",
}


def run_ice(
    out: PathLike,
    *,
    sources: Sources,
    grid: AnalysisGrid | Mapping[str, Any] | None = None,
    params: Params = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Path]:
    """The ice stage: read the layers, model, Monte Carlo, write GeoTIFFs (:func:`write_ice`).

    ``sources`` (:data:`ICE_ROLES`, each a path or a data-manifest id, at least one):
    rasters are read with :func:`prospect.io.readers.open_product`; ``psr`` may also be
    polygons (a shapefile such as the LOLA PSR catalogue, a GeoPackage, ...;
    :func:`prospect.io.vectors.open_vector` then
    :func:`prospect.resources.masks.polygon_fraction`) or the illumination stage's
    ``psr_mask.tif``; ``illumination`` is its ``illumination_fraction.tif``; ``hydrogen``
    may be a binned table (rasterised area-weighted). The analysis grid is ``grid``, else
    the DEM's, else the first raster's; rasters on other grids are resampled onto it
    (:func:`prospect.grid.on_grid`, ``method="average"``: block mean when coarser).
    Slope and aspect come from the DEM on the analysis grid (:mod:`prospect.terrain`,
    Horn, ground distances; baseline in the attributes).

    ``params``: ``config`` (``{"ice": {...}}`` or a YAML file, :func:`prospect.config.load`),
    ``samples`` of the Monte Carlo (0 skips it; default
    :data:`prospect.resources.ice.MC_SAMPLES`), ``cog``. The parameters are checked before
    any data is read.
    """
    from prospect.grid import on_grid
    from prospect.io.readers import open_product
    from prospect.io.tables import is_binned_table_source, read_binned_table
    from prospect.io.vectors import is_vector_source, open_vector
    from prospect.resources.binned import rasterize_binned
    from prospect.resources.ice import (
        IceLayers,
        ice_favourability,
        ice_monte_carlo,
        ice_parameters,
        water_inventory_kg,
    )
    from prospect.resources.masks import polygon_fraction
    from prospect.terrain import aspect_deg, check_dem, slope_deg

    p = _params(params)
    parameters = ice_parameters(p.get("config"))
    samples = _check_ice(p)
    seed = check_seed(seed)
    target = _grid(grid)
    unknown = set(sources) - set(ICE_ROLES)
    if unknown:
        raise ConfigError(f"run_ice: unknown source role(s) {sorted(unknown)} (known: {', '.join(ICE_ROLES)})")
    inputs = {ICE_ROLES[role]: src for role, src in sources.items() if src is not None}
    if not inputs:
        raise ConfigError(
            "ice needs at least one of the inputs dem, psr, tmax, tmean, ice_depth, illumination, hydrogen"
        )
    folder = check_output(out)
    rasters: dict[str, xr.DataArray] = {}
    tables: dict[str, Any] = {}
    source_info: dict[str, Any] = {}
    psr_polygons = None
    for key in ICE_ROLES.values():  # the order of the provenance record
        src = inputs.get(key)
        if src is None:
            continue
        if key == "psr" and is_vector_source(src):
            psr_polygons = open_vector(src)
            source_info[key] = _source_record(src, psr_polygons.attrs)
            continue
        if is_binned_table_source(str(src)):
            tables[key] = read_binned_table(str(src))  # rasterised once the grid is known
            source_info[key] = {
                "source": str(src),
                "product_id": tables[key].product_id,
                "manifest_id": tables[key].manifest_id,
                "source_sha256": tables[key].source_sha256,
                "units": tables[key].units,
            }
            continue
        rasters[key] = open_product(src)
        if key == "dem":
            check_dem(rasters[key], src)
        source_info[key] = _source_record(src, rasters[key].attrs)
    if target is None:
        if not rasters:
            raise ConfigError(
                "run_ice: PSR polygons alone do not define a grid; pass grid= or a raster input (dem, tmax, ...)"
            )
        target = AnalysisGrid.from_dataarray(rasters["dem"] if "dem" in rasters else next(iter(rasters.values())))
    fields_: dict[str, xr.DataArray] = {}
    for key, arr in rasters.items():
        if key == "dem":
            surface = on_grid(arr, target)
            fields_["slope_deg"] = slope_deg(surface)
            fields_["aspect_deg"] = aspect_deg(surface)
        else:
            fields_[key] = on_grid(arr, target)
    for key, table in tables.items():
        if key == "dem":
            raise ConfigError(f"run_ice: dem {inputs['dem']} is a binned table, not a DEM raster")
        fields_[key] = rasterize_binned(table, target)  # area-weighted onto the analysis grid
    if psr_polygons is not None:
        fields_["psr"] = polygon_fraction(psr_polygons, target)
    ice_layers = IceLayers(**fields_)
    ds = ice_favourability(ice_layers, parameters)
    if samples:
        mc = ice_monte_carlo(ice_layers, parameters, n=int(samples), seed=seed)
        ds = ds.assign(mc.data_vars)
        ds.attrs.update({k: v for k, v in mc.attrs.items() if k.startswith("mc_")})
    ds.attrs["grid"] = target.to_dict()
    if "water_column_kg_m2" in ds:
        ds.attrs["water_inventory_kg"] = water_inventory_kg(ds, parameters, psr=fields_.get("psr"))
    with created_folder(folder):
        return write_ice(ds, folder, cog=bool(p.get("cog", False)), source_info=source_info)


# --- resources: helium-3 ------------------------------------------------------------------------

#: Files ``write_he3`` publishes together (``he3_ppb_p05/p50/p95`` only with a Monte Carlo).
HE3_OUTPUT_MAPS = (
    "he3_ppb",
    "he3_column_kg_m2",
    "he3_column_counting_kg_m2",
    "regolith_thickness_m",
    "mare_fraction",
    "fluence_factor",
    "tio2_wt",
)


def write_he3(
    inputs: Any,
    outdir: PathLike,
    params: Any = None,
    *,
    samples: int | None = None,
    seed: int = 0,
    mask: xr.DataArray | None = None,
    workers: int = 2,
    block_px: int | None = None,
) -> dict[str, Any]:
    """Stream the He-3 maps of ``inputs`` (:class:`prospect.resources.he3.He3Inputs`) into
    ``outdir/<map>.tif`` block by block and return the inventory summary.

    The maps are :data:`HE3_OUTPUT_MAPS` plus ``he3_ppb_p05/p50/p95`` when ``samples`` > 0
    (default :data:`prospect.resources.he3.MC_SAMPLES`); all files appear together at the
    end or none does (:class:`~prospect.io.writers.TiledGeoTIFFs`). Memory is bounded by
    the block, not the raster. The summary has ``inventory_kg`` (default parameters, whole
    regolith) and, with a Monte Carlo, ``inventory_kg_p05/p50/p95``; ``inventories`` holds,
    for the whole regolith and for the counting depth (``counting_depth_m``, a mining depth),
    the central inventory, its Monte Carlo interval and its split into nearside/farside and
    mare/highland (:meth:`prospect.resources.he3.He3Result.inventories`). It is also written
    to ``outdir/he3_inventory.json``.
    """
    from prospect.config import load as load_config
    from prospect.io.writers import TiledGeoTIFFs, atomic_write
    from prospect.resources import he3

    params = params or load_config("he3")
    samples = he3.MC_SAMPLES if samples is None else samples
    coef = he3.calibrate(params)
    names = list(HE3_OUTPUT_MAPS) + ([f"he3_ppb_{p}" for p in ("p05", "p50", "p95")] if samples else [])
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    grid = inputs.grid
    attrs = he3.map_attrs(inputs, params, coef, samples=samples, seed=seed)
    tags = {
        n: {**{f"prospect_{k}": v for k, v in attrs.items()}, "prospect_long_name": he3.map_long_name(n)} for n in names
    }
    result = he3.new_result(inputs, params)
    paths = {n: out / f"{n}.tif" for n in names}
    tallies = {n: _ValidTally() for n in names}
    with TiledGeoTIFFs(
        paths,
        crs=grid.crs,
        transform=grid.transform,
        shape=grid.shape,
        units={n: he3.map_units(n) for n in names},
        tags=tags,
    ) as dst:
        for res in he3.iter_blocks(
            inputs,
            params,
            samples=samples,
            seed=seed,
            mask=mask,
            block_px=he3.MC_BLOCK_PX if block_px is None else block_px,
            workers=workers,
        ):
            r0, _, c0, _ = res.window
            for n in names:
                tallies[n](res.maps[n])
                dst.write(n, r0, c0, res.maps[n])
            result.add(res)
        summary = result.summary()
        summary.update(
            maps={n: str(p) for n, p in paths.items()},
            parameters=params.values(),
            thickness_rule=inputs.thickness_rule(params),
            mare_rule=inputs.mare_rule,
            maturity_rule=inputs.maturity_rule,
            inputs=dict(inputs.sources),
            seed=seed,
        )
        with atomic_write(out / "he3_inventory.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    _warn_empty_maps(tallies, paths, "no pixel has a value in every input layer")
    return summary


def open_he3_layer(
    source: str, grid: AnalysisGrid | None, *, resolution_deg: float | None = None
) -> tuple[xr.DataArray, str]:
    """A He-3 input layer from a path or manifest id: a binned table rasterised (area-weighted) or a raster.

    Returns the layer on ``grid`` (a global geographic grid at ``resolution_deg``, default
    :data:`prospect.resources.he3.TABLE_RESOLUTION_DEG`, when ``grid`` is None and the
    source is a table; the raster's own grid when it is a raster) and the quantity it
    holds (``Ti``, ``TiO2``, ``FeO``, ... or ``""``). Chunks of one Monte Carlo block, so
    each is read once.
    """
    from prospect.grid import on_grid
    from prospect.io.readers import open_product
    from prospect.io.tables import is_binned_table_source, read_binned_table
    from prospect.resources.binned import rasterize_binned
    from prospect.resources.he3 import MC_BLOCK_PX, TABLE_RESOLUTION_DEG, quantity_of

    if is_binned_table_source(source):
        table = read_binned_table(source)
        target = grid or AnalysisGrid.global_geographic(
            TABLE_RESOLUTION_DEG if resolution_deg is None else resolution_deg
        )
        layer = rasterize_binned(table, target, chunks=MC_BLOCK_PX)
        return layer, table.quantity
    arr = open_product(source, chunks=MC_BLOCK_PX)
    quantity = quantity_of(arr)
    if grid is not None:
        arr = on_grid(arr, grid, method="average", chunks=MC_BLOCK_PX)
    return arr, quantity


def run_he3(
    out: PathLike,
    *,
    sources: Sources,
    grid: AnalysisGrid | Mapping[str, Any] | None = None,
    params: Params = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Path]:
    """The He-3 stage: sources in, maps and ``he3_inventory.json`` out (``prospect he3``).

    ``sources``: ``tio2`` (required) holds Ti (converted with ``tio2_per_ti``, e.g. the LP
    GRS Ti table) or TiO2 wt% (e.g. LROC WAC TiO2); ``feo`` (the mare/highland thickness
    rule), ``maturity``, ``thickness`` (a regolith-thickness map). The maps are on ``grid``
    (e.g. a pipeline's polar analysis grid) when given, coarsened to pixels of at most the
    ``grid_pixel_m`` parameter when it is finer (:func:`prospect.resources.he3.model_grid`); otherwise a table goes onto a
    global geographic grid of ``resolution_deg`` and a raster keeps its own grid. The
    other layers are put on the TiO2 layer's grid.

    ``params``: ``config`` (``{"he3": {...}}`` or a YAML file), ``samples`` of the Monte
    Carlo (0: none, else at least 2; default :data:`prospect.resources.he3.MC_SAMPLES`),
    ``maturity_kind`` (``index``, ``is_feo`` or ``omat``), ``quantity`` (``Ti`` / ``TiO2``:
    what the ``tio2`` source holds, overriding what it says), ``resolution_deg`` (table
    sources without a grid), ``workers``. Returns the maps and ``inventory``.
    """
    from prospect.config import load as load_config
    from prospect.resources.he3 import (
        MATURITY_KINDS,
        He3Inputs,
        calibrate,
        check_wt_pct,
        maturity_index,
        model_grid,
    )

    p = _params(params)
    parameters = load_config("he3", p.get("config"))
    calibrate(parameters)  # refuse bad anchors before any work
    samples = _check_he3(p)
    seed = check_seed(seed)
    quantity = p.get("quantity")
    if quantity not in (None, "Ti", "TiO2"):
        raise ConfigError(f"quantity must be Ti or TiO2, not {quantity!r}")
    maturity_kind = p.get("maturity_kind", "index")
    if maturity_kind not in MATURITY_KINDS:
        raise ConfigError(f"maturity_kind must be index, is_feo or omat, not {maturity_kind!r}")
    folder = check_output(out)
    tio2_source = str(sources["tio2"])
    on_grid = _grid(grid)
    if on_grid is not None:  # a fine analysis grid is coarsened: He-3's sources are 0.5-5 deg maps
        on_grid = model_grid(on_grid, parameters)
    layer, q = open_he3_layer(tio2_source, on_grid, resolution_deg=p.get("resolution_deg"))
    check_wt_pct(layer, tio2_source)
    q = quantity or q
    if q == "Ti":
        tio2 = layer * float(parameters["tio2_per_ti"])
        conversion = f"TiO2 = {parameters['tio2_per_ti']} x Ti"
    elif q in ("TiO2", ""):
        tio2 = layer
        conversion = "TiO2 as given" if q else "TiO2 assumed (the source does not say Ti or TiO2)"
    else:
        raise UnitsError(f"{tio2_source}: holds {q}, not Ti or TiO2; give a titanium source (or --quantity)")
    tio2.attrs = {**layer.attrs, "units": layers.get("tio2_wt").units, "quantity": "TiO2", "conversion": conversion}
    on = AnalysisGrid.from_dataarray(tio2)
    labels = {"tio2": f"{tio2_source} ({conversion})"}
    feo_layer = mat_layer = thick_layer = None
    if sources.get("feo") is not None:
        feo = str(sources["feo"])
        feo_layer, fq = open_he3_layer(feo, on)
        if fq not in ("FeO", ""):
            raise UnitsError(f"{feo}: holds {fq}, not FeO")
        labels["feo"] = feo
    if sources.get("maturity") is not None:
        maturity = str(sources["maturity"])
        mat_layer = maturity_index(open_he3_layer(maturity, on)[0], maturity_kind, parameters)
        labels["maturity"] = f"{maturity} ({maturity_kind})"
    if sources.get("thickness") is not None:
        thickness = str(sources["thickness"])
        thick_layer = open_he3_layer(thickness, on)[0]
        labels["thickness"] = thickness
    inputs = He3Inputs(tio2, feo_layer, mat_layer, thick_layer, sources=labels)
    with created_folder(folder):
        summary = write_he3(inputs, folder, parameters, samples=samples, seed=seed, workers=int(p.get("workers", 2)))
    return {**{n: Path(path) for n, path in summary["maps"].items()}, "inventory": folder / "he3_inventory.json"}


# --- resources: both ----------------------------------------------------------------------------


def run_resources(
    out: PathLike,
    *,
    sources: Sources,
    grid: AnalysisGrid | Mapping[str, Any] | None = None,
    params: Params = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Path]:
    """Water ice (:func:`run_ice` into ``out/ice``) and helium-3 (:func:`run_he3` into ``out/he3``).

    ``params``: ``ice`` and / or ``he3``, each the parameters of that stage (a model that
    is not named is not run). ``sources``: the roles of both. Returns the outputs of both,
    named ``ice/<name>`` and ``he3/<name>``.
    """
    p = _params(params)
    check_seed(seed)
    folder = check_output(out)
    with created_folder(folder):
        return _run_both(folder, sources, grid, p, seed, progress)


def _run_both(
    folder: Path,
    sources: Sources,
    grid: AnalysisGrid | Mapping[str, Any] | None,
    p: Mapping[str, Any],
    seed: int,
    progress: bool,
) -> dict[str, Path]:
    import time

    from prospect.memory import peak_rss_mb

    outputs: dict[str, Path] = {}
    for model in ("ice", "he3"):
        if model not in p:
            continue
        t0 = time.perf_counter()
        if model == "ice":
            ice_sources = {r: sources[r] for r in ICE_ROLES if sources.get(r) is not None}
            res = run_ice(folder / "ice", sources=ice_sources, grid=grid, params=p["ice"], seed=seed, progress=progress)
        else:
            he3_sources = {
                r: sources[r] for r in ("tio2", "feo", "maturity", "thickness") if sources.get(r) is not None
            }
            res = run_he3(folder / "he3", sources=he3_sources, grid=grid, params=p["he3"], seed=seed, progress=progress)
        outputs.update({f"{model}/{k}": v for k, v in res.items()})
        _stage_log(
            f"resources: {model} done in {time.perf_counter() - t0:.1f} s (peak RSS so far {peak_rss_mb():.0f} MB)",
            progress,
        )
    return outputs


# --- sites --------------------------------------------------------------------------------------


#: The time series behind the site stage's ``site_power`` layer (for the report's plot).
POWER_SERIES_FILE = "power_series.npz"


def write_power_series(path: Path, series: Mapping[Any, Any]) -> None:
    """``series`` (site_id -> ``(times, disk_fraction (heights, steps), heights_m)``) as one
    compressed ``.npz``: ``site_id``, ``heights_m``, ``times`` and ``disk_fraction`` (sites,
    heights, steps; float32). Every site shares the times and heights of the first."""
    items = list(series.items())
    times = np.asarray(items[0][1][0])
    heights = np.asarray(items[0][1][2], dtype="float64")
    with open(path, "wb") as fh:
        np.savez_compressed(
            fh,
            site_id=np.asarray([str(k) for k, _ in items]),
            heights_m=heights,
            times=times,
            disk_fraction=np.stack([np.asarray(v[1], dtype=np.float32) for _, v in items]),
        )


def read_power_series(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, tuple[float, ...]]]:
    """The series of :func:`write_power_series`, in its site order."""
    with np.load(path, allow_pickle=False) as z:
        heights = tuple(float(h) for h in z["heights_m"])
        times = z["times"]
        return {str(sid): (times, frac, heights) for sid, frac in zip(z["site_id"], z["disk_fraction"], strict=True)}


def write_ranking(ranking: Any, outdir: PathLike, grid: AnalysisGrid, timer: Any = None) -> dict[str, Path]:
    """``sites.gpkg`` (layers ``sites``, ``candidates`` and ``places``), ``ranking.json`` and ``model.skops``, each atomic.

    Layer ``sites`` holds every ranked site as a point with all its attributes (with its
    ``place_id``, ``rank_distinct`` and ``p_top<k>_distinct``); layer ``candidates`` the disc
    polygons of the ``disc_polygons_top_n`` best ranked (``ranking.record``; all sites when
    the record has no such entry); layer ``places`` one polygon per place
    (:func:`prospect.sites.rank.place_geodataframe`).

    ``ranking`` is a :class:`prospect.sites.rank.Ranking`. The GeoPackage is written by
    :func:`prospect.io.gpkg.write_gpkg`, so QGIS opens it with a valid lunar CRS;
    ``prospect export`` adds the styles and the vector inputs.
    """
    from prospect.io.gpkg import write_gpkg
    from prospect.io.writers import atomic_write
    from prospect.sites.rank import PartTimer, place_geodataframe, site_geodataframes

    t = timer or PartTimer()
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    lattice_scale = float(ranking.record.get("scale_factor", 1.0))
    with t.part("site geometries"):
        top_n = ranking.record.get("disc_polygons_top_n")
        points, polys = site_geodataframes(ranking, grid, ranking.record["site_radius_m"], lattice_scale, top_n)
        vectors: dict[str, Any] = {}
        if "rank_distinct" in points:
            top = int(ranking.record.get("places", {}).get("top_n", 0)) or None
            keep = (points["rank_distinct"] > 0) & (points["rank_distinct"] <= (top or len(points)))
            vectors["distinct_sites"] = points[keep].sort_values("rank_distinct").reset_index(drop=True)
        if ranking.traverses is not None:
            vectors["traverses"] = ranking.traverses
        place_polys = place_geodataframe(ranking, grid)
        if place_polys is not None:
            vectors["places"] = place_polys
        vectors.update(sites=points, candidates=polys)
        if ranking.power is not None:
            vectors["site_power"] = ranking.power
    paths = {"sites": out / "sites.gpkg", "record": out / "ranking.json"}
    with t.part("write sites.gpkg"):
        write_gpkg(paths["sites"], vectors, crs=grid.crs)
    if ranking.power_series:
        paths["power_series"] = out / POWER_SERIES_FILE
        with t.part("write power series"), atomic_write(paths["power_series"]) as tmp:
            write_power_series(tmp, ranking.power_series)
    with t.part("write ranking.json and model"):
        with atomic_write(paths["record"]) as tmp:
            tmp.write_text(json.dumps(ranking.record, indent=2, default=_json_default), encoding="utf-8")
        if ranking.model is not None:
            paths["model"] = out / "model.skops"
            from prospect.io.models import save_model

            save_model(ranking.model, paths["model"])
    return paths


def _raster_in(source: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """Files of ``names`` in a stage's output folder, or ``{names[0]: source}`` for a file."""
    path = Path(str(source))
    if path.is_dir():
        found = {n: path / layers.filename(n) for n in names if (path / layers.filename(n)).exists()}
        if not found:
            raise ConfigError(f"{path}: folder holds none of {[layers.filename(n) for n in names]}")
        return found
    return {names[0]: source}


#: The site stage's source roles (besides ``dem``) and what each may be.
SITE_ROLES = ("illumination", "psr", "ice", "he3", "craters", "cold_traps", "labels")


def open_site_inputs(dem: Any, sources: Sources) -> Any:
    """Open the site stage's inputs (paths, stage output folders or data-manifest ids) as
    :class:`prospect.sites.rank.SiteInputs`.

    ``illumination`` is the ``prospect illumination`` folder (illumination fraction,
    longest darkness, Earth visibility, PSR mask) or an illumination-fraction raster;
    ``psr`` PSR polygons or a raster (default: the illumination folder's ``psr_mask``);
    ``ice`` the ``prospect ice`` folder (favourability, stability class) or a
    favourability raster; ``he3`` a ``he3_ppb`` raster or the ``prospect he3`` folder;
    ``craters`` a crater catalogue (e.g. ``hkpolyu_craters_60_90s``), ``cold_traps`` the
    named cold-trap list (``cold_trap_craters``), ``labels`` the expert regions
    (``artemis3_regions_2022``).
    """
    from prospect.io.readers import open_product
    from prospect.io.vectors import is_vector_source, open_vector
    from prospect.resources.masks import polygon_fraction
    from prospect.sites.rank import SiteInputs
    from prospect.terrain import check_dem

    unknown = set(sources) - set(SITE_ROLES) - {"dem"}
    if unknown:
        raise ConfigError(f"rank: unknown source role(s) {sorted(unknown)} (known: dem, {', '.join(SITE_ROLES)})")
    stage_names = (
        (
            sources.get("illumination"),
            ("illumination_fraction", "longest_darkness_h", "earth_visibility_fraction", "psr_mask"),
        ),
        (sources.get("ice"), ("ice_favourability", "ice_stability_class")),
        (sources.get("he3"), ("he3_ppb",)),
    )
    # the site model's names for the illumination stage's PSR mask and the ice stage's classes
    rename = {"psr_mask": "psr_fraction", "ice_stability_class": "ice_class"}
    files = {
        rename.get(n, n): src
        for stage, names in stage_names
        if stage is not None
        for n, src in _raster_in(stage, names).items()
    }
    dem_arr = open_product(dem)
    check_dem(dem_arr, dem)
    rasters = {k: open_product(src) for k, src in files.items()}
    psr = sources.get("psr")
    if psr is not None:  # an explicit PSR layer replaces the illumination folder's psr_mask
        files["psr_fraction"] = psr
        rasters["psr_fraction"] = (
            polygon_fraction(open_vector(psr), AnalysisGrid.from_dataarray(dem_arr))
            if is_vector_source(psr)
            else open_product(psr)
        )
    vector_files = {
        k: v
        for k, v in (("craters", sources.get("craters")), ("cold_traps", sources.get("cold_traps")))
        + (("regions", sources.get("labels")),)
        if v is not None
    }
    vectors = {k: open_vector(src) for k, src in vector_files.items()}
    labels = {k: str(v) for k, v in {"dem": dem, **files, **vector_files}.items()}
    return SiteInputs(dem=dem_arr, **rasters, **vectors, sources=labels)


def rank_from_sources(
    *, sources: Sources, params: Params = None, seed: int = 0, timer: Any = None
) -> tuple[Any, AnalysisGrid]:
    """Open the site stage's inputs and rank them: the :class:`prospect.sites.rank.Ranking` that
    :func:`run_sites` writes (its record holds the inputs and the grid) and the analysis grid.
    Arguments: :func:`run_sites`; ``timer`` a :class:`prospect.sites.rank.PartTimer`."""
    from prospect.sites.rank import PartTimer, rank_parameters, rank_sites

    t = timer or PartTimer()
    p = _params(params)
    parameters = rank_parameters(p.get("config"))  # a bad key fails before any data is read
    with t.part("open inputs"):
        inputs = open_site_inputs(sources["dem"], {k: v for k, v in sources.items() if k != "dem"})
    ranking = rank_sites(
        inputs,
        parameters,
        seed=seed,
        learned=bool(p.get("learned", True)),
        evaluate=bool(p.get("evaluate", True)),
        timer=t,
    )
    ranking.record["inputs"] = inputs.sources
    ranking.record["grid"] = inputs.grid.to_dict()
    return ranking, inputs.grid


def run_sites(
    out: PathLike,
    *,
    sources: Sources,
    grid: AnalysisGrid | Mapping[str, Any] | None = None,
    params: Params = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Path]:
    """The site stage: check the parameters, open the inputs, rank, write (:func:`write_ranking`).

    ``sources``: ``dem`` (its grid is the analysis grid; ``grid`` is unused) and the roles
    of :func:`open_site_inputs`. ``params``: ``config`` (``{"sites": {...}}``, a YAML file
    or a :class:`~prospect.config.ParameterSet`), ``evaluate`` (spatial cross-validation and
    leave-one-region-out of the learned model; default True), ``learned`` (default True).
    Returns ``sites`` (the GeoPackage), ``record`` (``ranking.json``) and ``model``.
    With ``progress``, a line per part with its seconds goes to stderr (always to the run
    log at INFO).
    """
    from prospect.sites.learn import site_workers
    from prospect.sites.rank import PartTimer, rank_parameters

    rank_parameters(_params(params).get("config"))  # a bad key fails before the folder is checked
    site_workers()  # and a bad PROSPECT_SITE_WORKERS
    seed = check_seed(seed)
    folder = check_output(out)
    timer = PartTimer(progress)
    ranking, site_grid = rank_from_sources(sources=sources, params=params, seed=seed, timer=timer)
    with created_folder(folder):
        paths = write_ranking(ranking, folder, site_grid, timer)
    if progress:
        print(f"sites: done in {time.monotonic() - timer.start:.1f} s", file=sys.stderr, flush=True)
    return paths


# --- exports ------------------------------------------------------------------------------------


def run_exports(
    out: PathLike,
    *,
    sources: Sources,
    grid: AnalysisGrid | Mapping[str, Any] | None = None,
    params: Params = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Path]:
    """The deliverables in ``out`` (:func:`prospect.export.package.run_export`).

    With ``sources["sites"]`` (a site stage's folder), its ``ranking.json``, ``sites.gpkg``
    and ``model.skops`` are copied into ``out`` (each atomically) and exported with
    ``sources["slope_deg"]``; otherwise (a run without a site stage) the other roles are
    the maps and vector inputs of a maps-only package on ``grid``. ``params``: ``report``
    (default True), ``pdf`` (default False), ``properties`` added to ``run.json`` and
    ``created``, the export time.
    """

    p = _params(params)
    folder = check_output(out)
    with created_folder(folder):
        return _export_into(folder, sources, grid, p, seed, progress)


def _export_into(
    folder: Path,
    sources: Sources,
    grid: AnalysisGrid | Mapping[str, Any] | None,
    p: Mapping[str, Any],
    seed: int,
    progress: bool,
) -> dict[str, Path]:
    from prospect.export.package import run_export
    from prospect.io.writers import atomic_write

    sites = sources.get("sites")
    if sites is not None:
        sites = Path(str(sites))
        for name in ("ranking.json", "sites.gpkg", "model.skops", POWER_SERIES_FILE):
            if (sites / name).is_file():
                with atomic_write(folder / name) as tmp:
                    shutil.copyfile(sites / name, tmp)
        extra = {"slope_deg": str(sources["slope_deg"])} if sources.get("slope_deg") is not None else None
        return run_export(
            folder,
            report=bool(p.get("report", True)),
            pdf=bool(p.get("pdf", False)),
            progress=progress,
            properties=p.get("properties"),
            created=p.get("created"),
            extra_inputs=extra,
        )
    target = _grid(grid)
    if target is None:
        raise ConfigError("run_exports: a run without a site stage needs its analysis grid")
    record = {
        "inputs": {k: str(v) for k, v in sources.items() if v is not None},
        "grid": target.to_dict(),
        "seed": seed,
        "parameters": [],
    }
    return run_export(
        folder, progress=progress, record=record, properties=p.get("properties"), created=p.get("created")
    )
