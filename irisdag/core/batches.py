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
|x| >= 1e6, non-numeric text, wrong number of fields, empty or bad id) are
quarantined, never dropped: ``len(good) + len(quarantine) == rows_read``.
Blank lines are not rows (they keep their line number, though).

The file is read in byte chunks of whole lines: field counts per line are
found with numpy, the numbers parsed by pandas' C parser; Python looks at one
row at a time only for bad rows (and for chunks with quoted fields, which the
course layout never has). ``iter_feature_csv`` yields one ``Batch`` per chunk
for callers that stream; ``read_feature_csv`` joins them.
"""
from __future__ import annotations

import csv
import io
import os
import re
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
    InputError,
    id_key,
    invalid_mask,
    keys_of_quantized,
    parse_features,
    quantize_array,
    unique_quantized,
)

DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024
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


def _is_number(text: str) -> bool:
    try:
        float(text.strip())
    except ValueError:
        return False
    return True


@dataclass
class Batch:
    """Good rows of a batch source and its quarantined rows.

    X            float64 (n_good, 4), in FEATURES order
    row_numbers  int64 (n_good,): 1-based line numbers in the file
    positions    int64 (n_good,): 0-based index among the data rows (header and
                 blank lines not counted), aligning with a label file's rows
    ids          object array of str (n_good,) when the source has an id column, else None
    quarantine   [{"row": line number, "position": data-row index,
                   "values": [raw text fields], "reason": message}]
    rows_read    data rows read (== n_good + len(quarantine))
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

    def __post_init__(self):
        self.X = np.asarray(self.X, dtype=np.float64).reshape(-1, N_FEATURES)
        self.row_numbers = np.asarray(self.row_numbers, dtype=np.int64).reshape(-1)
        if self.positions is None:
            self.positions = np.arange(len(self.X), dtype=np.int64)
        self.positions = np.asarray(self.positions, dtype=np.int64).reshape(-1)
        if self.ids is not None:
            self.ids = np.asarray(self.ids, dtype=object).reshape(-1)
        if self.rows_read < 0:
            self.rows_read = len(self.X) + len(self.quarantine)

    def __len__(self) -> int:
        return len(self.X)

    @property
    def n_good(self) -> int:
        return len(self.X)

    @property
    def n_quarantined(self) -> int:
        return len(self.quarantine)

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
        gets the same answer. With ids, the features of an id's last row.
        """
        if self.ids is None:
            keys, uniq, inverse = self._distinct_features()
            return keys, uniq / 10.0, inverse
        uniq_ids, first_rev, inverse = np.unique(self.ids[::-1].astype(str), return_index=True, return_inverse=True)
        last = len(self.ids) - 1 - first_rev
        inverse = inverse.reshape(-1)[::-1].copy()
        return [ID_PREFIX + s for s in uniq_ids.tolist()], quantize_array(self.X[last]) / 10.0, inverse

    def summary(self) -> dict:
        """Counts for metadata: rows read, good, quarantined, and the first few quarantined rows."""
        return {
            "source": self.source,
            "rows_read": int(self.rows_read),
            "good": int(len(self.X)),
            "quarantined": int(len(self.quarantine)),
            "header": self.header,
            "has_ids": self.ids is not None,
            "ignored_columns": list(self.ignored_columns),
            "blank_lines": int(self.blank_lines),
            "quarantine_sample": self.quarantine[:10],
        }


def _unique_rows(Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``keys.unique_quantized`` (which now packs each row into one int64 itself)."""
    return unique_quantized(Q)


# ---- layout ----------------------------------------------------------------------

@dataclass(frozen=True)
class _Layout:
    ncols: int
    feature_cols: tuple  # column index of each feature, in FEATURES order
    id_col: int | None
    header: list | None
    header_line: int  # line number of the header (0 if none)
    data_offset: int  # byte offset of the first line after the header (or of the file start)
    ignored: list


def _detect_layout(path: Path) -> _Layout:
    with open(path, "rb") as f:
        offset = 0
        line_no = 0
        start = 0
        if f.read(3) == _BOM:
            offset = start = 3
        f.seek(offset)
        for raw in f:
            line_no += 1
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                offset += len(raw)
                continue
            fields = [s.strip() for s in next(csv.reader([text]))]
            if all(_is_number(s) for s in fields):
                break
            roles = [_role(s) for s in fields]
            if not any(r is not None for r in roles):
                break  # not a header: a bad data row, quarantined like any other
            missing = [FEATURES[i] for i in range(N_FEATURES) if i not in roles]
            if missing:
                raise ValueError(f"{path}: header {fields} lacks the column(s) {', '.join(missing)}")
            dup = sorted({str(r) for r in roles if r is not None and roles.count(r) > 1})
            if dup:
                raise ValueError(f"{path}: header {fields} names a column twice ({', '.join(dup)})")
            feature_cols = tuple(roles.index(i) for i in range(N_FEATURES))
            id_col = roles.index("id") if "id" in roles else None
            ignored = [fields[j] for j, r in enumerate(roles) if r is None]
            return _Layout(len(fields), feature_cols, id_col, fields, line_no, offset + len(raw), ignored)
    return _Layout(N_FEATURES, tuple(range(N_FEATURES)), None, None, 0, start, [])


