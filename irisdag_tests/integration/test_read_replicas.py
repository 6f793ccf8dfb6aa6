"""Lookups on read replicas (IRISDAG_REDIS_READ_URLS, docs/replicas.md), against a real primary
and a real replica on loopback, both with the deploy ACL users; the replica follows the primary
through a proxy that can stall the replication link, so a lagging replica is deterministic.
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid

import numpy as np
import pytest
import redis

from irisdag import cli
from irisdag.core.keys import digests_of_hex, input_key
from irisdag.store import resource
from irisdag.store.resource import MISSES_KEY, READ_URLS_ENV, StoreClient, StoreError, close_clients
from irisdag.store import embedded
from irisdag_tests.support.flaky_proxy import FlakyProxy
from irisdag_tests.support.processes import free_port, kill_marked
from irisdag_tests.support.redis_server import RedisServer
from irisdag_tests.support.services import AclRedis

MARKER = f"irisdag-replica-{uuid.uuid4().hex[:8]}"
KEYS = [hashlib.sha256(f"replica-key-{i}".encode()).hexdigest() for i in range(40)]
LABELS = ("setosa", "versicolor", "virginica")


class Pair:
    """A primary, a replica of it behind a proxy, and their admin clients."""

    def __init__(self, tmp):
        self.primary = AclRedis(tmp / "primary", marker=MARKER).start()
        self.proxy = FlakyProxy(self.primary.port)
        self.replica = AclRedis(
            tmp / "replica", marker=MARKER, passwords=self.primary.passwords, load_functions=False,
            extra_args=["--replicaof", "127.0.0.1", str(self.proxy.port), "--masteruser", "irisdag-admin",
                        "--masterauth", self.primary.passwords["admin"], "--replica-serve-stale-data", "no"]
        ).start()

    def admin(self, server) -> redis.Redis:
        return redis.Redis.from_url(server.url("admin"), socket_timeout=10, decode_responses=True)

    def synced(self, timeout: float = 20.0) -> None:
        """The replica has every write the primary made (WAIT on the primary)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.admin(self.replica) as rep:
                if rep.info("replication").get("master_link_status") == "up":
                    with self.admin(self.primary) as prim:
                        if prim.execute_command("WAIT", 1, 2000) == 1:
                            return
            time.sleep(0.1)
        raise TimeoutError("the replica did not catch up")

    def fcall_ro_calls(self, server) -> int:
        with self.admin(server) as client:
            return int(client.info("commandstats").get("cmdstat_fcall_ro", {}).get("calls", 0))

    def consumer(self, read_urls: str | None = None) -> StoreClient:
        return StoreClient(redis_url=self.primary.url("consumer"),
                           read_urls=self.replica.url("consumer") if read_urls is None else read_urls)

    def stop(self) -> None:
        self.proxy.close()
        self.replica.cleanup()
        self.primary.cleanup()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    pair = Pair(tmp_path_factory.mktemp("replicas"))
    try:
        yield pair
    finally:
        close_clients()
        pair.stop()
        kill_marked(MARKER)


@pytest.fixture
def served(pair, monkeypatch):
    """Emptied; versions a (labels i % 3) and b ((i + 1) % 3) stored; b champion, a previous; replica in sync."""
    monkeypatch.setattr(resource, "REPLICA_RETRY_AFTER", 0.0)
    pair.proxy.release()
    pair.proxy.heal()
    with pair.admin(pair.primary) as admin:
        admin.flushdb()
    close_clients()
    store = StoreClient(redis_url=pair.primary.url("scoring"), routing_url=pair.primary.url("routing"))
    versions = {}
    for name, shift in (("a", 0), ("b", 1)):
        v = hashlib.sha256(f"replica-{name}".encode()).hexdigest()
        store.register_version(v, v, role="champion")
        store.set_validated(v, True, "test")
        store.mark_generation(v, 1, store.write_predictions(v, KEYS, (np.arange(len(KEYS)) + shift) % 3))
        versions[name] = v
    ok, reason, _ = store.set_routing(0, {"champion": versions["b"], "previous": versions["a"], "salt": "s"},
                                      action="bootstrap")
    assert ok, reason
    pair.synced()
    return store, versions


