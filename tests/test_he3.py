"""Helium-3: fluence factor, calibration, Monte Carlo, inventory, the real LP Ti map and the CLI."""

from __future__ import annotations

import csv
import json
import math
import warnings

import numpy as np
import pytest
import rasterio
import xarray as xr

from prospect import config, lunar
from prospect.errors import ConfigError, UnitsError
from prospect.grid import AnalysisGrid
from prospect.pipeline.stages import run_he3, write_he3
from prospect.resources import he3
from tests.conftest import run_cli

SPHERE_M2 = 4.0 * math.pi * lunar.MOON_RADIUS_M**2


def _layer(grid: AnalysisGrid, values, units: str = "wt%") -> xr.DataArray:
    data = np.broadcast_to(np.asarray(values, dtype="float32"), grid.shape).copy()
    return grid.wrap(data, name="layer", attrs={"units": units})


# --- fluence ----------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [0.0, 10.0, 30.0, 45.0, 80.0])
def test_fluence_nearside_farside_ratio_is_one_minus_sin_d(d):
    near = he3.fluence_factor(0.0, 0.0, d)
    far = he3.fluence_factor(0.0, 180.0, d)
    assert far == pytest.approx(1.0, abs=1e-12)
    assert near / far == pytest.approx(1.0 - math.sin(math.radians(d)), abs=1e-12)


def test_fluence_falls_as_cos_latitude_and_matches_numerical_integral():
    lat = np.array([0.0, 30.0, 60.0, 85.0])
    for lon in (-170.0, -40.0, 0.0, 25.0, 90.0, 135.0):
        f = he3.fluence_factor(lat, lon, 30.0)
        assert np.allclose(f / f[0], np.cos(np.radians(lat)), atol=1e-12)
        # the definition, integrated numerically over sub-solar longitude outside +-D
        s = np.radians(np.linspace(-180.0, 180.0, 720_001))
        outside = np.abs(s) >= math.radians(30.0)
        integrand = np.where(outside, np.maximum(0.0, np.cos(math.radians(lon) - s)), 0.0)
        absolute = np.trapezoid(integrand, s) / (2.0 * math.pi)
        assert f[0] == pytest.approx(absolute * math.pi, abs=1e-5)  # relative to the unshielded 1/pi


# --- calibration --------------------------------------------------------------------------------


def test_calibration_reproduces_the_anchors_and_is_traceable():
    params = config.load("he3")
    coef = he3.calibrate(params)
    assert coef.a_ppb_per_wt > 0
    for a in coef.anchors:
        f = he3.fluence_factor(a["lat_deg"], a["lon_deg"], coef.magnetotail_half_width_deg)
        assert coef.concentration(a["tio2_wt"], a["maturity"], f) == pytest.approx(a["he3_ppb"], rel=1e-9)
    # every parameter carries unit, source and a status from docs/science.md
    for p in params.params.values():
        assert p.unit and p.source and p.status in config.STATUS


def test_calibration_refuses_anchors_that_cannot_fix_the_model():
    params = config.load("he3")
    anchors = params["calibration_anchors"]
    same_ti = [dict(anchors[0]), {**anchors[1], "tio2_wt": anchors[0]["tio2_wt"]}]
    with pytest.raises(ConfigError, match="two different TiO2"):
        he3.calibrate(params.replace(calibration_anchors=same_ti))
    falling = [
        dict(anchors[0], he3_ppb=2.0, he3_ppb_range=[1.0, 3.0]),
        dict(anchors[1], he3_ppb=20.0, he3_ppb_range=[15.0, 30.0]),
    ]
    with pytest.raises(ConfigError, match="does not rise with TiO2"):
        he3.calibrate(params.replace(calibration_anchors=falling))


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="unknown he3 parameter 'bulk_densty'"):
        config.load("he3", {"he3": {"bulk_densty": 1500}})
    with pytest.raises(ConfigError, match="below the allowed minimum"):
        config.load("he3", {"he3": {"bulk_density_kg_m3": -5}})
    with pytest.raises(ConfigError, match="unknown section"):
        config.load("he3", {"helium": {}})


