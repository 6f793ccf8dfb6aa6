"""Memory on bad input (issue 9 item 4): peak RSS preparing 2M bad rows vs 2M good rows, and
the longest line a batch source may have.

    .venv/bin/python -m benchmarks.bad_input            # 2,000,000 rows, 3 repeats (medians)
    .venv/bin/python -m benchmarks.bad_input --rows 200000 --repeats 1

Each measurement is a fresh Python process that streams one CSV through
``serving.prepare_source`` (what ``incoming_batch`` runs) and reports its own
peak RSS (``ru_maxrss``); the baseline (2M good rows) is measured in the same
run. Bad rows mix every reason kind (NaN, text, ``5_0``, non-ASCII digits,
wrong field count, out of bounds after rounding, NUL bytes, long junk). The
goal: bad / good <= 1.0.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]

_CHILD = """
import json, resource, sys, time
from irisdag import serving
t = time.perf_counter()
summary = serving.prepare_source(sys.argv[1], sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - t, "rows_good": summary["rows_good"],
                  "rows_quarantined": summary["rows_quarantined"],
                  "by_reason": summary["quarantined_by_reason"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

BAD_KINDS = [
    b"nan,3.0,1.4,0.2", b"5.1,abc,1.4,0.2", b"5_0,3.0,1.4,0.2", b"5.0,\xd9\xa5,1.4,0.2", b"4.9,3.0,1.4",
    b"6.3,2.5,999999.96,1.9", b"5.0,2.9,1.1,0.4,9", b"5.0,\x00,1.1,0.4", b"x" * 200, b"5.0,2.9,inf,0.4",
]


def write_good(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    X = np.round(rng.uniform(0.1, 7.9, size=(rows, 4)), 1)
    with open(path, "wb") as f:
        for start in range(0, rows, 200_000):
            part = X[start:start + 200_000]
            f.write(("\n".join(",".join(f"{v:.1f}" for v in row) for row in part.tolist()) + "\n").encode())


def write_bad(path: Path, rows: int) -> None:
    block = b"\n".join(BAD_KINDS[i % len(BAD_KINDS)] for i in range(100_000)) + b"\n"
    with open(path, "wb") as f:
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            f.write(block if n == 100_000 else b"\n".join(block.split(b"\n")[:n]) + b"\n")


def measure(source: Path, work: Path) -> dict:
    out = work / f"prepared-{time.monotonic_ns()}"
    env = {"PYTHONPATH": str(PROJECT), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(source), str(out)], capture_output=True, text=True,
                          env=env, cwd=PROJECT, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"preparing {source.name} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def longest_line_accepted(work: Path) -> tuple[int, str]:
    """Read a source whose first line is exactly the cap (accepted), then one a byte longer (refused)."""
    from irisdag.core import batches

    cap = batches.MAX_LINE_BYTES
    row = "5.0,2.9,1.1,0.4"
    at_cap = work / "at-cap.csv"
    at_cap.write_text(row + " " * (cap - len(row)) + "\n" + row + "\n")
    assert len(batches.read_feature_csv(at_cap)) == 2
    over = work / "over-cap.csv"
    over.write_text(row + " " * (cap - len(row) + 1) + "\n" + row + "\n")
    try:
        batches.read_feature_csv(over)
    except batches.BatchSourceError as err:
        return cap, str(err).split(": ", 1)[1]
    raise AssertionError("a line over the cap was accepted")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(PROJECT))
    with tempfile.TemporaryDirectory(prefix="irisdag-bad-input-") as tmp:
        work = Path(tmp)
        good, bad = work / "good.csv", work / "bad.csv"
        write_good(good, args.rows)
        write_bad(bad, args.rows)
        results = {"good": [], "bad": []}
        for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits both alike
            results["good"].append(measure(good, work))
            results["bad"].append(measure(bad, work))
        cap, refusal = longest_line_accepted(work)
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("peak_rss_mb", "seconds")}
           for k, v in results.items()}
    bad_run = results["bad"][0]
    assert bad_run["rows_good"] == 0 and bad_run["rows_quarantined"] == args.rows, bad_run
    assert results["good"][0]["rows_good"] == args.rows
    print(f"rows per file: {args.rows:,}; repeats: {args.repeats} (medians)")
    print(f"{'source':<28}{'peak RSS (MB)':>15}{'seconds':>10}")
    print(f"{'good rows (baseline)':<28}{med['good']['peak_rss_mb']:>15.0f}{med['good']['seconds']:>10.1f}")
    print(f"{'bad rows (all quarantined)':<28}{med['bad']['peak_rss_mb']:>15.0f}{med['bad']['seconds']:>10.1f}")
    print(f"quarantined by reason: {bad_run['by_reason']}")
    ratio = med["bad"]["peak_rss_mb"] / med["good"]["peak_rss_mb"]
    print(f"peak RSS bad / good: {ratio:.2f} (goal <= 1.00)")
    print(f"longest line accepted: {cap:,} bytes; one byte more: {refusal}")
    return 0 if ratio <= 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
