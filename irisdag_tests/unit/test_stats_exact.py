"""Exact values of the statistics the decisions use, from closed forms written out here (not
from the function under test), and their refusals naming the value: tests that notice a changed
sign, constant, bound or argument (the mutation review, docs/mutation-review.md)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from irisdag.core import stats


def _log_beta(a, b):
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _log_m(k, n, p, a=1.0, b=1.0):
    """Robbins' beta-binomial mixture, written out: log B(a+k, b+n−k) − log B(a, b) − k log p − (n−k) log(1−p)."""
    out = _log_beta(a + k, b + n - k) - _log_beta(a, b)
    if k:
        out -= k * math.log(p)
    if n - k:
        out -= (n - k) * math.log1p(-p)
    return out


# ------------------------------------------------------------------ Bernoulli mixture martingale
@pytest.mark.parametrize("k,n,p,prior", [
    (3, 5, 0.5, (2.0, 3.0)), (3, 5, 0.3, (3.0, 0.5)), (1, 4, 0.2, (1.0, 1.0)), (3, 4, 0.9, (1.0, 1.0)),
    (0, 5, 0.3, (1.0, 1.0)), (5, 5, 0.3, (1.0, 1.0)), (0, 5, 0.0, (1.0, 1.0)), (5, 5, 1.0, (1.0, 1.0)),
    (0, 0, 0.4, (2.0, 5.0)), (900, 1000, 0.88, (0.5, 0.5)),
])
def test_bernoulli_mixture_equals_its_closed_form_at_every_edge(k, n, p, prior):
    with warnings.catch_warnings():
        warnings.simplefilter("error")               # p = 0 or 1 at k = 0 or k = n: no log(0) warning
        got = stats.bernoulli_mixture_log_lambda(k, n, p, prior)
    assert got == pytest.approx(_log_m(k, n, p, *prior), rel=1e-10, abs=1e-12)


def test_bernoulli_mixture_refuses_a_bad_prior_and_nan_anywhere():
    for prior in ((0.0, 1.0), (1.0, 0.0), (-1.0, 2.0)):
        with pytest.raises(ValueError, match=r"prior must be two positive Beta parameters, got \("):
            stats.bernoulli_mixture_log_lambda(1, 2, 0.5, prior)
    for args in ((math.nan, 2, 0.5), (1, math.nan, 0.5), (1, 2, math.nan)):
        with pytest.raises(ValueError, match="NaN in the counts or the mean of a Bernoulli confidence sequence"):
            stats.bernoulli_mixture_log_lambda(*args)
    arr = stats.bernoulli_mixture_log_lambda(np.array([1, 3]), np.array([4, 4]), 0.5)
    assert arr.tolist() == pytest.approx([_log_m(1, 4, 0.5), _log_m(3, 4, 0.5)], rel=1e-12)


# ------------------------------------------------------------------ Bernoulli confidence sequence
@pytest.mark.parametrize("k,n,alpha,prior", [
    (1, 1, 0.05, (1.0, 1.0)), (0, 1, 0.05, (1.0, 1.0)), (3, 10, 0.05, (1.0, 1.0)), (7, 10, 0.025, (2.0, 0.5)),
    (0, 40, 0.05, (1.0, 1.0)), (40, 40, 0.0125, (1.0, 1.0)), (900, 1000, 0.025, (1.0, 1.0)),
    (4340, 5000, 0.05, (1.0, 1.0)), (1, 2000, 0.05, (0.5, 0.5)),
])
def test_bernoulli_cs_ends_are_the_outer_roots_of_the_mixture_at_one_over_alpha(k, n, alpha, prior):
    lo, hi = stats.bernoulli_cs(k, n, alpha, prior)
    level = math.log(1 / alpha)
    centre = k / n
    if k == 0:
        assert lo == 0.0
    else:
        assert 0 < lo < centre and _log_m(k, n, lo, *prior) == pytest.approx(level, rel=1e-9, abs=1e-9)
        assert _log_m(k, n, (lo + centre) / 2, *prior) < level
        assert _log_m(k, n, lo * (1 - 1e-6), *prior) > level    # the outer root: just below it, excluded
    if k == n:
        assert hi == 1.0
    else:
        assert centre < hi < 1 and _log_m(k, n, hi, *prior) == pytest.approx(level, rel=1e-9, abs=1e-9)
        assert _log_m(k, n, (hi + centre) / 2, *prior) < level
        assert _log_m(k, n, hi + (1 - hi) * 1e-6, *prior) > level


