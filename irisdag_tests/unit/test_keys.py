"""The input key, scheme iris-r1 (DESIGN §2): checked vectors, rounding, validation, the vectorized path."""
from __future__ import annotations

import hashlib
import math
from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from irisdag.core import keys
from irisdag.core.keys import InputError

from irisdag_tests.support.data import KEY_VECTORS as VECTORS


def _vectors():
    rows = []
    for line in VECTORS.read_text("utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        inp, canon, key = line.split("\t")
        rows.append((inp, canon, key))
    return rows


def exact_q(x: float) -> int:
    """The spec's definition: exact decimal value of the double, rounded half-to-even to 0.1."""
    return int(Decimal(x).quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN) * 10)


def test_vectors_file_has_the_known_rows():
    rows = _vectors()
    assert len(rows) >= 7
    assert ("5.0 2.9 1.1 0.4", "5.0 2.9 1.1 0.4",
            "d8c77d145fb8bc961f190b590e08a4056a61ece47304cae94d1f6d2c9e69d7da") in rows


@pytest.mark.parametrize("inp,canon,key", _vectors())
def test_checked_vectors(inp, canon, key):
    values = [float(s) for s in inp.split()]
    assert keys.canonical(values) == canon
    assert keys.input_key(values) == key
    assert keys.key_of_canonical(canon) == key
    assert hashlib.sha256(canon.encode("utf-8")).hexdigest() == key
    # text fields (CLI, CSV) and the vectorized batch path agree
    assert keys.input_key(keys.parse_features(inp.split())) == key
    Q = keys.quantize_array(np.array([values]))
    assert keys.keys_of_quantized(Q) == [key]


def test_slides_example_and_the_course_digest():
    assert keys.input_key([5.0, 2.9, 1.1, 0.4]) == "d8c77d145fb8bc961f190b590e08a4056a61ece47304cae94d1f6d2c9e69d7da"
    # the digest printed on the slides is the key of another row, 6.5 2.8 4.7 1.8
    assert keys.input_key([6.5, 2.8, 4.7, 1.8]).startswith("9fd5e3c7")
    assert keys.input_key([6.5, 2.8, 4.7, 1.8]).endswith("2aab")


@pytest.mark.parametrize("x,text", [
    (0.25, "0.2"), (0.35, "0.3"), (6.45, "6.5"), (0.05, "0.1"), (0.15, "0.1"),
    (-0.04, "0.0"), (-0.05, "-0.1"), (-0.0, "0.0"), (0.0, "0.0"), (-0.1, "-0.1"),
    (-1.25, "-1.2"), (2.675, "2.7"), (999999.94, "999999.9"), (-999999.96, "-1000000.0"),
    (1e-300, "0.0"), (5e-324, "0.0"), (5, "5.0"), (12.0, "12.0"),
])
def test_rounding_and_formatting(x, text):
    q = keys.quantize(x)
    assert q == exact_q(x)
    assert keys.format_q(q) == text
    if abs(q) < keys.Q_BOUND:  # -999999.96 rounds out of bounds: formatted, but never keyed
        assert keys.canonical([x, x, x, x]) == " ".join([text] * 4)
    assert keys.quantize_array(np.full((1, 4), x)).tolist() == [[q] * 4]


def test_negative_zero_is_never_printed():
    for x in (-0.0, -0.04, -0.049999, -1e-12):
        assert keys.canonical([x, 1, 2, 3]).split()[0] == "0.0"
        assert "-0.0" not in keys.canonical([1, 2, 3, x])


def test_no_exponent_notation():
    assert keys.canonical([123456.7, 1e-7, 0.1, 999999.9]) == "123456.7 0.0 0.1 999999.9"
    assert "e" not in keys.canonical([1e5, 2e5, 3e5, 4e5])


@pytest.mark.parametrize("bad,what", [
    (math.nan, "NaN"), (math.inf, "infinite"), (-math.inf, "infinite"),
    (1e6, "out of bounds"), (-1e6, "out of bounds"), (1e7, "out of bounds"),
    ("abc", "not a number"), (None, "not a number"), (True, "not a number"),
])
@pytest.mark.parametrize("position", [0, 3])
def test_validation_names_value_and_position(bad, what, position):
    values = [5.0, 2.9, 1.1, 0.4]
    values[position] = bad
    with pytest.raises(InputError) as err:
        keys.validate_features(values, row=7)
    msg = str(err.value)
    assert what in msg
    assert f"position {position + 1} ({keys.FEATURES[position]})" in msg  # numbered from 1, like rows
    assert "row 7" in msg
    assert repr(bad) in msg
    assert err.value.position == position
    assert isinstance(err.value, ValueError)


def test_bounds_are_strict():
    assert keys.validate_features([999999.9, -999999.9, 0, -0.1]) == (999999.9, -999999.9, 0.0, -0.1)
    with pytest.raises(InputError):
        keys.validate_features([1_000_000, 0, 0, 0])


@pytest.mark.parametrize("values", [[5.0, 2.9, 1.1], [5.0, 2.9, 1.1, 0.4, 0.2], [], "5.0 2.9 1.1 0.4"])
def test_wrong_number_of_values(values):
    with pytest.raises(InputError) as err:
        keys.validate_features(values)
    msg = str(err.value)
    assert "expected 4" in msg or "four" in msg


