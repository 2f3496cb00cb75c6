"""Rank candidate base sites: features, three scorings, Monte Carlo uncertainty, explanations.

The stage (:func:`rank_sites`) takes the analysis-grid layers and returns a table with one
row per candidate that passed the hard constraints (:mod:`prospect.sites.candidates`):

1. **Features** (:data:`FEATURES`, each with its unit): zonal statistics over the site
   disc, great-circle distances to PSR / ice-favourable / He-3-high pixels, the
   slope-weighted traverse cost to the nearest cold trap, the crater density from the
   catalogue, He-3 within a radius and the nearest named cold trap; and the multi-scale
   context (:mod:`prospect.sites.context`): illumination, Earth visibility, slope and
   cold-trap distance averaged over ``context_near_radius_m`` and ``context_region_radius_m``.
2. **Multi-criteria** (:mod:`prospect.sites.mcda`): weighted sum and TOPSIS with the
   weights and directions of ``prospect/config/sites.yaml``.
3. **Learned** (:mod:`prospect.sites.learn`): a presence-only ensemble trained on the
   candidates inside expert-chosen regions (the 13 Artemis III regions of 2022) against
   background candidates, evaluated by spatial block cross-validation and
   leave-one-region-out, with permutation importances.
4. **Combined score** ``score = (1 - s) WS + s L`` (``s = learned_share``; ``WS`` the
   weighted sum, ``L`` the learned score ``score_learned`` -- the ensemble mean of the
   members' calibrated log-odds -- min-max scaled over the candidates),
   and its **Monte Carlo**: each draw takes Dirichlet-perturbed weights, one of
   ``dem_draws`` DEM realisations with Gaussian noise ``dem_noise_m`` (slope, slope
   p95 and roughness recomputed) and one ensemble member; the draws give ``score_p05``,
   ``score_p50``, ``score_p95`` and ``p_top<k>``.

``rank`` orders ``score`` (ties by ``site_id``). Every row carries its features, the
score of each method and their ranks, the criterion contributions ``contrib_*`` of the
weighted sum, the learned score's terms ``learned_contrib_*`` (``learned_base`` plus them
is ``score_learned``, :func:`prospect.sites.learn.contributions`) and a one-line
``explanation``.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from prospect import config as _config
from prospect import lunar
from prospect.config import ParameterSet
from prospect.errors import ConfigError
from prospect.grid import AnalysisGrid, as_dask, on_grid
from prospect.memory import peak_rss_mb
from prospect.resources.ice import CLASS_SURFACE, CLASS_WARM_SHADOW
from prospect.sites import context, distinct, mcda, traverse
from prospect.sites import features as F
from prospect.sites.candidates import Lattice, apply_constraints, candidate_frame, disc_stat, disc_stats

#: Feature columns: unit and meaning (the site table's ``attrs['feature_units']``).
FEATURES: dict[str, tuple[str, str]] = {
    "illumination_fraction": ("1", "mean solar illumination fraction over the site"),
    "longest_darkness_h": ("h", "longest continuous darkness, worst pixel of the site"),
    "earth_visibility_fraction": ("1", "mean Earth visibility fraction over the site"),
    "slope_mean_deg": ("deg", "mean slope over the site"),
    "slope_p95_deg": ("deg", "95th percentile slope over the site"),
    "roughness_m": ("m", "mean RMS deviation (Shepard et al. 2001) over the site"),
    "psr_fraction": ("1", "permanently shadowed share of the site"),
    "psr_distance_km": ("km", "great-circle distance to the nearest PSR pixel"),
    "ice_favourability": ("1", "mean ice favourability over the site"),
    "ice_distance_km": ("km", "great-circle distance to the nearest ice-favourable pixel"),
    "cold_trap_distance_km": ("km", "great-circle distance to the nearest cold-trap pixel"),
    "traverse_cost_km": ("km", "slope-weighted traverse cost to the nearest cold trap (flat-ground km)"),
    "crater_density_km2": ("1/km2", "catalogue craters per km2 around the site"),
    "he3_ppb": ("ppb", "mean He-3 concentration within he3_radius_m"),
    "he3_distance_km": ("km", "great-circle distance to the nearest He-3 high"),
    "flat_area_km2": ("km2", "connected area passing the slope limit around the site"),
    "nearest_cold_trap_km": ("km", "distance to the PSR centroid of the nearest named cold trap"),
    # multi-scale context (prospect.sites.context): means over a disc of context_near_radius_m
    # (_near) and context_region_radius_m (_region) around the site
    "illumination_fraction_near": ("1", "mean illumination fraction within context_near_radius_m"),
    "illumination_fraction_region": ("1", "mean illumination fraction within context_region_radius_m"),
    "earth_visibility_fraction_near": ("1", "mean Earth visibility fraction within context_near_radius_m"),
    "earth_visibility_fraction_region": ("1", "mean Earth visibility fraction within context_region_radius_m"),
    "slope_mean_deg_near": ("deg", "mean slope within context_near_radius_m"),
    "slope_mean_deg_region": ("deg", "mean slope within context_region_radius_m"),
    "cold_trap_distance_km_near": ("km", "mean distance to the nearest cold-trap pixel within context_near_radius_m"),
    "cold_trap_distance_km_region": (
        "km",
        "mean distance to the nearest cold-trap pixel within context_region_radius_m",
    ),
}

#: The multi-scale context columns of :data:`FEATURES` (used by the ``+multiscale`` model variants).
CONTEXT_FEATURES = tuple(k for k in FEATURES if k.endswith(("_near", "_region")))

_RASTERS = (
    "illumination_fraction",
    "longest_darkness_h",
    "earth_visibility_fraction",
    "psr_fraction",
    "ice_favourability",
    "ice_class",
    "he3_ppb",
)


#: The run log's logger (the pipeline runner's file handler writes its INFO records).
LOGGER = "prospect.pipeline"


class PartTimer:
    """Wall-clock seconds of each part of the site stage, logged at INFO and, with
    ``progress``, printed to stderr as ``sites: <part> <s> s (<elapsed> s)`` (unless the run
    log's logger has handlers: ``prospect run`` echoes its log to stderr already)."""

    def __init__(self, progress: bool = False) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}
        self.start = time.monotonic()
        self.log = logging.getLogger(LOGGER)

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        yield
        now = time.monotonic()
        self.seconds[name] = self.seconds.get(name, 0.0) + (now - t0)
        peak = peak_rss_mb()
        self.log.info(
            "sites: %s %.2f s (%.1f s elapsed, peak RSS so far %.0f MB)", name, now - t0, now - self.start, peak
        )
        if self.progress and not self.log.handlers:  # inside `prospect run` the run log also writes stderr
            print(
                f"sites: {name} {now - t0:.2f} s ({now - self.start:.1f} s, peak RSS {peak:.0f} MB)",
                file=sys.stderr,
                flush=True,
            )


