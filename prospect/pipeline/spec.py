"""Pipeline definitions (``pipelines/*.yaml``): what data, which grid, which stages.

A pipeline file names its data (data-manifest ids, paths relative to the file and inside
its folder, absolute paths, or the package's synthetic demo scene), its analysis grid, and the stages to run with their
parameters::

    pipeline: south_pole_coarse          # name
    description: ...
    seed: 0
    data:                                # role: source
      dem: lunar_toolkit_lola_south_1600m
      psr: lola_psr_south_5km2
      labels: artemis3_regions_2022
    grid:                                # or {from: dem}
      crs: IAU_2015:30135
      bounds: {value: [-340.8, -340.8, 340.8, 340.8], unit: km}
      resolution: {value: 1600, unit: m}   # or {from: dem}, or {global_resolution: {value: 0.5, unit: deg}}
    stages:                              # in data-flow order; a stage present runs
      terrain: {}
      illumination: {azimuths: 64, step: {value: 24, unit: h}}
      resources: {ice: {samples: 32}, he3: {samples: 50}}
      sites: {config: {candidate_spacing_m: 1600}}
      exports: {report: true}

The structure is checked against ``prospect/schemas/pipeline.schema.json``; then the
meaning: quantities carry units that must fit (a length in m or km, a duration in h or
d), every layer a stage needs must be in ``data`` (or made by an earlier stage), and the
stage parameter sections (``resources.ice.config``, ``sites.config``, ...) are checked
by :mod:`prospect.config`; quantities and counts have ranges (a positive step, 64 to
:data:`prospect.illumination.maps.MAX_AZIMUTHS` azimuths, seeds up to :data:`prospect.pipeline.stages.MAX_SEED`). Any problem is one :class:`PipelineError`
line naming the file and the key. The file is read by :func:`prospect.io.manifests.read_yaml_file`
(size, alias and nesting limits).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prospect.errors import ConfigError, InputNotFoundError

#: The stages in data-flow order.
STAGES = ("terrain", "illumination", "resources", "sites", "exports")
#: Data roles a pipeline may name, and what each is.
ROLES = {
    "dem": "DEM raster (heights in m)",
    "psr": "permanently shadowed regions: polygons or a raster",
    "tmax": "annual maximum surface temperature raster (K)",
    "tmean": "annual mean surface temperature raster (K)",
    "ice_depth": "depth to stable ice raster (m)",
    "hydrogen": "hydrogen raster or Lunar Prospector table",
    "tio2": "TiO2 (or Ti) raster or table, for He-3",
    "feo": "FeO raster or table, for the regolith-thickness rule",
    "maturity": "maturity raster (index, Is/FeO or OMAT)",
    "thickness": "regolith thickness raster (m)",
    "craters": "crater catalogue (points with diameters)",
    "cold_traps": "named cold traps (points with names)",
    "labels": "expert-chosen regions for the learned site model",
}
#: Length and duration units a pipeline may use, in metres / hours.
LENGTH_UNITS = {"m": 1.0, "km": 1000.0}
DURATION_UNITS = {"h": 1.0, "d": 24.0}
#: Angle units (a global geographic grid's resolution), in degrees.
ANGLE_UNITS = {"deg": 1.0, "arcmin": 1.0 / 60.0}
#: The ranges of the illumination stage's quantities (after unit conversion; None: no bound),
#: and whether the lower bound is excluded.
ILLUMINATION_RANGES: dict[str, tuple[float, float | None, bool]] = {
    "step": (0.0, 24.0 * 366.0, True),  # h: a positive step, at most a year
    "height": (0.0, 10_000.0, False),  # m above the surface
    "max_distance": (0.0, None, True),  # m: a positive horizon reach
}


class PipelineError(ConfigError):
    """A pipeline file that cannot run: the message names the file and the key."""


@dataclass(frozen=True)
class Source:
    """One data source: a manifest id, a path, or the synthetic demo scene (``synthetic``)."""

    role: str
    manifest: str | None = None
    path: Path | None = None
    synthetic: str | None = None

    def describe(self) -> str:
        return self.manifest or (str(self.path) if self.path else f"synthetic:{self.synthetic}")


@dataclass(frozen=True)
class Pipeline:
    """A validated pipeline definition (see the module docstring)."""

    name: str
    path: Path
    description: str
    seed: int
    data: dict[str, Source]
    grid: dict[str, Any]
    stages: dict[str, dict[str, Any]]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def digest(self) -> str:
        """sha256 of the definition's content (not of its path)."""
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True, default=str).encode()).hexdigest()


_SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "pipeline.schema.json"


