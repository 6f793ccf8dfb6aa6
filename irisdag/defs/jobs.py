"""Jobs that change what is served. Each goes through the one Redis routing
function (epoch compare-and-set, validated/complete/coverage checks), which
also writes the audit stream; each is a run in the UI, tagged with versions."""
from dagster import (
    AssetMaterialization, Config, Failure, OpExecutionContext, define_asset_job, job, op,
)
from pydantic import Field

from irisdag.defs.assets.comparison import comparison
from irisdag.defs.assets.data import feedback, incoming_batch
from irisdag.defs.assets.predictions import challenger_predictions, champion_predictions
from irisdag.defs.settings import REDIS_RETRY
from irisdag.store.resource import ServingStore



class DecisionConfig(Config):
    decision_id: str = Field(default="", description="The decision to carry out; empty = the newest decision.")


def _refuse(context, message: str, serving_store: ServingStore | None = None, action: str = "",
            decision_id: str = ""):
    """Fail the run with a clear message; refusals decided here (not by the routing
    function, which audits its own) are written to the audit stream too."""
    context.log.error(message)
    if serving_store is not None:
        serving_store.audit_refusal(action, message, decision_id=decision_id, run_id=context.run_id)
    raise Failure(description=message, allow_retries=False)


def _decision_for(context, config: DecisionConfig, serving_store: ServingStore, action: str):
    """The newest decision, which must be the one requested, say `action`, and concern the served champion."""
    decision = serving_store.latest_decision() or {}
    did = decision.get("decision_id", "")
    if config.decision_id and did != config.decision_id:
        _refuse(context, f"decision {config.decision_id} is no longer the newest (newest: {did or 'none'})",
                serving_store, action, config.decision_id)
    if decision.get("decision") != action:
        _refuse(context, f"the newest decision is {decision.get('decision')!r}, not {action}", serving_store, action, did)
    routing = serving_store.routing()
    if routing.champion != decision.get("champion"):
        _refuse(context, f"decision {did} was made against champion {decision.get('champion', '')[:12]}…, "
                         f"but {routing.champion[:12]}… is served now", serving_store, action, did)
    return decision, routing


@op(retry_policy=REDIS_RETRY, description="Make the decided challenger the champion; the old champion becomes `previous`.")
def promote_challenger(context: OpExecutionContext, config: DecisionConfig, serving_store: ServingStore) -> dict:
    decision, routing = _decision_for(context, config, serving_store, "promote")
    champion, challenger, did = decision["champion"], decision["challenger"], decision["decision_id"]
    ok, reason, epoch = serving_store.set_routing(
        routing.epoch, {"champion": challenger, "previous": champion, "challenger": "", "shares": "{}"},
        action="promote", decision_id=did, run_id=context.run_id)
    if not ok:
        _refuse(context, f"promotion of {challenger[:12]}… refused: {reason}")
    serving_store.set_version_fields(challenger, lifecycle="promoted", role="champion")
    serving_store.set_version_fields(champion, role="previous")
    for other in {v for v, _ in routing.shares} - {challenger}:  # the bandit's other arms
        serving_store.set_version_fields(other, lifecycle="aborted")
    context.log_event(AssetMaterialization(
        asset_key="champion_model", description=f"promoted by decision {did}",
        metadata={"version": challenger, "previous": champion, "decision_id": did, "epoch": epoch}))
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


@op(retry_policy=REDIS_RETRY, description="End an experiment the decision found worse: every arm stops serving, "
                                          "the champion serves all traffic again.")
def abort_challenger(context: OpExecutionContext, config: DecisionConfig, serving_store: ServingStore) -> dict:
    decision, routing = _decision_for(context, config, serving_store, "abort")
    ok, reason, epoch = serving_store.set_routing(
        routing.epoch, {"challenger": "", "shares": "{}"}, action="abort",
        decision_id=decision["decision_id"], run_id=context.run_id)
    if not ok:
        _refuse(context, f"abort refused: {reason}")
    aborted = sorted({decision["challenger"], *[v for v, _ in routing.shares]} - {""})
    for version in aborted:
        serving_store.set_version_fields(version, lifecycle="aborted")
    return {"aborted": aborted, "epoch": epoch}


@op(retry_policy=REDIS_RETRY, description="Apply the shares a canary or bandit decision asks for (epoch compare-and-set).")
def ramp_challenger(context: OpExecutionContext, config: DecisionConfig, serving_store: ServingStore) -> dict:
    decision, routing = _decision_for(context, config, serving_store, "ramp")
    shares = [(v, int(bp)) for v, bp in decision.get("shares_bp", {}).items() if int(bp) > 0]
    ok, reason, epoch = serving_store.set_routing(
        routing.epoch, {"shares": shares}, action="ramp", decision_id=decision["decision_id"], run_id=context.run_id)
    if not ok:
        _refuse(context, f"ramp refused: {reason}")
    for version, bp in decision.get("shares_bp", {}).items():
        serving_store.set_version_fields(version, lifecycle=f"{routing.strategy} {int(bp) / 100:g}%")
    return {"shares": dict(shares), "epoch": epoch}


@job(tags={"irisdag/action": "promote"},
     description="Promote the challenger named by the newest decision (requested by the promotion sensor).")
def promote():
    promote_challenger()


@job(tags={"irisdag/action": "rollback"},
     description="Roll back to the previous champion. Run it from the UI or `irisdag rollback`.")
def rollback():
    rollback_champion()


@job(tags={"irisdag/action": "abort"},
     description="Abort the experiment the newest decision found worse (requested by the promotion sensor).")
def abort():
    abort_challenger()


@job(tags={"irisdag/action": "ramp"},
     description="Change the canary step or the bandit's shares as the newest decision asks (requested by the sensor).")
def ramp():
    ramp_challenger()


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
