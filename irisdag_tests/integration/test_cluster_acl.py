"""The least-privilege Redis users (DESIGN §3, deploy/redis/users.acl.template) on a real
Redis Cluster: 3 masters + 3 replicas on loopback, the rendered ACL file on every node
(``default`` off; replicas authenticate as the admin user). Each user does its job with
the cluster's hash-tagged key names (docs/cluster.md), and each refusal of the consumer is
asked of the real nodes, including the node that serves the key's slot.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys

import numpy as np
import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from irisdag.core import keys as keyscheme
from irisdag.defs.production import ACL_USERS, load_functions, render_acl
from irisdag.store.resource import (CLUSTER_TAGS, LABELS, Keyspace, StoreClient, _tag_of_key, close_clients,
                                    library_code, lua_source)
from irisdag_tests.support.redis_cluster import RedisTestCluster

KEYS = Keyspace(tags=CLUSTER_TAGS)
FEATURES = ("5.1", "3.5", "1.4", "0.2")


def vid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


class AclCluster:
    """A RedisTestCluster whose nodes all run the deploy ACL file; URLs per role and node."""

    def __init__(self, tmp_path):
        self.passwords = {role: f"{role}-{secrets.token_hex(8)}" for role in ACL_USERS}
        self.acl_file = tmp_path / "users.acl"
        self.acl_file.write_text(render_acl(self.passwords))
        self.cluster = RedisTestCluster(password=self.passwords["admin"], username=ACL_USERS["admin"],
                                        extra_args=["--aclfile", str(self.acl_file)])

    def url(self, role: str, node=None) -> str:
        node = node or self.cluster.masters()[0]
        return f"redis://{ACL_USERS[role]}:{self.passwords[role]}@127.0.0.1:{node.port}/0"

    def client(self, role: str) -> RedisCluster:
        """redis-py's own cluster client as ``role`` (for raw attempts)."""
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", n.port) for n in self.cluster.live_nodes()],
                            username=ACL_USERS[role], password=self.passwords[role], socket_timeout=10)


@pytest.fixture(scope="module")
def acl_cluster(tmp_path_factory):
    acl = AclCluster(tmp_path_factory.mktemp("cluster-acl"))
    acl.cluster.start()
    try:
        yield acl
    finally:
        close_clients()
        acl.cluster.stop()


@pytest.fixture(scope="module")
def served(acl_cluster):
    """The library loaded as the admin (every primary); versions a (previous) and b written by
    the scoring user; b promoted over a by the routing user."""
    close_clients()
    loaded = load_functions(acl_cluster.url("admin"))
    assert loaded["matches_code"] is True
    close_clients()
    store = StoreClient(redis_url=acl_cluster.url("scoring"), routing_url=acl_cluster.url("routing"))
    assert store.is_cluster and store.routing_store() is not store
    wanted = keyscheme.input_key(keyscheme.parse_features(FEATURES))
    keys = [wanted] + [hashlib.sha256(f"k{i}".encode()).hexdigest() for i in range(3000)]
    versions = {}
    for name, shift in (("a", 0), ("b", 1)):
        v = vid(name)
        store.register_version(v, v, role="champion", expected_keys=len(keys))
        store.set_validated(v, True, "checks passed")
        labels = (np.arange(len(keys)) + shift) % 3
        store.mark_generation(v, 1, store.write_predictions(v, keys, labels))
        versions[v] = labels
    a, b = vid("a"), vid("b")
    ok, reason, _ = store.set_routing(0, {"champion": a, "salt": "s"}, action="bootstrap")
    assert ok, reason
    epoch = store.routing().epoch
    ok, reason, _ = store.set_routing(epoch, {"champion": b, "previous": a}, action="promote")
    assert ok, reason
    return acl_cluster, store, a, b, keys, versions


def test_the_admin_loaded_the_library_on_every_primary(served):
    acl, *_ = served
    for master in acl.cluster.masters():
        client = master.client()  # the admin user
        try:
            assert library_code(client) == lua_source(), master.port
        finally:
            client.close()


