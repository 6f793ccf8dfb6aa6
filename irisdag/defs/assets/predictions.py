"""Prediction assets: every routed version scores every row of every batch.

The champion (and the previous champion, kept scored so that rollback is
instant and complete) and the challenger each bring their answers up to date
over every kept batch, then answer this window's batch. Answers go to the
serving store; a per-window file keeps each row's answer for the comparison.
"""

import secrets

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from irisdag.store.resource import ServingStore
from irisdag import serving
from irisdag.defs import settings
from irisdag.defs.assets.data import incoming_batch
from irisdag.defs.assets.models import (
    CHALLENGER_POINTER, challenger_model, champion_model, current_champion, read_pointer,
)
from irisdag.defs.partitions import batch_windows
from irisdag.defs.resources import ArtifactStore
from irisdag.models.artifacts import load_model


class RefusedVersion(Exception):
    """A version that may not be scored (no passing verdict, rolled back, tampered)."""


def load_checked(serving_store: ServingStore, artifacts: ArtifactStore, version: str):
    """Load a version's model after checking its verdict and its digest."""
    info = serving_store.version_info(version)
    if info is None:
        raise RefusedVersion(f"model version {version} is not registered in the serving store")
    if info.get("validated") != "1":
        raise RefusedVersion(
            f"model version {version[:12]}… has no passing validity verdict "
            f"(validated={info.get('validated')!r}: {info.get('validation_reason', 'no checks ran')}); "
            "refusing to score it")
    return load_model(artifacts.models_dir(), version, info["digest"])


def score_version_for_window(context, serving_store: ServingStore, artifacts: ArtifactStore, version: str) -> dict:
    booster = load_checked(serving_store, artifacts, version)
    summary = serving.bring_up_to_date(serving_store, booster, version, artifacts.batches_root(), log=context.log.info)
    d = artifacts.batch_dir(context.partition_key)
    if not serving.predictions_path(d, version).exists():
        # This window was re-materialized after the version covered it: answer it again.
        serving.score_batch(serving_store, booster, version, d)
    return summary


@asset(
    group_name="predictions", partitions_def=batch_windows, kinds={"redis"},
    deps=[champion_model, incoming_batch],
    description=(
        "The champion's answers (and the previous champion's, kept for instant rollback) for "
        "every distinct input of this window and of every earlier kept window not yet covered, "
        "written to Redis in pipelined chunks; the version is marked complete only after the "
        "last chunk. The first complete champion becomes the served one."),
)
def champion_predictions(context: AssetExecutionContext, artifacts: ArtifactStore, serving_store: ServingStore) -> MaterializeResult:
    champion = current_champion(serving_store, artifacts)
    if not champion:
        raise RefusedVersion("no champion model: materialize champion_model first")
    routing = serving_store.routing()
    versions = [champion] + ([routing.previous] if routing.previous and routing.previous != champion else [])
    summaries = {v: score_version_for_window(context, serving_store, artifacts, v) for v in versions}
    bootstrapped = False
    if not routing.champion:
        ok, reason, epoch = serving_store.set_routing(
            routing.epoch, {"champion": champion, "strategy": settings.default_strategy(),
                            "salt": secrets.token_hex(8), "holdout_bp": "0", "shares": "{}"},
            action="bootstrap", run_id=context.run_id)
        if not ok:
            raise RefusedVersion(f"could not start serving champion {champion[:12]}…: {reason}")
        bootstrapped = True
    d = artifacts.batch_dir(context.partition_key)
    labels = serving.load_row_predictions(d, champion)
    info = serving_store.version_info(champion) or {}
    return MaterializeResult(metadata={
        "champion": champion,
        "previous": routing.previous or "",
        "rows_scored": len(labels),
        "distinct_keys": int(len(serving.load_prepared(d).keys)),
        "keys_in_version": int(info.get("keys", 0)),
        "generation": int(info.get("generation", 0)),
        "backfilled_windows": MetadataValue.json({v[:12]: s["scored_partitions"] for v, s in summaries.items()}),
        "started_serving": bootstrapped,
    })


@asset(
    group_name="predictions", partitions_def=batch_windows, kinds={"redis"},
    deps=[challenger_model, incoming_batch],
    description=(
        "The challenger's answers, scored in shadow over every row of this window (and "
        "backfilled over every kept window), so that promotion finds it complete. Scoring is "
        "refused for a version without a passing validity verdict, in any run."),
)
def challenger_predictions(context: AssetExecutionContext, artifacts: ArtifactStore, serving_store: ServingStore) -> MaterializeResult:
    challenger = read_pointer(artifacts, CHALLENGER_POINTER)
    routing = serving_store.routing()
    if not challenger:
        raise RefusedVersion("no challenger model: materialize challenger_model first")
    info = serving_store.version_info(challenger) or {}
    if challenger == routing.champion:
        return MaterializeResult(metadata={"challenger": challenger, "note": "the challenger is the serving champion; nothing to score"})
    if info.get("lifecycle") in ("rolled_back", "aborted"):
        return MaterializeResult(metadata={
            "challenger": challenger,
            "note": f"challenger was {info['lifecycle'].replace('_', ' ')}; retrain to test a new one"})
    summary = score_version_for_window(context, serving_store, artifacts, challenger)
    if routing.champion and routing.challenger != challenger:
        ok, reason, _ = serving_store.set_routing(
            routing.epoch, {"challenger": challenger, "strategy": settings.default_strategy(),
                            "salt": secrets.token_hex(8)},
            action="start", run_id=context.run_id)
        if not ok:
            raise RefusedVersion(f"could not start the experiment for {challenger[:12]}…: {reason}")
    serving_store.set_version_fields(challenger, lifecycle="shadow")
    d = artifacts.batch_dir(context.partition_key)
    labels = serving.load_row_predictions(d, challenger)
    info = serving_store.version_info(challenger) or {}
    return MaterializeResult(metadata={
        "challenger": challenger,
        "rows_scored": len(labels),
        "keys_in_version": int(info.get("keys", 0)),
        "generation": int(info.get("generation", 0)),
        "complete": info.get("complete") == "1",
        "backfilled_windows": MetadataValue.json(summary["scored_partitions"]),
    })
