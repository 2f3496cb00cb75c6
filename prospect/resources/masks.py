"""Vector masks on the analysis grid: the fraction of each pixel that polygons cover.

:func:`polygon_fraction` turns polygons (for example the real LOLA permanently shadowed
region catalogue, ``LOLA_PSR_75S_120M_82S_060M_5KM2_FINAL.shp``, Mazarico et al. 2011)
into a float32 layer of covered area fraction (0..1) on an
:class:`~prospect.grid.AnalysisGrid`. That is how a PSR polygon catalogue becomes the
``psr`` layer of :mod:`prospect.resources.ice`.

Method: the polygons are reprojected to the grid's lunar CRS, then each output chunk (one
dask task) rasterises the polygons that intersect it (``rasterio.features.rasterize``,
pixel-centre rule) on a grid ``supersample`` times finer and averages the fine cells of
each pixel. The fraction is exact to ``1 / supersample**2`` of a pixel (plus the
pixel-centre rule's error on the fine grid); memory is one chunk times
``supersample**2`` bytes, whatever the size of the grid. Pixels that no polygon touches
are 0, including pixels outside the area the catalogue covers: a catalogue says where
PSRs are, not where it looked.
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import dask.array as da
import dask.base
import numpy as np
import xarray as xr
from affine import Affine

from prospect import lunar
from prospect.errors import ConfigError, CRSError
from prospect.grid import AnalysisGrid

__all__ = ["polygon_fraction"]

#: Side of the tiles the polygons are rasterised in [pixels]; fixed, so that the result
#: does not depend on the output chunks (see :func:`polygon_fraction`).
_TILE_PX = 1024


def _fraction_block(
    block: np.ndarray, geoms: list[Any], tree: Any, grid: AnalysisGrid, supersample: int, block_info: dict | None = None
) -> np.ndarray:
    """Covered fraction of the pixels of one chunk (``block`` only gives the shape and location)."""
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.features import rasterize
    from shapely.geometry import box

    assert block_info is not None, "dask.array.map_blocks passes block_info"
    (r0, r1), (c0, c1) = block_info[0]["array-location"]
    h, w = r1 - r0, c1 - c0
    t = grid.transform
    left, top = t.c + t.a * c0, t.f + t.e * r0
    right, bottom = t.c + t.a * c1, t.f + t.e * r1
    hits = tree.query(box(left, bottom, right, top), predicate="intersects")
    if len(hits) == 0:
        return np.zeros((h, w), dtype="float32")
    s = supersample
    with warnings.catch_warnings():
        # rasterio's in-memory dataset warns "no geotransform" before it sets ours
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        fine = rasterize(
            ((geoms[i], 1) for i in hits),
            out_shape=(h * s, w * s),
            transform=Affine(t.a / s, 0.0, left, 0.0, t.e / s, top),
            fill=0,
            dtype="uint8",
        )
    return fine.reshape(h, s, w, s).mean(axis=(1, 3), dtype="float32")


def polygon_fraction(gdf: Any, grid: AnalysisGrid, *, supersample: int = 4, chunks: Any = None) -> xr.DataArray:
    """Fraction of each pixel of ``grid`` covered by the polygons of ``gdf`` (float32, 0..1).

    Parameters
    ----------
    gdf
        A GeoDataFrame of (multi)polygons with a lunar CRS, as
        :func:`prospect.io.vectors.open_vector` returns it (``attrs['crs_code']`` or its
        ``.crs``); reprojected to the grid's CRS here. Overlapping polygons count once.
    grid
        The target :class:`~prospect.grid.AnalysisGrid`.
    supersample
        Fine cells per pixel side (``4`` resolves the fraction to 1/16 of a pixel).
    chunks
        Output chunks (as :meth:`AnalysisGrid.template`); the result is lazy (dask). The
        polygons are always rasterised in fixed 1024-pixel tiles aligned to pixel (0, 0)
        (a fine cell centred exactly on a polygon edge is decided by floating-point
        rounding that depends on the tile origin), then rechunked, so every chunking
        gives identical values.

    Raises :class:`~prospect.errors.CRSError` for a frame without a CRS or with an Earth
    CRS, :class:`~prospect.errors.ConfigError` for non-polygon geometries.
    """
    if not isinstance(grid, AnalysisGrid):
        raise ConfigError(f"polygon_fraction needs an AnalysisGrid, not {type(grid).__name__}")
    if isinstance(supersample, bool) or not isinstance(supersample, (int, np.integer)) or supersample < 1:
        raise ConfigError(f"supersample must be a positive integer, not {supersample!r}")
    supersample = int(supersample)
    source = ", ".join(gdf.attrs.get("source_files", [])) or "GeoDataFrame"
    code = gdf.attrs.get("crs_code")
    if isinstance(code, str) and code.upper().startswith(lunar.IAU_AUTHORITY + ":"):
        crs = lunar.lunar_crs(code)
    elif gdf.crs is not None:
        crs = lunar.identify(gdf.crs.to_wkt(), source=source)
    else:
        raise CRSError(
            f"{source}: the polygons have no CRS; open them with prospect.io.vectors.open_vector "
            "(crs_override=... for files without a .prj)"
        )
    frame = gdf.set_crs(crs.to_pyproj(), allow_override=True)
    same = (crs.code is not None and crs.code == grid.crs.code) or crs.wkt == grid.crs.wkt
    if not same:
        frame = frame.to_crs(grid.crs.to_pyproj())
    geoms = [g for g in frame.geometry if g is not None and not g.is_empty]
    other = {g.geom_type for g in geoms} - {"Polygon", "MultiPolygon"}
    if other:
        raise ConfigError(f"{source}: polygon_fraction needs polygons, not {sorted(other)}")
    from shapely import STRtree, to_wkb

    tree = STRtree(geoms)
    digest = hashlib.sha256(b"".join(to_wkb(geoms))).hexdigest() if geoms else "empty"
    # Fixed tiles, whatever ``chunks`` asks for: a fine cell whose centre lies exactly on a
    # polygon edge (the LOLA polygons run along a 120 m lattice) is decided by rounding
    # that depends on the tile origin, so the tiles are fixed and then rechunked.
    template = grid.template(chunks=_TILE_PX)
    name = "polygon-fraction-" + dask.base.tokenize(digest, grid.to_dict(), supersample, _TILE_PX)
    data = da.map_blocks(
        _fraction_block,
        template.data,
        geoms,
        tree,
        grid,
        supersample,
        dtype="float32",
        name=name,
        meta=np.empty((0, 0), dtype="float32"),
    )
    if chunks is not None:
        data = data.rechunk(grid.template(chunks=chunks).data.chunks)
    out = template.copy(data=data)
    out.name = "psr_fraction"
    out.attrs.update(
        units="1",
        long_name="fraction of the pixel covered by polygons",
        source_files=source,
        n_polygons=len(geoms),
        supersample=supersample,
        method=f"rasterio.features.rasterize at {supersample}x{supersample} cells per pixel "
        "(pixel-centre rule), block-averaged",
    )
    return out
