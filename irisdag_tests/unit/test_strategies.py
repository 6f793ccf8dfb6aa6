"""Deployment strategies: decisions on constructed and simulated evidence."""
from __future__ import annotations

import numpy as np
import pytest

from irisdag.core import stats
from irisdag.core.decision import DecisionRecord
from irisdag.core.strategies import (
    ABState,
    BanditState,
    CanaryState,
    PairedEvidence,
    UnpairedEvidence,
    decide_ab,
    decide_bandit,
    decide_canary,
    decide_shadow,
    decide_single,
)

CHAMP, CHALL = "c" * 64, "d" * 64
T0 = "2024-01-01T00:00:00+00:00"


def _batch(rng, n, acc_champion, acc_challenger, correlated=0.9):
    """Labels and two models' predictions whose errors overlap (like real retrains)."""
    y = rng.integers(0, 3, n)
    shared = rng.random(n)
    u1 = np.where(rng.random(n) < correlated, shared, rng.random(n))
    u2 = np.where(rng.random(n) < correlated, shared, rng.random(n))
    p1 = np.where(u1 < acc_champion, y, (y + 1) % 3)
    p2 = np.where(u2 < acc_challenger, y, (y + 2) % 3)
    return p1, p2, y


def _evidence(batches: list[tuple[int, int, int]], per_batch_n=500) -> PairedEvidence:
    """Paired evidence from (b, c) per batch with 90% champion accuracy."""
    ev = PairedEvidence(CHAMP, CHALL)
    for i, (b, c) in enumerate(batches):
        champion_right = int(0.9 * per_batch_n)
        ev = ev.add_batch(b=b, c=c, n=per_batch_n, champion_right=champion_right,
                          challenger_right=champion_right - b + c, partition=f"2024-01-{i + 1:02d}")
    return ev


# ------------------------------------------------------------------ evidence
def test_from_rows_counts_match_a_hand_count():
    truth = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    champ = np.array([0, 1, 2, 1, 1, 0, 0, 2])   # right on rows 0, 1, 2, 4, 6
    chall = np.array([0, 2, 2, 0, 1, 2, 1, 2])   # right on rows 0, 2, 3, 4, 5
    ev = PairedEvidence.from_rows(champ, chall, truth, champion=CHAMP, challenger=CHALL, partition="p0")
    assert (ev.n, ev.b, ev.c, ev.champion_right, ev.challenger_right) == (8, 2, 2, 5, 5)
    excl = np.array([False, False, False, True, False, False, True, False])
    ev2 = PairedEvidence.from_rows(champ, chall, truth, exclude=excl)
    assert (ev2.n, ev2.b, ev2.c, ev2.n_excluded) == (6, 1, 1, 2)
    assert ev.partitions == ("p0",)


def test_evidence_accumulates_and_refuses_inconsistent_or_duplicate_batches():
    ev = _evidence([(3, 5), (4, 9)])
    assert (ev.n, ev.b, ev.c) == (1000, 7, 14)
    assert ev.looks() == [(3, 5, 500), (7, 14, 1000)]
    with pytest.raises(ValueError, match="counted twice"):
        ev.add_batch(1, 1, 10, 5, 5, partition="2024-01-01")
    with pytest.raises(ValueError, match="inconsistent"):
        ev.add_batch(b=3, c=5, n=100, champion_right=90, challenger_right=90)
    with pytest.raises(ValueError):
        PairedEvidence.from_rows(np.zeros(3), np.zeros(4), np.zeros(3))
    assert PairedEvidence.from_dict(ev.to_dict()) == ev


# ------------------------------------------------------------------ single
def test_single():
    assert decide_single(True, champion=CHAMP, challenger=CHALL).decision == "promote"
    assert decide_single(False).decision == "abort"
    assert decide_single(None).decision == "continue"
    assert decide_single(True, created_at=T0).decision_id == decide_single(True, created_at="x").decision_id


