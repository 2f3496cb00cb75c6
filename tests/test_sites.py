"""Candidate sites and ranking (prospect.sites): synthetic scenes with a known answer, real data."""

from __future__ import annotations

import json
import math
import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from prospect import config, lunar
from prospect.errors import ConfigError, ConstraintError
from prospect.grid import AnalysisGrid
from prospect.pipeline.stages import write_ranking
from prospect.sites import candidates as C
from prospect.sites import features as F
from prospect.sites.rank import SiteInputs, rank_sites
from tests.conftest import run_cli

PX = 200.0  # m
HALF = 15000.0
AXIS_X = 100.0  # pixel centres at 100 + 200 j and the 600 m lattice at 100 + 600 k: both symmetric about x = 100 m

#: small but complete: a 600 m lattice of 300 m discs (9 pixels each), 48 Monte Carlo draws
FAST = {
    "sites": {
        "site_radius_m": 300,
        "candidate_spacing_m": 600,
        "min_flat_area_m2": 2.0e6,
        "mc_samples": 48,
        "dem_draws": 2,
        "ensemble_members": 4,
        "max_site_slope_deg": 6,
        "spatial_block_m": 4000,
    }
}


def _grid():
    return AnalysisGrid.from_bounds(30135, (AXIS_X - HALF - 100, -HALF, AXIS_X + HALF + 100, HALF), resolution=PX)


def L(i, j):
    """Map coordinates of lattice point (i, j) of the scene."""
    return AXIS_X + 600.0 * i, 100.0 + 600.0 * j


def _bump(x, y, cx, cy, sigma):
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))


def _regions(centres, half_m=1500.0):
    """Expert regions as lon/lat boxes around map points (like the Artemis III csv)."""
    rows = []
    for i, (cx, cy) in enumerate(centres):
        xs = np.array([cx - half_m, cx + half_m, cx + half_m, cx - half_m])
        ys = np.array([cy - half_m, cy - half_m, cy + half_m, cy + half_m])
        lon, lat = lunar.xy_to_lonlat(lunar.lunar_crs(30135), xs, ys)
        clon, clat = lunar.xy_to_lonlat(lunar.lunar_crs(30135), cx, cy)
        rows.append(
            {
                "id": i,
                "name": f"E{i}",
                "center_lon": float(clon),
                "center_lat": float(clat),
                "bbox_min_lon": lon.min(),
                "bbox_min_lat": lat.min(),
                "bbox_max_lon": lon.max(),
                "bbox_max_lat": lat.max(),
            }
        )
    return pd.DataFrame(rows)


