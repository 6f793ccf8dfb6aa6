"""`irisdag demo`: materialize the whole graph once, evaluate the sensors, run
what they request, and summarize. Runs in process on the local instance."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from irisdag.defs.partitions import window_index, window_key

WARMUP_WINDOWS = 3
BASE_ASSETS = ["raw_iris", "trusted_test_set", "champion_model"]
SERVING_ASSETS = ["incoming_batch", "feedback", "champion_predictions"]
# Dagster's console log stays quiet (the summary names every failure and its cause);
# every event is still in the instance (and the UI). `irisdag demo -v` shows it.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
VERBOSE = {"loggers": {"console": {"config": {"log_level": "DEBUG"}}}}


class CheckFailed(RuntimeError):
    """An asset check of severity ERROR failed (or a step failed)."""


@dataclass
class DemoSummary:
    windows: list = field(default_factory=list)
    checks: list = field(default_factory=list)   # (check name, partition, passed, severity, description)
    runs: list = field(default_factory=list)     # (job, run key, success)
    failures: list = field(default_factory=list)
    progress: object = None                      # called with one line per run (the CLI prints it)
    run_config: dict = field(default_factory=dict)  # the logging part of the demo's run config

    def say(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)


def materialize_window(selection, partition, instance, resources, summary: DemoSummary, run_config=None):
    """One in-process run over the selected assets (None = the whole graph) for a window."""
    from dagster import materialize

    from irisdag.definitions import all_assets, all_checks

    run_config = {**QUIET, **(run_config or {})}
    started = time.monotonic()
    result = materialize([*all_assets, *all_checks], instance=instance, resources=resources,
                         partition_key=partition, selection=selection, raise_on_error=False,
                         run_config=run_config)
    for ev in result.get_asset_check_evaluations():
        name = f"{ev.asset_key.to_user_string()}:{ev.check_name}"
        summary.checks.append((name, partition, ev.passed, ev.severity.value, ev.description or ""))
        if not ev.passed and ev.severity.value == "ERROR":
            summary.failures.append(f"check {name} failed in window {partition}: {ev.description}")
    if not result.success:
        steps = step_failures(result)
        for step, msg in steps.items():
            summary.failures.append(f"step {step} failed in window {partition}: {msg}")
        if not steps:  # failed before any step ran (e.g. a resource could not start)
            summary.failures.append(f"run for window {partition} failed: {_run_failure(result)}")
    summary.windows.append(partition)
    what = "the whole graph" if selection is None else f"{len(selection)} assets"
    summary.say(f"  window {partition}: {what} {'materialized' if result.success else 'FAILED'} "
                f"in {time.monotonic() - started:.1f} s")
    return result


def step_failures(result) -> dict:
    """Each failed step's cause, in order. A step that exhausted its retries reports the
    error of its last attempt, not Dagster's "Exceeded max_retries"."""
    last_attempt, failed = {}, {}
    for ev in result.all_events:
        if ev.event_type_value == "STEP_UP_FOR_RETRY":
            err = getattr(ev.event_specific_data, "error", None)
            if err is not None:
                last_attempt[ev.step_key] = err
        elif ev.event_type_value == "STEP_FAILURE":
            err = ev.event_specific_data.error
            if err is not None and (err.cls_name or "").endswith("MaxRetriesExceededError") \
                    and ev.step_key in last_attempt:
                err = last_attempt[ev.step_key]
            failed[ev.step_key] = _user_error(err)
    return failed


def run_error(result) -> str:
    """One line saying why a run failed: its failed steps' causes, else the run's own error."""
    steps = step_failures(result)
    if steps:
        return "; ".join(steps.values()) if len(steps) == 1 else \
            "; ".join(f"{step}: {msg}" for step, msg in steps.items())
    return _run_failure(result)


def _user_error(err) -> str:
    """The last line of the first error below Dagster's own wrappers (the user's, not the framework's)."""
    if err is None:
        return "failed"
    # Dagster's wrappers, and a retry policy's "Exceeded max_retries" whose cause is the last attempt's error.
    while err.cause is not None and err.cls_name and err.cls_name.startswith(("Dagster", "RetryRequested")):
        err = err.cause
    lines = (err.message or "").strip().splitlines()
    line = lines[-1] if lines else (err.cls_name or "failed")
    # Dagster prefixes the class's dotted path ("dagster._core....Failure: ..."): a user needs the message.
    head, sep, rest = line.partition(": ")
    if sep and err.cls_name and (head == err.cls_name or head.endswith("." + err.cls_name)) and \
            (err.cls_name == "Failure" or head.startswith("dagster.")):
        return rest
    return line


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
            started = time.monotonic()
            result = defs.get_job_def(job_name).execute_in_process(
                run_config={**(summary.run_config or QUIET), **req.run_config}, instance=instance, tags=tags,
                raise_on_error=False)
            summary.runs.append((job_name, req.run_key, "success" if result.success else "failed"))
            summary.say(f"  {sensor.name} requested {job_name}: {'done' if result.success else 'FAILED'} "
                        f"in {time.monotonic() - started:.1f} s")
            if not result.success:
                summary.failures.append(f"job {job_name} (run key {req.run_key}) failed: {run_error(result)}")


def next_window(serving_store) -> int:
    """The first window after every kept window (kept miss batches are not windows)."""
    from irisdag.defs.partitions import batch_windows

    windows = [p for p in serving_store.kept_partitions() if batch_windows.has_partition_key(p)]
    return max((window_index(p) for p in windows), default=-1) + 1


def run_demo(instance, resources, batch_source: str = "", warmup: int = WARMUP_WINDOWS,
             run_config=None, progress=None) -> DemoSummary:
    summary = DemoSummary(progress=progress, run_config={"loggers": (run_config or QUIET).get("loggers", QUIET["loggers"])})
    serving_store = resources["serving_store"]
    start = next_window(serving_store)
    fresh = start == 0 and not serving_store.routing().champion
    if fresh and not batch_source:
        # A fresh store has no history for a challenger to learn from: the champion
        # serves a few windows first, and their feedback becomes training data.
        # The unpartitioned assets (data, trusted test set, champion) are materialized
        # once, in the first window: a run per step costs Dagster's event writes.
        for i in range(warmup):
            selection = BASE_ASSETS + SERVING_ASSETS if i == 0 else SERVING_ASSETS
            materialize_window(selection, window_key(i), instance, resources, summary, run_config)
            if summary.failures:
                return summary
        start = warmup
    rest = None
    if fresh and not batch_source and warmup > 0:
        from irisdag.definitions import all_assets

        # raw_iris again: it gathers the warm-up windows' feedback the challenger trains on.
        rest = [k.to_user_string() for a in all_assets for k in a.keys
                if k.to_user_string() not in ("trusted_test_set", "champion_model")]
    materialize_window(rest, window_key(start), instance, resources, summary, run_config)
    if not summary.failures:
        evaluate_sensors(instance, resources, summary)
    return summary
