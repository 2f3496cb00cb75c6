"""The run report (prospect.export.report): self-contained HTML, rendered by a real browser, deterministic.

The run folder is the synthetic scene of tests/test_sites.py (a known best site, expert
regions, a learned model) written with :func:`prospect.pipeline.stages.write_ranking`, plus a
few GeoTIFF maps of the same scene. Browser checks use Debian's Chromium through
Playwright (docs/platform.md, "Browser for report tests") and skip only when
/usr/bin/chromium is absent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import platform
from html.parser import HTMLParser
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely
from threadpoolctl import threadpool_limits

from prospect.errors import InputNotFoundError, ProspectError
from prospect.export import figures
from prospect.export.report import render_report, write_report
from prospect.io.writers import write_geotiff
from prospect.pipeline.stages import write_ranking
from prospect.resources.ice import CLASS_NODATA, CLASS_NOT_STABLE, CLASS_SHALLOW, CLASS_SURFACE
from prospect.sites.rank import rank_sites
from tests.test_sites import BEST, FAST, OTHERS, scene

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium is absent: the report's browser checks need Chromium"
)
ARTIFACTS = Path(__file__).resolve().parents[1] / "build" / "test-artifacts"
#: site map, layer panels, score intervals, criteria, permutation importances, reliability
N_FIGURES = 7  # with the power time series of the distinct sites


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A complete run folder (ranking.json, sites.gpkg, maps/) and the report written from it."""
    root = tmp_path_factory.mktemp("report") / "run"
    inputs = scene([BEST], OTHERS, experts=OTHERS)
    with threadpool_limits(1):  # small L-BFGS fits: BLAS threads only contend (3x slower on a busy machine)
        ranking = rank_sites(inputs, FAST, seed=7)
    ranking.record["inputs"] = {
        "dem": "synthetic dem_m.tif",
        "illumination_fraction": "synthetic",
        "psr_fraction": "synthetic PSR discs",
        "regions": "synthetic expert boxes",
    }
    ranking.record["grid"] = inputs.grid.to_dict()
    write_ranking(ranking, root, inputs.grid)
    grid = inputs.grid
    # the expert regions as the export writes them into sites.gpkg (map CRS, with names)
    boxes = [shapely.box(x - 1500.0, y - 1500.0, x + 1500.0, y + 1500.0) for x, y in OTHERS]
    regions = gpd.GeoDataFrame(
        {"name": [f"Expert {i}" for i in range(len(boxes))]}, geometry=boxes, crs=grid.crs.to_pyproj()
    )
    pyogrio.write_dataframe(regions, root / "sites.gpkg", layer="regions", driver="GPKG")
    maps_dir = root / "maps"
    maps_dir.mkdir()
    psr = inputs.psr_fraction.values
    ice = np.where(psr >= 0.5, CLASS_SURFACE, np.where(psr > 0.0, CLASS_SHALLOW, CLASS_NOT_STABLE)).astype("uint8")
    ice[:3, :] = CLASS_NODATA
    layers = {
        "dem_m": (inputs.dem.values, "m", -32768.0, None),
        "illumination_fraction": (inputs.illumination_fraction.values, "1", -9999.0, None),
        "psr_fraction": (psr, "1", -9999.0, None),
        "ice_stability_class": (ice, "1", CLASS_NODATA, "uint8"),
    }
    maps = {}
    for stem, (values, units, nodata, dtype) in layers.items():
        maps[stem] = write_geotiff(
            values,
            maps_dir / f"{stem}.tif",
            crs=grid.crs,
            transform=grid.transform,
            nodata=nodata,
            units=units,
            dtype=dtype,
            tags={"PROSPECT_SOURCE": "tests/test_sites.py scene", "PROSPECT_QUANTITY": stem},
        )
    dem_sha = _sha256(maps["dem_m"])
    provenance = {
        "created": "2026-11-24T12:00:00Z",
        "seed": 7,
        "inputs": [
            {
                "role": "dem",
                "source": str(maps["dem_m"]),
                "manifest_id": "synthetic_dem",
                "product_id": "SCENE_DEM",
                "mission": "LRO",
                "instrument": "LOLA",
                "citation": "Smith et al. (2010), GRL 37, L18204",
                "licence": "public domain",
                "landing_page": "https://pds-geosciences.wustl.edu/missions/lro/lola.htm",
                "files": [{"name": "dem_m.tif", "sha256": dem_sha, "verified": True}],
            },
            {
                "role": "illumination_fraction",
                "source": str(maps["illumination_fraction"]),
                "manifest_id": None,
                "product_id": None,
                "mission": None,
                "instrument": None,
                "citation": None,
                "licence": None,
                "landing_page": None,
                "files": [
                    {
                        "name": "illumination_fraction.tif",
                        "sha256": _sha256(maps["illumination_fraction"]),
                        "verified": None,
                    }
                ],
            },
        ],
        "software": {"prospect": "0.1.0", "python": platform.python_version(), "numpy": np.__version__},
        "parameters": ranking.record["parameters"],
    }
    out = write_report(root, maps=maps, provenance=provenance)
    sites = pyogrio.read_dataframe(root / "sites.gpkg", layer="sites").sort_values("rank")
    record = json.loads((root / "ranking.json").read_text())
    return {
        "dir": root,
        "maps": maps,
        "provenance": provenance,
        "html": out["html"],
        "html_bytes": out["html"].read_bytes(),
        "sites": sites,
        "record": record,
        "dem_sha": dem_sha,
    }


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.style_text: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.style_text.append(data)


