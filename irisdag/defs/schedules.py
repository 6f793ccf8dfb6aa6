"""Schedules: score a new batch every four hours, retrain a challenger weekly."""
from dagster import ScheduleDefinition, build_schedule_from_partitioned_job

from irisdag.defs.jobs import retrain_job, score_batch_job

score_batch_schedule = build_schedule_from_partitioned_job(
    score_batch_job, description="Scores each four-hour window once it has closed.")

retrain_schedule = ScheduleDefinition(
    job=retrain_job, cron_schedule="0 3 * * 1", description="Retrains a challenger every Monday at 03:00.")