def _schema() -> dict[str, Any]:
    return json.loads(_SCHEMA_PATH.read_text(encoding="utf-8"))


def _where(error: Any) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    return path or "(top level)"


def _check_schema(data: Any, src: Path) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(list(e.absolute_path)), str(e.absolute_path)))
    if errors:
        e = errors[0]
        if e.validator == "additionalProperties":
            extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
            known = ", ".join(sorted(e.schema.get("properties", {})))
            raise PipelineError(f"{src}: {_where(e)}: unknown key {extra[0]!r} (known: {known})")
        raise PipelineError(f"{src}: {_where(e)}: {e.message}")


def quantity(value: Any, units: Mapping[str, float], key: str, src: Path, kind: str) -> Any:
    """A number (or list of numbers) from ``value`` or ``{value: V, unit: U}``, in the base unit of ``units``."""
    v: Any
    if isinstance(value, Mapping):
        unit = value.get("unit")
        if not isinstance(unit, str) or unit not in units:
            raise PipelineError(f"{src}: {key}: unit {unit!r} is not a {kind} ({', '.join(units)})")
        factor, v = units[unit], value.get("value")
    else:
        factor, v = 1.0, value
    values = v if isinstance(v, list) else [v]
    for x in values:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise PipelineError(f"{src}: {key}: {x!r} is not a finite number")
    if isinstance(v, list):
        return [float(x) * factor for x in v]
    return float(v) * factor


def _check_range(value: float, key: str, src: Path, bounds: tuple[float, float | None, bool], unit: str) -> None:
    lo, hi, open_low = bounds
    if value < lo or (open_low and value == lo):
        raise PipelineError(
            f"{src}: {key}: {value:g} {unit} must be {'above' if open_low else 'at least'} {lo:g} {unit}"
        )
    if hi is not None and value > hi:
        raise PipelineError(f"{src}: {key}: {value:g} {unit} is above the maximum {hi:g} {unit}")


def data_path(role: str, text: str, base: Path, src: Path) -> Path:
    """The file a pipeline's ``data.<role>: <path>`` names, checked before it is opened.

    A relative path is relative to the pipeline file's folder ``base`` and must stay inside
    it (``../../etc/passwd`` is refused, by the path's text: nothing is opened or followed);
    an absolute path is taken as given, on purpose. A symbolic link inside the folder is the
    user's own choice and is followed.
    """
    if "\0" in text:
        raise PipelineError(f"{src}: data.{role}: {text!r}: a path cannot hold a NUL character")
    given = Path(text).expanduser() if text.startswith("~") else Path(text)
    if given.is_absolute():
        return given.resolve()
    joined = Path(os.path.normpath(base / given))
    if not joined.is_relative_to(base):
        raise PipelineError(
            f"{src}: data.{role}: {text!r} leads outside the pipeline's folder {base}; "
            "a relative path stays inside it (give an absolute path to use a file elsewhere)"
        )
    return joined.resolve()


def _source(role: str, value: Any, base: Path, src: Path) -> Source:
    from prospect.io.manifests import is_manifest_id

    if isinstance(value, Mapping):
        if "synthetic" in value:
            return Source(role, synthetic=str(value["synthetic"]))
        if "manifest" in value:
            value = value["manifest"]
        else:
            path = data_path(role, str(value["path"]), base, src)
            if not path.exists():
                raise PipelineError(f"{src}: data.{role}: {path}: no such file")
            return Source(role, path=path)
    text = str(value)
    path = data_path(role, text, base, src)  # a path that leaves the folder is refused before any look-up
    if is_manifest_id(text):
        return Source(role, manifest=text)
    if path.exists():
        return Source(role, path=path)
    raise PipelineError(f"{src}: data.{role}: {text!r} is neither a data-manifest id nor an existing file")


def _needs(stages: Mapping[str, Any], data: Mapping[str, Source], src: Path) -> None:
    """Every layer a stage needs is in ``data`` or made by an earlier stage."""

    def need(stage: str, role: str, why: str) -> None:
        if role not in data:
            raise PipelineError(f"{src}: stages.{stage} needs data.{role} ({why})")

    for stage in ("terrain", "illumination", "sites"):
        if stage in stages:
            need(stage, "dem", ROLES["dem"])
    res = stages.get("resources") or {}
    if "he3" in res:
        need("resources.he3", "tio2", ROLES["tio2"])
    if "ice" in res and not ({"dem", "psr", "tmax", "tmean", "ice_depth"} & set(data)):
        raise PipelineError(f"{src}: stages.resources.ice needs one of data.dem, psr, tmax, tmean, ice_depth")
    if "exports" in stages and not ({"sites", "resources", "terrain", "illumination"} & set(stages)):
        raise PipelineError(f"{src}: stages.exports has nothing to export: add a stage that makes maps or sites")


