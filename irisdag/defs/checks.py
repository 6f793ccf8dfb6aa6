"""Asset checks: model validity (blocking), batch data quality, prediction
coverage and the serving store's consistency. Severity ERROR fails CI."""

import numpy as np
from dagster import (
    AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check,
)

from irisdag.store.resource import ServingStore
from irisdag import serving
from irisdag.defs import settings
from irisdag.core.batches import quarantine_summary
from irisdag.defs.assets.data import PARTITION_TAG, feedback, incoming_batch, trusted_test_set
from irisdag.defs.assets.models import (
    CHALLENGER_POINTER, CHAMPION_POINTER, challenger_model, champion_model, current_champion, read_pointer,
)
from irisdag.defs.assets.predictions import champion_predictions
from irisdag.defs.resources import ArtifactStore
from irisdag.models.artifacts import CLASSES, DigestMismatch, load_model, predict_labels

SMOKE_INPUT = (5.0, 2.9, 1.1, 0.4)  # the course slides' example row


def trusted_accuracy(booster, artifacts: ArtifactStore) -> tuple[float, np.ndarray]:
    data = np.load(artifacts.data_path("trusted_test_set.npz"))
    pred = predict_labels(booster, data["X"]).astype(np.int64)
    return float((pred == data["y"]).mean()), pred


def judge_version(version: str, role: str, serving_store: ServingStore, artifacts: ArtifactStore,
                  min_accuracy: float = settings.MIN_ACCURACY,
                  margin: float = settings.CHALLENGER_MARGIN) -> AssetCheckResult:
    """Run every validity test on a version and record the verdict on the version itself.

    Blocking checks only stop downstream steps within one run, so the verdict is
    also written to ``irisdag:version:<v>``: scoring, routing and promotion refuse
    a version without ``validated = 1`` in any later run.
    """
    problems, meta = [], {"version": version}
    artifacts.pull("models", "data/trusted_test_set.npz")
    info = serving_store.version_info(version)
    if info is None:
        problems.append("not registered in the serving store")
        booster = None
    else:
        try:
            booster = load_model(artifacts.models_dir(), version, info["digest"])
        except (DigestMismatch, FileNotFoundError, ValueError) as err:
            problems.append(f"does not load from its artifact: {err}")
            booster = None
    if booster is not None:
        accuracy, pred = trusted_accuracy(booster, artifacts)
        meta["trusted_accuracy"] = round(accuracy, 4)
        missing = sorted(set(range(len(CLASSES))) - set(np.unique(pred).tolist()))
        if missing:
            problems.append(f"never predicts {', '.join(CLASSES[i] for i in missing)} on the trusted test set")
        if accuracy < min_accuracy:
            problems.append(f"accuracy {accuracy:.3f} on the trusted test set is below min_accuracy {min_accuracy}")
        if role == "challenger":
            champion = current_champion(serving_store, artifacts)
            if champion and champion != version:
                champ_info = serving_store.version_info(champion) or {}
                champ_booster = load_model(artifacts.models_dir(), champion, champ_info.get("digest", ""))
                champ_acc, _ = trusted_accuracy(champ_booster, artifacts)
                meta["champion_trusted_accuracy"] = round(champ_acc, 4)
                if accuracy < champ_acc - margin:
                    problems.append(
                        f"accuracy {accuracy:.3f} trails the champion's {champ_acc:.3f} by more than the margin {margin}")
        smoke = serving.prepare(np.array([SMOKE_INPUT]))
        label = int(predict_labels(booster, smoke.Xq)[0])
        meta["smoke_prediction"] = f"{' '.join(map(str, SMOKE_INPUT))} -> {CLASSES[label] if 0 <= label < 3 else label}"
        if not 0 <= label < len(CLASSES):
            problems.append(f"smoke prediction returned {label}, not a class")
    ok = not problems
    reason = "passed every validity test" if ok else "; ".join(problems)
    if info is not None:
        serving_store.set_validated(version, ok, reason)
        if role == "challenger" and info.get("lifecycle", "candidate") in ("", "candidate", "validated", "rejected"):
            serving_store.set_version_fields(version, lifecycle="validated" if ok else "rejected")
    meta["verdict"] = reason
    return AssetCheckResult(
        passed=ok, severity=AssetCheckSeverity.ERROR,
        description=f"{role} {version[:12]}…: {reason}", metadata=meta)


