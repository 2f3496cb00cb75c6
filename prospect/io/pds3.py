"""PDS3 labels and raw images: the parser, the Chang'e dialect, and a lazy raw-array source.

GDAL opens LOLA labels but exposes OFFSET (the 1737.4 km reference radius) as a value
offset, and cannot open Chang'e products at all (GDAL issue 796: an IMAGE_PREFIX table
before the image). prospect therefore parses every PDS3 label itself and reads the raw
array with the offsets, prefixes and record lengths the label states, checking the
label against the file before trusting it.

The parser follows the PDS3 Standards Reference (ODL, chapter 12) and tolerates what
real Chang'e labels do: tab indentation, empty values (``DATA_SET_ID =``), times ending
in a lowercase ``z``, and ``^POINTER = n`` record pointers into the label's own file.
A truncated or malformed label raises :class:`~prospect.errors.LabelError` naming the
file and line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prospect.errors import CorruptProductError, FormatError, LabelError


@dataclass(frozen=True)
class Quantity:
    """A label value with a unit, e.g. ``0.020 <km/pix>``."""

    value: Any
    unit: str

    def __float__(self) -> float:
        return float(self.value)


@dataclass
class Block:
    """An OBJECT or GROUP (or the whole label): ordered statements and nested blocks."""

    name: str
    kind: str = "LABEL"  # LABEL | OBJECT | GROUP
    line: int = 1
    items: list[tuple[str, Any]] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        key = key.upper()
        for k, v in self.items:
            if k == key and not isinstance(v, Block):
                return v
        return default

    def __contains__(self, key: str) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def require(self, key: str, source: str) -> Any:
        v = self.get(key, _MISSING)
        if v is _MISSING or v is None:
            raise LabelError(f"{source}: label has no {key} in {self.kind} {self.name} (line {self.line})")
        return v

    def blocks(self, name: str | None = None) -> list[Block]:
        return [v for _, v in self.items if isinstance(v, Block) and (name is None or v.name == name.upper())]

    def block(self, name: str) -> Block | None:
        found = self.blocks(name)
        return found[0] if found else None

    def walk(self) -> Iterator[Block]:
        yield self
        for b in self.blocks():
            yield from b.walk()


_MISSING = object()

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\f\v]+)
  | (?P<nl>\n)
  | (?P<comment>/\*.*?\*/)
  | (?P<opencomment>/\*)
  | (?P<dq>"(?:[^"])*")
  | (?P<opendq>")
  | (?P<sq>'[^'\n]*')
  | (?P<unit><[^>\n]*>)
  | (?P<punct>[={}(),])
  | (?P<word>[^\s={}(),"'<>]+)
    """,
    re.VERBOSE | re.DOTALL,
)


