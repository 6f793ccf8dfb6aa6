"""Scoring a model version and storing its answers: the batch path, without Dagster.

A batch is prepared once (validated rows -> exact rounded features -> distinct
keys); every routed version scores the distinct rounded rows (so the same key
always gets the same answer), and the answers go to the serving store. A
version is brought up to date over every kept batch in arrival order before it
may serve (backfill), and its ``generation`` says how far it covers.

Streaming. Everything here works in chunks so that a run's memory does not
grow with the batch (DESIGN §5): `PreparedWriter` deduplicates rows across
chunks on their packed rounded values (one int64 a row); `prepare_source`
streams a CSV through it; `score_batch` hashes, scores and writes a prepared
batch's distinct inputs a chunk at a time (each distinct input is hashed once:
the first scoring keeps the digests).

A prepared batch on disk (a directory; format 2):

    prepared.json   {"format": 2, "rows": n, "keys": u, "keyed_by": "features" | "id"}
    q.npy           int32 (u, 4): each distinct input's q = 10 * rounded value
    digests.npy     S32 (u,): its raw SHA-256 (feature keys; hex on demand), written
                    by the first scoring (or first use of ``digests``)
    id_keys.npy     str (u,): ``id:<id>`` (instead of digests, when keyed by id)
    inverse.npy     int32 (n,): per good row, the index of its distinct key
    pred-<v>.npy    int8 (u,): a version's answer per distinct key

48 bytes a distinct key (plus one per version's answers) and 4 a row, where
format 1 (``keys.npy`` as ``U64``, ``Xq.npy`` float64, ``inverse.npy``
int64) took 288 and 8; format 1 directories are still read, and
`save_prepared` still writes format 1's two files beside by default (see there).
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np

from irisdag.core import keys as keyscheme

PREDICTIONS_PREFIX = "pred-"
ROWS_FILE = "rows.npy"
FORMAT = 2
META_FILE = "prepared.json"
CHUNK_ROWS = 1 << 19       # rows keyed at a time (scratch memory ~ 60 MB)
SCORE_CHUNK_KEYS = 1 << 18  # distinct keys scored and written at a time
FIRST_SCORE_CHUNK_KEYS = 1 << 16  # the first chunks are smaller: Redis starts writing sooner
_FORMAT1_FILES = ("keys.npy", "Xq.npy")
_FORMAT2_FILES = ("q.npy", "digests.npy", "id_keys.npy", "inverse.npy")


class PreparedBatch:
    """A batch's distinct keys, their rounded inputs and, per good row, its key.

    ``q``        int32 (u, 4): the distinct inputs' q = 10 * rounded values
    ``inverse``  int (n,): per good row, the index of its distinct key
    ``digests``  S32 (u,): raw SHA-256 of each key (feature keys), else None
    ``id_keys``  str (u,): ``id:<id>`` keys when the batch is keyed by id, else None

    A prepared directory gets its ``digests.npy`` from the first `score_batch`
    (which hashes a chunk while the previous one is written to Redis); until
    then ``digests`` hashes ``q`` on first use (and saves the file).
    ``keys`` (hex strings as a numpy ``U64`` array, built on first use and
    kept: 256 bytes a key) and ``Xq`` (float64 q / 10) are there for callers
    of format 1; large batches should use ``n_keys``, ``key_list(index)``,
    ``isin(keys)`` and ``digests`` instead. Numpy strips trailing zero bytes
    from single ``S32`` items: convert digests with ``keyscheme.hex_of_digests``
    or ``.tobytes()``, never item by item.
    """

    def __init__(self, q: np.ndarray, inverse: np.ndarray, digests: np.ndarray | None = None,
                 id_keys: np.ndarray | None = None, *, directory: Path | None = None):
        self.q = q
        self.inverse = inverse
        self._digests = digests
        self.id_keys = id_keys
        self.directory = directory
        self._hex: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"PreparedBatch(rows={len(self)}, keys={self.n_keys}, keyed_by_id={self.keyed_by_id})"

    @property
    def has_digests(self) -> bool:
        """Whether the feature keys' digests are at hand (computed or read), without hashing."""
        return self._digests is not None

    @property
    def digests(self) -> np.ndarray | None:
        """``S32`` (u,): each feature key's raw SHA-256 (None for an id-keyed batch)."""
        if self._digests is None and self.id_keys is None:
            if self.directory is not None:
                self._digests = _save_digests(self.directory, self.q)
            else:
                self._digests = keyscheme.digests_of_quantized(self.q)
        return self._digests

    def __len__(self) -> int:
        return len(self.inverse)

    @property
    def n_keys(self) -> int:
        """How many distinct keys (== len(keys), without building them)."""
        return len(self.q)

    @property
    def keyed_by_id(self) -> bool:
        return self.id_keys is not None

    @property
    def Xq(self) -> np.ndarray:
        """The distinct inputs as float64 (u, 4), rounded to 0.1: what the keys stand for."""
        return np.asarray(self.q, dtype=np.float64) / 10.0

    @property
    def keys(self) -> np.ndarray:
        """Every distinct key as a numpy str array (hex ``U64``, or ``id:<id>``). Built once, kept."""
        if self.id_keys is not None:
            return self.id_keys
        if self._hex is None:
            self._hex = keyscheme.hex_array_of_digests(self.digests)
        return self._hex

    def key_list(self, index=None) -> list[str]:
        """Keys as a list of str: all of them, or those at ``index`` (a slice, ints or a bool mask)."""
        if self.id_keys is not None:
            sel = self.id_keys if index is None else self.id_keys[index]
            return [str(k) for k in np.atleast_1d(sel).tolist()]
        sel = self.digests if index is None else self.digests[index]
        return keyscheme.hex_of_digests(np.atleast_1d(sel))

    def isin(self, keys) -> np.ndarray:
        """bool (u,): which distinct keys are among ``keys`` (hex/``id:`` strings, or ``S32`` digests)."""
        keys = np.asarray(keys)
        if self.id_keys is not None:
            return np.isin(self.id_keys, keys.astype(str)) if len(keys) else np.zeros(self.n_keys, bool)
        if keys.dtype.kind == "S" and keys.dtype.itemsize == 32:
            wanted = keys
        else:
            hexes = [k for k in keys.astype(str).tolist() if len(k) == 64]
            wanted = keyscheme.digests_of_hex(hexes) if hexes else np.zeros(0, "S32")
        if len(wanted) == 0:
            return np.zeros(self.n_keys, dtype=bool)
        return np.isin(np.asarray(self.digests), wanted)

    def row_digests(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """``S32`` digest per good row in [start, stop) (32 bytes a row, not 256)."""
        return np.asarray(self.digests)[np.asarray(self.inverse[start:stop])]


# ---- .npy files written in pieces ----------------------------------------------------

_NPY_HEADER_BYTES = 128


class _NpyAppender:
    """A .npy file whose rows arrive in pieces: a fixed-size header, fixed up at the end.

    Written under a temporary name in the same folder and renamed by `commit`,
    so a reader never sees half a file. numpy reads it as any .npy (and can
    memory-map it).
    """

    def __init__(self, path: Path, dtype, tail_shape: tuple = (), *, own_part: bool = False):
        self.path = Path(path)
        # own_part: a file that two processes may write at once (the same content) gets a
        # temporary name of its own per writer; the last rename wins, whole.
        mine = f".{os.getpid()}.{threading.get_ident()}" if own_part else ""
        self.tmp = self.path.with_name(f".{self.path.name}{mine}.part")
        self.dtype = np.dtype(dtype)
        self.tail = tuple(tail_shape)
        self.rows = 0
        self.f = open(self.tmp, "wb")
        self.f.write(self._header())

    def _header(self) -> bytes:
        d = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
             "shape": (self.rows, *self.tail)}
        text = repr(d).encode("latin1")
        pad = _NPY_HEADER_BYTES - 10 - len(text) - 1
        if pad < 0:  # pragma: no cover - shapes never get that long
            raise ValueError("npy header too long")
        return b"\x93NUMPY\x01\x00" + (_NPY_HEADER_BYTES - 10).to_bytes(2, "little") + text + b" " * pad + b"\n"

    def append(self, arr) -> None:
        arr = np.ascontiguousarray(arr, dtype=self.dtype)
        if arr.shape[1:] != self.tail:
            raise ValueError(f"{self.path.name}: rows of shape {arr.shape[1:]}, expected {self.tail}")
        self.f.write(arr.tobytes())
        self.rows += len(arr)

    def commit(self) -> Path:
        self.f.seek(0)
        self.f.write(self._header())
        self.f.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if not self.f.closed:
            self.f.close()
        self.tmp.unlink(missing_ok=True)


