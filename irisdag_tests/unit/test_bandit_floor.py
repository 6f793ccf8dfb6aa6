"""The bandit champion's share floor (issue 8): under outcome feedback every arm is judged against
the champion's served rows, so Thompson sampling must never starve the champion of traffic."""
from __future__ import annotations

import numpy as np
import pytest

from irisdag.core import experiments
from irisdag.core.experiments import ExperimentPlan
from irisdag.core.strategies import (
    DEFAULT_CHAMPION_FLOOR_BP,
    BanditState,
    PairedEvidence,
    UnpairedEvidence,
    decide_bandit,
)

CHAMP = "c" * 64


def _served(k1, n1, **arms):
    return {arm: UnpairedEvidence(CHAMP, arm).add_batch(k1=k1, n1=n1, k2=k2, n2=n2)
            for arm, (k2, n2) in arms.items()}


def test_the_default_champion_floor_is_twenty_percent():
    assert DEFAULT_CHAMPION_FLOOR_BP == 2000
    assert BanditState(arms=("x",)).champion_floor_bp == 2000
    assert ExperimentPlan(strategy="bandit", arms=("x",)).bandit_champion_floor_bp == 2000


def test_a_far_better_arm_leaves_the_champion_exactly_its_floor():
    # 3/30 against 27/30: no Monte Carlo draw favours the champion (P(best) exactly 0), so the
    # champion's share is its floor and nothing more; at α = 1e-12 thirty rows an arm prove nothing.
    evs = _served(3, 30, x=(27, 30))
    rec, state = decide_bandit(evs, BanditState(arms=("x",), alpha=1e-12))
    assert (rec.decision, rec.shares_bp, state.shares_bp) == ("ramp", {"x": 8000}, {"x": 8000})
    assert "Thompson shares: x 80%; champion the rest." in rec.reason
    # Without the floor the arm takes everything: the behaviour the floor replaces.
    rec0, _ = decide_bandit(evs, BanditState(arms=("x",), alpha=1e-12, champion_floor_bp=0))
    assert rec0.shares_bp == {"x": 10000}


def test_the_champion_floor_and_the_arms_floor_add_and_the_rest_goes_by_p_best():
    evs = _served(3, 30, x=(27, 30), y=(3, 30), z=(3, 30))
    state = BanditState(arms=("x", "y", "z"), alpha=1e-12, floor_bp=1000, champion_floor_bp=2500)
    rec, new = decide_bandit(evs, state)
    # x is best in every draw: 1,000 + 4,500; y and z their floor; the champion 10,000 − 7,500 = 2,500.
    assert rec.shares_bp == new.shares_bp == {"x": 5500, "y": 1000, "z": 1000}


def test_the_champion_floor_holds_under_label_feedback_too():
    ev = PairedEvidence(CHAMP, "x").add_batch(b=0, c=30, n=40, champion_right=5, challenger_right=35)
    rec, _ = decide_bandit({"x": ev}, BanditState(arms=("x",), alpha=1e-12, champion_floor_bp=3000))
    assert rec.decision == "ramp" and rec.statistic == 1.0
    assert rec.shares_bp == {"x": 7000}


@pytest.mark.parametrize("champion_floor_bp,floor_bp,arms", [
    (0, 0, 1), (9999, 0, 1), (9999, 1, 1), (8000, 1000, 2), (0, 5000, 2), (0, 9999, 1)])
def test_floors_that_fit_in_the_traffic_are_accepted(champion_floor_bp, floor_bp, arms):
    names = tuple(f"a{i}" for i in range(arms))
    state = BanditState(arms=names, champion_floor_bp=champion_floor_bp, floor_bp=floor_bp)
    assert (state.champion_floor_bp, state.floor_bp) == (champion_floor_bp, floor_bp)
    assert BanditState.from_dict(state.to_dict()) == state


@pytest.mark.parametrize("kwargs,message", [
    ({"champion_floor_bp": 10000}, "champion_floor_bp must be an integer number of basis points within 0..9999, "
                                   "got 10000"),
    ({"champion_floor_bp": -1}, "champion_floor_bp must be an integer number of basis points within 0..9999, got -1"),
    ({"champion_floor_bp": 20.0}, "champion_floor_bp must be an integer number of basis points within 0..9999, "
                                  "got 20.0"),
    ({"champion_floor_bp": True}, "champion_floor_bp must be an integer number of basis points within 0..9999, "
                                  "got True"),
    ({"champion_floor_bp": "2000"}, "champion_floor_bp must be an integer number of basis points within 0..9999, "
                                    "got '2000'"),
    ({"floor_bp": 10000, "champion_floor_bp": 0}, "floor_bp must be an integer number of basis points within "
                                                  "0..9999, got 10000"),
    ({"floor_bp": -1}, "floor_bp must be an integer number of basis points within 0..9999, got -1"),
    ({"holdout_bp": 10000}, "holdout_bp must be an integer number of basis points within 0..9999, got 10000"),
    ({"holdout_bp": -1}, "holdout_bp must be an integer number of basis points within 0..9999, got -1"),
    ({"holdout_bp": 1.0}, "holdout_bp must be an integer number of basis points within 0..9999, got 1.0"),
    ({"floor_bp": 0.5}, "floor_bp must be an integer number of basis points within 0..9999, got 0.5"),
    ({"champion_floor_bp": 8001, "floor_bp": 1000}, "champion_floor_bp 8001 plus floor_bp 1000 for each of 2 arm(s) "
                                                   "exceeds 10000 basis points"),
    ({"champion_floor_bp": 8000, "floor_bp": 1001}, "champion_floor_bp 8000 plus floor_bp 1001 for each of 2 arm(s) "
                                                   "exceeds 10000 basis points"),
])
def test_floors_that_do_not_fit_are_refused_naming_the_value(kwargs, message):
    with pytest.raises(ValueError) as err:
        BanditState(arms=("x", "y"), **kwargs)
    assert str(err.value) == message


