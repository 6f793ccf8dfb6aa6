"""The production stack without Docker (issue item 5): Postgres, moto's S3
server, Redis 7 with the ACL users, the gRPC code server, the webserver and the
daemon, started directly on loopback with the deploy/ configuration, driven
through the webserver's GraphQL API.

The promotion is done by the daemon's sensor tick, not by the test: the test
launches the graph (three windows where the champion serves, then the whole
graph for a drifting fourth window), and waits until a ``promote`` run requested
by ``promotion_sensor`` has changed the routing. Then it checks Redis (routing,
audit stream, the consumer credential refused writes), Postgres (Dagster's
runs) and the object store (the artifacts with their SHA-256).
"""
from __future__ import annotations

import hashlib
import time

import psycopg2
import pytest
import redis

from irisdag.defs.store_checks import CHECK_NAMES
from irisdag.store.resource import ROUTING_KEY, ServingStore, close_clients
from irisdag_tests.support.stack import BUCKET, PREFIX, module_stack

VALIDITY = {"champion_model_validity", "challenger_model_validity"}


@pytest.fixture(scope="module")
def loopback_stack(request):
    yield from module_stack(request)


def test_daemon_sensor_promotes_on_the_production_stack(loopback_stack):
    stack = loopback_stack
    t0 = time.monotonic()
    life = stack.run_lifecycle()
    elapsed = time.monotonic() - t0

    # Every launched run succeeded, with the blocking validity checks and the serving-store checks passing.
    assert life.sensor_status == "RUNNING"
    assert {label: status for label, (_, status) in life.runs.items()} == {
        "warmup-0": "SUCCESS", "warmup-1": "SUCCESS", "warmup-2": "SUCCESS", "graph": "SUCCESS",
        "champion-after-promotion": "SUCCESS", "validate_serving_store": "SUCCESS"}, life.runs
    graph_checks = life.checks["graph"]
    assert VALIDITY | set(CHECK_NAMES) <= set(graph_checks) and all(graph_checks.values()), graph_checks
    assert life.checks["validate_serving_store"] == {name: True for name in CHECK_NAMES}
    assert all(life.checks["champion-after-promotion"].values())
    assert set(life.checks["champion-after-promotion"]) == {"champion_model_validity", "misses_dead_letters",
                                                            *CHECK_NAMES}

    # The comparison decided to promote ...
    decision = life.decision
    assert decision["decision"] == "promote", decision
    assert decision["champion"] == life.champion_before and decision["challenger"] != life.champion_before
    assert decision["c"] > decision["b"] and decision["p_value"] <= decision["alpha"]

    # ... and a tick of the daemon's promotion sensor requested the promote run, keyed by the decision.
    promote = life.promote_run
    assert promote and promote["status"] == "SUCCESS", (promote, stack.daemon.log_tail(40))
    tags = {t["key"]: t["value"] for t in promote["tags"]}
    assert tags["dagster/sensor_name"] == "promotion_sensor"
    assert tags["dagster/run_key"] == decision["decision_id"]
    ticks_with_run = [t for t in life.sensor_ticks if promote["runId"] in (t["runIds"] or [])]
    assert ticks_with_run and ticks_with_run[0]["status"] == "SUCCESS"

    # Redis: routing changed, the audit stream says who and why.
    pipeline = ServingStore(redis_url=stack.redis.url("scoring"))
    routing = pipeline.routing()
    assert routing.champion == decision["challenger"] and routing.previous == decision["champion"]
    promotions = [e for e in pipeline.audit(100) if e["action"] == "promote"]
    assert promotions and promotions[-1]["outcome"] == "applied"
    assert promotions[-1]["decision_id"] == decision["decision_id"] and promotions[-1]["run_id"] == promote["runId"]

    # The consumer credential looks up the new champion's answers but cannot write anything.
    consumer = ServingStore(redis_url=stack.redis.url("consumer"))
    version = pipeline.versions()
    key = hashlib.sha256(b"not a key").hexdigest()
    [miss] = consumer.lookup([key])
    assert miss["route"] == "miss" and miss["label"] is None
    assert consumer.queue_misses([{"key": key, "features": [5.0, 2.9, 1.1, 0.4]}])
    for attempt in (lambda: consumer.set_routing(routing.epoch, {"champion": routing.previous}, action="rollback"),
                    lambda: consumer.client().hset(ROUTING_KEY, "champion", routing.previous),
                    lambda: consumer.client().xadd("irisdag:audit", {"action": "rollback"}),
                    lambda: consumer.client().hset(f"irisdag:version:{routing.champion}", "validated", "0")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    assert pipeline.routing() == routing and version
    close_clients()

    # Postgres holds Dagster's runs: the GraphQL launches, the sensor's promote, the start-up store check.
    with psycopg2.connect(stack.postgres.dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT run_id, pipeline_name, status FROM runs")
        runs = {run_id: (job, status) for run_id, job, status in cur.fetchall()}
        cur.execute("SELECT run_id, value FROM run_tags WHERE key = 'dagster/sensor_name'")
        by_sensor = dict(cur.fetchall())
    for run_id, _ in life.runs.values():
        assert runs[run_id][1] == "SUCCESS"
    assert runs[promote["runId"]] == ("promote", "SUCCESS")
    assert by_sensor[promote["runId"]] == "promotion_sensor"
    startup = [r for r in life.startup_checks if r["status"] == "SUCCESS"]
    assert startup and by_sensor[startup[0]["runId"]] == "serving_store_startup_sensor"

    # The object store holds both models, each with the SHA-256 it was recorded with.
    s3 = stack.moto.client()
    for v in (decision["champion"], decision["challenger"]):
        head = s3.head_object(Bucket=BUCKET, Key=f"{PREFIX}/models/{v}.json")
        assert head["Metadata"]["sha256"] == v == pipeline.version_info(v)["digest"]
    close_clients()

    # The scoring schedule is on, with its next tick.
    assert life.schedule_status == "RUNNING"
    assert life.schedule["scheduleState"]["status"] == "RUNNING"
    assert life.schedule["futureTicks"]["results"]
    print(f"\nlifecycle on the stack: {elapsed:.1f}s {life.durations}")
