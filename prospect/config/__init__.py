"""Scientific parameters: every threshold, weight and coefficient, with its unit and source.

Each model's parameters live in a YAML file beside this module (``ice.yaml``,
``he3.yaml``). Every entry is a mapping::

    cold_trap_tmax_k:
      value: 110            # the default
      unit: K               # a unit string; "1" for dimensionless
      range: [100, 120]     # optional: the interval Monte Carlo samples (and its basis)
      source: "Paige et al. 2010, Science 330:479 (docs/science.md section 4)"
      status: S             # S, 3P, D or ? as in docs/science.md

``status: "?"`` marks a value the science reference could not find: it is a documented,
configurable choice, never a hidden "calibration". Users override values with a YAML
file (``--config FILE``) or a mapping holding only ``value`` numbers::

    ice:
      weights: {thermal: 0.5}
    he3:
      bulk_density_kg_m3: 1600                                  # its range moves with it
      magnetotail_half_width_deg: {value: 25, range: [20, 30]}  # or give both

A range follows its value: an overridden value's Monte Carlo range is the one given with
it, or the default range scaled (or shifted) to the new value, so a Monte Carlo interval
is always drawn about the value in use (:func:`_moved_range`).

An unknown key, a non-number or a value outside the allowed domain is a
:class:`~prospect.errors.ConfigError` naming the key and the file.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from prospect.errors import ConfigError, InputNotFoundError
from prospect.io.manifests import read_yaml_file

STATUS = ("S", "3P", "D", "?")
_ENTRY_KEYS = {"value", "unit", "range", "source", "status", "note", "min", "max", "choices"}


@dataclass(frozen=True)
class Parameter:
    """One documented parameter: value, unit, Monte Carlo range, source and status."""

    name: str
    value: Any
    unit: str
    source: str
    status: str
    range: tuple[float, float] | None = None
    note: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None

    def describe(self) -> str:
        rng = f", MC range {self.range[0]:g}..{self.range[1]:g}" if self.range else ""
        return f"{self.name} = {self.value} {self.unit} [{self.status}]{rng}: {self.source}"


@dataclass(frozen=True)
class ParameterSet:
    """The parameters of one model (``ice``, ``he3``): a read-only mapping of :class:`Parameter`."""

    model: str
    params: Mapping[str, Parameter]
    origin: str = ""
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.param(name).value

    def param(self, name: str) -> Parameter:
        try:
            return self.params[name]
        except KeyError:
            raise ConfigError(f"{self.model} parameters: no parameter {name!r}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.params

    def values(self) -> dict[str, Any]:
        """Plain ``{name: value}`` (for tags, JSON and cache keys)."""
        return {k: copy.deepcopy(p.value) for k, p in self.params.items()}

    def table(self) -> list[dict[str, Any]]:
        """Rows for reports: name, value, unit, range, status, source."""
        return [
            {
                "name": p.name,
                "value": p.value,
                "unit": p.unit,
                "range": list(p.range) if p.range else None,
                "status": p.status,
                "source": p.source,
            }
            for p in self.params.values()
        ]

    def replace(self, **values: Any) -> ParameterSet:
        """A copy with some values replaced (validated like an override file)."""
        return apply_overrides(self, values, origin="replace()")


def _check_number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ConfigError(f"{where}: must be a finite number, not {value!r}")
    return float(value)


def _check_value(value: Any, template: Parameter | None, where: str, entry: Mapping[str, Any] | None = None) -> Any:
    """Validate a value against its declared domain (numbers, mappings of numbers, choices)."""
    lo = (entry or {}).get("min", template.min if template else None)
    hi = (entry or {}).get("max", template.max if template else None)
    choices = (entry or {}).get("choices", template.choices if template else None)
    if choices is not None:
        if value not in choices:
            raise ConfigError(f"{where}: must be one of {list(choices)}, not {value!r}")
        return value
    if isinstance(value, Mapping):
        if template is not None:
            if not isinstance(template.value, Mapping):
                raise ConfigError(f"{where}: must be a number, not a mapping")
            unknown = set(value) - set(template.value)
            if unknown:
                raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known keys are {sorted(template.value)}")
            merged = dict(template.value)
        else:
            merged = {}
        for k, v in value.items():
            merged[k] = _check_range(_check_number(v, f"{where}.{k}"), lo, hi, f"{where}.{k}")
        return merged
    if isinstance(value, list):
        return [
            _check_value(v, None, f"{where}[{i}]") if not isinstance(v, Mapping) else dict(v)
            for i, v in enumerate(value)
        ]
    if template is not None and isinstance(template.value, Mapping):
        raise ConfigError(f"{where}: must be a mapping like {dict(template.value)}, not {value!r}")
    if isinstance(value, str) and (template is None or isinstance(template.value, str)):
        return value
    return _check_range(_check_number(value, where), lo, hi, where)


def _check_range(v: float, lo: Any, hi: Any, where: str) -> float:
    if lo is not None and v < lo:
        raise ConfigError(f"{where}: {v:g} is below the allowed minimum {lo:g}")
    if hi is not None and v > hi:
        raise ConfigError(f"{where}: {v:g} is above the allowed maximum {hi:g}")
    return v


def _parse_entry(name: str, entry: Any, where: str) -> Parameter:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: parameter {name!r} must be a mapping with value, unit, source, status")
    unknown = set(entry) - _ENTRY_KEYS
    if unknown:
        raise ConfigError(f"{where}: parameter {name!r}: unknown key(s) {sorted(unknown)}")
    for key in ("value", "unit", "source", "status"):
        if key not in entry:
            raise ConfigError(f"{where}: parameter {name!r} has no {key!r}")
    if entry["status"] not in STATUS:
        raise ConfigError(f"{where}: parameter {name!r}: status must be one of {STATUS}, not {entry['status']!r}")
    rng = entry.get("range")
    if rng is not None:
        if not (isinstance(rng, list) and len(rng) == 2):
            raise ConfigError(f"{where}: parameter {name!r}: range must be [low, high]")
        lo, hi = (_check_number(v, f"{where}: {name}.range") for v in rng)
        if lo > hi:
            raise ConfigError(f"{where}: parameter {name!r}: range low {lo:g} > high {hi:g}")
        rng = (lo, hi)
    value = _check_value(entry["value"], None, f"{where}: {name}", entry)
    choices = entry.get("choices")
    return Parameter(
        name=name,
        value=value,
        unit=str(entry["unit"]),
        source=str(entry["source"]).strip(),
        status=str(entry["status"]),
        range=rng,
        note=str(entry.get("note", "")).strip(),
        min=entry.get("min"),
        max=entry.get("max"),
        choices=tuple(choices) if choices else None,
    )


def _models() -> set[str]:
    """The packaged parameter sets (``<model>.yaml`` beside this module)."""
    return {p.name[:-5] for p in resources.files(__package__).iterdir() if p.name.endswith(".yaml")}


def defaults(model: str) -> ParameterSet:
    """The packaged default parameters of ``model`` (``ice`` or ``he3``)."""
    files = _models()
    if model not in files:
        raise ConfigError(f"no parameter set {model!r}; known: {sorted(files)}")
    ref = resources.files(__package__) / f"{model}.yaml"
    label = f"prospect/config/{model}.yaml"
    data = read_yaml_file(ref, label, ConfigError, kind="configuration", missing=InputNotFoundError)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{label}: must be a mapping of parameters")
    params = {name: _parse_entry(name, entry, label) for name, entry in data.items()}
    return ParameterSet(model=model, params=params, origin=label)


def apply_overrides(base: ParameterSet, overrides: Mapping[str, Any] | None, *, origin: str) -> ParameterSet:
    """``base`` with ``overrides`` (``{name: value}``) applied, each checked against its domain."""
    if not overrides:
        return base
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{origin}: {base.model} overrides must be a mapping of parameter: value")
    params = dict(base.params)
    for name, value in overrides.items():
        if name not in params:
            raise ConfigError(f"{origin}: unknown {base.model} parameter {name!r}; known: {sorted(params)}")
        old = params[name]
        where = f"{origin}: {base.model}.{name}"
        given_range = None
        if isinstance(value, Mapping) and "value" in value and not isinstance(old.value, Mapping):
            extra = set(value) - {"value", "range"}
            if extra:
                raise ConfigError(f"{where}: an override gives value and range only, not {sorted(extra)}")
            given_range = value.get("range")
            value = value["value"]
        new_value = _check_value(value, old, where)
        new_range, how = _moved_range(old, new_value, given_range, where)
        params[name] = Parameter(
            **{
                **old.__dict__,
                "value": new_value,
                "range": new_range,
                "source": f"user override in {origin} (default: {old.value}{how}; {old.source})",
            }
        )
    merged = {**dict(base.overrides), **dict(overrides)}
    return ParameterSet(model=base.model, params=params, origin=f"{base.origin} + {origin}", overrides=merged)


def _moved_range(old: Parameter, value: Any, given: Any, where: str) -> tuple[tuple[float, float] | None, str]:
    """The Monte Carlo range of an overridden value: the one given with it, or the default range
    moved with the value, so an interval drawn from it is always about the value in use.

    A given ``range`` must be ``[low, high]`` around the value. Otherwise a default range moves
    with the value: scaled by ``value / default`` when both are positive (the relative
    uncertainty is kept: bulk density 1660 in 1500..1800 overridden to 1600 draws in
    1446..1735), else shifted by ``value - default``; then clipped to the parameter's
    ``min``/``max``. Returns the range and a note for the parameter's source.
    """
    if given is not None:
        if not (isinstance(given, list) and len(given) == 2):
            raise ConfigError(f"{where}.range: must be [low, high], not {given!r}")
        lo, hi = (_check_number(v, f"{where}.range") for v in given)
        if not lo <= float(value) <= hi:
            raise ConfigError(f"{where}.range: [{lo:g}, {hi:g}] must contain the value {value:g}")
        return (lo, hi), f"; range given with the value: {lo:g}..{hi:g}"
    if old.range is None or isinstance(value, (Mapping, list, str)) or value == old.value:
        return old.range, ""
    v, d = float(value), float(old.value)
    lo, hi = old.range
    if v > 0 and d > 0 and lo >= 0:
        lo, hi = lo * v / d, hi * v / d
    else:
        lo, hi = lo + (v - d), hi + (v - d)
    if old.min is not None:
        lo, hi = max(lo, float(old.min)), max(hi, float(old.min))
    if old.max is not None:
        lo, hi = min(lo, float(old.max)), min(hi, float(old.max))
    lo, hi = min(lo, v), max(hi, v)
    return (lo, hi), f"; range {old.range[0]:g}..{old.range[1]:g} moved with the value to {lo:.6g}..{hi:.6g}"


def load(model: str, config: str | Path | Mapping[str, Any] | None = None) -> ParameterSet:
    """The parameters of ``model``, with the overrides of ``config`` applied.

    ``config`` is ``None``, a mapping ``{model: {name: value}}`` or a YAML file of that
    shape. Sections for other models are ignored; an unknown top-level section is an
    error (a typo would otherwise be silent).
    """
    base = defaults(model)
    if config is None:
        return base
    if isinstance(config, Mapping):
        data, origin = config, "config"
    else:
        path = Path(config)
        origin = str(path)
        data = read_yaml_file(path, origin, ConfigError, kind="configuration", missing=InputNotFoundError)
        if data is None:
            return base
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: must be a mapping of model sections (ice:, he3:)")
    known = _models()
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{origin}: unknown section(s) {sorted(unknown)}; known sections are {sorted(known)}")
    return apply_overrides(base, data.get(model), origin=origin)


def check_model(params: ParameterSet) -> ParameterSet:
    """Rules that span parameters, for callers that check a whole configuration before work starts
    (``prospect run`` checks a pipeline's stage configs with it before the run folder exists).

    A set whose weights are all zero scores nothing: ``ice.weights`` (the favourability's
    layer weights) and the ``sites`` ``weight_*`` criteria (the site score) need at least
    one positive weight. Returns ``params``; else a :class:`ConfigError` naming the keys.
    """
    if params.model == "sites":
        weights = {k: params[k] for k in params.params if k.startswith("weight_")}
        if weights and all(float(v) <= 0 for v in weights.values()):
            raise ConfigError(
                f"sites.weight_*: every criterion weight is 0 ({', '.join(sorted(weights))}); "
                "give at least one a positive weight"
            )
    elif params.model == "ice" and "weights" in params:
        weights = params["weights"]
        if isinstance(weights, Mapping) and weights and sum(float(v) for v in weights.values()) <= 0:
            raise ConfigError(
                f"ice.weights: every layer weight is 0 ({', '.join(sorted(weights))}); "
                "give at least one a positive weight"
            )
    return params
