"""Site-stage benchmark: ``prospect rank`` on a fractal 20 m polar DEM with the real vectors.

Run::

    python -m benchmarks.bench_sites --size 2048 [--size 3072] [--out build/bench] [--profile]

For each size it writes (once, kept in ``OUT/sites_<size>/inputs``):

- a fractal DEM as :func:`benchmarks.bench_slope.write_dem` makes it (LOLA PDS3, polar
  stereographic south, 20 m pixels, the pole at the centre of a ``--terrain``-sized
  fractal, default 3072); a smaller size is that fractal's corner towards the
  Connecting Ridge (x < 0, y < 0, the pole still inside), so the smaller input is part
  of the larger one and the parts scale on the same ground. (A window centred on the
  pole is mostly Shackleton's PSR floor: at 2048^2 no passing candidate then lies in an
  Artemis III region and the learned model cannot be trained.);
- an illumination-stage-like folder on the same grid (:func:`write_illumination_like`):
  ``illumination_fraction``, ``earth_visibility_fraction``, ``longest_darkness_h`` and
  ``psr_mask`` GeoTIFFs derived from the DEM (high ground lit, low ground dark and
  permanently shadowed in its lowest 8 %), so the constraints pass a share of the
  lattice like the real south pole;

and runs, in a child process measured from a small launcher
(:func:`benchmarks.bench_slope.measure`: wall time and ``os.wait4``'s ``ru_maxrss``),
``prospect rank`` with the illumination folder, the LOLA PSR polygons
(``lola_psr_south_5km2``), the HKPolyU craters (``hkpolyu_craters_60_90s``), the named
cold traps (``cold_trap_craters``) and the Artemis III regions (``artemis3_regions_2022``),
as ``pipelines/south_pole_lola.yaml`` feeds the real site stage (``PROSPECT_SHARED_DATA``
must point at the shared data). CPU time is the child's user + system time (``wait4``).
The per-part seconds come from the stage's own progress lines (``sites: <part> <s> s``).
``--profile`` runs the stage once more under cProfile and keeps the top functions.

Results: ``OUT/sites.json`` and ``OUT/sites.md`` (one entry per size; a rerun replaces
that size's entry).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = "prospect-bench-sites/1"
VECTORS = {
    "--psr": "lola_psr_south_5km2",
    "--craters": "hkpolyu_craters_60_90s",
    "--cold-traps": "cold_trap_craters",
    "--labels": "artemis3_regions_2022",
}
#: The benchmark's one parameter change: 10 km spatial blocks (default 30 km), so the Artemis III
#: candidates of a 41 km window fall in at least 2 blocks (spatial cross-validation needs that).
BENCH_CONFIG = "sites:\n  spatial_block_m:\n    value: 10000\n"
_PART = re.compile(r"^sites: (?P<name>.+?) (?P<s>[0-9.]+) s \((?P<el>[0-9.]+) s\)$")

# A launcher that reports the child's CPU time as well as its wall time and ru_maxrss.
_LAUNCHER = r"""
import json, os, subprocess, sys, time
cmd = json.loads(sys.argv[1])
with open(sys.argv[2], "wb") as out, open(sys.argv[3], "wb") as err:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "user_s": ru.ru_utime, "sys_s": ru.ru_stime,
                  "maxrss_kib": ru.ru_maxrss, "returncode": os.waitstatus_to_exitcode(status)}))
