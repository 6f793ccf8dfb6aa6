"""Failed runs, where an operator sees them.

`run_failure_recorder` is a Dagster run failure sensor: for every failed run
of this code location it writes one entry to the ``irisdag:audit`` stream
(action ``run_failure``: run id, job, partition, the failed steps and the
assets/checks they were materializing, and the error the user's code raised,
not Dagster's wrapper), and logs the same line at ERROR in the sensor's tick
log. Transient faults (Redis restarted, a network blip) are retried inside the
run by RetryPolicy; a run that still fails lands here.

Nothing is lost when Redis itself is what failed: Dagster advances a run
status sensor's cursor even when the evaluation raises (the tick shows the
error), so each evaluation also records the recent failed runs an earlier tick
could not, and `run_failure_backlog` does the same every few minutes when no
new failure comes along. The audit write is idempotent per run id.
"""
from __future__ import annotations

from dagster import (
    DagsterEventType,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    sensor,
)

from irisdag.store.resource import ServingStore

BACKLOG_RUNS = 50          # recent failed runs re-checked on every evaluation
MAX_ERROR_CHARS = 2000


def user_error(error) -> str:
    """The first error of a SerializableErrorInfo chain that is not a Dagster wrapper, as one string."""
    err = error
    while err is not None and (err.cls_name or "").startswith("Dagster") and (err.cause or err.context):
        err = err.cause or err.context
    if err is None:
        return ""
    return (err.message or "").strip()[:MAX_ERROR_CHARS]


def _step_targets(instance, run) -> dict[str, list[str]]:
    """step key -> the assets (and asset checks) that step materializes, from the run's execution plan."""
    out: dict[str, list[str]] = {}
    if not run.execution_plan_snapshot_id:
        return out
    try:
        snap = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    except Exception:  # noqa: BLE001 - a missing snapshot must not hide the failure itself
        return out
    for step in snap.steps:
        names = []
        for output in step.outputs:
            props = output.properties
            if props is None:
                continue
            if props.asset_key is not None:
                names.append(props.asset_key.to_user_string())
            elif props.asset_check_key is not None:
                check = props.asset_check_key
                names.append(f"{check.asset_key.to_user_string()}:{check.name}")
        out[step.key] = names
    return out


def describe_failed_run(instance, run) -> dict:
    """What an operator needs about a failed run: the arguments of `ServingStore.record_run_failure`."""
    step_failures = [r.event_log_entry.dagster_event for r in instance.get_records_for_run(
        run.run_id, of_type=DagsterEventType.STEP_FAILURE).records]
    run_failures = [r.event_log_entry.dagster_event for r in instance.get_records_for_run(
        run.run_id, of_type=DagsterEventType.RUN_FAILURE).records]
    targets = _step_targets(instance, run)
    steps, assets, errors = [], [], []
    for event in step_failures:
        if event is None:
            continue
        steps.append(event.step_key or "")
        for name in targets.get(event.step_key or "", []):
            if name not in assets:
                assets.append(name)
        message = user_error(event.step_failure_data.error) if event.step_failure_data else ""
        if message:
            errors.append(f"{event.step_key}: {message}")
    failure_reason = ""
    run_event = run_failures[-1] if run_failures else None
    data = run_event.event_specific_data if run_event is not None else None
    if data is not None and getattr(data, "failure_reason", None) is not None:
        failure_reason = str(data.failure_reason.value)
    if not errors:
        # No step failed: the run failed around its steps (resources, executor, a crash).
        message = user_error(getattr(data, "error", None)) if data is not None else ""
        errors.append(message or (run_event.message if run_event is not None and run_event.message else
                                  f"run {run.run_id} failed (status {run.status.value})"))
    return {
        "run_id": run.run_id,
        "job": run.job_name,
        "partition": run.tags.get("dagster/partition", ""),
        "steps": steps,
        "assets": assets,
        "error": " | ".join(errors)[:MAX_ERROR_CHARS * 2],
        "failure_reason": failure_reason,
    }


def format_failure(failure: dict) -> str:
    where = f" in window {failure['partition']}" if failure.get("partition") else ""
    steps = f"; failed steps: {', '.join(failure['steps'])}" if failure.get("steps") else ""
    assets = f"; assets: {', '.join(failure['assets'])}" if failure.get("assets") else ""
    return f"run {failure['run_id']} of job {failure['job']} failed{where}{steps}{assets}: {failure['error']}"


def record_failed_run(instance, run, serving_store: ServingStore, log=None) -> str:
    """Describe, log and audit one failed run (idempotent); returns the audit entry id or ""."""
    failure = describe_failed_run(instance, run)
    if log is not None:
        log.error(format_failure(failure))
    return serving_store.record_run_failure(**failure)


def record_backlog(instance, serving_store: ServingStore, *, limit: int = BACKLOG_RUNS, log=None,
                   repository_def=None) -> list[str]:
    """Audit the recent failed runs that have no record yet (missed while Redis was down). Returns their ids."""
    runs = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.FAILURE]), limit=limit)
    if repository_def is not None:
        runs = [r for r in runs if repository_def.has_job(r.job_name)]
    missing = set(r.run_id for r in runs) - serving_store.recorded_run_failures([r.run_id for r in runs])
    done = []
    for run in reversed(runs):  # oldest first, so the stream keeps their order
        if run.run_id in missing and record_failed_run(instance, run, serving_store, log):
            done.append(run.run_id)
    return done


@run_failure_sensor(
    name="run_failure_recorder",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description=("Records every failed run of this code location (run id, job, failed steps and assets, the "
                 "error) in the irisdag:audit stream (action run_failure) and in this sensor's log."),
)
def run_failure_recorder(context: RunFailureSensorContext, serving_store: ServingStore) -> None:
    record_failed_run(context.instance, context.dagster_run, serving_store, context.log)
    record_backlog(context.instance, serving_store, log=context.log, repository_def=context.repository_def)


@sensor(
    name="run_failure_backlog",
    minimum_interval_seconds=300,
    default_status=DefaultSensorStatus.RUNNING,
    description=("Records recent failed runs that run_failure_recorder could not write (Redis was down then), "
                 "so every failed run reaches irisdag:audit."),
)
def run_failure_backlog(context: SensorEvaluationContext, serving_store: ServingStore) -> SkipReason:
    done = record_backlog(context.instance, serving_store, log=context.log, repository_def=context.repository_def)
    return SkipReason(f"recorded {len(done)} failed run(s) missed earlier" if done else "no failed run is missing")
