"""Every speed benchmark of irisdag's batch path, in one command.

    .venv/bin/python -m benchmarks            # full: 1M-row end to end, 10M-row streaming run
    .venv/bin/python -m benchmarks --quick    # smaller and fewer repetitions (about two minutes)

Exit status 1 when a requirement (not an aim) is missed.

Starts its own redis-server (127.0.0.1, a free port, stopped by its pid at the
end), runs each benchmark several times (the machine is shared and noisy:
medians, with min - max), measures each baseline in the same run, prints one
table and writes it with the command to ``benchmarks/RESULTS.md`` (``--out``).

Benchmarks (each names the code path it times: the functions the Dagster
assets call, not copies of them):

- keys: the vectorized key path (`keys.quantize_array`, `unique_quantized`,
  `digests_of_quantized`) against the scalar reference `keys.input_key` per row;
- store write: `ServingStore.write_predictions` of synthetic unique keys given
  as digests (and as hex strings, the old call), against `redis-benchmark -P 64
  -t hset` on the same server, and Redis memory per prediction (INFO memory);
- lookups: `ServingStore.lookup`, one key at a time (p50/p99 over loopback) and
  in batches, with the Lua function's own time per key from INFOstats;
- routing: `ServingStore.set_routing` promote + rollback with 1k and with 1M
  stored keys per version; batch lookups (`lookup` of hex keys and
  `lookup_digests` of raw keys) during a 5% canary (salted SHA-1 bucket per
  key; `lookup_digests` sends the client's buckets) against champion-only routing
  on the same keys, Redis' time and, for `lookup_digests`, the client's wall time;
- end to end: validate, deduplicate, key, score, write (`keys.invalid_mask`,
  `serving.prepare_array`, `serving.score_batch`, which hashes) against the course flow's
  own method on the same rows (pandas apply per row for keys, iterrows into a
  dict, one pipelined SET per key);
- streaming: a Dagster run of two assets with files between them
  (`serving.prepare_source` -> `serving.score_batch`) over a 10M-row CSV, peak
  RSS of the run's process, against the whole-batch path the assets take today;
- parallelism: one graph over row ranges, in-process executor against
  multiprocess executor (two processes at once);
- growth: a version registered before its size is known, fed batch by batch
  (`reserve_keys` + `write_predictions` in score_batch's chunks), resharded as
  it grows: memory per prediction and write rate against a version sized at
  registration;
- lookup --file: `irisdag lookup --file` as a subprocess, end to end, against
  `lookup_digests` of the same keys in-process;
- demo: `irisdag demo` as a subprocess on batch sources of nearly distinct
  rows (1,000 rows: the fixed cost of a window; then 1M, 3M, 5M): Redis
  memory per stored prediction, every version counted, and rows/s after the
  fixed cost;
- feast (optional): Feast 0.67 (`feast[redis]`, the `peers` extra, or the
  Python named by IRISDAG_FEAST_PYTHON) loading and serving the same answers
  from the same Redis; skipped with a note when no such Python is found.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import (
    PROJECT, REDIS_BENCHMARK, LocalRedis, Report, Row, booster_file, distinct_rows, iris_rows, load_booster,
    timed, unique_digests, version_id, write_csv,
)

GiB = 1 << 30


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def new_store(server: LocalRedis):
    from irisdag.store import ServingStore

    return ServingStore(redis_url=server.url)


def ready_version(store, version: str, expected: int, role: str = "challenger") -> None:
    store.register_version(version, version, role=role, expected_keys=expected)
    store.set_validated(version, True, "benchmark")


# ---- keys --------------------------------------------------------------------------

def bench_keys(report: Report, n: int, reps: int) -> None:
    from irisdag.core import keys

    X = iris_rows(n, seed=11)
    W = distinct_rows(n, seed=12)
    scalar_n = min(n, 20_000)

    def fast(rows):
        uniq, inverse = keys.unique_quantized(keys.quantize_array(rows))
        return keys.digests_of_quantized(uniq), inverse

    ours, ours_w, scalar = [], [], []
    for _ in range(reps):
        ours.append(n / timed(fast, X)[0])
        ours_w.append(n / timed(fast, W)[0])
        scalar.append(scalar_n / timed(lambda: [keys.input_key(r) for r in X[:scalar_n].tolist()])[0])
    d, inv = fast(X[:scalar_n])
    assert keys.hex_of_digests(d[inv]) == [keys.input_key(r) for r in X[:scalar_n].tolist()]
    report.add(Row("keys", f"key {n:,} iris-like rows (dedupe, hash distinct)", ours, "rows/s", scalar,
                   "scalar input_key per row"))
    report.add(Row("keys", f"key {n:,} rows, nearly all distinct", ours_w, "rows/s", scalar,
                   "scalar input_key per row"))


# ---- the store: writes, memory, lookups, routing ---------------------------------------

def redis_benchmark(server: LocalRedis, n: int, keyspace: int | None = None) -> float:
    cmd = [REDIS_BENCHMARK, "-h", "127.0.0.1", "-p", str(server.port), "-P", "64", "-t", "hset", "-n", str(n),
           "--csv"]
    if keyspace:
        cmd += ["-r", str(keyspace)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600).stdout
    for line in out.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if cells and cells[0].upper() == "HSET":
            return float(cells[1])
    raise RuntimeError(f"no HSET line in redis-benchmark output:\n{out}")


def bench_store(report: Report, server: LocalRedis, n: int, reps: int, singles: int) -> dict:
    from irisdag.core import keys

    store = new_store(server)
    client = server.client()
    D = unique_digests(n, seed=1)
    labels = np.random.default_rng(1).integers(0, 3, n).astype(np.int8)
    hexes = keys.hex_of_digests(D)
    ours, ours_hex, rb, rb_r, mem = [], [], [], [], []
    for rep in range(reps):
        client.flushall()
        rb.append(redis_benchmark(server, 2 * n))
        rb_r.append(redis_benchmark(server, 2 * n, keyspace=n))
        client.flushall()
        v = version_id(f"write-{rep}")
        ready_version(store, v, n)
        before = int(client.info("memory")["used_memory"])
        seconds, added = timed(store.write_predictions, v, D, labels)
        after = int(client.info("memory")["used_memory"])
        assert added == n
        ours.append(n / seconds)
        mem.append((after - before) / n)
        client.flushall()
        ready_version(store, v, n)
        ours_hex.append(n / timed(store.write_predictions, v, hexes, labels)[0])
    rows = {
        "write": report.add(Row("store write", f"{n:,} unique key/label pairs, digests (write_predictions)", ours,
                                "pairs/s", rb, "redis-benchmark -P 64 -t hset", target="≥ 1.0M/s and ≥ 0.35×")),
        "write_r": report.add(Row("store write", "same, against redis-benchmark with -r (random hashes)", ours,
                                  "pairs/s", rb_r, f"redis-benchmark -P 64 -t hset -r {n}")),
        "write_hex": report.add(Row("store write", f"{n:,} pairs given as hex strings (the old call)", ours_hex,
                                    "pairs/s", rb, "redis-benchmark -P 64 -t hset")),
    }
    w = rows["write"]
    w.ok = w.median >= 1_000_000 and w.ratio >= 0.35
    m = report.add(Row("store memory", f"Redis used_memory per stored prediction at {n:,} keys", mem, "B",
                       fmt="{:.1f}", target="≤ 50 B", higher_is_better=False))
    m.ok = m.median <= 50

    # Lookups against the last version written (1M keys), routed as champion.
    v = version_id(f"write-{reps - 1}")
    store.mark_generation(v, 1, n)
    assert store.set_routing(store.routing().epoch, {"champion": v}, action="bootstrap")[0]
    rng = np.random.default_rng(2)
    idx = rng.choice(n, max(singles, 100_000), replace=False)
    probe = [hexes[i] for i in idx]
    names = ("setosa", "versicolor", "virginica")
    assert [a["label"] for a in store.lookup(probe[:1000])] == [names[labels[i]] for i in idx[:1000]]
    lat = []
    for rep in range(reps):
        one = []
        for k in probe[:singles]:
            t = time.perf_counter()
            store.lookup([k])
            one.append(time.perf_counter() - t)
        lat.append(one)
    p50 = [float(np.percentile(x, 50)) * 1e6 for x in lat]
    p99 = [float(np.percentile(x, 99)) * 1e6 for x in lat]
    r50 = report.add(Row("lookup", f"single lookup p50 ({singles:,} lookups a rep)", p50, "µs", fmt="{:,.0f}",
                         higher_is_better=False))
    r99 = report.add(Row("lookup", "single lookup p99", p99, "µs", fmt="{:,.0f}", higher_is_better=False,
                         target="≤ 1,000 µs"))
    r99.ok = r99.median <= 1000
    batch_rates, lua_per_key = [], []
    size = 100_000
    for rep in range(reps):
        sample = probe[:size]
        client.config_resetstat()
        seconds, answers = timed(store.lookup, sample)
        stats = client.info("commandstats")["cmdstat_fcall_ro"]
        lua_per_key.append(stats["usec"] / size)
        batch_rates.append(size / seconds)
        assert answers[-1]["route"] == "champion"
    lua_cap = [1e6 / x for x in lua_per_key]
    b = report.add(Row("lookup", f"batch lookup, {size:,} keys a call of lookup()", batch_rates, "lookups/s",
                       lua_cap, "Lua lookup alone (Redis' own time)", target="≥ 200k/s (aim)", aim=True))
    b.ok = b.median >= 200_000
    report.add(Row("lookup", "Lua lookup time per key inside Redis", lua_per_key, "µs", fmt="{:.2f}",
                   higher_is_better=False))
    # The batch entry point: raw 32-byte keys in, one byte a key out (lookup_digests).
    raw_rates, raw_per_key = [], []
    raw_probe = D[idx[:size]]
    for rep in range(reps):
        client.config_resetstat()
        seconds, got = timed(store.lookup_digests, raw_probe)
        raw_per_key.append(client.info("commandstats")["cmdstat_fcall_ro"]["usec"] / size)
        raw_rates.append(size / seconds)
        assert np.array_equal(got.labels, labels[idx[:size]])
    rr = report.add(Row("lookup", f"batch lookup of raw keys, {size:,} keys a call of lookup_digests()", raw_rates,
                        "lookups/s", batch_rates, "lookup() of the same keys as hex", target="≥ 300k/s"))
    rr.ok = rr.median >= 300_000
    report.add(Row("lookup", "Lua lookup_digests time per key inside Redis", raw_per_key, "µs", fmt="{:.2f}",
                   higher_is_better=False))
    r50.note = ""
    return {"version": v}


def bench_routing(report: Report, server: LocalRedis, big: int, reps: int, switches: int) -> None:
    store = new_store(server)
    client = server.client()
    client.flushall()
    sets = {}
    for size in (1_000, big):
        a, b = version_id(f"route-a-{size}"), version_id(f"route-b-{size}")
        for i, v in enumerate((a, b)):
            ready_version(store, v, size, role="champion")
            D = unique_digests(size, seed=100 + i)
            store.write_predictions(v, D, np.zeros(size, dtype=np.int8))
            store.mark_generation(v, 1, size)
        sets[size] = (a, b)
    epoch = store.routing().epoch
    ok, _, epoch = store.set_routing(epoch, {"champion": sets[1_000][0]}, action="bootstrap")
    assert ok
    times = {size: [] for size in sets}
    for rep in range(reps):
        per = {size: [] for size in sets}
        for _ in range(switches):
            for size, (a, b) in sets.items():
                ok, _, epoch = store.set_routing(epoch, {"champion": a, "previous": ""}, action="reset")
                t = time.perf_counter()
                ok1, _, epoch = store.set_routing(epoch, {"champion": b, "previous": a}, action="promote")
                ok2, _, epoch = store.set_routing(epoch, {"champion": a, "previous": b}, action="rollback")
                per[size].append((time.perf_counter() - t) / 2)
                assert ok and ok1 and ok2
        for size in sets:
            times[size].append(statistics.median(per[size]) * 1e6)
    r = report.add(Row("routing", f"promote/rollback (set_routing) with {big:,} keys a version", times[big], "µs",
                       times[1_000], "same with 1,000 keys", fmt="{:,.0f}", higher_is_better=False,
                       target="≤ 1.5× the 1k time"))
    r.ok = r.ratio <= 1.5
    client.flushall()


def bench_canary_lookups(report: Report, server: LocalRedis, n: int, reps: int) -> None:
    """Batch lookups while a 5% canary routes by salted bucket, against champion-only routing (same keys,
    same run): `lookup` of hex keys and `lookup_digests` of raw keys, each one call of n keys."""
    from irisdag.core import keys

    store = new_store(server)
    client = server.client()
    client.flushall()
    D = unique_digests(n, seed=7)
    hexes = keys.hex_of_digests(D)
    champion, canary = version_id("canary-champion"), version_id("canary-challenger")
    for v, role in ((champion, "champion"), (canary, "challenger")):
        ready_version(store, v, n, role=role)
        store.write_predictions(v, D, np.zeros(n, dtype=np.int8))
        store.mark_generation(v, 1, n)
    ok, _, epoch = store.set_routing(store.routing().epoch, {"champion": champion}, action="bootstrap")
    assert ok

    def lua_us_per_key(call, keys_in) -> tuple[float, object]:
        client.config_resetstat()
        got = call(keys_in)
        return client.info("commandstats")["cmdstat_fcall_ro"]["usec"] / n, got

    def timed_lua_us_per_key(call, keys_in) -> tuple[float, float, object]:
        """(Redis' time a key, the caller's wall time a key, the answers) of one call."""
        client.config_resetstat()
        start = time.perf_counter()
        got = call(keys_in)
        wall = (time.perf_counter() - start) * 1e6 / n
        return client.info("commandstats")["cmdstat_fcall_ro"]["usec"] / n, wall, got

    times: dict[tuple[str, bool], list[float]] = {}
    # Interleaved, so drift on the shared machine hits both alike; a rep takes a second or two,
    # so take at least 7 of them: the ratio of two medians of 3 swings by ±0.1 under load.
    for _ in range(max(reps, 7)):
        for canary_on in (False, True):
            change = ({"challenger": canary, "strategy": "canary", "shares": {canary: 500}, "salt": "bench-canary"}
                      if canary_on else {"challenger": "", "strategy": "", "shares": {}, "salt": ""})
            ok, _, epoch = store.set_routing(epoch, change, action="ramp" if canary_on else "abort")
            assert ok
            us, answers = lua_us_per_key(store.lookup, hexes)
            times.setdefault(("lookup", canary_on), []).append(us)
            assert any(a["route"] == "challenger" for a in answers) == canary_on
            # A client learns the salt in force from its first reply after a routing change and
            # sends its keys' buckets from then on (Redis uses them under that salt only).
            store.lookup_digests(D[:1])
            us, wall, batch = timed_lua_us_per_key(store.lookup_digests, D)
            times.setdefault(("lookup_digests", canary_on), []).append(us)
            times.setdefault(("lookup_digests wall", canary_on), []).append(wall)
            assert bool((batch.version_index > 0).any()) == canary_on and (batch.labels == 0).all()
    for name, what in (("lookup", "hex keys"), ("lookup_digests", "raw keys, the client's buckets")):
        r = report.add(Row("lookup", f"Lua {name} time per key during a 5% canary ({what}, {n:,} keys a call)",
                           times[(name, True)], "µs", times[(name, False)], "same keys, champion only",
                           fmt="{:.2f}", higher_is_better=False, target="≤ 1.2×"))
        r.ok = r.ratio <= 1.2
    r = report.add(Row("lookup", f"lookup_digests() wall time per key during a 5% canary (client's hashing included, "
                                 f"{n:,} keys a call)",
                       times[("lookup_digests wall", True)], "µs", times[("lookup_digests wall", False)],
                       "same keys, champion only", fmt="{:.2f}", higher_is_better=False, target="≤ 1.2×"))
    r.ok = r.ratio <= 1.2
    client.flushall()


# ---- end to end ----------------------------------------------------------------------

def course_flow(server: LocalRedis, X: np.ndarray, booster) -> int:
    """The course flow's own method: pandas apply per row for the key, iterrows into a dict, one SET per key."""
    import hashlib

    import pandas as pd

    from irisdag.models.artifacts import predict_labels

    client = server.client()
    df = pd.DataFrame(X, columns=["sepal_length", "sepal_width", "petal_length", "petal_width"])
    df["key"] = df.apply(lambda row: hashlib.sha256(" ".join(str(round(v, 1)) for v in row).encode()).hexdigest(),
                         axis=1)
    df["label"] = predict_labels(booster, X)
    answers = {}
    for _, row in df.iterrows():
        answers[row["key"]] = int(row["label"])
    pipe = client.pipeline(transaction=False)
    for key, label in answers.items():
        pipe.set(key, label)
    pipe.execute()
    return len(answers)