"""


def write_illumination_like(dem_lbl: Path, folder: Path) -> dict[str, Path]:
    """Four illumination-stage products on the DEM's grid, derived from its heights.

    Not physics: plausible values for a benchmark. ``h`` is the height's percentile rank
    smoothed over ~200 m; illumination ``0.05 + 0.9 h``, Earth visibility ``0.1 + 0.7 h``,
    longest darkness ``(1 - illumination) x 700 h``, PSR where ``h < 0.08``.
    """
    from scipy import ndimage

    from prospect import layers
    from prospect.grid import AnalysisGrid
    from prospect.io.readers import open_product
    from prospect.io.writers import write_geotiff

    dem = open_product(str(dem_lbl))
    grid = AnalysisGrid.from_dataarray(dem)
    z = np.asarray(dem.values, dtype="float64")
    z = ndimage.uniform_filter(z, size=11, mode="nearest")
    order = np.argsort(z, axis=None, kind="stable")
    h = np.empty(z.size)
    h[order] = np.linspace(0.0, 1.0, z.size)
    h = h.reshape(z.shape)
    ill = 0.05 + 0.9 * h
    products = {
        "illumination_fraction": ill,
        "earth_visibility_fraction": 0.1 + 0.7 * h,
        "longest_darkness_h": (1.0 - ill) * 700.0,
        "psr_mask": (h < 0.08).astype("float64"),
    }
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, values in products.items():
        path = folder / layers.filename(name)
        write_geotiff(
            values.astype("float32"),
            path,
            crs=grid.crs,
            transform=grid.transform,
            nodata=float("nan"),
            units=layers.get(name).units,
        )
        out[name] = path
    return out


def write_window_dem(img_path: Path, size: int, terrain: int) -> Path:
    """The lower-left ``size x size`` (x < 0, y < 0) of the ``max(size, terrain)`` fractal of
    :func:`benchmarks.bench_slope.make_fractal_tile` centred on the pole, written like
    :func:`benchmarks.bench_slope.write_dem` (the whole fractal when ``size >= terrain``)."""
    from benchmarks.bench_slope import CRS_CODE, PIXEL_M, SEED, make_fractal_tile
    from prospect.io.writers import write_pds3_lola
    from prospect.lunar import lunar_crs

    full = max(size, terrain)
    dn = make_fractal_tile(full, SEED)
    row0, col0 = full - size, 0  # rows grow southward in the map: the last rows are y < 0
    return write_pds3_lola(
        np.ascontiguousarray(dn[row0:, col0 : col0 + size]),
        img_path,
        crs=lunar_crs(CRS_CODE),
        map_scale_m=PIXEL_M,
        scale_units="m/pix",
        product_id=f"BENCH_FRACTAL_{size}_OF_{full}",
        line_projection_offset=full / 2.0 - 0.5 - row0,
        sample_projection_offset=full / 2.0 - 0.5 - col0,
    )


def make_inputs(size: int, folder: Path, terrain: int = 3072) -> tuple[Path, Path]:
    """The DEM label and the illumination folder for ``size`` (reused when present)."""
    folder.mkdir(parents=True, exist_ok=True)
    lbl = folder / f"dem_{size}.LBL"
    ill = folder / "illumination"
    if not lbl.exists():
        lbl = write_window_dem(folder / f"dem_{size}.IMG", size, terrain)
    if not (ill / "psr_mask.tif").exists():
        write_illumination_like(lbl, ill)
    return lbl, ill


def rank_command(lbl: Path, ill: Path, out: Path, config: Path, *, profile: Path | None = None) -> list[str]:
    head = [sys.executable]
    if profile is not None:
        head += ["-m", "cProfile", "-o", str(profile)]
    cmd = head + ["-m", "prospect.cli", "rank", str(out), "--dem", str(lbl), "--illumination", str(ill)]
    for opt, src in VECTORS.items():
        cmd += [opt, src]
    return cmd + ["--config", str(config), "--progress", "--top", "3"]


def run_measured(cmd: list[str], log_stem: Path) -> dict[str, Any]:
    res = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _LAUNCHER, json.dumps(cmd), str(log_stem) + ".out", str(log_stem) + ".err"],
        capture_output=True,
        text=True,
        check=False,
    )
    info: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    parts: dict[str, float] = {}
    for line in Path(str(log_stem) + ".err").read_text(errors="replace").splitlines():
        m = _PART.match(line.strip())
        if m:
            parts[m["name"]] = round(parts.get(m["name"], 0.0) + float(m["s"]), 3)
    info["parts_s"] = parts
    info["peak_rss_mb"] = round(info.pop("maxrss_kib") * 1024 / 1e6, 1)
    info["cpu_s"] = round(info["user_s"] + info["sys_s"], 1)
    info["cpu_percent"] = round(100.0 * info["cpu_s"] / max(info["seconds"], 1e-9))
    return info


def top_functions(profile: Path, n: int = 25) -> list[dict[str, Any]]:
    import pstats

    st = pstats.Stats(str(profile))
    rows = []
    for (fn, line, name), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(fn).name}:{line}({name})", "calls": nc, "tottime_s": tt, "cumtime_s": ct})
    rows.sort(key=lambda r: r["tottime_s"], reverse=True)
    return [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows[:n]]


def bench_size(size: int, out: Path, *, profile: bool, terrain: int = 3072) -> dict[str, Any]:
    base = out / f"sites_{size}"
    lbl, ill = make_inputs(size, base / "inputs", terrain)
    config = base / "inputs" / "bench_sites.yaml"
    config.write_text(BENCH_CONFIG, encoding="utf-8")
    run_out = base / "rank"
    if run_out.exists():
        import shutil

        shutil.rmtree(run_out)
    t0 = time.perf_counter()
    info = run_measured(rank_command(lbl, ill, run_out, config), base / "rank")
    info["size"] = size
    info["pixels"] = size * size
    info["command"] = " ".join(rank_command(lbl, ill, run_out, config))
    if info["returncode"] == 0:
        rec = json.loads((run_out / "ranking.json").read_text())
        info["lattice_sites"] = rec["lattice_sites"]
        info["passing_sites"] = rec["passing_all"]
        info["sites_gpkg_mb"] = round((run_out / "sites.gpkg").stat().st_size / 1e6, 2)
    if profile:
        prof = base / "rank.prof"
        prof_out = base / "rank_profiled"
        if prof_out.exists():
            import shutil

            shutil.rmtree(prof_out)
        subprocess.run(
            rank_command(lbl, ill, prof_out, config, profile=prof),
            capture_output=True,
            check=False,
            env=os.environ.copy(),
        )
        if prof.exists():
            info["profile_top_tottime"] = top_functions(prof)
    info["bench_seconds"] = round(time.perf_counter() - t0, 1)
    return info


#: ranking.json entries that may differ between two runs of the same ranking: the input paths
#: (two output folders of the same inputs), the parameter table and the disc cap (added with
#: disc_polygons_top_n).
_RECORD_VOLATILE = ("inputs", "parameters", "disc_polygons_top_n")


def compare_runs(a: Path, b: Path) -> dict[str, Any]:
    """Compare two ``prospect rank`` folders: ``ranking.json`` (less :data:`_RECORD_VOLATILE`)
    and every column of layer ``sites`` of ``sites.gpkg``, row by row in rank order.

    Returns ``identical`` (record and table equal exactly), ``record_equal``, the columns
    that differ with their largest absolute difference (numbers) or count of differing
    rows, and whether the order (``site_id`` by rank) is the same.
    """
    import pyogrio

    ra, rb = (json.loads((f / "ranking.json").read_text()) for f in (a, b))
    for r in (ra, rb):
        for k in _RECORD_VOLATILE:
            r.pop(k, None)
    ta, tb = (pyogrio.read_dataframe(f / "sites.gpkg", layer="sites", read_geometry=False) for f in (a, b))
    diff: dict[str, Any] = {}
    for c in sorted(set(ta.columns) | set(tb.columns)):
        if c not in ta or c not in tb:
            diff[c] = "only in one"
            continue
        x, y = ta[c].to_numpy(), tb[c].to_numpy()
        if len(x) != len(y):
            diff[c] = f"{len(x)} vs {len(y)} rows"
        elif x.dtype.kind in "fiu" and y.dtype.kind in "fiu":
            if not np.array_equal(x, y, equal_nan=True):
                diff[c] = float(np.nanmax(np.abs(x.astype("float64") - y.astype("float64"))))
        elif not (x == y).all():
            diff[c] = f"{int((x != y).sum())} rows"
    same_order = len(ta) == len(tb) and bool((ta["site_id"].to_numpy() == tb["site_id"].to_numpy()).all())
    return {
        "identical": ra == rb and not diff,
        "record_equal": ra == rb,
        "record_keys_differing": sorted(k for k in set(ra) | set(rb) if ra.get(k) != rb.get(k)),
        "columns_differing": diff,
        "same_order": same_order,
        "rows": [len(ta), len(tb)],
    }


def write_report(out: Path, runs: dict[str, Any]) -> None:
    from prospect.io.writers import atomic_write

    doc = {"schema": SCHEMA, "updated": _dt.datetime.now(_dt.UTC).isoformat(), "runs": runs}
    with atomic_write(out / "sites.json") as tmp:
        tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    sizes = sorted(runs, key=int)
    names: list[str] = []
    for s in sizes:
        names += [n for n in runs[s].get("parts_s", {}) if n not in names]
    lines = [
        "# Site stage benchmark (`python -m benchmarks.bench_sites`)",
        "",
        "| | " + " | ".join(f"{s}^2" for s in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for key, label in (
        ("seconds", "wall s"),
        ("cpu_s", "CPU s"),
        ("cpu_percent", "CPU %"),
        ("peak_rss_mb", "peak RSS MB"),
        ("lattice_sites", "lattice sites"),
        ("passing_sites", "passing sites"),
        ("sites_gpkg_mb", "sites.gpkg MB"),
    ):
        lines.append(f"| {label} | " + " | ".join(str(runs[s].get(key, "")) for s in sizes) + " |")
    for n in names:
        lines.append(f"| {n} s | " + " | ".join(str(runs[s].get("parts_s", {}).get(n, "")) for s in sizes) + " |")
    with atomic_write(out / "sites.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--size", type=int, action="append", help="DEM side in pixels (repeatable; default 2048)")
    ap.add_argument("--out", type=Path, default=Path("build/bench"))
    ap.add_argument("--profile", action="store_true", help="also run once under cProfile")
    ap.add_argument("--terrain", type=int, default=3072, help="side of the fractal the smaller DEMs are cut from")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("RUN_A", "RUN_B"), help="compare two rank folders")
    a = ap.parse_args(argv)
    if a.compare:
        result = compare_runs(*a.compare)
        print(json.dumps(result, indent=2))
        return 0 if result["identical"] else 1
    a.out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, Any] = {}
    if (a.out / "sites.json").exists():
        runs = json.loads((a.out / "sites.json").read_text()).get("runs", {})
    for size in a.size or [2048]:
        info = bench_size(size, a.out, profile=a.profile, terrain=a.terrain)
        runs[str(size)] = info
        if info["returncode"] != 0:
            print(f"bench_sites: prospect rank failed at {size}^2, see {a.out}/sites_{size}/rank.err", file=sys.stderr)
        write_report(a.out, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
