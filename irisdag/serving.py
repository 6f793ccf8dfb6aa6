"""Scoring a model version and storing its answers: the batch path, without Dagster.

A batch is prepared once (validated rows -> exact rounded features -> distinct
keys); every routed version scores the distinct rounded rows (so the same key
always gets the same answer), and the answers go to the serving store. A
version is brought up to date over every kept batch in arrival order before it
may serve (backfill), and its ``generation`` says how far it covers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from irisdag.core import keys as keyscheme

PREDICTIONS_PREFIX = "pred-"


@dataclass
class PreparedBatch:
    keys: np.ndarray      # distinct keys (str), one per distinct input
    Xq: np.ndarray        # their rounded features, float64 (u, 4)
    inverse: np.ndarray   # for each good row, the index of its distinct key

    def __len__(self) -> int:
        return len(self.inverse)


def prepare(X: np.ndarray, ids=None) -> PreparedBatch:
    """Validated rows to distinct keys. With ids, the id is the key (last row of an id wins)."""
    X = np.asarray(X, dtype=np.float64).reshape(-1, keyscheme.N_FEATURES)
    Q = keyscheme.quantize_array(X)
    if ids is not None:
        id_keys = np.array([keyscheme.id_key(i) for i in ids], dtype=object)
        uniq, first_rev, inverse = np.unique(id_keys[::-1], return_index=True, return_inverse=True)
        # np.unique on the reversed array finds the LAST occurrence of each id.
        last = len(id_keys) - 1 - first_rev
        inverse = inverse[::-1]
        return PreparedBatch(keys=uniq.astype(str), Xq=Q[last] / 10.0, inverse=inverse.astype(np.int64))
    uniq_q, inverse = keyscheme.unique_quantized(Q)
    keys = np.array(keyscheme.keys_of_quantized(uniq_q), dtype="U64")
    return PreparedBatch(keys=keys, Xq=uniq_q / 10.0, inverse=inverse.astype(np.int64))


def save_prepared(directory: Path, batch: PreparedBatch) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "keys.npy", batch.keys)
    np.save(directory / "Xq.npy", batch.Xq)
    np.save(directory / "inverse.npy", batch.inverse)


def load_prepared(directory: Path) -> PreparedBatch:
    return PreparedBatch(
        keys=np.load(directory / "keys.npy"),
        Xq=np.load(directory / "Xq.npy"),
        inverse=np.load(directory / "inverse.npy"),
    )


def predictions_path(directory: Path, version: str) -> Path:
    return directory / f"{PREDICTIONS_PREFIX}{version}.npy"


def load_row_predictions(directory: Path, version: str) -> np.ndarray:
    """Per good row of a batch, the class index this version answered."""
    batch = load_prepared(directory)
    return np.load(predictions_path(directory, version))[batch.inverse]


def score_batch(store, booster, version: str, directory: Path) -> tuple[int, np.ndarray]:
    """Score one kept batch's distinct inputs with a version and write them. Returns (written, labels)."""
    from irisdag.models.artifacts import predict_labels

    batch = load_prepared(directory)
    labels = predict_labels(booster, batch.Xq).astype(np.int8)
    written = store.write_predictions(version, batch.keys.tolist(), labels)
    # The file is written after Redis: a batch file never claims answers Redis lacks.
    tmp = directory / f".{PREDICTIONS_PREFIX}{version}.tmp.npy"
    np.save(tmp, labels)
    tmp.replace(predictions_path(directory, version))
    return written, labels


def bring_up_to_date(store, booster, version: str, batches_root: Path, log=None) -> dict:
    """Score every kept batch this version has not covered yet, in arrival order.

    Refused by the store when the version has no passing verdict. Marks each
    generation after its last chunk, so a version killed mid-write stays
    incomplete (and unroutable) until a retried run finishes it.
    """
    info = store.version_info(version)
    if info is None:
        raise ValueError(f"model version {version} is not registered in the serving store")
    if info.get("validated") != "1":
        raise ValueError(
            f"model version {version} has no passing validity verdict "
            f"(validated={info.get('validated')!r}); refusing to score it")
    done = int(info.get("generation") or 0)
    kept = store.kept_partitions()
    scored, written = [], 0
    for index, partition in enumerate(kept, start=1):
        if index <= done:
            continue
        n, _ = score_batch(store, booster, version, batches_root / partition)
        store.mark_generation(version, index, n)
        scored.append(partition)
        written += n
        if log:
            log(f"{version[:12]}: scored batch {partition} (generation {index}, {n} new keys)")
    return {"scored_partitions": scored, "keys_written": written, "generation": len(kept)}


def write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    tmp.replace(path)


def read_json(path: Path, default=None):
    return json.loads(path.read_text()) if path.exists() else default
