"""Small Dagster jobs the benchmarks run: the streaming path, and a batch split across processes.

``stream_assets``: two assets with files between them, as the project's
``incoming_batch`` and ``champion_predictions`` would use the streaming path:
``bench_prepared`` streams a CSV into a prepared directory
(`serving.prepare_source`) and hands on only its path; ``bench_scored``
scores and writes it a chunk at a time (`serving.score_batch`).

``chunked_scoring_inprocess`` / ``chunked_scoring_multiprocess``: one graph
(split a batch into row ranges, key + score + write each range, add up), run
with Dagster's in-process executor or its multiprocess executor (one process a
step, at most two at once on this two-core machine).
"""

import os
import resource
import time
from pathlib import Path

import dagster as dg
import numpy as np

from irisdag import serving
from irisdag.store.resource import ServingStore


def _peak_rss() -> int:
    """This process's peak resident memory so far, bytes: VmHWM of its own address space.

    Not getrusage's ru_maxrss: Linux carries that across exec, so a child
    started by a big parent (vfork) would report the parent's size.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class StreamConfig(dg.Config):
    csv: str
    directory: str
    redis_url: str
    model: str
    version: str
    chunk_bytes: int = 8 << 20


@dg.asset
def bench_prepared(context: dg.AssetExecutionContext, config: StreamConfig) -> dict:
    start = time.perf_counter()
    summary = serving.prepare_source(config.csv, Path(config.directory), chunk_bytes=config.chunk_bytes)
    summary.pop("quarantine")
    summary["seconds"] = time.perf_counter() - start
    summary["peak_rss_after"] = _peak_rss()
    context.log.info(f"prepared {summary['rows_good']:,} rows, {summary['distinct_keys']:,} keys")
    return {"directory": config.directory, **summary}


def _score(config: StreamConfig, directory: str) -> dict:
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(config.model)
    store = ServingStore(redis_url=config.redis_url)
    start = time.perf_counter()
    written, _ = serving.score_batch(store, booster, config.version, Path(directory))
    store.mark_generation(config.version, 1, written)
    return {"written": written, "seconds": time.perf_counter() - start, "peak_rss_after": _peak_rss()}


@dg.asset
def bench_scored(context: dg.AssetExecutionContext, config: StreamConfig, bench_prepared: dict) -> dict:
    return _score(config, bench_prepared["directory"])


stream_assets = [bench_prepared, bench_scored]


# ---- a batch split across processes ------------------------------------------------

class SplitConfig(dg.Config):
    rows_file: str     # .npy of float (n, 4) rows
    workdir: str
    redis_url: str
    model: str
    version: str
    chunks: int = 4


@dg.op(out=dg.DynamicOut(dict))
def split_batch(config: SplitConfig):
    n = len(np.load(config.rows_file, mmap_mode="r"))
    bounds = np.linspace(0, n, config.chunks + 1).astype(int)
    for i in range(config.chunks):
        yield dg.DynamicOutput({"index": i, "start": int(bounds[i]), "stop": int(bounds[i + 1]),
                                "rows_file": config.rows_file, "workdir": config.workdir,
                                "redis_url": config.redis_url, "model": config.model, "version": config.version},
                               mapping_key=f"chunk_{i}")


@dg.op
def score_range(context: dg.OpExecutionContext, part: dict) -> dict:
    import xgboost as xgb

    begin = time.time()
    X = np.load(part["rows_file"], mmap_mode="r")[part["start"]:part["stop"]]
    directory = Path(part["workdir"]) / f"chunk-{part['index']}"
    serving.prepare_array(directory, X)
    booster = xgb.Booster()
    booster.load_model(part["model"])
    written, _ = serving.score_batch(ServingStore(redis_url=part["redis_url"]), booster, part["version"], directory)
    return {"index": part["index"], "rows": part["stop"] - part["start"], "written": written, "pid": os.getpid(),
            "begin": begin, "end": time.time()}


@dg.op
def add_up(parts: list) -> dict:
    return {"rows": sum(p["rows"] for p in parts), "written": sum(p["written"] for p in parts),
            "parts": sorted(parts, key=lambda p: p["index"])}


@dg.graph
def chunked_scoring():
    add_up(split_batch().map(score_range).collect())


chunked_scoring_inprocess = chunked_scoring.to_job(name="chunked_scoring_inprocess",
                                                   executor_def=dg.in_process_executor)
chunked_scoring_multiprocess = chunked_scoring.to_job(
    name="chunked_scoring_multiprocess",
    executor_def=dg.multiprocess_executor.configured({"max_concurrent": 2}))


def make_inprocess_job():
    return chunked_scoring_inprocess


def make_multiprocess_job():
    return chunked_scoring_multiprocess


# ---- the whole-batch path the assets take today (for comparison) --------------------

@dg.asset(name="bench_prepared_whole")
def bench_prepared_whole(context: dg.AssetExecutionContext, config: StreamConfig) -> dict:
    """read_feature_csv (whole file) -> serving.prepare (in memory) -> save_prepared, as incoming_batch does."""
    from irisdag.core.batches import read_feature_csv

    start = time.perf_counter()
    batch = read_feature_csv(config.csv, chunk_bytes=config.chunk_bytes)
    prepared = serving.prepare(batch.X, batch.ids)
    serving.save_prepared(Path(config.directory), prepared)
    return {"directory": config.directory, "rows_good": len(prepared), "distinct_keys": prepared.n_keys,
            "seconds": time.perf_counter() - start}


@dg.asset(name="bench_scored_whole")
def bench_scored_whole(context: dg.AssetExecutionContext, config: StreamConfig, bench_prepared_whole: dict) -> dict:
    return _score(config, bench_prepared_whole["directory"])


whole_assets = [bench_prepared_whole, bench_scored_whole]
