"""The shadow decision, its crossing and the paired/unpaired records field by field, with every
refusal's message and every edge exactly on its boundary (the mutation review,
docs/mutation-review.md): a changed bound, default, direction or record field fails a test."""
from __future__ import annotations

import math

import pytest

from irisdag.core import stats
from irisdag.core.strategies import (
    ABState,
    CanaryState,
    PairedEvidence,
    UnpairedEvidence,
    _unpaired_record,
    decide_ab,
    decide_canary,
    decide_shadow,
    msprt_crossing,
    shadow_always_valid_p,
)

CHAMP, CHALL = "c" * 64, "d" * 64
WHEN = "2026-01-01T00:00:00+00:00"
SHADOW_TEST = "paired mSPRT, Beta(1, 1) mixture over discordant pairs; statistic = log Λ"
KEEP_LOOKING = ", so keep collecting (looking again after the next batch is safe)."


def _pairs(*batches, n_excluded=0, n_repeated=0):
    """Paired evidence from (b, c, n) per batch, named w0, w1, …; 5 rows both models got wrong."""
    ev = PairedEvidence(CHAMP, CHALL)
    for i, (b, c, n) in enumerate(batches):
        ev = ev.add_batch(b=b, c=c, n=n, champion_right=n - c - 5, challenger_right=n - b - 5,
                          partition=f"w{i}", n_excluded=n_excluded, n_repeated=n_repeated)
    return ev


def _split(b, c):
    return (f"Of {b + c:,} discordant rows the challenger alone was right on {c:,} (c) and the champion "
            f"alone on {b:,} (b)")


# ------------------------------------------------------------------ the shadow's records
def test_shadow_promote_record_field_by_field_at_a_crossing_in_the_last_batch():
    # (b, c) = (1, 12): Λ = 2^13 · B(13, 2) = 8192/182 = 45.01 ≥ 1/0.05.
    ev = _pairs((1, 12, 100), n_excluded=3, n_repeated=4)
    rec = decide_shadow(ev, alpha=0.05, created_at=WHEN)
    log_lam, lam = stats.paired_msprt(1, 12, 1.0)
    assert lam == pytest.approx(8192 / 182, rel=1e-12)
    assert (rec.strategy, rec.evidence, rec.n, rec.b, rec.c, rec.champion, rec.challenger) == (
        "shadow", "paired", 100, 1, 12, CHAMP, CHALL)
    assert (rec.champion_accuracy, rec.challenger_accuracy, rec.difference) == (0.83, 0.94, 0.11)
    assert rec.champion_ci == pytest.approx(stats.wilson(83, 100, 0.95), rel=1e-12)
    assert rec.challenger_ci == pytest.approx(stats.wilson(94, 100, 0.95), rel=1e-12)
    assert rec.difference_ci == pytest.approx(stats.paired_diff_interval(1, 12, 100, 0.95), rel=1e-12)
    assert rec.interval_method == "95% Tango score interval (paired, fixed-n)"
    assert (rec.test, rec.statistic, rec.p_value, rec.alpha, rec.mixture, rec.lambda_) == (
        SHADOW_TEST, log_lam, 1 / lam, 0.05, 1.0, lam)
    assert rec.mcnemar_p == stats.mcnemar_exact(1, 12)
    assert (rec.decision, rec.partitions, rec.n_excluded, rec.n_repeated, rec.created_at, rec.shares_bp) == (
        "promote", ("w0",), 3, 4, WHEN, {})
    assert rec.reason == (f"{_split(1, 12)}; the always-valid p-value 0.0222 is at most α = 0.05: the challenger "
                          "is better (+11.00 accuracy points). Promote.")
    assert rec.decision_id == rec.with_id().decision_id