def _expected(shift: int) -> list[str]:
    return [LABELS[(i + shift) % 3] for i in range(len(KEYS))]


def test_lookups_answer_from_the_replica_as_the_consumer_user(pair, served):
    _, versions = served
    consumer = pair.consumer()
    before = (pair.fcall_ro_calls(pair.primary), pair.fcall_ro_calls(pair.replica))
    answers = consumer.lookup(KEYS)
    batch = consumer.lookup_digests(digests_of_hex(KEYS))
    after = (pair.fcall_ro_calls(pair.primary), pair.fcall_ro_calls(pair.replica))
    assert [a["label"] for a in answers] == _expected(1)
    assert {(a["route"], a["version"]) for a in answers} == {("champion", versions["b"])}
    assert [r["label"] for r in batch.records(KEYS)] == _expected(1)
    assert after[0] == before[0], "the primary ran a lookup"
    assert after[1] - before[1] == 2, "the replica did not answer both calls"


def test_a_lagging_replica_answers_from_the_previously_routed_version_complete(pair, served):
    """The replica's link stalls; the primary rolls back to a, then unroutes b and deletes it.
    The replica still answers every key from b (routed, validated, complete in its history),
    the primary from a; once the link flows again the replica answers from a."""
    store, versions = served
    a, b = versions["a"], versions["b"]
    consumer, on_primary = pair.consumer(), pair.consumer(read_urls="")
    pair.proxy.hold()
    epoch = store.routing().epoch
    ok, reason, epoch = store.set_routing(epoch, {"champion": a, "previous": b}, action="rollback")
    assert ok, reason
    ok, reason, epoch = store.set_routing(epoch, {"previous": ""}, action="retire")
    assert ok, reason
    assert store.delete_version(b) > 0
    with pair.admin(pair.replica) as rep:
        assert rep.info("replication")["master_link_status"] == "up"  # stalled, not broken

    assert [(r["version"], r["label"]) for r in on_primary.lookup(KEYS)] == [(a, x) for x in _expected(0)]
    for _ in range(3):  # every call, not one lucky one
        lagging = consumer.lookup(KEYS)
        assert [(r["route"], r["version"], r["label"]) for r in lagging] == [
            ("champion", b, x) for x in _expected(1)]
        batch = consumer.lookup_digests(digests_of_hex(KEYS))
        assert batch.versions == (b,) and [r["label"] for r in batch.records(KEYS)] == _expected(1)
    with pair.admin(pair.replica) as rep:
        meta = rep.hgetall(f"irisdag:version:{b}")
    assert meta["validated"] == "1" and meta["complete"] == "1"

    pair.proxy.release()
    pair.synced()
    assert [(r["version"], r["label"]) for r in consumer.lookup(KEYS)] == [(a, x) for x in _expected(0)]
    with pair.admin(pair.replica) as rep:
        assert not rep.exists(f"irisdag:version:{b}")


def test_a_replica_cut_off_from_its_primary_refuses_and_the_primary_answers(pair, served):
    """replica-serve-stale-data no: with its link down the replica answers MASTERDOWN, and the
    lookup is answered by the primary (current routing), not from the stale copy."""
    store, versions = served
    consumer = pair.consumer()
    pair.proxy.break_now()
    deadline = time.monotonic() + 20
    with pair.admin(pair.replica) as rep:
        while rep.info("replication")["master_link_status"] == "up":
            assert time.monotonic() < deadline, "the replica did not notice its link went down"
            time.sleep(0.05)
    ok, reason, _ = store.set_routing(store.routing().epoch, {"champion": versions["a"], "previous": versions["b"]},
                                      action="rollback")
    assert ok, reason
    before = pair.fcall_ro_calls(pair.primary)
    answers = consumer.lookup(KEYS)
    assert [(r["version"], r["label"]) for r in answers] == [(versions["a"], x) for x in _expected(0)]
    assert pair.fcall_ro_calls(pair.primary) == before + 1
    pair.proxy.heal()
    pair.synced()


