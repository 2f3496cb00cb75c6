"""Multi-criteria scoring of candidate base sites: weighted sum, TOPSIS, weight uncertainty, ranks.

The inputs are a site table ``features`` (one row per candidate, one numeric column per
feature; NaN where a feature is unknown) and the ``sites`` parameter set
(``prospect/config/sites.yaml``), where every criterion ``X`` has ``weight_X`` (>= 0) and
``direction_X`` (``benefit``: more is better; ``cost``: less is better).

Methods (docs/science.md section 6 lists weighted overlay, AHP and TOPSIS among the
published multi-criteria frameworks for lunar site selection):

* **Criteria** (:func:`criteria`): a criterion counts when its weight is positive and its
  feature column exists with at least one finite value; the kept weights are renormalised
  to sum to 1, so a missing layer redistributes its share instead of scoring zero.
* **Weighted sum** (:func:`weighted_sum`, the weighted overlay): each column is min-max
  scaled to a benefit ``b_ij`` in [0, 1] (1 = best site of the table, cost criteria
  inverted, an unknown value is the worst, 0) and ``S_i = sum_j w_j b_ij``.
  :func:`contributions` gives the terms ``w_j b_ij``, so every score can be explained.
* **TOPSIS** (:func:`topsis`; Hwang & Yoon 1981, *Multiple Attribute Decision Making*,
  Springer LNEMS 186; as used for lunar sites by Pena-Asensio et al. 2025, docs/science.md
  section 6): ``r_ij = x_ij / sqrt(sum_i x_ij^2)``, ``v_ij = w_j r_ij``; the ideal ``A+``
  takes per criterion the best ``v_ij`` (max for benefit, min for cost), the anti-ideal
  ``A-`` the worst; ``D+-_i`` are the Euclidean distances to them and
  ``C_i = D-_i / (D+_i + D-_i)``. An unknown value is replaced by the column's worst
  finite value first.
* **Weight uncertainty** (:func:`dirichlet_weights`): ``w ~ Dirichlet(c w0)`` with ``w0``
  the normalised weights and ``c = mc_weight_concentration``, so a share ``p`` has standard
  deviation ``sqrt(p (1 - p) / (c + 1))`` (the same model as the ice favourability,
  prospect/config/ice.yaml).
* **Ranks** (:func:`ranks`, :func:`summarise_draws`): 1 = best; per Monte Carlo draw the
  score and rank percentiles and ``P(top k)``, the share of draws in which a site ranks
  within the top ``k``.

Everything here is pure numpy/pandas and deterministic: randomness only enters through
the generator passed to :func:`dirichlet_weights`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from prospect.config import ParameterSet
from prospect.errors import ConfigError

_PREFIX = "weight_"


@dataclass(frozen=True)
class Criterion:
    """One scoring criterion: a feature column, its normalised weight share and direction."""

    name: str
    weight: float
    direction: str
    source: str
    status: str


def _values(features: pd.DataFrame, name: str) -> np.ndarray:
    """A feature column as floats; non-numbers and infinities become NaN (unknown)."""
    x = pd.to_numeric(features[name], errors="coerce").to_numpy(dtype=float)
    return np.where(np.isfinite(x), x, np.nan)


def _matrix(features: pd.DataFrame, crits: list[Criterion]) -> np.ndarray:
    """The (n, m) feature matrix of the criteria, NaN where unknown."""
    return np.column_stack([_values(features, c.name) for c in crits]) if crits else np.empty((len(features), 0))


def criteria(params: ParameterSet, features: pd.DataFrame) -> tuple[list[Criterion], dict[str, str]]:
    """The usable criteria (weights renormalised to sum 1) and ``{criterion: reason}`` for the dropped ones.

    Every parameter ``weight_X`` defines criterion ``X`` (direction ``direction_X``). It is
    kept when its weight is positive and ``features`` has a column ``X`` with at least one
    finite value; otherwise the reason is ``"weight 0"``, ``"no such feature"`` or
    ``"no finite value"``. Raises :class:`ConfigError` when nothing is kept.
    """
    kept: list[tuple[str, float]] = []
    dropped: dict[str, str] = {}
    for key in params.params:
        if not key.startswith(_PREFIX):
            continue
        name, w = key[len(_PREFIX) :], float(params[key])
        if w <= 0:
            dropped[name] = "weight 0"
        elif name not in features.columns:
            dropped[name] = "no such feature"
        elif not np.isfinite(_values(features, name)).any():
            dropped[name] = "no finite value"
        else:
            kept.append((name, w))
    if not kept:
        why = ", ".join(f"{_PREFIX}{k} ({v})" for k, v in dropped.items()) or "no weight_* parameter"
        raise ConfigError(f"sites: no scoring criterion has both a positive weight and a feature: {why}")
    total = sum(w for _, w in kept)
    crits = []
    for name, w in kept:
        p = params.param(_PREFIX + name)
        crits.append(
            Criterion(
                name=name, weight=w / total, direction=params[f"direction_{name}"], source=p.source, status=p.status
            )
        )
    return crits, dropped


def _weights(crits: list[Criterion], weights: np.ndarray | None) -> np.ndarray:
    """The criteria's weights, or ``weights`` checked to be (m,) or (n_draws, m)."""
    if weights is None:
        return np.array([c.weight for c in crits])
    w = np.asarray(weights, dtype=float)
    if w.ndim not in (1, 2) or w.shape[-1] != len(crits):
        raise ValueError(f"weights must have shape ({len(crits)},) or (n_draws, {len(crits)}), not {w.shape}")
    return w


