"""Faults on real parts: redis-server processes this test starts (killed with
SIGKILL, restarted from their AOF, filled to maxmemory, stopped under a run),
real XGBoost models, real in-process Dagster runs on a temporary instance.

Each test starts its own server on a free 127.0.0.1 port and stops only that
process, by its pid. Nothing here is mocked: every assertion is on what Redis,
the files and Dagster's event log hold afterwards.
"""
from __future__ import annotations

import hashlib
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import redis
from dagster import DagsterEventType, build_run_status_sensor_context, build_sensor_context, instance_for_test

from irisdag import serving
from irisdag.core.routing import bucket
from irisdag.defs.failures import record_backlog, run_failure_backlog, run_failure_recorder
from irisdag.defs.partitions import window_key
from irisdag.defs.resources import ArtifactStore
from irisdag.demo import DemoSummary, materialize_window
from irisdag.models.artifacts import DigestMismatch, load_model, save_model, sha256_file
from irisdag.models.training import iris_table, train_model
from irisdag.store.resource import (
    AUDIT_KEY, LABELS, PRED_PREFIX, ROUTING_KEY, ServingStore, StoreError, close_clients,
)
from irisdag_tests.support.redis_server import AOF, RedisServer, noeviction
from irisdag_tests.support.data import COURSE

BASE = ["raw_iris", "trusted_test_set", "champion_model"]
PASSWORD = "s3cret-Pw-9"


# ---- fixtures and helpers ------------------------------------------------------------

@pytest.fixture
def servers():
    """Start redis-servers for one test: ``servers(*args, password=...)``; all stopped (by pid) after it."""
    started: list[RedisServer] = []

    def make(*extra_args: str, password: str | None = None) -> RedisServer:
        server = RedisServer(extra_args=extra_args, password=password).start()
        started.append(server)
        return server

    yield make
    close_clients()  # cached connections to servers about to disappear
    for server in started:
        server.cleanup()


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as inst:
        yield inst


def run_resources(url: str, tmp_path: Path) -> dict:
    return {"serving_store": ServingStore(redis_url=url),
            "artifacts": ArtifactStore(base_dir=str(tmp_path / "artifacts"))}


def two_models(models_dir: Path):
    """Two different real XGBoost iris models, stored as JSON under their SHA-256."""
    X, y = iris_table()
    a = save_model(train_model(X, y, seed=7), models_dir)
    b = save_model(train_model(X, y, seed=7, params={"max_depth": 2, "num_boost_round": 8}), models_dir)
    assert a.version != b.version
    return a, b


def kept_batch(store: ServingStore, root: Path, partition: str, n: int, seed: int = 0) -> serving.PreparedBatch:
    """A kept batch of n distinct valid inputs (keyed by the iris-r1 scheme), registered as a kept partition."""
    rng = np.random.default_rng(seed)
    Q = np.unique(np.column_stack([rng.integers(0, 800, 3 * n), rng.integers(0, 500, 3 * n),
                                   rng.integers(0, 700, 3 * n), rng.integers(0, 300, 3 * n)]), axis=0)
    Q = Q[rng.permutation(len(Q))[:n]]
    batch = serving.prepare(Q / 10.0)
    assert len(batch.keys) == n
    serving.save_prepared(root / partition, batch)
    store.partition_index(partition)
    return batch


def validated(store: ServingStore, art, role: str, expected_keys: int) -> None:
    store.register_version(art.version, art.digest, role=role, expected_keys=expected_keys)
    store.set_validated(art.version, True, "checks passed")


def labels_of(root: Path, partition: str, version: str) -> np.ndarray:
    return np.load(serving.predictions_path(root / partition, version))


def answers(store: ServingStore, keys) -> list[dict]:
    return store.lookup([str(k) for k in keys])


def stored_fields(client: redis.Redis, version: str) -> int:
    """How many answers Redis holds for a version (every shard hash of it, counted)."""
    names = list(client.scan_iter(match=f"{PRED_PREFIX}{version}:*", count=1000))
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hlen(name)
    return int(sum(pipe.execute())) if names else 0


