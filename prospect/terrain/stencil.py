"""Run a padded-block kernel over a numpy- or dask-backed DEM, chunk by chunk.

The dask path is ``overlap`` (halo of ``depth`` pixels, NaN beyond the raster) followed
by one kernel call per chunk, which is what ``dask.array.map_overlap`` does; it is spelled
out here because the kernels need each chunk's global row/column to place the pixel on
the Moon. Chunks smaller than the halo are merged first (dask requires depth <= chunk).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import accumulate
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.typing import Key

from prospect.errors import GridError

BlockKernel = Callable[[np.ndarray, int, int], np.ndarray]


def _offsets(chunks: tuple[int, ...]) -> list[int]:
    return [0, *accumulate(chunks)][:-1]


def _widen(chunks: tuple[int, ...], depth: int) -> tuple[int, ...]:
    """Merge chunks so that each is at least ``depth`` long (keeping boundaries where possible)."""
    if depth <= 0 or min(chunks) >= depth:
        return chunks
    out: list[int] = []
    for c in chunks:
        if out and out[-1] < depth:
            out[-1] += c
        else:
            out.append(c)
    if len(out) > 1 and out[-1] < depth:
        out[-2] += out.pop()
    return tuple(out)


def _assemble(neighbours: list[list[np.ndarray | None]], depth: int) -> np.ndarray:
    """The centre block with a ``depth`` halo cut from its 8 neighbours (NaN where there are none)."""
    centre = neighbours[1][1]
    assert centre is not None, "the centre chunk of a halo is always present"
    h, w = centre.shape
    out = np.empty((h + 2 * depth, w + 2 * depth), dtype=centre.dtype)
    rows = (slice(0, depth), slice(depth, depth + h), slice(depth + h, h + 2 * depth))
    cols = (slice(0, depth), slice(depth, depth + w), slice(depth + w, w + 2 * depth))
    for i in range(3):
        for j in range(3):
            block = neighbours[i][j]
            if block is None:
                out[rows[i], cols[j]] = np.nan
                continue
            src_r = (slice(block.shape[0] - depth, None), slice(None), slice(0, depth))[i]
            src_c = (slice(block.shape[1] - depth, None), slice(None), slice(0, depth))[j]
            out[rows[i], cols[j]] = block[src_r, src_c]
    return out


def _halo_map(data: da.Array, depth: int, kernel: BlockKernel, dtype) -> da.Array:
    """One task per chunk: gather the halo from the 8 neighbouring chunks, run the kernel.

    Equivalent to ``dask.array.overlap`` + ``map_blocks`` (NaN boundary) but with one
    copy per chunk instead of dask's slice-and-concatenate tasks, which cost more than
    the slope itself (measured: 0.6 s of 0.8 s at 7584^2).
    """
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    name = f"stencil-{tokenize(data, depth, kernel)}"
    nrow, ncol = len(data.chunks[0]), len(data.chunks[1])
    rows0, cols0 = _offsets(data.chunks[0]), _offsets(data.chunks[1])
    dsk: dict[Key, Any] = {}
    for i in range(nrow):
        for j in range(ncol):
            neighbours = [
                [(data.name, ii, jj) if 0 <= ii < nrow and 0 <= jj < ncol else None for jj in (j - 1, j, j + 1)]
                for ii in (i - 1, i, i + 1)
            ]
            dsk[(name, i, j)] = (_run_block, kernel, neighbours, depth, rows0[i], cols0[j])
    # dask's DaskCollection protocol types __dask_scheduler__ as a staticmethod attribute,
    # which its own Array (a staticmethod in the class body) does not satisfy for mypy
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[data])  # type: ignore[list-item]
    return da.Array(graph, name, chunks=data.chunks, dtype=dtype, meta=np.empty((0, 0), dtype=dtype))


def _window_source(dem: xr.DataArray):
    from prospect.io.readers import window_source

    return window_source(dem)


def _window_map(data: da.Array, source, depth: int, kernel: BlockKernel, dtype) -> da.Array:
    """One independent task per chunk that reads the chunk and its halo straight from the file.

    For arrays :func:`prospect.io.readers.open_product` read and nothing has changed since
    (:func:`prospect.io.readers.window_source`): no task waits for its neighbours, so
    nothing is read twice and a streamed write holds only the chunks in flight.
    """
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    name = f"stencil-window-{tokenize(data.name, depth, kernel)}"
    height, width = data.shape
    dsk: dict[Key, Any] = {}
    for i, (r0, h) in enumerate(zip(_offsets(data.chunks[0]), data.chunks[0])):
        for j, (c0, w) in enumerate(zip(_offsets(data.chunks[1]), data.chunks[1])):
            dsk[(name, i, j)] = (_run_window, kernel, source, depth, r0, r0 + h, c0, c0 + w, height, width)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[])
    return da.Array(graph, name, chunks=data.chunks, dtype=dtype, meta=np.empty((0, 0), dtype=dtype))


def _run_window(
    kernel: BlockKernel, source, depth: int, r0: int, r1: int, c0: int, c1: int, height: int, width: int
) -> np.ndarray:
    padded = np.full((r1 - r0 + 2 * depth, c1 - c0 + 2 * depth), np.nan, dtype=np.float32)
    rr0, rr1 = max(r0 - depth, 0), min(r1 + depth, height)
    cc0, cc1 = max(c0 - depth, 0), min(c1 + depth, width)
    padded[rr0 - (r0 - depth) : rr1 - (r0 - depth), cc0 - (c0 - depth) : cc1 - (c0 - depth)] = source[rr0:rr1, cc0:cc1]
    return kernel(padded, r0, c0)


def _run_block(
    kernel: BlockKernel, neighbours: list[list[np.ndarray | None]], depth: int, row0: int, col0: int
) -> np.ndarray:
    return kernel(_assemble(neighbours, depth), row0, col0)


def apply_stencil(dem: xr.DataArray, depth: int, kernel: BlockKernel, *, dtype=np.float32) -> xr.DataArray:
    """``kernel(padded_block, row0, col0)`` over ``dem``; returns a DataArray like ``dem``.

    ``padded_block`` has ``depth`` extra pixels on every side (NaN outside the raster), so
    pixels within ``depth`` of the raster edge come out NaN, never extrapolated. Works
    lazily on dask-backed input (the result is dask-backed, same chunks) and eagerly on
    numpy input.
    """
    data = dem.data
    if dem.ndim != 2:
        raise ValueError(f"terrain kernels take a 2-D (y, x) DEM, got dims {dem.dims}")
    source = _window_source(dem)
    result: da.Array | np.ndarray
    if source is not None:
        result = _window_map(data, source, depth, kernel, dtype)
    elif isinstance(data, da.Array):
        if not np.issubdtype(data.dtype, np.floating):
            data = data.astype(np.float32)
        chunks = (_widen(data.chunks[0], depth), _widen(data.chunks[1], depth))
        if chunks != data.chunks:
            data = data.rechunk(chunks)
        result = _halo_map(data, depth, kernel, dtype)
    else:
        values = np.asarray(data)
        if not np.issubdtype(values.dtype, np.floating):
            values = values.astype(np.float32)
        padded_np = np.pad(values, depth, mode="constant", constant_values=np.nan)
        result = kernel(padded_np, 0, 0)
    return dem.copy(data=result)


#: The smallest DEM the 3x3 stencil of slope and aspect (and the horizon sweep) computes a value on.
MIN_DEM_PX = 3


def has_valid_data(arr: Any) -> bool:
    """Whether ``arr`` (numpy- or dask-backed, NaN for nodata) holds at least one finite value.

    A dask array is read one chunk at a time, the central chunk first and then outwards, and the
    reading stops at the first chunk with a finite value: memory is one chunk, and a DEM with
    data in its middle costs one chunk read. Only a raster without data is read whole.
    """
    data = getattr(arr, "data", arr)
    if not isinstance(data, da.Array):
        return bool(np.isfinite(np.asarray(data)).any())
    centre = tuple(n // 2 for n in data.numblocks)
    order = sorted(np.ndindex(*data.numblocks), key=lambda b: sum(abs(i - c) for i, c in zip(b, centre, strict=True)))
    return any(bool(np.isfinite(data.blocks[b].compute(scheduler="synchronous")).any()) for b in order)


def check_dem(dem: Any, source: Any, *, stencil_px: int = MIN_DEM_PX) -> None:
    """Refuse (:class:`~prospect.errors.GridError`, naming ``source``) a DEM smaller than the
    ``stencil_px`` square stencil, or without one valid height (all nodata or NaN)."""
    ny, nx = dem.shape[-2:]
    if ny < stencil_px or nx < stencil_px:
        raise GridError(
            f"{source}: {ny} x {nx} pixels is smaller than the {stencil_px} x {stencil_px} terrain stencil; "
            "give a larger DEM"
        )
    if not has_valid_data(dem):
        raise GridError(f"{source}: every pixel is nodata (or NaN); the DEM holds no heights")
