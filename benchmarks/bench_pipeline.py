"""The whole pipeline at 20 m: ``prospect run`` on a 7584^2 DEM, stage by stage.

Run::

    python -m benchmarks.bench_pipeline [--out build/bench] [--size 7584]

1. A ``size x size`` 20 m fractal LOLA-style PDS3 DEM (polar stereographic south, the pole at
   the centre, the LDEM_875S_20M geometry; :func:`benchmarks.bench_slope.write_dem`) is
   written once into ``OUT/pipeline_inputs/`` (reused while its size matches).
2. A pipeline shaped like ``pipelines/south_pole_lola.yaml`` is written next to it: the
   fractal DEM in place of LDEM_875S_20M, and the real vector and table inputs from the data
   manifests (LOLA PSRs, HKPolyU craters, cold-trap craters, the Artemis III regions, the
   Lunar Prospector Ti and FeO maps) read through ``PROSPECT_SHARED_DATA``; every stage
   (terrain, illumination at 360 azimuths / 6 h / 2 m, ice and He-3, sites with evaluation,
   exports with the report and its PDF).
3. ``prospect run PIPELINE --out RUN --no-progress`` runs in a child process with a fresh
   stage cache (``PROSPECT_CACHE`` inside the run), timed end to end, its peak RSS from
   ``os.wait4``. The run log's ``[i/n] STAGE done in S s (peak RSS so far M MB)`` lines give
   each stage's wall time and the process's peak after it (the peak is cumulative: a stage
   raised it when its figure is larger than the one before).
4. ``OUT/pipeline.json`` and ``OUT/pipeline.md`` are written atomically; the markdown is
   printed. Target (issue 18): the whole run <= 30 min on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import re
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.bench_slope import fmt, measure, write_dem, write_report

SCHEMA = "prospect-bench-pipeline/1"
REF_SIZE = 7584
TARGET_S = 1800.0

PIPELINE = """\
# written by benchmarks/bench_pipeline.py: south_pole_lola.yaml with a {size}^2 fractal DEM
pipeline: bench_pipeline_{size}
description: The 20 m south polar pipeline on a {size}^2 fractal DEM (benchmark)
seed: 0
data:
  dem: {dem}
  psr: lola_psr_south_5km2
  craters: hkpolyu_craters_60_90s
  cold_traps: cold_trap_craters
  labels: artemis3_regions_2022
  tio2: lp_grs_ti_5deg
  feo: lp_grs_feo_halfdeg
grid:
  from: dem
stages:
  terrain: {{}}
  illumination:
    azimuths: 360
    step: {{value: 6, unit: h}}
    height: {{value: 2, unit: m}}
  resources:
    ice: {{samples: 64}}
    he3: {{samples: 200}}
  sites:
    evaluate: true
  exports:
    report: true
    pdf: true