def ours_flow(store, X: np.ndarray, booster, version: str, directory: Path) -> int:
    """Validate (quarantine), round and deduplicate into files (the incoming_batch asset), then hash,
    score and write the distinct inputs (the predictions assets): the hashing of a chunk overlaps the
    write of the one before."""
    from irisdag import serving
    from irisdag.core import keys

    bad = keys.invalid_mask(X)
    good = X[~bad] if bad.any() else X
    serving.prepare_array(directory, good)
    written, _ = serving.score_batch(store, booster, version, directory)
    store.mark_generation(version, 1, written)
    return written


def bench_e2e(report: Report, server: LocalRedis, n: int, reps: int, base_reps: int, work: Path,
              model: Path) -> None:
    booster = load_booster(model)
    store = new_store(server)
    client = server.client()
    X = iris_rows(n, seed=21)
    W = distinct_rows(n, seed=22)
    ours = {"iris": [], "distinct": []}
    base = {"iris": [], "distinct": []}
    keys_of = {}
    for rep in range(max(reps, base_reps)):
        for name, rows in (("iris", X), ("distinct", W)):
            if rep < reps:
                client.flushall()
                v = version_id(f"e2e-{rep}")
                ready_version(store, v, 0, role="champion")  # as the demo registers it: size unknown
                seconds, written = timed(ours_flow, store, rows, booster, v, work / f"e2e-{name}-{rep}")
                ours[name].append(n / seconds)
                keys_of[name] = written
            if rep < base_reps:
                client.flushall()
                seconds, course_keys = timed(course_flow, server, rows, booster)
                base[name].append(n / seconds)
                log(f"  course flow on {name} rows, rep {rep + 1}: {seconds:.1f} s")
                assert course_keys == keys_of[name], (name, course_keys, keys_of[name])
    r = report.add(Row("end to end", f"{n:,} iris-like rows → {keys_of['iris']:,} keys, "
                                     f"{n / keys_of['iris']:.1f} rows a key (validate, key, dedupe, score, write)",
                       ours["iris"], "rows/s", base["iris"], "course flow, same rows", target="≥ 500k/s and ≥ 12×"))
    r.ok = r.median >= 500_000 and r.ratio >= 12
    w = report.add(Row("end to end", f"{n:,} rows nearly all distinct → {keys_of['distinct']:,} keys, "
                                     f"{n / keys_of['distinct']:.2f} rows a key", ours["distinct"], "rows/s",
                       base["distinct"], "course flow, same distinct rows", target="≥ 700k/s and ≥ 15×"))
    w.ok = w.median >= 700_000 and w.ratio >= 15
    # Fixed cost of a window: the same path on a 1,000-row window, where rows cost next to nothing.
    small = W[:1_000]
    fixed = []
    for rep in range(reps):
        client.flushall()
        v = version_id(f"e2e-small-{rep}")
        ready_version(store, v, 0, role="champion")
        fixed.append(timed(ours_flow, store, small, booster, v, work / f"e2e-small-{rep}")[0] * 1e3)
    report.add(Row("end to end", "fixed cost of a window: the same path on 1,000 distinct rows", fixed, "ms",
                   fmt="{:,.1f}", higher_is_better=False))
    client.flushall()