def _save_npy(path: Path, arr) -> None:
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "wb") as f:
        np.save(f, np.asarray(arr))
    os.replace(tmp, path)


def _clear_prepared(directory: Path) -> None:
    """Forget what a directory held: its prepared files and the answers aligned with them."""
    (directory / META_FILE).unlink(missing_ok=True)
    for name in (*_FORMAT1_FILES, *_FORMAT2_FILES):
        (directory / name).unlink(missing_ok=True)
    for path in directory.glob(f"{PREDICTIONS_PREFIX}*.npy"):
        path.unlink(missing_ok=True)
    for path in directory.glob(".digests.npy.*.part"):  # left by a scorer that was killed
        path.unlink(missing_ok=True)


def _save_digests(directory: Path, q) -> np.ndarray:
    """Hash a prepared batch's distinct inputs a chunk at a time into its ``digests.npy``; returns them."""
    out = _NpyAppender(Path(directory) / "digests.npy", "S32", own_part=True)
    try:
        for start in range(0, len(q), SCORE_CHUNK_KEYS):
            out.append(keyscheme.digests_of_quantized(np.asarray(q[start:start + SCORE_CHUNK_KEYS])))
        path = out.commit()
    except BaseException:
        out.abort()
        raise
    return np.load(path, mmap_mode="r")


