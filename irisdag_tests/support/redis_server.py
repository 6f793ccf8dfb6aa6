"""A throwaway redis-server for tests: free loopback port, own temp folder.

Never touches a server the tests did not start (6379 included): it binds a
fresh port on 127.0.0.1 and stops only its own process, by pid.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Sequence

import redis

DEFAULT_EXECUTABLE = "/usr/bin/redis-server"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One redis-server process: ``.url``, ``.port``, ``.stop()``, ``.restart()``.

    ``extra_args`` are appended to the command line and win over the defaults,
    e.g. ``["--appendonly", "yes"]``, ``["--aclfile", path]``,
    ``["--maxmemory", "50mb"]`` (see ``AOF`` and ``noeviction``).
    ``password`` sets ``requirepass`` (the default user's password); ``url``
    then carries it, as REDIS_URL would. With ``username`` (a user of an
    ``--aclfile``) the password is that user's and no requirepass is set.

    Faults: ``kill()`` is SIGKILL to this server's own pid (no shutdown, no
    final save: what the AOF holds is what survives); ``start()`` afterwards
    brings it back on the same port and folder, reloading its files.
    """

    def __init__(self, extra_args: Sequence[str] = (), executable: str | None = None,
                 directory: str | Path | None = None, start_timeout: float = 20.0,
                 password: str | None = None, username: str | None = None):
        self.executable = executable or os.environ.get("IRISDAG_TEST_REDIS_SERVER") or DEFAULT_EXECUTABLE
        if not shutil.which(self.executable):
            raise FileNotFoundError(f"redis-server not found at {self.executable}")
        self.extra_args = list(extra_args)
        self._own_dir = directory is None
        self.dir = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="irisdag-redis-"))
        self.start_timeout = start_timeout
        self.password = password
        self.username = username  # an ACL user of ``--aclfile`` (then no requirepass is set)
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f"{self.username or ''}:{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    @property
    def log_path(self) -> Path:
        return self.dir / "redis.log"

    def client(self, **kwargs) -> redis.Redis:
        """A client of this server (default user)."""
        kwargs.setdefault("password", self.password)
        kwargs.setdefault("username", self.username)
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def info(self, section: str = "default") -> dict:
        """INFO of this server (one short-lived connection)."""
        client = self.client(socket_timeout=10)
        try:
            return client.info(section)
        finally:
            client.close()

    def config_set(self, name: str, value) -> None:
        """CONFIG SET on this server, e.g. ``config_set("maxmemory", 4 << 20)``."""
        client = self.client(socket_timeout=10)
        try:
            client.config_set(name, value)
        finally:
            client.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "RedisServer":
        """Start on a free port (or the same port again after stop())."""
        attempts = 1 if self.port else 5
        for attempt in range(attempts):
            port = self.port or free_port()
            if self._spawn(port):
                self.port = port
                return self
        raise RuntimeError(f"redis-server did not start:\n{self._log_tail()}")

    def _spawn(self, port: int) -> bool:
        args = [self.executable, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                "--appendonly", "no", "--dir", str(self.dir), *self.extra_args]
        if self.password and not self.username:
            args += ["--requirepass", self.password]
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        deadline = time.monotonic() + self.start_timeout
        probe = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=1,
                            password=self.password, username=self.username)
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    self.proc = None
                    return False  # e.g. the port was taken meanwhile
                try:
                    if probe.ping():
                        return True
                except redis.BusyLoadingError:
                    pass
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
                time.sleep(0.05)
        finally:
            probe.close()
        self.stop()
        raise RuntimeError(f"redis-server on port {port} did not answer PING:\n{self._log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        """Stop this server (SIGTERM to its pid, SIGKILL if it hangs)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def kill(self, timeout: float = 20.0) -> None:
        """SIGKILL this server's own process (by its pid) and reap it: a crash, not a shutdown."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout)

    def restart(self) -> "RedisServer":
        """Stop and start again on the same port and folder (persistence tests)."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Stop, and remove the folder when this object created it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


# Persistence as in production (DESIGN §5: AOF on). "always" fsyncs each write
# before replying, so a SIGKILL keeps exactly what clients were told was written.
AOF = ("--appendonly", "yes", "--appendfsync", "always", "--aof-use-rdb-preamble", "yes")


def noeviction(maxmemory: str | int = 0) -> tuple[str, ...]:
    """Arguments for a bounded server that refuses writes when full (DESIGN §3)."""
    return ("--maxmemory", str(maxmemory), "--maxmemory-policy", "noeviction")