# ---- growth, the demo path, the command line, the Feast peer ------------------------------

def bench_growth(report: Report, server: LocalRedis, total: int, batch: int, reps: int) -> None:
    """A version registered before its size is known, fed batch by batch (each batch's keys
    reserved, then written in score_batch's chunks): resharded as it grows. Against the same
    keys written into a version sized for all of them at registration."""
    from irisdag.serving import SCORE_CHUNK_KEYS
    from irisdag.store.resource import pred_key

    store = new_store(server)
    client = server.client()
    D = unique_digests(total, seed=41)
    labels = np.zeros(total, dtype=np.int8)
    grown, sized, mem, fills = [], [], [], []
    for rep in range(reps):
        for presized in (False, True):
            client.flushall()
            v = version_id(f"growth-{rep}")
            ready_version(store, v, total if presized else 0)
            before = int(client.info("memory")["used_memory"])
            start = time.perf_counter()
            for lo in range(0, total, batch):
                part = D[lo:lo + batch]
                if not presized:
                    store.reserve_keys(v, len(part))
                for c in range(0, len(part), SCORE_CHUNK_KEYS):
                    store.write_predictions(v, part[c:c + SCORE_CHUNK_KEYS], labels[lo + c:lo + c + len(part[c:c + SCORE_CHUNK_KEYS])])
            seconds = time.perf_counter() - start
            (sized if presized else grown).append(total / seconds)
            if not presized:
                mem.append((int(client.info("memory")["used_memory"]) - before) / total)
                info = store.version_info(v)
                g, n = int(info["layout"]), int(info["shards"])
                pipe = client.pipeline(transaction=False)
                for s in range(n):
                    pipe.hlen(pred_key(v, s, layout=g))
                lengths = pipe.execute()
                fills.append((max(lengths), total / n, g))
    r = report.add(Row("store memory", f"a version grown batch by batch to {total:,} keys ({batch:,} a batch, "
                                       "resharded as it grows): used_memory per prediction", mem, "B", fmt="{:.1f}",
                       target="≤ 45 B", higher_is_better=False))
    r.ok = r.median <= 45
    most, mean, g = fills[-1]
    report.add(Row("store write", f"same: write rate including its {g} reshards (largest shard {most}, mean "
                                  f"{mean:.0f}; listpack up to 128)", grown, "pairs/s", sized,
                   "same keys, version sized at registration"))
    client.flushall()


