"""The vectorized key path and the streaming prepared batch equal the scalar reference.

Every fast function is held to ``keys.quantize`` / ``keys.canonical_q`` /
``keys.input_key`` (Python's exact ``round`` and hashlib, one value at a time)
on many inputs: rounding ties as written in text, their neighbouring doubles,
negative zero, negatives, values with several integer digits, the bounds.
"""
from __future__ import annotations

import json
from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np
import pytest

from irisdag import serving
from irisdag.core import keys
from irisdag.core.batches import read_feature_csv
from irisdag_tests.support.data import COURSE

COURSE = COURSE / "iris.csv"


def exact_q(x: float) -> int:
    return int(Decimal(x).quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN) * 10)


def tricky_values(seed: int = 0) -> np.ndarray:
    """~60k doubles: every .x5 tie below 100 and its two neighbours, random ties up to 1e6, specials, noise."""
    rng = np.random.default_rng(seed)
    ties = np.array([float(f"{k}5e-2") for k in range(-10_000, 10_000)])
    big_ties = np.array([float(f"{k}5e-2") for k in rng.integers(-99_999_999, 99_999_999, 3_000)])
    exact = np.arange(-400, 400) / 4.0  # 0.25, 0.75, ...: ties that are exact in binary
    around = np.concatenate([ties, big_ties, exact])
    near = np.concatenate([around, np.nextafter(around, np.inf), np.nextafter(around, -np.inf)])
    special = np.array([0.0, -0.0, 5e-324, -5e-324, 1e-300, -1e-300, 0.04, -0.04, 0.0499999999, -0.05, 0.05,
                        999_999.94, -999_999.94, 999_999.95, -999_999.95, 999_999.96, -999_999.96,
                        999_999.9999999999, -999_999.9999999999, 3276.75, -3276.75, 3276.85, -3276.85,
                        2.675, 1.15, 1.25, 1.35, 6.45, 0.35, 0.25])
    noise = np.concatenate([rng.normal(0, 5, 5_000), rng.uniform(-999_999.99, 999_999.99, 3_000)])
    return np.concatenate([near, special, noise])


# ---- quantizing -----------------------------------------------------------------

def test_quantize_array_equals_python_round_on_ties_and_neighbours():
    x = tricky_values()
    q = keys.quantize_array(x.reshape(-1, 1) if len(x) % 4 else x.reshape(-1, 4)).reshape(-1)
    expected = [keys.quantize(float(v)) for v in x]
    assert q.tolist() == expected
    assert expected[:2000] == [exact_q(float(v)) for v in x[:2000]]  # and the spec's Decimal definition


def test_quantize_array_negative_zero_and_sign():
    x = np.array([[-0.0, -0.04, -0.05, -0.15], [-0.25, -0.35, -6.45, -1e-300]])
    assert keys.quantize_array(x).tolist() == [[0, 0, -1, -1], [-2, -3, -65, 0]]  # -0.05 is -0.05000000000000000277
    assert keys.quantize_array(x).tolist() == [[keys.quantize(v) for v in row] for row in x.tolist()]


# ---- strings and digests -------------------------------------------------------------

def random_q(n: int, seed: int) -> np.ndarray:
    """q rows of every width: iris-like, negatives, zeros, multi-digit, up to the 1e6 bound."""
    rng = np.random.default_rng(seed)
    parts = [
        rng.integers(0, 100, (n, 4)),
        rng.integers(-100, 100, (n, 4)),
        rng.integers(-10_000_000, 10_000_001, (n, 4)),
        np.where(rng.random((n, 4)) < 0.5, rng.integers(-9, 10, (n, 4)), rng.integers(-99_999, 99_999, (n, 4))),
    ]
    edges = np.array([[0, 0, 0, 0], [-1, -9, -10, -11], [9, 10, 99, 100], [10_000_000, -10_000_000, 999, -999],
                      [32767, -32768, 32768, -32769]])
    return np.concatenate(parts + [edges]).astype(np.int64)