def test_bernoulli_cs_vectorised_equals_scalar_and_a_warm_start_lands_on_the_same_ends():
    k, n = np.array([0, 3, 7, 40, 900]), np.array([0, 10, 10, 40, 1000])
    lo, hi = stats.bernoulli_cs(k, n, 0.05)
    for i in range(len(k)):
        assert (lo[i], hi[i]) == pytest.approx(stats.bernoulli_cs(int(k[i]), int(n[i]), 0.05), rel=1e-12)
    assert (lo[0], hi[0]) == (0.0, 1.0)
    before = stats.bernoulli_cs(880, 990, 0.05)
    assert stats.bernoulli_cs(900, 1000, 0.05, start=before, iterations=4) == pytest.approx(
        stats.bernoulli_cs(900, 1000, 0.05), rel=1e-9)


def test_bernoulli_cs_refuses_bad_input_naming_it():
    with pytest.raises(ValueError, match="alpha must be strictly between 0 and 1, got 1.0"):
        stats.bernoulli_cs(1, 2, 1.0)
    with pytest.raises(ValueError, match=r"prior must be two positive Beta parameters, got \(1.0, 0.0\)"):
        stats.bernoulli_cs(1, 2, 0.05, (1.0, 0.0))
    with pytest.raises(ValueError, match=r"prior must be two positive Beta parameters, got \(0.0, 1.0\)"):
        stats.bernoulli_cs(1, 2, 0.05, (0.0, 1.0))
    for k, n in ((3, 2), (-1, 2)):
        with pytest.raises(ValueError, match="successes must lie within 0..n"):
            stats.bernoulli_cs(k, n, 0.05)
    for k, n in ((math.nan, 2), (1, math.nan)):
        with pytest.raises(ValueError, match="NaN in the counts of a Bernoulli confidence sequence"):
            stats.bernoulli_cs(k, n, 0.05)


# ------------------------------------------------------------------ stratified unpaired mSPRT (CMH)
def _cmh_lambda(strata, tau2):
    u = w_sum = v = 0.0
    for k1, n1, k2, n2 in strata:
        if n1 and n2:
            w = n1 * n2 / (n1 + n2)
            p = (k1 + k2) / (n1 + n2)
            u, w_sum, v = u + w * (k2 / n2 - k1 / n1), w_sum + w, v + w * p * (1 - p)
    theta, s2 = u / w_sum, v / w_sum**2
    return math.sqrt(s2 / (s2 + tau2)) * math.exp(tau2 * theta**2 / (2 * s2 * (s2 + tau2)))


def test_stratified_msprt_equals_the_cmh_closed_form_skipping_empty_batches():
    strata = [(8, 10, 9, 10), (0, 0, 5, 5), (1, 2, 2, 2), (30, 40, 18, 20), (3, 3, 0, 0)]
    want = _cmh_lambda(strata, 0.01)
    assert stats.stratified_unpaired_msprt(strata, 0.01) == pytest.approx(want, rel=1e-12)
    # One batch of weight exactly 1 (n1 = n2 = 2) is evidence like any other.
    assert stats.stratified_unpaired_msprt([(1, 2, 2, 2)], 0.01) == pytest.approx(
        _cmh_lambda([(1, 2, 2, 2)], 0.01), rel=1e-12) != 1.0
    # No batch with both arms, or no variance: no evidence.
    assert stats.stratified_unpaired_msprt([(0, 0, 5, 5), (3, 3, 0, 0)], 0.01) == 1.0
    assert stats.stratified_unpaired_msprt([(10, 10, 20, 20)], 0.01) == 1.0
    assert stats.stratified_unpaired_msprt([], 0.01) == 1.0
    # Successes equal to rows are fine in either arm.
    assert stats.stratified_unpaired_msprt([(10, 10, 19, 20)], 0.01) == pytest.approx(
        _cmh_lambda([(10, 10, 19, 20)], 0.01), rel=1e-12)
    assert stats.stratified_unpaired_msprt([(9, 10, 20, 20)], 0.01) == pytest.approx(
        _cmh_lambda([(9, 10, 20, 20)], 0.01), rel=1e-12)