def scene(best, others=(), experts=(), psr_offset=(0.0, -5000.0)):
    """A 30 x 30 km south-polar scene, centred on x = 100 m.

    Every point of ``best`` is a flat plateau lit 90 % of the time with Earth in view 70 %,
    a cold trap (PSR disc, 1.5 km radius) 5 km away and no crater within 6 km; ``others``
    get the same layout but only 75 % light and 55 % Earth; ``experts`` are the centres of
    the labelled regions (which sit on ``others``). Elsewhere: hills up to ~9 deg, 35 % light.
    """
    grid = _grid()
    x, y = np.meshgrid(grid.x, grid.y)
    flat = np.ones_like(x)
    illum = np.full_like(x, 0.35)
    earth = np.full_like(x, 0.15)
    for (cx, cy), peak_i, peak_e in [(b, 0.55, 0.55) for b in best] + [(o, 0.40, 0.40) for o in others]:
        g = _bump(x, y, cx, cy, 2500.0)
        illum = np.maximum(illum, 0.35 + peak_i * g)
        earth = np.maximum(earth, 0.15 + peak_e * g)
        flat *= 1.0 - _bump(x, y, cx, cy, 1500.0)
    dem = 250.0 * np.sin((x - AXIS_X) / 2200.0) ** 2 * np.cos(y / 1900.0) * flat - 1500.0
    dark = 400.0 * (1.0 - illum)
    wrap = lambda a, name, units: grid.wrap(a.astype("float32"), name=name, attrs={"units": units})  # noqa: E731
    traps = [shapely.Point(cx + psr_offset[0], cy + psr_offset[1]).buffer(1500.0) for cx, cy in (*best, *others)]
    psr = gpd.GeoDataFrame(geometry=traps, crs=grid.crs.to_pyproj())
    from prospect.resources.masks import polygon_fraction

    rng = np.random.default_rng(3)
    cx_, cy_ = rng.uniform(-HALF, HALF, 3000) + AXIS_X, rng.uniform(-HALF, HALF, 3000)
    far = np.ones(cx_.size, dtype=bool)
    for bx, by in (*best, *others):
        far &= np.hypot(cx_ - bx, cy_ - by) > 6000.0
    clon, clat = lunar.xy_to_lonlat(grid.crs, cx_[far], cy_[far])
    craters = gpd.GeoDataFrame(
        {"Diameter_m": np.full(far.sum(), 1500.0)},
        geometry=gpd.points_from_xy(clon, clat),
        crs=lunar.lunar_crs(30100).to_pyproj(),
    )
    names = pd.DataFrame(
        {
            "Crater Name": [f"Trap{i}" for i in range(len(traps))],
            "PSR centroid Lon (deg)": [lunar.xy_to_lonlat(grid.crs, t.centroid.x, t.centroid.y)[0] for t in traps],
            "PSR centroid Lat (deg)": [lunar.xy_to_lonlat(grid.crs, t.centroid.x, t.centroid.y)[1] for t in traps],
        }
    )
    return SiteInputs(
        dem=wrap(dem, "dem", "m"),
        illumination_fraction=wrap(illum, "illum", "1"),
        longest_darkness_h=wrap(dark, "dark", "h"),
        earth_visibility_fraction=wrap(earth, "earth", "1"),
        psr_fraction=polygon_fraction(psr, grid),
        craters=craters,
        cold_traps=names,
        regions=_regions(experts) if experts else None,
    )


def _site_at(sites: pd.DataFrame, x: float, y: float) -> pd.Series:
    i = int(np.argmin(np.hypot(sites["x"] - x, sites["y"] - y)))
    assert math.hypot(sites["x"].iloc[i] - x, sites["y"].iloc[i] - y) < 1.0, "the scene's site is not on the lattice"
    return sites.iloc[i]


BEST = L(5, 4)
OTHERS = (L(-12, 10), L(-10, -12), L(14, -12), L(-14, -1))


@pytest.fixture(scope="module")
def best_ranking():
    return rank_sites(scene([BEST], OTHERS, experts=OTHERS), FAST, seed=7)


def test_known_best_site_ranks_first_under_every_scoring(best_ranking):
    sites = best_ranking.sites
    best = _site_at(sites, *BEST)
    for method in ("weighted_sum", "topsis", "learned"):
        assert best[f"rank_{method}"] == 1, (method, sites.sort_values(f"rank_{method}").head(3).to_string())
    assert best["rank"] == 1
    # the Monte Carlo agrees: highest median score and the largest P(top 10)
    assert best["score_p50"] == sites["score_p50"].max()
    assert best["p_top10"] == sites["p_top10"].max() and best["p_top10"] > 0.9
    assert best["score_p05"] <= best["score"] <= best["score_p95"]
    # the features behind it are the ones built into the scene
    assert best["illumination_fraction"] == pytest.approx(0.9, abs=0.01)
    assert best["slope_mean_deg"] < 0.5 and best["crater_density_km2"] == 0.0
    assert best["psr_distance_km"] == pytest.approx(3.5, abs=0.35)
    assert best["nearest_cold_trap"] == "Trap0" and best["nearest_cold_trap_km"] == pytest.approx(5.0, abs=0.05)
    assert best["explanation"].startswith("ranked 1: score")
    assert "90 % illumination" in best["explanation"] and "Trap0 cold trap" in best["explanation"]


