"""`irisdag demo` on batch sources, as a user runs it (issue 9 items 7 and 10): a batch
without labels is scored and served; a batch with nothing to score fails, naming the check."""
from __future__ import annotations

import gzip
import json

from irisdag_tests.e2e.test_cli import home, run  # noqa: F401 - the fixture and the runner
from irisdag_tests.support.data import COURSE


def test_demo_with_a_batch_source_and_no_feedback_scores_and_serves(home, tmp_path):  # noqa: F811
    # gzip-compressed and named like a plain file: the magic bytes decide.
    source = tmp_path / "batch.csv"
    source.write_bytes(gzip.compress((COURSE / "iris.csv").read_bytes()))
    env = dict(home, IRISDAG_CHAMPION_MODEL=str(COURSE / "model.json"), IRISDAG_BATCH_SOURCE=str(source))
    summary = json.loads(run(env, "demo", "--json").stdout)
    assert summary["failures"] == []
    decision = summary["decision"]
    assert decision["decision"] == "continue" and "nothing to judge" in decision["reason"]
    first = json.loads(run(env, "lookup", "5.0", "2.9", "1.1", "0.4", "--json").stdout)
    assert first["label"] == "setosa" and first["route"] == "champion"


def test_demo_on_an_empty_batch_exits_non_zero_naming_the_check(home, tmp_path):  # noqa: F811
    source = tmp_path / "empty.csv"
    source.write_text("sepal_length,sepal_width,petal_length,petal_width\n")
    env = dict(home, IRISDAG_CHAMPION_MODEL=str(COURSE / "model.json"), IRISDAG_BATCH_SOURCE=str(source))
    proc = run(env, "demo", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "incoming_batch:incoming_batch_quality" in out and "nothing to score" in out
    assert "Traceback" not in out
