"""The run report: one self-contained HTML page (and optionally a PDF) from a ranking run folder.

:func:`write_report` reads ``ranking.json`` and the ``sites`` layer of ``sites.gpkg``
(written by :func:`prospect.pipeline.stages.write_ranking`), draws the figures of
:mod:`prospect.export.figures` from the run's maps, and renders
``templates/report.html.j2`` with Jinja2 (autoescaping on). The page needs nothing but
itself: every image is a base64 ``data:`` URI (RFC 2397), the CSS is inline, there is
no script and no external URL, so it can be mailed, archived or opened offline. Each
number on the page names the file and key it comes from.

The output is deterministic: the same inputs give byte-identical HTML (no clock is read;
the only time on the page is ``provenance["created"]``; PNGs are written without a
software/date stamp). ``pdf=True`` prints the page with headless Chromium
(``--print-to-pdf``; the flags of docs/platform.md, a fresh profile per call).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from prospect import layers as registry
from prospect.errors import ConfigError, FormatError, InputNotFoundError, OutputPathError
from prospect.export import figures as fig
from prospect.io.fetch import hash_file
from prospect.io.writers import atomic_write
from prospect.pipeline.stages import POWER_SERIES_FILE, read_power_series
from prospect.sites.rank import finite_or_none

__all__ = ["CHROMIUM_FLAGS", "STATUS_MEANING", "print_pdf", "render_report", "write_report"]

TEMPLATE = "report.html.j2"
#: Chromium flags for headless printing in a sandbox-less container (docs/platform.md, "Browser").
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: Where Chromium is looked for when no path is given.
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
#: Seconds headless Chromium may take to print the PDF (a hung browser is an error, not a hang).
PDF_TIMEOUT_S = 180
#: Status marks of parameters and criteria (docs/science.md, opening paragraph).
STATUS_MEANING = {
    "S": "confirmed in a primary or official source",
    "3P": "quoted by a third party, plausible, unchecked",
    "D": "derived here from the physics",
    "?": "not found in the science reference: a documented, configurable choice",
}
#: Layers (:mod:`prospect.layers`) the report knows, in the order their panels appear (others follow, sorted).
MAP_ORDER = (
    "hillshade",
    "dem_m",
    "slope_deg",
    "illumination_fraction",
    "earth_visibility_fraction",
    "longest_darkness_h",
    "psr_fraction",
    "psr_mask",
    "ice_favourability",
    "ice_stability_class",
    "he3_ppb",
)


# --- inputs ---------------------------------------------------------------------------------


def _read_record(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputNotFoundError(f"{path}: not found; a run folder needs the ranking.json written by `prospect rank`")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise FormatError(f"{path}: expected a JSON object, found {type(record).__name__}")
    for key in ("criteria", "passing_each", "passing_all"):
        if key not in record:
            raise FormatError(f"{path}: key {key!r} missing; is this the ranking.json of `prospect rank`?")
    return record


#: Layers of sites.gpkg drawn on the site map when present (see figures.site_map_png).
MAP_VECTORS = ("psr", "regions")


def _read_sites(path: Path) -> tuple[Any, dict[str, Any]]:
    """The ``sites`` layer and the layers of :data:`MAP_VECTORS` present in sites.gpkg."""
    import pyogrio

    if not path.is_file():
        raise InputNotFoundError(f"{path}: not found; a run folder needs the sites.gpkg written by `prospect rank`")
    try:
        layers = {str(name) for name, _ in pyogrio.list_layers(path)}
    except Exception as exc:  # pyogrio raises DataSourceError and friends
        raise FormatError(f"{path}: not a GeoPackage GDAL can read ({exc})") from None
    if "sites" not in layers:
        raise FormatError(f"{path}: no layer 'sites' (layers: {sorted(layers)})")
    sites = pyogrio.read_dataframe(path, layer="sites")
    missing = [c for c in ("site_id", "rank", "score", "score_p05", "score_p95", "lon", "lat") if c not in sites]
    if missing:
        raise FormatError(f"{path}: layer 'sites' lacks columns {missing}")
    vectors = {name: pyogrio.read_dataframe(path, layer=name) for name in MAP_VECTORS + OPTION_LAYERS if name in layers}
    return sites.sort_values("rank", kind="stable").reset_index(drop=True), vectors


#: Layers of sites.gpkg behind the distinct-options section (when present).
OPTION_LAYERS = ("distinct_sites", "traverses", "places", "site_power")


def _by_site(table: Any, key: str = "site_id") -> dict[str, Any]:
    return {} if table is None else {str(r[key]): r for _, r in table.iterrows()}


def _distinct(record: Mapping[str, Any], vectors: Mapping[str, Any], p_k: str | None) -> dict[str, Any] | None:
    """The distinct top sites with their place, traverse and power (layers distinct_sites, places,
    traverses and site_power of sites.gpkg); None for a run without them."""
    top = vectors.get("distinct_sites")
    if top is None or not len(top):
        return None
    top = top.sort_values("rank_distinct", kind="stable").reset_index(drop=True)
    places = {int(r["place_id"]): r for _, r in vectors["places"].iterrows()} if "places" in vectors else {}
    traverses = _by_site(vectors.get("traverses"))
    power = vectors.get("site_power")
    heights = sorted({float(h) for h in power["height_m"]}) if power is not None and len(power) else []
    rows = []
    for _, r in top.iterrows():
        sid = str(r["site_id"])
        pw = (
            power[power["site_id"].astype(str) == sid].sort_values("height_m")
            if heights and power is not None
            else None
        )
        rows.append(
            {
                "row": r,
                "place": places.get(int(r["place_id"])) if "place_id" in r.index else None,
                "traverse": traverses.get(sid),
                "power": list(pw.itertuples()) if pw is not None and len(pw) else [],
                "p_distinct": r.get(f"p_top{p_k}_distinct") if p_k else None,
            }
        )
    info = record.get("places") or {}
    return {"rows": rows, "heights": heights, "rule": info.get("rule", ""), "n_places": info.get("n_places"),
            "n_distinct": info.get("n_distinct"), "power": record.get("power") or {}}  # fmt: skip


def _map_info(name: str, path: Path) -> dict[str, Any]:
    """One row of the report's map table: the GeoTIFF's tags, else the registry's facts."""
    import rasterio

    layer = registry.LAYERS.get(name)
    with rasterio.open(path) as src:
        tags = src.tags()
        units = src.tags(1).get("units") or (src.units[0] if src.units and src.units[0] else "")
        return {
            "stem": name,
            "file": path.name,
            "path": str(path),
            "units": units or (layer.units if layer else "1"),
            "shape": f"{src.height} x {src.width}",
            "resolution_m": abs(src.transform.a),
            "source": tags.get("PROSPECT_SOURCE") or tags.get("prospect_source") or "",
            "sha256": tags.get("PROSPECT_SHA256") or "",
            "quantity": tags.get("PROSPECT_QUANTITY")
            or tags.get("prospect_long_name")
            or (layer.long_name if layer else ""),
        }