def test_stratified_msprt_refuses_bad_strata_naming_them():
    with pytest.raises(ValueError, match=r"tau2 \(the mixture variance\) must be > 0, got 0.0"):
        stats.stratified_unpaired_msprt([(1, 2, 1, 2)], 0.0)
    for stratum in ((3, 2, 1, 2), (1, 2, 3, 2)):
        with pytest.raises(ValueError, match=rf"successes exceed rows in stratum \({stratum[0]}, 2, {stratum[2]}, 2\)"):
            stats.stratified_unpaired_msprt([stratum], 0.01)
    for i, name in enumerate(("k1", "n1", "k2", "n2")):
        stratum = [1, 2, 1, 2]
        stratum[i] = -1
        with pytest.raises(ValueError, match=f"^{name} must be a non-negative integer, got -1$"):
            stats.stratified_unpaired_msprt([tuple(stratum)], 0.01)


# ------------------------------------------------------------------ fixed-n unpaired tests
@pytest.mark.parametrize("func", [stats.fisher, stats.two_proportion_z])
def test_fixed_n_tests_name_the_bad_count(func):
    for i, name in enumerate(("k1", "n1", "k2", "n2")):
        args = [1, 2, 1, 2]
        args[i] = -1
        with pytest.raises(ValueError, match=f"^{name} must be a non-negative integer, got -1$"):
            func(*args)
    for args in ((3, 2, 1, 2), (1, 2, 3, 2)):
        with pytest.raises(ValueError, match="^successes exceed rows$"):
            func(*args)


def test_bernoulli_cs_is_quiet_at_its_edges():
    # Every look of an arm passes through k = 0, k = n and n = 0: no division, overflow or invalid warnings.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for k, n in ((0, 0), (0, 1), (1, 1), (0, 500), (500, 500), (1, 2000), (1999, 2000)):
            stats.bernoulli_cs(k, n, 0.05)
            stats.bernoulli_cs(k, n, 0.05, start=(0.0, 1.0), iterations=3)


# ------------------------------------------------------------------ normal-mixture sequence edges
def _nm_lambda(s_n, n, s2, rho, margin):
    x, v = s_n + n * margin, n * s2
    return math.sqrt(rho / (v + rho)) * math.exp(x * x / (2 * (v + rho))) if n and x > 0 else 1.0


@pytest.mark.parametrize("s_n,n,s2,rho,margin", [
    (0, 1, 0.0, 20.0, 0.01), (0.0, 50, 0.0, 20.0, 0.01), (-0.2, 20, 0.05, 5.0, 0.01), (-0.5, 50, 0.1, 5.0, 0.01),
    (0, 0, 0.0, 20.0, 0.01), (-30, 1000, 0.04, 20.0, 0.01), (5, 400, 0.04, 0.5, 0.02),
])
def test_noninferiority_lambda_equals_its_closed_form_near_x_zero(s_n, n, s2, rho, margin):
    assert stats.noninferiority_lambda(s_n, n, s2, rho, margin) == pytest.approx(
        _nm_lambda(s_n, n, s2, rho, margin), rel=1e-12)


def test_a_sequence_wider_than_the_accuracy_scale_is_clipped_to_it_and_rho_must_be_positive():
    assert stats.confidence_sequence(0, 1, 0.0, 20.0, 0.05) == (-1.0, 1.0)
    assert stats.confidence_sequence(1, 1, 0.0, 20.0, 0.05) == (-1.0, 1.0)
    for call in (lambda: stats.normal_mixture_radius(1.0, 0.0, 0.05),
                 lambda: stats.noninferiority_lambda(1.0, 10, 0.1, 0.0, 0.01)):
        with pytest.raises(ValueError, match="rho must be > 0, got 0.0"):
            call()


def test_paired_msprt_refuses_negative_or_nan_counts_on_either_side():
    for b, c in ((-1, 3), (3, -1), (np.array([1, -1]), np.array([2, 2]))):
        with pytest.raises(ValueError, match="b and c must be non-negative"):
            stats.paired_msprt(b, c)
    for b, c in ((1, math.nan), (math.nan, 1)):
        with pytest.raises(ValueError, match="b and c must be counts, got NaN"):
            stats.paired_msprt(b, c)


