"""Terrain derivatives: analytic surfaces on lunar grids, gdaldem on real data, chunk invariance, NaN.

The analytic cases are surfaces whose ground slope is known exactly on the sphere: a
cone about the pole (height proportional to the geodesic distance from the pole) and
ramps along meridians. ``gdaldem`` (Debian ``gdal-bin``, installed by ``make test``) is
the reference for the planar case on the real LOLA south polar DEM.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine

from prospect import lunar
from prospect.errors import ConfigError, GridError, UnitsError
from prospect.grid import AnalysisGrid
from prospect.io.readers import open_product
from prospect.terrain import (
    aspect_deg,
    ground_metric,
    hillshade,
    rms_deviation,
    slope_baselines,
    slope_deg,
    terrain_ruggedness,
)
from tests.conftest import run_cli

R = lunar.MOON_RADIUS_M
MPD = lunar.METRES_PER_DEGREE


def _dem(grid: AnalysisGrid, heights: np.ndarray, units: str = "m") -> xr.DataArray:
    arr = grid.template().copy(data=np.asarray(heights, dtype="float32"))
    arr.attrs.update(units=units, product_id="test-dem")
    return arr


def _lonlat(grid: AnalysisGrid) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = grid.lonlat()
    return np.asarray(lon), np.asarray(lat)


def _interior(a: np.ndarray, m: int = 2) -> np.ndarray:
    return a[m:-m, m:-m]


# --- analytic surfaces ------------------------------------------------------------------


@pytest.mark.parametrize("pole,code,aspect_expected", [("south", 30135, 180.0), ("north", 30130, 0.0)])
@pytest.mark.parametrize("method", ["horn", "zt"])
def test_cone_about_the_pole_has_its_slope_everywhere(pole, code, aspect_expected, method):
    """h = tan(theta) * R * colatitude rises away from the pole at exactly theta on the ground."""
    grid = AnalysisGrid.polar_cap(pole, 80.0 if pole == "north" else -80.0, resolution_m=2000.0)
    assert grid.crs.code == f"IAU_2015:{code}"
    _, lat = _lonlat(grid)
    theta = 12.0
    colat = np.radians(90.0 - np.abs(lat))
    dem = _dem(grid, np.tan(np.radians(theta)) * R * colat)
    s = slope_deg(dem, method=method).values
    a = aspect_deg(dem, method=method).values
    far = (colat * R > 40_000.0) & np.isfinite(s)  # 20 pixels from the apex, where the cone is not smooth
    assert far.sum() > 0.95 * np.isfinite(s).sum()
    # the curvature of the contours across the 3x3 stencil is the only error: < 0.01 deg here
    assert np.nanmax(np.abs(s[far] - theta)) < 0.01
    # downslope points at the pole: true-north aspect 180 (south) / 0 (north) at every longitude
    da_ = (a[far] - aspect_expected + 180.0) % 360.0 - 180.0
    assert np.nanmax(np.abs(da_)) < 0.2


def test_polar_map_plane_obeys_the_scale_factor_exactly():
    """A plane in map coordinates: ground tan(slope) = k * map tan(slope), k from the lunar module."""
    grid = AnalysisGrid.polar_cap("south", -75.0, resolution_m=5000.0)
    xs, ys = np.meshgrid(grid.x, grid.y)
    grad = 0.05  # height gain per map metre, along x + y
    dem = _dem(grid, grad * (xs + 2 * ys))
    planar = slope_deg(dem, planar=True).values
    ground = slope_deg(dem).values
    _, lat = _lonlat(grid)
    k = lunar.polar_scale_factor(lat)
    expected_planar = np.degrees(np.arctan(grad * math.sqrt(5)))
    assert np.nanmax(np.abs(_interior(planar) - expected_planar)) < 1e-4
    ratio = np.tan(np.radians(ground)) / np.tan(np.radians(planar))
    assert np.nanmax(np.abs(_interior(ratio) - _interior(k))) < 1e-5
    assert np.nanmax(_interior(k)) > 1.017  # the test reaches 75 deg, where k matters


@pytest.mark.parametrize("theta", [3.0, 20.0, 45.0])
def test_geographic_meridian_ramp_has_its_slope_at_every_latitude(theta):
    """h = tan(theta) * (ground distance north): theta at every latitude, aspect 180 (faces south)."""
    grid = AnalysisGrid.from_bounds(lunar.lunar_crs(30100), (-10.0, -86.0, 10.0, 86.0), resolution=0.5)
    _, lat = _lonlat(grid)
    dem = _dem(grid, np.tan(np.radians(theta)) * MPD * lat)
    s = _interior(slope_deg(dem).values, 1)
    a = _interior(aspect_deg(dem).values, 1)
    assert np.nanmax(np.abs(s - theta)) < 1e-3  # float32 heights of up to 2,600 km limit this
    assert np.nanmax(np.abs(a - 180.0)) < 1e-6
    # planar (gdaldem without -s) divides metres by degrees: absurdly steep
    assert np.nanmin(_interior(slope_deg(dem, planar=True).values, 1)) > 89.0


@pytest.mark.parametrize("lat0", [0.0, 45.0, 70.0, 85.0])
def test_geographic_east_west_plane_uses_cos_latitude(lat0):
    """A plane rising east at theta: a degree of longitude is cos(lat) shorter on the ground."""
    theta = 10.0
    # 31 x 31 pixels, the centre pixel at (0, lat0)
    grid = AnalysisGrid.from_bounds(lunar.lunar_crs(30100), (-1.55, lat0 - 1.55, 1.55, lat0 + 1.55), resolution=0.1)
    lon, _lat = _lonlat(grid)
    dem = _dem(grid, np.tan(np.radians(theta)) * MPD * np.cos(np.radians(lat0)) * lon)
    s = slope_deg(dem).values
    row = 15
    assert grid.y[row] == pytest.approx(lat0, abs=1e-9)
    centre = s[row, 2:-2]
    # only the cos(lat) change across one row of the stencil deviates from theta
    assert np.nanmax(np.abs(centre - theta)) < 2e-3
    assert np.nanmax(np.abs(aspect_deg(dem).values[row, 2:-2] - 270.0)) < 0.01  # faces west


def test_equirectangular_grid_uses_the_true_scale_parallel():
    """IAU_2015:30110: map y is ground metres; map x is true only on the equator."""
    theta = 8.0
    lat0 = 60.0
    y0 = R * math.radians(lat0)
    grid = AnalysisGrid.from_bounds(
        lunar.lunar_crs(30110), (-20250.0, y0 - 20250.0, 20250.0, y0 + 20250.0), resolution=500.0
    )
    xs, ys = np.meshgrid(grid.x, grid.y)
    north = _dem(grid, np.tan(np.radians(theta)) * (ys - y0))
    assert np.nanmax(np.abs(_interior(slope_deg(north).values, 1) - theta)) < 1e-4
    east = _dem(grid, np.tan(np.radians(theta)) * xs * np.cos(ys / R))
    row = 40
    assert grid.y[row] == pytest.approx(y0, abs=1e-6)
    assert np.nanmax(np.abs(slope_deg(east).values[row, 2:-2] - theta)) < 2e-3


def test_hillshade_of_flat_ground_and_of_a_slope_facing_the_light():
    grid = AnalysisGrid.polar_cap("south", -89.0, resolution_m=1000.0)
    flat = _dem(grid, np.zeros(grid.shape))
    hs = hillshade(flat, azimuth_deg=315.0, altitude_deg=30.0).values
    assert np.allclose(_interior(hs, 1), math.sin(math.radians(30.0)), atol=1e-6)
    # a slope facing grid-west (rising east) lit from the west at 45 deg, 45 deg steep: normal points at the light
    xs, _ = np.meshgrid(grid.x, grid.y)
    ramp = _dem(grid, xs)
    lit = hillshade(ramp, azimuth_deg=270.0, altitude_deg=45.0, planar=True).values
    assert np.allclose(_interior(lit, 1), 1.0, atol=1e-6)
    dark = hillshade(ramp, azimuth_deg=90.0, altitude_deg=30.0, planar=True).values
    assert np.allclose(_interior(dark, 1), 0.0)
    with pytest.raises(ConfigError):
        hillshade(flat, altitude_deg=95.0)


# --- baselines and roughness -------------------------------------------------------------


def test_lola_baselines_on_a_20_m_grid():
    grid = AnalysisGrid.polar_cap("south", -89.5, resolution_m=20.0)
    xs, _ = np.meshgrid(grid.x, grid.y)
    dem = _dem(grid, 0.1 * xs)
    stack = slope_baselines(dem)
    assert stack.dims == ("baseline", "y", "x")
    assert list(stack.baseline.values) == [57.0, 225.0, 560.0]
    assert list(stack.effective_baseline_m.values) == [40.0, 240.0, 560.0]
    # a plane has the same slope at every baseline; the stencil reach grows with it
    for i, n in enumerate((1, 6, 14)):
        layer = stack.isel(baseline=i).values
        assert np.isnan(layer[:n, :]).all() and np.isfinite(layer[n, n:-n]).all()
        k = lunar.polar_scale_factor_xy(xs, 0.0)
        assert np.nanmax(np.abs(np.tan(np.radians(layer[n:-n, n:-n])) - 0.1 * k[n:-n, n:-n])) < 1e-5


def test_longer_baselines_smooth_short_wavelength_relief():
    grid = AnalysisGrid.polar_cap("south", -89.5, resolution_m=20.0)
    xs, _ = np.meshgrid(grid.x, grid.y)
    dem = _dem(grid, 5.0 * np.sin(2 * np.pi * xs / 100.0))  # 100 m wavelength ripples
    s = slope_baselines(dem, (40.0, 560.0), method="zt").values
    assert np.nanmedian(s[0]) > 5 * np.nanmedian(s[1])


def test_rms_deviation_and_tri_of_a_plane():
    grid = AnalysisGrid.polar_cap("south", -89.0, resolution_m=100.0)
    xs, _ = np.meshgrid(grid.x, grid.y)
    gain = 0.2
    dem = _dem(grid, gain * xs)
    nu = rms_deviation(dem, baseline_m=300.0)
    assert nu.attrs["baseline_m"] == 300.0 and nu.attrs["lag_px"] == 3
    # row pairs differ by gain * L, column pairs by 0: nu = gain * L / sqrt(2)
    assert np.allclose(_interior(nu.values, 3), gain * 300.0 / math.sqrt(2), rtol=1e-5)
    tri = terrain_ruggedness(dem, baseline_m=200.0)
    # Riley: 6 of the 8 neighbours differ by +-gain*L
    assert np.allclose(_interior(tri.values, 2), math.sqrt(6) * gain * 200.0, rtol=1e-5)
    wilson = terrain_ruggedness(dem, alg="wilson")
    assert np.allclose(_interior(wilson.values, 1), 6 * gain * 100.0 / 8, rtol=1e-5)
    assert np.isnan(nu.values[:3]).all() and np.isnan(nu.values[:, -3:]).all()


def test_rms_deviation_of_random_heights_matches_its_definition():
    rng = np.random.default_rng(7)
    grid = AnalysisGrid.polar_cap("south", -89.9, resolution_m=50.0)
    z = rng.normal(0.0, 3.0, grid.shape)
    nu = rms_deviation(_dem(grid, z), baseline_m=100.0).values
    n = 2
    r, c = 20, 31
    w = z.astype("float32").astype("float64")[r - n : r + n + 1, c - n : c + n + 1]
    pairs = np.concatenate([(w[:, n:] - w[:, :-n]).ravel(), (w[n:, :] - w[:-n, :]).ravel()])
    assert nu[r, c] == pytest.approx(math.sqrt(np.mean(pairs**2)), rel=1e-6)


# --- chunking, NaN, units, errors ------------------------------------------------------------


@pytest.fixture(scope="module")
def rough_polar_dem() -> xr.DataArray:
    from prospect.synthetic import fractal_surface

    grid = AnalysisGrid.polar_cap("south", -88.0, resolution_m=300.0)
    z = fractal_surface(np.random.default_rng(3), grid.shape, dx_m=300.0, dy_m=300.0, hurst=0.8, rms_m=400.0)
    return _dem(grid, z)


@pytest.mark.parametrize(
    "fn",
    [
        slope_deg,
        lambda d: slope_deg(d, method="zt", baseline_m=1500.0),
        aspect_deg,
        hillshade,
        lambda d: rms_deviation(d, baseline_m=900.0),
        lambda d: terrain_ruggedness(d, baseline_m=600.0),
        lambda d: slope_baselines(d, (600.0, 3000.0)),
    ],
    ids=["slope", "slope-zt-1500", "aspect", "hillshade", "rms", "tri", "baselines"],
)
@pytest.mark.parametrize("chunks", [{"y": 37, "x": 53}, {"y": 101, "x": 7}, {"y": 2048, "x": 2048}])
def test_results_do_not_depend_on_chunking(rough_polar_dem, fn, chunks):
    eager = fn(rough_polar_dem)
    lazy = fn(rough_polar_dem.chunk(chunks))
    assert lazy.chunks is not None  # stayed lazy
    assert np.array_equal(eager.values, lazy.values, equal_nan=True)
    assert eager.attrs == lazy.attrs


def test_nodata_propagates_to_the_stencil_only(rough_polar_dem):
    z = rough_polar_dem.values.copy()
    z[40, 50] = np.nan
    s = slope_deg(rough_polar_dem.copy(data=z)).values
    ref = slope_deg(rough_polar_dem).values
    hole = np.zeros(z.shape, bool)
    hole[39:42, 49:52] = True
    assert np.isnan(s[hole]).all()
    inside = ~hole
    inside[[0, -1], :] = False
    inside[:, [0, -1]] = False
    assert np.array_equal(s[inside], ref[inside])
    # the raster edge is NaN, never extrapolated
    assert np.isnan(ref[[0, -1], :]).all() and np.isnan(ref[:, [0, -1]]).all()
    assert np.isfinite(ref[1:-1, 1:-1]).all()
    nu = rms_deviation(rough_polar_dem.copy(data=z), baseline_m=600.0).values
    assert np.isnan(nu[38:43, 48:53]).all() and np.isfinite(nu[45, 55])


def test_units_and_bad_parameters_are_clear_errors(rough_polar_dem):
    km = rough_polar_dem / 1000.0
    km.attrs = dict(rough_polar_dem.attrs, units="km")
    assert np.allclose(slope_deg(km).values, slope_deg(rough_polar_dem).values, atol=1e-4, equal_nan=True)
    kelvin = rough_polar_dem.copy()
    kelvin.attrs["units"] = "K"
    with pytest.raises(UnitsError, match="heights in m or km"):
        slope_deg(kelvin)
    with pytest.raises(ConfigError, match="horn"):
        slope_deg(rough_polar_dem, method="sobel")  # type: ignore[arg-type]  # a bad method on purpose
    with pytest.raises(ConfigError, match="positive"):
        slope_deg(rough_polar_dem, baseline_m=-5)
    with pytest.raises(ConfigError, match="riley"):
        terrain_ruggedness(rough_polar_dem, alg="max")  # type: ignore[arg-type]  # a bad algorithm on purpose


def test_a_polar_grid_with_a_false_origin_is_refused_unless_planar():
    import pyproj

    odd = pyproj.CRS.from_proj4(f"+proj=stere +lat_0=-90 +lon_0=0 +k=1 +x_0=1000 +y_0=0 +R={R} +type=crs")
    wkt: Any = odd.to_wkt()  # a WKT, not a LunarCRS, on purpose
    grid = AnalysisGrid(wkt, Affine(100.0, 0, -5000.0, 0, -100.0, 5000.0), (100, 100))
    with pytest.raises(GridError, match="planar"):
        ground_metric(grid)
    assert ground_metric(grid, planar=True).planar


# --- the real LOLA south polar DEM against gdaldem ------------------------------------------------


def _gdaldem() -> str:
    exe = shutil.which("gdaldem")
    if exe is None:
        pytest.fail("gdaldem is not installed: `make test` installs gdal-bin (apt-get install gdal-bin)")
    return exe


def _gdaldem_run(*args: str) -> None:
    subprocess.run([_gdaldem(), *args, "-q"], check=True, capture_output=True, timeout=120)


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        a = ds.read(1, masked=True).astype("float64")
    return a.filled(np.nan)


@pytest.fixture(scope="module")
def south_dem_path(shared) -> Path:
    return shared / "lola_polar_1600m" / "lola_dem_south.tif"


@pytest.mark.shared_data
def test_planar_slope_matches_gdaldem_on_the_real_polar_dem(south_dem_path, tmp_path):
    _gdaldem_run("slope", str(south_dem_path), str(tmp_path / "g.tif"), "-compute_edges")
    gd = _read(tmp_path / "g.tif")
    dem = open_product(south_dem_path)
    ours = slope_deg(dem, planar=True).values.astype("float64")
    inner = np.s_[1:-1, 1:-1]
    diff = np.abs(ours[inner] - gd[inner])
    assert np.isfinite(diff).all()
    assert diff.max() < 0.01
    # and the ground slope differs from it by exactly the stereographic scale factor
    ground = slope_deg(dem).values.astype("float64")
    _, lat = AnalysisGrid.from_dataarray(dem).lonlat()
    k = lunar.polar_scale_factor(np.asarray(lat))
    steep = gd[inner] > 0.5
    ratio = np.tan(np.radians(ground[inner][steep])) / np.tan(np.radians(gd[inner][steep]))
    assert np.max(np.abs(ratio - k[inner][steep])) < 2e-3  # gdaldem writes float32 degrees
    assert np.max(np.abs(np.tan(np.radians(ground[inner])) - k[inner] * np.tan(np.radians(ours[inner])))) < 1e-5
    assert k[inner].max() > 1.05  # the DEM reaches ~62 deg at its corners


@pytest.mark.shared_data
@pytest.mark.parametrize("alg", ["Riley", "Wilson"])
def test_tri_matches_gdaldem(south_dem_path, tmp_path, alg):
    _gdaldem_run("TRI", str(south_dem_path), str(tmp_path / "t.tif"), "-alg", alg)
    gd = _read(tmp_path / "t.tif")
    ours = terrain_ruggedness(open_product(south_dem_path), alg=alg.lower()).values
    inner = np.s_[1:-1, 1:-1]
    assert np.nanmax(np.abs(ours[inner] - gd[inner]) / np.maximum(1.0, gd[inner])) < 1e-5


@pytest.mark.shared_data
def test_planar_aspect_matches_gdaldem(south_dem_path, tmp_path):
    _gdaldem_run("aspect", str(south_dem_path), str(tmp_path / "a.tif"))
    gd = _read(tmp_path / "a.tif")
    ours = aspect_deg(open_product(south_dem_path), planar=True).values
    inner = np.s_[1:-1, 1:-1]
    d = (ours[inner] - gd[inner] + 180.0) % 360.0 - 180.0
    ok = np.isfinite(d)
    assert ok.mean() > 0.99
    assert np.abs(d[ok]).max() < 0.01


# --- the command ------------------------------------------------------------------------------


@pytest.fixture
def synthetic_lbl(tmp_path) -> Path:
    from prospect.synthetic import south_polar_scene, write_scene

    scene = south_polar_scene(seed=5, shape=(300, 300))
    return write_scene(scene, tmp_path / "scene")["dem_lbl"]


def test_slope_command_streams_a_tiled_compressed_lunar_geotiff(synthetic_lbl, tmp_path):
    out = tmp_path / "slope.tif"
    res = run_cli("slope", str(synthetic_lbl), str(out), "--chunks", "512")
    assert res.returncode == 0, res.stderr
    assert "baseline" in res.stdout
    assert "100%" in res.stderr  # progress, one line per 10 % when stderr is not a terminal
    dem = open_product(synthetic_lbl)
    expected = slope_deg(dem).values
    with rasterio.open(out) as ds:
        assert lunar.identify(ds.crs.to_wkt()).code == "IAU_2015:30135"
        assert ds.profile["tiled"] and ds.profile["compress"].lower() == "zstd"
        assert ds.nodata == -9999.0 and ds.units == ("deg",)
        assert ds.tags()["prospect_method"] == "Horn (1981)"
        got = ds.read(1, masked=True).filled(np.nan)
    assert np.array_equal(got, expected, equal_nan=True)


def test_slope_command_options(synthetic_lbl, tmp_path):
    dem = open_product(synthetic_lbl)
    out = tmp_path / "zt.tif"
    res = run_cli(
        "slope",
        str(synthetic_lbl),
        str(out),
        "--method",
        "zt",
        "--planar",
        "--baseline",
        "200",
        "--cog",
        "--no-progress",
    )
    assert res.returncode == 0, res.stderr
    with rasterio.open(out) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        got = ds.read(1, masked=True).filled(np.nan)
    expected = slope_deg(dem, method="zt", planar=True, baseline_m=200.0).values
    assert np.array_equal(got, expected, equal_nan=True)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["missing.LBL", "{tmp}/o.tif"], "missing.LBL"),
        (["{lbl}", "{tmp}/no/such/dir/o.tif"], "does not exist"),
        (["{lbl}", "{tmp}/o.tif", "--method", "sobel"], "'horn' or 'zt'"),
        (["{lbl}", "{tmp}/o.tif", "--baseline", "-3"], "positive"),
    ],
    ids=["missing-dem", "missing-dir", "bad-method", "bad-baseline"],
)
def test_slope_command_bad_input_is_one_line_and_no_output(synthetic_lbl, tmp_path, args, needle):
    argv = [a.format(tmp=tmp_path, lbl=synthetic_lbl) for a in args]
    res = run_cli("slope", *argv)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prospect: error:") and needle in lines[0], res.stderr
    assert not (tmp_path / "o.tif").exists()
    assert not list(tmp_path.glob(".o.tif*"))


def test_chunks_read_with_their_halo_from_the_file_equal_the_halo_exchange(synthetic_lbl):
    """PDS3 DEMs fresh from open_product read each chunk's halo from disk; anything else gathers it."""
    from prospect.io.readers import window_source

    dem = open_product(synthetic_lbl, chunks=96)
    assert window_source(dem) is not None
    changed = dem.copy(data=dem.data + np.float32(0.0))
    assert window_source(changed) is None and window_source(dem.chunk({"y": 64})) is None
    for fn in (slope_deg, lambda d: rms_deviation(d, baseline_m=200.0), aspect_deg):
        from_file = fn(dem)
        assert "stencil-window" in from_file.data.name
        exchanged = fn(changed)
        assert "stencil-window" not in exchanged.data.name
        eager = fn(dem.compute())
        assert np.array_equal(from_file.values, exchanged.values, equal_nan=True)
        assert np.array_equal(from_file.values, eager.values, equal_nan=True)


