"""Water-ice stability classes and favourability (0..1), with Monte Carlo uncertainty.

What this module owns: the ice model of ``docs/science.md`` section 4, from whatever
layers a pipeline supplies, every coefficient from ``prospect/config/ice.yaml``
(:func:`prospect.config.load` ``("ice", config)``) with its unit, source and status.

Layers (:class:`IceLayers`, all optional, all on one :class:`~prospect.grid.AnalysisGrid`):
annual maximum and mean surface temperature [K] (Diviner), depth to stable ice [m]
(Diviner PRP), permanent shadow (a 0/1 mask or an area fraction: the illumination
stage's ``psr_mask`` or the LOLA PSR polygons through
:func:`prospect.resources.masks.polygon_fraction`), illumination fraction [1], neutron
hydrogen [ppm H], slope and aspect [deg] (true-north-referenced downslope azimuth).

Stability classes (uint8; :data:`CLASS_NAMES`): 2 surface-stable, 1 shallow-subsurface,
3 shadowed but likely too warm, 0 not stable, 255 nodata. The first available rule
decides each class:

* surface-stable: ``tmax_k < cold_trap_tmax_k`` (110 K; Paige et al. 2010, Science
  330:479; Li et al. 2018, PNAS 115:8907); else ``ice_depth_m <= 0``; else
  ``psr >= psr_fraction_threshold`` (a PSR is never directly lit, its maximum
  temperature is set by scattered light and infrared from the surroundings; a proxy);
  else ``illumination_fraction == 0`` (never lit over the span: a PSR). A measured
  temperature or depth needs nothing more; the two shadow proxies (``psr``,
  ``illumination_fraction``) hold only where the cold-trap rule can hold, poleward of
  ``cold_trap_min_abs_latitude_deg`` (80 deg): not every PSR is a cold trap, shadows
  equatorward of ~80 deg are typically too warm for surface ice (Hayne et al. 2021,
  Nature Astronomy 5:169; science.md section 4). 24 % of the area of the LOLA PSR
  polygons of the south (5 km^2 and larger: 4,980 of 20,780 km^2) lies equatorward of 80 S.
* shadowed, likely too warm (class 3, ``CLASS_WARM_SHADOW``): permanent shadow by one of
  the two shadow proxies, equatorward of the latitude limit. A weaker class than
  shallow-subsurface (``warm_shadow_class_score`` < ``shallow_class_score``): surface
  ice there is unlikely and subsurface stability is not shown. A MEASURED annual mean
  temperature (``tmean_k``) that makes such a pixel shallow-subsurface stable decides
  (class 1); the thermal proxy never does (in a never-lit pixel it is only its floor).
* shallow-subsurface (where not surface-stable): ``0 <= ice_depth_m <=
  shallow_depth_max_m``; else ``tmean_k < shallow_tmean_max_k`` (below the annual
  thermal skin depth temperatures approach the annual mean; derived [D]); else
  ``thermal_proxy_k < shallow_tmean_max_k`` (the THERMAL PROXY below); else not
  evaluated (class 0 then means "not surface-stable", and the attributes say
  ``shallow_class: not evaluated``).

Thermal proxy (:func:`thermal_proxy_k`; used only where no temperature or depth layer
is given; every output that depends on it is labelled ``thermal_source: proxy: ...``): the
radiative-equilibrium temperature of the mean absorbed flux, with a floor,
``T = (T_rad^4 + T_floor^4)^(1/4)``, ``T_rad = ((1 - A) S0 F sin(e) / (eps sigma))^(1/4)``
with ``F`` the illumination fraction and ``sin(e) = max((2/pi) cos(lat), sin(e_pole))``:
the mean of ``sin(elevation)`` while the Sun is up on flat ground with the Sun on the
equator, floored at the pole by the mean elevation of the Sun while up there, ``(2/pi)
x 1.54 deg`` (science.md section 3). ``T_floor`` (``thermal_proxy_floor_k``, 50 K) stands
for what the radiative term neglects and what keeps even a never-lit floor warm:
scattered sunlight and infrared from sunlit walls ("tens of K", science.md section 4);
adding fluxes, ``eps sigma T_floor^4`` is added to the absorbed sunlight, so a never-lit
pixel gets ``T_floor``, not 0 K, and a sunlit one is barely changed (+0.25 % at 158 K).
Since the mean of ``T`` is at most the fourth root of the mean of ``T^4``, ``T_rad`` is
an upper bound of the annual mean surface temperature of sunlit flat ground except for
the neglected terms (the geothermal flux, the light and infrared of surrounding terrain,
the slope of the pixel itself); the floor is one documented number for the second, not
a model of it (it does not grow with the size or brightness of the walls around a
shadow). It is not a temperature measurement.

Favourability: ``sum_k w_k s_k / sum_k w_k`` over the AVAILABLE scores ``k`` of

* ``thermal``: the class score (surface ``surface_class_score`` = 1, shallow
  ``shallow_class_score``, shadowed-too-warm ``warm_shadow_class_score``, not stable 0);
* ``psr``: the PSR fraction, clipped to 0..1, only when the PSR layer is NOT the thermal
  evidence (below);
* ``hydrogen``: ``clip(WEH / weh_reference_wt_pct, 0, 1)`` with ``WEH wt% = 9e-4 x ppm H``
  (science.md section 4; reference 1.5 wt%, Feldman et al. 2000, JGR 105:4175).
  Neutron footprints are 30-150 km wide: a hydrogen layer is smooth, never pixel-sharp,
  and says where hydrogen is enriched on a regional scale only;
* ``pole_facing``: ``clip(slope cos(aspect - pole_azimuth) / pole_facing_slope_ref_deg,
  0, 1)`` with the pole azimuth 180 deg in the south and 0 deg in the north (by each
  pixel's latitude); flat pixels score 0.

No input counts twice (science.md section 4): each input layer feeds exactly one score,
recorded in the attribute ``input_scores`` (``{input: score}``). ``tmax_k``, ``tmean_k``,
``ice_depth_m`` and ``illumination_fraction`` feed ``thermal``; ``hydrogen_ppm`` feeds
``hydrogen``; ``slope_deg`` and ``aspect_deg`` feed ``pole_facing``; ``psr`` feeds
``psr`` when a temperature or depth layer decides the classes, else it IS the thermal
evidence (the surface rule ``psr >= psr_fraction_threshold``): then it feeds
``thermal`` only, the ``psr`` score is dropped (attribute ``scores_dropped`` says why)
and the remaining weights are renormalised. ``lat_deg`` is a coordinate, not evidence
(the latitude limit, the proxy's Sun elevation and the pole azimuth off polar grids).
Independence is per layer: a PSR, an illumination and a slope layer made from one DEM
still share that DEM's errors.

Missing layers, never silently: a score whose layer is not supplied (``layers_missing``)
or that is dropped so as not to count a layer twice (``scores_dropped``) has its weight
dropped and the others renormalised; ``layers_used``, ``layers_missing``,
``scores_dropped``, ``input_scores``, ``weights_effective`` and ``thermal_source`` are in
the attributes, and the ``coverage`` layer is the weight of the scores valid at each
pixel over the weight of all configured scores, so a map made from fewer independent
layers is visibly less supported. Where a supplied layer is NaN (a DEM edge,
a hydrogen map that stops), the favourability is NaN: it is never silently made from
the remaining layers at that pixel (``coverage`` shows which pixels those are).
Mini-RF CPR is deliberately not a layer: CPR > 1 is not diagnostic of ice (Campbell
2012; Eke et al. 2014).

Uncertainty (:func:`ice_monte_carlo`): ``n`` parameter sets, each parameter with a
``range`` drawn uniformly in it and the weights drawn from a Dirichlet distribution of
concentration ``mc_weight_concentration`` around the configured weights, evaluated at
every pixel; the 5th, 50th and 95th percentiles are the maps. Deterministic for a seed
and independent of the chunking (the draws are made once, up front); memory is bounded
by chunk, not raster.

Everything is a pure function on xarray objects and stays lazy on dask-backed layers;
files are read by the ice stage (:func:`prospect.pipeline.stages.run_ice`) and written by
:func:`prospect.pipeline.stages.write_ice` only.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import dask.base
import numpy as np
import xarray as xr

from prospect import layers as layer_registry
from prospect.config import ParameterSet, load
from prospect.errors import ConfigError, GridError, UnitsError
from prospect.grid import AnalysisGrid

__all__ = [
    "CLASS_CODES",
    "CLASS_NAMES",
    "PROXY_LABEL",
    "SCORE_LAYERS",
    "IceLayers",
    "ice_favourability",
    "ice_monte_carlo",
    "ice_parameters",
    "ice_stability",
    "pole_facing_score",
    "thermal_proxy_k",
    "water_inventory_kg",
    "weh_wt_pct",
]

#: Stefan-Boltzmann constant [W m-2 K-4] (CODATA 2018, exact in the SI).
STEFAN_BOLTZMANN = 5.670374419e-8

CLASS_NOT_STABLE, CLASS_SHALLOW, CLASS_SURFACE, CLASS_WARM_SHADOW, CLASS_NODATA = 0, 1, 2, 3, 255
CLASS_NAMES = {
    CLASS_NOT_STABLE: "not stable",
    CLASS_SHALLOW: "shallow-subsurface stable",
    CLASS_SURFACE: "surface stable",
    CLASS_WARM_SHADOW: "shadowed, likely too warm (permanent shadow equatorward of the cold-trap latitude limit)",
    CLASS_NODATA: "nodata",
}
#: The class codes of a valid pixel (every code of :data:`CLASS_NAMES` but nodata), in code order.
CLASS_CODES = (CLASS_NOT_STABLE, CLASS_SHALLOW, CLASS_SURFACE, CLASS_WARM_SHADOW)
#: The surface rules that are proxies of permanent shadow, not temperatures: they hold only
#: poleward of ``cold_trap_min_abs_latitude_deg`` (module docstring).
_SHADOW_RULES = ("psr", "illumination")

#: The score layers of the favourability, in the order of the ``weights`` parameter.
SCORE_LAYERS = ("thermal", "psr", "hydrogen", "pole_facing")

PROXY_LABEL = layer_registry.THERMAL_PROXY_LABEL

#: Percentiles of the Monte Carlo maps.
MC_PERCENTILES = (5, 50, 95)
#: Monte Carlo elements (samples x pixels) evaluated at once inside a chunk: ~32 MB of float32.
_MC_ELEMENTS = 1 << 23
#: Monte Carlo samples by default (:func:`ice_monte_carlo`, the ice stage's ``samples``).
MC_SAMPLES = 64
#: The most Monte Carlo samples the ice stage accepts.
MAX_MC_SAMPLES = 10_000
#: Nodata of the float GeoTIFFs.
FLOAT_NODATA = -9999.0

_F32 = np.float32
_U8 = np.uint8


# --- layers ------------------------------------------------------------------------------

#: the unit each input layer is modelled in (prospect's spelling, :mod:`prospect.layers`); a layer
#: in another unit of the vocabulary is converted (:func:`prospect.layers.unit_factor`: % -> 1, cm -> m)
MODEL_UNITS: dict[str, str] = {
    "tmax_k": "K",
    "tmean_k": "K",
    "ice_depth_m": "m",
    "psr": "1",
    "illumination_fraction": "1",
    "hydrogen_ppm": "ppm",
    "slope_deg": "deg",
    "aspect_deg": "deg",
    "lat_deg": "deg",
}
_UNSPECIFIED = {"unspecified", "unknown"}
#: the conversions the ice model makes on input (units of the vocabulary -> the model's)
_CONVERTIBLE = {("%", "1"), ("cm", "m"), ("km", "m")}
_CELSIUS = {"degc", "deg c", "°c", "c", "celsius", "degrees c", "degree celsius", "degrees celsius"}


@dataclass
class IceLayers:
    """The input layers of the ice model; every one optional, all on one grid.

    ``tmax_k`` / ``tmean_k``: annual maximum / mean surface temperature [K] (Diviner);
    ``ice_depth_m``: depth to stable ice [m] (Diviner PRP; 0 = at the surface);
    ``psr``: permanent shadow, a 0/1 mask or an area fraction 0..1;
    ``illumination_fraction``: time-averaged visible fraction of the solar disk [1];
    ``hydrogen_ppm``: neutron-derived hydrogen [ppm H] (smooth: 30-150 km footprints);
    ``slope_deg``, ``aspect_deg``: from :mod:`prospect.terrain` (aspect clockwise from
    true north, downslope); ``lat_deg``: planetocentric latitude (computed from the
    grid when missing).
    """

    tmax_k: xr.DataArray | None = None
    tmean_k: xr.DataArray | None = None
    ice_depth_m: xr.DataArray | None = None
    psr: xr.DataArray | None = None
    illumination_fraction: xr.DataArray | None = None
    hydrogen_ppm: xr.DataArray | None = None
    slope_deg: xr.DataArray | None = None
    aspect_deg: xr.DataArray | None = None
    lat_deg: xr.DataArray | None = None

    def given(self) -> dict[str, xr.DataArray]:
        """The supplied layers, ``{field name: DataArray}``, in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def grid(self) -> AnalysisGrid:
        """The common grid of the supplied layers (:class:`GridError` naming a layer that is not on it)."""
        return _check_grid(self.given())


