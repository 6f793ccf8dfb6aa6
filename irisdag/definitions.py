"""The irisdag code location. IRISDAG_DEPLOYMENT switches how resources are built
(``local``, the default: SQLite instance, local files, embedded or REDIS_URL Redis)."""
from __future__ import annotations

import os

from dagster import Definitions, load_asset_checks_from_modules, load_assets_from_modules

from irisdag.defs import checks, jobs, schedules, sensors
from irisdag.defs.assets import comparison, data, models, predictions
from irisdag.defs.resources import local_resources

ASSET_MODULES = [data, models, predictions, comparison]

all_assets = load_assets_from_modules(ASSET_MODULES)
all_checks = load_asset_checks_from_modules([checks])


def resources_for(deployment: str) -> dict:
    if deployment == "local":
        return local_resources()
    raise ValueError(f"IRISDAG_DEPLOYMENT={deployment!r} is not supported (use 'local')")


def build_defs(resources: dict) -> Definitions:
    return Definitions(
        assets=all_assets,
        asset_checks=all_checks,
        jobs=[jobs.promote, jobs.rollback, jobs.abort, jobs.score_batch_job, jobs.retrain_job],
        sensors=[sensors.promotion_sensor],
        schedules=[schedules.score_batch_schedule, schedules.retrain_schedule],
        resources=resources,
    )


RESOURCES = resources_for(os.environ.get("IRISDAG_DEPLOYMENT", "local") or "local")
defs = build_defs(RESOURCES)
