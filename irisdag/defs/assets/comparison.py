"""The comparison: the evidence each strategy needs, judged only on rows no
compared model trained on (by their features), each input once per
experiment, and the decision the promotion sensor acts on."""
import json

import numpy as np
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from irisdag import serving
from irisdag.core import experiments
from irisdag.core.decision import DecisionRecord
from irisdag.core.routing import Routing
from irisdag.defs.assets.data import feedback
from irisdag.defs.assets.models import load_trained_keys
from irisdag.defs.assets.predictions import challenger_predictions, champion_predictions
from irisdag.defs.partitions import batch_windows
from irisdag.defs.settings import REDIS_RETRY
from irisdag.defs.retries import retry_transient_only
from irisdag.defs.reports import accuracy_plot_markdown, accuracy_svg, accuracy_table, window_accuracies
from irisdag.defs.resources import ArtifactStore
from irisdag.store.resource import ServingStore


def window_counts(artifacts: ArtifactStore, partition: str, champion: str, arms, routing: Routing,
                  serving_store: ServingStore | None = None, experiment: str = "") -> dict:
    """One window's evidence: paired per arm, served per arm (outcome feedback), holdout apart.

    Count once: each input (its features, and its id in an id-keyed batch) is
    judged at most once per experiment, in the first window that claims it
    (``serving_store.claim_inputs``); later rows of it — re-read or repeated —
    are counted as repeated. Rows whose features a compared model trained on
    are excluded, whatever the batch is keyed by.
    """
    d = artifacts.batch_dir(partition)
    batch = serving.load_prepared(d)
    truth = np.load(d / "labels.npy").astype(np.int64)
    inverse = np.asarray(batch.inverse)
    claim = None
    if serving_store is not None and experiment:
        def claim(tokens):
            return serving_store.claim_inputs(experiment, partition, tokens)
    judging = experiments.judge_window(
        inverse, experiments.feature_tokens(batch.digests, batch.q, batch.keyed_by_id),
        [load_trained_keys(artifacts, version) for version in (champion, *arms)],
        ids=experiments.id_tokens(batch.id_keys) if batch.keyed_by_id else None, claim=claim)
    snapshot = serving.read_json(d / "routing.json")
    # Routing depends on the key only: route each distinct key once, then spread to rows.
    served_by = experiments.served_routes(batch.keys, Routing.from_hash(snapshot) if snapshot else routing)[inverse]
    ev = experiments.count_window(
        truth, serving.load_row_predictions(d, champion).astype(np.int64),
        {arm: serving.load_row_predictions(d, arm).astype(np.int64) for arm in arms}, served_by,
        judging.judged, excluded=judging.excluded, repeated=judging.repeated)
    return {"paired": ev.paired, "served": ev.served, "holdout": ev.holdout}


