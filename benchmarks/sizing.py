"""The measurements behind docs/sizing.md, on one redis-server of our own.

    .venv/bin/python -m benchmarks.sizing                     # 1M and 10M keys
    .venv/bin/python -m benchmarks.sizing --sizes 1000000 --reps 3

Per size (one version of N distinct keys written with `write_predictions`, routed
as champion), on a private redis-server (127.0.0.1, free port, stopped by pid):

- memory: used_memory per stored prediction; RDB bytes per prediction (BGSAVE);
- lookups: Redis' own time per key (INFO commandstats) of the Lua
  `lookup_digests` and `lookup` over 100,000 stored keys, the bytes a key on
  the wire each way (INFO stats), and the in-process rate of `lookup_digests`; one-key `FCALL_RO lookup` calls from
  `redis-benchmark` (50 connections, no pipelining, then -P 16), the same key
  every call, hits;
- fork: latest_fork_usec of that BGSAVE, how long the BGSAVE took, the
  copy-on-write of the child (rdb_last_cow_size) while a second version of
  N/10 keys is written, while N/10 new keys go into the routed version's
  existing shard hashes (the usual batch), and while only lookups run; how
  long the BGSAVE command (the fork) takes as a client sees it, and the
  slowest PING meanwhile;
- restart: DEBUG RELOAD NOSAVE (load the RDB) time;
- resharding: MIGRATE of the version's shard hashes, 100 keys a call, to a
  second private redis-server: answers moved per second.

Prints one JSON object per size and a last line with the machine's load.
Medians over --reps repetitions where a measurement repeats.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np

from benchmarks._common import REDIS_BENCHMARK, REDIS_SERVER, timed, unique_digests, version_id
from benchmarks.run import new_store, ready_version
from irisdag_tests.support.redis_server import RedisServer

SERVER_ARGS = ("--maxmemory-policy", "noeviction", "--enable-debug-command", "local")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def wait_bgsave(client, timeout: float = 1800) -> float:
    """Seconds until the running BGSAVE ends (polled every 10 ms)."""
    start = time.perf_counter()
    while int(client.info("persistence")["rdb_bgsave_in_progress"]):
        if time.perf_counter() - start > timeout:
            raise TimeoutError("BGSAVE did not end")
        time.sleep(0.01)
    return time.perf_counter() - start


def bgsave(client) -> None:
    client.bgsave()
    while not int(client.info("persistence")["rdb_bgsave_in_progress"]):
        if int(client.info("persistence")["rdb_changes_since_last_save"]) == 0:
            return  # already done
        time.sleep(0.001)


def redis_benchmark_rps(port: int, key: str, pipeline: int, n: int = 200_000) -> float:
    out = subprocess.run([REDIS_BENCHMARK, "-h", "127.0.0.1", "-p", str(port), "-n", str(n), "-c", "50",
                          "-P", str(pipeline), "-q", "FCALL_RO", "lookup", "1", "irisdag:routing", key],
                         capture_output=True, text=True, timeout=600, check=True).stdout
    found = re.findall(r"([\d.]+) requests per second", out.replace(",", ""))
    if not found:
        raise RuntimeError(f"redis-benchmark printed no rate: {out[-500:]}")
    return float(found[-1])


def measure(n: int, reps: int) -> dict:
    from irisdag.core import keys
    from irisdag.store.resource import close_clients, pred_key

    result: dict = {"keys": n}
    with RedisServer(SERVER_ARGS, executable=REDIS_SERVER) as server, \
            RedisServer(SERVER_ARGS, executable=REDIS_SERVER) as target:
        store = new_store(server)
        client = server.client(socket_timeout=600)
        D = unique_digests(n, seed=7)
        labels = np.random.default_rng(7).integers(0, 3, n).astype(np.int8)
        v = version_id(f"sizing-{n}")
        ready_version(store, v, n, role="champion")
        before = int(client.info("memory")["used_memory"])
        seconds, added = timed(store.write_predictions, v, D, labels)
        after = int(client.info("memory")["used_memory"])
        assert added == n
        store.mark_generation(v, 1, n)
        assert store.set_routing(store.routing().epoch, {"champion": v}, action="bootstrap")[0]
        info = store.version_info(v)
        shards, layout = int(info["shards"]), int(info.get("layout") or 0)
        mem = client.info("memory")
        result.update(write_pairs_per_s=round(n / seconds), bytes_per_prediction=round((after - before) / n, 2),
                      shards=shards, used_memory=int(mem["used_memory"]), used_memory_rss=int(mem["used_memory_rss"]),
                      mem_fragmentation_ratio=float(mem["mem_fragmentation_ratio"]))
        log(f"{n:,}: written, {result['bytes_per_prediction']} B a prediction")

        rng = np.random.default_rng(8)
        size = min(100_000, n)
        digests_rates, digests_us, lookup_us = [], [], []
        net: dict[str, float] = {}
        for _ in range(reps):
            idx = rng.choice(n, size, replace=False)
            client.config_resetstat()
            secs, got = timed(store.lookup_digests, D[idx])
            stats = client.info("stats")
            net["digests_in"], net["digests_out"] = stats["total_net_input_bytes"], stats["total_net_output_bytes"]
            digests_us.append(client.info("commandstats")["cmdstat_fcall_ro"]["usec"] / size)
            digests_rates.append(size / secs)
            assert np.array_equal(got.labels, labels[idx])
            hexes = keys.hex_of_digests(D[idx])
            client.config_resetstat()
            store.lookup(hexes)
            stats = client.info("stats")
            net["lookup_in"], net["lookup_out"] = stats["total_net_input_bytes"], stats["total_net_output_bytes"]
            lookup_us.append(client.info("commandstats")["cmdstat_fcall_ro"]["usec"] / size)
        # Bytes on the wire a key (requests in, replies out; the INFO calls add a few hundred bytes).
        result.update({f"net_bytes_per_key_{k}": round(v / size, 1) for k, v in net.items()})
        med = statistics.median
        result.update(lua_us_per_key_lookup_digests=round(med(digests_us), 2),
                      lua_us_per_key_lookup=round(med(lookup_us), 2),
                      lookup_digests_per_s_in_process=round(med(digests_rates)),
                      lookups_per_s_lua_bound_digests=round(1e6 / med(digests_us)),
                      lookups_per_s_lua_bound_lookup=round(1e6 / med(lookup_us)))
        key = keys.hex_of_digests(D[:1])[0]
        single = [redis_benchmark_rps(server.port, key, 1) for _ in range(reps)]
        piped = [redis_benchmark_rps(server.port, key, 16) for _ in range(reps)]
        result.update(one_key_calls_per_s_c50_p1=round(med(single)), one_key_calls_per_s_c50_p16=round(med(piped)))
        log(f"{n:,}: lookups measured {json.dumps(result)}")

        # Fork: a BGSAVE of the whole data set, then one during a write, one during lookups.
        bgsave(client)
        result["bgsave_seconds"] = round(wait_bgsave(client), 2)
        stats = client.info("stats")
        result["fork_ms"] = round(int(stats["latest_fork_usec"]) / 1000, 1)
        rdb = os.path.join(server.dir, "dump.rdb")
        result["rdb_bytes_per_prediction"] = round(os.path.getsize(rdb) / n, 2)
        v2 = version_id(f"sizing-{n}-second")
        m = max(1, n // 10)
        ready_version(store, v2, m)
        bgsave(client)
        store.write_predictions(v2, unique_digests(m, seed=9), labels[:m])
        wait_bgsave(client)
        result["cow_mb_bgsave_during_write_of_n_over_10"] = round(
            int(client.info("persistence")["rdb_last_cow_size"]) / 1e6, 1)
        # The usual batch: new keys into the routed version's existing shard hashes.
        grow = unique_digests(m, seed=10)
        bgsave(client)
        secs, _ = timed(store.write_predictions, v, grow, labels[:m])
        result["bgsave_still_running_after_growth_write"] = bool(
            int(client.info("persistence")["rdb_bgsave_in_progress"]))
        wait_bgsave(client)
        result["cow_mb_bgsave_during_growth_by_n_over_10"] = round(
            int(client.info("persistence")["rdb_last_cow_size"]) / 1e6, 1)
        result["growth_write_seconds"] = round(secs, 2)
        stall = 0.0
        start = time.perf_counter()
        client.bgsave()
        result["bgsave_command_ms"] = round((time.perf_counter() - start) * 1000, 1)  # the fork, as a client sees it
        while int(client.info("persistence")["rdb_bgsave_in_progress"]):
            store.lookup_digests(D[rng.choice(n, 10_000, replace=False)])
            start = time.perf_counter()
            client.ping()
            stall = max(stall, time.perf_counter() - start)
        result["cow_mb_bgsave_during_lookups"] = round(int(client.info("persistence")["rdb_last_cow_size"]) / 1e6, 1)
        result["fork_ms_second"] = round(int(client.info("stats")["latest_fork_usec"]) / 1000, 1)
        result["slowest_ping_ms_during_bgsave"] = round(stall * 1000, 1)
        log(f"{n:,}: fork measured {json.dumps(result)}")

        # Restart: load the RDB just written.
        start = time.perf_counter()
        client.execute_command("DEBUG", "RELOAD", "NOSAVE")
        result["rdb_load_seconds"] = round(time.perf_counter() - start, 2)
        answers = store.lookup_digests(D[:1000])
        assert np.array_equal(answers.labels, labels[:1000])

        # Resharding: MIGRATE the first version's shard hashes to another server.
        names = [pred_key(v, s, layout=layout) for s in range(shards)]
        start = time.perf_counter()
        for i in range(0, len(names), 100):
            client.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 60_000, "KEYS", *names[i:i + 100])
        migrate_s = time.perf_counter() - start
        moved = target.client().dbsize()
        result.update(migrate_answers_per_s=round(n / migrate_s), migrate_seconds=round(migrate_s, 2),
                      migrated_hashes=int(moved))
        log(f"{n:,}: MIGRATE measured")
        server_info = client.info("server")
        result["redis_version"] = server_info["redis_version"]
        close_clients()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="measurements behind docs/sizing.md")
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    for n in [int(s) for s in args.sizes.split(",") if s.strip()]:
        print(json.dumps(measure(n, args.reps)), flush=True)
    load = os.getloadavg()
    print(json.dumps({"cores": os.cpu_count(), "load_average": [round(x, 1) for x in load]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
