"""Bytes of Redis memory per stored prediction, and the write rate from Python.

    python benchmarks/store_memory.py [--keys 1000000] [--url redis://...]

Without --url it starts a private redis-server (/usr/bin/redis-server, or
IRISDAG_TEST_REDIS_SERVER) on a free loopback port and stops it afterwards;
with --url it uses that server and FLUSHES IT first, so never point it at one
that holds data. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from irisdag.store import ServingStore  # noqa: E402
from irisdag.store.resource import close_clients, pred_key  # noqa: E402

# A realistic version id: the SHA-256 of a model file (key names are part of the cost).
VERSION = hashlib.sha256(b"benchmark model").hexdigest()


def measure(url: str, n: int, seed: int = 0) -> dict:
    store = ServingStore(redis_url=url)
    client = store.client()
    client.flushall()
    rng = np.random.default_rng(seed)
    hexes = rng.bytes(32 * n).hex()
    keys = [hexes[i:i + 64] for i in range(0, 64 * n, 64)]
    labels = rng.integers(0, 3, n)

    store.register_version(VERSION, VERSION, role="challenger", expected_keys=n)
    store.set_validated(VERSION, True, "benchmark")
    before = int(client.info("memory")["used_memory"])
    start = time.perf_counter()
    added = store.write_predictions(VERSION, keys, labels)
    seconds = time.perf_counter() - start
    after = int(client.info("memory")["used_memory"])

    # Every shard should still be a listpack (6.2: ziplist).
    info = store.version_info(VERSION)
    shards, layout = int(info["shards"]), int(info.get("layout") or 0)
    encodings: dict[str, int] = {}
    for lo in range(0, shards, 5000):
        pipe = client.pipeline(transaction=False)
        for s in range(lo, min(shards, lo + 5000)):
            pipe.object("encoding", pred_key(VERSION, s, layout=layout))
        for enc in pipe.execute():
            name = enc.decode() if isinstance(enc, bytes) else str(enc)
            encodings[name] = encodings.get(name, 0) + 1

    store.mark_generation(VERSION, 1, added)
    store.set_routing(0, {"champion": VERSION}, action="bootstrap")
    sample = keys[:10_000]
    start = time.perf_counter()
    answers = store.lookup(sample)
    lookup_seconds = time.perf_counter() - start
    assert all(a["route"] == "champion" for a in answers)
    server = client.info("server")
    return {
        "keys": n, "added": added, "shards": shards,
        "bytes_per_prediction": round((after - before) / n, 2),
        "write_seconds": round(seconds, 3), "writes_per_second": round(n / seconds),
        "lookup_10k_seconds": round(lookup_seconds, 4),
        "encodings": encodings, "redis_version": server["redis_version"],
        "mem_allocator": client.info("memory").get("mem_allocator"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--url", default="", help="a Redis to FLUSH and use (default: a private server)")
    args = parser.parse_args(argv)
    if args.url:
        print(json.dumps(measure(args.url, args.keys)))
        return 0
    from irisdag_tests.support.redis_server import RedisServer

    with RedisServer(executable=os.environ.get("IRISDAG_TEST_REDIS_SERVER")) as server:
        try:
            print(json.dumps(measure(server.url, args.keys)))
        finally:
            close_clients()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
