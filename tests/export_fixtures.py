"""A complete ranked run on files, for the export, QGIS and report tests.

The synthetic south-polar scene of ``tests/test_sites.py`` (a known best site, four
expert regions) is written the way the stages write it: a DEM GeoTIFF, an
``illumination/`` folder (illumination, longest darkness, Earth visibility, PSR mask),
an ``ice/`` folder (favourability, classes), a He-3 map, craters as a GeoPackage in
lunar geographic coordinates, named cold traps and expert regions as CSV tables; then
``prospect.pipeline.stages.run_sites`` ranks it into ``run/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from prospect import lunar
from prospect.io.gpkg import write_gpkg
from prospect.io.writers import write_geotiff
from prospect.pipeline.stages import run_sites
from tests.test_sites import BEST, FAST, OTHERS, _grid, scene


def _write(arr, path: Path, units: str, grid, *, dtype="float32", nodata=-9999.0, tags=None) -> Path:
    return write_geotiff(
        np.asarray(arr),
        path,
        crs=grid.crs,
        transform=grid.transform,
        nodata=nodata,
        units=units,
        dtype=dtype,
        tags=tags,
    )


def make_synthetic_run(root: Path, *, seed: int = 7) -> Path:
    """Write the scene's inputs under ``root`` and rank them into ``root/run``; returns the run folder."""
    grid = _grid()
    s = scene([BEST], OTHERS, experts=OTHERS)
    tags = {"prospect_source": str(root / "dem.tif"), "prospect_crs": grid.crs.code}
    dem = _write(s.dem, root / "dem.tif", "m", grid)
    ill = root / "illumination"
    ill.mkdir(parents=True, exist_ok=True)
    for name, units in (
        ("illumination_fraction", "1"),
        ("longest_darkness_h", "h"),
        ("earth_visibility_fraction", "1"),
    ):
        _write(getattr(s, name), ill / f"{name}.tif", units, grid, tags=tags)
    psr = np.asarray(s.psr_fraction)
    _write(psr, ill / "psr_mask.tif", "1", grid, tags=tags)
    ice = root / "ice"
    ice.mkdir(exist_ok=True)
    illum = np.asarray(s.illumination_fraction)
    fav = np.clip(0.9 * psr + 0.3 * (1.0 - illum), 0.0, 1.0)
    cls = np.where(psr >= 0.5, 2, np.where(illum < 0.4, 1, 0)).astype("uint8")
    _write(fav, ice / "ice_favourability.tif", "1", grid)
    _write(cls, ice / "ice_stability_class.tif", "1", grid, dtype="uint8", nodata=255)
    x, _ = np.meshgrid(grid.x, grid.y)
    he3 = _write(5.0 + 10.0 * (x - x.min()) / np.ptp(x), root / "he3_ppb.tif", "ppb", grid)
    craters = root / "craters.gpkg"
    write_gpkg(craters, {"craters": s.craters}, crs=lunar.lunar_crs(lunar.IAU_GEOGRAPHIC))
    traps = root / "cold_traps.csv"
    t = s.cold_traps
    pd.DataFrame(
        {"name": t["Crater Name"], "lon": t["PSR centroid Lon (deg)"], "lat": t["PSR centroid Lat (deg)"]}
    ).to_csv(traps, index=False)
    regions = root / "regions.csv"
    s.regions.to_csv(regions, index=False)  # centre lon/lat and lon/lat boxes, like the Artemis III table
    run = root / "run"
    sources = {
        "dem": str(dem),
        "illumination": str(ill),
        "ice": str(ice),
        "he3": str(he3),
        "craters": str(craters),
        "cold_traps": str(traps),
        "labels": str(regions),
    }
    run_sites(run, sources=sources, params={"config": FAST}, seed=seed)
    return run