@dataclass
class SiteInputs:
    """The layers of the site stage; rasters on the DEM's analysis grid (others are resampled)."""

    dem: xr.DataArray
    illumination_fraction: xr.DataArray | None = None
    longest_darkness_h: xr.DataArray | None = None
    earth_visibility_fraction: xr.DataArray | None = None
    psr_fraction: xr.DataArray | None = None
    ice_favourability: xr.DataArray | None = None
    ice_class: xr.DataArray | None = None
    he3_ppb: xr.DataArray | None = None
    craters: Any = None
    cold_traps: Any = None
    regions: Any = None
    sources: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from prospect.terrain.metric import heights_in_metres

        self.grid = AnalysisGrid.from_dataarray(self.dem)
        self.dem = heights_in_metres(self.dem)
        for name in _RASTERS:
            arr = getattr(self, name)
            if arr is not None:
                method: Literal["nearest", "average"] = "nearest" if name == "ice_class" else "average"
                setattr(self, name, on_grid(arr, self.grid, method=method))

    def layers(self) -> dict[str, xr.DataArray]:
        return {n: getattr(self, n) for n in _RASTERS if getattr(self, n) is not None}


def rank_parameters(config: Any = None) -> ParameterSet:
    """The site parameters: ``config`` itself if a ParameterSet, else :func:`prospect.config.load` of it.

    The power analysis' parameters (:func:`prospect.sites.power.power_params`), the learned
    variants and the feature set are checked here too, so a bad value fails before any work."""
    from prospect.sites.power import power_params

    p = config if isinstance(config, ParameterSet) else _config.load("sites", config)
    power_params(p)
    _learned_variants(p)
    _feature_set(p)
    return p


def _int_param(p: ParameterSet, name: str) -> int:
    v = p[name]
    if float(v) != int(v):
        raise ConfigError(f"sites.{name}: must be a whole number, not {v:g}")
    return int(v)


def terrain_stats(dem: xr.DataArray, lattice: Lattice, radius_m: float) -> tuple[dict[str, np.ndarray], xr.DataArray]:
    """Mean and p95 slope and mean roughness over each site disc of the lattice, and the slope map."""
    from prospect.terrain import rms_deviation, slope_deg

    slope = slope_deg(dem)
    requests: dict[str, tuple[xr.DataArray, Literal["mean", "p95"]]] = {
        "slope_mean_deg": (slope, "mean"),
        "slope_p95_deg": (slope, "p95"),
        "roughness_m": (rms_deviation(dem), "mean"),
    }
    return disc_stats(requests, lattice, radius_m), slope


def _noisy_dem(dem: xr.DataArray, sigma_m: float, seed: int) -> xr.DataArray:
    data = as_dask(dem)
    noise = da.random.default_rng(seed).normal(0.0, sigma_m, size=data.shape, chunks=data.chunks)
    return dem.copy(data=(data + noise).astype(data.dtype))