def test_the_plan_carries_the_champion_floor_into_the_first_state_and_shares():
    plan = ExperimentPlan(strategy="bandit", arms=("a", "b", "c", "d", "e"), bandit_champion_floor_bp=2000)
    # Five arms and the champion even would give the champion 1,670 bp; the arms share the rest of its floor.
    assert experiments.initial_shares(plan) == [(arm, 1600) for arm in "abcde"]
    assert experiments.initial_state(plan)["champion_floor_bp"] == 2000
    # Two arms: even (3,333 each) already leaves the champion more than its floor.
    two = ExperimentPlan(strategy="bandit", arms=("a", "b"), bandit_champion_floor_bp=3334)
    assert experiments.initial_shares(two) == [("a", 3333), ("b", 3333)]
    assert experiments.initial_shares(ExperimentPlan(strategy="bandit", arms=("a", "b"),
                                                     bandit_champion_floor_bp=3335)) == [("a", 3332), ("b", 3332)]
    with pytest.raises(ValueError, match="champion_floor_bp must be an integer .* got 10000"):
        experiments.initial_state(ExperimentPlan(strategy="bandit", arms=("a",), bandit_champion_floor_bp=10000))


def _replay(state: BanditState, seed: int, p_champion=0.90, p_arm=0.92, window=1000, max_rows=30_000):
    """One experiment served by the bandit's own shares, window by window (seeded): the decision,
    rows at the decision, and the champion's smallest share before it."""
    rng = np.random.default_rng(seed)
    ev = UnpairedEvidence(CHAMP, "x")
    lowest = 10000
    for look in range(max_rows // window):
        n2 = int(rng.binomial(window, state.shares_bp["x"] / 10000))
        n1 = window - n2
        ev = ev.add_batch(k1=int(rng.binomial(n1, p_champion)), n1=n1, k2=int(rng.binomial(n2, p_arm)), n2=n2)
        rec, state = decide_bandit({"x": ev}, state)
        if rec.decision in ("promote", "abort"):
            return rec.decision, (look + 1) * window, lowest
        lowest = min(lowest, 10000 - state.shares_bp["x"])
    return rec.decision, max_rows, lowest


def test_an_outcome_bandit_promotes_a_better_arm_because_the_champion_keeps_its_floor():
    # 90% → 92%, 1,000-row windows, the shares each decision asks for served next (seed 4).
    start = {"arms": ("x",), "shares_bp": {"x": 5000}}
    decision, rows, lowest = _replay(BanditState(**start), seed=4)
    assert (decision, rows, lowest) == ("promote", 21_000, 2000)
    # The same traffic with no champion floor: the champion is starved (under 1% of traffic) and its
    # served rows never narrow its confidence sequence enough to separate the arms.
    decision0, rows0, lowest0 = _replay(BanditState(champion_floor_bp=0, **start), seed=4)
    assert decision0 not in ("promote", "abort") and rows0 == 30_000 and lowest0 < 100


@pytest.mark.parametrize("holdout_bp,shares", [(0, {"x": 8000}), (3000, {"x": 5600}), (9999, {"x": 1})])
def test_the_shares_leave_the_holdout_out_and_the_floor_is_of_the_traffic_served(holdout_bp, shares):
    # P(best) of the champion exactly 0: it keeps 20% of the 10,000 − holdout bp served, the arm the rest.
    # The routing adds the holdout in front of the arms' shares, so together they never pass 10,000.
    rec, state = decide_bandit(_served(3, 30, x=(27, 30)), BanditState(arms=("x",), alpha=1e-12, holdout_bp=holdout_bp))
    assert rec.shares_bp == state.shares_bp == shares
    assert holdout_bp + sum(shares.values()) <= 10000


def test_the_plan_s_holdout_reaches_the_state_and_the_first_shares_keep_the_floor_of_the_traffic_served():
    plan = ExperimentPlan(strategy="bandit", arms=("a", "b"), holdout_bp=5000, bandit_champion_floor_bp=4000)
    # 5,000 bp served: even would be 1,666 each; the champion keeps 40% of 5,000 = 2,000, the arms 1,500 each.
    assert experiments.initial_shares(plan) == [("a", 1500), ("b", 1500)]
    assert experiments.initial_state(plan)["holdout_bp"] == 5000
    # 50.01% of the 9,999 bp served is 5,000.4999 bp: the champion's floor rounds up to 5,001, the arm gets 4,998.
    odd = ExperimentPlan(strategy="bandit", arms=("a",), holdout_bp=1, bandit_champion_floor_bp=5001)
    assert experiments.initial_shares(odd) == [("a", 4998)] and type(experiments.initial_shares(odd)[0][1]) is int
    # A floor that leaves two arms less than a basis point each: they start at 0 (Thompson moves them later).
    assert experiments.initial_shares(ExperimentPlan(strategy="bandit", arms=("a", "b"),
                                                     bandit_champion_floor_bp=9999)) == [("a", 0), ("b", 0)]
