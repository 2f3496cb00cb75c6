"""``prospect run``: run a pipeline's stages with a cache, resumable after a crash.

Layout of a run folder (fixed, so scripts can rely on it)::

    DIR/maps/*.tif (+ .qml)   DIR/sites.gpkg   DIR/project.qgz   DIR/report.html
    DIR/run.json              DIR/logs/run-<UTC time>.log
    DIR/stages/<stage>/       each stage's own outputs and its stage.json (the cache)

**Stages.** Each stage is one call of the stage layer (:mod:`prospect.pipeline.stages`,
the same functions the ``prospect`` commands call), with the run's sources, grid,
parameters and seed.

**Cache.** A stage's key is the sha256 of its name, its parameters, the seed, the
sha256 of every input file it reads, the keys of the stages it reads from, the digest
of its code (the source of the modules it runs, :func:`prospect.pipeline.digest.code_digest`)
and the versions of prospect's dependencies. So a change to the He-3 model recomputes
the resources stage and the stages after it, not the terrain. A stage whose
``stage.json`` holds the same key (and whose listed outputs are all there with their
recorded sizes) is skipped.

**Crashes.** A stage computes into ``stages/.<stage>.partial/`` and only a finished
stage (its ``stage.json`` written last) is renamed to ``stages/<stage>/``; the
deliverables at the top of DIR are each written atomically. So a run killed at any
point (``kill -9``) leaves no half-written output, and ``--resume`` recomputes exactly
the stages that had not finished (the illumination stage also keeps its finished tiles
in the partial folder and resumes from them). The export time written into
``report.html`` / ``run.json`` is the run's first start, kept in ``.prospect-run.json``
(``SOURCE_DATE_EPOCH`` when set then), so a resumed run's outputs are identical to an
uninterrupted run's.

**Dask.** Local threads by default (``workers`` of them); ``scheduler`` (or
``DASK_SCHEDULER_ADDRESS``) connects a :class:`distributed.Client` to an existing
cluster (:func:`connect_dask`), which then computes the chunked stages and the
illumination stage's tiles (one task each; :func:`prospect.pipeline.stages.write_illumination`);
files are still written here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prospect import layers
from prospect.errors import ConfigError, OutputPathError, ProspectError
from prospect.memory import peak_rss_mb
from prospect.pipeline.spec import Pipeline, PipelineError

STATE_FILE = ".prospect-run.json"
#: The run folder's lock: held (``flock``) for the whole run, so a second run into the same
#: folder is refused; the kernel releases it when the process ends, even by ``kill -9``.
LOCK_FILE = ".prospect-run.lock"
#: Seconds to wait for a Dask scheduler before the run is refused (nothing written yet).
SCHEDULER_TIMEOUT_S = 5
LOGGER = "prospect.pipeline"


@dataclass
class RunContext:
    """What a stage sees: the pipeline, resolved sources, the grid and earlier stages' folders."""

    pipeline: Pipeline
    out: Path
    seed: int
    sources: dict[str, str]
    digests: dict[str, str]
    grid: Any
    progress: bool
    #: the run's first start (UTC ISO): the export time of its report and run.json
    started: str
    stage_dirs: dict[str, Path] = field(default_factory=dict)
    stage_keys: dict[str, str] = field(default_factory=dict)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger(LOGGER))


# --- sources -------------------------------------------------------------------------------