# ------------------------------------------------------------------ shadow
def test_shadow_promotes_a_clearly_better_challenger_with_every_field_filled():
    rng = np.random.default_rng(1)
    ev = PairedEvidence(CHAMP, CHALL)
    for i in range(4):
        ev = ev.add_rows(*_batch(rng, 400, 0.90, 0.96), partition=f"b{i}")
    rec = decide_shadow(ev, alpha=0.05, mixture=1.0, created_at=T0)
    assert rec.decision == "promote" and rec.c > rec.b
    assert rec.strategy == "shadow" and rec.evidence == "paired"
    # Judged up to the batch where the test first crossed (here the first: 400 rows).
    k = len(rec.partitions)
    judged = ev.prefix(k)
    assert rec.partitions == ev.partitions[:k] and (rec.n, rec.b, rec.c) == (judged.n, judged.b, judged.c)
    assert stats.paired_msprt(rec.b, rec.c)[1] >= 20
    if k > 1:
        prev = ev.prefix(k - 1)
        assert stats.paired_msprt(prev.b, prev.c)[1] < 20
    ev = judged
    assert rec.p_value <= 0.05
    assert rec.lambda_ == pytest.approx(stats.paired_msprt(rec.b, rec.c, 1.0)[1])
    assert rec.mcnemar_p == pytest.approx(stats.mcnemar_exact(rec.b, rec.c))
    assert rec.champion_ci == pytest.approx(stats.wilson(ev.champion_right, ev.n))
    assert rec.challenger_ci == pytest.approx(stats.wilson(ev.challenger_right, ev.n))
    assert rec.difference == pytest.approx((rec.c - rec.b) / rec.n)
    assert rec.difference_ci[0] < rec.difference < rec.difference_ci[1]
    assert rec.difference_ci[0] > 0
    assert (rec.alpha, rec.mixture, rec.champion, rec.challenger) == (0.05, 1.0, CHAMP, CHALL)
    assert "Promote" in rec.reason and str(rec.c) in rec.reason
    for value in rec.to_dict().values():
        assert value is not None


def test_shadow_aborts_a_clearly_worse_challenger():
    rec = decide_shadow(_evidence([(30, 8), (28, 9)]))
    assert rec.decision == "abort" and rec.p_value <= 0.05


def test_shadow_continues_on_a_tie_and_without_evidence():
    tie = decide_shadow(_evidence([(12, 13), (11, 10)]))
    assert tie.decision == "continue" and tie.p_value > 0.05
    empty = decide_shadow(PairedEvidence(CHAMP, CHALL))
    assert empty.decision == "continue" and empty.n == 0 and "No rows" in empty.reason
    concordant = decide_shadow(_evidence([(0, 0)]))
    assert concordant.decision == "continue" and "No discordant" in concordant.reason


def test_shadow_threshold_is_lambda_one_over_alpha():
    # Λ(20, 45) = 19.7 (p = 0.0507): not yet; Λ(10, 29) = 21.6 (p = 0.046): promote.
    below = decide_shadow(_evidence([(20, 45)]))
    assert below.p_value == pytest.approx(1 / 19.7248, rel=1e-4) and below.decision == "continue"
    above = decide_shadow(_evidence([(10, 29)]))
    assert above.p_value == pytest.approx(1 / 21.6186, rel=1e-4) and above.decision == "promote"
    assert decide_shadow(_evidence([(29, 10)])).decision == "abort"
    assert decide_shadow(_evidence([(20, 45)]), alpha=0.06).decision == "promote"


def test_shadow_mcnemar_significant_is_not_enough():
    # b = 60, c = 85 at once: exact McNemar p = 0.046 (would "promote" at a fixed n),
    # but the always-valid test that may be peeked at every batch is not convinced.
    ev = PairedEvidence(CHAMP, CHALL).add_batch(60, 85, 1000, 900, 925)
    rec = decide_shadow(ev)
    assert rec.mcnemar_p < 0.05 and rec.decision == "continue"


def test_shadow_stops_at_the_first_crossing():
    # Λ reaches 1/α after batch 1 (c = 12, b = 0); later batches even it out. The test
    # stopped at batch 1: its verdict is the challenger's, judged on batch 1 only.
    ev = _evidence([(0, 12), (15, 6), (14, 8)])
    first_lam = stats.paired_msprt(0, 12)[1]
    assert first_lam >= 20 and stats.paired_msprt(29, 26)[1] < 1
    rec = decide_shadow(ev)
    assert rec.decision == "promote" and rec.partitions == ("2024-01-01",)
    assert (rec.b, rec.c, rec.n) == (0, 12, 500)
    assert rec.p_value == pytest.approx(1 / first_lam) and rec.lambda_ == pytest.approx(first_lam)
    assert "stopped there" in rec.reason
    # The same crossing gives the same record id whenever it is looked at.
    assert rec.decision_id == decide_shadow(ev.prefix(1)).decision_id
    # Λ = 15.8 after batch 1 is not a crossing; batch 2 crosses: judged on both.
    late = decide_shadow(_evidence([(5, 19), (0, 10), (9, 0)]))
    assert late.decision == "promote" and late.partitions == ("2024-01-01", "2024-01-02")