def test_every_rank_is_traceable(best_ranking):
    sites, rec = best_ranking.sites, best_ranking.record
    for col in (
        "site_id",
        "rank",
        "score",
        "score_p05",
        "score_p95",
        "p_top10",
        "lon",
        "lat",
        "score_weighted_sum",
        "score_topsis",
        "score_learned",
        "explanation",
    ):
        assert col in sites
    assert sites["site_id"].is_unique and list(sites["rank"]) == list(range(1, len(sites) + 1))
    contrib = sites[[c for c in sites if c.startswith("contrib_")]].sum(axis=1)
    np.testing.assert_allclose(contrib, sites["score_weighted_sum"], rtol=1e-12)
    assert {c["name"] for c in rec["criteria"]} <= set(sites.columns)
    assert all(c["source"] for c in rec["criteria"])
    assert rec["learned"]["positives"] > 0 and rec["learned"]["permutation_importances"]


def test_two_equally_good_sites_have_overlapping_intervals():
    pair = (L(-6, 3), L(6, 3))
    sites = rank_sites(scene(pair), FAST, seed=1).sites
    a, b = (_site_at(sites, *p) for p in pair)
    assert {int(a["rank"]), int(b["rank"])} == {1, 2}
    assert a["score"] == pytest.approx(b["score"], abs=2e-3)
    assert max(a["score_p05"], b["score_p05"]) < min(a["score_p95"], b["score_p95"])
    # and a clearly worse site's interval does not reach theirs
    assert sites["score_p95"].iloc[2:].max() < min(a["score_p05"], b["score_p05"]) + 0.05


def test_same_seed_same_ranking_different_seed_different_draws():
    inputs = scene([BEST], OTHERS, experts=OTHERS)
    one, two = rank_sites(inputs, FAST, seed=5), rank_sites(inputs, FAST, seed=5)
    pd.testing.assert_frame_equal(one.sites, two.sites)
    three = rank_sites(inputs, FAST, seed=6)
    assert not np.allclose(
        one.sites.sort_values("site_id")["score_p05"], three.sites.sort_values("site_id")["score_p05"]
    )


def test_no_candidate_names_the_binding_constraint():
    inputs = scene([BEST])
    cfg = {"sites": {**FAST["sites"], "min_illumination_fraction": 0.95}}
    with pytest.raises(ConstraintError, match=r"binding constraint is min_illumination_fraction .*>= 0.95"):
        rank_sites(inputs, cfg)
    cfg = {"sites": {**FAST["sites"], "lat_min_deg": -80, "lat_max_deg": -70}}
    with pytest.raises(ConstraintError, match=r"binding constraint is lat_band \(latitude -80..-70 deg\)"):
        rank_sites(inputs, cfg)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"weight_slope_mean_deg": -0.1}, "below the allowed minimum 0"),
        ({"weight_slope_mean_deg": "heavy"}, "must be a finite number"),
        ({"direction_slope_mean_deg": "up"}, "must be one of"),
        ({"weight_slopes": 1}, "unknown sites parameter 'weight_slopes'"),
    ],
)
def test_bad_weights_are_config_errors(bad, message):
    with pytest.raises(ConfigError, match=message):
        config.load("sites", {"sites": bad})


def test_all_zero_weights_is_a_config_error():
    zero = {k: 0 for k in config.load("sites").params if k.startswith("weight_")}
    with pytest.raises(ConfigError, match="no scoring criterion"):
        rank_sites(scene([BEST]), {"sites": {**FAST["sites"], **zero}})


def test_lattice_ids_are_stable_across_windows():
    big = AnalysisGrid.from_bounds(30135, (-6000, -6000, 6000, 6000), resolution=200)
    small = AnalysisGrid.from_bounds(30135, (-2000, -4000, 4000, 2000), resolution=200)
    ids = {}
    for g in (big, small):
        lat = C.Lattice.of(g, 600)
        x, y = lat.xy()
        ids.update(
            {
                (round(a), round(b)): i
                for a, b, i in zip(x.ravel(), y.ravel(), lat.ids().ravel())
                if (round(a), round(b)) not in ids or ids[(round(a), round(b))] == i
            }
        )
        for a, b, i in zip(x.ravel(), y.ravel(), lat.ids().ravel()):
            assert ids[(round(a), round(b))] == i
    assert len(set(ids.values())) == len(ids)