# ------------------------------------------------------------------ basis points
def test_shares_to_bp_normalises_and_gives_the_remainder_to_the_largest_fractions_first():
    assert stats.shares_to_bp([1, 3]) == [2500, 7500]
    assert stats.shares_to_bp([1, 1, 1]) == [3334, 3333, 3333]
    assert stats.shares_to_bp([0.1, 0.2, 0.7], total=7) == [1, 1, 5]     # 0.7, 1.4, 4.9: 1.4 is short last
    assert stats.shares_to_bp([0.2, 0.25, 0.55], total=9) == [2, 2, 5]   # 1.8, 2.25, 4.95
    for bad in ([-1, 3], [0, 0], [[0.5, 0.5]]):
        with pytest.raises(ValueError, match="shares must be non-negative and not all zero"):
            stats.shares_to_bp(bad)


# ------------------------------------------------------------------ exact power and the planning search
# planned_n_paired / planned_n_unpaired are lru-cached: a value cached before the mutation run's fork
# never reaches the search again, so these tests call the search and the uncached plans directly.
def _curve(low_at=(), first=100, level=0.9, looks=1_000):
    """A saw-toothed power curve: below 0.8 before ``first`` and at the sizes in ``low_at``, ``level`` elsewhere.

    The search looks at it a few dozen times; past ``looks`` it has lost its way (a search that never
    ends), and the test fails instead of hanging."""
    seen = []

    def power_at(n):
        seen.append(n)
        if len(seen) > looks:
            raise AssertionError(f"the planning search looked at the power {looks} times: last sizes {seen[-3:]}")
        return 0.1 if n < first or n in low_at else level
    return power_at


@pytest.mark.parametrize("start", [0, 1, 37, 99, 100, 5000])
def test_the_planning_search_finds_the_smallest_n_that_holds_over_the_next_sizes(start):
    assert stats._smallest_n_with_power(_curve(), start, 0.8) == 100
    assert stats._smallest_n_with_power(_curve((105,)), start, 0.8, hold=20) == 106  # 105 dips: step past it
    assert stats._smallest_n_with_power(_curve((105, 126)), start, 0.8, hold=20) == 127  # 126 = 106 + 20 dips too
    assert stats._smallest_n_with_power(_curve((105, 127)), start, 0.8, hold=20) == 106  # 127 lies past the hold
    assert stats._smallest_n_with_power(_curve(first=100, level=0.8), start, 0.8) == 100  # power = target holds
    assert stats._smallest_n_with_power(_curve(first=1), start, 0.8, hold=3) == 1
    assert stats._smallest_n_with_power(_curve(first=2), start, 0.8) == 2


def test_the_uncached_plans_reach_their_exact_sizes():
    assert stats.planned_n_paired.__wrapped__(0.04, 0.02) == 843
    assert stats.planned_n_paired.__wrapped__(0.04, -0.02) == 843    # the effect's sign does not matter
    assert stats.planned_n_unpaired.__wrapped__(0.90, 0.92) == 3206
    assert stats.planned_n_unpaired.__wrapped__(0.92, 0.90) == 3206


def _mcnemar_power_by_enumeration(n, psi, delta, alpha):
    from scipy.stats import multinomial
    probs = [(psi - delta) / 2, (psi + delta) / 2, 1 - psi]
    return sum(multinomial.pmf([b, c, n - b - c], n, probs)
               for b in range(n + 1) for c in range(n + 1 - b)
               if c > b and stats.mcnemar_exact(b, c) <= alpha)


@pytest.mark.parametrize("n,psi,delta,alpha", [
    (12, 1.0, 0.5, 0.05), (14, 0.2, 0.2, 0.05), (20, 0.5, -0.1, 0.05), (25, 0.6, 0.3, 0.2), (1, 0.5, 0.5, 0.05),
    (9, 1.0, 1.0, 0.05), (16, 0.7, 0.4, 0.01),
    (5, 1.0, 0.6, 0.0625), (9, 0.8, 0.5, 0.0625),   # α = 2·(1/2)^5: the exact p at c = 5, b = 0 equals α
])
def test_mcnemar_power_equals_enumeration_at_the_edges_of_psi_and_alpha(n, psi, delta, alpha):
    assert stats.power_mcnemar(n, psi, delta, alpha) == pytest.approx(
        _mcnemar_power_by_enumeration(n, psi, delta, alpha), rel=1e-9, abs=1e-15)


