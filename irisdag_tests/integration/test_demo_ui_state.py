"""What the UI shows after the default demo (issue 10 item 11), on real in-process runs:
the comparison's accuracy plot is a picture on its page (an inline SVG short enough for
the UI to draw), its per-window accuracies are numbers Dagster plots across partitions,
and the champion's blocking validity check is evaluated for every champion_model
materialization, including the ones a promotion and a rollback record."""
from __future__ import annotations

import base64
import re

from dagster import AssetCheckKey, AssetKey

from irisdag.definitions import build_defs
from irisdag.defs.reports import INLINE_MARKDOWN_LIMIT
from irisdag.demo import run_demo

CHECK = AssetCheckKey(AssetKey("champion_model"), "champion_model_validity")


def latest_check(instance):
    [record] = instance.event_log_storage.get_asset_check_execution_history(CHECK, limit=1)
    evaluation = record.event.dagster_event.event_specific_data
    return record.run_id, evaluation


def test_after_the_demo_and_a_rollback_the_ui_has_a_plot_and_an_evaluated_champion_check(dagster_env):
    instance, resources = dagster_env
    summary = run_demo(instance, resources)
    assert not summary.failures and summary.runs[0][0] == "promote"

    comparison = instance.get_latest_materialization_event(AssetKey("comparison")).asset_materialization
    plot = comparison.metadata["accuracy_plot"].value
    assert len(plot) < INLINE_MARKDOWN_LIMIT
    svg = base64.b64decode(re.fullmatch(r"!\[[^\]]*\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", plot)[1])
    assert svg.startswith(b"<svg") and b"champion" in svg and b"challenger" in svg
    assert 0.5 < comparison.metadata["champion_accuracy"].value < comparison.metadata["challenger_accuracy"].value <= 1

    # The promotion recorded a champion_model materialization: its check is evaluated in the same run.
    promoted_run = instance.get_latest_materialization_event(AssetKey("champion_model")).run_id
    run_id, evaluation = latest_check(instance)
    assert run_id == promoted_run and evaluation.passed

    defs = build_defs(resources)
    rollback = defs.get_job_def("rollback").execute_in_process(instance=instance, raise_on_error=False)
    assert rollback.success
    assert instance.get_latest_materialization_event(AssetKey("champion_model")).run_id == rollback.run_id
    run_id, evaluation = latest_check(instance)
    assert run_id == rollback.run_id and evaluation.passed
    restored = resources["serving_store"].routing().champion
    assert evaluation.metadata["version"].value == restored