def bench_demo(report: Report, server: LocalRedis, sizes: list[int], work: Path) -> None:
    """`irisdag demo` as a user runs it (a subprocess; REDIS_URL = this run's server), on a batch
    source of nearly distinct rows with a label file: Redis memory per stored prediction, every
    version counted, and the run's time, with a 1,000-row window giving the fixed cost."""
    client = server.client()
    fixed = None
    for n in [1_000, *sizes]:
        csv, labels = work / f"demo-{n}.csv", work / f"demo-{n}-labels.csv"
        write_csv(csv, distinct_rows(n, seed=50 + n))
        labels.write_text("\n".join(map(str, np.random.default_rng(n).integers(0, 3, n).tolist())) + "\n")
        client.flushall()
        before = int(client.info("memory")["used_memory"])
        env = dict(os.environ, REDIS_URL=server.url, IRISDAG_HOME=str(work / f"demo-home-{n}"),
                   IRISDAG_BATCH_SOURCE=str(csv), IRISDAG_FEEDBACK_SOURCE=str(labels), PYTHONPATH=str(PROJECT))
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "irisdag.cli", "demo"], env=env, cwd=PROJECT,
                              capture_output=True, text=True, timeout=3600)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"irisdag demo ({n:,} rows) failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        used = int(client.info("memory")["used_memory"]) - before
        stored = 0
        for name in client.scan_iter(match="irisdag:version:*"):
            stored += int(client.hget(name, "keys") or 0)
        shutil.rmtree(work / f"demo-home-{n}", ignore_errors=True)
        csv.unlink()
        labels.unlink()
        if n == 1_000:
            fixed = seconds
            report.add(Row("demo", "fixed cost of a window: `irisdag demo` on a 1,000-row batch source "
                                   "(imports, Dagster run setup, checks, sensors)", [seconds], "s", fmt="{:.1f}",
                           higher_is_better=False))
            continue
        m = report.add(Row("demo", f"`irisdag demo` on {n:,} nearly distinct rows: Redis used_memory per stored "
                                   f"prediction ({stored:,} predictions, every version counted)", [used / stored], "B",
                           fmt="{:.1f}", target="≤ 45 B", higher_is_better=False))
        m.ok = m.median <= 45
        report.add(Row("demo", f"same run: rows/s after the fixed cost ({seconds:.1f} s in all)",
                       [n / max(seconds - fixed, 1e-9)], "rows/s", [n / seconds], "rows/s including the fixed cost"))
    client.flushall()