@asset_check(asset=champion_model, blocking=True, additional_deps=[trusted_test_set],
             description="The champion loads from its artifact with a matching digest, predicts every class, "
                         "reaches min_accuracy on the trusted test set and answers the smoke input.")
def champion_model_validity(serving_store: ServingStore, artifacts: ArtifactStore) -> AssetCheckResult:
    version = current_champion(serving_store, artifacts) or read_pointer(artifacts, CHAMPION_POINTER)
    return judge_version(version, "champion", serving_store, artifacts)


@asset_check(asset=challenger_model, blocking=True, additional_deps=[trusted_test_set, champion_model],
             description="As the champion's check, and the challenger may not trail the champion on the "
                         "trusted test set by more than the margin.")
def challenger_model_validity(serving_store: ServingStore, artifacts: ArtifactStore) -> AssetCheckResult:
    return judge_version(read_pointer(artifacts, CHALLENGER_POINTER), "challenger", serving_store, artifacts)


PLAUSIBLE = {  # cm; outside these a value is valid but suspicious
    "low": np.array([0.0, 0.0, 0.0, 0.0]), "high": np.array([10.0, 6.0, 9.0, 4.0]),
}


@asset_check(asset=incoming_batch, description="Schema and ranges of a window's batch: quarantined rows "
                                               "(counted by reason) and implausible (yet valid) values are "
                                               "warned about; a batch with no good row (empty, header only or "
                                               "fully quarantined) fails with severity ERROR.")
def incoming_batch_quality(context: AssetCheckExecutionContext, artifacts: ArtifactStore) -> AssetCheckResult:
    partition = context.run.tags.get(PARTITION_TAG)
    artifacts.pull(f"batches/{partition}")
    d = artifacts.batch_dir(partition)
    batch = serving.load_prepared(d)
    quarantine = quarantine_summary(serving.read_json(d / "quarantine.json"))
    n_bad = quarantine["rows"]
    X = batch.Xq[batch.inverse]
    schema_ok = X.ndim == 2 and X.shape[1] == 4 and np.isfinite(X).all()
    implausible = int(((X < PLAUSIBLE["low"]) | (X > PLAUSIBLE["high"])).any(axis=1).sum())
    empty = len(batch) == 0
    passed = schema_ok and not empty and not n_bad and implausible == 0
    if empty:
        why = (f"all {n_bad:,} rows were quarantined ({_by_reason(quarantine)})" if n_bad
               else "it holds no data rows (empty or header only)")
        description = f"window {partition}: the batch has nothing to score: {why}"
    else:
        description = f"{n_bad} quarantined rows{f' ({_by_reason(quarantine)})' if n_bad else ''}, " \
                      f"{implausible} rows outside the plausible range"
    return AssetCheckResult(
        passed=bool(passed),
        severity=AssetCheckSeverity.ERROR if (empty or not schema_ok) else AssetCheckSeverity.WARN,
        description=description,
        metadata={"partition": partition, "rows_good": len(batch), "rows_quarantined": n_bad,
                  "quarantined_by_reason": MetadataValue.json(quarantine["by_reason"]),
                  "rows_implausible": implausible})


def _by_reason(quarantine: dict) -> str:
    return ", ".join(f"{kind} {n:,}" for kind, n in sorted(quarantine["by_reason"].items()))


# Feedback that looks misaligned: the champion's accuracy on a window's labels is far below
# what it showed on the trusted test set. A label file shifted by one row (or from another
# batch) gives about chance accuracy; drift lowers accuracy gradually, not to chance.
MISALIGNED_GAP = 0.25  # accuracy points below the validated accuracy
MISALIGNED_MIN_ROWS = 30


def accuracy_upper_bound(right: int, n: int, z: float = 3.29) -> float:
    """Wilson score upper bound of an accuracy (z = 3.29: two-sided 99.9%)."""
    if n == 0:
        return 1.0
    p = right / n
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(min(1.0, (centre + spread) / (1 + z * z / n)))


@asset_check(asset=feedback, additional_deps=[champion_predictions],
             description="WARN when the champion's accuracy on a window's feedback is far below its accuracy "
                         "on the trusted test set (the feedback is possibly misaligned, e.g. shifted by a row).")
