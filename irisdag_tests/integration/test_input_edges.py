"""Input edges through real Dagster runs on a real Redis (issue 9 items 1, 7, 10; issue 8 item 3).

The |x| < 10^6 bound applies after rounding at every entry; a kept batch is
registered only after it is scored; bad or empty batches fail loudly; a batch
without labels is scored and served.
"""
from __future__ import annotations

import numpy as np
import pytest
from dagster import AssetKey, build_sensor_context

from irisdag import serving
from irisdag.core import keys
from irisdag.defs.partitions import window_key
from irisdag.demo import DemoSummary, materialize_window

WARMUP = ["raw_iris", "trusted_test_set", "champion_model", "incoming_batch", "feedback", "champion_predictions"]
EDGE = 999999.96  # rounds to 1000000.0: out of bounds everywhere
INSIDE = 999999.94  # rounds to 999999.9: in bounds everywhere


class Runs:
    def __init__(self, instance, resources):
        self.instance, self.resources = instance, resources
        self.store = resources["serving_store"]
        self.summary = DemoSummary()

    def window(self, index, selection=WARMUP, ops=None, expect_ok=True):
        before = len(self.summary.failures)
        partition = None if index is None else window_key(index)  # retraining is not windowed
        result = materialize_window(selection, partition, self.instance, self.resources, self.summary,
                                    {"ops": ops or {}})
        if expect_ok:
            assert not self.summary.failures[before:], self.summary.failures[before:]
        return result, self.summary.failures[before:]

    def score_misses(self):
        from irisdag.definitions import build_defs
        from irisdag.defs.misses import miss_sensor

        request = miss_sensor(build_sensor_context(instance=self.instance, resources=self.resources))
        return build_defs(self.resources).get_job_def("score_misses").execute_in_process(
            instance=self.instance, tags=request.tags, raise_on_error=False)


@pytest.fixture
def runs(dagster_env):
    return Runs(*dagster_env)


def _generated(rows=200):
    return {"incoming_batch": {"config": {"rows": rows, "drift": 0.0, "drift_windows": 1}}}


# ---- issue 9 item 1: the bound after rounding, one rule at every entry ----------------------------

def test_the_bound_is_the_same_at_the_key_the_batch_and_the_scorer():
    from irisdag.models.artifacts import _refuse_invalid  # the scorer's own guard

    for x in (EDGE, -EDGE, 1e6, np.nextafter(1e6, 0)):
        with pytest.raises(keys.InputError, match="out of bounds"):
            keys.validate_features([x, 1, 1, 1])
        with pytest.raises(keys.InputError, match="out of bounds"):
            keys.parse_features([repr(float(x)), "1", "1", "1"])
        assert keys.invalid_mask(np.array([[1, 1, 1, x]])).tolist() == [True]
        with pytest.raises(ValueError):
            _refuse_invalid(np.array([[x, 1.0, 1.0, 1.0]]), 0)
    for x in (INSIDE, -INSIDE, 999999.95, -999999.95):
        assert keys.validate_features([x, 1, 1, 1])[0] == x
        assert keys.invalid_mask(np.array([[x, 1, 1, 1]])).tolist() == [False]
        # what the scorer sees is the rounded value: still in bounds
        q = keys.quantize(x)
        _refuse_invalid(np.array([[q / 10, 1.0, 1.0, 1.0]]), 0)


def test_a_miss_that_rounds_out_of_bounds_never_blocks_scoring(runs):
    runs.window(0, ops=_generated())
    good = [INSIDE, 3.0, 5.0, 1.8]
    runs.store.queue_misses([{"key": keys.input_key(good), "features": good},
                             {"key": "f" * 64, "features": [EDGE, 3.0, 5.0, 1.8]}])
    result = runs.score_misses()
    assert result.success
    [hit] = runs.store.lookup([keys.input_key(good)])
    assert hit["route"] == "champion" and hit["label"] is not None
    # The kept miss batch holds only the in-bounds row, and every later scoring run still works.
    kept = [p for p in runs.store.kept_partitions() if p.startswith("misses-")]
    assert len(kept) == 1
    assert serving.load_prepared(runs.resources["artifacts"].batch_dir(kept[0])).n_keys == 1
    runs.window(1, ops=_generated())
    champion = runs.store.routing().champion
    assert int(runs.store.version_info(champion)["generation"]) == len(runs.store.kept_partitions())


def test_a_batch_is_kept_only_after_every_version_scored_it(runs):
    """`score_then_keep` with a version that may not be scored: the batch is never registered."""
    runs.window(0, ops=_generated())
    store, artifacts = runs.store, runs.resources["artifacts"]
    kept_before = store.kept_partitions()
    d = artifacts.batch_dir("misses-test")
    serving.prepare_array(d, np.array([[5.0, 2.9, 1.1, 0.4]]))
    champion = store.routing().champion
    from irisdag.defs.assets.predictions import load_checked

    booster = load_checked(store, artifacts, champion)
    store.set_validated(champion, False, "withdrawn for the test")
    with pytest.raises(ValueError, match="no passing validity verdict"):
        serving.score_then_keep(store, {champion: booster}, "misses-test", artifacts.batches_root())
    assert store.kept_partitions() == kept_before
    store.set_validated(champion, True, "restored")
    assert serving.score_then_keep(store, {champion: booster}, "misses-test", artifacts.batches_root()) == 1
    assert store.kept_partitions() == kept_before + ["misses-test"]
    assert int(store.version_info(champion)["generation"]) == len(kept_before) + 1


def _latest_meta(runs, asset):
    return runs.instance.get_latest_materialization_event(AssetKey(asset)).asset_materialization.metadata