def test_mcnemar_power_is_zero_at_no_pairs_and_refuses_a_psi_outside_its_range():
    assert stats.power_mcnemar(0, 0.3, 0.1) == 0.0
    for psi, delta in ((0.1, 0.2), (0.0, 0.0), (1.1, 0.1), (0.1, -0.2)):
        with pytest.raises(ValueError, match=rf"p_discordant \({psi}\) must lie in"):
            stats.power_mcnemar(5, psi, delta)


@pytest.mark.parametrize("n,p1,p2,alpha", [
    (15, 0.6, 0.85, 0.2), (6, 0.0, 1.0, 0.05), (12, 0.0, 0.5, 0.05), (12, 0.5, 1.0, 0.05), (1, 0.3, 0.9, 0.5),
    (18, 0.7, 0.6, 0.3),
])
def test_two_proportion_power_equals_enumeration_at_the_edges(n, p1, p2, alpha):
    from scipy.stats import binom
    total = sum(binom.pmf(k1, n, p1) * binom.pmf(k2, n, p2)
                for k1 in range(n + 1) for k2 in range(n + 1)
                if k2 > k1 and stats.two_proportion_z(k1, n, k2, n)[1] <= alpha)
    assert stats.power_two_proportion(n, p1, p2, alpha) == pytest.approx(total, rel=1e-9, abs=1e-15)
    assert stats.power_two_proportion(0, p1, p2, alpha) == 0.0


def test_two_proportion_z_gives_no_evidence_when_either_arm_is_empty():
    assert stats.two_proportion_z(0, 0, 1, 2) == (0.0, 1.0)
    assert stats.two_proportion_z(1, 2, 0, 0) == (0.0, 1.0)
    assert stats.two_proportion_z(0, 1, 1, 1) == pytest.approx((math.sqrt(2.0), 0.15729920705028513), rel=1e-12)


