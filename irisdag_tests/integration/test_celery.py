"""Scoring a large window in chunks on Dagster's Celery executor, with two real Celery workers.

The workers are started by this test (``dagster-celery worker start``, the
README's command) on loopback, with the broker and result backend in database
1 of the test's Redis; the run is launched with ``dagster job execute`` and
the README's run config. Its stored answers are compared, key for key and
field for field, with an in-process run of the same job on database 2.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import redis
import yaml

from irisdag import serving
from irisdag.defs.celery import CELERY_ACL_RULES, CELERY_KEY_PREFIX, celery_executor_config, celery_run_config
from irisdag.defs.chunked import score_window_chunked_job
from irisdag.defs.resources import ArtifactStore
from irisdag.models.artifacts import import_model
from irisdag.store.resource import PRED_PREFIX, VERSION_PREFIX, ServingStore
from irisdag_tests.support.data import COURSE
from irisdag_tests.support.processes import Proc, kill_marked

REPO = Path(__file__).resolve().parents[2]
PARTITION = "2026-12-01-00:00"
ROWS = 120_000
CHUNK_KEYS = 20_000


def _db_url(url: str, db: int) -> str:
    return url.rsplit("/", 1)[0] + f"/{db}"


def _prepare_window(artifacts_dir: Path, X: np.ndarray) -> str:
    art = import_model(COURSE / "model.json", artifacts_dir / "models")
    serving.prepare_array(artifacts_dir / "batches" / PARTITION, X)
    return art.version


def _register(url: str, version: str) -> ServingStore:
    store = ServingStore(redis_url=url)
    store.register_version(version, version, role="champion")
    store.set_validated(version, True, "validated for this test")
    store.partition_index(PARTITION)  # a kept window: the run marks the version's generation
    return store


def _stored(url: str, version: str) -> tuple[dict, dict]:
    """Every answer hash of the version (name -> field -> value) and its metadata."""
    client = redis.Redis.from_url(url)
    answers = {}
    for name in client.scan_iter(match=f"{PRED_PREFIX}{version}*", count=1000):
        answers[name] = client.hgetall(name)
    meta = client.hgetall(VERSION_PREFIX + version)
    client.close()
    return answers, {k: v for k, v in meta.items() if not k.endswith(b"_at")}


def _worker_ready(proc: Proc) -> bool:
    return proc.log_path.exists() and b" ready." in proc.log_path.read_bytes()


def test_a_large_window_scored_on_two_celery_workers_stores_what_an_in_process_run_stores(tmp_path, redis_url):
    rng = np.random.default_rng(11)
    X = rng.uniform(0.0, 8.0, size=(ROWS, 4)).round(1)
    celery_dir, local_dir = tmp_path / "artifacts-celery", tmp_path / "artifacts-local"
    version = _prepare_window(celery_dir, X)
    assert _prepare_window(local_dir, X) == version
    n_keys = serving.load_prepared(celery_dir / "batches" / PARTITION).n_keys
    assert n_keys > 5 * CHUNK_KEYS

    store_url, local_url = _db_url(redis_url, 0), _db_url(redis_url, 2)
    _register(store_url, version)
    _register(local_url, version)

    # The in-process run of the same job (one process, the default executor).
    result = score_window_chunked_job.execute_in_process(
        run_config={"ops": {"plan_score_chunks": {"config": {"partition": PARTITION, "chunk_keys": CHUNK_KEYS, "versions": [version]}}}},
        resources={"serving_store": ServingStore(redis_url=local_url),
                   "artifacts": ArtifactStore(base_dir=str(local_dir))})
    assert result.success

    # The instance the run and the workers share, and the Celery settings both read.
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    worker_yaml = tmp_path / "celery.yaml"
    # Celery's own ACL user, limited to its key prefix: the broker and backend run as it.
    password = uuid.uuid4().hex
    admin = redis.Redis.from_url(store_url)
    admin.execute_command("ACL", "SETUSER", "irisdag-celery", "reset", "on", f">{password}", *CELERY_ACL_RULES.split())
    creds = {"user": "irisdag-celery", "password": password}
    worker_yaml.write_text(yaml.safe_dump({"execution": {"config": celery_executor_config(store_url, **creds)}}))
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(yaml.safe_dump(
        celery_run_config(PARTITION, store_url, chunk_keys=CHUNK_KEYS, versions=[version], **creds)))
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ, DAGSTER_HOME=str(home), REDIS_URL=store_url, IRISDAG_ARTIFACTS_DIR=str(celery_dir),
               PYTHONPATH=str(REPO), PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    env.pop("IRISDAG_DEPLOYMENT", None)
    marker = f"celery-{uuid.uuid4().hex[:8]}"
    # Create the instance's storage once, before several processes open it at the same moment.
    subprocess.run([str(Path(bindir) / "dagster"), "instance", "migrate"], env=env, cwd=str(tmp_path),
                   check=True, capture_output=True, timeout=300)
    workers = [Proc(f"celery-worker-{i}",
                    [str(Path(bindir) / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                     "-y", str(worker_yaml), "-n", f"irisdag-test-{i}-{marker}", "--", "--concurrency=1"],
                    tmp_path / f"worker-{i}.log", env=env, cwd=str(tmp_path), marker=marker)
               for i in (1, 2)]
    try:
        for w in workers:
            w.wait_until(lambda w=w: _worker_ready(w), timeout=180, what=f"{w.name} ready")
        run = subprocess.run([str(Path(bindir) / "dagster"), "job", "execute", "-m", "irisdag.definitions",
                              "-j", "score_window_on_celery", "-c", str(run_yaml)],
                             env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=400)
        assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:],
                                     [w.log_tail() for w in workers])
    finally:
        for w in workers:
            w.stop()
        kill_marked(marker)  # a prefork child that outlived its parent, by pid
    assert all(not w.alive() for w in workers)

    # Both workers executed steps of the run (each chunk is one Celery task).
    done = [w.log_path.read_text().count("succeeded in") for w in workers]
    assert all(n >= 1 for n in done), done
    assert sum(done) >= n_keys // CHUNK_KEYS + 2  # plan + every chunk + finish

    # The stored answers: identical, hash by hash and field by field.
    celery_answers, celery_meta = _stored(store_url, version)
    local_answers, local_meta = _stored(local_url, version)
    assert celery_answers and celery_answers == local_answers
    assert sum(len(h) for h in celery_answers.values()) >= n_keys
    assert celery_meta == local_meta and celery_meta[b"complete"] == b"1"
    celery_labels = np.load(serving.predictions_path(celery_dir / "batches" / PARTITION, version))
    local_labels = np.load(serving.predictions_path(local_dir / "batches" / PARTITION, version))
    assert len(celery_labels) == n_keys and np.array_equal(celery_labels, local_labels)
    # The broker and backend kept to their own database and key prefix.
    broker = redis.Redis.from_url(_db_url(redis_url, 1))
    assert all(k.startswith(CELERY_KEY_PREFIX.encode()) for k in broker.scan_iter(count=1000))
    assert not any(k.startswith(CELERY_KEY_PREFIX.encode())
                   for k in redis.Redis.from_url(store_url).scan_iter(count=1000))
    shutil.rmtree(home / "dagster_celery", ignore_errors=True)
    # The user really is limited: nothing outside its prefix.
    celery_user = redis.Redis.from_url(celery_executor_config(store_url, **creds)["broker"])
    with pytest.raises(redis.exceptions.NoPermissionError):
        celery_user.get("irisdag:routing")
    admin.execute_command("ACL", "DELUSER", "irisdag-celery")