def bench_cli_lookup(report: Report, server: LocalRedis, n: int, reps: int, work: Path, model: Path) -> None:
    """`irisdag lookup --file` end to end (a subprocess: start, read, key, look up, print), on
    rows the store answers, against the Python batch lookup of the same keys."""
    from irisdag.core import keys

    booster = load_booster(model)
    store = new_store(server)
    client = server.client()
    client.flushall()
    X = distinct_rows(n, seed=61)
    v = version_id("cli")
    ready_version(store, v, 0, role="champion")
    ours_flow(store, X, booster, v, work / "cli-prepared")
    assert store.set_routing(store.routing().epoch, {"champion": v}, action="bootstrap")[0]
    csv = work / "cli.csv"
    write_csv(csv, X)
    D = keys.digests_of_quantized(keys.quantize_array(X))
    env = dict(os.environ, REDIS_URL=server.url, PYTHONPATH=str(PROJECT))
    cli, py, cpu, lua = [], [], [], []
    for rep in range(reps):
        client.config_resetstat()
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        with open(work / "cli.out", "wb") as out:
            proc = subprocess.run([sys.executable, "-m", "irisdag.cli", "lookup", "--file", str(csv)], env=env,
                                  cwd=PROJECT, stdout=out, stderr=subprocess.PIPE, timeout=600)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"irisdag lookup --file failed: {proc.stderr.decode()[-2000:]}")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - used.ru_utime + after.ru_stime - used.ru_stime)
        lua.append(sum(v["usec"] for k, v in client.info("commandstats").items()
                       if k in ("cmdstat_fcall_ro", "cmdstat_evalsha")) / 1e6)
        cli.append(n / seconds)
        py.append(n / timed(store.lookup_digests, D)[0])
    with open(work / "cli.out", "rb") as f:
        lines = sum(1 for _ in f)
    assert lines == n, (lines, n)
    r = report.add(Row("lookup", f"`irisdag lookup --file` on {n:,} rows, end to end (process start to last line)",
                       cli, "rows/s", py, "lookup_digests() of the same keys in-process", target="≥ 150k/s"))
    r.ok = r.median >= 150_000
    # Where the time goes, less dependent on the machine's load than the wall clock: the
    # two run side by side (Redis in its own process), so the wall is about the larger.
    report.note(f"`irisdag lookup --file` on {n:,} rows: the process's CPU (user + sys) "
                f"{statistics.median(cpu):.2f} s, Redis' own time in the lookups (INFO commandstats) "
                f"{statistics.median(lua):.2f} s, medians of {reps}.")
    client.flushall()


