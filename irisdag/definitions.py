"""The irisdag code location. IRISDAG_DEPLOYMENT switches how resources are built
(``local``, the default: SQLite instance, local files, embedded or REDIS_URL Redis)."""
from __future__ import annotations

import os
import warnings

from dagster import Definitions, load_asset_checks_from_modules, load_assets_from_modules

from irisdag.defs import checks, failures, jobs, misses, schedules, sensors
from irisdag.defs.assets import comparison, data, models, predictions
from irisdag.defs.resources import local_resources
from irisdag.defs import store_checks
from irisdag.defs.chunked import score_window_chunked_job

try:  # the `celery` extra: scoring on Dagster's Celery executor
    from irisdag.defs.celery import score_window_on_celery
    DISTRIBUTED_JOBS = [score_window_chunked_job, score_window_on_celery]
except ImportError:
    DISTRIBUTED_JOBS = [score_window_chunked_job]

ASSET_MODULES = [data, models, predictions, comparison]

# Dagster 1.13's own SensorDefinition.with_updated_jobs passes `owners=[]` when it
# binds a sensor's jobs, which trips its own beta notice for `owners`; no sensor
# here sets owners, so the notice says nothing about this code.
warnings.filterwarnings("ignore", message=r"Parameter `owners` of initializer `SensorDefinition.__init__`")

all_assets = load_assets_from_modules(ASSET_MODULES)
all_checks = [*load_asset_checks_from_modules([checks]), *misses.MISSES_CHECKS]


def resources_for(deployment: str) -> dict:
    if deployment == "local":
        return local_resources()
    if deployment == "production":
        # S3 through dagster-aws, Redis from REDIS_URL; Dagster's own storage is
        # the instance's (deploy/dagster.yaml: Postgres). See irisdag.defs.production.
        from irisdag.defs.production import production_resources

        return production_resources()
    raise ValueError(f"IRISDAG_DEPLOYMENT={deployment!r} is not supported (use 'local' or 'production')")


def build_defs(resources: dict) -> Definitions:
    return Definitions(
        assets=all_assets,
        asset_checks=[*all_checks, *store_checks.STORE_CHECKS],
        jobs=[jobs.promote, jobs.rollback, jobs.abort, jobs.ramp, misses.score_misses, jobs.score_batch_job,
              jobs.retrain_job, *store_checks.STORE_CHECK_JOBS, *DISTRIBUTED_JOBS],
        sensors=[sensors.promotion_sensor, misses.miss_sensor, failures.run_failure_recorder,
                 failures.run_failure_backlog, *store_checks.STORE_CHECK_SENSORS],
        schedules=[schedules.score_batch_schedule, schedules.retrain_schedule, *store_checks.STORE_CHECK_SCHEDULES],
        resources=resources,
    )


RESOURCES = resources_for(os.environ.get("IRISDAG_DEPLOYMENT", "local") or "local")
defs = build_defs(RESOURCES)
