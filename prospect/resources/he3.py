"""Solar-wind helium-3 in the regolith: concentration, column mass, inventory, uncertainty.

Model (``docs/science.md`` section 5)::

    C_He3 [ppb] = f_SW(lat, lon) * (a * TiO2 + b * M + c)
    column [kg m-2] = C_He3 * 1e-9 * rho_bulk * thickness
    inventory [kg] = sum(column * cell area on the 1737.4 km sphere)

- He-3 is implanted by the solar wind and retained best by ilmenite, so it rises with
  TiO2, with maturity M and with fluence (Johnson, Swindle & Lucey 1999, GRL 26:385;
  Fa & Jin 2007, Icarus 190:15; Taylor 1994). The published fit coefficients are not
  found ([?]): ``a`` and ``c`` are *calibrated* here by :func:`calibrate`, a least-squares
  fit through calibration anchors that the configuration lists with their sources
  (the Apollo 11 and 16 average-soil TiO2 of the Lunar Sourcebook table 7.15 against
  the literature He-3 ranges: ~20 ppb, 15-30 ppb for high-Ti mare; 1-5 ppb in the
  highlands). ``b`` is a documented choice (``maturity_coefficient_ppb``, [?]).
- ``f_SW`` (:func:`fluence_factor`) is the lunation-mean solar-wind flux on a horizontal
  surface, ``cos(lat) * (1/2pi) * integral of max(0, cos(lon - lon_s))`` over the
  sub-solar longitudes ``lon_s`` outside Earth's magnetotail window ``|lon_s| < D``
  around full Moon [D], divided by its maximum (the farside equator, ``1/pi``) so that
  it is 1 there and ``1 - sin D`` at the nearside centre.
- Maturity M is an index 0 (immature) .. 1 (mature): from Is/FeO (``Is/FeO / 60``,
  Morris 1978) or OMAT (linear between configured immature and mature OMAT), or the
  stated assumption ``assumed_maturity`` (1: mature, like the anchors) where no
  maturity layer is given.
- Regolith thickness is a model choice (:data:`THICKNESS_MODELS`, ``thickness_model``):
  ``ce1_uniform`` (default: a uniform ``thickness_uniform_m`` = 5 m, the Chang'e-1
  microwave inversions that the Chang'e-era inventories use, mostly 4-6 m), ``feo_rule``
  (``f_mare * 4.5 m + (1 - f_mare) * 12.5 m``, the older seismic/radar background
  figures) and ``diviner_rule`` (the same rule with the Diviner cold-spot 12.6 m / 18.5 m),
  with the mare fraction ``f_mare`` from FeO mixing between the Apollo 16 (highland) and
  Apollo 11/12 (mare) soils, or from TiO2 without FeO (a crude proxy, flagged in
  ``thickness_rule``). A supplied thickness map (e.g. from Chang'e-1 MRM brightness
  temperatures) replaces the models.
- Counting depth: He-3 is taken as uniform with depth through the regolith (a stated
  assumption: below 1-2 m its distribution is the largest unknown, Fegley & Swindle 1991),
  and every inventory is reported twice (:data:`DEPTHS`): over the whole regolith and over
  ``min(counting_depth_m, thickness)`` (a 3 m mining depth), each split into
  nearside/farside (``|lon| <= 90``) and mare/highland (by the mare fraction).
- Uncertainty (:func:`sample_parameters`, :func:`monte_carlo`): every parameter with a
  ``range`` is drawn uniformly, the anchor He-3 values from triangular distributions
  over their literature ranges, the thickness MODEL from ``thickness_model_weights`` (the
  Monte Carlo draws over the models, not only within one), and ``a, c`` are
  re-calibrated for every draw; the percentiles of the per-pixel concentration and of
  each inventory describe the spread. The draws are global (one set of coefficients per
  sample), so the inventory interval is the interval of a correlated model error, not of
  independent pixel noise. An overridden value carries its range with it
  (:mod:`prospect.config`), so the interval is always drawn about the values in use.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import xarray as xr

from prospect import layers
from prospect.config import ParameterSet
from prospect.config import load as load_config
from prospect.errors import ConfigError, GridError, UnitsError
from prospect.grid import AnalysisGrid
from prospect.resources.inventory import inventory_kg  # noqa: F401  (re-exported: the He-3 inventory function)

MaturityKind = Literal["index", "is_feo", "omat"]
#: The maturity layers :func:`maturity_index` reads.
MATURITY_KINDS: tuple[MaturityKind, ...] = ("index", "is_feo", "omat")
PERCENTILES = (5.0, 50.0, 95.0)
#: Monte Carlo samples by default (the He-3 stage's ``samples``).
MC_SAMPLES = 200
#: The most Monte Carlo samples the He-3 stage accepts (samples x MC_BLOCK_PX^2 x 4 B = 1 GB per worker).
MAX_MC_SAMPLES = 1000
#: Grid spacing [deg] a binned table is rasterised at when no analysis grid is given.
TABLE_RESOLUTION_DEG = 0.5
#: The finest and coarsest table grid spacing [deg] accepted (0.01 deg: 36,000 x 18,000 pixels).
MIN_TABLE_RESOLUTION_DEG, MAX_TABLE_RESOLUTION_DEG = 0.01, 30.0
#: Block side [px] of the Monte Carlo: samples x block^2 x 4 bytes live at once per worker.
MC_BLOCK_PX = 512
#: Regolith-thickness models (``thickness_model`` in ``he3.yaml``); a supplied map replaces them.
THICKNESS_MODELS = ("ce1_uniform", "feo_rule", "diviner_rule")
#: The depths every inventory is counted over: the whole regolith, and ``counting_depth_m``.
DEPTHS = ("whole_regolith", "counting_depth")
#: The parts of an inventory (``|lon| <= 90`` is the nearside; mare by the mare fraction; unclassified
#: where the mare fraction is unknown, e.g. a supplied thickness map over an FeO gap).
REGIONS = ("nearside_mare", "nearside_highland", "farside_mare", "farside_highland", "unclassified")
#: The partial sums kept per block: each side's mare, highland and unclassified mass.
_PARTS = tuple(f"{side}_{kind}" for side in ("nearside", "farside") for kind in ("mare", "highland", "unclassified"))
_ANCHOR_KEYS = {"name", "lon_deg", "lat_deg", "tio2_wt", "maturity", "he3_ppb", "he3_ppb_range", "source"}


# --- solar-wind fluence ---------------------------------------------------------------------


def fluence_factor(lat_deg: Any, lon_deg: Any, half_width_deg: float) -> Any:
    """Lunation-mean solar-wind fluence relative to the unshielded equator (docs/science.md section 5, [D]).

    ``f = cos(lat) * (1 - g(lon) / 2)`` with ``g(lon) = integral over |lon_s| < D of
    max(0, cos(lon - lon_s)) d lon_s``, the share of the lunation-mean flux lost while the
    Moon crosses Earth's magnetotail (full Moon: sub-solar longitude 0). So ``f`` is 1 at
    the farside equator and ``1 - sin D`` at the nearside centre; it falls as cos(lat).
    Works on numpy, dask and xarray inputs alike (elementwise).
    """
    if not 0.0 <= half_width_deg <= 90.0:
        raise ConfigError(f"magnetotail half-width must be 0..90 deg, not {half_width_deg}")
    d = math.radians(half_width_deg)
    lon = np.deg2rad((lon_deg + 180.0) % 360.0 - 180.0)  # -pi..pi
    hi = np.minimum(lon + d, math.pi / 2)
    lo = np.maximum(lon - d, -math.pi / 2)
    g = np.where(hi > lo, np.sin(hi) - np.sin(lo), 0.0)
    return np.cos(np.deg2rad(lat_deg)) * (1.0 - g / 2.0)


# --- calibration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Coefficients:
    """``C = f (a TiO2 + b M + c)`` coefficients and how they were obtained."""

    a_ppb_per_wt: float
    b_ppb: float
    c_ppb: float
    magnetotail_half_width_deg: float
    anchors: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def concentration(self, tio2: Any, maturity: Any, fluence: Any) -> Any:
        return fluence * (self.a_ppb_per_wt * tio2 + self.b_ppb * maturity + self.c_ppb)

    def as_dict(self) -> dict[str, Any]:
        return {
            "a_ppb_per_wt_tio2": self.a_ppb_per_wt,
            "b_ppb": self.b_ppb,
            "c_ppb": self.c_ppb,
            "magnetotail_half_width_deg": self.magnetotail_half_width_deg,
            "anchors": [dict(a) for a in self.anchors],
        }


def anchors_of(params: ParameterSet) -> list[dict[str, Any]]:
    """The calibration anchors, validated (each a site with TiO2, maturity and a He-3 range)."""
    anchors = params["calibration_anchors"]
    where = f"{params.origin}: he3.calibration_anchors"
    if not isinstance(anchors, list) or len(anchors) < 2:
        raise ConfigError(f"{where}: need at least two anchor sites")
    out = []
    for i, a in enumerate(anchors):
        if not isinstance(a, Mapping):
            raise ConfigError(f"{where}[{i}]: must be a mapping")
        missing = _ANCHOR_KEYS - set(a) - {"source"}
        unknown = set(a) - _ANCHOR_KEYS
        if missing or unknown:
            raise ConfigError(f"{where}[{i}]: missing {sorted(missing)} / unknown {sorted(unknown)} keys")
        row = dict(a)
        for k in ("lon_deg", "lat_deg", "tio2_wt", "maturity", "he3_ppb"):
            v = a[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"{where}[{i}].{k}: must be a number, not {v!r}")
            row[k] = float(v)
        rng = a["he3_ppb_range"]
        if not (isinstance(rng, list) and len(rng) == 2 and rng[0] <= row["he3_ppb"] <= rng[1]):
            raise ConfigError(f"{where}[{i}].he3_ppb_range: must be [low, high] around he3_ppb, not {rng!r}")
        row["he3_ppb_range"] = [float(rng[0]), float(rng[1])]
        out.append(row)
    if len({a["tio2_wt"] for a in out}) < 2:
        raise ConfigError(f"{where}: anchors need at least two different TiO2 values to fix the TiO2 slope")
    return out


def calibrate(
    params: ParameterSet, *, he3_ppb: Any = None, half_width_deg: float | None = None, b_ppb: float | None = None
) -> Coefficients:
    """Fit ``a`` and ``c`` of ``C = f (a TiO2 + b M + c)`` through the calibration anchors.

    Least squares on ``C_k / f_k - b (M_k - 1) = a TiO2_k + (b + c)`` (exact for two
    anchors). ``he3_ppb``, ``half_width_deg`` and ``b_ppb`` replace the configured anchor
    values, magnetotail half-width and maturity coefficient (the Monte Carlo passes its
    draws). A fit in which He-3 falls with TiO2 contradicts the model and is refused.
    """
    anchors = anchors_of(params)
    d = float(params["magnetotail_half_width_deg"] if half_width_deg is None else half_width_deg)
    b = float(params["maturity_coefficient_ppb"] if b_ppb is None else b_ppb)
    targets = np.array([a["he3_ppb"] for a in anchors] if he3_ppb is None else he3_ppb, dtype="float64")
    t = np.array([a["tio2_wt"] for a in anchors])
    m = np.array([a["maturity"] for a in anchors])
    f = fluence_factor(np.array([a["lat_deg"] for a in anchors]), np.array([a["lon_deg"] for a in anchors]), d)
    rhs = targets / f - b * (m - 1.0)
    design = np.column_stack([t, np.ones_like(t)])
    (a_coef, offset), *_ = np.linalg.lstsq(design, rhs, rcond=None)
    if not a_coef > 0:
        raise ConfigError(
            f"{params.origin}: he3.calibration_anchors imply He-3 that does not rise with TiO2 "
            f"(a = {a_coef:.3g} ppb/wt%)"
        )
    return Coefficients(float(a_coef), b, float(offset - b), d, tuple(anchors))


# --- layers ---------------------------------------------------------------------------------


def maturity_index(layer: xr.DataArray, kind: MaturityKind, params: ParameterSet) -> xr.DataArray:
    """A maturity layer as the index M in 0 (immature) .. 1 (mature).

    ``is_feo``: ``clip(Is/FeO / isfeo_mature, 0, 1)`` (Morris 1978 classes);
    ``omat``: ``clip((omat_immature - OMAT) / (omat_immature - omat_mature), 0, 1)``
    (OMAT falls with maturity; Lucey, Blewett & Jolliff 2000); ``index``: used as is.
    """
    if kind == "is_feo":
        m = layer / float(params["isfeo_mature"])
    elif kind == "omat":
        hi, lo = float(params["omat_immature"]), float(params["omat_mature"])
        if hi <= lo:
            raise ConfigError(f"{params.origin}: he3.omat_immature ({hi}) must exceed he3.omat_mature ({lo})")
        m = (hi - layer) / (hi - lo)
    elif kind == "index":
        m = layer
    else:
        raise ConfigError(f"maturity kind must be 'index', 'is_feo' or 'omat', not {kind!r}")
    out = m.clip(0.0, 1.0).astype("float32")
    out.attrs = {"units": "1", "long_name": "maturity index (0 immature .. 1 mature)", "maturity_kind": kind}
    return out


def _mix(value: Any, low: float, high: float) -> Any:
    return np.clip((value - low) / (high - low), 0.0, 1.0)


def check_wt_pct(layer: xr.DataArray, what: str) -> None:
    """Oxide and element abundances must be in weight percent (a layer without units is taken as wt%)."""
    units = str(layer.attrs.get("units", "wt%")).replace(" ", "").lower()
    if units not in ("wt%", "weightpercent", "%"):
        raise UnitsError(f"{what} has units {layer.attrs.get('units')!r}; expected wt%")


@dataclass
class He3Inputs:
    """The layers of the He-3 model on one analysis grid (all float, NaN for no data).

    ``tio2_wt`` is required; ``feo_wt`` (mare/highland rule), ``maturity`` (index 0..1,
    see :func:`maturity_index`) and ``thickness_m`` (a regolith-thickness map) are
    optional and their absence is recorded in the outputs.
    """

    tio2_wt: xr.DataArray
    feo_wt: xr.DataArray | None = None
    maturity: xr.DataArray | None = None
    thickness_m: xr.DataArray | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.grid = AnalysisGrid.from_dataarray(self.tio2_wt)
        for name in ("feo_wt", "maturity", "thickness_m"):
            layer = getattr(self, name)
            if layer is None:
                continue
            other = AnalysisGrid.from_dataarray(layer)
            if not other.matches(self.grid):
                raise GridError(
                    f"he3 layer {name!r} is not on the TiO2 grid ({other.shape} vs {self.grid.shape}); "
                    "resample it with prospect.grid.resample first"
                )
        check_wt_pct(self.tio2_wt, "TiO2 layer")
        if self.feo_wt is not None:
            check_wt_pct(self.feo_wt, "FeO layer")

    @property
    def mare_rule(self) -> str:
        """Where the mare fraction (the rule-based thickness models and the inventory split) comes from."""
        if self.feo_wt is not None:
            return "mare fraction from FeO (Apollo soil end-members)"
        return "mare fraction from TiO2 (proxy: no FeO layer given; low-Ti mare may count as highland)"

    def thickness_rule(self, params: ParameterSet) -> str:
        """The thickness model in use, with its parameters and citation (a supplied map replaces the models)."""
        if self.thickness_m is not None:
            return "supplied regolith thickness map (replaces the thickness models)"
        model = str(params["thickness_model"])
        text = {
            "ce1_uniform": f"ce1_uniform: {params['thickness_uniform_m']:g} m everywhere (Chang'e-1 microwave "
            "inversions, mostly 4-6 m; Fa & Jin 2010)",
            "feo_rule": f"feo_rule: {params['regolith_thickness_mare_m']:g} m mare / "
            f"{params['regolith_thickness_highland_m']:g} m highland (older seismic and radar figures)",
            "diviner_rule": f"diviner_rule: {params['diviner_thickness_mare_m']:g} m mare / "
            f"{params['diviner_thickness_highland_m']:g} m highland (Diviner cold-spot analyses)",
        }.get(model, model)
        return f"{text}; {self.mare_rule}" if model != "ce1_uniform" else text

    @property
    def maturity_rule(self) -> str:
        if self.maturity is not None:
            return f"maturity layer ({self.maturity.attrs.get('maturity_kind', 'index')})"
        return "assumed maturity (no OMAT or Is/FeO layer given)"


def thickness_model_weights(params: ParameterSet) -> dict[str, float]:
    """The Monte Carlo probability of each thickness model (``thickness_model_weights``, renormalised)."""
    w = params["thickness_model_weights"]
    where = f"{params.origin}: he3.thickness_model_weights"
    if not isinstance(w, Mapping) or set(w) - set(THICKNESS_MODELS):
        raise ConfigError(f"{where}: must map the models {list(THICKNESS_MODELS)} to weights, not {w!r}")
    total = sum(float(v) for v in w.values())
    if not total > 0:
        raise ConfigError(f"{where}: every model weight is 0; give at least one a positive weight")
    central = str(params["thickness_model"])
    if not float(w.get(central, 0.0)) > 0:
        raise ConfigError(
            f"{where}: the central thickness model {central!r} has weight 0, so the Monte Carlo would never draw "
            "the model of the central estimate; give it a positive weight"
        )
    return {m: float(w.get(m, 0.0)) / total for m in THICKNESS_MODELS}


def mare_fraction(tio2: Any, feo: Any, p: Mapping[str, Any]) -> Any:
    """The mare share of a pixel: FeO mixing between the highland and mare soil end-members, or
    TiO2 mixing where no FeO layer is given (a proxy: low-Ti mare may count as highland)."""
    if feo is not None:
        return _mix(feo, p["highland_feo_wt"], p["mare_feo_wt"])
    return _mix(tio2, p["highland_tio2_wt"], p["mare_tio2_wt"])


def regolith_thickness(model: str, mare: Any, p: Mapping[str, Any]) -> Any:
    """Regolith thickness [m] of thickness ``model`` (:data:`THICKNESS_MODELS`) for a mare fraction.

    ``ce1_uniform``: ``t_uniform`` everywhere (NaN where the mare fraction is, so every model
    covers the same pixels); ``feo_rule``: ``f t_mare + (1 - f) t_high``; ``diviner_rule``:
    ``f t_div_mare + (1 - f) t_div_high``.
    """
    if model == "ce1_uniform":
        return np.where(np.isfinite(mare), p["t_uniform"], np.nan)
    if model == "feo_rule":
        return mare * p["t_mare"] + (1.0 - mare) * p["t_high"]
    if model == "diviner_rule":
        return mare * p["t_div_mare"] + (1.0 - mare) * p["t_div_high"]
    raise ConfigError(f"he3 thickness model must be one of {list(THICKNESS_MODELS)}, not {model!r}")


def _fields(
    tio2: np.ndarray,
    feo: np.ndarray | None,
    mat: np.ndarray | None,
    thick: np.ndarray | None,
    lon: np.ndarray,
    lat: np.ndarray,
    p: Mapping[str, Any],
) -> dict[str, np.ndarray]:
    """The model on one block for one parameter draw ``p`` (numpy; float64 inside)."""
    t = np.clip(tio2.astype("float64"), 0.0, None)
    f = fluence_factor(lat, lon, p["half_width_deg"])
    m = p["assumed_maturity"] if mat is None else mat.astype("float64")
    conc = np.maximum(f * (p["a"] * t + p["b"] * m + p["c"]), 0.0)  # a draw with c < 0 cannot go negative
    mare = mare_fraction(t, None if feo is None else feo.astype("float64"), p)
    h = thick.astype("float64") if thick is not None else regolith_thickness(p["thickness_model"], mare, p)
    mass_per_m = conc * 1e-9 * p["rho"]  # kg m-3 of He-3
    return {
        "he3_ppb": conc,
        "he3_column_kg_m2": mass_per_m * h,
        "he3_column_counting_kg_m2": mass_per_m * np.minimum(h, p["depth"]),
        "regolith_thickness_m": h,
        "mare_fraction": mare,
        "fluence_factor": f,
        "maturity_index": np.broadcast_to(m, t.shape),
    }


#: The column map of each inventory depth.
DEPTH_COLUMNS = {"whole_regolith": "he3_column_kg_m2", "counting_depth": "he3_column_counting_kg_m2"}


def central_draw(params: ParameterSet) -> dict[str, Any]:
    """The default-parameter draw: configured values and thickness model, anchors at their central He-3."""
    coef = calibrate(params)
    thickness_model_weights(params)  # refuse bad weights before any work
    return {
        "a": coef.a_ppb_per_wt,
        "b": coef.b_ppb,
        "c": coef.c_ppb,
        "half_width_deg": coef.magnetotail_half_width_deg,
        "assumed_maturity": float(params["assumed_maturity"]),
        "thickness_model": str(params["thickness_model"]),
        "t_uniform": float(params["thickness_uniform_m"]),
        "t_mare": float(params["regolith_thickness_mare_m"]),
        "t_high": float(params["regolith_thickness_highland_m"]),
        "t_div_mare": float(params["diviner_thickness_mare_m"]),
        "t_div_high": float(params["diviner_thickness_highland_m"]),
        "depth": float(params["counting_depth_m"]),
        "rho": float(params["bulk_density_kg_m3"]),
        "mare_feo_wt": float(params["mare_feo_wt"]),
        "highland_feo_wt": float(params["highland_feo_wt"]),
        "mare_tio2_wt": float(params["mare_tio2_wt"]),
        "highland_tio2_wt": float(params["highland_tio2_wt"]),
    }


def sample_parameters(params: ParameterSet, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` Monte Carlo parameter draws, deterministic for ``seed``.

    Uniform over each ``range`` of the configuration (magnetotail half-width, maturity
    coefficient, assumed maturity, the thickness models' thicknesses, bulk density);
    triangular over each anchor's ``he3_ppb_range`` with its mode at ``he3_ppb``; the
    thickness model from ``thickness_model_weights``; then ``a`` and ``c`` re-calibrated
    through the drawn anchors (:func:`calibrate`).
    """
    if n < 2:
        raise ConfigError(f"Monte Carlo needs at least 2 samples, not {n}")
    rng = np.random.default_rng(seed)
    base = central_draw(params)
    anchors = anchors_of(params)
    keys = {
        "half_width_deg": "magnetotail_half_width_deg",
        "b": "maturity_coefficient_ppb",
        "assumed_maturity": "assumed_maturity",
        "t_mare": "regolith_thickness_mare_m",
        "t_high": "regolith_thickness_highland_m",
        "rho": "bulk_density_kg_m3",
        "t_uniform": "thickness_uniform_m",
        "t_div_mare": "diviner_thickness_mare_m",
        "t_div_high": "diviner_thickness_highland_m",
    }
    columns: dict[str, np.ndarray] = {}
    for key, name in keys.items():  # fixed order: the draws depend only on the seed
        r = params.param(name).range
        columns[key] = rng.uniform(r[0], r[1], n) if r else np.full(n, base[key])
    he3 = np.column_stack(
        [
            rng.triangular(a["he3_ppb_range"][0], a["he3_ppb"], a["he3_ppb_range"][1], n)
            if a["he3_ppb_range"][1] > a["he3_ppb_range"][0]
            else np.full(n, a["he3_ppb"])
            for a in anchors
        ]
    )
    weights = thickness_model_weights(params)
    models = rng.choice(np.array(THICKNESS_MODELS), size=n, p=[weights[m] for m in THICKNESS_MODELS])
    draws = []
    for i in range(n):
        coef = calibrate(
            params, he3_ppb=he3[i], half_width_deg=float(columns["half_width_deg"][i]), b_ppb=float(columns["b"][i])
        )
        d = dict(base)
        d.update({k: float(v[i]) for k, v in columns.items()})
        d.update(a=coef.a_ppb_per_wt, b=coef.b_ppb, c=coef.c_ppb, thickness_model=str(models[i]))
        draws.append(d)
    return draws


