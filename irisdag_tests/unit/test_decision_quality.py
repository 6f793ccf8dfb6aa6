"""The decision-quality harness (benchmarks/decision_quality.py), at a small, seeded scale.

It must count errors right (checked on hand-made outcomes and against an exact
probability), and shadow's promotion rate of a no-better challenger must stay
within α (DESIGN §4) when the real ``decide_shadow`` is looked at after every batch.
"""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom
from statsmodels.stats.proportion import proportion_confint

from irisdag.core import stats

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "decision_quality.py"


@pytest.fixture(scope="module")
def dq():
    spec = importlib.util.spec_from_file_location("decision_quality", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_clopper_pearson_upper_bound_matches_statsmodels(dq):
    for x, n in [(0, 10), (1, 10), (5, 100), (187, 10_000), (500, 10_000), (10, 10)]:
        # a one-sided 95% bound is the upper end of a two-sided 90% interval
        expected = proportion_confint(x, n, alpha=0.10, method="beta")[1] if x < n else 1.0
        assert dq.cp_upper(x, n) == pytest.approx(expected, abs=1e-12)
    assert dq.cp_upper(0, 10_000) == pytest.approx(1 - 0.05 ** (1 / 10_000), rel=1e-9)


def test_summary_counts_the_bounded_error_on_hand_made_outcomes(dq):
    sim = dq.Sim()
    # (code, batches, rows, extra, arm): 3 promoted, 2 aborted, 5 open at the cap of 50
    res = np.array([[1, 2, 2000, 0, 0], [1, 3, 3000, 0, 0], [1, 9, 9000, 0, 0],
                    [2, 1, 1000, 0, -1], [2, 4, 4000, 0, -1]] + [[0, 50, 50_000, 0, -1]] * 5)

    def scen(strategy, diff, arms=()):
        return dq.Scenario("t", strategy, "label", diff, "error", "", tuple(arms))

    null = dq.summarize(scen("shadow", 0.0), res, sim)
    assert (null.n, null.promote, null.bad, null.good, null.abort, null.undecided) == (10, 3, 3, 0, 2, 5)
    assert null.bad_rate == 0.3 and null.bad_upper == pytest.approx(dq.cp_upper(3, 10))
    assert (null.rows_median, null.batches_median) == (3000, 3)  # decided experiments only
    assert null.rows_power80 is None

    better = dq.summarize(scen("shadow", 0.02), res, sim)
    assert (better.bad, better.good, better.good_rate) == (0, 3, 0.3)

    # canary: only a challenger worse by at least δ counts
    assert dq.summarize(scen("canary", 0.0), res, sim).bad == 0
    assert dq.summarize(scen("canary", -sim.delta), res, sim).bad == 3

    # two arms: promoting arm 1 (no-better) is the error, arm 0 (+2 points) is power
    two = res.copy()
    two[0, 4] = 1
    mixed = dq.summarize(scen("bandit", 0.02, arms=(0.02, 0.0)), two, sim)
    assert (mixed.bad, mixed.good) == (1, 2)

    # rows by which 80% had promoted: 8 of 10 promoted, the 8th after batch 8
    res80 = np.array([[1, k, 1000 * k, 0, 0] for k in range(1, 9)] + [[0, 50, 50_000, 0, -1]] * 2)
    assert dq.summarize(scen("shadow", 0.02), res80, sim).rows_power80 == 8000


def test_ab_null_promotion_rate_matches_the_exact_probability(dq):
    """Label-feedback A/B decides once, on the first 1,000-row batch (planned 783), by exact McNemar:
    P(promote) = P(no sample-ratio abort) · Σ_d P(b + c = d) · P(McNemar p ≤ α and c > b | d)."""
    sim = dq.Sim(seed=11)
    n, psi, alpha = sim.rows_per_batch, sim.discordant, sim.alpha
    assert dq.S.ABState.plan_paired(0.9, 0.92, psi).planned_n <= n
    # two-sided exact McNemar at p = 1/2 is min(1, 2·P(X ≥ c)) for c > b: promote iff that is ≤ α
    d = np.arange(0, 161)[:, None]
    c = np.arange(0, 161)[None, :]
    p_two = np.minimum(1.0, 2.0 * binom.sf(c - 1, d, 0.5))
    promote = (c <= d) & (2 * c > d) & (p_two <= alpha)
    for dd, cc in [(40, 30), (40, 27), (41, 28), (100, 61), (100, 60)]:  # the closed form is the real test
        assert promote[dd, cc] == (stats.mcnemar_exact(dd - cc, cc) <= alpha)
    p_mcnemar = float((binom.pmf(d, n, psi) * np.where(promote, binom.pmf(c, d, 0.5), 0.0)).sum())
    srm = np.array([stats.srm_pvalue([n - k, k], [5000, 5000]) < 0.001 for k in range(400, 601)])
    p_srm = 1.0 - binom.pmf(np.arange(400, 601)[~srm], n, 0.5).sum()  # outside 400..600 is far below 1e-9
    exact = p_mcnemar * (1.0 - p_srm)

    N = 1000
    results = dq.run_all(sim, N, jobs=1, only=["ab/label/+0.000"])
    s = results["ab/label/+0.000"]["summary"]
    assert s.n == N and s.undecided == 0 and s.batches_median == 1
    assert abs(s.bad_rate - exact) <= 4 * math.sqrt(exact * (1 - exact) / N)
    assert 0.015 < exact < 0.025  # the exact test is conservative: below α/2


def test_shadow_promotes_a_no_better_challenger_at_most_alpha(dq):
    """2,000 experiments of 15 batches (the real decide_shadow on each); 10 also replayed batch by batch."""
    sim = dq.Sim(max_batches=15, seed=5)
    N = 2000
    results = dq.run_all(sim, N, jobs=1, verify=10, only=["shadow/label/+0.000"])
    s = results["shadow/label/+0.000"]["summary"]
    assert s.n == N
    assert s.bad_rate <= sim.alpha + 3 * math.sqrt(sim.alpha * (1 - sim.alpha) / N)
    assert results["shadow/label/+0.000"]["verified"] == (10, [])
    assert not (results["shadow/label/+0.000"]["res"][:, 3] == -1).any()  # no real call contradicted the skip


def test_fast_path_equals_a_call_after_every_batch_when_the_test_crosses(dq):
    """Shadow and bandit experiments that decide: skipping the calls before the crossing changes nothing."""
    sim = dq.Sim(max_batches=15, seed=9)
    keys = ["shadow/label/+0.020", "shadow/label/-0.020", "bandit/label/+0.020"]
    results = dq.run_all(sim, 10, jobs=1, verify=10, only=keys)
    for key in keys:
        checked, mismatches = results[key]["verified"]
        assert checked == 10 and mismatches == [], key
        assert (results[key]["res"][:, 0] != dq.NONE).all(), key  # all of them decided


# --------------------------------------------------------------------------- the grid's new pieces (issue 8's harness)
from benchmarks import decision_grid as G  # noqa: E402


@pytest.mark.parametrize("window", [1, 7])
def test_grid_draws_have_the_multinomial_law(window):
    """The fast (b, c, both right, both wrong) draws: right totals, right means."""
    probs = np.array([0.03, 0.01, 0.87, 0.09])
    draw = G._draw4(np.random.default_rng(3), window, probs, 40_000)
    assert draw.shape == (40_000, 4) and (draw >= 0).all() and (draw.sum(axis=1) == window).all()
    mean = draw.mean(axis=0)
    sd = np.sqrt(window * probs * (1 - probs) / 40_000)
    assert np.all(np.abs(mean - window * probs) <= 5 * sd)


def test_sample_ratio_cell_counts_distinct_keys_and_tests_tiny_counts_exactly():
    """Zipf-keyed traffic routed by key: counting rows alarms far above plan; at a 1-bp share the
    chi-square alarms on a single key, the rule (srm_pvalue on distinct keys, exact there) does not."""
    res = G.srm_cell(300, np.random.default_rng(8))
    c = res["counts"]
    assert [n for _, _, n in res["cases"]] == [6426, 20_000, 100, 2000]
    assert c[0]["rows"] > 150 and c[0]["keys"] <= 3            # 50/50: rows overdispersed, keys fine
    assert c[0]["distinct"] / 300 < 6426 / 2                     # keys repeat
    one_bp = c[3]
    assert one_bp["exact_looks"] == 300                          # expected count < 5 at every look
    assert one_bp["chi2_keys"] >= 5 and one_bp["keys"] == 0


def test_reread_cell_judges_each_input_once():
    sim = G.GridSim()
    res = G.reread_cell(sim, 400, np.random.default_rng(2))
    assert res["judged_once"] == res["distinct"] < res["rows"]   # never more judged rows than distinct inputs
    assert res["judged_again"] == res["rows"] * res["windows"]
    assert res["again"] > 40 * max(1, res["once"])                # counting again promotes a no-better one often
    assert res["once"] <= 10


def test_grid_runs_every_window_and_marks_a_cell_whose_bound_exceeds_alpha():
    """A tiny grid: every strategy × feedback × window cell is there; with 30 runs no upper bound can
    be below α (1 − 0.05^(1/30) ≈ 9.5%), so every cell is marked NO and the run says so."""
    res = G.run_grid(G.GridSim(), 30, jobs=1, label_rows=200, outcome_rows=200, windows=(1, 100), side_runs=30,
                     speed_rows=3000)
    keys = {(c["strategy"], c["feedback"], c["method"], c["window"]) for c in res["cells"]}
    assert keys == {(s, f, m, w) for s, f, m in G._ORDER for w in (1, 100)}
    assert all(c["max_rows"] == 200 for c in res["cells"])
    assert {c["method"] for c in res["speed"]} == {"new", "old"} and res["speed"][0]["max_rows"] == 3000
    text, ok = G.report(res)
    assert not ok and "**NO**" in text and "Some cells miss α" in text
    assert G.worst(res)["error_ucb"] == pytest.approx(G.cp_upper(0, 30))
    rows = G.readme_rows(res)
    assert len(rows) == 2 + 4 * 2 and all("**> α**" in r for r in rows[2:])


def test_write_replaces_only_the_block_between_markers(dq, tmp_path):
    page = tmp_path / "README.md"
    page.write_text("intro\n<!-- B -->\nold table\n<!-- E -->\nafter\n", encoding="utf-8")
    dq.write_markdown(page, "new table", "<!-- B -->", "<!-- E -->")
    assert page.read_text(encoding="utf-8") == "intro\n<!-- B -->\nnew table\n<!-- E -->\nafter\n"
    plain = tmp_path / "plain.md"
    plain.write_text("text\n", encoding="utf-8")
    dq.write_markdown(plain, "block", "<!-- B -->", "<!-- E -->")
    assert plain.read_text(encoding="utf-8") == "text\n\n<!-- B -->\nblock\n<!-- E -->\n"
