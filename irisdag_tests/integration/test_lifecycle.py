"""The whole lifecycle on real parts: a Redis server the test session started,
real XGBoost models, real in-process Dagster runs on a real (temporary) instance,
the promotion sensor evaluated with build_sensor_context."""
from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest
from dagster import RunRequest, build_sensor_context

from irisdag import serving
from irisdag.core import keys as keyscheme
from irisdag.defs.partitions import window_key
from irisdag.defs.resources import ArtifactStore
from irisdag.defs.sensors import promotion_sensor
from irisdag.demo import DemoSummary, evaluate_sensors, materialize_window
from irisdag.definitions import build_defs
from irisdag.store.resource import ServingStore
from irisdag_tests.support.data import COURSE


# A drifting stream where the iris-trained champion clearly loses accuracy and a
# challenger retrained on the feedback regains it.
DRIFTING = {"ops": {"incoming_batch": {"config": {"rows": 1500, "drift": 1.0, "drift_windows": 1}}}}


@pytest.fixture
def lifecycle(dagster_env):
    return dagster_env


def _ok(summary: DemoSummary):
    assert not summary.failures, summary.failures


def test_whole_graph_promotion_and_rollback(lifecycle):
    instance, resources = lifecycle
    store = resources["serving_store"]
    summary = DemoSummary()
    for i in range(3):  # the champion serves three windows; their feedback becomes training data
        materialize_window(["raw_iris", "trusted_test_set", "champion_model", "incoming_batch", "feedback",
                            "champion_predictions"], window_key(i), instance, resources, summary, DRIFTING)
    _ok(summary)
    champion = store.routing().champion
    assert champion and store.version_info(champion)["complete"] == "1"

    materialize_window(None, window_key(3), instance, resources, summary, DRIFTING)
    _ok(summary)
    decision = store.latest_decision()
    challenger = decision["challenger"]
    assert challenger and challenger != champion
    assert decision["decision"] == "promote", decision
    assert decision["c"] > decision["b"] and decision["p_value"] <= decision["alpha"]

    # The sensor, evaluated on the real instance, requests the promote job with the decision as run key.
    request = promotion_sensor(build_sensor_context(instance=instance, resources=resources))
    assert isinstance(request, RunRequest)
    assert request.run_key == decision["decision_id"] and request.job_name == "promote"

    evaluate_sensors(instance, resources, summary)
    _ok(summary)
    assert summary.runs == [("promote", decision["decision_id"], "success")]
    routing = store.routing()
    assert routing.champion == challenger and routing.previous == champion

    # A lookup now answers with the challenger's label and version.
    d = Path(resources["artifacts"].batch_dir(window_key(3)))
    keys = serving.load_prepared(d).keys
    challenger_labels = np.load(d / f"pred-{challenger}.npy")
    champion_labels = np.load(d / f"pred-{champion}.npy")
    differs = np.flatnonzero(challenger_labels != champion_labels)
    assert len(differs) > 0
    key = str(keys[differs[0]])
    [hit] = store.lookup([key])
    assert hit["version"] == challenger and hit["route"] == "champion"
    assert hit["label"] == ("setosa", "versicolor", "virginica")[challenger_labels[differs[0]]]

    # The decision acts once: evaluated again, the sensor requests nothing more.
    again = promotion_sensor(build_sensor_context(instance=instance, resources=resources))
    assert not isinstance(again, RunRequest)
    evaluate_sensors(instance, resources, summary)
    assert len(summary.runs) == 1

    # Rollback restores the champion's answers, instantly and completely.
    defs = build_defs(resources)
    assert defs.get_job_def("rollback").execute_in_process(instance=instance).success
    [back] = store.lookup([key])
    assert back["version"] == champion
    assert back["label"] == ("setosa", "versicolor", "virginica")[champion_labels[differs[0]]]
    actions = [(e["action"], e["outcome"]) for e in store.audit(20)]
    assert ("promote", "applied") in actions and ("rollback", "applied") in actions


