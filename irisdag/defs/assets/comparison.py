"""The comparison: paired evidence of champion against challenger, judged only
on rows neither model trained on, and the decision the promotion sensor acts on."""

import json

import numpy as np
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from irisdag.store.resource import ServingStore
from irisdag import serving
from irisdag.core import strategies
from irisdag.core.decision import DecisionRecord, utc_now
from irisdag.defs import settings
from irisdag.defs.assets.data import feedback
from irisdag.defs.assets.models import CHALLENGER_POINTER, load_trained_keys, read_pointer
from irisdag.defs.assets.predictions import challenger_predictions, champion_predictions
from irisdag.defs.partitions import batch_windows
from irisdag.defs.resources import ArtifactStore


def window_evidence(artifacts: ArtifactStore, partition: str, champion: str, challenger: str) -> dict:
    """Per-window paired counts on the rows neither model learned from."""
    d = artifacts.batch_dir(partition)
    batch = serving.load_prepared(d)
    truth = np.load(d / "labels.npy").astype(np.int64)
    champ = serving.load_row_predictions(d, champion).astype(np.int64)
    chall = serving.load_row_predictions(d, challenger).astype(np.int64)
    row_keys = batch.keys[batch.inverse]
    trained = np.union1d(load_trained_keys(artifacts, champion), load_trained_keys(artifacts, challenger))
    judged = ~np.isin(row_keys, trained)
    champ_right = champ[judged] == truth[judged]
    chall_right = chall[judged] == truth[judged]
    return {
        "n": int(judged.sum()),
        "b": int((champ_right & ~chall_right).sum()),
        "c": int((~champ_right & chall_right).sum()),
        "champion_right": int(champ_right.sum()),
        "challenger_right": int(chall_right.sum()),
        "excluded": int((~judged).sum()),
    }


def decide(config, evidence, challenger_info: dict):
    """The strategy's decision on the evidence so far (pure core; see irisdag.core.strategies)."""
    lifecycle = challenger_info.get("lifecycle", "")
    if not evidence.challenger or evidence.challenger == evidence.champion or lifecycle in ("rolled_back", "aborted"):
        why = ("no challenger has been trained" if not evidence.challenger else
               "the challenger is the champion itself" if evidence.challenger == evidence.champion else
               f"the challenger was {lifecycle.replace('_', ' ')}")
        return DecisionRecord(
            decision_id="", strategy=config.strategy, evidence="paired", n=0, champion=evidence.champion,
            challenger=evidence.challenger, decision="continue",
            reason=f"Nothing to compare: {why}. Retrain a challenger to start an experiment.",
            alpha=config.alpha, created_at=utc_now()).with_id()
    if config.strategy == "single":
        return strategies.decide_single(challenger_info.get("validated") == "1", champion=evidence.champion,
                                        challenger=evidence.challenger)
    if config.strategy == "shadow":
        return strategies.decide_shadow(evidence, alpha=config.alpha, mixture=config.mixture)
    raise ValueError(f"strategy {config.strategy!r} is not available in this pipeline yet (use single or shadow)")


class ComparisonConfig(Config):
    strategy: str = Field(default=settings.default_strategy(), description="single or shadow (IRISDAG_STRATEGY).")
    alpha: float = Field(default=settings.ALPHA, description="Error bound of the decision.")
    mixture: float = Field(default=settings.MIXTURE, description="Beta(a, a) mixture parameter of the paired mSPRT.")


@asset(
    group_name="decision", partitions_def=batch_windows, kinds={"scipy"},
    deps=[champion_predictions, challenger_predictions, feedback],
    description=(
        "Joins both models' answers with the feedback labels and runs the test that fits the "
        "strategy: paired evidence on every judged row (b = champion right and challenger "
        "wrong, c = the reverse), accumulated over the experiment's windows with the paired "
        "mSPRT (always valid, so looking after every batch is allowed) and exact McNemar "
        "beside it. Rows either model trained on are not judged. The decision record is this "
        "asset's metadata; the promotion sensor acts on it."),
)
def comparison(context: AssetExecutionContext, config: ComparisonConfig, artifacts: ArtifactStore,
               serving_store: ServingStore) -> MaterializeResult:
    partition = context.partition_key
    routing = serving_store.routing()
    champion, challenger = routing.champion, read_pointer(artifacts, CHALLENGER_POINTER)
    if not champion:
        raise ValueError("nothing is served yet: champion_predictions must run first")
    experiment = f"{champion}:{challenger}"
    info = serving_store.version_info(challenger) or {}
    evidence = strategies.PairedEvidence(champion=champion, challenger=challenger)
    if challenger and challenger != champion and info.get("lifecycle") not in ("rolled_back", "aborted"):
        counts = window_evidence(artifacts, partition, champion, challenger)
        serving_store.evidence_put(experiment, partition, counts)
        per_window = serving_store.evidence_all(experiment)
        for p in sorted(per_window):  # windows in time order: each is one look
            w = per_window[p]
            evidence = evidence.add_batch(b=w["b"], c=w["c"], n=w["n"], champion_right=w["champion_right"],
                                          challenger_right=w["challenger_right"], partition=p,
                                          n_excluded=w.get("excluded", 0))
    record = decide(config, evidence, info)
    rec = record.to_dict()
    serving_store.record_decision(rec)
    context.log.info(f"decision {rec['decision_id']}: {rec['decision']} — {rec['reason']}")
    return MaterializeResult(metadata={
        "decision": rec["decision"],
        "decision_id": rec["decision_id"],
        "reason": rec["reason"],
        "n": rec["n"],
        "p_value": MetadataValue.float(float(rec["p_value"])) if rec.get("p_value") is not None else MetadataValue.text("n/a"),
        "decision_record": MetadataValue.md(record.to_markdown()),
        "decision_json": MetadataValue.json(json.loads(json.dumps(rec, default=str))),
        "windows_judged": MetadataValue.json(list(rec["partitions"])),
    })