def _resolve_sources(pipeline: Pipeline, progress: bool) -> tuple[dict[str, str], dict[str, str]]:
    """Role -> what the stages open (manifest id or path) and role -> sha256 over its files'
    names and sha256 (:func:`prospect.export.provenance.input_record`, the run's provenance)."""
    from prospect.export.provenance import input_record
    from prospect.io.fetch import cache_dir, ensure_local
    from prospect.io.manifests import load_manifest

    sources: dict[str, str] = {}
    demo: dict[str, Path] | None = None
    for role, src in pipeline.data.items():
        if src.manifest:
            ensure_local(load_manifest(src.manifest), progress=progress)  # mirror / cache / download, verified
            sources[role] = src.manifest
        elif src.synthetic:
            if demo is None:
                from prospect.synthetic import demo_products

                demo = demo_products(cache_dir() / "synthetic", seed=pipeline.seed, name=src.synthetic)
            if role not in demo:
                raise PipelineError(
                    f"{pipeline.path}: data.{role}: the synthetic scene {src.synthetic!r} has no "
                    f"{role} layer (it has {', '.join(sorted(demo))})"
                )
            sources[role] = str(demo[role])
        else:
            sources[role] = str(src.path)
    digests = {}
    for role, source in sources.items():
        files = input_record(role, source)["files"]
        digests[role] = hashlib.sha256("".join(f"{f['name']}:{f['sha256']}\n" for f in files).encode()).hexdigest()
    return sources, digests


#: A DEM of at most this many pixels is read whole before the run folder is created, to refuse
#: one that is nodata everywhere (larger ones are left to the terrain stage's own check).


def _check_before_writing(pipeline: Pipeline, sources: Mapping[str, str], seed: int) -> None:
    """Every check the stages would make before they write, made before the run folder exists: each
    stage's parameters and the seed (:func:`prospect.pipeline.stages.check_stage_params`), and a DEM
    that is smaller than the terrain stencil or holds no height (:func:`prospect.terrain.check_dem`,
    which reads one chunk at a time from the centre and stops at the first valid height)."""
    from prospect.errors import ConfigError
    from prospect.pipeline.stages import check_seed, check_stage_params

    try:
        check_seed(seed)
    except ConfigError as exc:
        raise PipelineError(f"{pipeline.path}: {exc}") from None
    for stage, params in pipeline.stages.items():
        try:
            check_stage_params(stage, params, seed)
        except ConfigError as exc:
            raise PipelineError(f"{pipeline.path}: stages.{stage}: {exc}") from None
    if "dem" in sources and "terrain" in pipeline.stages:
        from prospect.io.readers import open_product
        from prospect.terrain import check_dem

        check_dem(open_product(sources["dem"]), f"{pipeline.path}: data.dem: {pipeline.data['dem'].describe()}")


def _analysis_grid(pipeline: Pipeline, sources: Mapping[str, str]) -> Any:
    from prospect.grid import AnalysisGrid
    from prospect.io.readers import open_product

    if "global_resolution" in pipeline.grid:
        return AnalysisGrid.global_geographic(float(pipeline.grid["global_resolution"]))
    if "from" in pipeline.grid:
        return AnalysisGrid.from_dataarray(open_product(sources[pipeline.grid["from"]]))
    return AnalysisGrid.from_dict({k: pipeline.grid[k] for k in ("crs", "bounds", "resolution")})


# --- the stages ------------------------------------------------------------------------------
# Each adapter turns the run into one call of the stage layer (prospect.pipeline.stages): the
# sources of its roles (pipeline data and earlier stages' outputs), the grid, its parameters.


def _dem_of(ctx: RunContext) -> str | None:
    terrain = ctx.stage_dirs.get("terrain")
    return str(terrain / layers.filename("dem_m")) if terrain else None


def _stage_terrain(ctx: RunContext, params: Mapping[str, Any], out: Path) -> dict[str, Path]:
    """The DEM on the analysis grid (bilinear when the grids differ) and its slope."""
    from prospect.pipeline.stages import run_terrain

    return run_terrain(
        out,
        sources={"dem": ctx.sources["dem"]},
        grid=ctx.grid,
        params={**params, "source_label": ctx.pipeline.data["dem"].describe()},
        seed=ctx.seed,
        progress=ctx.progress,
    )


