"""An experiment's plan, first state, first shares, evidence per strategy and decision, exactly
(pure, milliseconds): what the comparison asset hands to the strategies."""
from __future__ import annotations

import json

import numpy as np
import pytest

from irisdag.core import experiments, stats, strategies
from irisdag.core.experiments import ExperimentPlan
from irisdag.core.routing import Routing
from irisdag_tests.unit.test_routing import EDGE_KEYS, EDGE_ROUTING


# ------------------------------------------------------------------ the plan
@pytest.mark.parametrize("kwargs,message", [
    (dict(strategy="blue"), "strategy 'blue' is not one of single, shadow, ab, canary, bandit"),
    (dict(feedback="stars"), "feedback 'stars' is not one of label, outcome"),
    (dict(strategy="shadow", feedback="outcome"),
     "shadow serves the champion only, so outcome feedback can never judge the challenger; use label "
     "feedback or a strategy that serves it (ab, canary, bandit)"),
    (dict(holdout_bp=10000), "holdout_bp must be within 0..9999, got 10000"),
    (dict(holdout_bp=-1), "holdout_bp must be within 0..9999, got -1"),
])
def test_a_bad_plan_is_refused_naming_the_value(kwargs, message):
    with pytest.raises(ValueError) as err:
        ExperimentPlan(arms=("x",), **kwargs)
    assert str(err.value) == message


def test_a_plan_normalises_and_round_trips_through_json():
    plan = ExperimentPlan(strategy="canary", feedback="outcome", arms=["x"], holdout_bp=9999,
                          canary_steps_bp=["100", 2000.0, 10000])
    assert plan.arms == ("x",) and plan.canary_steps_bp == (100, 2000, 10000)
    d = plan.to_dict()
    assert d["arms"] == ["x"] and d["canary_steps_bp"] == [100, 2000, 10000] and d["holdout_bp"] == 9999
    assert ExperimentPlan.from_dict(json.loads(json.dumps(d))) == plan
    assert ExperimentPlan(strategy="shadow", feedback="label", holdout_bp=0).holdout_bp == 0


# ------------------------------------------------------------------ the first state and shares
def test_ab_first_state_is_planned_by_exact_power_with_every_plan_setting():
    label = ExperimentPlan(strategy="ab", arms=("x", "y"), alpha=0.04, ab_power=0.85, ab_share_bp=4000,
                           ab_baseline=0.90, ab_min_effect=0.03, ab_discordant=0.08)
    state = experiments.initial_state(label)
    n = stats.planned_n_paired(0.08, 0.03, 0.04, 0.85)
    assert n != stats.planned_n_paired(0.08, 0.03) and n != stats.planned_n_paired(0.10, 0.03, 0.04, 0.85)
    assert state == {"planned_n": n, "share_bp": 4000, "alpha": 0.04, "srm_alpha": 0.001, "decided": None}
    outcome = ExperimentPlan(strategy="ab", feedback="outcome", arms=("x",), alpha=0.04, ab_power=0.85,
                             ab_share_bp=4000, ab_baseline=0.90, ab_min_effect=0.03)
    n_u = stats.planned_n_unpaired(0.90, 0.93, 0.04, 0.85)
    assert n_u != stats.planned_n_unpaired(0.90, 0.93)
    assert experiments.initial_state(outcome) == {"planned_n": n_u, "share_bp": 4000, "alpha": 0.04,
                                                  "srm_alpha": 0.001, "decided": None}


def test_ab_challenger_accuracy_is_capped_below_one():
    plan = ExperimentPlan(strategy="ab", feedback="outcome", arms=("x",), ab_baseline=0.99, ab_min_effect=0.02)
    assert experiments.initial_state(plan)["planned_n"] == stats.planned_n_unpaired(0.99, 0.999)


def test_canary_and_bandit_first_states_carry_every_plan_setting():
    canary = ExperimentPlan(strategy="canary", arms=("x",), alpha=0.04, canary_steps_bp=(100, 2000, 10000),
                            min_rows_per_step=50, delta=0.02)
    assert experiments.initial_state(canary) == {
        "steps_bp": [100, 2000, 10000], "step": 0, "step_started_n": 0, "min_rows_per_step": 50, "delta": 0.02,
        "alpha": 0.04, "rho": 20.0, "arm_prior": [1.0, 1.0], "done": None}
    bandit = ExperimentPlan(strategy="bandit", arms=("x", "y"), alpha=0.04, mixture=2.0, bandit_threshold=0.9,
                            holdout_bp=1000)
    assert experiments.initial_state(bandit) == {
        "arms": ["x", "y"], "threshold": 0.9, "alpha": 0.04, "mixture": 2.0, "draws": 20000, "floor_bp": 0,
        "champion_floor_bp": 2000, "holdout_bp": 1000,
        "seed": 0, "shares_bp": {"x": 3000, "y": 3000}, "dropped": [], "done": None, "arm_prior": [1.0, 1.0]}
    for strategy in ("single", "shadow"):
        assert experiments.initial_state(ExperimentPlan(strategy=strategy, arms=("x",))) == {}