def _is_cost(crits: list[Criterion]) -> np.ndarray:
    return np.array([c.direction == "cost" for c in crits], dtype=bool)


def benefit_matrix(features: pd.DataFrame, crits: list[Criterion]) -> np.ndarray:
    """(n, m) min-max benefits in [0, 1]: 1 = best site (cost criteria inverted), NaN -> 0.

    A column whose finite values are all equal scores 1.0 for every site that has a value.
    """
    x = _matrix(features, crits)
    b = minmax(np.where(_is_cost(crits), -x, x), axis=0)  # a cost column negated: (hi - x) / (hi - lo)
    return np.where(np.isnan(x), 0.0, b)


def minmax(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """``(x - min) / (max - min)`` along ``axis`` over the finite values; 1.0 where they are all equal; NaN stays."""
    with np.errstate(all="ignore"):  # all-NaN columns (only with hand-made criteria)
        lo, hi = np.nanmin(x, axis=axis, keepdims=True), np.nanmax(x, axis=axis, keepdims=True)
    span = hi - lo
    return np.where(span > 0, (x - lo) / np.where(span > 0, span, 1.0), np.where(np.isnan(x), np.nan, 1.0))


def weighted_sum(features: pd.DataFrame, crits: list[Criterion], weights: np.ndarray | None = None) -> np.ndarray:
    """``S_i = sum_j w_j b_ij``: (n,) for (m,) weights (default: the criteria's), (n_draws, n) for (n_draws, m)."""
    return _weights(crits, weights) @ benefit_matrix(features, crits).T


def contributions(features: pd.DataFrame, crits: list[Criterion]) -> pd.DataFrame:
    """The terms ``w_j b_ij`` of the weighted sum, one column per criterion (rows sum to the score)."""
    terms = benefit_matrix(features, crits) * _weights(crits, None)
    return pd.DataFrame(terms, index=features.index, columns=[c.name for c in crits])


def topsis(features: pd.DataFrame, crits: list[Criterion], weights: np.ndarray | None = None) -> np.ndarray:
    """TOPSIS closeness ``C_i = D-_i / (D+_i + D-_i)`` in [0, 1] (Hwang & Yoon 1981; Pena-Asensio et al. 2025).

    ``r_ij = x_ij / sqrt(sum_i x_ij^2)``, ``v_ij = w_j r_ij``; the ideal is the best ``v``
    per criterion (max for benefit, min for cost), the anti-ideal the worst. NaN is
    replaced by the column's worst finite value; a zero-norm column contributes nothing;
    a site with ``D+ + D- = 0`` (all sites equal) scores 1.0. Weights broadcast as in
    :func:`weighted_sum`.
    """
    x = _matrix(features, crits)
    cost = _is_cost(crits)
    with np.errstate(all="ignore"):
        worst = np.where(cost, np.nanmax(x, axis=0), np.nanmin(x, axis=0))
    x = np.nan_to_num(np.where(np.isnan(x), worst, x))  # an all-NaN column becomes 0 (zero norm)
    norm = np.sqrt((x**2).sum(axis=0))
    r = x / np.where(norm > 0, norm, 1.0)
    w = _weights(crits, weights)
    v = w[..., None, :] * r  # (n, m) or (n_draws, n, m)
    vmax, vmin = v.max(axis=-2, keepdims=True), v.min(axis=-2, keepdims=True)
    ideal, anti = np.where(cost, vmin, vmax), np.where(cost, vmax, vmin)
    d_plus = np.sqrt(((v - ideal) ** 2).sum(axis=-1))
    d_minus = np.sqrt(((v - anti) ** 2).sum(axis=-1))
    total = d_plus + d_minus
    return np.where(total > 0, d_minus / np.where(total > 0, total, 1.0), 1.0)


def dirichlet_weights(crits: list[Criterion], n: int, rng: np.random.Generator, concentration: float) -> np.ndarray:
    """``n`` weight vectors ``w ~ Dirichlet(concentration * w0)`` (w0: the criteria's shares); (n, m), rows sum 1.

    The mean is ``w0``; a share ``p`` has standard deviation ``sqrt(p (1 - p) / (c + 1))``.
    """
    if not concentration > 0:
        raise ConfigError(f"sites: mc_weight_concentration must be positive, not {concentration!r}")
    w0 = _weights(crits, None)
    return rng.dirichlet(concentration * w0 / w0.sum(), size=n)


def ranks(scores: np.ndarray, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """Ranks by descending score, 1 = best, along the last axis ((n,) or (n_draws, n)).

    Ties are broken deterministically: by ascending ``tiebreak`` keys (e.g. site ids) when
    given, else the earlier row wins. NaN scores rank last.
    """
    s = np.asarray(scores, dtype=float)
    keys = np.arange(s.shape[-1]) if tiebreak is None else np.asarray(tiebreak)
    order = np.lexsort((np.broadcast_to(keys, s.shape), -s))
    out = np.empty(s.shape, dtype=int)
    np.put_along_axis(out, order, np.broadcast_to(np.arange(1, s.shape[-1] + 1), s.shape), axis=-1)
    return out


def _shared_ranks(draws: np.ndarray) -> np.ndarray:
    """Per draw, 1 + the number of sites with a strictly higher score (ties share the best rank; NaN last)."""
    n_draws, n = draws.shape
    # one draw at a time into integer ranks: no float copy of all draws (at 200 draws of 200k
    # sites each copy is 320 MB)
    out = np.empty(draws.shape, dtype=np.int32 if n < 2**31 - 1 else np.int64)
    for i in range(n_draws):
        row = np.where(np.isnan(draws[i]), -np.inf, draws[i])
        out[i] = n - np.searchsorted(np.sort(row), row, side="right") + 1
    return out


#: sites per block when summarising Monte Carlo draws (percentiles copy what they sort)
_SUMMARY_BLOCK = 16384


def summarise_draws(draws: np.ndarray, k: int) -> pd.DataFrame:
    """Per site, from Monte Carlo scores ``draws`` (n_draws, n_sites): score and rank intervals and P(top k).

    Columns ``score_p05``, ``score_p50``, ``score_p95``, ``p_top{k}`` (share of draws in
    which the site ranks <= k), ``rank_p05``, ``rank_p95`` (percentiles with linear
    interpolation). Tied sites share the best rank of the tie, so identical sites get
    identical summaries.
    """
    d = np.atleast_2d(np.asarray(draws, dtype=float))
    r = _shared_ranks(d)
    n = d.shape[1]
    s = np.empty((3, n))
    q = np.empty((2, n))
    top = np.empty(n)
    for j0 in range(0, n, _SUMMARY_BLOCK):  # per site, so blocks give the same numbers as one call
        j1 = min(j0 + _SUMMARY_BLOCK, n)
        s[:, j0:j1] = np.percentile(d[:, j0:j1], [5, 50, 95], axis=0)
        q[:, j0:j1] = np.percentile(r[:, j0:j1], [5, 95], axis=0)
        top[j0:j1] = (r[:, j0:j1] <= k).mean(axis=0)
    return pd.DataFrame(
        {
            "score_p05": s[0],
            "score_p50": s[1],
            "score_p95": s[2],
            f"p_top{k}": top,
            "rank_p05": q[0],
            "rank_p95": q[1],
        }
    )
