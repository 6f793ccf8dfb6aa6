"""Evidence and strategy states as stored (dicts), exactly: what the store keeps between windows."""
from __future__ import annotations

import json

from irisdag.core.strategies import BanditState, CanaryState, PairedEvidence, UnpairedEvidence


def test_evidence_round_trips_and_missing_fields_are_the_defaults():
    paired = PairedEvidence.from_rows([0, 1, 2, 2], [0, 2, 2, 1], [0, 2, 2, 2], champion="c", challenger="x",
                                      partition="w1")
    assert (paired.champion, paired.challenger, paired.n, paired.b, paired.c) == ("c", "x", 4, 1, 1)
    assert PairedEvidence.from_dict(json.loads(json.dumps(paired.to_dict()))) == paired
    assert PairedEvidence.from_dict({}) == PairedEvidence()
    unpaired = UnpairedEvidence("c", "x").add_batch(9, 10, 4, 5, partition="w1", n_excluded=2, n_repeated=3)
    assert unpaired.to_dict() == {"champion": "c", "challenger": "x", "batches": [
        {"partition": "w1", "k1": 9, "n1": 10, "k2": 4, "n2": 5, "n_excluded": 2, "n_repeated": 3}]}
    assert UnpairedEvidence.from_dict(json.loads(json.dumps(unpaired.to_dict()))) == unpaired
    assert UnpairedEvidence.from_dict({}) == UnpairedEvidence()


def test_states_round_trip_through_json_exactly():
    canary = CanaryState(steps_bp=(100, 10000), step=1, step_started_n=7, arm_prior=(2.0, 0.5))
    d = canary.to_dict()
    assert d["steps_bp"] == [100, 10000] and d["arm_prior"] == [2.0, 0.5]
    assert CanaryState.from_dict(json.loads(json.dumps(d))) == canary
    bandit = BanditState(arms=("x", "y"), dropped=("y",), shares_bp={"x": 4000, "y": 0}, arm_prior=(2.0, 0.5))
    d = bandit.to_dict()
    assert (d["arms"], d["dropped"], d["shares_bp"], d["arm_prior"]) == (["x", "y"], ["y"], {"x": 4000, "y": 0},
                                                                        [2.0, 0.5])
    assert BanditState.from_dict(json.loads(json.dumps(d))) == bandit
    assert BanditState.from_dict({"arms": ["x"], "unknown": 1}) == BanditState(arms=("x",))


def test_unpaired_batches_are_checked_and_named():
    import pytest

    from irisdag.core.strategies import UnpairedBatch

    for k1, k2 in ((3, 1), (1, 3)):
        with pytest.raises(ValueError, match="batch 'w': successes exceed rows"):
            UnpairedBatch("w", k1, 2, k2, 2)
    assert UnpairedBatch(5, 1, 2, 1, 2).partition == "5"
    ev = UnpairedEvidence("c", "x", batches=({"partition": "w", "k1": 1, "n1": 2, "k2": 1, "n2": 2},))
    assert ev.batches == (UnpairedBatch("w", 1, 2, 1, 2),)
    with pytest.raises(ValueError, match="batch 'w' counted twice"):
        ev.add_batch(1, 2, 1, 2, partition="w")
    two = UnpairedEvidence().add_batch(1, 2, 1, 2).add_batch(2, 2, 0, 1)
    assert two.partitions == ("0", "1") and (two.n_excluded, two.n_repeated) == (0, 0)


def test_rows_must_be_one_dimensional_of_one_length_and_exclude_takes_0_1_flags():
    import numpy as np
    import pytest

    with pytest.raises(ValueError, match=r"predictions and truth must be 1-D arrays of one length, got shapes"):
        PairedEvidence.from_rows([0, 1], [0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match=r"predictions and truth must be 1-D arrays of one length"):
        PairedEvidence.from_rows(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"exclude has shape \(1,\), expected \(2,\)"):
        PairedEvidence.from_rows([0, 1], [0, 1], [0, 1], exclude=[1])
    ev = PairedEvidence.from_rows([0, 1, 1], [1, 1, 0], [0, 1, 0], exclude=[0, 2, 0])
    assert (ev.n, ev.b, ev.c, ev.n_excluded) == (2, 1, 1, 1)