def test_shadow_abort_record_judges_up_to_its_crossing_and_names_the_batch():
    ev = _pairs((12, 1, 100), (0, 30, 100))
    rec = decide_shadow(ev, created_at=WHEN)
    assert (rec.decision, rec.n, rec.b, rec.c, rec.partitions, rec.created_at) == (
        "abort", 100, 12, 1, ("w0",), WHEN)
    assert rec.reason == (f"{_split(12, 1)}; the always-valid p-value 0.0222 is at most α = 0.05: the challenger "
                          "is worse (-11.00 accuracy points). Abort. The test crossed at batch 'w0' (1 of 2) and "
                          "stopped there; this judges the evidence up to it.")
    # Crossing at the second of three batches: that batch is named.
    rec = decide_shadow(_pairs((0, 4, 50), (1, 8, 50), (9, 0, 50)), created_at=WHEN)
    assert (rec.decision, rec.n, rec.b, rec.c, rec.partitions) == ("promote", 100, 1, 12, ("w0", "w1"))
    assert rec.reason.endswith("Promote. The test crossed at batch 'w1' (2 of 3) and stopped there; this judges "
                               "the evidence up to it.")


def test_shadow_without_rows_or_with_one_discordant_row_continues_with_its_record():
    empty = decide_shadow(PairedEvidence(CHAMP, CHALL), created_at=WHEN)
    assert (empty.decision, empty.reason, empty.test, empty.n, empty.b, empty.c) == (
        "continue", "No rows with feedback yet: nothing to judge.", SHADOW_TEST, 0, 0, 0)
    assert (empty.champion_accuracy, empty.champion_ci, empty.challenger_accuracy, empty.challenger_ci) == (
        None, None, None, None)
    assert (empty.difference, empty.difference_ci, empty.interval_method) == (None, None, "")
    assert (empty.p_value, empty.lambda_, empty.statistic, empty.mcnemar_p, empty.created_at) == (
        1.0, 1.0, 0.0, 1.0, WHEN)
    # One row, challenger right: Λ = 2 · B(2, 1) = 1 exactly, p = 1. It is judged, not "no rows".
    one = decide_shadow(_pairs((0, 1, 6)), created_at=WHEN)
    assert (one.decision, one.p_value, one.lambda_, one.n) == ("continue", 1.0, 1.0, 6)
    assert one.reason == f"{_split(0, 1)}; the always-valid p-value 1.0000 is above α = 0.05{KEEP_LOOKING}"
    # The same with exactly one row (n = 1 is evidence, not "nothing yet").
    single = PairedEvidence(CHAMP, CHALL).add_batch(b=0, c=1, n=1, champion_right=0, challenger_right=1)
    assert decide_shadow(single).reason == one.reason


def test_shadow_refuses_unpaired_evidence_saying_why():
    with pytest.raises(TypeError) as err:
        decide_shadow(UnpairedEvidence(CHAMP, CHALL))
    assert str(err.value) == ("the shadow strategy judges paired evidence (the challenger serves nobody, so only "
                              "label feedback can judge it)")


# ------------------------------------------------------------------ the crossing exactly at α
def test_a_crossing_is_p_at_most_alpha_exactly_the_p_the_record_shows():
    ev = _pairs((1, 12, 100))
    lam = stats.paired_msprt(1, 12)[1]
    at = 1.0 / lam                                          # α equal to the look's p, to the last bit
    assert msprt_crossing(ev, at) == (1, 1)
    rec = decide_shadow(ev, alpha=at)
    assert (rec.decision, rec.p_value) == ("promote", at)
    below = math.nextafter(at, 0.0)
    assert msprt_crossing(ev, below) == (None, 0)
    rec = decide_shadow(ev, alpha=below)
    assert rec.decision == "continue" and rec.p_value > rec.alpha


@pytest.mark.parametrize("b,c,alpha,decision", [
    # Λ ≥ 1/α was the old crossing; 1/Λ ≤ α is the p the record shows. They differ by one rounding here:
    (0, 17, 0.00013732910156250014, "promote"),   # p = α exactly, but 1/α > Λ: it used to continue
    (17, 0, 0.00013732910156250014, "abort"),
    (0, 6, 0.10937500000000004, "continue"),      # Λ ≥ 1/α, but p = 0.10937500000000006 > α: it used to cross
])                                                 # (a verdict for the bandit) while the record showed p > α
def test_the_crossing_and_the_recorded_p_never_disagree_by_a_rounding(b, c, alpha, decision):
    ev = _pairs((b, c, 100))
    assert msprt_crossing(ev, alpha) == ((None, 0) if decision == "continue" else (1, 1 if c > b else -1))
    rec = decide_shadow(ev, alpha=alpha)
    assert rec.decision == decision
    assert (rec.p_value <= rec.alpha) == (decision != "continue")
    assert "earlier look" not in rec.reason


