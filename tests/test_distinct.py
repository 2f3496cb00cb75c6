"""Places and the distinct ranking (prospect.sites.distinct): options a planner can compare."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prospect import lunar
from prospect.errors import ConfigError
from prospect.sites import distinct

SOUTH = lunar.lunar_crs(lunar.IAU_SOUTH_POLAR_STEREOGRAPHIC)
SPACING = 200.0  # m, the default lattice spacing


def patch(x0: float, y0: float, n: int, score: float, step: float = 1e-4) -> pd.DataFrame:
    """An n x n block of lattice sites at (x0, y0) [m], scores ``score`` + a small gradient."""
    ix, iy = np.meshgrid(np.arange(n), np.arange(n))
    x = x0 + SPACING * ix.ravel()
    y = y0 + SPACING * iy.ravel()
    return pd.DataFrame({"x": x, "y": y, "score": score + step * (ix + iy).ravel()})


def scene(*patches: pd.DataFrame) -> pd.DataFrame:
    frame = pd.concat(patches, ignore_index=True)
    frame["lon"], frame["lat"] = lunar.xy_to_lonlat(SOUTH, frame["x"].to_numpy(), frame["y"].to_numpy())
    frame["site_id"] = [f"s{i:06d}" for i in range(len(frame))]
    return frame


def rank_distinct(frame: pd.DataFrame, *, separation_m: float = 10_000.0, radius_m: float = 7_500.0):
    order = distinct.score_order(frame["score"].to_numpy(), frame["site_id"].to_numpy())
    lon, lat = frame["lon"].to_numpy(), frame["lat"].to_numpy()
    place = distinct.places(lon, lat, order, link_m=1.5 * SPACING, max_radius_m=radius_m)
    return order, place, distinct.distinct_ranks(lon, lat, order, place, separation_m=separation_m)


def test_two_separated_good_areas_both_lead_the_distinct_ranking():
    """Area A (400 near-copies, the best scores) would fill a plain top 30; area B, 50 km
    away and a little worse, is the distinct ranking's second option, not crowded out."""
    a = patch(20_000.0, 10_000.0, 20, 0.90)
    b = patch(20_000.0, 60_000.0, 10, 0.80)
    frame = scene(a, b)
    order, place, rd = rank_distinct(frame)
    in_b = np.arange(len(frame)) >= len(a)
    assert not in_b[order[:30]].any()  # the plain top 30: all of A
    assert len(np.unique(place)) == 2  # each area is one connected passing area, under 7.5 km
    first, second = np.flatnonzero(rd == 1)[0], np.flatnonzero(rd == 2)[0]
    assert first == order[0] and not in_b[first]
    assert in_b[second] and second == order[np.flatnonzero(in_b[order])[0]]  # B's best site
    assert rd.max() == 2


def test_places_are_connected_areas_cut_at_the_region_radius():
    # a gap of two spacings splits two blocks into two places; a 30 km long strip is cut
    left = patch(0.0, -40_000.0, 5, 0.5)
    right = patch(5 * SPACING + SPACING, -40_000.0, 5, 0.4)  # one empty lattice column between
    ix = np.arange(150)
    strip = pd.DataFrame({"x": 30_000.0 + SPACING * ix, "y": np.full(ix.size, 30_000.0), "score": 0.3 - 1e-4 * ix})
    frame = scene(left, right, strip)
    order, place, _ = rank_distinct(frame)
    n_l, n_r = len(left), len(right)
    assert len(np.unique(place[:n_l])) == 1 and len(np.unique(place[n_l : n_l + n_r])) == 1
    assert place[0] != place[n_l]
    strip_places = place[n_l + n_r :]
    # 150 sites over 29.8 km, grown from the best end: each place is its leader and the next
    # 37 sites (7.4 km; the 38th is 7.6 km away), so 38 + 38 + 38 + 36 sites
    assert np.bincount(strip_places)[np.unique(strip_places)].tolist() == [38, 38, 38, 36]
    assert (np.diff(strip_places) >= 0).all()  # grown from the best end
    # place 1 holds the best site, and ids follow the leaders' ranks
    assert place[order[0]] == 1
    in_rank_order = place[order]
    _, first_seen = np.unique(in_rank_order, return_index=True)
    assert (np.diff(in_rank_order[np.sort(first_seen)]) == 1).all()  # place k+1 appears after place k


