"""Learned site scoring from the expert-chosen Artemis III regions (positive-unlabelled).

The only labels are NASA's 13 Artemis III candidate regions (2022): candidate sites
inside a region's lon/lat box are *positives*; every other site is *unlabelled*, not
negative -- an unlabelled site may be as good as an expert one that nobody drew a box
around. This is presence-only / positive-unlabelled (PU) learning.

Approach (Elkan & Noto 2008, "Learning classifiers from only positive and unlabeled
data", KDD '08, doi:10.1145/1401890.1401920): a classifier trained to separate the
labelled positives from the unlabelled background estimates ``g(x) = c * f(x)``, a
constant multiple of the true suitability ``f(x)`` when labelled sites are picked at
random from the suitable ones, so its *ranking* is what carries over. We bag it over
random background samples (as in Mordelet & Vert 2014, "A bagging SVM to learn from
positive and unlabeled examples", Pattern Recognit. Lett. 37:201-209): each member sees
all positives plus ``background_per_positive`` unlabelled sites per positive, fits its
base model and is calibrated with Platt's sigmoid on spatial-block folds. Base models
(``estimator``, :data:`ESTIMATORS`):

- ``"logistic"``: median imputation, standardisation and an L2 logistic regression. With
  a dozen expert regions a low-variance model is the safer choice: its coefficients read
  as directions, and it extrapolates monotonically (trees saturate).
- ``"hist_gradient_boosting"``: a small :class:`~sklearn.ensemble.HistGradientBoostingClassifier`
  (NaN-aware) for interactions and thresholds, at the price of variance.
- the **monotone** models (:data:`MONOTONE`), which take the directions every planner
  agrees on (``directions``: the ``direction_<feature>`` entries of the site parameters,
  benefit = more is better, cost = less is better; features without one are free):
  ``"monotone_hist_gradient_boosting"`` (the boosted trees with ``monotonic_cst`` +1 /
  -1 / 0) and ``"sign_constrained_logistic"`` (:class:`SignConstrainedLogistic`: the
  logistic regression with each standardised coefficient bounded to the sign of its
  direction, L-BFGS-B). A better site on a directed feature never scores lower (a
  calibration fold that would reverse the order is flattened to a constant).

**The learned score** (``score_learned``) is the ensemble mean of the members' calibrated
log-odds: a member's log-odds are the mean over its calibration folds of the Platt line
``-(a f(x) + b)`` of the base model's decision function ``f`` (:func:`predict`). It is
linear in every ``f``, so :func:`contributions` split it exactly (to rounding) into a base
and one term per feature: through the imputer and scaler for the linear models, by Saabas
path attributions for the trees. ``predict(..., output="probability")`` gives the members'
calibrated probabilities (for the Brier score and the reliability table). The spread of
the members is the score's uncertainty.

Scores are *relative suitability*: calibrated to the member's sampling ratio (one positive
per ``background_per_positive`` background sites), they rank sites and compare them, but
they are not the chance that an expert would pick a site.

Evaluation: neighbouring sites share terrain, so random folds leak and flatter a model.
:func:`spatial_cv` holds out whole square blocks (Roberts et al. 2017, "Cross-validation
strategies for data with temporal, spatial, hierarchical, or phylogenetic structure",
Ecography 40:913-929, doi:10.1111/ecog.02881) and reports ROC AUC, average precision,
the Brier score and a reliability table; :func:`leave_one_region_out` hides one expert
region at a time (plus a buffer around it) and asks whether the model still puts one
of its sites near the top (:func:`region_recall`, usable for any score, e.g. the
multi-criteria baseline). :func:`permutation_importances` names the features behind a
score (docs/science.md section 6).

Persistence (skops, never pickle) is file I/O and lives in :mod:`prospect.io.models`.

Speed: the members of an ensemble are independent, so :func:`fit_pu` fits them in
``workers`` processes (:func:`site_workers`: both cores by default) once the problem is
large enough to pay for it; every fit and prediction runs with one BLAS thread (these
are small matrices, where BLAS threads only spin against each other). The seeds and
background draws are made before the fits, in the same order, so the ensemble is the
same whatever the number of workers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from prospect import lunar
from prospect.errors import ConfigError

__all__ = [
    "ESTIMATORS",
    "FEATURE_SETS",
    "MONOTONE",
    "PUEnsemble",
    "SignConstrainedLogistic",
    "check_estimator",
    "contributions",
    "direction_signs",
    "fit_pu",
    "leave_one_region_out",
    "permutation_importances",
    "predict",
    "recall_summary",
    "region_membership",
    "region_recall",
    "spatial_blocks",
    "spatial_cv",
    "variant",
]

_BBOX = ("bbox_min_lon", "bbox_min_lat", "bbox_max_lon", "bbox_max_lat")
_CALIBRATION_FOLDS = 3
#: Fits smaller than this (member rows x members) run in this process: a worker's start and
#: the data's transfer cost more than they save.
PARALLEL_MIN_WORK = 200_000


def site_workers() -> int:
    """Processes for the site stage's independent parts: ``PROSPECT_SITE_WORKERS`` if set, else
    Dask's ``num_workers`` when set (``prospect run --workers``), else the CPUs this process
    may use, at most 2 (this machine's cores)."""
    import dask

    env = os.environ.get("PROSPECT_SITE_WORKERS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise ConfigError(f"PROSPECT_SITE_WORKERS must be a whole number of at least 1, not {env!r}")
        return n
    configured = dask.config.get("num_workers", None)
    if configured:
        return max(1, int(configured))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(2, cpus))


def _map(fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], workers: int) -> list[Any]:
    """``[fn(*job) for job in jobs]``, in ``workers`` processes (joblib's loky) when above 1; order kept."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(*job) for job in jobs]
    from joblib import Parallel, delayed

    return list(Parallel(n_jobs=min(workers, len(jobs)), backend="loky")(delayed(fn)(*job) for job in jobs))


#: Base models of :func:`fit_pu` (``estimator=``).
ESTIMATORS = (
    "logistic",
    "hist_gradient_boosting",
    "monotone_hist_gradient_boosting",
    "sign_constrained_logistic",
)
#: The base models that take the feature directions (``directions=`` of :func:`fit_pu`).
MONOTONE = frozenset({"monotone_hist_gradient_boosting", "sign_constrained_logistic"})
#: Outputs of :func:`predict`.
OUTPUTS = ("log_odds", "probability")


def check_estimator(estimator: Any, what: str = "learned_estimator") -> str:
    """``estimator`` if it names a base model (:data:`ESTIMATORS`), else a one-line :class:`ConfigError`."""
    if not isinstance(estimator, str) or estimator not in ESTIMATORS:
        raise ConfigError(f"{what} must be one of {list(ESTIMATORS)}, not {estimator!r}")
    return estimator


#: Feature sets of the learned model (``learned_features``, the part of a variant after the
#: estimator): every feature column (``all``) or only the multi-criteria criteria's
#: (``criteria``: the features with a positive ``weight_*``), each optionally with the
#: multi-scale context features (``+multiscale``).
FEATURE_SETS = ("all", "criteria", "all+multiscale", "criteria+multiscale")


def variant(name: Any, what: str = "learned_variants") -> tuple[str, str]:
    """A model variant ``"<estimator>[+criteria][+multiscale]"`` as ``(estimator, feature set)``
    (:data:`ESTIMATORS`, :data:`FEATURE_SETS`; no ``+criteria`` means all features);
    anything else is a one-line :class:`ConfigError`."""
    if not isinstance(name, str):
        raise ConfigError(f"{what}: a variant is a string like 'logistic+criteria+multiscale', not {name!r}")
    est, *options = name.split("+")
    if est not in ESTIMATORS or not set(options) <= {"criteria", "multiscale"} or len(set(options)) != len(options):
        raise ConfigError(
            f"{what}: unknown variant {name!r}; a variant is one of {list(ESTIMATORS)}, "
            "optionally followed by +criteria and/or +multiscale"
        )
    features = ("criteria" if "criteria" in options else "all") + ("+multiscale" if "multiscale" in options else "")
    return est, features


def direction_signs(feature_names: Sequence[str], directions: Mapping[str, Any] | None) -> tuple[int, ...]:
    """Per feature +1 (benefit: more is better), -1 (cost) or 0 (no agreed direction).

    ``directions`` maps feature names to ``"benefit"``/``"cost"`` or +1/-1/0; features it
    does not name get 0. Anything else is a one-line :class:`ConfigError`.
    """
    out = []
    for name in feature_names:
        d = (directions or {}).get(name, 0)
        number = isinstance(d, (int, float, np.integer, np.floating)) and not isinstance(d, (bool, np.bool_))
        if d == "benefit" or (number and d == 1):
            out.append(1)
        elif d == "cost" or (number and d == -1):
            out.append(-1)
        elif d is None or (number and d == 0):
            out.append(0)
        else:
            raise ConfigError(f"direction of feature {name!r} must be benefit, cost, +1, -1 or 0, not {d!r}")
    return tuple(out)


@dataclass
class PUEnsemble:
    """A bagged, calibrated PU classifier: ``members`` share ``feature_names``; ``info`` records the fit."""

    members: list[Any]
    feature_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)


# --- labels and blocks --------------------------------------------------------------


def region_polygons(regions: Any, crs: lunar.LunarCRS, edge_points: int = 32) -> Any:
    """The expert regions as polygons in ``crs``, for maps: lon/lat boxes (the columns
    :func:`region_membership` reads; a box with ``min_lon > max_lon`` crosses the
    antimeridian) become their outline densified to ``edge_points`` per edge, so a box
    keeps its true shape in a polar projection. Regions given as polygons are reprojected."""
    import geopandas as gpd
    import shapely

    if not all(c in regions.columns for c in _BBOX):
        return regions.to_crs(crs.to_pyproj())
    t = np.linspace(0.0, 1.0, edge_points, endpoint=False)
    polys = []
    for _, row in regions.iterrows():
        lo, hi = (float(lunar.normalize_longitude(row[c])) for c in ("bbox_min_lon", "bbox_max_lon"))
        s, n = float(row["bbox_min_lat"]), float(row["bbox_max_lat"])
        width = (hi - lo) % 360.0
        lon = np.concatenate(
            [lo + width * t, np.full(edge_points, lo + width), lo + width * (1 - t), np.full(edge_points, lo)]
        )
        lat = np.concatenate([np.full(edge_points, s), s + (n - s) * t, np.full(edge_points, n), n - (n - s) * t])
        x, y = lunar.lonlat_to_xy(crs, lunar.normalize_longitude(lon), lat)
        polys.append(shapely.Polygon(np.column_stack([x, y])))
    attrs = regions.drop(columns=[c for c in ("geometry",) if c in regions.columns])
    return gpd.GeoDataFrame(pd.DataFrame(attrs).reset_index(drop=True), geometry=polys, crs=crs.to_pyproj())


def region_membership(lon: Any, lat: Any, regions: pd.DataFrame) -> np.ndarray:
    """Row position in ``regions`` of the region containing each point, ``-1`` outside all.

    Regions are lon/lat boxes (``bbox_min_lon`` ... ``bbox_max_lat``; a box with
    ``min_lon > max_lon`` crosses the antimeridian) or, without those columns, polygon
    geometries in a lunar geographic CRS. Where boxes overlap (Nobile Rim 1 and
    Leibnitz Beta Plateau do) a point goes to the region with the nearest centre.
    """
    lon = lunar.normalize_longitude(np.atleast_1d(np.asarray(lon, dtype="float64")))
    lat = np.atleast_1d(np.asarray(lat, dtype="float64"))
    if lon.shape != lat.shape:
        raise ConfigError(f"region_membership: lon and lat differ in shape ({lon.shape} vs {lat.shape})")
    if all(c in regions.columns for c in _BBOX):
        b = {c: pd.to_numeric(regions[c], errors="coerce").to_numpy(dtype="float64") for c in _BBOX}
        lo, hi = lunar.normalize_longitude(b["bbox_min_lon"]), lunar.normalize_longitude(b["bbox_max_lon"])
        if "center_lon" in regions.columns and "center_lat" in regions.columns:
            clon, clat = regions["center_lon"].to_numpy(float), regions["center_lat"].to_numpy(float)
        else:
            clon = lunar.normalize_longitude(lo + np.mod(hi - lo, 360.0) / 2)
            clat = (b["bbox_min_lat"] + b["bbox_max_lat"]) / 2

        def inside(j: int) -> np.ndarray:
            in_lat = (lat >= b["bbox_min_lat"][j]) & (lat <= b["bbox_max_lat"][j])
            in_lon = ((lon >= lo[j]) & (lon <= hi[j])) if lo[j] <= hi[j] else ((lon >= lo[j]) | (lon <= hi[j]))
            return in_lat & in_lon
    else:
        import shapely

        geoms = getattr(regions, "geometry", None)
        if geoms is None or not geoms.geom_type.isin(["Polygon", "MultiPolygon"]).all():
            raise ConfigError(
                f"regions: need columns {', '.join(_BBOX)} or polygon geometries (columns: {list(regions.columns)})"
            )
        if not lunar.identify(regions.crs, source="regions").is_geographic:
            raise ConfigError("regions: polygon geometries must be in a lunar geographic CRS (IAU_2015:30100)")
        polys = list(geoms)
        centroids = shapely.centroid(np.asarray(polys))
        clon, clat = shapely.get_x(centroids), shapely.get_y(centroids)

        def inside(j: int) -> np.ndarray:
            return shapely.contains_xy(polys[j], lon, lat)

    out = np.full(lon.shape, -1, dtype=np.int64)
    best = np.full(lon.shape, np.inf)
    for j in range(len(regions)):
        hit = inside(j)
        d = np.where(hit, lunar.great_circle_distance_m(lon, lat, clon[j], clat[j]), np.inf)
        closer = d < best
        out[closer], best[closer] = j, d[closer]
    return out


def spatial_blocks(x: Any, y: Any, block_m: float) -> np.ndarray:
    """Dense ids (``0..k-1``, in (column, row) order) of the ``block_m`` squares holding map points x, y [m]."""
    if not np.isfinite(block_m) or block_m <= 0:
        raise ConfigError(f"block size must be a positive length in metres, not {block_m!r}")
    x, y = np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ConfigError("spatial_blocks: map coordinates x, y contain NaN or infinity")
    cells = np.column_stack([np.floor(x / block_m), np.floor(y / block_m)]).astype(np.int64)
    return np.unique(cells, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)


# --- the ensemble -------------------------------------------------------------------


def _features(X: pd.DataFrame, who: str) -> np.ndarray:
    bad = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    if bad:
        raise ConfigError(f"{who}: feature columns must be numeric; not {bad}")
    return X.to_numpy(dtype="float64")


def _check_rows(X: pd.DataFrame, *arrays: np.ndarray) -> None:
    for a in arrays:
        if len(a) != len(X):
            raise ConfigError(f"features have {len(X)} rows but labels/blocks have {len(a)}")


def _calibration_cv(y: np.ndarray, groups: np.ndarray, seed: int) -> tuple[Any, str]:
    """Spatial-block folds with positives on both sides; else stratified folds; else none."""
    k = min(_CALIBRATION_FOLDS, len(np.unique(groups[y])))
    if k >= 2:
        splitter = StratifiedGroupKFold(k, shuffle=True, random_state=seed)
        splits = [(tr, te) for tr, te in splitter.split(y, y, groups) if y[tr].any() and y[te].any()]
        if len(splits) >= 2:
            return splits, "spatial"
    n_pos = int(y.sum())
    if n_pos >= 2:
        splitter = StratifiedKFold(min(_CALIBRATION_FOLDS, n_pos), shuffle=True, random_state=seed)
        return list(splitter.split(y, y)), "stratified"
    return None, "none"


class SignConstrainedLogistic(ClassifierMixin, BaseEstimator):
    """L2 logistic regression whose coefficients keep given signs (a monotone linear model).

    Minimises ``C * sum_i logloss_i + |w|^2 / 2`` (scikit-learn's ``LogisticRegression``
    objective; the intercept is not penalised) with L-BFGS-B under the bounds ``w_j >= 0``
    where ``signs[j] = +1``, ``w_j <= 0`` where ``-1``, free where ``0``. Meant for
    standardised inputs (after :class:`~sklearn.preprocessing.StandardScaler`, whose positive
    scale keeps the signs). :meth:`as_logistic_regression` gives the fitted model as the
    plain ``LogisticRegression`` it equals (what :func:`fit_pu` keeps, so saved models hold
    only the types :mod:`prospect.io.models` loads).
    """

    def __init__(self, signs: Sequence[int] = (), C: float = 1.0, max_iter: int = 1000, tol: float = 1e-10) -> None:
        self.signs = signs
        self.C = C
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X: Any, y: Any) -> SignConstrainedLogistic:
        from scipy.optimize import minimize
        from scipy.special import expit, log_expit

        X = np.asarray(X, dtype="float64")
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) != 2:
            raise ValueError(f"SignConstrainedLogistic needs two classes, got {self.classes_.tolist()}")
        t = (y == self.classes_[1]).astype("float64")
        m = X.shape[1]
        signs = np.asarray(self.signs if len(self.signs) else np.zeros(m), dtype="float64")
        if signs.shape != (m,) or not np.isin(signs, (-1, 0, 1)).all():
            raise ValueError(f"signs must be {m} values of -1, 0 or +1, not {list(self.signs)}")
        s = 2.0 * t - 1.0  # +-1 labels: logloss_i = -log sigmoid(s_i z_i)

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w, b = theta[:m], theta[m]
            z = X @ w + b
            value = -self.C * log_expit(s * z).sum() + 0.5 * w @ w
            r = -self.C * s * expit(-s * z)  # d loss / d z
            return float(value), np.concatenate([X.T @ r + w, [r.sum()]])

        bounds = [(0.0, None) if g > 0 else (None, 0.0) if g < 0 else (None, None) for g in signs] + [(None, None)]
        res = minimize(
            loss,
            np.zeros(m + 1),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": int(self.max_iter), "ftol": self.tol, "gtol": 1e-8},
        )
        w = np.clip(res.x[:m], np.where(signs > 0, 0.0, -np.inf), np.where(signs < 0, 0.0, np.inf))
        self.coef_ = w.reshape(1, m)
        self.intercept_ = np.array([res.x[m]])
        self.n_iter_ = np.array([int(res.nit)], dtype=np.int32)
        self.n_features_in_ = m
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        return np.asarray(X, dtype="float64") @ self.coef_[0] + self.intercept_[0]

    def predict_proba(self, X: Any) -> np.ndarray:
        from scipy.special import expit

        p = expit(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[(self.decision_function(X) > 0).astype(int)]

    def as_logistic_regression(self) -> LogisticRegression:
        """A fitted ``LogisticRegression`` with these coefficients (same decision function)."""
        lr = LogisticRegression(C=self.C, max_iter=self.max_iter)
        lr.classes_ = self.classes_
        lr.coef_ = self.coef_.copy()
        lr.intercept_ = self.intercept_.copy()
        lr.n_iter_ = self.n_iter_.copy()
        lr.n_features_in_ = self.n_features_in_
        return lr


def _plain(model: Any) -> Any:
    """``model`` with every fitted :class:`SignConstrainedLogistic` step replaced by its
    ``LogisticRegression`` (:meth:`SignConstrainedLogistic.as_logistic_regression`), and the
    unfitted template of a calibrated model likewise, in place."""

    def swap(pipe: Any, fitted: bool) -> Any:
        if isinstance(pipe, Pipeline) and isinstance(pipe.steps[-1][1], SignConstrainedLogistic):
            last = pipe.steps[-1][1]
            pipe.steps[-1] = (
                pipe.steps[-1][0],
                last.as_logistic_regression() if fitted else LogisticRegression(C=last.C, max_iter=last.max_iter),
            )
        return pipe

    if isinstance(model, CalibratedClassifierCV):
        for cc in model.calibrated_classifiers_:
            swap(cc.estimator, True)
        swap(model.estimator, False)
        return model
    return swap(model, True)


def _base_model(
    estimator: str,
    seed: int,
    *,
    max_iter: int,
    max_depth: int,
    learning_rate: float,
    signs: Sequence[int] = (),
) -> Any:
    if estimator == "logistic":
        return make_pipeline(
            SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)
        )
    if estimator == "sign_constrained_logistic":
        # keep_empty_features: a column without any value in a member's sample stays (as 0),
        # so the signs stay aligned with the columns
        return make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            StandardScaler(),
            SignConstrainedLogistic(signs=tuple(int(v) for v in signs), C=1.0),
        )
    return HistGradientBoostingClassifier(
        max_depth=max_depth,
        max_iter=max_iter,
        learning_rate=learning_rate,
        early_stopping=False,
        random_state=seed,
        monotonic_cst=list(signs) if estimator == "monotone_hist_gradient_boosting" and any(signs) else None,
    )


def _fit_member(
    data: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    estimator: str,
    member_seed: int,
    max_iter: int,
    max_depth: int,
    learning_rate: float,
    signs: Sequence[int] = (),
) -> tuple[Any, str]:
    """One member: the base model, sigmoid-calibrated on spatial folds (see :func:`fit_pu`), one BLAS thread."""
    with threadpool_limits(1):
        base = _base_model(
            estimator, member_seed, max_iter=max_iter, max_depth=max_depth, learning_rate=learning_rate, signs=signs
        )
        cv, mode = _calibration_cv(y, groups, member_seed)
        model = base if cv is None else CalibratedClassifierCV(base, method="sigmoid", cv=cv)
        model = _plain(model.fit(data, y))
        if estimator in MONOTONE and isinstance(model, CalibratedClassifierCV):
            # a calibration fold whose positives score lower than its background would fit
            # a > 0 and reverse the model's order (and its directions): flatten it instead
            for cc in model.calibrated_classifiers_:
                cal = cc.calibrators[0]
                if cal.a_ > 0:
                    cal.a_ = 0.0
        return model, mode


def fit_pu(
    X: pd.DataFrame,
    positive: Any,
    blocks: Any,
    *,
    members: int = 16,
    background_per_positive: int = 10,
    seed: int = 0,
    estimator: str = "logistic",
    max_iter: int = 100,
    max_depth: int = 3,
    learning_rate: float = 0.1,
    directions: Mapping[str, Any] | None = None,
    workers: int | None = None,
) -> PUEnsemble:
    """Fit ``members`` calibrated classifiers, each on all positives + a background draw.

    ``workers``: processes for the members (default :func:`site_workers`; the result does
    not depend on it).

    ``estimator``: one of :data:`ESTIMATORS` (see the module doc; ``max_iter``,
    ``max_depth`` and ``learning_rate`` are the boosted trees' settings).
    ``directions``: ``{feature: "benefit" | "cost" | +1 | -1 | 0}``
    (:func:`direction_signs`), the directions every planner agrees on; the monotone
    estimators (:data:`MONOTONE`) keep the score non-decreasing in a benefit feature and
    non-increasing in a cost feature; the others ignore them.

    ``positive``: True for sites inside an expert region; all others are unlabelled.
    ``blocks``: spatial block id per row (:func:`spatial_blocks`); the sigmoid calibration
    of each member uses folds of whole blocks (stratified random folds when fewer than 2
    blocks hold positives, uncalibrated with a single positive; ``info["calibration"]``
    counts which). Deterministic given ``seed``.
    """
    positive = np.asarray(positive, dtype=bool)
    blocks = np.asarray(blocks)
    _check_rows(X, positive, blocks)
    data = _features(X, "fit_pu")
    pos, unl = np.flatnonzero(positive), np.flatnonzero(~positive)
    if len(pos) == 0:
        raise ConfigError(
            f"no labelled site falls on a candidate: 0 of {len(X)} candidates lie inside an expert "
            "region; check the region file and the candidate area"
        )
    if len(unl) == 0:
        raise ConfigError(
            f"every one of the {len(X)} candidates is labelled positive; PU learning needs unlabelled background sites"
        )
    check_estimator(estimator)
    signs = direction_signs([str(c) for c in X.columns], directions) if estimator in MONOTONE else ()
    if members < 1 or background_per_positive < 1:
        raise ConfigError(f"members ({members}) and background_per_positive ({background_per_positive}) must be >= 1")
    n_bg = min(len(unl), background_per_positive * len(pos))
    rng = np.random.default_rng(seed)
    draws = []  # every member's seed and rows, drawn in order before any fit
    for _ in range(members):
        member_seed = int(rng.integers(2**31 - 1))
        draws.append((member_seed, np.concatenate([pos, np.sort(rng.choice(unl, size=n_bg, replace=False))])))
    n_workers = site_workers() if workers is None else max(1, int(workers))
    if (len(pos) + n_bg) * members < PARALLEL_MIN_WORK:
        n_workers = 1
    jobs = [
        (data[rows], positive[rows], blocks[rows], estimator, s, max_iter, max_depth, learning_rate, signs)
        for s, rows in draws
    ]
    fitted, calibration = [], {"spatial": 0, "stratified": 0, "none": 0}
    for model, mode in _map(_fit_member, jobs, n_workers):
        fitted.append(model)
        calibration[mode] += 1
    if estimator == "logistic":
        base: dict[str, Any] = {"estimator": "SimpleImputer(median) + StandardScaler + LogisticRegression(C=1, L2)"}
    elif estimator == "sign_constrained_logistic":
        base = {
            "estimator": "SimpleImputer(median) + StandardScaler + sign-constrained LogisticRegression(C=1, L2, "
            "L-BFGS-B; stored as the LogisticRegression it equals)",
        }
    else:
        base = {
            "estimator": "HistGradientBoostingClassifier",
            "max_depth": max_depth,
            "max_iter": max_iter,
            "learning_rate": learning_rate,
            "early_stopping": False,
        }
        if estimator == "monotone_hist_gradient_boosting":
            base["monotonic_cst"] = list(signs)
    if signs:
        base["directions"] = dict(zip([str(c) for c in X.columns], signs, strict=True))
    info = {
        "seed": int(seed),
        "members": int(members),
        "background_per_positive": int(background_per_positive),
        "n_rows": len(X),
        "n_positive": len(pos),
        "n_unlabelled": len(unl),
        "n_background_per_member": int(n_bg),
        "n_blocks": int(len(np.unique(blocks))),
        "n_positive_blocks": int(len(np.unique(blocks[pos]))),
        "calibration": calibration,
        "learned_estimator": estimator,
        "base": base,
        "sklearn_version": sklearn.__version__,
    }
    return PUEnsemble(members=fitted, feature_names=[str(c) for c in X.columns], info=info)


def _model_columns(ens: PUEnsemble, X: pd.DataFrame) -> pd.DataFrame:
    """The model's feature columns of ``X``, by name and in the model's order (other columns
    of ``X``, e.g. the rest of a site table, are ignored); a missing one is a ConfigError."""
    cols = [str(c) for c in X.columns]
    if cols == ens.feature_names:
        return X
    missing = [c for c in ens.feature_names if c not in cols]
    if missing or len(set(cols)) != len(cols):
        raise ConfigError(
            f"features do not match the model's {ens.feature_names}: missing {missing}"
            + ("" if missing else f", duplicated column names in {cols}")
        )
    return X.rename(columns=str)[ens.feature_names]


def _platt(model: Any) -> list[tuple[Any, float, float]]:
    """A member as ``[(base model, a, b)]``: its calibrated log-odds are the mean over the
    list of ``-(a f(x) + b)``, ``f`` the base model's decision function (scikit-learn's
    sigmoid calibration is ``p = 1 / (1 + exp(a f + b))``); an uncalibrated member is
    ``[(model, -1, 0)]``, its own decision function."""
    if isinstance(model, CalibratedClassifierCV):
        out = []
        for cc in model.calibrated_classifiers_:
            cal = cc.calibrators[0]
            out.append((cc.estimator, float(cal.a_), float(cal.b_)))
        return out
    return [(model, -1.0, 0.0)]


def _member_log_odds(model: Any, data: np.ndarray) -> np.ndarray:
    parts = _platt(model)
    return np.mean([-(a * base.decision_function(data) + b) for base, a, b in parts], axis=0)


def predict(ens: PUEnsemble, X: pd.DataFrame, output: str = "log_odds") -> tuple[np.ndarray, np.ndarray]:
    """Ensemble mean (n,) and per member (members, n) of the learned score.

    ``output="log_odds"`` (the learned score ``score_learned``): each member's calibrated
    log-odds, the mean over its calibration folds of the Platt-scaled decision function
    ``-(a f(x) + b)`` -- linear in ``f``, so :func:`contributions` split it exactly.
    ``output="probability"``: each member's calibrated probability of the positive class
    (scikit-learn's ``predict_proba``: the mean over its folds of the sigmoid), for the
    Brier score and reliability table of :func:`spatial_cv`. Both are *relative*
    suitability (module doc). ``X`` may hold other columns too (a whole site table): the
    model's ``feature_names`` are taken by name; a missing one is a :class:`ConfigError`.
    """
    if output not in OUTPUTS:
        raise ConfigError(f"predict: output must be one of {list(OUTPUTS)}, not {output!r}")
    X = _model_columns(ens, X)
    data = _features(X, "predict")
    with threadpool_limits(1):
        if output == "probability":
            per_member = np.stack([m.predict_proba(data)[:, 1] for m in ens.members])
        else:
            per_member = np.stack([_member_log_odds(m, data) for m in ens.members])
    return per_member.mean(axis=0), per_member


def contributions(ens: PUEnsemble, X: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """The learned score split into a base and one term per feature: ``(base, terms)`` with
    ``base + terms.sum(axis=1) == predict(ens, X)[0]`` (to rounding, ~1e-12).

    The score is a mean over members and calibration folds of ``-(a f(x) + b)``
    (:func:`predict`), linear in each base model's decision function ``f``, so it is enough
    to split every ``f`` exactly into a constant and per-feature terms:

    - linear models (median imputer, standard scaler, logistic regression):
      ``f = c + sum_j w_j z_j`` with ``z_j`` the imputed, standardised feature, so the term
      of feature ``j`` is ``w_j z_j`` (zero at the training mean; an unknown value is the
      training median's term);
    - boosted trees: Saabas path attributions (Saabas 2014, "Interpreting random forests",
      the "treeinterpreter" decomposition): in every tree each node's value is the mean
      leaf value of the training samples reaching it; walking a site's path from the root
      to its leaf, each split adds (child value - node value) to the feature it splits on.
      The terms telescope to (leaf - root) per tree, so the base model's raw output is the
      baseline + the trees' root values + the terms, exactly. (Unlike SHAP values they
      depend on the order of the splits along the path.)

    ``base`` is the same for every row (returned per row for the site table). ``X`` may
    hold other columns too: the model's are taken by name (as in :func:`predict`).
    """
    X = _model_columns(ens, X)
    data = _features(X, "contributions")
    n, m = data.shape
    terms = np.zeros((n, m))
    base = 0.0
    with threadpool_limits(1):
        for model in ens.members:
            parts = _platt(model)
            share = 1.0 / (len(parts) * len(ens.members))
            for est, a, b in parts:
                c0, c = _decision_terms(est, data)
                terms += (-a * share) * c
                base += share * -(a * c0 + b)
    return np.full(n, base), pd.DataFrame(terms, columns=list(ens.feature_names), index=X.index)


def _decision_terms(est: Any, data: np.ndarray) -> tuple[float, np.ndarray]:
    """A fitted base model's decision function on ``data`` as ``(constant, (n, m) terms)``."""
    if isinstance(est, Pipeline) and len(est.steps) == 3:
        imp, scaler, lr = (s for _, s in est.steps)
        if isinstance(imp, SimpleImputer) and isinstance(scaler, StandardScaler) and isinstance(lr, LogisticRegression):
            z = scaler.transform(imp.transform(data))
            kept = (
                np.arange(data.shape[1])
                if imp.keep_empty_features
                else np.flatnonzero(~np.isnan(np.asarray(imp.statistics_, dtype="float64")))
            )
            c = np.zeros(data.shape)
            c[:, kept] = z * lr.coef_[0]
            return float(lr.intercept_[0]), c
    if isinstance(est, HistGradientBoostingClassifier) and est.n_trees_per_iteration_ == 1:
        return _saabas(est, data)
    raise TypeError(f"contributions: no exact decomposition for a {type(est).__name__}")


#: rows of the (rows x tree nodes) path indicator built at a time in :func:`_saabas`
_SAABAS_BLOCK = 32_768


def _saabas(est: HistGradientBoostingClassifier, data: np.ndarray) -> tuple[float, np.ndarray]:
    """Saabas path attributions of a binary HistGradientBoostingClassifier's raw output.

    Each tree's leaf for every row comes from the tree's own compiled predictor run on a
    copy of its nodes whose values are their indices, so the paths are exactly those of
    ``decision_function`` (thresholds, missing values). The per-row terms are then an
    indicator (rows x all trees' nodes, one 1 per tree) times the sparse per-leaf path sums.
    """
    from scipy import sparse
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    X = np.ascontiguousarray(data, dtype="float64")
    n, m = X.shape
    known, f_idx_map = est._bin_mapper.make_known_categories_bitsets()
    constant = float(np.ravel(est._baseline_prediction)[0])
    leaves, path_sums, offset = [], [], 0
    for (pred,) in est._predictors:
        nodes = pred.nodes
        order, stack = [], [0]  # depth-first, parents before children
        while stack:
            i = stack.pop()
            order.append(i)
            if not nodes["is_leaf"][i]:
                stack.extend((int(nodes["right"][i]), int(nodes["left"][i])))
        value = nodes["value"].astype("float64").copy()
        for i in reversed(order):  # node value: count-weighted mean of its children (leaves keep theirs)
            if not nodes["is_leaf"][i]:
                lo, hi = int(nodes["left"][i]), int(nodes["right"][i])
                cl, ch = float(nodes["count"][lo]), float(nodes["count"][hi])
                value[i] = (
                    (cl * value[lo] + ch * value[hi]) / (cl + ch) if cl + ch > 0 else 0.5 * (value[lo] + value[hi])
                )
        constant += value[0]
        path = np.zeros((len(nodes), m))
        for i in order:
            if not nodes["is_leaf"][i]:
                f = int(nodes["feature_idx"][i])
                for child in (int(nodes["left"][i]), int(nodes["right"][i])):
                    path[child] = path[i]
                    path[child, f] += value[child] - value[i]
        ids = nodes.copy()
        ids["value"] = np.arange(len(nodes), dtype="float64")
        leaf = TreePredictor(ids, pred.binned_left_cat_bitsets, pred.raw_left_cat_bitsets).predict(
            X, known, f_idx_map, 1
        )
        leaves.append(leaf.astype(np.int64) + offset)
        path_sums.append(path)
        offset += len(nodes)
    sums = sparse.csr_matrix(np.concatenate(path_sums)) if path_sums else sparse.csr_matrix((0, m))
    out = np.zeros((n, m))
    t = len(leaves)
    if t:
        cols = np.stack(leaves, axis=1)  # (n, trees)
        for j0 in range(0, n, _SAABAS_BLOCK):
            block = cols[j0 : j0 + _SAABAS_BLOCK]
            k = len(block)
            ind = sparse.csr_matrix((np.ones(k * t), block.ravel(), np.arange(0, k * t + 1, t)), shape=(k, offset))
            out[j0 : j0 + k] = (ind @ sums).toarray()
    return constant, out


# --- evaluation ---------------------------------------------------------------------


def _reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, Any]]:
    idx = np.minimum((p * bins).astype(int), bins - 1)
    table = []
    for b in range(bins):
        sel = idx == b
        n = int(sel.sum())
        table.append(
            {
                "bin_lo": b / bins,
                "bin_hi": (b + 1) / bins,
                "count": n,
                "mean_predicted": float(p[sel].mean()) if n else None,
                "observed_fraction": float(y[sel].mean()) if n else None,
            }
        )
    return table


