"""Jobs that change what is served. Each goes through the one Redis routing
function (epoch compare-and-set, validated/complete/coverage checks), which
also writes the audit stream; each is a run in the UI, tagged with versions."""

from dagster import (
    AssetMaterialization, Config, Failure, OpExecutionContext, RetryPolicy, define_asset_job, job, op,
)
from pydantic import Field

from irisdag.store.resource import ServingStore
from irisdag.defs.assets.comparison import comparison
from irisdag.defs.assets.data import feedback, incoming_batch
from irisdag.defs.assets.predictions import challenger_predictions, champion_predictions

REDIS_RETRY = RetryPolicy(max_retries=2, delay=1.0)


class PromoteConfig(Config):
    decision_id: str = Field(default="", description="The decision to carry out; empty = the newest decision.")


def _refuse(context, message: str, serving_store: ServingStore | None = None, action: str = "", decision_id: str = ""):
    """Fail the run with a clear message; refusals decided here (not by the routing
    function, which audits its own) are written to the audit stream too."""
    context.log.error(message)
    if serving_store is not None:
        serving_store.audit_refusal(action, message, decision_id=decision_id, run_id=context.run_id)
    raise Failure(description=message, allow_retries=False)  # a refusal is final, not transient


@op(retry_policy=REDIS_RETRY, description="Make the decided challenger the champion; the old champion becomes `previous`.")
def promote_challenger(context: OpExecutionContext, config: PromoteConfig, serving_store: ServingStore) -> dict:
    decision = serving_store.latest_decision() or {}
    did = decision.get("decision_id", "")
    if config.decision_id and did != config.decision_id:
        _refuse(context, f"decision {config.decision_id} is no longer the newest (newest: {did})",
                serving_store, "promote", config.decision_id)
    if decision.get("decision") != "promote":
        _refuse(context, f"the newest decision is {decision.get('decision')!r}, not promote", serving_store, "promote", did)
    routing = serving_store.routing()
    champion, challenger = decision["champion"], decision["challenger"]
    if routing.champion != champion:
        _refuse(context, f"decision {did} was made against champion {champion[:12]}…, "
                         f"but {routing.champion[:12]}… is served now", serving_store, "promote", did)
    ok, reason, epoch = serving_store.set_routing(
        routing.epoch, {"champion": challenger, "previous": champion, "challenger": "", "shares": "{}"},
        action="promote", decision_id=decision["decision_id"], run_id=context.run_id)
    if not ok:
        _refuse(context, f"promotion of {challenger[:12]}… refused: {reason}")
    serving_store.set_version_fields(challenger, lifecycle="promoted", role="champion")
    serving_store.set_version_fields(champion, role="previous")
    context.log_event(AssetMaterialization(
        asset_key="champion_model", description=f"promoted by decision {decision['decision_id']}",
        metadata={"version": challenger, "previous": champion, "decision_id": decision["decision_id"], "epoch": epoch}))
    return {"champion": challenger, "previous": champion, "epoch": epoch}


@op(retry_policy=REDIS_RETRY, description="Restore the previous champion (kept scored, so this is instant and complete).")
def rollback_champion(context: OpExecutionContext, serving_store: ServingStore) -> dict:
    routing = serving_store.routing()
    if not routing.previous:
        _refuse(context, "there is no previous champion to roll back to", serving_store, "rollback")
    bad, restored = routing.champion, routing.previous
    ok, reason, epoch = serving_store.set_routing(
        routing.epoch, {"champion": restored, "previous": "", "challenger": "", "shares": "{}"},
        action="rollback", run_id=context.run_id)
    if not ok:
        _refuse(context, f"rollback to {restored[:12]}… refused: {reason}")
    serving_store.set_version_fields(bad, lifecycle="rolled_back", role="retired")
    serving_store.set_version_fields(restored, role="champion")
    context.log_event(AssetMaterialization(
        asset_key="champion_model", description=f"rolled back from {bad[:12]}…",
        metadata={"version": restored, "rolled_back": bad, "epoch": epoch}))
    return {"champion": restored, "rolled_back": bad, "epoch": epoch}


@op(retry_policy=REDIS_RETRY, description="End the experiment of a challenger the decision found worse; routing keeps the champion.")
def abort_challenger(context: OpExecutionContext, config: PromoteConfig, serving_store: ServingStore) -> dict:
    decision = serving_store.latest_decision() or {}
    did = decision.get("decision_id", "")
    if config.decision_id and did != config.decision_id:
        _refuse(context, f"decision {config.decision_id} is no longer the newest", serving_store, "abort", config.decision_id)
    if decision.get("decision") != "abort":
        _refuse(context, f"the newest decision is {decision.get('decision')!r}, not abort", serving_store, "abort", did)
    routing = serving_store.routing()
    ok, reason, epoch = serving_store.set_routing(
        routing.epoch, {"challenger": "", "shares": "{}"}, action="abort",
        decision_id=decision["decision_id"], run_id=context.run_id)
    if not ok:
        _refuse(context, f"abort refused: {reason}")
    serving_store.set_version_fields(decision["challenger"], lifecycle="aborted")
    return {"aborted": decision["challenger"], "epoch": epoch}


@job(description="Promote the challenger named by the newest decision (requested by the promotion sensor).")
def promote():
    promote_challenger()


@job(description="Roll back to the previous champion. Run it from the UI or `irisdag rollback`.")
def rollback():
    rollback_champion()


@job(description="Abort the challenger named by the newest decision (requested by the promotion sensor).")
def abort():
    abort_challenger()


score_batch_job = define_asset_job(
    "score_batch",
    selection=[incoming_batch, feedback, champion_predictions, challenger_predictions, comparison],
    description="Score one window's batch with every routed version, attach feedback, compare, decide.",
)

retrain_job = define_asset_job(
    "retrain_challenger",
    selection=["raw_iris", "trusted_test_set", "challenger_model"],
    description="Retrain a challenger on the iris table plus the feedback accumulated so far, and validate it.",
)