def test_first_shares_per_strategy():
    assert experiments.initial_shares(ExperimentPlan(strategy="ab", arms=("x", "y"), ab_share_bp=4000)) == [
        ("x", 4000)]
    assert experiments.initial_shares(ExperimentPlan(strategy="canary", arms=("x", "y"),
                                                     canary_steps_bp=(100, 2000))) == [("x", 100)]
    # Champion and arms start even, in whole basis points, after the holdout.
    assert experiments.initial_shares(ExperimentPlan(strategy="bandit", arms=("x", "y"))) == [
        ("x", 3333), ("y", 3333)]
    assert experiments.initial_shares(ExperimentPlan(strategy="bandit", arms=("x",), holdout_bp=1001)) == [
        ("x", 4499)]
    for strategy in ("single", "shadow"):
        assert experiments.initial_shares(ExperimentPlan(strategy=strategy, arms=("x",))) == []


# ------------------------------------------------------------------ evidence per strategy
WINDOWS = {
    # Out of time order on purpose: evidence is built in partition order.
    "2024-01-02": {"paired": {"x": {"n": 10, "b": 1, "c": 3, "champion_right": 7, "challenger_right": 9,
                                    "excluded": 2, "repeated": 5}},
                   "served": {"champ": {"n": 6, "right": 5}, "x": {"n": 4, "right": 4}},
                   "holdout": {"n": 1, "champion_right": 1, "excluded": 2, "repeated": 5}},
    "2024-01-01": {"paired": {"x": {"n": 20, "b": 2, "c": 2, "champion_right": 18, "challenger_right": 18,
                                    "excluded": 0},
                              "y": {"n": 20, "b": 0, "c": 1, "champion_right": 18, "challenger_right": 19,
                                    "excluded": 0}},
                   "served": {"champ": {"n": 12, "right": 11}, "y": {"n": 8, "right": 7}},
                   "holdout": {}},
    "2024-01-03": {"paired": {}, "served": {}, "holdout": {"n": 3, "champion_right": 2}},
}


def test_paired_evidence_takes_each_window_of_the_arm_in_partition_order():
    ev = experiments.paired_evidence("champ", "x", WINDOWS)
    assert ev.to_dict() == {"champion": "champ", "challenger": "x", "batches": [
        {"b": 2, "c": 2, "n": 20, "champion_right": 18, "challenger_right": 18, "partition": "2024-01-01",
         "n_excluded": 0, "n_repeated": 0},
        {"b": 1, "c": 3, "n": 10, "champion_right": 7, "challenger_right": 9, "partition": "2024-01-02",
         "n_excluded": 2, "n_repeated": 5}]}
    assert experiments.paired_evidence("champ", "y", WINDOWS).partitions == ("2024-01-01",)


def test_unpaired_evidence_takes_each_window_with_served_rows_in_partition_order():
    ev = experiments.unpaired_evidence("champ", "x", WINDOWS)
    assert ev.to_dict() == {"champion": "champ", "challenger": "x", "batches": [
        {"partition": "2024-01-01", "k1": 11, "n1": 12, "k2": 0, "n2": 0, "n_excluded": 0, "n_repeated": 0},
        {"partition": "2024-01-02", "k1": 5, "n1": 6, "k2": 4, "n2": 4, "n_excluded": 2, "n_repeated": 5}]}
    # A window where only the arm was served counts too; one with nothing served does not.
    only_arm = {"w": {"served": {"x": {"n": 3, "right": 2}}, "holdout": {"excluded": 1}}}
    assert experiments.unpaired_evidence("champ", "x", only_arm).strata() == [(0, 0, 2, 3)]
    assert experiments.unpaired_evidence("champ", "x", {"w": {"served": {}}}).batches == ()


# ------------------------------------------------------------------ the decision per strategy
def test_decide_hands_each_strategy_its_evidence():
    single = ExperimentPlan(strategy="single", arms=("x",))
    rec, state = experiments.decide(single, {"kept": 1}, "champ", {}, True)
    assert (rec.strategy, rec.decision, rec.champion, rec.challenger, state) == (
        "single", "promote", "champ", "x", {"kept": 1})
    assert experiments.decide(single, {}, "champ", {}, None)[0].decision != "promote"

    shadow = ExperimentPlan(strategy="shadow", arms=("x",), alpha=0.04, mixture=2.0)
    rec, _ = experiments.decide(shadow, {}, "champ", WINDOWS, None)
    want = strategies.decide_shadow(experiments.paired_evidence("champ", "x", WINDOWS), alpha=0.04, mixture=2.0)
    assert rec.decision_id == want.decision_id and (rec.n, rec.alpha, rec.mixture) == (30, 0.04, 2.0)

    ab = ExperimentPlan(strategy="ab", feedback="outcome", arms=("x",))
    state = experiments.initial_state(ab)
    rec, new = experiments.decide(ab, state, "champ", WINDOWS, None)
    assert (rec.strategy, rec.evidence, rec.n) == ("ab", "unpaired", 22) and new == state

    canary = ExperimentPlan(strategy="canary", arms=("x",))
    rec, new = experiments.decide(canary, experiments.initial_state(canary), "champ", WINDOWS, None)
    assert (rec.strategy, rec.evidence, rec.n, rec.b, rec.c) == ("canary", "paired", 30, 3, 5)
    assert new == strategies.CanaryState().to_dict()
    canary_out = ExperimentPlan(strategy="canary", feedback="outcome", arms=("x",))
    rec, _ = experiments.decide(canary_out, experiments.initial_state(canary_out), "champ", WINDOWS, None)
    assert (rec.evidence, rec.n) == ("unpaired", 22)

    bandit = ExperimentPlan(strategy="bandit", arms=("x", "y"))
    windows = {p: w for p, w in WINDOWS.items() if p == "2024-01-01"}
    rec, new = experiments.decide(bandit, experiments.initial_state(bandit), "champ", windows, None)
    assert (rec.strategy, rec.evidence, rec.n) == ("bandit", "paired", 20) and set(new["shares_bp"]) == {"x", "y"}


