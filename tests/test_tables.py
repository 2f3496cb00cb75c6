"""Lunar Prospector binned tables: reading the real GRS tables, refusing broken ones, rasterizing.

Real data: ``../shared/data/lp_grs`` (Prettyman et al. 2006 Ti/Al 5 deg quasi-equal-area
cells; Lawrence et al. 2002 FeO and Th 0.5 deg cells). Broken tables are written here in
the same format.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from affine import Affine

from prospect import lunar
from prospect.errors import (
    CorruptProductError,
    FormatError,
    InputNotFoundError,
    LabelError,
    UnitsError,
)
from prospect.grid import AnalysisGrid
from prospect.io.readers import open_product
from prospect.io.tables import BinnedTable, read_binned_table
from prospect.resources.binned import EXACT_RESAMPLING, rasterize_binned

R = lunar.MOON_RADIUS_M
SPHERE = 4.0 * math.pi * R**2
MANIFESTS = Path(__file__).resolve().parents[1] / "data_manifests"


@pytest.fixture(scope="module")
def ti(shared) -> BinnedTable:
    return read_binned_table("lp_grs_ti_5deg")


@pytest.fixture(scope="module")
def feo(shared) -> BinnedTable:
    return read_binned_table("lp_grs_feo_halfdeg")


# --- the real tables ----------------------------------------------------------------------


@pytest.mark.shared_data
def test_real_ti_table(shared, ti):
    assert len(ti) == 1790 and (ti.quantity, ti.units) == ("Ti", "wt%")
    assert ti.product_id == "Titanium_5deg" and ti.manifest_id == "lp_grs_ti_5deg"
    assert "Prettyman" in ti.citation and "E12007" in ti.citation
    path = shared / "lp_grs" / "MoonTi.data.gz"
    assert ti.source_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "1790 binned values" in ti.header
    assert abs(ti.cell_areas_m2().sum() / SPHERE - 1.0) < 1e-9
    # quasi-equal-area layout: one cap cell per pole, 8 cells at 82.5-87.5, 80 at the equator
    bands, counts = np.unique(np.stack([ti.lat_min, ti.lat_max], axis=1), axis=0, return_counts=True)
    assert len(bands) == 37 and counts[0] == counts[-1] == 1 and counts[1] == 8 and counts[18] == 80
    # file rows 1-2: "-90.00, -87.50, -180.00, 180.00, 0.17034", "-87.50, -82.50, -45.00, 0.00, 0.0000"
    assert ti.value_at(123.0, -89.0) == 0.17034
    np.testing.assert_array_equal(ti.value_at([-22.5, 337.5, -382.5], [-85.0, -85.0, -85.0]), [0.0, 0.0, 0.0])
    assert ti.value_at(-90.0, -85.0) == 0.21359  # on an edge: the cell east of it (-90..-45)
    # the same table from its path finds the manifest (same name and sha256)
    again = read_binned_table(path)
    assert again.manifest_id == "lp_grs_ti_5deg" and again.citation == ti.citation
    np.testing.assert_array_equal(again.value, ti.value)


@pytest.mark.shared_data
def test_real_feo_table_reads_fast(shared, feo):
    # CPU time of this process, not wall time: a busy machine (other test workers) must not fail it
    start = time.process_time()
    table = read_binned_table(shared / "lp_grs" / "MoonFe.data.gz")
    elapsed = time.process_time() - start
    assert elapsed < 2.0, elapsed
    assert len(table) == 259200 and (table.quantity, table.units) == ("FeO", "wt%")
    assert table.manifest_id == "lp_grs_feo_halfdeg" and "Lawrence" in (table.citation or "")
    assert abs(table.cell_areas_m2().sum() / SPHERE - 1.0) < 1e-9
    assert table.value_at(-179.75, -89.75) == 6.4748  # first data row
    assert table.value_at(180.25, -89.75) == 6.4748  # 0..360 longitudes wrap
    np.testing.assert_array_equal(table.value, feo.value)


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "mid,quantity,units,n",
    [
        ("lp_grs_al_5deg", "Al", "wt%", 1790),
        ("lp_grs_th_halfdeg", "Th", "ppm", 259200),
    ],
)
def test_other_real_tables(shared, mid, quantity, units, n):
    table = read_binned_table(mid)  # Th's header says only "units of ppm": the element comes from its first line
    assert (len(table), table.quantity, table.units) == (n, quantity, units)
    assert abs(table.cell_areas_m2().sum() / SPHERE - 1.0) < 1e-9


@pytest.mark.shared_data
def test_value_at_agrees_with_a_brute_force_search(ti):
    rng = np.random.default_rng(7)
    lon = rng.uniform(-540.0, 540.0, 400)
    lat = rng.uniform(-90.0, 90.0, 400)
    got = ti.value_at(lon, lat)
    lon180 = lunar.normalize_longitude(lon)
    for k in range(lon.size):
        hit = (ti.lat_min <= lat[k]) & (lat[k] < ti.lat_max) & (ti.lon_min <= lon180[k]) & (lon180[k] < ti.lon_max)
        assert hit.sum() == 1 and got[k] == ti.value[hit][0]
    assert np.isnan(ti.value_at(0.0, 91.0)) and ti.value_at(0.0, 90.0) == ti.value[-1]
    assert ti.value_at(lon.reshape(20, 20), lat.reshape(20, 20)).shape == (20, 20)


@pytest.mark.shared_data
def test_open_product_points_to_the_table_reader(shared):
    with pytest.raises(FormatError, match=r"prospect\.io\.tables\.read_binned_table"):
        open_product(shared / "lp_grs" / "MoonTi.data.gz")


# --- broken tables ------------------------------------------------------------------------


def _rows(step: float = 30.0) -> list[tuple[float, float, float, float, float]]:
    rows = []
    for lat0 in np.arange(-90.0, 90.0, step):
        for lon0 in np.arange(-180.0, 180.0, step):
            rows.append((lat0, lat0 + step, lon0, lon0 + step, round(5.0 + lat0 / 30.0 + lon0 / 100.0, 4)))
    return rows


def _write(
    path: Path,
    rows,
    *,
    count: int | None = None,
    units: str = "Ti weight percent",
    bad_line: tuple[int, str] | None = None,
    gz: bool = False,
) -> Path:
    header = [
        "#",
        "# Titanium data as described by nobody, a test",
        "#",
        f"# This file contains {len(rows) if count is None else count} binned values",
        '# for the Lunar Prospector "Test_30deg" dataset of today.',
        f"# These data are in units of {units}.",
        "#",
    ]
    body = [f"  {a:7.2f}, {b:9.2f}, {c:9.2f}, {d:9.2f}, {v:11.5f}" for a, b, c, d, v in rows]
    if bad_line is not None:
        body[bad_line[0]] = bad_line[1]
    text = "\n".join(header + body) + "\n"
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def _one_line_error(exc_info, path: Path, *words: str) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    for w in words:
        assert w in msg, msg
    return msg


def _refused(path: Path, *words: str) -> str:
    """``read_binned_table`` refuses ``path`` with one line naming the file and ``words``."""
    with pytest.raises(CorruptProductError) as err:
        read_binned_table(path)
    return _one_line_error(err, path, *words)


def test_a_good_synthetic_table_reads(tmp_path):
    path = _write(tmp_path / "good.data", _rows())
    table = read_binned_table(path)
    assert len(table) == 72 and (table.quantity, table.units, table.product_id) == ("Ti", "wt%", "Test_30deg")
    assert table.manifest_id is None and "as described" in (table.citation or "")
    assert table.value_at(15.0, 15.0) == 5.0 and table.value_at(-165.0, -75.0) == 0.2
    gz = _write(tmp_path / "good.data.gz", _rows(), gz=True)
    np.testing.assert_array_equal(read_binned_table(gz).value, table.value)
    # a derived table (dataclasses.replace) is re-indexed and re-checked
    doubled = dataclasses.replace(table, value=table.value * 2.0)
    assert doubled.value_at(-165.0, -75.0) == 0.4 and table.value_at(-165.0, -75.0) == 0.2
    assert doubled.area_weighted_mean() == pytest.approx(2.0 * table.area_weighted_mean(), rel=1e-15)
    with pytest.raises(CorruptProductError, match="gap"):
        dataclasses.replace(table, lon_max=table.lon_max - 1.0)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.data.gz"
    with pytest.raises(InputNotFoundError) as err:
        read_binned_table(path)
    _one_line_error(err, path, "no such file")


def test_malformed_rows_name_their_line(tmp_path):
    # header is 7 lines, so data row k is on line 8 + k
    path = _write(tmp_path / "bad.data", _rows(), bad_line=(5, "  -90.00,  -60.00,  -30.00,  0.00,  abc"))
    _refused(path, "line 13", "malformed row")
    path = _write(tmp_path / "short.data", _rows(), bad_line=(40, "  0.00,  30.00,  0.00,  30.00"))
    _refused(path, "line 48", "4 fields")
    path = _write(tmp_path / "nan.data", _rows(), bad_line=(0, "  -90.00,  -60.00,  -180.00,  -150.00,  nan"))
    _refused(path, "line 8", "not a finite number")


def test_declared_count_that_lies(tmp_path):
    path = _write(tmp_path / "lies.data", _rows(), count=73)
    _refused(path, "73 binned values", "72 data rows")


def test_overlapping_cells(tmp_path):
    rows = _rows()
    lat0, lat1, lon0, lon1, v = rows[14]  # band -60..-30, lon -120..-90
    rows[14] = (lat0, lat1, lon0, lon1 + 10.0, v)
    path = _write(tmp_path / "overlap.data", rows)
    _refused(path, "overlap", "latitude band -60..-30", "line 22", "line 23")
    dup = _rows() + [_rows()[0]]  # the same cell twice
    path = _write(tmp_path / "dup.data", dup)
    _refused(path, "overlap", "latitude band -90..-60")
    bands = _rows()
    bands[0] = (-90.0, -50.0, bands[0][2], bands[0][3], 1.0)  # one cell reaches into the next band
    path = _write(tmp_path / "bands.data", bands)
    _refused(path, "overlap")


def test_gaps(tmp_path):
    rows = _rows()
    del rows[30]  # band -30..0, lon 0..30
    path = _write(tmp_path / "gap.data", rows)
    _refused(path, "gap", "latitude band -30..0", "between lon 0 ", "and 30")
    rows = _rows()
    del rows[35]  # the last cell of the band: the band covers 330 of 360 deg
    path = _write(tmp_path / "edge.data", rows)
    _refused(path, "330 of 360", "missing 150..180")
    rows = [r for r in _rows() if r[0] != 60.0]  # the 60..90 band is gone
    path = _write(tmp_path / "cap.data", rows)
    _refused(path, "gap between latitude 60 and 90")


def test_latitudes_out_of_range_or_inverted(tmp_path):
    rows = _rows()
    rows[0] = (-95.0, -60.0, rows[0][2], rows[0][3], 1.0)
    path = _write(tmp_path / "south.data", rows)
    _refused(path, "line 8", "outside [-90, 90]")
    rows = _rows()
    rows[3] = (-60.0, -90.0, rows[3][2], rows[3][3], 1.0)
    path = _write(tmp_path / "inverted.data", rows)
    _refused(path, "line 11", "lat_min -60 >= lat_max -90")


def test_truncated_gzip(tmp_path):
    good = _write(tmp_path / "t.data.gz", _rows(), gz=True).read_bytes()
    path = tmp_path / "truncated.data.gz"
    path.write_bytes(good[: len(good) // 2])
    _refused(path, "gzip")
    path.write_bytes(good[:10] + b"\x00" * 40 + good[50:])  # garbage in the deflate stream
    with pytest.raises(CorruptProductError):
        read_binned_table(path)


def test_units_unknown_or_contradicting_the_manifest(tmp_path, monkeypatch):
    path = _write(tmp_path / "furlongs.data", _rows(), units="Ti furlongs")
    with pytest.raises(UnitsError) as err:
        read_binned_table(path)
    _one_line_error(err, path, "unknown units")

    # a manifest that says ppm for a file whose header says wt%
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    table = _write(data_dir / "liar.data", _rows())
    manifest = yaml.safe_load((MANIFESTS / "lp_grs_ti_5deg.yaml").read_text())
    manifest.pop("shared_path")
    manifest.update(id="liar_table", open="liar.data", units="ppm")
    manifest["files"] = [
        {
            "name": "liar.data",
            "url": "https://example.invalid/liar.data",
            "checksum": "sha256:" + hashlib.sha256(table.read_bytes()).hexdigest(),
        }
    ]
    mdir = tmp_path / "manifests"
    mdir.mkdir()
    (mdir / "liar_table.yaml").write_text(yaml.safe_dump(manifest))
    monkeypatch.setenv("PROSPECT_MANIFEST_DIR", str(mdir))
    monkeypatch.setenv("PROSPECT_MIRROR", str(data_dir))
    with pytest.raises(UnitsError) as err:
        read_binned_table(table)  # by path: the manifest is found by name and sha256
    _one_line_error(err, table, "'wt%'", "liar_table", "'ppm'")
    with pytest.raises(UnitsError, match="liar_table says 'ppm'"):
        read_binned_table("liar_table")  # by id, through the mirror and the cache
    # and a manifest whose value rule names another element
    manifest.update(units="wt%", value_rule="Al_wt% = value as stored")
    (mdir / "liar_table.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(LabelError, match="header says the values are Ti but manifest liar_table says Al"):
        read_binned_table(table)


@pytest.mark.parametrize("case", ["truncated", "bad units", "bad line", "missing"])
def test_a_refused_table_is_one_line_and_exit_2_at_the_cli(tmp_path, capsys, case):
    """What the error classes are for: the user sees one line naming the file, and exit code 2."""
    from prospect.cli import main

    if case == "truncated":
        good = _write(tmp_path / "t.data.gz", _rows(), gz=True).read_bytes()
        path = tmp_path / "truncated.data.gz"
        path.write_bytes(good[: len(good) // 2])
    elif case == "bad units":
        path = _write(tmp_path / "furlongs.data", _rows(), units="Ti furlongs")
    elif case == "bad line":
        path = _write(tmp_path / "bad.data", _rows(), bad_line=(5, "  not, a, row"))
    else:
        path = tmp_path / "absent.data"
    with pytest.raises(SystemExit) as exit_info:
        main(["he3", str(path), str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("prospect: error: ") and str(path) in err, err


# --- rasterizing --------------------------------------------------------------------------


def _area_mean(raster, grid: AnalysisGrid, mask=None) -> float:
    area = grid.cell_area_m2().values
    values = raster.values.astype("float64")
    if mask is None:
        mask = np.ones(values.shape, dtype=bool)
    return float((values * area)[mask].sum() / area[mask].sum())


def _inside_one_cell(table: BinnedTable, grid: AnalysisGrid) -> np.ndarray:
    """Geographic pixels whose four corners (nudged inward) fall in the same cell."""
    t = grid.transform
    eps = 1e-6
    cells = []
    for fy, fx in ((eps, eps), (eps, 1 - eps), (1 - eps, eps), (1 - eps, 1 - eps)):
        lon = t.c + t.a * (np.arange(grid.width) + fx)
        lat = t.f + t.e * (np.arange(grid.height) + fy)
        cells.append(table.cell_index(*np.meshgrid(lon, lat)))
    return (cells[0] == cells[1]) & (cells[0] == cells[2]) & (cells[0] == cells[3])


@pytest.mark.shared_data
@pytest.mark.parametrize("convention", ["180", "360"])
def test_rasterize_on_global_half_degree_grids_conserves_the_mean(ti, feo, convention):
    grid = AnalysisGrid.global_geographic(0.5, convention)
    for table in (ti, feo):
        raster = rasterize_binned(table, grid, chunks=(100, 333))
        assert raster.dtype == np.float32 and raster.data.chunks[0][0] == 100
        assert raster.attrs["resampling"] == EXACT_RESAMPLING
        assert (raster.attrs["units"], raster.attrs["quantity"]) == (table.units, table.quantity)
        assert raster.attrs["source_sha256"] == table.source_sha256 and raster.attrs["manifest_id"] == table.manifest_id
        assert raster.attrs["citation"] == table.citation and raster.attrs["crs"] == "IAU_2015:30100"
        values = raster.values
        assert np.isfinite(values).all()
        # pixels inside one cell hold it exactly
        lon, lat = grid.lonlat(lon_convention=convention)
        inside = _inside_one_cell(table, grid)
        assert inside.mean() > 0.8
        np.testing.assert_array_equal(values[inside], table.value_at(lon, lat)[inside].astype("float32"))
        # conservation: the global area-weighted mean is the table's
        assert abs(_area_mean(raster, grid) / table.area_weighted_mean() - 1.0) < 1e-6
    # on the 0.5 deg FeO table every pixel is one cell
    assert _inside_one_cell(feo, grid).all()


@pytest.mark.shared_data
def test_rasterize_is_exact_before_rounding_to_float32(ti):
    from prospect.grid import lonlat_edges
    from prospect.resources.binned import _exact_block

    grid = AnalysisGrid.global_geographic(0.25)
    lon, lat = lonlat_edges(grid, 0, grid.height, 0, grid.width)
    means = _exact_block(ti.lookup, lon, lat)
    area = grid.cell_area_m2().values
    assert abs((means * area).sum() / area.sum() / ti.area_weighted_mean() - 1.0) < 1e-12


def _by_hand(table: BinnedTable, lon0: float, lon1: float, lat0: float, lat1: float) -> float:
    """Explicit sum over every cell of value x exact area of its intersection with the pixel."""
    num = den = 0.0
    for k in range(len(table)):
        lo, hi = max(lat0, table.lat_min[k]), min(lat1, table.lat_max[k])
        if hi <= lo:
            continue
        for shift in (-360.0, 0.0, 360.0):
            w = min(lon1, table.lon_max[k] + shift) - max(lon0, table.lon_min[k] + shift)
            if w > 0:
                a = lunar.cell_area_m2(lo, hi, w)
                num += a * table.value[k]
                den += a
    assert den == pytest.approx(lunar.cell_area_m2(lat0, lat1, lon1 - lon0), rel=1e-12)
    return num / den


@pytest.mark.shared_data
def test_ten_degree_pixels_are_the_exact_area_weighted_average(ti):
    g180 = AnalysisGrid.global_geographic(10.0, "180")
    g360 = AnalysisGrid.global_geographic(10.0, "360")
    r180, r360 = rasterize_binned(ti, g180).values, rasterize_binned(ti, g360).values
    # pixel 0..10 E, 0..10 N (row 8, col 18): 3 bands (4.5 deg cells at the equator, 5 deg above)
    assert r180[8, 18] == np.float32(_by_hand(ti, 0.0, 10.0, 0.0, 10.0))
    # pixel 180..190 E, 60..70 S in the 0..360 grid is -180..-170 in the -180..180 grid
    want = _by_hand(ti, -180.0, -170.0, -70.0, -60.0)
    assert r360[15, 18] == np.float32(want) == r180[15, 0]
    np.testing.assert_array_equal(np.roll(r360, 18, axis=1), r180)
    # a polar row: the cap cell (87.5..90) and the 8-cell band below it
    assert r180[0, 5] == pytest.approx(_by_hand(ti, -130.0, -120.0, 80.0, 90.0), rel=1e-6)
    # a regional grid across the 180 E seam gives the same pixels
    reg = AnalysisGrid.from_bounds("IAU_2015:30100", (170.0, -70.0, 190.0, -60.0), resolution=10.0)
    np.testing.assert_array_equal(rasterize_binned(ti, reg).values[0], r360[15, 17:19])


@pytest.mark.shared_data
def test_equirectangular_grid_equals_its_geographic_twin(ti):
    step = 2.0 * math.pi * R / 360.0 * 2.0  # 2 deg pixels in metres
    eqc = AnalysisGrid(
        lunar.lunar_crs(lunar.IAU_EQUIRECTANGULAR_180), Affine(step, 0.0, -90 * step, 0.0, -step, 45 * step), (90, 180)
    )
    geo = AnalysisGrid(
        lunar.lunar_crs(lunar.IAU_GEOGRAPHIC), Affine(2.0, 0.0, 0.0, 0.0, -2.0, 90.0), (90, 180)
    )  # 0..360 E
    np.testing.assert_allclose(rasterize_binned(ti, eqc).values, rasterize_binned(ti, geo).values, rtol=2e-7)


def _well_inside(table: BinnedTable, grid: AnalysisGrid) -> np.ndarray:
    """Polar pixels whose centre lies farther than the pixel diagonal from every edge of its cell."""
    lon, lat = grid.lonlat()
    rows = table.cell_index(lon, lat)
    diag = math.hypot(*grid.resolution) / lunar.METRES_PER_DEGREE  # deg of latitude
    dlat = np.minimum(lat - table.lat_min[rows], table.lat_max[rows] - lat)
    rel = np.mod(lon - table.lon_min[rows], 360.0)
    dlon = np.minimum(rel, table.lon_max[rows] - table.lon_min[rows] - rel) * np.cos(np.radians(lat))
    full_turn = table.lon_max[rows] - table.lon_min[rows] >= 360.0  # a cap cell has no longitude edges
    return (dlat > diag) & ((dlon > diag) | full_turn)


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["ti", "feo"])
def test_rasterize_on_a_south_polar_grid(request, name):
    table = request.getfixturevalue(name)
    grid = AnalysisGrid.polar_cap(lat_limit=-80.0, resolution_m=5000.0)
    raster = rasterize_binned(table, grid, chunks=50)
    s = raster.attrs["supersample"]
    assert s == 4 and "1/k^2" in raster.attrs["resampling"] and raster.attrs["crs"] == "IAU_2015:30135"
    values = raster.values
    assert values.dtype == np.float32 and np.isfinite(values).all()
    np.testing.assert_array_equal(values, rasterize_binned(table, grid).values)  # chunking changes nothing
    lon, lat = grid.lonlat()
    inside = _well_inside(table, grid)
    assert inside.sum() > (100 if name == "ti" else -1)  # 0.5 deg cells: 15 km x 1.3 km at 85 S, none
    np.testing.assert_array_equal(values[inside], table.value_at(lon, lat)[inside].astype("float32"))

    # The pixels with centres poleward of 80 S against the exact mean of the cells over the
    # cap (cells clipped at 80 S, exact areas). Tolerance: the pixel set and the cap differ
    # only inside the pixels the 80 S circle crosses, so the means differ by at most
    # (their area / selected area) x max |value - cap mean| over cells near 80 S; plus the
    # sub-sampling error, at most |value step| / (2 s) in the pixels a cell edge crosses
    # (here bounded by the value range of the region over 2 s, times those pixels' area share).
    area = grid.cell_area_m2().values
    selected = lat < -80.0
    got = _area_mean(raster, grid, selected)
    top = np.minimum(table.lat_max, -80.0)
    width = table.lon_max - table.lon_min
    clipped = np.where(table.lat_min < -80.0, lunar.cell_area_m2(table.lat_min, top, width), 0.0)
    exact = float((clipped * table.value).sum() / clipped.sum())
    t = grid.transform
    xx, yy = np.meshgrid(t.c + t.a * np.arange(grid.width + 1), t.f + t.e * np.arange(grid.height + 1))
    corner = lunar.polar_stereographic_latitude(np.hypot(xx, yy))
    corners = np.stack([corner[:-1, :-1], corner[:-1, 1:], corner[1:, :-1], corner[1:, 1:]])
    crossed = (corners.min(axis=0) < -80.0) & (corners.max(axis=0) > -80.0)
    ring = (table.lat_min <= corners[:, crossed].max()) & (table.lat_max >= corners[:, crossed].min())
    staircase = area[crossed].sum() / area[selected].sum() * np.abs(table.value[ring] - exact).max()
    region = table.lat_min < -77.0
    mixed = ~inside & selected
    sampling = area[mixed].sum() / area[selected].sum() * np.ptp(table.value[region]) / (2 * s)
    assert abs(got - exact) <= staircase + sampling
    # the staircase errors mostly cancel: measured 2e-4 (Ti) and 3e-5 (FeO) relative
    assert abs(got / exact - 1.0) < 1e-3


@pytest.mark.shared_data
def test_more_supersampling_converges(ti):
    grid = AnalysisGrid.polar_cap(lat_limit=-85.0, resolution_m=20000.0)
    coarse, fine, finer = (rasterize_binned(ti, grid, supersample=s).values.astype("float64") for s in (4, 16, 64))
    assert np.abs(finer - fine).max() < np.abs(finer - coarse).max()
    assert np.abs(finer - fine).max() <= np.ptp(ti.value[ti.lat_min < -77.0]) / (2 * 16)


def test_bad_arguments_are_grid_errors(tmp_path):
    from prospect.errors import GridError

    table = read_binned_table(_write(tmp_path / "good.data", _rows()))
    with pytest.raises(GridError, match="exactly"):
        rasterize_binned(table, AnalysisGrid.global_geographic(10.0), supersample=4)
    with pytest.raises(GridError, match="positive integer"):
        rasterize_binned(table, AnalysisGrid.polar_cap(resolution_m=50000.0), supersample=0)
    with pytest.raises(GridError, match="BinnedTable"):
        rasterize_binned("lp_grs_ti_5deg", AnalysisGrid.global_geographic(10.0))  # type: ignore[arg-type]  # the refusal under test
    # a synthetic table rasterizes too, and a pixel inside one cell is that cell
    raster = rasterize_binned(table, AnalysisGrid.global_geographic(10.0))
    assert raster.values[7, 19] == np.float32(table.value_at(15.0, 15.0))


@pytest.mark.shared_data
def test_rasterize_on_a_north_polar_grid(ti):
    grid = AnalysisGrid.polar_cap("north", resolution_m=10000.0)
    values = rasterize_binned(ti, grid).values
    lon, lat = grid.lonlat()
    inside = _well_inside(ti, grid)
    assert inside.sum() > 100
    np.testing.assert_array_equal(values[inside], ti.value_at(lon, lat)[inside].astype("float32"))
    assert np.all((values >= ti.value[ti.lat_max > 75.0].min()) & (values <= ti.value[ti.lat_max > 75.0].max()))
