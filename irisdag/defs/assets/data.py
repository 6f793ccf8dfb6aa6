"""Data assets: the labelled training table, the trusted test set, incoming
batches (one per four-hour window) and their delayed feedback labels."""

import numpy as np
from dagster import (
    AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset,
)
from pydantic import Field

from irisdag.store.resource import ServingStore
from irisdag import serving
from irisdag.core import generator
from irisdag.core.batches import Quarantine, quarantine_summary, read_label_csv
from irisdag.defs import settings
from irisdag.defs.settings import REDIS_RETRY
from irisdag.defs.retries import retry_transient_only
from irisdag.defs.partitions import batch_windows, window_index
from irisdag.defs.resources import ArtifactStore
from irisdag.models.artifacts import CLASSES
from irisdag.models.training import iris_table, split_holdout

PARTITION_TAG = "dagster/partition"


def _class_counts(y) -> dict:
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(CLASSES))
    return {name: int(n) for name, n in zip(CLASSES, counts)}


def iris_split():
    X, y = iris_table()
    return split_holdout(X, y, settings.HOLDOUT_FRACTION, settings.SEED)


def feedback_partitions(artifacts: ArtifactStore, before: str | None = None) -> list[str]:
    """Windows whose feedback labels have arrived, oldest first (optionally only those before a window)."""
    out = []
    for name in artifacts.list_dirs("batches"):
        if before is not None and name >= before:
            continue
        artifacts.pull(f"batches/{name}")
        if (artifacts.batch_dir(name) / "labels.npy").exists():
            out.append(name)
    return out


@asset(
    group_name="data", kinds={"numpy"},
    description=(
        "The labelled training table: scikit-learn's iris table (less the rows held out for "
        "the trusted test set) plus every feedback label that has arrived for earlier windows. "
        "In a partitioned run, only feedback of windows before the run's window is included, "
        "so a challenger never trains on the batch it is judged on."),
)
def raw_iris(context: AssetExecutionContext, artifacts: ArtifactStore) -> MaterializeResult:
    split = iris_split()
    X_train, y_train = split.X_train, split.y_train
    run_window = context.run.tags.get(PARTITION_TAG)
    parts = feedback_partitions(artifacts, before=run_window)
    xs, ys = [X_train], [y_train]
    for p in parts:
        d = artifacts.batch_dir(p)
        batch = serving.load_prepared(d)
        labels = np.load(d / "labels.npy")
        xs.append(batch.Xq[batch.inverse])
        ys.append(labels)
    X = np.concatenate(xs).astype(np.float64)
    y = np.concatenate(ys).astype(np.int64)
    path = artifacts.data_path("raw_iris.npz")
    np.savez(path, X=X, y=y, iris_rows=len(y_train))  # the iris table's rows come first
    artifacts.push("data/raw_iris.npz")
    return MaterializeResult(metadata={
        "path": str(path),
        "rows": len(y),
        "rows_from_iris_table": len(y_train),
        "rows_from_feedback": int(len(y) - len(y_train)),
        "feedback_windows": MetadataValue.json(parts),
        "classes": MetadataValue.json(_class_counts(y)),
    })


@asset(
    group_name="data", kinds={"numpy"}, deps=[raw_iris],
    description=(
        "The trusted test set (at least 1,000 labelled rows): real iris rows held out of all "
        "training, plus rows from the seeded generator. Validity checks judge every model on it."),
)
def trusted_test_set(artifacts: ArtifactStore) -> MaterializeResult:
    split = iris_split()
    X_hold, y_hold = split.X_holdout, split.y_holdout
    X_gen, y_gen = generator.generate(settings.TRUSTED_GENERATED_ROWS, seed=10_000 + settings.SEED, drift=0.0, t=0.0)
    X = np.concatenate([X_hold, X_gen]).astype(np.float64)
    y = np.concatenate([y_hold, y_gen]).astype(np.int64)
    path = artifacts.data_path("trusted_test_set.npz")
    np.savez(path, X=X, y=y)
    artifacts.push("data/trusted_test_set.npz")
    return MaterializeResult(metadata={
        "path": str(path), "rows": len(y), "real_rows": len(y_hold), "generated_rows": len(y_gen),
        "classes": MetadataValue.json(_class_counts(y)),
    })


class BatchConfig(Config):
    source: str = Field(
        default=settings.env("IRISDAG_BATCH_SOURCE"),
        description="CSV of inputs (course iris.csv layout, or a header with an id column); empty = the seeded generator.")
    rows: int = Field(default=settings.BATCH_ROWS, description="Rows per generated batch.")
    drift: float = Field(default=settings.DRIFT, description="Generator drift at full strength (0 = none).")
    drift_windows: int = Field(default=settings.DRIFT_WINDOWS, description="Windows until drift is at full strength.")


