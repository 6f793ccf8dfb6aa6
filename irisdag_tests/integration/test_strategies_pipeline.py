"""Every strategy through real Dagster runs over several windows against a real
Redis: decisions, the sensor's runs, and what lookups are served at each step."""
from __future__ import annotations

from pathlib import Path

import pytest

from irisdag import serving
from irisdag.core.routing import route_key
from irisdag.defs.partitions import window_key
from irisdag.demo import DemoSummary, evaluate_sensors, materialize_window
from irisdag.store.resource import ServingStore

WARMUP = ["raw_iris", "trusted_test_set", "champion_model", "incoming_batch", "feedback", "champion_predictions"]
SCORE = ["incoming_batch", "feedback", "champion_predictions", "challenger_predictions", "comparison"]
RETRAIN = ["raw_iris", "trusted_test_set", "challenger_model"]


class Pipeline:
    """Windows of a drifting stream, run the way the schedules and sensors run them."""

    def __init__(self, instance, resources, drift=1.0, rows=1500):
        self.instance, self.resources = instance, resources
        self.store: ServingStore = resources["serving_store"]
        self.batch = {"rows": rows, "drift": drift, "drift_windows": 1}
        self.window = 0
        self.summary = DemoSummary()

    def run(self, selection, experiment=None, challenger=None):
        ops = {}
        if "incoming_batch" in selection:
            ops["incoming_batch"] = {"config": self.batch}
        if experiment is not None:
            ops["challenger_predictions"] = {"config": experiment}
        if challenger is not None:
            ops["challenger_model"] = {"config": challenger}
        partition = window_key(self.window) if "incoming_batch" in selection else None  # retraining is not windowed
        materialize_window(selection, partition, self.instance, self.resources, self.summary, {"ops": ops})
        assert not self.summary.failures, self.summary.failures

    def warm_up(self, windows=3):
        for _ in range(windows):
            self.run(WARMUP)
            self.window += 1

    def step(self, experiment=None):
        """Score one window, then evaluate the promotion sensor and run what it requests."""
        self.run(SCORE, experiment)
        decision = self.store.latest_decision()
        before = len(self.summary.runs)
        evaluate_sensors(self.instance, self.resources, self.summary)
        assert not self.summary.failures, self.summary.failures
        self.window += 1
        return decision, [r[0] for r in self.summary.runs[before:]]

    def start(self, experiment, challenger=None):
        """Retrain a challenger (the weekly schedule's job), then the first window of its experiment."""
        self.run(RETRAIN, challenger=challenger)
        return self.step(experiment)

    def batch_keys(self, window=None):
        d = Path(self.resources["artifacts"].batch_dir(window_key(self.window - 1 if window is None else window)))
        return serving.load_prepared(d).key_list()

    def assert_lookups_follow_routing(self):
        """Served answers follow the routing: the Lua lookup equals the Python reference for every key."""
        routing = self.store.routing()
        keys = self.batch_keys()
        for key, hit in zip(keys, self.store.lookup(keys)):
            route, version = route_key(key, routing)
            assert hit["route"] == route and hit["version"] == version, (key, hit, route, version)
        return routing


@pytest.fixture
def pipeline(dagster_env):
    return Pipeline(*dagster_env)


def test_canary_ramps_through_every_step_then_promotes(pipeline):
    pipeline.warm_up()
    champion = pipeline.store.routing().champion
    decision, runs = pipeline.start({"strategy": "canary", "min_rows_per_step": 400})
    challenger = decision["challenger"]
    shares_seen = [dict(pipeline.assert_lookups_follow_routing().shares)]
    actions = runs
    for _ in range(6):
        if "promote" in actions:
            break
        decision, runs = pipeline.step()
        actions += runs
        shares_seen.append(dict(pipeline.assert_lookups_follow_routing().shares))
    assert actions == ["ramp", "ramp", "ramp", "promote"], actions
    assert [s.get(challenger) for s in shares_seen[:3]] == [2500, 5000, 10000]
    routing = pipeline.store.routing()
    assert routing.champion == challenger and routing.previous == champion and not routing.shares
    ramps = [e for e in pipeline.store.audit(100) if e["action"] == "ramp" and e["outcome"] == "applied"]
    assert len(ramps) == 3


def test_a_worse_challenger_is_aborted_and_routing_restored(pipeline):
    pipeline.warm_up()
    decision, runs = pipeline.start({"strategy": "shadow"})
    assert runs == ["promote"]  # a drift-aware champion now serves
    champion = pipeline.store.routing().champion
    # A retrain that forgot the recent feedback: valid on the trusted set, worse on today's stream.
    decision, runs = pipeline.start({"strategy": "canary", "min_rows_per_step": 400},
                                    challenger={"include_feedback": False})
    for _ in range(4):
        if "abort" in runs:
            break
        decision, runs = pipeline.step()
    assert decision["decision"] == "abort" and "abort" in runs, decision
    routing = pipeline.assert_lookups_follow_routing()
    assert routing.champion == champion and routing.challenger == "" and not routing.shares
    assert pipeline.store.version_info(decision["challenger"])["lifecycle"] == "aborted"


