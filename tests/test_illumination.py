"""Illumination products: against a per-time-step reference, synthetic PSRs by construction, real LOLA PSRs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rasterio

from prospect.errors import ConfigError
from prospect.grid import AnalysisGrid
from prospect.illumination.ephemeris import default_times, sun_earth_directions
from prospect.illumination.horizon import horizon_angles
from prospect.illumination.products import SunSamples, illumination_products, products_at_pixels_brute_force
from prospect.synthetic import south_polar_scene
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def scene_products():
    scene = south_polar_scene(seed=3, shape=(128, 128), pixel_m=200.0)
    hz = horizon_angles(scene.dem, n_azimuths=180, max_distance_m=60_000.0, workers=2)
    se = sun_earth_directions(default_times(step_hours=6.0))
    return scene, hz, se, illumination_products(hz, SunSamples.from_ephemeris(se))


def test_products_match_a_per_time_step_evaluation(scene_products):
    """The longitude-bin / linear-in-beta method against exact Sun and Earth directions at every sample."""
    _, hz, se, ds = scene_products
    pixels = [(64, 64), (30, 40), (100, 90), (70, 20), (10, 10), (120, 120), (45, 100), (90, 60)]
    ref = products_at_pixels_brute_force(hz, se, pixels)
    for r, c in pixels:
        want = ref[(r, c)]
        assert ds.illumination_fraction.values[r, c] == pytest.approx(want["illumination_fraction"], abs=3e-3)
        # sub-Earth points binned at 0.5 deg: up to ~0.25 deg of Earth elevation, ~0.01 of fraction
        assert ds.earth_visibility_fraction.values[r, c] == pytest.approx(want["earth_visibility_fraction"], abs=0.02)
        assert abs(ds.longest_darkness_h.values[r, c] - want["longest_darkness_h"]) <= 2 * 6.0
        assert bool(ds.psr_mask.values[r, c]) == want["psr"]


def test_craters_shadowed_by_construction_are_psrs_and_lit_ones_are_not(scene_products):
    scene, _, _, ds = scene_products
    inv = ~AnalysisGrid.from_dataarray(scene.dem).transform
    seen = {True: 0, False: 0}
    for crater in scene.craters:
        col, row = inv * (crater.x_m, crater.y_m)
        r, c = int(row), int(col)
        if not (0 <= r < 128 and 0 <= c < 128):
            continue
        seen[crater.floor_psr_by_construction] += 1
        if crater.floor_psr_by_construction:
            assert ds.psr_mask.values[r, c] == 1 and ds.illumination_fraction.values[r, c] == 0.0
            assert ds.longest_darkness_h.values[r, c] > 18 * 365 * 24
        else:
            assert ds.psr_mask.values[r, c] == 0 and ds.illumination_fraction.values[r, c] > 0.05
    assert seen[True] >= 1 and seen[False] >= 1
    for name, layer in ds.data_vars.items():
        assert layer.attrs["units"] in ("1", "h") and layer.attrs["n_time_samples"] > 27_000, name


@pytest.mark.shared_data
def test_real_south_polar_psrs_are_found(shared, tmp_path):
    """The 1.6 km LOLA DEM: the named PSRs of the LOLA PSR catalogue, recall by size class, precision."""
    from rasterio.features import rasterize

    from prospect.io.vectors import open_vector
    from prospect.lunar import lonlat_to_xy, lunar_crs

    dem = shared / "lola_polar_1600m" / "lola_dem_south.tif"
    res = run_cli("illumination", str(dem), str(tmp_path / "ill"), "--azimuths", "120", "--step-hours", "12")
    assert res.returncode == 0, res.stderr
    with rasterio.open(tmp_path / "ill" / "psr_mask.tif") as ds:
        ours = ds.read(1, masked=True).filled(0) == 1
        transform = ds.transform
        assert ds.tags(1)["units"] == "1"
    polys = open_vector(shared / "lola_psr_south_5km2" / "LOLA_PSR_75S_120M_82S_060M_5KM2_FINAL.shp")
    ids = rasterize(
        ((g, i + 1) for i, g in enumerate(polys.geometry)),
        out_shape=ours.shape,
        transform=transform,
        fill=0,
        all_touched=True,
        dtype="int32",
    )
    hit = np.array([ours[ids == i + 1].any() for i in range(len(polys))])
    large = polys["area"].to_numpy() > 100.0
    assert hit[large].all()  # every PSR over 100 km^2
    assert hit[polys["area"].to_numpy() > 25.0].mean() > 0.9
    assert (ours & (ids > 0)).sum() / ours.sum() > 0.9  # our PSR pixels lie in catalogued PSRs
    names = ["Shackleton", "Haworth", "Shoemaker", "Faustini", "Cabeus", "Sverdrup", "de Gerlache", "Amundsen"]
    table = pd.read_csv(shared / "cold_trap_craters" / "crater_list.csv")
    table["key"] = table["Crater Name"].str.strip().str.lower()
    for name in names:
        row = table[table["key"] == name.lower()].iloc[0]
        x, y = lonlat_to_xy(
            lunar_crs(30135), float(row["PSR centroid Lon (deg)"]), float(row["PSR centroid Lat (deg)"])
        )
        col, r = ~transform * (x, y)
        assert ours[int(r), int(col)], f"{name}: PSR centroid not permanently shadowed"


def test_usable_darkness_matches_a_per_time_step_evaluation(scene_products):
    """``darkness_min_disk_fraction`` 0.5: dark while less than half the disk is up. The same
    horizons and samples against the exact per-step evaluation; never shorter than the no-limb
    darkness; the other products are unchanged, and 0 is the no-limb product bit for bit."""
    from prospect.illumination.products import disk_fraction, disk_offset

    assert disk_offset(0.0) == -1.0 and disk_offset(1.0) == 1.0 and abs(disk_offset(0.5)) < 1e-12
    for f in (0.1, 0.25, 0.75):
        assert float(disk_fraction(np.array(disk_offset(f)))) == pytest.approx(f, abs=1e-12)
    _, hz, se, ds = scene_products
    usable = illumination_products(hz, SunSamples.from_ephemeris(se, darkness_min_disk_fraction=0.5))
    same = illumination_products(hz, SunSamples.from_ephemeris(se, darkness_min_disk_fraction=0.0))
    assert np.array_equal(same.longest_darkness_h.values, ds.longest_darkness_h.values, equal_nan=True)
    for name in ("illumination_fraction", "psr_mask", "earth_visibility_fraction"):
        assert np.array_equal(usable[name].values, ds[name].values, equal_nan=True), name
    a, b = usable.longest_darkness_h.values, ds.longest_darkness_h.values
    ok = np.isfinite(a) & np.isfinite(b)
    assert (a[ok] >= b[ok]).all() and (a[ok] > b[ok]).any()
    assert usable.longest_darkness_h.attrs["darkness_min_disk_fraction"] == 0.5
    assert "less than 0.5 of the solar disk up" in usable.longest_darkness_h.attrs["long_name"]
    pixels = [(64, 64), (30, 40), (100, 90), (70, 20), (10, 10), (120, 120), (45, 100), (90, 60)]
    ref = products_at_pixels_brute_force(hz, se, pixels, darkness_min_disk_fraction=0.5)
    for r, c in pixels:
        # exact at 6 of 8 pixels; where the disk's centre grazes the horizon for days, the
        # 0.5 deg longitude bins and the linearisation in beta move a run's end by a few 6 h steps
        want = ref[(r, c)]["longest_darkness_h"]
        assert abs(a[r, c] - want) <= max(2 * 6.0, 0.005 * want), (r, c, a[r, c], want)
    with pytest.raises(ConfigError, match="darkness_min_disk_fraction must be a number from 0 to 1"):
        SunSamples.from_ephemeris(se, darkness_min_disk_fraction=1.5)


def test_illumination_command_writes_the_usable_darkness(tmp_path):
    """The stage option reaches the product and its tags, and the product is never shorter."""
    from prospect.synthetic import write_scene

    lbl = write_scene(south_polar_scene(seed=3, shape=(128, 128), pixel_m=200.0), tmp_path / "s")["dem_lbl"]
    common = ["--azimuths", "90", "--years", "1", "--step-hours", "12", "--no-progress"]
    dark = {}
    for f in ("0", "0.5"):
        out = tmp_path / f"out{f}"
        res = run_cli("illumination", str(lbl), str(out), *common, "--darkness-min-disk-fraction", f)
        assert res.returncode == 0, res.stderr
        with rasterio.open(out / "longest_darkness_h.tif") as src:
            dark[f] = src.read(1)
            assert float(src.tags()["prospect_darkness_min_disk_fraction"]) == float(f)
    ok = np.isfinite(dark["0"]) & np.isfinite(dark["0.5"])
    assert (dark["0.5"][ok] >= dark["0"][ok]).all() and (dark["0.5"][ok] > dark["0"][ok]).any()


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--azimuths", "10"], "at least 64"),
        (["--height", "-2"], "height must be a number at least 0"),
        (["--darkness-min-disk-fraction", "2"], "darkness_min_disk_fraction must be a number from 0 to 1"),
    ],
)
def test_illumination_command_bad_options_are_one_line(tmp_path, extra, needle):
    from prospect.synthetic import write_scene

    lbl = write_scene(south_polar_scene(seed=3, shape=(128, 128), pixel_m=200.0), tmp_path / "s")["dem_lbl"]
    res = run_cli("illumination", str(lbl), str(tmp_path / "out"), *extra)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prospect: error:") and needle in lines[0], res.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.shared_data
def test_illumination_refuses_a_geographic_dem(shared, tmp_path):
    res = run_cli("illumination", str(shared / "lola_ldem4" / "LDEM_4.LBL"), str(tmp_path / "out"))
    assert res.returncode == 2
    line = res.stderr.strip()
    assert line.startswith("prospect: error:") and "\n" not in line and "polar stereographic" in line, line
    assert not (tmp_path / "out").exists()


def test_flat_plane_illumination_follows_from_the_sun_geometry_alone():
    """A smooth sphere near the pole: the fraction is the mean visible disk of the Sun over the span.

    Reference straight from the ephemeris (no horizon, no longitude bins): at each time
    step the Sun's topocentric elevation ``el`` and angular radius ``rho`` give the
    visible disk fraction of a horizon at 0 deg (the flat plane's horizon is the
    curvature drop, -0.007 deg at 400 m, negligible).
    """
    import xarray as xr

    from prospect.illumination.ephemeris import earth_azimuth_elevation, sun_azimuth_elevation
    from prospect.illumination.products import _disk_fraction

    grid = AnalysisGrid.polar_cap("south", -89.0, resolution_m=400.0)
    dem = grid.template().copy(data=np.zeros(grid.shape, dtype="float32"))
    dem.attrs.update(units="m", product_id="flat")
    assert isinstance(dem, xr.DataArray)
    hz = horizon_angles(dem, n_azimuths=72, max_distance_m=30_000.0, workers=2)
    se = sun_earth_directions(default_times(start="2024-01-01", years=2.0, step_hours=6.0))
    ds = illumination_products(hz, SunSamples.from_ephemeris(se))
    lon, lat = (np.asarray(v) for v in grid.lonlat())
    assert not np.nanmax(ds.psr_mask.values)  # nothing is permanently dark on a smooth sphere
    for r, c in [(grid.shape[0] // 2, grid.shape[1] // 2), (20, 30), (grid.shape[0] - 25, 40)]:
        _, el = sun_azimuth_elevation(lon[r, c], lat[r, c], se.sun)
        want = float(_disk_fraction(np.asarray(el) / np.asarray(se.sun_angular_radius_deg)).mean())
        assert ds.illumination_fraction.values[r, c] == pytest.approx(want, abs=5e-3)
        assert 0.3 < want < 0.7  # within a degree of the pole the Sun is up about half the time
        _, eel = earth_azimuth_elevation(lon[r, c], lat[r, c], se.earth, se.earth_distance_km)
        assert ds.earth_visibility_fraction.values[r, c] == pytest.approx(float((np.asarray(eel) > 0).mean()), abs=0.02)