def _check_grid(given: Mapping[str, xr.DataArray]) -> AnalysisGrid:
    if not given:
        raise ConfigError(
            "the ice model needs at least one layer (tmax_k, ice_depth_m, psr, illumination_fraction, "
            "hydrogen_ppm, slope_deg + aspect_deg, ...)"
        )
    ref_name, ref_grid = None, None
    for name, arr in given.items():
        if not isinstance(arr, xr.DataArray):
            raise GridError(
                f"ice layer {name!r} must be an xarray DataArray on the analysis grid, not {type(arr).__name__}"
            )
        try:
            g = AnalysisGrid.from_dataarray(arr)
        except GridError as exc:
            raise GridError(f"ice layer {name!r}: {exc}") from None
        if ref_grid is None:
            ref_name, ref_grid = name, g
        elif not g.matches(ref_grid):
            raise GridError(
                f"ice layer {name!r} is on {g}, not on the grid of {ref_name!r} ({ref_grid}); "
                "resample it first with prospect.grid.resample(layer, grid)"
            )
    assert ref_grid is not None
    return ref_grid


def _unit_factor(name: str, arr: xr.DataArray) -> tuple[float, bool]:
    """(factor to the model's unit, unit assumed) for one layer; UnitsError for implausible units."""
    want = MODEL_UNITS[name]
    raw = arr.attrs.get("units")
    if raw is None or str(raw).strip().lower() in _UNSPECIFIED:
        return 1.0, True
    key = " ".join(str(raw).strip().lower().split())
    if want == "1" and key == "":  # a fraction or mask written without a unit
        return 1.0, False
    if want == "K" and key in _CELSIUS:
        raise UnitsError(
            f"ice layer {name!r} is in {raw!r}: the ice model needs kelvin (K); add 273.15 and set attrs['units'] = 'K'"
        )
    try:
        return layer_registry.unit_factor(layer_registry.normalise_units(raw, f"ice layer {name!r}"), want), False
    except UnitsError:
        accepted = sorted(k for k, v in layer_registry.UNIT_ALIASES.items() if v == want or (v, want) in _CONVERTIBLE)
        raise UnitsError(
            f"ice layer {name!r} has units {raw!r}; the ice model needs {want!r} (accepted: {accepted})"
        ) from None


