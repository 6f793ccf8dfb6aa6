"""The bandit's state and decision checked exactly (the mutation review, docs/mutation-review.md):
fields normalised as stored, bounds refused exactly on their edges, records field by field."""
from __future__ import annotations

import numpy as np
import pytest

from irisdag.core.strategies import BanditState

ARM_PRIOR_MESSAGE = "arm_prior must be two positive Beta parameters, got {!r}"


def test_bandit_state_normalises_every_field_as_stored():
    state = BanditState(arms=[1, "y"], dropped=[1], shares_bp={1: "2500", "y": 2500.0}, arm_prior=[2, 1])
    assert state.arms == ("1", "y") and type(state.arms) is tuple
    assert state.dropped == ("1",) and type(state.dropped) is tuple
    assert state.shares_bp == {"1": 2500, "y": 2500} and [type(v) for v in state.shares_bp.values()] == [int, int]
    assert state.arm_prior == (2.0, 1.0) and type(state.arm_prior) is tuple
    assert [type(x) for x in state.arm_prior] == [float, float]
    assert state.to_dict() == {
        "arms": ["1", "y"], "threshold": 0.95, "alpha": 0.05, "mixture": 1.0, "draws": 20000, "floor_bp": 0,
        "champion_floor_bp": 2000, "holdout_bp": 0, "seed": 0, "shares_bp": {"1": 2500, "y": 2500}, "dropped": ["1"],
        "done": None, "arm_prior": [2.0, 1.0]}
    # Stored as JSON and read back: the same state; a stored state without the optional keys reads too.
    assert BanditState.from_dict(state.to_dict()) == state
    assert BanditState.from_dict({"arms": ["x"]}) == BanditState(arms=("x",))


@pytest.mark.parametrize("arm_prior", [(0.5, 2.0), (1e-9, 1e-9), (3, 7)])
def test_any_two_positive_beta_parameters_are_an_arm_prior(arm_prior):
    assert BanditState(arms=("x",), arm_prior=arm_prior).arm_prior == tuple(float(x) for x in arm_prior)


@pytest.mark.parametrize("arm_prior", [(0.0, 1.0), (1.0, 0.0), (-1.0, 1.0), (1.0,), (1.0, 1.0, 1.0)])
def test_an_arm_prior_other_than_two_positive_parameters_is_refused(arm_prior):
    with pytest.raises(ValueError) as err:
        BanditState(arms=("x",), arm_prior=arm_prior)
    assert str(err.value) == ARM_PRIOR_MESSAGE.format(tuple(float(x) for x in arm_prior))


@pytest.mark.parametrize("arms", [(), ("x", "x"), ("x", "y", "x")])
def test_a_bandit_needs_distinct_arms(arms):
    with pytest.raises(ValueError) as err:
        BanditState(arms=arms)
    assert str(err.value) == "a bandit needs one or more distinct challenger arms"


@pytest.mark.parametrize("threshold", [0.5000001, 0.75, 0.9999999])
def test_a_threshold_strictly_between_one_half_and_one_is_accepted(threshold):
    assert BanditState(arms=("x",), threshold=threshold).threshold == threshold


@pytest.mark.parametrize("threshold", [0.5, 1.0, 0.4, 1.5])
def test_a_threshold_on_or_outside_one_half_and_one_is_refused(threshold):
    with pytest.raises(ValueError) as err:
        BanditState(arms=("x",), threshold=threshold)
    assert str(err.value) == f"threshold must be within (0.5, 1), got {threshold!r}"


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_the_bandit_refuses_an_alpha_outside_zero_and_one(alpha):
    with pytest.raises(ValueError, match=f"alpha must be strictly between 0 and 1, got {alpha!r}"):
        BanditState(arms=("x",), alpha=alpha)


# ------------------------------------------------------------------ decide_bandit: refusals, word for word
CHAMP = "c" * 64
WHEN = "2026-01-01T00:00:00+00:00"
TEST_PAIRED = ("Thompson sampling (Beta(1 + right, 1 + wrong)); confirmatory paired mSPRT, Beta(2, 2) mixture at "
               "α/2 = 0.025; statistic = P(best)")
