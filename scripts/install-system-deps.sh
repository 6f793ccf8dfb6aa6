#!/usr/bin/env bash
# System packages the test suite needs, installed only when missing (Debian;
# needs root): redis-server for the tests' own Redis servers, docker-compose to
# validate docker-compose.yml (no engine needed), Chromium for the UI
# screenshots, PostgreSQL's binaries for the production stack's own cluster.
set -euo pipefail

# Tests start their own redis-server (Debian's 7.x) on a free loopback port.
if ! command -v redis-server >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi

# The production stack's tests: Debian's docker-compose 1.29 validates
# docker-compose.yml (no engine needed); headless Chromium screenshots the UI;
# Postgres' initdb/postgres (/usr/lib/postgresql/*/bin) and the postgres user
# run the stack's own throwaway cluster; runuser comes with util-linux.
need=()
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    # Only the binaries: no main cluster on the standard port 5432.
    mkdir -p /etc/postgresql-common
    grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf \
        || echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf
    need+=(postgresql)
fi
if [ "${#need[@]}" -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

