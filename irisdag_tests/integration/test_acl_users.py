"""Least privilege inside the pipeline (issue 9 item 9), against Redis 7 started
by deploy/redis/start.sh with deploy/redis/redis.conf and the ACL file rendered
from deploy/redis/users.acl.template: each refusal is asked of the real server.
"""
from __future__ import annotations

import hashlib
import uuid

import numpy as np
import pytest
import redis
from dagster import instance_for_test

from irisdag.defs import jobs
from irisdag.defs.production import render_acl
from irisdag.store.resource import (
    AUDIT_KEY, DECISION_KEY, MISSES_KEY, OPERATIONS_KEY, ROUTING_KEY, ServingStore, StoreError, close_clients,
)
from irisdag_tests.support.processes import kill_marked
from irisdag_tests.support.services import AclRedis

MARKER = f"irisdag-acl-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory):
    server = AclRedis(tmp_path_factory.mktemp("acl-users"), marker=MARKER).start()
    try:
        yield server
    finally:
        close_clients()
        server.stop()
        kill_marked(MARKER)


@pytest.fixture
def served(acl_redis):
    """Emptied (the library stays loaded, as after deploy); then a champion A and a previous
    B served, through the scoring and routing users."""
    admin = acl_redis.admin()
    try:
        admin.flushdb()
    finally:
        admin.close()
    close_clients()
    store = ServingStore(redis_url=acl_redis.url("scoring"), routing_url=acl_redis.url("routing"))
    keys = [hashlib.sha256(f"k{i}".encode()).hexdigest() for i in range(20)]
    versions = []
    for name in ("a", "b"):
        v = hashlib.sha256(name.encode()).hexdigest()
        store.register_version(v, v, role="champion")
        store.set_validated(v, True, "test")
        store.mark_generation(v, 1, store.write_predictions(v, keys, np.arange(20) % 3))
        versions.append(v)
    a, b = versions
    ok, reason, _ = store.set_routing(0, {"champion": b, "previous": a, "salt": "s"}, action="bootstrap")
    assert ok, reason
    store.record_decision({"decision_id": "d1", "decision": "promote"})
    return acl_redis, store, a, b, keys


def raw(acl_redis, role: str) -> redis.Redis:
    return redis.Redis.from_url(acl_redis.url(role), socket_timeout=10)


def test_the_rendered_acl_file_is_what_the_server_runs(acl_redis):
    assert render_acl(acl_redis.passwords) == acl_redis.acl_file.read_text()
    admin = acl_redis.admin()
    try:
        users = set(admin.acl_users())
    finally:
        admin.close()
    assert {u.decode() if isinstance(u, bytes) else u for u in users} == {
        "default", "irisdag-admin", "irisdag-scoring", "irisdag-routing", "irisdag-consumer"}


