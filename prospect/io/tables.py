"""Binned lat/lon tables: the Lunar Prospector GRS/NS reduced ASCII products (``lp-grs-table``).

The PDS Geosciences Node's Lunar Prospector "reduced special products"
(https://pds-geosciences.wustl.edu/missions/lunarp/reduced_special.html) are plain
ASCII tables, often shipped gzipped: ``#`` header lines, e.g. ::

    # Titanium data as described by Prettyman et al., 33rd LPSC, Abstract #xxxx, 2002; ...
    # This file contains 1790 binned values
    # for the Lunar Prospector "Titanium_5deg" dataset of June, 2002.
    # These data are in units of Ti weight percent.

then one row per cell, ``lat_min, lat_max, lon_min, lon_max, value``, longitudes east in
-180..180. Two layouts exist in ``../shared/data/lp_grs``:

- 0.5 x 0.5 deg regular cells, 259,200 rows: FeO wt% (``MoonFe``; Lawrence et al. 2002,
  JGR 107(E12), 5130, doi:10.1029/2001JE001530), Th ppm (``MoonTh``), and the NS
  hydrogen map (Feldman et al. 2001, JGR 106(E10), 23231);
- 5 deg quasi-equal-area cells, 1,790 rows: latitude bands of 5 deg (2.5 deg caps at
  the poles), each cut into a number of longitude cells that shrinks toward the poles
  (80 at the equator, 8 at 82.5-87.5, one cap cell): Ti and Al wt% (Prettyman et al.
  2006, JGR 111, E12007, doi:10.1029/2005JE002656; preliminary release of 2002).

:func:`read_binned_table` reads either (or any table of the same form) into a
:class:`BinnedTable` and checks that the file is what it says: every row five numbers,
the row count the header declares, latitudes in [-90, 90] with min < max, and cells
that tile the sphere exactly: latitude bands that follow one another from -90 to 90
without gap or overlap, in every band longitude intervals that are contiguous and
cover exactly 360 deg (periodically: the band may start anywhere), and a summed exact
cell area of ``4 pi R^2`` to 1e-9 relative. Units in the header must agree with the
data manifest's. Every failure is a one-line :class:`~prospect.errors.ProspectError`
starting with the path.

Values are physical as stored (the manifests' ``value_rule``: no scaling, no fill
value). The maps are smoothed: their effective resolution (~50 km or more, the
instruments' footprints) is coarser than the cells.
"""

from __future__ import annotations

import gzip
import io
import re
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prospect import lunar
from prospect.errors import CorruptProductError, FormatError, InputNotFoundError, LabelError, UnitsError
from prospect.io.manifests import Manifest

#: Table formats (manifest ``format``) this module reads.
TABLE_FORMATS: tuple[str, ...] = ("lp-grs-table",)
#: Tolerance on cell edges [deg]: the tables print edges with 2 decimals, so touching
#: cells repeat the same printed number and agree exactly; 1e-6 only absorbs parsing.
EDGE_TOLERANCE_DEG = 1e-6
#: Relative tolerance of the summed exact cell area against ``4 pi R^2``.
AREA_TOLERANCE = 1e-9
#: Band stride of the sorted lookup keys (``band * stride + lon offset``); > 360.
_KEY_STRIDE = 1024.0

_GZIP_MAGIC = b"\x1f\x8b"
_COUNT_RE = re.compile(r"contains\s+(\d+)\s+binned\s+values", re.IGNORECASE)
_UNITS_RE = re.compile(r"in\s+units\s+of\s+(.+?)\s*\.?\s*$", re.IGNORECASE)
_PRODUCT_RE = re.compile(r'"([^"]+)"\s+dataset', re.IGNORECASE)
_ELEMENT_RE = re.compile(r"^\s*([A-Za-z]+)\s+data\s+as\s+described", re.IGNORECASE)
_RULE_QUANTITY_RE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9]*)_(?:ppm|ppb|wt%)", re.IGNORECASE)
#: Unit phrases that end a header's "units of <quantity> <unit>" (longest first).
_UNIT_PHRASES = ("weight percent", "wt.%", "wt%", "ppm", "ppb")
#: Element names in LP headers and product ids -> symbols.
_ELEMENTS = {
    "titanium": "Ti",
    "aluminum": "Al",
    "aluminium": "Al",
    "iron": "Fe",
    "thorium": "Th",
    "hydrogen": "H",
    "potassium": "K",
    "uranium": "U",
    "magnesium": "Mg",
    "calcium": "Ca",
    "oxygen": "O",
    "silicon": "Si",
    "samarium": "Sm",
    "gadolinium": "Gd",
}


