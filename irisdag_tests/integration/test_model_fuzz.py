"""Crafted model files never kill a process: every mutant is served correctly or refused by name.

Without the structural check, about one mutant in seven of this fuzz kills
the loading process (SIGSEGV, SIGABRT or XGBoost's own exit) and a few more
are read by XGBoost as a different model than the JSON says. The loads run in
a worker subprocess so that a signal death is seen, and named, by this test.
"""
from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from irisdag.models.training import iris_table, train_model
from irisdag_tests.support.data import COURSE
from irisdag_tests.support.model_fuzz import mutants

MUTANTS_PER_BASE = 600
REPO = Path(__file__).resolve().parents[2]


def _bases() -> dict[str, bytes]:
    X, y = iris_table()
    trained = train_model(X, y, params={"num_boost_round": 4})
    return {"course": (COURSE / "model.json").read_bytes(), "trained": bytes(trained.save_raw(raw_format="json"))}


def run_worker(manifest: Path, results: Path) -> list[tuple[int, str]]:
    """Run the loads in a subprocess; a death by signal or exit is recorded against the file that caused it."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for _ in range(1000):
        proc = subprocess.run([sys.executable, "-m", "irisdag_tests.support.model_fuzz", str(manifest), str(results)],
                              env=env, cwd=REPO, capture_output=True, timeout=600)
        if proc.returncode == 0:
            break
        begun = [line.split()[1] for line in results.read_text().splitlines() if line.startswith("BEGIN")]
        how = (f"signal {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
               else f"exit {proc.returncode}: {proc.stderr.decode(errors='replace')[-300:]}")
        if not begun:
            pytest.fail(f"the fuzz worker died before its first file ({how})")
        with open(results, "a") as f:
            f.write(f"{begun[-1]}\tdied {how}\n")
    outcomes = []
    for line in results.read_text().splitlines():
        if not line.startswith("BEGIN"):
            index, outcome = line.split("\t", 1)
            outcomes.append((int(index), outcome))
    return outcomes


def test_mutated_models_are_served_correctly_or_refused_by_name(tmp_path):
    paths, descriptions = [], []
    for name, base in _bases().items():
        for i, (data, description) in enumerate(mutants(base, MUTANTS_PER_BASE, seed=len(paths))):
            path = tmp_path / f"{name}-{i:04d}.json"
            path.write_bytes(data)
            paths.append(str(path))
            descriptions.append(f"{path.name} ({description})")
    manifest = tmp_path / "manifest.txt"
    manifest.write_text("\n".join(paths) + "\n")
    outcomes = run_worker(manifest, tmp_path / "results.txt")

    assert sorted(i for i, _ in outcomes) == list(range(len(paths))), "every mutant has exactly one outcome"
    bad = [f"{descriptions[i]}: {outcome}" for i, outcome in outcomes
           if not (outcome == "served" or outcome.startswith("refused "))]
    assert not bad, f"{len(bad)} of {len(paths)} mutants were neither served correctly nor refused by name:\n" + \
        "\n".join(bad[:20])
    counts = collections.Counter(outcome for _, outcome in outcomes)
    print(f"\nmodel fuzz: {len(paths)} mutants: " + ", ".join(f"{n} {o}" for o, n in counts.most_common()))
    # The fuzz reaches both sides and the structural rules that stop a crash.
    assert counts["served"] >= 50
    for rule in ("child-index", "not-a-tree", "split-index", "tree-info", "tree-id", "array-length",
                 "duplicate-key", "non-finite", "num-feature", "json-depth"):
        assert counts[f"refused {rule}"] > 0, f"no mutant exercised rule {rule}"


@pytest.mark.parametrize("params", [
    {"tree_method": "hist", "max_depth": 6},
    {"tree_method": "exact", "max_depth": 2},
    {"tree_method": "approx", "grow_policy": "lossguide", "max_leaves": 8, "max_depth": 0},
    {"booster": "dart", "rate_drop": 0.2},
    {"objective": "multi:softmax"},
    {"num_parallel_tree": 3, "subsample": 0.8},
], ids=["hist", "exact", "lossguide", "dart", "softmax", "forest"])
def test_every_kind_of_real_iris_model_passes_the_check(tmp_path, params):
    from irisdag.models.artifacts import import_model, load_model, predict_labels

    X, y = iris_table()
    booster = train_model(X, y, params={"num_boost_round": 5, **params})
    path = tmp_path / "model.json"
    booster.save_model(path)
    art = import_model(path, tmp_path / "store")
    loaded = load_model(tmp_path / "store", art.version)
    assert (predict_labels(loaded, X) == predict_labels(booster, X)).all()
    assert (predict_labels(loaded, X) == y).mean() > 0.6


def test_a_linear_booster_is_refused_by_name(tmp_path):
    from irisdag.models.artifacts import ModelFormatError, import_model

    X, y = iris_table()
    path = tmp_path / "linear.json"
    train_model(X, y, params={"num_boost_round": 2, "booster": "gblinear"}).save_model(path)
    with pytest.raises(ModelFormatError, match=r"linear\.json: booster 'gblinear' is not one of gbtree, dart") as info:
        import_model(path, tmp_path / "store")
    assert info.value.rule == "booster"