def spatial_cv(
    X: pd.DataFrame, positive: Any, blocks: Any, *, folds: int = 5, seed: int = 0, **fit_kw: Any
) -> dict[str, Any]:
    """Out-of-fold scores with whole spatial blocks held out; metrics as a JSON-serialisable dict.

    Folds are :class:`~sklearn.model_selection.StratifiedGroupKFold` on ``blocks`` (group
    k-fold that also spreads the positive blocks, so every fold trains and tests on some).
    Returns ``roc_auc``, ``average_precision``, ``brier`` (pooled out-of-fold), per-fold
    AUC (``null`` where a fold lacks a class), the mean member spread, and a 10-bin
    reliability table. Calibration is relative to the members' sampling ratio, so on the
    full (mostly unlabelled) set predicted values exceed observed fractions by design.
    """
    positive = np.asarray(positive, dtype=bool)
    blocks = np.asarray(blocks)
    _check_rows(X, positive, blocks)
    n_pos_blocks = len(np.unique(blocks[positive]))
    if n_pos_blocks < 2:
        raise ConfigError(
            f"spatial_cv: positives lie in {n_pos_blocks} spatial block(s); need at least 2 (use smaller blocks)"
        )
    k = min(folds, n_pos_blocks)
    oof, spread, fold_auc = np.full(len(X), np.nan), np.full(len(X), np.nan), []
    for i, (tr, te) in enumerate(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(X, positive, blocks)):
        ens = fit_pu(X.iloc[tr], positive[tr], blocks[tr], seed=seed + i, **fit_kw)
        oof[te], per_member = predict(ens, X.iloc[te], output="probability")
        spread[te] = per_member.std(axis=0)
        yt = positive[te]
        fold_auc.append(float(roc_auc_score(yt, oof[te])) if 0 < yt.sum() < len(yt) else None)
    return {
        "folds": k,
        "seed": int(seed),
        "n": len(X),
        "n_positive": int(positive.sum()),
        "roc_auc": float(roc_auc_score(positive, oof)),
        "average_precision": float(average_precision_score(positive, oof)),
        "positive_fraction": float(positive.mean()),
        "brier": float(brier_score_loss(positive, oof)),
        "fold_roc_auc": fold_auc,
        "mean_member_std": float(spread.mean()),
        "reliability": _reliability(positive, oof),
    }