def test_canonical_buffer_and_bytes_equal_canonical_q():
    Q = random_q(500, seed=1)
    expected = [keys.canonical_q(row).encode() for row in Q.tolist()]
    assert keys.canonical_bytes(Q) == expected
    buf, lengths = keys.canonical_buffer(Q)
    assert [buf[i, :lengths[i]].tobytes() for i in range(len(Q))] == expected
    assert all(b"-0.0" not in e and b"e" not in e for e in expected)


def test_canonical_strings_at_the_token_table_edge_and_mixed_with_wide_rows():
    L = keys.TOKEN_Q_LIMIT
    edge = [-L - 1, -L, -L + 1, -1, 0, 1, 9, 10, 99, 100, L - 1, L, L + 1, 10 * L, 9_999_999, -9_999_999]
    rng = np.random.default_rng(9)
    Q = np.concatenate([rng.choice(edge, (4_000, 4)), rng.integers(-L, L + 1, (4_000, 4))]).astype(np.int64)
    Q[rng.random(len(Q)) < 0.5] = rng.integers(0, 100, 4)  # table-only rows among rows that need the wide path
    expected = [keys.canonical_q(row).encode() for row in Q.tolist()]
    assert keys.canonical_strings(Q).tolist() == expected
    assert keys.canonical_strings(Q[Q.max(axis=1) < 100]).tolist() == [e for e, r in zip(expected, Q) if r.max() < 100]
    assert keys.canonical_strings(np.zeros((0, 4), np.int64)).tolist() == []


def test_quantize_array_in_tiny_chunks_equals_scalar_quantize(monkeypatch):
    x = tricky_values(4)[:20_003]  # ties, neighbours, specials; a partial last chunk
    monkeypatch.setattr(keys, "QUANTIZE_CHUNK_VALUES", 7)
    assert keys.quantize_array(x).tolist() == [keys.quantize(float(v)) for v in x]
    assert keys.quantize_array(np.zeros((0, 4))).shape == (0, 4)


def test_digests_and_hex_keys_equal_input_key():
    X = np.concatenate([tricky_values(2)[:8000].reshape(-1, 4), np.random.default_rng(3).normal(5, 3, (4000, 4))])
    Q = keys.quantize_array(X)
    expected = [keys.input_key(row) for row in X.tolist()]
    D = keys.digests_of_quantized(Q, chunk_rows=777)  # several chunks, several string lengths per chunk
    assert D.dtype == np.dtype("S32") and D.shape == (len(X),)
    assert keys.hex_of_digests(D) == expected
    assert keys.keys_of_quantized(Q) == expected
    assert keys.hex_array_of_digests(D).tolist() == expected
    assert keys.hex_of_digests(keys.digests_of_array(X)) == expected
    assert keys.digests_of_hex(expected).tobytes() == D.tobytes()


def test_digests_with_trailing_zero_bytes_survive_conversions():
    raw = bytes(range(1, 29)) + b"\0\0\0\0"
    D = np.frombuffer(raw + b"\xff" * 32, dtype="S32")
    assert keys.hex_of_digests(D) == [raw.hex(), "ff" * 32]
    assert keys.digests_of_hex([raw.hex()]).tobytes() == raw
    with pytest.raises(ValueError, match="64-hex"):
        keys.digests_of_hex(["xyz"])


# ---- deduplication -----------------------------------------------------------------

def test_pack_unpack_and_unique_equal_numpy_unique_rows():
    rng = np.random.default_rng(4)
    Q = rng.integers(-3, 4, (20_000, 4))
    assert keys.packable(Q).all()
    assert np.array_equal(keys.unpack_quantized(keys.pack_quantized(Q)), Q)
    uniq, inverse = keys.unique_quantized(Q)
    ref_u, ref_i = np.unique(Q, axis=0, return_inverse=True)
    assert np.array_equal(uniq, ref_u) and np.array_equal(inverse, ref_i.reshape(-1))
    # rows beyond 16 bits mixed in: same rows, same (lexicographic) order
    big = np.concatenate([Q[:5000], rng.integers(-40_000, 40_000, (3000, 4)), Q[:100] * 20_000])
    assert not keys.packable(big).all()
    uniq, inverse = keys.unique_quantized(big)
    ref_u, ref_i = np.unique(big, axis=0, return_inverse=True)
    assert np.array_equal(uniq, ref_u) and np.array_equal(inverse, ref_i.reshape(-1))