def test_a_place_within_the_separation_of_a_better_one_is_suppressed():
    a = patch(0.0, 20_000.0, 5, 0.9)
    near = patch(4_000.0, 20_000.0, 5, 0.8)  # its own place (not connected), 3 km from A
    far = patch(0.0, 60_000.0, 5, 0.7)
    frame = scene(a, near, far)
    _order, place, rd = rank_distinct(frame)
    assert len(np.unique(place)) == 3
    assert rd[: len(a)].max() == 1
    assert rd[len(a) : 2 * len(a)].max() == 0  # suppressed by A
    assert rd[2 * len(a) :].max() == 2
    # a smaller separation keeps it
    _, _, rd2 = rank_distinct(frame, separation_m=2_000.0)
    assert rd2[len(a) : 2 * len(a)].max() == 2 and rd2[2 * len(a) :].max() == 3


def test_distinct_top_k_shares_of_monte_carlo_draws():
    frame = scene(patch(20_000.0, 10_000.0, 6, 0.9), patch(20_000.0, 60_000.0, 6, 0.8), patch(-60_000.0, 0.0, 6, 0.7))
    lon, lat, ids = frame["lon"].to_numpy(), frame["lat"].to_numpy(), frame["site_id"].to_numpy()
    _order, place, rd = rank_distinct(frame)
    s = frame["score"].to_numpy()
    # identical draws: the central distinct top 2, in every draw
    p = distinct.p_top_distinct(np.vstack([s, s, s]), lon, lat, place, ids, separation_m=10_000.0, k=2)
    np.testing.assert_array_equal(p, np.isin(rd, [1, 2]).astype(float))
    # draws that reverse the scores: in half of them the worst sites lead
    p = distinct.p_top_distinct(np.vstack([s, -s]), lon, lat, place, ids, separation_m=10_000.0, k=2)
    assert p.sum() == pytest.approx(2.0)  # k sites per draw, averaged
    assert p.max() == 0.5 or p.max() == 1.0


def test_place_table_summarises_each_place():
    frame = scene(patch(20_000.0, 10_000.0, 4, 0.9), patch(20_000.0, 60_000.0, 3, 0.8))
    order, place, rd = rank_distinct(frame)
    ranked = frame.iloc[order].reset_index(drop=True)
    ranked["place_id"], ranked["rank_distinct"] = place[order], rd[order]
    ranked["rank"] = np.arange(1, len(ranked) + 1)
    table = distinct.place_table(ranked, 0.04)
    assert list(table["place_id"]) == [1, 2]
    assert list(table["n_sites"]) == [16, 9]
    assert table["area_km2"].to_numpy() == pytest.approx([0.64, 0.36])
    assert list(table["best_rank"]) == [1, 17] and list(table["rank_distinct"]) == [1, 2]
    assert table.loc[0, "score_max"] == ranked["score"].max()


@pytest.mark.parametrize("bad", [0.0, -5.0, float("nan")])
def test_bad_distances_are_one_line_errors(bad):
    frame = scene(patch(0.0, 10_000.0, 2, 0.5))
    lon, lat = frame["lon"].to_numpy(), frame["lat"].to_numpy()
    order = np.arange(len(frame))
    with pytest.raises(ConfigError, match="positive") as e:
        distinct.places(lon, lat, order, link_m=300.0, max_radius_m=bad)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="distinct_separation_m"):
        distinct.distinct_ranks(lon, lat, order, np.ones(len(frame), dtype=int), separation_m=bad)