def region_recall(scores: Any, region: Any, top_fraction: float) -> pd.DataFrame:
    """Per region id >= 0: where its best-scored candidate ranks among all rows.

    ``best_rank`` is 1 for the top score (ties count against the region; NaN scores
    rank last), ``best_percentile = 100 * (best_rank - 1) / n`` (0 = best), and
    ``recalled`` is True when ``best_rank <= top_fraction * n``.
    """
    if not 0 < top_fraction <= 1:
        raise ConfigError(f"top_fraction must be in (0, 1], not {top_fraction!r}")
    s = np.asarray(scores, dtype="float64")
    region = np.asarray(region)
    if s.shape != region.shape:
        raise ConfigError(f"region_recall: {len(s)} scores but {len(region)} region labels")
    s = np.where(np.isnan(s), -np.inf, s)
    ordered = np.sort(s)
    rank = len(s) - np.searchsorted(ordered, s, side="left")  # rows scoring >= s
    rows = []
    for r in np.unique(region[region >= 0]):
        sel = region == r
        best = int(rank[sel].min())
        rows.append(
            {
                "region": int(r),
                "n_candidates": int(sel.sum()),
                "best_rank": best,
                "best_percentile": 100.0 * (best - 1) / len(s),
                "recalled": bool(best <= top_fraction * len(s)),
            }
        )
    table = pd.DataFrame(rows, columns=["region", "n_candidates", "best_rank", "best_percentile", "recalled"])
    table.attrs.update(recall_summary(table))
    return table


