"""The production stack's servers, started directly on loopback for tests.

- ``MotoS3``: moto's S3 server (``moto_server -H 127.0.0.1 -p PORT``), with the
  bucket and the course's files loaded as the compose ``minio-init`` does.
- ``AclRedis``: Redis 7 started by ``deploy/redis/start.sh`` with
  ``deploy/redis/redis.conf`` and the ACL users of
  ``deploy/redis/users.acl.template`` (AOF on, noeviction), the irisdag Lua
  library loaded by the admin user as the compose ``redis-init`` does.
- ``Postgres``: ``initdb`` + ``postgres`` from /usr/lib/postgresql/*/bin in a
  temporary folder, on a free port, run as the ``postgres`` system user
  (initdb refuses root), with a ``dagster`` role and database.

Each binds 127.0.0.1 on a free port, lives in its own temporary folder and is
stopped by its own process group; none touches the machine's own servers.
"""
from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import redis

from irisdag_tests.support.processes import Proc, free_port, kill_marked, port_open

PROJECT = Path(__file__).resolve().parents[2]
DEPLOY = PROJECT / "deploy"
COURSE = PROJECT / "irisdag_tests" / "data" / "course"


def venv_tool(name: str) -> str:
    """A console script of the Python running the tests (the project's venv), else one on PATH."""
    import sys

    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found beside {sys.executable} or on PATH")
    return found


