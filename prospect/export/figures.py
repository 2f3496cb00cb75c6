"""Figures of the run report: PNG bytes from matplotlib's object API (Agg, no pyplot state).

Every function returns the bytes of one PNG and keeps no global state: figures are
:class:`matplotlib.figure.Figure` objects drawn on their own Agg canvas (the pattern of
the Matplotlib guide "Embedding in a web application server", which is what
``pyplot``-free use looks like), saved with ``metadata={"Software": None}`` so the same
inputs give the same bytes.

Maps are drawn in the grid of the rasters (the polar stereographic grid of the run,
e.g. IAU_2015:30135) with axes in km. Large rasters are never read whole: files are
read with a decimated, windowed rasterio read (``out_shape``; GDAL uses the COG
overviews) to at most :data:`MAX_PX` pixels a side, and in-memory DataArrays are
sliced to the view and block-averaged to the same size before plotting.

Colour ramps: perceptually uniform ramps of Matplotlib (viridis family; Smith & van der
Walt 2015) for quantities, grey for the hillshade, blue for permanently shadowed regions
(the usual PSR colour of LROC/LOLA polar maps, e.g. Mazarico et al. 2011, Icarus 211:1066).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from prospect import layers as registry
from prospect.resources.ice import CLASS_SHALLOW, CLASS_SURFACE, CLASS_WARM_SHADOW

__all__ = [
    "MAX_PX",
    "criteria_png",
    "hillshade_of",
    "importances_png",
    "intervals_png",
    "layers_png",
    "lunar_crs_of",
    "overlay_stem",
    "psr_layer",
    "read_map",
    "reliability_png",
    "site_map_png",
    "top_sites",
    "zoom_extent",
]

#: Largest side [px] of a raster as plotted (decimated read or block average above it).
MAX_PX = 1500
#: PNG resolution [dots per inch] of every figure.
DPI = 110
#: PSR fraction from which a pixel is drawn as permanently shadowed (majority of the cell).
PSR_DRAW_THRESHOLD = 0.5
PSR_COLOUR = "#1d4ed8"
#: Opacity of the resource overlay over the hillshade on the main map.
OVERLAY_ALPHA = 0.5
TOP_COLOUR = "#e11d48"
CANDIDATE_COLOUR = "#22d3ee"
REGION_COLOUR = "#f59e0b"
TRAVERSE_COLOUR = "#e879f9"  # magenta: least-cost traverses of the distinct top sites

Extent = tuple[float, float, float, float]  # (xmin, xmax, ymin, ymax) in map metres


@dataclass(frozen=True)
class _Style:
    cmap: str
    label: str
    vmin: float | None = None
    vmax: float | None = None
    categorical: bool = False


#: How each map of the run folder is drawn, by layer name (:mod:`prospect.layers`; unknown
#: layers: a generic sequential ramp). The labels are the figures' own short texts.
STYLES: dict[str, _Style] = {
    "illumination_fraction": _Style("inferno", "solar illumination fraction", 0.0, 1.0),
    "earth_visibility_fraction": _Style("viridis", "Earth visibility fraction", 0.0, 1.0),
    "longest_darkness_h": _Style("magma_r", "longest continuous darkness"),
    "psr_fraction": _Style("Blues", "permanently shadowed fraction", 0.0, 1.0),
    "psr_mask": _Style("Blues", "permanently shadowed (0/1 mask)", 0.0, 1.0),
    "ice_favourability": _Style("GnBu", "ice favourability", 0.0, 1.0),
    "ice_stability_class": _Style(
        "ice",
        "ice stability class",
        CLASS_SHALLOW - 0.5,  # classes 1..3, one colour each (ICE_CLASSES); 0 and nodata not drawn
        CLASS_WARM_SHADOW + 0.5,
        categorical=registry.get("ice_stability_class").categorical,
    ),
    "he3_ppb": _Style("YlOrBr", "He-3 concentration"),
    "slope_deg": _Style("plasma", "slope", 0.0, None),
    "dem_m": _Style("gist_earth", "elevation"),
    "hillshade": _Style("gray", "hillshade", 0.0, 1.0),
}
#: Preference order of the layer drawn over the hillshade on the main map.
OVERLAY_ORDER = (
    "ice_favourability",
    "illumination_fraction",
    "he3_ppb",
    "earth_visibility_fraction",
    "longest_darkness_h",
    "slope_deg",
)
#: The permanent-shadow layers, drawn blue over the map (not as the overlay), first present wins:
#: the site stage's PSR fraction, else the illumination stage's 0/1 mask.
PSR_LAYERS = ("psr_fraction", "psr_mask")
#: Layers never chosen as the overlay of the main map.
_NOT_OVERLAY = frozenset({*PSR_LAYERS, "ice_stability_class", "hillshade", "dem_m"})
#: Classes of ``ice_stability_class`` (prospect.resources.ice) that are drawn: value -> (colour, label),
#: in code order (consecutive codes: the categorical colour map has one colour per code).
ICE_CLASSES = {
    CLASS_SHALLOW: ("#67e8f9", "stable in the shallow subsurface"),
    CLASS_SURFACE: ("#0e7490", "stable at the surface"),
    CLASS_WARM_SHADOW: ("#a8a29e", "shadowed, likely too warm (equatorward of the cold-trap limit)"),
}
#: Short colour-bar labels of :data:`ICE_CLASSES`.
ICE_CLASS_TICKS = {CLASS_SHALLOW: "subsurface", CLASS_SURFACE: "surface", CLASS_WARM_SHADOW: "warm shadow"}


# --- figure plumbing -----------------------------------------------------------------------


def _figure(width_in: float, height_in: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None}, facecolor="white")
    return buf.getvalue()


def _cmap(style: _Style) -> Any:
    import matplotlib
    from matplotlib.colors import ListedColormap

    if style.categorical:
        return ListedColormap([ICE_CLASSES[c][0] for c in sorted(ICE_CLASSES)]).with_extremes(bad=(0, 0, 0, 0))
    return matplotlib.colormaps[style.cmap].with_extremes(bad=(0, 0, 0, 0))


def _style(name: str) -> _Style:
    return STYLES.get(name, _Style("cividis", name.replace("_", " ")))


def _units(name: str, arr: xr.DataArray) -> str:
    """The units of a drawn layer: the map's own, else the registry's, else ``"1"``."""
    units = str(arr.attrs.get("units", "") or "")
    if not units and name in registry.LAYERS:
        units = registry.get(name).units
    return units or "1"


# --- rasters --------------------------------------------------------------------------------


def read_map(
    path: str | os.PathLike[str], *, bounds: Extent | None = None, max_px: int = MAX_PX, categorical: bool | None = None
) -> xr.DataArray:
    """A GeoTIFF (or a window ``bounds = (xmin, xmax, ymin, ymax)`` of it) read decimated.

    At most ``max_px`` pixels a side: a rasterio read with ``out_shape`` (GDAL picks the
    overview of a COG, so memory stays small). Continuous layers are averaged, integer
    (class) layers take the nearest value. Nodata becomes NaN and the band's scale and
    offset are applied. The DataArray has dims ``(y, x)`` with pixel-centre coordinates
    and ``attrs`` ``units``, ``crs_wkt``, ``transform`` (of the decimated pixels),
    ``source`` and ``decimation``.
    """
    import rasterio
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.windows import Window, from_bounds

    from prospect.errors import FormatError, InputNotFoundError

    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p}: map not found")
    try:
        src = rasterio.open(p)
    except rasterio.errors.RasterioIOError as exc:
        raise FormatError(f"{p}: not a raster GDAL can read ({exc})") from None
    with src:
        full = Window(0, 0, src.width, src.height)
        if bounds is not None:
            xmin, xmax, ymin, ymax = bounds
            win = from_bounds(xmin, ymin, xmax, ymax, transform=src.transform)
            c0, r0 = math.floor(win.col_off), math.floor(win.row_off)
            win = Window(c0, r0, math.ceil(win.col_off + win.width) - c0, math.ceil(win.row_off + win.height) - r0)
            try:
                win = win.intersection(full)
            except rasterio.errors.WindowError:
                win = full
        else:
            win = full
        w, h = int(win.width), int(win.height)
        factor = max(1, math.ceil(max(w, h) / max_px))
        out_shape = (max(1, math.ceil(h / factor)), max(1, math.ceil(w / factor)))
        is_int = np.issubdtype(np.dtype(src.dtypes[0]), np.integer)
        # class maps take the nearest class; integer-coded continuous maps (uint8 hillshade) are averaged
        nearest = (
            categorical
            if categorical is not None
            else (_style(p.stem).categorical or (is_int and p.stem not in STYLES))
        )
        data = src.read(
            1,
            window=win,
            out_shape=out_shape,
            masked=True,
            resampling=Resampling.nearest if nearest else Resampling.average,
        )
        values = np.ma.filled(data.astype("float64"), np.nan)
        scale, offset = (src.scales[0] or 1.0), (src.offsets[0] or 0.0)
        if scale != 1.0 or offset != 0.0:
            values = values * scale + offset
        t = src.window_transform(win) @ Affine.scale(w / out_shape[1], h / out_shape[0])
        units = src.tags(1).get("units") or (src.units[0] if src.units and src.units[0] else "")
        wkt = src.crs.to_wkt() if src.crs else ""
    xs = t.c + t.a * (np.arange(out_shape[1]) + 0.5)
    ys = t.f + t.e * (np.arange(out_shape[0]) + 0.5)
    return xr.DataArray(
        values.astype("float32"),
        dims=("y", "x"),
        coords={"y": ys, "x": xs},
        name=p.stem,
        attrs={
            "units": units,
            "crs_wkt": wkt,
            "transform": tuple(t)[:6],
            "source": str(p),
            "decimation": factor,
            "categorical": bool(nearest),
        },
    )


def _bounds_of(arr: xr.DataArray) -> Extent:
    x, y = arr["x"].to_numpy(), arr["y"].to_numpy()
    dx = abs(float(x[1] - x[0])) if x.size > 1 else abs(float(arr.attrs.get("transform", (1.0,))[0]))
    dy = abs(float(y[1] - y[0])) if y.size > 1 else dx
    return float(x.min() - dx / 2), float(x.max() + dx / 2), float(y.min() - dy / 2), float(y.max() + dy / 2)


def _view(layer: Any, bounds: Extent | None, max_px: int, categorical: bool) -> xr.DataArray:
    """``layer`` (a path or a DataArray) cut to ``bounds`` and reduced to at most ``max_px`` a side."""
    if isinstance(layer, (str, os.PathLike)):
        return read_map(layer, bounds=bounds, max_px=max_px, categorical=categorical or None)
    arr = layer
    if bounds is not None:
        xmin, xmax, ymin, ymax = bounds
        y = arr["y"].to_numpy()
        ysl = slice(ymax, ymin) if y.size > 1 and y[0] > y[-1] else slice(ymin, ymax)
        arr = arr.sel(x=slice(xmin, xmax), y=ysl)
    factor = max(1, math.ceil(max(arr.shape) / max_px))
    if factor > 1:
        arr = arr[::factor, ::factor] if categorical else arr.coarsen(y=factor, x=factor, boundary="trim").mean()
    out = xr.DataArray(
        np.asarray(arr.values, dtype="float32"),
        dims=("y", "x"),
        coords={"y": arr["y"].to_numpy(), "x": arr["x"].to_numpy()},
        name=layer.name,
        attrs=dict(layer.attrs),
    )
    if out.shape[0] > 1 and out["y"].values[0] < out["y"].values[-1]:
        out = out.isel(y=slice(None, None, -1))
    return out


def hillshade_of(dem: xr.DataArray) -> xr.DataArray:
    """Hillshade (:func:`prospect.terrain.surface.hillshade`) of a (decimated) DEM DataArray in m.

    The DEM needs ``attrs['crs_wkt']`` (as :func:`read_map` writes) or a rioxarray CRS.
    """
    from affine import Affine

    from prospect import lunar
    from prospect.grid import AnalysisGrid
    from prospect.terrain.surface import hillshade

    wkt = dem.attrs.get("crs_wkt") or (dem.rio.crs.to_wkt() if dem.rio.crs is not None else "")
    crs = lunar.identify(wkt, source=f"DEM {dem.name!r}")
    x, y = dem["x"].to_numpy(), dem["y"].to_numpy()
    dx, dy = float(x[1] - x[0]), float(y[1] - y[0])
    shape = (int(dem.shape[0]), int(dem.shape[1]))
    grid = AnalysisGrid(crs, Affine(dx, 0.0, float(x[0]) - dx / 2, 0.0, dy, float(y[0]) - dy / 2), shape)
    wrapped = grid.template(name="dem").copy(data=np.asarray(dem.values, dtype="float32"))
    wrapped.attrs["units"] = "m"
    shade = hillshade(wrapped).compute()
    out = dem.copy(data=np.asarray(shade.values, dtype="float32"))
    out.name = "hillshade"
    out.attrs.update(units="1")
    return out


# --- map geometry ---------------------------------------------------------------------------


def top_sites(sites: Any, top_k: int) -> Any:
    """The ``top_k`` best-ranked rows of the site table (sorted by ``rank``)."""
    return sites.sort_values("rank", kind="stable").head(int(top_k))


def _xy(frame: Any) -> tuple[np.ndarray, np.ndarray]:
    if "x" in frame and "y" in frame:
        return frame["x"].to_numpy(float), frame["y"].to_numpy(float)
    return np.asarray(frame.geometry.x, float), np.asarray(frame.geometry.y, float)


def zoom_extent(
    sites: Any, top_k: int, *, limit: Extent | None = None, min_size_m: float = 20_000.0, margin: float = 0.25
) -> Extent:
    """A square-ish view around the ``top_k`` sites: their box plus ``margin`` of its size each side.

    Never smaller than ``min_size_m`` a side (a lone site still shows its surroundings);
    clipped to ``limit`` (the raster's bounds) when given.
    """
    x, y = _xy(top_sites(sites, top_k))
    cx, cy = (x.min() + x.max()) / 2, (y.min() + y.max()) / 2
    half = max(x.max() - x.min(), y.max() - y.min(), min_size_m) * (0.5 + margin)
    hx = max((x.max() - x.min()) * (0.5 + margin), half * 0.75)
    hy = max((y.max() - y.min()) * (0.5 + margin), half * 0.75)
    ext = (cx - hx, cx + hx, cy - hy, cy + hy)
    if limit is not None:
        ext = (max(ext[0], limit[0]), min(ext[1], limit[1]), max(ext[2], limit[2]), min(ext[3], limit[3]))
    return tuple(float(v) for v in ext)  # type: ignore[return-value]


def _km_axes(ax: Any, crs_name: str, extent: Extent, *, labels: bool = True) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    fmt = FuncFormatter(lambda v, _pos: f"{v / 1000:g}")
    ax.xaxis.set_major_formatter(fmt)
    ax.yaxis.set_major_formatter(fmt)
    ax.xaxis.set_major_locator(MaxNLocator(6, steps=[1, 2, 2.5, 5, 10]))
    ax.yaxis.set_major_locator(MaxNLocator(6, steps=[1, 2, 2.5, 5, 10]))
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal", adjustable="box")
    ax.tick_params(labelsize=8)
    if labels:
        ax.set_xlabel(f"x [km] ({crs_name})", fontsize=8)
        ax.set_ylabel("y [km]", fontsize=8)


def lunar_crs_of(sites: Any) -> Any:
    """The :class:`~prospect.lunar.LunarCRS` of a GeoDataFrame, or None when it has none or not a lunar one."""
    from prospect import lunar
    from prospect.errors import ProspectError

    crs = getattr(sites, "crs", None)
    if crs is None:
        return None
    try:
        return lunar.identify(crs.to_wkt(), source="sites")
    except ProspectError:
        return None


def _graticule(ax: Any, crs: Any, extent: Extent, *, colour: str = "white") -> None:
    """Latitude circles (and meridians every 30 deg) of a polar grid, labelled at the view's edge."""
    from prospect import lunar

    if crs is None or not getattr(crs, "is_polar", False):
        return
    corners_x = np.array([extent[0], extent[1], extent[0], extent[1], (extent[0] + extent[1]) / 2])
    corners_y = np.array([extent[2], extent[2], extent[3], extent[3], (extent[2] + extent[3]) / 2])
    _, lat_c = lunar.xy_to_lonlat(crs, corners_x, corners_y)
    south = float(np.nanmean(lat_c)) < 0
    lat_lo, lat_hi = float(np.nanmin(np.abs(lat_c))), 90.0
    inside_pole = extent[0] <= 0 <= extent[1] and extent[2] <= 0 <= extent[3]
    if not inside_pole:  # the pole is outside: the view's nearest point to it bounds |lat|
        px, py = np.clip(0.0, extent[0], extent[1]), np.clip(0.0, extent[2], extent[3])
        lat_hi = abs(float(lunar.xy_to_lonlat(crs, px, py)[1]))
    span = lat_hi - lat_lo
    step = next((s for s in (0.25, 0.5, 1.0, 2.0, 5.0, 10.0) if span / s <= 8), 10.0)
    lon = np.linspace(-180.0, 180.0, 721)
    for a in np.arange(math.ceil(lat_lo / step) * step, lat_hi, step):
        lat = -a if south else a
        x, y = lunar.lonlat_to_xy(crs, lon, np.full_like(lon, lat))
        ax.plot(x, y, color=colour, lw=0.5, ls=(0, (4, 3)), alpha=0.7, zorder=3)
        inside = (x > extent[0]) & (x < extent[1]) & (y > extent[2]) & (y < extent[3])
        if inside.any():
            i = np.flatnonzero(inside)[np.argmax(y[inside] - 0.3 * x[inside])]
            ax.text(
                x[i],
                y[i],
                f"{lat:g}°",
                color=colour,
                fontsize=7,
                ha="left",
                va="bottom",
                zorder=3,
                alpha=0.9,
                clip_on=True,
            )
    if inside_pole or span > 4:
        r = np.linspace(0, 1, 2)
        rho = max(abs(v) for v in extent) * 1.5
        for m in range(-150, 181, 30):
            x0, y0 = lunar.lonlat_to_xy(crs, float(m), -89.999 if south else 89.999)
            ang = math.atan2(y0, x0)
            ax.plot(r * rho * math.cos(ang), r * rho * math.sin(ang), color=colour, lw=0.4, alpha=0.5, zorder=3)


def _raster(
    ax: Any,
    arr: xr.DataArray,
    *,
    style: _Style,
    alpha: float = 1.0,
    vmin: float | None = None,
    vmax: float | None = None,
    zorder: int = 1,
) -> Any:
    return ax.imshow(
        np.ma.masked_invalid(arr.values),
        extent=_bounds_of(arr),
        origin="upper",
        cmap=_cmap(style),
        vmin=vmin,
        vmax=vmax,
        alpha=alpha,
        interpolation="nearest",
        zorder=zorder,
    )


def _limits(stem: str, arr: xr.DataArray) -> tuple[float, float]:
    st = _style(stem)
    vals = arr.values[np.isfinite(arr.values)]
    lo = st.vmin if st.vmin is not None else (float(np.percentile(vals, 2)) if vals.size else 0.0)
    hi = st.vmax if st.vmax is not None else (float(np.percentile(vals, 98)) if vals.size else 1.0)
    return lo, (hi if hi > lo else lo + 1.0)


def _psr(ax: Any, arr: xr.DataArray, zorder: int = 2, *, outline: bool = False) -> None:
    from matplotlib.colors import ListedColormap

    if outline:
        if min(arr.shape) >= 2:
            ax.contour(
                arr["x"].to_numpy(),
                arr["y"].to_numpy(),
                np.nan_to_num(arr.values),
                levels=[PSR_DRAW_THRESHOLD],
                colors=[PSR_COLOUR],
                linewidths=1.2,
                zorder=zorder + 1,
            )
        return
    mask = np.ma.masked_where(~(np.nan_to_num(arr.values) >= PSR_DRAW_THRESHOLD), np.ones(arr.shape))
    ax.imshow(
        mask,
        extent=_bounds_of(arr),
        origin="upper",
        cmap=ListedColormap([PSR_COLOUR]),
        alpha=0.75,
        interpolation="nearest",
        zorder=zorder,
        vmin=0,
        vmax=1,
    )


def _place_labels(
    ax: Any, x: np.ndarray, y: np.ndarray, labels: Sequence[str], *, fontsize: float = 9, colour: str = TOP_COLOUR
) -> None:
    """Number the markers; a greedy search moves each label off the labels and markers already drawn."""
    ax.apply_aspect()
    to_disp = ax.transData.transform
    pts = to_disp(np.column_stack([x, y]))
    scale = ax.figure.dpi / 72.0
    placed: list[tuple[float, float, float, float]] = []
    r_mark = 5 * scale
    for (px, py), _ in zip(pts, labels):
        placed.append((px - r_mark, py - r_mark, px + r_mark, py + r_mark))
    offsets = [
        (d * math.cos(a), d * math.sin(a))
        for d in (10, 18, 28, 40, 55)
        for a in np.deg2rad([45, 135, -45, -135, 90, -90, 0, 180, 22, 158, -22, -158])
    ]
    for (px, py), text, xi, yi in zip(pts, labels, x, y):
        w, h = (0.62 * fontsize * len(text) + 4) * scale, (fontsize + 4) * scale
        chosen = offsets[0]
        for dx, dy in offsets:
            cx, cy = px + dx * scale, py + dy * scale
            box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                chosen = (dx, dy)
                placed.append(box)
                break
        else:
            cx, cy = px + chosen[0] * scale, py + chosen[1] * scale
            placed.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        far = math.hypot(*chosen) > 12
        ax.annotate(
            text,
            (xi, yi),
            xytext=chosen,
            textcoords="offset points",
            ha="center",
            va="center",
            fontsize=fontsize,
            fontweight="bold",
            color="black",
            zorder=7,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": colour, "lw": 0.8, "alpha": 0.9},
            arrowprops={"arrowstyle": "-", "color": "white", "lw": 0.8} if far else None,
        )


def overlay_stem(layers: Mapping[str, Any]) -> str | None:
    """The layer :func:`site_map_png` lays over the hillshade: the first of :data:`OVERLAY_ORDER` present."""
    overlay = next((s for s in OVERLAY_ORDER if s in layers), None)
    if overlay is None:
        overlay = next((s for s in layers if s not in _NOT_OVERLAY), None)
    return overlay


def psr_layer(layers: Mapping[str, Any]) -> str | None:
    """The permanent-shadow layer :func:`site_map_png` draws in blue: the first of :data:`PSR_LAYERS` present."""
    return next((s for s in PSR_LAYERS if s in layers), None)


def _base(hillshade: Any, layers: Mapping[str, Any]) -> tuple[Any, str]:
    """What to draw underneath: the hillshade, else one computed from ``dem_m``, else the first layer."""
    if hillshade is not None:
        return hillshade, "hillshade"
    if "dem_m" in layers:
        return layers["dem_m"], "dem_m"
    stem = next(iter(layers))
    return layers[stem], stem


#: Smallest zoomed view: this many native pixels a side, and never under MIN_VIEW_M.
MIN_VIEW_PX = 40
MIN_VIEW_M = 20_000.0


def _native_res_m(layer: Any) -> float:
    """Pixel size of a layer before decimation (GeoTIFF path or DataArray)."""
    if isinstance(layer, (str, os.PathLike)):
        import rasterio

        with rasterio.open(layer) as src:
            return abs(float(src.transform.a))
    x = layer["x"].to_numpy()
    return abs(float(x[1] - x[0])) if x.size > 1 else 0.0


def _min_view_m(layer: Any) -> float:
    return max(MIN_VIEW_M, MIN_VIEW_PX * _native_res_m(layer))


def _base_view(base: Any, kind: str, bounds: Extent | None, max_px: int) -> xr.DataArray:
    arr = _view(base, bounds, max_px, categorical=False)
    if kind == "dem_m":
        arr = hillshade_of(arr)
    return arr


def _grey(arr: xr.DataArray) -> tuple[float, float]:
    """Grey stretch of the base layer: its 1st..99th percentile (a hillshade may be 0..1 or 1..255)."""
    vals = arr.values[np.isfinite(arr.values)]
    if not vals.size:
        return 0.0, 1.0
    lo, hi = float(np.percentile(vals, 1)), float(np.percentile(vals, 99))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _in_map_crs(gdf: Any, sites: Any) -> Any:
    """``gdf`` in the CRS of ``sites`` (reprojected between lunar CRSs if needed); None if impossible."""
    if gdf is None or len(gdf) == 0:
        return None
    try:
        if gdf.crs is not None and sites.crs is not None and not gdf.crs.equals(sites.crs):
            gdf = gdf.to_crs(sites.crs)
    except Exception:  # an unknown or non-lunar CRS: drawn nowhere rather than in the wrong place
        return None
    return gdf


def _polygons(
    ax: Any, gdf: Any, extent: Extent | None, *, face: str | None, edge: str, lw: float, alpha: float, zorder: int
) -> None:
    """Polygons of ``gdf`` (holes kept) as one PathCollection, clipped to ``extent``'s box first."""
    import shapely
    from matplotlib.collections import PathCollection
    from matplotlib.path import Path as MPath

    geoms = np.asarray(gdf.geometry.values)
    if extent is not None:
        box = shapely.box(extent[0], extent[2], extent[1], extent[3])
        geoms = geoms[shapely.intersects(geoms, box)]
    paths = []
    for geom in geoms:
        for poly in getattr(geom, "geoms", [geom]):
            if poly.is_empty or poly.geom_type != "Polygon":
                continue
            verts, codes = [], []
            for ring in (poly.exterior, *poly.interiors):
                xy = np.asarray(ring.coords)
                verts.append(xy)
                codes.append(np.r_[MPath.MOVETO, np.full(len(xy) - 2, MPath.LINETO), MPath.CLOSEPOLY])
            paths.append(MPath(np.concatenate(verts), np.concatenate(codes).astype(np.uint8)))
    if paths:
        ax.add_collection(
            PathCollection(paths, facecolors=face or "none", edgecolors=edge, linewidths=lw, alpha=alpha, zorder=zorder)
        )


def site_map_png(
    hillshade: Any,
    layers: Mapping[str, Any],
    sites: Any,
    *,
    top_k: int,
    extent: Extent | None = None,
    vectors: Mapping[str, Any] | None = None,
    max_px: int = MAX_PX,
) -> bytes:
    """The top sites over the hillshade and the main resource layer: a zoomed map and an overview.

    ``hillshade`` and each value of ``layers`` (keyed by layer name: ``illumination_fraction``,
    ``psr_fraction``, ``ice_favourability``, ...) is a GeoTIFF path or a georeferenced
    DataArray (dims ``y, x`` in map metres); ``hillshade`` may be None (then it is computed
    from ``layers['dem_m']``, else the first layer is drawn in grey). ``sites`` is the site
    table (GeoDataFrame with ``rank`` and ``x``/``y`` or point geometry); the ``top_k`` best
    get numbered markers (label = rank), the other candidates small dots. ``extent``
    ``(xmin, xmax, ymin, ymax)`` in metres sets the zoomed view (default :func:`zoom_extent`).
    The overlay is the first of :data:`OVERLAY_ORDER` present, semi-transparent; PSR pixels
    (``psr_fraction >= 0.5``, or ``psr_mask >= 0.5`` without a fraction: :data:`PSR_LAYERS`)
    are blue, ice stability classes light/dark cyan (shallow/surface) and grey (shadowed,
    likely too warm: :data:`ICE_CLASSES`). ``vectors`` may hold GeoDataFrames
    (layers of sites.gpkg): ``psr`` polygons are drawn in blue when there is no PSR raster, ``regions`` (expert regions) as orange outlines,
    named on the zoomed map when they have a ``name`` column.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    if hillshade is None and not layers:
        raise ValueError("site_map_png needs a hillshade or at least one layer")
    base, kind = _base(hillshade, layers)
    overview_base = _base_view(base, kind, None, max_px)
    full = _bounds_of(overview_base)
    ext = extent or zoom_extent(sites, top_k, limit=full, min_size_m=_min_view_m(base))
    zoom_base = _base_view(base, kind, ext, max_px)
    crs = lunar_crs_of(sites)
    crs_name = crs.code if crs is not None and crs.code else "map grid"
    overlay, psr_name = overlay_stem(layers), psr_layer(layers)
    psr = layers[psr_name] if psr_name is not None else None
    ice_class = layers.get("ice_stability_class")

    # main map sized to the view's aspect; the overview and the legend in a column to its right
    map_h = 6.6
    aspect = (ext[1] - ext[0]) / max(ext[3] - ext[2], 1e-9)
    map_w = min(max(map_h * aspect, 4.0), 9.5)
    map_h = min(map_h, map_w / aspect) if aspect > 0 else map_h
    side_w, left, gap, bottom, top = 4.3, 0.75, 0.75, 0.6, 0.45
    width, height = left + map_w + gap + side_w + 0.25, bottom + max(map_h, 6.6) + top
    fig = _figure(width, height)
    ax = fig.add_axes((left / width, bottom / height, map_w / width, map_h / height))
    ov_h = 3.5
    ov = fig.add_axes(((left + map_w + gap) / width, (height - top - ov_h) / height, side_w / width, ov_h / height))
    leg = fig.add_axes(
        ((left + map_w + gap) / width, bottom / height, side_w / width, (height - top - ov_h - 0.7 - bottom) / height)
    )
    leg.axis("off")

    handles: list[Any] = []  # legend entries: Line2D, Patch and scatter collections
    lo, hi = _grey(overview_base)  # one stretch for both views
    for a, b, bnds in ((ax, zoom_base, ext), (ov, overview_base, None)):
        _raster(a, b, style=_style("hillshade"), vmin=lo, vmax=hi, zorder=0)
        if overlay is not None:
            arr = _view(layers[overlay], bnds, max_px, categorical=False)
            vmin, vmax = _limits(overlay, _view(layers[overlay], None, 400, categorical=False))
            im = _raster(a, arr, style=_style(overlay), alpha=OVERLAY_ALPHA, vmin=vmin, vmax=vmax, zorder=1)
            if a is ax:
                cax = leg.inset_axes((0.0, 0.86, 1.0, 0.07))
                cb = fig.colorbar(im, cax=cax, orientation="horizontal")
                cb.set_label(
                    f"{_style(overlay).label} [{_units(overlay, arr)}] (overlay, {OVERLAY_ALPHA:.0%} opaque)",
                    fontsize=8,
                )
                cb.ax.tick_params(labelsize=8)
        if ice_class is not None:
            arr = _view(ice_class, bnds, max_px, categorical=True)
            st = _style("ice_stability_class")
            _raster(
                a, arr.where(arr.isin(list(ICE_CLASSES))), style=st, alpha=0.85, vmin=st.vmin, vmax=st.vmax, zorder=2
            )
        if psr is not None:  # outlined when ice classes fill the cold traps, else filled
            _psr(a, _view(psr, bnds, max_px, categorical=False), outline=ice_class is not None)
    if psr is not None and ice_class is not None:
        handles.append(
            Line2D([], [], color=PSR_COLOUR, lw=1.2, label=f"PSR outline ({psr_name} >= {PSR_DRAW_THRESHOLD:g})")
        )
    elif psr is not None:
        handles.append(Patch(color=PSR_COLOUR, alpha=0.75, label=f"PSR ({psr_name} >= {PSR_DRAW_THRESHOLD:g})"))
    if ice_class is not None:
        handles += [Patch(color=c, label=f"ice: {t}") for c, t in ICE_CLASSES.values()]
    vectors = vectors or {}
    psr_poly = _in_map_crs(vectors.get("psr"), sites) if psr is None else None
    if psr_poly is not None:
        for a, bnds in ((ax, ext), (ov, None)):
            _polygons(
                a,
                psr_poly,
                bnds,
                face=None if ice_class is not None else PSR_COLOUR,
                edge=PSR_COLOUR,
                lw=0.8 if a is ax else 0.3,
                alpha=0.75,
                zorder=2,
            )
        handles.append(Patch(color=PSR_COLOUR, alpha=0.75, label="PSR polygons (sites.gpkg layer psr)"))
    regions = _in_map_crs(vectors.get("regions"), sites)
    if regions is not None:
        for a, bnds in ((ax, ext), (ov, None)):
            _polygons(a, regions, bnds, face=None, edge=REGION_COLOUR, lw=1.3 if a is ax else 0.6, alpha=0.95, zorder=5)
        handles.append(Line2D([], [], color=REGION_COLOUR, lw=1.3, label="expert regions (sites.gpkg layer regions)"))
        if "name" in regions.columns:  # names above each region's box, clear of the site markers inside
            for name, (x0, _y0, x1, y1) in zip(regions["name"], regions.geometry.bounds.to_numpy()):
                cx = (x0 + x1) / 2
                if ext[0] < cx < ext[1] and ext[2] < y1 < ext[3]:
                    ax.text(
                        cx,
                        y1,
                        str(name),
                        color=REGION_COLOUR,
                        fontsize=7,
                        ha="center",
                        va="bottom",
                        zorder=5,
                        clip_on=True,
                        fontweight="bold",
                        bbox={"boxstyle": "round,pad=0.1", "fc": "black", "ec": "none", "alpha": 0.4},
                    )

    traverses = _in_map_crs(vectors.get("traverses"), sites)
    if traverses is not None and len(traverses):
        for geom in traverses.geometry:
            if geom is not None and not geom.is_empty:
                gx, gy = geom.xy
                ax.plot(gx, gy, color=TRAVERSE_COLOUR, lw=1.3, zorder=5.5)
        handles.append(
            Line2D([], [], color=TRAVERSE_COLOUR, lw=1.3, label="traverses to the nearest cold trap (layer traverses)")
        )

    x_all, y_all = _xy(sites)
    top = top_sites(sites, top_k)
    tx, ty = _xy(top)
    ranks = [str(int(r)) for r in top["rank"]]
    inside = (x_all >= ext[0]) & (x_all <= ext[1]) & (y_all >= ext[2]) & (y_all <= ext[3])
    ax.scatter(x_all[inside], y_all[inside], s=2.5, c=CANDIDATE_COLOUR, alpha=0.6, lw=0, zorder=4)
    handles.append(
        ax.scatter([], [], s=9, c=CANDIDATE_COLOUR, lw=0, label=f"candidates passing all constraints ({len(sites)})")
    )
    ax.scatter(tx, ty, s=46, facecolor=TOP_COLOUR, edgecolor="white", lw=1.0, zorder=6)
    handles.append(
        ax.scatter(
            [], [], s=46, facecolor=TOP_COLOUR, edgecolor="white", lw=1.0, label=f"top {len(top)} sites (label = rank)"
        )
    )
    _km_axes(ax, crs_name, ext)
    _graticule(ax, crs, ext)
    _place_labels(ax, tx, ty, ranks)
    ax.set_title(
        f"Top {len(top)} sites over the {'hillshade' if kind in ('hillshade', 'dem_m') else kind}"
        + (f" and {_style(overlay).label}" if overlay else ""),
        fontsize=10,
    )

    ov.scatter(tx, ty, s=14, facecolor=TOP_COLOUR, edgecolor="white", lw=0.5, zorder=6)
    ov.add_patch(
        Rectangle((ext[0], ext[2]), ext[1] - ext[0], ext[3] - ext[2], fill=False, ec="white", lw=1.2, zorder=7)
    )
    _km_axes(ov, crs_name, full, labels=False)
    _graticule(ov, crs, full)
    ov.set_title("Overview (white box: the map on the left)", fontsize=9)
    leg.legend(handles=handles, loc="upper left", fontsize=8, frameon=False, bbox_to_anchor=(0.0, 0.62))
    return _png(fig)


def layers_png(
    hillshade: Any,
    layers: Mapping[str, Any],
    sites: Any,
    *,
    top_k: int,
    extent: Extent | None = None,
    max_px: int = MAX_PX,
    ncols: int = 4,
) -> bytes | None:
    """One small panel per resource map (its own ramp and units) over the zoomed view, top sites marked.

    Same inputs as :func:`site_map_png`; ``hillshade`` and ``dem_m`` get no panel of their
    own. Returns None when there is no layer to show.
    """
    stems = [s for s in layers if s not in ("hillshade", "dem_m")]
    if not stems:
        return None
    base, kind = _base(hillshade, layers)
    overview = _base_view(base, kind, None, 300)
    full = _bounds_of(overview)
    lo, hi = _grey(overview)
    ext = extent or zoom_extent(sites, top_k, limit=full, min_size_m=_min_view_m(base))
    shade = _base_view(base, kind, ext, max_px)
    crs = lunar_crs_of(sites)
    crs_name = crs.code if crs is not None and crs.code else "map grid"
    ncols = min(ncols, len(stems))
    nrows = math.ceil(len(stems) / ncols)
    aspect = (ext[1] - ext[0]) / max(ext[3] - ext[2], 1e-9)
    panel_h = 3.6 / max(aspect, 1.0)
    fig = _figure(max(3.6 * aspect, 2.4) * ncols + 1.1 * ncols, (panel_h + 0.6) * nrows + 0.4)
    fig.set_layout_engine("constrained")
    gs = fig.add_gridspec(nrows, ncols)
    tx, ty = _xy(top_sites(sites, top_k))
    for i, stem in enumerate(stems):
        ax = fig.add_subplot(gs[i // ncols, i % ncols])
        st = _style(stem)
        _raster(ax, shade, style=_style("hillshade"), vmin=lo, vmax=hi, zorder=0)
        arr = _view(layers[stem], ext, max_px, categorical=st.categorical)
        if st.categorical:
            im = _raster(ax, arr.where(arr.isin(list(ICE_CLASSES))), style=st, alpha=0.9, vmin=st.vmin, vmax=st.vmax)
        else:
            vmin, vmax = _limits(stem, _view(layers[stem], None, 400, categorical=False))
            im = _raster(ax, arr, style=st, alpha=0.8, vmin=vmin, vmax=vmax)
        cb = fig.colorbar(im, ax=ax, shrink=0.9)
        cb.ax.tick_params(labelsize=7)
        units = _units(stem, arr)
        if st.categorical:
            cb.set_ticks(list(ICE_CLASSES))
            cb.set_ticklabels([ICE_CLASS_TICKS[c] for c in ICE_CLASSES])
        ax.scatter(tx, ty, s=18, facecolor="none", edgecolor=TOP_COLOUR, lw=1.2, zorder=5)
        _km_axes(ax, crs_name, ext, labels=False)
        ax.tick_params(labelsize=7)
        ax.set_title(f"{st.label} [{units}]\n{stem}", fontsize=8.5)
    fig.supxlabel(f"x, y [km] ({crs_name}); red circles: top {len(tx)} sites", fontsize=8)
    return _png(fig)


# --- charts ---------------------------------------------------------------------------------


def importances_png(record: Mapping[str, Any]) -> bytes | None:
    """Permutation importances of the learned model (mean and standard deviation over repeats).

    From ``record['learned']['permutation_importances']`` (:func:`prospect.sites.learn.
    permutation_importances`: drop in average precision when a feature is shuffled;
    Breiman 2001). None when the record has none.
    """
    rows = list((record.get("learned") or {}).get("permutation_importances") or [])
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: (float(r["importance_mean"]), r["feature"]))
    names = [r["feature"] for r in rows]
    mean = np.array([float(r["importance_mean"]) for r in rows])
    std = np.array([float(r.get("importance_std") or 0.0) for r in rows])
    fig = _figure(7.5, 0.9 + 0.32 * len(rows))
    ax = fig.add_axes((0.33, 0.12 if len(rows) > 6 else 0.2, 0.62, 0.78 if len(rows) > 6 else 0.68))
    ax.barh(np.arange(len(rows)), mean, xerr=std, color="#2563eb", ecolor="black", capsize=3, height=0.65)
    ax.set_yticks(np.arange(len(rows)), names, fontsize=8)
    ax.axvline(0.0, color="black", lw=0.6)
    ax.set_xlabel("drop in average precision when the feature is shuffled (mean ± std over repeats)", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def criteria_png(record: Mapping[str, Any]) -> bytes | None:
    """Weights of the multi-criteria scoring (``record['criteria']``), coloured by direction."""
    from matplotlib.patches import Patch

    crits = list(record.get("criteria") or [])
    if not crits:
        return None
    crits = sorted(crits, key=lambda c: (float(c["weight"]), c["name"]))
    colours = {"benefit": "#16a34a", "cost": "#dc2626"}
    fig = _figure(7.5, 0.9 + 0.32 * len(crits))
    ax = fig.add_axes((0.33, 0.12 if len(crits) > 6 else 0.2, 0.62, 0.78 if len(crits) > 6 else 0.68))
    ax.barh(
        np.arange(len(crits)),
        [float(c["weight"]) for c in crits],
        height=0.65,
        color=[colours.get(c.get("direction"), "#6b7280") for c in crits],
    )
    ax.set_yticks(np.arange(len(crits)), [f"{c['name']} [{c.get('unit') or '1'}]" for c in crits], fontsize=8)
    ax.set_xlabel("weight (sums to 1)", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(
        handles=[
            Patch(color=colours["benefit"], label="benefit (higher is better)"),
            Patch(color=colours["cost"], label="cost (lower is better)"),
        ],
        fontsize=8,
        loc="lower right",
    )
    return _png(fig)


def intervals_png(sites: Any, top_k: int, *, p_col: str | None = None) -> bytes:
    """Score of each top site with its 90 % Monte Carlo interval (``score_p05``..``score_p95``).

    ``p_col`` (e.g. ``p_top10``) is printed beside each interval.
    """
    top = top_sites(sites, top_k)
    n = len(top)
    height = 1.15 + 0.34 * n
    fig = _figure(8.0, height)
    ax = fig.add_axes((0.2, 0.55 / height, 0.64, (height - 0.95) / height))
    y = np.arange(n)[::-1]
    s = top["score"].to_numpy(float)
    lo, hi = top["score_p05"].to_numpy(float), top["score_p95"].to_numpy(float)
    ax.hlines(y, lo, hi, color="#2563eb", lw=2.2, label="90 % interval (score_p05 – score_p95)")
    ax.plot(s, y, "o", color=TOP_COLOUR, ms=6, label="score", zorder=3)
    if "score_p50" in top:
        ax.plot(top["score_p50"].to_numpy(float), y, "|", color="black", ms=10, label="median of draws")
    ax.set_yticks(y, [f"{int(r)}. {sid}" for r, sid in zip(top["rank"], top["site_id"])], fontsize=8)
    ax.set_xlabel("combined score (0–1)", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.set_ylim(-0.7, n - 0.3)
    if p_col and p_col in top:
        k = p_col.removeprefix("p_top")
        for yi, p in zip(y, top[p_col].to_numpy(float)):
            ax.annotate(
                f"P(top {k}) {p:.0%}",
                (1.0, yi),
                xycoords=("axes fraction", "data"),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
    ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=3, frameon=False)
    return _png(fig)


def reliability_png(record: Mapping[str, Any]) -> bytes | None:
    """Reliability diagram of the spatial cross-validation (``learned.spatial_cv.reliability``).

    Mean predicted probability against the observed fraction of expert-region candidates
    per bin (DeGroot & Fienberg 1983); marker area ~ count. None when absent.
    """
    rows = [
        r for r in ((record.get("learned") or {}).get("spatial_cv") or {}).get("reliability") or [] if r.get("count")
    ]
    if not rows:
        return None
    pred = np.array([float(r["mean_predicted"]) for r in rows])
    obs = np.array([float(r["observed_fraction"]) for r in rows])
    count = np.array([float(r["count"]) for r in rows])
    fig = _figure(4.6, 4.3)
    ax = fig.add_axes((0.16, 0.13, 0.78, 0.8))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfectly calibrated")
    ax.plot(pred, obs, "-", color="#2563eb", lw=1)
    ax.scatter(
        pred,
        obs,
        s=12 + 200 * np.sqrt(count / count.max()),
        color="#2563eb",
        zorder=3,
        label="bins (area ~ candidates)",
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("mean predicted probability", fontsize=8)
    ax.set_ylabel("observed fraction in expert regions", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    return _png(fig)


def _float_or_nan(value: Any) -> float:
    """A table cell as a float: NaN when missing (None, NULL, absent column) or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def power_series_figure(
    series: Mapping[Any, Any],
    table: Any = None,
    *,
    max_sites: int = 5,
    days: float | None = None,
) -> bytes | None:
    """Visible fraction of the solar disk against time at the top sites, one panel per site and
    one line per mast height (:func:`prospect.sites.power.site_power`'s ``series``: site_id ->
    ``(times, disk_fraction (n_heights, n_steps), heights_m)``, in the order to draw).

    ``days`` None: daily means over the whole span (nights show as runs at 0); a number: every
    time step of the first ``days`` days. ``table`` (the power table) adds each height's
    illumination fraction, longest night (no limb up) and longest usable night (the battery's)
    to the panel titles, and its ``min_disk_fraction`` as a dashed line: the share of the disk a
    time step needs up for usable sunlight (the test is per time step; against daily means the
    line is a guide). PNG bytes; None without series.
    """
    items = list(series.items())[: max(int(max_sites), 0)]
    if not items:
        return None
    colours = ("#f59e0b", "#2563eb", "#16a34a", "#dc2626", "#7c3aed")
    fig = _figure(7.5, 0.6 + 1.55 * len(items))
    axes = fig.subplots(len(items), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (sid, s) in zip(axes, items):
        times, frac = np.asarray(s[0]), np.atleast_2d(np.asarray(s[1], dtype="float64"))
        heights = tuple(s[2]) if len(s) > 2 else tuple(range(frac.shape[0]))
        dated = times.dtype.kind == "M"
        if dated:
            step_h = float(np.diff(times[:2]).astype("timedelta64[s]").astype("float64")[0]) / 3600.0
        else:  # Julian dates
            step_h = float(np.diff(times[:2])[0]) * 24.0
        if days is None:
            per = max(1, round(24.0 / step_h))
            n = (frac.shape[1] // per) * per
            x = times[:n:per]
            y = frac[:, :n].reshape(frac.shape[0], -1, per).mean(axis=2)
            what = "daily mean"
        else:
            n = min(frac.shape[1], int(math.ceil(float(days) * 24.0 / step_h)))
            x, y = times[:n], frac[:, :n]
            what = "per time step"
        if not dated:
            x = (np.asarray(x, dtype="float64") - float(times[0])) / 365.25
        titles = []
        threshold = math.nan
        for h in heights:
            if table is not None:
                rows = table[(table["site_id"] == sid) & (table["height_m"] == h)]
                if len(rows):
                    r = rows.iloc[0]
                    usable = _float_or_nan(r.get("longest_usable_night_h"))  # absent from older tables
                    titles.append(f"{h:g} m: lit {100 * r['illumination_fraction']:.0f} %, "
                                  f"longest night {r['longest_night_h']:.0f} h"
                                  + (f" (usable {usable:.0f} h)" if math.isfinite(usable) else ""))  # fmt: skip
                    if math.isnan(threshold):
                        threshold = _float_or_nan(r.get("min_disk_fraction"))
        if math.isfinite(threshold) and threshold > 0.0:  # drawn first: under the series, last in the legend
            ax.axhline(threshold, color="#6b7280", lw=0.7, ls="--",
                       label=f"usable sunlight: {threshold:g} of the disk up per step")  # fmt: skip
        for k in reversed(range(len(heights))):  # the lower masts (less light) drawn over the higher
            ax.plot(x, y[k], lw=0.6, color=colours[k % len(colours)], label=f"{heights[k]:g} m mast")
        ax.set_title(f"site {sid}" + (" — " + "; ".join(titles) if titles else ""), fontsize=8, loc="left")
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(f"solar disk\n({what})", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    axes[0].legend(
        handles[::-1], labels[::-1], fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.15), ncols=4, frameon=False
    )
    axes[-1].set_xlabel("UTC" if np.asarray(items[0][1][0]).dtype.kind == "M" else "years from the start", fontsize=8)
    height_in = 0.6 + 1.55 * len(items)
    fig.subplots_adjust(left=0.11, right=0.98, top=1.0 - 0.55 / height_in, bottom=0.45 / height_in, hspace=0.45)
    return _png(fig)