# ------------------------------------------------------------------ refusals name the value (every public entry point)
def _refusals():
    bad_draws = dict(draws=0, rng=np.random.default_rng(0))
    return [
        # counts: a bool, a non-number, a negative or fractional count; levels and finite numbers
        (lambda: stats.wilson(True, 3), TypeError, "k must be a count, got True"),
        (lambda: stats.wilson(1, "x"), TypeError, "n must be a non-negative integer, got 'x'"),
        (lambda: stats.wilson(-1, 3), ValueError, "k must be a non-negative integer, got -1"),
        (lambda: stats.wilson(1, 2.5), ValueError, "n must be a non-negative integer, got 2.5"),
        (lambda: stats.wilson(4, 3), ValueError, r"k \(4\) exceeds n \(3\)"),
        (lambda: stats.wilson(1, 3, 1.0), ValueError, "confidence must be strictly between 0 and 1, got 1.0"),
        (lambda: stats.wilson(1, 3, 0.0), ValueError, "confidence must be strictly between 0 and 1, got 0.0"),
        (lambda: stats.newcombe_diff(-1, 2, 1, 2), ValueError, "k1 must be a non-negative integer, got -1"),
        (lambda: stats.newcombe_diff(1, -2, 1, 2), ValueError, "n1 must be a non-negative integer, got -2"),
        (lambda: stats.newcombe_diff(1, 2, -1, 2), ValueError, "k2 must be a non-negative integer, got -1"),
        (lambda: stats.newcombe_diff(1, 2, 1, -2), ValueError, "n2 must be a non-negative integer, got -2"),
        (lambda: stats.newcombe_diff(3, 2, 1, 2), ValueError, "successes exceed rows"),
        (lambda: stats.newcombe_diff(1, 2, 3, 2), ValueError, "successes exceed rows"),
        (lambda: stats.paired_diff_interval(-1, 2, 5), ValueError, "b must be a non-negative integer, got -1"),
        (lambda: stats.paired_diff_interval(1, -2, 5), ValueError, "c must be a non-negative integer, got -2"),
        (lambda: stats.paired_diff_interval(1, 2, -5), ValueError, "n must be a non-negative integer, got -5"),
        (lambda: stats.paired_diff_interval(3, 2, 4), ValueError, r"b \+ c \(5\) exceeds n \(4\)"),
        (lambda: stats.unpaired_msprt(0.5, -1, 0.5, 2, 0.01), ValueError, "n1 must be a non-negative integer, got -1"),
        (lambda: stats.unpaired_msprt(0.5, 1, 0.5, -2, 0.01), ValueError, "n2 must be a non-negative integer, got -2"),
        (lambda: stats.unpaired_msprt(0.5, 1, 0.5, 2, math.inf), ValueError, "tau2 must be a finite number, got inf"),
        (lambda: stats.unpaired_msprt(0.5, 1, 0.5, 2, 0.0), ValueError,
         r"tau2 \(the mixture variance\) must be > 0, got 0.0"),
        (lambda: stats.unpaired_msprt(1.5, 1, 0.5, 2, 0.01), ValueError, "p1_hat must be a proportion, got 1.5"),
        (lambda: stats.unpaired_msprt(0.5, 1, -0.5, 2, 0.01), ValueError, "p2_hat must be a proportion, got -0.5"),
        (lambda: stats._mixture_lambda(math.nan, 0.1, 0.1), ValueError, "theta_hat must be a finite number, got nan"),
        (lambda: stats._mixture_lambda(0.1, math.inf, 0.1), ValueError, "sigma2 must be a finite number, got inf"),
        (lambda: stats._mixture_lambda(0.1, 0.1, -math.inf), ValueError, "tau2 must be a finite number, got -inf"),
        (lambda: stats.sample_size_unpaired(0.9, 0.92, alpha=1.5), ValueError,
         "alpha must be strictly between 0 and 1, got 1.5"),
        (lambda: stats.sample_size_unpaired(0.9, 0.92, power=0.0), ValueError,
         "power must be strictly between 0 and 1, got 0.0"),
        (lambda: stats.sample_size_unpaired(0.0, 0.92), ValueError, "p1 must be strictly between 0 and 1, got 0.0"),
        (lambda: stats.sample_size_unpaired(0.9, 1.0), ValueError, "p2 must be strictly between 0 and 1, got 1.0"),
        (lambda: stats.sample_size_unpaired(0.9, 1.5), ValueError, "p2 must be strictly between 0 and 1, got 1.5"),
        (lambda: stats.sample_size_unpaired(0.9, 0.9), ValueError,
         "p1 and p2 are equal: no sample size detects a zero difference"),
        (lambda: stats.sample_size_paired(0.04, 0.02, alpha=0.0), ValueError,
         "alpha must be strictly between 0 and 1, got 0.0"),
        (lambda: stats.sample_size_paired(0.04, 0.02, power=1.0), ValueError,
         "power must be strictly between 0 and 1, got 1.0"),
        (lambda: stats.sample_size_paired(0.04, 0.0), ValueError,
         "effect is zero: no sample size detects a zero difference"),
        (lambda: stats.sample_size_paired(1.5, 0.02), ValueError,
         r"p_discordant \(1.5\) must lie in \[\|effect\|, 1\] = \[0.02, 1\]"),
        (lambda: stats.prob_best([1, 2], [3]), ValueError,
         "successes and failures must be equal-length, non-empty 1-D sequences"),
        (lambda: stats.prob_best([[1, 2]], [[3, 4]]), ValueError,
         "successes and failures must be equal-length, non-empty 1-D sequences"),
        (lambda: stats.prob_best([], []), ValueError,
         "successes and failures must be equal-length, non-empty 1-D sequences"),
        (lambda: stats.prob_best([-1, 2], [3, 4]), ValueError, "successes and failures must be non-negative"),
        (lambda: stats.prob_best([1, 2], [3, -0.5]), ValueError, "successes and failures must be non-negative"),
        (lambda: stats.prob_best([1, 2], [3, 4], **bad_draws), ValueError, "draws must be >= 1"),
    ]