def redis_snapshot(client: redis.Redis) -> dict:
    """Every key and its exact serialized value (DUMP), for 'nothing changed' comparisons."""
    return {k: client.dump(k) for k in sorted(client.scan_iter(count=1000))}


def files_snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def run_events(instance, run_id: str, kind: DagsterEventType):
    return [r.event_log_entry.dagster_event for r in instance.get_records_for_run(run_id, of_type=kind).records]


def failure_sensor_on(instance, run_id: str, store: ServingStore):
    """Evaluate the run failure sensor on a real failed run, as the daemon would."""
    [event] = run_events(instance, run_id, DagsterEventType.RUN_FAILURE)
    context = build_run_status_sensor_context(
        sensor_name="run_failure_recorder", dagster_event=event, dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id), resources={"serving_store": store},
    ).for_run_failure()
    return run_failure_recorder(context)


def run_failure_entries(store: ServingStore) -> list[dict]:
    return [e for e in store.audit(500) if e.get("action") == "run_failure"]


def _pairs(flat) -> dict:
    """A RESP2 reply of alternating names and values as a dict."""
    return dict(zip(flat[::2], flat[1::2])) if isinstance(flat, list) else dict(flat)


def _chain(err: BaseException):
    while err is not None:
        yield err
        err = err.__cause__ or err.__context__


def _ok(summary: DemoSummary):
    assert not summary.failures, summary.failures


# ---- Redis killed in the middle of writing a version ----------------------------------

N_KILL = 100_000
SAMPLE = 5_000  # keys looked up after a fault (stored_fields counts all of them)


