"""`irisdag demo`: materialize the whole graph once, evaluate the sensors, run
what they request, and summarize. Runs in process on the local instance."""
from __future__ import annotations

from dataclasses import dataclass, field

from irisdag.defs.partitions import window_index, window_key

WARMUP_WINDOWS = 3
BASE_ASSETS = ["raw_iris", "trusted_test_set", "champion_model"]
SERVING_ASSETS = ["incoming_batch", "feedback", "champion_predictions"]
# The console shows warnings and errors; every event is still in the instance (and the UI).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class CheckFailed(RuntimeError):
    """An asset check of severity ERROR failed (or a step failed)."""


@dataclass
class DemoSummary:
    windows: list = field(default_factory=list)
    checks: list = field(default_factory=list)   # (check name, partition, passed, severity, description)
    runs: list = field(default_factory=list)     # (job, run key, success)
    failures: list = field(default_factory=list)


def materialize_window(selection, partition, instance, resources, summary: DemoSummary, run_config=None):
    """One in-process run over the selected assets (None = the whole graph) for a window."""
    from dagster import materialize

    from irisdag.definitions import all_assets, all_checks

    run_config = {**QUIET, **(run_config or {})}
    result = materialize([*all_assets, *all_checks], instance=instance, resources=resources,
                         partition_key=partition, selection=selection, raise_on_error=False,
                         run_config=run_config)
    for ev in result.get_asset_check_evaluations():
        name = f"{ev.asset_key.to_user_string()}:{ev.check_name}"
        summary.checks.append((name, partition, ev.passed, ev.severity.value, ev.description or ""))
        if not ev.passed and ev.severity.value == "ERROR":
            summary.failures.append(f"check {name} failed in window {partition}: {ev.description}")
    if not result.success:
        before = len(summary.failures)
        for ev in result.all_events:
            if ev.event_type_value == "STEP_FAILURE":
                msg = _user_error(ev.event_specific_data.error)
                if not any(ev.step_key in f for f in summary.failures):
                    summary.failures.append(f"step {ev.step_key} failed in window {partition}: {msg}")
        if len(summary.failures) == before:  # failed before any step ran (e.g. a resource could not start)
            summary.failures.append(f"run for window {partition} failed: {_run_failure(result)}")
    summary.windows.append(partition)
    return result


def _user_error(err) -> str:
    """The last line of the first error below Dagster's own wrappers (the user's, not the framework's)."""
    if err is None:
        return "failed"
    while err.cause is not None and err.cls_name and err.cls_name.startswith("Dagster"):
        err = err.cause
    return err.message.strip().splitlines()[-1]


def _run_failure(result) -> str:
    """The error of a run that failed outside any step (e.g. a resource could not start)."""
    for ev in result.all_events:
        err = getattr(ev.event_specific_data, "error", None)
        if ev.is_failure and err is not None:
            return _user_error(err)
    return "failed (see the run's events)"


def evaluate_sensors(instance, resources, summary: DemoSummary) -> None:
    """Evaluate the promotion sensor, then the miss sensor, once each and run what they request
    (a run key acts once): a decision is carried out, and misses consumers queued are filled."""
    from dagster import RunRequest, RunsFilter, build_sensor_context

    from irisdag.definitions import build_defs
    from irisdag.defs.misses import miss_sensor
    from irisdag.defs.sensors import promotion_sensor

    defs = build_defs(resources)
    for sensor in (promotion_sensor, miss_sensor):
        context = build_sensor_context(instance=instance, resources=resources)
        requests = sensor(context)
        requests = requests if isinstance(requests, list) else [requests]
        for req in requests:
            if not isinstance(req, RunRequest):
                continue
            job_name = req.job_name or sensor.job_name
            tags = {**req.tags, "dagster/run_key": req.run_key, "dagster/sensor_name": sensor.name}
            if instance.get_runs(RunsFilter(tags={"dagster/run_key": req.run_key}), limit=1):
                summary.runs.append((job_name, req.run_key, "already done"))
                continue
            result = defs.get_job_def(job_name).execute_in_process(
                run_config={**QUIET, **req.run_config}, instance=instance, tags=tags, raise_on_error=False)
            summary.runs.append((job_name, req.run_key, "success" if result.success else "failed"))
            if not result.success:
                summary.failures.append(f"job {job_name} (run key {req.run_key}) failed")


def next_window(serving_store) -> int:
    """The first window after every kept window (kept miss batches are not windows)."""
    from irisdag.defs.partitions import batch_windows

    windows = [p for p in serving_store.kept_partitions() if batch_windows.has_partition_key(p)]
    return max((window_index(p) for p in windows), default=-1) + 1


def run_demo(instance, resources, batch_source: str = "", warmup: int = WARMUP_WINDOWS,
             run_config=None) -> DemoSummary:
    summary = DemoSummary()
    serving_store = resources["serving_store"]
    start = next_window(serving_store)
    fresh = start == 0 and not serving_store.routing().champion
    if fresh and not batch_source:
        # A fresh store has no history for a challenger to learn from: the champion
        # serves a few windows first, and their feedback becomes training data.
        for i in range(warmup):
            materialize_window(BASE_ASSETS + SERVING_ASSETS, window_key(i), instance, resources, summary, run_config)
            if summary.failures:
                return summary
        start = warmup
    materialize_window(None, window_key(start), instance, resources, summary, run_config)
    if not summary.failures:
        evaluate_sensors(instance, resources, summary)
    return summary