def test_msprt_crossing_directions_default_mixture_and_refusals():
    assert msprt_crossing(_pairs((0, 8, 100)), 0.05) == (1, 1)          # Beta(1, 1): Λ = 28.4
    assert msprt_crossing(_pairs((8, 0, 100)), 0.05) == (1, -1)
    assert msprt_crossing(_pairs((0, 8, 100)), 0.05, 2.0) == (None, 0)  # Beta(2, 2): Λ = 13.96
    assert msprt_crossing(_pairs((0, 3, 50), (0, 5, 50)), 0.05) == (2, 1)
    assert msprt_crossing(PairedEvidence(CHAMP, CHALL), 0.05) == (None, 0)
    for alpha in (0.0, 1.0, float("nan")):
        with pytest.raises(ValueError, match="alpha must be strictly between 0 and 1"):
            msprt_crossing(_pairs((3, 3, 20)), alpha)


def test_shadow_always_valid_p_uses_its_mixture_at_every_look_and_the_last():
    ev = _pairs((0, 4, 50), (2, 1, 50))
    p, log_lam, lam = shadow_always_valid_p(ev)                         # the default Beta(1, 1)
    assert lam == stats.paired_msprt(2, 5, 1.0)[1] and log_lam == stats.paired_msprt(2, 5, 1.0)[0]
    assert p == 1 / stats.paired_msprt(0, 4, 1.0)[1]                     # the first look was the strongest
    p2, log_lam2, lam2 = shadow_always_valid_p(ev, 2.0)
    assert (log_lam2, lam2) == stats.paired_msprt(2, 5, 2.0) and lam2 != lam
    assert p2 == 1 / stats.paired_msprt(0, 4, 2.0)[1] and p2 != p
    assert shadow_always_valid_p(ev, 2.0, [0.3, (0.01, -1)])[0] == 0.01


# ------------------------------------------------------------------ earlier looks (the history)
def test_an_earlier_look_at_exactly_alpha_decides_in_its_recorded_direction():
    ev = _pairs((1, 2, 50))                        # Λ = 0.67: today's evidence alone decides nothing
    promote = decide_shadow(ev, alpha=0.05, looks_p_history=[0.5, (0.05, 1), (0.01, -1)], created_at=WHEN)
    assert (promote.decision, promote.p_value, promote.created_at) == ("promote", 0.01, WHEN)
    assert promote.reason == (f"{_split(1, 2)}; the always-valid p-value 0.0100 is at most α = 0.05: the "
                              "challenger is better (+2.00 accuracy points). Promote.")
    assert decide_shadow(ev, alpha=0.05, looks_p_history=[(0.05, 1)]).decision == "promote"
    abort = decide_shadow(ev, alpha=0.05, looks_p_history=[(0.05, -1)])
    assert (abort.decision, abort.p_value) == ("abort", 0.05)


def test_a_bare_earlier_p_at_alpha_has_no_direction_and_decides_nothing():
    rec = decide_shadow(_pairs((1, 2, 50)), alpha=0.05, looks_p_history=[0.05])
    assert (rec.decision, rec.p_value) == ("continue", 0.05)
    assert rec.reason == (f"{_split(1, 2)}; an earlier look reached p 0.0500, but which model led at that look is "
                          f"not recorded, and today's counts cannot stand in for it{KEEP_LOOKING}")


def test_earlier_p_values_are_accepted_on_the_closed_unit_interval_only():
    ev = _pairs((1, 2, 50))
    assert decide_shadow(ev, looks_p_history=[(0.0, 1)]).decision == "promote"
    rec = decide_shadow(ev, looks_p_history=[1.0, (1, 0)])
    assert (rec.decision, rec.p_value) == ("continue", 1.0)
    with pytest.raises(ValueError) as err:
        decide_shadow(ev, looks_p_history=[1.5])
    assert str(err.value) == "an earlier always-valid p-value is not in [0, 1]: 1.5"
    with pytest.raises(ValueError) as err:
        decide_shadow(ev, looks_p_history=[(0.5, 2)])
    assert str(err.value) == "an earlier look's direction must be -1, 0 or +1, got 2"


