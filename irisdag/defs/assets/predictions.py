"""Prediction assets: every routed version scores every row of every batch.

The champion (and the previous champion, kept scored so that rollback is
instant and complete) and the challenger each bring their answers up to date
over every kept batch, then answer this window's batch. Answers go to the
serving store; a per-window file keeps each row's answer for the comparison.
"""

import secrets

from dagster import AssetExecutionContext, Config, Failure, MaterializeResult, MetadataValue, asset
from pydantic import Field

from irisdag.store.resource import ServingStore
from irisdag import serving
from irisdag.core.decision import utc_now
from irisdag.core.strategies import DEFAULT_CHAMPION_FLOOR_BP
from irisdag.core.experiments import ExperimentPlan, initial_shares, initial_state
from irisdag.defs import settings
from irisdag.defs.assets.data import incoming_batch
from irisdag.defs.assets.models import (
    CHALLENGER_POINTER, challenger_model, champion_model, current_champion, read_pointer,
)
from irisdag.defs.partitions import batch_windows
from irisdag.defs.resources import ArtifactStore
from irisdag.models.artifacts import DigestMismatch, load_model
from irisdag.defs.settings import REDIS_RETRY
from irisdag.defs.retries import retry_transient_only


class RefusedVersion(Failure):
    """A version that may not be scored or routed: final, never retried."""

    def __init__(self, message: str):
        super().__init__(description=message, allow_retries=False)


def load_checked(serving_store: ServingStore, artifacts: ArtifactStore, version: str):
    """Load a version's model after checking its verdict and its digest.

    A refusal fails the step for good (``allow_retries=False``): retrying a
    tampered or unvalidated model cannot help, unlike a Redis blip.
    """
    try:
        return _load_checked(serving_store, artifacts, version)
    except DigestMismatch as err:
        raise RefusedVersion(str(err)) from err


def _load_checked(serving_store: ServingStore, artifacts: ArtifactStore, version: str):
    info = serving_store.version_info(version)
    if info is None:
        raise RefusedVersion(f"model version {version} is not registered in the serving store")
    if info.get("validated") != "1":
        raise RefusedVersion(
            f"model version {version[:12]}… has no passing validity verdict "
            f"(validated={info.get('validated')!r}: {info.get('validation_reason', 'no checks ran')}); "
            "refusing to score it")
    return load_model(artifacts.models_dir(), version, info["digest"])


def score_versions_for_window(context, serving_store: ServingStore, artifacts: ArtifactStore, versions) -> dict:
    """Bring each version up to date over every kept batch and answer this window.

    The working copy is synced once for all versions: pulled before, pushed after.
    """
    artifacts.pull("models", *[f"batches/{p}" for p in serving_store.kept_partitions()])
    d = artifacts.batch_dir(context.partition_key)
    summaries = {}
    for version in versions:
        booster = load_checked(serving_store, artifacts, version)
        summaries[version] = serving.bring_up_to_date(
            serving_store, booster, version, artifacts.batches_root(), log=context.log.info)
        if not serving.predictions_path(d, version).exists():
            # This window was re-materialized after the version covered it: answer it again.
            serving.score_batch(serving_store, booster, version, d)
    artifacts.push("batches")  # the per-window answer files the comparison reads
    return summaries


@asset(
    retry_policy=REDIS_RETRY,
    group_name="predictions", partitions_def=batch_windows, kinds={"redis"},
    deps=[champion_model, incoming_batch],
    description=(
        "The champion's answers (and the previous champion's, kept for instant rollback) for "
        "every distinct input of this window and of every earlier kept window not yet covered, "
        "written to Redis in pipelined chunks; the version is marked complete only after the "
        "last chunk. The first complete champion becomes the served one."),
)
@retry_transient_only
def champion_predictions(context: AssetExecutionContext, artifacts: ArtifactStore, serving_store: ServingStore) -> MaterializeResult:
    champion = current_champion(serving_store, artifacts)
    if not champion:
        raise RefusedVersion("no champion model: materialize champion_model first")
    routing = serving_store.routing()
    versions = [champion] + ([routing.previous] if routing.previous and routing.previous != champion else [])
    summaries = score_versions_for_window(context, serving_store, artifacts, versions)
    bootstrapped = False
    if not routing.champion:
        ok, reason, epoch = serving_store.set_routing(
            routing.epoch, {"champion": champion, "strategy": settings.default_strategy(),
                            "salt": secrets.token_hex(8), "holdout_bp": "0", "shares": "{}"},
            action="bootstrap", run_id=context.run.run_id)
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
        "distinct_keys": int(serving.load_prepared(d).n_keys),
        "keys_in_version": int(info.get("keys", 0)),
        "generation": int(info.get("generation", 0)),
        "backfilled_windows": MetadataValue.json({v[:12]: s["scored_partitions"] for v, s in summaries.items()}),
        "started_serving": bootstrapped,
    })


