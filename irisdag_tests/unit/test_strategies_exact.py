"""Strategy records field by field against closed forms written out here (the mutation review,
docs/mutation-review.md): a changed variance, prior, bound or record field fails a test."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import fisher_exact

from irisdag.core import stats
from irisdag.core.strategies import (
    BanditState,
    CanaryState,
    PairedEvidence,
    UnpairedEvidence,
    decide_bandit,
    decide_canary,
    decide_single,
)

CHAMP, CHALL = "c" * 64, "d" * 64
WHEN = "2026-01-01T00:00:00+00:00"


# ------------------------------------------------------------------ single
@pytest.mark.parametrize("validated,decision,reason", [
    (True, "promote", "The challenger passed its validity checks; the single strategy promotes it without a "
                      "comparison."),
    (False, "abort", "The challenger failed its validity checks; it is never served."),
    (None, "continue", "The challenger's validity checks have not reported yet."),
])
def test_single_record_field_by_field(validated, decision, reason):
    rec = decide_single(validated, champion="a", challenger="b", created_at=WHEN)
    assert (rec.strategy, rec.evidence, rec.n, rec.champion, rec.challenger, rec.decision, rec.reason,
            rec.test, rec.created_at) == ("single", "none", 0, "a", "b", decision, reason, "validity checks", WHEN)
    assert rec.decision_id == rec.with_id().decision_id and len(rec.decision_id) == 16
    assert decide_single(validated).created_at                    # stamped when not given
    with pytest.raises(TypeError, match="validated must be True, False or None, got 'yes'"):
        decide_single("yes")


# ------------------------------------------------------------------ canary, paired
@pytest.mark.parametrize("b,c,n", [(10, 30, 1000), (30, 10, 1000), (3, 3, 50), (0, 4, 400)])
def test_paired_canary_interval_is_the_confidence_sequence_of_the_per_row_differences(b, c, n):
    state = CanaryState(min_rows_per_step=10, delta=0.02, rho=7.0, alpha=0.04)
    ev = PairedEvidence(CHAMP, CHALL).add_batch(b=b, c=c, n=n, champion_right=n - c - 5,
                                                challenger_right=n - c - 5 - b + c)
    rec, _ = decide_canary(ev, state, created_at=WHEN)
    s_n = c - b
    s2 = (b + c) / n - (s_n / n) ** 2            # the variance of D ∈ {−1, 0, 1} per row
    lo, hi = stats.confidence_sequence(s_n, n, s2, 7.0, 0.04)
    lam = stats.noninferiority_lambda(s_n, n, s2, 7.0, 0.02)
    assert rec.difference_ci == pytest.approx((lo, hi), rel=1e-12) and rec.statistic == pytest.approx(lo)
    assert rec.lambda_ == pytest.approx(lam, rel=1e-12) and rec.p_value == pytest.approx(min(1.0, 1 / lam))
    assert (rec.alpha, rec.mixture, rec.difference) == (0.04, 7.0, s_n / n)


def test_an_empty_paired_canary_holds_with_the_widest_interval():
    rec, state = decide_canary(PairedEvidence(CHAMP, CHALL), CanaryState(), created_at=WHEN)
    assert (rec.decision, rec.n, rec.lambda_, rec.p_value, rec.statistic) == ("continue", 0, 1.0, 1.0, -1.0)
    assert state == CanaryState()


# ------------------------------------------------------------------ canary and bandit, outcome feedback
def test_outcome_canary_uses_the_state_s_arm_prior():
    prior = (2.0, 0.5)
    ev = UnpairedEvidence(CHAMP, CHALL).add_batch(k1=90, n1=100, k2=45, n2=50)
    rec, _ = decide_canary(ev, CanaryState(min_rows_per_step=10, arm_prior=prior, alpha=0.04))
    lo1, hi1 = stats.bernoulli_cs(90, 100, 0.02, prior)
    lo2, hi2 = stats.bernoulli_cs(45, 50, 0.02, prior)
    assert rec.difference_ci == pytest.approx((lo2 - hi1, hi2 - lo1), rel=1e-12)
    assert rec.difference_ci != pytest.approx(decide_canary(ev, CanaryState(min_rows_per_step=10, alpha=0.04))[0]
                                              .difference_ci, rel=1e-6)


def test_outcome_bandit_verdict_uses_the_state_s_arm_prior():
    # With Beta(1, 1) the arm at 4,661/5,000 is shown better (one arm: its sequence at α/2); a prior that
    # pulls both sequences far toward 0 (Beta(1, 5000)) keeps the arm's lower bound under the champion's
    # upper one here.
    champ = dict(k1=4500, n1=5000)
    ev = UnpairedEvidence(CHAMP, "x").add_batch(k2=4661, n2=5000, partition="w1", **champ)
    prior = (1.0, 5000.0)
    lo2 = stats.bernoulli_cs(4661, 5000, 0.025, prior)[0]
    hi1 = stats.bernoulli_cs(4500, 5000, 0.025, prior)[1]
    assert lo2 <= hi1
    assert decide_bandit({"x": ev}, BanditState(arms=("x",)))[0].decision == "promote"
    assert decide_bandit({"x": ev}, BanditState(arms=("x",), arm_prior=prior))[0].decision != "promote"


# ------------------------------------------------------------------ Thompson shares and Fisher
def test_thompson_shares_are_the_floor_plus_p_best_from_the_given_generator():
    s, f = [40, 45, 30], [10, 5, 20]
    p = stats.prob_best(s, f, 2000, np.random.default_rng(5))
    got = stats.thompson_shares(s, f, 2000, np.random.default_rng(5), floor=0.1)
    assert got.tolist() == pytest.approx((0.1 + 0.7 * p).tolist(), abs=1e-15)
    assert stats.thompson_shares(s, f, 2000, np.random.default_rng(5)).tolist() == p.tolist()
    assert stats.thompson_shares([1, 1], [1, 1], 10, np.random.default_rng(0), floor=0.5).tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match="floor 0.4 times 3 arms exceeds 1"):
        stats.thompson_shares(s, f, 10, np.random.default_rng(0), floor=0.4)


def test_fisher_with_a_one_row_arm_is_the_exact_table_p():
    assert stats.fisher(0, 1, 10, 10) == pytest.approx(1 / 11)
    assert stats.fisher(10, 10, 0, 1) == pytest.approx(fisher_exact([[10, 0], [0, 1]]).pvalue)
    assert stats.fisher(0, 0, 3, 5) == 1.0 and stats.fisher(3, 5, 0, 0) == 1.0


# ------------------------------------------------------------------ canary steps, exactly on their edges
def _even(n):
    # No discordant rows at all: Δ̂ = 0 with an interval around it.
    return PairedEvidence(CHAMP, CHALL).add_batch(b=0, c=0, n=n, champion_right=n - 10, challenger_right=n - 10)


def test_canary_ramps_once_the_step_has_exactly_its_minimum_rows_and_lo_is_above_minus_delta():
    state = CanaryState(steps_bp=(500, 10000), min_rows_per_step=4000, delta=0.01)
    rec, new = decide_canary(_even(4000), state)
    assert -0.01 < rec.difference_ci[0] < 0.01        # between −δ and +δ: non-inferior, not superior
    assert rec.decision == "ramp" and new.step == 1 and new.step_started_n == 4000
    assert rec.shares_bp == {CHALL: 10000}
    rec, new = decide_canary(_even(3999), state)
    assert rec.decision == "continue" and new == state
    # The last step: promote with the whole traffic.
    last = CanaryState(steps_bp=(500, 10000), step=1, step_started_n=4000, min_rows_per_step=4000, delta=0.01)
    rec, new = decide_canary(_even(8000), last)
    assert (rec.decision, rec.shares_bp, new.done) == ("promote", {CHALL: 10000}, "promote")
    # A step that has judged nothing yet holds (and is not an error).
    rec, new = decide_canary(_even(4000), CanaryState(steps_bp=(500, 10000), step=1, step_started_n=4000))
    assert rec.decision == "continue" and new.step == 1
    with pytest.raises(ValueError, match="evidence has 3999 rows but the current step began at 4000"):
        decide_canary(_even(3999), CanaryState(steps_bp=(500, 10000), step=1, step_started_n=4000))


@pytest.mark.parametrize("kwargs", [
    dict(arm_prior=(0.0, 1.0)), dict(arm_prior=(1.0,)), dict(steps_bp=()), dict(steps_bp=(0, 100)),
    dict(steps_bp=(100, 10001)), dict(steps_bp=(200, 100)), dict(steps_bp=(100, 100)),
    dict(steps_bp=(100, 200), step=2), dict(step=-1), dict(delta=1.0), dict(delta=-0.01), dict(rho=0.0),
    dict(done="maybe"), dict(min_rows_per_step=-1), dict(step_started_n=-1), dict(alpha=0.0),
])
def test_canary_state_refuses_what_it_cannot_run(kwargs):
    with pytest.raises(ValueError):
        CanaryState(**kwargs)


def test_canary_state_accepts_its_edges():
    s = CanaryState(steps_bp=(1, 10000), step=1, delta=0.0, rho=0.5, arm_prior=(0.5, 2))
    assert (s.steps_bp, s.step, s.delta, s.rho, s.arm_prior, s.share_bp) == ((1, 10000), 1, 0.0, 0.5, (0.5, 2.0), 10000)
    assert CanaryState(done="abort").share_bp == 0 and CanaryState(done="promote").share_bp == 500


# ------------------------------------------------------------------ A/B records and the sample-ratio check
def _pairs(*batches):
    ev = PairedEvidence(CHAMP, CHALL)
    for i, (b, c, n) in enumerate(batches):
        ev = ev.add_batch(b=b, c=c, n=n, champion_right=n - c - 5, challenger_right=n - c - 5 - b + c,
                          partition=f"w{i}")
    return ev


def test_ab_records_field_by_field_before_and_at_the_planned_n():
    from irisdag.core.strategies import ABState, decide_ab

    state = ABState(planned_n=600, share_bp=5000, alpha=0.04)
    rec, same = decide_ab(_pairs((4, 12, 400)), state, served=(200, 200), created_at=WHEN)
    assert (rec.decision, rec.test, rec.alpha, rec.created_at, rec.p_value, same) == (
        "continue", "exact McNemar at the planned n", 0.04, WHEN, None, state)
    unpaired = UnpairedEvidence(CHAMP, CHALL).add_batch(k1=90, n1=100, k2=95, n2=100)
    rec, _ = decide_ab(unpaired, ABState(planned_n=600), created_at=WHEN)
    assert (rec.decision, rec.test) == ("continue", "Fisher exact / two-proportion z at the planned n")
    rec, done = decide_ab(_pairs((4, 12, 400), (3, 15, 300)), state, served=(350, 350), created_at=WHEN)
    assert rec.statistic == pytest.approx((27 - 7) / np.sqrt(34), rel=1e-12)
    assert (rec.decision, rec.p_value, rec.alpha, rec.created_at) == (
        "promote", pytest.approx(stats.mcnemar_exact(7, 27)), 0.04, WHEN)
    assert rec.test == "exact McNemar (two-sided), once at the planned n; statistic = (c − b)/√(b + c)"
    assert done.decided == rec.to_dict()
    # No discordant row at the planned n: no evidence, statistic 0, not shown better.
    rec, _ = decide_ab(_pairs((0, 0, 700)), state, served=(350, 350))
    assert (rec.decision, rec.statistic, rec.p_value) == ("abort", 0.0, 1.0)


def test_ab_sample_ratio_abort_record_carries_the_exact_p_against_the_planned_split():
    from irisdag.core.strategies import ABState, decide_ab

    state = ABState(planned_n=600, share_bp=4000, srm_alpha=0.001)
    rec, done = decide_ab(_pairs((4, 12, 400)), state, served=(6350, 3650), created_at=WHEN)
    want = stats.srm_pvalue([6350, 3650], [6000, 4000])
    assert 0 < want < 0.001 and rec.p_value == pytest.approx(want, rel=1e-12)
    assert (rec.decision, rec.alpha, rec.created_at, rec.statistic) == ("abort", 0.001, WHEN, None)
    assert rec.test == ("sample-ratio mismatch on distinct keys (chi-square; exact binomial where an expected "
                        "count is below 5)")
    assert done.decided == rec.to_dict()


# ------------------------------------------------------------------ sample-ratio p, exactly
def test_srm_pvalue_chooses_chi_square_from_an_expected_count_of_five():
    from scipy.stats import binomtest, chisquare

    assert stats.srm_pvalue([3, 7], [1, 1]) == pytest.approx(chisquare([3, 7], [5, 5]).pvalue, rel=1e-12)
    assert stats.srm_pvalue([2, 6], [1, 1]) == pytest.approx(binomtest(2, 8, 0.5).pvalue, rel=1e-12)
    # Three arms, tiny expected counts: the smallest exact p times 3 (below 1 here).
    p = stats.srm_pvalue([0, 0, 12], [4500, 4500, 1000])
    assert p == pytest.approx(3 * binomtest(12, 12, 0.1).pvalue, rel=1e-12) and p < 1e-9


def test_srm_pvalue_arms_planned_at_zero():
    from scipy.stats import binomtest

    assert stats.srm_pvalue([3, 5, 1], [1, 1, 0]) == 0.0
    assert stats.srm_pvalue([3, 5, 0], [1, 1, 0]) == pytest.approx(binomtest(3, 8, 0.5).pvalue, rel=1e-12)
    assert stats.srm_pvalue([0, 0], [1, 1]) == 1.0 and stats.srm_pvalue([4], [1]) == 1.0


@pytest.mark.parametrize("obs,shares,message", [
    ([1, 2], [1], "observed_counts and planned_shares must be 1-D and of equal length"),
    ([[1, 2]], [[1, 1]], "observed_counts and planned_shares must be 1-D and of equal length"),
    ([1, 2], [1, float("nan")], "NaN in the observed counts or the planned shares"),
    ([-1, 3], [1, 1], "counts and shares must be non-negative"),
    ([1, 3], [-1, 2], "counts and shares must be non-negative"),
    ([1.5, 2], [1, 1], "observed counts must be integers"),
    ([0, 0], [0, 0], "planned shares sum to zero"),
])
def test_srm_pvalue_refuses_bad_input_saying_why(obs, shares, message):
    with pytest.raises(ValueError) as err:
        stats.srm_pvalue(obs, shares)
    assert str(err.value) == message


# ------------------------------------------------------------------ shadow
def test_shadow_looks_for_its_crossing_with_its_own_mixture():
    from irisdag.core.strategies import decide_shadow

    # (b, c) = (0, 8): Λ = 28.4 with Beta(1, 1) (a crossing at α = 0.05), 3.36 with Beta(8, 8) (none).
    ev = _pairs((0, 8, 100), (0, 0, 100))
    rec = decide_shadow(ev, alpha=0.05, mixture=8.0)
    assert (rec.decision, rec.n, rec.partitions) == ("continue", 200, ("w0", "w1"))
    assert decide_shadow(ev, alpha=0.05, mixture=1.0).partitions == ("w0",)     # stopped at its crossing


def test_shadow_decides_an_even_window_by_the_direction_recorded_at_an_earlier_crossing():
    from irisdag.core.strategies import decide_shadow

    even = _pairs((5, 5, 100))
    assert decide_shadow(even, looks_p_history=[(0.01, 1)]).decision == "promote"
    assert decide_shadow(even, looks_p_history=[(0.01, -1)]).decision == "abort"
    assert decide_shadow(even).decision == "continue"


def test_shadow_no_evidence_record_field_by_field():
    from irisdag.core.strategies import decide_shadow

    ev = _pairs((0, 0, 50))
    rec = decide_shadow(ev, alpha=0.04, mixture=2.0, created_at=WHEN)
    log_lam, lam = stats.paired_msprt(0, 0, 2.0)
    assert (rec.decision, rec.statistic, rec.p_value, rec.alpha, rec.mixture, rec.lambda_, rec.created_at) == (
        "continue", log_lam, 1.0, 0.04, 2.0, lam, WHEN)
    assert rec.reason == ("No discordant rows among 50: both models were right or wrong on the same rows, so "
                          "there is no evidence either way yet.")


# ------------------------------------------------------------------ unpaired record
def test_unpaired_record_field_by_field():
    from irisdag.core.strategies import ABState, decide_ab

    ev = UnpairedEvidence(CHAMP, CHALL).add_batch(k1=90, n1=100, k2=40, n2=50, partition="w1", n_excluded=3,
                                                  n_repeated=4)
    rec, _ = decide_ab(ev, ABState(planned_n=600), created_at=WHEN)
    assert (rec.champion, rec.challenger, rec.n, rec.champion_accuracy, rec.challenger_accuracy) == (
        CHAMP, CHALL, 150, 0.9, 0.8)
    assert rec.champion_ci == pytest.approx(stats.wilson(90, 100, 0.95), rel=1e-12)
    assert rec.challenger_ci == pytest.approx(stats.wilson(40, 50, 0.95), rel=1e-12)
    assert rec.difference == pytest.approx(-0.1, rel=1e-12)
    assert rec.difference_ci == pytest.approx(stats.newcombe_diff(90, 100, 40, 50, 0.95), rel=1e-12)
    assert rec.interval_method == "95% Newcombe hybrid score interval (fixed-n)"
    assert (rec.n_excluded, rec.n_repeated, rec.created_at, rec.partitions, rec.shares_bp) == (
        3, 4, WHEN, ("w1",), {})
    assert rec.decision_id == rec.with_id().decision_id
    # One arm only: no difference, no interval.
    one, _ = decide_ab(UnpairedEvidence(CHAMP, CHALL).add_batch(k1=90, n1=100, k2=0, n2=0), ABState(planned_n=600),
                       served=(100, 90))
    assert (one.champion_accuracy, one.challenger_accuracy, one.challenger_ci) == (0.9, None, None)
    assert (one.difference, one.difference_ci, one.interval_method) == (None, None, "")
    canary, _ = decide_canary(ev, CanaryState(min_rows_per_step=10), created_at=WHEN)
    assert (canary.lambda_, canary.mixture, canary.alpha) == (None, None, 0.05)
    assert canary.interval_method == "always-valid 95% confidence sequence"


# ------------------------------------------------------------------ bandit shares and records
def test_bandit_shares_record_and_state_exactly_with_a_floor():
    from irisdag.core.strategies import shadow_always_valid_p

    x = PairedEvidence(CHAMP, CHALL).add_batch(b=10, c=14, n=300, champion_right=270, challenger_right=274)
    y = PairedEvidence(CHAMP, CHALL).add_batch(b=12, c=13, n=300, champion_right=270, challenger_right=271)
    state = BanditState(arms=("x", "y"), floor_bp=500, champion_floor_bp=1500, mixture=2.0, seed=3)
    rec, new = decide_bandit({"x": x, "y": y}, state, created_at=WHEN)
    right = [x.champion_right, x.challenger_right, y.challenger_right]
    pbest = stats.prob_best(right, [300 - r for r in right], state.draws, np.random.default_rng([3, 300, 2]))
    bp = stats.shares_to_bp(np.array([0.15, 0.05, 0.05]) + (1 - 0.25) * pbest)
    assert rec.shares_bp == new.shares_bp == {"x": bp[1], "y": bp[2]} and min(bp[1:]) >= 500 and bp[0] >= 1500
    focus = "x" if pbest[1] >= pbest[2] else "y"
    p, _, lam = shadow_always_valid_p({"x": x, "y": y}[focus], 2.0)
    assert (rec.decision, rec.statistic, rec.p_value, rec.lambda_, rec.alpha, rec.mixture, rec.created_at) == (
        "ramp", pytest.approx(max(pbest[1:])), pytest.approx(p), pytest.approx(lam), 0.025, 2.0, WHEN)
    # The same evidence again: the same shares, so nothing to ramp.
    again, same = decide_bandit({"x": x, "y": y}, new, created_at=WHEN)
    assert (again.decision, same.shares_bp) == ("continue", new.shares_bp)


def test_bandit_drops_a_worse_arm_into_its_state_and_aborts_with_every_share_zero():
    worse = _pairs((40, 5, 300))
    rec, new = decide_bandit({"x": worse}, BanditState(arms=("x",), mixture=2.0), created_at=WHEN)
    assert (rec.decision, rec.shares_bp, new.shares_bp, new.dropped, new.done) == (
        "abort", {"x": 0}, {"x": 0}, ("x",), "abort")
    p, _, lam = __import__("irisdag.core.strategies", fromlist=["x"]).shadow_always_valid_p(worse, 2.0)
    assert (rec.p_value, rec.lambda_, rec.alpha, rec.mixture, rec.created_at) == (
        pytest.approx(p), pytest.approx(lam), 0.05, 2.0, WHEN)


# ------------------------------------------------------------------ A/B at the planned n: Fisher or z, p = α, worse
def _ab_unpaired(k1, n1, k2, n2, **kwargs):
    from irisdag.core.strategies import ABState, decide_ab

    ev = UnpairedEvidence(CHAMP, CHALL).add_batch(k1=k1, n1=n1, k2=k2, n2=n2)
    state = ABState(planned_n=min(n1, n2), share_bp=round(10000 * n2 / (n1 + n2)), **kwargs)
    return decide_ab(ev, state, created_at=WHEN)[0]


@pytest.mark.parametrize("k1,n1,k2,n2", [
    (0, 60, 13, 200),      # pooled 0.05: expected right 3 (champion) is the only cell below 5
    (60, 60, 187, 200),    # pooled 0.95: expected wrong 3 (champion)
    (13, 200, 0, 60),      # expected right 3 (challenger)
    (187, 200, 60, 60),    # expected wrong 3 (challenger)
])
def test_ab_uses_fisher_when_any_one_expected_cell_is_below_five(k1, n1, k2, n2):
    rec = _ab_unpaired(k1, n1, k2, n2)
    fisher_p, z_p = stats.fisher(k1, n1, k2, n2), stats.two_proportion_z(k1, n1, k2, n2)[1]
    assert abs(fisher_p - z_p) > 1e-4
    assert rec.p_value == pytest.approx(fisher_p, rel=1e-12)
    assert rec.test == "Fisher exact (two-sided), once at the planned n; statistic = two-proportion z"


def test_ab_uses_the_z_test_when_the_smallest_expected_cell_is_exactly_five():
    assert 100 * (10 / 200) == 5.0
    rec = _ab_unpaired(1, 100, 9, 100)
    z, p = stats.two_proportion_z(1, 100, 9, 100)
    assert abs(p - stats.fisher(1, 100, 9, 100)) > 1e-3
    assert (rec.p_value, rec.statistic) == (pytest.approx(p, rel=1e-12), pytest.approx(z, rel=1e-12))
    assert rec.test == "two-proportion z (pooled, two-sided), once at the planned n"


def test_ab_aborts_a_challenger_shown_worse_at_the_planned_n():
    rec = _ab_unpaired(90, 100, 60, 100)
    assert rec.p_value < 0.05 and rec.decision == "abort"
    assert rec.reason.endswith("≤ α = 0.05 and the challenger is worse. Abort.")


def test_ab_promotes_when_p_equals_alpha_exactly():
    from irisdag.core.strategies import ABState, decide_ab

    ev = PairedEvidence(CHAMP, CHALL).add_batch(b=0, c=5, n=20, champion_right=10, challenger_right=15)
    assert stats.mcnemar_exact(0, 5) == 0.0625                      # 2 · (1/2)^5, exactly
    rec, _ = decide_ab(ev, ABState(planned_n=20, alpha=0.0625), served=(10, 10))
    assert (rec.decision, rec.p_value) == ("promote", 0.0625)


# ------------------------------------------------------------------ canary: δ = 0 and the record's time
def test_a_canary_with_a_zero_margin_ramps_promotes_and_holds_with_its_reasons():
    better = PairedEvidence(CHAMP, CHALL).add_batch(b=0, c=200, n=1000, champion_right=700, challenger_right=900)
    state = CanaryState(steps_bp=(500, 10000), min_rows_per_step=1000, delta=0.0)
    rec, new = decide_canary(better, state, created_at=WHEN)
    assert (rec.decision, rec.created_at) == ("ramp", WHEN)
    assert rec.reason.endswith("above −δ = -0.00 points. Ramp to 100%.")
    rec, _ = decide_canary(better, CanaryState(steps_bp=(500, 10000), step=1, min_rows_per_step=1000, delta=0.0),
                           created_at=WHEN)
    assert (rec.decision, rec.created_at) == ("promote", WHEN)
    assert "above −δ = -0.00 points (not worse by δ). Promote." in rec.reason
    rec, _ = decide_canary(_even(4000), CanaryState(min_rows_per_step=1000, delta=0.0), created_at=WHEN)
    assert (rec.decision, rec.created_at) == ("continue", WHEN)
    assert "the lower bound is not yet above −δ = -0.00 points" in rec.reason
    unpaired = UnpairedEvidence(CHAMP, CHALL).add_batch(k1=90, n1=100, k2=45, n2=50)
    assert decide_canary(unpaired, CanaryState(), created_at=WHEN)[0].created_at == WHEN


def test_a_canary_aborts_on_its_first_row_when_a_narrow_sequence_is_already_below_zero():
    # ρ = 0.1 makes the sequence narrow at n = 1: one champion-only-right row puts its upper end at −0.226.
    one = PairedEvidence(CHAMP, CHALL).add_batch(b=1, c=0, n=1, champion_right=1, challenger_right=0)
    rec, new = decide_canary(one, CanaryState(rho=0.1))
    assert rec.difference_ci[1] == pytest.approx(-0.22595448795901008, rel=1e-9)
    assert (rec.decision, rec.shares_bp, new.done) == ("abort", {CHALL: 0}, "abort")
