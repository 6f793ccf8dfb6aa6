"""The Feast peer baseline: the same answers loaded into, and read from, the same Redis by Feast.

Run by `python -m benchmarks` (section ``feast``) with a Python that has
``feast[redis]`` (the ``peers`` extra; or a separate virtualenv named by
IRISDAG_FEAST_PYTHON, since Feast's pins may not fit this project's). Imports
nothing from irisdag, so it runs in such a virtualenv as is:

    python benchmarks/feast_peer.py --redis 127.0.0.1:6390 --answers answers.npz --work DIR

``answers.npz`` holds ``keys`` (the 64-hex input keys, as irisdag keys them)
and ``labels`` (class indices). The Redis is used as given: the caller flushes
it before and measures what Feast's keys cost (INFO used_memory before/after).
Prints one JSON object: load seconds, used_memory before/after, online lookup
rate in calls of ``--batch`` keys, single-lookup p50.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", required=True, help="host:port of the Redis (the online store)")
    parser.add_argument("--answers", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--probe", type=int, default=100_000)
    parser.add_argument("--singles", type=int, default=1_000)
    args = parser.parse_args(argv)

    import pandas as pd
    import redis
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Int64

    work = Path(args.work)
    (work / "data").mkdir(parents=True, exist_ok=True)
    data = np.load(args.answers)
    keys, labels = data["keys"].astype(str), data["labels"].astype(np.int64)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    frame = pd.DataFrame({"key": keys, "label": labels, "event_timestamp": now - timedelta(minutes=1)})
    frame.to_parquet(work / "data" / "answers.parquet")
    (work / "feature_store.yaml").write_text(
        "project: irisdag_peer\n"
        f"registry: {work / 'data' / 'registry.db'}\n"
        "provider: local\n"
        "online_store:\n"
        "  type: redis\n"
        f"  connection_string: \"{args.redis}\"\n"
        "offline_store:\n"
        "  type: file\n"
        "entity_key_serialization_version: 3\n")

    store = FeatureStore(repo_path=str(work))
    entity = Entity(name="key", join_keys=["key"], value_type=ValueType.STRING)
    source = FileSource(path=str(work / "data" / "answers.parquet"), timestamp_field="event_timestamp")
    view = FeatureView(name="answers", entities=[entity], ttl=timedelta(days=1),
                       schema=[Field(name="label", dtype=Int64)], source=source, online=True)
    store.apply([entity, view])

    host, port = args.redis.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port))
    before = int(client.info("memory")["used_memory"])
    start = time.perf_counter()
    store.materialize(start_date=now - timedelta(hours=1), end_date=now)
    load_seconds = time.perf_counter() - start
    after = int(client.info("memory")["used_memory"])

    rng = np.random.default_rng(2)
    probe = keys[rng.choice(len(keys), min(args.probe, len(keys)), replace=False)].tolist()
    start = time.perf_counter()
    got = []
    for i in range(0, len(probe), args.batch):
        rows = [{"key": k} for k in probe[i:i + args.batch]]
        got += store.get_online_features(features=["answers:label"], entity_rows=rows).to_dict()["label"]
    lookup_seconds = time.perf_counter() - start
    expect = dict(zip(keys.tolist(), labels.tolist()))
    wrong = sum(1 for k, v in zip(probe, got) if v != expect[k])
    singles = []
    for k in probe[:args.singles]:
        t = time.perf_counter()
        store.get_online_features(features=["answers:label"], entity_rows=[{"key": k}])
        singles.append(time.perf_counter() - t)
    print(json.dumps({
        "rows": len(keys), "load_seconds": load_seconds, "used_before": before, "used_after": after,
        "lookups": len(probe), "lookup_seconds": lookup_seconds, "batch": args.batch, "wrong": wrong,
        "single_p50_s": statistics.median(singles) if singles else None,
        "feast_version": __import__("feast").__version__,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