def test_disc_statistics_match_brute_force():
    grid = AnalysisGrid.from_bounds(30135, (-3000, -3000, 3000, 3000), resolution=100)
    values = np.random.default_rng(0).normal(size=grid.shape)
    layer = grid.wrap(values)
    lat = C.Lattice.of(grid, 500)
    k = lat.scale_factor()
    for stat, fn in (("mean", np.mean), ("max", np.max), ("p95", lambda v: np.percentile(v, 95))):
        got = C.disc_stat(layer, lat, 250.0, stat)
        x, y = np.meshgrid(grid.x, grid.y)
        for i, r in enumerate(lat.rows[2:-2]):
            for j, c in enumerate(lat.cols[2:-2]):
                inside = np.hypot(x - grid.x[c], y - grid.y[r]) <= 250.0 * k + 1e-6
                assert got[i + 2, j + 2] == pytest.approx(fn(values[inside]))


def test_wide_disc_means_are_exact_then_block_averaged():
    grid = AnalysisGrid.from_bounds(30135, (-8000, -8000, 8000, 8000), resolution=100)
    values = np.random.default_rng(1).normal(size=grid.shape)
    values[40:45, 60:70] = np.nan
    layer = grid.wrap(values).chunk(48)  # several chunks: the halo must carry the disc across them
    lat = C.Lattice.of(grid, 2000)
    got = C.disc_stat(layer, lat, 1500.0, "mean")  # 709 pixels: FFT convolution at full resolution
    x, y = np.meshgrid(grid.x, grid.y)
    k = lat.scale_factor()
    for i, r in enumerate(lat.rows):
        for j, c in enumerate(lat.cols):
            inside = np.hypot(x - grid.x[c], y - grid.y[r]) <= 1500.0 * k + 1e-6
            assert got[i, j] == pytest.approx(np.nanmean(values[inside]), abs=1e-9)
    ramp = grid.wrap(2.0 + x / 1e4)  # a disc 10x wider than 64 pixels: block means, then the FFT
    wide = C.disc_stat(ramp, C.Lattice.of(grid, 4000), 7000.0, "mean")
    assert wide.shape == (4, 4) and np.isfinite(wide).all()
    with pytest.raises(ConfigError, match="only means over wide discs"):
        C.disc_stat(layer, lat, 1500.0, "p95")


def test_distances_are_lunar_great_circles():
    lon, lat = np.array([0.0]), np.array([-89.0])
    d, idx = F.nearest_distance_km(lon, lat, np.array([180.0, 0.0]), np.array([-89.0, -85.0]))
    assert idx[0] == 0 and d[0] == pytest.approx(2 * math.radians(1.0) * lunar.MOON_RADIUS_M / 1e3, rel=1e-9)
    # 1 deg of latitude is 30.32 km on the Moon (an Earth radius would give 111 km)
    d, _ = F.nearest_distance_km(np.array([10.0]), np.array([-80.0]), np.array([10.0]), np.array([-81.0]))
    assert d[0] == pytest.approx(30.3236, rel=1e-4)


def test_traverse_cost_is_ground_length_on_flat_ground_and_penalises_slope():
    grid = AnalysisGrid.from_bounds(30135, (0, 0, 20000, 2000), resolution=200)
    flat = grid.wrap(np.zeros(grid.shape))
    src = np.zeros(grid.shape, dtype=bool)
    src[:, 0] = True
    rows, cols = np.array([5, 5]), np.array([50, 99])
    cost, res = F.traverse_cost_km(flat, grid.wrap(src), rows, cols, grid, scale_deg=5, max_slope_deg=25, max_cells=1e6)
    k = lunar.polar_scale_factor_xy(grid.x[cols], grid.y[rows])
    assert res == 200.0
    np.testing.assert_allclose(cost, (cols * 200.0 / k) / 1e3, rtol=2e-3)
    steep = grid.wrap(np.full(grid.shape, 5.0))
    cost5, _ = F.traverse_cost_km(steep, grid.wrap(src), rows, cols, grid, scale_deg=5, max_slope_deg=25, max_cells=1e6)
    np.testing.assert_allclose(cost5, 2 * cost, rtol=1e-9)
    wall = np.zeros(grid.shape)
    wall[:, 30] = 40.0
    blocked, _ = F.traverse_cost_km(
        grid.wrap(wall), grid.wrap(src), rows, cols, grid, scale_deg=5, max_slope_deg=25, max_cells=1e6
    )
    assert np.isnan(blocked).all()


