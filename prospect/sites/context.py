"""Multi-scale context of candidate sites: neighbourhood statistics of a layer around each site.

Experts draw regions, not pixels: a site on a sunny ridge inside a dark, rough area is a
worse base than the same pixel values inside a large lit plateau. These features describe
the neighbourhood of a site at a few kilometres (the surroundings a crew would work in)
and at the size of an Artemis III region (~15 km across; docs/science.md section 6).

Bounded in memory and fast also on the 7584 x 7584, 20 m grid (dask-backed layers):

1. :func:`block_sums` block-averages a layer to a coarse grid whose pixel is about a third
   of the radius (``factor = round(radius / 3 / pixel)``, at least 1): per block the sum
   and the count of finite values, streamed chunk by chunk (``dask.array.coarsen``);
2. :func:`disc_mean` averages over a disc of the radius on that small numpy grid (a
   NaN-aware convolution of sums and counts: the mean of all finite fine pixels of the
   blocks whose centres lie in the disc);
3. :func:`sample_bilinear` interpolates the result at the sites (fractional grid
   row/column), ignoring NaN neighbours.

:func:`distance_km` turns a mask (the cold traps) into a distance map on the coarse grid
(Euclidean distance transform from the block centres to the nearest block holding a mask
pixel, map metres divided by the map scale factor); its neighbourhood mean is the mean
distance to the nearest cold trap around the site.

Everything is a pure function of arrays / xarray layers and the radii; the site stage
(:func:`prospect.sites.rank.site_features`) names the columns ``<feature>_near`` and
``<feature>_region`` (:data:`SCALES`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from prospect.errors import ConfigError

__all__ = [
    "SCALES",
    "block_sums",
    "coarse_factor",
    "context_features",
    "disc_mean",
    "distance_km",
    "sample_bilinear",
]

#: Column suffix of each scale and the parameter giving its radius (prospect/config/sites.yaml).
SCALES = {"near": "context_near_radius_m", "region": "context_region_radius_m"}


def coarse_factor(radius_m: float, pixel_m: float) -> int:
    """Block size (pixels) of the coarse grid for a neighbourhood of ``radius_m``: a coarse pixel ~ radius / 3."""
    if not (math.isfinite(radius_m) and radius_m > 0 and math.isfinite(pixel_m) and pixel_m > 0):
        raise ConfigError(f"context: radius ({radius_m!r} m) and pixel size ({pixel_m!r} m) must be positive")
    return max(1, int(round(radius_m / 3.0 / pixel_m)))


def block_sums(layer: Any, factor: int) -> tuple[da.Array, da.Array]:
    """Lazy per-block sum and count of the finite values of a 2-D layer, blocks of ``factor`` x
    ``factor`` pixels aligned to pixel (0, 0) (edge blocks are partial). Booleans count as 0/1."""
    data = layer.data if isinstance(layer, xr.DataArray) else layer
    data = data if isinstance(data, da.Array) else da.from_array(np.asarray(data), chunks=2048)
    if data.ndim != 2:
        raise ConfigError(f"context: a layer must be 2-D, not {data.ndim}-D")
    data = data.astype("float32") if data.dtype == bool else data
    f = int(factor)
    pad = ((0, (-data.shape[0]) % f), (0, (-data.shape[1]) % f))
    if any(p for _, p in pad):
        data = da.pad(data, pad, mode="constant", constant_values=np.nan)
    chunks = tuple(max(f, (c // f) * f) for c in data.chunksize)
    data = data.rechunk(chunks)
    valid = da.isfinite(data)
    values = da.where(valid, data, 0).astype("float64")
    axes = {0: f, 1: f}
    return da.coarsen(np.sum, values, axes), da.coarsen(np.sum, valid.astype("float64"), axes)


def _merge_blocks(a: np.ndarray, k: int) -> np.ndarray:
    """Sum of ``k`` x ``k`` blocks of a numpy array (zero-padded at the far edges)."""
    if k == 1:
        return a
    pad = ((0, (-a.shape[0]) % k), (0, (-a.shape[1]) % k))
    a = np.pad(a, pad)
    return a.reshape(a.shape[0] // k, k, a.shape[1] // k, k).sum(axis=(1, 3))


def _disc(radius_px: float) -> np.ndarray:
    r = max(0, int(math.floor(radius_px)))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    return (dy**2 + dx**2 <= radius_px**2 + 1e-9).astype("float64")


def disc_mean(sums: np.ndarray, counts: np.ndarray, radius_px: float) -> np.ndarray:
    """Mean over a disc of ``radius_px`` coarse pixels (at least the pixel itself), from the
    per-block ``sums`` and ``counts``: NaN where the disc holds no finite value."""
    from scipy.ndimage import convolve

    kernel = _disc(radius_px)
    s = convolve(np.asarray(sums, dtype="float64"), kernel, mode="constant", cval=0.0)
    c = convolve(np.asarray(counts, dtype="float64"), kernel, mode="constant", cval=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0.5, s / np.where(c > 0.5, c, 1.0), np.nan)


def sample_bilinear(grid: np.ndarray, rows: Any, cols: Any) -> np.ndarray:
    """Bilinear values of ``grid`` at fractional (row, col) indices (pixel centres at integers;
    clamped at the edges); NaN neighbours are left out and the weights renormalised."""
    from scipy.ndimage import map_coordinates

    g = np.asarray(grid, dtype="float64")
    r = np.clip(np.asarray(rows, dtype="float64"), 0, g.shape[0] - 1)
    c = np.clip(np.asarray(cols, dtype="float64"), 0, g.shape[1] - 1)
    valid = np.isfinite(g)
    coords = np.vstack([r, c])
    num = map_coordinates(np.where(valid, g, 0.0), coords, order=1, mode="nearest")
    den = map_coordinates(valid.astype("float64"), coords, order=1, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-9, num / np.where(den > 1e-9, den, 1.0), np.nan)


def distance_km(mask_fraction: np.ndarray, coarse_pixel_m: float, scale: float = 1.0) -> np.ndarray:
    """Distance [km] from every coarse pixel centre to the nearest coarse pixel holding any mask
    pixel (``mask_fraction > 0``); map metres / ``scale`` (the map scale factor). All NaN without a mask pixel."""
    from scipy.ndimage import distance_transform_edt

    hit = np.nan_to_num(np.asarray(mask_fraction, dtype="float64"), nan=0.0) > 0
    if not hit.any():
        return np.full(hit.shape, np.nan)
    return distance_transform_edt(~hit) * coarse_pixel_m / scale / 1000.0


def context_features(
    layers: Mapping[str, Any],
    rows: Any,
    cols: Any,
    *,
    pixel_m: float,
    radii_m: Mapping[str, float],
    scale: float = 1.0,
    distance_masks: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Neighbourhood means of ``layers`` (and of the distance to ``distance_masks``) at the sites.

    ``layers``: ``{name: 2-D layer}`` on the analysis grid (numpy, dask or xarray);
    ``distance_masks``: ``{name: boolean 2-D layer}``, each turned into a distance map
    [km] (:func:`distance_km`) first; ``rows``, ``cols``: the sites' grid pixel indices;
    ``pixel_m``: the grid pixel size [m]; ``scale``: the map scale factor (ground metres
    = map metres / scale); ``radii_m``: ``{suffix: radius [m]}``, e.g.
    ``{"near": 1500, "region": 7500}``. Returns ``{f"{name}_{suffix}": values per site}``.

    One streamed pass over each layer: block sums at the finest factor needed, coarser
    grids by merging those blocks (the mean of the same fine pixels).
    """
    rows = np.asarray(rows, dtype="float64")
    cols = np.asarray(cols, dtype="float64")
    if rows.shape != cols.shape:
        raise ConfigError(f"context: rows and cols differ in shape ({rows.shape} vs {cols.shape})")
    if not radii_m:
        return {}
    factors = {s: coarse_factor(float(r), pixel_m / scale) for s, r in radii_m.items()}
    f0 = min(factors.values())
    # the coarser grids merge blocks of the finest: their factor is a multiple of it
    merge = {s: max(1, int(round(f / f0))) for s, f in factors.items()}
    names = list(layers) + list(distance_masks or {})
    lazy = [block_sums(layers[n], f0) for n in layers] + [block_sums(m, f0) for m in (distance_masks or {}).values()]
    computed = dask.compute(*[x for pair in lazy for x in pair]) if lazy else ()
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(names):
        sums, counts = (np.asarray(computed[2 * i]), np.asarray(computed[2 * i + 1]))
        if i >= len(layers):  # a mask: the distance to it, on the finest coarse grid
            with np.errstate(invalid="ignore", divide="ignore"):
                fraction = np.where(counts > 0, sums / np.where(counts > 0, counts, 1), np.nan)
            dist = distance_km(fraction, f0 * pixel_m, scale)
            counts = np.isfinite(dist).astype("float64")
            sums = np.where(counts > 0, dist, 0.0)
        for suffix, radius in radii_m.items():
            k = merge[suffix]
            f = f0 * k
            s, c = _merge_blocks(sums, k), _merge_blocks(counts, k)
            mean = disc_mean(s, c, float(radius) * scale / (f * pixel_m))
            # a site at fine pixel p lies at coarse index (p - (f - 1) / 2) / f
            out[f"{name}_{suffix}"] = sample_bilinear(mean, (rows - (f - 1) / 2) / f, (cols - (f - 1) / 2) / f)
    return out