@asset(
    retry_policy=REDIS_RETRY,
    group_name="batches", partitions_def=batch_windows, kinds={"numpy"},
    description=(
        "The inputs to score in one four-hour window: IRISDAG_BATCH_SOURCE when set, else the "
        "seeded generator with drift over time. Bad rows are quarantined (kept and counted), "
        "good rows are rounded and keyed (scheme iris-r1) and their distinct inputs kept so a "
        "new version can be backfilled over everything the champion serves."),
)
@retry_transient_only
def incoming_batch(context: AssetExecutionContext, config: BatchConfig, artifacts: ArtifactStore,
                   serving_store: ServingStore) -> MaterializeResult:
    partition = context.partition_key
    d = artifacts.batch_dir(partition)
    index = window_index(partition)
    if config.source:
        # Streamed in chunks into the prepared files: memory stays flat as batches grow.
        summary = serving.prepare_source(artifacts.localize(config.source), d)
        quarantine, rows_read, truth = summary["quarantine"], summary["rows_read"], None
        origin = config.source
    else:
        t = min(1.0, index / max(1, config.drift_windows))
        X, truth = generator.generate(config.rows, seed=settings.SEED * 100_003 + index, drift=config.drift, t=t)
        if len(X):  # the README's example lookup (the course slide's row) is served by every window
            X[0], truth[0] = generator.COURSE_EXAMPLE, generator.COURSE_EXAMPLE_CLASS
        quarantine, rows_read = Quarantine().to_json(), len(X)
        origin = f"generator(seed={settings.SEED}, window={index}, drift={config.drift}, t={t:.3f})"
        serving.prepare_array(d, X)
        serving.write_json(d / "quarantine.json", quarantine)
    prepared = serving.load_prepared(d)
    if truth is not None:
        np.save(d / "truth.npy", np.asarray(truth, dtype=np.int8))  # hidden: arrives later as feedback
    # A re-materialized window may have changed source: drop the other source's file.
    for stale in (["truth.npy"] if config.source else ["positions.npy", "rows.npy"]):
        (d / stale).unlink(missing_ok=True)
    artifacts.push(f"batches/{partition}")
    kept_index = serving_store.partition_index(partition)
    return MaterializeResult(metadata={
        "source": origin,
        "rows_read": rows_read,
        "rows_good": len(prepared),
        "rows_quarantined": quarantine["rows"],
        "quarantined_by_reason": MetadataValue.json(quarantine["by_reason"]),
        "distinct_keys": prepared.n_keys,
        "keyed_by": "id" if prepared.keyed_by_id else "iris-r1 feature hash",
        "kept_input_generation": kept_index,
        "quarantine": MetadataValue.md(_quarantine_md(quarantine)),
    })


def _quarantine_md(quarantine: dict) -> str:
    if not quarantine["rows"]:
        return "No rows quarantined."
    lines = ["| row | reason |", "| --- | --- |"]
    for q in quarantine["sample"][:50]:
        lines.append(f"| {q.get('row')} | {str(q.get('reason')).replace('|', '/')} |")
    if quarantine["rows"] > min(50, len(quarantine["sample"])):
        lines.append(f"| … | {quarantine['rows'] - min(50, len(quarantine['sample']))} more, counted by reason: "
                     f"{', '.join(f'{k} {n}' for k, n in sorted(quarantine['by_reason'].items()))} |")
    return "\n".join(lines)


class FeedbackConfig(Config):
    source: str = Field(
        default=settings.env("IRISDAG_FEEDBACK_SOURCE"),
        description="CSV of labels 0/1/2 for the batch source's rows (course iris_y.csv); empty = the generator's truth.")


@asset(
    group_name="batches", partitions_def=batch_windows, kinds={"numpy"}, deps=[incoming_batch],
    description=(
        "Delayed true labels for a window's rows (label feedback: it does not depend on what "
        "was served). From IRISDAG_FEEDBACK_SOURCE, aligned with the batch source's rows; "
        "labels of quarantined rows are set aside with them."),
)
def feedback(context: AssetExecutionContext, config: FeedbackConfig, artifacts: ArtifactStore) -> MaterializeResult:
    artifacts.pull(f"batches/{context.partition_key}")
    d = artifacts.batch_dir(context.partition_key)
    batch = serving.load_prepared(d)
    labels_path = d / "labels.npy"
    if config.source:
        all_labels = read_label_csv(artifacts.localize(config.source))
        positions_path = d / "positions.npy"
        if not positions_path.exists():
            raise ValueError(
                f"window {context.partition_key} was generated, not read from a file: "
                f"feedback source {config.source} has no rows to align with")
        positions = np.load(positions_path)
        rows_read = len(positions) + quarantine_summary(serving.read_json(d / "quarantine.json"))["rows"]
        if len(all_labels) != rows_read:
            raise ValueError(
                f"feedback source {config.source} has {len(all_labels)} labels but the batch "
                f"source had {rows_read} data rows; they must align row for row")
        labels = all_labels[positions]
    elif (d / "truth.npy").exists():
        labels = np.load(d / "truth.npy")
    else:
        # A file batch whose labels come later (or never): it is scored and served all the
        # same; its feedback is attached when a feedback file for the window arrives.
        attached = labels_path.exists() and len(np.load(labels_path)) == len(batch)
        return MaterializeResult(metadata={
            "rows": int(len(np.load(labels_path))) if attached else 0,
            "status": "attached earlier" if attached else "pending: no IRISDAG_FEEDBACK_SOURCE for this window yet",
        })
    if len(labels) != len(batch):
        raise ValueError(f"{len(labels)} labels for {len(batch)} scored rows in window {context.partition_key}")
    np.save(labels_path, labels.astype(np.int8))
    artifacts.push(f"batches/{context.partition_key}/labels.npy")
    return MaterializeResult(metadata={"rows": len(labels), "status": "attached",
                                       "classes": MetadataValue.json(_class_counts(labels))})