TEST_SERVED = ("Thompson sampling (Beta(1 + right, 1 + wrong)); confirmatory unpaired test on served traffic: "
               "Bernoulli confidence sequences (beta-binomial mixture Beta(1, 1)), the champion's at α/2 and each "
               "arm's at α/(2·{k}); an arm is better when its lower bound is above the champion's upper bound; "
               "statistic = P(best)")


def _pairs(b, c, n, champion_right, champion=CHAMP):
    from irisdag.core.strategies import PairedEvidence

    return PairedEvidence(champion, "v").add_batch(b=b, c=c, n=n, champion_right=champion_right,
                                                  challenger_right=champion_right - b + c)


def _served(k1, n1, k2, n2):
    from irisdag.core.strategies import UnpairedEvidence

    return UnpairedEvidence(CHAMP, "v").add_batch(k1=k1, n1=n1, k2=k2, n2=n2)


def _refusal(evidence, state):
    from irisdag.core.strategies import decide_bandit

    with pytest.raises((ValueError, TypeError)) as err:
        decide_bandit(evidence, state)
    return type(err.value).__name__, str(err.value)


def test_decide_bandit_refusals_word_for_word():
    ev = _pairs(1, 2, 100, 90)
    assert _refusal({"x": ev}, BanditState(arms=("x",), done="promote")) == (
        "ValueError", "the bandit is finished (promote); start a new BanditState")
    assert _refusal({"x": ev}, BanditState(arms=("x", "y", "z"))) == ("ValueError", "no evidence for arm(s) ['y', 'z']")
    assert _refusal({"x": ev, "y": _served(90, 100, 5, 10)}, BanditState(arms=("x", "y"))) == (
        "TypeError", "arm 'y': evidence must be PairedEvidence for every arm or UnpairedEvidence for every arm, "
                     "got UnpairedEvidence")
    # The same rows against another champion, and other rows against the same champion.
    assert _refusal({"x": ev, "y": _pairs(1, 2, 100, 90, champion="e" * 64)}, BanditState(arms=("x", "y"))) == (
        "ValueError", "arm 'y' was not judged on the same rows against the same champion")
    assert _refusal({"x": ev, "y": _pairs(1, 2, 101, 90)}, BanditState(arms=("x", "y"))) == (
        "ValueError", "arm 'y' was not judged on the same rows against the same champion")


# ------------------------------------------------------------------ decide_bandit: records field by field
def test_paired_abort_focuses_on_the_arm_with_the_smallest_p_word_for_word():
    from irisdag.core.strategies import decide_bandit, shadow_always_valid_p

    x, y = _pairs(30, 5, 400, 360), _pairs(40, 5, 400, 360)   # y is further below: its p is the smaller
    rec, state = decide_bandit({"x": x, "y": y}, BanditState(arms=("x", "y"), mixture=2.0), created_at=WHEN)
    p_y, _, lam_y = shadow_always_valid_p(y, 2.0)
    assert p_y < shadow_always_valid_p(x, 2.0)[0]
    assert rec.reason == ("Every challenger is worse than the champion (with b > c, always-valid p 2.44e-06 ≤ 0.025 "
                          "for x, y). Abort the bandit; all traffic back to the champion.")
    assert (rec.decision, rec.test, rec.statistic, rec.p_value, rec.lambda_, rec.alpha, rec.mixture) == (
        "abort", TEST_PAIRED, None, p_y, lam_y, 0.025, 2.0)
    assert (rec.b, rec.c, rec.shares_bp, rec.created_at) == (40, 5, {"x": 0, "y": 0}, WHEN)
    assert (state.dropped, state.shares_bp, state.done) == (("x", "y"), {"x": 0, "y": 0}, "abort")