# --- maps -----------------------------------------------------------------------------------


def model_grid(grid: AnalysisGrid, params: ParameterSet) -> AnalysisGrid:
    """The grid the He-3 model runs on for an analysis ``grid``: ``grid`` itself, or ``grid``
    coarsened by the largest integer factor that divides both its dimensions (the blocks cover
    exactly its extent) and keeps the pixel at most ``grid_pixel_m`` (``he3.yaml``).

    He-3's sources are 0.5-5 deg maps (15-150 km), so a 20 m analysis grid only repeats their
    values; the model and its Monte Carlo scale with the pixels (502 s at 7584^2 x 20 m,
    ``make bench-pipeline``). The site stage averages ``he3_ppb`` over discs on its own grid."""
    limit = float(params["grid_pixel_m"])
    res = abs(grid.ground_resolution_m)
    best = 1
    rows, cols = grid.shape
    for f in range(2, int(limit // res) + 1):
        if rows % f == 0 and cols % f == 0:
            best = f
    return grid if best == 1 else grid.coarsened(best)


def _windows(grid: AnalysisGrid, block_px: int) -> list[tuple[int, int, int, int]]:
    """``(row0, row1, col0, col1)`` blocks of ``block_px`` covering the grid, row-major."""
    rows, cols = grid.shape
    return [
        (r0, min(rows, r0 + block_px), c0, min(cols, c0 + block_px))
        for r0 in range(0, rows, block_px)
        for c0 in range(0, cols, block_px)
    ]


def _read_block(inputs: He3Inputs, window: tuple[int, int, int, int]) -> dict[str, np.ndarray | None]:
    r0, r1, c0, c1 = window
    sub = AnalysisGrid(
        inputs.grid.crs, inputs.grid.transform @ inputs.grid.transform.translation(c0, r0), (r1 - r0, c1 - c0)
    )
    lon, lat = sub.lonlat()
    out: dict[str, Any] = {"lon": np.asarray(lon), "lat": np.asarray(lat)}
    # each block is computed in its worker thread without dask's own pool (the blocks are the parallelism)
    for key, layer in (
        ("tio2", inputs.tio2_wt),
        ("feo", inputs.feo_wt),
        ("mat", inputs.maturity),
        ("thick", inputs.thickness_m),
    ):
        out[key] = (
            None
            if layer is None
            else np.asarray(layer.isel(y=slice(r0, r1), x=slice(c0, c1)).compute(scheduler="synchronous").values)
        )
    out["area"] = np.asarray(sub.cell_area_m2().compute(scheduler="synchronous").values, dtype="float64")
    return out


def _required(block: Mapping[str, np.ndarray | None], key: str) -> np.ndarray:
    """A layer every block has (TiO2, coordinates, cell areas)."""
    arr = block[key]
    if arr is None:  # pragma: no cover - _read_block always reads these
        raise ValueError(f"he3 block without {key}")
    return arr


def _regions(lon: np.ndarray, mare: np.ndarray) -> dict[str, np.ndarray]:
    """Weights 0..1 of each part of :data:`_PARTS` at every pixel (they sum to 1)."""
    near = np.abs((lon + 180.0) % 360.0 - 180.0) <= 90.0
    known = np.isfinite(mare)
    kinds = {
        "mare": np.where(known, mare, 0.0),
        "highland": np.where(known, 1.0 - mare, 0.0),
        "unclassified": np.where(known, 0.0, 1.0),
    }
    return {f"{side}_{kind}": np.where(near == (side == "nearside"), w, 0.0) for side in ("nearside", "farside")
            for kind, w in kinds.items()}  # fmt: skip


def _mass(column: np.ndarray, weight: np.ndarray) -> float:
    return float(np.sum(np.where(np.isfinite(column), column * weight, 0.0)))


@dataclass
class BlockResult:
    window: tuple[int, int, int, int]
    maps: dict[str, np.ndarray]
    area_m2: float
    nodata_area_m2: float
    #: ``{depth: {part: kg}}`` of the central draw (:data:`DEPTHS`, :data:`_PARTS`)
    parts_kg: dict[str, dict[str, float]] = field(default_factory=dict)
    #: ``{depth: kg per draw}``
    depth_samples_kg: dict[str, np.ndarray] = field(default_factory=dict)


def compute_block(
    inputs: He3Inputs,
    window: tuple[int, int, int, int],
    central: Mapping[str, Any],
    draws: list[dict[str, Any]] | None,
    mask: xr.DataArray | None = None,
) -> BlockResult:
    """The central maps, the Monte Carlo percentiles and the inventory partial sums of one block."""
    b = _read_block(inputs, window)
    tio2, lon, lat, weight = (_required(b, k) for k in ("tio2", "lon", "lat", "area"))
    fields = _fields(tio2, b["feo"], b["mat"], b["thick"], lon, lat, central)
    if mask is not None:
        r0, r1, c0, c1 = window
        weight = weight * np.nan_to_num(
            np.asarray(
                mask.isel(y=slice(r0, r1), x=slice(c0, c1)).compute(scheduler="synchronous").values, dtype="float64"
            )
        )
    valid = np.isfinite(fields["he3_column_kg_m2"])
    regions = _regions(lon, fields["mare_fraction"])
    parts = {
        depth: {r: _mass(fields[col], weight * w) for r, w in regions.items()} for depth, col in DEPTH_COLUMNS.items()
    }
    maps = {k: v.astype("float32") for k, v in fields.items()}
    maps["tio2_wt"] = tio2.astype("float32")
    depth_samples: dict[str, np.ndarray] = {}
    if draws:
        stack = np.empty((len(draws),) + tio2.shape, dtype="float32")
        depth_samples = {depth: np.empty(len(draws)) for depth in DEPTHS}
        for i, p in enumerate(draws):
            fi = _fields(tio2, b["feo"], b["mat"], b["thick"], lon, lat, p)
            stack[i] = fi["he3_ppb"]
            for depth, col in DEPTH_COLUMNS.items():
                depth_samples[depth][i] = _mass(fi[col], weight)
        q = np.percentile(stack, PERCENTILES, axis=0)
        for name, pct in zip(("p05", "p50", "p95"), q):
            maps[f"he3_ppb_{name}"] = pct.astype("float32")
    return BlockResult(
        window,
        maps,
        float(np.sum(weight)),
        float(np.sum(np.where(valid, 0.0, weight))),
        parts,
        depth_samples,
    )


def _interval(samples: np.ndarray) -> dict[str, float]:
    p05, p50, p95 = np.percentile(samples, PERCENTILES)
    return {"p05": float(p05), "p50": float(p50), "p95": float(p95)}


def new_result(inputs: He3Inputs, params: ParameterSet) -> He3Result:
    """An empty :class:`He3Result` for ``inputs`` under ``params`` (blocks are added to it)."""
    return He3Result(
        calibrate(params),
        counting_depth_m=float(params["counting_depth_m"]),
        thickness_model="thickness map" if inputs.thickness_m is not None else str(params["thickness_model"]),
    )


@dataclass
class He3Result:
    """Maps (in memory), the central inventories and the Monte Carlo inventory samples."""

    coefficients: Coefficients
    maps: xr.Dataset = field(default_factory=xr.Dataset)
    area_m2: float = 0.0
    nodata_area_m2: float = 0.0
    parts_kg: dict[str, dict[str, float]] = field(default_factory=dict)
    depth_samples_kg: dict[str, np.ndarray] = field(default_factory=dict)
    counting_depth_m: float = float("nan")
    thickness_model: str = ""

    @property
    def inventory_kg(self) -> float:
        """The central whole-regolith inventory [kg]."""
        return sum(self.parts_kg.get("whole_regolith", {}).values())

    @property
    def inventory_samples_kg(self) -> np.ndarray | None:
        """The whole-regolith inventory of each Monte Carlo draw [kg] (None without a Monte Carlo)."""
        return self.depth_samples_kg.get("whole_regolith")

    def add(self, res: BlockResult) -> None:
        """Add one block's inventory partial sums (central, per Monte Carlo draw, areas)."""
        self.area_m2 += res.area_m2
        self.nodata_area_m2 += res.nodata_area_m2
        for depth, parts in res.parts_kg.items():
            acc = self.parts_kg.setdefault(depth, dict.fromkeys(_PARTS, 0.0))
            for r, kg in parts.items():
                acc[r] += kg
        for depth, draws in res.depth_samples_kg.items():
            total = self.depth_samples_kg.get(depth)
            self.depth_samples_kg[depth] = draws.copy() if total is None else total + draws

    def inventories(self) -> dict[str, dict[str, Any]]:
        """Per depth (:data:`DEPTHS`): the central inventory, its Monte Carlo interval and its
        split into nearside/farside and mare/highland (kg)."""
        out: dict[str, dict[str, Any]] = {}
        for depth in DEPTHS:
            parts = self.parts_kg.get(depth, dict.fromkeys(_PARTS, 0.0))
            by_region = {r: parts[r] for r in REGIONS[:4]}
            by_region["unclassified"] = parts["nearside_unclassified"] + parts["farside_unclassified"]
            entry: dict[str, Any] = {
                "depth": "whole regolith" if depth == "whole_regolith" else f"upper {self.counting_depth_m:g} m",
                "inventory_kg": sum(parts.values()),
                "by_region_kg": by_region,
                "nearside_kg": sum(v for k, v in parts.items() if k.startswith("nearside")),
                "farside_kg": sum(v for k, v in parts.items() if k.startswith("farside")),
                "mare_kg": parts["nearside_mare"] + parts["farside_mare"],
                "highland_kg": parts["nearside_highland"] + parts["farside_highland"],
            }
            if depth in self.depth_samples_kg:
                entry["monte_carlo_kg"] = _interval(np.asarray(self.depth_samples_kg[depth]))
            out[depth] = entry
        return out

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"inventory_kg": self.inventory_kg}
        if self.inventory_samples_kg is not None:
            iv = _interval(self.inventory_samples_kg)
            out.update(
                inventory_kg_p05=iv["p05"],
                inventory_kg_p50=iv["p50"],
                inventory_kg_p95=iv["p95"],
                samples=int(len(self.inventory_samples_kg)),
            )
        out.update(
            inventories=self.inventories(),
            counting_depth_m=self.counting_depth_m,
            thickness_model=self.thickness_model,
            area_m2=self.area_m2,
            nodata_area_m2=self.nodata_area_m2,
            coefficients=self.coefficients.as_dict(),
        )
        return out


def iter_blocks(
    inputs: He3Inputs,
    params: ParameterSet,
    *,
    samples: int = 0,
    seed: int = 0,
    mask: xr.DataArray | None = None,
    block_px: int = MC_BLOCK_PX,
    workers: int = 2,
) -> Iterator[BlockResult]:
    """:func:`compute_block` over the grid, ``workers`` blocks at a time, in row-major order.

    Memory: ``samples x block_px^2 x 4`` bytes per worker, whatever the raster's size.
    """
    central = central_draw(params)
    draws = sample_parameters(params, samples, seed) if samples else None
    windows = _windows(inputs.grid, block_px)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: list[Any] = []
        for w in windows:
            pending.append(pool.submit(compute_block, inputs, w, central, draws, mask))
            if len(pending) > workers:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()


def he3_maps(
    inputs: He3Inputs,
    params: ParameterSet | None = None,
    *,
    samples: int = 0,
    seed: int = 0,
    mask: xr.DataArray | None = None,
) -> He3Result:
    """All He-3 maps and the inventory, in memory (for grids that fit; :func:`prospect.pipeline.stages.write_he3` streams)."""
    params = params or load_config("he3")
    grid = inputs.grid
    arrays: dict[str, np.ndarray] = {}
    result = new_result(inputs, params)
    for res in iter_blocks(inputs, params, samples=samples, seed=seed, mask=mask):
        r0, r1, c0, c1 = res.window
        for k, v in res.maps.items():
            arrays.setdefault(k, np.full(grid.shape, np.nan, dtype="float32"))[r0:r1, c0:c1] = v
        result.add(res)
    attrs = map_attrs(inputs, params, result.coefficients, samples=samples, seed=seed)
    result.maps = xr.Dataset(
        {
            k: grid.wrap(v, name=k, attrs={**attrs, "units": map_units(k), "long_name": map_long_name(k)})
            for k, v in arrays.items()
        }
    )
    return result


def map_units(name: str) -> str:
    """The units of He-3 map ``name`` (:mod:`prospect.layers`; a percentile map has its quantity's)."""
    if name.startswith("he3_ppb_"):
        name = "he3_ppb"
    return layers.get(name).units


def map_long_name(name: str) -> str:
    """The long name of He-3 map ``name``."""
    if name.startswith("he3_ppb_p"):
        return f"He-3 concentration, Monte Carlo {name[-3:]} (mass ppb)"
    return layers.get(name).stage_long_name


def map_attrs(
    inputs: He3Inputs, params: ParameterSet, coef: Coefficients, *, samples: int, seed: int
) -> dict[str, Any]:
    """Provenance attributes shared by every He-3 map."""
    return {
        "model": "C_He3 = f_SW(lat, lon) * (a TiO2 + b M + c); docs/science.md section 5",
        "a_ppb_per_wt_tio2": round(coef.a_ppb_per_wt, 6),
        "b_ppb": round(coef.b_ppb, 6),
        "c_ppb": round(coef.c_ppb, 6),
        "magnetotail_half_width_deg": coef.magnetotail_half_width_deg,
        "calibration": "a, c fitted through the configured anchors (prospect.resources.he3.calibrate)",
        "thickness_rule": inputs.thickness_rule(params),
        "mare_rule": inputs.mare_rule,
        "thickness_model_monte_carlo": "a supplied map in every draw"
        if inputs.thickness_m is not None
        else ", ".join(f"{m} {w:.2f}" for m, w in thickness_model_weights(params).items()),
        "counting_depth_m": float(params["counting_depth_m"]),
        "maturity_rule": inputs.maturity_rule,
        "bulk_density_kg_m3": float(params["bulk_density_kg_m3"]),
        "monte_carlo_samples": samples,
        "seed": seed,
        "inputs": "; ".join(f"{k}={v}" for k, v in sorted(inputs.sources.items())) or "in-memory layers",
        "citations": (
            "Johnson, Swindle & Lucey 1999 GRL 26:385; Fa & Jin 2007 Icarus 190:15; Cameron 1991; "
            "Fa & Jin 2010 (Chang'e-1 microwave regolith thickness); Hurley & Farrell 2013 (magnetotail); "
            "Fegley & Swindle 1991 (depth); Carrier, Olhoeft & Mendell 1991 (density); Lunar Sourcebook table 7.15"
        ),
    }


def quantity_of(arr: xr.DataArray) -> str:
    """What a layer holds (``TiO2``, ``FeO``, ``OMAT`` or ``""``), from its product id, manifest id or long name."""
    ident = " ".join(str(arr.attrs.get(k, "")) for k in ("product_id", "manifest_id", "long_name")).upper()
    for q in ("TIO2", "FEO", "OMAT"):
        if q in ident:
            return {"TIO2": "TiO2", "FEO": "FeO", "OMAT": "OMAT"}[q]
    return ""