@pytest.mark.parametrize("call,error,message", _refusals())
def test_every_refusal_is_one_line_naming_the_value(call, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        call()


# ------------------------------------------------------------------ helpers at their edges
def test_ceil_ignores_only_floating_point_dust_above_an_integer():
    assert [stats._ceil(x) for x in (3.0, 3.0 + 1e-12, 3.0 - 1e-12, 3.000001, 0.0)] == [3, 3, 3, 4, 0]


def test_counts_and_levels_come_back_as_plain_numbers():
    out = stats._scalar_or_array(np.array([1, 2]))
    assert out.dtype == np.float64 and out.tolist() == [1.0, 2.0]
    assert type(stats._scalar_or_array(np.int64(3))) is float


# ------------------------------------------------------------------ fixed-n intervals at their edges
def test_wilson_at_all_right_and_none_right_matches_scipy():
    from scipy.stats import binomtest
    for k, n in ((0, 7), (7, 7), (1, 1), (0, 1)):
        ci = binomtest(k, n).proportion_ci(confidence_level=0.9, method="wilson")
        assert stats.wilson(k, n, 0.9) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert stats.wilson(0, 7, 0.9)[0] == 0.0 and stats.wilson(7, 7, 0.9)[1] == 1.0


def test_newcombe_with_an_empty_arm_knows_nothing_and_otherwise_is_built_from_the_two_wilsons():
    assert stats.newcombe_diff(0, 0, 3, 4) == (-1.0, 1.0)
    assert stats.newcombe_diff(3, 4, 0, 0) == (-1.0, 1.0)
    # All right against none right: the ends written out from the two Wilson intervals.
    for k1, n1, k2, n2 in ((0, 5, 5, 5), (5, 5, 0, 5), (2, 3, 1, 4)):
        l1, u1 = stats.wilson(k1, n1)
        l2, u2 = stats.wilson(k2, n2)
        p1, p2 = k1 / n1, k2 / n2
        want = (p2 - p1 - math.hypot(p2 - l2, u1 - p1), p2 - p1 + math.hypot(u2 - p2, p1 - l1))
        assert stats.newcombe_diff(k1, n1, k2, n2) == pytest.approx(want, rel=1e-12)


def _tango_by_numerical_mle(delta, c, b, n):
    """Tango's statistic with the restricted MLE of the champion-only cell maximised numerically."""
    from scipy import optimize
    rest = n - b - c

    def neg_loglik(q):
        terms = [(c, q + delta), (b, q), (rest, 1 - 2 * q - delta)]
        return -sum(x * math.log(p) for x, p in terms if x)

    lo, hi = max(0.0, -delta), (1 - delta) / 2
    q = optimize.minimize_scalar(neg_loglik, bounds=(lo, hi), method="bounded", options={"xatol": 1e-14}).x
    return (c - b - n * delta) / math.sqrt(n * (2 * q + delta * (1 - delta)))


@pytest.mark.parametrize("delta,c,b,n", [(0.05, 0, 0, 4), (-0.05, 0, 0, 4), (-0.3, 0, 1, 2), (0.1, 3, 1, 9)])
def test_tango_statistic_where_the_quadratic_discriminant_is_below_one(delta, c, b, n):
    assert stats._tango_z(delta, c, b, n) == pytest.approx(_tango_by_numerical_mle(delta, c, b, n), rel=1e-6)


def test_tango_statistic_at_the_ends_of_delta_is_infinite_toward_the_data_and_zero_without_any():
    assert stats._tango_z(1.0, 3, 0, 5) == -math.inf      # fewer challenger-only rows than Δ = 1 needs
    assert stats._tango_z(-1.0, 0, 2, 5) == math.inf
    assert stats._tango_z(0.0, 0, 0, 5) == 0.0             # no discordant row, Δ = 0: no evidence either way


def test_paired_interval_reaches_minus_one_or_one_exactly_when_every_row_goes_one_way():
    from scipy.stats import norm
    z = norm.ppf(0.975)
    for b, c, n in ((10, 0, 10), (1, 0, 1), (3, 0, 3)):
        lo, hi = stats.paired_diff_interval(b, c, n)
        assert lo == -1.0 and -1.0 < hi < 1.0
        assert _tango_by_numerical_mle(hi, c, b, n) == pytest.approx(-z, abs=1e-6)
        mirror = stats.paired_diff_interval(c, b, n)
        assert mirror[0] == pytest.approx(-hi, rel=1e-12) and mirror[1] == 1.0


# ------------------------------------------------------------------ the unpaired mSPRT (JPW closed form)
def _jpw(p1, n1, p2, n2, tau2):
    p = (p1 * n1 + p2 * n2) / (n1 + n2)
    s2 = p * (1 - p) * (1 / n1 + 1 / n2)
    return math.sqrt(s2 / (s2 + tau2)) * math.exp(tau2 * (p2 - p1) ** 2 / (2 * s2 * (s2 + tau2)))


def test_unpaired_msprt_at_one_row_an_arm_with_no_rows_and_a_proportion_of_zero():
    assert stats.unpaired_msprt(0.5, 4, 1.0, 1, 0.01) == pytest.approx(_jpw(0.5, 4, 1.0, 1, 0.01), rel=1e-12)
    assert stats.unpaired_msprt(0.0, 3, 0.5, 4, 0.01) == pytest.approx(_jpw(0.0, 3, 0.5, 4, 0.01), rel=1e-12)
    assert stats.unpaired_msprt(0.5, 4, 0.9, 0, 0.01) == 1.0


def test_stratified_msprt_with_a_null_variance_of_exactly_one():
    # n1 = n2 = 8 gives weight 4; a pooled 1/2 makes V = 4 · 1/4 = 1.0 exactly: still evidence.
    assert stats.stratified_unpaired_msprt([(3, 8, 5, 8)], 0.01) == pytest.approx(
        _jpw(3 / 8, 8, 5 / 8, 8, 0.01), rel=1e-12)


def test_paired_msprt_overflowing_lambda_is_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log_lam, lam = stats.paired_msprt(0, 5000)
    assert lam == math.inf and log_lam == pytest.approx(_log_beta(5001, 1) + 5000 * math.log(2), rel=1e-12)


# ------------------------------------------------------------------ Connor's sample sizes at the edges
def test_sample_sizes_at_psi_one_and_at_every_row_discordant():
    from scipy.stats import norm
    za, zb = norm.ppf(0.975), norm.ppf(0.8)
    # ψ = |δ| = 1: every row discordant and all one way; n = ⌈z²⌉.
    assert stats.sample_size_paired(1.0, 1.0) == math.ceil(za**2) == 4
    assert stats.sample_size_paired(1.0, 0.5) == math.ceil((za + zb * math.sqrt(0.75)) ** 2 / 0.25) == 29


# ------------------------------------------------------------------ the bandit's Monte-Carlo draws
def _prob_best_by_counting(s, f, draws, seed):
    """Count, per arm, the draws where it is the largest (no ties at these counts), from the same seed."""
    rng = np.random.default_rng(seed)
    samples = rng.beta(1 + np.asarray(s, float), 1 + np.asarray(f, float), size=(draws, len(s)))
    return np.bincount(samples.argmax(axis=1), minlength=len(s)) / draws


def test_prob_best_is_reproducible_from_its_seed_and_its_default_draws():
    s, f = [3, 5, 4], [4, 2, 4]
    np.testing.assert_array_equal(stats.prob_best(s, f), _prob_best_by_counting(s, f, 20_000, 0))
    np.testing.assert_array_equal(stats.prob_best(s, f, 500, np.random.default_rng(7)),
                                  _prob_best_by_counting(s, f, 500, 7))
    # One draw, one arm: the lone arm is best.
    assert stats.prob_best([2], [1], 1, np.random.default_rng(3)).tolist() == [1.0]


def test_prob_best_splits_a_tie_evenly():
    # Posteriors so sharp that every draw of both arms is exactly 1.0: each draw is a two-way tie.
    assert stats.prob_best([10**18, 10**18], [0, 0], 50).tolist() == [0.5, 0.5]


def test_shares_to_bp_gives_tied_remainders_to_the_earlier_arms():
    # Five equal shares of 10,003: 2,000.6 each, three spare points go to arms 0, 1, 2 (numpy's default
    # quicksort is not stable from four elements on; the split must not depend on it).
    assert stats.shares_to_bp([1] * 5, total=10_003) == [2001, 2001, 2001, 2000, 2000]
    # 833.5 for each small arm, 1,667.0 for each large one: two spare points, four tied small arms.
    assert stats.shares_to_bp([1, 2] * 4, total=10_002) == [834, 1667, 834, 1667, 833, 1667, 833, 1667]
    # 2,000.2, 2,000.2, 3,000.3, 3,000.3: the one spare point goes to the first of the two largest remainders.
    assert stats.shares_to_bp([2, 2, 3, 3], total=10_001) == [2000, 2000, 3001, 3000]
