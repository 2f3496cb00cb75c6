"""The ``prospect`` command line: a thin layer over the library.

Every command calls one library function. Any :class:`~prospect.errors.ProspectError`
becomes one line on stderr (``prospect: error: ...``) and exit code 2, with no
traceback and no partial output; usage errors also exit 2. Warnings print as one line
each.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

try:  # typer >= 0.20 vendors click as typer._click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc

from prospect.errors import ConfigError, OutputPathError, ProspectError

app = typer.Typer(
    name="prospect",
    help="Lunar resource prospecting: real orbital rasters in, ranked base sites out.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
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
    from prospect.io.readers import _sniff, describe, open_product
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
        if path.exists() and _sniff(path) == "vector":
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


@app.command()
def slope(
    dem: Annotated[str, typer.Argument(help="A DEM product (PDS3 .LBL, GeoTIFF, ISIS3, PDS4) or a data-manifest id.")],
    out: Annotated[Path, typer.Argument(help="Output GeoTIFF (tiled, compressed, float32 degrees, nodata -9999).")],
    method: Annotated[
        str, typer.Option("--method", help="horn (Horn 1981, GDAL's default) or zt (Zevenbergen & Thorne 1987).")
    ] = "horn",
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
    chunks: Annotated[int, typer.Option("--chunks", help="Dask chunk size in pixels (a multiple of 512).")] = 1024,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Report progress on stderr.")] = True,
    assume_crs: AssumeCRS = None,
) -> None:
    """Slope in degrees from lunar ground distances, streamed chunk by chunk to a GeoTIFF."""
    from prospect.grid import AnalysisGrid
    from prospect.io.readers import open_product
    from prospect.io.writers import stream_geotiff
    from prospect.terrain import slope_deg

    out_dir = out.parent if str(out.parent) else Path(".")
    if not out_dir.is_dir():
        raise OutputPathError(f"{out}: output directory {out_dir} does not exist")
    if chunks <= 0:
        raise ConfigError(f"--chunks must be positive, not {chunks}")
    arr = open_product(dem, chunks=chunks, crs_override=assume_crs)
    result = slope_deg(arr, method=method, baseline_m=baseline, planar=planar)  # type: ignore[arg-type]
    grid = AnalysisGrid.from_dataarray(arr)
    tags = {f"prospect_{k}": v for k, v in result.attrs.items()}
    tags["prospect_source"] = str(dem)
    stream_geotiff(
        result,
        out,
        crs=grid.crs,
        transform=grid.transform,
        units="deg",
        tags=tags,
        cog=cog,
        progress=progress,
        label=f"slope {Path(dem).name}",
    )
    typer.echo(
        f"{out}: slope [deg], {result.attrs['method']}, baseline {result.attrs['baseline_m']:g} m, "
        f"{grid.shape[0]} x {grid.shape[1]}, {grid.crs}"
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
    azimuths: Annotated[int, typer.Option("--azimuths", help="Horizon azimuths (at least 64).")] = 360,
    max_distance: Annotated[float, typer.Option("--max-distance", help="Horizon search distance [km].")] = 150.0,
    start: Annotated[str, typer.Option("--start", help="Start of the span (UTC date).")] = "2020-01-01",
    years: Annotated[
        float, typer.Option("--years", help="Length of the span [years]; 18.6 is one lunar precession cycle.")
    ] = 18.6,
    step_hours: Annotated[float, typer.Option("--step-hours", help="Time step of the darkness series [h].")] = 6.0,
    height: Annotated[
        float, typer.Option("--height", help="Observer height above the surface [m], e.g. 2 for a solar mast.")
    ] = 0.0,
    tile: Annotated[
        int,
        typer.Option(
            "--tile", help="Output tile side [px]; a tile's horizon cube is azimuths x tile^2 x 4 bytes in memory."
        ),
    ] = 1536,
    near: Annotated[
        int,
        typer.Option(
            "--near", help="Full-resolution halo around a tile [px]; beyond it the far field uses a coarsened DEM."
        ),
    ] = 192,
    far_factor: Annotated[
        int,
        typer.Option("--far-factor", help="Coarsening of the far-field DEM (1: full resolution everywhere, exact)."),
    ] = 8,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="A line per tile on stderr.")] = True,
    assume_crs: AssumeCRS = None,
) -> None:
    """Horizon maps, then Sun and Earth visibility over the span: four GeoTIFFs in OUTDIR.

    Tile by tile (out of core); a rerun of an interrupted command resumes from its last
    finished tile.
    """
    from prospect.illumination.ephemeris import default_times, sun_earth_directions
    from prospect.illumination.maps import write_illumination
    from prospect.illumination.products import SunSamples
    from prospect.io.readers import open_product

    if azimuths < 64:
        raise ConfigError(f"--azimuths must be at least 64, not {azimuths}")
    if not outdir.parent.is_dir():
        raise OutputPathError(f"{outdir}: parent directory {outdir.parent} does not exist")
    arr = open_product(dem, crs_override=assume_crs)
    se = sun_earth_directions(default_times(start=start, years=years, step_hours=step_hours))
    paths = write_illumination(
        arr,
        outdir,
        SunSamples.from_ephemeris(se),
        source=str(dem),
        progress=progress,
        n_azimuths=azimuths,
        max_distance_m=max_distance * 1000.0,
        observer_height_m=height,
        tile_px=tile,
        near_px=near,
        far_factor=far_factor,
        workers=2,
    )
    for name, path in paths.items():
        typer.echo(f"{path}: {name}")


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
    maturity_kind: Annotated[str, typer.Option("--maturity-kind", help="index (0..1), is_feo or omat.")] = "index",
    thickness: Annotated[
        str | None, typer.Option("--thickness", help="Regolith thickness map [m] instead of the mare/highland rule.")
    ] = None,
    quantity: Annotated[
        str | None,
        typer.Option("--quantity", help="Ti or TiO2: what TIO2_SOURCE holds, if the source does not say."),
    ] = None,
    resolution: Annotated[float, typer.Option("--resolution", help="Grid spacing [deg] for table sources.")] = 0.5,
    samples: Annotated[int, typer.Option("--samples", help="Monte Carlo samples (0: none).")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Monte Carlo seed.")] = 0,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML file overriding parameters (section he3:).")
    ] = None,
) -> None:
    """Helium-3 concentration, column mass and inventory (with a Monte Carlo interval) from TiO2."""
    from prospect.resources.he3 import run_he3

    if quantity not in (None, "Ti", "TiO2"):
        raise ConfigError(f"--quantity must be Ti or TiO2, not {quantity!r}")
    if maturity_kind not in ("index", "is_feo", "omat"):
        raise ConfigError(f"--maturity-kind must be index, is_feo or omat, not {maturity_kind!r}")
    summary = run_he3(
        tio2_source,
        outdir,
        feo=feo,
        maturity=maturity,
        maturity_kind=maturity_kind,  # type: ignore[arg-type]
        thickness=thickness,
        quantity=quantity,
        resolution_deg=resolution,
        config=config,
        samples=samples,
        seed=seed,
    )
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    line = f"He-3 inventory {summary['inventory_kg']:.4g} kg (default parameters)"
    if "inventory_kg_p05" in summary:
        line += (
            f"; Monte Carlo ({summary['samples']} samples) p05 {summary['inventory_kg_p05']:.4g} kg, "
            f"p50 {summary['inventory_kg_p50']:.4g} kg, p95 {summary['inventory_kg_p95']:.4g} kg"
        )
    typer.echo(line)
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
    samples: Annotated[int, typer.Option("--samples", help="Monte Carlo samples (0: none).")] = 64,
    seed: Annotated[int, typer.Option("--seed", help="Monte Carlo seed.")] = 0,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML file overriding parameters (section ice:).")
    ] = None,
) -> None:
    """Water-ice stability classes and favourability (0..1) from whatever layers are given."""
    from prospect.resources.ice import run_ice

    if dem is None and psr is None and tmax is None and tmean is None and ice_depth is None:
        raise ConfigError("ice needs at least one of --dem, --psr, --tmax, --tmean, --ice-depth")
    if not outdir.parent.is_dir():
        raise OutputPathError(f"{outdir}: parent directory {outdir.parent} does not exist")
    paths = run_ice(
        outdir,
        dem=dem,
        psr=psr,
        tmax=tmax,
        tmean=tmean,
        ice_depth=ice_depth,
        illumination=illumination,
        hydrogen=hydrogen,
        config=config,
        mc_samples=samples,
        seed=seed,
    )
    for name, path in paths.items():
        typer.echo(f"{path}: {name}")
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
    seed: Annotated[int, typer.Option("--seed", help="Seed of the model and the Monte Carlo.")] = 0,
    evaluate: Annotated[
        bool, typer.Option("--evaluate/--no-evaluate", help="Spatial CV and leave-one-region-out of the learned model.")
    ] = True,
    top: Annotated[int, typer.Option("--top", help="Sites to print.")] = 10,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML file overriding parameters (section sites:).")
    ] = None,
) -> None:
    """Candidate base sites: constraints, features, multi-criteria and learned scores, uncertainty, reasons."""
    from prospect import config as _config
    from prospect.sites.rank import run_rank

    params = _config.load("sites", config)  # a bad key fails before any data is read
    if not outdir.parent.is_dir():
        raise OutputPathError(f"{outdir}: parent directory {outdir.parent} does not exist")
    ranking, paths = run_rank(
        outdir,
        dem,
        config=params,
        seed=seed,
        evaluate=evaluate,
        illumination=illumination,
        psr=psr,
        ice=ice,
        he3=he3,
        craters=craters,
        cold_traps=cold_traps,
        labels=labels,
    )
    rec = ranking.record
    typer.echo(f"{rec['passing_all']:,} of {rec['lattice_sites']:,} lattice sites pass the constraints")
    for line in ranking.sites["explanation"].head(top):
        typer.echo(line)
    learned = rec.get("learned", {})
    if "loro_recall" in learned:
        typer.echo(
            f"leave-one-region-out recall: learned {learned['loro_recall']:.2f}, weighted sum "
            f"{learned['baseline_weighted_sum_recall']:.2f}, TOPSIS {learned['baseline_topsis_recall']:.2f}"
        )
    for name, path in paths.items():
        typer.echo(f"{path}: {name}")


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
        int | None, typer.Option("--seed", help="Seed of every random draw (default: the pipeline's).")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars on stderr.")] = True,
) -> None:
    """Run a whole pipeline: data -> terrain -> illumination -> resources -> sites -> exports, cached and resumable."""
    from prospect.pipeline.runner import run_pipeline
    from prospect.pipeline.spec import load_pipeline

    spec = load_pipeline(pipeline)  # every check before anything is written
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {workers}")
    if out is None:
        out = Path("runs") / spec.name
        out.parent.mkdir(exist_ok=True)
    summary = run_pipeline(spec, out, scheduler=scheduler, workers=workers, resume=resume, seed=seed, progress=progress)
    for name in ("report.html", "project.qgz", "run.json"):
        if name in summary:
            typer.echo(f"{summary[name]}: {name}")


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    return f"prospect: warning: {message}\n"


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning user errors into one line and exit code 2."""
    warnings.formatwarning = _one_line_warning
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="prospect")
    except ProspectError as exc:
        msg = " ".join(str(exc).split())
        print(f"prospect: error: {msg}", file=sys.stderr)
        sys.exit(2)
    except click_exc.UsageError as exc:
        exc.show()
        sys.exit(2)
    except click_exc.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code or 2)
    except click_exc.Abort:
        print("prospect: aborted", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("prospect: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