def _write_meta(directory: Path, rows: int, n_keys: int, keyed_by: str) -> None:
    write_json(directory / META_FILE, {"format": FORMAT, "rows": int(rows), "keys": int(n_keys),
                                       "keyed_by": keyed_by, "scheme": keyscheme.SCHEME})


# ---- preparing: rows -> distinct keys, across chunks -----------------------------------

class PreparedWriter:
    """Keys a batch a chunk at a time: rows to distinct rounded inputs (hashed later, once, see `PreparedBatch`).

    ``add(X, ids=None)`` takes good rows (float (m, 4), validated) in file
    order, any number of times; ``close()`` returns the `PreparedBatch`. With
    a ``directory`` the files are written as the chunks arrive (memory holds
    the chunk plus 12 bytes a distinct input), then committed by ``close()``,
    which returns the batch memory-mapped; without one it is built in memory
    with its keys in sorted order (as `prepare` always gave them).

    Rows are deduplicated on their packed q values (one int64 a row; rows
    with |q| >= 2^15 apart, by digest); a batch keyed by id keeps each id's
    last row.
    """

    def __init__(self, directory: Path | str | None = None, *, chunk_rows: int = CHUNK_ROWS):
        self.directory = Path(directory) if directory is not None else None
        self.chunk_rows = max(int(chunk_rows), 1)
        self.rows = 0
        self.n_keys = 0
        self.mode: str | None = None  # "features" or "id", fixed by the first add
        # features: sorted packed values seen so far and the key index of each
        self._known = np.zeros(0, dtype=np.int64)
        self._known_idx = np.zeros(0, dtype=np.int64)
        self._large: dict[bytes, int] = {}  # rows beyond the packing: q row bytes -> key index
        # ids
        self._id_index: dict[str, int] = {}
        self._id_list: list[str] = []
        self._id_q = np.zeros((0, keyscheme.N_FEATURES), dtype=np.int32)
        self._ids_before = 0
        self.conflicting_ids: set[int] = set()  # key indexes of ids seen with different features
        self._closed = False
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            _clear_prepared(self.directory)
            self._inv_file = _NpyAppender(self.directory / "inverse.npy", np.int32)
            self._q_file = _NpyAppender(self.directory / "q.npy", np.int32, (keyscheme.N_FEATURES,))
        else:
            self._inv_parts: list[np.ndarray] = []
            self._q_parts: list[np.ndarray] = []

    # -- input

    def add(self, X, ids=None) -> None:
        """Add good rows (and, for an id-keyed batch, their ids)."""
        if self._closed:
            raise ValueError("PreparedWriter is closed")
        X = np.asarray(X, dtype=np.float64).reshape(-1, keyscheme.N_FEATURES)
        mode = "id" if ids is not None else "features"
        if self.mode is None:
            self.mode = mode
        elif mode != self.mode:
            raise ValueError(f"a batch is keyed by features or by id, not both (started with {self.mode})")
        if ids is not None:
            ids = np.asarray(ids, dtype=object).reshape(-1)
            if len(ids) != len(X):
                raise ValueError(f"{len(ids)} ids for {len(X)} rows")
        for start in range(0, len(X), self.chunk_rows):
            part = X[start:start + self.chunk_rows]
            if ids is None:
                self._add_features(part)
            else:
                self._add_ids(part, ids[start:start + self.chunk_rows])

    def _emit_inverse(self, inv: np.ndarray) -> None:
        if self.directory is not None:
            if self.n_keys >= 2 ** 31:  # pragma: no cover - two billion distinct inputs
                raise ValueError("too many distinct keys for one batch")
            self._inv_file.append(inv.astype(np.int32))
        else:
            self._inv_parts.append(inv.astype(np.int64))
        self.rows += len(inv)

    def _emit_keys(self, Q: np.ndarray) -> None:
        if self.directory is not None:
            self._q_file.append(Q.astype(np.int32))
        else:
            self._q_parts.append(Q.astype(np.int32))
        self.n_keys += len(Q)

    def _add_features(self, X: np.ndarray) -> None:
        Q = keyscheme.quantize_array(X)
        inv = np.empty(len(Q), dtype=np.int64)
        fits = keyscheme.packable(Q)
        if fits.all():
            up, cinv = keyscheme.unique_packed(keyscheme.pack_quantized(Q))
            inv[:] = self._index_packed(up)[cinv]
            self._emit_inverse(inv)
            return
        small, large = np.flatnonzero(fits), np.flatnonzero(~fits)
        if len(small):
            up, cinv = keyscheme.unique_packed(keyscheme.pack_quantized(Q[small]))
            inv[small] = self._index_packed(up)[cinv]
        ul, linv = np.unique(Q[large], axis=0, return_inverse=True)
        g = np.empty(len(ul), dtype=np.int64)
        for i, row in enumerate(ul):
            b = row.tobytes()
            idx = self._large.get(b)
            if idx is None:
                idx = self._large[b] = self.n_keys
                self._emit_keys(ul[i:i + 1])
            g[i] = idx
        inv[large] = g[linv.reshape(-1)]
        self._emit_inverse(inv)

    def _index_packed(self, up: np.ndarray) -> np.ndarray:
        """Key index of each sorted distinct packed value; new ones are emitted."""
        known = self._known
        pos = np.searchsorted(known, up)
        hit = np.zeros(len(up), dtype=bool)
        inside = pos < len(known)
        hit[inside] = known[pos[inside]] == up[inside]
        g = np.empty(len(up), dtype=np.int64)
        g[hit] = self._known_idx[pos[hit]]
        new = np.flatnonzero(~hit)
        if len(new):
            g[new] = self.n_keys + np.arange(len(new), dtype=np.int64)
            self._emit_keys(keyscheme.unpack_quantized(up[new]))
            self._known = np.insert(known, pos[new], up[new])
            self._known_idx = np.insert(self._known_idx, pos[new], g[new])
        return g

    def _add_ids(self, X: np.ndarray, ids: np.ndarray) -> None:
        import pandas as pd

        id_keys = [keyscheme.id_key(i) for i in ids.tolist()]  # InputError names a bad id
        Q = keyscheme.quantize_array(X)
        codes, uniq = pd.factorize(np.asarray(id_keys, dtype=object), sort=False)
        last = np.zeros(len(uniq), dtype=np.int64)
        np.maximum.at(last, codes, np.arange(len(codes), dtype=np.int64))
        g = np.empty(len(uniq), dtype=np.int64)
        for j, k in enumerate(uniq.tolist()):
            idx = self._id_index.get(k)
            if idx is None:
                idx = self._id_index[k] = len(self._id_list)
                self._id_list.append(k)
            g[j] = idx
        known = g < self._ids_before  # ids seen in an earlier chunk
        if len(self._id_list) > len(self._id_q):
            size = max(len(self._id_list), 2 * len(self._id_q))
            grown = np.zeros((size, keyscheme.N_FEATURES), dtype=np.int32)
            grown[:len(self._id_q)] = self._id_q
            self._id_q = grown
        # An id whose rows carry different rounded features is a conflict (issue 8 item 3):
        # the caller quarantines all its rows; the same features again are a plain repeat.
        first = np.full(len(uniq), len(codes), dtype=np.int64)
        np.minimum.at(first, codes, np.arange(len(codes), dtype=np.int64))
        differs = (Q != Q[first[codes]]).any(axis=1)
        clash = np.zeros(len(uniq), dtype=bool)
        clash[codes[differs]] = True
        clash[known] |= (self._id_q[g[known]] != Q[first[known]]).any(axis=1)
        if clash.any():
            self.conflicting_ids.update(g[clash].tolist())
        self._ids_before = len(self._id_list)
        self._id_q[g] = Q[last]  # the id's last row so far wins
        self.n_keys = len(self._id_list)
        self._emit_inverse(g[codes])

    # -- output

    def close(self) -> PreparedBatch:
        if self._closed:
            raise ValueError("PreparedWriter is closed")
        self._closed = True
        keyed_by = self.mode or "features"
        if self.directory is None:
            return self._close_memory(keyed_by)
        try:
            if keyed_by == "id":
                self._q_file.abort()
                _save_npy(self.directory / "q.npy", self._id_q[:len(self._id_list)])
                _save_npy(self.directory / "id_keys.npy", np.array(self._id_list, dtype=str).reshape(-1))
            else:
                self._q_file.commit()
            self._inv_file.commit()
        except BaseException:
            self.abort()
            raise
        _write_meta(self.directory, self.rows, self.n_keys, keyed_by)
        return load_prepared(self.directory)

    def abort(self) -> None:
        """Drop what was written (after an error)."""
        self._closed = True
        if self.directory is not None:
            for f in (self._inv_file, self._q_file):
                f.abort()

    def _close_memory(self, keyed_by: str) -> PreparedBatch:
        inverse = np.concatenate(self._inv_parts) if self._inv_parts else np.zeros(0, dtype=np.int64)
        if keyed_by == "id":
            names = np.array(self._id_list, dtype=str).reshape(-1)
            order = np.argsort(names, kind="stable")
            q = self._id_q[:len(names)][order]
            rank = np.empty(len(order), dtype=np.int64)
            rank[order] = np.arange(len(order), dtype=np.int64)
            return PreparedBatch(q=q, inverse=rank[inverse], id_keys=names[order])
        q = np.concatenate(self._q_parts) if self._q_parts else np.zeros((0, keyscheme.N_FEATURES), np.int32)
        # Keys in the rows' lexicographic order, as format 1 had them.
        order = np.lexsort(q.T[::-1]) if len(q) else np.zeros(0, dtype=np.int64)
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order), dtype=np.int64)
        q = q[order]
        return PreparedBatch(q=q, inverse=rank[inverse], digests=keyscheme.digests_of_quantized(q))