def test_an_unreachable_replica_is_skipped_and_the_next_one_or_the_primary_answers(pair, served):
    _, versions = served
    dead = f"redis://irisdag-consumer:x@127.0.0.1:{free_port()}/0"
    before = pair.fcall_ro_calls(pair.replica)
    answers = pair.consumer(read_urls=f"{dead},{pair.replica.url('consumer')}").lookup(KEYS)
    assert [r["label"] for r in answers] == _expected(1)
    assert pair.fcall_ro_calls(pair.replica) == before + 1
    primary_before = pair.fcall_ro_calls(pair.primary)
    answers = pair.consumer(read_urls=dead).lookup(KEYS)
    assert [r["label"] for r in answers] == _expected(1)
    assert pair.fcall_ro_calls(pair.primary) == primary_before + 1


def test_the_cli_looks_up_on_the_replica_and_queues_misses_on_the_primary(pair, served, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("REDIS_URL", pair.primary.url("consumer"))
    monkeypatch.setenv(READ_URLS_ENV, pair.replica.url("consumer"))
    features = ["7.9", "3.8", "6.4", "2.0"]  # never stored: a miss
    with pair.admin(pair.primary) as prim:
        queued_before = prim.xlen(MISSES_KEY)
    before = (pair.fcall_ro_calls(pair.primary), pair.fcall_ro_calls(pair.replica))
    assert cli.main(["lookup", *features, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["key"], out["route"]) == (input_key([float(v) for v in features]), "miss")
    assert (pair.fcall_ro_calls(pair.primary), pair.fcall_ro_calls(pair.replica)) == (before[0], before[1] + 1)
    with pair.admin(pair.primary) as prim:
        assert prim.xlen(MISSES_KEY) == queued_before + 1

    csv = tmp_path / "rows.csv"
    csv.write_text("sepal_length,sepal_width,petal_length,petal_width\n" + ",".join(features) + "\n")
    before = (pair.fcall_ro_calls(pair.primary), pair.fcall_ro_calls(pair.replica))
    assert cli.main(["lookup", "--file", str(csv)]) == 0
    assert "route=miss" in capsys.readouterr().out
    after = (pair.fcall_ro_calls(pair.primary), pair.fcall_ro_calls(pair.replica))
    assert after[0] == before[0] and after[1] > before[1], (before, after)


def test_read_urls_without_redis_url_are_refused_with_one_line(monkeypatch, capsys):
    with pytest.raises(ValueError, match=f"{READ_URLS_ENV} is set .* but REDIS_URL is not"):
        StoreClient(redis_url="", read_urls="redis://127.0.0.1:1/0")
    with pytest.raises(ValueError, match="'ftp://x' is not a redis:// or rediss:// URL"):
        StoreClient(redis_url="redis://127.0.0.1:1/0", read_urls="ftp://x")
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv(READ_URLS_ENV, "redis://u:secret@127.0.0.1:1/0")
    assert cli.main(["lookup", "5.1", "3.5", "1.4", "0.2"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and READ_URLS_ENV in err and "secret" not in err


def test_a_replica_older_than_redis_7_is_refused_by_name(tmp_path):
    """Redis 6.2 (the embedded server's) has no FCALL_RO: the setting cannot work there."""
    old = RedisServer(executable=embedded.redis_executable(), directory=tmp_path).start()
    try:
        store = StoreClient(redis_url="redis://127.0.0.1:1/0", read_urls=old.url)
        with pytest.raises(StoreError, match=rf"{READ_URLS_ENV}: redis://127.0.0.1:{old.port}/0 runs Redis < 7"):
            store.lookup(KEYS[:1])
    finally:
        close_clients()
        old.stop()
