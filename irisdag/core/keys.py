"""The input key, scheme ``iris-r1`` (DESIGN §2).

Round each feature to one decimal exactly as Python's ``round(x, 1)`` does
(half-to-even on the exact binary value), format it from the integer
q = 10 * rounded value, join with one space, SHA-256 the UTF-8 bytes.
"""
from __future__ import annotations

import functools
import hashlib
import math
import re
import sys
from typing import Iterable, Sequence

from irisdag.lazy import numpy as np  # imported on first use: a lookup needs none

SCHEME = "iris-r1"
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
N_FEATURES = len(FEATURES)
BOUND = 1e6  # |round(x, 1)| must be strictly below this
ID_PREFIX = "id:"
MAX_ID_LENGTH = 256


# The bound applies to the ROUNDED value (DESIGN §2): |round(x, 1)| < 10^6, i.e. |q| < 10^7.
# `in_bounds` and `in_bounds_array` are the one definition every entry uses (CLI, batch,
# miss, fallback, scorer), so 999999.96 (which rounds to 1000000.0) is refused everywhere.
Q_BOUND = 10 * 10**6
_CLEARLY_OUT = 2e6  # beyond this no rounding can bring a value back in (and quantize stays finite)

# ASCII decimal or exponent notation, optionally signed, with ASCII blanks around it.
# Python's float() also takes '5_0', non-ASCII digits ('٥', '５'), unicode spaces and
# 'infinity': none of those is a number here.
_ASCII_BLANKS = " \t\r\n\x0b\x0c"
NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NAN_RE = re.compile(r"[+-]?nan", re.IGNORECASE)
_INF_RE = re.compile(r"[+-]?inf(?:inity)?", re.IGNORECASE)
MAX_SHOWN = 60  # characters of a bad value quoted in a message


def shown(value) -> str:
    """repr of a value for a message, cut to MAX_SHOWN characters (a message never carries a whole huge field)."""
    r = repr(value)
    return r if len(r) <= MAX_SHOWN else r[:MAX_SHOWN] + f"…({len(r)} chars)"


