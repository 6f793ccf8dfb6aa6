"""Scoring one window in chunks, each chunk its own step, for executors that spread steps over machines.

``plan_score_chunks`` reserves room for the window's distinct keys in every
version to score (so that no chunk reshards while another writes) and emits
one dynamic output per (version, range of distinct keys). ``score_chunk``
scores its range with the version's digest-checked model and writes the
answers to Redis; it runs wherever the executor sends it (one process with the
in-process executor, other processes with the multiprocess one, Celery workers
with ``irisdag.defs.celery``). ``finish_chunked_scoring`` joins the chunks'
answer files into the window's per-row answer file and, when the window is
the version's next kept generation, marks it like ``serving.bring_up_to_date``
does. The answers stored are the same whichever executor ran the chunks.
"""

# No `from __future__ import annotations`: Dagster reads these ops' annotations
# through retry_transient_only's wrapper, whose module could not resolve strings.
import numpy as np
from dagster import Config, DynamicOut, DynamicOutput, OpExecutionContext, graph, op
from pydantic import Field

from irisdag import serving
from irisdag.defs.assets.predictions import RefusedVersion, load_checked
from irisdag.defs.resources import ArtifactStore
from irisdag.defs.retries import retry_transient_only
from irisdag.defs.settings import REDIS_RETRY
from irisdag.store.resource import ServingStore

DEFAULT_CHUNK_KEYS = 250_000


class ChunkedScoringConfig(Config):
    partition: str = Field(default="", description="The window (batch partition key) to score; "
                                                   "empty: the newest kept window.")
    versions: list[str] = Field(default=[], description="Versions to score; empty: every routed version.")
    chunk_keys: int = Field(default=DEFAULT_CHUNK_KEYS, description="Distinct keys a chunk (one step each).")


def _part_path(directory, version: str, start: int):
    return directory / f"{serving.PREDICTIONS_PREFIX}{version}.chunk-{start:012d}.npy"


@op(out=DynamicOut(dict), retry_policy=REDIS_RETRY,
    description="Reserve room in each version for the window's keys; one output per chunk of distinct keys.")
@retry_transient_only
def plan_score_chunks(context: OpExecutionContext, config: ChunkedScoringConfig, serving_store: ServingStore,
                      artifacts: ArtifactStore):
    if config.chunk_keys < 1:
        raise ValueError(f"chunk_keys must be at least 1, got {config.chunk_keys}")
    partition = config.partition
    if not partition:
        kept = serving_store.kept_partitions()
        if not kept:
            raise ValueError("no kept window to score: materialize incoming_batch first, or name a partition")
        partition = kept[-1]
    artifacts.pull(f"batches/{partition}")
    batch = serving.load_prepared(artifacts.batch_dir(partition))
    versions = list(config.versions) or serving_store.routing().versions()
    if not versions:
        raise RefusedVersion("no version to score: nothing is routed and no version was named")
    for version in versions:
        info = serving_store.version_info(version)
        if info is None or info.get("validated") != "1":
            raise RefusedVersion(f"model version {version[:12]}… has no passing validity verdict; "
                                 "refusing to score it")
        serving_store.reserve_keys(version, batch.n_keys)
        for index, start in enumerate(range(0, batch.n_keys, config.chunk_keys)):
            stop = min(batch.n_keys, start + config.chunk_keys)
            yield DynamicOutput({"partition": partition, "version": version, "start": start, "stop": stop},
                                mapping_key=f"v{version[:12]}_c{index}")
    context.log.info(f"{batch.n_keys} distinct keys of window {partition}, {len(versions)} version(s), "
                     f"chunks of {config.chunk_keys}")


@op(retry_policy=REDIS_RETRY, description="Score one chunk of a window's distinct keys and store the answers.")
@retry_transient_only
def score_chunk(context: OpExecutionContext, chunk: dict, serving_store: ServingStore,
                artifacts: ArtifactStore) -> dict:
    from irisdag.core.keys import InputError
    from irisdag.models.artifacts import predict_labels

    partition, version, start, stop = chunk["partition"], chunk["version"], chunk["start"], chunk["stop"]
    artifacts.pull("models", f"batches/{partition}")
    d = artifacts.batch_dir(partition)
    batch = serving.load_prepared(d)
    booster = load_checked(serving_store, artifacts, version)
    try:
        labels = predict_labels(booster, np.asarray(batch.q[start:stop], dtype=np.float64) / 10.0).astype(np.int8)
    except InputError as err:
        raise serving._in_file_terms(err, d, batch, start) from None  # noqa: SLF001 - one wording for row numbers
    keys = batch.id_keys[start:stop].tolist() if batch.keyed_by_id else np.asarray(batch.digests[start:stop])
    written = serving_store.write_predictions(version, keys, labels)
    np.save(_part_path(d, version, start), labels)
    artifacts.push(f"batches/{partition}")
    context.log.info(f"{version[:12]}: keys {start}..{stop} of window {partition} scored ({written} new)")
    return {**chunk, "written": int(written)}


@op(retry_policy=REDIS_RETRY, description="Join the chunks' answers into the window's answer file; mark the generation.")
@retry_transient_only
def finish_chunked_scoring(context: OpExecutionContext, results: list, serving_store: ServingStore,
                           artifacts: ArtifactStore) -> dict:
    summary = {}
    by_version: dict[str, list[dict]] = {}
    for r in results:
        by_version.setdefault(r["version"], []).append(r)
    for version, parts in by_version.items():
        parts.sort(key=lambda r: r["start"])
        partition = parts[0]["partition"]
        artifacts.pull(f"batches/{partition}")
        d = artifacts.batch_dir(partition)
        labels = np.concatenate([np.load(_part_path(d, version, r["start"])) for r in parts])
        n_keys = serving.load_prepared(d).n_keys
        if len(labels) != n_keys or parts[0]["start"] != 0:
            raise ValueError(f"chunks of {version[:12]}… cover {len(labels)} of {n_keys} keys of window {partition}")
        serving._save_npy(serving.predictions_path(d, version), labels)  # noqa: SLF001 - the one writer of answer files
        for r in parts:
            _part_path(d, version, r["start"]).unlink(missing_ok=True)
        written = sum(r["written"] for r in parts)
        kept = serving_store.kept_partitions()
        info = serving_store.version_info(version) or {}
        generation = int(info.get("generation") or 0)
        if partition in kept and kept.index(partition) + 1 == generation + 1:
            serving_store.mark_generation(version, generation + 1, written)
            serving_store.recount_keys(version)
        artifacts.push(f"batches/{partition}")
        summary[version] = {"keys": int(n_keys), "written": int(written), "chunks": len(parts)}
    context.log.info(f"window scored in chunks: {summary}")
    return summary


@graph(description="Score one window's distinct keys in chunks, one step a chunk (spread by the executor).")
def score_window_in_chunks():
    finish_chunked_scoring(plan_score_chunks().map(score_chunk).collect())


score_window_chunked_job = score_window_in_chunks.to_job(
    name="score_window_in_chunks",
    description="Score a window in chunks with this deployment's executor (irisdag.defs.celery: on Celery workers).")