def test_sigkill_mid_write_never_serves_the_partial_version_and_retry_completes_it(servers, tmp_path):
    server = servers(*AOF)
    store = ServingStore(redis_url=server.url)
    root = tmp_path / "batches"
    a, b = two_models(tmp_path / "models")
    batch = kept_batch(store, root, "w1", N_KILL)
    validated(store, a, "champion", N_KILL)
    serving.bring_up_to_date(store, a.load(), a.version, root)
    ok, reason, epoch = store.set_routing(0, {"champion": a.version}, action="bootstrap")
    assert ok, reason
    validated(store, b, "challenger", N_KILL)
    sample = batch.keys[:: N_KILL // 200]

    failed: list[BaseException] = []

    def write_b():
        try:
            serving.bring_up_to_date(store, b.load(), b.version, root)
        except BaseException as err:  # noqa: BLE001 - the test inspects it
            failed.append(err)

    watcher = server.client(socket_timeout=5)
    baseline = watcher.dbsize()
    writer = threading.Thread(target=write_b, daemon=True)
    writer.start()
    refusals = 0
    # While B is being written: routing refuses it, and no lookup ever answers with it.
    while watcher.dbsize() < baseline + 64:
        assert writer.is_alive(), f"the write ended before the kill: {failed}"
        ok, reason, _ = store.set_routing(epoch, {"challenger": b.version, "shares": {b.version: 5000}},
                                          action="ramp")
        assert not ok and "not complete" in reason, reason
        refusals += 1
        assert {r["version"] for r in answers(store, sample)} == {a.version}
    server.kill()  # SIGKILL: mid-write, B's shard hashes are partly there
    writer.join(60)
    watcher.close()
    assert not writer.is_alive()
    assert failed and isinstance(failed[0], (redis.ConnectionError, StoreError, OSError)), failed  # loud
    assert refusals >= 1

    server.start()  # same port, same folder: Redis reloads its AOF
    client = server.client()
    info = store.version_info(b.version)
    assert info["complete"] == "0" and info["generation"] == "0"
    partial = stored_fields(client, b.version)
    assert 0 < partial < N_KILL, partial  # the crash really came mid-write
    assert not serving.predictions_path(root / "w1", b.version).exists()
    # After the restart too: routing refuses the incomplete version; every lookup is the champion's.
    ok, reason, epoch = store.set_routing(epoch, {"challenger": b.version, "shares": {b.version: 5000}},
                                          action="ramp")
    assert not ok and f"version {b.version} is not complete" in reason
    ok, reason, epoch = store.set_routing(epoch, {"champion": b.version, "previous": a.version}, action="promote")
    assert not ok and "not complete" in reason
    assert stored_fields(client, a.version) == N_KILL  # the champion's answers all survived the crash
    got = answers(store, batch.keys[:SAMPLE])
    assert {r["version"] for r in got} == {a.version}
    assert [r["label"] for r in got] == [LABELS[i] for i in labels_of(root, "w1", a.version)[:SAMPLE]]

    # The retried scoring completes it; then (and only then) routing accepts it.
    summary = serving.bring_up_to_date(store, b.load(), b.version, root)
    assert summary["scored_partitions"] == ["w1"]
    info = store.version_info(b.version)
    assert info["complete"] == "1" and info["generation"] == "1"
    assert stored_fields(client, b.version) == N_KILL
    ok, reason, epoch = store.set_routing(epoch, {"champion": b.version, "previous": a.version}, action="promote")
    assert ok, reason
    got = answers(store, batch.keys[-SAMPLE:])
    assert {r["version"] for r in got} == {b.version}
    assert [r["label"] for r in got] == [LABELS[i] for i in labels_of(root, "w1", b.version)[-SAMPLE:]]
    refused = [e for e in store.audit(10_000) if e["outcome"] == "refused"]
    assert len(refused) == refusals + 2 and all("not complete" in e["reason"] for e in refused)
    client.close()


def test_keys_count_is_right_after_a_retried_partial_write(servers, tmp_path):
    server = servers()
    store = ServingStore(redis_url=server.url)
    root = tmp_path / "batches"
    a, _ = two_models(tmp_path / "models")
    batch = kept_batch(store, root, "w1", 2000)
    validated(store, a, "champion", 2000)
    booster = a.load()
    # The dead attempt: the first 700 answers reached Redis, then the process died (no mark_generation).
    from irisdag.models.artifacts import predict_labels
    labels = predict_labels(booster, batch.Xq)
    store.write_predictions(a.version, batch.keys[:700].tolist(), labels[:700])
    serving.bring_up_to_date(store, booster, a.version, root)  # the retry
    assert stored_fields(server.client(), a.version) == 2000
    assert int(store.version_info(a.version)["keys"]) == 2000


# ---- Redis restarted with persistence ----------------------------------------------------

def test_restart_with_aof_keeps_routing_versions_functions_and_misses(servers, tmp_path):
    server = servers(*AOF)
    store = ServingStore(redis_url=server.url)
    root = tmp_path / "batches"
    a, b = two_models(tmp_path / "models")
    batch = kept_batch(store, root, "w1", 5000)
    for art, role in ((a, "champion"), (b, "challenger")):
        validated(store, art, role, 5000)
        serving.bring_up_to_date(store, art.load(), art.version, root)
    ok, reason, epoch = store.set_routing(0, {"champion": a.version}, action="bootstrap")
    assert ok, reason
    ok, reason, epoch = store.set_routing(
        epoch, {"challenger": b.version, "strategy": "canary", "shares": {b.version: 2500}, "holdout_bp": 500,
                "salt": "exp-restart"}, action="start")
    assert ok, reason
    candidates = (hashlib.sha256(f"never-scored-{i}".encode()).hexdigest() for i in range(100))
    unknown = [k for k in candidates if bucket("exp-restart", k) >= 500][:3]  # not held out: a miss
    queued = store.queue_misses([{"key": k, "features": [5.0, 2.9, 1.1, 0.4 + i]} for i, k in enumerate(unknown)])
    probe = list(batch.keys) + unknown

    def state():
        return {"routing": store.routing(), "versions": store.versions(), "misses": store.read_misses(),
                "audit": store.audit(100), "kept": store.kept_partitions(), "answers": answers(store, probe)}

    before = state()
    routes = Counter(r["route"] for r in before["answers"])
    assert routes["champion"] and routes["challenger"] and routes["holdout"] and routes["miss"] == 3
    assert [m["stream_id"] for m in before["misses"]] == queued

    def library_survived():
        # Asked of the server itself, before the store could load anything again.
        raw = server.client(decode_responses=True)
        try:
            libraries = [_pairs(lib) for lib in raw.function_list()]
            [lib] = [lib for lib in libraries if lib["library_name"] == "irisdag"]
            assert {_pairs(f)["name"] for f in lib["functions"]} == {
                "lookup", "lookup_digests", "route", "buckets", "reshard", "misses_read", "dead_letter", "mirror"}
            reply = raw.execute_command("FCALL_RO", "lookup", 1, ROUTING_KEY, str(batch.keys[0]))
            assert reply[0][0] in ("champion", "challenger", "holdout")
        finally:
            raw.close()

    server.restart()  # SIGTERM: a clean shutdown
    library_survived()
    assert state() == before  # lookups answer identically, routes and versions included

    server.kill()  # and a crash: with the AOF fsynced on every write, nothing is lost either
    server.start()
    library_survived()
    assert state() == before


# ---- model file corrupted or swapped on disk ------------------------------------------------

def _flip_one_digit(data: bytes) -> bytes:
    """The same JSON with one digit of one number changed: still a loadable XGBoost model."""
    mid = len(data) // 2
    i = next(j for j in range(mid, len(data)) if chr(data[j]).isdigit() and chr(data[j - 1]).isdigit())
    out = bytearray(data)
    out[i] = ord("7") if data[i] != ord("7") else ord("3")
    return bytes(out)


def test_corrupted_or_swapped_model_is_refused_by_digest_before_any_prediction(servers, instance, tmp_path):
    server = servers()
    res = run_resources(server.url, tmp_path)
    store, artifacts = res["serving_store"], res["artifacts"]
    summary = DemoSummary()
    materialize_window(BASE + ["incoming_batch"], window_key(0), instance, res, summary)
    _ok(summary)
    [info] = store.versions()
    version = info["version"]
    assert info["validated"] == "1"  # the blocking validity check passed on the intact file
    path = artifacts.models_dir() / f"{version}.json"
    good = path.read_bytes()
    window = Path(artifacts.batch_dir(window_key(0)))
    swapped = (COURSE / "model.json").read_bytes()  # another real model of the same shape
    before = redis_snapshot(server.client())

    for name, data in (("corrupted", _flip_one_digit(good)), ("swapped", swapped)):
        found = hashlib.sha256(data).hexdigest()
        assert found != version
        path.write_bytes(data)
        # The loader refuses it, naming both digests.
        with pytest.raises(DigestMismatch) as err:
            load_model(artifacts.models_dir(), version)
        assert f"expected {version}" in str(err.value) and f"found {found}" in str(err.value), name
        with pytest.raises(DigestMismatch):
            load_model(path)  # the expected digest taken from the file name
        # A real run of champion_predictions refuses it before any prediction.
        failed = DemoSummary()
        result = materialize_window(["champion_predictions"], window_key(0), instance, res, failed)
        assert not result.success
        [step_failure] = run_events(instance, result.run_id, DagsterEventType.STEP_FAILURE)
        assert step_failure.step_key == "champion_predictions"
        assert any(version in f and found in f for f in failed.failures), (name, failed.failures)
        # Nothing written: no answers in Redis, no answer file, routing unchanged.
        assert redis_snapshot(server.client()) == before, name
        assert not list(window.glob("pred-*"))
        assert store.routing().champion == ""
        # The operator sees it: the run failure sensor records the run with the digest error.
        failure_sensor_on(instance, result.run_id, store)
        entry = run_failure_entries(store)[-1]
        assert entry["run_id"] == result.run_id and entry["steps"] == "champion_predictions"
        assert entry["assets"] == "champion_predictions"
        assert "digest mismatch" in entry["error"] and f"expected {version}" in entry["error"]
        assert f"found {found}" in entry["error"]
        before = redis_snapshot(server.client())  # the audit entry is the only change

    # The intact file again: the same run serves the champion.
    path.write_bytes(good)
    fixed = DemoSummary()
    materialize_window(["champion_predictions"], window_key(0), instance, res, fixed)
    _ok(fixed)
    assert store.routing().champion == version
    assert store.version_info(version)["complete"] == "1"


# ---- Redis unreachable at the start of a run ------------------------------------------------------

SERVING = ["incoming_batch", "champion_predictions"]


def test_redis_unreachable_at_run_start_fails_naming_the_url_and_changes_nothing(servers, instance, tmp_path):
    server = servers(*AOF, password=PASSWORD)
    res = run_resources(server.url, tmp_path)
    store = res["serving_store"]
    artifacts_root = Path(res["artifacts"].root())
    summary = DemoSummary()
    materialize_window(BASE + SERVING, window_key(0), instance, res, summary)
    _ok(summary)
    champion = store.routing().champion
    redis_before = redis_snapshot(server.client())
    files_before = files_snapshot(artifacts_root)

    server.stop()
    failed = DemoSummary()
    result = materialize_window(BASE + SERVING, window_key(1), instance, res, failed)
    assert not result.success
    # It failed before any step: nothing ran, nothing was written.
    assert not run_events(instance, result.run_id, DagsterEventType.STEP_START)
    assert files_snapshot(artifacts_root) == files_before
    [failure] = run_events(instance, result.run_id, DagsterEventType.RUN_FAILURE)
    chain, err = [], failure.event_specific_data.error
    while err is not None:
        chain.append(err.message)
        err = err.cause or err.context
    text = "\n".join(chain)
    redacted = f"redis://:***@127.0.0.1:{server.port}/0"
    assert f"cannot reach Redis at {redacted}" in text, text
    logs = [e.message or "" for e in instance.all_logs(result.run_id)]
    assert PASSWORD not in text and not any(PASSWORD in m for m in logs)

    server.start()
    assert redis_snapshot(server.client()) == redis_before  # Redis unchanged too
    # The failed run is recorded once Redis is back, with the clear message and no password.
    failure_sensor_on(instance, result.run_id, store)
    [entry] = run_failure_entries(store)
    assert entry["run_id"] == result.run_id and entry["steps"] == ""
    assert f"cannot reach Redis at {redacted}" in entry["error"] and PASSWORD not in entry["error"]

    # The next run, server back, succeeds.
    again = DemoSummary()
    materialize_window(BASE + SERVING, window_key(1), instance, res, again)
    _ok(again)
    assert store.routing().champion == champion
    keys = serving.load_prepared(Path(res["artifacts"].batch_dir(window_key(1)))).keys
    assert len(keys) and {r["version"] for r in answers(store, keys)} == {champion}


def test_demo_summary_reports_a_run_that_failed_before_any_step(instance, tmp_path):
    from irisdag_tests.support.redis_server import free_port

    res = run_resources(f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0", tmp_path)
    summary = DemoSummary()
    result = materialize_window(["incoming_batch"], window_key(0), instance, res, summary)
    close_clients()
    assert not result.success
    assert summary.failures and "cannot reach Redis" in summary.failures[0]


# ---- Redis full (maxmemory, noeviction) ----------------------------------------------------------------

N_FULL = 100_000


def test_redis_full_fails_the_write_loudly_and_evicts_nothing(servers, tmp_path):
    server = servers(*noeviction(0))  # unbounded while the champion is written
    store = ServingStore(redis_url=server.url)
    root = tmp_path / "batches"
    a, b = two_models(tmp_path / "models")
    batch = kept_batch(store, root, "w1", N_FULL)
    validated(store, a, "champion", N_FULL)
    serving.bring_up_to_date(store, a.load(), a.version, root)
    ok, reason, epoch = store.set_routing(0, {"champion": a.version}, action="bootstrap")
    assert ok, reason
    validated(store, b, "challenger", N_FULL)
    client = server.client()
    champion_keys = set(client.scan_iter(match=f"{PRED_PREFIX}{a.version}:*", count=1000))
    # Room for about a tenth of B's answers.
    server.config_set("maxmemory", int(server.info("memory")["used_memory"]) + (512 << 10))

    with pytest.raises(StoreError) as err:
        serving.bring_up_to_date(store, b.load(), b.version, root)
    message = str(err.value)
    assert "maxmemory" in message and server.url in message and b.version in message
    assert isinstance(err.value.__cause__, redis.ResponseError)

    stats = server.info("stats")
    assert int(stats["evicted_keys"]) == 0
    assert set(client.scan_iter(match=f"{PRED_PREFIX}{a.version}:*", count=1000)) == champion_keys
    info = store.version_info(b.version)
    assert info["complete"] == "0" and info["generation"] == "0"
    # Routing B is refused: by the routing function (not complete), or, while Redis is still over
    # maxmemory, by Redis itself (`route` writes, and is not flagged allow-oom). Routing is unchanged.
    try:
        ok, reason, _ = store.set_routing(epoch, {"challenger": b.version, "shares": {b.version: 5000}},
                                          action="ramp")
        assert not ok and "not complete" in reason
    except redis.exceptions.OutOfMemoryError:
        pass
    assert store.routing().champion == a.version and not store.routing().shares
    # While the server is still full: all of A's answers are there, and the lookup (a no-writes
    # function) still answers, from A only.
    assert stored_fields(client, a.version) == N_FULL
    got = answers(store, batch.keys[::10])
    assert {r["version"] for r in got} == {a.version}
    assert [r["label"] for r in got] == [LABELS[i] for i in labels_of(root, "w1", a.version)[::10]]

    # Room again: routing still refuses the partial B; the retried scoring completes it.
    server.config_set("maxmemory", 0)
    epoch = store.routing().epoch
    ok, reason, epoch = store.set_routing(epoch, {"challenger": b.version, "shares": {b.version: 5000}},
                                          action="ramp")
    assert not ok and "not complete" in reason
    serving.bring_up_to_date(store, b.load(), b.version, root)
    assert store.version_info(b.version)["complete"] == "1"
    ok, reason, _ = store.set_routing(epoch, {"challenger": b.version, "shares": {b.version: 5000}}, action="ramp")
    assert ok, reason
    client.close()


# ---- run failures are recorded where an operator sees them --------------------------------------------

def test_run_failure_sensor_records_every_failed_run_even_when_redis_was_down(servers, instance, tmp_path):
    server = servers(*AOF)
    res = run_resources(server.url, tmp_path)
    store = res["serving_store"]
    # A real failed run: champion_predictions with no champion model.
    first = materialize_window(["champion_predictions"], window_key(0), instance, res, DemoSummary())
    assert not first.success
    assert failure_sensor_on(instance, first.run_id, store) is None
    [entry] = run_failure_entries(store)
    assert entry["run_id"] == first.run_id and entry["outcome"] == "failed"
    assert entry["job"] == instance.get_run_by_id(first.run_id).job_name
    assert entry["partition"] == window_key(0)
    assert entry["steps"] == "champion_predictions" and entry["assets"] == "champion_predictions"
    assert "no champion model" in entry["error"] and "RefusedVersion" in entry["error"]
    # Seen again (a sensor may be): recorded once.
    failure_sensor_on(instance, first.run_id, store)
    assert len(run_failure_entries(store)) == 1

    # A failure while Redis is down cannot be written: the sensor's tick fails loudly ...
    second = materialize_window(["champion_predictions"], window_key(1), instance, res, DemoSummary())
    assert not second.success
    server.stop()
    with pytest.raises(Exception) as err:
        failure_sensor_on(instance, second.run_id, store)
    assert any("cannot reach Redis" in str(e) for e in _chain(err.value)), err.value
    server.start()
    # ... and the next failed run's evaluation also records the one that was missed,
    third = materialize_window(["champion_predictions"], window_key(2), instance, res, DemoSummary())
    failure_sensor_on(instance, third.run_id, store)
    assert [e["run_id"] for e in run_failure_entries(store)] == [first.run_id, third.run_id, second.run_id]
    assert record_backlog(instance, store) == []  # nothing left behind
    assert server.client().xlen(AUDIT_KEY) == 3
    # as does the periodic backlog sensor when no new failure comes along.
    fourth = materialize_window(["champion_predictions"], window_key(3), instance, res, DemoSummary())
    assert not fourth.success
    skip = run_failure_backlog(build_sensor_context(instance=instance, resources={"serving_store": store}))
    assert "recorded 1 failed run" in skip.skip_message
    assert run_failure_entries(store)[-1]["run_id"] == fourth.run_id


# ---- a batch with bad rows, through a real run ------------------------------------------------------------

GOOD_ROWS = ["5.0,2.9,1.1,0.4", "5.3,3.2,1.6,0.2", "6.5,2.8,4.7,1.8", "6.7,3.0,5.2,2.3", "-0.04,0.25,6.45,-0.1",
             "5.0,2.9,1.1,0.4", "4.9,3.1,1.5,0.1", "7.7,2.6,6.9,2.3"]
BAD_ROWS = {  # line -> what its reason must name: the value (or the field count) and the problem
    "nan,3.0,1.4,0.2": ("'nan'", "NaN"),
    "5.1,abc,1.4,0.2": ("'abc'", "not a number"),
    "4.9,3.0,1.4": ("got 3", "expected 4"),
    "6.3,2.5,1e7,1.9": ("'1e7'", "out of bounds"),
    "5.0,3.6,1.4,0.2,9": ("got 5", "expected 4"),
    "5.0,3.6,inf,0.2": ("'inf'", "infinite"),
    ",3.6,1.4,0.2": ("''", "not a number"),
}


def test_batch_with_bad_rows_quarantined_counted_and_good_rows_scored(servers, instance, tmp_path):
    from irisdag.core import keys as keyscheme

    server = servers()
    res = run_resources(server.url, tmp_path)
    store = res["serving_store"]
    lines = [GOOD_ROWS[0], *list(BAD_ROWS)[:3], "", *GOOD_ROWS[1:5], *list(BAD_ROWS)[3:], *GOOD_ROWS[5:]]
    source = tmp_path / "batch.csv"
    source.write_text("\n".join(lines) + "\n")
    config = {"ops": {"incoming_batch": {"config": {"source": str(source)}}}}
    summary = DemoSummary()
    result = materialize_window(BASE + SERVING, window_key(0), instance, res, summary, config)
    _ok(summary)  # bad rows do not fail the run: they are quarantined

    [mat] = result.asset_materializations_for_node("incoming_batch")
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["rows_read"] == len(GOOD_ROWS) + len(BAD_ROWS) == len(lines) - 1  # the blank line is not a row
    assert meta["rows_quarantined"] == len(BAD_ROWS)
    assert meta["rows_good"] == len(GOOD_ROWS)
    assert meta["rows_good"] + meta["rows_quarantined"] == meta["rows_read"]
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "incoming_batch_quality"]
    assert not check.passed and check.severity.value == "WARN"
    assert check.metadata["rows_quarantined"].value == len(BAD_ROWS)

    window = Path(res["artifacts"].batch_dir(window_key(0)))
    quarantine = serving.read_json(window / "quarantine.json")["sample"]
    assert {q["row"] for q in quarantine} == {lines.index(text) + 1 for text in BAD_ROWS}
    for q in quarantine:
        text = lines[q["row"] - 1]
        named, words = BAD_ROWS[text]
        assert named in q["reason"] and words in q["reason"] and q["reason"].startswith(f"row {q['row']}"), q

    # Every good row is scored and served by the champion; the quarantined ones were never keyed.
    champion = store.routing().champion
    good_keys = [keyscheme.input_key(keyscheme.parse_features(row.split(","))) for row in GOOD_ROWS]
    got = answers(store, good_keys)
    assert {r["version"] for r in got} == {champion} and all(r["label"] in LABELS for r in got)
    row_labels = serving.load_row_predictions(window, champion)
    assert len(row_labels) == len(GOOD_ROWS)
    assert [r["label"] for r in got] == [LABELS[i] for i in row_labels]
    assert int(store.version_info(champion)["keys"]) == len(set(good_keys)) == len(GOOD_ROWS) - 1