class InputError(ValueError):
    """A value that cannot be keyed. Names the value and where it stood.

    Rows and positions are numbered from 1 in messages: ``row 3, position 2
    (sepal_width)``; the ``position`` attribute stays the 0-based index.
    ``kind`` is a stable reason class (counted by quarantines).
    """

    def __init__(self, message: str, *, value=None, position: int | None = None, row: int | None = None,
                 kind: str = "invalid"):
        where = []
        if row is not None:
            where.append(f"row {row}")
        if position is not None:
            where.append(f"position {position + 1} ({FEATURES[position]})" if 0 <= position < N_FEATURES
                         else f"position {position + 1}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.value = value
        self.position = position
        self.row = row
        self.reason = message
        self.kind = kind


def in_bounds(x: float) -> bool:
    """A finite float whose value rounded to 0.1 (exactly, `quantize`) has |.| < 10^6."""
    a = abs(x)
    return a < BOUND - 1.0 or (a < _CLEARLY_OUT and abs(quantize(x)) < Q_BOUND)  # only near 1e6 can rounding decide


def check_value(x, position: int, row: int | None = None, shown_text=None) -> float:
    """One feature value: a real, finite number whose rounded value has |x| < 10^6.

    ``shown_text`` is the value as the caller wrote it (text from a command
    line or CSV), so the error names what the user typed, not its float.
    """
    name = shown(x if shown_text is None else shown_text)
    numpy = sys.modules.get("numpy")  # a numpy scalar can exist only once numpy is imported
    numpy_bool, numpy_number = ((numpy.bool_,), (numpy.integer, numpy.floating)) if numpy else ((), ())
    if isinstance(x, (bool, *numpy_bool)) or not isinstance(x, (int, float, *numpy_number)):
        raise InputError(f"{name} is not a number", value=x, position=position, row=row, kind="not_a_number")
    try:
        xf = float(x)
    except OverflowError:  # a Python int beyond the double range
        raise InputError(f"{name} is out of bounds (|x| rounded to 0.1 must be < 1e6)", value=x, position=position,
                         row=row, kind="out_of_bounds") from None
    if math.isnan(xf):
        raise InputError(f"{name} is NaN", value=x, position=position, row=row, kind="nan")
    if math.isinf(xf):
        raise InputError(f"{name} is infinite", value=x, position=position, row=row, kind="infinite")
    if not in_bounds(xf):
        if abs(xf) < _CLEARLY_OUT:
            means = f"rounds to {format_q(quantize(xf))}; "
        else:  # text such as '1e7' is also shown as the number it means
            means = f"= {xf!r}; " if shown_text is not None and str(shown_text).strip() != repr(xf) else ""
        raise InputError(f"{name} is out of bounds ({means}|x| rounded to 0.1 must be < 1e6)", value=x,
                         position=position, row=row, kind="out_of_bounds")
    return xf


def validate_features(values, row: int | None = None) -> tuple[float, float, float, float]:
    """Four finite numbers in the order of FEATURES, or an InputError naming the bad one."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InputError(f"expected four numbers, got {shown(values)}", value=values, row=row, kind="field_count")
    vals = list(values)
    if len(vals) != N_FEATURES:
        raise InputError(
            f"expected {N_FEATURES} values ({', '.join(FEATURES)}), got {len(vals)}: {shown(vals)}",
            value=vals, row=row, kind="field_count")
    return tuple(check_value(v, i, row) for i, v in enumerate(vals))  # type: ignore[return-value]


def parse_number(text, position: int, row: int | None = None) -> float:
    """One text field (command line, CSV) to a validated value: ASCII decimal or exponent notation only."""
    if not isinstance(text, str):
        return check_value(text, position, row)
    s = text.strip(_ASCII_BLANKS)
    if not NUMBER_RE.fullmatch(s):
        if _NAN_RE.fullmatch(s):
            raise InputError(f"{shown(text)} is NaN", value=text, position=position, row=row, kind="nan")
        if _INF_RE.fullmatch(s):
            raise InputError(f"{shown(text)} is infinite", value=text, position=position, row=row, kind="infinite")
        raise InputError(f"{shown(text)} is not a number (ASCII decimal or exponent notation only)",
                         value=text, position=position, row=row, kind="not_a_number")
    return check_value(float(s), position, row, shown_text=text)


def parse_features(texts: Sequence[str], row: int | None = None) -> tuple[float, float, float, float]:
    """Text fields (command line, CSV) to validated features; names the field that fails."""
    if len(texts) != N_FEATURES:
        raise InputError(
            f"expected {N_FEATURES} values ({', '.join(FEATURES)}), got {len(texts)}: {shown(list(texts))}",
            value=list(texts), row=row, kind="field_count")
    return tuple(parse_number(t, i, row) for i, t in enumerate(texts))  # type: ignore[return-value]


def quantize(x: float) -> int:
    """q = 10 * round(x, 1), exactly (CPython's round is correctly rounded, half-even).

    Always on a Python float: numpy's own round(np.float64, 1) scales by 10 in
    floating point and gets ties near 1e6 wrong.
    """
    return int(round(round(float(x), 1) * 10))


def format_q(q: int) -> str:
    a = -q if q < 0 else q
    return f"{'-' if q < 0 else ''}{a // 10}.{a % 10}"


def canonical_q(qs: Sequence[int]) -> str:
    return " ".join(format_q(int(q)) for q in qs)


def canonical(values) -> str:
    """The canonical string of validated features, e.g. '5.0 2.9 1.1 0.4'."""
    return canonical_q([quantize(v) for v in validate_features(values)])


def key_of_canonical(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def input_key(values) -> str:
    """Lowercase hex SHA-256 of the canonical string."""
    return key_of_canonical(canonical(values))


def id_key(entity_id) -> str:
    """Key for an entity id: ``id:<id>``, which can never collide with a 64-hex feature key."""
    s = str(entity_id).strip() if entity_id is not None else ""
    if not s:
        raise InputError(f"entity id {entity_id!r} is empty", value=entity_id)
    if len(s) > MAX_ID_LENGTH or any(ch.isspace() for ch in s):
        raise InputError(f"entity id {entity_id!r} must be at most {MAX_ID_LENGTH} characters without spaces", value=entity_id)
    return ID_PREFIX + s


# ---- vectorized path (batches) ------------------------------------------------

def in_bounds_array(X: np.ndarray) -> np.ndarray:
    """bool, elementwise: finite and |round(x, 1)| < 10^6 -- `in_bounds` without Python per value."""
    X = np.asarray(X, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(X) & (np.abs(X) < _CLEARLY_OUT)
    edge = ok & (np.abs(X) >= BOUND - 1.0)  # only values this close to the bound can round across it
    if edge.any():
        ok[edge] = np.abs(quantize_array(X[edge])) < Q_BOUND
    return ok


def invalid_mask(X: np.ndarray) -> np.ndarray:
    """Rows of a float (N, 4) array that fail validation (NaN, inf, |round(x, 1)| >= 1e6)."""
    return ~in_bounds_array(np.asarray(X, dtype=np.float64).reshape(-1, N_FEATURES)).all(axis=1)


def describe_invalid(row_values: Sequence[float], row: int) -> str:
    """The validation message for one bad row (first bad value)."""
    try:
        validate_features([float(v) for v in row_values], row=row)
    except InputError as err:
        return str(err)
    return f"row {row}: valid"  # pragma: no cover - only called for invalid rows


QUANTIZE_CHUNK_VALUES = 1 << 16  # values rounded at a time: the temporaries stay in cache


def quantize_array(X: np.ndarray) -> np.ndarray:
    """Exact q = 10 * round(x, 1) for a validated float array (any shape; rows of four), as int64.

    Equal to `quantize` on every value, without Python per value. y = fl(10x)
    is within 2^-30 of the exact 10x (|x| < 1e6), and rint rounds half-even
    symmetrically (-0.04 and -0.0 give q = 0), so np.rint(y) is right wherever
    y is not within 1e-6 of a .5 tie, i.e. wherever |y - rint(y)| <= 0.5 - 1e-6
    (y - rint(y) is exact: Sterbenz). The few values nearer a tie are decided
    exactly by `_round_near_tie`. Works through the values a cache-sized
    chunk at a time into preallocated scratch (five passes over each value).
    """
    X = np.asarray(X, dtype=np.float64)
    flat = np.ascontiguousarray(X).reshape(-1)
    out = np.empty(flat.shape, dtype=np.int64)
    step = max(1, min(len(flat), QUANTIZE_CHUNK_VALUES))
    y, q, d = np.empty(step), np.empty(step), np.empty(step)
    near = np.empty(step, dtype=bool)
    for start in range(0, len(flat), step):
        x = flat[start:start + step]
        m = len(x)
        ym, qm, dm, nm = y[:m], q[:m], d[:m], near[:m]
        np.multiply(x, 10.0, out=ym)
        np.rint(ym, out=qm)
        np.subtract(ym, qm, out=dm)
        np.abs(dm, out=dm)
        np.greater(dm, 0.5 - 1e-6, out=nm)
        if nm.any():
            idx = np.flatnonzero(nm)
            xs = x[idx]
            qa = _round_near_tie(np.abs(xs))
            qm[idx] = np.where(xs < 0, -qa, qa)
        out[start:start + m] = qm
    return out.reshape(X.shape)


def _round_near_tie(a: np.ndarray) -> np.ndarray:
    """round(10a) half-even, exactly, for values a >= 0 whose fl(10a) lies within 1e-6 of k + 1/2 (float).

    The question is the sign of 20a - (2k + 1): 20a = 16a + 4a (both exact)
    summed with TwoSum into s + e (exact); s - (2k + 1) is exact (Sterbenz: s
    is within a hair of 2k + 1), and the rounded sum (s - (2k + 1)) + e is
    zero only when the exact one is, and otherwise has its sign. Zero means an
    exact tie: to the even q.
    """
    k = np.floor(a * 10.0)
    big, small = a * 16.0, a * 4.0
    s = big + small
    bb = s - big
    e = (big - (s - bb)) + (small - bb)
    c = (s - (2.0 * k + 1.0)) + e
    odd = np.fmod(k, 2.0) == 1.0
    return np.where(c > 0, k + 1.0, np.where(c < 0, k, k + odd))


# ---- packing: one int64 per row ---------------------------------------------------
# Real measurements have |q| < 2^15 (|x| < 3276.8): the four q values of a row
# fit 16 bits each, and the packed int64 orders like the rows (lexicographically),
# so deduplicating packed values deduplicates rows.

PACK_OFFSET = 1 << 15


def packable(Q: np.ndarray) -> np.ndarray:
    """Rows of an int (N, 4) q array whose values all fit the 16-bit packing."""
    Q = np.asarray(Q)
    return ((Q >= -PACK_OFFSET) & (Q < PACK_OFFSET)).all(axis=1)


def pack_quantized(Q: np.ndarray) -> np.ndarray:
    """int64 (N,) of packable rows (see `packable`), ordered as the rows are (lexicographically).

    The first value goes signed into the top 16 bits (so the sign bit is its
    sign), the other three offset by 2^15 into 16 unsigned bits each.
    """
    Q = np.asarray(Q, dtype=np.int64).reshape(-1, N_FEATURES)
    off = Q[:, 1:] + PACK_OFFSET
    return (Q[:, 0] << 48) | (off[:, 0] << 32) | (off[:, 1] << 16) | off[:, 2]


def unpack_quantized(P: np.ndarray) -> np.ndarray:
    """The inverse of `pack_quantized`: int64 (N, 4)."""
    P = np.asarray(P, dtype=np.int64).reshape(-1)
    out = np.empty((len(P), N_FEATURES), dtype=np.int64)
    out[:, 0] = P >> 48  # arithmetic shift: the sign comes back
    for j, shift in ((1, 32), (2, 16), (3, 0)):
        out[:, j] = ((P >> shift) & 0xFFFF) - PACK_OFFSET
    return out


def unique_packed(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of an int64 array and, per value, the index of its distinct one.

    One unstable argsort (numpy's vectorized sort: faster on int64 than a
    hash table, whether the values are nearly all distinct or few).
    """
    P = np.asarray(P, dtype=np.int64).reshape(-1)
    if len(P) == 0:
        return P.copy(), np.zeros(0, dtype=np.int64)
    order = np.argsort(P)
    ordered = P[order]
    first = np.empty(len(P), dtype=bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    inverse = np.empty(len(P), dtype=np.int64)
    inverse[order] = np.cumsum(first) - 1
    return ordered[first], inverse


def unique_quantized(Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of Q (in lexicographic order) and, for each input row, the index of its distinct row."""
    Q = np.asarray(Q, dtype=np.int64).reshape(-1, N_FEATURES)
    if len(Q) == 0:
        return Q.reshape(0, N_FEATURES), np.zeros(0, dtype=np.int64)
    fits = packable(Q)
    if fits.all():
        uniq_p, inverse = unique_packed(pack_quantized(Q))
        return unpack_quantized(uniq_p), inverse
    # Rare rows with |q| >= 2^15: deduplicate them apart (they can equal no packable row), then merge the orders.
    small, large = np.flatnonzero(fits), np.flatnonzero(~fits)
    uniq_p, inv_small = unique_packed(pack_quantized(Q[small]))
    uniq_large, inv_large = np.unique(Q[large], axis=0, return_inverse=True)
    both = np.concatenate([unpack_quantized(uniq_p), uniq_large])
    order = np.lexsort(both.T[::-1])
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    inverse = np.empty(len(Q), dtype=np.int64)
    inverse[small] = rank[inv_small]
    inverse[large] = rank[len(uniq_p) + inv_large.reshape(-1)]
    return both[order], inverse


# ---- canonical strings and digests, without Python per row (but the hash) ---------

@functools.cache
def _pow10():
    """10 ** 0 .. 10 ** 8 as int64 (built on first use: numpy is imported lazily)."""
    return np.array([10 ** i for i in range(9)], dtype=np.int64)
_SPACE, _DOT, _MINUS, _ZERO = ord(" "), ord("."), ord("-"), ord("0")
HASH_CHUNK_ROWS = 1 << 16  # rows formatted at a time (bounded scratch memory)


def _small_message_sha256():
    """CPython's built-in SHA-256 where it has one: on a 20-byte string it costs ~10% less
    than OpenSSL's (whose per-call setup dominates); the same digest either way."""
    for module in ("_sha2", "_sha256"):  # 3.12+, 3.11
        try:
            return __import__(module).sha256
        except (ImportError, AttributeError):
            continue
    return hashlib.sha256  # pragma: no cover - a build without the built-in module


def canonical_buffer(Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The canonical strings of an int (N, 4) q array as bytes: (uint8 (N, W) buffer, lengths (N,)).

    Row i's string is ``buffer[i, :lengths[i]]`` (UTF-8; ASCII in fact), the
    same as ``canonical_q(Q[i]).encode()``. Built with numpy column by column.
    """
    Q = np.asarray(Q, dtype=np.int64).reshape(-1, N_FEATURES)
    n = len(Q)
    if n and Q.min() >= 0 and Q.max() < 100:  # every value in 0.0 .. 9.9: "d.d d.d d.d d.d"
        buf = np.empty((n, 15), dtype=np.uint8)
        buf[:, 0::4] = Q // 10 + _ZERO
        buf[:, 1::4] = _DOT
        buf[:, 2::4] = Q % 10 + _ZERO
        buf[:, 3::4] = _SPACE
        return buf, np.full(n, 15, dtype=np.int64)
    neg = Q < 0
    A = np.abs(Q)
    ip, fd = A // 10, A % 10
    nd = np.ones_like(ip)
    for k in range(1, 8):
        nd += ip >= _pow10()[k]
    tokens = neg + nd + 2  # sign, integer digits, ".", one digit
    lengths = tokens.sum(axis=1) + (N_FEATURES - 1)
    width = int(lengths.max()) if n else 0
    buf = np.zeros((n, width), dtype=np.uint8)
    flat = buf.reshape(-1)
    pos = np.arange(n, dtype=np.int64) * width
    for j in range(N_FEATURES):
        negj, ndj, ipj = neg[:, j], nd[:, j], ip[:, j]
        flat[pos[negj]] = _MINUS
        pos = pos + negj
        for d in range(int(ndj.max()) if n else 0):
            m = d < ndj
            p = _pow10()[np.maximum(ndj[m] - 1 - d, 0)]
            flat[pos[m] + d] = (ipj[m] // p) % 10 + _ZERO
        pos = pos + ndj
        flat[pos] = _DOT
        flat[pos + 1] = fd[:, j] + _ZERO
        if j < N_FEATURES - 1:
            flat[pos + 2] = _SPACE
        pos = pos + 3
    return buf, lengths


# Values with |q| below TOKEN_Q_LIMIT (|x| < 1000 cm: every real measurement) are formatted
# by table lookup: one fixed-width token per q, joined by numpy's byte-string add.
TOKEN_Q_LIMIT = 10 ** 4


@functools.cache
def _token_tables() -> tuple[np.ndarray, np.ndarray]:
    """(first, later): ``format_q(q)`` and ``" " + format_q(q)`` as ``S`` arrays indexed by q + TOKEN_Q_LIMIT."""
    q = np.arange(-TOKEN_Q_LIMIT, TOKEN_Q_LIMIT + 1, dtype=np.int64)
    a = np.abs(q)
    digit = (a % 10 + _ZERO).astype(np.uint8).view("S1")
    token = np.strings.add(np.strings.add((a // 10).astype("S4"), b"."), digit)
    first = np.where(q < 0, np.strings.add(b"-", token), token)
    return first, np.strings.add(b" ", first)


def canonical_strings(Q: np.ndarray) -> np.ndarray:
    """The canonical strings of an int (N, 4) q array as a numpy ``S`` array (N,).

    Items are NUL-padded to the array's width; numpy drops the padding when it
    hands an item out (``.tolist()``), which gives exactly
    ``canonical_q(row).encode()`` (the strings never hold a NUL byte).
    """
    Q = np.asarray(Q, dtype=np.int64).reshape(-1, N_FEATURES)
    inside = (np.abs(Q) <= TOKEN_Q_LIMIT).all(axis=1)
    if inside.all():
        return _tabled_strings(Q)
    buf, lengths = canonical_buffer(Q[~inside])
    wide = np.ascontiguousarray(buf).view(f"S{buf.shape[1]}").reshape(-1)
    out = np.zeros(len(Q), dtype=f"S{max(buf.shape[1], 4 * 7 + 3)}")
    out[~inside] = wide
    out[inside] = _tabled_strings(Q[inside])
    return out


def _tabled_strings(Q: np.ndarray) -> np.ndarray:
    first, later = _token_tables()
    i = Q + TOKEN_Q_LIMIT
    add = np.strings.add
    return add(add(first[i[:, 0]], later[i[:, 1]]), add(later[i[:, 2]], later[i[:, 3]]))


def canonical_bytes(Q: np.ndarray) -> list[bytes]:
    """``canonical_q(row).encode()`` for every row of an int (N, 4) q array, in order."""
    return canonical_strings(Q).tolist()


def digests_of_quantized(Q: np.ndarray, *, chunk_rows: int = HASH_CHUNK_ROWS) -> np.ndarray:
    """Raw SHA-256 digests (numpy ``S32``, shape (N,)) of the canonical strings of an int (N, 4) q array.

    Strings are built by numpy (`canonical_strings`, a chunk at a time: a
    memory-mapped int32 q is never copied whole); the only per-row Python is
    the SHA-256 call. Note numpy strips trailing zero bytes when it hands out
    one ``S32`` item: convert with `hex_of_digests` or ``.tobytes()``, never
    item by item.
    """
    Q = np.asarray(Q).reshape(-1, N_FEATURES)
    n = len(Q)
    out = np.empty((n, 32), dtype=np.uint8)
    sha = _small_message_sha256()
    for start in range(0, n, chunk_rows):
        items = canonical_strings(Q[start:start + chunk_rows]).tolist()
        out[start:start + len(items)] = np.frombuffer(b"".join([sha(b).digest() for b in items]),
                                                      dtype=np.uint8).reshape(-1, 32)
    return out.view("S32").reshape(-1)


def hex_of_digests(D: np.ndarray) -> list[str]:
    """Lowercase hex keys (list of str) of an ``S32`` digest array."""
    h = np.ascontiguousarray(D, dtype="S32").tobytes().hex()
    return [h[i:i + 64] for i in range(0, len(h), 64)]


def hex_array_of_digests(D: np.ndarray) -> np.ndarray:
    """Lowercase hex keys as a numpy ``U64`` array (256 bytes a key: for small arrays)."""
    h = np.ascontiguousarray(D, dtype="S32").tobytes().hex().encode("ascii")
    return np.frombuffer(h, dtype="S64").astype("U64")


def digests_of_hex(keys) -> np.ndarray:
    """``S32`` digests of 64-hex keys (list or array of str); ValueError naming a bad key."""
    keys = list(keys) if not isinstance(keys, list) else keys
    if not keys:
        return np.zeros(0, dtype="S32")
    joined = "".join(str(k) for k in keys)
    raw = None
    if len(joined) == 64 * len(keys):
        try:
            raw = bytes.fromhex(joined)
        except ValueError:
            raw = None
    if raw is None or len(raw) != 32 * len(keys):
        for k in keys:
            if not (isinstance(k, str) and len(k) == 64 and all(c in "0123456789abcdefABCDEF" for c in k)):
                raise ValueError(f"{k!r} is not a 64-hex input key")
        raise ValueError("keys are not 64-hex input keys")  # pragma: no cover
    return np.frombuffer(raw, dtype="S32").copy()


def digests_of_array(X: np.ndarray) -> np.ndarray:
    """``S32`` digests of the keys of a validated float (N, 4) array, one per row."""
    return digests_of_quantized(quantize_array(X))


def keys_of_quantized(Q: np.ndarray) -> list[str]:
    """Hex keys for an int (N, 4) array of q values."""
    return hex_of_digests(digests_of_quantized(Q))
