"""PU learning of site suitability from expert regions (prospect.sites.learn).

Synthetic sites: ~2000 unlabelled rows scattered over 200 x 200 km and four "expert
regions" of 20 rows each, clustered in space. With ``signal`` the regions' sites sit
high on feature ``f0`` (a clear, learnable preference); without it every feature is
noise, so leave-one-region-out recall must fall to about chance.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from threadpoolctl import threadpool_limits

from prospect import lunar
from prospect.errors import ConfigError, FormatError, InputNotFoundError, ProspectError
from prospect.io import models
from prospect.sites import learn

# small, fast ensembles: the defaults (16 members, 100 iterations) are for real runs
FAST = {"members": 3, "background_per_positive": 5, "max_iter": 25}
CENTRES = [(-60e3, -50e3), (40e3, 60e3), (70e3, -70e3), (-20e3, 80e3)]


def make_sites(signal: bool, seed: int = 1, n_unlabelled: int = 2000, per_region: int = 20):
    rng = np.random.default_rng(seed)
    x = [rng.uniform(-100e3, 100e3, n_unlabelled)]
    y = [rng.uniform(-100e3, 100e3, n_unlabelled)]
    region = [np.full(n_unlabelled, -1)]
    for r, (cx, cy) in enumerate(CENTRES):
        x.append(cx + rng.uniform(-7.5e3, 7.5e3, per_region))
        y.append(cy + rng.uniform(-7.5e3, 7.5e3, per_region))
        region.append(np.full(per_region, r))
    x, y, region = np.concatenate(x), np.concatenate(y), np.concatenate(region)
    n = len(x)
    f0 = rng.normal(0.0, 1.0, n)
    if signal:
        f0[region >= 0] = rng.normal(3.0, 0.4, (region >= 0).sum())
    X = pd.DataFrame({"f0": f0, "noise_a": rng.normal(size=n), "noise_b": rng.uniform(size=n)})
    X.loc[rng.random(n) < 0.05, "noise_a"] = np.nan  # real features have gaps
    return X, region, x, y


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny fits: OpenMP start-up costs more than it saves (3x on a 2-core runner)."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def sites():
    return make_sites(signal=True)


@pytest.fixture(scope="module")
def ensemble(sites):
    X, region, x, y = sites
    return learn.fit_pu(X, region >= 0, learn.spatial_blocks(x, y, 20e3), seed=3, **FAST)


# --- labels and blocks ----------------------------------------------------------------


def test_region_membership_antimeridian_and_outside():
    regions = pd.DataFrame(
        {
            "bbox_min_lon": [170.0, 10.0],
            "bbox_min_lat": [-80.0, -80.0],
            "bbox_max_lon": [-170.0, 20.0],
            "bbox_max_lat": [-70.0, -70.0],
        }
    )
    lon = [175.0, -175.0, 180.0, 185.0, 15.0, 375.0, 160.0, 0.0, 175.0, np.nan]
    lat = [-75.0, -75.0, -75.0, -75.0, -75.0, -75.0, -75.0, -75.0, -60.0, -75.0]
    np.testing.assert_array_equal(learn.region_membership(lon, lat, regions), [0, 0, 0, 0, 1, 1, -1, -1, -1, -1])


def test_region_membership_polygons_need_lunar_geographic_crs():
    import geopandas as gpd
    from shapely.geometry import box

    geoms = [box(170, -80, 180, -70), box(10, -80, 20, -70)]
    regions = gpd.GeoDataFrame({"id": [0, 1]}, geometry=geoms, crs=lunar.lunar_crs(30100).to_pyproj())
    np.testing.assert_array_equal(learn.region_membership([175, 15, 50], [-75, -75, -75], regions), [0, 1, -1])
    with pytest.raises(ProspectError):
        learn.region_membership([175], [-75], regions.set_crs("EPSG:4326", allow_override=True))
    with pytest.raises(ConfigError, match="bbox_min_lon"):
        learn.region_membership([175], [-75], pd.DataFrame({"id": [0]}))


def test_region_membership_real_artemis_regions(shared):
    regions = pd.read_csv(shared / "artemis3_2022" / "artemis3_candidate_regions_2022.csv")
    assert len(regions) == 13
    # boxes 7 and 10 overlap (Nobile Rim 1 / Leibnitz Beta): the nearest centre wins
    got = learn.region_membership(regions["center_lon"], regions["center_lat"], regions)
    np.testing.assert_array_equal(got, np.arange(13))
    assert learn.region_membership([0.0], [-70.0], regions).tolist() == [-1]


def test_spatial_blocks():
    ids = learn.spatial_blocks([0, 999, 1000, -1, 0], [0, 0, 0, 0, 1500], 1000.0)
    assert ids[0] == ids[1] and len(set(ids.tolist())) == 4
    with pytest.raises(ConfigError, match="block size"):
        learn.spatial_blocks([0], [0], 0.0)


# --- the ensemble -----------------------------------------------------------------------


def test_ensemble_ranks_held_out_region_high(sites):
    X, region, x, y = sites
    train = region != 0
    ens = learn.fit_pu(X[train], region[train] >= 0, learn.spatial_blocks(x, y, 20e3)[train], **FAST)
    mean, per_member = learn.predict(ens, X)
    assert per_member.shape == (FAST["members"], len(X))
    np.testing.assert_allclose(mean, per_member.mean(axis=0))
    assert ens.info["calibration"]["spatial"] == FAST["members"]
    held, unlabelled = mean[region == 0], mean[region < 0]
    assert np.median(held) > np.quantile(unlabelled, 0.98)


def test_same_seed_same_probabilities(sites, ensemble):
    X, region, x, y = sites
    again = learn.fit_pu(X, region >= 0, learn.spatial_blocks(x, y, 20e3), seed=3, **FAST)
    np.testing.assert_array_equal(learn.predict(again, X)[1], learn.predict(ensemble, X)[1])
    other = learn.fit_pu(X, region >= 0, learn.spatial_blocks(x, y, 20e3), seed=4, **FAST)
    assert not np.array_equal(learn.predict(other, X)[1], learn.predict(ensemble, X)[1])


@pytest.mark.parametrize("estimator", ["logistic", "hist_gradient_boosting"])
def test_members_fitted_in_two_processes_equal_the_serial_fit(sites, monkeypatch, estimator):
    X, region, x, y = sites
    monkeypatch.setattr(learn, "PARALLEL_MIN_WORK", 0)  # the test data is below the size worth a worker
    blocks = learn.spatial_blocks(x, y, 20e3)
    kw = {**FAST, "estimator": estimator, "seed": 5}
    serial = learn.fit_pu(X, region >= 0, blocks, workers=1, **kw)
    parallel = learn.fit_pu(X, region >= 0, blocks, workers=2, **kw)
    np.testing.assert_array_equal(learn.predict(parallel, X)[1], learn.predict(serial, X)[1])
    assert parallel.info == serial.info


def test_permutation_importances_in_two_processes_equal_the_serial_ones(sites, ensemble, monkeypatch):
    X, region, _, _ = sites
    monkeypatch.setattr(learn, "PARALLEL_MIN_WORK", 0)
    serial = learn.permutation_importances(ensemble, X, region >= 0, seed=2, n_repeats=3, workers=1)
    parallel = learn.permutation_importances(ensemble, X, region >= 0, seed=2, n_repeats=3, workers=2)
    pd.testing.assert_frame_equal(parallel, serial)


def test_site_workers_from_the_environment(monkeypatch):
    monkeypatch.setenv("PROSPECT_SITE_WORKERS", "1")
    assert learn.site_workers() == 1
    monkeypatch.setenv("PROSPECT_SITE_WORKERS", "two")
    with pytest.raises(ConfigError, match="PROSPECT_SITE_WORKERS"):
        learn.site_workers()
    monkeypatch.delenv("PROSPECT_SITE_WORKERS")
    assert 1 <= learn.site_workers() <= 2
    import dask

    with dask.config.set(num_workers=1):  # `prospect run --workers 1`
        assert learn.site_workers() == 1


def test_fit_and_predict_refuse_bad_input(sites, ensemble):
    X, _region, x, y = sites
    blocks = learn.spatial_blocks(x, y, 20e3)
    with pytest.raises(ConfigError, match="no labelled site falls on a candidate"):
        learn.fit_pu(X, np.zeros(len(X), bool), blocks)
    with pytest.raises(ConfigError, match="unlabelled"):
        learn.fit_pu(X, np.ones(len(X), bool), blocks)
    with pytest.raises(ConfigError, match="missing"):
        learn.predict(ensemble, X.drop(columns="noise_b"))


def test_few_positive_blocks_fall_back_to_stratified_calibration(sites):
    X, region, _x, _y = sites
    ens = learn.fit_pu(X, region == 0, np.zeros(len(X), int), **FAST)  # one block holds everything
    assert ens.info["calibration"] == {"spatial": 0, "stratified": FAST["members"], "none": 0}
    assert np.isfinite(learn.predict(ens, X)[0]).all()


# --- evaluation -------------------------------------------------------------------------


def test_region_recall_ranks_ties_and_nan():
    scores = [0.9, 0.5, 0.5, np.nan, 0.1, 0.7]
    region = [-1, 0, -1, 1, 2, -1]
    t = learn.region_recall(scores, region, top_fraction=0.5).set_index("region")
    assert t.loc[0, "best_rank"] == 4 and t.loc[1, "best_rank"] == 6 and t.loc[2, "best_rank"] == 5
    assert t.loc[0, "best_percentile"] == pytest.approx(50.0)
    assert not t["recalled"].any()
    assert learn.region_recall(scores, region, top_fraction=0.7).set_index("region").loc[0, "recalled"]
    with pytest.raises(ConfigError, match="top_fraction"):
        learn.region_recall(scores, region, 0.0)


def test_spatial_cv_reports_json_metrics(sites):
    X, region, x, y = sites
    res = learn.spatial_cv(X, region >= 0, learn.spatial_blocks(x, y, 20e3), folds=3, **FAST)
    json.dumps(res, allow_nan=False)
    assert res["roc_auc"] > 0.95 and res["average_precision"] > 0.5 and 0 <= res["brier"] < 0.1
    assert len(res["reliability"]) == 10 and sum(b["count"] for b in res["reliability"]) == len(X)


def test_leave_one_region_out_recalls_every_region_with_signal(sites):
    X, region, x, y = sites
    table = learn.leave_one_region_out(X, region, x, y, buffer_m=10e3, top_fraction=0.01, **FAST)
    assert table["region"].tolist() == [0, 1, 2, 3]
    assert (table["n_excluded"] > 0).all() and (table["n_train_positive"] == 60).all()
    assert table.attrs["recall"] == 1.0 and table.attrs["median_best_percentile"] < 1.0


def test_leave_one_region_out_is_near_chance_on_noise():
    X, region, x, y = make_sites(signal=False)
    table = learn.leave_one_region_out(X, region, x, y, buffer_m=10e3, top_fraction=0.01, **FAST)
    # chance: the best of 20 random sites is in the top 1 % with p = 1 - 0.99**20 = 0.18
    assert table.attrs["recall"] <= 0.5
    assert table.attrs["median_best_percentile"] > 1.0


def test_permutation_importance_finds_the_informative_feature(sites, ensemble):
    X, region, _, _ = sites
    imp = learn.permutation_importances(ensemble, X, region >= 0, n_repeats=3)
    assert imp["feature"].tolist()[0] == "f0"
    assert imp["importance_mean"].iloc[0] > 10 * max(imp["importance_mean"].iloc[1], 1e-3)


# --- persistence ------------------------------------------------------------------------


def test_save_load_roundtrip(tmp_path, sites, ensemble):
    X = sites[0]
    path = tmp_path / "model.skops"
    models.save_model(ensemble, path)
    loaded = models.load_model(path)
    assert loaded.feature_names == ensemble.feature_names and loaded.info == ensemble.info
    np.testing.assert_array_equal(learn.predict(loaded, X)[1], learn.predict(ensemble, X)[1])
    assert [p.name for p in tmp_path.iterdir()] == ["model.skops"]  # no temp file left behind


def test_saved_model_is_byte_reproducible(tmp_path, sites, ensemble):
    """Same model, same bytes (skops alone names members after memory addresses and stamps the time)."""
    import copy

    models.save_model(ensemble, tmp_path / "a.skops")
    models.save_model(copy.deepcopy(ensemble), tmp_path / "b.skops")
    assert (tmp_path / "a.skops").read_bytes() == (tmp_path / "b.skops").read_bytes()


class Smuggled:
    """A type no prospect model contains."""

    def __init__(self) -> None:
        self.payload = "anything"


def test_load_refuses_a_disallowed_type(tmp_path, ensemble):
    path = tmp_path / "evil.skops"
    sio.dump(
        {"members": list(ensemble.members) + [Smuggled()], "feature_names": ensemble.feature_names, "info": {}}, path
    )
    with pytest.raises(FormatError, match=r"evil\.skops.*Smuggled"):
        models.load_model(path)


@pytest.mark.parametrize("kind", ["text", "zip", "not_a_model"])
def test_load_refuses_files_that_are_not_models(tmp_path, kind):
    path = tmp_path / "model.skops"
    if kind == "text":
        path.write_text("id,score\n1,0.5\n")
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("readme.txt", "hello")
    else:
        sio.dump({"members": [], "feature_names": [], "info": {}}, path)
    with pytest.raises(FormatError, match=r"model\.skops") as err:
        models.load_model(path)
    assert "\n" not in str(err.value)


def test_load_missing_file(tmp_path):
    with pytest.raises(InputNotFoundError, match=r"absent\.skops"):
        models.load_model(tmp_path / "absent.skops")


# --- monotone models, exact contributions, variants (issue 19) ----------------------------

DIRECTIONS = {"f0": "benefit", "noise_a": "cost"}  # noise_b: no agreed direction
ALL_ESTIMATORS = list(learn.ESTIMATORS)


@pytest.fixture(scope="module")
def estimator_ensembles(sites):
    X, region, x, y = sites
    blocks = learn.spatial_blocks(x, y, 20e3)
    return {
        e: learn.fit_pu(X, region >= 0, blocks, seed=3, estimator=e, directions=DIRECTIONS, **FAST)
        for e in ALL_ESTIMATORS
    }


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS)
def test_contributions_sum_to_the_learned_score(sites, estimator_ensembles, estimator):
    X = sites[0]
    ens = estimator_ensembles[estimator]
    score, per_member = learn.predict(ens, X)
    base, terms = learn.contributions(ens, X)
    assert list(terms.columns) == list(X.columns) and terms.index.equals(X.index)
    assert np.ptp(base) == 0.0  # one base for every site
    np.testing.assert_allclose(base + terms.sum(axis=1).to_numpy(), score, rtol=0, atol=1e-6)
    # the score is the members' mean calibrated log-odds; the probability output agrees in order
    np.testing.assert_allclose(score, per_member.mean(axis=0))
    prob = learn.predict(ens, X, output="probability")[0]
    assert ((prob >= 0) & (prob <= 1)).all()
    assert np.corrcoef(np.argsort(np.argsort(prob)), np.argsort(np.argsort(score)))[0, 1] > 0.95
    # the informative feature carries the expert sites' score
    pos = sites[1] >= 0
    assert terms.loc[pos, "f0"].mean() > terms.loc[pos, ["noise_a", "noise_b"]].abs().mean().max()


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS)
def test_new_estimators_same_seed_same_scores(sites, estimator_ensembles, estimator):
    X, region, x, y = sites
    again = learn.fit_pu(
        X, region >= 0, learn.spatial_blocks(x, y, 20e3), seed=3, estimator=estimator, directions=DIRECTIONS, **FAST
    )
    np.testing.assert_array_equal(learn.predict(again, X)[1], learn.predict(estimator_ensembles[estimator], X)[1])
    np.testing.assert_array_equal(
        learn.contributions(again, X)[1].to_numpy(),
        learn.contributions(estimator_ensembles[estimator], X)[1].to_numpy(),
    )
    assert again.info == estimator_ensembles[estimator].info


def _monotone_check(ens, X, row, feature, delta):
    """Score of ``row`` and of ``row`` with ``feature`` raised by ``delta``."""
    a = X.iloc[[row]].copy()
    if not np.isfinite(a[feature].iloc[0]):
        a[feature] = 0.0
    b = a.copy()
    b[feature] = b[feature] + delta
    return learn.predict(ens, a)[0][0], learn.predict(ens, b)[0][0]


@pytest.mark.parametrize("estimator", sorted(learn.MONOTONE))
def test_monotone_variants_never_score_a_better_site_lower(sites, estimator_ensembles, estimator):
    """Property: improving a feature in its agreed direction never lowers the learned score."""
    hypothesis = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")
    X = sites[0]
    ens = estimator_ensembles[estimator]
    signs = dict(zip(ens.feature_names, learn.direction_signs(ens.feature_names, DIRECTIONS), strict=True))

    @hypothesis.settings(max_examples=60, deadline=None, derandomize=True)
    @hypothesis.given(
        row=st.integers(0, len(X) - 1),
        feature=st.sampled_from(["f0", "noise_a"]),
        delta=st.floats(1e-3, 10.0, allow_nan=False),
    )
    def improving_never_hurts(row, feature, delta):
        before, after = _monotone_check(ens, X, row, feature, signs[feature] * delta)
        assert after >= before - 1e-9, (row, feature, delta, before, after)

    improving_never_hurts()
    # and on a sweep over the whole range of each directed feature
    for feature in ("f0", "noise_a"):
        grid = np.linspace(X[feature].min() - 1, X[feature].max() + 1, 41)
        rows = pd.concat([X.iloc[[7]]] * len(grid), ignore_index=True)
        rows[feature] = grid * signs[feature]
        assert (np.diff(learn.predict(ens, rows)[0]) >= -1e-9).all()


def test_monotone_models_record_their_directions(estimator_ensembles):
    info = estimator_ensembles["monotone_hist_gradient_boosting"].info
    assert info["learned_estimator"] == "monotone_hist_gradient_boosting"
    assert info["base"]["monotonic_cst"] == [1, -1, 0]
    assert info["base"]["directions"] == {"f0": 1, "noise_a": -1, "noise_b": 0}
    assert "monotonic_cst" not in estimator_ensembles["hist_gradient_boosting"].info["base"]


def test_sign_constrained_logistic_is_the_logistic_regression_when_unconstrained(sites):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    X, region, _, _ = sites
    Z = StandardScaler().fit_transform(X.fillna(0.0).to_numpy())
    y = (region >= 0).astype(int)
    ours = learn.SignConstrainedLogistic(signs=(0, 0, 0)).fit(Z, y)
    ref = LogisticRegression(C=1.0, max_iter=1000, tol=1e-10).fit(Z, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=1e-4)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, atol=1e-4)
    # constrained: a cost sign on the informative (benefit) feature pins its coefficient at zero
    flipped = learn.SignConstrainedLogistic(signs=(-1, 0, 0)).fit(Z, y)
    assert flipped.coef_[0, 0] == 0.0 and ref.coef_[0, 0] > 0
    lr = ours.as_logistic_regression()
    np.testing.assert_allclose(lr.decision_function(Z), ours.decision_function(Z))


def test_sign_constrained_model_saves_with_standard_types_only(tmp_path, sites, estimator_ensembles):
    ens = estimator_ensembles["sign_constrained_logistic"]
    models.save_model(ens, tmp_path / "m.skops")
    assert "SignConstrained" not in (tmp_path / "m.skops").read_bytes().decode("latin-1")
    loaded = models.load_model(tmp_path / "m.skops")
    np.testing.assert_array_equal(learn.predict(loaded, sites[0])[1], learn.predict(ens, sites[0])[1])


def test_bad_estimators_variants_and_directions_are_one_line_config_errors(sites):
    from prospect.config import load
    from prospect.sites import rank

    X, region, x, y = sites
    blocks = learn.spatial_blocks(x, y, 20e3)
    errors = []
    with pytest.raises(ConfigError, match="learned_estimator must be one of") as e:
        learn.fit_pu(X, region >= 0, blocks, estimator="random_forest", **FAST)
    errors.append(e)
    with pytest.raises(ConfigError, match="direction of feature 'f0'") as e:
        learn.fit_pu(X, region >= 0, blocks, estimator="sign_constrained_logistic", directions={"f0": "up"}, **FAST)
    errors.append(e)
    assert learn.variant("sign_constrained_logistic+multiscale+criteria") == (
        "sign_constrained_logistic",
        "criteria+multiscale",
    )
    assert learn.variant("logistic") == ("logistic", "all")
    for bad in ("forest", "logistic+context", 3, "+multiscale", "logistic+criteria+criteria"):
        with pytest.raises(ConfigError, match="learned_variants") as e:
            learn.variant(bad)
        errors.append(e)
    with pytest.raises(ConfigError, match="learned_estimator") as e:
        load("sites", {"sites": {"learned_estimator": "forest"}})
    errors.append(e)
    with pytest.raises(ConfigError, match="learned_features") as e:
        load("sites", {"sites": {"learned_features": "everything"}})
    errors.append(e)
    for bad in (["logistic", "svm"], [], ["logistic", "logistic"]):
        with pytest.raises(ConfigError, match="learned_variants") as e:
            rank._learned_variants(load("sites", {"sites": {"learned_variants": bad}}))
        errors.append(e)
    with pytest.raises(ConfigError, match="output") as e:
        learn.predict(learn.fit_pu(X, region >= 0, blocks, **FAST), X, output="odds")
    errors.append(e)
    assert all("\n" not in str(e.value) for e in errors)


def test_new_site_parameters_are_documented():
    from prospect.config import STATUS, defaults

    p = defaults("sites")
    for name in (
        "learned_estimator",
        "learned_features",
        "learned_variants",
        "context_near_radius_m",
        "context_region_radius_m",
        "direction_cold_trap_distance_km",
        "learned_variants_max_sites",
    ):
        entry = p.param(name)
        assert entry.source and entry.status in STATUS and isinstance(entry.unit, str), name
        if name.endswith("_m"):
            assert entry.unit == "m" and entry.min is not None and entry.min > 0, name
    assert set(p.param("learned_estimator").choices) == set(learn.ESTIMATORS)
    for v in p["learned_variants"]:
        learn.variant(v)
    assert p["learned_estimator"] in learn.ESTIMATORS and p["learned_features"] in learn.FEATURE_SETS
    assert set(p.param("learned_features").choices) == set(learn.FEATURE_SETS)


def test_learned_directions_follow_the_base_feature():
    from prospect.sites import rank

    p = rank.rank_parameters()
    d = rank.learned_directions(
        p, ["illumination_fraction", "slope_mean_deg_region", "cold_trap_distance_km_near", "psr_fraction"]
    )
    assert d == {
        "illumination_fraction": 1,
        "slope_mean_deg_region": -1,
        "cold_trap_distance_km_near": -1,
        "psr_fraction": 0,
    }
    assert set(rank.CONTEXT_FEATURES) <= set(rank.FEATURES)
    assert all(rank.FEATURES[c][0] for c in rank.CONTEXT_FEATURES)


def test_explanation_names_the_two_strongest_learned_reasons():
    from prospect.sites import rank

    row = {
        "rank": 3,
        "score": 0.7,
        "score_p05": 0.6,
        "score_p95": 0.8,
        "p_top10": 0.5,
        "score_learned": 1.25,
        "learned_base": 0.5,
        "learned_contrib_illumination_fraction": 0.8,
        "learned_contrib_slope_mean_deg": -0.3,
        "learned_contrib_roughness_m": 0.25,
    }
    line = rank.explain(row, [], 10)
    assert line.endswith("learned score +1.25 log-odds (learned: illumination_fraction +0.80, slope_mean_deg -0.30)")
    assert rank.explain(row, [], 10, learned_columns=["learned_contrib_roughness_m"]).endswith(
        "(learned: roughness_m +0.25)"
    )


# --- multi-scale context (prospect.sites.context) -------------------------------------------


def test_context_means_distances_and_dask_equal_numpy():
    import dask.array as da

    from prospect.sites import context

    n = 120
    xx = np.mgrid[0:n, 0:n][1].astype("float64")
    layer = np.where(xx < 60, 0.2, 0.8)  # a lit east half
    layer[5:8, 5:8] = np.nan
    mask = np.zeros((n, n), bool)
    mask[60, 60] = True
    rows, cols = np.array([60.0, 60.0, 10.0, 110.0]), np.array([10.0, 110.0, 60.0, 60.0])
    kw = {"pixel_m": 100.0, "radii_m": {"near": 600.0, "region": 3000.0}}
    out = context.context_features({"ill": layer}, rows, cols, distance_masks={"trap": mask}, **kw)
    assert set(out) == {"ill_near", "ill_region", "trap_near", "trap_region"}
    np.testing.assert_allclose(out["ill_near"][:2], [0.2, 0.8], atol=1e-9)  # far from the edge: the plain value
    assert 0.2 < out["ill_region"][2] < 0.8 and 0.2 < out["ill_region"][3] < 0.8  # straddles the edge
    # distance to the one mask pixel, 5 km from every site (to a coarse pixel), near and region alike
    np.testing.assert_allclose(out["trap_near"], 5.0, atol=0.35)
    np.testing.assert_allclose(out["trap_region"], 5.0, atol=1.0)
    lazy = context.context_features(
        {"ill": da.from_array(layer, chunks=37)},
        rows,
        cols,
        distance_masks={"trap": da.from_array(mask, chunks=50)},
        **kw,
    )
    for k, v in out.items():
        np.testing.assert_allclose(lazy[k], v, rtol=1e-12, atol=1e-12)
    assert context.coarse_factor(7500, 20) == 125 and context.coarse_factor(1500, 1600) == 1
    with pytest.raises(ConfigError, match="radius"):
        context.coarse_factor(0, 20)
    # no mask pixel at all: distances are unknown, not zero
    none = context.context_features({}, rows, cols, distance_masks={"trap": np.zeros((n, n), bool)}, **kw)
    assert np.isnan(none["trap_near"]).all()


def test_predict_takes_the_model_columns_of_a_wider_table(sites, estimator_ensembles):
    X = sites[0]
    ens = estimator_ensembles["sign_constrained_logistic"]
    wide = X[["noise_b", "f0", "noise_a"]].assign(site_id=np.arange(len(X)), other=1.5)
    np.testing.assert_array_equal(learn.predict(ens, wide)[1], learn.predict(ens, X)[1])
    np.testing.assert_array_equal(learn.contributions(ens, wide)[1], learn.contributions(ens, X)[1])
    with pytest.raises(ConfigError, match=r"missing \['noise_a'\]"):
        learn.predict(ens, wide.drop(columns="noise_a"))