@pytest.mark.shared_data
def test_geotiff_chunks_read_their_halo_from_the_file(south_dem_path):
    from prospect.io.readers import GDALWindowSource, window_source

    dem = open_product(south_dem_path, chunks=200)
    assert isinstance(window_source(dem), GDALWindowSource)
    from_file = slope_deg(dem)
    assert "stencil-window" in from_file.data.name
    assert np.array_equal(from_file.values, slope_deg(dem.compute()).values, equal_nan=True)
    nu = rms_deviation(dem, baseline_m=5000.0)
    assert np.array_equal(nu.values, rms_deviation(dem.compute(), baseline_m=5000.0).values, equal_nan=True)


@pytest.mark.shared_data
def test_the_planar_command_matches_gdaldem_on_the_real_polar_dem(south_dem_path, tmp_path):
    """`prospect slope --planar` (the command, end to end) against `gdaldem slope` to 0.01 deg."""
    _gdaldem_run("slope", str(south_dem_path), str(tmp_path / "g.tif"))
    res = run_cli("slope", str(south_dem_path), str(tmp_path / "p.tif"), "--planar", "--no-progress")
    assert res.returncode == 0, res.stderr
    res = run_cli("slope", str(south_dem_path), str(tmp_path / "s.tif"), "--no-progress")
    assert res.returncode == 0, res.stderr
    gd, planar, ground = (_read(tmp_path / n)[1:-1, 1:-1] for n in ("g.tif", "p.tif", "s.tif"))
    assert np.abs(planar - gd).max() < 0.01
    _, lat = AnalysisGrid.from_dataarray(open_product(south_dem_path)).lonlat()
    k = lunar.polar_scale_factor(np.asarray(lat))[1:-1, 1:-1]
    assert np.abs(np.tan(np.radians(ground)) - k * np.tan(np.radians(planar))).max() < 1e-5