def recall_summary(table: pd.DataFrame) -> dict[str, float | int]:
    """Share of regions recalled and median best percentile of a :func:`region_recall`-style table."""
    return {
        "n_regions": len(table),
        "recall": float(table["recalled"].mean()) if len(table) else float("nan"),
        "median_best_percentile": float(table["best_percentile"].median()) if len(table) else float("nan"),
    }


def leave_one_region_out(
    X: pd.DataFrame,
    positive_region: Any,
    x: Any,
    y: Any,
    *,
    buffer_m: float,
    top_fraction: float,
    seed: int = 0,
    block_m: float | None = None,
    **fit_kw: Any,
) -> pd.DataFrame:
    """Hide each expert region in turn and check the model still ranks one of its sites high.

    ``positive_region``: region row position per site (-1 unlabelled, :func:`region_membership`).
    For region r the ensemble trains on all rows except r's candidates and every other
    row within ``buffer_m`` of them (unlabelled neighbours, and other regions' sites where
    regions overlap), then :func:`region_recall` ranks r's candidates among all unlabelled
    rows. Calibration blocks are ``block_m`` squares (default ``buffer_m``). The table has
    r's recall row plus ``n_train_positive`` and ``n_excluded``; ``attrs`` hold
    :func:`recall_summary` (``recall``, ``median_best_percentile``).
    """
    from scipy.spatial import cKDTree

    region = np.asarray(positive_region, dtype=np.int64)
    x, y = np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")
    _check_rows(X, region, x, y)
    ids = np.unique(region[region >= 0])
    if len(ids) < 2:
        raise ConfigError(f"leave_one_region_out: candidates fall in {len(ids)} expert region(s); need at least 2")
    blocks = spatial_blocks(x, y, block_m or buffer_m)
    xy = np.column_stack([x, y])
    jobs = []
    for r in ids:
        held = region == r
        dist = cKDTree(xy[held]).query(xy, distance_upper_bound=buffer_m)[0]
        excluded = (dist <= buffer_m) & ~held
        jobs.append((X, region, blocks, int(r), held, excluded, top_fraction, seed, fit_kw))
    # small fits: one region per process (each fit serial); large ones: the members in parallel
    workers = fit_kw.get("workers")
    n_workers = site_workers() if workers is None else max(1, int(workers))
    members, per_pos = int(fit_kw.get("members", 16)), int(fit_kw.get("background_per_positive", 10))
    small = int((region >= 0).sum()) * (1 + per_pos) * members < PARALLEL_MIN_WORK
    if small and n_workers > 1:
        jobs = [(*j[:-1], {**fit_kw, "workers": 1}) for j in jobs]
    rows = _map(_held_out_region, jobs, n_workers if small else 1)
    table = pd.DataFrame(rows)
    table.attrs.update(recall_summary(table))
    return table


