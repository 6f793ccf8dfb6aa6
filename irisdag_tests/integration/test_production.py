"""The production deployment's parts on real servers: moto's S3 server (the
artifact store through dagster-aws), Redis 7 started from deploy/redis with the
ACL users (least privilege), and real in-process Dagster runs on the S3 store.

Servers are started by this module on free loopback ports and stopped by pid.
"""
from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import numpy as np
import pytest
import redis
from dagster import EnvVar, instance_for_test

from irisdag.core import keys as keyscheme
from irisdag.defs import production
from irisdag.defs.partitions import window_key
from irisdag.defs.production import (
    ACL_TEMPLATE, COURSE_LAYOUT, EnvServingStore, ProductionConfigError, S3ArtifactStore, bootstrap_bucket,
    production_resources, render_acl, s3_settings,
)
from irisdag.defs.store_checks import ARTIFACT_CHECK
from irisdag.demo import DemoSummary, materialize_window
from irisdag.models.artifacts import DigestMismatch, load_model
from irisdag.store.resource import ROUTING_KEY, ServingStore, close_clients
from irisdag_tests.support.processes import kill_marked
from irisdag_tests.support.services import COURSE, AclRedis, MotoS3

MARKER = f"irisdag-production-{uuid.uuid4().hex[:8]}"
BUCKET = "irisdag-it"


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    server = MotoS3(tmp_path_factory.mktemp("moto"), marker=MARKER).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory):
    server = AclRedis(tmp_path_factory.mktemp("acl-redis"), marker=MARKER).start()
    try:
        yield server
    finally:
        close_clients()
        server.stop()
        kill_marked(MARKER)


@pytest.fixture
def clean_redis(acl_redis):
    """The ACL server, emptied (keys only: the Lua library stays loaded, as after deploy)."""
    admin = acl_redis.admin()
    try:
        admin.flushdb()
    finally:
        admin.close()
    close_clients()
    return acl_redis


def _env(moto: MotoS3, redis_url: str, bucket: str, **extra) -> dict:
    return {**moto.env(), "REDIS_URL": redis_url, "IRISDAG_S3_BUCKET": bucket, "IRISDAG_S3_PREFIX": "irisdag", **extra}


@pytest.fixture
def bucket(moto):
    name = f"{BUCKET}-{uuid.uuid4().hex[:8]}"
    bootstrap_bucket(moto.client(), name, COURSE)
    return name


def store_for(moto: MotoS3, bucket: str, workdir: Path, monkeypatch) -> S3ArtifactStore:
    for k, v in moto.env().items():
        monkeypatch.setenv(k, v)
    return S3ArtifactStore(bucket=bucket, prefix="irisdag", base_dir=str(workdir), **s3_settings(moto.env()))


# ---- the artifact store on S3 ------------------------------------------------------------------

def test_push_and_pull_transfer_only_what_is_missing_or_changed(moto, bucket, tmp_path, monkeypatch):
    a = store_for(moto, bucket, tmp_path / "a", monkeypatch)
    b = store_for(moto, bucket, tmp_path / "b", monkeypatch)
    (a.batch_dir("w1") / "keys.npy").write_bytes(b"one")
    (a.batch_dir("w1") / "labels.npy").write_bytes(b"two")
    (a.batch_dir("w10") / "keys.npy").write_bytes(b"ten")
    (a.batch_dir("w1") / ".tmp.npy").write_bytes(b"never synced")
    a.data_path("raw_iris.npz").write_bytes(b"raw")
    assert sorted(a.push("batches", "data/raw_iris.npz")) == [
        "batches/w1/keys.npy", "batches/w1/labels.npy", "batches/w10/keys.npy", "data/raw_iris.npz"]
    assert a.push("batches") == []                                   # nothing changed: nothing sent
    head = moto.client().head_object(Bucket=bucket, Key="irisdag/batches/w1/keys.npy")
    assert head["Metadata"]["sha256"] == hashlib.sha256(b"one").hexdigest()

    assert b.list_dirs("batches") == ["w1", "w10"]
    assert sorted(b.pull("batches/w1")) == ["batches/w1/keys.npy", "batches/w1/labels.npy"]  # not w10
    assert (b.batch_dir("w1") / "keys.npy").read_bytes() == b"one"
    assert b.pull("batches/w1") == []                                # present and unchanged
    assert b.pull("data/raw_iris.npz") == ["data/raw_iris.npz"]      # a single file

    # Changed in the bucket: only that object comes down again.
    (a.batch_dir("w1") / "labels.npy").write_bytes(b"two, corrected")
    assert a.push("batches/w1") == ["batches/w1/labels.npy"]
    assert b.pull("batches/w1") == ["batches/w1/labels.npy"]
    assert (b.batch_dir("w1") / "labels.npy").read_bytes() == b"two, corrected"

    # A synced file deleted locally is deleted in the bucket; a partial copy deletes nothing else.
    (a.batch_dir("w1") / "labels.npy").unlink()
    assert a.push("batches/w1") == ["batches/w1/labels.npy"]
    keys = {o["Key"] for o in moto.client().list_objects_v2(Bucket=bucket, Prefix="irisdag/")["Contents"]}
    assert "irisdag/batches/w1/labels.npy" not in keys and "irisdag/batches/w10/keys.npy" in keys
    c = store_for(moto, bucket, tmp_path / "c", monkeypatch)
    (c.batch_dir("w1") / "keys.npy").write_bytes(b"one")             # same bytes, never synced here
    assert c.push("batches") == []
    assert "irisdag/batches/w10/keys.npy" in {
        o["Key"] for o in moto.client().list_objects_v2(Bucket=bucket, Prefix="irisdag/")["Contents"]}


