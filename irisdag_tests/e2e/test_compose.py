"""docker-compose.yml and deploy/ (issue item 3): the file validates with
Debian's docker-compose 1.29 (`docker-compose -f docker-compose.yml config`,
no engine needed), and what it starts is what the loopback stack test proves:
the same instance dagster.yaml, Redis configuration and ACL users, the course's
bucket layout, one code image for the code server, webserver and daemon.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from irisdag.defs.production import ACL_USERS, COURSE_LAYOUT

PROJECT = Path(__file__).resolve().parents[2]
DEPLOY = PROJECT / "deploy"
COMPOSE = shutil.which("docker-compose")
SERVICES = {"postgres", "minio", "minio-init", "redis", "redis-init", "code", "webserver", "daemon"}


def compose_config(**env) -> dict:
    if COMPOSE is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is not installed (.ci/run installs Debian's docker-compose)")
        pytest.skip("docker-compose is not installed (apt-get install -y docker-compose)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("IRISDAG_", "POSTGRES_", "MINIO_"))}
    proc = subprocess.run([COMPOSE, "-f", "docker-compose.yml", "config"], cwd=PROJECT, capture_output=True,
                          text=True, timeout=120, env={**clean, **env})
    assert proc.returncode == 0, f"docker-compose config failed:\n{proc.stderr}"
    return yaml.safe_load(proc.stdout)


def test_compose_file_validates_and_wires_the_stack():
    config = compose_config()
    services = config["services"]
    assert SERVICES <= set(services)
    command = lambda name: " ".join(services[name]["command"])  # noqa: E731
    assert command("code").startswith("dagster api grpc") and "irisdag.definitions" in command("code")
    assert command("webserver").startswith("dagster-webserver")
    assert command("daemon").startswith("dagster-daemon run")
    assert "redis-init" in command("redis-init") and "irisdag.defs.production" in command("redis-init")
    # One image, built from deploy/Dockerfile, for the code server, the webserver, the daemon and redis-init.
    images = {services[s]["image"] for s in ("code", "webserver", "daemon", "redis-init")}
    assert len(images) == 1
    assert services["code"]["build"]["dockerfile"] == "deploy/Dockerfile"
    for name in ("code", "webserver", "daemon"):
        env = services[name]["environment"]
        assert env["DAGSTER_POSTGRES_URL"].startswith("postgresql+psycopg2://")
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000" and env["IRISDAG_S3_BUCKET"]  # step logs
        assert env["DAGSTER_HOME"] == "/opt/dagster/dagster_home"
    code_env = services["code"]["environment"]
    assert code_env["IRISDAG_DEPLOYMENT"] == "production"
    # Scoring as the scoring user; routing changes (promote, rollback, abort, ramp) as the routing user.
    assert code_env["REDIS_URL"].startswith(f"redis://{ACL_USERS['scoring']}:")
    assert code_env["IRISDAG_ROUTING_REDIS_URL"].startswith(f"redis://{ACL_USERS['routing']}:")
    # Least privilege: only the code server (and the runs it starts) holds the Redis credentials.
    for name in ("webserver", "daemon"):
        assert not {"REDIS_URL", "IRISDAG_ROUTING_REDIS_URL"} & set(services[name]["environment"])
    # The code server waits for the deploy-time steps; the webserver and daemon for a healthy code server.
    assert services["code"]["depends_on"]["redis-init"]["condition"] == "service_completed_successfully"
    assert services["code"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    assert services["webserver"]["depends_on"]["code"]["condition"] == "service_healthy"
    assert services["daemon"]["depends_on"]["code"]["condition"] == "service_healthy"
    # Published ports are on loopback only.
    for service in services.values():
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", port
    # Redis: the deploy configuration, started by start.sh with the ACL users; MinIO: the bootstrap.
    assert services["redis"]["entrypoint"][-1].endswith("start.sh")
    assert any(str(v).endswith(":/course:ro") or (isinstance(v, dict) and v.get("target") == "/course")
               for v in services["minio-init"]["volumes"])


def test_passwords_come_from_the_environment():
    config = compose_config(IRISDAG_REDIS_SCORING_PASSWORD="from-env", IRISDAG_REDIS_ROUTING_PASSWORD="r-from-env",
                            POSTGRES_PASSWORD="pg-from-env", IRISDAG_S3_BUCKET="elsewhere")
    env = config["services"]["code"]["environment"]
    assert env["REDIS_URL"] == "redis://irisdag-scoring:from-env@redis:6379/0"
    assert env["IRISDAG_ROUTING_REDIS_URL"] == "redis://irisdag-routing:r-from-env@redis:6379/0"
    assert ":pg-from-env@postgres:5432/" in env["DAGSTER_POSTGRES_URL"]
    assert env["IRISDAG_S3_BUCKET"] == "elsewhere"
    assert config["services"]["redis"]["environment"]["IRISDAG_REDIS_SCORING_PASSWORD"] == "from-env"
    assert config["services"]["redis"]["environment"]["IRISDAG_REDIS_ROUTING_PASSWORD"] == "r-from-env"


def test_deploy_files_agree_with_the_code():
    # The instance: Postgres from DAGSTER_POSTGRES_URL, the daemon's run queue, compute logs in the bucket.
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert instance["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_POSTGRES_URL"}
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert instance["compute_logs"]["module"] == "dagster_aws.s3.compute_log_manager"
    from dagster._core.instance.config import dagster_instance_config

    dagster_instance_config(str(DEPLOY), "dagster.yaml")  # raises on an invalid instance config
    # The workspace targets the code service's gRPC port.
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    grpc = workspace["load_from"][0]["grpc_server"]
    assert (grpc["host"], grpc["port"], grpc["location_name"]) == ("code", 4000, "irisdag")
    # Redis: AOF, noeviction; the consumer's exact grant.
    conf = (DEPLOY / "redis" / "redis.conf").read_text().splitlines()
    assert "appendonly yes" in conf and "maxmemory-policy noeviction" in conf
    acl = (DEPLOY / "redis" / "users.acl.template").read_text()
    assert "user default off" in acl
    # The whole line: look up, queue a miss (either key naming), tell a cluster node; nothing more.
    assert f"user {ACL_USERS['consumer']} on #@CONSUMER_PASSWORD_SHA256@ resetkeys resetchannels -@all " \
           "+fcall_ro +hget +xadd +ping +info|cluster +command +cluster|slots " \
           "%R~irisdag:* %W~irisdag:misses %W~irisdag:{irisdag}:misses" in acl.splitlines()
    for role in ("scoring", "routing"):  # each refusal is tested on a real server in test_acl_users.py
        line = next(line for line in acl.splitlines() if line.startswith(f"user {ACL_USERS[role]}"))
        assert "%R~irisdag:*" in line and "-@all" in line and "+function|load" not in line
        assert not {"+scan", "+config|get", "+xtrim", "+del", "+rename", "+expire", "+move"} & set(line.split())
    # MinIO bootstrap loads the course's layout.
    bootstrap = (DEPLOY / "minio" / "bootstrap.sh").read_text()
    for name, key in COURSE_LAYOUT.items():
        assert f"load {name} {key}" in bootstrap
    # The image: the code server by default, the production instance baked in.
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "COPY deploy/dagster.yaml deploy/workspace.yaml /opt/dagster/dagster_home/" in dockerfile
    assert 'CMD ["dagster", "api", "grpc"' in dockerfile and "IRISDAG_DEPLOYMENT=production" in dockerfile
    assert (DEPLOY / "Dockerfile.dockerignore").exists()