"""

_STAGE_LINE = re.compile(r"\[(\d+)/(\d+)\] (\w+) done in ([0-9.]+) s \(peak RSS so far ([0-9.]+) MB\)")
_PART_LINE = re.compile(r"resources: (\w+) done in ([0-9.]+) s \(peak RSS so far ([0-9.]+) MB\)")


def _log(msg: str) -> None:
    print(f"[bench-pipeline] {msg}", file=sys.stderr, flush=True)


def stage_lines(log_text: str) -> list[dict[str, Any]]:
    """The per-stage lines of a run log: stage, wall seconds, peak RSS so far [MB]; the resources
    stage's per-model lines (``resources: he3 done in ...``) follow its own line as
    ``resources.ice`` and ``resources.he3``."""
    stages = [
        {"stage": m.group(3), "seconds": float(m.group(4)), "peak_rss_so_far_mb": float(m.group(5))}
        for m in _STAGE_LINE.finditer(log_text)
    ]
    parts = [
        {"stage": f"resources.{m.group(1)}", "seconds": float(m.group(2)), "peak_rss_so_far_mb": float(m.group(3))}
        for m in _PART_LINE.finditer(log_text)
    ]
    out: list[dict[str, Any]] = []
    for rec in stages:
        out.append(rec)
        if rec["stage"] == "resources":
            out += parts
            parts = []
    return out + parts


def inputs(folder: Path, size: int) -> Path:
    """The DEM and the pipeline file in ``folder`` (the DEM reused when already written)."""
    folder.mkdir(parents=True, exist_ok=True)
    lbl = folder / f"fractal_{size}.LBL"
    if not lbl.exists() or not lbl.with_suffix(".IMG").exists():
        _log(f"writing the {size}^2 fractal DEM")
        lbl = write_dem(folder / f"fractal_{size}.IMG", size)
    spec = folder / f"bench_pipeline_{size}.yaml"
    spec.write_text(PIPELINE.format(size=size, dem=lbl.resolve()), encoding="utf-8")
    return spec


def run(spec: Path, out: Path, logs: Path) -> dict[str, Any]:
    """``prospect run`` of ``spec`` into ``out`` in a child, timed end to end."""
    from benchmarks.bench_illumination import prospect_command

    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PROSPECT_CACHE": str(out.parent / f"{out.name}-cache")}
    shutil.rmtree(env["PROSPECT_CACHE"], ignore_errors=True)
    cmd = [*prospect_command(), "run", str(spec), "--out", str(out), "--no-progress"]
    m = measure(cmd, env=env, log_stem=logs / "pipeline", timeout=6 * 3600)
    res = m.record(cmd)
    run_logs = sorted((out / "logs").glob("run-*.log")) if (out / "logs").is_dir() else []
    res["stages"] = stage_lines(run_logs[-1].read_text(errors="replace")) if run_logs else []
    sites = out / "stages" / "sites" / "sites.gpkg"
    if sites.is_file():
        res["sites_gpkg_mb"] = sites.stat().st_size / 1e6
    return res


def render_markdown(results: dict[str, Any]) -> str:
    r = results["run"]
    lines = [
        f"# Pipeline benchmark ({results['date']})",
        "",
        (
            f"`{r['command']}` on a {results['size']}^2 20 m fractal DEM with the real vector inputs "
            "(south_pole_lola.yaml's stages); wall time and peak RSS of the child process (`os.wait4`)."
        ),
        "",
        "| stage | wall s | peak RSS so far MB |",
        "|---|---:|---:|",
    ]
    for st in r.get("stages", []):
        lines.append(f"| {st['stage']} | {st['seconds']:.0f} | {st['peak_rss_so_far_mb']:.0f} |")
    lines.append(
        f"| **whole run** (start to exit) | **{fmt(r.get('wall_seconds'), '.0f')}** | "
        f"**{fmt(r.get('peak_rss_mb'), '.0f')}** |"
    )
    lines += [
        "",
        (
            f"Target: <= {TARGET_S:.0f} s on 2 cores: **{results.get('verdict', '-')}**. "
            f"sites.gpkg: {fmt(r.get('sites_gpkg_mb'), '.0f')} MB."
        ),
    ]
    if not r.get("ok"):
        lines.append(f"\nThe run failed: {r.get('error', '')}")
    lines += ["", f"Machine: {os.cpu_count()} CPUs. Harness total {fmt(results.get('total_seconds'), '.0f')} s.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_pipeline", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="build/bench")
    ap.add_argument("--size", type=int, default=REF_SIZE)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    out = Path(a.out)
    logs = out / "logs_pipeline"
    logs.mkdir(parents=True, exist_ok=True)
    spec = inputs(out / "pipeline_inputs", a.size)
    _log(f"prospect run {spec}")
    res = run(spec, out / "pipeline_run", logs)
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "size": a.size,
        "target_seconds": TARGET_S,
        "run": res,
        "verdict": ("PASS" if res["wall_seconds"] <= TARGET_S else "FAIL") if res["ok"] else "FAIL (run failed)",
    }
    results["total_seconds"] = time.perf_counter() - t0
    write_report(results, out, "pipeline", render_markdown(results))
    print(render_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
