"""The input key, scheme ``iris-r1`` (DESIGN §2).

Round each feature to one decimal exactly as Python's ``round(x, 1)`` does
(half-to-even on the exact binary value), format it from the integer
q = 10 * rounded value, join with one space, SHA-256 the UTF-8 bytes.
"""
from __future__ import annotations

import hashlib
import math
from typing import Iterable, Sequence

import numpy as np

SCHEME = "iris-r1"
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
N_FEATURES = len(FEATURES)
BOUND = 1e6  # |x| must be strictly below this
ID_PREFIX = "id:"
MAX_ID_LENGTH = 256


class InputError(ValueError):
    """A value that cannot be keyed. Names the value and where it stood."""

    def __init__(self, message: str, *, value=None, position: int | None = None, row: int | None = None):
        where = []
        if row is not None:
            where.append(f"row {row}")
        if position is not None:
            where.append(f"position {position} ({FEATURES[position]})" if 0 <= position < N_FEATURES else f"position {position}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.value = value
        self.position = position
        self.row = row
        self.reason = message


def check_value(x, position: int, row: int | None = None, shown=None) -> float:
    """One feature value: a real, finite number with |x| < 10^6.

    ``shown`` is the value as the caller wrote it (text from a command line or
    CSV), so the error names what the user typed, not its float.
    """
    name = repr(x if shown is None else shown)
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise InputError(f"{name} is not a number", value=x, position=position, row=row)
    xf = float(x)
    if math.isnan(xf):
        raise InputError(f"{name} is NaN", value=x, position=position, row=row)
    if math.isinf(xf):
        raise InputError(f"{name} is infinite", value=x, position=position, row=row)
    if abs(xf) >= BOUND:
        raise InputError(f"{name} is out of bounds (|x| must be < 1e6)", value=x, position=position, row=row)
    return xf


def validate_features(values, row: int | None = None) -> tuple[float, float, float, float]:
    """Four finite numbers in the order of FEATURES, or an InputError naming the bad one."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InputError(f"expected four numbers, got {values!r}", value=values, row=row)
    vals = list(values)
    if len(vals) != N_FEATURES:
        raise InputError(
            f"expected {N_FEATURES} values ({', '.join(FEATURES)}), got {len(vals)}: {vals!r}",
            value=vals, row=row)
    return tuple(check_value(v, i, row) for i, v in enumerate(vals))  # type: ignore[return-value]


def parse_features(texts: Sequence[str], row: int | None = None) -> tuple[float, float, float, float]:
    """Text fields (command line, CSV) to validated features; names the field that fails."""
    if len(texts) != N_FEATURES:
        raise InputError(
            f"expected {N_FEATURES} values ({', '.join(FEATURES)}), got {len(texts)}: {list(texts)!r}",
            value=list(texts), row=row)
    out = []
    for i, t in enumerate(texts):
        s = t.strip() if isinstance(t, str) else t
        try:
            x = float(s)
        except (TypeError, ValueError):
            raise InputError(f"{t!r} is not a number", value=t, position=i, row=row) from None
        out.append(check_value(x, i, row, shown=t))
    return tuple(out)  # type: ignore[return-value]


def quantize(x: float) -> int:
    """q = 10 * round(x, 1), exactly (CPython's round is correctly rounded, half-even)."""
    return int(round(round(x, 1) * 10))


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

def invalid_mask(X: np.ndarray) -> np.ndarray:
    """Rows of a float (N, 4) array that fail validation (NaN, inf, |x| >= 1e6)."""
    with np.errstate(invalid="ignore"):
        return ~(np.isfinite(X) & (np.abs(X) < BOUND)).all(axis=1)


def describe_invalid(row_values: Sequence[float], row: int) -> str:
    """The validation message for one bad row (first bad value)."""
    try:
        validate_features([float(v) for v in row_values], row=row)
    except InputError as err:
        return str(err)
    return f"row {row}: valid"  # pragma: no cover - only called for invalid rows


def quantize_array(X: np.ndarray) -> np.ndarray:
    """Exact q = 10 * round(x, 1) for a validated float (N, 4) array, as int64.

    np.rint(10 * x) is right except where 10 * x lies next to a .5 tie, where
    the float product may round across it; those few values go through
    Python's exact round().
    """
    X = np.asarray(X, dtype=np.float64)
    y = X * 10.0
    q = np.rint(y)
    frac = y - np.floor(y)
    near_tie = np.abs(frac - 0.5) < 1e-6
    if near_tie.any():
        idx = np.nonzero(near_tie)
        q[idx] = [quantize(float(v)) for v in X[idx]]
    return q.astype(np.int64)


def keys_of_quantized(Q: np.ndarray) -> list[str]:
    """Hex keys for an int (N, 4) array of q values."""
    out = []
    sha = hashlib.sha256
    for row in Q.tolist():
        out.append(sha(canonical_q(row).encode()).hexdigest())
    return out


def unique_quantized(Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of Q and, for each input row, the index of its distinct row."""
    if len(Q) == 0:
        return Q.reshape(0, N_FEATURES), np.zeros(0, dtype=np.int64)
    uniq, inverse = np.unique(Q, axis=0, return_inverse=True)
    return uniq, inverse.reshape(-1)