def prepare(X: np.ndarray, ids=None) -> PreparedBatch:
    """Validated rows to distinct keys, in memory. With ids, the id is the key (last row of an id wins)."""
    writer = PreparedWriter(None)
    writer.add(X, ids)
    return writer.close()


def prepare_array(directory: Path, X: np.ndarray, ids=None, *, chunk_rows: int = CHUNK_ROWS) -> PreparedBatch:
    """Validated rows (e.g. the generator's) straight to a prepared directory, a chunk at a time."""
    writer = PreparedWriter(directory, chunk_rows=chunk_rows)
    try:
        writer.add(X, ids)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def prepare_source(source, directory: Path, *, chunk_bytes: int | None = None) -> dict:
    """Stream a batch source CSV (DESIGN §6) into a prepared directory; memory stays bounded.

    Besides the prepared files, writes ``positions.npy`` (int64: the data-row
    index of each good row, to align feedback labels), ``rows.npy`` (int64:
    each good row's line number in the file, for messages) and
    ``quarantine.json`` (quarantined rows counted by reason and a bounded
    sample: `batches.Quarantine`). An id that appears with different features
    has all its rows quarantined (kind ``duplicate_id``). Returns the batch's
    summary: source, rows_read, rows_good, rows_quarantined,
    quarantined_by_reason, distinct_keys, keyed_by, header, ignored_columns,
    blank_lines and quarantine (the ``quarantine.json`` content).
    """
    from irisdag.core.batches import DEFAULT_CHUNK_BYTES, Quarantine, iter_feature_csv

    directory = Path(directory)
    writer = PreparedWriter(directory)
    positions = _NpyAppender(directory / "positions.npy", np.int64)
    rows = _NpyAppender(directory / ROWS_FILE, np.int64)
    quarantine = Quarantine()
    rows_read = blank = 0
    header = ignored = None
    has_ids = False
    try:
        for part in iter_feature_csv(source, chunk_bytes=chunk_bytes or DEFAULT_CHUNK_BYTES):
            has_ids = part.ids is not None
            if len(part):
                writer.add(part.X, part.ids)
            positions.append(part.positions)
            rows.append(part.row_numbers)
            chunk = Quarantine(len(part.quarantine))
            chunk.counts, chunk.sample = dict(part.quarantine_counts), list(part.quarantine)
            quarantine.merge(chunk)
            rows_read += part.rows_read
            blank += part.blank_lines
            header, ignored = part.header, part.ignored_columns
        if writer.mode is None and has_ids:
            writer.mode = "id"
        conflicts = sorted(writer.conflicting_ids)
        prepared = writer.close()
        positions.commit()
        rows.commit()
    except BaseException:
        writer.abort()
        positions.abort()
        rows.abort()
        raise
    if conflicts:
        prepared = _quarantine_conflicting_ids(directory, prepared, conflicts, quarantine)
    quarantine.sample.sort(key=lambda q: q["row"])
    saved = quarantine.to_json()
    write_json(directory / "quarantine.json", saved)
    return {
        "source": str(source), "rows_read": int(rows_read), "rows_good": len(prepared),
        "rows_quarantined": quarantine.total, "quarantined_by_reason": dict(quarantine.counts),
        "distinct_keys": prepared.n_keys,
        "keyed_by": "id" if prepared.keyed_by_id else "iris-r1 feature hash",
        "header": header, "ignored_columns": list(ignored or []), "blank_lines": int(blank),
        "quarantine": saved,
    }


