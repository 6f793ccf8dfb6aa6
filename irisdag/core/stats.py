"""Significance tests, intervals and sample sizes for comparing two models.

Pure numpy/scipy (no Dagster, no Redis). the shared ``STATS.md`` is the
contract; every formula below is named there, and the unit tests hold each one
to an independent computation (statsmodels, numerical integration, published
anchors).

Conventions used throughout:

* arm 1 / the first pair of counts is the **champion**, arm 2 the
  **challenger**; every difference is *challenger - champion*, so a positive
  difference means the challenger is better;
* paired evidence: ``b`` = rows the champion got right and the challenger
  wrong, ``c`` = the reverse (only discordant rows carry information);
* ``confidence`` is a level such as 0.95; ``alpha`` a significance level such
  as 0.05.
"""
from __future__ import annotations

import functools
import math
from typing import Iterable, Sequence

import numpy as np
from scipy import optimize
from scipy.special import betaln
from scipy.stats import binomtest, chisquare, fisher_exact, norm

__all__ = [
    "mcnemar_exact",
    "paired_msprt",
    "always_valid_p",
    "unpaired_msprt",
    "stratified_unpaired_msprt",
    "wilson",
    "newcombe_diff",
    "paired_diff_interval",
    "confidence_sequence",
    "normal_mixture_radius",
    "noninferiority_lambda",
    "two_proportion_z",
    "fisher",
    "sample_size_unpaired",
    "sample_size_paired",
    "srm_pvalue",
    "bernoulli_cs",
    "bernoulli_mixture_log_lambda",
    "power_mcnemar",
    "power_two_proportion",
    "planned_n_paired",
    "planned_n_unpaired",
    "lambda_of_log",
    "prob_best",
    "thompson_shares",
    "shares_to_bp",
]


# --------------------------------------------------------------------------- helpers
def _count(name: str, value) -> int:
    """A non-negative integer count (numpy integers and integral floats accepted)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a count, got {value!r}")
    try:
        as_int = int(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a non-negative integer, got {value!r}") from None
    if as_int != value or as_int < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return as_int


def _level(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value!r}")
    return value


def _z(confidence: float) -> float:
    """Two-sided standard-normal quantile for a confidence level."""
    return float(norm.ppf(0.5 + _level("confidence", confidence) / 2.0))


def _finite(name: str, value) -> float:
    """A finite float; NaN or an infinity in a decision's input is an error, never a verdict."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def lambda_of_log(log_lam: float) -> float:
    """exp(log Λ), ∞ past a double's range; a NaN log-likelihood ratio is an error (never p = 0)."""
    log_lam = float(log_lam)
    if math.isnan(log_lam):
        raise ValueError("the log-likelihood ratio is NaN: an input of the test is not a number")
    return math.exp(log_lam) if log_lam < 709.0 else math.inf


def _scalar_or_array(x):
    arr = np.asarray(x, dtype=float)
    return float(arr) if arr.ndim == 0 else arr


