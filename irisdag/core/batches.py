"""Reading batches of inputs and labels from CSV (pure: numpy and pandas).

Two layouts (DESIGN §6, ``IRISDAG_BATCH_SOURCE``):

- the course's: four numeric columns, no header row. The first row is data
  (``5.0,2.9,1.1,0.4`` in ``iris.csv``) and is kept;
- a header row naming an ``id`` column (optional) and the four feature columns
  (sepal_length, sepal_width, petal_length, petal_width, or common variants:
  ``sepal.length``, ``Sepal Length (cm)``, ``SepalLengthCm``...), in any order;
  other columns are ignored (and listed).

A header is a first non-blank line whose fields are not all numbers and which
names at least one known column. Rows that fail validation (NaN, infinite,
out of bounds after rounding, anything but ASCII decimal or exponent notation,
wrong number of fields, empty or bad id, NUL bytes or invalid UTF-8, an id
seen with different features) are quarantined, never dropped:
``len(good) + n_quarantined == rows_read``. The quarantine is kept as counts
by reason plus a bounded sample (`Quarantine`), so bad rows cost no more
memory than good ones. Blank lines are not rows (they keep their line number,
though).

The byte stream: gzip is detected by its magic bytes and read; other binary
formats (zip, bzip2, xz, Parquet, UTF-16...) are refused by name; CRLF and
CR-only line endings read as LF; a line longer than ``MAX_LINE_BYTES`` is an
error naming the line (never carried forward without bound).

The file is read in byte chunks of whole lines: field counts per line are
found with numpy, the numbers parsed by pandas' C parser; Python looks at one
row at a time only for bad rows (and for chunks with quoted fields, which the
course layout never has). ``iter_feature_csv`` yields one ``Batch`` per chunk
for callers that stream; ``read_feature_csv`` joins them.
"""
from __future__ import annotations

import csv
import gzip
import io
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from irisdag.core.keys import (
    FEATURES,
    ID_PREFIX,
    MAX_ID_LENGTH,
    N_FEATURES,
    NUMBER_RE,
    InputError,
    id_key,
    invalid_mask,
    keys_of_quantized,
    parse_features,
    quantize_array,
    shown,
    unique_quantized,
)

DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024
# The longest line a source may have (README: "Input limits"). Longer is refused naming the
# line: an unterminated line is never carried forward without bound.
MAX_LINE_BYTES = 1 << 20
QUARANTINE_SAMPLE = 100  # quarantined rows kept as examples per batch (all are counted)
READ_QUARANTINE_SAMPLE = 10_000  # for in-memory reads (the CLI's --file lists each bad row)
LABEL_CHUNK_BYTES = 1 << 20  # labels are split into Python strings a chunk at a time: keep chunks small
_NAN_OR_INF = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
_BOM = b"\xef\xbb\xbf"
_NA_TEXTS = ["", "nan", "NaN", "NAN", "NA", "N/A", "n/a", "null", "NULL", "None", "none", "-nan", "-NaN"]
_WHITESPACE = np.array([9, 10, 11, 12, 13, 32], dtype=np.uint8)
_NOT_SPACE = np.ones(256, dtype=bool)
_NOT_SPACE[_WHITESPACE] = False