# Every attempt names what it would do to the store; each must be refused by Redis (NOPERM).
def _refusals(a: str):
    return {
        "trim the audit": lambda c: c.xtrim(AUDIT_KEY, maxlen=0),
        "delete an audit entry": lambda c: c.xdel(AUDIT_KEY, c.xrange(AUDIT_KEY, count=1)[0][0]),
        "DEL the audit": lambda c: c.delete(AUDIT_KEY),
        "UNLINK the audit": lambda c: c.unlink(AUDIT_KEY),
        "expire the audit": lambda c: c.expire(AUDIT_KEY, 10),
        "pexpire a version": lambda c: c.pexpire(f"irisdag:version:{a}", 10),
        "expire the routing": lambda c: c.expireat(ROUTING_KEY, 2_000_000_000),
        "rename the audit": lambda c: c.rename(AUDIT_KEY, "irisdag:audit-old"),
        "renamenx a version": lambda c: c.renamenx(f"irisdag:version:{a}", "irisdag:version:x"),
        "move the decision to db 1": lambda c: c.move(DECISION_KEY, 1),
        "copy the routing": lambda c: c.copy(ROUTING_KEY, "irisdag:routing-copy"),
        "scan every key name": lambda c: c.scan(0, count=1000),
        "scan outside irisdag:*": lambda c: c.scan(0, match="*", count=1000),
        "KEYS *": lambda c: c.keys("*"),
        "CONFIG GET": lambda c: c.config_get("maxmemory"),
        "CONFIG SET": lambda c: c.config_set("maxmemory-policy", "allkeys-lru"),
        "FUNCTION LOAD": lambda c: c.function_load("#!lua name=x\nredis.register_function('f', function() end)"),
        "FUNCTION DELETE": lambda c: c.function_delete("irisdag"),
        "EVAL": lambda c: c.eval("return 1", 0),
        "FLUSHALL": lambda c: c.flushall(),
        "SET irisdag:routing": lambda c: c.set(ROUTING_KEY, "x"),
        "write outside irisdag:*": lambda c: c.hset("elsewhere", "a", "1"),
        "read outside irisdag:*": lambda c: c.hget("elsewhere", "a"),
        "SHUTDOWN": lambda c: c.execute_command("SHUTDOWN", "NOSAVE"),
        "ACL LIST": lambda c: c.acl_list(),
    }


def _state(admin: redis.Redis) -> tuple:
    return (admin.xlen(AUDIT_KEY), admin.hgetall(ROUTING_KEY), admin.dbsize(), admin.ttl(AUDIT_KEY))


@pytest.mark.parametrize("role", ["scoring", "routing"])
def test_each_refusal_of_the_pipeline_users(served, role):
    acl_redis, _, a, _, _ = served
    admin = acl_redis.admin()
    before = _state(admin)
    client = raw(acl_redis, role)
    try:
        for what, attempt in _refusals(a).items():
            with pytest.raises(redis.exceptions.NoPermissionError):
                attempt(client)
                pytest.fail(f"{role} user could {what}")
    finally:
        client.close()
    assert _state(admin) == before
    admin.close()


def test_scoring_cannot_bypass_or_call_route(served):
    acl_redis, store, a, b, keys = served
    admin = acl_redis.admin()
    before = _state(admin)
    scoring_only = ServingStore(redis_url=acl_redis.url("scoring"))  # no routing URL: routing as itself
    client = scoring_only.client()
    refused = {
        "HSET irisdag:routing": lambda: client.hset(ROUTING_KEY, "champion", a),
        "DEL irisdag:routing": lambda: client.delete(ROUTING_KEY),
        "forge an applied operation": lambda: client.hset(OPERATIONS_KEY, "promote:x", "9"),
        "call route": lambda: scoring_only.set_routing(1, {"champion": a, "previous": b}, action="rollback"),
    }
    for what, attempt in refused.items():
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
            pytest.fail(f"scoring user could {what}")
    assert _state(admin) == before and store.routing().champion == b
    admin.close()


def test_routing_cannot_write_answers_or_misses(served):
    acl_redis, store, a, b, keys = served
    routing_only = ServingStore(redis_url=acl_redis.url("routing"))
    client = routing_only.client()
    refused = {
        "write predictions": lambda: routing_only.write_predictions(a, keys[:1], [2]),
        "change a prediction": lambda: client.hset(f"irisdag:pred:{a}:0", "k", "1"),
        "register a version": lambda: routing_only.register_version("v" * 64, "v" * 64, role="challenger"),
        "record a decision": lambda: routing_only.record_decision({"decision_id": "x", "decision": "promote"}),
        "queue or drop misses": lambda: client.xadd(MISSES_KEY, {"key": "x"}),
        "delete a version": lambda: client.unlink(f"irisdag:version:{a}"),
    }
    for what, attempt in refused.items():
        with pytest.raises((redis.exceptions.NoPermissionError, StoreError)) as err:
            attempt()
            pytest.fail(f"routing user could {what}")
        assert isinstance(err.value, redis.exceptions.NoPermissionError) or \
            isinstance(err.value.__cause__, redis.exceptions.NoPermissionError), what
    assert store.lookup(keys) == ServingStore(redis_url=acl_redis.url("consumer")).lookup(keys)