def _check_aspect(arr: xr.DataArray) -> None:
    ref = arr.attrs.get("azimuth_reference")
    if ref is not None and str(ref).strip().lower() != "true north":
        raise UnitsError(
            f"ice layer 'aspect_deg' is referenced to {ref!r}; the pole-facing score needs aspect "
            "clockwise from true north (prospect.terrain.aspect_deg without planar=True)"
        )


# --- parameters --------------------------------------------------------------------------


def ice_parameters(config: ParameterSet | Mapping[str, Any] | str | os.PathLike[str] | None = None) -> ParameterSet:
    """The ice parameters of ``config`` (:func:`prospect.config.load`), checked: an error before any data is read."""
    params = _params(config)
    _values(params)
    return params


def _params(params: ParameterSet | Mapping[str, Any] | str | os.PathLike[str] | None) -> ParameterSet:
    if isinstance(params, ParameterSet):
        if params.model != "ice":
            raise ConfigError(f"the ice model needs the 'ice' parameter set, not {params.model!r}")
        return params
    return load("ice", Path(params) if isinstance(params, os.PathLike) else params)


def _values(p: ParameterSet) -> dict[str, Any]:
    v = p.values()
    w = v["weights"]
    missing = [k for k in SCORE_LAYERS if k not in w]
    if missing:
        raise ConfigError(f"{p.origin}: ice.weights has no weight for {missing}")
    if sum(w.values()) <= 0:
        raise ConfigError(f"{p.origin}: ice.weights are all zero; give at least one layer a positive weight")
    if v["warm_shadow_class_score"] > v["shallow_class_score"]:
        raise ConfigError(
            f"{p.origin}: ice.warm_shadow_class_score ({v['warm_shadow_class_score']:g}) must not exceed "
            f"ice.shallow_class_score ({v['shallow_class_score']:g}): a shadow likely too warm is a weaker class"
        )
    return v


# --- pure helpers (numpy, dask or xarray) ----------------------------------------------