def test_outcome_abort_word_for_word():
    from irisdag.core.strategies import decide_bandit

    evs = {"x": _served(950, 1000, 800, 1000), "y": _served(950, 1000, 700, 1000)}
    rec, state = decide_bandit(evs, BanditState(arms=("x", "y"), mixture=2.0), created_at=WHEN)
    assert rec.reason == ("Every challenger is worse than the champion (its confidence sequence lies entirely on that "
                          "side of the champion's for x, y). Abort the bandit; all traffic back to the champion.")
    assert (rec.decision, rec.test, rec.statistic, rec.p_value, rec.lambda_, rec.alpha, rec.mixture) == (
        "abort", TEST_SERVED.format(k=2), None, None, None, 0.025, None)
    assert (rec.challenger_accuracy, rec.shares_bp, rec.created_at) == (0.8, {"x": 0, "y": 0}, WHEN)
    assert (state.dropped, state.done) == (("x", "y"), "abort")


def test_paired_promote_record_and_state_field_by_field():
    from irisdag.core import stats
    from irisdag.core.strategies import decide_bandit, shadow_always_valid_p

    x, y = _pairs(5, 60, 2000, 1800), _pairs(60, 5, 2000, 1800)  # y is dropped in the call that promotes x
    rec, state = decide_bandit({"x": x, "y": y}, BanditState(arms=("x", "y"), mixture=2.0), created_at=WHEN)
    p, _, lam = shadow_always_valid_p(x, 2.0)
    right = [1800, 1855]
    top = stats.prob_best(right, [2000 - r for r in right], 20_000, np.random.default_rng([0, 2000, 2]))[1]
    assert rec.reason == ("x is best with posterior probability 0.999 ≥ 0.95, and the confirmatory test agrees: "
                          "c = 60 vs b = 5, always-valid p 3.07e-11 ≤ 0.025. Promote it.")
    assert (rec.decision, rec.test, rec.statistic, rec.p_value, rec.lambda_, rec.alpha, rec.mixture) == (
        "promote", TEST_PAIRED, top, p, lam, 0.025, 2.0)
    assert (rec.shares_bp, rec.created_at) == ({"x": 10000, "y": 0}, WHEN)
    assert (state.dropped, state.shares_bp, state.done) == (("y",), {"x": 10000, "y": 0}, "promote")


def test_outcome_promote_record_field_by_field():
    from irisdag.core.strategies import decide_bandit

    rec, state = decide_bandit({"x": _served(900, 1000, 990, 1000)}, BanditState(arms=("x",)), created_at=WHEN)
    assert rec.reason == ("x is best with posterior probability 1.000 ≥ 0.95, and the confirmatory test agrees: "
                          "served 990/1,000 right vs the champion's 900/1,000, its confidence sequence lies entirely "
                          "on that side of the champion's. Promote it.")
    assert (rec.decision, rec.test, rec.statistic, rec.p_value, rec.lambda_, rec.alpha, rec.mixture) == (
        "promote", TEST_SERVED.format(k=1), 1.0, None, None, 0.05, None)
    assert (rec.shares_bp, rec.created_at, state.shares_bp, state.done) == ({"x": 10000}, WHEN, {"x": 10000}, "promote")


def test_a_ramp_names_the_arm_dropped_now_and_the_next_call_neither_drops_nor_ramps_again():
    from irisdag.core import stats
    from irisdag.core.strategies import decide_bandit

    x, y = _pairs(10, 14, 300, 270), _pairs(60, 5, 300, 270)
    rec, state = decide_bandit({"x": x, "y": y}, BanditState(arms=("x", "y"), mixture=2.0), created_at=WHEN)
    right = [270, 274]
    pbest = stats.prob_best(right, [300 - r for r in right], 20_000, np.random.default_rng([0, 300, 2]))
    bp = stats.shares_to_bp(np.array([0.2, 0.0]) + 0.8 * pbest)
    assert rec.shares_bp == state.shares_bp == {"x": bp[1], "y": 0} == {"x": 5622, "y": 0}
    assert rec.reason == ("The likeliest best challenger x has P(best) 0.703 < 0.95. Thompson shares: x 56.22%, y 0%; "
                          "champion the rest. Dropped as worse: y. Ramp to these shares.")
    assert (rec.decision, rec.test, rec.statistic, rec.mixture, state.dropped) == (
        "ramp", TEST_PAIRED, pbest[1], 2.0, ("y",))
    again, same = decide_bandit({"x": x, "y": y}, state, created_at=WHEN)
    assert again.reason == ("The likeliest best challenger x has P(best) 0.703 < 0.95. Thompson shares: x 56.22%, "
                            "y 0%; champion the rest.")
    assert (again.decision, same.dropped, same.shares_bp) == ("continue", ("y",), {"x": 5622, "y": 0})


