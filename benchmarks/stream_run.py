"""One Dagster run of the streaming path (or of the whole-batch path), in its own process.

    python -m benchmarks.stream_run --csv F --dir D --url redis://... --model M --version V [--whole]

Prints one JSON object: the run's peak RSS (VmHWM of this process, which runs
the steps in process), the RSS after imports, the assets' timings and counts.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--csv", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--whole", action="store_true", help="the whole-batch path instead of the streaming one")
    a = p.parse_args(argv)
    import dagster as dg

    from benchmarks import dagster_jobs as jobs

    assets = jobs.whole_assets if a.whole else jobs.stream_assets
    names = [x.key.to_user_string() for x in assets]
    cfg = {"csv": a.csv, "directory": a.dir, "redis_url": a.url, "model": a.model, "version": a.version}
    imported_rss = rss_now()
    start = time.perf_counter()
    result = dg.materialize(assets, instance=dg.DagsterInstance.ephemeral(),
                            run_config={"ops": {n: {"config": cfg} for n in names}})
    seconds = time.perf_counter() - start
    prepared = result.output_for_node(names[0])
    scored = result.output_for_node(names[1])
    peak = jobs._peak_rss()  # VmHWM: this process's own peak (ru_maxrss would include the parent's)
    print(json.dumps({"success": result.success, "peak_rss": peak, "rss_after_imports": imported_rss,
                      "seconds": seconds, "prepared": prepared, "scored": scored}, default=str))
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