class MotoS3:
    """moto's S3 server on a free loopback port."""

    access_key = "testing-access-key"
    secret_key = "testing-secret-key"
    region = "us-east-1"

    def __init__(self, directory: Path, marker: str = ""):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.marker = marker
        self.port = 0
        self.proc: Proc | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region}

    def start(self) -> "MotoS3":
        self.port = free_port()
        self.proc = Proc("moto_server", [venv_tool("moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                         self.dir / "moto.log", marker=self.marker)
        self.proc.wait_until(lambda: port_open(self.port), 60, "listening")
        return self

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name=self.region)

    def stop(self) -> float:
        return self.proc.stop() if self.proc else 0.0


class AclRedis:
    """Redis 7 with the deploy ACL users, via deploy/redis/start.sh; URLs per role."""

    def __init__(self, directory: Path, marker: str = "", load_functions: bool = True,
                 passwords: dict[str, str] | None = None, extra_args: Sequence[str] = ()):
        """``passwords`` (role -> password): the same users as another server (a replica's);
        ``extra_args`` go to redis-server (e.g. ``--replicaof``)."""
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.marker = marker
        from irisdag.defs.production import ACL_USERS

        self.passwords = dict(passwords) if passwords else {
            role: f"{role}-{secrets.token_hex(8)}" for role in ACL_USERS}
        self.extra_args = list(extra_args)
        self.port = 0
        self.proc: Proc | None = None
        self._load = load_functions

    def url(self, role: str) -> str:
        from irisdag.defs.production import ACL_USERS

        return f"redis://{ACL_USERS[role]}:{self.passwords[role]}@127.0.0.1:{self.port}/0"

    @property
    def acl_file(self) -> Path:
        return self.dir / "users.acl"

    def start(self) -> "AclRedis":
        executable = os.environ.get("IRISDAG_TEST_REDIS_SERVER") or "/usr/bin/redis-server"
        env = dict(os.environ)
        env.update({f"IRISDAG_REDIS_{role.upper()}_PASSWORD": pw for role, pw in self.passwords.items()})
        env["IRISDAG_REDIS_ACL_FILE"] = str(self.acl_file)
        env["PATH"] = f"{Path(executable).parent}:{env.get('PATH', '')}"
        for _ in range(3):
            self.port = free_port()
            self.proc = Proc("redis", ["/bin/sh", str(DEPLOY / "redis" / "start.sh"), "--port", str(self.port),
                                       "--bind", "127.0.0.1", "--dir", str(self.dir), *self.extra_args],
                             self.dir / "redis.log", env=env, marker=self.marker)
            try:
                self.proc.wait_until(self._ping_admin, 30, "answering PING as irisdag-admin")
                break
            except RuntimeError:
                continue  # the port was taken meanwhile: try another
        else:
            raise RuntimeError(f"redis did not start:\n{self.proc.log_tail()}")
        if self._load:
            from irisdag.defs.production import load_functions

            load_functions(self.url("admin"))
        return self

    def _ping_admin(self) -> bool:
        client = self.admin()
        try:
            return bool(client.ping())
        finally:
            client.close()

    def admin(self) -> redis.Redis:
        return redis.Redis.from_url(self.url("admin"), socket_timeout=5)

    def stop(self) -> float:
        return self.proc.stop() if self.proc else 0.0

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def acl_redis_running(directory: Path, marker: str):
    """An `AclRedis` for a module's tests: stopped after them, with whatever it left (by marker),
    and the store's cached clients forgotten."""
    server = AclRedis(directory, marker=marker).start()
    try:
        yield server
    finally:
        from irisdag.store.resource import close_clients

        close_clients()
        server.stop()
        kill_marked(marker)


def postgres_bin() -> Path:
    """The newest /usr/lib/postgresql/<v>/bin holding initdb and postgres."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if not candidates:
        found = shutil.which("initdb")
        if not found:
            raise FileNotFoundError("no initdb in /usr/lib/postgresql/*/bin or on PATH")
        return Path(os.path.realpath(found)).parent
    return Path(candidates[-1]).parent


class Postgres:
    """A throwaway Postgres cluster: initdb in a temp folder, postgres on a free loopback port.

    initdb and postgres refuse to run as root, so when the tests run as root
    they run as the ``postgres`` system user (which the Debian package creates).
    The ``dagster`` role authenticates with a password over TCP (scram-sha-256).
    """

    def __init__(self, directory: Path | None = None, marker: str = ""):
        self.dir = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="irisdag-pg-"))
        self.marker = marker
        self.password = f"pg-{secrets.token_hex(8)}"
        self.port = 0
        self.proc: Proc | None = None
        self.user = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
                self.user = "postgres"
            except KeyError as err:
                raise RuntimeError("running as root and there is no 'postgres' user to run the server as") from err

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://dagster:{self.password}@127.0.0.1:{self.port}/dagster"

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=dagster password={self.password} dbname=dagster"

    def _as_user(self, args: list[str]) -> list[str]:
        return args if self.user is None else ["runuser", "-u", self.user, "--", *args]

    def start(self) -> "Postgres":
        bindir = postgres_bin()
        data = self.dir / "data"
        sockets = self.dir / "sockets"
        sockets.mkdir(parents=True, exist_ok=True)
        pwfile = self.dir / "superuser.pw"
        pwfile.write_text(secrets.token_hex(16))
        if self.user:
            uid, gid = pwd.getpwnam(self.user).pw_uid, pwd.getpwnam(self.user).pw_gid
            for path in (self.dir, sockets, pwfile):
                os.chown(path, uid, gid)
            os.chmod(self.dir, 0o700)
        subprocess.run(self._as_user([str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                                      f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                                      "--encoding=UTF8", "--no-instructions"]),
                       check=True, capture_output=True, timeout=120)
        for _ in range(3):
            self.port = free_port()
            self.proc = Proc("postgres", [str(bindir / "postgres"), "-D", str(data), "-p", str(self.port),
                                          "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={sockets}",
                                          "-c", "fsync=off", "-c", "synchronous_commit=off",
                                          "-c", "full_page_writes=off"],
                             self.dir / "postgres.log", marker=self.marker, stop_signal=signal.SIGINT,
                             user=self.user)
            try:
                self.proc.wait_until(lambda: port_open(self.port), 60, "listening")
                break
            except RuntimeError:
                continue
        else:
            raise RuntimeError(f"postgres did not start:\n{self.proc.log_tail()}")
        psql = str(bindir / "psql") if (bindir / "psql").exists() else "psql"
        sql = (f"CREATE ROLE dagster LOGIN PASSWORD '{self.password}'; "
               "CREATE DATABASE dagster OWNER dagster;")
        for statement in sql.split("; "):
            deadline = time.monotonic() + 30
            while True:
                proc = subprocess.run(self._as_user([psql, "-h", str(sockets), "-p", str(self.port), "-U", "postgres",
                                                     "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", statement]),
                                      capture_output=True, text=True, timeout=60)
                if proc.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"psql {statement!r} failed: {proc.stderr}")
                time.sleep(0.3)
        return self

    def stop(self) -> float:
        return self.proc.stop() if self.proc else 0.0

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
