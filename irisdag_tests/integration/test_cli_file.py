"""`irisdag lookup --file` answers every row as the per-key Lua `lookup` does (real Redis,
the command in its own process): duplicates, misses, a canary's routes and a bad row in
its place, in text and JSON; and the batch answers of several calls join onto one list
of versions."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from irisdag.cli import _answer_text
from irisdag.core.batches import read_feature_csv
from irisdag.store import ServingStore
from irisdag.store.resource import BatchAnswers
from irisdag_tests.e2e.test_newcomer import clean_env
from irisdag_tests.integration.test_store import ready_version, vid


def _rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(rng.uniform(0.1, 60.0, size=(n, 4)), 1)


def _lookup_file(env, path, *extra):
    return subprocess.run([sys.executable, "-m", "irisdag.cli", "lookup", "--file", str(path), *extra], env=env,
                          capture_output=True, text=True, timeout=300)


def test_lookup_file_answers_each_row_like_the_lua_lookup(tmp_path, redis_url):
    X = _rows(400, seed=5)
    X = np.concatenate([X, X[:50]])  # 50 repeated rows: one key, answered alike
    lines = [",".join(f"{v:.1f}" for v in row) for row in X]
    lines.insert(200, "5.1,3.5,wide,0.2")  # row 201: an error line in its place
    source = tmp_path / "inputs.csv"
    source.write_text("\n".join(lines) + "\n")
    keys = read_feature_csv(source).keys()  # the per-row reference keys (the bad row left out)
    distinct = sorted(set(keys))
    assert len(keys) == 450 and len(distinct) == 400

    store = ServingStore(redis_url=redis_url)
    champion, arm = vid("file-champion"), vid("file-arm")
    ready_version(store, champion, distinct[:380], np.zeros(380, int), role="champion")  # 20 keys miss
    ready_version(store, arm, distinct, np.full(400, 2))
    assert store.set_routing(0, {"champion": champion}, action="bootstrap")[0]
    ok, reason, _ = store.set_routing(1, {"challenger": arm, "strategy": "canary", "shares": {arm: 3000},
                                          "holdout_bp": 500, "salt": "file-test"}, action="ramp")
    assert ok, reason
    expected = store.lookup(keys)
    assert {r["route"] for r in expected} == {"champion", "challenger", "holdout", "miss"}
    rows = [i + 1 for i in range(len(lines)) if i != 200]
    env = clean_env(tmp_path, REDIS_URL=redis_url)

    text = _lookup_file(env, source)
    assert text.returncode == 2, text.stderr
    assert text.stderr.strip() == f"irisdag: 1 of 451 rows of {source} could not be keyed"
    out = text.stdout.splitlines()
    assert len(out) == 451 and out[200].startswith("row 201, position 3 (petal_length): 'wide' is not a number")
    del out[200]
    assert out == [f"row {row}\t{_answer_text(r)}" for row, r in zip(rows, expected)]

    as_json = _lookup_file(env, source, "--json").stdout.splitlines()
    assert json.loads(as_json[200])["row"] == 201 and "error" in json.loads(as_json[200])
    del as_json[200]
    assert as_json == [json.dumps({"row": row, **r}) for row, r in zip(rows, expected)]


def test_batch_answers_of_several_calls_join_onto_one_list_of_versions():
    a = BatchAnswers(np.array([4, 9, 0, 1], np.uint8), ("champ", "arm"))
    b = BatchAnswers(np.array([4, 8, 5], np.uint8), ("champ", "other"))  # the arm changed between calls
    joined = BatchAnswers.joined([a, b])
    assert joined.versions == ("champ", "arm", "other")
    assert joined.codes.tolist() == [4, 9, 0, 1, 4, 12, 5]
    assert BatchAnswers.joined([a]).codes.tolist() == a.codes.tolist()
    assert len(BatchAnswers.joined([])) == 0