# --------------------------------------------------------------------------- paired tests
def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value.

    Under H0 (both models equally accurate) the discordant pairs split evenly,
    so ``c ~ Binomial(b + c, 1/2)``; the p-value is ``binomtest(c, b + c,
    0.5)``'s two-sided p. A fixed-n test: valid when decided once, at a planned
    n, not when re-run after every batch. ``b = c = 0`` (no discordant pair,
    no evidence) gives 1.0. ``mcnemar_exact(10, 30) == 0.0022214...``.
    """
    b, c = _count("b", b), _count("c", c)
    if b + c == 0:
        return 1.0
    return float(binomtest(c, b + c, 0.5, alternative="two-sided").pvalue)


def paired_msprt(b, c, mixture: float = 1.0):
    """Paired mixture SPRT over the discordant pairs.

    With ``k = b + c`` discordant pairs and θ = P(challenger wins a discordant
    pair), H0 is θ = 1/2; the alternative is the Beta(a, a) mixture over θ
    (``a = mixture``). The likelihood ratio is::

        Λ = ∫ θ^c (1-θ)^b Beta(θ; a, a) dθ / (1/2)^k
        log Λ = betaln(a + c, a + b) - betaln(a, a) + k·log 2

    By Ville's inequality P(Λ ever ≥ 1/α | H0) ≤ α, however often it is looked
    at. The mixture is symmetric, so both directions are tested at once and a
    promotion-only error is at most α. ``b=10, c=30, a=1`` gives Λ = 31.64.

    Returns ``(log_lambda, lam)``. Accepts numpy arrays of counts (vectorised,
    for simulation); ``lam`` is ``inf`` where it overflows a double, while
    ``log_lambda`` stays finite.
    """
    a = float(mixture)
    if not a > 0:
        raise ValueError(f"mixture (the Beta(a, a) parameter) must be > 0, got {mixture!r}")
    b_arr = np.asarray(b, dtype=float)
    c_arr = np.asarray(c, dtype=float)
    if np.any(np.isnan(b_arr)) or np.any(np.isnan(c_arr)):
        raise ValueError("b and c must be counts, got NaN")
    if np.any(b_arr < 0) or np.any(c_arr < 0):
        raise ValueError("b and c must be non-negative")
    log_lam = betaln(a + c_arr, a + b_arr) - betaln(a, a) + (b_arr + c_arr) * math.log(2.0)
    with np.errstate(over="ignore"):
        lam = np.exp(log_lam)
    return _scalar_or_array(log_lam), _scalar_or_array(lam)


def always_valid_p(lambdas_history: Iterable[float]) -> float:
    """Always-valid p-value after a sequence of looks.

    The running minimum over looks of ``min(1, 1/Λ)``; once it has reached α it
    stays there (the test rejected at that look). No looks → 1.0.
    """
    p = 1.0
    for lam in lambdas_history:
        lam = float(lam)
        if math.isnan(lam):
            raise ValueError("a likelihood ratio is NaN")
        if lam > 0:
            p = min(p, 1.0 / lam)
    return float(p)


# --------------------------------------------------------------------------- unpaired sequential
def _mixture_lambda(theta_hat: float, sigma2: float, tau2: float) -> float:
    """Normal-mixture likelihood ratio of a normal estimate (JPW 2015, eq. for N(0, τ²))."""
    theta_hat, sigma2, tau2 = _finite("theta_hat", theta_hat), _finite("sigma2", sigma2), _finite("tau2", tau2)
    if sigma2 <= 0.0:
        return 1.0
    total = sigma2 + tau2
    log_lam = 0.5 * math.log(sigma2 / total) + tau2 * theta_hat**2 / (2.0 * sigma2 * total)
    return lambda_of_log(log_lam)


def unpaired_msprt(p1_hat: float, n1: int, p2_hat: float, n2: int, tau2: float) -> float:
    """Unpaired mSPRT for two independent proportions (normal approximation).

    θ̂ = p̂₂ − p̂₁ with variance ``σ² = p̄(1 − p̄)(1/n₁ + 1/n₂)`` under H0,
    ``p̄`` the pooled proportion; the N(0, τ²) mixture over the true difference
    gives::

        Λ = sqrt(σ² / (σ² + τ²)) · exp(τ² θ̂² / (2 σ² (σ² + τ²)))

    This is the *unequal-arm* form (STATS.md): plugging the mean n into the
    equal-arm formula is wrong at unbalanced splits. When an arm is empty or
    the pooled proportion is 0 or 1 the normal approximation carries no
    evidence and Λ = 1.
    """
    n1, n2 = _count("n1", n1), _count("n2", n2)
    tau2 = _finite("tau2", tau2)
    if tau2 <= 0:
        raise ValueError(f"tau2 (the mixture variance) must be > 0, got {tau2!r}")
    if n1 == 0 or n2 == 0:
        return 1.0
    for name, p in (("p1_hat", p1_hat), ("p2_hat", p2_hat)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be a proportion, got {p!r}")
    p_bar = (p1_hat * n1 + p2_hat * n2) / (n1 + n2)
    sigma2 = p_bar * (1.0 - p_bar) * (1.0 / n1 + 1.0 / n2)
    return _mixture_lambda(p2_hat - p1_hat, sigma2, tau2)


def stratified_unpaired_msprt(strata: Iterable[Sequence[int]], tau2: float) -> float:
    """Unpaired mSPRT stratified by batch.

    ``strata`` holds one ``(k1, n1, k2, n2)`` per batch (successes and rows of
    the champion's and the challenger's served traffic in that batch).

    Choice: a Cochran–Mantel–Haenszel combination. Each batch j contributes
    its own difference ``d_j = k2/n2 − k1/n1`` with weight
    ``w_j = n1·n2/(n1 + n2)`` and null variance ``w_j·p̄_j(1 − p̄_j)`` (its own
    pooled p̄_j); the sums ``U = Σ w_j d_j``, ``W = Σ w_j`` and
    ``V = Σ w_j p̄_j(1 − p̄_j)`` give the common difference ``θ̂ = U/W`` with
    variance ``σ² = V/W²``, which enters the same N(0, τ²) mixture as
    :func:`unpaired_msprt`. Comparing arms only within a batch means a drift
    in accuracy together with a change of split between batches cannot make a
    no-better arm look better (Simpson's paradox); with one batch this equals
    :func:`unpaired_msprt`. Batches with an empty arm carry no weight.
    """
    if _finite("tau2", tau2) <= 0:
        raise ValueError(f"tau2 (the mixture variance) must be > 0, got {tau2!r}")
    u = w_sum = v = 0.0
    for stratum in strata:
        k1, n1, k2, n2 = (_count(nm, x) for nm, x in zip(("k1", "n1", "k2", "n2"), stratum))
        if k1 > n1 or k2 > n2:
            raise ValueError(f"successes exceed rows in stratum {tuple(stratum)!r}")
        if n1 == 0 or n2 == 0:
            continue
        w = n1 * n2 / (n1 + n2)
        p_bar = (k1 + k2) / (n1 + n2)
        u += w * (k2 / n2 - k1 / n1)
        w_sum += w
        v += w * p_bar * (1.0 - p_bar)
    if w_sum == 0.0 or v == 0.0:
        return 1.0
    return _mixture_lambda(u / w_sum, v / w_sum**2, tau2)


# --------------------------------------------------------------------------- intervals
def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for one proportion k/n.

    The closed form of the score interval (what
    ``binomtest(k, n).proportion_ci(method="wilson")`` computes, about 50 times
    faster)::

        (k + z²/2 ± z·sqrt(k(n − k)/n + z²/4)) / (n + z²)

    No rows (n = 0): nothing is known, (0.0, 1.0).
    """
    k, n = _count("k", k), _count("n", n)
    if k > n:
        raise ValueError(f"k ({k}) exceeds n ({n})")
    z = _z(confidence)
    if n == 0:
        return (0.0, 1.0)
    z2 = z * z
    center = k + z2 / 2.0
    half = z * math.sqrt(k * (n - k) / n + z2 / 4.0)
    denom = n + z2
    lo = 0.0 if k == 0 else (center - half) / denom
    hi = 1.0 if k == n else (center + half) / denom
    return (max(0.0, lo), min(1.0, hi))


def newcombe_diff(k1: int, n1: int, k2: int, n2: int, confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (his method 10) for p₂ − p₁, independent arms.

    With Wilson intervals (l₁, u₁) for p₁ and (l₂, u₂) for p₂ and d = p̂₂ − p̂₁::

        lo = d − sqrt((p̂₂ − l₂)² + (u₁ − p̂₁)²)
        hi = d + sqrt((u₂ − p̂₂)² + (p̂₁ − l₁)²)

    (Newcombe 1998, *Stat Med* 17:873.) An empty arm gives (−1, 1).
    """
    k1, n1, k2, n2 = _count("k1", k1), _count("n1", n1), _count("k2", k2), _count("n2", n2)
    if k1 > n1 or k2 > n2:
        raise ValueError("successes exceed rows")
    if n1 == 0 or n2 == 0:
        return (-1.0, 1.0)
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, confidence)
    l2, u2 = wilson(k2, n2, confidence)
    d = p2 - p1
    lo = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    hi = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return (max(-1.0, lo), min(1.0, hi))


def _tango_z(delta: float, c: int, b: int, n: int) -> float:
    """Tango's score statistic for H0: (c − b)/n-difference equals ``delta``.

    Cells: x12 = c (challenger only right), x21 = b; Δ = π12 − π21. The
    restricted MLE of π21 solves 2n q² + B q + C = 0 with
    B = −x12 − x21 + (2n − x12 + x21)Δ and C = −x21 Δ(1 − Δ).
    """
    x12, x21 = c, b
    a_coef = 2.0 * n
    b_coef = -x12 - x21 + (2.0 * n - x12 + x21) * delta
    c_coef = -x21 * delta * (1.0 - delta)
    disc = max(0.0, b_coef * b_coef - 4.0 * a_coef * c_coef)
    q21 = (math.sqrt(disc) - b_coef) / (2.0 * a_coef)
    var = n * (2.0 * q21 + delta * (1.0 - delta))
    num = x12 - x21 - n * delta
    if var <= 0.0:
        return math.copysign(math.inf, num) if num != 0 else 0.0
    return num / math.sqrt(var)


def paired_diff_interval(b: int, c: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Interval for the paired accuracy difference Δ = (c − b)/n (challenger − champion).

    Method: Tango's asymptotic score interval (Tango 1998, *Stat Med* 17:891),
    which needs only the discordant counts and n (the concordant cells enter
    only through n). It is the set of Δ whose score statistic
    ``(c − b − nΔ) / sqrt(n(2 q̂(Δ) + Δ(1 − Δ)))`` (q̂ the restricted MLE of
    the champion-only cell) lies within ±z; both ends are found by root
    finding. Unlike a Wald interval it never collapses to a point when
    b = c = 0 and stays inside [−1, 1]. n = 0 → (−1, 1).
    """
    b, c, n = _count("b", b), _count("c", c), _count("n", n)
    if b + c > n:
        raise ValueError(f"b + c ({b + c}) exceeds n ({n})")
    if n == 0:
        return (-1.0, 1.0)
    z = _z(confidence)
    est = (c - b) / n
    eps = 1e-12

    def f(delta: float, target: float) -> float:
        return _tango_z(delta, c, b, n) - target

    # The statistic decreases in Δ: lower end where it equals +z, upper where −z.
    lo_edge, hi_edge = -1.0 + eps, 1.0 - eps
    if est <= lo_edge or f(lo_edge, z) <= 0.0:
        lo = -1.0
    else:
        lo = optimize.brentq(f, lo_edge, est, args=(z,), xtol=1e-12)
    if est >= hi_edge or f(hi_edge, -z) >= 0.0:
        hi = 1.0
    else:
        hi = optimize.brentq(f, est, hi_edge, args=(-z,), xtol=1e-12)
    return (float(lo), float(hi))


def confidence_sequence(s_n: float, n: int, s2: float, rho: float, alpha: float) -> tuple[float, float]:
    """Always-valid confidence sequence for the mean paired difference Δ.

    Per-row differences D ∈ {−1, 0, 1} (challenger right minus champion
    right), ``S_n = ΣD``, ``s2`` a per-row variance estimate. With probability
    ≥ 1 − α, simultaneously for every n (normal mixture; Howard, Ramdas,
    McAuliffe & Sekhon 2021; asymptotically valid with an estimated variance,
    Waudby-Smith et al. 2021)::

        |S_n − nΔ| ≤ r = sqrt((n s² + ρ) · log((n s² + ρ) / (ρ α²)))

    so Δ ∈ [(S_n − r)/n, (S_n + r)/n]. ``rho`` (ρ > 0) places the tightest
    point near ``n s² ≈ ρ``. Δ is an accuracy difference, so the interval is
    clipped to [−1, 1]; n = 0 → (−1, 1).
    """
    n = _count("n", n)
    s_n = _finite("s_n", s_n)
    if _finite("s2", s2) < 0:
        raise ValueError(f"s2 must be >= 0, got {s2!r}")
    r = normal_mixture_radius(n * s2, rho, alpha)
    if n == 0:
        return (-1.0, 1.0)
    return (max(-1.0, (s_n - r) / n), min(1.0, (s_n + r) / n))


def normal_mixture_radius(v: float, rho: float, alpha: float) -> float:
    """Half-width of the normal-mixture boundary for a sum with variance ``v``.

    ``sqrt((v + ρ) · log((v + ρ) / (ρ α²)))``: the radius in
    :func:`confidence_sequence` (there ``v = n s²``), usable for any sum of
    independent terms whose variance is ``v``.
    """
    _level("alpha", alpha)
    if _finite("rho", rho) <= 0:
        raise ValueError(f"rho must be > 0, got {rho!r}")
    if _finite("v", v) < 0:
        raise ValueError(f"v must be >= 0, got {v!r}")
    total = v + rho
    return math.sqrt(total * math.log(total / (rho * alpha * alpha)))


def noninferiority_lambda(s_n: float, n: int, s2: float, rho: float, margin: float) -> float:
    """The normal-mixture likelihood ratio behind :func:`confidence_sequence`.

    For H0: Δ = −margin, with ``x = S_n + n·margin`` and ``V = n s²``::

        Λ = sqrt(ρ / (V + ρ)) · exp(x² / (2 (V + ρ)))      (x > 0; else 1)

    Algebraically, the confidence sequence's lower bound exceeds −margin
    exactly when Λ > 1/α, so ``min(1, 1/Λ)`` is the always-valid p-value of
    non-inferiority that matches the canary's ramp rule.
    """
    n = _count("n", n)
    s_n, s2, margin = _finite("s_n", s_n), _finite("s2", s2), _finite("margin", margin)
    if _finite("rho", rho) <= 0:
        raise ValueError(f"rho must be > 0, got {rho!r}")
    x = s_n + n * margin
    if n == 0 or x <= 0:
        return 1.0
    v = n * max(s2, 0.0) + rho
    log_lam = 0.5 * math.log(rho / v) + x * x / (2.0 * v)
    return lambda_of_log(log_lam)


def bernoulli_mixture_log_lambda(k, n, p, prior=(1.0, 1.0)):
    """log of Robbins' beta-binomial mixture martingale for a Bernoulli mean ``p``.

    With ``k`` successes in ``n`` trials and a Beta(a, b) mixture over the
    mean (``prior``)::

        log M_n(p) = betaln(a + k, b + n − k) − betaln(a, b) − k·log p − (n − k)·log(1 − p)

    Under a true mean ``p`` this is a nonnegative martingale with M_0 = 1
    (Robbins 1970; Howard, Ramdas, McAuliffe & Sekhon 2021), whatever the
    number of trials or when anyone looks, and also when the trials are
    served to the arm adaptively (its share changed between batches).
    Vectorised over numpy arrays.
    """
    a, b = float(prior[0]), float(prior[1])
    if not (a > 0 and b > 0):
        raise ValueError(f"prior must be two positive Beta parameters, got {prior!r}")
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    p = np.asarray(p, dtype=float)
    if np.any(np.isnan(k)) or np.any(np.isnan(n)) or np.any(np.isnan(p)):
        raise ValueError("NaN in the counts or the mean of a Bernoulli confidence sequence")
    with np.errstate(divide="ignore", invalid="ignore"):
        kp = np.where(k > 0, k * np.log(p), 0.0)
        fq = np.where(n - k > 0, (n - k) * np.log1p(-p), 0.0)
    return _scalar_or_array(betaln(a + k, b + n - k) - betaln(a, b) - kp - fq)


def bernoulli_cs(k, n, alpha: float, prior=(1.0, 1.0), iterations: int = 12, start=None):
    """Always-valid confidence sequence for a Bernoulli mean from ``k`` of ``n``.

    The set {p : M_n(p) < 1/α} of :func:`bernoulli_mixture_log_lambda`; by
    Ville's inequality it holds the true mean at every n at once with
    probability ≥ 1 − α. Exact for 0/1 outcomes at any sample size (no
    variance is estimated: an arm with 0, 1 or only right rows gets a wide
    interval, never a point). n = 0 → (0, 1). Returns ``(lower, upper)``;
    vectorised (``k``, ``n`` may be arrays).

    The ends are the roots of f = log M_n − log(1/α), which is convex in
    x = log p below k/n and in y = log(1 − p) above it; Newton's method on a
    convex function lands outside the root after its first step and then
    approaches it monotonically from outside, so the returned interval is
    never narrower than the exact one (``iterations`` steps; 12 reach double
    precision from the normal-approximation start). ``start`` = an earlier
    ``(lower, upper)`` of the same arm to start from (a simulation looking
    after every row needs 3 steps from there, not 12).
    """
    _level("alpha", alpha)
    a, b = float(prior[0]), float(prior[1])
    if not (a > 0 and b > 0):
        raise ValueError(f"prior must be two positive Beta parameters, got {prior!r}")
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    if np.any(np.isnan(k)) or np.any(np.isnan(n)):
        raise ValueError("NaN in the counts of a Bernoulli confidence sequence")
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("successes must lie within 0..n")
    k, n = np.broadcast_arrays(k, n)
    f_ = n - k
    # f(p) = const − k·log p − (n − k)·log(1 − p), const = log B(a + k, b + n − k) − log B(a, b) − log(1/α).
    const = betaln(a + k, b + f_) - betaln(a, b) - math.log(1.0 / alpha)
    safe_n = np.maximum(n, 1.0)
    centre = np.clip(k / safe_n, 1e-12, 1 - 1e-12)
    spread = np.sqrt(np.maximum(centre * (1 - centre), 1.0 / safe_n) * 2.0 * (math.log(1.0 / alpha) + 1.0) / safe_n)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # Lower end, in x = log p (x < log centre): f(x) = const − k·x − (n − k)·log(1 − e^x).
        guess_lo = centre - spread if start is None else np.asarray(start[0], dtype=float)
        guess_hi = centre + spread if start is None else np.asarray(start[1], dtype=float)
        x = np.log(np.clip(guess_lo, 1e-300, centre * (1 - 1e-9)))
        for _ in range(iterations):
            ex = np.exp(x)
            fx = const - k * x - f_ * np.log1p(-ex)
            dfx = -k + f_ * ex / (1.0 - ex)
            x = np.where(dfx < 0, x - fx / dfx, x)
            x = np.minimum(x, np.log(centre))
        lower = np.exp(x)
        # Upper end, in y = log(1 − p): f(y) = const − k·log(1 − e^y) − (n − k)·y.
        y = np.log(np.clip(1 - guess_hi, 1e-300, (1 - centre) * (1 - 1e-9)))
        for _ in range(iterations):
            ey = np.exp(y)
            fy = const - k * np.log1p(-ey) - f_ * y
            dfy = -f_ + k * ey / (1.0 - ey)
            y = np.where(dfy < 0, y - fy / dfy, y)
            y = np.minimum(y, np.log1p(-centre))
        upper = 1.0 - np.exp(y)
    lower = np.where((k > 0) & (n > 0), np.clip(lower, 0.0, 1.0), 0.0)
    upper = np.where((f_ > 0) & (n > 0), np.clip(upper, 0.0, 1.0), 1.0)
    return _scalar_or_array(lower), _scalar_or_array(upper)


# --------------------------------------------------------------------------- fixed-n unpaired tests
def two_proportion_z(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """Pooled two-proportion z test of p₂ = p₁; returns ``(z, two_sided_p)``.

    ``z = (p̂₂ − p̂₁) / sqrt(p̄(1 − p̄)(1/n₁ + 1/n₂))``, positive when arm 2 (the
    challenger) is better. An empty arm or a pooled proportion of 0 or 1
    carries no evidence: (0.0, 1.0).
    """
    k1, n1, k2, n2 = _count("k1", k1), _count("n1", n1), _count("k2", k2), _count("n2", n2)
    if k1 > n1 or k2 > n2:
        raise ValueError("successes exceed rows")
    if n1 == 0 or n2 == 0:
        return (0.0, 1.0)
    p_bar = (k1 + k2) / (n1 + n2)
    var = p_bar * (1.0 - p_bar) * (1.0 / n1 + 1.0 / n2)
    if var == 0.0:
        return (0.0, 1.0)
    z = (k2 / n2 - k1 / n1) / math.sqrt(var)
    return (float(z), float(2.0 * norm.sf(abs(z))))


def fisher(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided Fisher exact p-value of the 2×2 table [[k1, n1−k1], [k2, n2−k2]]."""
    k1, n1, k2, n2 = _count("k1", k1), _count("n1", n1), _count("k2", k2), _count("n2", n2)
    if k1 > n1 or k2 > n2:
        raise ValueError("successes exceed rows")
    if n1 == 0 or n2 == 0:
        return 1.0
    return float(fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="two-sided").pvalue)


# --------------------------------------------------------------------------- planning
def _ceil(x: float) -> int:
    """Round a sample size up, ignoring floating-point dust just above an integer."""
    return int(math.ceil(x - 1e-9))


def sample_size_unpaired(p1: float, p2: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Rows per arm for a two-sided two-proportion test (equal arms).

    ``n = (z₁₋α/₂·√(2p̄q̄) + z₁₋β·√(p₁q₁ + p₂q₂))² / (p₁ − p₂)²``, rounded up;
    p̄ = (p₁ + p₂)/2. 90 → 92% at α 0.05, power 0.8: 3,213; 90 → 91%: 13,495.
    """
    _level("alpha", alpha)
    _level("power", power)
    for name, p in (("p1", p1), ("p2", p2)):
        if not 0.0 < p < 1.0:
            raise ValueError(f"{name} must be strictly between 0 and 1, got {p!r}")
    if p1 == p2:
        raise ValueError("p1 and p2 are equal: no sample size detects a zero difference")
    za, zb = norm.ppf(1.0 - alpha / 2.0), norm.ppf(power)
    p_bar = (p1 + p2) / 2.0
    root = za * math.sqrt(2.0 * p_bar * (1.0 - p_bar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return _ceil(root**2 / (p1 - p2) ** 2)


def sample_size_paired(p_discordant: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Rows (pairs) for a two-sided McNemar test, Connor's (1987) formula.

    ψ = ``p_discordant`` (share of rows where the models disagree on
    correctness, b + c over n), δ = ``effect`` (accuracy difference)::

        n = (z₁₋α/₂·√ψ + z₁₋β·√(ψ − δ²))² / δ²

    90 → 92%: 391 at the ideal ψ = δ, 783 at 4% discordant, 1,960 at 10%.
    """
    _level("alpha", alpha)
    _level("power", power)
    psi, delta = float(p_discordant), abs(float(effect))
    if delta == 0.0:
        raise ValueError("effect is zero: no sample size detects a zero difference")
    if not delta <= psi <= 1.0:
        raise ValueError(f"p_discordant ({psi}) must lie in [|effect|, 1] = [{delta}, 1]")
    za, zb = norm.ppf(1.0 - alpha / 2.0), norm.ppf(power)
    root = za * math.sqrt(psi) + zb * math.sqrt(psi - delta * delta)
    return _ceil(root**2 / delta**2)


# --------------------------------------------------------------------------- split sanity
def srm_pvalue(observed_counts: Sequence[int], planned_shares: Sequence[float]) -> float:
    """Sample-ratio mismatch: does the observed split fit the planned one?

    ``observed_counts`` per arm, in the unit routing randomizes: **distinct
    keys** (routing hashes keys, so a key repeated on many rows is one draw,
    not many); ``planned_shares`` the planned split in any unit (fractions,
    basis points). Arms planned at zero must be empty (any key there is a
    mismatch: p = 0.0) and are otherwise dropped. No keys → 1.0.

    Chi-square goodness of fit when every expected count is at least 5;
    otherwise exact: two arms → the exact binomial test; more → the smallest
    exact binomial p of one arm against the rest, times the number of arms
    (Bonferroni, conservative). A tiny p (conventionally < 0.001) means the
    routing is broken and the experiment's result cannot be trusted.
    """
    obs = np.asarray(observed_counts, dtype=float)
    shares = np.asarray(planned_shares, dtype=float)
    if obs.shape != shares.shape or obs.ndim != 1:
        raise ValueError("observed_counts and planned_shares must be 1-D and of equal length")
    if np.any(np.isnan(obs)) or np.any(np.isnan(shares)):
        raise ValueError("NaN in the observed counts or the planned shares")
    if np.any(obs < 0) or np.any(shares < 0):
        raise ValueError("counts and shares must be non-negative")
    if np.any(obs != np.floor(obs)):
        raise ValueError("observed counts must be integers")
    if shares.sum() <= 0:
        raise ValueError("planned shares sum to zero")
    if np.any(obs[shares == 0] > 0):
        return 0.0
    keep = shares > 0
    obs, shares = obs[keep], shares[keep]
    total = obs.sum()
    if total == 0 or obs.size < 2:
        return 1.0
    fractions = shares / shares.sum()
    expected = total * fractions
    if expected.min() >= 5:
        return float(chisquare(obs, f_exp=expected).pvalue)
    exact = [float(binomtest(int(o), int(total), float(f)).pvalue) for o, f in zip(obs, fractions)]
    if obs.size == 2:
        return exact[0]
    return float(min(1.0, obs.size * min(exact)))


# --------------------------------------------------------------------------- exact power
def power_mcnemar(n: int, p_discordant: float, effect: float, alpha: float = 0.05) -> float:
    """Exact power of the two-sided exact McNemar test at ``n`` pairs to *promote*.

    The discordant count k ~ Binomial(n, ψ); given k, c ~ Binomial(k, θ) with
    θ = (ψ + δ)/(2ψ). A promotion is a rejection with c > b: c ≥ k − c*(k),
    c*(k) the largest count whose two-sided exact p-value 2·P(X ≤ c*) under
    Binomial(k, 1/2) is at most α. Summed exactly over k.
    """
    from scipy.stats import binom

    n = _count("n", n)
    _level("alpha", alpha)
    psi, delta = _finite("p_discordant", p_discordant), _finite("effect", effect)
    if not abs(delta) <= psi <= 1.0 or psi == 0.0:
        raise ValueError(f"p_discordant ({psi}) must lie in [|effect|, 1] = [{abs(delta)}, 1] and be > 0")
    if n == 0:
        return 0.0
    k = np.arange(n + 1)
    # c*(k): largest c with 2·cdf(c; k, 1/2) ≤ α (−1 when none), found on the quantile then corrected.
    cstar = binom.ppf(alpha / 2.0, k, 0.5).astype(int)
    cstar = np.where(2.0 * binom.cdf(cstar, k, 0.5) <= alpha, cstar, cstar - 1)
    theta = (psi + delta) / (2.0 * psi)
    # P(c ≥ k − c*) = sf(k − c* − 1); no rejection region (c* < 0) contributes nothing.
    promote = np.where(cstar >= 0, binom.sf(k - cstar - 1, k, theta), 0.0)
    promote = np.where(k - cstar > cstar, promote, 0.0)  # the upper region must lie above the lower
    return float(np.sum(binom.pmf(k, n, psi) * promote))


def power_two_proportion(n: int, p1: float, p2: float, alpha: float = 0.05) -> float:
    """Exact power, at ``n`` rows per arm, of the pooled two-proportion z test to promote arm 2.

    Sums Binomial(n, p1) × Binomial(n, p2) over every (k1, k2) where the
    two-sided z test rejects (|z| ≥ z₁₋α/₂) with k2 > k1, on ±10 standard
    deviations of each arm (the rest is below 1e-20).
    """
    from scipy.stats import binom

    n = _count("n", n)
    _level("alpha", alpha)
    p1, p2 = _finite("p1", p1), _finite("p2", p2)
    if n == 0:
        return 0.0

    def support(p):
        sd = math.sqrt(n * p * (1 - p))
        lo, hi = max(0, int(n * p - 10 * sd) - 1), min(n, int(n * p + 10 * sd) + 1)
        x = np.arange(lo, hi + 1)
        return x, binom.pmf(x, n, p)

    k1, w1 = support(p1)
    k2, w2 = support(p2)
    K1, K2 = np.meshgrid(k1, k2, indexing="ij")
    pooled = (K1 + K2) / (2.0 * n)
    var = pooled * (1 - pooled) * (2.0 / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(var > 0, (K2 - K1) / n / np.sqrt(var), 0.0)
    reject = z >= norm.ppf(1.0 - alpha / 2.0)
    return float(np.sum(np.outer(w1, w2) * reject))


@functools.lru_cache(maxsize=256)
def planned_n_paired(p_discordant: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Pairs for the exact McNemar test planned by its exact power (:func:`power_mcnemar`).

    The smallest n whose exact power to promote is ≥ ``power`` there and at
    the next 20 sizes (the A/B decides at the first batch boundary past the
    plan). Connor's formula (:func:`sample_size_paired`) falls short: 76.5% at
    its 783 pairs (ψ 4%, 90 → 92%).
    """
    _level("power", power)
    start = sample_size_paired(p_discordant, effect, alpha, power)
    cache: dict[int, float] = {}

    def at(n):
        if n not in cache:
            cache[n] = power_mcnemar(n, p_discordant, abs(effect), alpha)
        return cache[n]

    return _smallest_n_with_power(at, start, power, hold=20)


@functools.lru_cache(maxsize=256)
def planned_n_unpaired(p1: float, p2: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Rows per arm for the two-proportion z test planned by its exact power (:func:`power_two_proportion`)."""
    _level("power", power)
    start = sample_size_unpaired(p1, p2, alpha, power)
    lo_p, hi_p = min(p1, p2), max(p1, p2)
    cache: dict[int, float] = {}

    def at(n):
        if n not in cache:
            cache[n] = power_two_proportion(n, lo_p, hi_p, alpha)
        return cache[n]

    return _smallest_n_with_power(at, start, power, hold=20)


def _smallest_n_with_power(power_at, start: int, power: float, hold: int = 0) -> int:
    """Smallest n ≥ 1 whose exact power (``power_at(n)``) is at least ``power`` at n and the ``hold`` next sizes."""
    hi = max(1, start)
    while power_at(hi) < power:
        hi *= 2
    lo = 0  # power_at(0) = 0 < power
    while hi - lo > 1:  # bisection on the (nearly monotone) power curve
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if power_at(mid) >= power else (mid, hi)
    n = hi
    # Exact power saw-tooths in n: step on until it holds over the next ``hold`` sizes too.
    while True:
        short = next((m for m in range(n, n + hold + 1) if power_at(m) < power), None)
        if short is None:
            return n
        n = short + 1


# --------------------------------------------------------------------------- bandit
def _beta_draws(successes, failures, draws: int, rng: np.random.Generator) -> np.ndarray:
    s = np.asarray(successes, dtype=float)
    f = np.asarray(failures, dtype=float)
    if s.ndim != 1 or s.shape != f.shape or s.size == 0:
        raise ValueError("successes and failures must be equal-length, non-empty 1-D sequences")
    if np.any(s < 0) or np.any(f < 0):
        raise ValueError("successes and failures must be non-negative")
    if int(draws) < 1:
        raise ValueError("draws must be >= 1")
    # Beta(1 + right, 1 + wrong): the uniform prior updated by the feedback.
    return rng.beta(1.0 + s, 1.0 + f, size=(int(draws), s.size))


def prob_best(successes, failures, draws: int = 20_000, rng: np.random.Generator | None = None) -> np.ndarray:
    """Monte Carlo posterior probability that each arm has the highest accuracy.

    Each arm's accuracy ~ Beta(1 + right, 1 + wrong); ``draws`` joint draws,
    ties split evenly. Returns an array summing to 1. Deterministic for a
    seeded ``rng`` (default: ``numpy.random.default_rng(0)``).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    samples = _beta_draws(successes, failures, draws, rng)
    best = samples.max(axis=1, keepdims=True)
    winners = samples == best
    return (winners / winners.sum(axis=1, keepdims=True)).mean(axis=0)


def thompson_shares(successes, failures, draws: int, rng: np.random.Generator, floor: float = 0.0) -> np.ndarray:
    """Thompson-sampling traffic shares for the next batch.

    Batched Thompson sampling (probability matching): each arm's share is its
    posterior probability of being best (:func:`prob_best`). ``floor`` keeps a
    minimum share per arm (exploration), the rest is matched to P(best).
    Returns fractions summing to 1.
    """
    p = prob_best(successes, failures, draws, rng)
    k = p.size
    if not 0.0 <= floor * k <= 1.0:
        raise ValueError(f"floor {floor} times {k} arms exceeds 1")
    return floor + (1.0 - floor * k) * p


def shares_to_bp(shares: Sequence[float], total: int = 10_000) -> list[int]:
    """Fractions to integer basis points summing exactly to ``total`` (largest remainder)."""
    arr = np.asarray(shares, dtype=float)
    if arr.ndim != 1 or np.any(arr < 0) or arr.sum() <= 0:
        raise ValueError("shares must be non-negative and not all zero")
    raw = arr / arr.sum() * total
    base = np.floor(raw).astype(int)
    short = total - int(base.sum())
    order = np.argsort(-(raw - base), kind="stable")
    base[order[:short]] += 1
    return [int(x) for x in base]
