"""Shared pytest fixtures. Other engineers append theirs below; keep each one small.

Tests talk to real servers only: a redis-server this session starts itself on
a free 127.0.0.1 port (never 6379, never a server someone else runs).
"""
from __future__ import annotations

import pytest
import redis

from irisdag_tests.support.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server():
    """One redis-server (Debian's 7.0) for the whole session, stopped at the end."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def redis_url(redis_server):
    """The session server's URL, emptied first (FLUSHALL on that server only)."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def dagster_env(tmp_path, redis_url):
    """A real (temporary) Dagster instance and the pipeline's resources on the test's Redis."""
    from dagster import instance_for_test

    from irisdag.defs.resources import ArtifactStore
    from irisdag.store.resource import ServingStore

    resources = {"serving_store": ServingStore(redis_url=redis_url),
                 "artifacts": ArtifactStore(base_dir=str(tmp_path / "artifacts"))}
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        yield instance, resources


@pytest.fixture(scope="module")
def redis_cluster():
    """A Redis Cluster (3 masters + 3 replicas, Debian's 7.0) on loopback for one test module.

    Module scope: a module may kill nodes (``kill``/``wait_for_failover``/``restart``)
    without leaking a changed topology into other modules. ``flushall()`` empties it.
    """
    from irisdag_tests.support.redis_cluster import RedisTestCluster

    cluster = RedisTestCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()