@pytest.mark.shared_data
def test_configured_soil_values_are_the_apollo_soils_table(shared):
    rows = {
        r["site_column"]: r
        for r in csv.DictReader(
            (shared / "apollo_soils" / "lunar_sourcebook_table7_15_soils.csv").read_text().splitlines()
        )
    }
    p = config.load("he3")
    anchors = {a["name"].split(" (")[0]: a for a in p["calibration_anchors"]}
    assert anchors["Apollo 11"]["tio2_wt"] == float(rows["11"]["TiO2"])
    assert anchors["Apollo 16"]["tio2_wt"] == float(rows["16"]["TiO2"])
    assert p["highland_feo_wt"] == float(rows["16"]["FeO"])
    assert p["highland_tio2_wt"] == float(rows["16"]["TiO2"])
    assert p["mare_tio2_wt"] == float(rows["12"]["TiO2"])
    assert p["mare_feo_wt"] == pytest.approx((float(rows["11"]["FeO"]) + float(rows["12"]["FeO"])) / 2)


# --- maps, Monte Carlo, inventory ----------------------------------------------------------------


def test_inventory_of_a_uniform_moon_is_four_pi_r2_times_column():
    for res in (1.0, 0.25):
        grid = AnalysisGrid.global_geographic(res)
        column = _layer(grid, 2.5e-5, units="kg m-2")
        assert he3.inventory_kg(column) == pytest.approx(SPHERE_M2 * 2.5e-5, rel=1e-6)
        north = _layer(grid, 0.0, units="1")
        north.values[: grid.shape[0] // 2] = 1.0
        assert he3.inventory_kg(column, mask=north) == pytest.approx(SPHERE_M2 * 2.5e-5 / 2, rel=1e-6)


def _synthetic_inputs(feo: bool = True) -> he3.He3Inputs:
    grid = AnalysisGrid.global_geographic(2.0)
    lon, lat = grid.lonlat()
    tio2 = np.where((np.abs(lon - 30) < 15) & (np.abs(lat - 5) < 10), 8.0, 0.5)  # one high-Ti mare
    feo_v = np.where(tio2 > 1, 16.0, 5.0)
    return he3.He3Inputs(_layer(grid, tio2), _layer(grid, feo_v) if feo else None)


def test_maps_thickness_rule_and_monte_carlo_interval():
    params = config.load("he3", {"he3": {"thickness_model": "feo_rule"}})
    res = he3.he3_maps(_synthetic_inputs(), params, samples=64, seed=3)
    m = res.maps
    mare = m["tio2_wt"].values > 1
    assert np.allclose(m["regolith_thickness_m"].values[mare], params["regolith_thickness_mare_m"])
    assert np.allclose(m["regolith_thickness_m"].values[~mare], params["regolith_thickness_highland_m"])
    assert m["he3_ppb"].values[mare].min() > m["he3_ppb"].values[~mare & (np.abs(m.x.values) < 60)].max()
    p05, p50, p95 = (m[f"he3_ppb_{q}"].values for q in ("p05", "p50", "p95"))
    assert np.all(p05 <= p50) and np.all(p50 <= p95) and np.all(p95 - p05 > 0)
    s = res.summary()
    assert s["inventory_kg_p05"] < s["inventory_kg_p50"] < s["inventory_kg_p95"]
    assert s["inventory_kg_p05"] < s["inventory_kg"] < s["inventory_kg_p95"]
    # the column integrates to the inventory
    assert he3.inventory_kg(m["he3_column_kg_m2"]) == pytest.approx(res.inventory_kg, rel=1e-5)
    # deterministic for a seed, different for another
    again = he3.he3_maps(_synthetic_inputs(), params, samples=64, seed=3)
    assert np.array_equal(again.maps["he3_ppb_p95"].values, p95)
    assert again.inventory_samples_kg is not None and res.inventory_samples_kg is not None
    assert np.array_equal(again.inventory_samples_kg, res.inventory_samples_kg)
    other = he3.he3_maps(_synthetic_inputs(), params, samples=64, seed=4)
    assert other.inventory_samples_kg is not None
    assert not np.array_equal(other.inventory_samples_kg, res.inventory_samples_kg)
    # without FeO the thickness rule falls back to the TiO2 proxy and says so
    proxy = he3.he3_maps(_synthetic_inputs(feo=False), params)
    assert "proxy" in proxy.maps["he3_ppb"].attrs["mare_rule"]


def test_maturity_lowers_he3_and_units_are_checked():
    params = config.load("he3")
    inputs = _synthetic_inputs()
    grid = inputs.grid
    immature = he3.maturity_index(_layer(grid, 0.35, units="1"), "omat", params)  # above omat_immature: M = 0
    assert float(immature.max()) == 0.0
    low = he3.he3_maps(he3.He3Inputs(inputs.tio2_wt, inputs.feo_wt, immature), params)
    high = he3.he3_maps(inputs, params)
    assert np.all(low.maps["he3_ppb"].values < high.maps["he3_ppb"].values)
    assert "maturity layer" in low.maps["he3_ppb"].attrs["maturity_rule"]
    with pytest.raises(UnitsError, match="expected wt%"):
        he3.He3Inputs(_layer(grid, 1.0, units="ppm"))


def test_block_streaming_equals_one_block(tmp_path):
    params = config.load("he3")
    inputs = _synthetic_inputs()
    summary = write_he3(inputs, tmp_path / "out", params, samples=16, seed=1, block_px=37)
    whole = he3.he3_maps(inputs, params, samples=16, seed=1)
    assert summary["inventory_kg"] == pytest.approx(whole.inventory_kg, rel=1e-9)
    assert summary["inventory_kg_p95"] == pytest.approx(whole.summary()["inventory_kg_p95"], rel=1e-9)
    with rasterio.open(tmp_path / "out" / "he3_ppb_p95.tif") as src:
        assert np.allclose(src.read(1), whole.maps["he3_ppb_p95"].values, rtol=1e-6)
        assert src.tags(1)["units"] == "ppb"
        assert "anchors" in src.tags()["prospect_calibration"]
        assert "IAU_2015" in src.crs.to_wkt() or "Moon" in src.crs.to_wkt()
    saved = json.loads((tmp_path / "out" / "he3_inventory.json").read_text())
    assert saved["inventory_kg"] == summary["inventory_kg"]


# --- the real Lunar Prospector Ti map ----------------------------------------------------------


def _value_at(arr: xr.DataArray, lon: float, lat: float) -> float:
    return float(arr.sel(x=lon, y=lat, method="nearest"))


@pytest.mark.shared_data
def test_global_he3_from_lp_ti_mare_over_highlands_and_apollo11(shared, tmp_path, capsys):
    out = tmp_path / "he3"
    r = run_cli("he3", "lp_grs_ti_5deg", str(out), "--json", "--samples", "100", "--feo", "lp_grs_feo_halfdeg")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    for key in ("inventory_kg", "inventory_kg_p05", "inventory_kg_p95"):
        assert summary[key] > 0
    assert summary["inventory_kg_p05"] < summary["inventory_kg"] < summary["inventory_kg_p95"]
    assert summary["area_m2"] == pytest.approx(SPHERE_M2, rel=1e-6)
    import rioxarray  # noqa: F401

    ppb = xr.open_dataarray(out / "he3_ppb.tif", engine="rasterio").squeeze("band", drop=True)
    tio2 = xr.open_dataarray(out / "tio2_wt.tif", engine="rasterio").squeeze("band", drop=True)
    tranq = _value_at(ppb, 31.4, 8.5)  # Mare Tranquillitatis
    highlands = _value_at(ppb, 5.0, -15.0)  # nearside central highlands
    assert tranq > 2 * highlands
    a11_cell = _value_at(tio2, 23.473, 0.674)
    rows = {
        r["site_column"]: r
        for r in csv.DictReader(
            (shared / "apollo_soils" / "lunar_sourcebook_table7_15_soils.csv").read_text().splitlines()
        )
    }
    ratio = a11_cell / float(rows["11"]["TiO2"])
    # the 5-deg LP cell (~150 km) dilutes the high-Ti soil with its surroundings
    assert 0.3 < ratio < 1.0
    with capsys.disabled():
        print(
            f"\nLP Ti -> He-3: Tranquillitatis {tranq:.1f} ppb, central highlands {highlands:.1f} ppb; Apollo 11 "
            f"cell TiO2 {a11_cell:.2f} wt% vs soil {rows['11']['TiO2']} (ratio {ratio:.2f}); inventory "
            f"{summary['inventory_kg']:.3g} kg [{summary['inventory_kg_p05']:.3g}, {summary['inventory_kg_p95']:.3g}]"
        )


def test_cli_bad_inputs_one_line_exit_2(tmp_path):
    r = run_cli("he3", str(tmp_path / "missing.tif"), str(tmp_path / "o"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no such file" in r.stderr
    assert not (tmp_path / "o").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("he3:\n  magnetotail_half_width_deg: 120\n")
    r = run_cli("he3", "lp_grs_ti_5deg", str(tmp_path / "o"), "--config", str(bad))
    assert r.returncode == 2 and "above the allowed maximum" in r.stderr and "bad.yaml" in r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.shared_data
def test_he3_on_a_polar_analysis_grid_matches_the_global_map(shared, tmp_path):
    """The same model on a south polar stereographic grid (as a site pipeline uses) and on a global
    grid gives the same inventory poleward of 80 S: areas and the area-weighted ingest agree."""
    polar = AnalysisGrid.polar_cap("south", -79.0, resolution_m=5000.0)
    sources = {"tio2": "lp_grs_ti_5deg", "feo": "lp_grs_feo_halfdeg"}
    paths = run_he3(tmp_path / "polar", sources=sources, grid=polar, params={"samples": 0})
    s_polar = json.loads(paths["inventory"].read_text())
    paths = run_he3(tmp_path / "global", sources=sources, params={"samples": 0, "resolution_deg": 0.1})
    glob = json.loads(paths["inventory"].read_text())
    import rioxarray  # noqa: F401

    totals = []
    for out, grid in ((tmp_path / "polar", polar), (tmp_path / "global", AnalysisGrid.global_geographic(0.1))):
        col = xr.open_dataarray(out / "he3_column_kg_m2.tif", engine="rasterio").squeeze("band", drop=True)
        _, lat = grid.lonlat()
        totals.append(he3.inventory_kg(col, mask=grid.wrap((lat < -80).astype("float32"))))
    # 0.1 %: the two grids rasterise the 5 deg Ti table's bins differently at the cap's edge
    assert totals[0] == pytest.approx(totals[1], rel=0.0015), totals
    assert s_polar["inventory_kg"] < glob["inventory_kg"] / 50  # the cap is ~0.8 % of the sphere


def test_inventory_over_a_region_of_polygons():
    """A region given as polygons (here one quadrant in lon/lat) weights each pixel by its covered fraction."""
    import geopandas as gpd
    from shapely.geometry import box

    grid = AnalysisGrid.global_geographic(1.0)
    column = _layer(grid, 1e-5, units="kg m-2")
    quadrant = gpd.GeoDataFrame(
        geometry=[box(0.0, 0.0, 90.0, 90.0)], crs=lunar.lunar_crs(lunar.IAU_GEOGRAPHIC).to_pyproj()
    )
    quadrant.attrs["crs_code"] = "IAU_2015:30100"
    assert he3.inventory_kg(column, region=quadrant) == pytest.approx(SPHERE_M2 * 1e-5 / 8, rel=1e-6)


def test_cli_with_a_tio2_raster_and_wrong_units(tmp_path):
    from prospect.io.writers import write_geotiff

    inputs = _synthetic_inputs(feo=False)
    grid = inputs.grid
    write_geotiff(inputs.tio2_wt, tmp_path / "tio2.tif", crs=grid.crs, transform=grid.transform, units="wt%")
    r = run_cli("he3", str(tmp_path / "tio2.tif"), str(tmp_path / "out"), "--samples", "0", "--quantity", "TiO2")
    assert r.returncode == 0, r.stderr
    expected = he3.he3_maps(inputs, config.load("he3"))
    with rasterio.open(tmp_path / "out" / "he3_ppb.tif") as src:
        np.testing.assert_allclose(src.read(1), expected.maps["he3_ppb"].values, rtol=1e-6)
    write_geotiff(inputs.tio2_wt, tmp_path / "ppm.tif", crs=grid.crs, transform=grid.transform, units="ppm")
    r = run_cli("he3", str(tmp_path / "ppm.tif"), str(tmp_path / "out2"))
    assert r.returncode == 2 and "expected wt%" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "out2").exists()


def test_config_file_with_a_duplicated_key_is_refused(tmp_path):
    f = tmp_path / "dup.yaml"
    f.write_text("he3:\n  bulk_density_kg_m3: 1500\n  bulk_density_kg_m3: 1700\n")
    with pytest.raises(ConfigError, match="duplicate key 'bulk_density_kg_m3'"):
        config.load("he3", f)


def test_stage_refuses_bad_parameters_before_reading(tmp_path):
    """The He-3 stage checks its parameters (the CLI has no checks of its own) before any data is read."""
    sources = {"tio2": str(tmp_path / "missing.tif")}
    for params, message in (
        ({"samples": 1}, "samples must be 0"),
        ({"quantity": "FeO"}, "quantity must be Ti or TiO2"),
        ({"maturity_kind": "age"}, "maturity_kind must be index"),
    ):
        with pytest.raises(ConfigError, match=message):
            run_he3(tmp_path / "out", sources=sources, params=params)
    assert not (tmp_path / "out").exists()


def test_map_units_and_long_names_come_from_the_layer_registry():
    from prospect import layers

    for name in ("he3_column_kg_m2", "regolith_thickness_m", "fluence_factor", "tio2_wt"):
        assert he3.map_units(name) == layers.get(name).units
        assert he3.map_long_name(name) == layers.get(name).long_name
    assert he3.map_units("he3_ppb_p95") == "ppb" and he3.map_long_name("he3_ppb") == "He-3 concentration (mass ppb)"


def test_a_map_without_one_value_is_a_warning_naming_it(tmp_path):
    params = config.load("he3")
    grid = AnalysisGrid.global_geographic(10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_he3(_synthetic_inputs(), tmp_path / "fine", params, samples=0)
    with pytest.warns(UserWarning, match=r"every pixel is nodata in .*he3_ppb\.tif") as caught:
        write_he3(he3.He3Inputs(_layer(grid, np.nan)), tmp_path / "empty", params, samples=4)
    assert len(caught) == 1 and str(tmp_path / "empty") in str(caught[0].message)
    assert "he3_ppb_p95.tif" in str(caught[0].message)
    assert (tmp_path / "empty" / "he3_inventory.json").is_file()


def test_model_grid_coarsens_a_fine_analysis_grid_by_a_whole_divisor():
    """A 20 m polar grid is coarsened to at most grid_pixel_m (blocks covering exactly its
    extent); a coarse grid, a grid with no divisor in range, and grid_pixel_m 0 stay as they are."""
    params = config.load("he3")
    assert float(params["grid_pixel_m"]) == 250.0
    fine = AnalysisGrid.polar_cap("south", -87.5, resolution_m=20.0)
    got = he3.model_grid(fine, params)
    factor = round(got.ground_resolution_m / 20.0)
    assert 2 <= factor <= 12 and factor * 20.0 <= 250.0
    assert fine.shape[0] % factor == 0 and got.shape == (fine.shape[0] // factor, fine.shape[1] // factor)
    assert got.bounds == pytest.approx(fine.bounds) and got.crs == fine.crs
    coarse = AnalysisGrid.polar_cap("south", -79.0, resolution_m=5000.0)
    assert he3.model_grid(coarse, params) is coarse
    t = fine.transform
    prime = AnalysisGrid(fine.crs, t, (7583, 7583))  # 7583 is prime: no whole factor
    assert he3.model_grid(prime, params) is prime
    assert he3.model_grid(fine, config.load("he3", {"he3": {"grid_pixel_m": 0}})) is fine
    with pytest.raises(ConfigError, match="grid_pixel_m"):
        config.load("he3", {"he3": {"grid_pixel_m": -5}})


def test_he3_on_a_fine_grid_runs_on_the_coarsened_grid_with_the_same_inventory(shared, tmp_path):
    """run_he3 given a 25 m analysis grid writes its maps on the grid model_grid chooses, and the
    inventory equals the one computed on the fine grid itself (grid_pixel_m 0) to 1e-4."""
    fine = AnalysisGrid.polar_cap("south", -89.3, resolution_m=25.0)
    sources = {"tio2": "lp_grs_ti_5deg", "feo": "lp_grs_feo_halfdeg"}
    fast = run_he3(tmp_path / "coarse", sources=sources, grid=fine, params={"samples": 0})
    full = run_he3(
        tmp_path / "fine", sources=sources, grid=fine, params={"samples": 0, "config": {"he3": {"grid_pixel_m": 0}}}
    )
    with rasterio.open(fast["he3_ppb"]) as a, rasterio.open(full["he3_ppb"]) as b:
        assert b.shape == fine.shape and a.shape[0] < b.shape[0] / 5
        assert a.bounds == pytest.approx(b.bounds)
    inv = [json.loads(p["inventory"].read_text())["inventory_kg"] for p in (fast, full)]
    assert inv[0] == pytest.approx(inv[1], rel=1e-4)


# --- thickness models, counting depth, ranges that follow their values (issue 20) ------------


def _uniform_moon(res_deg: float, tio2: float, feo: float) -> he3.He3Inputs:
    grid = AnalysisGrid.global_geographic(res_deg)
    return he3.He3Inputs(_layer(grid, tio2), _layer(grid, feo))


@pytest.mark.parametrize("model,depth", [("ce1_uniform", 3.0), ("ce1_uniform", 8.0), ("feo_rule", 3.0)])
def test_uniform_moon_inventory_equals_the_hand_computed_value_for_each_depth(model, depth):
    """A uniform Moon: C0 = a TiO2 + b + c everywhere but for the fluence, whose integral over the
    sphere is R^2 pi (pi - D) (cos^2 lat integrates to pi/2; the magnetotail takes 2 D of the 2 pi
    of longitude-weighted flux), so inventory = C0 1e-9 rho h R^2 pi (pi - D) per counting depth h."""
    params = config.load("he3", {"he3": {"thickness_model": model, "counting_depth_m": depth}})
    feo = 0.5 * (params["mare_feo_wt"] + params["highland_feo_wt"])  # mare fraction 1/2 everywhere
    res = he3.he3_maps(_uniform_moon(0.5, 4.0, feo), params)
    coef = he3.calibrate(params)
    c0 = coef.a_ppb_per_wt * 4.0 + coef.b_ppb * params["assumed_maturity"] + coef.c_ppb
    d = math.radians(params["magnetotail_half_width_deg"])
    per_m = c0 * 1e-9 * params["bulk_density_kg_m3"] * lunar.MOON_RADIUS_M**2 * math.pi * (math.pi - d)
    thickness = {
        "ce1_uniform": params["thickness_uniform_m"],
        "feo_rule": 0.5 * (params["regolith_thickness_mare_m"] + params["regolith_thickness_highland_m"]),
    }[model]
    inv = res.inventories()
    assert inv["whole_regolith"]["inventory_kg"] == pytest.approx(per_m * thickness, rel=1e-4)
    assert inv["counting_depth"]["inventory_kg"] == pytest.approx(per_m * min(depth, thickness), rel=1e-4)
    assert res.inventory_kg == pytest.approx(inv["whole_regolith"]["inventory_kg"], rel=1e-9)
    for entry in inv.values():  # the parts add up; mare fraction 1/2 splits mare and highland evenly
        assert entry["nearside_kg"] + entry["farside_kg"] == pytest.approx(entry["inventory_kg"], rel=1e-9)
        assert entry["mare_kg"] == pytest.approx(entry["highland_kg"], rel=1e-6)
        assert entry["by_region_kg"]["unclassified"] == 0.0
        assert entry["nearside_kg"] < entry["farside_kg"]  # the magnetotail shields the nearside
    assert he3.inventory_kg(res.maps["he3_column_counting_kg_m2"]) == pytest.approx(
        inv["counting_depth"]["inventory_kg"], rel=1e-5
    )


def test_each_thickness_model_gives_the_map_its_definition_says():
    inputs = _synthetic_inputs()
    mare = inputs.tio2_wt.values > 1  # FeO 16 wt% (mare fraction 1) there, 5.0 (0) elsewhere
    expect = {
        "ce1_uniform": ("thickness_uniform_m", "thickness_uniform_m"),
        "feo_rule": ("regolith_thickness_mare_m", "regolith_thickness_highland_m"),
        "diviner_rule": ("diviner_thickness_mare_m", "diviner_thickness_highland_m"),
    }
    for model, (on_mare, on_highland) in expect.items():
        params = config.load("he3", {"he3": {"thickness_model": model}})
        m = he3.he3_maps(inputs, params).maps
        h = m["regolith_thickness_m"].values
        assert np.allclose(h[mare], params[on_mare]) and np.allclose(h[~mare], params[on_highland]), model
        assert m["he3_ppb"].attrs["thickness_rule"].startswith(model)
        counting = m["he3_column_counting_kg_m2"].values / m["he3_column_kg_m2"].values
        assert np.allclose(counting, np.minimum(h, params["counting_depth_m"]) / h, rtol=1e-5)
    assert np.allclose(he3.he3_maps(inputs, config.load("he3")).maps["regolith_thickness_m"].values, 5.0)
    # a supplied map replaces every model, in the central estimate and in every draw
    grid = inputs.grid
    supplied = he3.He3Inputs(inputs.tio2_wt, inputs.feo_wt, thickness_m=_layer(grid, 7.25, units="m"))
    res = he3.he3_maps(supplied, config.load("he3"), samples=8, seed=1)
    assert np.allclose(res.maps["regolith_thickness_m"].values, 7.25)
    assert "supplied" in res.maps["he3_ppb"].attrs["thickness_rule"] and res.thickness_model == "thickness map"


def test_the_monte_carlo_draws_over_the_thickness_models():
    params = config.load("he3")
    draws = he3.sample_parameters(params, 400, seed=0)
    counts = {m: sum(d["thickness_model"] == m for d in draws) for m in he3.THICKNESS_MODELS}
    assert counts["ce1_uniform"] == pytest.approx(200, abs=40) and min(counts.values()) > 50, counts
    only = config.load("he3", {"he3": {"thickness_model_weights": {"feo_rule": 0.0, "diviner_rule": 0.0}}})
    assert {d["thickness_model"] for d in he3.sample_parameters(only, 50, seed=0)} == {"ce1_uniform"}
    with pytest.raises(ConfigError, match="central thickness model 'ce1_uniform' has weight 0"):
        he3.central_draw(config.load("he3", {"he3": {"thickness_model_weights": {"ce1_uniform": 0.0}}}))
    with pytest.raises(ConfigError, match="thickness_model: must be one of"):
        config.load("he3", {"he3": {"thickness_model": "guess"}})


@pytest.mark.parametrize(
    "override",
    [
        {},
        {"thickness_uniform_m": 3.0},
        {"bulk_density_kg_m3": 1500.0},
        {"magnetotail_half_width_deg": 15.0},
        {"thickness_model": "diviner_rule"},
        {"thickness_uniform_m": {"value": 9.0, "range": [8.0, 10.0]}},
    ],
)
def test_the_interval_contains_the_central_value_for_defaults_and_overrides(override):
    params = config.load("he3", {"he3": override})
    res = he3.he3_maps(_synthetic_inputs(), params, samples=64, seed=5)
    for depth, entry in res.inventories().items():
        mc = entry["monte_carlo_kg"]
        assert mc["p05"] <= entry["inventory_kg"] <= mc["p95"], (override, depth, entry)


def test_an_override_moves_its_range_with_it_or_gives_both():
    base = config.load("he3")
    assert base.param("bulk_density_kg_m3").range == (1500.0, 1800.0)
    moved = config.load("he3", {"he3": {"bulk_density_kg_m3": 1600.0, "thickness_uniform_m": 3.0}})
    lo, hi = moved.param("bulk_density_kg_m3").range  # scaled: the relative uncertainty is kept
    assert (lo, hi) == pytest.approx((1500 * 1600 / 1660, 1800 * 1600 / 1660))
    assert moved.param("thickness_uniform_m").range == pytest.approx((2.4, 3.6))
    assert "moved with the value" in moved.param("thickness_uniform_m").source
    draws = he3.sample_parameters(moved, 200, seed=0)
    t = np.array([d["t_uniform"] for d in draws])
    assert t.min() >= 2.4 and t.max() <= 3.6
    # clipped to the parameter's domain: a half-width of 85 deg cannot draw beyond 90
    tail = config.load("he3", {"he3": {"magnetotail_half_width_deg": 85.0}}).param("magnetotail_half_width_deg")
    assert tail.range is not None and tail.range[0] <= 85.0 <= tail.range[1] <= 90.0
    both = config.load("he3", {"he3": {"magnetotail_half_width_deg": {"value": 25, "range": [24, 26]}}})
    assert both.param("magnetotail_half_width_deg").range == (24.0, 26.0)
    with pytest.raises(ConfigError, match=r"range: \[30, 40\] must contain the value 25"):
        config.load("he3", {"he3": {"magnetotail_half_width_deg": {"value": 25, "range": [30, 40]}}})
    with pytest.raises(ConfigError, match="value and range only"):
        config.load("he3", {"he3": {"magnetotail_half_width_deg": {"value": 25, "unit": "rad"}}})


def test_configured_anchors_window_and_density_follow_science_md():
    params = config.load("he3")
    highland = next(a for a in he3.anchors_of(params) if "Apollo 16" in a["name"])
    assert highland["he3_ppb_range"] == [1.0, 3.0] and 1.0 <= highland["he3_ppb"] <= 3.0
    assert params["magnetotail_half_width_deg"] == 25.0
    assert params.param("bulk_density_kg_m3").range == (1500.0, 1800.0)
    for name in (
        "thickness_model",
        "thickness_model_weights",
        "thickness_uniform_m",
        "diviner_thickness_mare_m",
        "diviner_thickness_highland_m",
        "counting_depth_m",
    ):
        p = params.param(name)
        assert p.unit and p.source and p.status in config.STATUS, name


@pytest.mark.shared_data
def test_real_inventory_breakdown_published_range_and_an_override_interval(shared, tmp_path):
    """LP GRS Ti + FeO, the default (Chang'e-era) thickness: both inventories with their split,
    compared with the published Chang'e-1 inventories (6.6e8 kg, 3.7e8 nearside / 2.9e8 farside,
    whole regolith on the CE-1 microwave thickness; ~1.03e9 kg from the CE-1 CELMS thickness) and
    the Wisconsin ~1e9 kg (Kulcinski & Schmitt 1992): within a factor of two of each. Then the
    issue's case: an override of the thickness keeps the interval about the central value."""
    out = tmp_path / "he3"
    r = run_cli("he3", "lp_grs_ti_5deg", str(out), "--json", "--samples", "100", "--feo", "lp_grs_feo_halfdeg")
    assert r.returncode == 0, r.stderr
    inv = json.loads(r.stdout)["inventories"]
    whole, mining = inv["whole_regolith"], inv["counting_depth"]
    assert mining["depth"] == "upper 3 m" and mining["inventory_kg"] < whole["inventory_kg"]
    for entry in (whole, mining):
        assert entry["monte_carlo_kg"]["p05"] <= entry["inventory_kg"] <= entry["monte_carlo_kg"]["p95"]
        assert entry["nearside_kg"] + entry["farside_kg"] == pytest.approx(entry["inventory_kg"], rel=1e-9)
        assert entry["mare_kg"] + entry["highland_kg"] == pytest.approx(entry["inventory_kg"], rel=1e-6)
    for published in (6.6e8, 1.03e9, 1.0e9):
        assert published / 2 < whole["inventory_kg"] < published * 2
    # mare He-3 exceeds highland He-3: per unit area, the mare part holds more than the highland part
    import rioxarray  # noqa: F401

    mare = xr.open_dataarray(out / "mare_fraction.tif", engine="rasterio").squeeze("band", drop=True).values
    ppb = xr.open_dataarray(out / "he3_ppb.tif", engine="rasterio").squeeze("band", drop=True).values
    assert np.nanmean(ppb[mare > 0.9]) > 2 * np.nanmean(ppb[mare < 0.1])
    cfg = tmp_path / "thin.yaml"
    cfg.write_text("he3:\n  thickness_uniform_m: 3.0\n")
    out2 = tmp_path / "thin"
    r = run_cli(
        "he3", "lp_grs_ti_5deg", str(out2), "--json", "--samples", "100", "--feo", "lp_grs_feo_halfdeg",
        "--config", str(cfg),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    thin = json.loads(r.stdout)
    for entry in thin["inventories"].values():
        assert entry["monte_carlo_kg"]["p05"] <= entry["inventory_kg"] <= entry["monte_carlo_kg"]["p95"], entry
    assert thin["inventories"]["whole_regolith"]["inventory_kg"] == pytest.approx(
        whole["inventory_kg"] * 3.0 / 5.0, rel=1e-6
    )


def test_mass_without_a_mare_fraction_is_unclassified_but_keeps_its_side():
    """A supplied thickness map over an FeO gap: that mass has no mare fraction, so it is
    unclassified, yet nearside + farside is still the whole inventory."""
    inputs = _synthetic_inputs()
    feo = inputs.feo_wt.copy()
    lon = np.broadcast_to(feo.x.values, feo.shape)
    feo.values[np.abs(lon) > 150] = np.nan  # a gap on the farside
    gapped = he3.He3Inputs(inputs.tio2_wt, feo, thickness_m=_layer(inputs.grid, 6.0, units="m"))
    for entry in he3.he3_maps(gapped, config.load("he3")).inventories().values():
        assert entry["by_region_kg"]["unclassified"] > 0
        assert entry["nearside_kg"] + entry["farside_kg"] == pytest.approx(entry["inventory_kg"], rel=1e-9)
        assert entry["mare_kg"] + entry["highland_kg"] + entry["by_region_kg"]["unclassified"] == pytest.approx(
            entry["inventory_kg"], rel=1e-9
        )