def test_course_layout_is_readable_through_s3_uris(moto, bucket, tmp_path, monkeypatch):
    store = store_for(moto, bucket, tmp_path / "w", monkeypatch)
    for name, key in COURSE_LAYOUT.items():
        local = store.localize(f"s3://{bucket}/{key}")
        assert Path(local).read_bytes() == (COURSE / name).read_bytes()
    assert store.localize("/some/local/file.csv") == "/some/local/file.csv"
    with pytest.raises(FileNotFoundError, match=f"s3://{bucket}/data/nope.csv"):
        store.localize(f"s3://{bucket}/data/nope.csv")
    with pytest.raises(ValueError, match="only local paths and s3://"):
        store.localize("https://example.invalid/iris.csv")


# ---- the graph on S3 + ACL Redis, and a swapped model object ---------------------------------------

def test_course_graph_on_s3_then_a_swapped_model_object_is_refused(moto, bucket, clean_redis, tmp_path, monkeypatch):
    env = _env(moto, clean_redis.url("scoring"), bucket, IRISDAG_ARTIFACTS_DIR=str(tmp_path / "work"),
               IRISDAG_ROUTING_REDIS_URL=clean_redis.url("routing"))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    resources = production_resources(env)
    config = {"ops": {
        "champion_model": {"config": {"model_path": f"s3://{bucket}/artifact/model.json"}},
        "incoming_batch": {"config": {"source": f"s3://{bucket}/data/iris.csv"}},
        "feedback": {"config": {"source": f"s3://{bucket}/data/iris_y.csv"}},
    }}
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        summary = DemoSummary()
        materialize_window(None, window_key(0), instance, resources, summary, config)
        assert not summary.failures, summary.failures

        pipeline = ServingStore(redis_url=clean_redis.url("scoring"))
        champion = pipeline.routing().champion
        course_digest = hashlib.sha256((COURSE / "model.json").read_bytes()).hexdigest()
        assert champion == course_digest
        [first] = pipeline.lookup([keyscheme.input_key([5.0, 2.9, 1.1, 0.4])])  # the course's first row
        assert first["label"] == "setosa" and first["version"] == champion
        s3 = moto.client()
        model_key = f"irisdag/models/{champion}.json"
        assert s3.head_object(Bucket=bucket, Key=model_key)["Metadata"]["sha256"] == champion
        assert pipeline.version_info(champion)["digest"] == champion

        # Swap the object in the bucket for another valid XGBoost JSON model.
        other = next(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
                     for o in s3.list_objects_v2(Bucket=bucket, Prefix="irisdag/models/")["Contents"]
                     if o["Key"].endswith(".json") and not o["Key"].endswith(".meta.json") and o["Key"] != model_key)
        s3.put_object(Bucket=bucket, Key=model_key, Body=other)
        found = hashlib.sha256(other).hexdigest()

        fresh = S3ArtifactStore(bucket=bucket, prefix="irisdag", base_dir=str(tmp_path / "w2"), **s3_settings(env))
        assert fresh.pull("models") and (fresh.models_dir() / f"{champion}.json").read_bytes() == other
        with pytest.raises(DigestMismatch) as err:
            load_model(fresh.models_dir(), champion, pipeline.version_info(champion)["digest"])
        assert err.value.expected == champion and err.value.found == found
        assert champion in str(err.value) and found in str(err.value)

        # The same working copy the pipeline uses pulls the swapped object and refuses to score with it.
        later = DemoSummary()
        materialize_window(["champion_predictions"], window_key(0), instance, resources, later)
        assert any(champion in f and found in f for f in later.failures), later.failures

        # The serving-store check fails the run, names both digests, and writes the audit stream.
        from irisdag.definitions import build_defs

        result = build_defs(resources).resolve_job_def("validate_serving_store").execute_in_process(
            instance=instance, raise_on_error=False)
        assert not result.success
        evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert not evaluations[ARTIFACT_CHECK].passed
        assert champion in evaluations[ARTIFACT_CHECK].description and found in evaluations[ARTIFACT_CHECK].description
        audit = [e for e in pipeline.audit(20) if e["action"] == "store_check"]
        assert audit and audit[-1]["outcome"] == "failed" and audit[-1]["check"] == ARTIFACT_CHECK
        assert audit[-1]["run_id"] == result.run_id