def _stage_illumination(ctx: RunContext, params: Mapping[str, Any], out: Path) -> dict[str, Path]:
    """Horizon maps and Sun/Earth visibility over the span (``prospect illumination``)."""
    from prospect.pipeline.stages import run_illumination

    return run_illumination(
        out,
        sources={"dem": _dem_of(ctx)},
        grid=None,  # the terrain stage's DEM is on the analysis grid
        params={**params, "source_label": ctx.pipeline.data["dem"].describe(), "workers": 2},
        seed=ctx.seed,
        progress=ctx.progress,
    )


def _stage_resources(ctx: RunContext, params: Mapping[str, Any], out: Path) -> dict[str, Path]:
    """Water ice (``resources/ice``) and helium-3 (``resources/he3``) on the analysis grid."""
    from prospect.pipeline.stages import run_resources

    src, ill = ctx.sources, ctx.stage_dirs.get("illumination")
    sources: dict[str, Any] = {
        **{r: src.get(r) for r in ("tmax", "tmean", "ice_depth", "hydrogen", "tio2", "feo", "maturity", "thickness")},
        "dem": _dem_of(ctx),
        "psr": src.get("psr") or (str(ill / layers.filename("psr_mask")) if ill else None),
        "illumination": str(ill / layers.filename("illumination_fraction")) if ill else None,
    }
    stage_params: dict[str, Any] = {}
    if "ice" in params:
        ice = params["ice"] or {}
        stage_params["ice"] = {"config": {"ice": ice.get("config") or {}}, "samples": ice.get("samples")}
    if "he3" in params:
        he3 = params["he3"] or {}
        stage_params["he3"] = {
            "config": {"he3": he3.get("config") or {}},
            **{k: he3[k] for k in ("samples", "maturity_kind") if k in he3},
        }
    return run_resources(
        out,
        sources={k: v for k, v in sources.items() if v is not None},
        grid=ctx.grid,
        params=stage_params,
        seed=ctx.seed,
        progress=ctx.progress,
    )


def _stage_sites(ctx: RunContext, params: Mapping[str, Any], out: Path) -> dict[str, Path]:
    """Candidate sites, features, scores and uncertainty (``prospect rank``)."""
    from prospect.io.vectors import is_vector_source
    from prospect.pipeline.stages import run_sites

    src, res = ctx.sources, ctx.stage_dirs.get("resources")
    psr = src.get("psr")
    he3 = res / "he3" / layers.filename("he3_ppb") if res else None
    sources = {
        "dem": _dem_of(ctx),
        "illumination": ctx.stage_dirs.get("illumination"),
        "psr": psr if psr and is_vector_source(psr) else None,
        "ice": res / "ice" if res and (res / "ice").is_dir() else None,
        "he3": he3 if he3 and he3.is_file() else None,
        **{r: src.get(r) for r in ("craters", "cold_traps", "labels")},
    }
    return run_sites(
        out,
        sources={k: v for k, v in sources.items() if v is not None},
        grid=ctx.grid,
        params={"config": {"sites": params.get("config") or {}}, "evaluate": bool(params.get("evaluate", True))},
        seed=ctx.seed,
        progress=ctx.progress,
    )


def _map_inputs(ctx: RunContext) -> dict[str, str]:
    """Role -> source of the maps and vector inputs of a run without a site stage.

    Each map is exported under its own layer name (:mod:`prospect.layers`): the
    illumination stage's 0/1 ``psr_mask`` is not the ``psr_fraction`` of PSR polygons.
    """
    inputs: dict[str, str] = {}
    terrain, ill, res = (ctx.stage_dirs.get(s) for s in ("terrain", "illumination", "resources"))
    if terrain:
        inputs.update(
            dem=str(terrain / layers.filename("dem_m")), slope_deg=str(terrain / layers.filename("slope_deg"))
        )
    if ill:
        inputs.update(
            {
                n: str(ill / layers.filename(n))
                for n in ("illumination_fraction", "longest_darkness_h", "earth_visibility_fraction", "psr_mask")
            }
        )
    if res and (res / "ice").is_dir():
        inputs.update(
            ice_favourability=str(res / "ice" / layers.filename("ice_favourability")),
            ice_class=str(res / "ice" / layers.filename("ice_stability_class")),
        )
    if res and (res / "he3" / layers.filename("he3_ppb")).is_file():
        inputs["he3_ppb"] = str(res / "he3" / layers.filename("he3_ppb"))
    for role in ("psr", "craters", "cold_traps", "labels"):
        if role in ctx.sources:
            inputs["psr_fraction" if role == "psr" else "regions" if role == "labels" else role] = ctx.sources[role]
    return inputs