# ---- chunk parsing ---------------------------------------------------------------

class _Acc:
    """Accumulates one chunk's results in file order."""

    def __init__(self):
        self.good_lines: list[np.ndarray] = []
        self.good_pos: list[np.ndarray] = []
        self.good_X: list[np.ndarray] = []
        self.good_ids: list[np.ndarray] = []
        self.quarantine: list[dict] = []

    def add(self, lines, pos, X, ids=None):
        if len(lines):
            self.good_lines.append(np.asarray(lines, dtype=np.int64))
            self.good_pos.append(np.asarray(pos, dtype=np.int64))
            self.good_X.append(np.asarray(X, dtype=np.float64).reshape(-1, N_FEATURES))
            if ids is not None:
                self.good_ids.append(np.asarray(ids, dtype=object))


def _check_row_python(fields: list[str], line: int, layout: _Layout):
    """One row, the exact way: (features, id) or raises InputError naming the value and position."""
    if len(fields) != layout.ncols:
        if layout.header is None:
            parse_features(fields, row=line)  # raises: wrong number of values
        raise InputError(f"expected {layout.ncols} fields ({', '.join(layout.header)}), got {len(fields)}: {fields!r}",
                         value=fields, row=line)
    feats = parse_features([fields[j] for j in layout.feature_cols], row=line)
    ident = None
    if layout.id_col is not None:
        try:
            ident = id_key(fields[layout.id_col])[len(ID_PREFIX):]
        except InputError as err:
            raise InputError(f"column id: {err.reason}", value=fields[layout.id_col], row=line) from None
    return feats, ident


def _python_rows(lines: list[tuple[int, int, list[str]]], layout: _Layout, acc: _Acc):
    """Per-row path for bad or doubtful rows: (line, position, fields)."""
    ok_lines, ok_pos, ok_X, ok_ids = [], [], [], []
    for line, pos, fields in lines:
        try:
            feats, ident = _check_row_python(fields, line, layout)
        except InputError as err:
            acc.quarantine.append({"row": int(line), "position": int(pos), "values": list(fields), "reason": str(err)})
            continue
        ok_lines.append(line)
        ok_pos.append(pos)
        ok_X.append(feats)
        ok_ids.append(ident)
    return ok_lines, ok_pos, ok_X, ok_ids


def _split_line(raw: bytes) -> list[str]:
    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
    if '"' in text:
        return next(csv.reader([text]))
    return text.split(",")


def _parse_chunk(chunk: bytes, first_line: int, first_pos: int, layout: _Layout):
    """Parse whole lines ``chunk`` (ends with a newline). Returns (Batch parts, rows, blank lines)."""
    arr = np.frombuffer(chunk, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10)
    starts = np.empty_like(ends)
    if len(ends):
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    nonblank = _per_line(_NOT_SPACE[arr], starts, ends) > 0 if len(ends) else np.zeros(0, bool)
    line_numbers = first_line + np.arange(len(ends), dtype=np.int64)
    positions = first_pos + np.cumsum(nonblank) - 1  # data-row index of each (non-blank) line
    n_rows = int(nonblank.sum())
    acc = _Acc()

    def line_bytes(i):
        return chunk[starts[i]:ends[i]]

    if b'"' in chunk:  # quoted fields: let the csv module split the (rare) chunk
        rows = [(int(line_numbers[i]), int(positions[i]), _split_line(line_bytes(i)))
                for i in np.flatnonzero(nonblank)]
        ok = _python_rows(rows, layout, acc)
        _add_python(acc, ok, layout)
        return acc, n_rows, int(len(ends) - n_rows)

    commas = _per_line(arr == 44, starts, ends) if len(ends) else np.zeros(0, np.int64)
    shape_ok = nonblank & (commas + 1 == layout.ncols)
    pending = []  # rows for the per-row path
    for i in np.flatnonzero(nonblank & ~shape_ok):
        pending.append((int(line_numbers[i]), int(positions[i]), _split_line(line_bytes(i))))

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
        for i in idx[doubtful]:
            pending.append((int(line_numbers[i]), int(positions[i]), _split_line(line_bytes(i))))
    if pending:
        pending.sort()
        ok = _python_rows(pending, layout, acc)
        _add_python(acc, ok, layout)
    return acc, n_rows, int(len(ends) - n_rows)


def _add_python(acc: _Acc, ok, layout: _Layout):
    lines, pos, X, ids = ok
    if lines:
        acc.add(lines, pos, np.array(X, dtype=np.float64), None if layout.id_col is None else np.array(ids, dtype=object))


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


