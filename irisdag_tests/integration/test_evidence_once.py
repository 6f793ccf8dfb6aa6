"""Issue 8 through real Dagster runs: a static source re-read every window is judged once per
input, and rows a compared model trained on are excluded by their features even when the batch
is keyed by id."""
from __future__ import annotations

import numpy as np
import pytest

from irisdag.core import experiments, generator, keys
from irisdag.defs.assets.models import load_trained_keys
from irisdag_tests.integration.test_strategies_pipeline import RETRAIN, Pipeline

EXPERIMENT_WINDOWS = 3


def _write(path, X, ids=None):
    lines = ["id,sepal_length,sepal_width,petal_length,petal_width" if ids is not None else
             "sepal_length,sepal_width,petal_length,petal_width"]
    for i, row in enumerate(X):
        values = ",".join(f"{v:.1f}" for v in row)
        lines.append(f"{ids[i]},{values}" if ids is not None else values)
    path.write_text("\n".join(lines) + "\n")


def _labels(path, y):
    path.write_text("\n".join(str(int(v)) for v in y) + "\n")


class StaticSource(Pipeline):
    """Windows that all read the same files (a static source re-read every window)."""

    def use(self, inputs, labels):
        self.batch = {"source": str(inputs)}
        self.labels = str(labels)

    def run(self, selection, experiment=None, challenger=None):
        from irisdag.defs.partitions import window_key
        from irisdag.demo import materialize_window

        ops = {}
        if "incoming_batch" in selection:
            ops["incoming_batch"] = {"config": self.batch}
            ops["feedback"] = {"config": {"source": self.labels}}
        if experiment is not None:
            ops["challenger_predictions"] = {"config": experiment}
        if challenger is not None:
            ops["challenger_model"] = {"config": challenger}
        partition = window_key(self.window) if "incoming_batch" in selection else None
        materialize_window(selection, partition, self.instance, self.resources, self.summary, {"ops": ops})
        assert not self.summary.failures, self.summary.failures


@pytest.mark.parametrize("keyed_by", ["id", "features"])
def test_a_static_source_re_read_every_window_is_judged_once_and_trained_rows_are_excluded(
        dagster_env, tmp_path, keyed_by):
    pipe = StaticSource(*dagster_env)
    # Warm-up feedback the challenger will train on.
    X_a, y_a = generator.generate(60, seed=(7, 1))
    _write(tmp_path / "a.csv", X_a, [f"a{i}" for i in range(60)])
    _labels(tmp_path / "a_y.csv", y_a)
    pipe.use(tmp_path / "a.csv", tmp_path / "a_y.csv")
    pipe.warm_up(2)
    pipe.run(RETRAIN)

    # The experiment's source: 10 rows with the features of trained rows (new ids), 30 fresh rows,
    # 5 of which repeat the features of others under their own ids.
    X_new, y_new = generator.generate(25, seed=(7, 2), drift=1.0, t=1.0)
    X_b = np.vstack([X_a[:10], X_new, X_new[:5]])
    y_b = np.concatenate([y_a[:10], y_new, y_new[:5]])
    ids = [f"b{i}" for i in range(len(X_b))]
    _write(tmp_path / "b.csv", X_b, ids if keyed_by == "id" else None)
    _labels(tmp_path / "b_y.csv", y_b)
    pipe.use(tmp_path / "b.csv", tmp_path / "b_y.csv")

    history = []
    for w in range(EXPERIMENT_WINDOWS):
        decision, _ = pipe.step({"strategy": "shadow"} if w == 0 else None)
        history.append(decision)

    # What the rule says: each distinct input (by features) not trained on, judged once.
    artifacts, routing = pipe.resources["artifacts"], pipe.store.routing()
    experiment = pipe.store.experiment_get(routing.salt)
    trained = np.union1d(experiments.hex_tokens(load_trained_keys(artifacts, experiment["champion"])),
                         experiments.hex_tokens(load_trained_keys(artifacts, routing.challenger)))
    tokens = experiments.digest_tokens(keys.digests_of_array(X_b))
    trained_row = np.isin(tokens, trained)
    assert trained_row[:10].all()                      # the challenger trained on these features
    distinct_untrained = len(np.unique(tokens[~trained_row]))
    assert 0 < distinct_untrained <= 30

    first, last = history[0], history[-1]
    assert first["n"] == distinct_untrained
    assert first["n_excluded"] == int(trained_row.sum())
    assert first["n_repeated"] == len(X_b) - int(trained_row.sum()) - distinct_untrained
    # Re-reads add repeats, never judged rows: no more than the distinct ids, nor than the feature keys.
    assert last["n"] == distinct_untrained <= len(set(ids))
    assert last["n_repeated"] == first["n_repeated"] + (EXPERIMENT_WINDOWS - 1) * (len(X_b) - int(trained_row.sum()))
    assert last["n_excluded"] == EXPERIMENT_WINDOWS * int(trained_row.sum())
    assert "trained on their features" in last["not_judged"] and "judged already" in last["not_judged"]
    assert len(last["partitions"]) == EXPERIMENT_WINDOWS
    assert last["alpha"] == 0.05                       # the pipeline's α (settings.ALPHA)