def feedback_alignment(context: AssetCheckExecutionContext, serving_store: ServingStore,
                       artifacts: ArtifactStore) -> AssetCheckResult:
    partition = context.run.tags.get(PARTITION_TAG)
    artifacts.pull(f"batches/{partition}", "models", "data/trusted_test_set.npz")
    d = artifacts.batch_dir(partition)
    champion = serving_store.routing().champion
    meta = {"partition": partition, "champion": champion or ""}
    if not (d / "labels.npy").exists() or not champion or not serving.predictions_path(d, champion).exists():
        return AssetCheckResult(passed=True, severity=AssetCheckSeverity.WARN, metadata=meta,
                                description="nothing to check yet: no feedback or no champion answers for this window")
    labels = np.load(d / "labels.npy").astype(np.int64)
    predicted = serving.load_row_predictions(d, champion).astype(np.int64)
    n, right = len(labels), int((predicted == labels).sum())
    info = serving_store.version_info(champion) or {}
    booster = load_model(artifacts.models_dir(), champion, info.get("digest", ""))
    validated, _ = trusted_accuracy(booster, artifacts)
    upper = accuracy_upper_bound(right, n)
    # The same labels moved one row either way: far better agreement there says "shifted by a row".
    shifted = max(float((predicted[:-1] == labels[1:]).mean()), float((predicted[1:] == labels[:-1]).mean())) \
        if n > 1 else 0.0
    meta.update({"rows": n, "accuracy_on_feedback": round(right / n, 4) if n else None,
                 "upper_bound_99_9": round(upper, 4), "validated_accuracy": round(validated, 4),
                 "accuracy_if_shifted_by_one_row": round(shifted, 4)})
    misaligned = n >= MISALIGNED_MIN_ROWS and upper < validated - MISALIGNED_GAP
    description = (
        f"window {partition}: the champion is right on {right}/{n} feedback rows ({right / n:.1%}, at most "
        f"{upper:.1%}) against {validated:.1%} on the trusted test set: the feedback is possibly misaligned "
        f"with the batch (shifted by a row: {shifted:.1%} right; or another batch's labels)" if misaligned else
        f"champion accuracy on {n} feedback rows {right / max(n, 1):.1%} (validated {validated:.1%})")
    return AssetCheckResult(passed=not misaligned, severity=AssetCheckSeverity.WARN, description=description,
                            metadata=meta)


@asset_check(asset=champion_predictions, description="Coverage and consistency of what is served: routing resolves "
                                                     "to validated, complete versions; every distinct key of the "
                                                     "window has an answer; sampled lookups equal the stored answers.")
def served_answers_consistent(context: AssetCheckExecutionContext, serving_store: ServingStore,
                              artifacts: ArtifactStore) -> AssetCheckResult:
    partition = context.run.tags.get(PARTITION_TAG)
    artifacts.pull(f"batches/{partition}")
    d = artifacts.batch_dir(partition)
    problems = []
    routing = serving_store.routing()
    for v in [routing.champion] + [v for v, _ in routing.shares]:
        info = serving_store.version_info(v) if v else None
        if not info or info.get("validated") != "1" or info.get("complete") != "1":
            problems.append(f"routing names {v or '(none)'} which is not a validated, complete version")
    batch = serving.load_prepared(d)
    stored = np.load(serving.predictions_path(d, routing.champion))
    labels_ok = set(np.unique(stored).tolist()) <= set(range(len(CLASSES)))
    if not labels_ok:
        problems.append(f"labels outside the class set: {sorted(set(np.unique(stored).tolist()))}")
    rng = np.random.default_rng(0)
    sample = rng.choice(batch.n_keys, size=min(500, batch.n_keys), replace=False)
    results = serving_store.lookup(batch.key_list(sample))
    answered = [r for r in results if r["label"] is not None]
    mismatched = [r["key"] for r, i in zip(results, sample)
                  if r["version"] == routing.champion and r["label"] != CLASSES[int(stored[i])]]
    misses = [r["key"] for r in results if r["route"] == "miss"]
    if misses:
        problems.append(f"{len(misses)} of {len(sample)} sampled keys miss (e.g. {misses[0]})")
    if mismatched:
        problems.append(f"{len(mismatched)} sampled lookups differ from the stored answers (e.g. {mismatched[0]})")
    return AssetCheckResult(
        passed=not problems, severity=AssetCheckSeverity.ERROR,
        description="; ".join(problems) or f"{len(sample)} sampled lookups equal the stored answers",
        metadata={"sampled": len(sample), "answered": len(answered), "misses": len(misses),
                  "mismatches": len(mismatched), "problems": MetadataValue.json(problems)})
