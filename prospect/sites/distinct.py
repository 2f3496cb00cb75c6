"""Distinct options: passing sites grouped into places, and a ranking with one site per place.

A ranked site table answers "which pixels score best", and the best pixels of a good ridge
are its neighbours: on the real 1.6 km pipeline the top 30 sites fell in 10 places, ranks
2, 3, 5, 8, 12-14, 24 and 30 all on Malapert Massif. Planners compare separate regions
(NASA's 13 Artemis III candidate regions are ~15 x 15 km boxes, docs/science.md section 6),
so the site stage also gives:

**Places** (:func:`places`). Passing sites are *connected* when they are lattice neighbours
(great-circle distance <= ``place_link_spacings`` x the lattice spacing; 1.5 joins the
diagonal neighbours, so a connected passing area is one component). A place is grown from
the best site not yet in a place (the leader, in rank order): every site of the leader's
component within ``place_max_radius_m`` of it (great circle) that is not yet in a place joins.
So a place is part of one connected passing area, at most a region's size across (7.5 km
radius by default, half the Artemis region box), and its best site is its leader. Place ids
follow their leader's rank: place 1 holds the best site.

**Distinct ranking** (:func:`distinct_ranks`). The best site of each place, in score order,
each kept only if it is at least ``distinct_separation_m`` (great circle) from every kept
better site: ``rank_distinct`` 1, 2, ... for the kept, 0 for every other site. The distinct
top N therefore spans N separate places by construction, at least the separation apart.

**Its uncertainty** (:func:`p_top_distinct`). In each Monte Carlo draw of the combined score
the same rule picks the distinct top ``k`` (with the draw's best site of each place), and
``p_top{k}_distinct`` is the share of draws in which a site is among them.

Pure functions on arrays (lon/lat in degrees, planetocentric); the Moon's radius and the
chord/arc conversions come from :mod:`prospect.lunar`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from prospect import lunar
from prospect.errors import ConfigError

__all__ = ["distinct_ranks", "p_top_distinct", "place_table", "places", "score_order"]


def score_order(scores: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Row indices by descending score, ties by ascending ``tiebreak`` (site ids), NaN last
    (the order of :func:`prospect.sites.mcda.ranks`)."""
    s = np.asarray(scores, dtype="float64")
    s = np.where(np.isnan(s), -np.inf, s)
    return np.lexsort((np.asarray(tiebreak), -s))


def _check_positive(name: str, value: float) -> float:
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise ConfigError(f"sites.{name}: must be a positive number, not {value!r}")
    return v


def places(lon: np.ndarray, lat: np.ndarray, order: np.ndarray, *, link_m: float, max_radius_m: float) -> np.ndarray:
    """Place id (1, 2, ...) of every site; ``order`` is the rank order (best first).

    Components of the sites linked within ``link_m`` [m], cut into places of at most
    ``max_radius_m`` [m] around their leader, the best site not yet placed (module doc).
    """
    link_m = _check_positive("place_link", link_m)
    max_radius_m = _check_positive("place_max_radius_m", max_radius_m)
    n = np.size(lon)
    out = np.zeros(n, dtype=np.int64)
    if n == 0:
        return out
    u = lunar.unit_vectors(np.asarray(lon, dtype="float64"), np.asarray(lat, dtype="float64"))
    tree = cKDTree(u)
    pairs = tree.query_pairs(float(lunar.arc_to_chord(link_m)), output_type="ndarray")
    adjacency = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, component = connected_components(adjacency, directed=False)
    chord = float(lunar.arc_to_chord(max_radius_m))
    place = 0
    for leader in np.asarray(order):
        if out[leader]:
            continue
        place += 1
        near = np.asarray(tree.query_ball_point(u[leader], chord), dtype=np.int64)
        near = near[(out[near] == 0) & (component[near] == component[leader])]
        out[near] = place
        out[leader] = place  # always (a ball query on the point itself could round it out)
    return out


