"""Decision quality at every window size, vectorised over experiments (issue 8's harness cells).

Run by ``benchmarks/decision_quality.py`` (its report and ``DECISIONS.md`` include this grid),
or alone:

    .venv/bin/python -m benchmarks.decision_grid --experiments 10000
    .venv/bin/python -m benchmarks.decision_grid --experiments 2000 --only bandit/outcome --side-runs 200

Each cell simulates R experiments at once with numpy, one look per window, and applies the
strategy's decision rule to every experiment after every window:

- canary and bandit, label (paired) and outcome (served traffic) feedback, windows of 1, 5,
  10, 20, 50, 100 and 1,000 rows, up to ``--max-rows`` rows per experiment; the bounded error
  (canary: promoting a challenger worse by δ; bandit: promoting a no-better one) with its
  one-sided 95% Clopper–Pearson upper bound, and the power at 90 → 92%;
- the outcome canary's interval as it was before issue 8 (plug-in variance, normal mixture,
  stratified by window) beside the Bernoulli sequences that replaced it: its error at small
  windows and its speed at 1,000-row windows;
- the sample-ratio check on Zipf-keyed traffic (keys repeat; routing hashes keys): false
  alarms per look counting rows against counting distinct keys;
- a static source re-read every window: a no-better challenger's false promotions when the
  same rows are counted again at every look, against counting each input once.

The rules are the ones ``irisdag.core.strategies`` applies, restated over arrays with the same
``irisdag.core.stats`` functions (``bernoulli_cs``, ``paired_msprt``, ``srm_pvalue``'s tests);
``irisdag_tests/unit/test_decision_quality.py`` replays experiments of every cell through
``decide_canary`` / ``decide_bandit`` and requires the same decision at the same window. Two
stated differences: the outcome bandit's Thompson shares (who is served next: the champion's
floor, ``BanditState.champion_floor_bp``, then the rest by P(best)) use the normal
approximation of P(best), and the
Bernoulli sequences start from the previous look's bounds (4 Newton steps; never narrower).
The bandit's trigger P(best) (never the verdict) is by default the normal approximation of the
two Beta posteriors; ``GridSim(exact_trigger=True)`` uses the strategy's own Monte Carlo and seed
(the replay test does; over 10,000 experiments it costs hours).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import beta as beta_dist
from scipy.stats import chisquare, norm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from irisdag.core import stats  # noqa: E402
from irisdag.core.strategies import DEFAULT_CANARY_STEPS_BP, DEFAULT_CHAMPION_FLOOR_BP  # noqa: E402

WINDOWS = (1, 5, 10, 20, 50, 100, 1000)
NONE, PROMOTE, ABORT = 0, 1, 2


@dataclass(frozen=True)
class GridSim:
    p_champion: float = 0.90
    discordant: float = 0.04
    alpha: float = 0.05
    delta: float = 0.01
    rho: float = 20.0
    min_rows_per_step: int = 500
    threshold: float = 0.95
    mixture: float = 1.0
    max_rows: int = 10_000
    gain: float = 0.02
    seed: int = 20240101
    # The bandit's trigger P(best) by the strategy's own Monte Carlo and seed (exact replay), or by the
    # normal approximation (fast: the trigger never decides the direction; the confirmatory test does).
    exact_trigger: bool = False
    # The outcome bandit's served shares, as ``BanditState`` sets them (its defaults).
    champion_floor_bp: int = DEFAULT_CHAMPION_FLOOR_BP
    floor_bp: int = 0


def cp_upper(x: int, n: int, confidence: float = 0.95) -> float:
    return 1.0 if x >= n else float(beta_dist.ppf(confidence, x + 1, n - x))


def _paired_probs(sim: GridSim, diff: float) -> np.ndarray:
    psi = sim.discordant
    p_b, p_c = (psi - diff) / 2, (psi + diff) / 2
    both = sim.p_champion - p_b
    return np.array([p_b, p_c, both, 1 - both - p_b - p_c])


# =========================================================================== drawing
def _draw4(rng, window: int, probs: np.ndarray, size: int) -> np.ndarray:
    """(size, 4) multinomial counts of ``window`` rows over (b, c, both right, both wrong).

    One uniform per experiment for a single row, else conditional binomials (the same law as
    ``rng.multinomial``, several times faster for 10,000 experiments at once)."""
    if window == 1:
        cat = np.searchsorted(np.cumsum(probs)[:-1], rng.random(size), side="right")
        return np.eye(4, dtype=np.int64)[cat]
    out = np.empty((size, 4), dtype=np.int64)
    left = np.full(size, window, dtype=np.int64)
    rest = 1.0
    for j in range(3):
        p = min(1.0, max(0.0, probs[j] / rest)) if rest > 0 else 0.0
        out[:, j] = rng.binomial(left, p)
        left = left - out[:, j]
        rest -= probs[j]
    out[:, 3] = left
    return out


def _cs_update(k, n, alpha, lo, hi, changed, warm: bool):
    """Each arm's Bernoulli confidence sequence (``stats.bernoulli_cs``) after a window.

    The first look solves from scratch (12 Newton steps); later looks start from the arm's previous
    bounds (4 steps) and recompute only arms whose counts changed: an arm that got no row keeps
    its bounds (the sequence is a function of (k, n))."""
    if not warm:
        lo, hi = stats.bernoulli_cs(k, n, alpha)
        return np.atleast_1d(lo).astype(float), np.atleast_1d(hi).astype(float)
    idx = np.flatnonzero(changed)
    if idx.size:
        lo, hi = lo.copy(), hi.copy()
        lo_i, hi_i = stats.bernoulli_cs(k[idx], n[idx], alpha, iterations=4, start=(lo[idx], hi[idx]))
        lo[idx], hi[idx] = lo_i, hi_i
    return lo, hi


def _split(rng, window: int, share) -> np.ndarray:
    """Rows of a window served to the challenger at ``share`` (a uniform per experiment for one row)."""
    share = np.asarray(share, dtype=float)
    if window == 1:
        return (rng.random(share.shape) < share).astype(np.int64)
    return rng.binomial(window, share)


def _right(rng, n: np.ndarray, p: float) -> np.ndarray:
    """Right answers among ``n`` served rows of accuracy ``p`` (a uniform per experiment when n ≤ 1)."""
    if n.max(initial=0) <= 1:
        return (n * (rng.random(n.shape) < p)).astype(np.int64)
    return rng.binomial(n, p)


class _Live:
    """State arrays of the experiments still open, compacted as experiments decide."""

    def __init__(self, runs: int, **arrays):
        self.ids = np.arange(runs)
        self.a = {k: np.asarray(v).copy() for k, v in arrays.items()}

    def __getattr__(self, name):
        try:
            return self.__dict__["a"][name]
        except KeyError:
            raise AttributeError(name) from None

    def set(self, **arrays):
        self.a.update(arrays)

    def keep(self, mask: np.ndarray) -> None:
        self.ids = self.ids[mask]
        self.a = {k: (v[mask] if isinstance(v, np.ndarray) and v.shape[:1] == mask.shape else v)
                  for k, v in self.a.items()}


def _trace_full(trace, runs: int, ids: np.ndarray, rows: np.ndarray) -> None:
    if trace is not None:
        full = np.zeros((runs, rows.shape[1]), dtype=np.int64)
        full[ids] = rows
        trace.append(full)


# =========================================================================== canary
def run_canary(sim: GridSim, feedback: str, diff: float, window: int, runs: int, rng, method: str = "new",
               trace: list | None = None):
    """(code, rows at decision) per experiment. ``method`` "old": the pre-issue-8 outcome interval.

    ``trace`` (a list) receives each window's counts per experiment, for replaying through the strategy:
    label (runs, 4) b, c, both right, both wrong; outcome (runs, 4) k1, n1, k2, n2 (zeros once decided).
    """
    steps = np.array(DEFAULT_CANARY_STEPS_BP)
    last = len(steps) - 1
    code = np.zeros(runs, dtype=np.int64)
    when = np.full(runs, sim.max_rows, dtype=np.int64)
    p1, p2 = sim.p_champion, sim.p_champion + diff
    probs = _paired_probs(sim, diff)
    z = np.zeros(runs)
    st = _Live(runs, step=np.zeros(runs, dtype=np.int64), started=z, B=z, C=z, N=z, K1=z, N1=z, K2=z, N2=z,
               U=z, W=z, V=z, lo1=z, hi1=z + 1, lo2=z, hi2=z + 1)
    warm = False
    for look in range(sim.max_rows // window):
        m = len(st.ids)
        if m == 0:
            break
        if feedback == "label":
            draw = _draw4(rng, window, probs, m)
            _trace_full(trace, runs, st.ids, draw)
            B, C, N = st.B + draw[:, 0], st.C + draw[:, 1], st.N + window
            st.set(B=B, C=C, N=N)
            n_all = N
            s_n = C - B
            s2 = (B + C) / N - (s_n / N) ** 2
            v = N * s2 + sim.rho
            r = np.sqrt(v * np.log(v / (sim.rho * sim.alpha ** 2)))
            lo, hi = np.maximum(-1, (s_n - r) / N), np.minimum(1, (s_n + r) / N)
        else:
            share = steps[st.step] / 10000
            n2 = _split(rng, window, share)
            n1 = window - n2
            k1, k2 = _right(rng, n1, p1), _right(rng, n2, p2)
            _trace_full(trace, runs, st.ids, np.stack([k1, n1, k2, n2], axis=1))
            K1, N1, K2, N2 = st.K1 + k1, st.N1 + n1, st.K2 + k2, st.N2 + n2
            st.set(K1=K1, N1=N1, K2=K2, N2=N2)
            n_all = N1 + N2
            if method == "new":
                a2 = sim.alpha / 2
                lo1, hi1 = _cs_update(K1, N1, a2, st.lo1, st.hi1, n1 > 0, warm)
                lo2, hi2 = _cs_update(K2, N2, a2, st.lo2, st.hi2, n2 > 0, warm)
                st.set(lo1=lo1, hi1=hi1, lo2=lo2, hi2=hi2)
                warm = True
                lo = np.maximum(-1, st.lo2 - st.hi1)
                hi = np.minimum(1, st.hi2 - st.lo1)
            else:  # plug-in variance, normal mixture, stratified by window (removed by issue 8)
                both = (n1 > 0) & (n2 > 0)
                w = np.where(both, n1 * n2 / np.maximum(n1 + n2, 1), 0.0)
                q1, q2 = k1 / np.maximum(n1, 1), k2 / np.maximum(n2, 1)
                U, W = st.U + w * (q2 - q1), st.W + w
                V = st.V + np.where(both, w * w * (q1 * (1 - q1) / np.maximum(n1, 1)
                                                   + q2 * (1 - q2) / np.maximum(n2, 1)), 0)
                st.set(U=U, W=W, V=V)
                r = np.sqrt((V + sim.rho) * np.log((V + sim.rho) / (sim.rho * sim.alpha ** 2)))
                safe = np.maximum(W, 1e-300)
                lo = np.where(W > 0, np.maximum(-1, (U - r) / safe), -1.0)
                hi = np.where(W > 0, np.minimum(1, (U + r) / safe), 1.0)
        rows = (look + 1) * window
        abort = (n_all > 0) & (hi < 0)
        move = ~abort & (n_all - st.started >= sim.min_rows_per_step) & (lo > -sim.delta)
        promote = move & (st.step == last)
        ramp = move & (st.step < last)
        code[st.ids[abort]], when[st.ids[abort]] = ABORT, rows
        code[st.ids[promote]], when[st.ids[promote]] = PROMOTE, rows
        st.set(step=np.where(ramp, st.step + 1, st.step), started=np.where(ramp, n_all, st.started))
        done = abort | promote
        if done.any():
            st.keep(~done)
    return code, when


# =========================================================================== bandit (one challenger)
def _p_best(right1, n1, right2, n2):
    """P(challenger's accuracy > champion's) under Beta(1 + right, 1 + wrong) posteriors, normal approximation."""
    a1, b1 = 1 + right1, 1 + n1 - right1
    a2, b2 = 1 + right2, 1 + n2 - right2
    m1, m2 = a1 / (a1 + b1), a2 / (a2 + b2)
    v1 = a1 * b1 / ((a1 + b1) ** 2 * (a1 + b1 + 1))
    v2 = a2 * b2 / ((a2 + b2) ** 2 * (a2 + b2 + 1))
    return norm.cdf((m2 - m1) / np.sqrt(v1 + v2))


def _triggered(right1, wrong1, right2, wrong2, n_total, candidates, sim: GridSim) -> np.ndarray:
    """P(best) ≥ threshold for the candidate experiments, computed as ``decide_bandit`` does.

    The same Monte Carlo (``stats.prob_best``, 20,000 draws) with the same seed
    ([0, rows judged, arms]), so a replay through the strategy gives the same trigger.
    """
    out = np.zeros(len(candidates), dtype=bool)
    # Only where the normal approximation is near the threshold can the Monte Carlo reach it.
    near = candidates & (_p_best(right1, right1 + wrong1, right2, right2 + wrong2) >= sim.threshold - 0.05)
    for i in np.flatnonzero(near):
        rng = np.random.default_rng([0, int(n_total[i]), 1])
        p = stats.prob_best([right1[i], right2[i]], [wrong1[i], wrong2[i]], 20_000, rng)
        out[i] = p[1] >= sim.threshold
    return out


def run_bandit(sim: GridSim, feedback: str, diff: float, window: int, runs: int, rng, arms: int = 1,
               trace: list | None = None):
    """(code, rows at decision). One challenger; α is split over ``arms`` as the strategy does.

    ``trace`` receives each window's counts as :func:`run_canary` does."""
    code = np.zeros(runs, dtype=np.int64)
    when = np.full(runs, sim.max_rows, dtype=np.int64)
    alpha_arm = sim.alpha / arms
    p1, p2 = sim.p_champion, sim.p_champion + diff
    probs = _paired_probs(sim, diff)
    z = np.zeros(runs)
    st = _Live(runs, verdict=np.zeros(runs, dtype=np.int64), B=z, C=z, N=z, R1=z, R2=z, K1=z, N1=z, K2=z, N2=z,
               share=z + 0.5,  # initial_shares: champion and the arm start even
               lo1=z, hi1=z + 1, lo2=z, hi2=z + 1)
    warm = False
    for look in range(sim.max_rows // window):
        m = len(st.ids)
        if m == 0:
            break
        live = np.ones(m, dtype=bool)
        if feedback == "label":
            draw = _draw4(rng, window, probs, m)
            _trace_full(trace, runs, st.ids, draw)
            B, C, N = st.B + draw[:, 0], st.C + draw[:, 1], st.N + window
            R1, R2 = st.R1 + draw[:, 0] + draw[:, 2], st.R2 + draw[:, 1] + draw[:, 2]
            _, lam = stats.paired_msprt(B, C, sim.mixture)
            crossed = (st.verdict == 0) & (np.asarray(lam) >= 1 / alpha_arm)
            verdict = np.where(crossed, np.where(C > B, 1, -1), st.verdict)  # the first crossing's direction
            st.set(B=B, C=C, N=N, R1=R1, R2=R2, verdict=verdict)
            trigger = (_triggered(R1, N - R1, R2, N - R2, N, live & (verdict > 0), sim) if sim.exact_trigger
                       else _p_best(R1, N, R2, N) >= sim.threshold)
        else:
            n2 = _split(rng, window, st.share)
            n1 = window - n2
            k1, k2 = _right(rng, n1, p1), _right(rng, n2, p2)
            _trace_full(trace, runs, st.ids, np.stack([k1, n1, k2, n2], axis=1))
            K1, N1, K2, N2 = st.K1 + k1, st.N1 + n1, st.K2 + k2, st.N2 + n2
            lo1, hi1 = _cs_update(K1, N1, sim.alpha / 2, st.lo1, st.hi1, n1 > 0, warm)
            lo2, hi2 = _cs_update(K2, N2, sim.alpha / (2 * arms), st.lo2, st.hi2, n2 > 0, warm)
            warm = True
            verdict = np.where(lo2 > hi1, 1, np.where(hi2 < lo1, -1, 0))
            p_best = _p_best(K1, N1, K2, N2)
            trigger = (_triggered(K1, N1 - K1, K2, N2 - K2, N1 + N2, live & (verdict > 0), sim) if sim.exact_trigger
                       else p_best >= sim.threshold)
            # Thompson: the floors, then the rest of the traffic by P(best) (decide_bandit's shares)
            cf, af = sim.champion_floor_bp / 10000, sim.floor_bp / 10000
            share = af + (1 - cf - af) * p_best
            st.set(K1=K1, N1=N1, K2=K2, N2=N2, lo1=lo1, hi1=hi1, lo2=lo2, hi2=hi2, verdict=verdict, share=share)
        rows = (look + 1) * window
        abort = verdict < 0
        promote = ~abort & (verdict > 0) & trigger
        code[st.ids[abort]], when[st.ids[abort]] = ABORT, rows
        code[st.ids[promote]], when[st.ids[promote]] = PROMOTE, rows
        done = abort | promote
        if done.any():
            st.keep(~done)
    return code, when


# =========================================================================== sample ratio on keys
SRM_CASES = (  # (what, the challenger's planned share in basis points, rows seen at the look)
    ("A/B 50/50", 5000, 6426),
    ("A/B 50/50", 5000, 20_000),
    ("canary first step, 5%", 500, 100),
    ("a 1-bp share (the issue's [9999, 1])", 1, 2000),
)


def _zipf_cdf(universe: int, exponent: float) -> np.ndarray:
    w = 1.0 / np.arange(1, universe + 1) ** exponent
    return np.cumsum(w / w.sum())


def srm_cell(runs: int, rng, cases=SRM_CASES, universe: int = 20_000, exponent: float = 1.1,
             srm_alpha: float = 0.001) -> dict:
    """False alarms of the sample-ratio check per look on Zipf-keyed traffic routed by key.

    Keys repeat (a Zipf-like mix over ``universe`` keys); each key's side is fixed for the
    experiment, as a salted hash is. Per case and run, three p-values: ``stats.srm_pvalue`` on
    rows (the wrong unit), the chi-square on distinct keys whatever the expected counts (the
    wrong test at tiny counts), and ``stats.srm_pvalue`` on distinct keys (the rule: chi-square,
    exact binomial where an expected count is below 5). An alarm is p < ``srm_alpha``.
    """
    cdf = _zipf_cdf(universe, exponent)
    top = max(n for _, _, n in cases)
    out = {i: {"rows": 0, "chi2_keys": 0, "keys": 0, "distinct": 0, "exact_looks": 0} for i in range(len(cases))}
    for _ in range(runs):
        u = rng.random(universe)
        keys = np.minimum(np.searchsorted(cdf, rng.random(top), side="right"), universe - 1)
        for i, (_, bp, n) in enumerate(cases):
            on_arm = u < bp / 10000
            k = keys[:n]
            rows_arm = int(on_arm[k].sum())
            distinct = np.unique(k)
            d, d_arm = len(distinct), int(on_arm[distinct].sum())
            planned = [10000 - bp, bp]
            o = out[i]
            o["rows"] += stats.srm_pvalue([n - rows_arm, rows_arm], planned) < srm_alpha
            exp_ = np.array([d * (10000 - bp), d * bp]) / 10000
            o["chi2_keys"] += chisquare([d - d_arm, d_arm], f_exp=exp_).pvalue < srm_alpha
            o["keys"] += stats.srm_pvalue([d - d_arm, d_arm], planned) < srm_alpha
            o["exact_looks"] += exp_.min() < 5
            o["distinct"] += d
    return {"cases": cases, "counts": out, "runs": runs, "alpha": srm_alpha, "universe": universe,
            "exponent": exponent}


# =========================================================================== a static source re-read
def reread_cell(sim: GridSim, runs: int, rng, windows: int = 50, rows: int = 1000, universe: int = 20_000,
                exponent: float = 1.1) -> dict:
    """A no-better challenger judged (paired mSPRT) on one static source re-read ``windows`` times.

    The source is ``rows`` rows of Zipf-drawn keys (so keys repeat inside it as well), the same
    at every window; each distinct input's pair of verdicts is drawn once per run (same input,
    same answers). Which rows count is decided by the core's rule (``experiments.judge_rows``,
    an input owned by the first window that claims it, as ``claim_inputs`` does), against
    counting every row of every window again.
    """
    from irisdag.core import experiments

    cdf = _zipf_cdf(universe, exponent)
    keys = np.minimum(np.searchsorted(cdf, rng.random(rows), side="right"), universe - 1)
    distinct, inverse = np.unique(keys, return_inverse=True)
    claimed = np.zeros(len(distinct), dtype=bool)
    judged = []
    for _ in range(windows):
        owned = ~claimed                      # claim_inputs: the first window to claim an input owns it
        judged.append(experiments.judge_rows(inverse, np.zeros(len(distinct), dtype=bool), owned).judged)
        claimed |= owned
    judged = np.array(judged)                # (windows, rows)
    cat = _draw4(rng, 1, _paired_probs(sim, 0.0), runs * len(distinct)).argmax(axis=1).reshape(runs, -1)
    row_cat = cat[:, inverse]                # (runs, rows)
    b_row, c_row = (row_cat == 0).astype(float), (row_cat == 1).astype(float)
    looks = np.arange(1, windows + 1)[None, :]
    b_all, c_all = b_row.sum(axis=1)[:, None] * looks, c_row.sum(axis=1)[:, None] * looks
    b_once, c_once = np.cumsum(b_row @ judged.T, axis=1), np.cumsum(c_row @ judged.T, axis=1)

    def promoted(b, c):
        _, lam = stats.paired_msprt(b, c, sim.mixture)
        return int(((np.asarray(lam) >= 1 / sim.alpha) & (c > b)).any(axis=1).sum())

    return {"again": promoted(b_all, c_all), "once": promoted(b_once, c_once), "runs": runs, "windows": windows,
            "rows": rows, "distinct": len(distinct), "judged_once": int(judged.sum()),
            "judged_again": rows * windows}


# =========================================================================== the grid
def _cell(task) -> dict:
    """Worker: one truth (``role``: the bounded error, or power at +2 points) of one grid cell."""
    sim, i, strategy, feedback, method, window, runs, role = task
    diff = (-sim.delta if strategy == "canary" else 0.0) if role == "error" else sim.gain
    start = time.process_time()
    rng = np.random.default_rng([sim.seed, i, int(role == "power")])
    if strategy == "canary":
        code, when = run_canary(sim, feedback, diff, window, runs, rng, method)
    else:
        code, when = run_bandit(sim, feedback, diff, window, runs, rng)
    promoted = int((code == PROMOTE).sum())
    row = {"i": i, "strategy": strategy, "feedback": feedback, "method": method, "window": window,
           "max_rows": sim.max_rows, "runs": runs, role: promoted}
    if role == "error":
        row["error_ucb"] = cp_upper(promoted, runs)
    else:
        done = np.sort(when[code == PROMOTE])
        need, half = int(np.ceil(0.8 * runs)), int(np.ceil(0.5 * runs))
        row["rows_median"] = float(np.median(done)) if len(done) else None
        row["rows_80"] = int(done[need - 1]) if len(done) >= need else None
        row["rows_50"] = int(done[half - 1]) if len(done) >= half else None
        row["undecided"] = int((code == NONE).sum())
    row["seconds"] = time.process_time() - start
    return row


def grid_tasks(sim: GridSim, runs: int, label_rows: int = 10_000, outcome_rows: int = 20_000, windows=WINDOWS,
               speed_rows: int = 100_000, only=None) -> list:
    """Every (cell, truth) of the grid, the most looks first (they set the wall time).

    Label cells run up to ``label_rows`` rows an experiment, outcome cells up to ``outcome_rows``;
    two more cells put the outcome canary's new and old intervals at 1,000-row windows up to
    ``speed_rows`` (cheap: a look per 1,000 rows), long enough for nearly every +2-point
    challenger to be promoted. ``only``: the ``strategy/feedback`` pairs to run (default all)."""
    tasks = []
    for strategy in ("canary", "bandit"):
        for feedback in ("label", "outcome"):
            if only and f"{strategy}/{feedback}" not in only:
                continue
            cap = GridSim(**{**sim.__dict__, "max_rows": label_rows if feedback == "label" else outcome_rows})
            methods = ("new", "old") if (strategy, feedback) == ("canary", "outcome") else ("new",)
            for method in methods:
                for window in windows:
                    tasks.append((cap, len(tasks), strategy, feedback, method, window, runs))
    speed_cap = GridSim(**{**sim.__dict__, "max_rows": speed_rows})
    if not only or "canary/outcome" in only:
        tasks += [(speed_cap, len(tasks) + j, "canary", "outcome", m, 1000, runs) for j, m in enumerate(("new", "old"))]
    out = [t + (role,) for t in tasks for role in ("error", "power")]
    return sorted(out, key=lambda t: t[0].max_rows / t[5], reverse=True)


def collect_grid(parts: list, sim: GridSim, runs: int, label_rows: int, outcome_rows: int, speed_rows: int,
                 side_runs: int | None = None) -> dict:
    """The grid's result from its (cell, truth) parts, with the sample-ratio and re-read cells."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    merged: dict[int, dict] = {}
    for part in parts:
        merged.setdefault(part["i"], {"seconds": 0.0})
        seconds = merged[part["i"]]["seconds"] + part["seconds"]
        merged[part["i"]].update(part)
        merged[part["i"]]["seconds"] = seconds
    rows = [merged[i] for i in sorted(merged)]
    speed_ids = {r["i"] for r in rows if r["max_rows"] == speed_rows and r["window"] == 1000} - (
        {r["i"] for r in rows if r["max_rows"] in (label_rows, outcome_rows)} if speed_rows in (label_rows, outcome_rows)
        else set())
    side = runs if side_runs is None else side_runs
    srm = srm_cell(side, np.random.default_rng([sim.seed, 900]))
    reread = reread_cell(sim, side, np.random.default_rng([sim.seed, 901]))
    return {"cells": [r for r in rows if r["i"] not in speed_ids], "speed": [r for r in rows if r["i"] in speed_ids],
            "speed_rows": speed_rows, "sim": sim, "runs": runs, "label_rows": label_rows,
            "outcome_rows": outcome_rows, "srm": srm, "reread": reread,
            "side_seconds": time.perf_counter() - t0,
            "cpu_seconds": sum(p["seconds"] for p in parts) + time.process_time() - cpu0}


def _say(progress, part):
    if progress:
        role = "error" if "error" in part else "power"
        progress(f"{part['strategy']}/{part['feedback']}/{part['method']}/{part['window']} {role}: "
                 f"{part[role]}/{part['runs']} promoted ({part['seconds']:.0f} CPU-s)")


def submit_grid(pool, sim: GridSim, runs: int, progress=None, **kw) -> list:
    """Queue every (cell, truth) on ``pool`` (a ProcessPoolExecutor shared with other work); see ``finish_grid``."""
    futures = [pool.submit(_cell, t) for t in grid_tasks(sim, runs, **kw)]
    for f in futures:
        f.add_done_callback(lambda f: _say(progress, f.result()) if not f.exception() else None)
    return futures


def run_grid(sim: GridSim, runs: int, progress=None, jobs: int = 2, label_rows: int = 10_000,
             outcome_rows: int = 20_000, windows=WINDOWS, side_runs: int | None = None,
             speed_rows: int = 100_000, futures: list | None = None, only=None) -> dict:
    """Every cell of the grid (or collect ``futures`` from :func:`submit_grid`). ``side_runs`` (default
    ``runs``): runs of the sample-ratio and re-read cells."""
    t0 = time.perf_counter()
    kw = dict(label_rows=label_rows, outcome_rows=outcome_rows, windows=windows, speed_rows=speed_rows, only=only)
    if futures is not None:
        parts = [f.result() for f in futures]
    elif jobs <= 1:
        parts = []
        for t in grid_tasks(sim, runs, **kw):
            parts.append(_cell(t))
            _say(progress, parts[-1])
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            parts = [f.result() for f in submit_grid(pool, sim, runs, progress, **kw)]
    res = collect_grid(parts, sim, runs, label_rows, outcome_rows, speed_rows, side_runs)
    res["seconds"] = time.perf_counter() - t0
    return res


def _pct(x, digits=2):
    return f"{100 * x:.{digits}f}%"


_ORDER = [("canary", "label", "new"), ("canary", "outcome", "new"), ("canary", "outcome", "old"),
          ("bandit", "label", "new"), ("bandit", "outcome", "new")]


def ordered(cells):
    """Cells in the report's order: strategy, feedback, interval, window."""
    order = {k: i for i, k in enumerate(_ORDER)}
    return sorted(cells, key=lambda c: (order[(c["strategy"], c["feedback"], c["method"])], c["window"]))


def worst(res: dict) -> dict:
    """The current rules' cell with the largest error upper bound."""
    return max((c for c in res["cells"] if c["method"] == "new"), key=lambda c: c["error_ucb"])


def speed(res: dict) -> dict | None:
    """The outcome canary at 1,000-row windows: the Bernoulli sequences against the interval they replaced."""
    pick = {c["method"]: c for c in res.get("speed") or res["cells"]
            if (c["strategy"], c["feedback"], c["window"]) == ("canary", "outcome", 1000)}
    new, old = pick.get("new"), pick.get("old")
    if not (new and old and new["rows_median"] and old["rows_median"]):
        return None
    half = new["rows_50"] / old["rows_50"] if new.get("rows_50") and old.get("rows_50") else None
    return {"new": new, "old": old, "ratio": new["rows_median"] / old["rows_median"], "half": half,
            "runs": new["runs"]}


def speed_sentence(res: dict) -> str:
    sp = speed(res)
    if sp is None:
        return ""
    new, old, runs = sp["new"], sp["old"], sp["runs"]
    r80 = lambda c: f"{c['rows_80']:,}" if c["rows_80"] else f"more than {c['max_rows']:,}"  # noqa: E731
    half = (f"; half of them promoted by {new['rows_50']:,} rows against {old['rows_50']:,}, "
            f"{sp['half']:.2f}×" if sp["half"] else "")
    return (f"Speed of the outcome canary at 1,000-row windows (up to {new['max_rows']:,} rows, {runs:,} experiments "
            f"each): the Bernoulli sequences promote a +2-point challenger after a median {new['rows_median']:,.0f} "
            f"rows against {old['rows_median']:,.0f} for the plug-in interval they replaced: **{sp['ratio']:.2f}× "
            f"{'slower' if sp['ratio'] > 1 else 'faster'}**{half} (80% promoted by {r80(new)} rows against {r80(old)}; "
            f"power within the cap {_pct(new['power'] / runs, 1)} against {_pct(old['power'] / runs, 1)}; error "
            f"{_pct(new['error'] / runs)}, UCB {_pct(new['error_ucb'])}, against {_pct(old['error'] / runs)}, UCB "
            f"{_pct(old['error_ucb'])}). The old interval's speed came from a variance estimate that is 0 for an "
            "arm with 0–1 rows or all right: the price of an interval valid at every window size.")


def report(res: dict) -> tuple[str, bool]:
    sim, runs = res["sim"], res["runs"]
    ok_all = True
    lines = [
        f"### Every window size: canary and bandit, both feedback kinds ({runs:,} experiments a cell)",
        "",
        f"Vectorised over experiments (`benchmarks/decision_grid.py`): a look after every window, up to "
        f"{res['label_rows']:,} rows an experiment with label feedback and {res['outcome_rows']:,} with outcome "
        f"feedback (3× the 6,426 rows an unpaired 50/50 test plans for 90 → 92%; a 5% first canary step needs about 31–34k, STATS.md: its power over longer runs is in the speed paragraph below); α = {sim.alpha:g}, δ = {sim.delta:g}, canary steps 5 → 25 → 50 → 100% with ≥ "
        f"{sim.min_rows_per_step} rows a step, bandit with one challenger (P(best) ≥ {sim.threshold:g} triggers the "
        "confirmatory test). Error: canary promoting a challenger worse by δ, bandit promoting a no-better one; "
        "judged by its one-sided 95% Clopper–Pearson upper bound (UCB). Power: promotions of a +2-point "
        "challenger (90 → 92%) within the cap; then the median rows to a promotion and the rows by which 80% "
        f"had promoted. {res['cpu_seconds']:.0f} CPU-seconds in the grid.",
        "",
        "| strategy | feedback | interval | window (rows) | error | rate | 95% UCB | ≤ α | power (90 → 92%) | "
        "rows to promote (median) | 80% promoted by |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | :---: | ---: | ---: | ---: |",
    ]
    for c in ordered(res["cells"]):
        ok = c["error_ucb"] <= sim.alpha
        if c["method"] == "new":
            ok_all &= ok
        interval = {"new": "current", "old": "before issue 8 (plug-in normal mixture)"}[c["method"]]
        mark = "yes" if ok else ("**NO**" if c["method"] == "new" else "**NO** (replaced)")
        med = "—" if c["rows_median"] is None else f"{c['rows_median']:,.0f}"
        r80 = f"{c['rows_80']:,}" if c["rows_80"] else f"> {c['max_rows']:,}"
        lines.append(f"| {c['strategy']} | {c['feedback']} | {interval} | {c['window']:,} | {c['error']:,}/{runs:,} | "
                     f"{_pct(c['error'] / runs)} | {_pct(c['error_ucb'])} | {mark} | "
                     f"{_pct(c['power'] / runs, 1)} | {med} | {r80} |")
    w = worst(res)
    lines += ["", f"Largest UCB of the current rules: {_pct(w['error_ucb'])} ({w['strategy']}, {w['feedback']} "
                  f"feedback, {w['window']:,}-row windows) against α = {sim.alpha:g}."]
    sentence = speed_sentence(res)
    if sentence:
        lines += ["", sentence]

    s = res["srm"]
    n_runs = s["runs"]
    lines += ["", f"### Sample-ratio check on keyed traffic (Zipf-like keys, exponent {s['exponent']:g} over "
                  f"{s['universe']:,} keys; each key's side fixed, as by a salted hash; {n_runs:,} runs a case)", "",
              "| planned split | rows at the look | distinct keys (mean) | false alarms: `srm_pvalue` on rows | "
              "chi-square on distinct keys | `srm_pvalue` on distinct keys (the rule) | 95% UCB | ≤ 0.1% |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | :---: |"]
    for i, (what, bp, n) in enumerate(s["cases"]):
        o = s["counts"][i]
        ucb = cp_upper(int(o["keys"]), n_runs)
        exact = f" (exact binomial in {o['exact_looks'] / n_runs:.0%} of looks)" if o["exact_looks"] else ""
        lines.append(f"| {what} | {n:,} | {o['distinct'] / n_runs:,.0f} | {_pct(o['rows'] / n_runs)} | "
                     f"{_pct(o['chi2_keys'] / n_runs)} | {_pct(o['keys'] / n_runs)}{exact} | {_pct(ucb)} | "
                     f"{'yes' if ucb <= s['alpha'] else 'rate yes, UCB above' if o['keys'] / n_runs <= s['alpha'] else '**NO**'} |")
    lines += ["", f"The check is planned at p < {s['alpha']:g} per look. Counting rows, repeated keys overdisperse "
                  "the split; a chi-square with an expected count below 5 alarms on a single key at a 1-bp share. "
                  "`srm_pvalue` on distinct keys (exact where an expected count is below 5) stays at or under the "
                  "planned rate."]

    r = res["reread"]
    ucb_once, ucb_again = cp_upper(r["once"], r["runs"]), cp_upper(r["again"], r["runs"])
    ok_reread = ucb_once <= sim.alpha and r["judged_once"] <= r["distinct"]
    ok_all &= ok_reread
    lines += ["", f"### A static source re-read every window (no-better challenger, paired mSPRT, {r['windows']} "
                  f"windows of the same {r['rows']:,} rows, {r['distinct']:,} distinct inputs; {r['runs']:,} runs)", "",
              f"Counting every row of every window: {r['judged_again']:,} rows judged, {r['again']:,}/{r['runs']:,} = "
              f"{_pct(r['again'] / r['runs'])} false promotions (95% UCB {_pct(ucb_again)}). Counting each input once "
              f"(the core's `judge_rows`, the rule now): {r['judged_once']:,} rows judged (= distinct inputs: "
              f"{'yes' if r['judged_once'] == r['distinct'] else '**NO**'}), {r['once']:,}/{r['runs']:,} = "
              f"{_pct(r['once'] / r['runs'])} (95% UCB {_pct(ucb_once)}) ≤ α = {sim.alpha:g}: "
              f"{'yes' if ucb_once <= sim.alpha else '**NO**'}."]
    lines += ["", "Every cell holds α by its upper bound." if ok_all else "**Some cells miss α** (the NO cells)."]
    return "\n".join(lines), ok_all


def readme_rows(res: dict) -> list[str]:
    """The grid as the README shows it: one row per cell of the current rules."""
    runs = res["runs"]
    out = ["| strategy | feedback | window (rows) | error rate | 95% UCB | power, 90 → 92% (within the cap) | "
           "80% promoted by |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for c in ordered(res["cells"]):
        if c["method"] != "new":
            continue
        r80 = f"{c['rows_80']:,}" if c["rows_80"] else f"> {c['max_rows']:,}"
        out.append(f"| {c['strategy']} | {c['feedback']} | {c['window']:,} | {_pct(c['error'] / runs)} | "
                   f"{_pct(c['error_ucb'])}{'' if c['error_ucb'] <= res['sim'].alpha else ' **> α**'} | "
                   f"{_pct(c['power'] / runs, 1)} | {r80} |")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="decision quality at every window size (vectorised); prints its "
                                             "report (benchmarks/decision_quality.py --write puts it in DECISIONS.md)")
    ap.add_argument("--experiments", type=int, default=10_000)
    ap.add_argument("--label-rows", type=int, default=10_000)
    ap.add_argument("--outcome-rows", type=int, default=20_000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=None, choices=[f"{s}/{f}" for s in ("canary", "bandit")
                                                                for f in ("label", "outcome")],
                    help="run only these strategy/feedback cells, e.g. bandit/outcome (the side cells always run)")
    ap.add_argument("--windows", type=int, nargs="*", default=list(WINDOWS), help="window sizes (rows)")
    ap.add_argument("--side-runs", type=int, default=None,
                    help="runs of the sample-ratio and re-read cells (default --experiments)")
    args = ap.parse_args(argv)
    res = run_grid(GridSim(), args.experiments, progress=lambda m: print(m, file=sys.stderr, flush=True),
                   jobs=args.jobs, label_rows=args.label_rows, outcome_rows=args.outcome_rows,
                   windows=tuple(args.windows), side_runs=args.side_runs, only=args.only)
    text, ok = report(res)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
