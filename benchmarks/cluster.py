"""Routing-change and lookup cost on a Redis Cluster of our own (docs/cluster.md).

    .venv/bin/python -m benchmarks.cluster                       # 10k and 300k keys a version
    .venv/bin/python -m benchmarks.cluster --sizes 100000 --reps 21

Starts 3 masters + 3 replicas on loopback (the tests' `RedisTestCluster`, stopped
by pid at the end). Per size: two versions of N keys, then ``--reps`` routing
changes (promote / rollback in turn) timed as `set_routing` returns (route call,
WAIT, sync of 1024 routing copies and the routed versions' layout copies), the
batch lookup of up to 100,000 stored keys (`lookup_digests`), and one-key
`lookup` calls. Prints one JSON object per size (medians) and the machine's load.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time

import numpy as np


def measure(store, size: int, reps: int) -> dict:
    from irisdag.core import keys as keyscheme

    a, b = (hashlib.sha256(f"{name}{size}".encode()).hexdigest() for name in ("a", "b"))
    D = np.frombuffer(np.random.default_rng(size).bytes(32 * size), dtype="S32").copy()
    for v in (a, b):
        store.register_version(v, v, role="champion", expected_keys=size)
        store.set_validated(v, True, "benchmark")
        for i in range(0, size, 50_000):
            store.write_predictions(v, D[i:i + 50_000], np.zeros(min(50_000, size - i), dtype=np.int8))
        store.mark_generation(v, 1, size)
    routing = store.routing()
    store.set_routing(routing.epoch, {"champion": a, "previous": "", "challenger": "", "shares": {}},
                      action="bootstrap")
    changes = []
    for _ in range(reps):
        routing = store.routing()
        new = {"champion": b, "previous": a} if routing.champion == a else {"champion": a, "previous": b}
        started = time.perf_counter()
        ok, reason, _ = store.set_routing(routing.epoch, new, action="promote")
        changes.append(time.perf_counter() - started)
        assert ok, reason
    batch = D[:100_000]
    lookups = []
    for _ in range(max(3, reps // 3)):
        started = time.perf_counter()
        store.lookup_digests(batch)
        lookups.append(time.perf_counter() - started)
    one = []
    for key in keyscheme.hex_of_digests(D[:300]):
        started = time.perf_counter()
        store.lookup([key])
        one.append(time.perf_counter() - started)
    return {"keys_per_version": size, "routing_change_ms": round(1e3 * statistics.median(changes), 1),
            "routing_change_min_ms": round(1e3 * min(changes), 1), "batch_keys": len(batch),
            "batch_lookup_ms": round(1e3 * statistics.median(lookups), 1),
            "batch_keys_per_s": round(len(batch) / statistics.median(lookups)),
            "one_key_lookup_us": round(1e6 * statistics.median(one))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,300000")
    parser.add_argument("--reps", type=int, default=11)
    args = parser.parse_args(argv)
    from irisdag.store.resource import StoreClient, close_clients
    from irisdag_tests.support.redis_cluster import RedisTestCluster

    with RedisTestCluster() as cluster:
        try:
            store = StoreClient(redis_url=cluster.url)
            for size in (int(s) for s in args.sizes.split(",")):
                cluster.flushall()
                print(json.dumps(measure(store, size, args.reps)), flush=True)
        finally:
            close_clients()
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