# ---- least privilege in Redis -------------------------------------------------------------------------

def _serve_something(store: ServingStore, n: int = 20) -> tuple[str, list[str]]:
    keys = [hashlib.sha256(f"k{i}".encode()).hexdigest() for i in range(n)]
    version = "v" + uuid.uuid4().hex[:10]
    store.register_version(version, "d" * 64, role="champion")
    store.set_validated(version, True, "test")
    store.write_predictions(version, keys, np.arange(n) % 3)
    store.mark_generation(version, 0, n)
    ok, reason, _ = store.set_routing(0, {"champion": version, "salt": "s"}, action="bootstrap")
    assert ok, reason
    return version, keys


def test_consumer_looks_up_and_queues_misses_but_every_write_is_refused(clean_redis):
    pipeline = ServingStore(redis_url=clean_redis.url("scoring"), routing_url=clean_redis.url("routing"))
    version, keys = _serve_something(pipeline)
    consumer = ServingStore(redis_url=clean_redis.url("consumer"))
    consumer.ping()
    answers = consumer.lookup(keys)
    assert answers == pipeline.lookup(keys) and {a["route"] for a in answers} == {"champion"}
    assert consumer.queue_misses([{"key": "id:queued", "id": "queued"}])
    assert pipeline.pending_misses() == 1

    raw = consumer.client()
    refused = {
        "change routing (the route function)": lambda: consumer.set_routing(1, {"champion": version}, action="promote"),
        "change routing directly": lambda: raw.hset(ROUTING_KEY, "champion", "x"),
        "change a prediction": lambda: raw.hset(f"irisdag:pred:{version}:0", "k", "1"),
        "write predictions": lambda: consumer.write_predictions(version, keys[:1], [2]),
        "change version metadata": lambda: raw.hset(f"irisdag:version:{version}", "validated", "1"),
        "append to the audit stream": lambda: raw.xadd("irisdag:audit", {"action": "promote"}),
        "audit a refusal": lambda: consumer.audit_refusal("rollback", "x"),
        "record a decision": lambda: consumer.record_decision({"decision_id": "x", "decision": "promote"}),
        "delete a key": lambda: raw.unlink(ROUTING_KEY),
        "read a whole hash": lambda: raw.hgetall(ROUTING_KEY),
        "trim the misses": lambda: raw.xtrim("irisdag:misses", maxlen=0),
        "load functions": lambda: raw.function_load("#!lua name=x\nredis.register_function('f', function() end)", replace=True),
        "flush": lambda: raw.flushall(),
    }
    for what, attempt in refused.items():
        with pytest.raises(redis.exceptions.NoPermissionError, match="NOPERM|no permissions"):
            attempt()
    # Nothing changed.
    routing = pipeline.routing()
    assert routing.champion == version and routing.epoch == 1
    assert pipeline.lookup(keys) == answers
    assert [e["action"] for e in pipeline.audit(10)] == ["bootstrap"]