def bench_feast(report: Report, server: LocalRedis, n: int, work: Path) -> None:
    """Feast (feast[redis]) loading and serving the same answers from the same Redis, beside irisdag."""
    from irisdag.core import keys

    python = feast_python()
    if python is None:
        report.note("Feast peer baseline skipped: no Python with feast[redis] (install the `peers` extra, "
                    "`pip install -e .[peers]`, or point IRISDAG_FEAST_PYTHON at a virtualenv's python that has it).")
        log("feast: skipped (not installed)")
        return
    store = new_store(server)
    client = server.client()
    D = unique_digests(n, seed=71)
    labels = np.random.default_rng(71).integers(0, 3, n).astype(np.int8)
    hexes = np.array(keys.hex_of_digests(D))
    np.savez(work / "feast-answers.npz", keys=hexes, labels=labels)
    client.flushall()
    proc = subprocess.run([python, str(PROJECT / "benchmarks" / "feast_peer.py"), "--redis",
                           f"127.0.0.1:{server.port}", "--answers", str(work / "feast-answers.npz"),
                           "--work", str(work / "feast-repo")], capture_output=True, text=True, timeout=7200)
    if proc.returncode != 0:
        raise RuntimeError(f"Feast peer run failed:\n{proc.stderr[-3000:]}")
    feast = json.loads(proc.stdout.strip().splitlines()[-1])
    assert feast["wrong"] == 0
    client.flushall()
    v = version_id("feast-peer")
    ready_version(store, v, 0, role="champion")
    before = int(client.info("memory")["used_memory"])
    start = time.perf_counter()
    store.reserve_keys(v, n)
    store.write_predictions(v, D, labels)
    ours_load = time.perf_counter() - start
    ours_bytes = (int(client.info("memory")["used_memory"]) - before) / n
    store.mark_generation(v, 1, n)
    assert store.set_routing(store.routing().epoch, {"champion": v}, action="bootstrap")[0]
    probe = D[np.random.default_rng(2).choice(n, min(n, 100_000), replace=False)]
    ours_lookup = len(probe) / timed(store.lookup_digests, probe)[0]
    feast_bytes = (feast["used_after"] - feast["used_before"]) / n
    ver = feast["feast_version"]
    report.add(Row("Feast peer", f"load {n:,} answers into Redis (Feast {ver}: materialize)", [n / ours_load],
                   "rows/s", [n / feast["load_seconds"]], f"Feast {ver} materialize, same rows, same Redis"))
    report.add(Row("Feast peer", "Redis used_memory per stored answer", [ours_bytes], "B", [feast_bytes],
                   f"Feast {ver}, same rows", fmt="{:.1f}", higher_is_better=False))
    report.add(Row("Feast peer", f"batch lookups, {feast['batch']:,}-key calls for Feast, 10,000-key calls of "
                                 "lookup_digests for irisdag", [ours_lookup], "lookups/s",
                   [feast["lookups"] / feast["lookup_seconds"]], f"Feast {ver} get_online_features"))
    if feast.get("single_p50_s"):
        report.note(f"Feast {ver} single get_online_features p50: {feast['single_p50_s'] * 1e6:,.0f} µs "
                    "(irisdag's single lookup p50 is in the lookup rows above).")
    client.flushall()


def feast_python() -> str | None:
    """A Python that can import feast: IRISDAG_FEAST_PYTHON, this one, or ../<worktree>-feastvenv."""
    candidates = [os.environ.get("IRISDAG_FEAST_PYTHON", ""), sys.executable]
    for python in filter(None, candidates):
        probe = subprocess.run([python, "-c", "import feast"], capture_output=True, timeout=120)
        if probe.returncode == 0:
            return python
    return None


# ---- streaming, memory -------------------------------------------------------------------