def site_features(
    inputs: SiteInputs, params: ParameterSet, timer: PartTimer | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Candidates that pass the hard constraints, with every feature of :data:`FEATURES`.

    Returns the table (one row per candidate) and a record of the constraints
    (descriptions, lattice counts passing each, the lattice).
    """
    p = params
    t = timer or PartTimer()
    grid = inputs.grid
    radius = p["site_radius_m"]
    with t.part("lattice"):
        lattice = Lattice.of(grid, p["candidate_spacing_m"])
        lat_all = lattice.lonlat()[1]
    with t.part("terrain zonal statistics"):
        terrain, slope = terrain_stats(inputs.dem, lattice, radius)
    stats = {"slope_mean_deg": terrain["slope_mean_deg"]}
    layers = inputs.layers()
    with t.part("constraint zonal statistics"):
        for name in ("illumination_fraction", "psr_fraction"):
            if name in layers:
                stats[name] = disc_stat(layers[name], lattice, radius, "mean")
    with t.part("constraints"):
        result = apply_constraints(stats, lat_all, lattice, p)
        result.require_some()
        passed = result.passed
        sel = np.nonzero(passed)
        frame = candidate_frame(lattice, passed, radius)
    for k, v in terrain.items():
        frame[k] = v[sel]
    disc_stats: tuple[tuple[str, Literal["mean", "max"]], ...] = (
        ("illumination_fraction", "mean"),
        ("longest_darkness_h", "max"),
        ("earth_visibility_fraction", "mean"),
        ("psr_fraction", "mean"),
        ("ice_favourability", "mean"),
    )
    with t.part("feature zonal statistics"):
        for name, stat in disc_stats:
            if name in layers:
                frame[name] = (stats[name] if name in stats else disc_stat(layers[name], lattice, radius, stat))[sel]
    frame["flat_area_km2"] = result.flat_area_m2[sel] / 1e6
    lon, lat = frame["lon"].to_numpy(), frame["lat"].to_numpy()
    at = (frame["row"].to_numpy(), frame["col"].to_numpy())
    notes: dict[str, str] = {}
    psr_mask = None
    traverse_field = None  # the solved traverse cost field (prospect.sites.traverse), for the paths
    if "psr_fraction" in layers:
        psr_mask = layers["psr_fraction"] >= p["psr_fraction_threshold"]
        with t.part("PSR distance"):
            frame["psr_distance_km"] = F.distance_to_mask_km(lon, lat, psr_mask, grid, *at)
    # surface-stable only: class 3 (a shadow equatorward of the cold-trap latitude limit) is not a cold trap
    cold = None
    if "ice_class" in layers:
        cold = layers["ice_class"] == CLASS_SURFACE
    elif psr_mask is not None:  # no ice map: PSR pixels, only where the cold-trap rule can hold
        limit = float(p["cold_trap_min_abs_latitude_deg"])
        px_lat = grid.lonlat(chunks=as_dask(psr_mask).chunksize)[1]
        cold = psr_mask & (abs(px_lat) >= limit)
    if cold is not None:
        notes["cold_traps"] = (
            f"ice stability class {CLASS_SURFACE} (surface-stable; not class {CLASS_WARM_SHADOW}, shadowed but "
            "likely too warm)"
            if "ice_class" in layers
            else f"PSR pixels (psr_fraction >= {p['psr_fraction_threshold']:g}) poleward of "
            f"{p['cold_trap_min_abs_latitude_deg']:g} deg (Hayne et al. 2021: shadows equatorward are typically "
            "too warm)"
        )
        with t.part("cold-trap distance"):
            frame["cold_trap_distance_km"] = F.distance_to_mask_km(lon, lat, cold, grid, *at)
        with t.part("traverse cost"):
            cost, res, traverse_field = F.traverse_cost_km(
                slope,
                cold,
                *at,
                grid,
                scale_deg=p["traverse_slope_scale_deg"],
                max_slope_deg=p["traverse_max_slope_deg"],
                max_cells=p["traverse_max_cells"],
                return_field=True,
                psr_mask=psr_mask,
            )
        frame["traverse_cost_km"] = cost
        notes["traverse_resolution_m"] = f"{res:g}"
    for name, q in (("ice_favourability", "ice_favourable_quantile"), ("he3_ppb", "he3_high_quantile")):
        if name in layers:
            target = "ice_distance_km" if name == "ice_favourability" else "he3_distance_km"
            with t.part(target.replace("_km", "").replace("_", " ")):
                cut, floor = _quantile_and_min(layers[name], p[q])
                high = layers[name] >= cut if cut > floor else layers[name] > floor  # a flat floor is never "high"
                frame[target] = F.distance_to_mask_km(lon, lat, high, grid, *at)
            notes[f"{target}_cut"] = f"{name} {'>=' if cut > floor else '>'} {max(cut, floor):.6g} (quantile {p[q]:g})"
    if "he3_ppb" in layers:
        with t.part("He-3 zonal mean"):
            frame["he3_ppb"] = disc_stat(layers["he3_ppb"], lattice, p["he3_radius_m"], "mean")[sel]
    if inputs.craters is not None:
        with t.part("crater density"):
            clon, clat = F.point_lonlat(inputs.craters)
            diam = F.diameters_m(inputs.craters, str(inputs.sources.get("craters", "craters")))
            frame["crater_density_km2"] = F.crater_density_km2(
                lon, lat, clon, clat, diam, radius_m=p["crater_radius_m"], min_diameter_m=p["crater_min_diameter_m"]
            )
    if inputs.cold_traps is not None:
        with t.part("nearest named cold trap"):
            names, dist = F.nearest_named(lon, lat, inputs.cold_traps)
        frame["nearest_cold_trap"] = names
        frame["nearest_cold_trap_km"] = dist
    ctx_layers: dict[str, Any] = {
        n: layers[n] for n in ("illumination_fraction", "earth_visibility_fraction") if n in layers
    }
    ctx_layers["slope_mean_deg"] = slope
    with t.part("multi-scale context"):
        ctx = context.context_features(
            ctx_layers,
            *at,
            pixel_m=lattice.pixel_m,
            radii_m={suffix: float(p[name]) for suffix, name in context.SCALES.items()},
            scale=lattice.scale_factor(),
            distance_masks={"cold_trap_distance_km": cold} if cold is not None else None,
        )
    for name, values in ctx.items():
        frame[name] = values
    record = {
        "constraints": result.descriptions,
        "lattice_sites": int(passed.size),
        "passing_each": result.counts(),
        "passing_all": int(passed.sum()),
        "lattice": {"spacing_m": lattice.spacing_m, "step_px": lattice.step, "shape": list(lattice.shape)},
        "notes": notes,
        "scale_factor": lattice.scale_factor(),
        "_lattice": lattice,
        "_traverse_field": traverse_field,
    }
    frame.attrs["feature_units"] = {k: v[0] for k, v in FEATURES.items() if k in frame}
    return frame, record


def _quantile_and_min(layer: xr.DataArray, q: float, bins: int = 4096) -> tuple[float, float]:
    """The ``q`` quantile (to 1/``bins`` of the value range, rounded down) and the minimum of a layer.

    Streams: min and max, then a histogram of the finite values, chunk by chunk.
    """
    data = as_dask(layer).astype("float64")
    lo, hi = (float(v) for v in dask.compute(da.nanmin(data), da.nanmax(data)))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ConfigError(f"{layer.name}: no finite value on the analysis grid")
    if hi == lo:
        return lo, lo
    counts, edges = da.histogram(data, bins=bins, range=(lo, hi))  # NaN falls outside the range
    counts = counts.compute()  # once: its sum from the same pass
    cum = np.cumsum(counts) / max(1, int(counts.sum()))
    return float(edges[int(np.searchsorted(cum, q, side="right"))]), lo


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The learned model's inputs: feature columns with a finite value, each unlike every earlier one.

    A column equal to an earlier one carries no information of its own (PSR distance and
    cold-trap distance when the cold traps are the PSRs; slope mean and p95 when the site
    is one pixel) and would split that feature's importance in two.
    """
    cols: list[str] = []
    for c in FEATURES:
        if c not in frame:
            continue
        v = frame[c].to_numpy(dtype="float64")
        if np.isfinite(v).any() and not any(
            np.array_equal(v, frame[o].to_numpy(dtype="float64"), equal_nan=True) for o in cols
        ):
            cols.append(c)
    return cols


@dataclass
class Ranking:
    """The ranked site table, the evaluation record and the learned model (if any)."""

    sites: pd.DataFrame
    record: dict[str, Any]
    model: Any = None
    #: one row per place (:func:`prospect.sites.distinct.place_table`)
    places: pd.DataFrame | None = None
    #: the least-cost traverses of the distinct top sites (a GeoDataFrame of LineStrings)
    traverses: Any = None
    #: power at the distinct top sites, a row per mast height (a GeoDataFrame of points)
    power: Any = None
    #: per distinct top site: the time series behind ``power`` (for the report's plot)
    power_series: dict[str, Any] | None = None


def rank_sites(
    inputs: SiteInputs,
    config: Any = None,
    *,
    seed: int = 0,
    learned: bool = True,
    evaluate: bool = True,
    power: bool = True,
    timer: PartTimer | None = None,
) -> Ranking:
    """Candidates, features, the three scorings, the Monte Carlo and the explanations (see module doc),
    then the places, the distinct ranking and, with ``power`` (polar grids), the power at the best
    distinct sites (:mod:`prospect.sites.power`).

    ``timer`` (a :class:`PartTimer`) collects the seconds of each part (and prints them with progress).
    """
    from prospect.sites import learn  # scikit-learn is loaded only when a ranking is made

    t = timer or PartTimer()
    p = rank_parameters(config)
    n_mc, n_dem, k = _int_param(p, "mc_samples"), _int_param(p, "dem_draws"), _int_param(p, "top_k")
    frame, record = site_features(inputs, p, t)
    lattice: Lattice = record.pop("_lattice")
    traverse_field = record.pop("_traverse_field")
    with t.part("multi-criteria scores"):
        crits, dropped = mcda.criteria(p, frame)
        frame["score_weighted_sum"] = mcda.weighted_sum(frame, crits)
        frame["score_topsis"] = mcda.topsis(frame, crits)
        contrib = mcda.contributions(frame, crits)
        for c in contrib.columns:
            frame[f"contrib_{c}"] = contrib[c].to_numpy()
        cols = feature_columns(frame)
    use_labels = learned and inputs.regions is not None
    share = float(p["learned_share"]) if use_labels else 0.0
    ens = None
    rng = np.random.default_rng(seed)
    if use_labels:
        region = learn.region_membership(frame["lon"].to_numpy(), frame["lat"].to_numpy(), inputs.regions)
        frame["expert_region"] = region
        blocks = learn.spatial_blocks(frame["x"].to_numpy(), frame["y"].to_numpy(), p["spatial_block_m"])
        variants = _learned_variants(p)
        estimator = learn.check_estimator(p["learned_estimator"])
        all_cols = cols
        criteria_names = [c.name for c in crits]
        cols = _model_columns(all_cols, _feature_set(p), criteria_names)
        fit_kw: dict[str, Any] = {
            "members": _int_param(p, "ensemble_members"),
            "estimator": estimator,
            "background_per_positive": _int_param(p, "background_per_positive"),
            "seed": seed,
            "directions": learned_directions(p, all_cols),
        }
        with t.part("learned model fit"):
            ens = learn.fit_pu(frame[cols], region >= 0, blocks, **fit_kw)
            frame["score_learned"] = learn.predict(ens, frame[cols])[0]
        with t.part("learned contributions"):
            base, terms = learn.contributions(ens, frame[cols])
            frame["learned_base"] = base
            for c in cols:
                frame[f"learned_contrib_{c}"] = terms[c].to_numpy()
        with t.part("learned model evaluation"):
            record["learned"] = (
                _evaluate(
                    frame,
                    cols,
                    region,
                    blocks,
                    p,
                    fit_kw,
                    ens,
                    all_cols=all_cols,
                    variants=variants,
                    criteria=criteria_names,
                )
                if evaluate
                else {}
            )
    combined = (1.0 - share) * frame["score_weighted_sum"].to_numpy()
    if share > 0:
        combined = combined + share * mcda.minmax(frame["score_learned"].to_numpy())
    frame["score"] = combined
    draws = _monte_carlo(inputs, frame, lattice, p, crits, cols, ens, share, n_mc, n_dem, rng, seed, t)
    with t.part("Monte Carlo summary"):
        summary = mcda.summarise_draws(draws, k)
        for c in summary.columns:
            frame[c] = summary[c].to_numpy()
    with t.part("places and distinct ranking"):
        place_record = _places_and_distinct(frame, draws, p, k)
    with t.part("ranks"):
        ids = frame["site_id"].to_numpy()
        frame["rank"] = mcda.ranks(frame["score"].to_numpy(), tiebreak=ids)
        for m in ("weighted_sum", "topsis", "learned"):
            if f"score_{m}" in frame:
                frame[f"rank_{m}"] = mcda.ranks(frame[f"score_{m}"].to_numpy(), tiebreak=ids)
        frame = frame.sort_values("rank", kind="stable").reset_index(drop=True)
    with t.part("explanations"):
        frame["explanation"] = explanations(frame, crits, k)
    record.update(
        criteria=[
            {
                "name": c.name,
                "weight": c.weight,
                "direction": c.direction,
                "source": c.source,
                "status": c.status,
                "unit": FEATURES.get(c.name, ("", ""))[0],
            }
            for c in crits
        ],
        dropped_criteria=dropped,
        learned_share=share,
        seed=seed,
        mc_samples=n_mc,
        dem_draws=n_dem,
        top_k=k,
        features=cols,
        parameters=p.table(),
        site_radius_m=float(p["site_radius_m"]),
        support_m2=frame.attrs.get("support_m2"),
        disc_polygons_top_n=_int_param(p, "disc_polygons_top_n"),
    )
    record["places"] = place_record
    with t.part("place table"):
        place_rows = distinct.place_table(frame, _cell_area_km2(frame, lattice))
    ranking = Ranking(sites=frame, record=record, model=ens, places=place_rows)
    n_paths = _int_param(p, "traverse_sites_top_n")
    if traverse_field is not None and n_paths > 0:
        with t.part("traverses of the distinct sites"):
            best = frame[frame["rank_distinct"] > 0].sort_values("rank_distinct", kind="stable").head(n_paths)
            ranking.traverses = traverse.paths(
                traverse_field, best["row"].to_numpy(), best["col"].to_numpy(), best["site_id"].to_numpy()
            )
            ranking.traverses.insert(1, "rank_distinct", best["rank_distinct"].to_numpy())
            # no passable path: a NULL geometry (an empty LineString breaks GPKG requirement 152)
            ranking.traverses.loc[ranking.traverses.geometry.is_empty, "geometry"] = None
    if power and inputs.grid.crs.is_polar:
        with t.part("power at the distinct sites"):
            _site_power(ranking, inputs, p)
    return ranking


def _site_power(ranking: Ranking, inputs: SiteInputs, p: ParameterSet) -> None:
    """``ranking.power`` (a point per site and mast height) and ``ranking.power_series`` of the
    ``power_sites_top_n`` best distinct sites, and their parameters in the record."""
    import geopandas as gpd
    import shapely

    from prospect.sites.power import power_params, site_power

    table, series = site_power(inputs.dem, ranking.sites, p)
    pp = power_params(p)
    ranking.power = gpd.GeoDataFrame(
        table, geometry=shapely.points(table["x"], table["y"]), crs=inputs.grid.crs.to_pyproj()
    )
    ranking.power_series = series
    ranking.record["power"] = {
        "sites": int(table["site_id"].nunique()),
        "mast_heights_m": list(pp.heights_m),
        "azimuths": pp.n_azimuths,
        "max_distance_m": pp.max_distance_m,
        "span_years": pp.span_years,
        "step_hours": pp.step_hours,
        "load_w": pp.load_w,
        "min_disk_fraction": pp.min_disk_fraction,
        "method": table.attrs.get("method", ""),
        "battery": table.attrs.get("battery", ""),
    }


def _cell_area_km2(frame: pd.DataFrame, lattice: Lattice) -> np.ndarray:
    """Ground area [km2] each site's lattice point stands for: (spacing / k)^2 with the map scale
    factor ``k`` at the site (1 off polar grids)."""
    x, y = frame["x"].to_numpy(), frame["y"].to_numpy()
    k = lunar.polar_scale_factor_xy(x, y) if lattice.grid.crs.is_polar else np.ones(len(frame))
    return (lattice.spacing_m / k) ** 2 / 1e6


def _places_and_distinct(frame: pd.DataFrame, draws: np.ndarray, p: ParameterSet, k: int) -> dict[str, Any]:
    """Columns ``place_id``, ``rank_distinct`` and ``p_top<k>_distinct`` of ``frame`` (in its
    current row order, aligned with ``draws``), by the rules of :mod:`prospect.sites.distinct`;
    returns the record of the rules and their parameters."""
    lon, lat = frame["lon"].to_numpy(), frame["lat"].to_numpy()
    # ties go to the smaller site id; the ids' sort positions order the same way and sort as
    # integers (a lexsort on 200k id strings per Monte Carlo draw is ~10x slower)
    ids = np.unique(frame["site_id"].to_numpy(), return_inverse=True)[1]
    spacing = float(frame.attrs.get("spacing_m", p["candidate_spacing_m"]))
    link_m = float(p["place_link_spacings"]) * spacing
    radius = float(p["place_max_radius_m"])
    sep = float(p["distinct_separation_m"])
    order = distinct.score_order(frame["score"].to_numpy(), ids)
    place = distinct.places(lon, lat, order, link_m=link_m, max_radius_m=radius)
    frame["place_id"] = place
    frame["rank_distinct"] = distinct.distinct_ranks(lon, lat, order, place, separation_m=sep)
    frame[f"p_top{k}_distinct"] = distinct.p_top_distinct(draws, lon, lat, place, ids, separation_m=sep, k=k)
    return {
        "rule": (
            f"places: passing sites linked within {link_m:g} m ({p['place_link_spacings']:g} lattice spacings) "
            f"form connected areas, cut into places of at most {radius:g} m around their best site; "
            f"distinct ranking: the best site of each place, kept if at least {sep:g} m from every better kept site"
        ),
        "link_m": link_m,
        "max_radius_m": radius,
        "separation_m": sep,
        "n_places": int(place.max(initial=0)),
        "n_distinct": int((frame["rank_distinct"] > 0).sum()),
        "top_n": _int_param(p, "distinct_top_n"),
    }


def _learned_variants(p: ParameterSet) -> list[str]:
    """``learned_variants``, each checked (:func:`prospect.sites.learn.variant`); one-line ConfigError otherwise."""
    from prospect.sites import learn

    names = p["learned_variants"]
    if not isinstance(names, list) or not names:
        raise ConfigError(f"sites.learned_variants: must be a non-empty list of model variants, not {names!r}")
    for name in names:
        learn.variant(name, "sites.learned_variants")
    if len(set(names)) != len(names):
        raise ConfigError(f"sites.learned_variants: lists a variant twice ({names})")
    return list(names)


def _feature_set(p: ParameterSet) -> str:
    """``learned_features``, checked: one of :data:`prospect.sites.learn.FEATURE_SETS`."""
    from prospect.sites import learn

    v = p["learned_features"]
    if v not in learn.FEATURE_SETS:
        raise ConfigError(f"sites.learned_features: must be one of {list(learn.FEATURE_SETS)}, not {v!r}")
    return str(v)


def _model_columns(cols: list[str], features: str, criteria: list[str]) -> list[str]:
    """The learned model's inputs among ``cols`` for a feature set (:data:`prospect.sites.learn.FEATURE_SETS`):
    ``all`` every site feature, ``criteria`` those of the multi-criteria ``criteria``; with
    ``+multiscale`` also the context features (:data:`CONTEXT_FEATURES`)."""
    keep = [c for c in cols if c not in CONTEXT_FEATURES and (not features.startswith("criteria") or c in criteria)]
    if features.endswith("+multiscale"):
        keep += [c for c in cols if c in CONTEXT_FEATURES]
    return keep


def learned_directions(p: ParameterSet, cols: list[str]) -> dict[str, int]:
    """Per feature +1 (``direction_<feature>: benefit``), -1 (``cost``) or 0 (no entry): the
    directions of the monotone models. A context feature ``<base>_near`` / ``<base>_region``
    takes the direction of its base feature."""
    out: dict[str, int] = {}
    for c in cols:
        base = c.rsplit("_", 1)[0] if c in CONTEXT_FEATURES else c
        key = f"direction_{c}" if f"direction_{c}" in p else f"direction_{base}"
        entry = p.params.get(key)
        d = entry.value if entry is not None else None
        out[c] = 1 if d == "benefit" else -1 if d == "cost" else 0
    return out


def _evaluate(
    frame: pd.DataFrame,
    cols: list[str],
    region: np.ndarray,
    blocks: np.ndarray,
    p: ParameterSet,
    fit_kw: Mapping[str, Any],
    ens: Any,
    *,
    all_cols: list[str] | None = None,
    variants: Sequence[str] = (),
    criteria: Sequence[str] = (),
) -> dict[str, Any]:
    """Spatial CV, leave-one-region-out (learned vs the multi-criteria baselines), the model
    variants' leave-one-region-out (``variants``: :func:`prospect.sites.learn.variant` names,
    on ``all_cols`` or their base part) and importances."""
    from prospect.sites import learn  # scikit-learn is loaded only when a ranking is made

    top = float(p["recall_top_fraction"])
    out: dict[str, Any] = {"spatial_cv": learn.spatial_cv(frame[cols], region >= 0, blocks, **fit_kw)}
    if len(np.unique(region[region >= 0])) >= 2:
        xy = {"x": frame["x"].to_numpy(), "y": frame["y"].to_numpy()}

        def loro_of(columns: list[str], estimator: str) -> pd.DataFrame:
            return learn.leave_one_region_out(
                frame[columns],
                region,
                xy["x"],
                xy["y"],
                buffer_m=p["spatial_block_m"],
                top_fraction=top,
                **{**fit_kw, "estimator": estimator},
            )

        loro = loro_of(cols, fit_kw["estimator"])
        out["leave_one_region_out"] = json.loads(loro.to_json(orient="records"))
        out["loro_recall"] = float(loro["recalled"].mean())
        out["loro_median_best_percentile"] = float(loro["best_percentile"].median())
        rows: list[tuple[str, str | None, str | None, pd.DataFrame]] = []
        for m in ("weighted_sum", "topsis"):
            base = learn.region_recall(frame[f"score_{m}"].to_numpy(), region, top)
            out[f"baseline_{m}"] = json.loads(base.to_json(orient="records"))
            out[f"baseline_{m}_recall"] = float(base["recalled"].mean())
            out[f"baseline_{m}_median_best_percentile"] = float(base["best_percentile"].median())
            rows.append((m, None, None, base))
        max_sites = _int_param(p, "learned_variants_max_sites")
        if len(frame) > max_sites and variants:
            out["variants_skipped"] = (
                f"{len(variants)} learned_variants not evaluated: {len(frame)} candidate sites > "
                f"learned_variants_max_sites ({max_sites})"
            )
            variants = ()
        for name in variants:
            estimator, features = learn.variant(name)
            columns = _model_columns(all_cols or cols, features, list(criteria))
            same = estimator == fit_kw["estimator"] and columns == list(cols)
            rows.append((name, estimator, features, loro if same else loro_of(columns, estimator)))
        out["variants"] = [
            {
                "variant": name,
                "estimator": estimator,
                "features": features,
                "learned": estimator is not None,
                "default": estimator == fit_kw["estimator"]
                and _model_columns(all_cols or cols, str(features), list(criteria)) == list(cols),
                "recall": float(table["recalled"].mean()),
                "median_best_percentile": float(table["best_percentile"].median()),
                "best_percentile": [float(v) for v in table["best_percentile"]],
                "regions": [int(v) for v in table["region"]],
            }
            for name, estimator, features, table in rows
        ]
    imp = learn.permutation_importances(ens, frame[cols], region >= 0, seed=fit_kw["seed"])
    out["permutation_importances"] = json.loads(imp.to_json(orient="records"))
    out["positives"] = int((region >= 0).sum())
    out["regions_with_candidates"] = int(len(np.unique(region[region >= 0])))
    out["estimator"] = fit_kw["estimator"]
    out["features"] = list(cols)
    return out


def _monte_carlo(
    inputs: SiteInputs,
    frame: pd.DataFrame,
    lattice: Lattice,
    p: ParameterSet,
    crits: list,
    cols: list[str],
    ens: Any,
    share: float,
    n: int,
    n_dem: int,
    rng: np.random.Generator,
    seed: int,
    timer: PartTimer | None = None,
) -> np.ndarray:
    """``(n, sites)`` combined-score draws over weights x DEM noise x ensemble members."""
    from prospect.sites import learn  # scikit-learn is loaded only when a ranking is made

    weights = mcda.dirichlet_weights(crits, n, rng, p["mc_weight_concentration"])
    where = (
        np.searchsorted(lattice.rows, frame["row"].to_numpy()),
        np.searchsorted(lattice.cols, frame["col"].to_numpy()),
    )
    t = timer or PartTimer()
    # the terrain features under each DEM realisation (only those columns are kept; the site
    # table is rebuilt from them per realisation, not held n_dem times)
    realisations: list[dict[str, np.ndarray]] = []
    for d in range(n_dem):
        with t.part("Monte Carlo DEM draws"):
            stats, _ = terrain_stats(
                _noisy_dem(inputs.dem, p["dem_noise_m"], seed * 1000 + d + 1), lattice, p["site_radius_m"]
            )
            realisations.append({c: v[where] for c, v in stats.items()})
    realisations = realisations or [{}]
    draws = np.empty((n, len(frame)))
    member = np.arange(n) % (len(ens.members) if ens is not None else 1)
    with t.part("Monte Carlo scores"):
        for i_table, columns in enumerate(realisations):
            idx = np.flatnonzero(np.arange(n) % len(realisations) == i_table)
            if idx.size == 0:
                continue
            table = frame.assign(**columns) if columns else frame
            draws[idx] = (1.0 - share) * np.atleast_2d(mcda.weighted_sum(table, crits, weights[idx]))
            if share > 0:
                draws[idx] += share * mcda.minmax(learn.predict(ens, table[cols])[1][member[idx]], axis=-1)
    return draws


def finite_or_none(v: Any) -> float | None:
    """``v`` as a finite float, else None."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


#: (column, text, scale, format) of the values an explanation quotes, in order.
_QUOTED = (
    ("illumination_fraction", "{} % illumination", 100.0, ".0f"),
    ("slope_mean_deg", "{} deg slope", 1.0, ".1f"),
    ("earth_visibility_fraction", "Earth visible {} %", 100.0, ".0f"),
    ("longest_darkness_h", "longest night {} h", 1.0, ".0f"),
    ("psr_distance_km", "PSR {} km away", 1.0, ".1f"),
)


#: rows turned into Python records at a time for :func:`explanations`
_EXPLAIN_BLOCK = 10_000


def explanations(frame: pd.DataFrame, crits: list, k: int) -> list[str]:
    """:func:`explain` of every row of ``frame``, a block of rows at a time (records of all 199k
    passing sites of the 7584^2 benchmark at once took about 0.4 GB)."""
    out: list[str] = []
    reasons = [c for c in frame.columns if str(c).startswith(_LEARNED_CONTRIB)]
    for j0 in range(0, len(frame), _EXPLAIN_BLOCK):
        out.extend(
            explain(row, crits, k, learned_columns=reasons)
            for row in frame.iloc[j0 : j0 + _EXPLAIN_BLOCK].to_dict("records")
        )
    return out


#: prefix of the learned score's per-feature terms in the site table (``learned_base`` + terms = ``score_learned``)
_LEARNED_CONTRIB = "learned_contrib_"


def explain(row: Mapping[str, Any], crits: list, k: int, learned_columns: Sequence[str] | None = None) -> str:
    """One line: rank, score interval and the values and criteria behind it, and the two
    features that move the learned score (log-odds) most, with their signed terms.
    ``learned_columns``: the ``learned_contrib_*`` keys of ``row`` (found in ``row`` when None)."""
    parts = []
    for col, text, scale, spec in _QUOTED:
        v = finite_or_none(row.get(col))
        if v is not None:
            parts.append(text.format(format(v * scale, spec)))
    name, dist = row.get("nearest_cold_trap"), finite_or_none(row.get("nearest_cold_trap_km"))
    if isinstance(name, str) and name and dist is not None:
        cost = finite_or_none(row.get("traverse_cost_km"))
        parts.append(
            f"{dist:.0f} km from the {name} cold trap"
            + (f" (traverse {cost:.0f} flat-km to the nearest cold trap)" if cost is not None else "")
        )
    top = sorted(((float(row.get(f"contrib_{c.name}", 0.0)), c.name) for c in crits), reverse=True)[:2]
    drivers = ", ".join(f"{n} +{v:.2f}" for v, n in top if v > 0)
    learned = finite_or_none(row.get("score_learned"))
    head = (
        f"ranked {int(row['rank'])}: score {row['score']:.2f} (90 % interval {row['score_p05']:.2f}-"
        f"{row['score_p95']:.2f}, P(top {k}) {row[f'p_top{k}']:.0%})"
    )
    tail = f"; strongest criteria {drivers}" if drivers else ""
    if learned is not None:
        keys = learned_columns
        if keys is None:  # row.keys(): a pd.Series row iterates over its values
            keys = [c for c in row.keys() if str(c).startswith(_LEARNED_CONTRIB)]  # noqa: SIM118
        terms = [(finite_or_none(row.get(c)), str(c)[len(_LEARNED_CONTRIB) :]) for c in keys]
        strongest = sorted(((v, n) for v, n in terms if v is not None and v != 0), key=lambda t: (-abs(t[0]), t[1]))[:2]
        reasons = ", ".join(f"{n} {v:+.2f}" for v, n in strongest)
        tail += f"; learned score {learned:+.2f} log-odds" + (f" (learned: {reasons})" if reasons else "")
    return f"{head}: {', '.join(parts)}{tail}"


# --- I/O edge ---------------------------------------------------------------------------------


def site_geodataframes(
    ranking: Ranking, grid: AnalysisGrid, radius_m: float, scale: float, top_n: int | None = None
) -> tuple[Any, Any]:
    """The ranked sites as points and the candidate discs of the ``top_n`` best (all when None) as polygons.

    The site table is in rank order, so the discs are its first ``top_n`` rows (grid CRS).
    """
    import geopandas as gpd
    import shapely

    df = ranking.sites.drop(columns=["row", "col"])
    crs = grid.crs.to_pyproj()
    points = gpd.GeoDataFrame(df, geometry=shapely.points(df["x"], df["y"]), crs=crs)
    best = df if top_n is None else df.iloc[: max(0, int(top_n))]
    discs = shapely.buffer(shapely.points(best["x"], best["y"]), radius_m * scale, quad_segs=16)
    polys = gpd.GeoDataFrame(best[["site_id", "rank", "score", "score_p05", "score_p95"]], geometry=discs, crs=crs)
    return points, polys


def place_geodataframe(ranking: Ranking, grid: AnalysisGrid) -> Any:
    """The places as polygons (grid CRS): the convex hull of each place's site points grown by
    half the lattice spacing, with the :func:`prospect.sites.distinct.place_table` columns;
    None when the ranking has no places."""
    import geopandas as gpd
    import shapely

    if ranking.places is None:
        return None
    sites = ranking.sites
    order = np.argsort(sites["place_id"].to_numpy(), kind="stable")
    place = sites["place_id"].to_numpy()[order]
    coords = np.column_stack([sites["x"].to_numpy()[order], sites["y"].to_numpy()[order]])
    _, starts = np.unique(place, return_index=True)
    indices = np.repeat(np.arange(starts.size), np.diff(np.append(starts, place.size)))
    hulls = shapely.convex_hull(shapely.multipoints(coords, indices=indices))
    half = 0.5 * float(sites.attrs.get("spacing_m", ranking.record.get("lattice", {}).get("spacing_m", 0.0)))
    shapes = shapely.buffer(hulls, half, quad_segs=4) if half > 0 else hulls
    by_id = dict(zip(np.unique(place), shapes, strict=True))
    table = ranking.places
    geometry = [by_id[i] for i in table["place_id"].to_numpy()]
    return gpd.GeoDataFrame(table.copy(), geometry=geometry, crs=grid.crs.to_pyproj())
