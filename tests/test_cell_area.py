"""Exact pixel areas on the lunar sphere: geographic, equirectangular and polar stereographic grids."""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
import pytest
from affine import Affine

from prospect import lunar
from prospect.errors import GridError
from prospect.grid import AnalysisGrid

R = lunar.MOON_RADIUS_M
SPHERE = 4.0 * math.pi * R**2


@pytest.mark.parametrize("res", [1.0, 0.25])
@pytest.mark.parametrize("convention", ["180", "360"])
def test_global_geographic_areas_sum_to_the_sphere(res, convention):
    grid = AnalysisGrid.global_geographic(res, convention)
    area = grid.cell_area_m2(chunks=257)
    assert isinstance(area.data, da.Array) and area.dtype == np.float64 and area.attrs["units"] == "m2"
    assert area.data.chunks[1][0] == 257 and len(area.data.chunks[1]) > 1
    values = area.values
    assert abs(values.sum() / SPHERE - 1.0) < 1e-6
    # every row: R^2 dlon (sin lat_top - sin lat_bottom), equal along the row
    top = 90.0 - res * np.arange(grid.height)
    want = R**2 * math.radians(res) * (np.sin(np.radians(top)) - np.sin(np.radians(top - res)))
    np.testing.assert_allclose(values, np.repeat(want[:, None], grid.width, axis=1), rtol=1e-12)


def test_regional_geographic_areas_and_rows_beyond_the_pole():
    grid = AnalysisGrid.from_bounds("IAU_2015:30100", (170.0, 80.0, 190.0, 95.0), resolution=5.0)
    area = grid.cell_area_m2().values
    assert area.shape == (3, 4)
    assert np.all(area[0] == 0.0)  # 90..95 N is not on the sphere
    np.testing.assert_allclose(area[1:].sum(), lunar.polar_cap_area_m2(80.0) * 20.0 / 360.0, rtol=1e-12)


@pytest.mark.parametrize("code", [lunar.IAU_EQUIRECTANGULAR_0, lunar.IAU_EQUIRECTANGULAR_180])
def test_equirectangular_areas_equal_the_geographic_equivalent(code):
    # x = R lon (rad), y = R lat: a 1-deg geographic grid in metres
    step = 2.0 * math.pi * R / 360.0
    eqc = AnalysisGrid(code, Affine(step, 0.0, -180 * step, 0.0, -step, 90 * step), (180, 360))
    geo = AnalysisGrid.global_geographic(1.0)
    np.testing.assert_allclose(eqc.cell_area_m2(chunks=64).values, geo.cell_area_m2().values, rtol=1e-12)
    # a regional window that runs past the pole keeps only the part on the sphere
    over = AnalysisGrid(code, Affine(step, 0.0, 0.0, 0.0, -step, 95 * step), (10, 3))
    area = over.cell_area_m2().values
    assert np.all(area[:5] == 0.0)
    np.testing.assert_allclose(area.sum(), lunar.polar_cap_area_m2(85.0) * 3 / 360, rtol=1e-12)


def test_equirectangular_true_scale_latitude_comes_from_the_crs():
    # lat_ts = 30: x = R cos(30) lon; the same lon/lat pixels must have the same areas
    crs = lunar.identify(f"+proj=eqc +lat_ts=30 +lat_0=0 +lon_0=0 +x_0=0 +y_0=0 +R={R} +units=m +no_defs +type=crs")
    assert crs.lat_ts == 30.0 and crs.code is None
    sx = 2.0 * math.pi * R / 360.0 * lunar.equirectangular_true_scale(30.0)
    sy = 2.0 * math.pi * R / 360.0
    eqc = AnalysisGrid(crs, Affine(2 * sx, 0.0, -20 * sx, 0.0, -2 * sy, 60 * sy), (30, 20))
    geo = AnalysisGrid.from_bounds("IAU_2015:30100", (-20.0, 0.0, 20.0, 60.0), resolution=2.0)
    np.testing.assert_allclose(eqc.cell_area_m2().values, geo.cell_area_m2().values, rtol=1e-12)


@pytest.mark.parametrize("pole", ["south", "north"])
def test_polar_pixel_areas_sum_to_the_whole_square(pole):
    grid = AnalysisGrid.polar_cap(pole, resolution_m=5000.0)  # 80 deg cap, 122 x 122 px
    area = grid.cell_area_m2(chunks=50)
    assert area.data.chunks[0] == (50, 50, 22)
    left, bottom, right, top = grid.bounds
    whole = lunar.polar_stereographic_area_m2(left, right, bottom, top, order=200)
    assert abs(area.values.sum() / whole - 1.0) < 1e-9
    np.testing.assert_array_equal(area.values, grid.cell_area_m2().values)  # chunking changes nothing


