"""Shared pieces of the benchmarks: a private redis-server, timing, data, the result table."""
from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import redis

PROJECT = Path(__file__).resolve().parents[1]
REDIS_SERVER = os.environ.get("IRISDAG_TEST_REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_BENCHMARK = shutil.which("redis-benchmark") or "/usr/bin/redis-benchmark"


class LocalRedis:
    """A redis-server of our own: 127.0.0.1, a free port, its own folder, stopped by its pid."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="irisdag-bench-redis-"))
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=300)

    def start(self) -> "LocalRedis":
        for _ in range(5):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            log = open(self.dir / "redis.log", "ab")
            self.proc = subprocess.Popen(
                [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                 "--dir", str(self.dir), "--maxmemory-policy", "noeviction"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            probe = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=1)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if probe.ping():
                        self.port = port
                        probe.close()
                        return self
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    time.sleep(0.05)
            probe.close()
            self.stop()
        raise RuntimeError(f"redis-server did not start; see {self.dir / 'redis.log'}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(20)

    def __enter__(self) -> "LocalRedis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def version_id(name: str) -> str:
    """Shaped like a real version id (SHA-256 of a model file): key names are part of the cost."""
    import hashlib

    return hashlib.sha256(name.encode()).hexdigest()


def unique_digests(n: int, seed: int) -> np.ndarray:
    """n distinct synthetic keys as raw digests (S32)."""
    return np.frombuffer(np.random.default_rng(seed).bytes(32 * n), dtype="S32").copy()


def iris_rows(n: int, seed: int) -> np.ndarray:
    """Realistic batch rows: the project's generator (iris-like, rounded to 0.1 cm, with drift)."""
    from irisdag.core import generator

    X, _ = generator.generate(n, seed=seed, drift=0.5, t=0.5)
    return np.asarray(X, dtype=np.float64)


def distinct_rows(n: int, seed: int) -> np.ndarray:
    """A worst case for deduplication: nearly every row its own key (values to 0.01 over wide ranges)."""
    rng = np.random.default_rng(seed)
    return np.round(rng.uniform([0, 0, 0, 0], [100, 50, 100, 30], (n, 4)), 2)


def write_csv(path: Path, X: np.ndarray) -> None:
    """The course layout (four columns, no header), formatted by numpy: fast for millions of rows."""
    from irisdag.core import keys

    with open(path, "ab") as f:
        for start in range(0, len(X), 1 << 20):
            buf, lengths = keys.canonical_buffer(keys.quantize_array(X[start:start + (1 << 20)]))
            width = buf.shape[1]
            out = np.full((len(buf), width + 1), 0, dtype=np.uint8)
            out[:, :width] = buf
            out[np.arange(len(buf)), lengths] = 10
            out[out == 32] = 44
            f.write(out[out != 0].tobytes())


def booster_file(directory: Path) -> Path:
    """An XGBoost JSON model: the course's (kept as test data), else one trained on the iris table."""
    course = Path(__file__).resolve().parents[1] / "irisdag_tests" / "data" / "course" / "model.json"
    if course.exists():
        return course
    from irisdag.models.training import iris_table, train_model

    path = Path(directory) / "model.json"
    train_model(*iris_table(), seed=0).save_model(str(path))
    return path


def load_booster(path: Path):
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(path))
    return booster


# ---- results ----------------------------------------------------------------------

@dataclass
class Row:
    """One line of the table: a median of repetitions, against a baseline of the same run."""

    section: str
    metric: str
    values: list
    unit: str
    baseline: list | None = None
    baseline_name: str = ""
    higher_is_better: bool = True
    target: str = ""
    ok: bool | None = None
    note: str = ""
    fmt: str = "{:,.0f}"
    ratio_override: float | None = None
    aim: bool = False  # a goal, not a requirement: shown, but does not fail the run

    @property
    def median(self) -> float:
        return float(statistics.median(self.values))

    @property
    def base_median(self) -> float | None:
        return float(statistics.median(self.baseline)) if self.baseline else None

    @property
    def ratio(self) -> float | None:
        if self.ratio_override is not None:
            return self.ratio_override
        b = self.base_median
        if not b:
            return None
        return self.median / b

    def spread(self) -> str:
        if len(self.values) < 2:
            return ""
        return f"{self.fmt.format(min(self.values))} – {self.fmt.format(max(self.values))}"


@dataclass
class Report:
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def note(self, text: str) -> None:
        self.notes.append(text)

    def table(self) -> str:
        head = ["benchmark", "metric", "median", "min – max", "n", "baseline (same run)", "ratio", "target", "ok"]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
        for r in self.rows:
            base = ""
            if r.base_median is not None:
                base = f"{r.fmt.format(r.base_median)} {r.unit} ({r.baseline_name}, n={len(r.baseline)})"
            elif r.baseline_name:
                base = r.baseline_name
            ratio = f"{r.ratio:.2f}×" if r.ratio is not None else ""
            ok = "" if r.ok is None else ("yes" if r.ok else ("no (aim)" if r.aim else "**NO**"))
            lines.append("| " + " | ".join([
                r.section, r.metric + (f" ({r.note})" if r.note else ""), f"{r.fmt.format(r.median)} {r.unit}",
                r.spread(), str(len(r.values)), base, ratio, r.target, ok]) + " |")
        return "\n".join(lines)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out