# ---- the prepared batch -----------------------------------------------------------

def batch_rows(seed: int = 5) -> np.ndarray:
    """Rows with many duplicates after rounding, ties, negatives, and a few wide values."""
    rng = np.random.default_rng(seed)
    X = np.round(rng.normal([5.8, 3.0, 3.7, 1.2], 0.6, (6000, 4)), 2)  # 2 decimals: many .x5 ties
    X[::97] *= -1
    X[::211, 2] = 123_456.75
    X[::307] = -0.0
    return X


def check_against_reference(prepared: serving.PreparedBatch, X: np.ndarray) -> None:
    expected = [keys.input_key(row) for row in X.tolist()]
    inverse = np.asarray(prepared.inverse)
    assert len(prepared) == len(X)
    assert prepared.keys[inverse].tolist() == expected
    assert prepared.key_list(inverse[:50]) == expected[:50]
    assert prepared.n_keys == len(set(expected)) == len(prepared.keys)
    assert np.array_equal(prepared.Xq[inverse], keys.quantize_array(X) / 10.0)
    assert keys.hex_of_digests(prepared.row_digests()) == expected


def test_prepare_in_memory_equals_reference_and_sorted_order():
    X = batch_rows()
    prepared = serving.prepare(X)
    check_against_reference(prepared, X)
    # format 1 gave the distinct rows in lexicographic order of q: so does prepare
    assert np.array_equal(np.asarray(prepared.q), np.unique(keys.quantize_array(X), axis=0))


@pytest.mark.parametrize("chunk_rows", [1, 613, 1 << 19])
def test_prepared_writer_streams_to_files(tmp_path, chunk_rows):
    X = batch_rows(6)
    writer = serving.PreparedWriter(tmp_path, chunk_rows=chunk_rows)
    for start in range(0, len(X), 1000):  # chunks from the caller too
        writer.add(X[start:start + 1000])
    prepared = writer.close()
    check_against_reference(prepared, X)
    again = serving.load_prepared(tmp_path)
    check_against_reference(again, X)
    assert isinstance(again.inverse, np.memmap) and again.inverse.dtype == np.int32
    assert np.load(tmp_path / "digests.npy").dtype == np.dtype("S32")
    meta = json.loads((tmp_path / "prepared.json").read_text())
    assert meta["format"] == 2 and meta["rows"] == len(X) and meta["keys"] == prepared.n_keys
    assert not list(tmp_path.glob(".*.part"))


def test_ids_key_the_batch_and_the_last_row_wins(tmp_path):
    X = np.array([[1.0, 2, 3, 4], [5.0, 6, 7, 8], [1.04, 2, 3, 4], [9.0, 9, 9, 9]])
    ids = ["b", "a", "b", "c"]
    prepared = serving.prepare(X, ids)
    assert prepared.keys.tolist() == ["id:a", "id:b", "id:c"]
    assert prepared.inverse.tolist() == [1, 0, 1, 2]
    assert prepared.Xq.tolist() == [[5.0, 6, 7, 8], [1.0, 2, 3, 4], [9.0, 9, 9, 9]]
    writer = serving.PreparedWriter(tmp_path, chunk_rows=1)
    writer.add(X[:2], ids[:2])
    writer.add(X[2:], ids[2:])
    streamed = writer.close()
    assert streamed.keyed_by_id
    assert streamed.keys[np.asarray(streamed.inverse)].tolist() == ["id:b", "id:a", "id:b", "id:c"]
    by_key = dict(zip(streamed.keys.tolist(), streamed.Xq.tolist()))
    assert by_key == {"id:a": [5.0, 6, 7, 8], "id:b": [1.0, 2, 3, 4], "id:c": [9.0, 9, 9, 9]}
    mixed = serving.PreparedWriter(None)
    mixed.add(X, ids)
    with pytest.raises(ValueError, match="not both"):
        mixed.add(X)