def test_outputs_gpkg_json_and_model(best_ranking, tmp_path):
    from prospect.io.models import load_model
    from prospect.sites.learn import predict
    from prospect.sites.rank import feature_columns

    paths = write_ranking(best_ranking, tmp_path / "out", _grid())
    sites = gpd.read_file(paths["sites"], layer="sites")
    discs = gpd.read_file(paths["sites"], layer="candidates")
    top_n = best_ranking.record["disc_polygons_top_n"]
    assert len(sites) == len(best_ranking.sites) > top_n  # every site a point, the best top_n also a disc
    assert list(discs["site_id"]) == list(sites["site_id"].iloc[:top_n])
    assert list(discs["rank"]) == list(range(1, top_n + 1))
    assert lunar.identify(sites.crs).code == "IAU_2015:30135"
    assert sites.iloc[0]["rank"] == 1 and sites.iloc[0]["site_id"] == best_ranking.sites.iloc[0]["site_id"]
    area = discs.geometry.area.iloc[0]
    assert area == pytest.approx(math.pi * 300.0**2, rel=0.01)
    rec = json.loads(paths["record"].read_text())
    assert rec["passing_all"] == len(sites) and rec["criteria"]
    model = load_model(paths["model"])
    cols = feature_columns(best_ranking.sites)
    np.testing.assert_allclose(predict(model, best_ranking.sites[cols])[0], best_ranking.sites["score_learned"])
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_outputs_hold_places_distinct_sites_traverses_and_power(best_ranking, tmp_path):
    """The planner's options: one site per place, separated, each with its traverse and power."""
    from prospect.pipeline.stages import read_power_series
    from prospect.sites.rank import rank_parameters

    p = rank_parameters(FAST)
    sites = best_ranking.sites
    paths = write_ranking(best_ranking, tmp_path / "out", _grid())
    distinct = gpd.read_file(paths["sites"], layer="distinct_sites")
    places = gpd.read_file(paths["sites"], layer="places")
    traverses = gpd.read_file(paths["sites"], layer="traverses")
    power = gpd.read_file(paths["sites"], layer="site_power")
    rec = best_ranking.record["places"]
    # the best site of each of the first places, numbered 1..n, each in its own place
    assert list(distinct["rank_distinct"]) == list(range(1, len(distinct) + 1))
    assert distinct["place_id"].is_unique and len(distinct) == min(rec["n_distinct"], rec["top_n"])
    assert distinct.iloc[0]["site_id"] == sites.iloc[0]["site_id"]  # the best site leads
    for _, d in distinct.iterrows():  # a place's distinct site is its best one
        assert d["rank"] == sites.loc[sites["place_id"] == d["place_id"], "rank"].min()
    lon, lat = distinct["lon"].to_numpy(), distinct["lat"].to_numpy()
    u = lunar.unit_vectors(lon, lat)
    arc = lunar.chord_to_arc_m(np.linalg.norm(u[:, None] - u[None], axis=-1))
    assert (arc[~np.eye(len(u), dtype=bool)] >= p["distinct_separation_m"]).all()
    # the best site and the four expert-like sites (15+ km apart) all lead a place of their own
    assert len(distinct) >= 1 + len(OTHERS) - 1
    assert len(places) == rec["n_places"] == sites["place_id"].max()
    assert places["n_sites"].sum() == len(sites)
    # traverses of the best distinct sites: their cost is the site table's traverse cost
    assert len(traverses) == min(p["traverse_sites_top_n"], len(distinct))
    by_id = sites.set_index("site_id")
    np.testing.assert_allclose(traverses["cost_km"], by_id.loc[traverses["site_id"], "traverse_cost_km"], rtol=1e-12)
    reached = traverses["cost_km"].notna().to_numpy()  # a site with no passable path keeps an empty line
    no_line = (traverses.geometry.isna() | traverses.geometry.is_empty).to_numpy()
    assert reached.any() and (no_line == ~reached).all()
    assert (traverses.geometry[reached].geom_type == "LineString").all()
    assert (traverses.loc[reached, "length_km"] >= 0).all()
    assert (traverses.loc[reached, "max_slope_deg"] <= p["traverse_max_slope_deg"]).all()
    # power at each analysed distinct site and mast height; the taller mast never sees less light
    heights = sorted(p["power_mast_heights_m"])
    assert len(power) == len(heights) * power["site_id"].nunique()
    wide = power.pivot(index="site_id", columns="height_m", values="illumination_fraction")
    assert (wide[heights[-1]] >= wide[heights[0]] - 1e-12).all()
    np.testing.assert_allclose(power["battery_wh"], power["load_w"] * power["longest_usable_night_h"])
    assert (power["longest_usable_night_h"] >= power["longest_night_h"]).all()
    series = read_power_series(paths["power_series"])
    assert list(series) == list(dict.fromkeys(power["site_id"]))