def test_answers_spread_over_the_masters_and_routing_copies_on_every_tag(served):
    acl, store, a, b, keys, _ = served
    per_master = {}
    for master in acl.cluster.masters():
        client = master.client()
        try:
            per_master[master.port] = sum(1 for _ in client.scan_iter(match=f"irisdag:{{*}}:pred:{b}:*", count=1000))
        finally:
            client.close()
    assert len(per_master) == 3 and all(n > 300 for n in per_master.values()), per_master
    copies = store.routing_copies()
    assert len(copies) == CLUSTER_TAGS
    assert {(c.champion, c.previous, c.epoch) for c in copies} == {(b, a, store.routing().epoch)}


def test_the_consumer_looks_up_and_queues_misses(served, tmp_path):
    acl, store, a, b, keys, versions = served
    close_clients()
    consumer = StoreClient(redis_url=acl.url("consumer"))
    assert consumer.is_cluster
    answers = consumer.lookup(keys)
    assert [r["version"] for r in answers] == [b] * len(keys)
    assert [r["label"] for r in answers] == [LABELS[int(x)] for x in versions[b]]
    assert consumer.lookup_digests(keyscheme.digests_of_hex(keys[:500])).versions == (b,)
    ids = consumer.queue_misses([{"key": "f" * 64, "features": [5.0, 3.0, 1.5, 0.2]}])
    assert len(ids) == 1
    length, _, page = store.misses_page()
    assert length == 1 and page[0]["fields"]["key"] == "f" * 64

    # The CLI as the consumer, through each master (one of them serves `irisdag:routing`'s slot,
    # where a single server's lookup would find no routing and answer a miss).
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRISDAG_") and k != "DAGSTER_HOME"}
    env["IRISDAG_HOME"] = str(tmp_path / "state")
    want = {"key": keys[0], "label": LABELS[int(versions[b][0])], "version": b, "route": "champion"}
    for node in acl.cluster.masters():
        env["REDIS_URL"] = acl.url("consumer", node)
        done = subprocess.run([sys.executable, "-m", "irisdag.cli", "lookup", *FEATURES, "--json"], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (node.port, done.stdout, done.stderr)
        assert json.loads(done.stdout) == want, node.port


def _consumer_refusals(store: StoreClient, a: str, b: str, key: str):
    tag = _tag_of_key(key)
    answer = KEYS.pred_key(b, tag, layout=0)
    copy = KEYS.routing_copy(tag)
    return {
        "HSET an answer": lambda c: c.hset(answer, key, "0"),
        "HSET an answer (single-server name)": lambda c: c.hset(f"irisdag:pred:{b}:0", key, "0"),
        "XADD onto an answer key": lambda c: c.xadd(answer, {"x": "1"}),
        "HSET a routing copy": lambda c: c.hset(copy, "champion", a),
        "HSET the control routing": lambda c: c.hset(KEYS.routing, "champion", a),
        "HSET a layout copy": lambda c: c.hset(KEYS.layout_copy(tag, b), "layout", "9"),
        "XADD the audit": lambda c: c.xadd(KEYS.audit, {"action": "forged"}),
        "XADD a dead letter": lambda c: c.xadd(KEYS.dead_misses, {"x": "1"}),
        "FCALL mirror on a routing copy": lambda c: c.execute_command(
            "FCALL", "mirror", "1", copy, "epoch", "999999", "champion", a),
        "FCALL route": lambda c: c.execute_command(
            "FCALL", "route", "3", KEYS.routing, KEYS.audit, KEYS.operations, "0", "{}"),
        "DEL an answer": lambda c: c.delete(answer),
        "DEL a routing copy": lambda c: c.delete(copy),
        "DEL the misses": lambda c: c.delete(KEYS.misses),
        "UNLINK a layout copy": lambda c: c.unlink(KEYS.layout_copy(tag, b)),
        "XDEL a miss": lambda c: c.xdel(KEYS.misses, "0-1"),
        "XTRIM the misses": lambda c: c.xtrim(KEYS.misses, maxlen=0),
        "EVAL": lambda c: c.eval("return 1", 1, copy),
        "FUNCTION LOAD": lambda c: c.function_load(lua_source(), replace=True),
        "INFO (everything)": lambda c: c.info(),
        "CONFIG GET": lambda c: c.config_get("maxmemory"),
        "CLUSTER NODES": lambda c: c.execute_command("CLUSTER NODES"),
        "CLUSTER RESET": lambda c: c.execute_command("CLUSTER RESET"),
        "SCAN": lambda c: c.scan(0, count=1000),
        "KEYS *": lambda c: c.keys("*"),
        "read outside irisdag:*": lambda c: c.hget("elsewhere", "a"),
    }


def test_the_consumer_is_refused_every_write_but_a_miss(served):
    acl, store, a, b, keys, _ = served
    admin = acl.client("admin")
    tag = _tag_of_key(keys[1])
    watched = [KEYS.pred_key(b, tag, layout=0), KEYS.routing_copy(tag), KEYS.routing, KEYS.audit,
               KEYS.layout_copy(tag, b), KEYS.misses]
    before = {k: admin.dump(k) for k in watched}
    admin_node = acl.cluster.master_for_key(KEYS.pred_key(b, tag, layout=0))
    # Asked of the node that serves each key's slot (redis-py's cluster client routes there), and of
    # one node directly (a plain client: no redirection hides a refusal).
    consumers = [acl.client("consumer"),
                 redis.Redis.from_url(acl.url("consumer", admin_node), socket_timeout=10)]
    try:
        for client in consumers:
            for what, attempt in _consumer_refusals(store, a, b, keys[1]).items():
                with pytest.raises(redis.exceptions.NoPermissionError):
                    attempt(client)
                    pytest.fail(f"the consumer could {what} ({type(client).__name__})")
        # FCALL_RO of a writing function: refused by the server (not the ACL) before it runs.
        with pytest.raises(redis.exceptions.ResponseError, match="write flag"):
            consumers[0].execute_command("FCALL_RO", "mirror", "1", KEYS.routing_copy(tag), "epoch", "999999",
                                         "champion", a)
        # What it may do: INFO's cluster section, the slot map, PING.
        rc = consumers[0]
        assert str(rc.info("cluster", target_nodes=RedisCluster.RANDOM).get("cluster_enabled")) == "1"
        assert rc.execute_command("CLUSTER SLOTS")
        assert rc.ping()
    finally:
        for client in consumers:
            client.close()
    assert {k: admin.dump(k) for k in watched} == before
    admin.close()


def test_scoring_and_routing_keep_to_their_keys(served):
    acl, store, a, b, keys, _ = served
    tag = _tag_of_key(keys[1])
    scoring, routing = acl.client("scoring"), acl.client("routing")
    try:
        refused = {
            "scoring: HSET a routing copy": lambda: scoring.hset(KEYS.routing_copy(tag), "champion", a),
            "scoring: FCALL mirror on a routing copy": lambda: scoring.execute_command(
                "FCALL", "mirror", "1", KEYS.routing_copy(tag), "epoch", "999999", "champion", a),
            "scoring: HSET the control routing": lambda: scoring.hset(KEYS.routing, "champion", a),
            "scoring: DEL an answer": lambda: scoring.delete(KEYS.pred_key(b, tag, layout=0)),
            "routing: HSET an answer": lambda: routing.hset(KEYS.pred_key(b, tag, layout=0), keys[1], "0"),
            "routing: FCALL mirror on an answer": lambda: routing.execute_command(
                "FCALL", "mirror", "1", KEYS.pred_key(b, tag, layout=0), "epoch", "9", keys[1], "0"),
            "routing: XADD the misses": lambda: routing.xadd(KEYS.misses, {"key": "x"}),
            "routing: UNLINK a layout copy": lambda: routing.unlink(KEYS.layout_copy(tag, b)),
        }
        for what, attempt in refused.items():
            with pytest.raises(redis.exceptions.NoPermissionError):
                attempt()
                pytest.fail(f"{what} was allowed")
    finally:
        scoring.close()
        routing.close()
    # A rollback as the routing user reaches every tag's copy.
    epoch = store.routing().epoch
    ok, reason, _ = store.set_routing(epoch, {"champion": a, "previous": b}, action="rollback")
    assert ok, reason
    assert {(c.champion, c.epoch) for c in store.routing_copies()} == {(a, epoch + 1)}
    consumer = StoreClient(redis_url=acl.url("consumer", acl.cluster.replicas()[0]))
    assert {r["version"] for r in consumer.lookup(keys[:300])} == {a}
    ok, reason, _ = store.set_routing(epoch + 1, {"champion": b, "previous": a}, action="promote")
    assert ok, reason