def test_each_user_still_does_its_job(served, tmp_path):
    acl_redis, store, a, b, keys = served
    # Scoring: versions listed without SCAN; decisions, run failures, misses read and dead-lettered.
    assert {v["version"] for v in store.versions()} == {a, b}
    assert store.record_run_failure("run-1", job="score_batch", error="boom")
    consumer = ServingStore(redis_url=acl_redis.url("consumer"))
    consumer.queue_misses([{"key": "k", "features": "not json"}])
    length, _, page = store.misses_page()
    assert length == 1 and store.dead_letter_misses([(page[0]["stream_id"], "bad_key", "test", "k")]) == 1
    assert store.dead_letters()[0] == {"bad_key": 1}
    from irisdag.defs.store_checks import check_routing

    verdict = check_routing(store)
    assert verdict.passed, verdict.problems
    assert verdict.metadata["maxmemory_policy"] == "noeviction"  # from INFO, no CONFIG GET

    # Routing: the rollback job, through the routing user, with its metadata and its audit.
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        result = jobs.rollback.execute_in_process(instance=instance, raise_on_error=False,
                                                  resources={"serving_store": store})
    assert result.success
    assert store.routing().champion == a and store.version_info(b)["lifecycle"] == "rolled_back"
    entry = store.audit(5)[-1]
    assert (entry["action"], entry["outcome"], entry["run_id"]) == ("rollback", "applied", result.run_id)
    store.audit_refusal("rollback", "nothing to roll back to")  # as the routing user
    # Scoring may delete a version no route names.
    assert store.delete_version(b) > 0 and {v["version"] for v in store.versions()} == {a}


def test_the_server_bounds_what_a_consumer_can_queue(served):
    acl_redis, store, *_ = served
    consumer = raw(acl_redis, "consumer")
    try:
        # proto-max-bulk-len 1mb: Redis answers "invalid bulk length" and drops the client (which of
        # the two the client sees first depends on timing).
        with pytest.raises((redis.exceptions.ConnectionError, redis.exceptions.ResponseError)) as err:
            consumer.xadd(MISSES_KEY, {"key": "k", "features": "x" * (2 << 20)})
        if isinstance(err.value, redis.exceptions.ResponseError):
            assert "invalid bulk length" in str(err.value)
    finally:
        consumer.close()
    admin = acl_redis.admin()
    try:
        assert admin.config_get("proto-max-bulk-len") == {"proto-max-bulk-len": str(1 << 20)}
        assert int(admin.config_get("maxmemory")["maxmemory"]) == 2 << 30
        assert admin.xlen(MISSES_KEY) == 0
    finally:
        admin.close()


def test_the_consumer_sends_buckets_during_a_canary_and_gets_the_routed_answers(served):
    from irisdag.store.consumer import ConsumerStore

    acl_redis, store, a, b, keys = served
    ok, reason, _ = store.set_routing(store.routing().epoch, {"challenger": a, "strategy": "canary",
                                                             "shares": {a: 5000}, "salt": "canary-s"}, action="ramp")
    assert ok, reason
    want = [(r["route"], r["version"]) for r in store.lookup(keys)]
    assert {route for route, _ in want} == {"champion", "challenger"}
    digests = np.frombuffer(bytes.fromhex("".join(keys)), dtype="S32")
    consumer = ServingStore(redis_url=acl_redis.url("consumer"))
    plain = ConsumerStore.connect(acl_redis.url("consumer"))
    try:
        for _ in range(2):  # the second call of each sends its buckets under "canary-s"
            for client in (consumer, plain):
                assert [(r["route"], r["version"]) for r in client.lookup_digests(digests).records(keys)] == want
        assert consumer._conn().lookup_salt == plain.lookup_salt == "canary-s"
    finally:
        plain.close()