@dataclass(frozen=True)
class CellIndex:
    """The cells sorted by latitude band, then by longitude within the band, for lookups.

    Band ``k`` spans ``band_lat[k] .. band_lat[k + 1]`` and starts at longitude
    ``band_lon0[k]``; its cells are sorted positions ``ptr[k] : ptr[k + 1]``, cell ``p``
    beginning ``offset[p]`` deg east of the band start. ``key = band * stride + offset``
    increases strictly, so one ``searchsorted`` finds the cell of any (band, lon).
    ``width[p]`` is the cell's longitude width, ``cum[p]`` the integral of value d(lon)
    [value x deg] from the band start to the start of cell ``p``, ``total[k]`` the
    integral over the whole band.
    """

    band_lat: np.ndarray
    band_lon0: np.ndarray
    ptr: np.ndarray
    order: np.ndarray
    offset: np.ndarray
    key: np.ndarray
    value: np.ndarray
    width: np.ndarray
    cum: np.ndarray
    total: np.ndarray

    @property
    def nbands(self) -> int:
        return self.band_lon0.size

    def band_of(self, lat: np.ndarray) -> np.ndarray:
        """Band of each latitude (a point on a band edge belongs to the band north of it), -1 outside."""
        lat = np.asarray(lat, dtype="float64")
        k = np.searchsorted(self.band_lat[:-1], lat, side="right") - 1
        inside = (lat >= self.band_lat[0]) & (lat <= self.band_lat[-1])
        return np.where(inside, np.clip(k, 0, self.nbands - 1), -1)

    def position(self, band: np.ndarray, lon: np.ndarray, *, from_west: bool = False) -> np.ndarray:
        """Sorted position of the cell holding ``lon`` in ``band`` (any longitude convention).

        A longitude on a cell edge belongs to the cell east of it, or with
        ``from_west=True`` to the cell west of it (the cell an interval ending there uses).
        """
        band = np.asarray(band)
        rel = np.asarray(lon, dtype="float64") - self.band_lon0[band]
        if from_west:
            u = 360.0 - np.mod(-rel, 360.0)  # in (0, 360]
            pos = np.searchsorted(self.key, band * _KEY_STRIDE + u, side="left") - 1
        else:
            u = np.mod(rel, 360.0)  # in [0, 360)
            pos = np.searchsorted(self.key, band * _KEY_STRIDE + u, side="right") - 1
        return np.clip(pos, self.ptr[band], self.ptr[band + 1] - 1)

    def integral(self, band: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Integral of value d(lon) [value x deg] in ``band`` from its start to ``lon``, periodically.

        Piecewise linear in lon with slope the cell value; one turn adds ``total[band]``.
        """
        band = np.asarray(band)
        rel = np.asarray(lon, dtype="float64") - self.band_lon0[band]
        turns = np.floor(rel / 360.0)
        u = rel - 360.0 * turns
        pos = np.searchsorted(self.key, band * _KEY_STRIDE + u, side="right") - 1
        pos = np.clip(pos, self.ptr[band], self.ptr[band + 1] - 1)
        return turns * self.total[band] + self.cum[pos] + self.value[pos] * (u - self.offset[pos])


#: Transitional: resources/binned.py still imports the old private name; remove when it imports CellIndex.


def _line_ref(lines: np.ndarray | None, row: int) -> str:
    return f"line {int(lines[row])}" if lines is not None else f"row {row + 1}"


def _fmt(v: float) -> str:
    return f"{v:g}"


def build_cell_index(
    lat_min: np.ndarray,
    lat_max: np.ndarray,
    lon_min: np.ndarray,
    lon_max: np.ndarray,
    value: np.ndarray,
    *,
    source: str,
    lines: np.ndarray | None = None,
    radius_m: float = lunar.MOON_RADIUS_M,
) -> CellIndex:
    """Check that the cells tile the sphere and index them; :class:`CorruptProductError` otherwise.

    ``lines`` (the 1-based file line of each row) makes messages point at lines.
    """
    tol = EDGE_TOLERANCE_DEG
    n = lat_min.size
    if n == 0:
        raise CorruptProductError(
            f"{source}: no data rows: a binned table has rows lat_min, lat_max, lon_min, lon_max, value"
        )
    for name, arr in (
        ("lat_min", lat_min),
        ("lat_max", lat_max),
        ("lon_min", lon_min),
        ("lon_max", lon_max),
        ("value", value),
    ):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            r = int(bad[0])
            raise CorruptProductError(
                f"{source}: {_line_ref(lines, r)}: {name} is {arr[r]!r}, not a finite number "
                "(these tables have no fill value)"
            )
    bad = np.flatnonzero(
        (lat_min < -90.0 - tol) | (lat_min > 90.0 + tol) | (lat_max < -90.0 - tol) | (lat_max > 90.0 + tol)
    )
    if bad.size:
        r = int(bad[0])
        raise CorruptProductError(
            f"{source}: {_line_ref(lines, r)}: latitude {_fmt(lat_min[r])}..{_fmt(lat_max[r])} is outside [-90, 90]"
        )
    bad = np.flatnonzero(lat_min >= lat_max)
    if bad.size:
        r = int(bad[0])
        raise CorruptProductError(
            f"{source}: {_line_ref(lines, r)}: lat_min {_fmt(lat_min[r])} >= lat_max {_fmt(lat_max[r])}"
        )
    bad = np.flatnonzero(lon_min >= lon_max)
    if bad.size:
        r = int(bad[0])
        raise CorruptProductError(
            f"{source}: {_line_ref(lines, r)}: lon_min {_fmt(lon_min[r])} >= lon_max {_fmt(lon_max[r])}"
        )
    bad = np.flatnonzero(lon_max - lon_min > 360.0 + tol)
    if bad.size:
        r = int(bad[0])
        raise CorruptProductError(
            f"{source}: {_line_ref(lines, r)}: cell {_fmt(lon_min[r])}..{_fmt(lon_max[r])} "
            "is wider than 360 deg of longitude"
        )

    order = np.lexsort((lon_min, lat_max, lat_min))
    bmin_s, bmax_s = lat_min[order], lat_max[order]
    new_band = np.ones(n, dtype=bool)
    new_band[1:] = (np.abs(np.diff(bmin_s)) > tol) | (np.abs(np.diff(bmax_s)) > tol)
    starts = np.flatnonzero(new_band)
    ptr = np.append(starts, n)
    bmin, bmax = bmin_s[starts], bmax_s[starts]

    def band_name(k: int) -> str:
        return f"latitude band {_fmt(bmin[k])}..{_fmt(bmax[k])}"

    # the bands follow one another from -90 to 90
    if abs(bmin[0] + 90.0) > tol:
        raise CorruptProductError(
            f"{source}: cells do not tile the sphere: gap between latitude -90 and {_fmt(bmin[0])} (no cell there)"
        )
    if abs(bmax[-1] - 90.0) > tol:
        raise CorruptProductError(
            f"{source}: cells do not tile the sphere: gap between latitude {_fmt(bmax[-1])} and 90 (no cell there)"
        )
    step = bmin[1:] - bmax[:-1]
    bad = np.flatnonzero(np.abs(step) > tol)
    if bad.size:
        k = int(bad[0])
        first, second = int(order[ptr[k]]), int(order[ptr[k + 1]])
        if step[k] < 0:
            raise CorruptProductError(
                f"{source}: cells overlap: {band_name(k)} ({_line_ref(lines, first)}) and {band_name(k + 1)} "
                f"({_line_ref(lines, second)}) share latitudes {_fmt(bmin[k + 1])}..{_fmt(min(bmax[k], bmax[k + 1]))}"
            )
        raise CorruptProductError(
            f"{source}: cells do not tile the sphere: gap between latitude {_fmt(bmax[k])} and "
            f"{_fmt(bmin[k + 1])} (no cell there)"
        )

    # within a band, longitude intervals are contiguous...
    lo_s, hi_s = lon_min[order], lon_max[order]
    same_band = ~new_band[1:]
    step = lo_s[1:] - hi_s[:-1]
    bad = np.flatnonzero(same_band & (np.abs(step) > tol))
    if bad.size:
        p = int(bad[0])
        k = int(np.searchsorted(starts, p, side="right") - 1)
        a, b = int(order[p]), int(order[p + 1])
        if step[p] < 0:
            raise CorruptProductError(
                f"{source}: cells overlap in {band_name(k)}: lon {_fmt(lo_s[p])}..{_fmt(hi_s[p])} "
                f"({_line_ref(lines, a)}) and {_fmt(lo_s[p + 1])}..{_fmt(hi_s[p + 1])} ({_line_ref(lines, b)})"
            )
        raise CorruptProductError(
            f"{source}: cells do not tile the sphere: gap in {band_name(k)} between lon {_fmt(hi_s[p])} "
            f"({_line_ref(lines, a)}) and {_fmt(lo_s[p + 1])} ({_line_ref(lines, b)})"
        )
    # ... and cover exactly one turn
    span = hi_s[ptr[1:] - 1] - lo_s[ptr[:-1]]
    bad = np.flatnonzero(np.abs(span - 360.0) > tol)
    if bad.size:
        k = int(bad[0])
        first, last = ptr[k], ptr[k + 1] - 1
        if span[k] > 360.0:
            raise CorruptProductError(
                f"{source}: cells overlap in {band_name(k)}: lon {_fmt(lo_s[first])}..{_fmt(hi_s[last])} wraps "
                f"{_fmt(span[k] - 360.0)} deg past a full turn ({_line_ref(lines, int(order[first]))} and "
                f"{_line_ref(lines, int(order[last]))})"
            )
        raise CorruptProductError(
            f"{source}: cells do not tile the sphere: {band_name(k)} covers lon {_fmt(lo_s[first])}.."
            f"{_fmt(hi_s[last])}, {_fmt(span[k])} of 360 deg (missing {_fmt(hi_s[last])}..{_fmt(lo_s[first] + 360.0)})"
        )

    # the exact areas add up to the sphere
    area = float(np.sum(lunar.cell_area_m2(lat_min, lat_max, lon_max - lon_min, radius_m=radius_m)))
    sphere = 4.0 * np.pi * radius_m**2
    if abs(area / sphere - 1.0) > AREA_TOLERANCE:
        raise CorruptProductError(
            f"{source}: cells do not tile the sphere: their exact areas sum to {area / sphere:.12f} of 4 pi R^2"
        )

    band_of_pos = np.repeat(np.arange(starts.size), np.diff(ptr))
    band_lon0 = lo_s[starts]
    offset = lo_s - band_lon0[band_of_pos]
    val_s = value[order].astype("float64")
    contrib = val_s * (hi_s - lo_s)
    csum = np.cumsum(contrib)
    band_base = np.concatenate(([0.0], csum[ptr[1:-1] - 1]))
    cum = np.concatenate(([0.0], csum[:-1])) - band_base[band_of_pos]
    total = csum[ptr[1:] - 1] - band_base
    return CellIndex(
        band_lat=np.append(bmin, bmax[-1]),
        band_lon0=band_lon0,
        ptr=ptr,
        order=order,
        offset=offset,
        key=band_of_pos * _KEY_STRIDE + offset,
        value=val_s,
        width=hi_s - lo_s,
        cum=cum,
        total=total,
    )


@dataclass(frozen=True, eq=False)
class BinnedTable:
    """A binned lat/lon table covering the sphere (cells in file order).

    ``lat_min .. lat_max`` x ``lon_min .. lon_max`` [deg, planetocentric, east] hold
    ``value`` (float64 arrays, one entry per cell). ``quantity`` is what is measured
    (``"Ti"``, ``"FeO"``, ``"Th"``, ``"Al"``, ``"H"``), ``units`` its unit (``"wt%"``,
    ``"ppm"``); ``product_id``, ``source_path``, ``source_sha256``, ``manifest_id`` and
    ``citation`` say where it came from, ``header`` keeps the file's ``#`` lines.
    """

    lat_min: np.ndarray
    lat_max: np.ndarray
    lon_min: np.ndarray
    lon_max: np.ndarray
    value: np.ndarray
    quantity: str
    units: str
    product_id: str
    source_path: str
    source_sha256: str | None = None
    manifest_id: str | None = None
    citation: str | None = None
    header: str = ""
    #: the cells sorted by band and longitude for lookups, built from the arrays above
    _index: CellIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("lat_min", "lat_max", "lon_min", "lon_max", "value"):
            arr = np.array(getattr(self, name), dtype="float64", copy=True)  # ours, read-only
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        sizes = {getattr(self, n).shape for n in ("lat_min", "lat_max", "lon_min", "lon_max", "value")}
        if len(sizes) != 1 or len(next(iter(sizes))) != 1:
            raise FormatError(
                f"{self.source_path}: lat_min, lat_max, lon_min, lon_max and value must be 1-D arrays "
                f"of one length, not shapes {sorted(sizes)}"
            )
        object.__setattr__(
            self,
            "_index",
            build_cell_index(
                self.lat_min, self.lat_max, self.lon_min, self.lon_max, self.value, source=self.source_path
            ),
        )

    def __len__(self) -> int:
        return int(self.value.size)

    def __repr__(self) -> str:
        return (
            f"BinnedTable({self.product_id!r}: {len(self)} cells of {self.quantity} [{self.units}] "
            f"from {Path(self.source_path).name})"
        )

    def cell_areas_m2(self) -> np.ndarray:
        """Exact area of every cell on the lunar sphere [m^2] (:func:`prospect.lunar.cell_area_m2`)."""
        return lunar.cell_area_m2(self.lat_min, self.lat_max, self.lon_max - self.lon_min)

    def area_weighted_mean(self) -> float:
        """The mean over the sphere: ``sum(area * value) / sum(area)`` with exact cell areas."""
        area = self.cell_areas_m2()
        return float(np.sum(area * self.value) / np.sum(area))

    @property
    def lookup(self) -> CellIndex:
        """The cells sorted by band and longitude, with cumulative sums for exact integrals
        (what :mod:`prospect.resources.binned` rasterizes with)."""
        return self._index

    def cell_index(self, lon: Any, lat: Any) -> np.ndarray:
        """Row (file order) of the cell containing each point, -1 where ``lat`` is outside [-90, 90] or NaN.

        ``lon`` in any convention (-180..180, 0..360, or beyond: it is taken modulo 360);
        a point on a cell edge belongs to the cell east / north of it (90 N to the top
        band). Vectorised: ``lon`` and ``lat`` broadcast.
        """
        lon, lat = np.broadcast_arrays(np.asarray(lon, dtype="float64"), np.asarray(lat, dtype="float64"))
        idx = self._index
        band = idx.band_of(lat)
        ok = (band >= 0) & np.isfinite(lon)
        rows = np.full(lat.shape, -1, dtype="int64")
        if ok.any():
            rows[ok] = idx.order[idx.position(band[ok], lon[ok])]
        return rows

    def value_at(self, lon: Any, lat: Any) -> Any:
        """Value of the cell containing each point (NaN outside [-90, 90]); see :meth:`cell_index`."""
        rows = self.cell_index(lon, lat)
        out = np.where(rows >= 0, self.value[np.clip(rows, 0, None)], np.nan)
        return float(out) if out.ndim == 0 else out


# --- reading ------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise InputNotFoundError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise CorruptProductError(f"{path}: corrupt or truncated gzip ({exc}); fetch the file again") from None
    elif path.suffix.lower() == ".gz":
        raise CorruptProductError(f"{path}: named .gz but not gzip data (first bytes {raw[:4]!r})")
    return raw.decode("latin-1")


def _parse_rows(data: list[str], numbers: np.ndarray, source: str) -> np.ndarray:
    """``(n, 5)`` float64 from the data lines; the first malformed row raises with its line number."""
    commas = np.fromiter((s.count(",") for s in data), dtype=np.int64, count=len(data))
    bad = np.flatnonzero(commas != 4)
    if bad.size:
        r = int(bad[0])
        _malformed(source, int(numbers[r]), data[r], f"{commas[r] + 1} fields")
    import pandas as pd

    try:
        frame = pd.read_csv(
            io.StringIO("\n".join(data)),
            header=None,
            names=range(5),
            dtype=np.float64,
            engine="c",
            skipinitialspace=True,
            na_filter=False,
        )
        values = frame.to_numpy(dtype=np.float64)
        if values.shape != (len(data), 5):
            raise ValueError("row count")
    except (ValueError, pd.errors.ParserError):
        for r, s in enumerate(data):  # the error path only: find the row
            try:
                row = [float(v) for v in s.split(",")]
            except ValueError:
                _malformed(source, int(numbers[r]), s, "a field that is not a number")
            if not all(np.isfinite(row)):
                _malformed(source, int(numbers[r]), s, "not a finite number; these tables have no fill value")
        raise CorruptProductError(f"{source}: unparsable data rows") from None
    return values


def _malformed(source: str, line: int, text: str, what: str) -> None:
    shown = text.strip()
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise CorruptProductError(
        f"{source}: line {line}: malformed row {shown!r} ({what}); expected 5 comma-separated "
        "numbers lat_min, lat_max, lon_min, lon_max, value"
    )


def _header_units(header: list[str], source: str) -> tuple[str | None, str | None]:
    """``(quantity, units)`` from a ``These data are in units of <quantity> <unit>.`` line."""
    from prospect.layers import normalise_units

    for line in header:
        m = _UNITS_RE.search(line)
        if not m:
            continue
        phrase = " ".join(m.group(1).split())
        low = phrase.lower()
        for unit in _UNIT_PHRASES:
            if low == unit:
                return None, normalise_units(unit, source)
            if low.endswith(" " + unit):
                return phrase[: -len(unit)].strip() or None, normalise_units(unit, source)
        return None, normalise_units(phrase, source)
    return None, None


def _element(word: str | None) -> str | None:
    if not word:
        return None
    head = re.split(r"[_\s]", word.strip())[0].lower()
    return _ELEMENTS.get(head)


def _quantity(
    header: list[str], header_q: str | None, manifest: Manifest | None, header_product: str | None
) -> str | None:
    """What the table measures: the header's units line, else its first line, else the manifest."""
    if header_q:
        return header_q
    for line in header:
        m = _ELEMENT_RE.match(line)
        if m and _element(m.group(1)):
            return _element(m.group(1))
    if manifest is not None:
        m = _RULE_QUANTITY_RE.match(str(manifest.get("value_rule", "")))
        if m:
            return m.group(1)
        if _element(str(manifest.get("product_id", ""))):
            return _element(str(manifest.get("product_id", "")))
    return _element(header_product)


def read_binned_table(source: str | Path, *, strict: bool = False) -> BinnedTable:
    """Read a Lunar Prospector GRS/NS binned ASCII table (gzipped or plain) or its manifest id.

    ``source`` is a path or a data-manifest id of format ``lp-grs-table`` (located and
    verified by :func:`prospect.io.fetch.ensure_local`; ``strict`` refuses files whose
    manifest publishes no checksum). A path that a manifest lists (same name and
    sha256) takes that manifest's product id, units and citation.

    Raises (one line, starting with the path): :class:`InputNotFoundError` for a missing
    file; :class:`CorruptProductError` for a truncated or corrupt gzip, a malformed row
    (with its line number), a row count that differs from the header's "This file
    contains N binned values", latitudes outside [-90, 90] or ``min >= max``, and cells
    that overlap or leave a gap (which band, which longitudes, which lines);
    :class:`UnitsError` for header units unknown or contradicting the manifest's
    ``units``; :class:`FormatError` for a manifest of another format.

    Reads the 259,200-row 0.5 deg tables in about 0.3 s (pandas' C parser).
    """
    from prospect.io.fetch import sha256_file
    from prospect.io.manifests import manifest_for_file
    from prospect.io.readers import resolve_source

    path, manifest = resolve_source(source, strict)
    digest = sha256_file(path)
    if manifest is None:
        manifest = manifest_for_file(path, digest)
    src = str(path)
    if manifest is not None and manifest.format not in TABLE_FORMATS:
        raise FormatError(
            f"{src}: manifest {manifest.id} says format {manifest.format!r}, not a binned table "
            f"({', '.join(TABLE_FORMATS)}); open rasters with prospect.io.readers.open_product"
        )
    lines = _read_text(path).splitlines()
    header, data, numbers = [], [], []
    for i, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            header.append(stripped.lstrip("#").strip())
        else:
            data.append(line)
            numbers.append(i)
    line_numbers = np.asarray(numbers, dtype=np.int64)
    if not data:
        raise CorruptProductError(
            f"{src}: no data rows (only {len(header)} header lines): the file is truncated or not a binned table"
        )
    values = _parse_rows(data, line_numbers, src)

    header_text = "\n".join(header)
    count = _COUNT_RE.search(header_text)
    if count and int(count.group(1)) != len(data):
        raise CorruptProductError(
            f"{src}: the header says it contains {int(count.group(1))} binned values but the file has {len(data)} "
            f"data rows: truncated, padded, or a header that lies"
        )
    header_q, header_units = _header_units(header, src)
    if manifest is not None:
        if header_units is not None and header_units != manifest.units:
            raise UnitsError(
                f"{src}: the header says units {header_units!r} but manifest {manifest.id} says {manifest.units!r}"
            )
        units = manifest.units
    elif header_units is not None:
        units = header_units
    else:
        warnings.warn(f"{src}: no units in the header and no manifest: units recorded as 'unspecified'", stacklevel=2)
        units = "unspecified"
    product = _PRODUCT_RE.search(header_text)
    header_product = product.group(1) if product else None
    quantity = _quantity(header, header_q, manifest, header_product)
    if manifest is not None:
        rule = _RULE_QUANTITY_RE.match(str(manifest.get("value_rule", "")))
        if rule and quantity and rule.group(1).lower() != quantity.lower():
            raise LabelError(
                f"{src}: the header says the values are {quantity} but manifest {manifest.id} "
                f"says {rule.group(1)} ({' '.join(str(manifest['value_rule']).split())[:60]}...)"
            )
    lat_min, lat_max, lon_min, lon_max, value = (np.ascontiguousarray(values[:, k]) for k in range(5))
    build_cell_index(lat_min, lat_max, lon_min, lon_max, value, source=src, lines=line_numbers)  # errors name lines
    citation: str | None
    if manifest is not None:
        product_id = str(manifest["product_id"])
        citation = " ".join(str(manifest["citation"]).split())
    else:
        product_id = header_product or path.name.split(".")[0]
        described = next((h for h in header if "as described" in h.lower()), None)
        citation = described
    return BinnedTable(
        lat_min=lat_min,
        lat_max=lat_max,
        lon_min=lon_min,
        lon_max=lon_max,
        value=value,
        quantity=quantity or "unknown",
        units=units,
        product_id=product_id,
        source_path=src,
        source_sha256=digest,
        manifest_id=manifest.id if manifest is not None else None,
        citation=citation,
        header=header_text,
    )


def _looks_like_table(path: Path) -> bool:
    try:
        with gzip.open(path, "rt", errors="replace") if path.suffix == ".gz" else open(path, errors="replace") as fh:
            head = fh.read(256)
    except (OSError, EOFError):
        return False
    return head.lstrip().startswith("#")


def is_binned_table_source(source: str) -> bool:
    """Whether ``source`` (a path or manifest id) is a binned table (``lp-grs-table``) rather than a raster."""
    from prospect.io.manifests import is_manifest_id, load_manifest

    if is_manifest_id(source):
        return load_manifest(source).format == "lp-grs-table"
    p = Path(source)
    return p.is_file() and p.suffix.lower() in (".gz", ".data", ".txt", ".tab", ".dat") and _looks_like_table(p)
