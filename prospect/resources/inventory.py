"""Inventories: the mass of a resource over the sphere, a mask or a region, from a column-density map.

Any ``kg m-2`` map (He-3 column from :mod:`prospect.resources.he3`, or a water-equivalent
column) integrates with exact pixel areas on the 1737.4 km sphere
(:meth:`prospect.grid.AnalysisGrid.cell_area_m2`), chunk by chunk.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import xarray as xr

from prospect.errors import GridError
from prospect.grid import AnalysisGrid


def inventory_kg(column: xr.DataArray, *, mask: xr.DataArray | None = None, region: Any = None) -> float:
    """Total mass [kg] of a column-density map [kg m-2] over the grid, a mask or a region.

    Cell areas are exact on the 1737.4 km sphere (:meth:`AnalysisGrid.cell_area_m2`).
    ``mask`` is a boolean or fractional (0..1) layer on the same grid; ``region`` a
    GeoDataFrame of polygons (their covered fraction of each pixel is used). NaN columns
    count as no data (zero), so the result is a lower bound where the map has gaps.
    """
    grid = AnalysisGrid.from_dataarray(column)
    chunks = column.data.chunksize if isinstance(column.data, da.Array) else None
    weight = grid.cell_area_m2(chunks=chunks).data
    if region is not None:
        from prospect.resources.masks import polygon_fraction

        weight = weight * polygon_fraction(region, grid, chunks=chunks).data
    if mask is not None:
        if mask.shape != column.shape:
            raise GridError(f"inventory mask shape {mask.shape} differs from the map's {column.shape}")
        weight = weight * da.nan_to_num(da.asarray(mask.data).astype("float64"))
    return float(da.nansum(da.asarray(column.data).astype("float64") * weight).compute())