def _ordered_maps(maps: Mapping[str, Any]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for stem in [s for s in MAP_ORDER if s in maps] + sorted(s for s in maps if s not in MAP_ORDER):
        p = Path(maps[stem])
        if not p.is_file():
            raise InputNotFoundError(f"{p}: map {stem!r} not found")
        out[stem] = p
    return out


# --- formatting -----------------------------------------------------------------------------


def fmt(v: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits (integers whole); text as is; missing as an en dash."""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt(x, digits) for x in v) + "]"
    f = finite_or_none(v)
    if f is None:
        return "–" if v is None or isinstance(v, (float, np.floating)) else str(v)
    if f == int(f) and abs(f) < 1e15:
        return f"{int(f):d}"
    if abs(f) >= 10 ** (digits - 1):  # no exponent for large numbers: round to whole units
        return f"{f:.0f}"
    out = f"{f:.{digits}g}"
    return out.replace("e-0", "e-").replace("e+0", "e+")


def fixed(v: Any, decimals: int = 3) -> str:
    f = finite_or_none(v)
    return "–" if f is None else f"{f:.{decimals}f}"


def _km(v: Any) -> str:
    """Metres as km with one decimal ("–" for no value)."""
    f = finite_or_none(v)
    return fixed(None if f is None else f / 1000.0, 1)


def pct(v: Any, decimals: int = 0) -> str:
    f = finite_or_none(v)
    return "–" if f is None else f"{100 * f:.{decimals}f} %"


def lon_text(v: Any) -> str:
    f = finite_or_none(v)
    if f is None:
        return "–"
    f = (f + 180.0) % 360.0 - 180.0
    return f"{abs(f):.3f}° {'E' if f >= 0 else 'W'}"


def lat_text(v: Any) -> str:
    f = finite_or_none(v)
    return "–" if f is None else f"{abs(f):.3f}° {'N' if f >= 0 else 'S'}"


def _png_uri(png: bytes | None) -> str | None:
    return None if png is None else "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _p_col(sites: Any, record: Mapping[str, Any]) -> str | None:
    k = record.get("top_k")
    if k is not None and f"p_top{int(k)}" in sites:
        return f"p_top{int(k)}"
    return next((c for c in sites.columns if re.fullmatch(r"p_top\d+", str(c))), None)


# --- sections -------------------------------------------------------------------------------


def _summary(record: Mapping[str, Any], sites: Any, k: int, p_col: str | None) -> dict[str, Any]:
    constraints = record.get("constraints") or {}
    each = record.get("passing_each") or {}
    lattice = finite_or_none(record.get("lattice_sites"))
    rows = [
        {"name": n, "text": constraints.get(n, ""), "passing": int(c), "share": (c / lattice if lattice else None)}
        for n, c in each.items()
    ]
    tightest = min(rows, key=lambda r: (r["passing"], r["name"])) if rows else None
    for r in rows:
        r["tightest"] = tightest is not None and r["name"] == tightest["name"]
    top = sites.iloc[0] if len(sites) else None
    return {
        "lattice_sites": record.get("lattice_sites"),
        "passing_all": record.get("passing_all"),
        "n_sites": len(sites),
        "constraints": rows,
        "tightest": tightest,
        "top": top,
        "k": k,
        "p_col": p_col,
        "spacing_m": (record.get("lattice") or {}).get("spacing_m"),
        "site_radius_m": record.get("site_radius_m"),
        "support_m2": record.get("support_m2"),
    }


def _feature_rows(row: Any, crits: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    from prospect.sites.rank import FEATURES

    out = []
    for name, (unit, meaning) in FEATURES.items():
        if name not in row.index:
            continue
        c = crits.get(name)
        contrib = finite_or_none(row.get(f"contrib_{name}"))
        out.append(
            {
                "name": name,
                "value": row[name],
                "unit": unit,
                "meaning": meaning,
                "criterion": c is not None,
                "direction": c.get("direction") if c else "",
                "weight": c.get("weight") if c else None,
                "contribution": contrib,
                "bar_px": int(round(max(contrib or 0.0, 0.0) * 300)),
            }
        )
    return out


def _feature_matrix(top: Any, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per feature column present: unit, direction if scored, the value at each top site."""
    from prospect.sites.rank import FEATURES

    crits = {c["name"]: c for c in record.get("criteria") or []}
    return [
        {
            "name": n,
            "unit": unit,
            "criterion": n in crits,
            "direction": crits.get(n, {}).get("direction", ""),
            "values": list(top[n]),
        }
        for n, (unit, _) in FEATURES.items()
        if n in top.columns
    ]


def _cards(top: Any, record: Mapping[str, Any], p_col: str | None) -> list[dict[str, Any]]:
    crits = {c["name"]: c for c in record.get("criteria") or []}
    cards = []
    for _, row in top.iterrows():
        methods = [
            {"name": label, "score": row.get(f"score_{m}"), "rank": row.get(f"rank_{m}")}
            for m, label in (("weighted_sum", "weighted sum"), ("topsis", "TOPSIS"), ("learned", "learned"))
            if f"score_{m}" in row.index
        ]
        cold = row.get("nearest_cold_trap")
        cards.append(
            {
                "row": row,
                "features": _feature_rows(row, crits),
                "methods": methods,
                "p": row.get(p_col) if p_col else None,
                "cold_trap": cold if isinstance(cold, str) and cold else None,
                "contrib_sum": sum(float(row.get(f"contrib_{n}", 0.0) or 0.0) for n in crits),
            }
        )
    return cards


def _learned(record: Mapping[str, Any], regions: Any) -> dict[str, Any] | None:
    learned = record.get("learned") or {}
    if not learned:
        return None
    names: dict[int, str] = {}
    if regions is not None:
        col = next((c for c in ("name", "Name", "region", "label") if c in regions.columns), None)
        if col is not None:
            names = {i: str(v) for i, v in enumerate(regions[col])}
    base = {m: {int(r["region"]): r for r in learned.get(f"baseline_{m}") or []} for m in ("weighted_sum", "topsis")}
    loro = []
    for r in learned.get("leave_one_region_out") or []:
        rid = int(r["region"])
        loro.append(
            {**r, "name": names.get(rid, ""), "ws": base["weighted_sum"].get(rid), "topsis": base["topsis"].get(rid)}
        )
    params = {p["name"]: p for p in record.get("parameters") or []}
    top_fraction = (params.get("recall_top_fraction") or {}).get("value")
    return {
        "cv": learned.get("spatial_cv") or {},
        "loro": loro,
        "loro_recall": learned.get("loro_recall"),
        "ws_recall": learned.get("baseline_weighted_sum_recall"),
        "topsis_recall": learned.get("baseline_topsis_recall"),
        "importances": learned.get("permutation_importances") or [],
        "positives": learned.get("positives"),
        "regions": learned.get("regions_with_candidates"),
        "top_fraction": top_fraction,
        "share": record.get("learned_share"),
        "block_m": (params.get("spatial_block_m") or {}).get("value"),
        "named": any(r["name"] for r in loro),
    }


def _provenance(provenance: Mapping[str, Any], run: Path) -> dict[str, Any]:
    inputs = []
    for item in provenance.get("inputs") or []:
        entry = dict(item)
        entry["files"] = [dict(f) for f in item.get("files") or []]
        inputs.append(entry)
    run_files = [
        {"name": name, "sha256": hash_file(run / name)}
        for name in ("ranking.json", "sites.gpkg", "model.skops")
        if (run / name).is_file()
    ]
    return {
        "created": provenance.get("created"),
        "seed": provenance.get("seed"),
        "inputs": inputs,
        "software": dict(provenance.get("software") or {}),
        "run_files": run_files,
    }


# --- figures --------------------------------------------------------------------------------


def _figures(
    run: Path,
    maps: Mapping[str, Path],
    sites: Any,
    vectors: Mapping[str, Any],
    record: Mapping[str, Any],
    k: int,
    p_col: str | None,
) -> dict[str, str | None]:
    hill = maps.get("hillshade")
    layers = {s: p for s, p in maps.items() if s != "hillshade"}
    out: dict[str, str | None] = {"site_map": None, "layers": None}
    if maps and len(sites):
        out["site_map"] = _png_uri(fig.site_map_png(hill, layers, sites, top_k=k, vectors=vectors))
        out["layers"] = _png_uri(fig.layers_png(hill, layers, sites, top_k=k))
    out["intervals"] = _png_uri(fig.intervals_png(sites, k, p_col=p_col)) if len(sites) else None
    out["power"] = None
    series_path = run / POWER_SERIES_FILE
    if series_path.is_file():
        try:
            series = read_power_series(series_path)
        except (OSError, ValueError, KeyError) as exc:
            raise FormatError(f"{series_path}: not a power series file ({exc})") from None
        out["power"] = _png_uri(fig.power_series_figure(series, vectors.get("site_power")))
    out["criteria"] = _png_uri(fig.criteria_png(record))
    out["importances"] = _png_uri(fig.importances_png(record))
    out["reliability"] = _png_uri(fig.reliability_png(record))
    return out


# --- PDF --------------------------------------------------------------------------------------


def _chromium(path: str | os.PathLike[str] | None) -> str:
    candidates = [str(path)] if path is not None else list(CHROMIUM_CANDIDATES)
    for c in candidates:
        found = shutil.which(c) if os.sep not in c else (c if os.access(c, os.X_OK) else None)
        if found:
            return found
    raise InputNotFoundError(
        f"cannot print report.pdf: Chromium not found (looked for {', '.join(candidates)}); "
        "install it (Debian: apt-get install chromium) or run without --pdf"
    )


def print_pdf(
    html: str | os.PathLike[str], pdf: str | os.PathLike[str], *, chromium: str | os.PathLike[str] | None = None
) -> Path:
    """Print a local HTML file to ``pdf`` with headless Chromium, atomically.

    A fresh, throw-away profile (``--user-data-dir``) per call keeps runs independent.
    """
    exe = _chromium(chromium)
    src = Path(html).resolve()
    if not src.is_file():
        raise InputNotFoundError(f"{src}: HTML to print not found")
    final = Path(pdf)
    with tempfile.TemporaryDirectory(prefix="prospect-chromium-") as profile, atomic_write(final) as tmp:
        cmd = [
            exe,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            "--run-all-compositor-stages-before-draw",
            f"--print-to-pdf={tmp}",
            src.as_uri(),
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=PDF_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise OutputPathError(f"{final}: Chromium did not finish printing within {PDF_TIMEOUT_S} s") from None
        head = tmp.read_bytes()[:5] if tmp.exists() else b""
        if done.returncode != 0 or not head.startswith(b"%PDF"):
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise OutputPathError(f"{final}: Chromium could not print the report (exit {done.returncode}: {last})")
    return final


# --- the report -----------------------------------------------------------------------------


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        fmt=fmt,
        fixed=fixed,
        pct=pct,
        lon=lon_text,
        lat=lat_text,
        km=_km,
    )
    return env


def render_report(
    run_dir: str | os.PathLike[str], *, maps: Mapping[str, Any], provenance: Mapping[str, Any], top_k: int | None = None
) -> str:
    """The report's HTML text (see :func:`write_report`)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise InputNotFoundError(f"{run}: run folder not found")
    record = _read_record(run / "ranking.json")
    sites, vectors = _read_sites(run / "sites.gpkg")
    map_paths = _ordered_maps(maps)
    k = int(top_k if top_k is not None else record.get("top_k") or 10)
    if k < 1:
        raise ConfigError(f"top_k must be at least 1, not {k}")
    p_col = _p_col(sites, record)
    top = fig.top_sites(sites, k)
    params = list(provenance.get("parameters") or record.get("parameters") or [])
    context = {
        "run": {"name": run.resolve().name},  # the folder's name only: the page does not depend on where it lies
        "record": record,
        "summary": _summary(record, sites, k, p_col),
        "top": top,
        "k": k,
        "p_col": p_col,
        "p_k": p_col.removeprefix("p_top") if p_col else None,
        "cards": _cards(top, record, p_col),
        "feature_matrix": _feature_matrix(top, record),
        "criteria": record.get("criteria") or [],
        "dropped": record.get("dropped_criteria") or {},
        "learned": _learned(record, vectors.get("regions")),
        "distinct": _distinct(record, vectors, p_col.removeprefix("p_top") if p_col else None),
        "provenance": _provenance(provenance, run),
        "parameters": params,
        "status_meaning": STATUS_MEANING,
        "maps": [_map_info(s, p) for s, p in map_paths.items()],
        "map_stems": list(map_paths),
        "dem_file": registry.filename("dem_m"),
        "figures": _figures(run, map_paths, sites, vectors, record, k, p_col),
        "vectors": sorted(n for n in vectors if n in MAP_VECTORS),
        "inputs": record.get("inputs") or {},
        "grid": record.get("grid") or {},
        "crs": (record.get("grid") or {}).get("crs") or getattr(fig.lunar_crs_of(sites), "code", "") or "map grid",
        "overlay": fig.overlay_stem({s: p for s, p in map_paths.items() if s != "hillshade"}),
        "psr_layer": fig.psr_layer(map_paths),
    }
    return _environment().get_template(TEMPLATE).render(**context)


def write_report(
    run_dir: str | os.PathLike[str],
    *,
    maps: Mapping[str, Any],
    provenance: Mapping[str, Any],
    pdf: bool = False,
    top_k: int | None = None,
    chromium: str | os.PathLike[str] | None = None,
) -> dict[str, Path]:
    """Write ``run_dir/report.html`` (and ``report.pdf`` with ``pdf=True``); return their paths.

    ``run_dir`` holds ``ranking.json`` and ``sites.gpkg`` (layer ``sites``; when present,
    its ``regions`` layer is outlined on the map and names the leave-one-region-out rows,
    and its ``psr`` polygons are drawn when no ``psr_fraction`` or ``psr_mask`` map is given).
    ``maps`` maps layer names (``hillshade``, ``dem_m``, ``illumination_fraction``,
    ``psr_fraction`` or ``psr_mask``, ``ice_favourability``, ``he3_ppb``, ...) to GeoTIFFs; any subset, possibly none (then no map is drawn). Without ``hillshade`` a
    hillshade is computed from ``dem_m``, else the first layer is shown in grey.
    ``provenance`` is the dict of :mod:`prospect.export.provenance` (``created``, ``seed``,
    ``inputs``, ``software``, ``parameters``). ``top_k`` defaults to ranking.json's
    ``top_k``. ``chromium`` is the browser used for the PDF (default ``/usr/bin/chromium``
    or ``chromium`` on the PATH). Both files are written atomically.
    """
    if pdf:  # fail before any work when the PDF cannot be printed
        chromium = _chromium(chromium)
    html = render_report(run_dir, maps=maps, provenance=provenance, top_k=top_k)
    run = Path(run_dir)
    out = {"html": run / "report.html"}
    with atomic_write(out["html"]) as tmp:
        tmp.write_text(html, encoding="utf-8")
    if pdf:
        out["pdf"] = print_pdf(out["html"], run / "report.pdf", chromium=chromium)
    return out