def test_not_convinced_reasons_word_for_word():
    from irisdag.core.strategies import decide_bandit

    paired, _ = decide_bandit({"x": _pairs(0, 12, 300, 270)}, BanditState(arms=("x",), alpha=0.001))
    assert paired.reason == ("P(best) of x is 0.962 ≥ 0.95, but the confirmatory test is not convinced (always-valid "
                             "p 0.0032 > 0.001); P(best) alone never promotes. Thompson shares: x 76.98%; champion "
                             "the rest. Ramp to these shares.")
    served, _ = decide_bandit({"x": _served(90, 100, 99, 100)}, BanditState(arms=("x",)), created_at=WHEN)
    assert served.reason == ("P(best) of x is 0.998 ≥ 0.95, but the confirmatory test is not convinced (its confidence "
                             "sequence still overlaps the champion's); P(best) alone never promotes. Thompson shares: "
                             "x 79.85%; champion the rest. Ramp to these shares.")
    assert (served.decision, served.mixture, served.lambda_, served.p_value, served.test, served.created_at) == (
        "ramp", None, None, None, TEST_SERVED.format(k=1), WHEN)


def test_p_best_exactly_at_the_threshold_triggers_the_confirmatory_test():
    from irisdag.core.strategies import decide_bandit

    # Four draws: P(best) is a multiple of 1/4; these seeds give exactly 0.75 = the threshold.
    rec, _ = decide_bandit({"x": _pairs(0, 12, 300, 270)}, BanditState(arms=("x",), draws=4, threshold=0.75, seed=14))
    assert (rec.statistic, rec.decision) == (0.75, "promote")
    rec, _ = decide_bandit({"x": _pairs(5, 12, 300, 270)}, BanditState(arms=("x",), draws=4, threshold=0.75, seed=0))
    assert rec.statistic == 0.75 and rec.reason.startswith(
        "P(best) of x is 0.750 ≥ 0.75, but the confirmatory test is not convinced (always-valid p 0.8498 > 0.05)")


def test_the_confirmatory_test_uses_the_state_s_mixture():
    from irisdag.core.strategies import decide_bandit, msprt_crossing

    ev = _pairs(8, 0, 2000, 1800)
    # b = 8, c = 0 crosses 1/α with a Beta(1, 1) mixture, not with Beta(3, 3).
    assert (msprt_crossing(ev, 0.05, 1.0)[1], msprt_crossing(ev, 0.05, 3.0)[1]) == (-1, 0)
    assert decide_bandit({"x": ev}, BanditState(arms=("x",), mixture=3.0))[0].decision == "ramp"
    assert decide_bandit({"x": ev}, BanditState(arms=("x",), mixture=1.0))[0].decision == "abort"


def test_a_champion_floor_of_9999_leaves_a_far_better_arm_one_basis_point():
    from irisdag.core.strategies import decide_bandit

    rec, _ = decide_bandit({"x": _served(3, 30, 27, 30)}, BanditState(arms=("x",), alpha=1e-12, champion_floor_bp=9999))
    assert rec.shares_bp == {"x": 1}


def test_two_arms_dropped_in_one_call_are_both_named():
    from irisdag.core.strategies import decide_bandit

    x, worse = _pairs(10, 14, 300, 270), _pairs(60, 5, 300, 270)
    rec, state = decide_bandit({"x": x, "y": worse, "z": worse}, BanditState(arms=("x", "y", "z"), mixture=2.0))
    assert rec.reason.endswith("; champion the rest. Dropped as worse: y, z. Ramp to these shares.")
    assert (rec.decision, state.dropped, rec.shares_bp["y"], rec.shares_bp["z"]) == ("ramp", ("y", "z"), 0, 0)