def test_course_model_and_course_batch(lifecycle):
    instance, resources = lifecycle
    store = resources["serving_store"]
    config = {"ops": {
        "champion_model": {"config": {"model_path": str(COURSE / "model.json")}},
        "incoming_batch": {"config": {"source": str(COURSE / "iris.csv")}},
        "feedback": {"config": {"source": str(COURSE / "iris_y.csv")}},
    }}
    summary = DemoSummary()
    materialize_window(None, window_key(0), instance, resources, summary, config)
    _ok(summary)
    champion = store.routing().champion
    import hashlib
    assert champion == hashlib.sha256((COURSE / "model.json").read_bytes()).hexdigest()
    d = Path(resources["artifacts"].batch_dir(window_key(0)))
    assert len(serving.load_prepared(d)) == 1050          # the first row is data, not a header
    assert serving.load_prepared(d).n_keys == 1033             # duplicates stored once
    assert int(store.version_info(champion)["keys"]) == 1033
    [first] = store.lookup([keyscheme.input_key([5.0, 2.9, 1.1, 0.4])])
    assert first == {"key": "d8c77d145fb8bc961f190b590e08a4056a61ece47304cae94d1f6d2c9e69d7da",
                     "label": "setosa", "version": champion, "route": "champion"}
    decision = store.latest_decision()
    # Every row is judged, excluded (trained on) or a repeat of an input judged already: each input once.
    assert decision["n"] + decision["n_excluded"] + decision["n_repeated"] == 1050
    assert decision["n"] <= 1033 and decision["n_repeated"] >= 1050 - 1033 - decision["n_excluded"]


def test_failing_blocking_check_stops_scoring_now_and_later(lifecycle, tmp_path):
    instance, resources = lifecycle
    store = resources["serving_store"]
    # A real XGBoost model that only ever answers setosa: valid JSON, wrong model.
    import xgboost as xgb
    X = np.random.default_rng(0).normal(size=(60, 4))
    booster = xgb.train({"objective": "multi:softprob", "num_class": 3}, xgb.DMatrix(X, label=np.zeros(60)), 2)
    bad = tmp_path / "bad.json"
    booster.save_model(str(bad))
    config = {"ops": {"champion_model": {"config": {"model_path": str(bad)}}}}
    summary = DemoSummary()
    result = materialize_window(["raw_iris", "trusted_test_set", "champion_model", "incoming_batch",
                                 "champion_predictions"], window_key(0), instance, resources, summary, config)
    assert any("champion_model_validity" in f for f in summary.failures)
    stepped = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert "champion_predictions" not in stepped              # stopped within the run
    version = hashlib_of(bad)
    assert store.version_info(version)["validated"] == "0"
    assert store.routing().champion == ""
    # A later run without the check is refused too: the verdict lives on the version.
    later = DemoSummary()
    materialize_window(["champion_predictions"], window_key(0), instance, resources, later)
    assert any("no passing validity verdict" in f for f in later.failures), later.failures
    assert store.routing().champion == ""


