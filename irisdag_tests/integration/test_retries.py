"""Only transient errors are retried; deterministic ones fail once with their cause (real Dagster runs).

And a scorer's refusal names the file's row (1-based) and the value's position,
numbered as everywhere else: ``row 4, position 3 (petal_length)`` (positions of the four values count from 1).
"""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import redis
from dagster import DagsterEventType, Failure, materialize

from irisdag import serving
from irisdag.core.keys import InputError
from irisdag.defs.assets.models import champion_model
from irisdag.defs.retries import is_transient, retry_transient_only
from irisdag.models.artifacts import import_model
from irisdag.store.resource import ServingStore, StoreUnavailable
from irisdag_tests.support.data import COURSE
from irisdag_tests.support.flaky_proxy import FlakyProxy


def _events(instance, run_id, kind):
    return [r.event_log_entry for r in instance.get_records_for_run(run_id, of_type=kind).records]


def _champion_config(path) -> dict:
    return {"ops": {"champion_model": {"config": {"model_path": str(path)}}}}


def test_classification_of_errors():
    assert is_transient(redis.ConnectionError("Connection refused"))
    assert is_transient(redis.TimeoutError("Timeout reading from socket"))
    assert is_transient(redis.BusyLoadingError("LOADING"))
    assert is_transient(ConnectionResetError())
    try:
        try:
            raise redis.ConnectionError("reset")
        except redis.ConnectionError as inner:
            raise StoreUnavailable("cannot reach Redis at redis://x") from inner
    except StoreUnavailable as wrapped:
        assert is_transient(wrapped)
    try:
        try:
            raise redis.AuthenticationError("WRONGPASS")
        except redis.AuthenticationError as inner:
            raise StoreUnavailable("Redis refused the credentials") from inner
    except StoreUnavailable as wrapped:
        assert not is_transient(wrapped), "no retry fixes bad credentials"
    for err in (ValueError("row 3: 'x' is not a number"), InputError("bad"), KeyError("k"),
                redis.ResponseError("OOM command not allowed"), FileNotFoundError("gone")):
        assert not is_transient(err), err


def test_wrapper_turns_deterministic_errors_into_final_failures_and_keeps_transient_ones():
    @retry_transient_only
    def parse():
        raise ValueError("row 3, position 1 (sepal_width): '5_0' is not a number")

    with pytest.raises(Failure) as info:
        parse()
    assert info.value.allow_retries is False
    assert info.value.description == "row 3, position 1 (sepal_width): '5_0' is not a number"
    assert isinstance(info.value.__cause__, ValueError)

    @retry_transient_only
    def blip():
        raise redis.ConnectionError("Connection refused")

    with pytest.raises(redis.ConnectionError):
        blip()

    @retry_transient_only
    def steps():
        yield 1
        raise ValueError("late")

    gen = steps()
    assert next(gen) == 1
    with pytest.raises(Failure):
        next(gen)


def test_a_deterministic_error_runs_once_and_fails_with_its_cause(dagster_env, tmp_path):
    instance, resources = dagster_env
    doc = json.loads((COURSE / "model.json").read_bytes())
    doc["learner"]["gradient_booster"]["model"]["trees"][4]["left_children"][0] = 999
    crafted = tmp_path / "crafted-model.json"
    crafted.write_text(json.dumps(doc))

    result = materialize([champion_model], resources=resources, instance=instance,
                         run_config=_champion_config(crafted), raise_on_error=False)
    assert not result.success
    run_id = result.run_id
    assert _events(instance, run_id, DagsterEventType.STEP_UP_FOR_RETRY) == []
    assert len(_events(instance, run_id, DagsterEventType.STEP_START)) == 1
    failures = _events(instance, run_id, DagsterEventType.STEP_FAILURE)
    assert len(failures) == 1
    error = failures[0].dagster_event.step_failure_data.error
    text = error.message + str(error.cause.message if error.cause else "")
    assert "crafted-model.json" in text and "tree 4: left_children[0] is 999" in text
    assert "Exceeded max_retries" not in text


def test_a_transient_redis_error_is_retried_and_the_run_succeeds(dagster_env, redis_url):
    instance, resources = dagster_env
    port = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs["port"]
    proxy = FlakyProxy(port)
    resources = dict(resources, serving_store=ServingStore(redis_url=proxy.url))
    stop = threading.Event()

    def heal_once_a_retry_is_requested():
        # The network comes back after the step has failed once on it.
        while not stop.is_set():
            for run in instance.get_runs(limit=1):
                if _events(instance, run.run_id, DagsterEventType.STEP_UP_FOR_RETRY):
                    proxy.heal()
                    return
            time.sleep(0.05)

    watcher = threading.Thread(target=heal_once_a_retry_is_requested, daemon=True)
    watcher.start()
    proxy.break_after_pong()  # the run's start-up ping passes, then the connection drops
    try:
        result = materialize([champion_model], resources=resources, instance=instance,
                             run_config=_champion_config(COURSE / "model.json"), raise_on_error=False)
    finally:
        stop.set()
        watcher.join(timeout=5)
        proxy.close()
    assert proxy.dropped >= 1
    retries = _events(instance, result.run_id, DagsterEventType.STEP_UP_FOR_RETRY)
    assert len(retries) >= 1, "the dropped connection was retried"
    assert result.success, "the retry after the network came back succeeded"
    mat = result.asset_materializations_for_node("champion_model")[0]
    assert mat.metadata["source"].value.startswith("imported from")


def test_scoring_refusal_names_the_files_row_and_position(tmp_path, redis_url):
    """The scorer's own bound check (a kept batch written before validation tightened) speaks in file rows."""
    csv = tmp_path / "batch.csv"
    # line 2 is blank, line 3 repeats line 1: the distinct key of line 4 is key index 1, not row 4.
    csv.write_text("5.0,2.9,1.1,0.4\n\n5.0,2.9,1.1,0.4\n6.5,2.8,4.7,1.8\n7.0,3.2,4.7,1.4\n")
    d = tmp_path / "batches" / "w1"
    d.mkdir(parents=True)
    serving.prepare_source(csv, d)
    batch = serving.load_prepared(d)
    q = np.load(d / "q.npy")
    k = int(np.flatnonzero((q == [65, 28, 47, 18]).all(axis=1))[0])
    q[k, 2] = 10_000_000  # petal length 1e6: refused by the scorer
    np.save(d / "q.npy", q)
    assert batch.n_keys == 3

    art = import_model(COURSE / "model.json", tmp_path / "models")
    store = ServingStore(redis_url=redis_url)
    store.register_version(art.version, art.digest, role="champion")
    store.set_validated(art.version, True, "test")
    with pytest.raises(InputError) as info:
        serving.score_batch(store, art.load(), art.version, d)
    message = str(info.value)
    assert message.startswith("row 4, position 3 (petal_length): "), message
    assert "1000000.0" in message and "(batch w1)" in message
    assert info.value.row == 4 and info.value.position == 2