def _per_line(mask: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """How many True in each line's bytes [starts[i], ends[i]] (a running count, differenced)."""
    c = np.empty(len(mask) + 1, dtype=np.int64 if len(mask) >= 2 ** 31 else np.int32)
    c[0] = 0
    np.cumsum(mask, dtype=c.dtype, out=c[1:])
    return (c[ends + 1] - c[starts]).astype(np.int64)

# Normalized header name (lowercase, letters and digits only, "cm" dropped) -> role.
_ID_NAMES = {"id", "entityid"}
_FEATURE_NAMES = {
    0: {"sepallength", "sepallen", "sl"},
    1: {"sepalwidth", "sepalwid", "sw"},
    2: {"petallength", "petallen", "pl"},
    3: {"petalwidth", "petalwid", "pw"},
}
_LABEL_NAMES = {"label", "labels", "y", "target", "class", "species", "variety"}
_LABEL_VALUES = {"0": 0, "1": 1, "2": 2, "0.0": 0, "1.0": 1, "2.0": 2,
                 "setosa": 0, "versicolor": 1, "virginica": 2,
                 "iris-setosa": 0, "iris-versicolor": 1, "iris-virginica": 2}


def _norm_name(name: str) -> str:
    s = re.sub(r"[^a-z0-9]", "", name.strip().strip('"').lower())
    s = re.sub(r"cm$", "", s)
    return s


def _role(name: str):
    n = _norm_name(name)
    if n in _ID_NAMES:
        return "id"
    for i, names in _FEATURE_NAMES.items():
        if n in names:
            return i
    return None


class BatchSourceError(ValueError):
    """A batch or label source refused as a whole (not a CSV, a line over the cap...); names the file."""


class Quarantine:
    """Rows that could not be keyed: counted by reason, plus a bounded sample.

    Memory and the written file stay bounded however many rows are bad: the
    counts are one integer per reason kind, the sample at most ``limit``
    entries ``{"row", "position", "kind", "reason"}`` whose reason names the
    value (cut to `keys.MAX_SHOWN` characters) and its position, once.
    """

    def __init__(self, limit: int = QUARANTINE_SAMPLE):
        self.limit = max(int(limit), 0)
        self.counts: dict[str, int] = {}
        self.sample: list[dict] = []

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, row: int, position: int, kind: str, reason: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if len(self.sample) < self.limit:
            self.sample.append({"row": int(row), "position": int(position), "kind": kind, "reason": reason})

    def merge(self, other: "Quarantine") -> None:
        for kind, n in other.counts.items():
            self.counts[kind] = self.counts.get(kind, 0) + n
        room = self.limit - len(self.sample)
        if room > 0:
            self.sample.extend(other.sample[:room])

    def to_json(self) -> dict:
        return {"rows": self.total, "by_reason": dict(sorted(self.counts.items())),
                "sample_limit": self.limit, "sample": list(self.sample)}


def quarantine_summary(saved) -> dict:
    """A window's ``quarantine.json`` as {"rows", "by_reason", "sample"} (a list = an older, complete file)."""
    if saved is None:
        return {"rows": 0, "by_reason": {}, "sample": []}
    if isinstance(saved, list):
        counts: dict[str, int] = {}
        for q in saved:
            counts[q.get("kind", "invalid")] = counts.get(q.get("kind", "invalid"), 0) + 1
        return {"rows": len(saved), "by_reason": counts, "sample": saved}
    return {"rows": int(saved.get("rows", 0)), "by_reason": dict(saved.get("by_reason", {})),
            "sample": list(saved.get("sample", []))}


@dataclass
class Batch:
    """Good rows of a batch source and its quarantined rows.

    X            float64 (n_good, 4), in FEATURES order
    row_numbers  int64 (n_good,): 1-based line numbers in the file
    positions    int64 (n_good,): 0-based index among the data rows (header and
                 blank lines not counted), aligning with a label file's rows
    ids          object array of str (n_good,) when the source has an id column, else None
    quarantine   a bounded sample of the quarantined rows, in file order:
                 [{"row": line number, "position": data-row index, "kind": reason kind,
                   "reason": message naming the value}]
    quarantine_counts  every quarantined row counted by reason kind
    rows_read    data rows read (== n_good + n_quarantined)
    """

    X: np.ndarray
    row_numbers: np.ndarray
    ids: np.ndarray | None = None
    quarantine: list = field(default_factory=list)
    positions: np.ndarray | None = None
    rows_read: int = -1
    header: list | None = None
    ignored_columns: list = field(default_factory=list)
    source: str | None = None
    blank_lines: int = 0
    quarantine_counts: dict | None = None

    def __post_init__(self):
        self.X = np.asarray(self.X, dtype=np.float64).reshape(-1, N_FEATURES)
        self.row_numbers = np.asarray(self.row_numbers, dtype=np.int64).reshape(-1)
        if self.positions is None:
            self.positions = np.arange(len(self.X), dtype=np.int64)
        self.positions = np.asarray(self.positions, dtype=np.int64).reshape(-1)
        if self.ids is not None:
            self.ids = np.asarray(self.ids, dtype=object).reshape(-1)
        if self.quarantine_counts is None:  # built from a complete list
            self.quarantine_counts = quarantine_summary(self.quarantine)["by_reason"]
        if self.rows_read < 0:
            self.rows_read = len(self.X) + self.n_quarantined

    def __len__(self) -> int:
        return len(self.X)

    @property
    def n_good(self) -> int:
        return len(self.X)

    @property
    def n_quarantined(self) -> int:
        return int(sum(self.quarantine_counts.values()))

    def keys(self) -> list[str]:
        """Per good row, its key: ``id:<id>`` when the source has ids, else the iris-r1 feature hash.

        Feature rows are quantized, deduplicated, and each distinct row hashed once.
        """
        if self.ids is not None:
            return [ID_PREFIX + s for s in self.ids.tolist()]
        uniq_keys, _, inverse = self._distinct_features()
        return [uniq_keys[i] for i in inverse.tolist()]

    def _distinct_features(self):
        Q = quantize_array(self.X)
        uniq, inverse = _unique_rows(Q)
        return keys_of_quantized(uniq), uniq, inverse

    def distinct(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Distinct keys, their features and, per good row, the index of its key.

        Returns (keys, X, inverse): ``X`` float64 (n_distinct, 4) holds the
        features the key stands for, rounded to 0.1 (q / 10, i.e. what the
        canonical string says) -- score these so that every row with the key
        gets the same answer. With ids, an id's rows all have the same
        rounded features (rows of an id with different features are
        quarantined when the batch is read).
        """
        if self.ids is None:
            keys, uniq, inverse = self._distinct_features()
            return keys, uniq / 10.0, inverse
        uniq_ids, first_rev, inverse = np.unique(self.ids[::-1].astype(str), return_index=True, return_inverse=True)
        last = len(self.ids) - 1 - first_rev
        inverse = inverse.reshape(-1)[::-1].copy()
        return [ID_PREFIX + s for s in uniq_ids.tolist()], quantize_array(self.X[last]) / 10.0, inverse

    def summary(self) -> dict:
        """Counts for metadata: rows read, good, quarantined (by reason), and the first few quarantined rows."""
        return {
            "source": self.source,
            "rows_read": int(self.rows_read),
            "good": int(len(self.X)),
            "quarantined": self.n_quarantined,
            "quarantined_by_reason": dict(self.quarantine_counts),
            "header": self.header,
            "has_ids": self.ids is not None,
            "ignored_columns": list(self.ignored_columns),
            "blank_lines": int(self.blank_lines),
            "quarantine_sample": self.quarantine[:10],
        }


def _unique_rows(Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``keys.unique_quantized`` (which now packs each row into one int64 itself)."""
    return unique_quantized(Q)


# ---- the byte stream: gzip or plain, newlines normalized, lines capped -----------------

# Formats that are not CSV text, told apart by their first bytes (gzip is read).
_MAGIC = [
    (b"\x1f\x8b", "gzip"),
    (b"PK\x03\x04", "a zip archive (or .xlsx workbook)"), (b"PK\x05\x06", "an empty zip archive"),
    (b"BZh", "a bzip2 file"), (b"\xfd7zXZ\x00", "an xz file"), (b"\x28\xb5\x2f\xfd", "a zstandard file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-zip archive"), (b"PAR1", "a Parquet file"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Excel/Office file"), (b"%PDF", "a PDF file"),
    (b"\x93NUMPY", "a numpy .npy file"), (b"\xff\xfe", "a UTF-16 text file"), (b"\xfe\xff", "a UTF-16 text file"),
]


def open_source(path: Path, what: str = "batch source"):
    """A binary file object for a CSV source: plain, or gzip (detected by its magic bytes, not its name).

    Any other known binary format is refused naming the file and the format.
    """
    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(8)
    for magic, name in _MAGIC:
        if head.startswith(magic):
            if name == "gzip":
                return gzip.open(path, "rb")
            raise BatchSourceError(f"{what} {path} is {name}, not CSV text (plain or gzip-compressed UTF-8)")
    return open(path, "rb")


def _normalized_blocks(f, block_bytes: int, path: Path) -> Iterator[bytes]:
    """The file's bytes with a leading BOM dropped and CRLF / lone CR turned into LF (universal newlines)."""
    first = True
    held = b""  # a CR at the end of a block: its LF may start the next one
    while True:
        try:
            block = f.read(block_bytes)
        except (OSError, EOFError, zlib.error) as err:  # a truncated or corrupt gzip stream
            raise BatchSourceError(f"{path} cannot be read to its end: {err}") from None
        if first:
            first = False
            if block.startswith(_BOM):
                block = block[len(_BOM):]
        if not block:
            if held:
                yield b"\n"
            return
        data = held + block if held else block
        held = b""
        if data.endswith(b"\r"):
            data, held = data[:-1], b"\r"
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        yield data


def _line_chunks(path: Path, chunk_bytes: int, what: str = "batch source") -> Iterator[tuple[bytes, int]]:
    """(chunk of whole lines ending in LF, number of its first line), in file order.

    A line longer than MAX_LINE_BYTES is an error naming its number: it is
    never carried forward without bound.
    """
    line = 1
    carry = b""
    with open_source(path, what) as f:
        for data in _normalized_blocks(f, chunk_bytes, path):
            if carry:
                data = carry + data
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                if len(carry) > MAX_LINE_BYTES:
                    raise _too_long(path, line)
                continue
            carry = data[cut + 1:]
            chunk = data[:cut + 1]
            yield chunk, line
            line += chunk.count(b"\n")
            if len(carry) > MAX_LINE_BYTES:
                raise _too_long(path, line)
    if carry:
        yield carry + b"\n", line


def _too_long(path, line: int) -> BatchSourceError:
    return BatchSourceError(f"{path}: line {line} is longer than {MAX_LINE_BYTES:,} bytes, the cap on a line "
                            "(is it a CSV file with one row per line?)")


def _line_bounds(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ends = np.flatnonzero(arr == 10)
    starts = np.empty_like(ends)
    if len(ends):
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    return starts, ends


# ---- layout ----------------------------------------------------------------------

@dataclass(frozen=True)
class _Layout:
    ncols: int
    feature_cols: tuple  # column index of each feature, in FEATURES order
    id_col: int | None
    header: list | None
    header_line: int  # line number of the header (0 if none)
    ignored: list


_COURSE_LAYOUT = _Layout(N_FEATURES, tuple(range(N_FEATURES)), None, None, 0, [])


def _is_number(text: str) -> bool:
    return NUMBER_RE.fullmatch(text.strip()) is not None or _NAN_OR_INF.fullmatch(text.strip()) is not None


def _detect_layout(chunk: bytes, first_line: int, path: Path):
    """From the first non-blank line of a chunk: (layout, bytes of the chunk it used up), or None if all blank."""
    offset = 0
    for i, raw in enumerate(chunk.split(b"\n")[:-1]):
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            offset += len(raw) + 1
            continue
        try:
            fields = [s.strip() for s in next(csv.reader([text]))]
        except csv.Error:
            return _COURSE_LAYOUT, offset  # not a header: a bad data row, quarantined like any other
        if all(_is_number(s) for s in fields):
            return _COURSE_LAYOUT, offset
        roles = [_role(s) for s in fields]
        if not any(r is not None for r in roles):
            return _COURSE_LAYOUT, offset
        missing = [FEATURES[j] for j in range(N_FEATURES) if j not in roles]
        if missing:
            raise ValueError(f"{path}: header {fields} lacks the column(s) {', '.join(missing)}")
        dup = sorted({str(r) for r in roles if r is not None and roles.count(r) > 1})
        if dup:
            raise ValueError(f"{path}: header {fields} names a column twice ({', '.join(dup)})")
        feature_cols = tuple(roles.index(j) for j in range(N_FEATURES))
        id_col = roles.index("id") if "id" in roles else None
        ignored = [fields[j] for j, r in enumerate(roles) if r is None]
        layout = _Layout(len(fields), feature_cols, id_col, fields, first_line + i, ignored)
        return layout, offset + len(raw) + 1
    return None


# ---- chunk parsing ---------------------------------------------------------------

class _Acc:
    """Accumulates one chunk's results in file order."""

    def __init__(self, quarantine_limit: int):
        self.good_lines: list[np.ndarray] = []
        self.good_pos: list[np.ndarray] = []
        self.good_X: list[np.ndarray] = []
        self.good_ids: list[np.ndarray] = []
        self.quarantine = Quarantine(quarantine_limit)

    def add(self, lines, pos, X, ids=None):
        if len(lines):
            self.good_lines.append(np.asarray(lines, dtype=np.int64))
            self.good_pos.append(np.asarray(pos, dtype=np.int64))
            self.good_X.append(np.asarray(X, dtype=np.float64).reshape(-1, N_FEATURES))
            if ids is not None:
                self.good_ids.append(np.asarray(ids, dtype=object))


def _check_row_python(raw: bytes, line: int, layout: _Layout):
    """One row, the exact way: (features, id) or raises InputError naming the value and position."""
    fields = _split_line(raw, line)
    if len(fields) != layout.ncols:
        if layout.header is None:
            parse_features(fields, row=line)  # raises: wrong number of values
        raise InputError(f"expected {layout.ncols} fields ({', '.join(layout.header)}), got {len(fields)}: "
                         f"{shown(fields)}", value=None, row=line, kind="field_count")
    feats = parse_features([fields[j] for j in layout.feature_cols], row=line)
    ident = None
    if layout.id_col is not None:
        try:
            ident = id_key(fields[layout.id_col])[len(ID_PREFIX):]
        except InputError as err:
            raise InputError(f"column id: {err.reason}", value=None, row=line, kind="bad_id") from None
    return feats, ident


def _python_rows(chunk: bytes, starts, ends, idx, line_numbers, positions, layout: _Layout, acc: _Acc):
    """Per-row path for bad or doubtful rows (line indexes ``idx`` of the chunk), one at a time.

    Nothing per bad row is kept but its count (and, while the sample has
    room, one sample entry): 2M bad rows cost no more memory than 2M good ones.
    """
    ok_lines, ok_pos, ok_X, ok_ids = [], [], [], []
    for i in np.asarray(idx, dtype=np.int64).tolist():
        line, pos = int(line_numbers[i]), int(positions[i])
        try:
            feats, ident = _check_row_python(chunk[starts[i]:ends[i]], line, layout)
        except InputError as err:
            acc.quarantine.add(line, pos, err.kind, str(err))
            continue
        ok_lines.append(line)
        ok_pos.append(pos)
        ok_X.append(feats)
        ok_ids.append(ident)
    if ok_lines:
        acc.add(ok_lines, ok_pos, np.array(ok_X, dtype=np.float64),
                None if layout.id_col is None else np.array(ok_ids, dtype=object))


def _split_line(raw: bytes, line: int) -> list[str]:
    if b"\x00" in raw:
        raise InputError("contains a NUL byte (binary data, not CSV text)", row=line, kind="not_text")
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise InputError(f"is not UTF-8 text (byte {err.start + 1} of the line)", row=line, kind="not_text") from None
    if '"' in text:
        try:
            return next(csv.reader([text]))
        except csv.Error as err:
            raise InputError(f"is not a CSV row ({err})", row=line, kind="not_text") from None
    return text.split(",")


def _parse_chunk(chunk: bytes, first_line: int, first_pos: int, layout: _Layout, quarantine_limit: int,
                 source: str = "batch source"):
    """Parse whole lines ``chunk`` (ends with a newline). Returns (accumulated parts, rows, blank lines)."""
    arr = np.frombuffer(chunk, dtype=np.uint8)
    starts, ends = _line_bounds(arr)
    nonblank = _per_line(_NOT_SPACE[arr], starts, ends) > 0 if len(ends) else np.zeros(0, bool)
    line_numbers = first_line + np.arange(len(ends), dtype=np.int64)
    positions = first_pos + np.cumsum(nonblank) - 1  # data-row index of each (non-blank) line
    n_rows = int(nonblank.sum())
    acc = _Acc(quarantine_limit)
    if len(ends):
        too_long = np.flatnonzero(ends - starts > MAX_LINE_BYTES)
        if len(too_long):
            raise _too_long(source, int(line_numbers[too_long[0]]))

    if b'"' in chunk:  # quoted fields: let the csv module split the (rare) chunk
        _python_rows(chunk, starts, ends, np.flatnonzero(nonblank), line_numbers, positions, layout, acc)
        return acc, n_rows, int(len(ends) - n_rows)

    commas = _per_line(arr == 44, starts, ends) if len(ends) else np.zeros(0, np.int64)
    # Rows pandas must not see: NUL (binary data) or anything outside ASCII (never part of a
    # number; in an id it must be valid UTF-8): they take the exact path and its message.
    odd = (arr == 0) | (arr >= 128)
    unusual = _per_line(odd, starts, ends) > 0 if len(ends) else np.zeros(0, bool)
    shape_ok = nonblank & (commas + 1 == layout.ncols) & ~unusual
    pending = [np.flatnonzero(nonblank & ~shape_ok)]  # line indexes for the per-row path

    idx = np.flatnonzero(shape_ok)
    if len(idx):
        if len(idx) == len(ends):
            sub = chunk
        else:
            keep = np.repeat(shape_ok, ends - starts + 1)
            sub = arr[keep].tobytes()
        X, ids, doubtful = _parse_fast(sub, layout, len(idx))
        good = ~doubtful
        acc.add(line_numbers[idx[good]], positions[idx[good]], X[good], None if ids is None else ids[good])
        pending.append(idx[doubtful])
    todo = np.sort(np.concatenate(pending))
    if len(todo):
        _python_rows(chunk, starts, ends, todo, line_numbers, positions, layout, acc)
    return acc, n_rows, int(len(ends) - n_rows)


def _parse_fast(sub: bytes, layout: _Layout, n: int):
    """Parse lines that all have the right field count. Returns (X, ids, doubtful mask)."""
    names = list(range(layout.ncols))
    usecols = list(layout.feature_cols) + ([layout.id_col] if layout.id_col is not None else [])
    dtypes = {c: np.float64 for c in layout.feature_cols}
    na_values = {c: _NA_TEXTS for c in layout.feature_cols}
    if layout.id_col is not None:
        dtypes[layout.id_col] = str
    common = dict(header=None, names=names, usecols=usecols, keep_default_na=False, skip_blank_lines=False,
                  engine="c", encoding="utf-8", encoding_errors="replace", quoting=csv.QUOTE_NONE)
    try:
        df = pd.read_csv(io.BytesIO(sub), dtype=dtypes, na_values=na_values, **common)
        X = df[list(layout.feature_cols)].to_numpy(dtype=np.float64)
    except (ValueError, TypeError):
        # Text in a number column somewhere in the chunk: read as text, coerce, send the failures to the per-row path.
        df = pd.read_csv(io.BytesIO(sub), dtype=str, na_filter=False, **common)
        X = np.column_stack([pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64)
                             for c in layout.feature_cols])
    if len(X) != n:  # never expected: lines were counted; be safe and go the exact way
        return np.zeros((n, N_FEATURES)), None, np.ones(n, dtype=bool)
    doubtful = invalid_mask(X)
    ids = None
    if layout.id_col is not None:
        s = df[layout.id_col].astype(str).str.strip()
        lens = s.str.len().to_numpy()
        doubtful |= (lens == 0) | (lens > MAX_ID_LENGTH) | s.str.contains(r"\s", regex=True).to_numpy(dtype=bool)
        ids = s.to_numpy(dtype=object)
    return X, ids, doubtful


def iter_feature_csv(path, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                     quarantine_sample: int = QUARANTINE_SAMPLE) -> Iterator[Batch]:
    """One ``Batch`` per chunk of about ``chunk_bytes`` (whole lines), in file order.

    Each chunk's quarantine sample holds at most ``quarantine_sample`` rows;
    its counts cover every quarantined row.
    """
    path = Path(os.fspath(path))
    layout = None
    pos = 0
    for chunk, line in _line_chunks(path, max(int(chunk_bytes), 1024)):
        if layout is None:
            found = _detect_layout(chunk, line, path)
            if found is None:  # blank lines only so far
                yield _make_batch(_Acc(0), _COURSE_LAYOUT, 0, chunk.count(b"\n"), str(path))
                continue
            layout, used = found
            skipped = chunk[:used].count(b"\n")
            blank_before = skipped - (1 if layout.header is not None else 0)
            chunk, line = chunk[used:], line + skipped
            if blank_before:
                yield _make_batch(_Acc(0), layout, 0, blank_before, str(path))
            if not chunk:
                continue
        acc, n_rows, n_blank = _parse_chunk(chunk, line, pos, layout, quarantine_sample, str(path))
        yield _make_batch(acc, layout, n_rows, n_blank, str(path))
        pos += n_rows
    if layout is None:
        yield _make_batch(_Acc(0), _COURSE_LAYOUT, 0, 0, str(path))


def _make_batch(acc: _Acc, layout: _Layout, n_rows: int, n_blank: int, source: str) -> Batch:
    if acc.good_lines:
        lines = np.concatenate(acc.good_lines)
        order = np.argsort(lines, kind="stable")
        X = np.concatenate(acc.good_X)[order]
        pos = np.concatenate(acc.good_pos)[order]
        lines = lines[order]
        ids = np.concatenate(acc.good_ids)[order] if layout.id_col is not None else None
    else:
        lines = np.zeros(0, np.int64)
        pos = np.zeros(0, np.int64)
        X = np.zeros((0, N_FEATURES))
        ids = np.zeros(0, dtype=object) if layout.id_col is not None else None
    quarantine = sorted(acc.quarantine.sample, key=lambda q: q["row"])
    return Batch(X=X, row_numbers=lines, ids=ids, quarantine=quarantine, positions=pos, rows_read=n_rows,
                 header=layout.header, ignored_columns=list(layout.ignored), source=source, blank_lines=n_blank,
                 quarantine_counts=dict(acc.quarantine.counts))


def concat_batches(parts: list[Batch], *, quarantine_sample: int = QUARANTINE_SAMPLE) -> Batch:
    """Join batches read from one source, in order (the quarantine sample stays bounded)."""
    if not parts:
        return Batch(X=np.zeros((0, N_FEATURES)), row_numbers=np.zeros(0, np.int64), rows_read=0)
    first = parts[-1]  # the layout is known by the last part (the first may be blank lines only)
    has_ids = first.ids is not None
    quarantine = Quarantine(quarantine_sample)
    for p in parts:
        part = Quarantine(len(p.quarantine))
        part.counts, part.sample = dict(p.quarantine_counts), list(p.quarantine)
        quarantine.merge(part)
    return Batch(
        X=np.concatenate([p.X for p in parts]),
        row_numbers=np.concatenate([p.row_numbers for p in parts]),
        ids=np.concatenate([p.ids for p in parts if p.ids is not None]) if has_ids else None,
        quarantine=quarantine.sample,
        quarantine_counts=quarantine.counts,
        positions=np.concatenate([p.positions for p in parts]),
        rows_read=sum(p.rows_read for p in parts),
        header=first.header,
        ignored_columns=list(first.ignored_columns),
        source=first.source,
        blank_lines=sum(p.blank_lines for p in parts),
    )


def read_feature_csv(path, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                     quarantine_sample: int = READ_QUARANTINE_SAMPLE) -> Batch:
    """Read a batch source (course layout, or header with optional ``id``) into one ``Batch``.

    Rows of one id with different (rounded) features are quarantined, every
    one of them (kind ``duplicate_id``): no row's label is judged against
    another row's prediction. The same id with the same features is a repeat.
    """
    batch = concat_batches(list(iter_feature_csv(path, chunk_bytes=chunk_bytes, quarantine_sample=quarantine_sample)),
                           quarantine_sample=quarantine_sample)
    return quarantine_conflicting_ids(batch, quarantine_sample)


def conflicting_id_mask(ids: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """bool per row: its id also appears on a row with different rounded features (q values)."""
    ids = np.asarray(ids, dtype=object).reshape(-1)
    if len(ids) < 2:
        return np.zeros(len(ids), dtype=bool)
    codes, _ = pd.factorize(ids, sort=False)
    P = np.asarray(Q, dtype=np.int64).reshape(-1, N_FEATURES)
    first = np.full(codes.max() + 1, -1, dtype=np.int64)
    order = np.arange(len(codes))[::-1]
    first[codes[order]] = order  # the first row of each id (the last write wins, from the end)
    differs = (P != P[first[codes]]).any(axis=1)
    bad_codes = np.unique(codes[differs])
    return np.isin(codes, bad_codes)


def quarantine_conflicting_ids(batch: Batch, quarantine_sample: int = QUARANTINE_SAMPLE) -> Batch:
    """Move the rows of ids that carry different features to the quarantine (all of an id's rows)."""
    if batch.ids is None or len(batch.ids) < 2:
        return batch
    bad = conflicting_id_mask(batch.ids, quantize_array(batch.X))
    if not bad.any():
        return batch
    rows_of: dict = {}
    for i in np.flatnonzero(bad).tolist():
        rows_of.setdefault(batch.ids[i], []).append(int(batch.row_numbers[i]))
    quarantine = Quarantine(quarantine_sample)
    part = Quarantine(len(batch.quarantine))
    part.counts, part.sample = dict(batch.quarantine_counts), list(batch.quarantine)
    quarantine.merge(part)
    for i in np.flatnonzero(bad).tolist():
        rows = rows_of[batch.ids[i]]
        quarantine.add(int(batch.row_numbers[i]), int(batch.positions[i]), "duplicate_id",
                       duplicate_id_reason(int(batch.row_numbers[i]), batch.ids[i], rows))
    keep = ~bad
    return Batch(X=batch.X[keep], row_numbers=batch.row_numbers[keep], ids=batch.ids[keep],
                 quarantine=sorted(quarantine.sample, key=lambda q: q["row"]), quarantine_counts=quarantine.counts,
                 positions=batch.positions[keep], rows_read=batch.rows_read, header=batch.header,
                 ignored_columns=batch.ignored_columns, source=batch.source, blank_lines=batch.blank_lines)


def duplicate_id_reason(row: int, ident: str, rows: list[int]) -> str:
    listed = ", ".join(str(r) for r in rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
    return (f"row {row}: id {shown(str(ident))} appears with different features on rows {listed}; "
            "all its rows are quarantined")


def batch_from_array(X, ids=None, *, source: str | None = None) -> Batch:
    """A ``Batch`` from an in-memory float (N, 4) array (e.g. the generator's), quarantining invalid rows."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != N_FEATURES:
        raise ValueError(f"features must have shape (n, {N_FEATURES}), got {X.shape}")
    n = len(X)
    bad = invalid_mask(X)
    id_arr = None
    if ids is not None:
        id_arr = np.array([str(i).strip() if i is not None else "" for i in ids], dtype=object)
        if len(id_arr) != n:
            raise ValueError(f"{len(id_arr)} ids for {n} rows")
        s = pd.Series(id_arr, dtype=object).astype(str)
        lens = s.str.len().to_numpy()
        bad |= (lens == 0) | (lens > MAX_ID_LENGTH) | s.str.contains(r"\s", regex=True).to_numpy(dtype=bool)
    quarantine = []
    for i in np.flatnonzero(bad).tolist():
        values = X[i].tolist()
        try:
            parse_features([repr(v) for v in values], row=i + 1)
            if id_arr is not None:
                id_key(id_arr[i])
            reason = f"row {i + 1}: invalid"
        except InputError as err:
            reason = str(err) if err.row is not None else f"row {i + 1}: {err}"
        quarantine.append({"row": i + 1, "position": i, "values": values + ([] if id_arr is None else [id_arr[i]]),
                           "reason": reason})
    good = ~bad
    return Batch(X=X[good], row_numbers=np.flatnonzero(good) + 1, ids=None if id_arr is None else id_arr[good],
                 quarantine=quarantine, positions=np.flatnonzero(good), rows_read=n, source=source)


# ---- labels ----------------------------------------------------------------------

def read_label_csv(path, *, chunk_bytes: int = LABEL_CHUNK_BYTES) -> np.ndarray:
    """Labels 0/1/2, one per line (the course's ``iris_y.csv``), as int8.

    Tolerates a header line naming the column (label, y, target, class,
    species), class names (setosa, versicolor, virginica) as values, blank
    lines at the end, CRLF or CR-only line endings and gzip. Refuses, naming
    the file and the line: a bad label, a blank line between labels, and a
    second column (a label file has exactly one: a two-column file is never
    silently read by one of its columns).
    """
    path = Path(os.fspath(path))
    parts: list[np.ndarray] = []
    first_bad = None  # (line number, raw text)
    bad_count = 0
    skip_header = None
    pending_blank, pending_first = 0, None  # blank lines since the last label (forgiven at the end of the file)
    for chunk, line in _line_chunks(path, max(int(chunk_bytes), 1024), what="label source"):
        arr = np.frombuffer(chunk, dtype=np.uint8)
        starts, ends = _line_bounds(arr)
        commas = _per_line((arr == 44) | (arr == 9) | (arr == 59), starts, ends)
        if (commas > 0).any():
            i = int(np.flatnonzero(commas > 0)[0])
            text = chunk[starts[i]:ends[i]].decode("utf-8", errors="replace")
            raise BatchSourceError(f"{path}: line {line + i} has {int(commas[i]) + 1} columns ({shown(text)}); "
                                   "a label file has one column (0, 1 or 2)")
        # One-byte lines 0/1/2 (nearly every line) are read with numpy; the rest as text.
        first_byte = arr[np.minimum(starts, len(arr) - 1)]
        simple = (ends - starts == 1) & (first_byte >= 48) & (first_byte <= 50)
        codes = np.full(len(ends), np.nan)
        codes[simple] = first_byte[simple] - 48
        nonblank_mask = simple.copy()
        others = np.flatnonzero(~simple)
        if len(others):
            stripped = pd.Series([chunk[starts[i]:ends[i]].decode("utf-8", errors="replace") for i in others.tolist()],
                                 dtype=object).str.strip()
            codes[others] = stripped.str.lower().map(_LABEL_VALUES).to_numpy(dtype=np.float64)
            nonblank_mask[others] = (stripped.str.len() > 0).to_numpy()
        begin = 0
        if skip_header is None:
            nonblank = np.flatnonzero(nonblank_mask)
            if len(nonblank):
                k = int(nonblank[0])
                first = chunk[starts[k]:ends[k]].decode("utf-8", errors="replace").strip()
                skip_header = _norm_name(first) in _LABEL_NAMES and first.lower() not in _LABEL_VALUES
                begin = k + 1 if skip_header else 0

        def text_of(i):
            return chunk[starts[begin + i]:ends[begin + i]].decode("utf-8", errors="replace")

        codes, nonblank_mask, line = codes[begin:], nonblank_mask[begin:], line + begin
        nonblank = np.flatnonzero(nonblank_mask)
        if not len(nonblank):  # blank lines only: trailing, unless a label follows
            if pending_blank == 0:
                pending_first = (line, "")
            pending_blank += len(codes)
            continue
        if pending_blank:  # blank lines between labels are bad labels
            bad_count += pending_blank
            first_bad = first_bad or pending_first
            pending_blank = 0
        last = int(nonblank[-1])
        body = codes[:last + 1]
        bad = np.flatnonzero(np.isnan(body))
        if len(bad):
            bad_count += len(bad)
            if first_bad is None:
                first_bad = (line + int(bad[0]), text_of(int(bad[0])))
        parts.append(body)
        if last + 1 < len(codes):
            pending_blank, pending_first = len(codes) - last - 1, (line + last + 1, "")
    codes = np.concatenate(parts) if parts else np.zeros(0)
    if first_bad is not None:
        n, value = first_bad
        raise ValueError(f"{path}: line {n}: label {shown(value)} is not one of 0, 1, 2 "
                         f"({bad_count} bad label{'s' if bad_count > 1 else ''} in the file)")
    return codes.astype(np.int8)
