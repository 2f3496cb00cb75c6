"""The analysis grid: one immutable (CRS, affine, shape) that every layer is resampled onto.

:class:`AnalysisGrid` is the odc-geo-like grid object of prospect: a lunar CRS
(:class:`prospect.lunar.LunarCRS`), a north-up affine transform without rotation and a
``(rows, cols)`` shape. Every layer meets another layer only after :func:`resample`
has put both on the same grid.

:func:`resample` is a lazy, chunked reprojection built on dask. For each output chunk
(one dask task) it

1. computes the chunk's target pixel-centre coordinates,
2. transforms them into the source CRS with pyproj (:func:`prospect.lunar.transformer`,
   ``always_xy``),
3. turns them into fractional source row/column indices with the source's inverse
   affine, and
4. samples the source (bilinear, nearest, or block average then bilinear).

Only the source window a chunk needs is read: the window is computed when the graph is
built, from the transformed coordinates of every pixel on the chunk's edges plus a
coarse interior sample, plus a margin, and the chunk's task depends only on the source
chunks that window overlaps (it assembles the window from them), so a chunked source is
never loaded whole. The image of the edges bounds the image of the interior because the
map between two lunar CRSs is continuous away from the poles and the longitude seam,
which are handled explicitly:

* **Longitude seam.** For cylindrical sources (geographic or equirectangular) the
  transformed longitude / x is first brought into the period nearest the source's own
  centre (a source whose x runs 0..360 deg, or an equirectangular grid centred on
  180 E, is sampled correctly for a target at lon -10). A source spanning the full
  360 deg is *periodic*: column indices wrap modulo the width, so columns ``n-1`` and
  ``0`` are neighbours and bilinear interpolation runs across the seam. Windows of
  periodic sources are circular arcs of columns (found from the largest gap between
  the sampled columns) and may straddle the seam.
* **Poles.** A periodic source whose edge row lies on a pole (lat +-90) continues
  *across* the pole: the row beyond the edge is the edge row half a turn away in
  longitude (row ``-1``, column ``c`` is row ``0``, column ``c + n/2``). A pixel at the
  pole is thus interpolated from both sides. An output chunk whose footprint contains
  (or comes within a pixel of) a source pole, or whose window touches a polar edge row,
  reads all longitudes of the few rows it needs; so does a chunk whose sampled
  longitudes span more than half a turn (an arc found from samples is only trusted
  below 180 deg).

Elsewhere, target points that fall between the outermost source pixel centres and the
source's edge take the edge value (edge extension, half a pixel at most); points
outside the source bounds, or that cannot be transformed, are NaN.

NaN propagates: a bilinear neighbour that is NaN and has a non-zero weight makes the
output NaN; a neighbour with zero weight (a target point exactly on a source row or
column) is ignored. Nearest picks the value of the one pixel that contains the point.

``method="average"`` is for downsampling: the source is first block-averaged
(unweighted, NaN ignored inside a block, an all-NaN block stays NaN; on geographic
grids the cells of a block shrink toward the poles and are not area-weighted) by the
integer factor closest to
the ratio of target to source nominal pixel ground size
(:func:`prospect.lunar.ground_resolution_m`: degrees are converted at the equator),
reduced for periodic sources to a divisor of the width (and of the height when the
source reaches a pole) so that the seam and pole rules still hold; then the averaged
grid is sampled bilinearly. Blocks are aligned to the source's pixel (0, 0), so the
result does not depend on chunking. A factor of 1 is plain bilinear.

Every output pixel is computed from its own global indices with the same arithmetic,
so the result is identical (float32 equality) for any input or output chunking.
"""

from __future__ import annotations

import functools
import math
import operator
import threading
import warnings
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import dask
import dask.array as da
import dask.base
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from dask.highlevelgraph import HighLevelGraph
from dask.typing import Key

from prospect import lunar
from prospect.errors import GridError

ResamplingMethod = Literal["bilinear", "nearest", "average"]
RESAMPLING_METHODS: tuple[str, ...] = ("bilinear", "nearest", "average")

#: Default output chunk size (rows and cols) of :meth:`AnalysisGrid.template` and :func:`resample`.
DEFAULT_CHUNK = 2048
#: Above this many pixels :meth:`AnalysisGrid.lonlat` returns dask arrays.
_LONLAT_EAGER_MAX_PIXELS = 4_194_304
#: Tolerance (in pixels) when deciding that a grid spans 360 deg or reaches a pole.
_EDGE_TOLERANCE_PX = 1e-3
#: Extra source pixels around each computed window.
_WINDOW_MARGIN_PX = 2
#: Stride of the interior sample used to compute a chunk's source window.
_INTERIOR_SAMPLE_STRIDE = 16


def _as_lunar_crs(crs: Any) -> lunar.LunarCRS:
    """A LunarCRS from a LunarCRS, an IAU_2015 code (int or ``"IAU_2015:NNNNN"``) or any CRS-like."""
    if isinstance(crs, lunar.LunarCRS):
        return crs
    if isinstance(crs, (int, np.integer)):
        return lunar.lunar_crs(int(crs))
    if isinstance(crs, str) and crs.strip().upper().startswith(lunar.IAU_AUTHORITY + ":"):
        return lunar.lunar_crs(crs.strip())
    return lunar.identify(crs, source="grid CRS")


def _pair(value: Any, what: str) -> tuple[float, float]:
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value), float(value)
    try:
        a, b = value
        return float(a), float(b)
    except (TypeError, ValueError):
        raise GridError(f"{what} must be a number or an (x, y) pair, not {value!r}") from None


def normalise_chunks(chunks: Any, shape: tuple[int, int]) -> tuple[int, int]:
    """``(rows, cols)`` chunk sizes from ``None`` (:data:`DEFAULT_CHUNK`), an int, a pair or
    ``{'y':, 'x':}``, each clipped to ``shape``; anything else is a :class:`GridError`."""
    if chunks is None:
        cy, cx = DEFAULT_CHUNK, DEFAULT_CHUNK
    elif isinstance(chunks, (int, np.integer)):
        cy = cx = int(chunks)
    elif isinstance(chunks, Mapping):
        cy, cx = int(chunks.get("y", DEFAULT_CHUNK)), int(chunks.get("x", DEFAULT_CHUNK))
    elif isinstance(chunks, (tuple, list)) and len(chunks) == 2:
        cy, cx = int(chunks[0]), int(chunks[1])
    else:
        raise GridError(f"chunks must be None, an int, (rows, cols) or {{'y': .., 'x': ..}}, not {chunks!r}")
    if cy <= 0 or cx <= 0:
        raise GridError(f"chunks must be positive, not {chunks!r}")
    return min(cy, shape[0]), min(cx, shape[1])