def test_shadow_p_value_is_the_running_minimum_over_looks():
    ev = _evidence([(8, 12), (9, 14), (10, 9)])
    lams = [stats.paired_msprt(b, c)[1] for b, c, _ in ev.looks()]
    assert max(lams) < 20
    rec = decide_shadow(ev)
    assert rec.p_value == pytest.approx(min(1.0, 1 / max(lams))) and rec.decision == "continue"
    # Looks recorded elsewhere count too; a crossing known only from them decides in the direction
    # recorded at that crossing, never in today's.
    tie = _evidence([(12, 13)])
    assert decide_shadow(tie, looks_p_history=[0.5, 0.3]).p_value == pytest.approx(0.3)
    assert decide_shadow(tie, looks_p_history=[(0.01, +1)]).decision == "promote"
    assert decide_shadow(tie, looks_p_history=[(0.01, -1)]).decision == "abort"  # today c > b: not its direction
    assert decide_shadow(_evidence([(13, 12)]), looks_p_history=[(0.3, -1), (0.01, +1)]).decision == "promote"
    undirected = decide_shadow(tie, looks_p_history=[0.01])
    assert undirected.decision == "continue" and "not recorded" in undirected.reason
    with pytest.raises(ValueError, match="not in"):
        decide_shadow(tie, looks_p_history=[float("nan")])


def test_shadow_same_evidence_same_id():
    ev = _evidence([(3, 20), (2, 25)])
    assert decide_shadow(ev, created_at=T0).decision_id == decide_shadow(ev, created_at="later").decision_id
    open_ev = _evidence([(10, 12), (11, 13)])
    assert decide_shadow(open_ev).decision_id != decide_shadow(open_ev.prefix(1)).decision_id
    assert decide_shadow(open_ev).decision_id == decide_shadow(_evidence([(10, 12), (11, 13)])).decision_id


# ------------------------------------------------------------------ A/B
def test_ab_plan_uses_exact_power_not_connor():
    plan = ABState.plan_paired(0.90, 0.92, 0.04)
    assert plan.planned_n == 843 > stats.sample_size_paired(0.04, 0.02)  # Connor: 783, exact power 76.5%
    assert ABState.plan_unpaired(0.90, 0.92).planned_n == stats.planned_n_unpaired(0.90, 0.92)


def test_ab_waits_for_the_planned_n_then_decides_once():
    state = ABState(planned_n=1000, share_bp=5000)
    ev = _evidence([(5, 20)])
    rec, state1 = decide_ab(ev, state, served=(250, 250))
    assert rec.decision == "continue" and state1.decided is None
    assert rec.p_value is None                  # the fixed-n test was not computed early
    ev = _evidence([(5, 20), (6, 22), (9, 8)])
    rec, state2 = decide_ab(ev, state1, served=(760, 740))
    assert rec.decision == "promote"
    assert rec.n == 1000 and rec.partitions == ev.partitions[:2]   # judged where the plan was reached
    assert rec.p_value == pytest.approx(stats.mcnemar_exact(11, 42))
    again, state3 = decide_ab(ev.add_batch(50, 0, 500, 450, 400), state2, served=(1000, 1000))
    assert again == rec and state3 == state2    # decided once: later evidence changes nothing


def test_ab_at_planned_n_without_significance_aborts():
    rec, _ = decide_ab(_evidence([(20, 24), (22, 25)]), ABState(planned_n=1000), served=(500, 500))
    assert rec.decision == "abort" and rec.p_value > 0.05
    worse, _ = decide_ab(_evidence([(30, 8), (28, 9)]), ABState(planned_n=1000), served=(500, 500))
    assert worse.decision == "abort" and worse.p_value < 0.05


def test_ab_checks_the_sample_ratio_first():
    ev = _evidence([(5, 40), (6, 40)])
    rec, state = decide_ab(ev, ABState(planned_n=1000, share_bp=1000), served=(500, 500))
    assert rec.decision == "abort" and "mismatch" in rec.reason.lower()
    assert state.decided is not None
    ok, _ = decide_ab(ev, ABState(planned_n=1000, share_bp=1000), served=(905, 95))
    assert ok.decision == "promote"
    with pytest.raises(ValueError, match="served"):
        decide_ab(ev, ABState(planned_n=1000))