def test_nan_percentile_is_numpys_bit_for_bit():
    rng = np.random.default_rng(3)
    for m in (1, 2, 5, 21, 81):
        x = rng.normal(size=(m, 4, 500)) * rng.choice([1e-3, 1.0, 1e4], size=(m, 4, 500))
        x[rng.random(x.shape) < 0.3] = np.nan
        x[:, 0, :20] = np.nan  # all-NaN discs
        x[:, 1, :20] = 7.0  # constant discs
        x[rng.random(x.shape) < 0.02] = np.inf
        for q in (95, 50, 0, 100, 37.5):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                expected = np.nanpercentile(x, q, axis=0)
            np.testing.assert_array_equal(C.nan_percentile(x, q), expected)


def test_explanations_from_records_equal_those_from_rows(best_ranking):
    from prospect.sites import mcda
    from prospect.sites.rank import explain, rank_parameters

    sites = best_ranking.sites
    crits, _ = mcda.criteria(rank_parameters(FAST), sites)
    k = best_ranking.record["top_k"]
    records = sites.to_dict("records")
    assert [explain(r, crits, k) for r in records] == [explain(row, crits, k) for _, row in sites.iterrows()]
    assert list(sites["explanation"]) == [explain(r, crits, k) for r in records]


def test_explanations_in_blocks_equal_all_records_at_once(best_ranking, monkeypatch):
    from prospect.sites import mcda
    from prospect.sites import rank as R

    sites = best_ranking.sites.drop(columns=["explanation"])
    crits, _ = mcda.criteria(R.rank_parameters(FAST), sites)
    k = best_ranking.record["top_k"]
    whole = [R.explain(r, crits, k) for r in sites.to_dict("records")]
    monkeypatch.setattr(R, "_EXPLAIN_BLOCK", 10)  # many blocks, the last one short
    assert len(sites) > 3 * 10 and len(sites) % 10
    assert R.explanations(sites, crits, k) == whole


def test_disc_polygons_are_capped_at_the_top_n(best_ranking, tmp_path):
    import copy

    ranking = copy.copy(best_ranking)
    ranking.record = {**best_ranking.record, "disc_polygons_top_n": 7}
    paths = write_ranking(ranking, tmp_path / "capped", _grid())
    discs = gpd.read_file(paths["sites"], layer="candidates")
    assert list(discs["site_id"]) == list(best_ranking.sites["site_id"].iloc[:7])
    assert len(gpd.read_file(paths["sites"], layer="sites")) == len(best_ranking.sites)
    uncapped = {k: v for k, v in best_ranking.record.items() if k != "disc_polygons_top_n"}
    ranking.record = uncapped  # a record without the entry (an older run) keeps every disc
    paths = write_ranking(ranking, tmp_path / "all", _grid())
    assert len(gpd.read_file(paths["sites"], layer="candidates")) == len(best_ranking.sites)
    assert paths["sites"].stat().st_size > (tmp_path / "capped" / "sites.gpkg").stat().st_size