def _held_out_region(
    X: pd.DataFrame,
    region: np.ndarray,
    blocks: np.ndarray,
    r: int,
    held: np.ndarray,
    excluded: np.ndarray,
    top_fraction: float,
    seed: int,
    fit_kw: Mapping[str, Any],
) -> dict[str, Any]:
    """One row of :func:`leave_one_region_out`: fit without region ``r`` and its buffer, rank ``r``'s sites."""
    train = ~held & ~excluded
    ens = fit_pu(X.loc[train], region[train] >= 0, blocks[train], seed=seed, **fit_kw)
    evaluate = held | (region < 0)
    score = predict(ens, X.loc[evaluate])[0]
    row = region_recall(score, np.where(held[evaluate], r, -1), top_fraction).iloc[0].to_dict()
    return {**row, "n_train_positive": int((region[train] >= 0).sum()), "n_excluded": int(excluded.sum())}


class _EnsembleMean(ClassifierMixin, BaseEstimator):
    """The learned score as a fitted sklearn classifier, for :func:`permutation_importance`
    (probability = sigmoid of the ensemble-mean log-odds, so it ranks as the score does)."""

    def __init__(self, ens: PUEnsemble | None = None) -> None:
        self.ens = ens

    def fit(self, X: Any, y: Any = None) -> _EnsembleMean:
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self.ens is None:
            raise ValueError("_EnsembleMean has no ensemble to average (pass ens=)")
        from scipy.special import expit

        p = expit(predict(self.ens, X)[0])
        return np.column_stack([1 - p, p])

    def __sklearn_is_fitted__(self) -> bool:
        return True

    classes_ = np.array([0, 1])


