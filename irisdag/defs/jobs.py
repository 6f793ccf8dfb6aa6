"""Jobs that change what is served. Each goes through the one Redis routing
function (epoch compare-and-set, validated/complete/coverage checks), which
also writes the audit stream; each is a run in the UI, tagged with versions."""
import redis
from dagster import (
    AssetCheckEvaluation, AssetCheckSeverity, AssetKey, AssetMaterialization, Config, Failure, OpExecutionContext,
    define_asset_job, job, op,
)
from pydantic import Field

from irisdag.defs.assets.comparison import comparison
from irisdag.defs.assets.data import feedback, incoming_batch
from irisdag.defs.assets.predictions import challenger_predictions, champion_predictions
from irisdag.defs.settings import REDIS_RETRY
from irisdag.defs.retries import retry_transient_only
from irisdag.store.resource import ServingStore, StoreError



class DecisionConfig(Config):
    decision_id: str = Field(default="", description="The decision to carry out; empty = the newest decision.")


def _refuse(context, message: str, serving_store: ServingStore | None = None, action: str = "",
            decision_id: str = ""):
    """Fail the run with a clear message; refusals decided here (not by the routing
    function, which audits its own) are written to the audit stream too."""
    context.log.error(message)
    if serving_store is not None:
        try:
            serving_store.audit_refusal(action, message, decision_id=decision_id, run_id=context.run_id)
        except (redis.RedisError, StoreError) as err:  # e.g. a full Redis: the refusal itself stands
            context.log.warning(f"the refusal could not be audited: {err}")
    raise Failure(description=message, allow_retries=False)


def _held(serving_store: ServingStore, **extra) -> dict:
    """What Redis holds now: the routing the run reports (never what it meant to write)."""
    routing = serving_store.routing()
    return {"champion": routing.champion, "previous": routing.previous, "challenger": routing.challenger,
            "shares": dict(routing.shares), "epoch": routing.epoch, **extra}


def _already_applied(context, serving_store: ServingStore, operation: str) -> dict | None:
    """When this operation already took effect (a retried step, a re-executed run): what Redis holds."""
    epoch = serving_store.applied_operation(operation)
    if epoch is None:
        return None
    context.log.info(f"{operation} already applied at epoch {epoch}; nothing to do again")
    return _held(serving_store, operation=operation, applied_epoch=epoch, already_applied=True)


def _newest_decision_id(config: DecisionConfig, serving_store: ServingStore) -> str:
    return config.decision_id or (serving_store.latest_decision() or {}).get("decision_id", "")


def _decision_for(context, config: DecisionConfig, serving_store: ServingStore, action: str):
    """The newest decision, which must be the one requested, say `action`, and concern the served champion;
    routing None when this decision's operation was applied meanwhile (by a concurrent run)."""
    decision = serving_store.latest_decision() or {}
    did = decision.get("decision_id", "")
    if config.decision_id and did != config.decision_id:
        _refuse(context, f"decision {config.decision_id} is no longer the newest (newest: {did or 'none'})",
                serving_store, action, config.decision_id)
    if decision.get("decision") != action:
        _refuse(context, f"the newest decision is {decision.get('decision')!r}, not {action}", serving_store, action, did)
    routing = serving_store.routing()
    if routing.champion != decision.get("champion"):
        if serving_store.applied_operation(f"{action}:{did}") is not None:
            return decision, None  # another run carried this decision out meanwhile: not a refusal
        _refuse(context, f"decision {did} was made against champion {decision.get('champion', '')[:12]}…, "
                         f"but {routing.champion[:12]}… is served now", serving_store, action, did)
    return decision, routing


@op(retry_policy=REDIS_RETRY, description="Make the decided challenger the champion; the old champion becomes `previous`.")
@retry_transient_only
def promote_challenger(context: OpExecutionContext, config: DecisionConfig, serving_store: ServingStore) -> dict:
    operation = f"promote:{_newest_decision_id(config, serving_store)}"
    done = _already_applied(context, serving_store, operation)
    if done is not None:
        return done
    decision, routing = _decision_for(context, config, serving_store, "promote")
    if routing is None:
        return _already_applied(context, serving_store, f"promote:{decision['decision_id']}")
    champion, challenger, did = decision["champion"], decision["challenger"], decision["decision_id"]
    fields = {other: {"lifecycle": "aborted"} for other in {v for v, _ in routing.shares} - {challenger}}
    fields[challenger] = {"lifecycle": "promoted", "role": "champion"}  # the bandit's other arms: aborted
    fields[champion] = {"role": "previous"}
    ok, reason, epoch = serving_store.set_routing(
        routing.epoch, {"champion": challenger, "previous": champion, "challenger": "", "shares": "{}"},
        action="promote", decision_id=did, run_id=context.run_id, operation=f"promote:{did}",
        version_fields=fields)
    if not ok:
        _refuse(context, f"promotion of {challenger[:12]}… refused: {reason}")
    context.log_event(AssetMaterialization(
        asset_key="champion_model", description=f"promoted by decision {did}",
        metadata={"version": challenger, "previous": champion, "decision_id": did, "epoch": epoch}))
    context.log_event(champion_verdict(serving_store, challenger))
    return _held(serving_store, operation=f"promote:{did}", outcome=reason)