def _iter_chunks(path: Path, start: int, chunk_bytes: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        carry = b""
        while True:
            block = f.read(chunk_bytes)
            if not block:
                if carry:
                    yield carry + b"\n"
                return
            data = carry + block if carry else block
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            carry = data[cut + 1:]
            yield data[:cut + 1]


def iter_feature_csv(path, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[Batch]:
    """One ``Batch`` per chunk of about ``chunk_bytes`` (whole lines), in file order."""
    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"batch source {path} does not exist")
    layout = _detect_layout(path)
    line = layout.header_line + 1
    if layout.header is None:
        line = 1
    pos = 0
    for chunk in _iter_chunks(path, layout.data_offset, max(int(chunk_bytes), 1024)):
        n_lines = chunk.count(b"\n")
        acc, n_rows, n_blank = _parse_chunk(chunk, line, pos, layout)
        yield _make_batch(acc, layout, n_rows, n_blank, str(path))
        line += n_lines
        pos += n_rows


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
    quarantine = sorted(acc.quarantine, key=lambda q: q["row"])
    return Batch(X=X, row_numbers=lines, ids=ids, quarantine=quarantine, positions=pos, rows_read=n_rows,
                 header=layout.header, ignored_columns=list(layout.ignored), source=source, blank_lines=n_blank)


def concat_batches(parts: list[Batch]) -> Batch:
    """Join batches read from one source, in order."""
    if not parts:
        return Batch(X=np.zeros((0, N_FEATURES)), row_numbers=np.zeros(0, np.int64), rows_read=0)
    first = parts[0]
    has_ids = first.ids is not None
    return Batch(
        X=np.concatenate([p.X for p in parts]),
        row_numbers=np.concatenate([p.row_numbers for p in parts]),
        ids=np.concatenate([p.ids for p in parts]) if has_ids else None,
        quarantine=[q for p in parts for q in p.quarantine],
        positions=np.concatenate([p.positions for p in parts]),
        rows_read=sum(p.rows_read for p in parts),
        header=first.header,
        ignored_columns=list(first.ignored_columns),
        source=first.source,
        blank_lines=sum(p.blank_lines for p in parts),
    )


def read_feature_csv(path, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Batch:
    """Read a batch source (course layout, or header with optional ``id``) into one ``Batch``."""
    return concat_batches(list(iter_feature_csv(path, chunk_bytes=chunk_bytes)))


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

def _trailing_blank_lines(path: Path, tail_bytes: int = 65536) -> int:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - tail_bytes))
        text = f.read().decode("utf-8", errors="replace")
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    k = 0
    for s in reversed(lines):
        if s.strip():
            break
        k += 1
    return k


def read_label_csv(path, *, chunk_rows: int = 1_000_000) -> np.ndarray:
    """Labels 0/1/2, one per line (the course's ``iris_y.csv``), as int8.

    Tolerates a header line naming the column (label, y, target, class,
    species), class names (setosa, versicolor, virginica) as values and blank
    lines at the end. A bad label (or a blank line between labels, or a
    second column) raises ValueError naming the file, the line and the value.
    """
    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"label source {path} does not exist")
    skip = 0
    with open(path, "rb") as f:
        first = f.readline().decode("utf-8-sig", errors="replace").strip()
    if first and _norm_name(first) in _LABEL_NAMES and first.lower() not in _LABEL_VALUES:
        skip = 1
    parts = []
    first_bad = None  # (row index, raw text)
    bad_count = 0
    n = 0
    try:
        reader = pd.read_csv(path, header=None, names=["label"], dtype=str, na_filter=False, skiprows=skip,
                             skip_blank_lines=False, engine="c", encoding="utf-8-sig", chunksize=chunk_rows,
                             quoting=csv.QUOTE_NONE)
        for df in reader:
            raw = df["label"]
            codes = raw.str.strip().str.lower().map(_LABEL_VALUES).to_numpy(dtype=np.float64)
            bad = np.flatnonzero(np.isnan(codes))
            if len(bad):
                bad_count += len(bad)
                if first_bad is None:
                    first_bad = (n + int(bad[0]), raw.iloc[int(bad[0])])
            parts.append(codes)
            n += len(df)
    except pd.errors.ParserError as err:
        m = re.search(r"line (\d+)", str(err))
        where = f"line {int(m.group(1)) + skip}" if m else "a line"
        raise ValueError(f"{path}: {where} has more than one column; a label file has one (0, 1 or 2)") from None
    codes = np.concatenate(parts) if parts else np.zeros(0)
    k = min(_trailing_blank_lines(path), len(codes))
    if k:
        codes = codes[: len(codes) - k]
        bad_count -= k
    if first_bad is not None and first_bad[0] < len(codes):
        i, value = first_bad
        raise ValueError(f"{path}: line {i + 1 + skip}: label {value!r} is not one of 0, 1, 2 "
                         f"({bad_count} bad label{'s' if bad_count > 1 else ''} in the file)")
    return codes.astype(np.int8)