def bench_stream(report: Report, server: LocalRedis, rows: int, reps: int, work: Path, model: Path,
                 whole: bool) -> None:
    csv = work / f"stream-{rows}.csv"
    if not csv.exists():
        for start in range(0, rows, 2_000_000):
            write_csv(csv, iris_rows(min(2_000_000, rows - start), seed=1000 + start))
    size = csv.stat().st_size
    client = server.client()
    store = new_store(server)

    def one(mode_whole: bool, rep: int) -> dict:
        client.flushall()
        v = version_id(f"stream-{rep}")
        ready_version(store, v, 0, role="champion")
        cmd = [sys.executable, "-m", "benchmarks.stream_run", "--csv", str(csv), "--dir",
               str(work / f"stream-out-{rep}"), "--url", server.url, "--model", str(model), "--version", v]
        if mode_whole:
            cmd.append("--whole")
        proc = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"stream run failed:\n{proc.stderr[-4000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    runs, wholes = [], []
    for rep in range(reps):
        runs.append(one(False, rep))
        if whole and rep == 0:
            wholes.append(one(True, rep))
    first = runs[0]
    keys_n = first["prepared"]["distinct_keys"]
    peak = [r["peak_rss"] / GiB for r in runs]
    r = report.add(Row("streaming", f"Dagster run over a {rows:,}-row CSV ({size / 1e6:,.0f} MB, {keys_n:,} keys): "
                                    "peak RSS", peak, "GiB", [w["peak_rss"] / GiB for w in wholes] or None,
                       "whole-batch path (assets today)" if wholes else "", fmt="{:.2f}", higher_is_better=False,
                       target="≤ 1 GiB"))
    r.ok = r.median <= 1.0
    report.add(Row("streaming", "same run: RSS after importing Dagster and irisdag",
                   [x["rss_after_imports"] / GiB for x in runs], "GiB", fmt="{:.2f}", higher_is_better=False))
    report.add(Row("streaming", "same run: rows/s through prepare_source + score_batch",
                   [rows / x["seconds"] for x in runs], "rows/s",
                   [rows / w["seconds"] for w in wholes] or None, "whole-batch path" if wholes else ""))
    for rep in range(reps):
        for name in (f"stream-out-{rep}",):
            import shutil

            shutil.rmtree(work / name, ignore_errors=True)
    client.flushall()


# ---- parallelism -------------------------------------------------------------------------

def bench_parallel(report: Report, server: LocalRedis, rows: int, chunks: int, reps: int, work: Path,
                   model: Path) -> None:
    import dagster as dg

    from benchmarks import dagster_jobs as jobs

    client = server.client()
    store = new_store(server)
    rows_file = work / f"parallel-{rows}.npy"
    np.save(rows_file, distinct_rows(rows, seed=31))
    instance_dir = Path(tempfile.mkdtemp(prefix="irisdag-bench-dagster-", dir=work))
    results = {"in-process": [], "multiprocess": []}
    detail = {}
    with dg.instance_for_test(temp_dir=str(instance_dir)) as instance:
        for rep in range(reps):
            for name, factory in (("in-process", jobs.make_inprocess_job), ("multiprocess", jobs.make_multiprocess_job)):
                client.flushall()
                v = version_id(f"parallel-{rep}")
                ready_version(store, v, rows, role="champion")
                cfg = {"rows_file": str(rows_file), "workdir": str(work / f"parallel-{name}-{rep}"),
                       "redis_url": server.url, "model": str(model), "version": v, "chunks": chunks}
                start = time.perf_counter()
                with dg.execute_job(dg.reconstructable(factory), instance=instance,
                                    run_config={"ops": {"split_batch": {"config": cfg}}}) as result:
                    seconds = time.perf_counter() - start
                    assert result.success, name
                    out = result.output_for_node("add_up")
                    out["steps"] = step_times(instance, result.run_id)
                    out["seconds"] = seconds
                results[name].append(rows / seconds)
                detail[name] = out
    r = report.add(Row("parallelism", f"{rows:,} distinct rows in {chunks} chunks, multiprocess executor "
                                      "(2 at once)", results["multiprocess"], "rows/s", results["in-process"],
                       "in-process executor, same graph"))
    mp, ip = detail["multiprocess"], detail["in-process"]
    work_mp = [p["end"] - p["begin"] for p in mp["parts"]]
    work_ip = [p["end"] - p["begin"] for p in ip["parts"]]
    startup = [st["start"] - st["launch"] for key, st in mp["steps"].items()
               if key.startswith("score_range") and "launch" in st and "start" in st]
    report.note(
        f"Parallelism (last repetition): the batch is split into {chunks} row ranges by a DynamicOut op; each "
        f"`score_range` step keys, deduplicates, scores and writes its range (`serving.prepare_array` + "
        f"`serving.score_batch`). In-process: one process, the {chunks} steps one after another, "
        f"{sum(work_ip):.1f} s of step work in a {ip['seconds']:.1f} s run. Multiprocess (max_concurrent 2): "
        f"{len({p['pid'] for p in mp['parts']})} step processes (pids {sorted({p['pid'] for p in mp['parts']})}), "
        f"at most {max_overlap(mp['parts'])} ranges computing at once, each step process first spending "
        f"{statistics.mean(startup) if startup else float('nan'):.1f} s starting (Python, Dagster, XGBoost imports) "
        f"before its {statistics.mean(work_mp):.1f} s of work (in-process: {statistics.mean(work_ip):.1f} s a "
        f"range); run {mp['seconds']:.1f} s. On 2 cores the Redis server needs most of one core during the writes, "
        f"so two step processes plus Redis share two cores: the multiprocess run reaches {r.ratio:.2f}× the "
        f"in-process rate. Processes pay off where a step's CPU work (hashing, scoring) is large against "
        f"process start-up and Redis has a core of its own (more cores, or Redis on another machine).")