# --- real data: the 1.6 km LOLA DEM, its illumination, LOLA PSRs, HKPolyU craters, Artemis III ----------------


@pytest.fixture(scope="module")
def real_ranking(real_site_run):
    """The whole stage on real layers (``real_site_run`` in conftest.py)."""
    ranking, paths, _ = real_site_run
    return ranking, paths


@pytest.mark.shared_data
def test_real_artemis_regions_all_hold_candidates_and_are_recalled(real_ranking):
    ranking, _paths = real_ranking
    learned = ranking.record["learned"]
    # every one of the 13 Artemis III regions (2022) holds sites that pass the default constraints
    assert learned["regions_with_candidates"] == 13
    loro = pd.DataFrame(learned["leave_one_region_out"])
    base = pd.DataFrame(learned["baseline_weighted_sum"])
    print(
        "\nleave-one-region-out best percentile, learned:",
        loro["best_percentile"].round(2).tolist(),
        "recall",
        learned["loro_recall"],
        "\nweighted sum:",
        base["best_percentile"].round(2).tolist(),
        "recall",
        learned["baseline_weighted_sum_recall"],
        "TOPSIS recall",
        learned["baseline_topsis_recall"],
        "\nimportances:",
        [(r["feature"], round(r["importance_mean"], 3)) for r in learned["permutation_importances"][:5]],
    )
    # a held-out expert region's best site lands far above chance (median 50 %) under both scorings
    assert loro["best_percentile"].median() < 5.0 and base["best_percentile"].median() < 5.0
    assert learned["spatial_cv"]["roc_auc"] > 0.7
    top = ranking.sites.iloc[0]
    assert top["rank"] == 1 and top["lat"] <= -84.0 and top["illumination_fraction"] >= 0.33
    assert "cold trap" in top["explanation"]


@pytest.mark.shared_data
def test_real_distinct_top_30_spans_30_places(real_ranking):
    ranking, _paths = real_ranking
    sites = ranking.sites
    top = sites[sites["rank_distinct"].between(1, 30)].sort_values("rank_distinct")
    assert len(top) == 30 and top["place_id"].is_unique
    plain = sites.iloc[:30]
    # the plain top 30 crowds into fewer places than the distinct one
    assert plain["place_id"].nunique() < 30
    held = sorted({int(r) for r in top["expert_region"] if r >= 0}) if "expert_region" in top else []
    print(
        f"\nplain top 30 in {plain['place_id'].nunique()} places; distinct top 30 in 30; "
        f"Artemis III regions (2022) holding one of the distinct top 30: {len(held)} of 13 {held}"
    )


@pytest.mark.shared_data
def test_real_distances_are_consistent(real_ranking):
    sites = real_ranking[0].sites
    # the distance to the nearest PSR pixel never exceeds the one to a named cold trap's PSR centroid by
    # more than a pixel diagonal (those centroids are PSR pixels), and the traverse is never shorter
    # than the great circle to the nearest cold trap
    assert (sites["psr_distance_km"] <= sites["nearest_cold_trap_km"] + 2.3).mean() > 0.99
    ok = sites["traverse_cost_km"].notna()
    assert ok.mean() > 0.95
    assert (sites.loc[ok, "traverse_cost_km"] >= sites.loc[ok, "cold_trap_distance_km"] - 1.6 * 1.5).all()


def test_rank_command_errors_are_one_line(tmp_path):
    dem = tmp_path / "missing.tif"
    for args, needle in (((), "no such file"), (("--config", str(tmp_path / "bad.yaml")), "weight_slope_mean_deg")):
        (tmp_path / "bad.yaml").write_text("sites:\n  weight_slope_mean_deg: -1\n")
        res = run_cli("rank", str(tmp_path / "out"), "--dem", str(dem), *args)
        assert res.returncode == 2, res.stderr
        line = res.stderr.strip()
        assert line.startswith("prospect: error:") and "\n" not in line and needle in line, line
        assert not (tmp_path / "out").exists()