def _quarantine_conflicting_ids(directory: Path, prepared: PreparedBatch, conflicts: list, quarantine) -> PreparedBatch:
    """Drop every row of the ids seen with different features from a prepared id-keyed batch; count them."""
    from irisdag.core.batches import duplicate_id_reason

    inverse = np.asarray(prepared.inverse)
    bad_key = np.zeros(prepared.n_keys, dtype=bool)
    bad_key[np.asarray(conflicts, dtype=np.int64)] = True
    bad_row = bad_key[inverse]
    line_numbers = np.load(directory / "rows.npy")
    positions = np.load(directory / "positions.npy")
    ids = np.asarray(prepared.id_keys)
    rows_of: dict = {}
    for i in np.flatnonzero(bad_row).tolist():
        rows_of.setdefault(int(inverse[i]), []).append(int(line_numbers[i]))
    for i in np.flatnonzero(bad_row).tolist():
        k = int(inverse[i])
        quarantine.add(int(line_numbers[i]), int(positions[i]), "duplicate_id",
                       duplicate_id_reason(int(line_numbers[i]), str(ids[k])[len(keyscheme.ID_PREFIX):], rows_of[k]))
    keep_key = ~bad_key
    renumber = np.cumsum(keep_key) - 1
    keep = ~bad_row
    new_inverse = renumber[inverse[keep]].astype(inverse.dtype)
    q = np.asarray(prepared.q)[keep_key]
    new_ids = ids[keep_key]
    del prepared  # the memory maps are replaced below
    _save_npy(directory / "q.npy", q)
    _save_npy(directory / "id_keys.npy", new_ids)
    _save_npy(directory / "inverse.npy", new_inverse)
    _save_npy(directory / "positions.npy", positions[keep])
    _save_npy(directory / "rows.npy", line_numbers[keep])
    _write_meta(directory, int(keep.sum()), int(keep_key.sum()), "id")
    return load_prepared(directory)


