"""The README's commands, parsed from README.md and run in the order written, each in its
own process as a newcomer types them (issue 10 item 4): the quick start on a fresh state
folder, then the course-files section in a state folder of its own. `.venv/bin/irisdag`
is this interpreter's `irisdag`; `make demo` / `make stop` are the commands they run;
state folders are temporary (the README's own goes under the repository)."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
IRISDAG = [sys.executable, "-m", "irisdag.cli"]
MAKE_TARGETS = {"make demo": ["demo"], "make stop": ["stop"], "make status": ["status"]}
NOT_RUN_HERE = {"make ui", "make test"}  # the UI: test_newcomer.py; the suite: this run


def bash_blocks(section: str) -> list[list[str]]:
    """The commands of each ```bash block in a README section (comments dropped)."""
    text = (PROJECT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"## {section}")
    end = text.find("\n## ", start + 1)
    blocks = re.findall(r"```bash\n(.*?)```", text[start:end if end > 0 else None], re.S)
    return [[line.split("  #")[0].strip() for line in block.splitlines() if line.strip()] for block in blocks]


def run_readme_command(command: str, env: dict) -> subprocess.CompletedProcess | None:
    if command in NOT_RUN_HERE:
        return None
    if command in MAKE_TARGETS:
        args = MAKE_TARGETS[command]
    elif command.startswith(".venv/bin/irisdag "):
        args = shlex.split(command)[1:]
    else:
        raise AssertionError(f"the README runs a command this test does not know: {command!r}")
    proc = subprocess.run([*IRISDAG, *args], env=env, cwd=PROJECT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{command} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stdout + proc.stderr and "Warning" not in proc.stderr, proc.stderr
    return proc


def fresh_env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "DAGSTER_HOME") and not k.startswith("IRISDAG_")}
    env["IRISDAG_HOME"] = str(tmp_path / "state")
    return env


def test_quick_start_in_the_order_written(tmp_path):
    [commands] = bash_blocks("Quick start")
    assert commands[0].startswith("make demo")
    env = fresh_env(tmp_path)
    outputs = {}
    try:
        for command in commands:
            outputs[command] = run_readme_command(command, env)
    finally:
        subprocess.run([*IRISDAG, "stop"], env=env, capture_output=True, timeout=120)
    lookup = outputs[".venv/bin/irisdag lookup 5.0 2.9 1.1 0.4"].stdout
    assert lookup.startswith("setosa\troute=champion\t"), lookup
    assert outputs[".venv/bin/irisdag rollback"].stdout.startswith("rolled back: ")
    assert outputs["make stop"].stdout.startswith("irisdag stop: stopped")


def test_course_files_section_in_the_order_written(tmp_path):
    [commands] = bash_blocks("What `irisdag demo` does")
    env = fresh_env(tmp_path)
    try:
        for command in commands:
            if command.startswith("export "):
                name, value = command[len("export "):].split("=", 1)
                # The README's state folder is under the repository; tests write only to tmp.
                env[name] = str(tmp_path / value) if name == "IRISDAG_HOME" else str(PROJECT / value)
                assert name == "IRISDAG_HOME" or Path(env[name]).exists(), f"{value} is not in the repository"
                continue
            proc = run_readme_command(command, env)
            if "lookup" in command:
                answer = json.loads(proc.stdout)
                assert answer["label"] == "setosa" and answer["route"] == "champion"
                assert answer["key"].startswith("d8c77d14")
        # The README's next claim: the same file again is all training rows, and the decision says why n is 0.
        again = run_readme_command(".venv/bin/irisdag demo", env)
        assert "n=0" in again.stdout and "left out because a compared model was trained on them" in again.stdout
    finally:
        subprocess.run([*IRISDAG, "stop"], env=env, capture_output=True, timeout=120)
