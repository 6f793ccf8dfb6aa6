"""A full Redis (maxmemory reached, noeviction) keeps serving reads (issue 9 item 5).

Each test starts its own Redis 7 on a free loopback port, loads the irisdag
library as a deploy would, serves a champion, then fills the server until
Redis refuses writes. No mocks: every assertion is on what Redis answered.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import redis

from irisdag.core import keys as keyscheme
from irisdag.store.resource import (
    MISSES_KEY, ServingStore, StoreError, close_clients, lua_source,
)
from irisdag_tests.support.redis_server import RedisServer, noeviction

FILLER = "irisdag:test-filler"


@pytest.fixture
def servers():
    started: list[RedisServer] = []

    def make(*extra_args: str) -> RedisServer:
        server = RedisServer(extra_args=extra_args).start()
        started.append(server)
        return server

    yield make
    close_clients()
    for server in started:
        server.cleanup()


def serve_champion(store: ServingStore, n: int = 50) -> tuple[str, list[str]]:
    """A validated, complete champion answering `n` feature keys (inputs i/10, 1, 1, 1)."""
    keys = [keyscheme.input_key((i / 10, 1.0, 1.0, 1.0)) for i in range(n)]
    version = hashlib.sha256(b"champion").hexdigest()
    store.register_version(version, version, role="champion", expected_keys=n)
    store.set_validated(version, True, "test")
    added = store.write_predictions(version, keys, np.arange(n) % 3)
    store.mark_generation(version, 1, added)
    ok, reason, _ = store.set_routing(0, {"champion": version, "salt": "s"}, action="bootstrap")
    assert ok, reason
    return version, keys


def fill(server: RedisServer) -> None:
    """Write until Redis refuses (OOM), then hold maxmemory below what is used, so that it stays
    full whatever connections come and go (their buffers count in used_memory)."""
    client = server.client()
    try:
        server.config_set("maxmemory", int(server.info("memory")["used_memory"]) + (1 << 20))
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            for i in range(100_000):
                client.set(f"{FILLER}:{i}", b"x" * 4096)
        server.config_set("maxmemory", int(server.info("memory")["used_memory"]) - (512 << 10))
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.function_load(lua_source(), replace=True)  # what each new process used to do
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.xadd(MISSES_KEY, {"key": "x"})
    finally:
        client.close()


def test_new_process_reads_a_full_redis_without_loading_the_library(servers):
    server = servers(*noeviction(0))
    store = ServingStore(redis_url=server.url)
    version, keys = serve_champion(store)
    expected = store.lookup(keys)
    fill(server)
    close_clients()  # a new process: nothing known about the server yet
    fresh = ServingStore(redis_url=server.url)
    assert fresh.lookup(keys) == expected
    assert {r["route"] for r in expected} == {"champion"}
    # Routing reads and version reads work too.
    assert fresh.routing().champion == version


def test_cli_lookup_on_a_full_redis_prints_the_answer_then_warns_once(servers):
    server = servers(*noeviction(0))
    store = ServingStore(redis_url=server.url)
    _, keys = serve_champion(store)
    fill(server)
    env = {**os.environ, "REDIS_URL": server.url, "PYTHONPATH": os.environ.get("PYTHONPATH", os.getcwd())}
    cmd = [sys.executable, "-m", "irisdag.cli", "lookup"]
    hit = subprocess.run([*cmd, "0.1", "1", "1", "1"], env=env, capture_output=True, text=True, timeout=120)
    assert hit.returncode == 0, hit.stderr
    assert hit.stdout.startswith("versicolor\troute=champion") and keys[1] in hit.stdout
    assert hit.stderr == ""
    # A miss: the answer (route miss) is printed, queueing it is refused (XADD under OOM): one line.
    miss = subprocess.run([*cmd, "7", "7", "7", "7"], env=env, capture_output=True, text=True, timeout=120)
    assert miss.returncode == 0, miss.stderr
    assert miss.stdout.startswith("-\troute=miss")
    lines = miss.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("irisdag: warning: 1 miss(es) not queued") and "maxmemory" in lines[0]
    assert "Traceback" not in miss.stderr
    assert server.client().xlen(MISSES_KEY) == 0


def test_library_is_loaded_only_when_missing_or_different(servers):
    server = servers()
    admin = server.client()
    store = ServingStore(redis_url=server.url)
    # Missing: loaded.
    store.ensure_functions()
    assert admin.function_list(library="irisdag")
    # The same code already there: checked (FUNCTION LIST), not loaded again.
    close_clients()
    ServingStore(redis_url=server.url).ensure_functions()
    calls = admin.info("commandstats")
    assert calls["cmdstat_function|load"]["calls"] == 1 and calls["cmdstat_function|list"]["calls"] >= 2
    # Another version of the library: replaced by this code's.
    admin.function_load(lua_source() + "\n-- another build\n", replace=True)
    close_clients()
    ServingStore(redis_url=server.url).ensure_functions()
    code = admin.function_list(library="irisdag", withcode=True)[0]
    code = dict(zip(code[::2], code[1::2])) if isinstance(code, list) else code
    assert code[b"library_code"].decode() == lua_source()
    assert admin.info("commandstats")["cmdstat_function|load"]["calls"] == 3
    admin.close()


def test_missing_library_on_a_full_redis_is_a_clear_error(servers):
    server = servers(*noeviction(0))
    store = ServingStore(redis_url=server.url)
    serve_champion(store)
    server.client().function_flush()
    fill(server)
    close_clients()
    with pytest.raises(StoreError, match="not loaded .* refused .*maxmemory.*redis-init"):
        ServingStore(redis_url=server.url).lookup(["a" * 64])


def test_different_library_on_a_full_redis_still_serves(servers):
    server = servers(*noeviction(0))
    store = ServingStore(redis_url=server.url)
    _, keys = serve_champion(store)
    expected = store.lookup(keys)
    server.client().function_load(lua_source() + "\n-- the deployed build\n", replace=True)
    fill(server)
    close_clients()
    assert ServingStore(redis_url=server.url).lookup(keys) == expected


# ---- routing operations take effect once, with their metadata (issue 9 item 6) ----------------------

def two_served_versions(store: ServingStore, n: int = 50) -> tuple[str, str, list[str]]:
    """Champion A serving, challenger B validated, complete and covering what A covers."""
    a, keys = serve_champion(store, n)
    b = hashlib.sha256(b"challenger").hexdigest()
    store.register_version(b, b, role="challenger", expected_keys=n)
    store.set_validated(b, True, "test")
    store.mark_generation(b, 1, store.write_predictions(b, keys, (np.arange(n) + 1) % 3))
    return a, b, keys


def run_job(name: str, store: ServingStore, instance, **config):
    from irisdag.defs import jobs

    job = getattr(jobs, name)
    run_config = {"ops": {job.graph.node_defs[0].name: {"config": config}}} if config else {}
    return job.execute_in_process(run_config=run_config, instance=instance, raise_on_error=False,
                                  resources={"serving_store": store})


@pytest.fixture
def instance(tmp_path):
    from dagster import instance_for_test

    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as inst:
        yield inst


def promote_decision(store: ServingStore, a: str, b: str, decision_id: str = "d-1") -> str:
    store.record_decision({"decision_id": decision_id, "decision": "promote", "champion": a, "challenger": b,
                           "reason": "test"})
    return decision_id


def test_rollback_under_a_full_redis_applies_with_its_metadata_and_reports_applied(servers, instance, tmp_path):
    server = servers(*noeviction(0))
    store = ServingStore(redis_url=server.url)
    a, b, keys = two_served_versions(store)
    did = promote_decision(store, a, b)
    assert run_job("promote", store, instance, decision_id=did).success
    assert store.routing().champion == b and store.routing().previous == a
    fill(server)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        store.set_version_fields(b, lifecycle="x")  # what the job used to do after the compare-and-set

    result = run_job("rollback", store, instance)
    assert result.success
    out = result.output_for_node("rollback_champion")
    routing = store.routing()
    assert (routing.champion, routing.previous) == (a, "") and out["champion"] == a and out["rolled_back"] == b
    assert out["epoch"] == routing.epoch == 3
    # The metadata was written by the routing function itself, under OOM.
    assert store.version_info(b)["lifecycle"] == "rolled_back" and store.version_info(b)["role"] == "retired"
    assert store.version_info(a)["role"] == "champion"
    assert [(e["action"], e["outcome"]) for e in store.audit(10)][-1] == ("rollback", "applied")
    assert {r["version"] for r in store.lookup(keys)} == {a}


def test_cli_rollback_on_a_full_redis_reports_what_redis_holds(servers, tmp_path):
    server = servers(*noeviction(0))
    store = ServingStore(redis_url=server.url)
    a, b, _ = two_served_versions(store)
    assert store.set_routing(1, {"champion": b, "previous": a}, action="promote")[0]
    fill(server)
    env = {**os.environ, "REDIS_URL": server.url, "IRISDAG_HOME": str(tmp_path / "state"),
           "PYTHONPATH": os.environ.get("PYTHONPATH", os.getcwd())}
    env.pop("DAGSTER_HOME", None)
    proc = subprocess.run([sys.executable, "-m", "irisdag.cli", "rollback"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == f"rolled back: {b[:12]} -> {a[:12]} (epoch 3)"
    assert store.routing().champion == a


def test_a_retried_promotion_applies_once(servers, instance):
    server = servers()
    store = ServingStore(redis_url=server.url)
    a, b, _ = two_served_versions(store)
    did = promote_decision(store, a, b)
    first = run_job("promote", store, instance, decision_id=did)
    assert first.success and first.output_for_node("promote_challenger")["epoch"] == 2
    # The same decision again (a retried step or a re-executed run): applied once, reported as held.
    again = run_job("promote", store, instance, decision_id=did)
    assert again.success
    out = again.output_for_node("promote_challenger")
    assert out["already_applied"] and out["applied_epoch"] == 2 and out["champion"] == b and out["epoch"] == 2
    promotions = [e for e in store.audit(20) if e["action"] == "promote"]
    assert len(promotions) == 1 and promotions[0]["decision_id"] == did and promotions[0]["outcome"] == "applied"
    assert store.applied_operation(f"promote:{did}") == 2
    # At the store: the same operation with a stale epoch, and from 8 threads at once, changes nothing.
    ok, reason, epoch = store.set_routing(1, {"champion": b, "previous": a}, action="promote",
                                          operation=f"promote:{did}")
    assert ok and reason == "already applied at epoch 2" and epoch == 2


def test_concurrent_calls_of_one_operation_apply_once(servers):
    import threading

    server = servers()
    store = ServingStore(redis_url=server.url)
    a, b, _ = two_served_versions(store)
    outcomes = []

    def attempt():
        outcomes.append(ServingStore(redis_url=server.url).set_routing(
            1, {"champion": b, "previous": a}, action="promote", operation="promote:once",
            version_fields={b: {"role": "champion"}}))

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(ok for ok, _, _ in outcomes)
    assert sorted(reason for _, reason, _ in outcomes) == ["already applied at epoch 2"] * 7 + ["applied"]
    assert store.routing().epoch == 2
    assert len([e for e in store.audit(20) if e["action"] == "promote"]) == 1


def test_route_refuses_bad_version_metadata_and_changes_nothing(servers):
    server = servers()
    store = ServingStore(redis_url=server.url)
    a, b, _ = two_served_versions(store)
    ok, reason, epoch = store.set_routing(1, {"champion": b, "previous": a}, action="promote",
                                          version_fields={b: {"validated": "1"}})
    assert not ok and "role and lifecycle" in reason and epoch == 1
    assert store.routing().champion == a