def _stage_exports(ctx: RunContext, params: Mapping[str, Any], out: Path) -> dict[str, Path]:
    """The deliverables at the top of the run folder (``prospect export``); ``out`` lists them."""
    from prospect.pipeline.stages import run_exports

    properties = {
        "prospect:pipeline": {
            "name": ctx.pipeline.name,
            "file": ctx.pipeline.path.name,
            "digest": ctx.pipeline.digest,
            "stages": dict(ctx.stage_keys),
        }
    }
    sites, terrain = ctx.stage_dirs.get("sites"), ctx.stage_dirs.get("terrain")
    if sites:
        sources: dict[str, Any] = {"sites": sites}
        if terrain:
            sources["slope_deg"] = str(terrain / layers.filename("slope_deg"))
        stage_params = {
            "report": bool(params.get("report", True)),
            "pdf": bool(params.get("pdf", False)),
            "properties": properties,
            "created": ctx.started,
        }
    else:
        sources = dict(_map_inputs(ctx))
        stage_params = {"properties": properties, "created": ctx.started}
    outputs = run_exports(
        ctx.out, sources=sources, grid=ctx.grid, params=stage_params, seed=ctx.seed, progress=ctx.progress
    )
    (out / "outputs.json").write_text(
        json.dumps(
            sorted(
                p.relative_to(ctx.out).as_posix()
                for p in ctx.out.rglob("*")
                if p.is_file()
                and p.relative_to(ctx.out).parts[0] not in ("stages", "logs")
                and p.name not in (STATE_FILE, LOCK_FILE)
            ),
            indent=1,
        )
    )
    return outputs


#: A stage adapter: the run, the stage's parameters and its (partial) output folder -> its outputs.
StageFunction = Callable[[RunContext, Mapping[str, Any], Path], dict[str, Path]]
STAGE_FUNCTIONS: dict[str, StageFunction] = {
    "terrain": _stage_terrain,
    "illumination": _stage_illumination,
    "resources": _stage_resources,
    "sites": _stage_sites,
    "exports": _stage_exports,
}
#: The data roles and earlier stages each stage reads (its cache key covers them).
STAGE_READS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "terrain": (("dem",), ()),
    "illumination": ((), ("terrain",)),
    "resources": (
        ("psr", "tmax", "tmean", "ice_depth", "hydrogen", "tio2", "feo", "maturity", "thickness"),
        ("terrain", "illumination"),
    ),
    "sites": (("psr", "craters", "cold_traps", "labels"), ("terrain", "illumination", "resources")),
    "exports": (("psr", "craters", "cold_traps", "labels"), ("terrain", "illumination", "resources", "sites")),
}


# --- cache -----------------------------------------------------------------------------------


def stage_key(ctx: RunContext, stage: str, params: Mapping[str, Any]) -> str:
    """sha256 of everything a stage's result depends on (module docstring)."""
    from prospect.pipeline.digest import code_digest, dependency_versions

    roles, upstream = STAGE_READS[stage]
    content = {
        "stage": stage,
        "params": params,
        "seed": ctx.seed,
        "grid": ctx.grid.to_dict(),
        "inputs": {r: ctx.digests[r] for r in roles if r in ctx.digests},
        "upstream": {s: ctx.stage_keys[s] for s in upstream if s in ctx.stage_keys},
        "code": code_digest(stage),
        "dependencies": dependency_versions(),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _listing(folder: Path) -> dict[str, int]:
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "stage.json"
    }