def _accept(u: np.ndarray, kept: list[int], candidate: int, chord: float) -> bool:
    if not kept:
        return True
    d2 = ((u[kept] - u[candidate]) ** 2).sum(axis=1)
    return bool(d2.min() >= chord * chord)


def distinct_ranks(
    lon: np.ndarray,
    lat: np.ndarray,
    order: np.ndarray,
    place: np.ndarray,
    *,
    separation_m: float,
    limit: int | None = None,
) -> np.ndarray:
    """``rank_distinct`` of every site: 1, 2, ... for the best site of each place kept by the
    greedy separation rule (module doc), 0 for the others; at most ``limit`` kept."""
    chord = float(lunar.arc_to_chord(_check_positive("distinct_separation_m", separation_m)))
    u = lunar.unit_vectors(np.asarray(lon, dtype="float64"), np.asarray(lat, dtype="float64"))
    out = np.zeros(np.size(lon), dtype=np.int64)
    seen = np.zeros(int(np.max(place, initial=0)) + 1, dtype=bool)
    kept: list[int] = []
    for i in np.asarray(order):
        if seen[place[i]]:
            continue
        seen[place[i]] = True
        if _accept(u, kept, int(i), chord):
            kept.append(int(i))
            out[i] = len(kept)
            if limit is not None and len(kept) >= limit:
                break
    return out


def p_top_distinct(
    draws: np.ndarray,
    lon: np.ndarray,
    lat: np.ndarray,
    place: np.ndarray,
    tiebreak: np.ndarray,
    *,
    separation_m: float,
    k: int,
) -> np.ndarray:
    """Share of the Monte Carlo ``draws`` (n_draws, n_sites) in which each site is in the distinct top ``k``.

    Per draw, the distinct top ``k`` under that draw's scores (the draw's best site of each
    place, the same separation rule); the places stay those of the central ranking.
    """
    d = np.atleast_2d(np.asarray(draws, dtype="float64"))
    count = np.zeros(d.shape[1], dtype=np.int64)
    for row in d:
        count += distinct_ranks(lon, lat, score_order(row, tiebreak), place, separation_m=separation_m, limit=k).astype(
            bool
        )
    return count / max(1, d.shape[0])


def place_table(frame: pd.DataFrame, cell_area_km2: np.ndarray | float, place_col: str = "place_id") -> pd.DataFrame:
    """One row per place of a ranked site table (in rank order): its best site, size and scores.

    Columns: ``place_id``, ``best_site_id``, ``best_rank``, ``rank_distinct`` (of its best
    site, 0 when suppressed by a better place's site nearby), ``n_sites``, ``area_km2`` (the
    sum of its sites' ``cell_area_km2``: the ground area each lattice point stands for),
    ``score_max``, ``score_median``, ``score_min``, and the best site's ``x``, ``y``, ``lon``, ``lat``.
    """
    area = pd.Series(np.broadcast_to(np.asarray(cell_area_km2, dtype="float64"), (len(frame),)), index=frame.index)
    g = frame.groupby(place_col, sort=True)
    first = g.head(1).set_index(place_col)  # rank order: the first row of a place is its best site
    table = pd.DataFrame(
        {
            "place_id": first.index.to_numpy(dtype=np.int64),
            "best_site_id": first["site_id"].to_numpy(),
            "best_rank": first["rank"].to_numpy(),
            "rank_distinct": first["rank_distinct"].to_numpy() if "rank_distinct" in first else 0,
            "n_sites": g.size().reindex(first.index).to_numpy(),
            "area_km2": area.groupby(frame[place_col]).sum().reindex(first.index).to_numpy(),
            "score_max": g["score"].max().reindex(first.index).to_numpy(),
            "score_median": g["score"].median().reindex(first.index).to_numpy(),
            "score_min": g["score"].min().reindex(first.index).to_numpy(),
            "x": first["x"].to_numpy(),
            "y": first["y"].to_numpy(),
            "lon": first["lon"].to_numpy(),
            "lat": first["lat"].to_numpy(),
        }
    )
    return table.sort_values("best_rank", kind="stable").reset_index(drop=True)
