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

Hostile labels are refused with one line, never a traceback: the parser is iterative and
refuses nesting deeper than :data:`MAX_NESTING`; a label is read only up to
:data:`MAX_LABEL_BYTES`; every number the readers take from a label goes through
:meth:`Block.integer` / :meth:`Block.real`, which name the file and the key of a value of the
wrong type or out of range; and a data pointer must name a regular file inside the label's
own folder (or one of the product's manifest files), symlinks included
(:func:`locate_data_file`).
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prospect.errors import CorruptProductError, FormatError, LabelError

#: The largest label prospect parses (detached ``.LBL`` files, and the attached label at the
#: head of an ``.IMG``): real PDS3 labels are a few KiB; a bigger one is not a label.
MAX_LABEL_BYTES = 1 << 20
#: The deepest OBJECT/GROUP (or parenthesised value) nesting accepted; real labels nest < 5.
MAX_NESTING = 64
#: The most lines or samples a PDS3 image may declare (LOLA's 1024 px/deg global map is
#: 368,640 samples wide): anything larger is a label that lies, refused before any allocation.
MAX_IMAGE_SIDE = 1 << 21


_MISSING: Any = object()


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

    def _where(self, key: str, source: str) -> str:
        where = "" if self.kind == "LABEL" else f" in {self.kind} {self.name}"
        return f"{source}: {key}{where} (line {self.line})"

    def _number(self, key: str, source: str, default: Any) -> tuple[Any, Any]:
        """The raw value of ``key`` and its number (a Quantity's value, a numeric string parsed)."""
        raw = self.get(key, _MISSING)
        if raw is _MISSING or raw is None:
            if default is _MISSING:
                raise LabelError(f"{self._where(key, source)}: the label has no value for {key}")
            return raw, default
        value = raw.value if isinstance(raw, Quantity) else raw
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                try:
                    value = float(value.strip())
                except ValueError:
                    value = _MISSING
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LabelError(f"{self._where(key, source)}: {key} = {_show(raw)} is not a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise LabelError(f"{self._where(key, source)}: {key} = {_show(raw)} is not a finite number")
        return raw, value

    def integer(
        self,
        key: str,
        source: str,
        *,
        default: Any = _MISSING,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        """The integer value of ``key``; a missing key (without ``default``), a value that is not
        a whole number, or one outside ``minimum .. maximum`` raises :class:`LabelError` naming
        the file and the key."""
        key = key.upper()
        raw, value = self._number(key, source, default)
        if raw is _MISSING or raw is None:
            return value  # the default
        if isinstance(value, float):
            if value != int(value):
                raise LabelError(f"{self._where(key, source)}: {key} = {_show(raw)} is not a whole number")
            value = int(value)
        _check_range(self._where(key, source), key, raw, value, minimum, maximum)
        return int(value)

    def real(
        self,
        key: str,
        source: str,
        *,
        default: Any = _MISSING,
        minimum: float | None = None,
        maximum: float | None = None,
        positive: bool = False,
    ) -> float:
        """The finite float value of ``key`` (a Quantity's number); like :meth:`integer`.
        ``positive`` refuses zero and negative values."""
        key = key.upper()
        raw, value = self._number(key, source, default)
        if raw is _MISSING or raw is None:
            return value  # the default
        value = float(value)
        if positive and not value > 0:
            raise LabelError(f"{self._where(key, source)}: {key} = {_show(raw)} must be positive")
        _check_range(self._where(key, source), key, raw, value, minimum, maximum)
        return value

    def unit(self, key: str) -> str:
        """The unit of ``key`` (``""`` when the value has none), lower case, spaces removed."""
        raw = self.get(key)
        return raw.unit.strip().lower().replace(" ", "") if isinstance(raw, Quantity) else ""

    def text(self, key: str, source: str, *, default: Any = _MISSING) -> str:
        """The value of ``key`` as text; a list, set or block where a word belongs raises LabelError."""
        key = key.upper()
        raw = self.get(key, _MISSING)
        if raw is _MISSING or raw is None:
            if default is _MISSING:
                raise LabelError(f"{self._where(key, source)}: the label has no value for {key}")
            return str(default)
        if isinstance(raw, (tuple, Quantity, Block)):
            raise LabelError(f"{self._where(key, source)}: {key} = {_show(raw)} is not a single word or string")
        return str(raw)

    def blocks(self, name: str | None = None) -> list[Block]:
        return [v for _, v in self.items if isinstance(v, Block) and (name is None or v.name == name.upper())]

    def block(self, name: str) -> Block | None:
        found = self.blocks(name)
        return found[0] if found else None

    def walk(self) -> Iterator[Block]:
        """This block and every block inside it, depth first, in label order (iterative)."""
        stack: list[Block] = [self]
        while stack:
            b = stack.pop()
            yield b
            stack.extend(reversed(b.blocks()))


def _show(raw: Any) -> str:
    """A label value as the message shows it: short, on one line."""
    text = repr(raw.value if isinstance(raw, Quantity) else raw)
    if isinstance(raw, Quantity):
        text += f" <{raw.unit}>"
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


def _check_range(where: str, key: str, raw: Any, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise LabelError(f"{where}: {key} = {_show(raw)} is below the smallest allowed value {minimum}")
    if maximum is not None and value > maximum:
        raise LabelError(f"{where}: {key} = {_show(raw)} is above the largest allowed value {maximum:,}")


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
        try:
            return int(m.group(2), int(m.group(1)))
        except ValueError:
            return tok  # a radix outside 2..16 or digits the radix lacks: kept as text
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

    def value(self, line: int, *, in_list: bool = False, depth: int = 0) -> Any:
        t = self.peek(skip_nl=in_list)
        if t is None or t[0] == "nl":
            return None  # Chang'e dialect: an empty value
        kind, tok, tline = self.take()
        if tok in ("{", "("):
            if depth >= MAX_NESTING:
                raise LabelError(
                    f"{self.source}: line {tline}: values nested more than {MAX_NESTING} deep in "
                    "parentheses or braces: not a PDS3 label"
                )
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
                items.append(self.value(n[2], in_list=True, depth=depth + 1))
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
                if len(stack) > MAX_NESTING:
                    raise LabelError(
                        f"{self.source}: line {line}: {key} = {block.name} is nested more than {MAX_NESTING} "
                        "objects/groups deep: not a PDS3 label (real labels nest a few levels)"
                    )
                stack[-1].items.append((block.name, block))
                stack.append(block)
                continue
            if key in ("END_OBJECT", "END_GROUP"):
                if eq is not None:
                    self.value(line)
                if len(stack) == 1:
                    raise LabelError(f"{self.source}: line {line}: {key} without a matching {key[4:]}")
                if stack[-1].kind != key[4:]:
                    b = stack[-1]
                    raise LabelError(
                        f"{self.source}: line {line}: {key} without a matching {key[4:]} "
                        f"(the open block is {b.kind} = {b.name} from line {b.line})"
                    )
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


def read_label(path: Path) -> Block:
    """Parse a detached ``.LBL`` or the attached label at the start of an ``.IMG``.

    At most :data:`MAX_LABEL_BYTES` are read: a detached label (a ``.LBL`` file) larger than
    that, or a file with no ``END`` statement within it, is refused.
    """
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise LabelError(f"{path}: is not a regular file, so not a PDS3 label")
        with open(path, "rb") as fh:
            head = fh.read(MAX_LABEL_BYTES)
    except FileNotFoundError:
        raise LabelError(f"{path}: label file not found") from None
    except OSError as exc:
        raise LabelError(f"{path}: cannot read the label ({exc.strerror or exc})") from None
    if path.suffix.lower() == ".lbl" and size > MAX_LABEL_BYTES:
        raise LabelError(
            f"{path}: a detached label of {size:,} bytes is larger than the {MAX_LABEL_BYTES:,}-byte limit "
            "(prospect.io.pds3.MAX_LABEL_BYTES): not a PDS3 label"
        )
    if b"\0" in head[:4096] and not re.match(rb"\s*(PDS_VERSION_ID|ODL_VERSION_ID|CCSD)", head):
        raise LabelError(f"{path}: is a binary file, not a PDS3 label (it does not start with PDS_VERSION_ID)")
    text = head.decode("latin-1")
    if not re.match(r"\s*(PDS_VERSION_ID|ODL_VERSION_ID|CCSD)", text):
        raise LabelError(f"{path}: not a PDS3 label (it does not start with PDS_VERSION_ID)")
    m = re.search(r"^[ \t]*END[ \t]*\r?$", text, re.MULTILINE)
    if m:
        text = text[: m.end()]
    elif len(head) == MAX_LABEL_BYTES:
        raise LabelError(
            f"{path}: no END statement in the first {MAX_LABEL_BYTES:,} bytes "
            "(prospect.io.pds3.MAX_LABEL_BYTES): not a PDS3 label, or a truncated one"
        )
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


def sample_dtype(sample_type: Any, sample_bits: Any, source: str) -> np.dtype:
    """The numpy dtype of SAMPLE_TYPE / SAMPLE_BITS; anything else raises FormatError naming the key."""
    st = str(sample_type).upper().replace(" ", "_")
    prefix = _SAMPLE_TYPES.get(st) if isinstance(sample_type, str) else None
    if prefix is None:
        raise FormatError(
            f"{source}: SAMPLE_TYPE {_show(sample_type)} is not supported (known: {', '.join(sorted(_SAMPLE_TYPES))})"
        )
    if isinstance(sample_bits, bool) or not isinstance(sample_bits, int) or sample_bits not in (8, 16, 32, 64):
        raise FormatError(f"{source}: SAMPLE_BITS = {_show(sample_bits)} is not supported (8, 16, 32 or 64)")
    if prefix[1] == "f" and sample_bits not in (32, 64):
        raise FormatError(f"{source}: SAMPLE_BITS = {sample_bits} is not supported for SAMPLE_TYPE {st} (32 or 64)")
    nbytes = sample_bits // 8
    if nbytes == 1:
        prefix = "|" + prefix[1]
    return np.dtype(f"{prefix}{nbytes}")


def _inside(path: Path, folders: list[Path]) -> bool:
    return any(path == f or f in path.parents for f in folders)


def locate_data_file(label_path: Path, name: Any, key: str, *, allowed: dict[str, Path] | None = None) -> Path:
    """The data file a label's ``key`` (``^IMAGE``, ``FILE_NAME``) names, checked.

    The name must be a relative path that resolves, symlinks followed, to a regular file
    inside the label's own folder (symlinks followed too); ``allowed`` maps the file names of the product's manifest to their
    local paths, which are accepted too (a manifest's files may sit in the shared data folder
    and the cache). PDS names are upper case and URLs lower, so a file beside the label
    matches case-insensitively. Anything else raises :class:`LabelError` naming the label and
    the key: an absolute path, ``..`` out of the folder, a folder, a missing file.
    """
    src = label_path.name
    if not isinstance(name, str) or not name.strip():
        raise LabelError(f"{src}: {key} = {_show(name)} is not a file name")
    if "\0" in name or len(name) > 1024:
        raise LabelError(f"{src}: {key} = {_show(name)} is not a usable file name")
    if os.path.isabs(name) or name.startswith(("/", "\\")) or os.path.splitdrive(name)[0]:
        raise LabelError(
            f"{src}: {key} = {_show(name)} is an absolute path; a label's data file must be in the label's own folder"
        )
    try:
        folders = [label_path.parent.resolve()]
        if allowed:
            for cand_name, cand in allowed.items():
                if cand_name.lower() == name.lower() and cand.is_file():
                    return cand
        path = label_path.parent / name
        if not os.path.lexists(path) and "/" not in name and "\\" not in name:
            low = name.lower()
            for cand in label_path.parent.iterdir():
                if cand.name.lower() == low:
                    path = cand
                    break
        real = path.resolve()
        if not _inside(real, folders):
            raise LabelError(
                f"{src}: {key} = {_show(name)} resolves to {real}, outside the label's folder "
                f"{label_path.parent}; a label's data file must be in its own folder (symlinks included)"
            )
        if not os.path.lexists(path):
            raise LabelError(f"{label_path.parent / name}: data file named by {src} ({key}) is missing")
        st = os.stat(path)
    except LabelError:
        raise
    except FileNotFoundError:
        raise LabelError(f"{label_path.parent / name}: data file named by {src} ({key}) is missing") from None
    except (OSError, ValueError, RuntimeError) as exc:
        raise LabelError(f"{src}: {key} = {_show(name)} cannot be used ({exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise LabelError(f"{src}: {key} = {_show(name)} names {path}, which is not a regular file")
    return path


def _size(path: Path, src: str, key: str) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise LabelError(f"{path}: the file {src} names with {key} cannot be read ({exc.strerror or exc})") from None


def resolve_pointer(
    label: Block, pointer: str, label_path: Path, *, allowed: dict[str, Path] | None = None
) -> tuple[Path, int]:
    """File and byte offset of ``^POINTER`` (record pointers are 1-based), checked.

    The file is found by :func:`locate_data_file`; the record or byte number must be a
    positive whole number whose offset lies inside the file.
    """
    src = label_path.name
    key = f"^{pointer}"
    value = label.get(key)
    if value is None:
        raise LabelError(f"{src}: label has no ^{pointer} pointer")
    file_name: Any = None
    loc: Any = 1
    if isinstance(value, tuple):
        if not 1 <= len(value) <= 2:
            raise LabelError(f"{src}: {key} = {_show(value)} is not (file) or (file, record)")
        file_name, loc = (value[0], value[1]) if len(value) > 1 else (value[0], 1)
    elif isinstance(value, str):
        file_name = value
    else:
        loc = value
    path = locate_data_file(label_path, file_name, key, allowed=allowed) if file_name is not None else label_path
    unit = "record"
    if isinstance(loc, Quantity):
        if loc.unit.upper() not in ("BYTES", "BYTE"):
            raise LabelError(f"{src}: {key} unit <{loc.unit}> is not BYTES")
        unit, loc = "byte", loc.value
    if isinstance(loc, bool) or not isinstance(loc, (int, float)) or (isinstance(loc, float) and not loc.is_integer()):
        raise LabelError(f"{src}: {key} = {_show(value)}: the {unit} number is not a whole number")
    loc = int(loc)
    if loc < 1:
        raise LabelError(f"{src}: {key} = {_show(value)}: {unit} numbers start at 1, so {loc} points nowhere")
    if unit == "byte":
        offset = loc - 1
    elif loc == 1:
        offset = 0
    else:
        record_bytes = label.integer("RECORD_BYTES", src, default=None, minimum=1)
        if record_bytes is None:
            raise LabelError(f"{src}: {key} is a record pointer but the label has no RECORD_BYTES")
        offset = (loc - 1) * record_bytes
    size = _size(path, src, key)
    if offset >= size > 0 or (size == 0 and offset > 0):
        raise LabelError(
            f"{src}: {key} = {_show(value)} points at byte {offset:,} but {path.name} has only {size:,} bytes"
        )
    return path, offset


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


def image_layout(
    label: Block, label_path: Path, *, pointer: str = "IMAGE", allowed: dict[str, Path] | None = None
) -> ImageLayout:
    """Locate the IMAGE object and its bytes, handling the Chang'e IMAGE_PREFIX dialect.

    Every number is checked (:meth:`Block.integer`) and the file size is compared with what
    the label describes before anything is read; ``allowed`` as in :func:`locate_data_file`.
    """
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
    lines = image.integer("LINES", src, minimum=1, maximum=MAX_IMAGE_SIDE)
    samples = image.integer("LINE_SAMPLES", src, minimum=1, maximum=MAX_IMAGE_SIDE)
    bands = image.integer("BANDS", src, default=1, minimum=1)
    sample_type = image.require("SAMPLE_TYPE", src)
    sample_bits = image.integer("SAMPLE_BITS", src)
    dtype = sample_dtype(sample_type, sample_bits, src)
    line_bytes = samples * dtype.itemsize
    prefix = image.integer("LINE_PREFIX_BYTES", src, default=0, minimum=0, maximum=1 << 30)
    suffix = image.integer("LINE_SUFFIX_BYTES", src, default=0, minimum=0, maximum=1 << 30)
    if bands != 1:
        raise FormatError(f"{src}: {bands}-band PDS3 images are not supported; extract one band first")
    data_path, offset = resolve_pointer(owner, pointer, label_path, allowed=allowed)
    image_prefix = label.block("IMAGE_PREFIX")
    if image_prefix is not None and prefix == 0:
        # Chang'e: a table row precedes every image line in the same record. The record
        # holds prefix row + image line; ROW_SUFFIX_BYTES must equal the image line.
        record_bytes = (
            owner.integer("RECORD_BYTES", src, minimum=1)
            if owner.get("RECORD_BYTES") is not None
            else label.integer("RECORD_BYTES", src, minimum=1)
        )
        row_suffix = image_prefix.integer("ROW_SUFFIX_BYTES", src, default=None, minimum=0)
        if row_suffix is not None and row_suffix != line_bytes:
            raise LabelError(
                f"{src}: IMAGE_PREFIX ROW_SUFFIX_BYTES = {row_suffix} but an IMAGE line is {line_bytes} bytes "
                f"({samples} samples x {dtype.itemsize}): the label contradicts itself"
            )
        prefix = record_bytes - line_bytes - suffix
        if prefix < 0:
            raise LabelError(f"{src}: RECORD_BYTES = {record_bytes} is smaller than an image line ({line_bytes} bytes)")
    stride = prefix + line_bytes + suffix
    expected_end = offset + lines * stride
    size = _size(data_path, src, f"^{pointer}")
    if size < expected_end:
        raise CorruptProductError(
            f"{data_path.name}: truncated: the file has {size:,} bytes but {src} describes {expected_end:,} "
            f"(LINES = {lines} lines x {stride} bytes from byte {offset}); re-download it"
        )
    record = owner.integer("RECORD_BYTES", src, default=None, minimum=1)
    if record is None:
        record = label.integer("RECORD_BYTES", src, default=stride, minimum=1)
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
