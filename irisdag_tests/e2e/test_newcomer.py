"""A newcomer's first hour (issue 10) and the command line's exit codes (issue 9 item 8):
each command in its own process, as a user runs it.

Exit codes (the README's table): 0 done, 1 refused or failed, 2 bad input, 3 Redis
unreachable; every command ends with one line on stderr when it does not succeed,
never a traceback.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

IRISDAG = [sys.executable, "-m", "irisdag.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "DAGSTER_HOME") and not k.startswith("IRISDAG_")}
    env["IRISDAG_HOME"] = str(tmp_path / "state")
    env.update(extra)
    return env


def run(env, *args, timeout=300):
    return subprocess.run([*IRISDAG, *args], env=env, capture_output=True, text=True, timeout=timeout)


def one_clear_line(proc) -> str:
    """A failed command's stderr: one line, no traceback."""
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


# ---- exit codes --------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["lookup", "5.0", "2.9", "1.1", "0.4"],
    ["lookup", "--id", "u1", "--json"],
    ["status"],
    ["rollback"],
    ["demo"],
])
def test_redis_unreachable_exits_3_with_one_line(tmp_path, args):
    port = free_port()  # nothing listens on it
    proc = run(clean_env(tmp_path, REDIS_URL=f"redis://127.0.0.1:{port}/0"), *args)
    assert proc.returncode == 3, (proc.returncode, proc.stdout, proc.stderr)
    line = one_clear_line(proc)
    assert f"127.0.0.1:{port}" in line and "Redis" in line


def test_rollback_with_nothing_to_roll_back_to_exits_1_with_one_line(tmp_path, redis_url):
    proc = run(clean_env(tmp_path, REDIS_URL=redis_url), "rollback")
    assert proc.returncode == 1
    assert proc.stdout == ""
    line = one_clear_line(proc)
    assert line.startswith("irisdag: rollback refused: there is no previous champion")
    assert "dagster._core" not in line and "DEBUG" not in proc.stderr


def test_bad_input_exits_2_and_a_miss_exits_0(tmp_path, redis_url):
    env = clean_env(tmp_path, REDIS_URL=redis_url)
    bad = run(env, "lookup", "5.0", "2.9", "wide", "0.4")
    assert bad.returncode == 2 and bad.stdout == ""
    assert one_clear_line(bad).startswith("irisdag: position 3 (petal_length): 'wide' is not a number")
    miss = run(env, "lookup", "5.0", "2.9", "1.1", "0.4", "--json")
    assert miss.returncode == 0 and json.loads(miss.stdout)["route"] == "miss"


def test_lookup_file_keeps_the_rows_alignment(tmp_path, redis_url):
    source = tmp_path / "inputs.csv"
    source.write_text("5.0,2.9,1.1,0.4\n6.5,2.8,4.7,1.8\n5.1,3.5,wide,0.2\n4.9,3.0,1.4,0.2\n")
    env = clean_env(tmp_path, REDIS_URL=redis_url)
    text = run(env, "lookup", "--file", str(source))
    assert text.returncode == 2
    lines = text.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines[:2]] == ["row 1", "row 2"]
    # The bad row is an error line in its place, naming row and position once, numbered like the file.
    assert lines[2].startswith("row 3, position 3 (petal_length): 'wide' is not a number")
    assert lines[3].startswith("row 4\t") and len(lines) == 4
    assert "1 of 4 rows" in one_clear_line(text)
    as_json = [json.loads(line) for line in run(env, "lookup", "--file", str(source), "--json").stdout.splitlines()]
    assert [a["row"] for a in as_json] == [1, 2, 3, 4]
    assert "error" in as_json[2] and all("route" in a for i, a in enumerate(as_json) if i != 2)


# ---- speed: the consumer path imports neither Dagster nor pandas; lookup not even redis-py ----------

PROBE = """
import json, sys
from irisdag.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "loaded": sorted(m for m in ("dagster", "pandas", "pydantic", "numpy", "redis")
                                                 if m in sys.modules)}), file=sys.stderr)
"""


@pytest.mark.parametrize("args, loaded", [
    (["lookup", "5.0", "2.9", "1.1", "0.4"], []),
    (["lookup", "--id", "u1"], []),
    (["status"], ["redis"]),
])
def test_lookup_and_status_import_neither_dagster_nor_pandas(tmp_path, redis_url, args, loaded):
    from irisdag.store.resource import StoreClient, close_clients

    StoreClient(redis_url=redis_url).ensure_functions()  # as deployed: the library is on the server
    close_clients()
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], env=clean_env(tmp_path, REDIS_URL=redis_url),
                          capture_output=True, text=True, timeout=120)
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "loaded": loaded}, proc.stderr


# ---- the embedded Redis: irisdag stop --------------------------------------------------------------

def test_stop_stops_the_embedded_redis_of_this_state_folder(tmp_path):
    env = clean_env(tmp_path)
    assert run(env, "lookup", "5.0", "2.9", "1.1", "0.4").returncode == 0  # starts the embedded server
    pid_file = Path(env["IRISDAG_HOME"]) / "redis" / "redis.pid"
    pid = int(pid_file.read_text().strip())
    os.kill(pid, 0)  # it outlives the command (documented)
    stop = run(env, "stop")
    assert stop.returncode == 0 and stop.stdout.startswith("irisdag stop: stopped")
    assert not running(pid)
    again = run(env, "stop")
    assert again.returncode == 0 and "no embedded Redis server" in again.stdout


# ---- the UI: make ui without activating anything; SIGTERM stops everything -------------------------

def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="walks /proc for the UI's processes")
def test_ui_serves_on_loopback_and_sigterm_stops_everything_it_started(tmp_path):
    port = free_port()
    env = clean_env(tmp_path)
    # PATH without the venv: `irisdag ui` finds dg beside its own interpreter.
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if Path(sys.executable).parent != Path(p))
    proc = subprocess.Popen([*IRISDAG, "ui", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen: set[int] = set()
    try:
        deadline, status = time.monotonic() + 300, None
        while time.monotonic() < deadline and proc.poll() is None:
            seen |= descendants(proc.pid)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as answer:
                    status = answer.status
                    break
            except OSError:
                time.sleep(1)
        assert status == 200, f"the UI did not answer on 127.0.0.1:{port}"
        seen |= descendants(proc.pid)
        assert len(seen) >= 3  # dg dev, the webserver, the daemon (and code servers)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
        assert out.splitlines()[-1] == "irisdag ui: stopped" and "irisdag/cli.py" not in out
        left = sorted(p for p in seen if running(p))
        assert left == [], f"processes the UI started are still running: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run([*IRISDAG, "stop"], env=env, capture_output=True, timeout=120)


# ---- the demo's summary names a failed step's cause ---------------------------------------------

def test_a_step_that_exhausts_its_retries_is_reported_by_its_cause():
    from dagster import RetryPolicy, instance_for_test, job, op

    from irisdag.demo import run_error

    @op(retry_policy=RetryPolicy(max_retries=2))
    def flaky():
        raise ConnectionError("Redis at 127.0.0.1:1 went away")

    @op
    def refused():
        raise ValueError("model digest mismatch")

    @job
    def two_failures():
        flaky()
        refused()

    with instance_for_test() as instance:
        result = two_failures.execute_in_process(instance=instance, raise_on_error=False)
    message = run_error(result)
    assert "Redis at 127.0.0.1:1 went away" in message and "max_retries" not in message
    assert "model digest mismatch" in message  # a second failed step is never dropped