def _apply(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` on numpy / dask arrays and scalars; DataArrays are unwrapped and rewrapped (lazily)."""
    if any(isinstance(a, xr.DataArray) for a in args):
        return xr.apply_ufunc(fn, *args, dask="allowed")
    return fn(*args)


def _sin_sun_elevation(lat_deg: Any, pole_sun_elevation_deg: float) -> Any:
    typical = (2.0 / math.pi) * np.cos(np.radians(lat_deg))
    return np.maximum(typical, math.sin(math.radians(pole_sun_elevation_deg)))


def _proxy(illumination_fraction: Any, lat_deg: Any, v: Mapping[str, Any]) -> Any:
    scale = (1.0 - v["bond_albedo"]) * v["solar_constant_w_m2"] / (v["emissivity"] * STEFAN_BOLTZMANN)
    flux = np.clip(illumination_fraction, 0.0, 1.0) * _sin_sun_elevation(lat_deg, v["proxy_pole_sun_elevation_deg"])
    # T^4 = T_rad^4 + T_floor^4: the floor's flux (scattered light, infrared of sunlit walls) adds to the Sun's
    return ((flux * scale + float(v["thermal_proxy_floor_k"]) ** 4) ** 0.25).astype(_F32)


def thermal_proxy_k(illumination_fraction: Any, lat_deg: Any, params: Any = None) -> Any:
    """Radiative-equilibrium proxy of the ANNUAL MEAN surface temperature [K] (not a measurement).

    ``T = (T_rad^4 + T_floor^4)^(1/4)`` with ``T_rad = ((1 - A) S0 F sin(e) / (eps
    sigma))^(1/4)``, ``sin(e) = max((2/pi) cos(lat), sin(e_pole))`` (module docstring;
    [D]); ``A``, ``S0``, ``eps``, ``e_pole``, ``T_floor`` from the ``ice`` parameters
    (``bond_albedo``, ``solar_constant_w_m2``, ``emissivity``,
    ``proxy_pole_sun_elevation_deg``, ``thermal_proxy_floor_k``: scattered sunlight and
    infrared from sunlit walls). Monotone in ``F``; ``T_floor`` where ``F = 0`` (never
    lit), never 0 K. Works on numpy, dask and xarray inputs (float32 out).
    """
    v = _values(_params(params))
    return _apply(lambda f, lat: _proxy(f, lat, v), illumination_fraction, lat_deg)


def weh_wt_pct(hydrogen_ppm: Any, params: Any = None) -> Any:
    """Water-equivalent hydrogen [wt%] from hydrogen [ppm H]: ``9e-4 x ppm`` (science.md section 4, [D]).

    1670 ppm H (Feldman et al. 2000, south polar PSRs) gives 1.503 wt%.
    """
    return hydrogen_ppm * _values(_params(params))["weh_per_ppm_h"]


def _pole_score(slope: Any, aspect: Any, pole_azimuth: Any, ref_deg: float) -> Any:
    towards_pole = np.cos(np.radians(aspect - pole_azimuth))
    score = np.where(slope == 0, _F32(0.0), slope * towards_pole / _F32(ref_deg))
    return np.clip(score, _F32(0.0), _F32(1.0)).astype(_F32)


def pole_facing_score(slope_deg: Any, aspect_deg: Any, lat_deg: Any, params: Any = None) -> Any:
    """``clip(slope cos(aspect - pole azimuth) / pole_facing_slope_ref_deg, 0, 1)`` (0 on flat ground).

    The pole azimuth is 180 deg where ``lat < 0`` (a wall facing the south pole has
    aspect 180, :func:`prospect.terrain.aspect_deg`) and 0 deg in the north.
    """
    ref = _values(_params(params))["pole_facing_slope_ref_deg"]
    return _apply(lambda s, a, lat: _pole_score(s, a, 180.0 * (lat < 0), ref), slope_deg, aspect_deg, lat_deg)


# --- the model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rules:
    """Which rule decides each class and which score layers exist: from the layers supplied, not their values."""

    surface: str | None  # "tmax" | "depth" | "psr" | "illumination"
    shallow: str | None  # "depth" | "tmean" | "proxy"
    layers: tuple[str, ...]
    ignored: tuple[tuple[str, str], ...]
    dropped: tuple[tuple[str, str], ...] = ()  # (score, why): dropped so that no layer counts twice
    feeds: tuple[tuple[str, str], ...] = ()  # (input layer, the one score it feeds)

    @classmethod
    def of(cls, given: set[str]) -> _Rules:
        surface = next(
            (
                rule
                for rule, layer in (
                    ("tmax", "tmax_k"),
                    ("depth", "ice_depth_m"),
                    ("psr", "psr"),
                    ("illumination", "illumination_fraction"),
                )
                if layer in given
            ),
            None,
        )
        shallow = None
        if surface is not None:
            shallow = next(
                (
                    rule
                    for rule, layer in (
                        ("depth", "ice_depth_m"),
                        ("tmean", "tmean_k"),
                        ("proxy", "illumination_fraction"),
                    )
                    if layer in given
                ),
                None,
            )
        # the PSR layer as the thermal evidence feeds the thermal score only: no psr score then
        psr_is_thermal = surface == "psr"
        layers = tuple(
            k
            for k, ok in (
                ("thermal", surface is not None),
                ("psr", "psr" in given and not psr_is_thermal),
                ("hydrogen", "hydrogen_ppm" in given),
                ("pole_facing", {"slope_deg", "aspect_deg"} <= given),
            )
            if ok
        )
        dropped = []
        if psr_is_thermal:
            dropped.append(
                (
                    "psr",
                    (
                        "the psr layer is the thermal evidence (no tmax_k or ice_depth_m layer): it feeds the "
                        "thermal score only, so the psr score is dropped and the other weights renormalised"
                    ),
                )
            )
        feeds = []
        if surface is not None:
            feeds.append((_SURFACE_LAYER[surface], "thermal"))
            if shallow is not None and _SHALLOW_LAYER[shallow] != _SURFACE_LAYER[surface]:
                feeds.append((_SHALLOW_LAYER[shallow], "thermal"))
        if "psr" in layers:
            feeds.append(("psr", "psr"))
        if "hydrogen" in layers:
            feeds.append(("hydrogen_ppm", "hydrogen"))
        if "pole_facing" in layers:
            feeds += [("slope_deg", "pole_facing"), ("aspect_deg", "pole_facing")]
        ignored = []
        if "tmean_k" in given and shallow != "tmean":
            ignored.append(
                (
                    "tmean_k",
                    "the shallow class comes from ice_depth_m"
                    if shallow == "depth"
                    else "no surface-stability layer (tmax_k, ice_depth_m, psr, illumination_fraction)",
                )
            )
        if "illumination_fraction" in given and surface != "illumination" and shallow != "proxy":
            ignored.append(("illumination_fraction", "a temperature or depth layer decides the classes"))
        for a, b in (("slope_deg", "aspect_deg"), ("aspect_deg", "slope_deg")):
            if a in given and b not in given:
                ignored.append((a, f"the pole-facing score needs {b} too"))
        return cls(surface, shallow, layers, tuple(ignored), tuple(dropped), tuple(feeds))


_SURFACE_LAYER = {"tmax": "tmax_k", "depth": "ice_depth_m", "psr": "psr", "illumination": "illumination_fraction"}
_SHALLOW_LAYER = {"depth": "ice_depth_m", "tmean": "tmean_k", "proxy": "illumination_fraction"}


def _evaluate(
    a: Mapping[str, Any], v: Mapping[str, Any], rules: _Rules, pole_azimuth: Any, *, only: str | None = None
) -> dict[str, Any]:
    """Classes, scores, favourability and coverage from arrays ``a`` (numpy or dask) and values ``v``.

    ``only="ice_favourability"`` / ``"ice_stability_class"`` skips what that output does not need.
    """
    out: dict[str, Any] = {}
    scores: dict[str, Any] = {}
    if rules.surface is not None:
        x = a[_SURFACE_LAYER[rules.surface]]
        known = np.isfinite(x)
        if rules.surface == "tmax":
            surface = x < v["cold_trap_tmax_k"]
        elif rules.surface == "psr":
            surface = x >= v["psr_fraction_threshold"]
        else:  # depth 0 = ice at the surface; illumination 0 = never lit
            surface = x <= 0.0
        surface = known & surface
        warm = None
        if rules.surface in _SHADOW_RULES:  # permanent shadow is a cold trap only poleward of the limit
            lat = a["lat_deg"]
            known = known & np.isfinite(lat)
            polar = np.abs(lat) >= v["cold_trap_min_abs_latitude_deg"]  # False where lat is NaN
            warm = surface & known & ~polar
            surface = surface & polar
        if rules.shallow is not None:
            if rules.shallow == "depth":
                y = a["ice_depth_m"]
                shallow = (y >= 0.0) & (y <= v["shallow_depth_max_m"])
            else:
                if rules.shallow == "tmean":
                    y = a["tmean_k"]
                else:
                    y = _proxy(a["illumination_fraction"], a["lat_deg"], v)
                    out["thermal_proxy_k"] = y
                shallow = y < v["shallow_tmean_max_k"]
            below = np.where(
                known & np.isfinite(y),
                np.where(shallow, _U8(CLASS_SHALLOW), _U8(CLASS_NOT_STABLE)),
                _U8(CLASS_NODATA),
            )
        else:
            below = np.where(known, _U8(CLASS_NOT_STABLE), _U8(CLASS_NODATA))
        if warm is not None:
            # a measured annual mean that makes a warm shadow shallow-stable decides; the proxy never does
            if rules.shallow == "tmean":
                warm = warm & (below != CLASS_SHALLOW)
            below = np.where(warm, _U8(CLASS_WARM_SHADOW), below)
        cls = np.where(surface, _U8(CLASS_SURFACE), below).astype(_U8)
        out["ice_stability_class"] = cls
        if only == "ice_stability_class":
            return out
        scores["thermal"] = np.where(
            cls == CLASS_SURFACE,
            _F32(v["surface_class_score"]),
            np.where(
                cls == CLASS_SHALLOW,
                _F32(v["shallow_class_score"]),
                np.where(
                    cls == CLASS_WARM_SHADOW,
                    _F32(v["warm_shadow_class_score"]),
                    np.where(cls == CLASS_NOT_STABLE, _F32(0.0), _F32(np.nan)),
                ),
            ),
        )
    elif only == "ice_stability_class":
        return out
    if "psr" in rules.layers:
        scores["psr"] = np.clip(a["psr"], _F32(0.0), _F32(1.0)).astype(_F32)
    if "hydrogen" in rules.layers:
        weh = (a["hydrogen_ppm"] * v["weh_per_ppm_h"]).astype(_F32)
        out["weh_wt_pct"] = weh
        # water column [kg m-2] = WEH / 100 x bulk density x sensing depth (for inventories)
        out["water_column_kg_m2"] = (weh * _F32(v["bulk_density_kg_m3"] * v["water_sensing_depth_m"] / 100.0)).astype(
            _F32
        )
        scores["hydrogen"] = np.clip(weh / v["weh_reference_wt_pct"], _F32(0.0), _F32(1.0)).astype(_F32)
    if "pole_facing" in rules.layers:
        pole = pole_azimuth if pole_azimuth is not None else _F32(180.0) * (a["lat_deg"] < 0)
        scores["pole_facing"] = _pole_score(a["slope_deg"], a["aspect_deg"], pole, v["pole_facing_slope_ref_deg"])
    w = v["weights"]
    num = den = None
    all_valid = None
    for k in rules.layers:
        ok = np.isfinite(scores[k])
        term = np.where(ok, _F32(w[k]) * scores[k], _F32(0.0))
        wk = np.where(ok, _F32(w[k]), _F32(0.0))
        num = term if num is None else num + term
        den = wk if den is None else den + wk
        all_valid = ok if all_valid is None else all_valid & ok
    if num is None:
        raise ConfigError(
            "no score layer is available: supply at least one of a thermal layer (tmax_k, "
            "ice_depth_m, psr, illumination_fraction), psr, hydrogen_ppm, or slope_deg + aspect_deg"
        )
    assert den is not None and all_valid is not None  # set with num, by the same layers
    total_used = sum(w[k] for k in rules.layers)
    if total_used <= 0:
        _zero_weights(rules)
    fav = np.where(all_valid, num / _F32(total_used), _F32(np.nan)).astype(_F32)
    out["ice_favourability"] = fav
    if only == "ice_favourability":
        return out
    out["coverage"] = (den / _F32(sum(w.values()))).astype(_F32)
    out.update({f"score_{k}": s for k, s in scores.items()})
    return out


def _zero_weights(rules: _Rules) -> None:
    dropped = f" (dropped so that no layer counts twice: the {', '.join(dict(rules.dropped))} score)"
    raise ConfigError(
        f"the weights of the available layers {list(rules.layers)} are all zero" + (dropped if rules.dropped else "")
    )


# --- preparing the layers ----------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    grid: AnalysisGrid
    ref: xr.DataArray  # coords for the outputs
    arrays: dict[str, Any]  # numpy or dask (common chunks), model units, float32
    rules: _Rules
    pole_azimuth: float | None  # None: per pixel from lat_deg
    units_assumed: tuple[str, ...]
    lat_source: str


def _prepare(layers: IceLayers) -> _Prepared:
    if not isinstance(layers, IceLayers):
        raise ConfigError(f"the ice model takes an IceLayers, not {type(layers).__name__}")
    given = layers.given()
    grid = _check_grid(given)
    rules = _Rules.of(set(given))
    if not rules.layers:
        raise ConfigError(
            "no score layer can be made from the layers supplied "
            f"({', '.join(given)}); supply a thermal layer (tmax_k, ice_depth_m, psr, "
            "illumination_fraction), hydrogen_ppm, or slope_deg + aspect_deg"
        )
    arrays: dict[str, Any] = {}
    assumed = []
    for name, arr in given.items():
        factor, was_assumed = _unit_factor(name, arr)
        if name == "aspect_deg":
            _check_aspect(arr)
        if was_assumed:
            assumed.append(name)
        data = arr.data
        if not isinstance(data, da.Array):
            data = np.asarray(data)
        data = data.astype(_F32) if factor == 1.0 else data.astype(_F32) * _F32(factor)
        arrays[name] = data
    pole_azimuth: float | None = None
    if grid.crs.kind == "polar_south":
        pole_azimuth = 180.0
    elif grid.crs.kind == "polar_north":
        pole_azimuth = 0.0
    lat_source = "lat_deg layer" if "lat_deg" in arrays else "not needed"
    if "lat_deg" not in arrays and (
        rules.shallow == "proxy"
        or rules.surface in _SHADOW_RULES
        or ("pole_facing" in rules.layers and pole_azimuth is None)
    ):
        lat_source = "computed from the grid"
        arrays["lat_deg"] = "grid"
    chunked = [x for x in arrays.values() if isinstance(x, da.Array)]
    if chunked:
        chunks = chunked[0].chunks
        for k, x in arrays.items():
            if isinstance(x, str):
                lat = grid.lonlat(chunks=(chunks[0][0], chunks[1][0]))[1].astype(_F32)
                arrays[k] = lat if lat.chunks == chunks else lat.rechunk(chunks)
            elif not isinstance(x, da.Array):
                arrays[k] = da.from_array(x, chunks=chunks)
            elif x.chunks != chunks:
                arrays[k] = x.rechunk(chunks)
    elif "lat_deg" in arrays and isinstance(arrays["lat_deg"], str):
        _, lat = grid.lonlat()
        arrays["lat_deg"] = np.asarray(lat, dtype=_F32)
    ref = next(iter(given.values()))
    return _Prepared(grid, ref, arrays, rules, pole_azimuth, tuple(assumed), lat_source)


def _wrap(prep: _Prepared, data: Any, name: str, attrs: Mapping[str, Any]) -> xr.DataArray:
    coords = {k: c for k, c in prep.ref.coords.items() if set(c.dims) <= set(prep.ref.dims)}
    arr = xr.DataArray(data, dims=prep.ref.dims, coords=coords, name=name)
    arr.attrs.update(attrs)
    arr.attrs["crs"] = prep.grid.crs.code or prep.grid.crs.kind
    arr.attrs["resolution_m"] = prep.grid.ground_resolution_m
    return arr


# --- provenance --------------------------------------------------------------------------


def _surface_text(rules: _Rules, v: Mapping[str, Any]) -> str:
    return {
        "tmax": f"tmax_k < {v['cold_trap_tmax_k']:g} K (annual maximum surface temperature; Paige et al. 2010, "
        "Science 330:479; Li et al. 2018, PNAS 115:8907)",
        "depth": "ice_depth_m <= 0 (stable ice at the surface; depth-to-ice layer)",
        "psr": f"psr >= {v['psr_fraction_threshold']:g} and |lat| >= {v['cold_trap_min_abs_latitude_deg']:g} deg "
        "(permanent shadow as the surface-stability proxy: a PSR is never directly lit; no temperature layer; "
        + _LIMIT_TEXT
        + ")",
        "illumination": f"illumination_fraction == 0 and |lat| >= {v['cold_trap_min_abs_latitude_deg']:g} deg "
        "(never lit over the span: permanent shadow as the surface-stability proxy; no temperature or PSR layer; "
        + _LIMIT_TEXT
        + ")",
        None: "not evaluated: no temperature, depth, PSR or illumination layer",
    }[rules.surface]


_LIMIT_TEXT = (
    "the cold-trap latitude limit: shadows equatorward of ~80 deg are typically too warm for surface ice, "
    "Hayne et al. 2021, Nature Astronomy 5:169"
)


def _warm_shadow_text(rules: _Rules, v: Mapping[str, Any]) -> str:
    if rules.surface not in _SHADOW_RULES:
        return "not used: " + (
            "a measured temperature or depth decides the surface class (no latitude limit)"
            if rules.surface is not None
            else "no surface-stability layer"
        )
    shadow = {"psr": f"psr >= {v['psr_fraction_threshold']:g}", "illumination": "illumination_fraction == 0"}
    text = (
        f"{shadow[rules.surface]} and |lat| < {v['cold_trap_min_abs_latitude_deg']:g} deg (permanent shadow "
        f"equatorward of the cold-trap latitude limit; {_LIMIT_TEXT}): class {CLASS_WARM_SHADOW}, thermal score "
        f"{v['warm_shadow_class_score']:g}"
    )
    if rules.shallow == "tmean":
        text += "; class 1 where the measured tmean_k makes it shallow-subsurface stable"
    return text


def _shallow_text(rules: _Rules, v: Mapping[str, Any]) -> str:
    if rules.surface is None:
        return "not evaluated: no surface-stability layer"
    return {
        "depth": f"0 <= ice_depth_m <= {v['shallow_depth_max_m']:g} m (depth to stable ice)",
        "tmean": f"tmean_k < {v['shallow_tmean_max_k']:g} K (annual mean surface temperature; below the annual "
        "thermal skin depth temperatures approach the annual mean)",
        "proxy": f"thermal_proxy_k < {v['shallow_tmean_max_k']:g} K, thermal_proxy_k = ((1 - A) S0 F sin(e) / "
        f"(eps sigma) + T_floor^4)^(1/4), T_floor = thermal_proxy_floor_k = {v['thermal_proxy_floor_k']:g} K: "
        + PROXY_LABEL,
        None: "not evaluated: no temperature, depth or illumination layer",
    }[rules.shallow]


def _thermal_source(rules: _Rules) -> str:
    if rules.surface == "tmax":
        if rules.shallow == "proxy":
            return "measured: tmax_k (annual maximum surface temperature); shallow class: " + PROXY_LABEL
        extra = {
            "depth": "; ice_depth_m (depth to stable ice)",
            "tmean": "; tmean_k (annual mean surface temperature)",
        }.get(rules.shallow or "", "")
        return "measured: tmax_k (annual maximum surface temperature)" + extra
    if rules.shallow == "proxy":
        return PROXY_LABEL
    if rules.surface == "depth":
        return "depth to stable ice (ice_depth_m); no temperature layer"
    if rules.surface == "psr":
        extra = "; shallow class: tmean_k (annual mean surface temperature)" if rules.shallow == "tmean" else ""
        return "proxy: permanent shadow (psr) poleward of the cold-trap latitude limit; no temperature layer" + extra
    if rules.surface == "illumination":
        return (
            "proxy: never lit (illumination_fraction == 0) poleward of the cold-trap latitude limit; "
            "no temperature layer"
        )
    return "none: no temperature, depth, PSR or illumination layer (thermal score missing)"


def _provenance(prep: _Prepared, p: ParameterSet, v: Mapping[str, Any]) -> dict[str, Any]:
    rules = prep.rules
    w = v["weights"]
    used_total = sum(w[k] for k in rules.layers)
    if used_total <= 0:
        _zero_weights(rules)
    dropped = dict(rules.dropped)
    missing = [k for k in SCORE_LAYERS if k not in rules.layers and k not in dropped]
    return {
        "layers_used": list(rules.layers),
        "layers_missing": missing,
        "inputs": [k for k in prep.arrays if not (k == "lat_deg" and prep.lat_source == "computed from the grid")],
        "inputs_ignored": dict(rules.ignored),
        "weights_configured": dict(w),
        "weights_effective": {k: w[k] / used_total for k in rules.layers},
        "scores_dropped": dropped,
        "input_scores": dict(rules.feeds)
        | (
            {"lat_deg": "none: a coordinate (cold-trap latitude limit, thermal proxy, pole azimuth), not evidence"}
            if "lat_deg" in prep.arrays
            else {}
        ),
        "coverage_of_configured_weights": used_total / sum(w.values()),
        "missing_layer_rule": "weights of missing layers dropped, the others renormalised; NaN where a supplied "
        "layer is NaN (coverage shows it)",
        "thermal_source": _thermal_source(rules),
        "surface_class": _surface_text(rules, v),
        "warm_shadow_class": _warm_shadow_text(rules, v),
        "shallow_class": _shallow_text(rules, v),
        "units_assumed": list(prep.units_assumed),
        "latitude": prep.lat_source,
        "parameters": p.values(),
        "parameter_origin": p.origin,
        "sources": {row["name"]: f"[{row['status']}] {row['source']}" for row in p.table()},
    }


def _long_name(name: str) -> str:
    return layer_registry.get(name).stage_long_name


def _class_attrs(prov: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "units": layer_registry.get("ice_stability_class").units,
        "long_name": _long_name("ice_stability_class"),
        "flag_values": list(CLASS_CODES),
        "flag_meanings": "not_stable shallow_subsurface_stable surface_stable shadowed_likely_too_warm",
        "class_names": {str(k): n for k, n in CLASS_NAMES.items()},
        "nodata": CLASS_NODATA,
        "surface_class": prov["surface_class"],
        "shallow_class": prov["shallow_class"],
        "warm_shadow_class": prov["warm_shadow_class"],
        "thermal_source": prov["thermal_source"],
        "sources": "Paige et al. 2010, Science 330:479; Li et al. 2018, PNAS 115:8907 (110 K cold-trap criterion); "
        "Hayne et al. 2021, Nature Astronomy 5:169 (shadows equatorward of ~80 deg typically too warm)",
    }


# --- public model functions --------------------------------------------------------------


def ice_stability(layers: IceLayers, params: Any = None) -> xr.DataArray:
    """The ice-stability class map (uint8): 2 surface, 1 shallow-subsurface, 3 shadowed but likely too
    warm, 0 not stable, 255 nodata (:data:`CLASS_NAMES`).

    Rules, thresholds and sources: module docstring; the attributes say which rule
    decided each class (``surface_class``, ``shallow_class``) and ``thermal_source``.
    ``params``: a :class:`~prospect.config.ParameterSet`, or a config (mapping or YAML
    path) for :func:`prospect.config.load`.
    """
    p = _params(params)
    v = _values(p)
    prep = _prepare(layers)
    prov = _provenance(prep, p, v)
    out = _evaluate(prep.arrays, v, prep.rules, prep.pole_azimuth, only="ice_stability_class")
    return _class_map(prep, out, prov)


def _class_map(prep: _Prepared, out: Mapping[str, Any], prov: Mapping[str, Any]) -> xr.DataArray:
    """The class DataArray (all nodata when no surface-stability layer was supplied)."""
    data = out.get("ice_stability_class")
    if data is None:
        ref = next(iter(prep.arrays.values()))
        data = (
            da.full(ref.shape, CLASS_NODATA, dtype=_U8, chunks=ref.chunks)
            if isinstance(ref, da.Array)
            else np.full(ref.shape, CLASS_NODATA, dtype=_U8)
        )
    return _wrap(prep, data, "ice_stability_class", _class_attrs(prov))


def ice_favourability(layers: IceLayers, params: Any = None) -> xr.Dataset:
    """Ice favourability (0..1) with its class map, coverage and per-layer scores.

    Returns a Dataset with ``ice_favourability``, ``ice_stability_class``, ``coverage``,
    ``score_<layer>`` for every available layer (``thermal``, ``psr``, ``hydrogen``,
    ``pole_facing``), ``weh_wt_pct`` with hydrogen and ``thermal_proxy_k`` when the
    proxy is used; each with ``units`` and ``long_name``. The Dataset's attributes hold
    the provenance: ``layers_used``, ``layers_missing``, ``scores_dropped``,
    ``input_scores`` (the one score each input feeds), ``weights_effective``,
    ``thermal_source``, ``surface_class``, ``warm_shadow_class``, ``shallow_class``, the
    parameter values and their sources. With the PSR layer as the thermal evidence there
    is no ``score_psr``. Lazy on dask-backed layers. Model: module docstring.
    """
    p = _params(params)
    v = _values(p)
    prep = _prepare(layers)
    prov = _provenance(prep, p, v)
    out = _evaluate(prep.arrays, v, prep.rules, prep.pole_azimuth)
    data_vars = {}
    for name in (
        "ice_favourability",
        "ice_stability_class",
        "coverage",
        *(f"score_{k}" for k in SCORE_LAYERS),
        "weh_wt_pct",
        "water_column_kg_m2",
        "thermal_proxy_k",
    ):
        if name == "ice_stability_class":
            data_vars[name] = _class_map(prep, out, prov)
            continue
        if name not in out:
            continue
        attrs = {"units": layer_registry.get(name).units, "long_name": _long_name(name)}
        if name in ("score_thermal", "thermal_proxy_k", "ice_favourability"):
            attrs["thermal_source"] = prov["thermal_source"]
        if name == "ice_favourability":
            attrs.update(
                layers_used=prov["layers_used"],
                layers_missing=prov["layers_missing"],
                scores_dropped=prov["scores_dropped"],
                input_scores=prov["input_scores"],
                weights_effective=prov["weights_effective"],
            )
        if name == "score_pole_facing" and layers.slope_deg is not None:
            attrs["slope_baseline_m"] = layers.slope_deg.attrs.get("baseline_m", "unknown")
        data_vars[name] = _wrap(prep, out[name], name, attrs)
    return xr.Dataset(data_vars, attrs=prov)


def water_inventory_kg(dataset: xr.Dataset, params: Any = None, *, psr: xr.DataArray | None = None) -> dict[str, float]:
    """Water-equivalent mass [kg] of a favourability Dataset with hydrogen: over the whole map, over
    the stable classes (surface + shallow) and over the PSR pixels (PSR fraction >= threshold).

    The PSR pixels come from ``psr`` (the PSR layer of the model) when given, else from the
    dataset's ``score_psr`` (absent when the PSR layer was the thermal evidence: then pass it).

    The column is ``WEH / 100 x bulk density x sensing depth``
    (:data:`ice.yaml <prospect.config>` ``bulk_density_kg_m3``, ``water_sensing_depth_m``),
    integrated with exact pixel areas (:func:`prospect.resources.inventory.inventory_kg`).
    Neutron WEH is a 30-150 km footprint average, so these are regional masses spread
    over the mask, not the ice inside each cold trap.
    """
    from prospect.resources.inventory import inventory_kg

    if "water_column_kg_m2" not in dataset:
        raise ConfigError("water_inventory_kg needs a hydrogen layer (no water_column_kg_m2 in the dataset)")
    v = _values(_params(params))
    column = dataset["water_column_kg_m2"]
    cls = dataset["ice_stability_class"]
    out = {
        "map_kg": inventory_kg(column),
        "stable_classes_kg": inventory_kg(column, mask=((cls == CLASS_SURFACE) | (cls == CLASS_SHALLOW))),
    }
    psr_layer = psr * _unit_factor("psr", psr)[0] if psr is not None else dataset.get("score_psr")
    if psr_layer is not None:
        out["psr_kg"] = inventory_kg(column, mask=(psr_layer >= v["psr_fraction_threshold"]))
    return out


def _mc_ranges(p: ParameterSet) -> dict[str, tuple[float, float]]:
    """MC range of every scalar parameter that has one: the configured range, which
    :mod:`prospect.config` moves with a user override of its value (or takes from it)."""
    return {
        name: (float(prm.range[0]), float(prm.range[1]))
        for name, prm in sorted(p.params.items())
        if prm.range is not None and not isinstance(prm.value, Mapping)
    }


def _draws(p: ParameterSet, v: Mapping[str, Any], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` parameter sets: ranged parameters uniform, weights Dirichlet around the configured ones."""
    rng = np.random.default_rng(seed)
    ranges = _mc_ranges(p)
    names = list(ranges)
    u = rng.uniform(size=(n, len(names)))
    w = v["weights"]
    positive = [k for k in SCORE_LAYERS if w[k] > 0]
    total = sum(w[k] for k in positive)
    alpha = np.array([v["mc_weight_concentration"] * w[k] / total for k in positive])
    shares = rng.dirichlet(alpha, size=n)
    draws = []
    for i in range(n):
        d = dict(v)
        for j, name in enumerate(names):
            lo, hi = ranges[name]
            d[name] = lo + (hi - lo) * float(u[i, j])
        d["weights"] = dict.fromkeys(SCORE_LAYERS, 0.0) | {
            k: float(shares[i, j]) * total for j, k in enumerate(positive)
        }
        # the class order holds in every draw: a warm shadow never outscores the shallow class
        d["warm_shadow_class_score"] = min(d["warm_shadow_class_score"], d["shallow_class_score"])
        draws.append(d)
    return draws


def _mc_block(
    blocks: Mapping[str, np.ndarray], draws: list[dict[str, Any]], rules: _Rules, pole_azimuth: float | None
) -> np.ndarray:
    """Percentile maps (3, rows, cols) of one chunk, evaluated strip by strip."""
    first = next(iter(blocks.values()))
    rows, cols = first.shape
    out = np.empty((len(MC_PERCENTILES), rows, cols), dtype=_F32)
    n = len(draws)
    strip = max(1, _MC_ELEMENTS // max(1, n * cols))
    for r0 in range(0, rows, strip):
        r1 = min(rows, r0 + strip)
        sub = {k: np.asarray(b[r0:r1]) for k, b in blocks.items()}
        stack = np.empty((n, r1 - r0, cols), dtype=_F32)
        for i, d in enumerate(draws):
            stack[i] = _evaluate(sub, d, rules, pole_azimuth, only="ice_favourability")["ice_favourability"]
        out[:, r0:r1] = np.percentile(stack, MC_PERCENTILES, axis=0)
    return out


def ice_monte_carlo(layers: IceLayers, params: Any = None, *, n: int = MC_SAMPLES, seed: int = 0) -> xr.Dataset:
    """Percentile maps ``ice_favourability_p05`` / ``_p50`` / ``_p95`` of ``n`` Monte Carlo parameter sets.

    Every scalar parameter with a ``range`` in ``ice.yaml`` is drawn uniformly in it (a
    user override of the value shifts its range with it); the weights are drawn as
    ``Dirichlet(c w / sum w) x sum w`` with ``c = mc_weight_concentration``. The draws are
    made once from ``numpy.random.default_rng(seed)``, so the maps are deterministic for
    a seed and identical for any chunking. Each chunk evaluates the samples strip by
    strip (about 32 MB at a time), so memory does not grow with the raster. Lazy on
    dask-backed layers.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"Monte Carlo samples must be a positive integer, not {n!r}")
    p = _params(params)
    v = _values(p)
    prep = _prepare(layers)
    prov = _provenance(prep, p, v)
    draws = _draws(p, v, int(n), int(seed))
    names = list(prep.arrays)
    rules, pole = prep.rules, prep.pole_azimuth

    def block(*arrays: np.ndarray) -> np.ndarray:
        return _mc_block(dict(zip(names, arrays)), draws, rules, pole)

    inputs = [prep.arrays[k] for k in names]
    if isinstance(inputs[0], da.Array):
        token = dask.base.tokenize(
            [x.name for x in inputs], json.dumps(draws, sort_keys=True, default=str), rules, pole, MC_PERCENTILES
        )
        stacked = da.map_blocks(
            block,
            *inputs,
            new_axis=0,
            chunks=((len(MC_PERCENTILES),),) + inputs[0].chunks,
            dtype=_F32,
            name=f"ice-monte-carlo-{token}",
            meta=np.empty((0, 0, 0), _F32),
        )
    else:
        stacked = block(*inputs)
    ranges = _mc_ranges(p)
    mc_attrs = {
        "mc_samples": int(n),
        "mc_seed": int(seed),
        "mc_parameters_varied": {k: list(r) for k, r in ranges.items()},
        "mc_weights": f"Dirichlet(c w / sum w) x sum w, c = mc_weight_concentration = {v['mc_weight_concentration']:g}",
    }
    data_vars = {}
    for i, q in enumerate(MC_PERCENTILES):
        name = f"ice_favourability_p{q:02d}"
        data_vars[name] = _wrap(
            prep,
            stacked[i],
            name,
            {
                "units": "1",
                "long_name": f"ice favourability, {q}th percentile of {n} Monte Carlo samples",
                "percentile": q,
                "thermal_source": prov["thermal_source"],
                **mc_attrs,
            },
        )
    return xr.Dataset(data_vars, attrs={**prov, **mc_attrs})
