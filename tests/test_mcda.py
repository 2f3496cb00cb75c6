"""Multi-criteria scoring of candidate sites: criteria, weighted sum, TOPSIS, Dirichlet weights, ranks."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from prospect import config
from prospect.errors import ConfigError
from prospect.sites import mcda
from prospect.sites.mcda import Criterion


def _crit(name: str, weight: float, direction: str = "benefit") -> Criterion:
    return Criterion(name=name, weight=weight, direction=direction, source="test", status="?")


def _weight_keys() -> list[str]:
    return [k for k in config.defaults("sites").params if k.startswith("weight_")]


# --- criteria ---------------------------------------------------------------------------------


def test_criteria_renormalise_and_report_dropped():
    features = pd.DataFrame(
        {
            "illumination_fraction": [0.5, 0.9],
            "slope_mean_deg": [3.0, 6.0],
            "roughness_m": [np.nan, np.nan],
            "unrelated": [1.0, 2.0],
        }
    )
    crits, dropped = mcda.criteria(config.load("sites"), features)
    by_name = {c.name: c for c in crits}
    assert set(by_name) == {"illumination_fraction", "slope_mean_deg"}  # default weights 0.20 and 0.10
    assert by_name["illumination_fraction"].weight == pytest.approx(2 / 3)
    assert by_name["slope_mean_deg"].weight == pytest.approx(1 / 3)
    assert by_name["illumination_fraction"].direction == "benefit"
    assert by_name["slope_mean_deg"].direction == "cost"
    assert by_name["slope_mean_deg"].status == "?" and "science.md" in by_name["slope_mean_deg"].source
    assert dropped["roughness_m"] == "no finite value"
    assert dropped["longest_darkness_h"] == "no such feature"
    assert dropped["he3_ppb"] == "weight 0"
    assert "unrelated" not in dropped
    assert set(dropped) | set(by_name) == {k[len("weight_") :] for k in _weight_keys()}


def test_criteria_config_weight_zero_drops_and_nothing_usable_is_config_error():
    features = pd.DataFrame({"illumination_fraction": [0.5, 0.9], "slope_mean_deg": [3.0, 6.0]})
    params = config.load("sites", {"sites": {"weight_slope_mean_deg": 0}})
    crits, dropped = mcda.criteria(params, features)
    assert [c.name for c in crits] == ["illumination_fraction"] and crits[0].weight == 1.0
    assert dropped["slope_mean_deg"] == "weight 0"

    all_zero = config.load("sites", {"sites": dict.fromkeys(_weight_keys(), 0)})
    with pytest.raises(ConfigError, match=r"no scoring criterion.*weight_illumination_fraction \(weight 0\)"):
        mcda.criteria(all_zero, features)
    with pytest.raises(ConfigError, match=r"weight_slope_mean_deg \(no such feature\)"):
        mcda.criteria(config.load("sites"), pd.DataFrame({"other": [1.0]}))


def test_negative_weight_is_config_error():
    with pytest.raises(ConfigError, match="weight_slope_mean_deg"):
        config.load("sites", {"sites": {"weight_slope_mean_deg": -0.1}})


# --- weighted sum, contributions ----------------------------------------------------------------


def test_benefit_matrix_scaling_nan_and_constant():
    features = pd.DataFrame({"a": [1.0, 3.0, np.nan], "b": [10.0, 20.0, 30.0], "c": [5.0, 5.0, 5.0]})
    crits = [_crit("a", 0.4), _crit("b", 0.4, "cost"), _crit("c", 0.2)]
    b = mcda.benefit_matrix(features, crits)
    np.testing.assert_allclose(b, [[0.0, 1.0, 1.0], [1.0, 0.5, 1.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(mcda.weighted_sum(features, crits), [0.6, 0.8, 0.2])


def test_cost_and_benefit_directions_flip_the_order():
    features = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    for score in (mcda.weighted_sum, mcda.topsis):
        up = score(features, [_crit("x", 1.0, "benefit")])
        down = score(features, [_crit("x", 1.0, "cost")])
        assert list(mcda.ranks(up)) == [3, 2, 1]
        assert list(mcda.ranks(down)) == [1, 2, 3]


def test_dominant_site_scores_one_and_is_first():
    features = pd.DataFrame(
        {"illum": [0.9, 0.5, 0.7, 0.6], "slope": [1.0, 4.0, 2.0, 9.0], "dist": [0.5, 3.0, 8.0, 1.0]}
    )
    crits = [_crit("illum", 0.5), _crit("slope", 0.3, "cost"), _crit("dist", 0.2, "cost")]
    ws = mcda.weighted_sum(features, crits)
    ts = mcda.topsis(features, crits)
    assert ws[0] == pytest.approx(1.0) and (ws[1:] < 1.0).all()
    assert ts[0] == pytest.approx(1.0) and mcda.ranks(ts)[0] == 1
    assert ((ts >= 0) & (ts <= 1)).all()


def test_contributions_sum_to_weighted_sum():
    features = pd.DataFrame({"a": [0.2, 0.8, np.nan, 0.5], "b": [3.0, 1.0, 2.0, 7.0]}, index=[10, 11, 12, 13])
    crits = [_crit("a", 0.7), _crit("b", 0.3, "cost")]
    contrib = mcda.contributions(features, crits)
    assert list(contrib.columns) == ["a", "b"] and list(contrib.index) == [10, 11, 12, 13]
    np.testing.assert_allclose(contrib.sum(axis=1).to_numpy(), mcda.weighted_sum(features, crits))
    assert contrib.loc[12, "a"] == 0.0  # unknown = worst


def test_weighted_sum_and_topsis_broadcast_weight_draws():
    features = pd.DataFrame({"a": [0.2, 0.8, 0.5], "b": [3.0, 1.0, 2.0]})
    crits = [_crit("a", 0.5), _crit("b", 0.5, "cost")]
    w = np.array([[0.5, 0.5], [1.0, 0.0], [0.2, 0.8]])
    for score in (mcda.weighted_sum, mcda.topsis):
        many = score(features, crits, w)
        assert many.shape == (3, 3)
        for i in range(3):
            np.testing.assert_allclose(many[i], score(features, crits, w[i]))
        np.testing.assert_allclose(many[0], score(features, crits))
    with pytest.raises(ValueError, match="shape"):
        mcda.weighted_sum(features, crits, np.ones(3))


# --- TOPSIS -----------------------------------------------------------------------------------


def test_topsis_hand_computed_3x2():
    # a benefit, b cost, w = (0.6, 0.4)
    # a = [3, 4, 0]: norm 5  -> r = [0.6, 0.8, 0.0] -> v = [0.36, 0.48, 0.00]; ideal 0.48, anti 0
    # b = [0, 6, 8]: norm 10 -> r = [0.0, 0.6, 0.8] -> v = [0.00, 0.24, 0.32]; ideal 0,    anti 0.32
    features = pd.DataFrame({"a": [3.0, 4.0, 0.0], "b": [0.0, 6.0, 8.0]})
    crits = [_crit("a", 0.6), _crit("b", 0.4, "cost")]
    d_plus = [math.sqrt(0.12**2 + 0.0**2), math.sqrt(0.0**2 + 0.24**2), math.sqrt(0.48**2 + 0.32**2)]
    d_minus = [math.sqrt(0.36**2 + 0.32**2), math.sqrt(0.48**2 + 0.08**2), math.sqrt(0.0**2 + 0.0**2)]
    expected = [dm / (dp + dm) for dp, dm in zip(d_plus, d_minus)]
    np.testing.assert_allclose(mcda.topsis(features, crits), expected, rtol=1e-12)
    assert expected[0] == pytest.approx(0.80055, abs=1e-5)


def test_topsis_nan_is_worst_value_and_degenerate_cases():
    crits = [_crit("a", 0.5), _crit("b", 0.5, "cost")]
    with_nan = pd.DataFrame({"a": [1.0, 3.0, np.nan], "b": [2.0, np.nan, 1.0]})
    filled = pd.DataFrame({"a": [1.0, 3.0, 1.0], "b": [2.0, 2.0, 1.0]})
    np.testing.assert_allclose(mcda.topsis(with_nan, crits), mcda.topsis(filled, crits))
    # a zero-norm column contributes nothing
    zero = pd.DataFrame({"a": [1.0, 3.0, 2.0], "b": [0.0, 0.0, 0.0]})
    np.testing.assert_allclose(mcda.topsis(zero, crits), mcda.topsis(zero[["a"]], [_crit("a", 0.5)]))
    # all sites equal: D+ + D- = 0 -> 1.0
    same = pd.DataFrame({"a": [2.0, 2.0], "b": [1.0, 1.0]})
    np.testing.assert_array_equal(mcda.topsis(same, crits), [1.0, 1.0])


# --- Dirichlet weights, ranks, summaries ---------------------------------------------------------


def test_dirichlet_weights_sum_to_one_and_centre_on_w0():
    crits = [_crit("a", 0.5), _crit("b", 0.3), _crit("c", 0.2)]
    w = mcda.dirichlet_weights(crits, 20000, np.random.default_rng(0), concentration=50)
    assert w.shape == (20000, 3)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    np.testing.assert_allclose(w.mean(axis=0), [0.5, 0.3, 0.2], atol=0.005)
    np.testing.assert_allclose(w.std(axis=0), np.sqrt([0.25 / 51, 0.21 / 51, 0.16 / 51]), rtol=0.05)
    with pytest.raises(ConfigError, match="mc_weight_concentration"):
        mcda.dirichlet_weights(crits, 3, np.random.default_rng(0), concentration=0)


def test_ranks_ties_tiebreak_and_draws():
    assert list(mcda.ranks(np.array([0.5, 0.9, 0.5, np.nan, 0.1]))) == [2, 1, 3, 5, 4]
    assert list(mcda.ranks(np.array([0.5, 0.9, 0.5]), tiebreak=np.array(["z", "y", "x"]))) == [3, 1, 2]
    many = mcda.ranks(np.array([[0.1, 0.2, 0.3], [0.3, 0.3, 0.1]]))
    np.testing.assert_array_equal(many, [[3, 2, 1], [1, 2, 3]])


def test_summarise_draws_hand_made():
    draws = np.array(
        [[0.9, 0.1, 0.5], [0.8, 0.9, 0.5], [0.7, 0.8, 0.5], [0.6, 0.2, 0.5], [0.5, 0.3, 0.5]]
    )  # last draw: sites 0 and 2 tie for first
    # ranks per draw: site 0 [1,2,2,1,1], site 1 [3,1,1,3,3], site 2 [2,3,3,2,1]
    # linear percentiles of 5 values: p05 at index 0.2, p50 at 2, p95 at 3.8 of the sorted values
    out = mcda.summarise_draws(draws, k=1)
    assert list(out.columns) == ["score_p05", "score_p50", "score_p95", "p_top1", "rank_p05", "rank_p95"]
    np.testing.assert_allclose(out["score_p05"], [0.52, 0.12, 0.5])
    np.testing.assert_allclose(out["score_p50"], [0.7, 0.3, 0.5])
    np.testing.assert_allclose(out["score_p95"], [0.88, 0.88, 0.5])
    np.testing.assert_allclose(out["p_top1"], [0.6, 0.4, 0.2])
    np.testing.assert_allclose(out["rank_p05"], [1.0, 1.0, 1.2])
    np.testing.assert_allclose(out["rank_p95"], [2.0, 3.0, 3.0])


def test_summarise_draws_in_site_blocks_equals_one_block(monkeypatch):
    rng = np.random.default_rng(3)
    draws = rng.random((40, 103))
    draws[:, 5] = draws[:, 9]  # ties share a rank
    draws[3, 7] = np.nan  # NaN ranks last
    whole = mcda.summarise_draws(draws, k=10)
    monkeypatch.setattr(mcda, "_SUMMARY_BLOCK", 16)
    pd.testing.assert_frame_equal(mcda.summarise_draws(draws, k=10), whole, check_exact=True)
    assert mcda._shared_ranks(draws).dtype == np.int32


def _monte_carlo(seed: int) -> pd.DataFrame:
    features = pd.DataFrame(
        {"illum": [0.9, 0.6, 0.6, 0.4, 0.7], "slope": [2.0, 3.0, 3.0, 8.0, 1.0], "dist": [4.0, 2.0, 2.0, 9.0, 6.0]}
    )
    crits = [_crit("illum", 0.5), _crit("slope", 0.3, "cost"), _crit("dist", 0.2, "cost")]
    w = mcda.dirichlet_weights(crits, 300, np.random.default_rng(seed), concentration=5)
    return mcda.summarise_draws(mcda.topsis(features, crits, w), k=2)


def test_identical_sites_get_identical_summaries():
    out = _monte_carlo(seed=1)
    pd.testing.assert_series_equal(out.loc[1], out.loc[2], check_names=False)
    assert 0.0 < out.loc[1, "p_top2"] < 1.0  # they do cross the top-2 boundary in some draws


def test_same_seed_same_output():
    pd.testing.assert_frame_equal(_monte_carlo(seed=7), _monte_carlo(seed=7))
    assert not _monte_carlo(seed=7).equals(_monte_carlo(seed=8))