@dataclass(frozen=True, repr=False)
class AnalysisGrid:
    """An immutable analysis grid: lunar CRS, north-up affine transform, ``(rows, cols)`` shape.

    ``transform`` maps (col, row) of pixel *corners* to map coordinates, as in rasterio:
    pixel ``(row, col)`` has its centre at ``transform * (col + 0.5, row + 0.5)``.
    ``crs`` may be given as a :class:`~prospect.lunar.LunarCRS`, an IAU_2015 code or any
    CRS-like object that :func:`prospect.lunar.identify` recognises.
    """

    crs: lunar.LunarCRS
    transform: Affine
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "crs", _as_lunar_crs(self.crs))
        t = self.transform
        if not isinstance(t, Affine):
            try:
                t = Affine(*list(t)[:6])
            except (TypeError, ValueError):
                raise GridError(f"transform must be an affine.Affine or 6 numbers, not {self.transform!r}") from None
        t = Affine(*(float(v) for v in tuple(t)[:6]))
        object.__setattr__(self, "transform", t)
        try:
            rows, cols = self.shape
            if int(rows) != rows or int(cols) != cols:
                raise ValueError
            shape = (int(rows), int(cols))
        except (TypeError, ValueError):
            raise GridError(f"shape must be (rows, cols) integers, not {self.shape!r}") from None
        object.__setattr__(self, "shape", shape)
        if shape[0] <= 0 or shape[1] <= 0:
            raise GridError(f"grid shape must be positive (rows, cols), not {shape}")
        if not all(math.isfinite(v) for v in tuple(t)[:6]):
            raise GridError(f"grid transform has non-finite terms: {tuple(t)[:6]}")
        if t.b != 0.0 or t.d != 0.0:
            raise GridError(
                f"grid transform is rotated or sheared (b={t.b}, d={t.d}); analysis grids are north-up: "
                "reproject onto a north-up grid instead"
            )
        if t.a == 0.0 or t.e == 0.0:
            raise GridError(f"grid pixel size must be non-zero, not ({t.a}, {t.e})")
        if t.a < 0.0 or t.e > 0.0:
            raise GridError(
                f"grid transform must be north-up with x increasing (a > 0, e < 0), not a={t.a}, e={t.e}; "
                "flip the raster (e.g. sortby('y', ascending=False)) or build the grid with from_bounds"
            )

    # --- constructors -----------------------------------------------------------------

    @classmethod
    def from_bounds(cls, crs: Any, bounds: tuple[float, float, float, float], *, resolution: Any) -> AnalysisGrid:
        """The grid anchored at the top-left corner of ``bounds = (left, bottom, right, top)``.

        ``resolution`` (required: never guessed, see ``docs/platform.md``) is the pixel
        size in CRS units (degrees for geographic grids, metres otherwise), one number
        or ``(x, y)``. The shape is ``ceil(extent / resolution)``, so the grid covers
        ``bounds`` and may reach up to a pixel past the right and bottom edges.
        """
        lcrs = _as_lunar_crs(crs)
        try:
            left, bottom, right, top = (float(v) for v in bounds)
        except (TypeError, ValueError):
            raise GridError(f"bounds must be (left, bottom, right, top), not {bounds!r}") from None
        if not all(math.isfinite(v) for v in (left, bottom, right, top)):
            raise GridError(f"bounds must be finite, not {bounds!r}")
        if right <= left or top <= bottom:
            raise GridError(f"bounds {bounds!r} are empty or inverted: need left < right and bottom < top")
        xres, yres = (abs(v) for v in _pair(resolution, "resolution"))
        if xres == 0.0 or yres == 0.0 or not (math.isfinite(xres) and math.isfinite(yres)):
            raise GridError(f"resolution must be non-zero and finite, not {resolution!r}")
        cols = max(1, math.ceil((right - left) / xres - 1e-6))
        rows = max(1, math.ceil((top - bottom) / yres - 1e-6))
        return cls(lcrs, Affine(xres, 0.0, left, 0.0, -yres, top), (rows, cols))

    @classmethod
    def polar_cap(
        cls, pole: Literal["south", "north"] = "south", lat_limit: float | None = None, *, resolution_m: float
    ) -> AnalysisGrid:
        """A square polar stereographic grid centred on the pole covering the cap to ``lat_limit``.

        ``lat_limit`` defaults to -80 (south) / 80 (north); its sign must match ``pole``.
        The half-width is the map radius of ``lat_limit``, ``rho = 2 R tan((90 - |lat|) / 2)``
        (the inverse of :func:`prospect.lunar.polar_stereographic_latitude`, DSMAP_POLAR.CAT),
        rounded up to whole pixels, so the pole sits on the corner shared by the four
        central pixels, as in LOLA polar products. CRS IAU_2015:30135 / 30130.
        """
        if pole not in ("south", "north"):
            raise GridError(f"pole must be 'south' or 'north', not {pole!r}")
        south = pole == "south"
        if lat_limit is None:
            lat_limit = -80.0 if south else 80.0
        lat_limit = float(lat_limit)
        if not (0.0 < abs(lat_limit) < 90.0) or (lat_limit < 0) != south:
            raise GridError(
                f"lat_limit {lat_limit} does not bound a {pole} polar cap: give a latitude strictly between "
                f"{'-90 and 0' if south else '0 and 90'}"
            )
        try:
            res = float(resolution_m)
        except (TypeError, ValueError):
            raise GridError(f"resolution_m must be a number of metres, not {resolution_m!r}") from None
        if not (res > 0.0 and math.isfinite(res)):
            raise GridError(f"resolution_m must be positive, not {resolution_m!r}")
        crs = lunar.lunar_crs(lunar.IAU_SOUTH_POLAR_STEREOGRAPHIC if south else lunar.IAU_NORTH_POLAR_STEREOGRAPHIC)
        rho = 2.0 * crs.radius_m * math.tan(math.radians(90.0 - abs(lat_limit)) / 2.0)
        half = max(1, math.ceil(rho / res - 1e-9))
        extent = half * res
        return cls(crs, Affine(res, 0.0, -extent, 0.0, -res, extent), (2 * half, 2 * half))

    @classmethod
    def global_geographic(cls, res_deg: float, lon_convention: lunar.LonConvention = "180") -> AnalysisGrid:
        """A global planetocentric lon/lat grid (IAU_2015:30100), lon -180..180 or 0..360, lat 90..-90."""
        try:
            res = float(res_deg)
        except (TypeError, ValueError):
            raise GridError(f"res_deg must be a number of degrees, not {res_deg!r}") from None
        if not (res > 0.0 and math.isfinite(res)):
            raise GridError(f"res_deg must be positive, not {res_deg!r}")
        n = 180.0 / res
        if abs(n - round(n)) > 1e-6:
            raise GridError(f"res_deg {res} does not divide 180 deg into whole pixels; pick e.g. 0.25, 0.5 or 1")
        if lon_convention not in ("180", "360"):
            raise GridError(f"lon_convention must be '180' or '360', not {lon_convention!r}")
        left = -180.0 if lon_convention == "180" else 0.0
        rows = int(round(n))
        return cls(lunar.lunar_crs(lunar.IAU_GEOGRAPHIC), Affine(res, 0.0, left, 0.0, -res, 90.0), (rows, 2 * rows))

    @classmethod
    def from_dataarray(cls, arr: xr.DataArray) -> AnalysisGrid:
        """The grid of a georeferenced 2-D DataArray (e.g. from :func:`prospect.io.readers.open_product`).

        The CRS comes from ``attrs['crs']`` when it is an IAU_2015 code (as the readers
        write it), else from the rioxarray CRS; the transform from the x/y coordinates.
        """
        if arr.ndim != 2:
            raise GridError(f"expected a 2-D (y, x) DataArray, got dims {arr.dims}")
        code = arr.attrs.get("crs")
        crs: lunar.LunarCRS | None = None
        if isinstance(code, str) and code.upper().startswith(lunar.IAU_AUTHORITY + ":"):
            crs = lunar.lunar_crs(code)
        else:
            rio_crs = arr.rio.crs
            if rio_crs is None:
                raise GridError(
                    f"DataArray {arr.name!r} has no CRS (no attrs['crs'] IAU code and no rioxarray CRS); "
                    "write one with .rio.write_crs(lunar_crs(...).to_rasterio())"
                )
            crs = lunar.identify(rio_crs.to_wkt(), source=f"DataArray {arr.name!r}")
        try:
            ydim, xdim = arr.rio.y_dim, arr.rio.x_dim
        except Exception as exc:  # rioxarray's MissingSpatialDimensionError
            raise GridError(f"DataArray {arr.name!r} has no recognisable x/y dimensions ({exc})") from None
        if arr.dims != (ydim, xdim):
            raise GridError(f"DataArray dims must be ({ydim}, {xdim}), not {arr.dims}; transpose it first")
        rows, cols = arr.sizes[ydim], arr.sizes[xdim]
        t = _transform_from_coords(arr, xdim, ydim)
        return cls(crs, t, (rows, cols))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnalysisGrid:
        """A grid from a config mapping: ``crs`` plus ``transform`` (6 numbers) and ``shape``,
        or ``crs`` plus ``bounds`` and ``resolution`` (as :meth:`from_bounds`)."""
        if not isinstance(data, Mapping):
            raise GridError(f"grid config must be a mapping, not {type(data).__name__}")
        known = {"crs", "transform", "shape", "bounds", "resolution"}
        unknown = set(data) - known
        if unknown:
            raise GridError(f"grid config: unknown key(s) {sorted(unknown)}; known keys are {sorted(known)}")
        if "crs" not in data:
            raise GridError("grid config: missing key 'crs' (an IAU_2015 code such as 'IAU_2015:30135', or WKT)")
        if "transform" in data or "shape" in data:
            missing = [k for k in ("transform", "shape") if k not in data]
            if missing:
                raise GridError(f"grid config: 'transform' and 'shape' go together; missing {missing}")
            if "bounds" in data or "resolution" in data:
                raise GridError("grid config: give either transform + shape or bounds + resolution, not both")
            try:
                t = Affine(*(float(v) for v in list(data["transform"])[:6]))
            except (TypeError, ValueError):
                raise GridError(f"grid config: 'transform' must be 6 numbers, not {data['transform']!r}") from None
            return cls(data["crs"], t, tuple(data["shape"]))
        missing = [k for k in ("bounds", "resolution") if k not in data]
        if missing:
            raise GridError(f"grid config: missing {missing}; give transform + shape or bounds + resolution")
        return cls.from_bounds(data["crs"], data["bounds"], resolution=data["resolution"])

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML/JSON-ready mapping that :meth:`from_dict` reads back exactly.

        The CRS is written as its IAU_2015 code string, or as WKT when it has none.
        """
        t = self.transform
        return {
            "crs": self.crs.code or self.crs.wkt,
            "transform": [t.a, t.b, t.c, t.d, t.e, t.f],
            "shape": [self.shape[0], self.shape[1]],
        }

    # --- geometry ---------------------------------------------------------------------

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel size ``(x, y)`` in CRS units (degrees or metres), both positive."""
        return self.transform.a, -self.transform.e

    def matches(self, other: AnalysisGrid) -> bool:
        """Whether ``other`` is this grid: same lunar CRS and shape, transform equal to 1e-6 pixel."""
        return (
            self.shape == other.shape
            and _same_crs(self.crs, other.crs)
            and self.transform.almost_equals(other.transform, precision=1e-6 * abs(self.transform.a))
        )

    @property
    def ground_resolution_m(self) -> float:
        """Nominal ground pixel size [m] (x size; degrees converted at the equator)."""
        return lunar.ground_resolution_m(self.crs, self.transform.a)

    def coarsened(self, factor: int) -> AnalysisGrid:
        """The grid of ``factor x factor`` pixel blocks aligned to pixel (0, 0), same CRS (partial
        blocks at the far edges when ``factor`` does not divide the shape)."""
        if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
            raise GridError(f"a grid coarsening factor must be a positive integer, not {factor!r}")
        return _coarsened(self, int(factor))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` of the pixel edges in CRS units."""
        t = self.transform
        return t.c, t.f + t.e * self.shape[0], t.c + t.a * self.shape[1], t.f

    @property
    def x(self) -> np.ndarray:
        """Pixel-centre x coordinates (float64, increasing)."""
        return self.transform.c + self.transform.a * (np.arange(self.shape[1], dtype="float64") + 0.5)

    @property
    def y(self) -> np.ndarray:
        """Pixel-centre y coordinates (float64, decreasing: north-up)."""
        return self.transform.f + self.transform.e * (np.arange(self.shape[0], dtype="float64") + 0.5)

    def lonlat(self, *, chunks: Any = None, lon_convention: lunar.LonConvention = "180") -> tuple[Any, Any]:
        """2-D planetocentric ``(lon, lat)`` [deg] of the pixel centres.

        numpy arrays for grids up to ~4 Mpx (unless ``chunks`` is given), else chunked
        dask arrays computed block by block.
        """
        if lon_convention not in ("180", "360"):
            raise GridError(f"lon_convention must be '180' or '360', not {lon_convention!r}")
        if chunks is None and self.shape[0] * self.shape[1] <= _LONLAT_EAGER_MAX_PIXELS:
            return _lonlat_block(self, 0, self.shape[0], 0, self.shape[1], lon_convention)
        cy, cx = normalise_chunks(chunks, self.shape)
        row_spans, col_spans = chunk_spans(self.shape[0], cy), chunk_spans(self.shape[1], cx)
        chunk_sizes = (tuple(b - a for a, b in row_spans), tuple(b - a for a, b in col_spans))
        token = dask.base.tokenize(self, cy, cx, lon_convention)
        lon_name, lat_name, pair_name = f"lon-{token}", f"lat-{token}", f"lonlat-{token}"
        pairs: dict[Key, Any] = {}
        lons: dict[Key, Any] = {}
        lats: dict[Key, Any] = {}
        for i, (r0, r1) in enumerate(row_spans):
            for j, (c0, c1) in enumerate(col_spans):
                pairs[(pair_name, i, j)] = (_lonlat_block, self, r0, r1, c0, c1, lon_convention)
                lons[(lon_name, i, j)] = (operator.getitem, (pair_name, i, j), 0)
                lats[(lat_name, i, j)] = (operator.getitem, (pair_name, i, j), 1)
        # one graph layer per array, each depending on the shared pair layer, so that lon
        # or lat alone (and expressions on them) cull and compute correctly
        layers = {pair_name: pairs, lon_name: lons, lat_name: lats}
        deps = {pair_name: set(), lon_name: {pair_name}, lat_name: {pair_name}}
        lon = da.Array(
            HighLevelGraph(layers, {**deps, lat_name: {pair_name}}), lon_name, chunks=chunk_sizes, dtype="float64"
        )
        lat = da.Array(HighLevelGraph(layers, deps), lat_name, chunks=chunk_sizes, dtype="float64")
        return lon, lat

    def cell_area_m2(self, *, chunks: Any = None) -> xr.DataArray:
        """The area on the lunar sphere of every pixel [m^2], lazily (float64, dask, chunked).

        - geographic: exact, ``R^2 dlon (sin lat_top - sin lat_bottom)``
          (:func:`prospect.lunar.cell_area_m2`);
        - equirectangular: exact, the same formula with ``dlon = dx / (R cos lat_ts)``
          and ``lat = lat(y=0) + y / R``, the true-scale latitude ``lat_ts`` read from
          the CRS (:func:`prospect.lunar.equirectangular_true_scale`);
        - polar stereographic: the integral of ``1/k^2`` over the pixel by Gauss-Legendre
          quadrature (:func:`prospect.lunar.polar_stereographic_area_m2`, relative error
          at float64 rounding level).

        Pixels are clipped to latitudes -90..90 (the part of a cylindrical pixel beyond a
        pole has no area); the areas of a global grid sum to ``4 pi R^2``. ``chunks`` as
        in :meth:`template`. Attrs: ``units = "m2"`` and the ``method`` used.
        """
        kind = self.crs.kind
        if kind == "geographic" or kind == "equirectangular":
            method = f"exact: R^2 dlon (sin lat2 - sin lat1) on the {self.crs.radius_m:.0f} m sphere"
        elif self.crs.is_polar:
            method = "Gauss-Legendre quadrature of 1/k^2 (polar stereographic, k = 1 + rho^2 / 4R^2)"
            if self.crs.code is None:
                raise GridError(
                    f"cell_area_m2: polar stereographic grid {self.crs} is not the k0 = 1 IAU_2015:30130/30135 "
                    "form (scale, true-scale latitude or false origin differ); reproject onto an IAU polar grid"
                )
        else:
            raise GridError(
                f"cell_area_m2: no pixel-area rule for a {kind} CRS ({self.crs}); "
                "use a geographic, equirectangular or polar stereographic grid"
            )
        cy, cx = normalise_chunks(chunks, self.shape)
        row_spans, col_spans = chunk_spans(self.shape[0], cy), chunk_spans(self.shape[1], cx)
        name = "cell-area-" + dask.base.tokenize(self, cy, cx)
        layer: dict[Key, Any] = {
            (name, i, j): (_cell_area_block, self, r0, r1, c0, c1)
            for i, (r0, r1) in enumerate(row_spans)
            for j, (c0, c1) in enumerate(col_spans)
        }
        graph = HighLevelGraph.from_collections(name, layer, dependencies=[])
        data = da.Array(
            graph,
            name,
            chunks=(tuple(b - a for a, b in row_spans), tuple(b - a for a, b in col_spans)),
            dtype="float64",
        )
        return self.wrap(
            data,
            name="cell_area",
            attrs={"units": "m2", "long_name": "pixel area on the lunar sphere", "method": method},
        )

    def template(self, *, chunks: Any = None, name: str | None = None, dtype: Any = "float32") -> xr.DataArray:
        """A lazy DataArray of NaN on this grid: dims (y, x), centre coords, CRS and transform written."""
        cy, cx = normalise_chunks(chunks, self.shape)
        data = da.full(self.shape, np.nan, dtype=dtype, chunks=(cy, cx))
        return self.wrap(data, name=name)

    def wrap(self, data: Any, *, name: Hashable | None = None, attrs: Mapping[str, Any] | None = None) -> xr.DataArray:
        """``data`` (a ``(rows, cols)`` numpy or dask array) as a DataArray on this grid.

        Dims ``(y, x)``, pixel-centre coords, CRS and transform written (rioxarray); the
        attrs are ``attrs`` plus ``crs`` and ``resolution_m`` describing this grid.
        """
        arr = xr.DataArray(data, dims=("y", "x"), coords={"y": self.y, "x": self.x}, name=name)
        arr = arr.rio.write_crs(self.crs.to_rasterio()).rio.write_transform(self.transform)
        out_attrs = dict(attrs or {})
        out_attrs["crs"] = self.crs.code or self.crs.kind
        out_attrs["resolution_m"] = self.ground_resolution_m
        arr.attrs.update(out_attrs)
        return arr

    def __repr__(self) -> str:
        return f"AnalysisGrid(crs={self.crs}, shape={self.shape}, resolution={self.resolution}, bounds={self.bounds})"


def chunk_spans(n: int, size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of consecutive chunks of ``size`` covering ``range(n)`` (the last may be shorter)."""
    return [(s, min(s + size, n)) for s in range(0, n, size)]


@functools.lru_cache(maxsize=1)
def _lunar_geographic() -> lunar.LunarCRS:
    return lunar.lunar_crs(lunar.IAU_GEOGRAPHIC)


def _lonlat_block(
    grid: AnalysisGrid, r0: int, r1: int, c0: int, c1: int, lon_convention: lunar.LonConvention
) -> tuple[np.ndarray, np.ndarray]:
    xx, yy = np.meshgrid(grid.x[c0:c1], grid.y[r0:r1])
    if grid.crs.is_geographic:
        lon, lat = xx, yy
    elif grid.crs.radius_m == lunar.MOON_RADIUS_M:
        lon, lat = _cached_transformer(grid.crs, _lunar_geographic()).transform(xx, yy)
    else:
        lon, lat = lunar.xy_to_lonlat(grid.crs, xx, yy)
    return lunar.normalize_longitude(lon, lon_convention), np.asarray(lat, dtype="float64")


def lonlat_edges(grid: AnalysisGrid, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-edge longitudes (``c1 - c0 + 1``, increasing, not wrapped) and latitudes
    (``r1 - r0 + 1``, decreasing, not clipped) [deg] of a cylindrical grid's rows/columns.

    Geographic: the edges themselves. Equirectangular (``x = R cos(lat_ts) (lon - lon_0)``,
    ``y = R (lat - lat_0)`` plus any false origin): both are linear, so
    ``lon = lon(0, 0) + x / (R cos lat_ts)`` and ``lat = lat(0, 0) + y / R`` in radians.
    """
    t = grid.transform
    x = t.c + t.a * np.arange(c0, c1 + 1, dtype="float64")
    y = t.f + t.e * np.arange(r0, r1 + 1, dtype="float64")
    crs = grid.crs
    if crs.kind == "geographic":
        return x, y
    if crs.kind != "equirectangular":
        raise GridError(f"{crs} is not a cylindrical (geographic or equirectangular) CRS")
    lon00, lat00 = lunar.xy_to_lonlat(crs, 0.0, 0.0)
    lon = float(lon00) + np.degrees(x / (crs.radius_m * lunar.equirectangular_true_scale(crs.lat_ts)))
    lat = float(lat00) + np.degrees(y / crs.radius_m)
    return lon, lat


def _lon_step_deg(grid: AnalysisGrid) -> float:
    """Longitude width [deg] of one pixel of a cylindrical grid."""
    if grid.crs.kind == "geographic":
        return grid.transform.a
    return math.degrees(grid.transform.a / (grid.crs.radius_m * lunar.equirectangular_true_scale(grid.crs.lat_ts)))


def _cell_area_block(grid: AnalysisGrid, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Pixel areas [m^2] of rows r0:r1, columns c0:c1 (see :meth:`AnalysisGrid.cell_area_m2`)."""
    if grid.crs.is_polar:
        t = grid.transform
        x = t.c + t.a * np.arange(c0, c1 + 1, dtype="float64")
        y = t.f + t.e * np.arange(r0, r1 + 1, dtype="float64")
        return lunar.polar_stereographic_area_m2(
            x[None, :-1], x[None, 1:], y[1:, None], y[:-1, None], radius_m=grid.crs.radius_m
        )
    _, lat = lonlat_edges(grid, r0, r1, c0, c1)
    lat = np.clip(lat, -90.0, 90.0)
    rows = lunar.cell_area_m2(lat[1:], lat[:-1], _lon_step_deg(grid), radius_m=grid.crs.radius_m)
    return np.repeat(rows[:, None], c1 - c0, axis=1)


def _transform_from_coords(arr: xr.DataArray, xdim: str, ydim: str) -> Affine:
    """The affine of a raster from its centre coordinates (checked to be regular)."""
    rows, cols = arr.sizes[ydim], arr.sizes[xdim]
    if rows >= 2 and cols >= 2 and xdim in arr.coords and ydim in arr.coords:
        xs = np.asarray(arr[xdim].values, dtype="float64")
        ys = np.asarray(arr[ydim].values, dtype="float64")
        a = (xs[-1] - xs[0]) / (cols - 1)
        e = (ys[-1] - ys[0]) / (rows - 1)
        if a == 0 or e == 0:
            raise GridError(f"DataArray {arr.name!r} has repeated x or y coordinates")
        if np.max(np.abs(xs - (xs[0] + a * np.arange(cols)))) > 1e-6 * abs(a) or np.max(
            np.abs(ys - (ys[0] + e * np.arange(rows)))
        ) > 1e-6 * abs(e):
            raise GridError(f"DataArray {arr.name!r} has irregular x/y coordinates: not a grid")
        return Affine(a, 0.0, xs[0] - a / 2, 0.0, e, ys[0] - e / 2)
    t = arr.rio.transform()
    if t == Affine.identity() and not (xdim in arr.coords and ydim in arr.coords):
        raise GridError(f"DataArray {arr.name!r} has no x/y coordinates or transform")
    return t


# --- resampling ------------------------------------------------------------------------


@dataclass(frozen=True)
class _SourceGeometry:
    """How to turn target points into source pixel indices (wrapping, pole reflection)."""

    crs: lunar.LunarCRS
    transform: Affine
    height: int
    width: int
    #: longitude period in source x units (360 deg, 2 pi R cos(lat_ts) m) for cylindrical sources
    period: float | None
    #: the source spans the full period: columns wrap modulo the width
    periodic: bool
    #: rows continue across the north (top edge) / south (bottom edge) pole
    reflect_north: bool
    reflect_south: bool

    @classmethod
    def of(cls, grid: AnalysisGrid) -> _SourceGeometry:
        crs, t = grid.crs, grid.transform
        rows, cols = grid.shape
        period = None
        if crs.kind == "geographic":
            period = 360.0
        elif crs.kind == "equirectangular":
            period = 2.0 * math.pi * crs.radius_m * lunar.equirectangular_true_scale(crs.lat_ts)
        periodic = period is not None and abs(cols * t.a - period) <= _EDGE_TOLERANCE_PX * t.a
        reflect_north = reflect_south = False
        if periodic and cols % 2 == 0:
            _, y_north = lunar.lonlat_to_xy(crs, crs.lon_0, 90.0) if not crs.is_geographic else (0.0, 90.0)
            _, y_south = lunar.lonlat_to_xy(crs, crs.lon_0, -90.0) if not crs.is_geographic else (0.0, -90.0)
            top, bottom = t.f, t.f + t.e * rows
            tol = _EDGE_TOLERANCE_PX * abs(t.e)
            reflect_north = abs(top - float(y_north)) <= tol
            reflect_south = abs(bottom - float(y_south)) <= tol
        return cls(crs, t, rows, cols, period, periodic, reflect_north, reflect_south)

    def fractional_indices(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fractional (row, col) of source-CRS points; pixel centres at integers; NaN if outside."""
        t = self.transform
        xs = np.asarray(xs, dtype="float64")
        ys = np.asarray(ys, dtype="float64")
        if self.period is not None:
            # bring x into the period nearest the source's centre (0..360 vs -180..180 sources)
            centre = t.c + t.a * self.width / 2.0
            xs = xs - self.period * np.round((xs - centre) / self.period)
        col = (xs - t.c) / t.a - 0.5
        row = (ys - t.f) / t.e - 0.5
        ok = np.isfinite(col) & np.isfinite(row) & (row >= -0.5) & (row <= self.height - 0.5)
        if self.periodic:
            col = np.mod(col + 0.5, self.width) - 0.5
        else:
            ok &= (col >= -0.5) & (col <= self.width - 0.5)
        row = np.where(ok, row, np.nan)
        col = np.where(ok, col, np.nan)
        return row, col


_transformers = threading.local()


def _cached_transformer(src: lunar.LunarCRS, dst: lunar.LunarCRS):
    """A per-thread pyproj Transformer src -> dst (Transformers are not shared across threads)."""
    cache = getattr(_transformers, "cache", None)
    if cache is None:
        cache = _transformers.cache = {}
    key = (src.wkt, dst.wkt)
    if key not in cache:
        cache[key] = lunar.transformer(src, dst)
    return cache[key]


def _same_crs(a: lunar.LunarCRS, b: lunar.LunarCRS) -> bool:
    return (a.code is not None and a.code == b.code) or a.wkt == b.wkt


def _to_source(
    target: lunar.LunarCRS, source: lunar.LunarCRS, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    if _same_crs(target, source):
        return x, y
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xs, ys = _cached_transformer(target, source).transform(x, y)
    return np.asarray(xs, dtype="float64"), np.asarray(ys, dtype="float64")


@dataclass(frozen=True)
class _Window:
    """Source rows [row0, row1) and columns col0 .. col0 + ncols (modulo width when periodic)."""

    row0: int
    row1: int
    col0: int
    ncols: int


def _source_poles_in_target(grid: AnalysisGrid, src: _SourceGeometry) -> list[tuple[float, float, float]]:
    """``(x, y)`` in the target CRS and fractional source row of each pole a cylindrical source has.

    Only for targets where a pole is a point (polar, other): on a cylindrical target the
    pole is an edge row, which the window rules already handle.
    """
    if src.period is None or grid.crs.kind in ("geographic", "equirectangular"):
        return []
    poles = []
    for lat in (90.0, -90.0):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            px, py = lunar.lonlat_to_xy(grid.crs, 0.0, lat) if not grid.crs.is_geographic else (0.0, lat)
            _, sy = lunar.lonlat_to_xy(src.crs, src.crs.lon_0, lat) if not src.crs.is_geographic else (0.0, lat)
        px, py, sy = float(px), float(py), float(sy)
        if math.isfinite(px) and math.isfinite(py) and math.isfinite(sy):
            poles.append((px, py, (sy - src.transform.f) / src.transform.e - 0.5))
    return poles


def _chunk_window(
    grid: AnalysisGrid,
    src: _SourceGeometry,
    poles: list[tuple[float, float, float]],
    r0: int,
    r1: int,
    c0: int,
    c1: int,
    margin: int,
) -> _Window | None:
    """The source window an output chunk needs, from its edges and a coarse interior sample."""
    rows = np.arange(r0, r1)
    cols = np.arange(c0, c1)
    inner_r = rows[::_INTERIOR_SAMPLE_STRIDE]
    inner_c = cols[::_INTERIOR_SAMPLE_STRIDE]
    rr = np.concatenate(
        [np.full(cols.size, r0), np.full(cols.size, r1 - 1), rows, rows, np.repeat(inner_r, inner_c.size)]
    )
    cc = np.concatenate(
        [cols, cols, np.full(rows.size, c0), np.full(rows.size, c1 - 1), np.tile(inner_c, inner_r.size)]
    )
    t = grid.transform
    x = t.c + t.a * (cc + 0.5)
    y = t.f + t.e * (rr + 0.5)
    xs, ys = _to_source(grid.crs, src.crs, x, y)
    t_src = src.transform
    if src.period is not None:
        centre = t_src.c + t_src.a * src.width / 2.0
        xs = xs - src.period * np.round((xs - centre) / src.period)
    fcol = (xs - t_src.c) / t_src.a - 0.5
    frow = (ys - t_src.f) / t_src.e - 0.5
    good = np.isfinite(fcol) & np.isfinite(frow)
    fcol, frow = fcol[good], frow[good]

    full_width = False
    # a source pole inside the chunk (or within a pixel of it): all longitudes, rows to the pole
    left, bottom, right, top = (t.c + t.a * (c0 - 1), t.f + t.e * (r1 + 1), t.c + t.a * (c1 + 1), t.f + t.e * (r0 - 1))
    for px, py, pole_row in poles:
        if left <= px <= right and bottom <= py <= top:
            full_width = True
            frow = np.append(frow, pole_row)
    if frow.size == 0:
        return None
    row0 = max(0, int(math.floor(frow.min())) - margin)
    row1 = min(src.height, int(math.floor(frow.max())) + margin + 2)
    if row0 >= row1:
        return None
    if (src.reflect_north and row0 == 0) or (src.reflect_south and row1 == src.height):
        full_width = True

    w = src.width
    if src.periodic:
        if full_width or fcol.size == 0:
            return _Window(row0, row1, 0, w)
        wrapped = np.sort(np.mod(fcol + 0.5, w) - 0.5)
        gaps = np.diff(np.append(wrapped, wrapped[0] + w))
        k = int(np.argmax(gaps))
        start = wrapped[(k + 1) % wrapped.size]
        arc = w - gaps[k]
        if arc > w / 2.0:  # see the module docstring: only arcs under half a turn are trusted
            return _Window(row0, row1, 0, w)
        col0 = int(math.floor(start)) - margin
        ncols = int(math.ceil(arc)) + 2 * margin + 2
        if ncols >= w:
            return _Window(row0, row1, 0, w)
        return _Window(row0, row1, col0 % w, ncols)
    if fcol.size == 0:
        return None
    col0 = max(0, int(math.floor(fcol.min())) - margin)
    col1 = min(w, int(math.floor(fcol.max())) + margin + 2)
    if col0 >= col1:
        return None
    return _Window(row0, row1, col0, col1 - col0)


def _gather(block: np.ndarray, src: _SourceGeometry, win: _Window, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Source values at integer (row, col) with seam wrap, pole reflection and edge clamping."""
    h, w = src.height, src.width
    if src.reflect_north or src.reflect_south:
        half = w // 2
        north = (rows < 0) & src.reflect_north
        south = (rows > h - 1) & src.reflect_south
        cols = np.where(north | south, cols + half, cols)
        rows = np.where(north, -1 - rows, rows)
        rows = np.where(south, 2 * h - 1 - rows, rows)
    rows = np.clip(rows, 0, h - 1)
    if src.periodic:
        cols = np.mod(cols, w)
        lc = np.mod(cols - win.col0, w)
    else:
        cols = np.clip(cols, 0, w - 1)
        lc = cols - win.col0
    lr = rows - win.row0
    inside = (lr >= 0) & (lr < block.shape[0]) & (lc >= 0) & (lc < block.shape[1])
    vals = block[np.clip(lr, 0, block.shape[0] - 1), np.clip(lc, 0, block.shape[1] - 1)].astype("float64")
    return np.where(inside, vals, np.nan)


#: rows of an output chunk sampled at once by :func:`_sample_block` (bounds its temporaries)
SAMPLE_STRIP_ROWS = 128


def _sample_block(
    block: np.ndarray,
    grid: AnalysisGrid,
    src: _SourceGeometry,
    win: _Window,
    r0: int,
    r1: int,
    c0: int,
    c1: int,
    method: str,
) -> np.ndarray:
    """One output chunk: target centres -> source CRS -> fractional indices -> sample.

    In strips of :data:`SAMPLE_STRIP_ROWS` rows: each pixel is computed on its own, so the
    values do not depend on the strips, and the float64 temporaries of a strip (centres,
    source coordinates, indices and weights, about twenty arrays of the strip's size) stay a
    few tens of MB instead of about 640 MB for a 2048² chunk on each thread.
    """
    block = np.asarray(block)
    out = np.empty((r1 - r0, c1 - c0), dtype="float32")
    for s0 in range(r0, r1, SAMPLE_STRIP_ROWS):
        s1 = min(r1, s0 + SAMPLE_STRIP_ROWS)
        out[s0 - r0 : s1 - r0] = _sample_strip(block, grid, src, win, s0, s1, c0, c1, method)
    return out


def _sample_strip(
    block: np.ndarray,
    grid: AnalysisGrid,
    src: _SourceGeometry,
    win: _Window,
    r0: int,
    r1: int,
    c0: int,
    c1: int,
    method: str,
) -> np.ndarray:
    """Rows ``r0:r1``, columns ``c0:c1`` of :func:`_sample_block`."""
    t = grid.transform
    x = t.c + t.a * (np.arange(c0, c1, dtype="float64") + 0.5)
    y = t.f + t.e * (np.arange(r0, r1, dtype="float64") + 0.5)
    xx, yy = np.meshgrid(x, y)
    xs, ys = _to_source(grid.crs, src.crs, xx, yy)
    frow, fcol = src.fractional_indices(xs, ys)
    ok = np.isfinite(frow)
    out = np.full(frow.shape, np.nan, dtype="float64")
    if not ok.any():
        return out.astype("float32")
    fr, fc = frow[ok], fcol[ok]
    if method == "nearest":
        ri = np.floor(fr + 0.5).astype("int64")
        ci = np.floor(fc + 0.5).astype("int64")
        out[ok] = _gather(block, src, win, ri, ci)
    else:
        rf, cf = np.floor(fr), np.floor(fc)
        dr, dc = fr - rf, fc - cf
        ri, ci = rf.astype("int64"), cf.astype("int64")
        acc = np.zeros(fr.shape, dtype="float64")
        for oi, wr in ((0, 1.0 - dr), (1, dr)):
            for oj, wc in ((0, 1.0 - dc), (1, dc)):
                wgt = wr * wc
                vals = _gather(block, src, win, ri + oi, ci + oj)
                # a NaN neighbour counts only when it has weight (points on a row/column ignore it)
                acc += np.where(wgt == 0.0, 0.0, wgt * vals)
        out[ok] = acc
    return out.astype("float32")


def _block_nanmean(block: np.ndarray, factor: int) -> np.ndarray:
    """Mean of each ``factor x factor`` block, NaN ignored (an all-NaN block stays NaN)."""
    h, w = block.shape
    b = block.astype("float64").reshape(h // factor, factor, w // factor, factor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(b, axis=(1, 3)).astype("float32")


def _average_factor(src_grid: AnalysisGrid, grid: AnalysisGrid, geom: _SourceGeometry) -> int:
    """Integer ratio of target to source nominal ground pixel size, kept compatible with wrapping."""
    ratio = grid.ground_resolution_m / src_grid.ground_resolution_m
    factor = max(1, int(round(ratio)))
    if geom.periodic:
        while factor > 1 and not (
            geom.width % factor == 0
            and (
                not (geom.reflect_north or geom.reflect_south)
                or (geom.height % factor == 0 and (geom.width // factor) % 2 == 0)
            )
        ):
            factor -= 1
    return factor


def _coarsened(src_grid: AnalysisGrid, factor: int) -> AnalysisGrid:
    """The grid of ``factor x factor`` blocks aligned to pixel (0, 0) (partial blocks at the far edges)."""
    t = src_grid.transform
    rows, cols = src_grid.shape
    return AnalysisGrid(
        src_grid.crs, Affine(t.a * factor, 0.0, t.c, 0.0, t.e * factor, t.f), (-(-rows // factor), -(-cols // factor))
    )


def _overlapping_chunks(bounds: np.ndarray, start: int, stop: int) -> list[tuple[int, int, int]]:
    """(chunk index, start, stop) of the chunks covering [start, stop), in chunk-local indices."""
    out = []
    first = int(np.searchsorted(bounds, start, side="right")) - 1
    for k in range(first, len(bounds) - 1):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        if lo >= stop:
            break
        a, b = max(lo, start), min(hi, stop)
        if a < b:
            out.append((k, a - lo, b - lo))
    return out


def _window_pieces(
    data: da.Array, win: _Window, sample_width: int, factor: int
) -> tuple[list[tuple], tuple[tuple[int, ...], ...], tuple[int, int]]:
    """Source chunk keys and where each lands in the (fine-resolution) window of ``win``.

    ``win`` is in sampling-grid pixels (source pixels, or blocks of ``factor`` of them);
    the window's columns may wrap around the seam (two column ranges).
    """
    height, width = data.shape
    row_bounds = np.cumsum((0,) + data.chunks[0])
    col_bounds = np.cumsum((0,) + data.chunks[1])
    end = win.col0 + win.ncols
    ranges = [(win.col0, end)] if end <= sample_width else [(win.col0, sample_width), (0, end - sample_width)]
    fine_r0, fine_r1 = win.row0 * factor, min(win.row1 * factor, height)
    keys, layout = [], []
    dest_c = 0
    for c_lo, c_hi in ranges:
        fine_c0, fine_c1 = c_lo * factor, min(c_hi * factor, width)
        for i, sr0, sr1 in _overlapping_chunks(row_bounds, fine_r0, fine_r1):
            dr0 = int(row_bounds[i]) + sr0 - fine_r0
            for j, sc0, sc1 in _overlapping_chunks(col_bounds, fine_c0, fine_c1):
                dc0 = dest_c + int(col_bounds[j]) + sc0 - fine_c0
                keys.append((data.name, i, j))
                layout.append((dr0, dr0 + sr1 - sr0, dc0, dc0 + sc1 - sc0, sr0, sr1, sc0, sc1))
        dest_c += (c_hi - c_lo) * factor
    return keys, tuple(layout), ((win.row1 - win.row0) * factor, win.ncols * factor)


def _resample_chunk(
    pieces: list[np.ndarray],
    layout: tuple[tuple[int, ...], ...],
    fine_shape: tuple[int, int],
    factor: int,
    grid: AnalysisGrid,
    src: _SourceGeometry,
    win: _Window,
    r0: int,
    r1: int,
    c0: int,
    c1: int,
    method: str,
) -> np.ndarray:
    """One output chunk: assemble the source window from its chunks, block-average, sample."""
    window = np.full(fine_shape, np.nan, dtype="float32")  # NaN pads partial edge blocks
    for piece, (dr0, dr1, dc0, dc1, sr0, sr1, sc0, sc1) in zip(pieces, layout):
        window[dr0:dr1, dc0:dc1] = np.asarray(piece)[sr0:sr1, sc0:sc1]
    if factor > 1:
        window = _block_nanmean(window, factor)
    return _sample_block(window, grid, src, win, r0, r1, c0, c1, method)


def _nan_chunk(shape: tuple[int, int]) -> np.ndarray:
    return np.full(shape, np.nan, dtype="float32")


def as_dask(layer: Any) -> da.Array:
    """The dask array behind a layer (DataArray or array); in-memory data gets ``DEFAULT_CHUNK`` chunks."""
    data = layer.data if isinstance(layer, xr.DataArray) else layer
    return (
        data if isinstance(data, da.Array) else da.from_array(np.asarray(data), chunks=(DEFAULT_CHUNK, DEFAULT_CHUNK))
    )


def resample(
    arr: xr.DataArray, grid: AnalysisGrid, *, method: ResamplingMethod = "bilinear", chunks: Any = None
) -> xr.DataArray:
    """Resample a georeferenced 2-D layer onto ``grid``, lazily and chunk by chunk.

    Parameters
    ----------
    arr
        A (y, x) DataArray with a lunar CRS (``attrs['crs']`` IAU code or rioxarray CRS)
        and regular centre coordinates; numpy- or dask-backed. A south-up raster is
        flipped first.
    grid
        The target :class:`AnalysisGrid`.
    method
        ``"bilinear"`` (NaN-propagating), ``"nearest"``, or ``"average"`` (block average
        by the integer ground-size ratio, then bilinear; for downsampling).
    chunks
        Output chunks: ``None`` (2048 x 2048), an int, ``(rows, cols)`` or ``{'y':, 'x':}``.

    Returns a float32 dask-backed DataArray on ``grid`` (coords, CRS and transform
    written) with the input's attrs, ``crs`` / ``resolution_m`` describing the new grid
    and ``resampling`` naming the method. See the module docstring for the seam, pole,
    edge and NaN rules.
    """
    if method not in RESAMPLING_METHODS:
        raise GridError(f"resampling method must be one of {RESAMPLING_METHODS}, not {method!r}")
    if not isinstance(grid, AnalysisGrid):
        raise GridError(f"grid must be an AnalysisGrid, not {type(grid).__name__}")
    if arr.ndim != 2:
        raise GridError(f"resample takes a 2-D (y, x) layer, got dims {arr.dims}; select one band first")
    try:
        ydim = arr.rio.y_dim
    except Exception as exc:
        raise GridError(f"layer {arr.name!r} has no recognisable x/y dimensions ({exc})") from None
    if arr.sizes[ydim] >= 2 and ydim in arr.coords and float(arr[ydim][1]) > float(arr[ydim][0]):
        arr = arr.isel({ydim: slice(None, None, -1)})  # south-up -> north-up
    src_grid = AnalysisGrid.from_dataarray(arr)
    data = as_dask(arr)
    if data.dtype != np.float32:
        data = data.astype("float32")
    geom = _SourceGeometry.of(src_grid)
    factor = _average_factor(src_grid, grid, geom) if method == "average" else 1
    if factor > 1:
        geom = _SourceGeometry.of(_coarsened(src_grid, factor))
    sample_method = "nearest" if method == "nearest" else "bilinear"

    # One task per output chunk, depending only on the source chunks its window overlaps.
    cy, cx = normalise_chunks(chunks, grid.shape)
    row_spans, col_spans = chunk_spans(grid.shape[0], cy), chunk_spans(grid.shape[1], cx)
    name = "resample-" + dask.base.tokenize(data.name, grid, geom, factor, sample_method, cy, cx)
    poles = _source_poles_in_target(grid, geom)
    layer: dict[Key, Any] = {}
    for i, (r0, r1) in enumerate(row_spans):
        for j, (c0, c1) in enumerate(col_spans):
            win = _chunk_window(grid, geom, poles, r0, r1, c0, c1, _WINDOW_MARGIN_PX)
            if win is None:
                layer[(name, i, j)] = (_nan_chunk, (r1 - r0, c1 - c0))
                continue
            keys, layout, fine_shape = _window_pieces(data, win, geom.width, factor)
            layer[(name, i, j)] = (
                _resample_chunk,
                keys,
                layout,
                fine_shape,
                factor,
                grid,
                geom,
                win,
                r0,
                r1,
                c0,
                c1,
                sample_method,
            )
    # dask's DaskCollection protocol types __dask_scheduler__ as a staticmethod attribute,
    # which its own Array (a staticmethod in the class body) does not satisfy for mypy
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[data])  # type: ignore[list-item]
    out = da.Array(
        graph, name, chunks=(tuple(b - a for a, b in row_spans), tuple(b - a for a, b in col_spans)), dtype="float32"
    )
    attrs = dict(arr.attrs)
    attrs.pop("longitude_convention", None)  # described the source's lon coordinate, which is gone
    attrs["resampling"] = method
    return grid.wrap(out, name=arr.name, attrs=attrs)


def on_grid(
    arr: xr.DataArray, grid: AnalysisGrid, *, method: ResamplingMethod = "average", chunks: Any = None
) -> xr.DataArray:
    """``arr`` itself when it is already on ``grid`` (:meth:`AnalysisGrid.matches`), else :func:`resample`."""
    try:
        same = AnalysisGrid.from_dataarray(arr).matches(grid)
    except GridError:
        same = False
    return arr if same else resample(arr, grid, method=method, chunks=chunks)