def _check_configs(stages: Mapping[str, Any], src: Path) -> None:
    """Stage parameter sections through :func:`prospect.config.load` (unknown keys, domains)."""
    from prospect import config as cfg

    sections = (
        ("sites", stages.get("sites"), "sites"),
        ("ice", (stages.get("resources") or {}).get("ice"), "resources.ice"),
        ("he3", (stages.get("resources") or {}).get("he3"), "resources.he3"),
    )
    for model, section, key in sections:
        if not section or not section.get("config"):
            continue
        try:
            cfg.check_model(cfg.load(model, {model: section["config"]}))
        except ConfigError as exc:
            raise PipelineError(f"{src}: stages.{key}.config: {exc}") from None


def shipped_pipelines() -> dict[str, Path]:
    """The pipelines shipped with the package, by name (``demo``, ``south_pole_coarse``, ...)."""
    from prospect.io.manifests import package_data_dir

    return {p.stem: p for p in sorted(package_data_dir("pipelines").glob("*.yaml"))}


def find_pipeline(path: str | Path) -> Path:
    """The pipeline file ``path`` names: an existing path wins; else a shipped pipeline of that name.

    A bare name (``"demo"``, or ``"demo.yaml"``: no folder part) that is not a file here is
    looked up among :func:`shipped_pipelines`, so ``prospect run demo`` works from any
    folder. Anything else is returned as given (and reported missing by the reader).
    """
    src = Path(path)
    if src.exists() or len(src.parts) != 1:
        return src
    shipped = shipped_pipelines()
    name = src.stem if src.suffix in (".yaml", ".yml") else src.name
    if name in shipped:
        return shipped[name]
    if not src.suffix:
        known = ", ".join(shipped) or "none"
        raise InputNotFoundError(
            f"{src}: no such pipeline file, nor a shipped pipeline of that name (shipped: {known})"
        )
    return src


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and validate a pipeline file, or a shipped pipeline by name (:func:`find_pipeline`).

    Any problem is one line: :class:`PipelineError`, or :class:`InputNotFoundError` for a
    missing file.
    """
    from prospect.io.manifests import read_yaml_file

    src = find_pipeline(path)
    if src.is_dir():
        raise InputNotFoundError(f"{src}: is a folder, not a pipeline file")
    data = read_yaml_file(src, src, PipelineError, kind="pipeline", missing=InputNotFoundError)
    _check_schema(data, src)
    base = src.resolve().parent
    sources = {role: _source(role, v, base, src) for role, v in (data.get("data") or {}).items()}
    stages = {name: dict(data["stages"][name] or {}) for name in STAGES if name in data["stages"]}
    _needs(stages, sources, src)
    _check_configs(stages, src)
    grid = dict(data.get("grid") or {"from": "dem"})
    if "global_resolution" in grid:
        grid["global_resolution"] = quantity(
            grid["global_resolution"], ANGLE_UNITS, "grid.global_resolution", src, "angle"
        )
    elif "from" in grid:
        if grid["from"] not in sources:
            raise PipelineError(f"{src}: grid.from: no data.{grid['from']} to take the grid from")
    else:
        grid["bounds"] = quantity(grid["bounds"], LENGTH_UNITS, "grid.bounds", src, "length")
        grid["resolution"] = quantity(grid["resolution"], LENGTH_UNITS, "grid.resolution", src, "length")
        from prospect.errors import GridError
        from prospect.grid import AnalysisGrid

        try:
            AnalysisGrid.from_dict(grid)
        except (GridError, ConfigError) as exc:
            raise PipelineError(f"{src}: grid: {exc}") from None
    ill = stages.get("illumination")
    if ill is not None:
        for key, units, kind in (
            ("step", DURATION_UNITS, "duration"),
            ("height", LENGTH_UNITS, "length"),
            ("max_distance", LENGTH_UNITS, "length"),
        ):
            if key in ill:
                ill[key] = quantity(ill[key], units, f"stages.illumination.{key}", src, kind)
                base_unit = next(u for u, f in units.items() if f == 1.0)
                _check_range(ill[key], f"stages.illumination.{key}", src, ILLUMINATION_RANGES[key], base_unit)
    return Pipeline(
        name=str(data["pipeline"]),
        path=src.resolve(),
        description=str(data.get("description", "")),
        seed=int(data.get("seed", 0)),
        data=sources,
        grid=grid,
        stages=stages,
        raw=data,
    )