# ---- issue 9 item 7: empty / fully quarantined batches fail an ERROR check ------------------------

SERVE = ["raw_iris", "trusted_test_set", "champion_model", "incoming_batch", "feedback", "champion_predictions"]


def _check(result, name):
    [ev] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return ev


@pytest.mark.parametrize("text,why", [
    ("", "no data rows (empty or header only)"),
    ("id,sepal_length,sepal_width,petal_length,petal_width\n", "no data rows (empty or header only)"),
    ("nan,1,1,1\n5_0,1,1,1\n1,2,3\n", "all 3 rows were quarantined (field_count 1, nan 1, not_a_number 1)"),
])
def test_a_batch_with_nothing_to_score_fails_an_error_check_naming_it(runs, tmp_path, text, why):
    source = tmp_path / "batch.csv"
    source.write_text(text)
    result, failures = runs.window(0, SERVE, {"incoming_batch": {"config": {"source": str(source)}}},
                                   expect_ok=False)
    ev = _check(result, "incoming_batch_quality")
    assert not ev.passed and ev.severity.value == "ERROR"
    assert why in ev.description and "nothing to score" in ev.description
    assert any("incoming_batch:incoming_batch_quality" in f and why in f for f in failures), failures


# ---- issue 9 item 10: a batch without labels is scored and served ----------------------------------

def test_a_batch_without_labels_is_served_and_its_feedback_attached_later(runs):
    from irisdag_tests.support.data import COURSE

    source = {"incoming_batch": {"config": {"source": str(COURSE / "iris.csv")}}}
    runs.window(0, SERVE, source)  # no feedback source: not a failure
    meta = _latest_meta(runs, "feedback")
    assert meta["rows"].value == 0 and meta["status"].value.startswith("pending")
    [hit] = runs.store.lookup([keys.input_key([5.0, 2.9, 1.1, 0.4])])
    assert hit["route"] == "champion" and hit["label"] == "setosa"
    d = runs.resources["artifacts"].batch_dir(window_key(0))
    assert not (d / "labels.npy").exists()
    # The window's labels arrive later: materializing its feedback attaches them.
    runs.window(0, ["feedback"], {"feedback": {"config": {"source": str(COURSE / "iris_y.csv")}}})
    assert len(np.load(d / "labels.npy")) == 1050
    assert _latest_meta(runs, "feedback")["status"].value == "attached"


def test_a_decision_on_a_window_without_feedback_has_nothing_to_judge(runs):
    from irisdag_tests.support.data import COURSE

    runs.window(0, SERVE, _generated(300))
    runs.window(None, ["raw_iris", "trusted_test_set", "challenger_model"])
    ops = {"incoming_batch": {"config": {"source": str(COURSE / "iris.csv")}}}
    runs.window(1, ["incoming_batch", "feedback", "champion_predictions", "challenger_predictions", "comparison"], ops)
    decision = runs.store.latest_decision()
    assert decision["decision"] == "continue" and decision["n"] == 0
    assert f"no feedback has arrived for window {window_key(1)} yet" in decision["reason"]
    assert "nothing to judge" in decision["reason"]


# ---- issue 9 item 7: feedback shifted by a row is warned about ---------------------------------------

def test_misaligned_feedback_fails_a_warn_check(runs, tmp_path):
    """A shuffled batch (the course rows in random order) with its labels, then the labels one row off."""
    from irisdag_tests.support.data import COURSE

    rows = (COURSE / "iris.csv").read_text().splitlines()
    labels = (COURSE / "iris_y.csv").read_text().splitlines()
    order = np.random.default_rng(5).permutation(len(rows))
    batch, aligned, shifted = tmp_path / "batch.csv", tmp_path / "y.csv", tmp_path / "shifted.csv"
    batch.write_text("\n".join(rows[i] for i in order) + "\n")
    y = [labels[i] for i in order]
    aligned.write_text("\n".join(y) + "\n")
    shifted.write_text("\n".join(y[1:] + y[:1]) + "\n")  # every label one row off
    ops = {"incoming_batch": {"config": {"source": str(batch)}}, "feedback": {"config": {"source": str(aligned)}}}
    result, _ = runs.window(0, SERVE, ops)
    ev = _check(result, "feedback_alignment")
    assert ev.passed, ev.description
    ops["feedback"] = {"config": {"source": str(shifted)}}
    result, failures = runs.window(1, SERVE, ops)
    ev = _check(result, "feedback_alignment")
    assert not ev.passed and ev.severity.value == "WARN" and failures == []  # a warning, not a failure
    assert "possibly misaligned" in ev.description and "shifted by a row" in ev.description
    assert ev.metadata["accuracy_on_feedback"].value < ev.metadata["validated_accuracy"].value - 0.25
    assert ev.metadata["accuracy_if_shifted_by_one_row"].value > 0.9


# ---- issue 9 items 4 and 7: a source refused as a whole fails once, naming why -----------------------

@pytest.mark.parametrize("data,named", [
    (b"5.0,2.9,1.1,0.4\n" + b"9" * (2 << 20) + b"\n", "line 2 is longer than 1,048,576 bytes"),
    (b"PK\x03\x04" + b"\x00" * 100, "is a zip archive"),
])
def test_a_refused_source_fails_the_batch_step_once_naming_why(runs, tmp_path, data, named):
    source = tmp_path / "batch.csv"
    source.write_bytes(data)
    result, failures = runs.window(0, SERVE, {"incoming_batch": {"config": {"source": str(source)}}},
                                   expect_ok=False)
    assert any("incoming_batch" in f and named in f for f in failures), failures
    retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retried == []  # deterministic: never retried
    assert not any("_csv.Error" in f or "Traceback" in f for f in failures)
