"""The ``prospect`` command line: a thin layer over the library.

Every command calls one library function. Any :class:`~prospect.errors.ProspectError`
becomes one line on stderr (``prospect: error: ...``) and exit code 2, with no
traceback and no partial output; usage errors also exit 2. Warnings print as one line
each.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from prospect.errors import ProspectError

try:  # typer >= 0.20 vendors click as typer._click (and raises its exceptions)
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc  # type: ignore[no-redef]  # older typer: click itself

_PACKAGE = Path(__file__).resolve().parent


@functools.cache
def _module_source(path: str) -> ast.Module:
    return ast.parse((_PACKAGE / path).read_text(encoding="utf-8"))


def _default(path: str, name: str) -> Any:
    """The library default ``name`` (a module constant, or ``function.parameter``) of the module at
    ``path``, read from its source: the option help quotes the library's defaults without importing
    the science modules (seconds of numba and xarray for ``--help``). tests/test_cli_stages.py checks
    every value against the imported module."""
    tree = _module_source(path)
    function, _, parameter = name.rpartition(".")
    for node in tree.body:
        if function and isinstance(node, ast.FunctionDef) and node.name == function:
            positional = node.args.posonlyargs + node.args.args
            pairs = list(zip(positional[len(positional) - len(node.args.defaults) :], node.args.defaults, strict=True))
            pairs += [(a, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True) if d]
            for arg, value in pairs:
                if arg.arg == parameter:
                    return ast.literal_eval(value)
        if not function and isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return ast.literal_eval(node.value)
    raise LookupError(f"prospect/{path}: no default {name!r}")


N_AZIMUTHS = _default("illumination/maps.py", "N_AZIMUTHS")
MIN_AZIMUTHS = _default("illumination/maps.py", "MIN_AZIMUTHS")
MAX_AZIMUTHS = _default("illumination/maps.py", "MAX_AZIMUTHS")
MAX_DISTANCE_M = _default("illumination/maps.py", "MAX_DISTANCE_M")
# the Moon's half circumference, as illumination/maps.py computes it from lunar.py
MAX_DISTANCE_LIMIT_M = math.pi * _default("lunar.py", "MOON_RADIUS_M")
OBSERVER_HEIGHT_M = _default("illumination/maps.py", "OBSERVER_HEIGHT_M")
MAX_OBSERVER_HEIGHT_M = _default("illumination/maps.py", "MAX_OBSERVER_HEIGHT_M")
MEMORY_MB = _default("illumination/tiles.py", "MEMORY_MB")
MIN_MEMORY_MB = _default("illumination/tiles.py", "MIN_MEMORY_MB")
MAX_MEMORY_MB = _default("illumination/tiles.py", "MAX_MEMORY_MB")
NEAR_PX = _default("illumination/tiles.py", "NEAR_PX")
FAR_FACTOR = _default("illumination/tiles.py", "FAR_FACTOR")
DEFAULT_STEP_HOURS = _default("illumination/ephemeris.py", "DEFAULT_STEP_HOURS")
MAX_TIME_SAMPLES = _default("illumination/ephemeris.py", "MAX_TIME_SAMPLES")
SPAN_START = _default("illumination/ephemeris.py", "default_times.start")
SPAN_YEARS = _default("illumination/ephemeris.py", "default_times.years")
HE3_SAMPLES = _default("resources/he3.py", "MC_SAMPLES")
HE3_MAX_SAMPLES = _default("resources/he3.py", "MAX_MC_SAMPLES")
TABLE_RESOLUTION_DEG = _default("resources/he3.py", "TABLE_RESOLUTION_DEG")
ICE_SAMPLES = _default("resources/ice.py", "MC_SAMPLES")
ICE_MAX_SAMPLES = _default("resources/ice.py", "MAX_MC_SAMPLES")
MIN_TILE_PX = _default("illumination/tiles.py", "MIN_TILE_PX")
MAX_TILE_PX = _default("illumination/tiles.py", "MAX_TILE_PX")
MIN_NEAR_PX = _default("illumination/tiles.py", "MIN_NEAR_PX")
MAX_NEAR_PX = _default("illumination/tiles.py", "MAX_NEAR_PX")
MAX_FAR_FACTOR = _default("illumination/tiles.py", "MAX_FAR_FACTOR")
MAX_SEED = _default("pipeline/stages.py", "MAX_SEED")
SEED_HELP = f"Monte Carlo seed, 0 to {MAX_SEED} (default 0)."

app = typer.Typer(
    name="prospect",
    help="Lunar resource prospecting: real orbital rasters in, ranked base sites out.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # the help's units in brackets ("[km]") are text, not markup
)

AssumeCRS = Annotated[
    str | None,
    typer.Option(
        "--assume-crs",
        help="Use this IAU_2015 CRS (e.g. IAU_2015:30100) instead of the file's declared "
        "one, for files whose CRS is known to be wrong.",
    ),
]


@app.command()
def info(
    source: Annotated[
        str,
        typer.Argument(
            help="A product file (PDS3 .LBL/.IMG, PDS4 .xml, ISIS3 .cub, GeoTIFF, "
            "JPEG2000, shapefile, GeoPackage, CSV) or a data-manifest id."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    assume_crs: AssumeCRS = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Refuse manifest files without a published checksum.")
    ] = False,
) -> None:
    """Describe a product: format, lunar CRS, size, resolution, units, value range, checksum."""
    from prospect.io.readers import describe, open_product, sniff_format
    from prospect.io.vectors import is_vector_source

    path = Path(source)
    if is_vector_source(source):
        from prospect.io.fetch import sha256_file
        from prospect.io.vectors import open_vector

        gdf = open_vector(source, crs_override=assume_crs, strict=strict)
        summary = {
            "driver": "vector",
            "crs": gdf.attrs.get("crs_code"),
            "features": int(len(gdf)),
            "bounds": [float(v) for v in gdf.total_bounds],
            "columns": [c for c in gdf.columns if c != "geometry"],
            "sha256": sha256_file(path) if path.exists() else None,
            "manifest_id": gdf.attrs.get("manifest_id"),
        }
    else:
        if path.exists() and sniff_format(path) == "vector":
            raise typer.BadParameter(f"{source}: vector file")
        arr = open_product(source, crs_override=assume_crs, strict=strict)
        summary = describe(arr)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        width = max(len(k) for k in summary)
        for k, v in summary.items():
            typer.echo(f"{k:<{width}}  {v}")


@app.command()
def fetch(
    ids: Annotated[list[str], typer.Argument(help="Data-manifest ids (see `prospect manifests`).")],
    strict: Annotated[
        bool, typer.Option("--strict", help="Refuse files whose manifest publishes no checksum.")
    ] = False,
    mirror: Annotated[
        str | None,
        typer.Option(
            "--mirror", help="Local folder or base URL searched before the archive (default: $PROSPECT_MIRROR)."
        ),
    ] = None,
    cache: Annotated[
        Path | None, typer.Option("--cache", help="Cache folder (default: $PROSPECT_CACHE or ~/.cache/prospect).")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show download progress.")] = True,
) -> None:
    """Download and verify the files of data products into the cache (offline with a mirror)."""
    from prospect.io.fetch import fetch as fetch_products

    result = fetch_products(list(ids), strict=strict, mirror=mirror, cache=cache, progress=progress)
    for mid, files in result.items():
        for name, path in files.items():
            typer.echo(f"{mid}\t{name}\t{path}")


@app.command()
def manifests(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """List (and validate) every data manifest."""
    from prospect.io.manifests import list_manifests, load_manifest

    rows = []
    for mid in list_manifests():
        m = load_manifest(mid)
        rows.append(
            {
                "id": m.id,
                "product_id": m["product_id"],
                "instrument": m["instrument"],
                "format": m.format,
                "crs": m.crs,
                "verified": m.verified,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        for r in rows:
            flag = "" if r["verified"] else "  (no published checksum)"
            typer.echo(f"{r['id']:<36} {r['instrument']:<8} {r['format']:<13} {r['crs']:<15} {r['product_id']}{flag}")


def _echo_paths(paths: dict[str, Path]) -> None:
    for name, path in paths.items():
        typer.echo(f"{path}: {name}")


@app.command()
def slope(
    dem: Annotated[str, typer.Argument(help="A DEM product (PDS3 .LBL, GeoTIFF, ISIS3, PDS4) or a data-manifest id.")],
    out: Annotated[Path, typer.Argument(help="Output GeoTIFF (tiled, compressed, float32 degrees, nodata -9999).")],
    method: Annotated[
        str | None,
        typer.Option(
            "--method", help="horn (Horn 1981, GDAL's default; the default) or zt (Zevenbergen & Thorne 1987)."
        ),
    ] = None,
    planar: Annotated[
        bool,
        typer.Option(
            "--planar", help="Use map units as ground distances, as gdaldem does (no polar scale factor, no cos(lat))."
        ),
    ] = False,
    baseline: Annotated[
        float | None,
        typer.Option(
            "--baseline", help="Baseline in metres: difference samples about this far apart (default: the 3x3 stencil)."
        ),
    ] = None,
    cog: Annotated[bool, typer.Option("--cog", help="Write a Cloud Optimized GeoTIFF with overviews.")] = False,
    chunks: Annotated[
        int | None,
        typer.Option("--chunks", help="Dask chunk size in pixels, a multiple of 512 (default: the reader's)."),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Report progress on stderr.")] = True,
    assume_crs: AssumeCRS = None,
) -> None:
    """Slope in degrees from lunar ground distances, streamed chunk by chunk to a GeoTIFF."""
    import rasterio

    from prospect.grid import AnalysisGrid
    from prospect.io.readers import open_product
    from prospect.pipeline.stages import run_slope

    params = {
        "method": method,
        "baseline_m": baseline,
        "planar": planar or None,
        "cog": cog or None,
        "chunks": chunks,
        "crs_override": assume_crs,
    }
    paths = run_slope(out, sources={"dem": dem}, params=params, progress=progress)
    with rasterio.open(paths["slope_deg"]) as src:  # the method and baseline the stage recorded
        tags = src.tags()
    grid = AnalysisGrid.from_dataarray(open_product(paths["slope_deg"]))
    typer.echo(
        f"{out}: slope [deg], {tags['prospect_method']}, baseline {float(tags['prospect_baseline_m']):g}"
        f" m, {grid.shape[0]} x {grid.shape[1]}, {grid.crs}"
    )


@app.command()
def illumination(
    dem: Annotated[str, typer.Argument(help="A polar stereographic DEM (PDS3 .LBL, GeoTIFF, ...) or a manifest id.")],
    outdir: Annotated[
        Path,
        typer.Argument(
            help="Folder for illumination_fraction.tif, longest_darkness_h.tif, "
            "psr_mask.tif and earth_visibility_fraction.tif."
        ),
    ],
    azimuths: Annotated[
        int | None,
        typer.Option("--azimuths", help=f"Horizon azimuths ({MIN_AZIMUTHS} to {MAX_AZIMUTHS}; default {N_AZIMUTHS})."),
    ] = None,
    max_distance: Annotated[
        float | None,
        typer.Option(
            "--max-distance",
            help=f"Horizon search distance [km], more than 0, at most {MAX_DISTANCE_LIMIT_M / 1000:g} "
            f"(default {MAX_DISTANCE_M / 1000:g}).",
        ),
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help=f"Start of the span (UTC date; default {SPAN_START}).")
    ] = None,
    years: Annotated[
        float | None,
        typer.Option(
            "--years",
            help=f"Length of the span [years]; 18.6 is one lunar precession cycle (default {SPAN_YEARS:g}).",
        ),
    ] = None,
    step_hours: Annotated[
        float | None,
        typer.Option(
            "--step-hours",
            help=f"Time step of the darkness series [h], at least one minute; the span holds at most "
            f"{MAX_TIME_SAMPLES:,} steps (default {DEFAULT_STEP_HOURS:g}).",
        ),
    ] = None,
    darkness_min_disk_fraction: Annotated[
        float | None,
        typer.Option(
            "--darkness-min-disk-fraction",
            help="longest_darkness_h counts a time step as dark while less than this share (0 to 1) of the "
            "solar disk is up: 0.5 for darkness as a solar panel sees it (a sliver of Sun does not run a base) "
            "(default 0: dark only with no limb up).",
        ),
    ] = None,
    height: Annotated[
        float | None,
        typer.Option(
            "--height",
            help=f"Observer height above the surface [m], 0 to {MAX_OBSERVER_HEIGHT_M:g}, e.g. 2 for a solar mast "
            f"(default {OBSERVER_HEIGHT_M:g}).",
        ),
    ] = None,
    tile: Annotated[
        int | None,
        typer.Option(
            "--tile",
            help=f"Output tile side [px], {MIN_TILE_PX} to {MAX_TILE_PX}; a tile's horizon cube is azimuths x "
            "tile^2 x 4 bytes in memory (default: the largest tile that fits --memory).",
        ),
    ] = None,
    memory: Annotated[
        float | None,
        typer.Option(
            "--memory",
            help=f"Peak memory of the stage [MB], {MIN_MEMORY_MB} to {MAX_MEMORY_MB}; the tile side follows "
            f"from it (default {MEMORY_MB}).",
        ),
    ] = None,
    near: Annotated[
        int | None,
        typer.Option(
            "--near",
            help=f"Full-resolution halo around a tile [px], {MIN_NEAR_PX} to {MAX_NEAR_PX}; beyond it the far "
            f"field uses a coarsened DEM (default {NEAR_PX}).",
        ),
    ] = None,
    far_factor: Annotated[
        int | None,
        typer.Option(
            "--far-factor",
            help=f"Coarsening of the far-field DEM, 1 to {MAX_FAR_FACTOR} (1: full resolution everywhere, exact; "
            f"default {FAR_FACTOR}).",
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="Address of a Dask scheduler whose workers compute the tiles (default: $DASK_SCHEDULER_ADDRESS, "
            "else local threads).",
        ),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="A line per tile on stderr.")] = True,
    assume_crs: AssumeCRS = None,
) -> None:
    """Horizon maps, then Sun and Earth visibility over the span: four GeoTIFFs in OUTDIR.

    Tile by tile (out of core); a rerun of an interrupted command resumes from its last
    finished tile. With --scheduler every tile is a task on that Dask cluster (the DEM is
    read here; workers need no shared file system).
    """
    from prospect.pipeline.runner import connect_dask
    from prospect.pipeline.stages import run_illumination

    params = {
        "azimuths": azimuths,
        "max_distance": None if max_distance is None else max_distance * 1000.0,
        "start": start,
        "years": years,
        "step": step_hours,
        "darkness_min_disk_fraction": darkness_min_disk_fraction,
        "height": height,
        "tile": tile,
        "memory": memory,
        "near": near,
        "far_factor": far_factor,
        "crs_override": assume_crs,
    }
    with connect_dask(scheduler, None):  # an unreachable scheduler: refused before anything is written
        paths = run_illumination(outdir, sources={"dem": dem}, params=params, progress=progress)
    _echo_paths(paths)


@app.command()
def he3(
    tio2_source: Annotated[
        str,
        typer.Argument(
            help="Titanium source: a path or manifest id, e.g. lp_grs_ti_5deg "
            "(LP GRS Ti table, TiO2 = 1.668 Ti) or a TiO2 raster (wt%)."
        ),
    ],
    outdir: Annotated[
        Path,
        typer.Argument(
            help="Folder for he3_ppb.tif (+ _p05/_p50/_p95), he3_column_kg_m2.tif, "
            "regolith_thickness_m.tif, ... and he3_inventory.json."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the inventory summary as JSON.")] = False,
    feo: Annotated[
        str | None,
        typer.Option(
            "--feo", help="FeO source (wt%) for the mare/highland regolith thickness rule, e.g. lp_grs_feo_halfdeg."
        ),
    ] = None,
    maturity: Annotated[str | None, typer.Option("--maturity", help="Maturity layer (see --maturity-kind).")] = None,
    maturity_kind: Annotated[
        str | None, typer.Option("--maturity-kind", help="index (0..1; the default), is_feo or omat.")
    ] = None,
    thickness: Annotated[
        str | None, typer.Option("--thickness", help="Regolith thickness map [m] instead of the mare/highland rule.")
    ] = None,
    quantity: Annotated[
        str | None,
        typer.Option("--quantity", help="Ti or TiO2: what TIO2_SOURCE holds, if the source does not say."),
    ] = None,
    resolution: Annotated[
        float | None,
        typer.Option("--resolution", help=f"Grid spacing [deg] for table sources (default {TABLE_RESOLUTION_DEG:g})."),
    ] = None,
    samples: Annotated[
        int | None,
        typer.Option(
            "--samples", help=f"Monte Carlo samples (0: none, else 2 to {HE3_MAX_SAMPLES}; default {HE3_SAMPLES})."
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help=SEED_HELP)] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML file overriding parameters (section he3:).")
    ] = None,
) -> None:
    """Helium-3 concentration, column mass and inventory (with a Monte Carlo interval) from TiO2."""
    from prospect.pipeline.stages import run_he3

    sources = {"tio2": tio2_source, "feo": feo, "maturity": maturity, "thickness": thickness}
    params = {
        "config": config,
        "samples": samples,
        "maturity_kind": maturity_kind,
        "quantity": quantity,
        "resolution_deg": resolution,
    }
    paths = run_he3(outdir, sources={k: v for k, v in sources.items() if v is not None}, params=params, seed=seed or 0)
    summary = json.loads(paths["inventory"].read_text(encoding="utf-8"))
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    for inv in summary["inventories"].values():
        line = f"He-3 inventory, {inv['depth']}: {inv['inventory_kg']:.4g} kg (central estimate)"
        if "monte_carlo_kg" in inv:
            mc = inv["monte_carlo_kg"]
            line += (
                f"; Monte Carlo ({summary['samples']} samples) p05 {mc['p05']:.4g} kg, "
                f"p50 {mc['p50']:.4g} kg, p95 {mc['p95']:.4g} kg"
            )
        typer.echo(line)
        typer.echo(
            f"  nearside {inv['nearside_kg']:.3g} kg, farside {inv['farside_kg']:.3g} kg; "
            f"mare {inv['mare_kg']:.3g} kg, highland {inv['highland_kg']:.3g} kg"
        )
    typer.echo(f"thickness: {summary['thickness_rule']}; maturity: {summary['maturity_rule']}")
    for name, path in summary["maps"].items():
        typer.echo(f"{path}: {name}")


@app.command()
def ice(
    outdir: Annotated[
        Path,
        typer.Argument(
            help="Folder for ice_favourability.tif, ice_stability_class.tif, "
            "coverage.tif and the Monte Carlo percentiles."
        ),
    ],
    dem: Annotated[
        str | None, typer.Option("--dem", help="DEM (slope and aspect; its grid is the analysis grid).")
    ] = None,
    psr: Annotated[
        str | None,
        typer.Option(
            "--psr", help="PSR polygons (e.g. the LOLA PSR shapefile) or a psr_mask.tif from `prospect illumination`."
        ),
    ] = None,
    tmax: Annotated[str | None, typer.Option("--tmax", help="Annual maximum temperature [K] (Diviner).")] = None,
    tmean: Annotated[str | None, typer.Option("--tmean", help="Annual mean temperature [K].")] = None,
    ice_depth: Annotated[str | None, typer.Option("--ice-depth", help="Depth to ice [m] (Diviner PRP).")] = None,
    illumination: Annotated[
        str | None, typer.Option("--illumination", help="illumination_fraction.tif (for the thermal proxy).")
    ] = None,
    hydrogen: Annotated[
        str | None,
        typer.Option(
            "--hydrogen",
            help="Neutron hydrogen [ppm H]: a raster or a "
            "Lunar Prospector table such as lp_ns_hydrogen_halfdeg; adds "
            "the water-equivalent column and inventory.",
        ),
    ] = None,
    samples: Annotated[
        int | None,
        typer.Option(
            "--samples", help=f"Monte Carlo samples (0: none, else at most {ICE_MAX_SAMPLES}; default {ICE_SAMPLES})."
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help=SEED_HELP)] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML file overriding parameters (section ice:).")
    ] = None,
) -> None:
    """Water-ice stability classes and favourability (0..1) from whatever layers are given."""
    from prospect.pipeline.stages import run_ice

    sources = {
        "dem": dem,
        "psr": psr,
        "tmax": tmax,
        "tmean": tmean,
        "ice_depth": ice_depth,
        "illumination": illumination,
        "hydrogen": hydrogen,
    }
    paths = run_ice(
        outdir,
        sources={k: v for k, v in sources.items() if v is not None},
        params={"config": config, "samples": samples},
        seed=seed or 0,
    )
    _echo_paths(paths)
    inventory = json.loads(paths["provenance"].read_text())["provenance"].get("water_inventory_kg")
    if inventory:
        typer.echo("water-equivalent inventory: " + ", ".join(f"{k[:-3]} {v:.4g} kg" for k, v in inventory.items()))


@app.command()
def rank(
    outdir: Annotated[
        Path, typer.Argument(help="Folder for sites.gpkg (layers sites, candidates), ranking.json and model.skops.")
    ],
    dem: Annotated[
        str, typer.Option("--dem", help="DEM: its grid is the analysis grid (slope, roughness, constraints).")
    ],
    illumination: Annotated[
        str | None,
        typer.Option(
            "--illumination", help="`prospect illumination` output folder (or an illumination_fraction raster)."
        ),
    ] = None,
    psr: Annotated[
        str | None,
        typer.Option("--psr", help="PSR polygons or raster (default: the illumination folder's psr_mask.tif)."),
    ] = None,
    ice: Annotated[
        str | None, typer.Option("--ice", help="`prospect ice` output folder (or a favourability raster).")
    ] = None,
    he3: Annotated[
        str | None, typer.Option("--he3", help="He-3 concentration raster or `prospect he3` folder.")
    ] = None,
    craters: Annotated[
        str | None, typer.Option("--craters", help="Crater catalogue, e.g. hkpolyu_craters_60_90s.")
    ] = None,
    cold_traps: Annotated[
        str | None, typer.Option("--cold-traps", help="Named cold traps, e.g. cold_trap_craters.")
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option("--labels", help="Expert-chosen regions for the learned model, e.g. artemis3_regions_2022."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help=f"Seed of the model and the Monte Carlo, 0 to {MAX_SEED} (default 0).")
    ] = None,
    evaluate: Annotated[
        bool | None,
        typer.Option(
            "--evaluate/--no-evaluate", help="Spatial CV and leave-one-region-out of the learned model (default on)."
        ),
    ] = None,
    top: Annotated[int, typer.Option("--top", help="Sites to print.")] = 10,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML file overriding parameters (section sites:).")
    ] = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="A line per part with its seconds on stderr.")
    ] = True,
) -> None:
    """Candidate base sites: constraints, features, multi-criteria and learned scores, uncertainty, reasons."""
    import pyogrio

    from prospect.pipeline.stages import run_sites

    sources = {
        "dem": dem,
        "illumination": illumination,
        "psr": psr,
        "ice": ice,
        "he3": he3,
        "craters": craters,
        "cold_traps": cold_traps,
        "labels": labels,
    }
    paths = run_sites(
        outdir,
        sources={k: v for k, v in sources.items() if v is not None},
        params={"config": config, "evaluate": evaluate},
        seed=seed or 0,
        progress=progress,
    )
    rec = json.loads(paths["record"].read_text(encoding="utf-8"))
    typer.echo(f"{rec['passing_all']:,} of {rec['lattice_sites']:,} lattice sites pass the constraints")
    sites = pyogrio.read_dataframe(paths["sites"], layer="sites", columns=["explanation"], read_geometry=False)
    for line in sites["explanation"].head(top):
        typer.echo(line)
    learned = rec.get("learned", {})
    if "loro_recall" in learned:
        typer.echo(
            f"leave-one-region-out recall: learned {learned['loro_recall']:.2f}, weighted sum "
            f"{learned['baseline_weighted_sum_recall']:.2f}, TOPSIS {learned['baseline_topsis_recall']:.2f}"
        )
    _echo_paths(paths)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A `prospect rank` output folder (ranking.json, sites.gpkg).")],
    report: Annotated[bool, typer.Option("--report/--no-report", help="Also write report.html.")] = True,
    pdf: Annotated[bool, typer.Option("--pdf", help="Also render report.pdf with headless Chromium.")] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show progress of the map writes.")
    ] = False,
) -> None:
    """The deliverables of a ranked run: COG maps with styles, sites.gpkg, project.qgz, report.html, run.json."""
    from prospect.export.package import run_export

    outputs = run_export(run_dir, report=report, pdf=pdf, progress=progress)
    for key, path in outputs.items():
        typer.echo(f"{path}: {key}")


@app.command("report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="An exported run folder (`prospect export`).")],
    pdf: Annotated[bool, typer.Option("--pdf", help="Also render report.pdf with headless Chromium.")] = False,
) -> None:
    """Rewrite the site-ranking report of an exported run (report.html, optionally report.pdf)."""
    from prospect.export.package import run_report

    for key, path in run_report(run_dir, pdf=pdf).items():
        typer.echo(f"{path}: {key}")


@app.command()
def run(
    pipeline: Annotated[Path, typer.Argument(help="A pipeline definition, e.g. pipelines/demo.yaml.")],
    out: Annotated[Path | None, typer.Option("--out", help="Run folder (default: runs/<pipeline name>).")] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="Address of a Dask scheduler to compute on (default: $DASK_SCHEDULER_ADDRESS, else local threads).",
        ),
    ] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Local worker threads (default: all cores).")] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue the run in --out: stages that are current are skipped, the rest (re)computed."
        ),
    ] = False,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help=f"Seed of every random draw, 0 to {MAX_SEED} (default: the pipeline's)."),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars on stderr.")] = True,
) -> None:
    """Run a whole pipeline: data -> terrain -> illumination -> resources -> sites -> exports, cached and resumable."""
    from prospect.pipeline.runner import run_pipeline
    from prospect.pipeline.spec import load_pipeline
    from prospect.pipeline.stages import check_seed

    if seed is not None:
        check_seed(seed, "--seed")  # before the run folder exists
    if workers is not None and workers < 1:
        raise typer.BadParameter(f"--workers must be at least 1, not {workers}")
    spec = load_pipeline(pipeline)  # every check before anything is written
    summary = run_pipeline(spec, out, scheduler=scheduler, workers=workers, resume=resume, seed=seed, progress=progress)
    for name in ("report.html", "project.qgz", "run.json"):
        if name in summary:
            typer.echo(f"{summary[name]}: {name}")


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    return f"prospect: warning: {message}\n"


def _filter_warnings() -> None:
    """Library warnings meant for developers stay out of the user's terminal; prospect's own are kept.

    dask's ``PerformanceWarning`` ("Increasing number of chunks by factor of ...", from a
    rechunk prospect plans on purpose) and the deprecation notices of the libraries say
    nothing a user can act on.
    """
    warnings.filterwarnings("ignore", message=r"Increasing number of chunks by factor of")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    for category in (DeprecationWarning, FutureWarning):  # prospect's own (later filters take precedence)
        warnings.filterwarnings("default", category=category, module=r"prospect(\.|$)")


def _error(message: str, code: int) -> None:
    print(f"prospect: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one line on stderr for every failure.

    A :class:`~prospect.errors.ProspectError` or a usage error: exit 2; Ctrl-C: exit 130;
    any other exception: its name and message, exit 1 (``prospect run`` writes the
    traceback to the run's log, and the line names the log).
    """
    warnings.formatwarning = _one_line_warning
    _filter_warnings()
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="prospect")
    except ProspectError as exc:
        _error(str(exc), 2)
    except click_exc.NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(2)
    except click_exc.UsageError as exc:
        _error(exc.format_message(), 2)
    except click_exc.ClickException as exc:
        _error(exc.format_message(), exc.exit_code or 2)
    except (typer.Abort, KeyboardInterrupt):
        print("prospect: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # an unexpected error: one line, not a traceback
        notes = "; ".join(getattr(exc, "__notes__", []))
        _error(f"unexpected {type(exc).__name__}: {exc}" + (f" ({notes})" if notes else ""), 1)
    if rv == 130:  # typer turns Ctrl-C into Exit(130), returned in non-standalone mode
        print("prospect: interrupted", file=sys.stderr)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