def step_times(instance, run_id: str) -> dict:
    """Per step key: when the executor launched its worker, when the step started and ended (event log)."""
    from dagster import DagsterEventType as E

    wanted = {E.STEP_WORKER_STARTING: "launch", E.STEP_START: "start", E.STEP_SUCCESS: "end"}
    out: dict = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or event.event_type not in wanted or not event.step_key:
            continue
        out.setdefault(event.step_key, {})[wanted[event.event_type]] = record.timestamp
    return out


def max_overlap(parts: list) -> int:
    """The most step compute windows [begin, end] open at one time."""
    edges = sorted([(p["begin"], 1) for p in parts] + [(p["end"], -1) for p in parts])
    best = now = 0
    for _, d in edges:
        now += d
        best = max(best, now)
    return best


# ---- main --------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="irisdag speed benchmarks (one command)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
    parser.add_argument("--out", default=str(PROJECT / "benchmarks" / "RESULTS.md"))
    parser.add_argument("--only", default="", help="comma-separated sections: keys,store,growth,routing,canary,cli,e2e,demo,stream,parallel,feast")
    parser.add_argument("--no-whole", action="store_true", help="skip the whole-batch comparison run (streaming)")
    args = parser.parse_args(argv)
    q = args.quick
    cfg = {
        "keys_n": 200_000 if q else 1_000_000, "reps": 3,
        "store_n": 1_000_000, "singles": 1_000 if q else 3_000,
        "route_big": 1_000_000, "route_switches": 50 if q else 100,
        "e2e_n": 100_000 if q else 1_000_000, "e2e_base_reps": 1,
        "stream_rows": 2_000_000 if q else 10_000_000, "stream_reps": 1,
        "parallel_rows": 1_000_000 if q else 4_000_000, "parallel_chunks": 2 if q else 4,
        "parallel_reps": 1,
        "growth_total": 1_000_000 if q else 3_000_000, "growth_batch": 250_000 if q else 500_000,
        "growth_reps": 1 if q else 2,
        "demo_sizes": [1_000_000] if q else [1_000_000, 3_000_000],
        "cli_n": 200_000 if q else 1_000_000, "cli_reps": 2 if q else 3, "feast_n": 50_000 if q else 200_000,
    }
    only = {s.strip() for s in args.only.split(",") if s.strip()}

    def want(name):
        return not only or name in only

    report = Report()
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="irisdag-bench-"))
    try:
        with LocalRedis() as server:
            model = booster_file(work)
            log(f"redis-server pid {server.proc.pid} on 127.0.0.1:{server.port}; work dir {work}")
            if want("keys"):
                log("keys")
                bench_keys(report, cfg["keys_n"], cfg["reps"])
            if want("store"):
                log("store: writes, memory, lookups")
                bench_store(report, server, cfg["store_n"], cfg["reps"], cfg["singles"])
            if want("growth"):
                log("a version growing batch by batch (resharding)")
                bench_growth(report, server, cfg["growth_total"], cfg["growth_batch"], cfg["growth_reps"])
            if want("routing"):
                log("routing")
                bench_routing(report, server, cfg["route_big"], cfg["reps"], cfg["route_switches"])
            if want("canary"):
                log("lookups during a canary")
                bench_canary_lookups(report, server, 100_000, cfg["reps"])
            if want("cli"):
                log("irisdag lookup --file")
                bench_cli_lookup(report, server, cfg["cli_n"], cfg["cli_reps"], work, model)
            if want("e2e"):
                log("end to end (the course flow baseline is slow)")
                bench_e2e(report, server, cfg["e2e_n"], cfg["reps"], cfg["e2e_base_reps"], work, model)
            if want("demo"):
                log(f"irisdag demo at {cfg['demo_sizes']} rows")
                bench_demo(report, server, cfg["demo_sizes"], work)
            if want("stream"):
                log("streaming run")
                bench_stream(report, server, cfg["stream_rows"], cfg["stream_reps"], work, model,
                             whole=not args.no_whole)
            if want("parallel"):
                log("parallelism (Dagster executors)")
                bench_parallel(report, server, cfg["parallel_rows"], cfg["parallel_chunks"], cfg["parallel_reps"],
                               work, model)
            if want("feast"):
                log("the Feast peer (optional)")
                bench_feast(report, server, cfg["feast_n"], work)
            redis_version = server.client().info("server")["redis_version"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    command = ".venv/bin/python -m benchmarks" + "".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:]))
    load = os.getloadavg()
    header = (f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"redis-server {redis_version} (own instance, loopback); load average at the end "
              f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}; took {time.time() - started:.0f} s.")
    table = report.table()
    text = "\n".join([table, "", header, *[f"\n{n}" for n in report.notes]])
    print(text)
    failed = [r for r in report.rows if r.ok is False and not r.aim]
    md = ["# Benchmark results", "", "Produced by:", "", "```", command, "```", "",
          "Medians of repetitions (min – max beside them); every baseline was measured in the same run, on the "
          "same server. `ratio` = median / baseline median.", "", text, ""]
    Path(args.out).write_text("\n".join(md))
    log(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