def _is_current(folder: Path, key: str) -> bool:
    stamp = folder / "stage.json"
    if not stamp.is_file():
        return False
    try:
        record = json.loads(stamp.read_text())
    except json.JSONDecodeError:
        return False
    if record.get("key") != key:
        return False
    base = folder.parent.parent if record.get("stage") == "exports" else folder
    files = record.get("outputs", {})
    return all((base / name).is_file() and (base / name).stat().st_size == size for name, size in files.items())


def _run_stage(ctx: RunContext, stage: str, params: Mapping[str, Any]) -> tuple[bool, float]:
    """Run one stage unless it is current; returns (ran, seconds)."""
    stages = ctx.out / "stages"
    final = stages / stage
    key = stage_key(ctx, stage, params)
    ctx.stage_keys[stage] = key
    ctx.stage_dirs[stage] = final
    if _is_current(final, key):
        return False, 0.0
    partial = stages / f".{stage}.partial"
    if partial.exists() and not (stage == "illumination" and _partial_key(partial) == key):
        shutil.rmtree(partial)
    for folder in ([partial] if partial.exists() else []) + ([ctx.out, ctx.out / "maps"] if stage == "exports" else []):
        _sweep_temporaries(folder)
    partial.mkdir(parents=True, exist_ok=True)
    (partial / ".key").write_text(key)
    start = time.perf_counter()
    STAGE_FUNCTIONS[stage](ctx, params, partial)
    seconds = time.perf_counter() - start
    if stage == "exports":
        listing = {n: (ctx.out / n).stat().st_size for n in json.loads((partial / "outputs.json").read_text())}
    else:
        (partial / ".key").unlink()
        _repoint(partial, final)
        listing = _listing(partial)
    stamp = {
        "stage": stage,
        "key": key,
        "params": params,
        "outputs": listing,
        "upstream": {s: ctx.stage_keys[s] for s in STAGE_READS[stage][1] if s in ctx.stage_keys},
    }
    (partial / "stage.json").write_text(json.dumps(stamp, indent=2, sort_keys=True, default=str))
    if final.exists():  # an outdated result: move it aside, publish the new one, then delete the old
        old = stages / f".{stage}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(partial, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(partial, final)
    return True, seconds


#: The temporary files :func:`prospect.io.writers.atomic_write` makes (and GDAL's siblings of them).
_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp(\..+)?$")


def _sweep_temporaries(folder: Path) -> None:
    """Delete the temporary files a killed run left in ``folder`` (and below); never a finished file."""
    if folder.is_dir():
        for path in folder.rglob(".*"):
            if path.is_file() and _TEMPORARY.match(path.name):
                path.unlink()


def _partial_key(partial: Path) -> str | None:
    marker = partial / ".key"
    return marker.read_text() if marker.is_file() else None


def _repoint(partial: Path, final: Path) -> None:
    """JSON records a stage wrote may name the folder it wrote into: make them name the final one."""
    old, new = str(partial), str(final)
    for path in partial.rglob("*.json"):
        text = path.read_text(encoding="utf-8")
        if old in text:
            path.write_text(text.replace(old, new), encoding="utf-8")


# --- the run ---------------------------------------------------------------------------------


