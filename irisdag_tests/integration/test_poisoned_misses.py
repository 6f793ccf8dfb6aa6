"""Poisoned misses (issue 9 item 3) against a real Redis 7, real models and real
Dagster runs: an entry that is oversized, not JSON or invalid is dead-lettered
and acknowledged, counted by the `misses_dead_letters` check; the sensor and the
scoring run never raise on it; good misses beside it are filled."""
from __future__ import annotations

import json

import pytest
from dagster import RunRequest, build_sensor_context

from irisdag.core import keys as keyscheme
from irisdag.core import misses as misscore
from irisdag.defs.misses import miss_sensor, misses_dead_letters
from irisdag.defs.partitions import window_key
from irisdag.demo import DemoSummary, evaluate_sensors, materialize_window
from irisdag.store.resource import DEAD_MISSES_KEY, MISS_ENTRY_MAX_BYTES, MISSES_KEY

SERVING = ["raw_iris", "trusted_test_set", "champion_model", "incoming_batch", "feedback", "champion_predictions"]
GOOD = [(7.1, 3.3, 6.2, 2.4), (4.4, 2.0, 1.1, 0.2)]

# (kind expected, fields a hostile consumer XADDs)
POISON = [
    (misscore.NOT_JSON, {"key": "a" * 64, "features": "not json at all"}),
    (misscore.NOT_JSON, {"key": "a" * 64, "features": "[1, 2, 3, NaN]"}),
    (misscore.INVALID_FEATURES, {"key": "a" * 64, "features": "[1, 2, 3]"}),
    (misscore.INVALID_FEATURES, {"key": "a" * 64, "features": "[1, 2, 3, 1e400]"}),
    (misscore.INVALID_FEATURES, {"key": "a" * 64, "features": '{"a": 1}'}),
    (misscore.INVALID_FEATURES, {"key": "a" * 64, "features": "[true, 2, 3, 4]"}),
    (misscore.INVALID_FEATURES, {"key": "a" * 64, "features": "[1, 2, 3, 5000000]"}),
    (misscore.NOT_JSON, {"key": "a" * 64, "features": "[" * 400 + "]" * 400}),
    (misscore.NO_KEY, {"features": "[1, 2, 3, 4]"}),
    (misscore.BAD_KEY, {"key": "../../etc", "features": "[1, 2, 3, 4]"}),
    (misscore.NO_FEATURES, {"key": "b" * 64}),
    (misscore.BAD_ID, {"key": "id:has space", "id": "has space"}),
    (misscore.OVERSIZED, {"key": "c" * 64, "features": "[" + "1," * 300_000 + "1]"}),
    (misscore.OVERSIZED, {"key": "d" * 64, **{f"f{i}": "x" * 200 for i in range(20)}}),
]


@pytest.fixture
def served(dagster_env):
    """A champion served on window 0 (real model, real runs)."""
    instance, resources = dagster_env
    summary = DemoSummary()
    materialize_window(SERVING, window_key(0), instance, resources, summary)
    assert not summary.failures, summary.failures
    return instance, resources


def queue_raw(client, fields_list) -> list[str]:
    return [client.xadd(MISSES_KEY, fields).decode() for fields in fields_list]


def test_poisoned_entries_are_dead_lettered_and_good_misses_filled(served):
    instance, resources = served
    store = resources["serving_store"]
    good_keys = [keyscheme.input_key(v) for v in GOOD]
    assert {r["route"] for r in store.lookup(good_keys)} == {"miss"}
    client = store.client()
    # Good misses as the CLI queues them, with the poison before, between and after them.
    queue_raw(client, [f for _, f in POISON[:7]])
    store.queue_misses([{"key": k, "features": list(v)} for k, v in zip(good_keys, GOOD)])
    queue_raw(client, [f for _, f in POISON[7:]])
    store.queue_misses([{"key": "id:user-1", "id": "user-1"}])
    # The reader never receives an oversized entry; the sensor reads no entry at all.
    page = store.misses_page(count=1000)[2]
    assert [e["fields"] is None for e in page].count(True) == 2
    assert all(e["size"] > MISS_ENTRY_MAX_BYTES for e in page if e["fields"] is None)
    request = miss_sensor(build_sensor_context(instance=instance, resources=resources))
    assert isinstance(request, RunRequest) and request.tags["irisdag/pending_misses"] == str(len(POISON) + 3)

    # As `irisdag demo` does: evaluate the sensors, run what they request.
    summary = DemoSummary()
    evaluate_sensors(instance, resources, summary)
    assert not summary.failures, summary.failures
    assert [(job, outcome) for job, _, outcome in summary.runs] == [("score_misses", "success")]

    assert store.pending_misses() == 0  # everything acknowledged
    answers = store.lookup(good_keys)
    assert {r["route"] for r in answers} == {"champion"} and all(r["label"] for r in answers)
    counts, kept, newest = store.dead_letters(count=100)
    expected: dict[str, int] = {}
    for kind, _ in POISON:
        expected[kind] = expected.get(kind, 0) + 1
    assert counts == expected and kept == len(POISON)
    # Dead letters are short records: the oversized payloads did not move.
    assert all(len(json.dumps(r)) < 1200 for r in newest)
    assert int(client.memory_usage(DEAD_MISSES_KEY)) < 64 << 10
    assert {r["kind"] for r in newest if r["kind"] == misscore.OVERSIZED} and \
        all("over the reader's limit" in r["reason"] for r in newest if r["kind"] == misscore.OVERSIZED)

    # The check counts them (WARN), by kind.
    result = misses_dead_letters(serving_store=store)
    assert not result.passed and result.severity.value == "WARN"
    assert result.metadata["dead_lettered"].value == len(POISON)
    assert f"{len(POISON)} queued miss(es) were refused" in result.description

    # A second evaluation: nothing queued, nothing requested.
    summary = DemoSummary()
    evaluate_sensors(instance, resources, summary)
    assert summary.runs == []


def test_only_poison_never_breaks_the_sensor_or_the_run(served):
    instance, resources = served
    store = resources["serving_store"]
    queue_raw(store.client(), [f for _, f in POISON])
    assert misses_dead_letters(serving_store=store).passed  # nothing refused yet
    summary = DemoSummary()
    evaluate_sensors(instance, resources, summary)
    assert not summary.failures, summary.failures
    assert store.pending_misses() == 0
    assert sum(store.dead_letters()[0].values()) == len(POISON)


def test_dead_lettering_is_idempotent_and_works_when_redis_is_full(redis_url, redis_server):
    from irisdag.store.resource import ServingStore

    store = ServingStore(redis_url=redis_url)
    ids = queue_raw(store.client(), [{"key": "x", "features": "nope"}] * 3)
    redis_server.config_set("maxmemory", int(redis_server.info("memory")["used_memory"]) // 2)
    try:
        moved = store.dead_letter_misses([(i, "bad_key", "test", "x") for i in ids])
        again = store.dead_letter_misses([(i, "bad_key", "test", "x") for i in ids])
    finally:
        redis_server.config_set("maxmemory", 0)
    assert (moved, again) == (3, 0)
    assert store.pending_misses() == 0 and store.dead_letters()[0] == {"bad_key": 3}
