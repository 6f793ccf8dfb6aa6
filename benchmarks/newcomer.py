"""A newcomer's waiting times, measured as a user meets them (issue 10):

- `irisdag demo` on a fresh state folder (embedded Redis, SQLite instance), wall
  time from process start to exit, with the CPU time it used;
- `irisdag lookup 5.0 2.9 1.1 0.4` (the README's example, served by the
  champion) from process start to exit, against the bare interpreter's start
  and `import redis` measured in the same run; the lookup must take the
  plain-socket path (`irisdag.store.consumer`: redis-py not imported), else the
  benchmark stops and says so;
- `irisdag status`.

One command: `.venv/bin/python -m benchmarks.newcomer [--repeat 15] [--demos 3]`. Medians.
The machine's load is printed beside them: on a shared machine wall times
follow it, so the ratios to the same-run baselines are the figures to compare.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IRISDAG = [sys.executable, "-m", "irisdag.cli"]


LOOKUP_PROBE = """
import sys
from irisdag.cli import main
code = main(["lookup", "5.0", "2.9", "1.1", "0.4"])
print(f"redis-py imported: {'redis' in sys.modules}", file=sys.stderr)
sys.exit(code)
"""


def timed(cmd, env) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds, CPU seconds (user + sys of the child) and the result."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return wall, cpu, proc


def median_wall(cmd, env, repeat: int) -> tuple[float, float]:
    """Median wall and median CPU seconds of repeated runs."""
    runs = [timed(cmd, env)[:2] for _ in range(repeat)]
    return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs per short command (median)")
    parser.add_argument("--demos", type=int, default=3, help="fresh-state demos to time (median)")
    args = parser.parse_args(argv)
    if args.repeat < 9 or args.demos < 1:
        parser.error("--repeat must be at least 9 and --demos at least 1")
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "DAGSTER_HOME") and not k.startswith("IRISDAG_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    rows = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="irisdag-newcomer-") as tmp:
        demo_walls, demo_cpus = [], []
        try:
            for i in range(args.demos):
                if i:
                    timed([*IRISDAG, "stop"], env)  # the previous demo's embedded server
                env["IRISDAG_HOME"] = str(Path(tmp) / f"state{i}")
                wall, cpu, _ = timed([*IRISDAG, "demo"], env)
                demo_walls.append(wall)
                demo_cpus.append(cpu)
            answer = timed([*IRISDAG, "lookup", "5.0", "2.9", "1.1", "0.4"], env)[2].stdout.strip()
            assert answer.startswith("setosa\troute=champion"), answer
            probe = timed([sys.executable, "-c", LOOKUP_PROBE], env)[2].stderr.strip().splitlines()[-1]
            if probe != "redis-py imported: False":
                raise SystemExit(f"the lookup did not take the plain-socket path ({probe})")
            bare, bare_cpu = median_wall([sys.executable, "-c", "pass"], env, args.repeat)
            redis_import, redis_cpu = median_wall([sys.executable, "-c", "import redis"], env, args.repeat)
            lookup, lookup_cpu = median_wall([*IRISDAG, "lookup", "5.0", "2.9", "1.1", "0.4"], env, args.repeat)
            status, status_cpu = median_wall([*IRISDAG, "status"], env, args.repeat)
        finally:
            if "IRISDAG_HOME" in env:
                timed([*IRISDAG, "stop"], env)
    load = os.getloadavg()[0]
    rows.append((f"`irisdag demo`, fresh state folder (wall, median of {len(demo_walls)})",
                 f"{statistics.median(demo_walls):.1f} s",
                 f"CPU {statistics.median(demo_cpus):.1f} s; each: "
                 f"{', '.join(f'{w:.1f}' for w in demo_walls)} s", "≤ 12 s"))
    rows.append((f"`irisdag lookup 5.0 2.9 1.1 0.4` (wall, start to exit, median of {args.repeat})",
                 f"{lookup * 1000:.0f} ms",
                 f"CPU {lookup_cpu * 1000:.0f} ms; bare `python -c pass`: {bare * 1000:.0f} ms "
                 f"(CPU {bare_cpu * 1000:.0f}); `python -c 'import redis'`: {redis_import * 1000:.0f} ms "
                 f"(CPU {redis_cpu * 1000:.0f})", "≤ 300 ms"))
    rows.append(("`irisdag status` (wall)", f"{status * 1000:.0f} ms", f"CPU {status_cpu * 1000:.0f} ms", ""))
    print(f"answer: {answer}")
    print(f"load average (1 min) at the start: {load_before:.2f}, at the end: {load:.2f} on {os.cpu_count()} CPUs; "
          f"lookup / bare interpreter = {lookup / bare:.1f}x\n")
    print("| what | median | same run | target |")
    print("| --- | ---: | --- | --- |")
    for what, value, base, target in rows:
        print(f"| {what} | {value} | {base} | {target} |")


if __name__ == "__main__":
    main()