def test_polar_cap_pixels_sum_to_the_cap_area_within_the_boundary_pixels():
    grid = AnalysisGrid.polar_cap("south", -80.0, resolution_m=5000.0)
    area = grid.cell_area_m2().values
    _, lat = grid.lonlat()
    t = grid.transform
    xe = t.c + t.a * np.arange(grid.width + 1)
    ye = t.f + t.e * np.arange(grid.height + 1)
    xx, yy = np.meshgrid(xe, ye)
    corner_lat = lunar.polar_stereographic_latitude(np.hypot(xx, yy))
    corners = np.stack([corner_lat[:-1, :-1], corner_lat[:-1, 1:], corner_lat[1:, :-1], corner_lat[1:, 1:]])
    boundary = (corners.min(axis=0) < -80.0) & (corners.max(axis=0) > -80.0)
    cap = lunar.polar_cap_area_m2(-80.0)
    inside = area[lat < -80.0].sum()
    assert abs(inside - cap) <= area[boundary].sum()
    # all of the pixels entirely inside the cap are less than the cap, with them all more
    assert area[corners.max(axis=0) <= -80.0].sum() < cap < area[corners.min(axis=0) < -80.0].sum()


def test_polar_quadrature_matches_high_order_and_the_small_pixel_limit():
    rng = np.random.default_rng(3)
    x0 = rng.uniform(-2e6, 2e6, 50)
    y0 = rng.uniform(-2e6, 2e6, 50)
    for h in (20.0, 5000.0, 150e3, 600e3):
        auto = lunar.polar_stereographic_area_m2(x0, x0 + h, y0, y0 + h)
        ref = lunar.polar_stereographic_area_m2(x0, x0 + h, y0, y0 + h, order=200)
        assert np.max(np.abs(auto / ref - 1.0)) < 1e-13
    # a small pixel is h^2 / k^2 at its centre (k = 1 + rho^2 / 4R^2), to O(h^2 / R^2)
    h = 100.0
    small = lunar.polar_stereographic_area_m2(x0, x0 + h, y0, y0 + h)
    k = lunar.polar_scale_factor_xy(x0 + h / 2, y0 + h / 2)
    np.testing.assert_allclose(small, h * h / k**2, rtol=1e-8)
    # the bounds of an axis may come in either order
    np.testing.assert_allclose(lunar.polar_stereographic_area_m2(x0 + h, x0, y0 + h, y0), small, rtol=1e-15)


def test_polar_quadrature_against_scipy_on_a_large_pixel():
    from scipy.integrate import dblquad

    x0, x1, y0, y1 = 200e3, 700e3, -900e3, -300e3
    ref, _err = dblquad(
        lambda y, x: 1.0 / lunar.polar_scale_factor_xy(x, y) ** 2, x0, x1, y0, y1, epsabs=0.0, epsrel=1e-13
    )
    assert lunar.polar_stereographic_area_m2(x0, x1, y0, y1) == pytest.approx(ref, rel=1e-12)


def test_big_squares_lie_between_the_caps_they_contain_and_are_contained_in():
    # the map disc rho <= L is the cap of area 4 pi R^2 L^2 / (4R^2 + L^2) around the pole;
    # the square [-L, L]^2 holds the disc of radius L and lies in the disc of radius L sqrt(2)
    def disc(rho):
        return SPHERE * rho**2 / (4 * R**2 + rho**2)

    areas = [lunar.polar_stereographic_area_m2(-L, L, -L, L, order=64) for L in (R, 2 * R, 4 * R)]
    assert areas[0] < areas[1] < areas[2] < SPHERE
    for L, a in zip((R, 2 * R, 4 * R), areas):
        assert disc(L) < a < disc(L * math.sqrt(2))


def test_unsupported_crs_is_one_line_error():
    ortho = lunar.identify(f"+proj=ortho +lat_0=-90 +lon_0=0 +R={R} +units=m +no_defs +type=crs")
    grid = AnalysisGrid(ortho, Affine(1000.0, 0.0, -5000.0, 0.0, -1000.0, 5000.0), (10, 10))
    with pytest.raises(GridError, match="no pixel-area rule"):
        grid.cell_area_m2()