def test_shadow_null_challenger_is_not_promoted(pipeline):
    pipeline.batch.update(drift=0.0)
    pipeline.warm_up(2)
    # An equally good model (another depth): differs on a few rows, better on none systematically.
    decision, runs = pipeline.start({"strategy": "shadow"}, challenger={"max_depth": 4, "include_feedback": False})
    decisions = [decision["decision"]]
    for _ in range(3):
        decision, runs = pipeline.step()
        decisions.append(decision["decision"])
        assert "promote" not in runs
    assert set(decisions) <= {"continue", "abort"} and decision["challenger"] != decision["champion"]


def test_ab_decides_once_at_the_planned_n(pipeline):
    pipeline.warm_up()
    decision, runs = pipeline.start({"strategy": "ab"})  # planned n: 1,960 paired rows, over two windows
    routing = pipeline.assert_lookups_follow_routing()
    assert dict(routing.shares) == {decision["challenger"]: 5000}
    history = [decision]
    while "promote" not in runs and len(history) < 5:
        decision, runs = pipeline.step()
        history.append(decision)
    assert runs == ["promote"]
    decided = [d for d in history if d["decision"] != "continue"]
    assert len(decided) == 1 and decided[0]["test"].lower().startswith("exact mcnemar")
    assert all(d["decision"] == "continue" for d in history[:-1])


def test_ab_with_outcome_feedback_judges_each_arms_served_traffic(pipeline):
    pipeline.warm_up()
    experiment = {"strategy": "ab", "feedback": "outcome", "ab_baseline": 0.8, "ab_min_effect": 0.12}
    decision, runs = pipeline.start(experiment)
    history = [decision]
    while decision["decision"] == "continue" and len(history) < 5:
        decision, runs = pipeline.step()
        history.append(decision)
    assert decision["evidence"] == "unpaired" and decision["b"] is None
    assert decision["decision"] == "promote", decision


def test_bandit_moves_traffic_to_the_better_arm(pipeline):
    pipeline.warm_up()
    decision, runs = pipeline.start({"strategy": "bandit"})
    challenger = decision["challenger"]
    start_share = 5000
    shares = [dict(pipeline.assert_lookups_follow_routing().shares).get(challenger, 0)]
    for _ in range(4):
        if "promote" in runs:
            break
        decision, runs = pipeline.step()
        if "promote" not in runs:
            shares.append(dict(pipeline.assert_lookups_follow_routing().shares).get(challenger, 0))
    assert max(shares) > start_share or "promote" in runs
    assert "promote" in runs and pipeline.store.routing().champion == challenger


def test_single_promotes_once_validated(pipeline):
    pipeline.warm_up(1)
    decision, runs = pipeline.start({"strategy": "single"})
    assert decision["decision"] == "promote" and runs == ["promote"]


def test_holdout_bypasses_the_model_and_is_reported_apart(pipeline):
    pipeline.warm_up()
    pipeline.start({"strategy": "shadow", "holdout_bp": 2000})
    routing = pipeline.assert_lookups_follow_routing()
    assert routing.holdout_bp == 2000
    hits = pipeline.store.lookup(pipeline.batch_keys())
    held = [h for h in hits if h["route"] == "holdout"]
    assert 0.1 < len(held) / len(hits) < 0.3 and all(h["label"] is None for h in held)
    event = pipeline.instance.get_latest_materialization_event(
        __import__("dagster").AssetKey("comparison")).asset_materialization
    assert event.metadata["holdout_rows"].value > 0


def test_a_queued_miss_is_stored_by_the_miss_run(pipeline):
    from dagster import build_sensor_context

    from irisdag.core.keys import input_key
    from irisdag.defs.misses import miss_sensor

    pipeline.warm_up(1)
    features = [7.9, 3.8, 6.4, 2.0]
    key = input_key(features)
    [miss] = pipeline.store.lookup([key])
    assert miss["route"] == "miss" and miss["label"] is None
    pipeline.store.queue_misses([{"key": key, "features": features}])
    request = miss_sensor(build_sensor_context(instance=pipeline.instance, resources=pipeline.resources))
    from irisdag.definitions import build_defs
    result = build_defs(pipeline.resources).get_job_def("score_misses").execute_in_process(
        instance=pipeline.instance, tags=request.tags)
    assert result.success
    [hit] = pipeline.store.lookup([key])
    assert hit["route"] == "champion" and hit["label"] == "virginica"
    assert pipeline.store.pending_misses() == 0
