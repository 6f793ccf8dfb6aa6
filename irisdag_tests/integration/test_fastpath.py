"""The fast write and lookup paths against a real redis-server (no mocks).

Digests written straight from a prepared batch answer exactly as hex keys
written the old way; scoring streams a batch in chunks and every row's key
answers with the label kept for it; lookups over several Lua calls keep their
order; an error reply mid-pipeline is reported and leaves the store usable.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import redis

from irisdag import serving
from irisdag.core import keys
from irisdag.models.artifacts import predict_labels
from irisdag.models.training import iris_table, train_model
from irisdag.store import LABELS, ServingStore
from irisdag.store.resource import LOOKUP_CHUNK, StoreError, pred_key
from irisdag_tests.support.data import COURSE

COURSE = COURSE / "iris.csv"


def vid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


@pytest.fixture
def store(redis_url) -> ServingStore:
    return ServingStore(redis_url=redis_url)


@pytest.fixture(scope="module")
def booster():
    X, y = iris_table()
    return train_model(X, y, seed=0)


def ready(store: ServingStore, version: str, expected: int, role: str = "challenger") -> None:
    store.register_version(version, version, role=role, expected_keys=expected)
    store.set_validated(version, True, "checks passed")


def test_digest_writes_answer_like_hex_writes(store):
    rng = np.random.default_rng(0)
    n = 20_000
    D = np.frombuffer(rng.bytes(32 * n), dtype="S32").copy()
    D[:50] = np.frombuffer(rng.bytes(28 * 50), dtype="S28").astype("S32")  # digests ending in zero bytes
    hexes = keys.hex_of_digests(D)
    labels = rng.integers(0, 3, n)
    a, b = vid("hex"), vid("digest")
    ready(store, a, n, role="champion")
    ready(store, b, n)
    assert store.write_predictions(a, hexes, labels) == n
    assert store.write_predictions(b, D, labels.astype(np.int8)) == n
    assert store.write_predictions(b, D[:10], labels[:10]) == 0  # rewrites add nothing
    client = store.client()
    # Same layout: the same fields in the same shard hashes.
    shard = int(hexes[0][:8], 16) % int(store.version_info(a)["shards"])
    assert client.hgetall(pred_key(a, shard)) == client.hgetall(pred_key(b, shard))
    store.mark_generation(a, 1, n)
    store.mark_generation(b, 1, n)
    assert store.set_routing(0, {"champion": a}, action="bootstrap")[0]
    first = store.lookup(hexes)
    assert [r["label"] for r in first] == [LABELS[i] for i in labels]
    assert store.set_routing(1, {"champion": b, "previous": a}, action="promote")[0]
    second = store.lookup(hexes)
    assert [r["label"] for r in second] == [r["label"] for r in first]
    assert {r["version"] for r in second} == {b}


def test_digest_writes_are_refused_like_any_other(store):
    v = vid("unvalidated")
    store.register_version(v, v, role="challenger", expected_keys=10)
    D = keys.digests_of_hex([keys.input_key([5.0, 2.9, 1.1, 0.4])])
    with pytest.raises(ValueError, match="not validated"):
        store.write_predictions(v, D, [0])
    store.set_validated(v, True, "ok")
    with pytest.raises(ValueError, match="class index"):
        store.write_predictions(v, D, [3])
    with pytest.raises(ValueError, match="labels of shape"):
        store.write_predictions(v, D, [0, 1])


def test_lookup_over_several_calls_keeps_order_misses_and_ids(store):
    rng = np.random.default_rng(1)
    n = 2 * LOOKUP_CHUNK + 123
    hexes = keys.hex_of_digests(np.frombuffer(rng.bytes(32 * n), dtype="S32"))
    stored = hexes[::2] + ["id:user-1", "id:ünï"]
    labels = rng.integers(0, 3, len(stored))
    v = vid("order")
    ready(store, v, len(stored), role="champion")
    store.write_predictions(v, stored, labels)
    store.mark_generation(v, 1, len(stored))
    assert store.set_routing(0, {"champion": v}, action="bootstrap")[0]
    client = store.client()
    client.config_resetstat()
    probe = hexes + ["id:user-1", "id:ünï", "id:nobody", "not-a-key"]
    answers = store.lookup(probe)
    assert client.info("commandstats")["cmdstat_fcall_ro"]["calls"] == 3  # one pipeline, three calls
    expect = {k: LABELS[i] for k, i in zip(stored, labels)}
    assert [a["key"] for a in answers] == probe
    assert [a["label"] for a in answers] == [expect.get(k) for k in probe]
    assert [a["route"] for a in answers] == ["champion" if k in expect else "miss" for k in probe]
    # single lookups, many times over one connection: no reply is ever left behind
    for k in probe[:200] + probe[-4:]:
        assert store.lookup([k])[0]["label"] == expect.get(k)


def test_an_error_reply_mid_pipeline_is_reported_and_the_store_stays_usable(store):
    v = vid("wrongtype")
    n = 5_000
    ready(store, v, n, role="champion")
    D = np.frombuffer(np.random.default_rng(2).bytes(32 * n), dtype="S32")
    hexes = keys.hex_of_digests(D)
    shards = int(store.version_info(v)["shards"])
    client = store.client()
    client.set(pred_key(v, int(hexes[0][:8], 16) % shards), "not a hash")
    with pytest.raises(StoreError, match="WRONGTYPE"):
        store.write_predictions(v, D, np.zeros(n, dtype=np.int8))
    client.delete(pred_key(v, int(hexes[0][:8], 16) % shards))
    assert store.write_predictions(v, D, np.ones(n, dtype=np.int8)) >= 1
    store.mark_generation(v, 1, n)
    assert store.set_routing(0, {"champion": v}, action="bootstrap")[0]
    assert {a["label"] for a in store.lookup(hexes)} == {"versicolor"}


def test_lookup_reloads_functions_the_server_lost(store):
    v = vid("reload")
    k = keys.input_key([5.0, 2.9, 1.1, 0.4])
    ready(store, v, 1, role="champion")
    store.write_predictions(v, [k], [2])
    store.mark_generation(v, 1, 1)
    assert store.set_routing(0, {"champion": v}, action="bootstrap")[0]
    assert store.lookup([k])[0]["label"] == "virginica"
    store.client().function_flush()
    assert store.lookup([k] * (LOOKUP_CHUNK + 5))[0]["label"] == "virginica"
    with pytest.raises(redis.ResponseError):
        store.client().execute_command("FCALL_RO", "nope", 0)


def test_score_batch_streams_chunks_and_every_row_answers(store, booster, tmp_path):
    rng = np.random.default_rng(3)
    X = np.round(rng.normal([5.8, 3.0, 3.7, 1.2], [0.8, 0.4, 1.7, 0.7], (30_000, 4)), 2)
    X[::50] *= -1
    prepared = serving.prepare_array(tmp_path, X, chunk_rows=4_096)
    v = vid("stream")
    ready(store, v, prepared.n_keys, role="champion")
    written, labels = serving.score_batch(store, booster, v, tmp_path, chunk_keys=1_000)
    assert written == prepared.n_keys == len(labels) < len(X)
    assert np.array_equal(np.load(serving.predictions_path(tmp_path, v)), labels)
    # the model's answer for each distinct rounded input, in key order
    assert np.array_equal(labels, predict_labels(booster, prepared.Xq).astype(np.int8))
    store.mark_generation(v, 1, written)
    assert store.set_routing(0, {"champion": v}, action="bootstrap")[0]
    rows = serving.load_row_predictions(tmp_path, v)
    sample = rng.choice(len(X), 3_000, replace=False)
    answers = store.lookup([keys.input_key(X[i]) for i in sample])  # the scalar reference key
    assert [a["label"] for a in answers] == [LABELS[rows[i]] for i in sample]
    # scoring again writes nothing new
    assert serving.score_batch(store, booster, v, tmp_path, chunk_keys=7_777)[0] == 0


def test_the_first_scoring_hashes_the_batch_once_and_a_failed_one_keeps_nothing_half_made(store, booster, tmp_path,
                                                                                            monkeypatch):
    X = np.round(np.random.default_rng(8).uniform(-50, 500, (6_000, 4)), 2)
    prepared = serving.prepare_array(tmp_path, X, chunk_rows=1_000)
    assert not (tmp_path / "digests.npy").exists() and not prepared.has_digests  # prepare only rounds and dedupes
    v = vid("hash-once")
    ready(store, v, prepared.n_keys, role="champion")
    # a write refused mid-batch (a shard of the wrong type): no digests file, no stray part file
    client = store.client()
    client.set(pred_key(v, 0), "not a hash")
    with pytest.raises(StoreError, match="WRONGTYPE"):
        serving.score_batch(store, booster, v, tmp_path, chunk_keys=500)
    assert sorted(p.name for p in tmp_path.glob("*digests*")) == []
    assert sorted(p.name for p in tmp_path.glob(".*")) == []
    client.delete(pred_key(v, 0))
    written, _ = serving.score_batch(store, booster, v, tmp_path, chunk_keys=500)
    assert 0 < written <= prepared.n_keys  # the failed run wrote its first chunks already
    expected = [keys.input_key(row) for row in X.tolist()]
    again = serving.load_prepared(tmp_path)
    assert again.has_digests and keys.hex_of_digests(again.row_digests()) == expected
    # the next scoring reads the kept digests: it hashes nothing
    before = (tmp_path / "digests.npy").stat().st_mtime_ns
    hashed = []
    real = keys.digests_of_quantized
    monkeypatch.setattr(keys, "digests_of_quantized", lambda *a, **k: hashed.append(1) or real(*a, **k))
    assert serving.score_batch(store, booster, v, tmp_path)[0] == 0
    assert hashed == [] and (tmp_path / "digests.npy").stat().st_mtime_ns == before
    store.mark_generation(v, 1, written)
    store.recount_keys(v)
    assert store.set_routing(0, {"champion": v}, action="bootstrap")[0]
    assert all(a["route"] == "champion" for a in store.lookup(expected))


def test_course_batch_is_written_once_per_distinct_input(store, booster, tmp_path):
    summary = serving.prepare_source(COURSE, tmp_path)
    assert (summary["rows_good"], summary["distinct_keys"]) == (1050, 1033)
    v = vid("course")
    ready(store, v, 1033, role="champion")
    written, _ = serving.score_batch(store, booster, v, tmp_path)
    assert written == 1033
    shards = int(store.version_info(v)["shards"])
    client = store.client()
    pipe = client.pipeline(transaction=False)
    for s in range(shards):
        pipe.hlen(pred_key(v, s))
    assert sum(pipe.execute()) == 1033


@pytest.mark.parametrize("protocol", [2, 3])
def test_lookup_replies_decode_alike_in_resp2_and_resp3(redis_url, protocol):
    """Nulls come as $-1 (RESP2) or _ (RESP3); hits, misses and holdouts decode the same either way."""
    store = ServingStore(redis_url=f"{redis_url}?protocol={protocol}")
    rng = np.random.default_rng(4)
    hexes = keys.hex_of_digests(np.frombuffer(rng.bytes(32 * 3000), dtype="S32"))
    v = vid(f"resp{protocol}")
    ready(store, v, 3000, role="champion")
    store.write_predictions(v, hexes[:2000], np.arange(2000) % 3)
    store.mark_generation(v, 1, 2000)
    assert store.set_routing(0, {"champion": v, "holdout_bp": 2000, "salt": "s1"}, action="bootstrap")[0]
    answers = store.lookup(hexes + ["id:nobody"])
    from irisdag.core.routing import bucket

    for i, (k, a) in enumerate(zip(hexes, answers)):
        if bucket("s1", k) < 2000:
            assert (a["route"], a["label"], a["version"]) == ("holdout", None, None)
        elif i < 2000:
            assert (a["route"], a["label"], a["version"]) == ("champion", LABELS[i % 3], v)
        else:
            assert (a["route"], a["label"], a["version"]) == ("miss", None, None)
    assert answers[-1]["route"] in ("miss", "holdout")