def test_save_load_and_format_1_directories(tmp_path):
    X = batch_rows(7)[:500]
    prepared = serving.prepare(X)
    serving.save_prepared(tmp_path / "v2", prepared)
    check_against_reference(serving.load_prepared(tmp_path / "v2"), X)
    check_against_reference(serving.load_prepared(tmp_path / "v2", mmap=False), X)
    # a directory written by format 1 (keys as U64, Xq float64, inverse int64) still loads
    old = tmp_path / "v1"
    old.mkdir()
    np.save(old / "keys.npy", np.array(keys.keys_of_quantized(np.asarray(prepared.q)), dtype="U64"))
    np.save(old / "Xq.npy", np.asarray(prepared.q) / 10.0)
    np.save(old / "inverse.npy", np.asarray(prepared.inverse, dtype=np.int64))
    check_against_reference(serving.load_prepared(old), X)
    # re-preparing drops the old format and answers aligned with the old keys
    (old / "pred-v.npy").write_bytes(b"")
    serving.save_prepared(old, prepared, format1_copy=False)
    assert sorted(p.name for p in old.iterdir()) == ["digests.npy", "inverse.npy", "prepared.json", "q.npy"]
    serving.save_prepared(old, prepared)  # with format 1's files beside, for readers that open them
    assert np.load(old / "keys.npy").tolist() == prepared.keys.tolist()
    assert np.array_equal(np.load(old / "Xq.npy"), prepared.Xq)
    check_against_reference(serving.load_prepared(old), X)
    with pytest.raises(FileNotFoundError):
        serving.load_prepared(tmp_path / "nothing")


def test_isin_marks_distinct_keys():
    X = batch_rows(8)[:300]
    prepared = serving.prepare(X)
    some = prepared.key_list([0, 5, 7])
    mask = prepared.isin(np.array(some + ["id:x", "0" * 64], dtype="U64"))
    assert np.flatnonzero(mask).tolist() == [0, 5, 7]
    assert np.flatnonzero(prepared.isin(keys.digests_of_hex(some))).tolist() == [0, 5, 7]
    assert not prepared.isin(np.array([], dtype="U64")).any()


def test_course_batch_duplicates_are_keyed_once(tmp_path):
    summary = serving.prepare_source(COURSE, tmp_path, chunk_bytes=2048)
    assert summary["rows_read"] == summary["rows_good"] == 1050
    assert summary["distinct_keys"] == 1033
    prepared = serving.load_prepared(tmp_path)
    src = read_feature_csv(COURSE)
    assert prepared.keys[np.asarray(prepared.inverse)].tolist() == [keys.input_key(r) for r in src.X.tolist()]
    assert np.load(tmp_path / "positions.npy").tolist() == list(range(1050))


def test_prepare_source_quarantines_and_aligns_positions(tmp_path):
    lines = ["5.0,2.9,1.1,0.4", "nan,1,2,3", "", "6.45,0.25,0.35,-0.04", "1,2,3", "5.0,2.9,1.1,0.4", "1e7,1,1,1"]
    src = tmp_path / "batch.csv"
    src.write_text("\n".join(lines * 300) + "\n")
    out = tmp_path / "prepared"
    summary = serving.prepare_source(src, out, chunk_bytes=1024)
    reference = read_feature_csv(src)
    assert summary["rows_read"] == reference.rows_read == 6 * 300
    assert summary["rows_quarantined"] == len(reference.quarantine) == 3 * 300
    assert summary["distinct_keys"] == 2 and summary["blank_lines"] == 300
    prepared = serving.load_prepared(out)
    assert prepared.keys[np.asarray(prepared.inverse)].tolist() == [keys.input_key(r) for r in reference.X.tolist()]
    assert np.load(out / "positions.npy").tolist() == reference.positions.tolist()
    assert np.load(out / "rows.npy").tolist() == reference.row_numbers.tolist()  # file lines, for messages
    # Counted by reason, every row; only a bounded sample (the first rows) is kept and written.
    saved = json.loads((out / "quarantine.json").read_text())
    assert saved["rows"] == 900 and saved["by_reason"] == {"nan": 300, "field_count": 300, "out_of_bounds": 300}
    assert saved["sample"] == reference.quarantine[:saved["sample_limit"]] and len(saved["sample"]) == 100
