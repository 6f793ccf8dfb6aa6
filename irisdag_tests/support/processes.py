"""Processes a test starts: each in its own process group, stopped by group id.

Servers such as the Dagster daemon or webserver do not always stop on SIGTERM
from a non-interactive parent, and they have children (run workers, the
webserver's code-location watchers). So every process starts a new session
(its pid is its group id), and ``stop`` signals that group only: SIGTERM (or
the signal given), then SIGKILL after a grace period. Every process also
carries an environment marker, so that anything a server spawned into a group
of its own can still be found and stopped by pid (``kill_marked``), and
nothing that this test run did not start is ever touched.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

MARKER = "IRISDAG_TEST_PROCESS_MARKER"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class Proc:
    """One started process (and its group): ``.pid``, ``.alive()``, ``.stop()``, ``.log_tail()``."""

    def __init__(self, name: str, args: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
                 cwd: str | os.PathLike | None = None, marker: str = "", stop_signal: int = signal.SIGTERM,
                 user: str | None = None):
        self.name = name
        self.args = list(args)
        self.log_path = Path(log_path)
        self.stop_signal = stop_signal
        self.started = time.monotonic()
        self.stopped_in: float | None = None
        full_env = dict(os.environ if env is None else env)
        if marker:
            full_env[MARKER] = marker
        cmd = self.args if user is None else ["runuser", "-u", user, "--", *self.args]
        log = open(self.log_path, "ab")
        try:
            self.popen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env=full_env, cwd=cwd, start_new_session=True)
        finally:
            log.close()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str = "") -> None:
        """Poll ``ready`` until true; raise with the log's tail when the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode} before {what or 'ready'}:\n"
                                   f"{self.log_tail()}")
            try:
                if ready():
                    return
            except Exception:  # noqa: BLE001 - not ready yet
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not {what or 'ready'} after {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self, grace: float = 15.0) -> float:
        """Signal the process group, wait, SIGKILL the group if needed; returns seconds taken."""
        t0 = time.monotonic()
        if self.popen.poll() is None:
            self._signal_group(self.stop_signal)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(10)
        # The leader is gone; members it left behind in its group go too.
        self._signal_group(signal.SIGKILL)
        self.stopped_in = time.monotonic() - t0
        return self.stopped_in

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)  # the group id is the leader's pid (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def marked_pids(marker: str) -> list[int]:
    """Pids of live processes whose environment carries this run's marker."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(int(entry.name))
    return found


def kill_marked(marker: str) -> list[int]:
    """SIGKILL, by pid, every leftover process that this run started (its marker in the environment)."""
    pids = marked_pids(marker) if marker else []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return pids