def _tokens(text: str, source: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos, line = 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise LabelError(f"{source}: line {line}: unexpected character {text[pos]!r} in label")
        kind = m.lastgroup or ""  # every alternative of _TOKEN is a named group
        tok = m.group()
        if kind == "opencomment":
            raise LabelError(f"{source}: line {line}: comment opened with /* is never closed (truncated label?)")
        if kind == "opendq":
            raise LabelError(f"{source}: line {line}: quoted string is never closed (truncated label?)")
        if kind == "nl":
            out.append(("nl", tok, line))
        elif kind not in ("ws", "comment"):
            out.append((kind, tok, line))
        line += tok.count("\n")
        pos = m.end()
    return out


_RADIX = re.compile(r"^(\d+)#([0-9A-Fa-f]+)#$")


def _scalar(tok: str, kind: str) -> Any:
    if kind == "dq":
        return " ".join(tok[1:-1].split()) if "\n" in tok else tok[1:-1]
    if kind == "sq":
        return tok[1:-1]
    m = _RADIX.match(tok)
    if m:
        return int(m.group(2), int(m.group(1)))
    try:
        return int(tok)
    except ValueError:
        pass
    try:
        return float(tok)
    except ValueError:
        return tok


class _Parser:
    def __init__(self, text: str, source: str):
        self.source = source
        self.toks = _tokens(text, source)
        self.i = 0

    def peek(self, skip_nl: bool = True) -> tuple[str, str, int] | None:
        j = self.i
        while j < len(self.toks) and skip_nl and self.toks[j][0] == "nl":
            j += 1
        return self.toks[j] if j < len(self.toks) else None

    def next(self, skip_nl: bool = True) -> tuple[str, str, int] | None:
        while self.i < len(self.toks) and skip_nl and self.toks[self.i][0] == "nl":
            self.i += 1
        if self.i >= len(self.toks):
            return None
        t = self.toks[self.i]
        self.i += 1
        return t

    def take(self) -> tuple[str, str, int]:
        """The next token, which :meth:`peek` has shown to exist."""
        t = self.next()
        if t is None:
            raise LabelError(f"{self.source}: the label ends where a value should be (truncated label?)")
        return t

    def value(self, line: int, *, in_list: bool = False) -> Any:
        t = self.peek(skip_nl=in_list)
        if t is None or t[0] == "nl":
            return None  # Chang'e dialect: an empty value
        kind, tok, tline = self.take()
        if tok in ("{", "("):
            close = "}" if tok == "{" else ")"
            items: list[Any] = []
            while True:
                n = self.peek()
                if n is None:
                    raise LabelError(
                        f"{self.source}: line {tline}: {tok} is never closed with {close} (truncated label?)"
                    )
                if n[1] == close:
                    self.next()
                    break
                if n[1] == ",":
                    self.next()
                    continue
                items.append(self.value(n[2], in_list=True))
            val: Any = tuple(items) if tok == "(" else set_like(items)
        elif kind == "word" and not in_list and self._same_line_word():
            # Chang'e dialect: unquoted text with spaces (PRODUCT_NAME = CCD Stereo Camera ...)
            words = [tok]
            while self._same_line_word():
                words.append(self.take()[1])
            val = " ".join(words)
        elif kind in ("word", "dq", "sq"):
            val = _scalar(tok, kind)
        else:
            raise LabelError(f"{self.source}: line {tline}: unexpected {tok!r} where a value should be")
        n = self.peek(skip_nl=False)
        if n is not None and n[0] == "unit":
            self.next()
            val = Quantity(val, n[1][1:-1].strip())
        return val

    def _same_line_word(self) -> bool:
        t = self.peek(skip_nl=False)
        return t is not None and t[0] == "word"

    def parse(self) -> Block:
        root = Block(name="LABEL", kind="LABEL", line=1)
        stack = [root]
        saw_end = False
        while True:
            t = self.next()
            if t is None:
                break
            kind, tok, line = t
            if kind != "word":
                raise LabelError(f"{self.source}: line {line}: expected a keyword, found {tok!r}")
            key = tok.upper()
            if key == "END":
                saw_end = True
                break
            eq = self.peek(skip_nl=False)
            if eq is None or eq[1] != "=":
                if key in ("END_OBJECT", "END_GROUP"):
                    eq = None
                else:
                    where = "end of file" if eq is None or self.peek() is None else f"{(self.peek() or ('', ''))[1]!r}"
                    raise LabelError(
                        f"{self.source}: line {line}: keyword {tok} has no '=' (found {where}); the label is "
                        "truncated or malformed"
                    )
            if eq is not None:
                self.next()
            if key in ("OBJECT", "GROUP"):
                name_val = self.value(line)
                block = Block(name=str(name_val).upper(), kind=key, line=line)
                stack[-1].items.append((block.name, block))
                stack.append(block)
                continue
            if key in ("END_OBJECT", "END_GROUP"):
                if eq is not None:
                    self.value(line)
                if len(stack) == 1 or stack[-1].kind != key[4:]:
                    raise LabelError(f"{self.source}: line {line}: {key} without a matching {key[4:]}")
                stack.pop()
                continue
            stack[-1].items.append((key, self.value(line)))
        if len(stack) > 1:
            b = stack[-1]
            raise LabelError(
                f"{self.source}: truncated label: {b.kind} = {b.name} opened at line {b.line} is never closed "
                f"(no END_{b.kind} before the end of the label)"
            )
        if not saw_end and not root.items:
            raise LabelError(f"{self.source}: empty label")
        return root


def set_like(items: list[Any]) -> tuple[Any, ...]:
    """PDS sets ``{a, b}`` are kept as tuples (order kept, hashable values not required)."""
    return tuple(items)


def parse_label(text: str, source: str = "label") -> Block:
    """Parse PDS3 ODL label text into a :class:`Block` tree."""
    return _Parser(text, source).parse()


_ATTACHED_MAX = 1 << 20


def read_label(path: Path) -> Block:
    """Parse a detached ``.LBL`` or the attached label at the start of an ``.IMG``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_ATTACHED_MAX)
    except FileNotFoundError:
        raise LabelError(f"{path}: label file not found") from None
    text = head.decode("latin-1")
    if not re.match(r"\s*(PDS_VERSION_ID|ODL_VERSION_ID|CCSD)", text):
        raise LabelError(f"{path}: not a PDS3 label (it does not start with PDS_VERSION_ID)")
    m = re.search(r"^\s*END\s*$", text, re.MULTILINE)
    if m:
        text = text[: m.end()]
    elif len(head) == _ATTACHED_MAX:
        raise LabelError(f"{path}: no END statement in the first MiB: not a PDS3 label or truncated")
    return parse_label(text, source=str(path.name))


# --- pointers and raw arrays --------------------------------------------------------

_SAMPLE_TYPES: dict[str, str] = {
    "LSB_INTEGER": "<i",
    "PC_INTEGER": "<i",
    "VAX_INTEGER": "<i",
    "MSB_INTEGER": ">i",
    "SUN_INTEGER": ">i",
    "MAC_INTEGER": ">i",
    "INTEGER": ">i",
    "LSB_UNSIGNED_INTEGER": "<u",
    "PC_UNSIGNED_INTEGER": "<u",
    "VAX_UNSIGNED_INTEGER": "<u",
    "MSB_UNSIGNED_INTEGER": ">u",
    "SUN_UNSIGNED_INTEGER": ">u",
    "MAC_UNSIGNED_INTEGER": ">u",
    "UNSIGNED_INTEGER": ">u",
    "PC_REAL": "<f",
    "IEEE_REAL": ">f",
    "FLOAT": ">f",
    "REAL": ">f",
    "MSB_REAL": ">f",
    "LSB_REAL": "<f",
}


def sample_dtype(sample_type: str, sample_bits: int, source: str) -> np.dtype:
    st = str(sample_type).upper().replace(" ", "_")
    prefix = _SAMPLE_TYPES.get(st)
    if prefix is None:
        raise FormatError(f"{source}: SAMPLE_TYPE {sample_type!r} is not supported")
    if sample_bits % 8 or sample_bits not in (8, 16, 32, 64):
        raise FormatError(f"{source}: SAMPLE_BITS = {sample_bits} is not supported")
    nbytes = sample_bits // 8
    if nbytes == 1:
        prefix = "|" + prefix[1]
    return np.dtype(f"{prefix}{nbytes}")


def find_file(directory: Path, name: str) -> Path:
    """A file beside the label, matching case-insensitively (PDS names are upper case, URLs lower)."""
    p = directory / name
    if p.exists():
        return p
    low = name.lower()
    for cand in directory.iterdir():
        if cand.name.lower() == low:
            return cand
    raise LabelError(f"{directory / name}: data file named by the label is missing")


def resolve_pointer(label: Block, pointer: str, label_path: Path) -> tuple[Path, int]:
    """File and byte offset of ``^POINTER`` (record pointers are 1-based)."""
    src = label_path.name
    value = label.get(f"^{pointer}")
    if value is None:
        raise LabelError(f"{src}: label has no ^{pointer} pointer")
    record_bytes = label.get("RECORD_BYTES")
    file_name: str | None = None
    loc: Any = 1
    if isinstance(value, tuple):
        file_name, loc = (value[0], value[1]) if len(value) > 1 else (value[0], 1)
    elif isinstance(value, str):
        file_name = value
    else:
        loc = value
    path = find_file(label_path.parent, file_name) if file_name else label_path
    if isinstance(loc, Quantity):
        if loc.unit.upper() not in ("BYTES", "BYTE"):
            raise LabelError(f"{src}: ^{pointer} unit <{loc.unit}> is not BYTES")
        return path, int(loc.value) - 1
    if int(loc) == 1:
        return path, 0
    if record_bytes is None:
        raise LabelError(f"{src}: ^{pointer} is a record pointer but the label has no RECORD_BYTES")
    return path, (int(loc) - 1) * int(record_bytes)


@dataclass(frozen=True)
class RawImageSource:
    """A lazily read raw image band: the array-like dask wraps (``__getitem__`` reads windows).

    Each image line occupies ``line_stride`` bytes starting ``line_prefix`` bytes after the
    line's start (Chang'e products interleave a prefix table row before every line).
    Holds only the path, so it pickles to process workers.
    """

    path: str
    offset: int
    shape: tuple[int, int]
    dtype: np.dtype
    line_prefix: int = 0
    line_stride: int = 0

    @property
    def ndim(self) -> int:
        return 2

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (2 - len(key))
        rows, cols = key
        r0, r1, rstep = rows.indices(self.shape[0]) if isinstance(rows, slice) else (int(rows), int(rows) + 1, 1)
        if isinstance(cols, slice) and (cols.step or 1) == 1:
            c0, c1, _ = cols.indices(self.shape[1])
            cols = slice(None)
        else:  # an index or a strided column selection: read whole lines, select below
            c0, c1 = 0, self.shape[1]
        n = max(0, r1 - r0)
        if n == 0 or c1 <= c0:
            arr = np.empty((n, max(0, c1 - c0)), dtype=self.dtype)
        else:
            arr = self._read_window(r0, n, c0, c1)
        arr = arr[::rstep] if rstep != 1 else arr
        out = arr[:, cols]
        if not isinstance(rows, slice):
            out = out[0]
        return out

    def _read_window(self, r0: int, n: int, c0: int, c1: int) -> np.ndarray:
        """Lines ``r0 .. r0+n`` and samples ``c0 .. c1`` with one ``pread`` per line.

        Only the requested bytes of each line are read: a 1024-pixel-wide chunk of a
        30400-pixel LDEM_80S_20M line costs 2 KB, not the 60 KB line, and nothing is
        mapped into memory (a memory map of the lines made the page cache of every line
        in reach count towards the process's resident memory, 125 MB per chunk read).
        """
        item = self.dtype.itemsize
        stride = self.line_stride or self.shape[1] * item
        width = (c1 - c0) * item
        buf = np.empty((n, width), dtype=np.uint8)
        start = self.offset + r0 * stride + self.line_prefix + c0 * item
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if width == stride:  # whole lines, no prefix: one contiguous read
                got = os.preadv(fd, [buf], start)  # type: ignore[list-item]  # numpy's stubs lack __buffer__
                short = got != buf.nbytes
            else:
                short = False
                for i in range(n):
                    if os.preadv(fd, [buf[i]], start + i * stride) != width:
                        short = True
                        break
        finally:
            os.close(fd)
        if short:
            raise CorruptProductError(f"{self.path}: file ended early while reading lines {r0}..{r0 + n}")
        return buf.view(self.dtype).reshape(n, c1 - c0)


@dataclass(frozen=True)
class ImageLayout:
    """What the label says about one IMAGE object, checked against the file size."""

    source: RawImageSource
    image: Block
    label: Block
    data_path: Path


def image_layout(label: Block, label_path: Path, *, pointer: str = "IMAGE") -> ImageLayout:
    """Locate the IMAGE object and its bytes, handling the Chang'e IMAGE_PREFIX dialect."""
    src = label_path.name
    image = label.block(pointer)
    if image is None:
        for b in label.walk():  # LOLA nests IMAGE inside UNCOMPRESSED_FILE
            if b.name == pointer and b.kind == "OBJECT":
                image = b
                break
    if image is None:
        raise LabelError(f"{src}: label has no OBJECT = {pointer}")
    owner = next((b for b in label.walk() if b.get(f"^{pointer}") is not None), label)
    if owner is not label and owner.get("RECORD_BYTES") is None and label.get("RECORD_BYTES") is not None:
        owner.items.append(("RECORD_BYTES", label.get("RECORD_BYTES")))
    data_path, offset = resolve_pointer(owner, pointer, label_path)
    lines = int(image.require("LINES", src))
    samples = int(image.require("LINE_SAMPLES", src))
    bands = int(image.get("BANDS", 1))
    dtype = sample_dtype(image.require("SAMPLE_TYPE", src), int(image.require("SAMPLE_BITS", src)), src)
    line_bytes = samples * dtype.itemsize
    prefix = int(image.get("LINE_PREFIX_BYTES", 0) or 0)
    suffix = int(image.get("LINE_SUFFIX_BYTES", 0) or 0)
    image_prefix = label.block("IMAGE_PREFIX")
    if image_prefix is not None and prefix == 0:
        # Chang'e: a table row precedes every image line in the same record. The record
        # holds prefix row + image line; ROW_SUFFIX_BYTES must equal the image line.
        record_bytes = int(owner.get("RECORD_BYTES") or label.require("RECORD_BYTES", src))
        row_suffix = image_prefix.get("ROW_SUFFIX_BYTES")
        if row_suffix is not None and int(row_suffix) != line_bytes:
            raise LabelError(
                f"{src}: IMAGE_PREFIX ROW_SUFFIX_BYTES = {row_suffix} but an IMAGE line is {line_bytes} bytes "
                f"({samples} samples x {dtype.itemsize}): the label contradicts itself"
            )
        prefix = record_bytes - line_bytes - suffix
        if prefix < 0:
            raise LabelError(f"{src}: RECORD_BYTES = {record_bytes} is smaller than an image line ({line_bytes} bytes)")
    if bands != 1:
        raise FormatError(f"{src}: {bands}-band PDS3 images are not supported; extract one band first")
    stride = prefix + line_bytes + suffix
    expected_end = offset + lines * stride
    size = data_path.stat().st_size
    if size < expected_end:
        raise CorruptProductError(
            f"{data_path.name}: truncated: the file has {size:,} bytes but {src} describes {expected_end:,} "
            f"({lines} lines x {stride} bytes from byte {offset}); re-download it"
        )
    record = int(owner.get("RECORD_BYTES") or label.get("RECORD_BYTES") or stride)
    if data_path != label_path and size - expected_end >= max(record, stride):
        raise CorruptProductError(
            f"{data_path.name}: label/file size mismatch: the file has {size:,} bytes but {src} describes "
            f"{expected_end:,}; the label does not describe this file"
        )
    source = RawImageSource(
        path=str(data_path),
        offset=offset,
        shape=(lines, samples),
        dtype=dtype,
        line_prefix=prefix,
        line_stride=stride,
    )
    return ImageLayout(source=source, image=image, label=label, data_path=data_path)