def test_ab_unpaired_uses_fisher_for_small_counts_and_z_for_large():
    small = UnpairedEvidence(CHAMP, CHALL).add_batch(k1=2, n1=8, k2=8, n2=8)  # expected wrong: 3 per arm
    rec, _ = decide_ab(small, ABState(planned_n=8))
    assert "Fisher" in rec.test and rec.p_value == pytest.approx(stats.fisher(2, 8, 8, 8))
    assert rec.decision == "promote" and rec.evidence == "unpaired" and rec.b is None
    large = UnpairedEvidence(CHAMP, CHALL).add_batch(2700, 3000, 2790, 3000, "p1").add_batch(300, 300, 300, 300, "p2")
    rec, _ = decide_ab(large, ABState(planned_n=3000))
    assert "two-proportion" in rec.test
    assert rec.p_value == pytest.approx(stats.two_proportion_z(2700, 3000, 2790, 3000)[1])
    assert rec.decision == "promote" and rec.partitions == ("p1",)


def test_ab_state_round_trips():
    _, state = decide_ab(_evidence([(5, 40), (6, 40)]), ABState(planned_n=1000), served=(500, 500))
    assert ABState.from_dict(state.to_dict()) == state


# ------------------------------------------------------------------ canary
def test_canary_ramps_through_every_step_then_promotes():
    rng = np.random.default_rng(4)
    ev = PairedEvidence(CHAMP, CHALL)
    state = CanaryState(min_rows_per_step=600)
    shares, decisions, moved_at = [state.share_bp], [], [0]
    for i in range(40):
        ev = ev.add_rows(*_batch(rng, 300, 0.92, 0.95), partition=f"b{i:02d}")
        rec, state = decide_canary(ev, state)
        decisions.append(rec.decision)
        if rec.decision in ("ramp", "promote"):
            moved_at.append(ev.n)
        if rec.decision == "ramp":
            shares.append(rec.shares_bp[CHALL])
            assert shares[-1] == state.share_bp
            assert rec.difference_ci[0] > -0.01
        if rec.decision == "promote":
            break
    assert shares == [500, 2500, 5000, 10000]
    assert decisions[-1] == "promote" and state.done == "promote"
    assert decisions.count("ramp") == 3
    # Each step waited for its minimum rows: 600 rows (two batches) between moves.
    assert all(later - earlier >= 600 for earlier, later in zip(moved_at, moved_at[1:]))
    assert decisions[0] == "continue"
    with pytest.raises(ValueError, match="finished"):
        decide_canary(ev, state)


def test_canary_aborts_a_worse_challenger_at_any_step():
    rng = np.random.default_rng(8)
    ev = PairedEvidence(CHAMP, CHALL)
    state = CanaryState()
    for i in range(30):
        ev = ev.add_rows(*_batch(rng, 300, 0.95, 0.88), partition=f"b{i}")
        rec, state = decide_canary(ev, state)
        if rec.decision != "continue":
            break
    assert rec.decision == "abort" and state.done == "abort" and state.share_bp == 0
    assert rec.difference_ci[1] < 0 and rec.shares_bp == {CHALL: 0}


def test_canary_holds_a_challenger_it_cannot_yet_call_non_inferior():
    # Even split of few discordant rows: the lower bound is well below −δ.
    rec, state = decide_canary(_evidence([(10, 10), (9, 10)]), CanaryState(min_rows_per_step=500))
    assert rec.decision == "continue" and state.step == 0 and rec.difference_ci[0] < -0.01
    assert rec.shares_bp == {CHALL: 500}
    # The minimum rows per step is respected even with strong evidence.
    strong, state = decide_canary(_evidence([(0, 40)], per_batch_n=400), CanaryState(min_rows_per_step=500))
    assert strong.decision == "continue" and "minimum" in strong.reason


def test_canary_p_value_matches_its_interval():
    rec, _ = decide_canary(_evidence([(2, 30), (3, 28)]), CanaryState(min_rows_per_step=100))
    assert rec.decision == "ramp"
    assert rec.p_value <= rec.alpha and rec.difference_ci[0] > -0.01


def test_canary_on_unpaired_evidence():
    ev = UnpairedEvidence(CHAMP, CHALL)
    state = CanaryState(min_rows_per_step=1000, rho=5.0)
    ev = ev.add_batch(k1=9000, n1=10000, k2=4750, n2=5000)
    rec, state = decide_canary(ev, state)
    assert rec.decision == "ramp" and rec.evidence == "unpaired" and state.share_bp == 2500
    worse = UnpairedEvidence(CHAMP, CHALL).add_batch(k1=9500, n1=10000, k2=4000, n2=5000)
    rec, state = decide_canary(worse, CanaryState())
    assert rec.decision == "abort"


