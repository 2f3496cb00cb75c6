"""Water-ice stability and favourability: a synthetic south-polar scene with known cold traps,
the thermal proxy, scores, missing layers, Monte Carlo, writing, and the real LOLA data.

"Favourable" in these tests means ``ice_favourability >= 0.5`` (FAVOURABLE). With the
default weights (thermal 0.4, psr 0.35, hydrogen 0.15, pole-facing 0.1) a pixel that is
neither surface-stable nor in a PSR scores at most 0.5 x 0.4 + 0.15 + 0.1 = 0.45 (with
the PSR layer as the thermal evidence the psr score is dropped and that bound is 0.69;
the synthetic scene stays below 0.5 there too).
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import xarray as xr

from prospect import lunar
from prospect.config import load
from prospect.errors import ConfigError, GridError, OutputPathError, UnitsError
from prospect.grid import AnalysisGrid
from prospect.io.readers import open_product
from prospect.io.vectors import open_vector
from prospect.io.writers import write_geotiff
from prospect.pipeline.stages import run_ice, write_ice
from prospect.resources import ice
from prospect.resources.ice import (
    PROXY_LABEL,
    IceLayers,
    ice_favourability,
    ice_monte_carlo,
    ice_stability,
    pole_facing_score,
    thermal_proxy_k,
    weh_wt_pct,
)
from prospect.resources.masks import polygon_fraction
from prospect.terrain import aspect_deg, slope_deg

FAVOURABLE = 0.5

#: (x, y, radius) of the cold traps [m], south polar stereographic
TRAPS = ((-40e3, 30e3, 14e3), (50e3, -20e3, 9e3), (5e3, -75e3, 11e3))


def _on(grid: AnalysisGrid, values: np.ndarray, units: str | None, name: str) -> xr.DataArray:
    arr = grid.template().copy(data=np.asarray(values, dtype="float32"))
    arr.name = name
    if units is not None:
        arr.attrs["units"] = units
    return arr


@dataclasses.dataclass
class Scene:
    grid: AnalysisGrid
    layers: IceLayers
    trap: np.ndarray
    illumination: np.ndarray


def _scene(resolution_m: float = 2000.0) -> Scene:
    """Cap to 85 S with three cold-trap discs (PSR, never lit, Tmax 60-90 K) in sunlit ground (Tmax > 200 K)."""
    grid = AnalysisGrid.polar_cap("south", -85.0, resolution_m=resolution_m)
    xx, yy = np.meshgrid(grid.x, grid.y)
    trap = np.zeros(grid.shape, bool)
    dem = np.zeros(grid.shape)
    tmax = 220.0 + 60.0 * np.hypot(xx, yy) / 150e3
    for cx, cy, r in TRAPS:
        d = np.hypot(xx - cx, yy - cy)
        trap |= d <= r
        dem -= 2000.0 * np.clip(1.0 - (d / (2.0 * r)) ** 2, 0.0, None)  # bowls: walls face every way
        tmax = np.where(d <= r, 60.0 + 30.0 * d / r, tmax)
    illum = np.where(trap, 0.0, 0.25 + 0.25 * (1.0 + np.sin(xx / 20e3) * np.cos(yy / 25e3)))
    hydrogen = 50.0 + sum(1600.0 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 20e3**2)) for cx, cy, _ in TRAPS)
    dem_da = _on(grid, dem, "m", "dem")
    layers = IceLayers(
        tmax_k=_on(grid, tmax, "K", "tmax"),
        psr=_on(grid, trap, "1", "psr"),
        illumination_fraction=_on(grid, illum, "1", "illumination_fraction"),
        hydrogen_ppm=_on(grid, hydrogen, "ppm", "hydrogen"),
        slope_deg=slope_deg(dem_da),
        aspect_deg=aspect_deg(dem_da),
    )
    return Scene(grid, layers, trap, illum)


@pytest.fixture(scope="module")
def scene() -> Scene:
    return _scene()


def _check_cold_traps(ds: xr.Dataset, scene: Scene) -> None:
    cls = ds["ice_stability_class"].values
    fav = ds["ice_favourability"].values
    sunlit = scene.illumination > 0
    np.testing.assert_array_equal(cls == ice.CLASS_SURFACE, scene.trap)  # the surface class IS the cold traps
    assert np.all(fav[scene.trap] >= FAVOURABLE)
    assert not np.any(cls[sunlit] == ice.CLASS_SURFACE)
    assert np.nanmax(fav[sunlit]) < FAVOURABLE  # nothing sunlit is favourable
    valid = np.isfinite(fav)
    np.testing.assert_array_equal((fav >= FAVOURABLE)[valid], scene.trap[valid])


# --- the synthetic south-polar scene ------------------------------------------------------


def test_cold_traps_with_measured_tmax(scene):
    ds = ice_favourability(scene.layers)
    _check_cold_traps(ds, scene)
    assert ds.attrs["layers_used"] == ["thermal", "psr", "hydrogen", "pole_facing"]
    assert ds.attrs["layers_missing"] == []
    assert ds.attrs["thermal_source"].startswith("measured: tmax_k")
    assert "110 K" in ds["ice_stability_class"].attrs["surface_class"]
    for name in ("score_thermal", "score_psr", "score_hydrogen", "score_pole_facing", "coverage"):
        assert ds[name].attrs["units"] == "1"
    # the slope stencil leaves the raster edge NaN: favourability NaN there, coverage says why
    fav, cov = ds["ice_favourability"].values, ds["coverage"].values
    assert np.isnan(fav[0]).all() and np.allclose(cov[0], 0.9)
    assert np.allclose(cov[np.isfinite(fav)], 1.0)


def test_cold_traps_with_the_thermal_proxy_only(scene):
    layers = dataclasses.replace(scene.layers, tmax_k=None)
    ds = ice_favourability(layers)
    _check_cold_traps(ds, scene)
    assert ds.attrs["thermal_source"] == PROXY_LABEL
    assert ds["thermal_proxy_k"].attrs["units"] == "K"
    assert "PROXY" in ds["thermal_proxy_k"].attrs["long_name"]
    assert ds["ice_favourability"].attrs["thermal_source"] == PROXY_LABEL
    assert "proxy" in ds["ice_stability_class"].attrs["shallow_class"]
    # the shallow class (proxy < 110 K) only ever falls on dimly lit ground near the pole
    cls = ds["ice_stability_class"].values
    proxy = ds["thermal_proxy_k"].values
    assert np.all(proxy[cls == ice.CLASS_SHALLOW] < 110.0)
    assert np.all(proxy[(cls == ice.CLASS_NOT_STABLE)] >= 110.0)


def test_cold_traps_from_illumination_alone(scene):
    layers = IceLayers(illumination_fraction=scene.layers.illumination_fraction)
    cls = ice_stability(layers)
    np.testing.assert_array_equal(cls.values == ice.CLASS_SURFACE, scene.trap)
    assert "never lit" in cls.attrs["surface_class"]
    assert cls.dtype == np.uint8


# --- the cold-trap latitude limit; no layer counted twice ----------------------------------------

#: (lat, lon) of the two synthetic PSR discs of the wide cap: one equatorward of the 80 deg limit, one near the pole
WARM_PSR, COLD_PSR = (-75.0, 0.0), (-88.0, 90.0)


@dataclasses.dataclass
class Cap:
    grid: AnalysisGrid
    warm: np.ndarray  # the PSR disc at 75 S
    cold: np.ndarray  # the PSR disc at 88 S
    psr: xr.DataArray
    illumination: xr.DataArray


@pytest.fixture(scope="module")
def cap() -> Cap:
    """A cap to 73 S with two 12 km PSR discs (never lit), at 75 S and at 88 S, in ground lit 30 % of the time."""
    grid = AnalysisGrid.polar_cap("south", -73.0, resolution_m=4000.0)
    xx, yy = np.meshgrid(grid.x, grid.y)
    discs = []
    for lat, lon in (WARM_PSR, COLD_PSR):
        x, y = lunar.lonlat_to_xy(grid.crs, np.array([lon]), np.array([lat]))
        discs.append(np.hypot(xx - x[0], yy - y[0]) <= 12e3)
    warm, cold = discs
    shadow = warm | cold
    return Cap(
        grid,
        warm,
        cold,
        _on(grid, shadow, "1", "psr"),
        _on(grid, np.where(shadow, 0.0, 0.3), "1", "illumination_fraction"),
    )


def test_psr_equatorward_of_the_cold_trap_limit_is_not_surface_stable(cap):
    """Without a temperature a PSR at 75 S is class 3 (shadowed, likely too warm); one at 88 S is surface-stable."""
    for layers in (IceLayers(psr=cap.psr), IceLayers(illumination_fraction=cap.illumination)):
        cls = ice_stability(layers).values
        assert (cls[cap.warm] == ice.CLASS_WARM_SHADOW).all()
        assert (cls[cap.cold] == ice.CLASS_SURFACE).all()
        np.testing.assert_array_equal(cls == ice.CLASS_SURFACE, cap.cold)
        np.testing.assert_array_equal(cls == ice.CLASS_WARM_SHADOW, cap.warm)
    ds = ice_favourability(IceLayers(psr=cap.psr))
    assert "|lat| >= 80 deg" in ds.attrs["surface_class"] and "Hayne et al. 2021" in ds.attrs["surface_class"]
    assert ds.attrs["warm_shadow_class"].startswith("psr >= 0.5 and |lat| < 80 deg")
    attrs = ds["ice_stability_class"].attrs
    assert attrs["flag_values"] == [0, 1, 2, 3] and "shadowed_likely_too_warm" in attrs["flag_meanings"]
    assert "too warm" in attrs["class_names"]["3"]
    # thermal score of the class: below the shallow class, above not stable
    p = load("ice")
    score = ds["score_thermal"].values
    assert np.allclose(score[cap.warm], p["warm_shadow_class_score"])
    assert 0.0 < p["warm_shadow_class_score"] < p["shallow_class_score"]
    assert np.allclose(score[cap.cold], 1.0)
    # the limit is a parameter: at 74 deg the 75 S shadow is a cold trap
    moved = ice_stability(IceLayers(psr=cap.psr), {"ice": {"cold_trap_min_abs_latitude_deg": 74.0}}).values
    assert (moved[cap.warm] == ice.CLASS_SURFACE).all()


def test_a_measured_temperature_needs_no_latitude_limit(cap):
    tmax = _on(cap.grid, np.where(cap.warm | cap.cold, 90.0, 250.0), "K", "tmax")
    cls = ice_stability(IceLayers(tmax_k=tmax, psr=cap.psr, illumination_fraction=cap.illumination)).values
    assert (cls[cap.warm] == ice.CLASS_SURFACE).all() and (cls[cap.cold] == ice.CLASS_SURFACE).all()
    assert ice_stability(IceLayers(tmax_k=tmax)).attrs["warm_shadow_class"].startswith("not used")
    # a measured annual mean that makes the warm shadow shallow-stable decides (class 1); the proxy does not
    tmean = _on(cap.grid, np.where(cap.warm | cap.cold, 80.0, 200.0), "K", "tmean")
    cls = ice_stability(IceLayers(psr=cap.psr, tmean_k=tmean)).values
    assert (cls[cap.warm] == ice.CLASS_SHALLOW).all() and (cls[cap.cold] == ice.CLASS_SURFACE).all()
    ds = ice_favourability(IceLayers(psr=cap.psr, illumination_fraction=cap.illumination))
    assert np.all(ds["thermal_proxy_k"].values[cap.warm] < 110.0)  # the proxy's floor only
    assert (ds["ice_stability_class"].values[cap.warm] == ice.CLASS_WARM_SHADOW).all()


def _scores(ds: xr.Dataset) -> dict[str, np.ndarray]:
    return {k: ds[f"score_{k}"].values for k in ice.SCORE_LAYERS if f"score_{k}" in ds}


def _changed(a: xr.Dataset, b: xr.Dataset) -> set[str]:
    """The scores present in only one of two results, or different between them."""
    sa, sb = _scores(a), _scores(b)
    return {
        k for k in set(sa) | set(sb) if k not in sa or k not in sb or not np.array_equal(sa[k], sb[k], equal_nan=True)
    }


def test_no_layer_counts_twice(scene):
    """Removing the PSR layer changes exactly one score, with or without a temperature layer."""
    xx, yy = np.meshgrid(scene.grid.x, scene.grid.y)
    near = np.zeros(scene.grid.shape, bool)
    for cx, cy, r in TRAPS:
        near |= np.hypot(xx - cx, yy - cy) <= r + 4e3
    # a PSR layer of fractions: 1 in the never-lit traps, 0.6 in a lit rim around them (a coarse pixel's share)
    psr = _on(scene.grid, np.where(scene.trap, 1.0, np.where(near, 0.6, 0.0)), "1", "psr")
    measured = dataclasses.replace(scene.layers, psr=psr)
    proxy = dataclasses.replace(measured, tmax_k=None)
    for layers, what in ((measured, "psr"), (proxy, "thermal")):
        full = ice_favourability(layers)
        without = ice_favourability(dataclasses.replace(layers, psr=None))
        assert _changed(full, without) == {what}, what
        assert full.attrs["input_scores"]["psr"] == what
    # every supplied input feeds exactly one score, and every score is fed
    for layers in (measured, proxy):
        ds = ice_favourability(layers)
        feeds = {k: v for k, v in ds.attrs["input_scores"].items() if k != "lat_deg"}
        assert set(feeds) == set(layers.given()) - set(ds.attrs["inputs_ignored"])
        assert set(feeds.values()) == set(ds.attrs["layers_used"]) <= set(ice.SCORE_LAYERS)
    # the PSR layer as the thermal evidence: no psr score, the weights renormalised over the others
    ds = ice_favourability(proxy)
    w = load("ice")["weights"]
    assert "score_psr" not in ds and "psr" in ds.attrs["scores_dropped"] and "psr" not in ds.attrs["layers_missing"]
    eff = ds.attrs["weights_effective"]
    assert set(eff) == {"thermal", "hydrogen", "pole_facing"} and math.isclose(sum(eff.values()), 1.0)
    assert math.isclose(eff["thermal"], w["thermal"] / (w["thermal"] + w["hydrogen"] + w["pole_facing"]))
    assert ds["ice_favourability"].attrs["scores_dropped"] == ds.attrs["scores_dropped"]
    fav = ds["ice_favourability"].values
    valid = np.isfinite(fav)
    expected = sum(eff[k] * ds[f"score_{k}"].values for k in eff)
    np.testing.assert_allclose(fav[valid], expected[valid], rtol=1e-6, atol=1e-6)
    assert ice_favourability(measured).attrs["scores_dropped"] == {}


def test_thermal_proxy_floor():
    """A never-lit pixel's proxy is the floor; a lit pixel's exceeds its radiative value only slightly."""
    p = load("ice")
    floor = p["thermal_proxy_floor_k"]
    assert floor == 50.0
    lat = np.array([-85.0, -89.0, -75.0])
    assert np.all(thermal_proxy_k(np.zeros(3, "float32"), lat) == np.float32(floor))
    f = np.array([0.3, 0.5, 0.9], dtype="float32")
    radiative = thermal_proxy_k(f, lat, {"ice": {"thermal_proxy_floor_k": 0.0}})
    floored = thermal_proxy_k(f, lat)
    assert np.all(radiative > 100.0)
    assert np.all(floored > radiative) and np.all(floored < radiative * 1.02)  # +1.4 % at 103 K, +0.03 % at 240 K
    np.testing.assert_allclose(floored, (radiative.astype(float) ** 4 + floor**4) ** 0.25, rtol=1e-5)
    assert np.all(thermal_proxy_k(np.zeros(1, "float32"), -85.0, {"ice": {"thermal_proxy_floor_k": 30.0}}) == 30.0)


def test_new_parameters_are_documented_and_drawn():
    p = load("ice")
    expected = {
        "cold_trap_min_abs_latitude_deg": (80.0, "deg", (75.0, 85.0), "S"),
        "thermal_proxy_floor_k": (50.0, "K", (30.0, 70.0), "?"),
        "warm_shadow_class_score": (0.2, "1", (0.1, 0.25), "?"),
    }
    for name, (value, unit, rng, status) in expected.items():
        prm = p.param(name)
        assert (prm.value, prm.unit, tuple(prm.range), prm.status) == (value, unit, rng, status), name
        assert prm.source
    assert "Hayne et al. 2021" in p.param("cold_trap_min_abs_latitude_deg").source
    assert "tens of K" in p.param("thermal_proxy_floor_k").source
    assert p.param("warm_shadow_class_score").range[1] <= p.param("shallow_class_score").range[0]
    ranges = ice._mc_ranges(p)
    draws = ice._draws(p, p.values(), 200, 3)
    for name in expected:
        lo, hi = ranges[name]
        got = [d[name] for d in draws]
        assert lo <= min(got) < max(got) <= hi, name
    assert all(d["warm_shadow_class_score"] <= d["shallow_class_score"] for d in draws)
    # an override above the shallow range is capped at the shallow score of each draw
    q = p.replace(warm_shadow_class_score=0.5, shallow_class_score=0.5)
    assert all(d["warm_shadow_class_score"] <= d["shallow_class_score"] for d in ice._draws(q, q.values(), 50, 3))


def test_monte_carlo_varies_the_latitude_limit(cap):
    mc = ice_monte_carlo(IceLayers(psr=cap.psr), n=16, seed=2)
    varied = mc.attrs["mc_parameters_varied"]
    assert varied["cold_trap_min_abs_latitude_deg"] == [75.0, 85.0] and "thermal_proxy_floor_k" in varied
    p05, p50, p95 = (mc[f"ice_favourability_p{q:02d}"].values for q in (5, 50, 95))
    # the 75 S shadow is a cold trap only in the draws with a limit below its latitude (few): it scores the
    # warm-shadow class score (0.1..0.25) in most draws; the 88 S one is a cold trap in every draw
    assert np.all(p50[cap.warm] <= 0.25) and np.all(p05[cap.warm] >= 0.1) and np.all(p95[cap.warm] > p05[cap.warm])
    assert np.all(p05[cap.cold] == 1.0)


def test_psr_only_says_the_shallow_class_is_not_evaluated(scene):
    ds = ice_favourability(IceLayers(psr=scene.layers.psr))
    assert ds.attrs["shallow_class"].startswith("not evaluated")
    assert ds.attrs["thermal_source"].startswith("proxy: permanent shadow")
    assert set(np.unique(ds["ice_stability_class"].values)) == {0, 2}  # the whole cap is poleward of 85 S
    assert ds.attrs["layers_missing"] == ["hydrogen", "pole_facing"]
    # the PSR layer is the thermal evidence: it feeds the thermal score only, no psr score
    assert ds.attrs["layers_used"] == ["thermal"] and "score_psr" not in ds
    assert set(ds.attrs["scores_dropped"]) == {"psr"} and ds.attrs["input_scores"]["psr"] == "thermal"
    assert ds.attrs["weights_effective"] == {"thermal": 1.0}


def test_depth_to_ice_decides_surface_and_shallow(scene):
    g = scene.grid
    depth = np.full(g.shape, 5.0)
    depth[:10] = 0.0
    depth[10:20] = 0.4
    depth[20:30] = np.nan
    ds = ice_favourability(IceLayers(ice_depth_m=_on(g, depth, "m", "depth")))
    cls = ds["ice_stability_class"].values
    assert (cls[:10] == 2).all() and (cls[10:20] == 1).all() and (cls[20:30] == 255).all() and (cls[30:] == 0).all()
    assert np.isnan(ds["ice_favourability"].values[20:30]).all()


def test_missing_hydrogen_renormalises_and_is_reported(scene):
    full = ice_favourability(scene.layers)
    layers = dataclasses.replace(scene.layers, hydrogen_ppm=None)
    ds = ice_favourability(layers)
    w = load("ice")["weights"]
    assert ds.attrs["layers_missing"] == ["hydrogen"]
    assert "hydrogen" not in ds.attrs["layers_used"] and "score_hydrogen" not in ds
    eff = ds.attrs["weights_effective"]
    assert set(eff) == {"thermal", "psr", "pole_facing"} and math.isclose(sum(eff.values()), 1.0)
    assert math.isclose(eff["thermal"] / eff["psr"], w["thermal"] / w["psr"])
    fav = ds["ice_favourability"].values
    valid = np.isfinite(fav)
    expected = sum(eff[k] * ds[f"score_{k}"].values for k in eff)
    np.testing.assert_allclose(fav[valid], expected[valid], rtol=1e-6, atol=1e-6)
    cov, cov_full = ds["coverage"].values[valid], full["coverage"].values[valid]
    np.testing.assert_allclose(cov, 1.0 - w["hydrogen"] / sum(w.values()), rtol=1e-6)
    assert np.all(cov < cov_full)
    assert ds.attrs["coverage_of_configured_weights"] < 1.0


def test_ignored_inputs_are_reported(scene):
    layers = dataclasses.replace(scene.layers, aspect_deg=None)
    ds = ice_favourability(layers)
    assert "pole_facing" in ds.attrs["layers_missing"]
    assert "aspect_deg" in ds.attrs["inputs_ignored"]["slope_deg"]


# --- the thermal proxy, hydrogen, pole-facing slopes -------------------------------------------


def test_thermal_proxy_hand_value_and_monotone():
    no_floor = {"ice": {"thermal_proxy_floor_k": 0.0}}
    # ((1 - 0.12) 1361 x 0.5 x (2/pi) cos 85deg / (0.95 sigma))^(1/4) = 33.2267 W m-2 -> 157.593 K
    assert math.isclose(float(thermal_proxy_k(np.float32(0.5), -85.0, no_floor)), 157.593, rel_tol=1e-4)
    # at the pole the Sun's mean elevation while up, (2/pi) 1.54 deg = 0.98 deg: 20.484 W m-2 -> 139.644 K
    assert math.isclose(float(thermal_proxy_k(np.float32(1.0), -90.0, no_floor)), 139.644, rel_tol=1e-4)
    # with the 50 K floor: (157.593^4 + 50^4)^(1/4) = 157.991 K, (139.644^4 + 50^4)^(1/4) = 140.214 K
    assert math.isclose(float(thermal_proxy_k(np.float32(0.5), -85.0)), 157.991, rel_tol=1e-4)
    assert math.isclose(float(thermal_proxy_k(np.float32(1.0), -90.0)), 140.214, rel_tol=1e-4)
    f = np.linspace(0.0, 1.0, 101, dtype="float32")
    t = thermal_proxy_k(f, np.full(f.shape, -87.0))
    assert t[0] == 50.0 and np.all(np.diff(t) > 0)
    assert thermal_proxy_k(f, np.full(f.shape, -87.0), no_floor)[0] == 0.0
    # colder towards the pole for the same illumination; warmer for a brighter, less emissive surface
    assert thermal_proxy_k(np.float32(0.5), -89.0) < thermal_proxy_k(np.float32(0.5), -85.0)
    hot = thermal_proxy_k(np.float32(0.5), -85.0, {"ice": {"bond_albedo": 0.07}})
    assert hot > thermal_proxy_k(np.float32(0.5), -85.0)


def test_hydrogen_to_weh():
    assert math.isclose(float(weh_wt_pct(1670.0)), 1.503, rel_tol=1e-12)  # Feldman et al. 2000: 1.5 wt%


def test_pole_facing_score():
    s = pole_facing_score(np.float32(10.0), np.float32(180.0), -85.0)  # south: facing the pole
    assert math.isclose(float(s), 10.0 / 15.0, rel_tol=1e-6)
    assert float(pole_facing_score(np.float32(10.0), np.float32(0.0), -85.0)) == 0.0  # facing the equator
    assert float(pole_facing_score(np.float32(10.0), np.float32(0.0), 85.0)) > 0.0  # north: aspect 0 faces the pole
    assert float(pole_facing_score(np.float32(0.0), np.float32(np.nan), -85.0)) == 0.0  # flat: aspect undefined
    assert float(pole_facing_score(np.float32(40.0), np.float32(180.0), -85.0)) == 1.0  # clipped


def test_pole_facing_walls_of_the_synthetic_bowls(scene):
    ds = ice_favourability(scene.layers)
    aspect = scene.layers.aspect_deg.values
    score = ds["score_pole_facing"].values
    slope = scene.layers.slope_deg.values
    steep = slope > 5.0
    assert np.all(score[steep & (np.abs(aspect - 180.0) < 30.0)] > 0.2)
    assert np.all(score[steep & ((aspect < 60.0) | (aspect > 300.0))] == 0.0)


# --- Monte Carlo ----------------------------------------------------------------------------


def test_monte_carlo_ordered_deterministic_and_seeded(scene):
    mc = ice_monte_carlo(scene.layers, n=32, seed=1)
    p05, p50, p95 = (mc[f"ice_favourability_p{q:02d}"].values for q in (5, 50, 95))
    valid = np.isfinite(p50)
    assert valid.sum() > 0.9 * p50.size
    assert np.all(p05[valid] <= p50[valid]) and np.all(p50[valid] <= p95[valid])
    assert np.all(p95[valid] - p05[valid] >= 0) and np.any(p95[valid] - p05[valid] > 0.01)
    again = ice_monte_carlo(scene.layers, n=32, seed=1)
    other = ice_monte_carlo(scene.layers, n=32, seed=2)
    for name in mc.data_vars:
        np.testing.assert_array_equal(mc[name].values, again[name].values)
    assert not np.array_equal(mc["ice_favourability_p50"].values, other["ice_favourability_p50"].values, equal_nan=True)
    assert mc.attrs["mc_samples"] == 32 and "cold_trap_tmax_k" in mc.attrs["mc_parameters_varied"]
    # the cold traps stay favourable across the parameter ranges
    assert np.all(p05[scene.trap] >= FAVOURABLE)


def test_dask_layers_stay_lazy_and_any_chunking_gives_the_same_maps(scene):
    chunked = IceLayers(**{k: v.chunk(40) for k, v in scene.layers.given().items()})
    ds, dsd = ice_favourability(scene.layers), ice_favourability(chunked)
    for name in ds.data_vars:
        assert dsd[name].chunks is not None, name
        np.testing.assert_array_equal(ds[name].values, dsd[name].values)
    lazy_proxy = ice_favourability(dataclasses.replace(chunked, tmax_k=None))
    np.testing.assert_array_equal(
        lazy_proxy["thermal_proxy_k"].values,
        ice_favourability(dataclasses.replace(scene.layers, tmax_k=None))["thermal_proxy_k"].values,
    )
    mc, mcd = ice_monte_carlo(scene.layers, n=8, seed=4), ice_monte_carlo(chunked, n=8, seed=4)
    assert mcd["ice_favourability_p50"].chunks is not None
    for name in mc.data_vars:
        np.testing.assert_array_equal(mc[name].values, mcd[name].values)


# --- configuration and input checks -----------------------------------------------------------


def test_config_errors(scene):
    with pytest.raises(ConfigError, match="unknown ice parameter 'cold_trap_tmax'"):
        load("ice", {"ice": {"cold_trap_tmax": 100}})
    with pytest.raises(ConfigError, match="below the allowed minimum"):
        load("ice", {"ice": {"weights": {"hydrogen": -0.1}}})
    with pytest.raises(ConfigError, match="unknown key"):
        load("ice", {"ice": {"weights": {"cpr": 0.1}}})
    with pytest.raises(ConfigError):
        ice_favourability(scene.layers, {"ice": {"weights": {"thermal": -1}}})
    p = load("ice")
    for prm in p.params.values():
        assert prm.status in ("S", "3P", "D", "?") and prm.source and prm.unit
    assert p.param("cold_trap_tmax_k").status == "S" and p["cold_trap_tmax_k"] == 110
    assert "Campbell 2012" in p.param("weights").source and "Eke et al. 2014" in p.param("weights").source
    # an override moves the value and the Monte Carlo range with it (the range is drawn about the value in use)
    lo, hi = ice._mc_ranges(p.replace(cold_trap_tmax_k=100))["cold_trap_tmax_k"]
    assert lo < 100.0 < hi and hi < 120.0 and math.isclose(hi - lo, 20.0, rel_tol=0.1)
    # a shadow likely too warm never outscores the shallow class
    with pytest.raises(ConfigError, match=r"warm_shadow_class_score .* must not exceed"):
        ice.ice_parameters({"ice": {"warm_shadow_class_score": 0.6}})
    # the PSR layer as the thermal evidence: its own weight does not count, and the error says why
    zero = {"ice": {"weights": {"thermal": 0.0, "hydrogen": 0.0, "pole_facing": 0.0}}}
    with pytest.raises(ConfigError, match=r"all zero .*the psr score"):
        ice_favourability(IceLayers(psr=scene.layers.psr), zero)


def test_layers_on_another_grid_or_in_wrong_units_are_refused(scene):
    other = AnalysisGrid.polar_cap("south", -85.0, resolution_m=4000.0)
    layers = dataclasses.replace(scene.layers, hydrogen_ppm=_on(other, np.ones(other.shape), "ppm", "h"))
    with pytest.raises(GridError, match="'hydrogen_ppm'"):
        ice_favourability(layers)
    celsius = scene.layers.tmax_k.copy()
    celsius.attrs["units"] = "degC"
    with pytest.raises(UnitsError, match="kelvin"):
        ice_favourability(dataclasses.replace(scene.layers, tmax_k=celsius))
    planar = scene.layers.aspect_deg.copy()
    planar.attrs["azimuth_reference"] = "grid up"
    with pytest.raises(UnitsError, match="true north"):
        ice_favourability(dataclasses.replace(scene.layers, aspect_deg=planar))
    with pytest.raises(ConfigError, match="at least one layer"):
        ice_favourability(IceLayers())


def test_polygon_fraction_of_a_square():
    import geopandas as gpd
    from shapely.geometry import box

    grid = AnalysisGrid.polar_cap("south", -89.0, resolution_m=1000.0)
    crs = lunar.lunar_crs(lunar.IAU_SOUTH_POLAR_STEREOGRAPHIC)
    # 2.5 x 2 pixels: two full columns and a half one
    gdf = gpd.GeoDataFrame(geometry=[box(0.0, 0.0, 2500.0, 2000.0)], crs=crs.to_pyproj())
    frac = polygon_fraction(gdf, grid)
    col, row = (int(round(v)) for v in ~grid.transform @ (0.0, 2000.0))  # the box's top-left corner
    block = frac.values[row : row + 2, col : col + 3]
    np.testing.assert_allclose(block, [[1, 1, 0.5], [1, 1, 0.5]])
    assert math.isclose(float(frac.sum()) * 1e6, 2500.0 * 2000.0)
    np.testing.assert_array_equal(frac.values, polygon_fraction(gdf, grid, chunks=7).values)
    assert frac.attrs["units"] == "1" and frac.dtype == np.float32


# --- writing --------------------------------------------------------------------------------


def test_write_ice_files_units_and_class_nodata(scene, tmp_path):
    ds = ice_favourability(scene.layers).assign(ice_monte_carlo(scene.layers, n=8).data_vars)
    paths = write_ice(ds, tmp_path / "ice", source_info={"psr": "synthetic"})
    for name in (
        "ice_favourability",
        "ice_stability_class",
        "coverage",
        "ice_favourability_p05",
        "ice_favourability_p50",
        "ice_favourability_p95",
        "thermal_proxy_k",
    ):
        assert paths[name].exists(), name
    with rasterio.open(paths["ice_stability_class"]) as src:
        assert src.dtypes[0] == "uint8" and src.nodata == 255
        assert src.tags(1)["units"] == "1"
        np.testing.assert_array_equal(src.read(1), ds["ice_stability_class"].values)
        tags = src.tags()
        assert json.loads(tags["prospect_layers_used"]) == ["thermal", "psr", "hydrogen", "pole_facing"]
        assert tags["prospect_thermal_source"].startswith("measured")
        assert json.loads(tags["prospect_source_info"]) == {"psr": "synthetic"}
        assert "Paige" in tags["prospect_sources"]
    with rasterio.open(paths["thermal_proxy_k"]) as src:
        assert src.units[0] == "K" and PROXY_LABEL in src.tags()["prospect_long_name"]
    with rasterio.open(paths["ice_favourability"]) as src:
        assert src.dtypes[0] == "float32" and src.tags(1)["units"] == "1" and src.crs is not None
        got = src.read(1, masked=True)
        expected = ds["ice_favourability"].values
        np.testing.assert_array_equal(got.mask, np.isnan(expected))
        np.testing.assert_array_equal(got.filled(np.nan), expected)
    record = json.loads(paths["provenance"].read_text())
    assert record["provenance"]["layers_missing"] == [] and record["maps"]["coverage"]["units"] == "1"


def test_write_ice_crash_leaves_no_partial_outputs(scene, tmp_path, monkeypatch):
    ds = ice_favourability(scene.layers)
    out = tmp_path / "ice"
    first = write_ice(ds, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    from prospect.io import writers

    real = writers._write_window
    calls = []

    def crash(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(writers, "_write_window", crash)  # write_ice imports it at call time
    changed = ice_favourability(dataclasses.replace(scene.layers, hydrogen_ppm=None))
    with pytest.raises(RuntimeError, match="disk full"):
        write_ice(changed, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # old outputs intact, no temp files
    fresh = tmp_path / "fresh"
    calls.clear()
    with pytest.raises(RuntimeError):
        write_ice(changed, fresh, cog=True)
    assert list(fresh.iterdir()) == []
    assert first["ice_favourability"].exists()


def test_run_ice_from_files_with_resampling(scene, tmp_path):
    """The stage reads rasters from files (a psr_mask.tif and a coarser hydrogen map) and writes COGs."""
    g = scene.grid
    write_geotiff(scene.layers.psr, tmp_path / "psr_mask.tif", crs=g.crs, transform=g.transform, units="1")
    write_geotiff(
        scene.layers.illumination_fraction,
        tmp_path / "illumination_fraction.tif",
        crs=g.crs,
        transform=g.transform,
        units="1",
    )
    coarse = AnalysisGrid.polar_cap("south", -85.0, resolution_m=8000.0)
    write_geotiff(
        np.full(coarse.shape, 1670.0, dtype="float32"),
        tmp_path / "h.tif",
        crs=coarse.crs,
        transform=coarse.transform,
        units="ppm",
    )
    paths = run_ice(
        tmp_path / "out",
        sources={
            "psr": tmp_path / "psr_mask.tif",
            "illumination": tmp_path / "illumination_fraction.tif",
            "hydrogen": tmp_path / "h.tif",
        },
        params={"samples": 4, "cog": True},
    )
    with rasterio.open(paths["ice_stability_class"]) as src:
        cls = src.read(1)
        assert src.tags()["prospect_thermal_source"] == PROXY_LABEL
    np.testing.assert_array_equal(cls == 2, scene.trap)
    with rasterio.open(paths["score_hydrogen"]) as src:
        h = src.read(1, masked=True)
    assert np.allclose(h.compressed(), 1.0)  # 1670 ppm -> 1.503 wt% >= the 1.5 wt% reference
    assert paths["ice_favourability_p95"].exists()
    with pytest.raises(ConfigError, match="unknown ice parameter"):
        run_ice(tmp_path / "bad", sources={"psr": tmp_path / "psr_mask.tif"}, params={"config": {"ice": {"nope": 1}}})
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ConfigError, match="at least one of"):
        run_ice(tmp_path / "bad", sources={})
    with pytest.raises(OutputPathError, match="parent directory"):
        run_ice(tmp_path / "no" / "such", sources={"psr": tmp_path / "psr_mask.tif"})


# --- real data: the LOLA 1.6 km south polar DEM and the LOLA PSR polygons ------------------------

CRATERS = "cold_trap_craters/crater_list.csv"
DEM = "lola_polar_1600m/lola_dem_south.tif"
PSR = "lola_psr_south_5km2/LOLA_PSR_75S_120M_82S_060M_5KM2_FINAL.shp"


@pytest.mark.shared_data
def test_real_named_cold_traps_score_in_the_top_decile(shared, record_property):
    dem = open_product(shared / DEM)
    grid = AnalysisGrid.from_dataarray(dem)
    psr = polygon_fraction(open_vector(shared / PSR), grid)
    ds = ice_favourability(IceLayers(psr=psr, slope_deg=slope_deg(dem), aspect_deg=aspect_deg(dem)))
    assert ds["ice_favourability"].chunks is not None  # lazy until here
    assert ds.attrs["thermal_source"].startswith("proxy: permanent shadow")
    assert ds.attrs["layers_missing"] == ["hydrogen"]
    fav = ds["ice_favourability"].values
    valid = fav[np.isfinite(fav)]
    p90 = np.percentile(valid, 90)
    craters = pd.read_csv(shared / CRATERS)
    big = craters[(craters["PSR Area (km^2)"] > 100) & craters["PSR centroid Lat (deg)"].notna()]
    assert len(big) >= 10
    x, y = lunar.lonlat_to_xy(
        grid.crs, big["PSR centroid Lon (deg)"].to_numpy(), big["PSR centroid Lat (deg)"].to_numpy()
    )
    inverse = ~grid.transform
    percentiles = {}
    for name, xi, yi in zip(big["Crater Name"], x, y):
        col, row = inverse @ (float(xi), float(yi))
        value = fav[int(math.floor(row)), int(math.floor(col))]
        percentiles[name] = round(100.0 * float(np.mean(valid <= value)), 2)
        assert value >= p90, f"{name}: favourability {value:.3f} below the 90th percentile {p90:.3f}"
    record_property("crater_percentiles", percentiles)
    print("\nPSR-centroid percentiles of the named cold traps:", percentiles)
    assert min(percentiles.values()) >= 90.0


@pytest.mark.shared_data
def test_real_run_ice_stage(shared, tmp_path):
    paths = run_ice(
        tmp_path / "ice", sources={"dem": shared / DEM, "psr": shared / PSR}, params={"samples": 16}, seed=7
    )
    with rasterio.open(paths["ice_favourability"]) as src:
        tags = src.tags()
        fav = src.read(1, masked=True)
        assert src.crs is not None and src.shape == (762, 762)
    info = json.loads(tags["prospect_source_info"])
    assert info["psr"]["source_files"] == [Path(PSR).name] and "source_sha256" in info["dem"]
    assert tags["prospect_mc_samples"] == "16"
    for q in ("05", "50", "95"):
        with rasterio.open(paths[f"ice_favourability_p{q}"]) as src:
            assert src.tags(1)["units"] == "1"
    assert float(fav.min()) >= 0.0 and float(fav.max()) <= 1.0


@pytest.mark.shared_data
def test_cli_ice_real_layers_and_bad_input(shared, tmp_path):
    from tests.conftest import run_cli

    dem = str(shared / "lola_polar_1600m" / "lola_dem_south.tif")
    out = tmp_path / "ice"
    r = run_cli("ice", str(out), "--dem", dem, "--psr", "lola_psr_south_5km2", "--samples", "8")
    assert r.returncode == 0, r.stderr
    with rasterio.open(out / "ice_favourability.tif") as src:
        tags = src.tags()
        # DEM + PSR polygons, no temperature: the PSR layer is the thermal evidence and feeds that score only
        assert src.tags(1)["units"] == "1" and json.loads(tags["prospect_input_scores"])["psr"] == "thermal"
        assert json.loads(tags["prospect_layers_used"]) == ["thermal", "pole_facing"]
        assert "psr" in json.loads(tags["prospect_scores_dropped"])
    # nothing to work with, a bad config key, a missing file: one line, exit 2, no output folder
    for args, text in (
        ((), "at least one of"),
        (("--dem", dem, "--config", str(tmp_path / "c.yaml")), "unknown ice parameter"),
        (("--psr", str(tmp_path / "nope.shp")), "no such file"),
    ):
        (tmp_path / "c.yaml").write_text("ice:\n  cold_trap_tmax: 110\n")
        r = run_cli("ice", str(tmp_path / "o2"), *args)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and text in r.stderr, r.stderr
        assert not (tmp_path / "o2").exists()


def test_water_inventory_from_a_hydrogen_table(scene, tmp_path):
    """A Lunar Prospector-style hydrogen table (ppm H) is rasterised onto the grid, and the water column
    WEH/100 x density x depth integrates to the analytic mass over the map."""
    import gzip

    rows = [
        f"  {a:7.2f}, {a + 10:9.2f}, {b:9.2f}, {b + 10:9.2f}, {1670.0:11.5f}"
        for a in range(-90, 90, 10)
        for b in range(-180, 180, 10)
    ]
    header = [
        "#",
        "# Hydrogen data as described by a test",
        "#",
        f"# This file contains {len(rows)} binned values",
        '# for the Lunar Prospector "Hydrogen_test" dataset.',
        "# These data are in units of ppm.",
        "#",
    ]
    table = tmp_path / "hydrogen.data.gz"
    table.write_bytes(gzip.compress(("\n".join(header + rows) + "\n").encode()))
    g = scene.grid
    write_geotiff(scene.layers.psr, tmp_path / "psr_mask.tif", crs=g.crs, transform=g.transform, units="1")
    paths = run_ice(
        tmp_path / "out", sources={"psr": tmp_path / "psr_mask.tif", "hydrogen": str(table)}, params={"samples": 0}
    )
    with rasterio.open(paths["score_hydrogen"]) as src:
        assert np.allclose(src.read(1, masked=True).compressed(), 1.0)
    record = json.loads(paths["provenance"].read_text())
    inv = record["provenance"]["water_inventory_kg"]
    p = load("ice")
    column = 1670.0 * p["weh_per_ppm_h"] / 100.0 * p["bulk_density_kg_m3"] * p["water_sensing_depth_m"]
    area = float(g.cell_area_m2().sum())
    assert inv["map_kg"] == pytest.approx(column * area, rel=1e-5)
    psr_area = float(g.cell_area_m2().where(scene.trap).sum())
    assert inv["psr_kg"] == pytest.approx(column * psr_area, rel=1e-5)
    assert inv["psr_kg"] <= inv["stable_classes_kg"] <= inv["map_kg"]
    with rasterio.open(paths["water_column_kg_m2"]) as src:
        assert src.tags(1)["units"] == "kg m-2"


def test_water_and_he3_use_one_bulk_density():
    ice_p, he3_p = load("ice").param("bulk_density_kg_m3"), load("he3").param("bulk_density_kg_m3")
    assert (ice_p.value, ice_p.range, ice_p.unit) == (he3_p.value, he3_p.range, he3_p.unit)


def test_input_units_are_read_in_the_layer_vocabulary(scene):
    """Units are spelled as in prospect.layers: a PSR share in percent is converted, an unknown unit refused."""
    percent = scene.layers.psr * 100.0
    percent.attrs = {**scene.layers.psr.attrs, "units": "percent"}
    got = ice_favourability(dataclasses.replace(scene.layers, psr=percent))
    want = ice_favourability(scene.layers)
    np.testing.assert_allclose(got["ice_favourability"].values, want["ice_favourability"].values, atol=1e-6)
    assert got.attrs["units_assumed"] == want.attrs["units_assumed"]
    furlongs = scene.layers.psr.copy()
    furlongs.attrs["units"] = "furlongs"
    with pytest.raises(UnitsError, match="the ice model needs '1'"):
        ice_favourability(dataclasses.replace(scene.layers, psr=furlongs))


def test_a_map_without_one_value_is_a_warning_naming_it(scene, tmp_path):
    ds = ice_favourability(scene.layers)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_ice(ds, tmp_path / "fine")
    empty = ds.assign(
        ice_favourability=ds["ice_favourability"] * np.nan,
        ice_stability_class=xr.full_like(ds["ice_stability_class"], 255),
    )
    with pytest.warns(UserWarning, match="every pixel is nodata") as caught:
        paths = write_ice(empty, tmp_path / "empty")
    message = str(caught[0].message)
    assert len(caught) == 1 and message.startswith(str(tmp_path / "empty"))
    assert "ice_favourability.tif" in message and "ice_stability_class.tif" in message
    assert "coverage.tif" not in message
    assert paths["ice_favourability"].is_file()
