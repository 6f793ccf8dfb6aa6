"""The promotion sensor: reads the newest decision and requests the job that
carries it out. Run key = the decision's id, so a decision acts once."""

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SkipReason, sensor

from irisdag.store.resource import ServingStore
from irisdag.defs.jobs import abort, promote, ramp

ACTIONS = {"promote": (promote, "promote_challenger"), "abort": (abort, "abort_challenger"),
           "ramp": (ramp, "ramp_challenger")}


@sensor(jobs=[promote, abort, ramp], minimum_interval_seconds=30, default_status=DefaultSensorStatus.STOPPED,
        description="Carries out the newest decision: `promote`, `abort` (routing restored to the champion) "
                    "or `ramp` (the canary's next step, the bandit's new shares).")
def promotion_sensor(context: SensorEvaluationContext, serving_store: ServingStore):
    decision = serving_store.latest_decision()
    if not decision:
        return SkipReason("no decision recorded yet")
    action = decision.get("decision")
    if action not in ACTIONS:
        return SkipReason(f"newest decision {decision.get('decision_id')} says {action}: nothing to do")
    if serving_store.routing().champion != decision.get("champion"):
        return SkipReason(f"decision {decision.get('decision_id')} was made against a champion no longer served")
    job_def, op_name = ACTIONS[action]
    return RunRequest(
        run_key=decision["decision_id"],
        job_name=job_def.name,
        run_config={"ops": {op_name: {"config": {"decision_id": decision["decision_id"]}}}},
        tags={"irisdag/decision_id": decision["decision_id"], "irisdag/champion": decision.get("champion", ""),
              "irisdag/challenger": decision.get("challenger", ""), "irisdag/action": action},
    )
