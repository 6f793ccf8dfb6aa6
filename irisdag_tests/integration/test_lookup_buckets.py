"""`lookup_digests` with buckets the client computed (issue 12 item 2), against the real
redis-server: the buckets are a hint Redis uses only under the salt in force; every answer
is checked against the Python routing reference or the Lua's own bucket computation.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import redis

from irisdag.core.routing import buckets_of_digests, route_key
from irisdag.store import ServingStore, close_clients
from irisdag.store.common import digest_call_args
from irisdag.store.consumer import ConsumerStore
from irisdag.store.resource import ROUTING_KEY
from irisdag_tests.unit.test_routing import EDGE_KEYS, EDGE_SALT

NAMES = ("champ", "arm1", "arm2")


def vid(name: str) -> str:
    return hashlib.sha256(f"buckets-{name}".encode()).hexdigest()


@pytest.fixture
def edged(redis_url):
    """Champion, two arms and a holdout on EDGE_SALT's edges (unit/test_routing.py), over
    the edge keys and 3,000 others; a fresh client (no salt remembered)."""
    close_clients()
    store = ServingStore(redis_url=redis_url)
    rng = np.random.default_rng(12)
    keys = list(EDGE_KEYS.values()) + [bytes(rng.integers(0, 256, 32, dtype=np.uint8)).hex() for _ in range(3000)]
    names = {n: vid(n) for n in NAMES}
    for i, (name, v) in enumerate(names.items()):
        store.register_version(v, v, role="champion" if name == "champ" else "challenger", expected_keys=len(keys))
        store.set_validated(v, True, "checks passed")
        store.mark_generation(v, 1, store.write_predictions(v, keys, np.full(len(keys), i)))
    assert store.set_routing(0, {"champion": names["champ"]}, action="bootstrap")[0]
    ok, reason, _ = store.set_routing(
        1, {"challenger": names["arm2"], "strategy": "bandit", "holdout_bp": 700, "salt": EDGE_SALT,
            "shares": {names["arm2"]: 2500, names["arm1"]: 1500}}, action="ramp")
    assert ok, reason
    yield store, keys, np.frombuffer(bytes.fromhex("".join(keys)), dtype="S32")
    close_clients()


def reference(store: ServingStore, keys) -> list[tuple]:
    routing = store.routing()
    return [route_key(k, routing) for k in keys]


def fcall(store: ServingStore, *args):
    return store.client().execute_command("FCALL_RO", "lookup_digests", 1, ROUTING_KEY, *args)


def test_buckets_under_the_salt_in_force_answer_exactly_as_the_lua_computes_them(edged):
    store, keys, digests = edged
    blob = digests.tobytes()
    own = fcall(store, blob)
    assert own[-1] == EDGE_SALT.encode()  # the salt in force ends every reply
    given = buckets_of_digests(EDGE_SALT, blob).astype(">u2").tobytes()
    assert fcall(store, blob, EDGE_SALT, given) == own
    # ... and Redis did use them: all-zero buckets under the salt in force hold every key out.
    assert set(fcall(store, blob, EDGE_SALT, bytes(2 * len(keys)))[0]) == {1}
    # The client: its first call knows no salt (Redis hashes), the next sends buckets; both right.
    want = reference(store, keys)
    assert {route for route, _ in want} == {"holdout", "challenger", "champion"}
    for _ in range(2):
        got = store.lookup_digests(digests).records(keys)
        assert [(a["route"], a["version"]) for a in got] == want
        assert store._conn().lookup_salt == EDGE_SALT
    # The edge keys sit exactly on holdout and share edges, both ways.
    assert [a["route"] for a in got[:len(EDGE_KEYS)]] == [
        "holdout", "holdout", "challenger", "challenger", "challenger", "challenger", "champion", "champion"]


def test_buckets_under_a_stale_salt_are_ignored_after_a_new_experiment(edged):
    store, keys, digests = edged
    store.lookup_digests(digests)
    assert store._conn().lookup_salt == EDGE_SALT
    routing = store.routing()
    ok, reason, _ = store.set_routing(
        routing.epoch, {"challenger": vid("arm2"), "strategy": "bandit", "holdout_bp": 700, "salt": "exp-next",
                            "shares": {vid("arm2"): 2500, vid("arm1"): 1500}}, action="ramp")
    assert ok, reason
    want = reference(store, keys)
    stale = [route_key(k, routing) for k in keys]
    assert sum(a != b for a, b in zip(want, stale)) > 1000  # the stale buckets would route many keys elsewhere
    got = store.lookup_digests(digests).records(keys)  # sent with EDGE_SALT's buckets
    assert [(a["route"], a["version"]) for a in got] == want
    assert store._conn().lookup_salt == "exp-next"
    got = store.lookup_digests(digests).records(keys)  # now with the new salt's
    assert [(a["route"], a["version"]) for a in got] == want


def test_wrong_buckets_under_a_wrong_salt_are_ignored(edged):
    store, keys, digests = edged
    blob = digests.tobytes()
    own = fcall(store, blob)
    for salt in ("not-the-salt", "", EDGE_SALT + " "):
        assert fcall(store, blob, salt, bytes(2 * len(keys))) == own
    assert fcall(store, blob, "not-the-salt") == own  # a salt without buckets


def test_a_bucket_blob_of_the_wrong_length_is_refused_naming_the_lengths(edged):
    store, keys, digests = edged
    blob = digests[:8].tobytes()
    for salt in (EDGE_SALT, "another"):
        with pytest.raises(redis.ResponseError, match="2 bytes of bucket a key: 15 bytes for 8 keys"):
            fcall(store, blob, salt, bytes(15))


def test_without_an_experiment_the_client_sends_no_buckets(redis_url):
    close_clients()
    store = ServingStore(redis_url=redis_url)
    keys = [hashlib.sha256(f"plain{i}".encode()).hexdigest() for i in range(50)]
    v = vid("plain")
    store.register_version(v, v, role="champion", expected_keys=len(keys))
    store.set_validated(v, True, "checks passed")
    store.mark_generation(v, 1, store.write_predictions(v, keys, np.zeros(len(keys), int)))
    assert store.set_routing(0, {"champion": v}, action="bootstrap")[0]
    digests = np.frombuffer(bytes.fromhex("".join(keys)), dtype="S32")
    assert (store.lookup_digests(digests).labels == 0).all()
    assert store._conn().lookup_salt == ""
    assert digest_call_args(digests.tobytes(), "") == [digests.tobytes()]
    assert (store.lookup_digests(digests).labels == 0).all()
    close_clients()


def test_the_command_line_client_sends_buckets_and_drops_a_stale_salt(edged, redis_url):
    store, keys, digests = edged
    plain = ConsumerStore.connect(redis_url)
    try:
        assert plain.lookup_salt is None
        want = reference(store, keys)
        for _ in range(2):
            got = plain.lookup_digests(digests).records(keys)
            assert [(a["route"], a["version"]) for a in got] == want
            assert plain.lookup_salt == EDGE_SALT
        ok, reason, _ = store.set_routing(
            store.routing().epoch, {"challenger": vid("arm1"), "strategy": "canary", "holdout_bp": 0,
                                        "salt": "exp-other", "shares": {vid("arm1"): 4000}}, action="ramp")
        assert ok, reason
        want = reference(store, keys)
        calls = plain.send_digests(digests)  # the pipelined halves (`irisdag lookup --file`), stale salt
        got = plain.read_digests(calls).records(keys)
        assert [(a["route"], a["version"]) for a in got] == want
        assert plain.lookup_salt == "exp-other"
    finally:
        plain.close()
