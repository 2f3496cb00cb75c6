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