class ExperimentConfig(Config):
    """How a new challenger is tested (fixed when its experiment starts)."""

    strategy: str = Field(default=settings.default_strategy(),
                          description="single, shadow, ab, canary or bandit (default: IRISDAG_STRATEGY, else shadow).")
    feedback: str = Field(default="label", description="label (true labels: paired evidence) or outcome "
                                                       "(depends on what was served: each arm's own traffic).")
    holdout_bp: int = Field(default=0, description="Basis points of traffic that bypass every model (route holdout).")
    alpha: float = Field(default=settings.ALPHA, description="The bound on the error the strategy controls.")
    canary_steps_bp: list[int] = Field(default=[500, 2500, 5000, 10000], description="Canary ramp steps (basis points).")
    min_rows_per_step: int = Field(default=500, description="Canary: judged rows before a step may ramp.")
    delta: float = Field(default=0.01, description="Canary: non-inferiority margin (accuracy).")
    ab_share_bp: int = Field(default=5000, description="A/B: the challenger's share.")
    ab_power: float = Field(default=0.8, description="A/B: power of the planned test.")
    ab_baseline: float = Field(default=0.90, description="A/B: the champion accuracy the plan assumes.")
    ab_min_effect: float = Field(default=0.02, description="A/B: the smallest accuracy gain worth detecting.")
    ab_discordant: float = Field(default=0.10, description="A/B (label feedback): planned share of discordant rows.")
    bandit_threshold: float = Field(default=0.95, description="Bandit: P(best) that triggers the confirmatory test.")
    bandit_champion_floor_bp: int = Field(
        default=DEFAULT_CHAMPION_FLOOR_BP,
        description="Bandit: the champion's least share of the traffic not held out (basis points); outcome "
                    "feedback compares every arm with the champion's served rows.")
    extra_arms: list[str] = Field(default=[], description="Bandit: more validated challenger versions to include.")

    def plan(self, arms) -> ExperimentPlan:
        return ExperimentPlan(
            strategy=self.strategy, feedback=self.feedback, arms=tuple(arms), holdout_bp=self.holdout_bp,
            alpha=self.alpha, canary_steps_bp=tuple(self.canary_steps_bp), min_rows_per_step=self.min_rows_per_step,
            delta=self.delta, ab_share_bp=self.ab_share_bp, ab_power=self.ab_power, ab_baseline=self.ab_baseline,
            ab_min_effect=self.ab_min_effect, ab_discordant=self.ab_discordant,
            bandit_threshold=self.bandit_threshold, bandit_champion_floor_bp=self.bandit_champion_floor_bp)


def start_experiment(context, serving_store: ServingStore, plan: ExperimentPlan) -> str:
    """Route the new experiment in one compare-and-set and record its plan; returns its id (the salt)."""
    routing = serving_store.routing()
    salt = secrets.token_hex(8)
    # The plan is recorded before routing names it (a routed experiment never lacks its plan;
    # a plan whose routing was refused is never read); the arms' lifecycle is written by the
    # routing function itself, with the change.
    serving_store.experiment_put(salt, {"plan": plan.to_dict(), "state": initial_state(plan),
                                        "champion": routing.champion, "started_at": utc_now()})
    ok, reason, _ = serving_store.set_routing(
        routing.epoch, {"challenger": plan.arms[0], "strategy": plan.strategy, "salt": salt,
                        "holdout_bp": plan.holdout_bp, "shares": initial_shares(plan)},
        action="start", run_id=context.run.run_id,
        version_fields={arm: {"lifecycle": plan.strategy} for arm in plan.arms})
    if not ok:
        raise RefusedVersion(f"could not start the {plan.strategy} experiment for {plan.arms[0][:12]}…: {reason}")
    if routing.salt:
        serving_store.release_claims(routing.salt)  # the experiment this one replaces has ended
    return salt


@asset(
    retry_policy=REDIS_RETRY,
    group_name="predictions", partitions_def=batch_windows, kinds={"redis"},
    deps=[challenger_model, incoming_batch],
    description=(
        "The challenger's answers (every bandit arm's too) over every row of this window, "
        "backfilled over every kept window so it is complete before it serves anyone. A new "
        "challenger starts its experiment here: the strategy (single, shadow, A/B, canary, "
        "bandit) and its split are fixed and routed in one compare-and-set. Scoring is refused "
        "for a version without a passing validity verdict, in any run."),
)
@retry_transient_only
def challenger_predictions(context: AssetExecutionContext, config: ExperimentConfig, artifacts: ArtifactStore,
                           serving_store: ServingStore) -> MaterializeResult:
    challenger = read_pointer(artifacts, CHALLENGER_POINTER)
    routing = serving_store.routing()
    if not challenger:
        raise RefusedVersion("no challenger model: materialize challenger_model first")
    if not routing.champion:
        raise RefusedVersion("nothing is served yet: champion_predictions must run first")
    info = serving_store.version_info(challenger) or {}
    experiment = serving_store.experiment_get(routing.salt) if routing.salt else None
    running = experiment is not None and challenger in experiment["plan"]["arms"] and routing.challenger
    if challenger == routing.champion or (not running and info.get("lifecycle") in ("rolled_back", "aborted", "promoted")):
        note = ("the challenger is the serving champion" if challenger == routing.champion else
                f"the challenger was {info['lifecycle'].replace('_', ' ')}; retrain to test a new one")
        return MaterializeResult(metadata={"challenger": challenger, "note": note})
    arms = list(experiment["plan"]["arms"]) if running else [challenger, *config.extra_arms]
    summaries = score_versions_for_window(context, serving_store, artifacts, arms)
    started = False
    if not running:
        start_experiment(context, serving_store, config.plan(arms))
        started = True
    # The routing this window's traffic is served under (outcome feedback is judged by it).
    d = artifacts.batch_dir(context.partition_key)
    serving.write_json(d / "routing.json", serving_store.routing().to_hash())
    artifacts.push(f"batches/{context.partition_key}/routing.json")
    routing = serving_store.routing()
    info = serving_store.version_info(challenger) or {}
    return MaterializeResult(metadata={
        "challenger": challenger,
        "arms": MetadataValue.json(arms),
        "strategy": routing.strategy,
        "shares": MetadataValue.json(dict(routing.shares)),
        "experiment_started": started,
        "rows_scored": len(serving.load_prepared(d)),
        "keys_in_version": int(info.get("keys", 0)),
        "generation": int(info.get("generation", 0)),
        "complete": info.get("complete") == "1",
        "backfilled_windows": MetadataValue.json({a[:12]: s["scored_partitions"] for a, s in summaries.items()}),
    })