@asset(
    retry_policy=REDIS_RETRY,
    group_name="decision", partitions_def=batch_windows, kinds={"scipy"},
    deps=[champion_predictions, challenger_predictions, feedback],
    description=(
        "Joins every routed version's answers with the feedback and runs the test the "
        "experiment's strategy and feedback kind call for: with label feedback, paired "
        "evidence on every judged row (b = champion right and challenger wrong, c = the "
        "reverse); with outcome feedback, each arm's served traffic, stratified by window. "
        "Sequential strategies look after every window with always-valid tests; A/B decides "
        "once at its planned n. Rows a compared model trained on (by their features) are not "
        "judged; each input (features, or id) is judged once per experiment, repeats are counted; "
        "held-out rows are reported apart. The decision record is this asset's metadata."),
)
@retry_transient_only
def comparison(context: AssetExecutionContext, artifacts: ArtifactStore, serving_store: ServingStore) -> MaterializeResult:
    partition = context.partition_key
    artifacts.pull("models", f"batches/{partition}")
    routing = serving_store.routing()
    if not routing.champion:
        raise ValueError("nothing is served yet: champion_predictions must run first")
    experiment = serving_store.experiment_get(routing.salt) if routing.salt and routing.challenger else None
    windows: dict = {}
    plan = None
    if experiment is None:
        serving_store.release_claims()  # an experiment that has ended keeps no claims
        record = experiments.nothing_to_compare(
            routing.strategy, routing.champion, routing.challenger,
            "no experiment is running (train a challenger to start one)", 0.05)
    elif not (artifacts.batch_dir(partition) / "labels.npy").exists():
        # A batch whose labels have not arrived: scored and served, nothing judged (the
        # experiment's state is untouched; the window is judged when its feedback is attached).
        record = experiments.nothing_to_compare(
            routing.strategy, routing.champion, routing.challenger,
            f"no feedback has arrived for window {partition} yet, so there is nothing to judge", 0.05)
    else:
        plan = experiments.ExperimentPlan.from_dict(experiment["plan"])
        champion = experiment["champion"]
        counts = window_counts(artifacts, partition, champion, plan.arms, routing, serving_store, routing.salt)
        serving_store.evidence_put(routing.salt, partition, counts)
        windows = serving_store.evidence_all(routing.salt)
        if experiment.get("final"):
            # Decided already; the sensor's job has not carried it out yet. Same record, same id.
            record = DecisionRecord.from_dict(experiment["final"])
        else:
            validated = (serving_store.version_info(plan.arms[0]) or {}).get("validated") == "1"
            record, state = experiments.decide(plan, experiment["state"], champion, windows, validated)
            update = {"state": state}
            if record.decision in ("promote", "abort"):
                update["final"] = record.to_dict()
            serving_store.experiment_put(routing.salt, update)
    rec = record.to_dict()
    serving_store.record_decision(rec)
    context.log.info(f"decision {rec['decision_id']}: {rec['decision']} — {rec['reason']}")
    metadata = {
        "decision": rec["decision"],
        "decision_id": rec["decision_id"],
        "strategy": rec["strategy"],
        "reason": rec["reason"],
        "n": rec["n"],
        "n_excluded": rec.get("n_excluded", 0),
        "n_repeated": rec.get("n_repeated", 0),
        "not_judged": rec.get("not_judged", ""),
        "p_value": MetadataValue.float(float(rec["p_value"])) if rec.get("p_value") is not None else MetadataValue.text("n/a"),
        "decision_record": MetadataValue.md(record.to_markdown()),
        "decision_json": MetadataValue.json(json.loads(json.dumps(rec, default=str))),
        "windows_judged": MetadataValue.json(list(rec["partitions"])),
    }
    if plan is not None and windows:
        metadata["accuracy_by_window"] = MetadataValue.md(accuracy_table(windows, experiment["champion"], plan.arms))
        svg_path = artifacts.dir("reports") / f"accuracy-{routing.salt}.svg"
        svg_path.write_text(accuracy_svg(windows, experiment["champion"], plan.arms))
        artifacts.push(f"reports/{svg_path.name}")
        # A picture on the page (an inline SVG), and this window's accuracies as numbers,
        # which the UI plots across partitions (the asset's Events > Plots).
        plot = {"accuracy_plot": MetadataValue.md(accuracy_plot_markdown(windows, experiment["champion"], plan.arms))}
        metadata = {**{k: v for k, v in metadata.items() if k in ("decision", "decision_id", "strategy", "reason")},
                    **plot, **{k: v for k, v in metadata.items() if k not in plot}}
        metadata.update({k: MetadataValue.float(v) for k, v in window_accuracies(
            windows, experiment["champion"], plan.arms, context.partition_key).items()})
        held = [w.get("holdout", {}) for w in windows.values()]
        n_held = sum(h.get("n", 0) for h in held)
        metadata["holdout_rows"] = n_held
        if n_held:
            metadata["holdout_champion_accuracy"] = sum(h.get("champion_right", 0) for h in held) / n_held
    return MaterializeResult(metadata=metadata)