def hashlib_of(path: Path) -> str:
    import hashlib
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_promotions_at_once_exactly_one_wins(lifecycle):
    instance, resources = lifecycle
    store = resources["serving_store"]
    summary = DemoSummary()
    for i in range(3):
        materialize_window(["raw_iris", "trusted_test_set", "champion_model", "incoming_batch", "feedback",
                            "champion_predictions"], window_key(i), instance, resources, summary, DRIFTING)
    materialize_window(None, window_key(3), instance, resources, summary, DRIFTING)
    _ok(summary)
    assert store.latest_decision()["decision"] == "promote"
    epoch = store.routing().epoch
    # Two promote runs in two processes, released together on the same instance.
    ctx = multiprocessing.get_context("spawn")
    barrier, outcomes = ctx.Barrier(2), ctx.Queue()
    args = (str(instance.root_directory), store.redis_url, resources["artifacts"].base_dir, barrier, outcomes)
    procs = [ctx.Process(target=_promote_in_child, args=args) for _ in range(2)]
    for p in procs:
        p.start()
    results = [outcomes.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    # The same decision carried out twice at once: it takes effect once (one applied promotion in
    # the audit); the other run finds it applied and succeeds without changing anything.
    assert sorted(results) == [True, True]
    promotions = [e for e in store.audit(50) if e["action"] == "promote"]
    assert [e["outcome"] for e in promotions] == ["applied"]
    assert store.routing().epoch == epoch + 1


def _promote_in_child(instance_dir: str, redis_url: str, artifacts_dir: str, barrier, outcomes) -> None:
    """Run the promote job in its own process (Dagster's in-process executor is not thread-safe)."""
    from dagster import DagsterInstance

    defs = build_defs({"serving_store": ServingStore(redis_url=redis_url),
                       "artifacts": ArtifactStore(base_dir=artifacts_dir)})
    job_def = defs.get_job_def("promote")
    with DagsterInstance.from_config(instance_dir) as instance:
        barrier.wait(timeout=120)
        outcomes.put(job_def.execute_in_process(instance=instance, raise_on_error=False).success)


def test_entity_ids_key_the_batch_and_lookup_by_id(lifecycle, tmp_path, monkeypatch, capsys):
    instance, resources = lifecycle
    store = resources["serving_store"]
    source = tmp_path / "users.csv"
    source.write_text("id,sepal_length,sepal_width,petal_length,petal_width\n"
                      "u1,5.0,2.9,1.1,0.4\nu2,6.7,3.0,5.2,2.3\nu3,not-a-number,3.0,5.2,2.3\nu1,5.0,2.9,1.1,0.4\n"
                      "u4,5.0,2.9,1.1,0.4\nu4,6.3,2.5,5.0,1.9\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("0\n2\n2\n0\n0\n2\n")
    config = {"ops": {"incoming_batch": {"config": {"source": str(source)}},
                      "feedback": {"config": {"source": str(labels)}}}}
    summary = DemoSummary()
    materialize_window(["raw_iris", "trusted_test_set", "champion_model", "incoming_batch", "feedback",
                        "champion_predictions"], window_key(0), instance, resources, summary, config)
    _ok(summary)
    d = Path(resources["artifacts"].batch_dir(window_key(0)))
    # u3 quarantined (not a number); u1 twice with the same features is a repeat; u4 with two
    # different feature rows is a conflict: both its rows are quarantined, never "last row wins".
    assert sorted(serving.load_prepared(d).keys.tolist()) == ["id:u1", "id:u2"]
    quarantine = __import__("json").loads((d / "quarantine.json").read_text())
    assert quarantine["rows"] == 3 and quarantine["by_reason"] == {"not_a_number": 1, "duplicate_id": 2}
    by_row = {q["row"]: q["reason"] for q in quarantine["sample"]}
    assert "not-a-number" in by_row[4] and "'u4'" in by_row[6] and "rows 6, 7" in by_row[7]
    assert len(__import__("numpy").load(d / "labels.npy")) == 3  # labels of quarantined rows set aside
    u1, u2, u4, u9 = store.lookup(["id:u1", "id:u2", "id:u4", "id:u9"])
    assert (u1["label"], u2["label"], u4["route"], u9["route"]) == ("setosa", "virginica", "miss", "miss")
    # The command line, in process, against the same store.
    from irisdag import cli
    monkeypatch.setenv("REDIS_URL", store.redis_url)
    assert cli.main(["lookup", "--id", "u2", "--json"]) == 0
    out = __import__("json").loads(capsys.readouterr().out)
    assert out == {"key": "id:u2", "label": "virginica", "version": store.routing().champion, "route": "champion"}
