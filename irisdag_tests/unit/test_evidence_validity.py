"""Issue 8: evidence counted once, bounded-outcome sequences, exact SRM and power, NaN refused."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom, binomtest

from irisdag.core import experiments, stats
from irisdag.core.decision import DecisionRecord
from irisdag.core.strategies import (
    ABState,
    BanditState,
    CanaryState,
    PairedEvidence,
    UnpairedEvidence,
    decide_bandit,
    decide_canary,
)

CHAMP, CHALL = "c" * 64, "d" * 64


# ------------------------------------------------------------------ exact power planning
def test_connor_falls_short_and_the_exact_plan_reaches_80_percent():
    assert stats.power_mcnemar(783, 0.04, 0.02) == pytest.approx(0.765, abs=0.001)
    assert stats.power_mcnemar(1960, 0.10, 0.02) == pytest.approx(0.783, abs=0.001)
    for psi in (0.04, 0.10):
        n = stats.planned_n_paired(psi, 0.02)
        assert all(stats.power_mcnemar(m, psi, 0.02) >= 0.80 for m in range(n, n + 21))
        assert stats.power_mcnemar(n - 1, psi, 0.02) < 0.80 or stats.power_mcnemar(n - 25, psi, 0.02) < 0.80
    assert ABState.plan_paired(0.90, 0.92, 0.04).planned_n == stats.planned_n_paired(0.04, 0.02) == 843
    n_u = ABState.plan_unpaired(0.90, 0.92).planned_n
    assert stats.power_two_proportion(n_u, 0.90, 0.92) >= 0.80 > stats.power_two_proportion(n_u - 40, 0.90, 0.92)


def test_exact_mcnemar_power_equals_brute_force_enumeration():
    # Every (b, c) of a small n, judged by the exact test itself.
    n, psi, delta, alpha = 60, 0.3, 0.15, 0.05
    p_b, p_c = (psi - delta) / 2, (psi + delta) / 2
    total = 0.0
    for b in range(n + 1):
        for c in range(n + 1 - b):
            if c > b and stats.mcnemar_exact(b, c) <= alpha:
                total += math.exp(math.lgamma(n + 1) - math.lgamma(b + 1) - math.lgamma(c + 1)
                                  - math.lgamma(n - b - c + 1) + b * math.log(p_b) + c * math.log(p_c)
                                  + (n - b - c) * math.log(1 - psi))
    assert stats.power_mcnemar(n, psi, delta, alpha) == pytest.approx(total, rel=1e-9)


def test_exact_two_proportion_power_equals_brute_force_enumeration():
    n, p1, p2 = 40, 0.6, 0.85
    total = sum(binom.pmf(k1, n, p1) * binom.pmf(k2, n, p2)
                for k1 in range(n + 1) for k2 in range(n + 1)
                if k2 > k1 and stats.two_proportion_z(k1, n, k2, n)[1] <= 0.05)
    assert stats.power_two_proportion(n, p1, p2) == pytest.approx(total, rel=1e-6)


# ------------------------------------------------------------------ sample ratio on distinct keys, exact when tiny
def test_srm_is_exact_where_expected_counts_are_tiny():
    # Chi-square would say p = 2.7e-199 for 10 vs 1 against 9999:1 basis points.
    p = stats.srm_pvalue([10, 1], [9999, 1])
    assert p == pytest.approx(binomtest(10, 11, 0.9999).pvalue) and p > 1e-3
    three = stats.srm_pvalue([30, 1, 0], [9000, 500, 500])
    assert three == pytest.approx(min(1.0, 3 * min(binomtest(o, 31, f).pvalue
                                                     for o, f in zip([30, 1, 0], [0.9, 0.05, 0.05]))))
    assert stats.srm_pvalue([5200, 4800], [1, 1]) < 1e-3  # large counts: chi-square as before
    with pytest.raises(ValueError, match="NaN"):
        stats.srm_pvalue([float("nan"), 3], [1, 1])


def test_served_split_counts_distinct_keys_not_rows():
    # One key on 50 rows is one routed draw: the judged rows (one per distinct input) feed the SRM check.
    inverse = np.array([0] * 50 + [1, 2, 3])
    j = experiments.judge_rows(inverse, np.zeros(4, bool), np.ones(4, bool))
    served_by = np.array(["champ"] * 50 + ["arm", "champ", "arm"], dtype=object)
    truth = np.zeros(53, int)
    ev = experiments.count_window(truth, truth, {"arm": truth}, served_by, j.judged, excluded=j.excluded,
                                  repeated=j.repeated)
    assert ev.served == {"champ": {"n": 2, "right": 2}, "arm": {"n": 2, "right": 2}}
    assert ev.paired["arm"]["n"] == 4 and ev.paired["arm"]["repeated"] == 49


# ------------------------------------------------------------------ the count-once rule (pure part)
def test_judge_rows_judges_each_owned_untrained_input_once():
    inverse = np.array([0, 1, 0, 2, 3, 3, 1])
    trained = np.array([False, False, True, False])
    owned = np.array([True, False, True, True])   # key 1 was judged in an earlier window
    j = experiments.judge_rows(inverse, trained, owned)
    assert j.judged.tolist() == [True, False, False, False, True, False, False]
    assert j.excluded.tolist() == [False, False, False, True, False, False, False]
    assert j.repeated.tolist() == [False, True, True, False, False, True, True]
    assert (j.judged.astype(int) + j.excluded + j.repeated == 1).all()


def test_tokens_agree_between_digests_and_hex_keys():
    from irisdag.core import keys

    X = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]])
    digests = keys.digests_of_array(X)
    assert experiments.digest_tokens(digests).tolist() == experiments.hex_tokens(keys.hex_of_digests(digests)).tolist()
    ids = experiments.id_tokens(np.array(["id:a", "id:b", "id:a"]))
    assert ids[0] == ids[2] != ids[1]
    assert experiments.first_of_each(ids).tolist() == [True, True, False]


def test_repeats_and_exclusions_reach_the_decision_record():
    ev = PairedEvidence(CHAMP, CHALL).add_batch(b=1, c=2, n=10, champion_right=8, challenger_right=9,
                                                partition="w1", n_excluded=3, n_repeated=40)
    ev = ev.add_batch(b=0, c=0, n=0, champion_right=0, challenger_right=0, partition="w2", n_repeated=10)
    rec, _ = decide_canary(ev, CanaryState())
    assert (rec.n, rec.n_excluded, rec.n_repeated) == (10, 3, 50)
    assert "3 row(s) excluded" in rec.not_judged and "50 row(s) repeated" in rec.not_judged
    again = DecisionRecord.from_dict(rec.to_dict())
    assert again == rec and again.decision_id == rec.decision_id
    assert "rows repeated" in rec.to_markdown() and "not judged" in rec.to_markdown()


# ------------------------------------------------------------------ Bernoulli confidence sequence
def test_bernoulli_cs_is_exact_at_tiny_n_and_never_a_point():
    assert stats.bernoulli_cs(0, 0, 0.05) == (0.0, 1.0)
    lo, hi = stats.bernoulli_cs(1, 1, 0.05)
    assert hi == 1.0 and 0 < lo < 0.1                 # one right row says little
    lo, hi = stats.bernoulli_cs(5, 5, 0.025)
    assert hi == 1.0 and lo < 0.6
    lo, hi = stats.bernoulli_cs(900, 1000, 0.025)
    assert lo < 0.9 < hi and hi - lo < 0.08
    # The ends are where the mixture martingale reaches 1/α.
    assert stats.bernoulli_mixture_log_lambda(900, 1000, lo) == pytest.approx(math.log(40), abs=1e-6)


@pytest.mark.slow_sim
def test_bernoulli_cs_holds_at_every_look_by_simulation():
    # 4,000 paths of 300 Bernoulli(0.9) rows, a look after every row: the share of paths whose
    # sequence ever excludes 0.9 stays within α (a plug-in normal sequence fails here).
    rng = np.random.default_rng(11)
    x = rng.random((4000, 300)) < 0.9
    k, n = np.cumsum(x, axis=1), np.arange(1, 301)
    lo, hi = stats.bernoulli_cs(k, np.broadcast_to(n, k.shape), 0.05)
    ever = ((lo > 0.9) | (hi < 0.9)).any(axis=1).mean()
    assert ever <= 0.05
    # The old plug-in normal interval fails the same paths often.
    p = k / n
    half = np.sqrt(np.maximum(p * (1 - p), 0) / n) * 1.96
    assert ((p - half > 0.9) | (p + half < 0.9)).any(axis=1).mean() > 0.2


# ------------------------------------------------------------------ canary
def test_canary_aborts_when_the_upper_bound_is_below_zero_not_only_below_minus_delta():
    paired = PairedEvidence(CHAMP, CHALL).add_batch(b=20, c=0, n=20000, champion_right=19000,
                                                    challenger_right=18980)
    rec, state = decide_canary(paired, CanaryState())
    assert -0.01 < rec.difference_ci[1] < 0 and rec.decision == "abort" and state.done == "abort"
    unpaired = UnpairedEvidence(CHAMP, CHALL).add_batch(k1=18000, n1=20000, k2=4340, n2=5000)
    rec, _ = decide_canary(unpaired, CanaryState())
    assert -0.01 < rec.difference_ci[1] < 0 and rec.decision == "abort"


def test_outcome_canary_interval_is_the_two_arm_sequences_at_half_alpha():
    ev = UnpairedEvidence(CHAMP, CHALL).add_batch(k1=900, n1=1000, k2=48, n2=50)
    rec, _ = decide_canary(ev, CanaryState(min_rows_per_step=10))
    lo1, hi1 = stats.bernoulli_cs(900, 1000, 0.025)
    lo2, hi2 = stats.bernoulli_cs(48, 50, 0.025)
    assert rec.difference_ci == pytest.approx((lo2 - hi1, hi2 - lo1))
    assert rec.decision == "continue"                 # 50 served rows cannot show non-inferiority
    # An arm with every served row right is not a zero-variance certainty.
    perfect = UnpairedEvidence(CHAMP, CHALL).add_batch(k1=900, n1=1000, k2=20, n2=20)
    rec, _ = decide_canary(perfect, CanaryState(min_rows_per_step=10))
    assert rec.decision == "continue" and rec.difference_ci[0] < -0.1


def test_default_alpha_of_the_sequential_states_is_five_percent():
    ev = PairedEvidence(CHAMP, CHALL).add_batch(b=10, c=30, n=300, champion_right=270, challenger_right=290)
    assert decide_canary(ev, CanaryState())[0].alpha == 0.05
    rec, _ = decide_bandit({"a": ev}, BanditState(arms=("a",)))
    assert rec.alpha == 0.05
    # Λ = 31.6 ≥ 1/0.05: promoted at the default α; a stricter α holds.
    assert rec.decision == "promote"
    assert decide_bandit({"a": ev}, BanditState(arms=("a",), alpha=0.03))[0].decision != "promote"


# ------------------------------------------------------------------ bandit
def _paired(b, c, n=300, champion_right=270):
    return PairedEvidence(CHAMP, CHALL).add_batch(b=b, c=c, n=n, champion_right=champion_right,
                                                  challenger_right=champion_right - b + c, partition="w1")


def test_bandit_splits_alpha_over_its_arms():
    # Λ = 31.6 for (b, c) = (10, 30): past 1/α = 20, short of 1/(α/2) = 40.
    better, worse = _paired(10, 30), _paired(30, 10)
    one, _ = decide_bandit({"x": better}, BanditState(arms=("x",)))
    assert one.decision == "promote" and one.alpha == 0.05
    two, state = decide_bandit({"x": better, "y": worse}, BanditState(arms=("x", "y")))
    assert two.statistic >= 0.95 and two.alpha == 0.025
    assert two.decision != "promote" and state.dropped == ()   # neither arm crossed at α/2


def test_bandit_under_outcome_feedback_uses_the_unpaired_confirmatory_test():
    champ = dict(k1=4500, n1=5000)
    better = UnpairedEvidence(CHAMP, "x").add_batch(k2=4800, n2=5000, partition="w1", **champ)
    same = UnpairedEvidence(CHAMP, "y").add_batch(k2=4510, n2=5000, partition="w1", **champ)
    rec, state = decide_bandit({"x": better, "y": same}, BanditState(arms=("x", "y")))
    assert rec.decision == "promote" and rec.challenger == "x" and rec.evidence == "unpaired"
    assert "unpaired" in rec.test
    # Few served rows: P(best) may be high, the sequences still overlap: no promotion.
    few = UnpairedEvidence(CHAMP, "x").add_batch(k1=90, n1=100, k2=20, n2=20, partition="w1")
    rec, state = decide_bandit({"x": few}, BanditState(arms=("x",)))
    assert rec.decision != "promote"
    worse = UnpairedEvidence(CHAMP, "x").add_batch(k2=4000, n2=5000, partition="w1", **champ)
    rec, state = decide_bandit({"x": worse}, BanditState(arms=("x",)))
    assert rec.decision == "abort"
    with pytest.raises(TypeError, match="every arm"):
        decide_bandit({"x": better, "y": _paired(1, 2)}, BanditState(arms=("x", "y")))


def test_outcome_bandit_splits_the_arms_alpha_over_its_arms():
    # Champion 4,500/5,000 (its sequence at α/2 ends at 0.91634); an arm at 4,661/5,000 has its lower
    # bound above that at α/2 (0.91665) but not at α/(2·2) (0.91598): one arm is promoted, two are not.
    champ = dict(k1=4500, n1=5000)
    assert stats.bernoulli_cs(4661, 5000, 0.025)[0] > stats.bernoulli_cs(4500, 5000, 0.025)[1] \
        > stats.bernoulli_cs(4661, 5000, 0.0125)[0]
    x = UnpairedEvidence(CHAMP, "x").add_batch(k2=4661, n2=5000, partition="w1", **champ)
    y = UnpairedEvidence(CHAMP, "y").add_batch(k2=4500, n2=5000, partition="w1", **champ)
    one, _ = decide_bandit({"x": x}, BanditState(arms=("x",)))
    assert one.decision == "promote" and one.challenger == "x"
    two, state = decide_bandit({"x": x, "y": y}, BanditState(arms=("x", "y")))
    assert two.statistic >= 0.95 and two.decision != "promote" and state.done is None


def test_a_bandit_plan_with_outcome_feedback_is_judged_on_served_traffic():
    plan = experiments.ExperimentPlan(strategy="bandit", feedback="outcome", arms=("x",))
    state = experiments.initial_state(plan)
    windows = {"w1": {"paired": {}, "served": {"champ": {"n": 5000, "right": 4500}, "x": {"n": 5000, "right": 4800}},
                      "holdout": {}}}
    rec, new = experiments.decide(plan, state, "champ", windows, True)
    assert rec.evidence == "unpaired" and rec.decision == "promote" and new["done"] == "promote"


# ------------------------------------------------------------------ NaN is an error
@pytest.mark.parametrize("call", [
    lambda: stats.lambda_of_log(float("nan")),
    lambda: stats.unpaired_msprt(0.9, 10, 0.8, 10, float("nan")),
    lambda: stats.stratified_unpaired_msprt([(9, 10, 8, 10)], float("nan")),
    lambda: stats.noninferiority_lambda(float("nan"), 10, 0.1, 20.0, 0.01),
    lambda: stats.noninferiority_lambda(3.0, 10, float("nan"), 20.0, 0.01),
    lambda: stats.confidence_sequence(3.0, 10, float("nan"), 20.0, 0.05),
    lambda: stats.paired_msprt(float("nan"), 3),
    lambda: stats.bernoulli_cs(float("nan"), 10, 0.05),
    lambda: stats.always_valid_p([float("nan")]),
])
def test_nan_in_a_decision_input_is_an_error_not_a_verdict(call):
    with pytest.raises(ValueError):
        call()