def test_ice_and_he3_features_against_brute_force():
    from prospect.sites.rank import site_features

    inputs = scene([BEST], OTHERS)
    grid = _grid()
    x, y = np.meshgrid(grid.x, grid.y)
    ice = np.zeros_like(x)
    for cx, cy in (BEST, *OTHERS):
        ice = np.maximum(ice, _bump(x, y, cx, cy - 5000.0, 1500.0))
    he3 = 2.0 + (x - AXIS_X) / 10000.0
    inputs.ice_favourability = grid.wrap(ice.astype("float32"), name="ice", attrs={"units": "1"})
    inputs.he3_ppb = grid.wrap(he3.astype("float32"), name="he3", attrs={"units": "ppb"})
    frame, rec = site_features(inputs, config.load("sites", FAST))
    lon_px, lat_px = lunar.xy_to_lonlat(grid.crs, x, y)
    sample = frame.iloc[:: max(1, len(frame) // 25)]
    for layer, col, q in ((ice, "ice_distance_km", 0.9), (he3, "he3_distance_km", 0.9)):
        high = layer.astype("float32") >= np.quantile(layer.astype("float32"), q) - 1e-3 * np.ptp(layer)
        for _, s in sample.iterrows():
            brute = lunar.great_circle_distance_m(s["lon"], s["lat"], lon_px[high], lat_px[high]).min() / 1e3
            assert s[col] == pytest.approx(brute, abs=0.21), (col, s["site_id"])  # within a pixel
    inner = frame[(np.abs(frame["x"] - AXIS_X) < 4000) & (np.abs(frame["y"]) < 4000)]
    np.testing.assert_allclose(inner["he3_ppb"], 2.0 + (inner["x"] - AXIS_X) / 10000.0, atol=0.03)
    assert "ice_distance_km_cut" in rec["notes"] and "he3_distance_km_cut" in rec["notes"]


def test_part_timer_logs_each_part_and_prints_with_progress(capsys, caplog):
    import logging

    from prospect.sites.rank import LOGGER, PartTimer

    timer = PartTimer(progress=True)
    with timer.part("traverse cost"):
        pass
    with timer.part("traverse cost"):
        pass
    assert set(timer.seconds) == {"traverse cost"}
    assert capsys.readouterr().err.count("sites: traverse cost ") == 2
    with caplog.at_level(logging.INFO, logger=LOGGER), PartTimer(progress=False).part("explanations"):
        pass
    assert "sites: explanations" in caplog.text
    assert capsys.readouterr().err == ""


def test_cold_trap_latitude_limit_matches_the_ice_model():
    """Without an ice map the site stage's cold traps are PSR pixels poleward of the same limit
    the ice model applies (Hayne et al. 2021): the two parameters must not drift apart."""
    from prospect import config

    assert (
        config.load("sites")["cold_trap_min_abs_latitude_deg"] == config.load("ice")["cold_trap_min_abs_latitude_deg"]
    )


def test_without_an_ice_map_cold_traps_are_psr_pixels_poleward_of_the_limit(best_ranking):
    """The scene lies within 15 km of the south pole (|lat| > 89.5 deg): at the default limit every
    PSR pixel is a cold trap (the cold-trap distance is the PSR distance); with a limit of 89.95 deg
    (1.5 km around the pole, where the scene has no PSR) no PSR pixel is a cold trap: no cold-trap
    distance, while the PSR distances stay."""
    sites = best_ranking.sites
    np.testing.assert_allclose(sites["cold_trap_distance_km"], sites["psr_distance_km"], atol=1e-9)
    assert "poleward of 80 deg" in best_ranking.record["notes"]["cold_traps"]
    strict = rank_sites(
        scene([BEST], OTHERS), {"sites": {**FAST["sites"], "cold_trap_min_abs_latitude_deg": 89.95}}, seed=7
    )
    a, b = (r.set_index("site_id").sort_index()["psr_distance_km"] for r in (sites, strict.sites))
    np.testing.assert_allclose(b.to_numpy(), a.to_numpy())
    assert strict.sites["cold_trap_distance_km"].isna().all()
    assert "poleward of 89.95 deg" in strict.record["notes"]["cold_traps"]