def permutation_importances(
    ens: PUEnsemble,
    X: pd.DataFrame,
    positive: Any,
    *,
    seed: int = 0,
    n_repeats: int = 10,
    workers: int | None = None,
) -> pd.DataFrame:
    """Drop in average precision of the ensemble mean when each feature is shuffled (descending).

    Evaluated on all positives plus an equal-sized (or all, if fewer) seeded draw of
    unlabelled rows, so the score is not dominated by the background. The features are
    shuffled in ``workers`` processes (default :func:`site_workers`) when the problem is
    large enough; every feature's shuffles come from the same seed either way, so the
    result does not depend on it.
    """
    positive = np.asarray(positive, dtype=bool)
    _check_rows(X, positive)
    pos, unl = np.flatnonzero(positive), np.flatnonzero(~positive)
    if len(pos) == 0 or len(unl) == 0:
        raise ConfigError("permutation_importances: need both positive and unlabelled rows")
    rng = np.random.default_rng(seed)
    rows = np.concatenate([pos, np.sort(rng.choice(unl, size=min(len(pos), len(unl)), replace=False))])
    n_jobs = site_workers() if workers is None else max(1, int(workers))
    if len(rows) * len(ens.members) * n_repeats < PARALLEL_MIN_WORK:
        n_jobs = 1
    res = permutation_importance(
        _EnsembleMean(ens),
        X.iloc[rows],
        positive[rows].astype(int),
        scoring="average_precision",
        n_repeats=n_repeats,
        random_state=seed,
        n_jobs=n_jobs,
    )
    table = pd.DataFrame(
        {"feature": ens.feature_names, "importance_mean": res.importances_mean, "importance_std": res.importances_std}
    )
    return table.sort_values("importance_mean", ascending=False, kind="stable").reset_index(drop=True)
