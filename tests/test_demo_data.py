"""The embedded demo's input products (prospect.synthetic.demo_products).

Checks that the cache folder is deterministic, reused, repaired when damaged, readable
by prospect's own readers with the right units and lunar CRS, that its vector products
agree with the scene's ground truth (cold traps in the constructed PSRs, expert regions
lit and near cold traps), and that the stages that consume them accept them (ice, He-3,
the site inputs). Everything stays fast: one demo scene of 512 x 512 pixels.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prospect import synthetic as S
from prospect.errors import ConfigError
from prospect.grid import AnalysisGrid
from prospect.io.readers import open_product
from prospect.io.vectors import open_vector
from prospect.lunar import IAU_SOUTH_POLAR_STEREOGRAPHIC, great_circle_distance_m, lonlat_to_xy, lunar_crs

SOUTH = lunar_crs(IAU_SOUTH_POLAR_STEREOGRAPHIC)
REGION_COLUMNS = [
    "id",
    "name",
    "center_lon",
    "center_lat",
    "bbox_min_lon",
    "bbox_min_lat",
    "bbox_max_lon",
    "bbox_max_lat",
]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _folder_digests(folder: Path) -> dict[str, str]:
    return {p.name: _sha(p) for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict[str, Path]:
    return S.demo_products(tmp_path_factory.mktemp("demo_a"))


@pytest.fixture(scope="module")
def scene(demo):
    return S.scene_from_truth(demo["truth"])


@pytest.fixture(scope="module")
def pixel_lonlat(scene):
    grid = S._grid_of(scene)
    fx, fy = np.meshgrid(grid.x, grid.y)
    return grid.lonlat(fx, fy)


def _pixel_of(scene, lon: float, lat: float) -> tuple[int, int]:
    x, y = lonlat_to_xy(SOUTH, lon, lat)
    t = scene.transform
    col = int(math.floor((float(x) - t.c) / t.a))
    row = int(math.floor((float(y) - t.f) / t.e))
    return row, col


# --- the cache folder ----------------------------------------------------------------------


def test_roles_layout_and_manifest(demo):
    assert tuple(demo) == S.DEMO_ROLES
    folder = demo["dem"].parent
    assert folder.name == "south_pole_demo-seed0"
    assert all(p.parent == folder and p.is_file() for p in demo.values())
    assert demo["dem"].suffix == ".LBL" and demo["dem"].with_suffix(".IMG").is_file()
    assert (demo["craters"].name, demo["cold_traps"].name, demo["labels"].name) == (
        "craters.csv",
        "cold_traps.csv",
        "expert_regions.csv",
    )
    record = json.loads((folder / "products.json").read_text())
    assert record["seed"] == 0 and record["version"] == S.DEMO_DATA_VERSION
    assert record["roles"] == {k: v.name for k, v in demo.items()}
    on_disk = _folder_digests(folder)
    on_disk.pop("products.json")
    assert record["files"] == on_disk  # every file (the .IMG and the float DEM too) is checksummed
    # no temporary or retired folders left beside it
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]


def test_same_seed_gives_byte_identical_files(demo, tmp_path):
    again = S.demo_products(tmp_path)
    assert {k: v.name for k, v in again.items()} == {k: v.name for k, v in demo.items()}
    assert _folder_digests(again["dem"].parent) == _folder_digests(demo["dem"].parent)


def test_other_seed_and_name_give_another_folder(tmp_path):
    with pytest.raises(ConfigError, match="name"):
        S.demo_products(tmp_path, name="../escape")
    with pytest.raises(ConfigError, match="seed"):
        S.demo_products(tmp_path, seed=-1)
    assert not any(tmp_path.iterdir())


def test_reuse_does_not_rewrite(demo):
    folder = demo["dem"].parent
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    inode = folder.stat().st_ino
    again = S.demo_products(folder.parent)
    assert again == demo
    assert folder.stat().st_ino == inode
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_corrupt_or_incomplete_folder_is_regenerated(demo, tmp_path):
    good = _folder_digests(demo["dem"].parent)
    root = tmp_path / "cache"
    shutil.copytree(demo["dem"].parent.parent, root)
    folder = root / demo["dem"].parent.name
    # a flipped byte in one layer
    victim = folder / demo["hydrogen"].name
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    # a temporary folder of a generator that died (its process no longer runs)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    stale = root / f".{folder.name}.tmp-{int(dead.stdout)}-deadbeef"
    stale.mkdir()
    (stale / "half_written.tif").write_bytes(b"II*\0")
    paths = S.demo_products(root)
    assert _folder_digests(folder) == good
    assert paths["hydrogen"] == victim
    assert not stale.exists()
    assert sorted(p.name for p in root.iterdir()) == [folder.name]
    # a crash before the manifest was written: no products.json -> not trusted, regenerated
    (folder / "products.json").unlink()
    (folder / "craters.csv").unlink()
    S.demo_products(root)
    assert _folder_digests(folder) == good


# --- readers, units and CRS ----------------------------------------------------------------


def test_readers_open_everything_with_units_and_crs(demo, scene):
    dem = open_product(demo["dem"])
    assert dem.attrs["units"] == "m" and dem.attrs["crs"] == "IAU_2015:30135"
    assert dem.shape == scene.dem.shape == S.DEMO_SCENE["shape"]
    # LOLA DN = round(height / 0.5): the label's scaling gives metres back within 0.25 m
    assert float(np.abs(dem.values - scene.dem.values).max()) <= 0.25 + 1e-6
    assert np.allclose(dem.x.values, scene.dem.x.values) and np.allclose(dem.y.values, scene.dem.y.values)
    expected = {"tmax": "K", "hydrogen": "ppm", "tio2": "wt%"}  # 'ppm H' is read as prospect's 'ppm'
    for role, units in expected.items():
        arr = open_product(demo[role])
        assert arr.attrs["units"] == units, role
        assert arr.attrs["crs"] == "IAU_2015:30135", role
        assert arr.shape == dem.shape and np.isfinite(arr.values).all(), role
    tmax = open_product(demo["tmax"]).values
    assert tmax.min() >= 50.0 - 1e-3 and tmax.max() < 400.0
    h = open_product(demo["hydrogen"]).values
    assert h.min() >= 50.0 - 1e-3
    tio2 = open_product(demo["tio2"]).values
    assert tio2.min() >= 0.2 - 1e-5 and tio2.max() <= 1.0 + 1e-5
    for role in ("craters", "cold_traps", "labels"):
        gdf = open_vector(demo[role])
        assert gdf.attrs["crs_code"] == "IAU_2015:30100", role
        assert gdf.attrs["longitude_convention_source"] == "-180-180", role
        assert gdf["lon"].between(-180, 180).all() and gdf["lat"].between(-90, -88).all(), role
        assert "4326" not in gdf.crs.to_wkt() and "WGS" not in gdf.crs.to_wkt(), role


def test_craters_and_cold_traps_match_the_truth(demo, scene):
    craters = pd.read_csv(demo["craters"])
    assert list(craters["name"]) == [c.name for c in scene.craters]
    assert np.allclose(craters["Diameter_m"], [2 * c.radius_m for c in scene.craters], atol=1e-3)
    traps = pd.read_csv(demo["cold_traps"])
    assert list(traps["name"]) == [c.name for c in scene.craters if c.floor_psr_by_construction]
    assert len(traps) >= 3
    psr = S.truth_masks(scene)["psr"].values
    for _, t in traps.iterrows():
        r, c = _pixel_of(scene, t["lon"], t["lat"])
        assert psr[r, c], t["name"]
        assert t["psr_area_km2"] > 0.1
    lit = craters[~craters["floor_psr_by_construction"]]
    assert "LIT-anchor" in set(lit["name"])


def test_expert_regions_are_lit_and_near_cold_traps(demo, scene, pixel_lonlat):
    from prospect.sites.learn import region_membership

    regions = pd.read_csv(demo["labels"])
    assert list(regions.columns[: len(REGION_COLUMNS)]) == REGION_COLUMNS
    assert 4 <= len(regions) <= 6
    assert regions["name"].is_unique
    lon, lat = pixel_lonlat
    member = region_membership(lon.ravel(), lat.ravel(), regions).reshape(lon.shape)
    proxy = S.illumination_proxy(scene).values
    masks = S.truth_masks(scene)
    traps = pd.read_csv(demo["cold_traps"])
    for j, reg in regions.iterrows():
        inside = member == j
        # at least ~1 km2 of lit (proxy >= 0.33, the sites' illumination cut), unshadowed ground
        assert (inside & (proxy >= 0.33) & ~masks["psr"].values).sum() >= 100, reg["name"]
        r, c = _pixel_of(scene, reg["center_lon"], reg["center_lat"])
        assert member[r, c] == j and proxy[r, c] >= 0.33 and not masks["crater_interior"].values[r, c]
        d = great_circle_distance_m(reg["center_lon"], reg["center_lat"], traps["lon"], traps["lat"])
        assert float(np.min(d)) <= 10_000.0, reg["name"]
        assert reg["bbox_min_lat"] < reg["center_lat"] < reg["bbox_max_lat"]
    # the boxes are separate places (centres >= 6 km apart)
    for i in range(len(regions)):
        for j in range(i + 1, len(regions)):
            a, b = regions.iloc[i], regions.iloc[j]
            assert great_circle_distance_m(a["center_lon"], a["center_lat"], b["center_lon"], b["center_lat"]) > 5_900


# --- the stages accept the products --------------------------------------------------------


def test_stages_accept_the_products(demo, tmp_path):
    from prospect.pipeline.stages import open_site_inputs, run_he3, run_ice
    from prospect.sites import features as F
    from prospect.sites.learn import region_membership

    ice = run_ice(
        tmp_path / "ice",
        sources={"dem": demo["dem"], "tmax": demo["tmax"], "hydrogen": demo["hydrogen"]},
        params={"samples": 2},
    )
    fav = open_product(ice["ice_favourability"])
    assert fav.attrs["crs"] == "IAU_2015:30135" and np.isfinite(fav.values).mean() > 0.99
    assert (tmp_path / "ice" / "weh_wt_pct.tif").is_file()

    grid = AnalysisGrid.from_dataarray(open_product(demo["dem"]))
    he3_paths = run_he3(tmp_path / "he3", sources={"tio2": str(demo["tio2"])}, grid=grid, params={"samples": 2})
    he3 = json.loads(he3_paths["inventory"].read_text())
    assert he3["inventory_kg"] > 0 and Path(he3["maps"]["he3_ppb"]).is_file() and he3_paths["he3_ppb"].is_file()
    assert "TiO2 as given" in he3["inputs"]["tio2"]

    inputs = open_site_inputs(
        demo["dem"], {"craters": demo["craters"], "cold_traps": demo["cold_traps"], "labels": demo["labels"]}
    )
    assert inputs.grid.crs.code == "IAU_2015:30135"
    assert len(inputs.craters) == len(pd.read_csv(demo["craters"]))
    diam = F.diameters_m(inputs.craters, "craters")
    assert (diam >= 1000).all()  # counted by the crater density (crater_min_diameter_m = 1 km)
    regions = inputs.regions
    names, dist = F.nearest_named(regions["center_lon"].to_numpy(), regions["center_lat"].to_numpy(), inputs.cold_traps)
    assert (names != "").all() and (dist <= 10.0).all()
    assert list(names) == list(regions["nearest_cold_trap"])
    # every region holds lattice candidates of the site stage's 200 m lattice
    from prospect.sites.candidates import Lattice

    lon, lat = Lattice.of(inputs.grid, 200.0).lonlat()
    member = region_membership(lon.ravel(), lat.ravel(), regions)
    assert set(member[member >= 0]) == set(range(len(regions)))