# ------------------------------------------------------------------ the A/B plans' default split
def test_ab_plans_split_evenly_by_default():
    assert ABState.plan_paired(0.80, 0.82, 0.04).share_bp == 5000
    assert ABState.plan_unpaired(0.80, 0.85).share_bp == 5000


# ------------------------------------------------------------------ CanaryState: containers and messages
def test_canary_state_stores_its_steps_and_prior_as_tuples():
    s = CanaryState(steps_bp=[500, 10000], arm_prior=[1, 2])
    assert type(s.steps_bp) is tuple and s.steps_bp == (500, 10000)
    assert type(s.arm_prior) is tuple and s.arm_prior == (1.0, 2.0)


@pytest.mark.parametrize("kwargs,message", [
    (dict(arm_prior=(0.0, 1.0)), "arm_prior must be two positive Beta parameters, got (0.0, 1.0)"),
    (dict(steps_bp=(200, 100)), "steps_bp must increase strictly within 1..10000, got (200, 100)"),
    (dict(steps_bp=(100, 200), step=2), "step 2 outside 0..1"),
    (dict(min_rows_per_step=-1), "min_rows_per_step must be a non-negative integer, got -1"),
    (dict(step_started_n=2.5), "step_started_n must be a non-negative integer, got 2.5"),
    (dict(delta=1.0), "delta must be within [0, 1), got 1.0"),
    (dict(rho=0.0), "rho must be > 0"),
    (dict(done="maybe"), "done must be None, 'promote' or 'abort', got 'maybe'"),
])
def test_canary_state_refusals_name_the_value(kwargs, message):
    with pytest.raises(ValueError) as err:
        CanaryState(**kwargs)
    assert str(err.value) == message


# ------------------------------------------------------------------ the unpaired record with an empty arm
def test_unpaired_record_with_an_empty_champion_arm_has_no_champion_accuracy_or_difference():
    ev = UnpairedEvidence(CHAMP, CHALL).add_batch(k1=0, n1=0, k2=40, n2=50, partition="w1")
    rec, _ = decide_ab(ev, ABState(planned_n=600), created_at=WHEN)
    assert (rec.champion_accuracy, rec.champion_ci, rec.challenger_accuracy) == (None, None, 0.8)
    assert rec.challenger_ci == pytest.approx(stats.wilson(40, 50, 0.95), rel=1e-12)
    assert (rec.difference, rec.difference_ci, rec.interval_method) == (None, None, "")
    # The canary hands its interval in; with one arm empty the record still shows no difference.
    rec, _ = decide_canary(ev, CanaryState(min_rows_per_step=10), created_at=WHEN)
    assert (rec.decision, rec.shares_bp, rec.created_at) == ("continue", {CHALL: 500}, WHEN)
    assert (rec.difference, rec.difference_ci, rec.interval_method) == (None, None, "")
    rec, _ = decide_canary(UnpairedEvidence(CHAMP, CHALL).add_batch(k1=45, n1=50, k2=0, n2=0),
                           CanaryState(min_rows_per_step=10))
    assert (rec.challenger_accuracy, rec.challenger_ci, rec.difference_ci, rec.interval_method) == (
        None, None, None, "")


def test_unpaired_record_carries_the_interval_shares_mixture_and_lambda_it_is_given():
    ev = UnpairedEvidence(CHAMP, CHALL).add_batch(k1=90, n1=100, k2=45, n2=50, partition="w1")
    rec = _unpaired_record(ev, strategy="canary", decision="ramp", reason="r", test="t", mixture=2.0, lam=3.5,
                           difference_ci=(-0.2, 0.1), interval_method="m", shares_bp={CHALL: 2500},
                           created_at=WHEN)
    assert (rec.mixture, rec.lambda_, rec.difference_ci, rec.interval_method, rec.shares_bp) == (
        2.0, 3.5, (-0.2, 0.1), "m", {CHALL: 2500})
    assert (rec.n, rec.difference, rec.created_at) == (150, pytest.approx(0.0), WHEN)