def test_ab_counts_the_served_split_over_every_window():
    # The A/B's sample-ratio check sees each version's served rows summed over the windows.
    ab = ExperimentPlan(strategy="ab", feedback="outcome", arms=("x",))
    state = dict(experiments.initial_state(ab), planned_n=1)
    rec, _ = experiments.decide(ab, state, "champ", WINDOWS, None)
    want, _ = strategies.decide_ab(experiments.unpaired_evidence("champ", "x", WINDOWS),
                                   strategies.ABState.from_dict(state), served=(18, 4))
    assert rec.decision_id == want.decision_id and rec.reason == want.reason


# ------------------------------------------------------------------ routes and the empty record
def test_served_routes_name_the_version_or_the_holdout():
    keys = [EDGE_KEYS[b] for b in (0, 700, 3200, 4700)]
    assert experiments.served_routes(keys, EDGE_ROUTING).tolist() == ["", "arm2", "arm1", "champ"]
    assert experiments.served_routes(np.array(keys), Routing(champion="c")).tolist() == ["c"] * 4
    assert experiments.served_routes([], EDGE_ROUTING).tolist() == []


def test_nothing_to_compare_is_a_continue_record_naming_why():
    rec = experiments.nothing_to_compare("canary", "champ", "x", "no feedback yet", 0.04)
    assert (rec.strategy, rec.evidence, rec.n, rec.champion, rec.challenger, rec.decision, rec.alpha) == (
        "canary", "paired", 0, "champ", "x", "continue", 0.04)
    assert rec.reason == "Nothing to compare: no feedback yet." and rec.decision_id and rec.created_at
    assert experiments.nothing_to_compare("", "champ", "", "none", 0.05).strategy == "shadow"


def test_a_label_ab_checks_the_served_split_summed_from_every_window():
    # Paired evidence cannot show the split: the windows' served counts (40 champion keys, 4 arm keys,
    # a window where neither was served) go to the sample-ratio check.
    windows = {
        "a": {"paired": {"x": {"n": 40, "b": 1, "c": 2, "champion_right": 35, "challenger_right": 36,
                               "excluded": 0}}, "served": {"champ": {"n": 40, "right": 35}}, "holdout": {}},
        "b": {"paired": {"x": {"n": 4, "b": 0, "c": 0, "champion_right": 4, "challenger_right": 4,
                               "excluded": 0}}, "served": {"x": {"n": 4, "right": 4}}, "holdout": {}},
        "c": {"paired": {}, "served": {}, "holdout": {}},
    }
    plan = ExperimentPlan(strategy="ab", arms=("x",))
    rec, new = experiments.decide(plan, experiments.initial_state(plan), "champ", windows, None)
    want = stats.srm_pvalue([40, 4], [5000, 5000])
    assert (rec.decision, rec.champion) == ("abort", "champ") and rec.p_value == pytest.approx(want, rel=1e-12)
    assert new["decided"] == rec.to_dict()


def test_windows_without_a_holdout_entry_and_an_input_whose_token_is_zero():
    assert experiments.unpaired_evidence("champ", "x", {"w": {"served": {"x": {"n": 3, "right": 2}}}}).to_dict()[
        "batches"] == [{"partition": "w", "k1": 0, "n1": 0, "k2": 2, "n2": 3, "n_excluded": 0, "n_repeated": 0}]
    j = experiments.judge_window(np.array([0, 1]), np.array([0, 7], dtype=np.uint64), [])
    assert j.judged.tolist() == [True, True]


def test_decide_names_the_champion_in_every_strategy_s_record():
    for strategy, feedback in (("canary", "label"), ("canary", "outcome"), ("shadow", "label"), ("ab", "outcome")):
        plan = ExperimentPlan(strategy=strategy, feedback=feedback, arms=("x",))
        rec, _ = experiments.decide(plan, experiments.initial_state(plan), "champ", WINDOWS, None)
        assert (rec.champion, rec.challenger) == ("champ", "x")
