"""The CLI against a store a real Dagster run filled: a miss is queued for the pipeline, and the
champion's own model answers it with route `fallback` (the same answer the miss run stores)."""
from __future__ import annotations

import json

from irisdag import cli
from irisdag.core.keys import input_key
from irisdag.models.artifacts import model_path
from irisdag_tests.integration.test_strategies_pipeline import Pipeline

FEATURES = ["7.9", "3.8", "6.4", "2.0"]   # never generated in the first window: a miss


def test_cli_queues_a_miss_and_a_fallback_model_answers_it(dagster_env, monkeypatch, capsys, tmp_path):
    pipe = Pipeline(*dagster_env)
    pipe.warm_up(1)
    store = pipe.store
    monkeypatch.setenv("REDIS_URL", store.redis_url)
    key = input_key([float(v) for v in FEATURES])
    assert store.pending_misses() == 0

    assert cli.main(["lookup", *FEATURES, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["key"], out["route"], out["label"]) == (key, "miss", None)
    [queued] = store.read_misses()
    assert queued["key"] == key and store.pending_misses() == 1

    champion = store.routing().champion
    path = model_path(pipe.resources["artifacts"].models_dir(), champion)
    assert cli.main(["lookup", *FEATURES, "--json", "--fallback-model", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"key": key, "label": "virginica", "version": champion, "route": "fallback"}
    assert store.pending_misses() == 2          # a fallback answer is still queued to be stored

    # --file: each missed row (here the same input twice) gets the fallback answer in its place.
    source = tmp_path / "rows.csv"
    source.write_text(",".join(FEATURES) + "\n" + ",".join(FEATURES) + "\n")
    assert cli.main(["lookup", "--file", str(source), "--json", "--fallback-model", str(path)]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [{"row": r, **out} for r in (1, 2)]
    assert store.pending_misses() == 4