def save_prepared(directory: Path, batch: PreparedBatch, *, format1_copy: bool = True) -> None:
    """Write an in-memory prepared batch (format 2). Answers kept for the directory's old keys are dropped.

    ``format1_copy`` also writes format 1's ``keys.npy`` (hex as ``U64``: 256
    bytes a key) and ``Xq.npy``, for readers that open those files directly
    rather than through `load_prepared` (some tests still do). The streaming
    writers (`PreparedWriter`, `prepare_array`, `prepare_source`) never write
    them; once no reader opens them, pass False (or stop calling this).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _clear_prepared(directory)
    _save_npy(directory / "q.npy", np.asarray(batch.q, dtype=np.int32))
    if batch.id_keys is not None:
        _save_npy(directory / "id_keys.npy", np.asarray(batch.id_keys, dtype=str))
    else:
        _save_npy(directory / "digests.npy", np.asarray(batch.digests, dtype="S32"))
    big = batch.n_keys >= 2 ** 31
    _save_npy(directory / "inverse.npy", np.asarray(batch.inverse, dtype=np.int64 if big else np.int32))
    if format1_copy:
        _save_npy(directory / "keys.npy", np.asarray(batch.keys))
        _save_npy(directory / "Xq.npy", batch.Xq)
    _write_meta(directory, len(batch), batch.n_keys, "id" if batch.id_keys is not None else "features")


def load_prepared(directory: Path, *, mmap: bool = True) -> PreparedBatch:
    """A prepared directory (format 2, memory-mapped unless ``mmap=False``; or format 1)."""
    directory = Path(directory)
    mode = "r" if mmap else None
    if (directory / META_FILE).exists():
        meta = read_json(directory / META_FILE)
        if int(meta.get("format", 0)) != FORMAT:
            raise ValueError(f"{directory}: prepared batch format {meta.get('format')} is not {FORMAT}")
        q = np.load(directory / "q.npy", mmap_mode=mode)
        inverse = np.load(directory / "inverse.npy", mmap_mode=mode)
        if meta.get("keyed_by") == "id":
            return PreparedBatch(q=q, inverse=inverse, id_keys=np.load(directory / "id_keys.npy"))
        digests = directory / "digests.npy"
        return PreparedBatch(q=q, inverse=inverse, directory=directory,
                             digests=np.load(digests, mmap_mode=mode) if digests.exists() else None)
    if (directory / "keys.npy").exists():  # format 1
        keys = np.load(directory / "keys.npy")
        Xq = np.load(directory / "Xq.npy")
        q = np.rint(np.asarray(Xq, dtype=np.float64) * 10.0).astype(np.int32).reshape(-1, keyscheme.N_FEATURES)
        inverse = np.load(directory / "inverse.npy")
        if len(keys) and str(keys[0]).startswith(keyscheme.ID_PREFIX):
            return PreparedBatch(q=q, inverse=inverse, id_keys=keys.astype(str))
        return PreparedBatch(q=q, inverse=inverse, digests=keyscheme.digests_of_hex(keys.tolist()))
    raise FileNotFoundError(f"{directory} holds no prepared batch")


def predictions_path(directory: Path, version: str) -> Path:
    return Path(directory) / f"{PREDICTIONS_PREFIX}{version}.npy"


def load_row_predictions(directory: Path, version: str) -> np.ndarray:
    """Per good row of a batch, the class index this version answered (int8, one byte a row)."""
    batch = load_prepared(directory)
    return np.load(predictions_path(directory, version))[np.asarray(batch.inverse)]


def score_batch(store, booster, version: str, directory: Path, *,
                chunk_keys: int = SCORE_CHUNK_KEYS) -> tuple[int, np.ndarray]:
    """Score one kept batch's distinct inputs with a version and write them. Returns (written, labels).

    A chunk of distinct inputs at a time: chunk i + 1 is hashed (the batch's
    first scoring: its digests are kept in the batch for the next ones) and
    scored while a writer thread sends chunk i to Redis (XGBoost and the
    socket release the GIL, and Redis runs on the other core). ``labels`` is
    int8, one per distinct key, in the batch's key order.
    """
    from concurrent.futures import ThreadPoolExecutor

    from irisdag.models.artifacts import predict_labels

    directory = Path(directory)
    batch = load_prepared(directory)
    u = batch.n_keys
    labels = np.empty(u, dtype=np.int8)
    written = 0
    chunk_keys = max(int(chunk_keys), 1)
    hashing = None if batch.keyed_by_id or batch.has_digests else _NpyAppender(
        directory / "digests.npy", "S32", own_part=True)
    if u:
        store.reserve_keys(version, u)  # grow the version's layout once for the batch, not chunk by chunk
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="irisdag-write") as pool:
            pending = None
            start, size = 0, min(chunk_keys, FIRST_SCORE_CHUNK_KEYS)
            while start < u:
                stop = min(u, start + size)
                q = np.asarray(batch.q[start:stop])
                if batch.keyed_by_id:
                    keys = batch.id_keys[start:stop].tolist()
                elif hashing is not None:
                    keys = keyscheme.digests_of_quantized(q)
                    hashing.append(keys)
                else:
                    keys = np.asarray(batch.digests[start:stop])
                try:
                    # One XGBoost thread: the other core is busy with Redis, and OpenMP's
                    # waiting threads would take CPU from it and from the hashing.
                    part = predict_labels(booster, q.astype(np.float64) / 10.0, threads=1).astype(np.int8)
                except keyscheme.InputError as err:
                    raise _in_file_terms(err, directory, batch, start) from None
                labels[start:stop] = part
                if pending is not None:
                    written += pending.result()
                pending = pool.submit(store.write_predictions, version, keys, part)
                start, size = stop, min(chunk_keys, 2 * size)
            if pending is not None:
                written += pending.result()
        if hashing is not None:
            hashing.commit()
    except BaseException:
        if hashing is not None:
            hashing.abort()
        raise
    # The file is written after Redis: a batch file never claims answers Redis lacks.
    _save_npy(predictions_path(directory, version), labels)
    return written, labels


def _in_file_terms(err, directory: Path, batch: PreparedBatch, start: int):
    """A scorer's refusal of distinct key ``start + err.row - 1`` restated with the file's row (1-based)."""
    key_index = start + int(err.row) - 1
    good = np.flatnonzero(np.asarray(batch.inverse) == key_index)
    row = None
    if len(good):
        # The row whose features were scored: the first with this key (by id: the id's last row).
        g = int(good[-1] if batch.keyed_by_id else good[0])
        if (directory / ROWS_FILE).exists():
            row = int(np.load(directory / ROWS_FILE, mmap_mode="r")[g])
        elif (directory / "positions.npy").exists():
            row = int(np.load(directory / "positions.npy", mmap_mode="r")[g]) + 1
        else:
            row = g + 1  # rows given as an array (generated batch, queued misses): their order
    return keyscheme.InputError(f"{err.reason} (batch {directory.name})", value=err.value,
                                position=err.position, row=row)


def bring_up_to_date(store, booster, version: str, batches_root: Path, log=None) -> dict:
    """Score every kept batch this version has not covered yet, in arrival order.

    Refused by the store when the version has no passing verdict. Marks each
    generation after its last chunk, so a version killed mid-write stays
    incomplete (and unroutable) until a retried run finishes it.
    """
    info = store.version_info(version)
    if info is None:
        raise ValueError(f"model version {version} is not registered in the serving store")
    if info.get("validated") != "1":
        raise ValueError(
            f"model version {version} has no passing validity verdict "
            f"(validated={info.get('validated')!r}); refusing to score it")
    done = int(info.get("generation") or 0)
    kept = store.kept_partitions()
    scored, written = [], 0
    for index, partition in enumerate(kept, start=1):
        if index <= done:
            continue
        n, _ = score_batch(store, booster, version, batches_root / partition)
        store.mark_generation(version, index, n)
        if index == done + 1:
            # This batch may be a retry of a write that died mid-way: `keys` added only
            # what was new this time, so count what Redis really holds (one HLEN a shard).
            store.recount_keys(version)
        scored.append(partition)
        written += n
        if log:
            log(f"{version[:12]}: scored batch {partition} (generation {index}, {n} new keys)")
    return {"scored_partitions": scored, "keys_written": written, "generation": len(kept)}


def score_then_keep(store, boosters: dict, partition: str, batches_root: Path, log=None) -> int:
    """Score a new batch with every given version, and only then register it as a kept batch.

    A kept batch is scored by every later scoring run (`bring_up_to_date`), so
    registering one that cannot be scored would block them all: here each
    version is first brought up to date over the batches already kept, then
    scores the new one; the batch joins the kept list (and each version's
    generation moves to it) only when every version answered it. Returns the
    number of distinct keys the batch holds.
    """
    directory = Path(batches_root) / partition
    for version, booster in boosters.items():
        bring_up_to_date(store, booster, version, batches_root, log=log)
    written = {version: score_batch(store, booster, version, directory)[0] for version, booster in boosters.items()}
    index = store.partition_index(partition)
    for version, booster in boosters.items():
        done = int((store.version_info(version) or {}).get("generation") or 0)
        if done == index - 1:
            store.mark_generation(version, index, written[version])
            store.recount_keys(version)
        else:  # another run kept a batch meanwhile: cover everything in order
            bring_up_to_date(store, booster, version, batches_root, log=log)
    return load_prepared(directory).n_keys


def write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    tmp.replace(path)


def read_json(path: Path, default=None):
    return json.loads(path.read_text()) if path.exists() else default