def test_canary_state_round_trips():
    _, state = decide_canary(_evidence([(2, 30), (3, 28)]), CanaryState(min_rows_per_step=100))
    assert CanaryState.from_dict(state.to_dict()) == state and state.step == 1


# ------------------------------------------------------------------ bandit
def _arm_evidence(rng, batches, accs, champion_acc=0.9, n=400):
    evs = {arm: PairedEvidence(CHAMP, arm) for arm in accs}
    for i in range(batches):
        y = rng.integers(0, 3, n)
        shared = rng.random(n)
        champ = np.where(shared < champion_acc, y, (y + 1) % 3)
        for arm, acc in accs.items():
            u = np.where(rng.random(n) < 0.8, shared, rng.random(n))
            pred = np.where(u < acc, y, (y + 2) % 3)
            evs[arm] = evs[arm].add_rows(champ, pred, y, partition=f"b{i}")
    return evs


def test_bandit_shares_move_toward_the_better_arm():
    accs = {"better": 0.93, "same": 0.90}
    state = BanditState(arms=("better", "same"), threshold=0.999, draws=5000)
    history = []
    for k in (1, 3, 6, 10):
        evs = _arm_evidence(np.random.default_rng(12), k, accs)
        rec, state_k = decide_bandit(evs, state)
        history.append(state_k.shares_bp["better"])
    assert history[-1] > history[0] and history[-1] > 9000
    assert state_k.shares_bp["same"] < 500
    assert rec.statistic >= 0.9                      # P(best) of the better arm


def test_bandit_promotes_only_through_the_confirmatory_test():
    rng = np.random.default_rng(3)
    evs = _arm_evidence(rng, 8, {"better": 0.96, "same": 0.90})
    rec, state = decide_bandit(evs, BanditState(arms=("better", "same")))
    assert rec.decision == "promote" and rec.challenger == "better"
    assert rec.p_value <= 0.05 / 2                   # Bonferroni over two arms
    assert state.done == "promote" and state.shares_bp == {"better": 10000, "same": 0}


def test_bandit_p_best_alone_never_promotes():
    # P(best) ≈ 0.97 ≥ 0.95 from the marginal posteriors (900 vs 925 right of 1,000),
    # but the paired evidence (b = 60, c = 85) is not conclusive.
    ev = PairedEvidence(CHAMP, "arm").add_batch(60, 85, 1000, 900, 925, partition="p0")
    rec, state = decide_bandit({"arm": ev}, BanditState(arms=("arm",)))
    assert rec.statistic >= 0.95
    assert rec.decision in ("ramp", "continue") and state.done is None
    assert "never promotes" in rec.reason


def test_bandit_drops_worse_arms_and_aborts_when_none_is_left():
    worse = PairedEvidence(CHAMP, "w").add_batch(80, 20, 1000, 900, 840, partition="p0")
    fine = PairedEvidence(CHAMP, "f").add_batch(20, 22, 1000, 900, 902, partition="p0")
    rec, state = decide_bandit({"w": worse, "f": fine}, BanditState(arms=("w", "f")))
    assert state.dropped == ("w",) and state.shares_bp["w"] == 0 and rec.decision == "ramp"
    rec, state = decide_bandit({"w": worse}, BanditState(arms=("w",)))
    assert rec.decision == "abort" and state.done == "abort"


def test_bandit_is_deterministic_for_the_same_evidence():
    evs = _arm_evidence(np.random.default_rng(5), 2, {"x": 0.91, "y": 0.9})
    one = decide_bandit(evs, BanditState(arms=("x", "y")), created_at=T0)
    two = decide_bandit(evs, BanditState(arms=("x", "y")), created_at="later")
    assert one[1] == two[1] and one[0].decision_id == two[0].decision_id
    assert BanditState.from_dict(one[1].to_dict()) == one[1]


def test_records_from_every_strategy_round_trip():
    ev = _evidence([(2, 30), (3, 28)])
    records = [
        decide_single(True),
        decide_shadow(ev),
        decide_ab(ev, ABState(planned_n=900), served=(500, 500))[0],
        decide_canary(ev, CanaryState(min_rows_per_step=100))[0],
        decide_bandit({CHALL: ev}, BanditState(arms=(CHALL,)))[0],
    ]
    for rec in records:
        assert DecisionRecord.from_json(rec.to_json()) == rec
        assert rec.decision_id == rec.expected_id()
        assert rec.to_markdown().startswith("| field | value |")
