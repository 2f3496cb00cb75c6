"""Fast checks of the site benchmark's pieces on tiny inputs (the full run is `python -m benchmarks.bench_sites`)."""

from __future__ import annotations

import json

import numpy as np

from benchmarks import bench_sites as B
from prospect.grid import AnalysisGrid
from prospect.io.readers import open_product


def test_window_dem_is_the_corner_of_the_larger_fractal_with_the_pole_inside(tmp_path):
    big = open_product(B.write_window_dem(tmp_path / "big.IMG", 96, 96)).load()
    small = open_product(B.write_window_dem(tmp_path / "small.IMG", 64, 96)).load()
    np.testing.assert_array_equal(small.values, big.values[32:, :64])
    g = AnalysisGrid.from_dataarray(small)
    x0, y0, x1, y1 = g.bounds
    assert x0 < 0 < x1 and y0 < 0 < y1 and abs(x0) > x1 and abs(y0) > y1  # x < 0, y < 0 side, pole inside
    np.testing.assert_allclose(small.x.values, big.x.values[:64])
    np.testing.assert_allclose(small.y.values, big.y.values[32:])


def test_illumination_like_layers_on_the_dem_grid(tmp_path):
    lbl, ill = B.make_inputs(64, tmp_path / "inputs", terrain=64)
    grid = AnalysisGrid.from_dataarray(open_product(lbl))
    for name in ("illumination_fraction", "earth_visibility_fraction", "longest_darkness_h", "psr_mask"):
        arr = open_product(ill / f"{name}.tif")
        assert AnalysisGrid.from_dataarray(arr).shape == grid.shape
        v = arr.values
        assert np.isfinite(v).all()
        if name != "longest_darkness_h":
            assert v.min() >= 0 and v.max() <= 1
    psr = open_product(ill / "psr_mask.tif").values
    assert 0.05 < psr.mean() < 0.11  # the lowest 8 % of the ground


def test_compare_runs_names_what_differs(tmp_path):
    import geopandas as gpd
    import shapely

    def run(folder, scores, extra=None):
        folder.mkdir()
        df = gpd.GeoDataFrame(
            {"site_id": ["a", "b"], "score": scores, "explanation": ["x", "y"]},
            geometry=shapely.points([0, 1], [0, 1]),
        )
        df.to_file(folder / "sites.gpkg", layer="sites", engine="pyogrio")
        record = {"seed": 0, "parameters": [extra or 1], **({"disc_polygons_top_n": 5} if extra else {})}
        (folder / "ranking.json").write_text(json.dumps(record))
        return folder

    a = run(tmp_path / "a", [0.5, 0.25])
    b = run(tmp_path / "b", [0.5, 0.25], extra=2)  # parameters and the disc cap may differ
    assert B.compare_runs(a, b)["identical"]
    c = run(tmp_path / "c", [0.5, 0.125])
    res = B.compare_runs(a, c)
    assert not res["identical"] and res["columns_differing"] == {"score": 0.125} and res["same_order"]
