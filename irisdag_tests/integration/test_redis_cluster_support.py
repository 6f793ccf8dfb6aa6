"""The test support's Redis Cluster: it comes up whole, spreads keys over its masters, fails over."""
from __future__ import annotations

import time

import redis

from irisdag_tests.support.redis_cluster import SLOTS, RedisTestCluster


def test_cluster_comes_up_with_three_masters_each_with_a_replica(redis_cluster):
    masters, replicas = redis_cluster.masters(), redis_cluster.replicas()
    assert len(masters) == 3 and len(replicas) == 3
    assert {redis_cluster.replica_of(m).port for m in masters} == {r.port for r in replicas}
    views = redis_cluster.view()
    assert sum(v.slots for v in views if v.is_master) == SLOTS
    for node in redis_cluster.nodes:
        assert node.url.startswith("redis://") and "127.0.0.1" in node.url


def test_keys_spread_over_the_three_masters(redis_cluster):
    _fill(redis_cluster, "spread", 600)
    counts = []
    for master in redis_cluster.masters():
        client = master.client()
        counts.append(client.dbsize())
        client.close()
    assert sum(counts) == 600
    assert min(counts) >= 150, counts  # an even share is 200 each


def test_killing_a_master_promotes_its_replica_and_keys_stay_readable(redis_cluster):
    _fill(redis_cluster, "survive", 300)
    rc = redis_cluster.cluster_client()
    try:
        victim = redis_cluster.master_for_key("survive:7")
        heir = redis_cluster.replica_of(victim)
        client = victim.client()
        assert client.execute_command("WAIT", 1, 5000) == 1  # the replica holds every write
        client.close()
        redis_cluster.kill(victim)
        assert not victim.running
        seconds = redis_cluster.wait_for_failover(victim)
        assert seconds < 30
        assert heir in redis_cluster.masters() and victim not in redis_cluster.masters()
        deadline = time.monotonic() + 10
        while True:
            try:
                values = [rc.get(f"survive:{i}") for i in range(300)]
                break
            except (redis.ConnectionError, redis.exceptions.ClusterDownError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert values == [str(i).encode() for i in range(300)]
    finally:
        rc.close()
    redis_cluster.restart(victim)
    assert victim in redis_cluster.replicas()


def test_a_cluster_with_a_password_refuses_unauthenticated_clients():
    with RedisTestCluster(password="cluster-pass") as cluster:
        rc = cluster.cluster_client()
        try:
            rc.set("a", "1")
            assert rc.get("a") == b"1"
        finally:
            rc.close()
        anonymous = redis.Redis(host="127.0.0.1", port=cluster.nodes[0].port, socket_timeout=5)
        try:
            anonymous.ping()
            raise AssertionError("an unauthenticated PING was answered")
        except redis.AuthenticationError:
            pass
        finally:
            anonymous.close()
        pids = [n.pid for n in cluster.nodes]
        folders = [n.dir for n in cluster.nodes]
    assert all(not d.exists() for d in folders)
    assert all(not _alive(pid) for pid in pids)


def _fill(cluster, prefix: str, count: int) -> None:
    """Empty the cluster, then SET ``prefix:i`` = i for i < count through a cluster client."""
    cluster.flushall()
    rc = cluster.cluster_client()
    try:
        for i in range(count):
            rc.set(f"{prefix}:{i}", i)
    finally:
        rc.close()


def _alive(pid: int) -> bool:
    import os
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