def test_scoring_user_writes_irisdag_keys_only_and_cannot_load_functions(clean_redis):
    pipeline = ServingStore(redis_url=clean_redis.url("scoring"), routing_url=clean_redis.url("routing"))
    _serve_something(pipeline)
    raw = pipeline.client()
    for attempt in (lambda: raw.set("not-irisdag", "x"),
                    lambda: raw.function_load("#!lua name=x\nredis.register_function('f', function() end)"),
                    lambda: raw.function_delete("irisdag"),
                    lambda: raw.flushall(),
                    lambda: raw.config_set("maxmemory-policy", "allkeys-lru"),
                    lambda: raw.keys("*"),
                    lambda: raw.eval("return 1", 0),
                    lambda: raw.acl_list(),
                    lambda: raw.publish("irisdag", "x")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    # The library the admin loaded at deploy time is there, and the same as this code's.
    from irisdag.defs.store_checks import check_routing

    verdict = check_routing(pipeline)
    assert verdict.passed, verdict.problems
    assert verdict.metadata["maxmemory_policy"] == "noeviction"
    assert verdict.metadata["functions"] == "irisdag library loaded"
    admin = clean_redis.admin()
    try:
        assert admin.config_get("appendonly") == {"appendonly": "yes"}
        assert admin.acl_getuser("default")["enabled"] is False
    finally:
        admin.close()


def test_scoring_user_grows_a_version_and_the_consumer_reads_it_in_bulk(clean_redis):
    """Resharding runs with the scoring user's rights alone (the Lua reshard, WATCH/MULTI on the
    version, UNLINK of the old layout), and the consumer's raw batch lookup needs only its own."""
    pipeline = ServingStore(redis_url=clean_redis.url("scoring"), routing_url=clean_redis.url("routing"))
    version, _ = _serve_something(pipeline)
    D = np.frombuffer(np.random.default_rng(5).bytes(32 * 20_000), dtype="S32")
    for start in range(0, len(D), 4_000):
        pipeline.write_predictions(version, D[start:start + 4_000], np.full(4_000, 2))
    assert int(pipeline.version_info(version)["layout"]) >= 2
    consumer = ServingStore(redis_url=clean_redis.url("consumer"))
    assert (consumer.lookup_digests(D).labels == 2).all()
    assert {a["label"] for a in consumer.lookup(keyscheme.hex_of_digests(D[:50]))} == {"virginica"}


def test_acl_file_from_the_template_matches_start_sh(clean_redis):
    rendered = render_acl(clean_redis.passwords)
    assert rendered == clean_redis.acl_file.read_text()
    assert "#" + hashlib.sha256(clean_redis.passwords["scoring"].encode()).hexdigest() in rendered
    assert "#" + hashlib.sha256(clean_redis.passwords["routing"].encode()).hexdigest() in rendered
    for password in clean_redis.passwords.values():
        assert password not in rendered  # only hashes on disk
    assert ("-@all +fcall_ro +hget +xadd +ping +info|cluster +command +cluster|slots %R~irisdag:* "
            "%W~irisdag:misses %W~irisdag:{irisdag}:misses\n") in ACL_TEMPLATE.read_text()


# ---- the deployment switch ---------------------------------------------------------------------------

def test_production_resources_come_from_the_environment(moto, monkeypatch):
    env = _env(moto, "rediss://irisdag-scoring:secret@redis.example:6380/0", "b")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    resources = production_resources(env)
    store, artifacts = resources["serving_store"], resources["artifacts"]
    # Secrets are EnvVars: the UI shows the variable's name, never the value.
    assert isinstance(store, EnvServingStore) and isinstance(store.redis_url, EnvVar)
    assert isinstance(artifacts.aws_secret_access_key, EnvVar) and isinstance(artifacts.endpoint_url, EnvVar)
    assert isinstance(resources["s3"].aws_secret_access_key, EnvVar)
    assert artifacts.bucket == "b" and artifacts.prefix == "irisdag"
    for missing, name in (("REDIS_URL", "REDIS_URL"), ("IRISDAG_S3_BUCKET", "IRISDAG_S3_BUCKET")):
        with pytest.raises(ProductionConfigError, match=name):
            production_resources({k: v for k, v in env.items() if k != missing})
    with pytest.raises(ProductionConfigError, match="no password"):
        production_resources({**env, "REDIS_URL": "redis://redis.example:6379/0"})
    with pytest.raises(ProductionConfigError, match=r"redis:// or rediss://"):
        production_resources({**env, "REDIS_URL": "http://u:p@redis.example/0"})
    from dagster import Definitions, build_sensor_context

    from irisdag.definitions import build_defs

    Definitions.validate_loadable(build_defs(resources))
    # No resource needs a context manager: `irisdag demo` builds its sensor context by hand.
    with instance_for_test() as instance:
        build_sensor_context(instance=instance, resources={"artifacts": artifacts, "s3": resources["s3"]}).resources


def test_env_serving_store_resolves_its_url_outside_dagster(clean_redis, monkeypatch):
    monkeypatch.setenv("REDIS_URL", clean_redis.url("scoring"))
    store = EnvServingStore(redis_url=EnvVar("REDIS_URL"))
    store.ping()
    assert store.routing().epoch == 0
    assert clean_redis.passwords["scoring"] not in store.label
    monkeypatch.delenv("REDIS_URL")
    with pytest.raises(Exception, match="REDIS_URL is not set"):
        store.ping()


def test_redis_init_command_loads_the_library(clean_redis, capsys):
    admin = clean_redis.admin()
    try:
        admin.function_flush()
    finally:
        admin.close()
    assert production.main(["redis-init", "--admin-url", clean_redis.url("admin")]) == 0
    assert '"matches_code": true' in capsys.readouterr().out
    assert production.main(["redis-init", "--admin-url", clean_redis.url("scoring")]) == 1  # no FUNCTION LOAD