def champion_verdict(serving_store: ServingStore, version: str) -> AssetCheckEvaluation:
    """The blocking validity check of the champion_model materialization this job records:
    the served version's own verdict (the routing function serves only validated versions),
    so the UI shows it evaluated, not "Not evaluated", after a promotion or rollback."""
    info = serving_store.version_info(version) or {}
    passed = info.get("validated") == "1"
    why = info.get("validated_reason") or ("validated" if passed else "no passing verdict recorded")
    return AssetCheckEvaluation(
        asset_key=AssetKey("champion_model"), check_name="champion_model_validity", passed=passed,
        severity=AssetCheckSeverity.ERROR, description=f"champion {version[:12]}…: {why} (its recorded verdict)",
        metadata={"version": version, "validated_at": info.get("validated_at", "")})


@op(retry_policy=REDIS_RETRY, description="Restore the previous champion (kept scored, so this is instant and complete).")
@retry_transient_only
def rollback_champion(context: OpExecutionContext, serving_store: ServingStore) -> dict:
    operation = f"rollback:{context.run_id}"  # a retried step of this run rolls back once
    done = _already_applied(context, serving_store, operation)
    if done is not None:
        return done
    routing = serving_store.routing()
    if not routing.previous:
        _refuse(context, "there is no previous champion to roll back to", serving_store, "rollback")
    bad, restored = routing.champion, routing.previous
    ok, reason, epoch = serving_store.set_routing(
        routing.epoch, {"champion": restored, "previous": "", "challenger": "", "shares": "{}"},
        action="rollback", run_id=context.run_id, operation=operation,
        version_fields={bad: {"lifecycle": "rolled_back", "role": "retired"}, restored: {"role": "champion"}})
    if not ok:
        _refuse(context, f"rollback to {restored[:12]}… refused: {reason}")
    context.log_event(AssetMaterialization(
        asset_key="champion_model", description=f"rolled back from {bad[:12]}…",
        metadata={"version": restored, "rolled_back": bad, "epoch": epoch}))
    context.log_event(champion_verdict(serving_store, restored))
    return _held(serving_store, operation=operation, rolled_back=bad, outcome=reason)


@op(retry_policy=REDIS_RETRY, description="End an experiment the decision found worse: every arm stops serving, "
                                          "the champion serves all traffic again.")
@retry_transient_only
def abort_challenger(context: OpExecutionContext, config: DecisionConfig, serving_store: ServingStore) -> dict:
    operation = f"abort:{_newest_decision_id(config, serving_store)}"
    done = _already_applied(context, serving_store, operation)
    if done is not None:
        return done
    decision, routing = _decision_for(context, config, serving_store, "abort")
    if routing is None:
        return _already_applied(context, serving_store, f"abort:{decision['decision_id']}")
    aborted = sorted({decision["challenger"], *[v for v, _ in routing.shares]} - {""})
    did = decision["decision_id"]
    ok, reason, epoch = serving_store.set_routing(
        routing.epoch, {"challenger": "", "shares": "{}"}, action="abort",
        decision_id=did, run_id=context.run_id, operation=f"abort:{did}",
        version_fields={v: {"lifecycle": "aborted"} for v in aborted})
    if not ok:
        _refuse(context, f"abort refused: {reason}")
    return _held(serving_store, operation=f"abort:{did}", aborted=aborted, outcome=reason)


@op(retry_policy=REDIS_RETRY, description="Apply the shares a canary or bandit decision asks for (epoch compare-and-set).")
@retry_transient_only
def ramp_challenger(context: OpExecutionContext, config: DecisionConfig, serving_store: ServingStore) -> dict:
    operation = f"ramp:{_newest_decision_id(config, serving_store)}"
    done = _already_applied(context, serving_store, operation)
    if done is not None:
        return done
    decision, routing = _decision_for(context, config, serving_store, "ramp")
    if routing is None:
        return _already_applied(context, serving_store, f"ramp:{decision['decision_id']}")
    shares = [(v, int(bp)) for v, bp in decision.get("shares_bp", {}).items() if int(bp) > 0]
    did = decision["decision_id"]
    ok, reason, epoch = serving_store.set_routing(
        routing.epoch, {"shares": shares}, action="ramp", decision_id=did, run_id=context.run_id,
        operation=f"ramp:{did}",
        version_fields={v: {"lifecycle": f"{routing.strategy} {int(bp) / 100:g}%"}
                        for v, bp in decision.get("shares_bp", {}).items()})
    if not ok:
        _refuse(context, f"ramp refused: {reason}")
    return _held(serving_store, operation=f"ramp:{did}", outcome=reason)


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