def test_parse_features_from_text():
    assert keys.parse_features([" 5.0", "2.9 ", "1.1", "-0.1"]) == (5.0, 2.9, 1.1, -0.1)
    with pytest.raises(InputError) as err:
        keys.parse_features(["5.0", "two", "1.1", "0.4"], row=3)
    assert "'two'" in str(err.value) and "position 2 (sepal_width)" in str(err.value)
    for text, what in (("nan", "NaN"), ("inf", "infinite"), ("-inf", "infinite"), ("1e6", "out of bounds"),
                       ("-1000000", "out of bounds"), ("", "not a number")):
        with pytest.raises(InputError) as err:
            keys.parse_features(["5.0", "2.9", text, "0.4"])
        assert what in str(err.value) and "position 3 (petal_length)" in str(err.value)
    with pytest.raises(InputError, match="got 3"):
        keys.parse_features(["5.0", "2.9", "1.1"])
    with pytest.raises(InputError, match="got 5"):
        keys.parse_features(["5.0", "2.9", "1.1", "0.4", "9"])


def test_invalid_mask_and_describe():
    X = np.array([[5.0, 2.9, 1.1, 0.4], [np.nan, 1, 2, 3], [1, np.inf, 2, 3], [1, 2, -1e6, 3], [1, 2, 3, 999999.0]])
    assert keys.invalid_mask(X).tolist() == [False, True, True, True, False]
    assert "position 1" in keys.describe_invalid(X[1], row=2) and "NaN" in keys.describe_invalid(X[1], row=2)
    assert "row 4" in keys.describe_invalid(X[3], row=4) and "out of bounds" in keys.describe_invalid(X[3], row=4)


# ---- the vectorized path equals the scalar one -----------------------------------

finite = st.floats(min_value=-999_999.999, max_value=999_999.999, allow_nan=False, allow_infinity=False)
small = st.floats(min_value=-20.0, max_value=20.0, allow_nan=False, allow_infinity=False)
# decimals ending in 5 at the second place: the .x5 ties as written in text (e.g. 6.45, -0.35)
ties = st.integers(min_value=-9_999_999, max_value=9_999_999).map(lambda k: float(f"{k}5e-2"))
near_ties = ties.flatmap(lambda x: st.sampled_from([x, np.nextafter(x, np.inf), np.nextafter(x, -np.inf)]))
special = st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 1e-300, 2.2250738585072014e-308, 0.05, -0.05,
                           0.04999999999999999, 0.05000000000000001, 999_999.95, -999_999.95,
                           999_999.9999999999, -999_999.9999999999, 2.675, 1.15, 1.25, 1.35])
values = st.one_of(finite, small, ties, near_ties, special)

EXAMPLES = 100
PER_EXAMPLE = 128  # >= 12,800 floats in all
_seen = {"n": 0}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(values, min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
def test_quantize_array_equals_scalar_quantize(xs):
    X = np.array(xs, dtype=np.float64).reshape(-1, 4)
    Q = keys.quantize_array(X)
    expected = [keys.quantize(float(x)) for x in X.reshape(-1)]
    assert Q.reshape(-1).tolist() == expected
    assert expected == [exact_q(float(x)) for x in X.reshape(-1)]
    assert Q.dtype == np.int64
    ok = ~keys.invalid_mask(X)
    assert keys.keys_of_quantized(Q[ok]) == [keys.input_key(row) for row in X[ok].tolist()]
    for row in X[~ok].tolist():  # rounds out of bounds: the scalar path refuses the same rows
        with pytest.raises(InputError, match="out of bounds"):
            keys.input_key(row)
    assert ok.tolist() == [all(keys.in_bounds(float(v)) for v in row) for row in X]
    _seen["n"] += len(xs)


def test_hypothesis_saw_at_least_ten_thousand_floats():
    if _seen["n"] == 0:
        test_quantize_array_equals_scalar_quantize()
    assert _seen["n"] >= 10_000


def test_quantize_array_on_all_two_decimal_values():
    # every decimal a.bc with |a.bc| < 100, including all .x5 ties, as parsed from text
    texts = [f"{k / 100:.2f}" for k in range(-10_000, 10_000)]
    x = np.array([float(t) for t in texts])
    Q = keys.quantize_array(np.resize(x, (len(x) // 4, 4)))
    assert Q.reshape(-1).tolist() == [exact_q(v) for v in x[: Q.size]]


def test_unique_quantized():
    Q = np.array([[1, 2, 3, 4], [1, 2, 3, 4], [0, 0, 0, -1]])
    uniq, inverse = keys.unique_quantized(Q)
    assert uniq.tolist() == [[0, 0, 0, -1], [1, 2, 3, 4]]
    assert inverse.tolist() == [1, 1, 0]
    u0, i0 = keys.unique_quantized(np.zeros((0, 4), dtype=np.int64))
    assert u0.shape == (0, 4) and i0.shape == (0,)


# ---- entity ids ------------------------------------------------------------------

def test_id_keys():
    assert keys.id_key("user-42") == "id:user-42"
    assert keys.id_key(42) == "id:42"
    assert keys.id_key("  p9 ") == "id:p9"
    k = keys.id_key("d8c77d145fb8bc961f190b590e08a4056a61ece47304cae94d1f6d2c9e69d7da")
    assert k.startswith("id:") and k != keys.input_key([5.0, 2.9, 1.1, 0.4])
    for bad in ("", "   ", None, "a b", "x" * 257, "tab\there"):
        with pytest.raises(InputError):
            keys.id_key(bad)
    assert keys.id_key("x" * 256) == "id:" + "x" * 256