def test_html_is_self_contained(run):
    page = _Collector()
    page.feed(run["html_bytes"].decode("utf-8"))
    tags = [t for t, _ in page.tags]
    for forbidden in ("script", "link", "iframe", "object", "embed", "base", "frame"):
        assert forbidden not in tags, f"<{forbidden}> in a self-contained report"
    ids = {a["id"] for _, a in page.tags if "id" in a}
    images = []
    for tag, attrs in page.tags:
        for name in ("src", "href", "srcset", "poster", "data", "action", "background", "xlink:href"):
            if name not in attrs:
                continue
            value = attrs[name]
            if name == "href":
                assert value.startswith("#") and value[1:] in ids, f"<{tag} href={value!r}> is not an in-page anchor"
            else:
                assert value.startswith("data:"), f"<{tag} {name}={value[:60]!r}> is not a data: URI"
        assert "url(" not in attrs.get("style", ""), f"<{tag}> style loads a resource"
        if tag == "img":
            images.append(attrs["src"])
    css = "".join(page.style_text)
    assert "url(" not in css and "@import" not in css
    assert len(images) == N_FIGURES
    for src in images:
        head, payload = src.split(",", 1)
        assert head == "data:image/png;base64"
        assert base64.b64decode(payload)[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_states_where_its_numbers_come_from(run):
    text = run["html_bytes"].decode("utf-8")
    rec, top = run["record"], run["sites"].iloc[0]
    for source in (
        "From ranking.json: lattice_sites, constraints, passing_each, passing_all",
        "From sites.gpkg, layer sites",
        "ranking.json learned.spatial_cv",
        "learned.leave_one_region_out",
        "ranking.json learned.permutation_importances",
        "From ranking.json criteria",
        "From sites.gpkg: layer distinct_sites",
        "layer traverses (length_km",
        "and layer site_power",
    ):
        assert source in text
    tightest = min(rec["passing_each"].items(), key=lambda kv: (kv[1], kv[0]))[0]
    assert f"The tightest constraint is <strong>{tightest}</strong>" in text
    assert f"<strong>{rec['passing_all']}</strong> pass all hard constraints" in text
    assert f"The best-ranked site is <strong>{top['site_id']}</strong>" in text
    # without a hillshade map the report shades the DEM itself
    assert "hillshade computed from dem_m.tif" in text
    # the regions layer of sites.gpkg: outlined on the map, named in the leave-one-region-out table
    assert "orange outlines: the expert regions (sites.gpkg layer regions)" in text
    assert all(f"<td>Expert {i}</td>" in text for i in range(len(OTHERS)))
    for p in rec["parameters"]:
        assert f"<code>{p['name']}</code>" in text


def test_two_reports_of_the_same_run_are_byte_identical(run):
    again = write_report(run["dir"], maps=run["maps"], provenance=run["provenance"])["html"].read_bytes()
    assert again == run["html_bytes"]
    # and the only time on the page is provenance["created"]
    assert b"2026-11-24T12:00:00Z" in again


def test_run_folder_without_ranking_json_is_a_one_line_error(tmp_path):
    (tmp_path / "sites.gpkg").write_bytes(b"")
    with pytest.raises(ProspectError, match=r"ranking\.json") as info:
        write_report(tmp_path, maps={}, provenance={})
    assert isinstance(info.value, InputNotFoundError)
    assert "\n" not in str(info.value) and str(tmp_path / "ranking.json") in str(info.value)
    assert not (tmp_path / "report.html").exists()


def test_missing_map_and_missing_browser_are_one_line_errors(run, tmp_path):
    with pytest.raises(InputNotFoundError, match=r"map 'he3_ppb' not found"):
        write_report(run["dir"], maps={"he3_ppb": tmp_path / "he3_ppb.tif"}, provenance=run["provenance"])
    with pytest.raises(ProspectError, match=r"Chromium not found") as info:
        write_report(
            run["dir"], maps=run["maps"], provenance=run["provenance"], pdf=True, chromium=tmp_path / "no-chromium"
        )
    assert "\n" not in str(info.value)


def test_a_psr_mask_is_drawn_like_the_psr_fraction(run, tmp_path):
    """A run without a site stage's PSR fraction has the illumination stage's 0/1 ``psr_mask``:
    the report draws it as the PSR overlay and names it."""
    import rasterio

    with rasterio.open(run["maps"]["psr_fraction"]) as src:
        profile, fraction = src.profile, src.read(1)
    mask_path = tmp_path / "psr_mask.tif"
    with rasterio.open(mask_path, "w", **profile) as dst:
        dst.write(np.where(fraction == profile["nodata"], fraction, (fraction >= 0.5).astype("float32")), 1)
    maps = {k: v for k, v in run["maps"].items() if k != "psr_fraction"}
    assert figures.psr_layer(maps) is None and figures.psr_layer({**maps, "psr_mask": mask_path}) == "psr_mask"
    assert figures.overlay_stem({"psr_mask": mask_path, "dem_m": run["maps"]["dem_m"]}) is None  # never the overlay
    text = render_report(run["dir"], maps={**maps, "psr_mask": mask_path}, provenance=run["provenance"])
    assert "permanently shadowed regions (psr_mask ≥ 0.5) in blue" in text
    assert "<td><code>psr_mask</code></td>" in text
    with_mask = figures.site_map_png(None, {**maps, "psr_mask": mask_path}, run["sites"], top_k=3, max_px=200)
    without = figures.site_map_png(None, maps, run["sites"], top_k=3, max_px=200)
    assert with_mask != without


@pytest.fixture(scope="module")
def browser_page(run):
    """The report opened in headless Chromium: page text, console errors, requests, images, screenshot."""
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent: the report's browser checks need Chromium")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    events: dict[str, list[str]] = {"console": [], "failed": [], "requests": [], "page_errors": []}
    with sync_playwright() as pw:  # Playwright gives the browser a fresh temporary profile itself
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on(
                "console", lambda m: m.type in ("error", "warning") and events["console"].append(f"{m.type}: {m.text}")
            )
            page.on("pageerror", lambda e: events["page_errors"].append(str(e)))
            page.on("requestfailed", lambda r: events["failed"].append(r.url[:100]))
            page.on("request", lambda r: events["requests"].append(r.url[:100]))
            page.goto(run["html"].resolve().as_uri(), wait_until="load")
            text = page.inner_text("body")
            loaded = page.evaluate("Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    return {"text": text, "loaded_images": loaded, "screenshot": shot, **events}


@needs_chromium
def test_browser_renders_the_report_without_errors(browser_page, run):
    assert browser_page["console"] == [] and browser_page["page_errors"] == []
    assert browser_page["failed"] == []
    page_uri = run["html"].resolve().as_uri()
    assert all(u == page_uri or u.startswith("data:") for u in browser_page["requests"]), browser_page["requests"]
    assert browser_page["loaded_images"] >= N_FIGURES


@needs_chromium
def test_browser_shows_the_top_site_criteria_and_checksums(browser_page, run):
    text, top = browser_page["text"], run["sites"].iloc[0]
    assert top["site_id"] in text
    assert f"{top['score_p05']:.3f} – {top['score_p95']:.3f}" in text  # the ranked table's 90 % interval
    assert f"{top['score_p05']:.3f}–{top['score_p95']:.3f}" in text  # and the summary's
    for c in run["record"]["criteria"]:
        assert c["name"] in text
    assert run["dem_sha"] in text
    assert "Leave one region out" in text and "Permutation importances" in text


@needs_chromium
def test_screenshot_is_not_blank(browser_page):
    from PIL import Image

    img = np.asarray(Image.open(browser_page["screenshot"]).convert("RGB"))
    assert img.shape[0] > 3000 and img.shape[1] >= 1200  # a full page, not the viewport
    packed = (img[..., 0].astype(np.uint32) << 16) | (img[..., 1].astype(np.uint32) << 8) | img[..., 2]
    colours = np.unique(packed)
    assert len(colours) > 2000, f"only {len(colours)} distinct colours: blank or broken page"
    assert (img < 128).any(axis=2).mean() > 0.01  # dark pixels: text and figures drawn


@needs_chromium
def test_pdf_is_printed(run):
    out = write_report(run["dir"], maps=run["maps"], provenance=run["provenance"], pdf=True)
    pdf = out["pdf"].read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) > 50_000
    assert out["html"].read_bytes() == run["html_bytes"]