def read_state(path: Path) -> dict[str, Any]:
    """A run folder's state file (:data:`STATE_FILE`); a corrupt one is one :class:`OutputPathError`."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else f"not JSON: {' '.join(str(exc).split())}"
        raise OutputPathError(
            f"{path}: the run's state file is unreadable ({why}); delete the run folder and start again"
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("started"), str):
        raise OutputPathError(
            f"{path}: the run's state file has no 'started' time; delete the run folder and start again"
        )
    if "seed" in state and (isinstance(state["seed"], bool) or not isinstance(state["seed"], int)):
        raise OutputPathError(f"{path}: key 'seed': {state['seed']!r} is not an integer")
    return state


def _existing_run(out: Path, resume: bool) -> dict[str, Any] | None:
    """The state of the run in ``out`` (None for a new run); refuse to mix runs unless ``resume``."""
    state_path = out / STATE_FILE
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"{out}: exists and is not a folder")
    if state_path.is_file():
        state = read_state(state_path)
        if not resume:
            raise OutputPathError(
                f"{out}: already holds a run of pipeline {state.get('pipeline')!r} (started "
                f"{state.get('started')}); pass --resume to continue it or choose another --out"
            )
        return state
    if out.is_dir() and any(p.name != LOCK_FILE for p in out.iterdir()):
        raise OutputPathError(f"{out}: is not empty and holds no prospect run; choose another --out")
    if not out.parent.is_dir():
        raise OutputPathError(f"{out}: parent directory {out.parent} does not exist")
    return None


def _new_run(out: Path, pipeline: Pipeline, seed: int) -> dict[str, Any]:
    """Create the run folder and its state (the first start time)."""
    from prospect.export.package import export_time

    state_path = out / STATE_FILE
    out.mkdir(exist_ok=True)
    state = {"pipeline": pipeline.name, "file": str(pipeline.path), "seed": seed, "started": export_time()}
    state_path.write_text(json.dumps(state, indent=2))
    return state


@contextlib.contextmanager
def _logging(out: Path) -> Iterator[logging.Logger]:
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    log = logging.getLogger(LOGGER)
    log.setLevel(logging.INFO)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    handlers: list[logging.Handler] = [
        logging.FileHandler(logs / f"run-{stamp}.log", encoding="utf-8"),
        logging.StreamHandler(sys.stderr),
    ]
    handlers[0].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handlers[1].setFormatter(logging.Formatter("prospect run: %(message)s"))
    for h in handlers:
        log.addHandler(h)
    try:
        yield log
    except Exception as exc:
        if not isinstance(exc, ProspectError):  # a bug: its traceback goes to the log file, not the terminal
            record = log.makeRecord(LOGGER, logging.ERROR, __file__, 0, "unexpected error", (), sys.exc_info())
            handlers[0].handle(record)
            exc.add_note(f"traceback in {logs / f'run-{stamp}.log'}")
        raise
    finally:
        for h in handlers:
            log.removeHandler(h)
            h.close()


@contextlib.contextmanager
def _lock(out: Path) -> Iterator[None]:
    """Hold the run folder's :data:`LOCK_FILE` (``flock``, not blocking): a second run is refused."""
    import fcntl

    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputPathError(
                f"{out}: another prospect run is running in this folder (it holds {LOCK_FILE}); "
                "wait for it to finish or choose another --out"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def connect_dask(scheduler: str | None, workers: int | None) -> Iterator[str]:
    """Local threads (``workers`` of them), or a client of the cluster at ``scheduler`` (else
    ``DASK_SCHEDULER_ADDRESS``), the default client while the context lasts. Yields where the
    work runs, for the log.

    An unreachable scheduler is refused (:class:`~prospect.errors.ConfigError` naming the option
    and the address) within :data:`SCHEDULER_TIMEOUT_S` seconds. ``prospect run`` and ``prospect
    illumination`` connect here.
    """
    import dask

    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        from distributed import Client

        option = "--scheduler" if scheduler else "DASK_SCHEDULER_ADDRESS"
        try:
            client = Client(address, timeout=f"{SCHEDULER_TIMEOUT_S}s", set_as_default=True)
        except (OSError, ValueError, TypeError) as exc:
            why = " ".join(str(exc).split()) or type(exc).__name__
            raise ConfigError(f"{option} {address}: cannot connect to the Dask scheduler ({why})") from None
        with client:
            yield f"Dask cluster {address} ({len(client.scheduler_info()['workers'])} workers)"
        return
    with dask.config.set(scheduler="threads", num_workers=workers):
        yield f"local threads ({workers or os.cpu_count()})"


def run_pipeline(
    pipeline: Pipeline,
    out: str | os.PathLike[str] | None = None,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    resume: bool = False,
    seed: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``pipeline`` into ``out`` (default ``runs/<pipeline name>``; module docstring) with
    ``workers`` local threads (default: all cores). Returns a summary (stages, times, outputs)."""
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {workers}")
    if out is None:
        out = Path("runs") / pipeline.name
        out.parent.mkdir(exist_ok=True)
    out = Path(out).resolve()  # stages record the paths of their inputs: absolute, valid from anywhere
    run_seed = pipeline.seed if seed is None else int(seed)
    state = _existing_run(out, resume)
    if state is not None and int(state.get("seed", run_seed)) != run_seed:
        raise OutputPathError(f"{out}: the run there used seed {state['seed']}, not {run_seed}; choose another --out")
    # every input is found, downloaded and verified before the run folder is touched
    sources, digests = _resolve_sources(pipeline, progress)
    grid = _analysis_grid(pipeline, sources)
    _check_before_writing(pipeline, sources, run_seed)
    with contextlib.ExitStack() as stack:
        where = stack.enter_context(connect_dask(scheduler, workers))  # an unreachable scheduler: refused here
        created = not out.exists()
        try:
            out.mkdir(exist_ok=True)
            stack.enter_context(_lock(out))
            state = _existing_run(out, resume) if state is None else state  # a run that started meanwhile
        except BaseException:
            if created:
                shutil.rmtree(out, ignore_errors=True)
            raise
        state = state or _new_run(out, pipeline, run_seed)
        log = stack.enter_context(_logging(out))
        return _run_stages(pipeline, out, run_seed, sources, digests, grid, progress, state, log, where)
    raise AssertionError("unreachable")  # pragma: no cover


def _run_stages(
    pipeline: Pipeline,
    out: Path,
    run_seed: int,
    sources: dict[str, str],
    digests: dict[str, str],
    grid: Any,
    progress: bool,
    state: dict[str, Any],
    log: logging.Logger,
    where: str,
) -> dict[str, Any]:
    """The stages of a run whose folder exists and is locked (:func:`run_pipeline`)."""
    summary: dict[str, Any] = {"pipeline": pipeline.name, "out": str(out), "stages": {}}
    log.info("pipeline %s (%s), seed %d, into %s, on %s", pipeline.name, pipeline.path, run_seed, out, where)
    log.info(
        "inputs: %s", ", ".join(f"{r} {pipeline.data[r].describe()} (sha256 {d[:12]})" for r, d in digests.items())
    )
    log.info("analysis grid %s, %d x %d px of %.0f m", grid.crs, grid.shape[0], grid.shape[1], grid.ground_resolution_m)
    ctx = RunContext(pipeline, out, run_seed, sources, digests, grid, progress, state["started"], log=log)
    for i, (stage, params) in enumerate(pipeline.stages.items(), 1):
        log.info("[%d/%d] %s ...", i, len(pipeline.stages), stage)
        ran, seconds = _run_stage(ctx, stage, params)
        log.info(
            "[%d/%d] %s %s",
            i,
            len(pipeline.stages),
            stage,
            f"done in {seconds:.1f} s (peak RSS so far {peak_rss_mb():.0f} MB)" if ran else "current (cached), skipped",
        )
        summary["stages"][stage] = {"ran": ran, "seconds": round(seconds, 1), "key": ctx.stage_keys[stage]}
    for name in ("report.html", "project.qgz", "run.json"):
        if (out / name).is_file():
            summary[name] = str(out / name)
    log.info(
        "done: report %s, QGIS project %s",
        summary.get("report.html", "(none)"),
        summary.get("project.qgz", "(none)"),
    )
    return summary
