"""Decision quality of the deployment strategies, by simulation with known truth.

    nice -n 10 .venv/bin/python benchmarks/decision_quality.py --write   # 10,000 a scenario and a grid cell;
                                    # rewrites benchmarks/DECISIONS.md and the README's table from this one run
    .venv/bin/python benchmarks/decision_quality.py --quick    # 1,000, prints only
    options: --experiments N  --seed S  --jobs J  --verify V  --exhaustive  --only KEY...
             --rows-per-batch R  --max-batches K  --discordant PSI  --out PATH  --readme PATH
             --no-grid  --grid-label-rows R  --grid-outcome-rows R

Drives the decision code the Dagster assets call (``irisdag.core.strategies``:
``decide_single``, ``decide_shadow``, ``decide_ab``, ``decide_canary``,
``decide_bandit``) through simulated experiments, not through Dagster runs.
Every experiment is built batch by batch with ``add_batch`` and judged after
each batch with the strategy's own function, its state carried from batch to
batch; decisions are acted on as the pipeline does: a canary ramp changes the
challenger's served share for the next batch, an A/B split is fixed and its
sample ratio checked, a bandit's shares are carried in its state, and
promote / abort end the experiment. An experiment still open after
``--max-batches`` batches ends undecided. A full run writes its report
between the generated markers of ``benchmarks/DECISIONS.md`` (hand-written
text around them is kept).

Truth. The champion is right on ``p_champion`` (0.90) of the rows. Label
feedback (the default, paired): the two models disagree in correctness on a
fraction ψ (``--discordant``, 0.04) of the rows, and the challenger wins each
discordant row with probability θ = 1/2 + Δ/(2ψ), so its accuracy is
0.90 + Δ; per batch the counts (b, c, both right, both wrong) are one
multinomial draw (bandit arms: each arm's (b, c) given the champion's right
rows, independently, with the same law). Outcome feedback (unpaired): only
the served arm's row is judged; the served split is a binomial draw from the
share in force, and each arm's right answers a binomial draw from its
accuracy. Here the bandit runs under label feedback; under outcome feedback
(its unpaired confirmatory test) it is in the grid below, whose experiments
are replayed through ``decide_bandit`` by ``unit/test_decision_grid.py``.

The grid (``benchmarks/decision_grid.py``, vectorised over experiments): canary
and bandit under both feedback kinds at windows of 1 to 1,000 rows, the
sample-ratio check on Zipf-keyed traffic and a static source re-read every
window. ``--write`` puts this run's report into ``DECISIONS.md`` (between the
generated markers) and its summary into the README (between its markers).

Errors (DESIGN §4): shadow, A/B and bandit must promote a no-better
challenger (Δ = 0, the least favourable null of a directional test) at most
α; the canary must promote a challenger worse by δ (Δ = −δ) at most α.
Each rate comes with its one-sided 95% Clopper–Pearson upper bound and is
judged by that bound. Power is the promotion rate at Δ = +0.02 (90 → 92%),
judged by its estimate against 0.8. Extras (a challenger 2 points worse,
the canary at Δ = 0, shadow looked at every 100 rows, two bandit arms) run a
fifth of the experiments (at least 1,000).

Speed: the shadow and bandit strategies can decide only once their paired
mSPRT has crossed 1/α (shadow: nothing else decides; bandit: promote needs the
crossing with c > b, abort needs an arm dropped, i.e. a crossing with b > c).
By default the harness finds the first crossing with the same vectorised
``stats.paired_msprt`` the strategies use, skips the calls before it, and
calls the strategy on the batch before the crossing (which must answer
``continue`` or ``ramp``) and on every batch from the crossing on (with no
crossing: on the last batch, which must answer ``continue``). For shadow this
is exact: its always-valid p-value is a running minimum, so ``continue`` on a
batch means ``continue`` on every earlier one. For both, ``--verify V``
experiments of every such scenario are also replayed with a call after every
batch and must give the identical decision, batch and rows (a mismatch is
printed and the exit status is 1); ``--exhaustive`` calls after every batch
everywhere (several times slower). Single, A/B and canary are always called
after every batch.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.stats import beta as beta_dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from irisdag.core import stats  # noqa: E402
from irisdag.core import strategies as S  # noqa: E402

CHAMP, CHALL = "champion", "challenger"
T0 = "2024-01-01T00:00:00+00:00"  # fixed created_at: records are reproducible and utc_now is not called
FINAL = {"promote": 1, "abort": 2}
NONE, PROMOTE, ABORT = 0, 1, 2
GAIN = 0.02  # the gain power is measured for: 90 → 92%
DEFAULT_OUT = Path(__file__).resolve().parent / "DECISIONS.md"
BEGIN, END = "<!-- BEGIN GENERATED by benchmarks/decision_quality.py -->", "<!-- END GENERATED -->"
README = Path(__file__).resolve().parents[1] / "README.md"
README_BEGIN = "<!-- BEGIN DECISION TABLE (benchmarks/decision_quality.py --write) -->"
README_END = "<!-- END DECISION TABLE -->"


# =========================================================================== settings and scenarios
@dataclass(frozen=True)
class Sim:
    """Simulation settings shared by every scenario."""

    rows_per_batch: int = 1000  # irisdag.defs.settings.BATCH_ROWS
    max_batches: int = 50
    p_champion: float = 0.90
    discordant: float = 0.04  # ψ: share of rows where exactly one model is right (label feedback)
    alpha: float = 0.05
    mixture: float = 1.0  # settings.MIXTURE
    delta: float = 0.01  # the canary's non-inferiority margin (DESIGN default)
    ab_share_bp: int = 5000
    bandit_draws: int = 20_000  # BanditState default
    seed: int = 20240101


EXTRA = 0.2  # extra scenarios (not one strategy's own error or power) run a fifth of the experiments


@dataclass(frozen=True)
class Scenario:
    key: str  # unique, e.g. "shadow/label/+0.000"
    strategy: str
    feedback: str  # "label" (paired) or "outcome" (unpaired, served traffic only)
    diff: float  # true challenger − champion accuracy (bandit: of the first arm)
    role: str  # "error" (the bounded error), "power", "both" (bandit with a better and a no-better arm), "info"
    label: str  # truth in words
    arms: tuple[float, ...] = ()  # bandit: every arm's true difference (default: one arm, ``diff``)
    rows_per_batch: int | None = None  # overrides of the simulation settings for this scenario
    max_batches: int | None = None
    share: float = 1.0  # fraction of --experiments this scenario runs (extras: 0.2, at least 1,000)

    @property
    def diffs(self) -> tuple[float, ...]:
        return tuple(self.arms) or (self.diff,)


def scenarios(sim: Sim) -> list[Scenario]:
    d = sim.delta
    out = []

    def add(strategy, feedback, diff, role, label, arms=(), **kw):
        arm_tag = ",".join(f"{x:+.3f}" for x in arms) if len(arms) > 1 else f"{diff:+.3f}"
        tag = f"{strategy}/{feedback}/{arm_tag}"
        if kw.get("rows_per_batch"):
            tag += f"@{kw['rows_per_batch']}rows"
        out.append(Scenario(tag, strategy, feedback, diff, role, label, tuple(arms), **kw))

    add("single", "label", 0.0, "error", "no-better (Δ = 0)")
    add("single", "label", GAIN, "power", "+2 points")
    add("shadow", "label", 0.0, "error", "no-better (Δ = 0)")
    add("shadow", "label", GAIN, "power", "+2 points")
    add("shadow", "label", -GAIN, "info", "worse by 2 points", share=EXTRA)
    fine = max(1, sim.rows_per_batch // 10)
    add("shadow", "label", GAIN, "info", f"+2 points, a look every {fine} rows", rows_per_batch=fine,
        max_batches=sim.max_batches * sim.rows_per_batch // fine, share=EXTRA)
    add("ab", "label", 0.0, "error", "no-better (Δ = 0)")
    add("ab", "label", GAIN, "power", "+2 points")
    add("ab", "outcome", 0.0, "error", "no-better (Δ = 0)")
    add("ab", "outcome", GAIN, "power", "+2 points")
    add("canary", "label", -d, "error", f"worse by δ (Δ = −{d:g})")
    add("canary", "label", 0.0, "info", "no-better (Δ = 0)", share=EXTRA)
    add("canary", "label", GAIN, "power", "+2 points")
    add("canary", "outcome", -d, "error", f"worse by δ (Δ = −{d:g})")
    add("canary", "outcome", 0.0, "info", "no-better (Δ = 0)", share=EXTRA)
    add("canary", "outcome", GAIN, "power", "+2 points")
    add("bandit", "label", 0.0, "error", "no-better (Δ = 0)")
    add("bandit", "label", GAIN, "power", "+2 points")
    add("bandit", "label", 0.0, "error", "two arms, both no-better", arms=(0.0, 0.0), share=EXTRA)
    add("bandit", "label", GAIN, "both", "two arms: +2 points and no-better", arms=(GAIN, 0.0), share=EXTRA)
    return out


def scenario_sim(sim: Sim, sc: Scenario) -> Sim:
    """The simulation settings of one scenario (its overrides applied)."""
    return replace(sim, rows_per_batch=sc.rows_per_batch or sim.rows_per_batch,
                   max_batches=sc.max_batches or sim.max_batches)


def is_bad(strategy: str, diff: float, sim: Sim) -> bool:
    """Whether promoting a challenger with true difference ``diff`` is the error DESIGN §4 bounds."""
    return diff <= -sim.delta + 1e-12 if strategy == "canary" else diff <= 1e-12


def scenario_experiments(sc: Scenario, experiments: int) -> int:
    """Experiments one scenario runs: all of them, or for an extra a fifth (at least 1,000)."""
    return experiments if sc.share >= 1 else min(experiments, max(1000, int(round(sc.share * experiments))))


FAST_FORWARD = {"shadow", "bandit"}  # strategies whose calls before the mSPRT crossing are skipped by default


def paired_probs(sim: Sim, diff: float) -> np.ndarray:
    """Per-row probabilities of (b, c, both right, both wrong) for a true difference ``diff``."""
    psi = sim.discordant
    if not abs(diff) <= psi:
        raise ValueError(f"|Δ| = {abs(diff)} cannot exceed the discordant share ψ = {psi}")
    p_b, p_c = (psi - diff) / 2.0, (psi + diff) / 2.0  # θ = p_c / ψ = 1/2 + Δ/(2ψ)
    both_right = sim.p_champion - p_b
    both_wrong = 1.0 - both_right - p_b - p_c
    p = np.array([p_b, p_c, both_right, both_wrong])
    if np.any(p < -1e-12):
        raise ValueError(f"impossible truth: p_champion {sim.p_champion}, ψ {psi}, Δ {diff}")
    return np.clip(p, 0.0, 1.0) / np.clip(p, 0.0, 1.0).sum()


def experiment_rng(sim: Sim, sc: Scenario, i: int) -> np.random.Generator:
    """One generator per experiment: results do not depend on chunking or the number of workers."""
    tag = [ord(ch) for ch in sc.key]
    return np.random.default_rng([sim.seed, i, *tag])


def draw_paired(sim: Sim, sc: Scenario, rng: np.random.Generator) -> np.ndarray:
    """(max_batches, 4) counts per batch: b, c, both right, both wrong."""
    return rng.multinomial(sim.rows_per_batch, paired_probs(sim, sc.diff), size=sim.max_batches)


def _add_paired(ev: S.PairedEvidence, row) -> S.PairedEvidence:
    b, c, both = int(row[0]), int(row[1]), int(row[2])
    return ev.add_batch(b=b, c=c, n=int(row.sum()), champion_right=both + b, challenger_right=both + c)


# =========================================================================== one experiment per strategy
def _arm(rec) -> int:
    """Index of the promoted arm (the only challenger: 0), −1 when nothing was promoted."""
    return 0 if rec.decision == "promote" else -1


# Each runner returns (code, batches, rows, extra, arm): code NONE / PROMOTE / ABORT; batches the
# number of batches seen when the decision was made (max_batches if undecided); rows the rows
# judged by the deciding record (rows seen if undecided); extra strategy-specific (see below);
# arm the index of the promoted challenger (−1: none).

def run_single(sim: Sim, sc: Scenario, rng, fast: bool = True):
    """``single`` compares nothing: its checks pass (they do not measure accuracy against the champion)."""
    rec = S.decide_single(True, champion=CHAMP, challenger=CHALL, created_at=T0)
    code = FINAL.get(rec.decision, NONE)
    return code, 0, 0, 0, 0 if code == PROMOTE else -1


def run_shadow(sim: Sim, sc: Scenario, rng, fast: bool = True):
    """extra = number of calls to ``decide_shadow``; −1 if the fast path disagreed with the real call."""
    counts = draw_paired(sim, sc, rng)
    k_max = sim.max_batches

    def decide(ev):
        return S.decide_shadow(ev, alpha=sim.alpha, mixture=sim.mixture, created_at=T0)

    if not fast:
        ev, calls = S.PairedEvidence(CHAMP, CHALL), 0
        for k in range(k_max):
            ev = _add_paired(ev, counts[k])
            rec = decide(ev)
            calls += 1
            if rec.decision in FINAL:
                return FINAL[rec.decision], k + 1, rec.n, calls, _arm(rec)
        return NONE, k_max, ev.n, calls, -1

    first = _first_crossing(counts, sim.alpha, sim.mixture)
    last = k_max if first is None else first
    ev = S.PairedEvidence(CHAMP, CHALL)
    for k in range(last):
        ev = _add_paired(ev, counts[k])
    looks = [k_max] if first is None else [k for k in (first - 1, first) if k >= 1]
    calls = 0
    for look in looks:
        rec = decide(ev.prefix(look))
        calls += 1
        expect_final = first is not None and look == first
        if (rec.decision in FINAL) != expect_final:
            out = run_shadow(sim, sc, _Replay(paired=counts), fast=False)
            return out[0], out[1], out[2], -1, out[4]
        if expect_final:
            return FINAL[rec.decision], look, rec.n, calls, _arm(rec)
    return NONE, k_max, ev.n, calls, -1


def _first_crossing(counts: np.ndarray, alpha: float, mixture: float) -> int | None:
    """First batch (1-based) at which the paired mSPRT's Λ reaches 1/α, with the strategies' own function."""
    _, lam = stats.paired_msprt(np.cumsum(counts[:, 0]), np.cumsum(counts[:, 1]), mixture)
    hit = np.flatnonzero(np.asarray(lam) >= 1.0 / alpha)
    return int(hit[0]) + 1 if hit.size else None


class _Replay:
    """A stand-in generator that hands back counts already drawn (to replay one experiment)."""

    def __init__(self, paired=None, arms=None):
        self.paired, self.arms = paired, arms

    def multinomial(self, *args, **kwargs):
        return self.paired


def draw_arms(sim: Sim, diffs: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """(arms, max_batches, 4) paired counts of several challengers judged on the same rows.

    The champion is right on Binomial(n, p_champion) rows; given that, each
    challenger independently loses ``p_b/p_champion`` of the champion's right
    rows and wins ``p_c/(1 − p_champion)`` of its wrong ones, so each arm
    alone has exactly the (b, c) law of :func:`paired_probs`.
    """
    n, p1 = sim.rows_per_batch, sim.p_champion
    right = rng.binomial(n, p1, size=sim.max_batches)
    out = np.empty((len(diffs), sim.max_batches, 4), dtype=np.int64)
    for a, diff in enumerate(diffs):
        p_b, p_c = paired_probs(sim, diff)[:2]
        b = rng.binomial(right, p_b / p1)
        c = rng.binomial(n - right, p_c / (1.0 - p1))
        out[a] = np.stack([b, c, right - b, n - right - c], axis=1)
    return out


def run_bandit(sim: Sim, sc: Scenario, rng, fast: bool = True):
    """Challenger arms against the champion. extra = calls to ``decide_bandit`` (−1: fast path disagreed)."""
    counts = rng.arms if isinstance(rng, _Replay) else draw_arms(sim, sc.diffs, rng)
    k_max = sim.max_batches
    names = tuple(f"{CHALL}-{a}" for a in range(len(sc.diffs)))
    state0 = S.BanditState(arms=names, alpha=sim.alpha, mixture=sim.mixture, draws=sim.bandit_draws)
    alpha_arm = sim.alpha / len(names)

    def loop(start: int):
        evs = {a: S.PairedEvidence(CHAMP, a) for a in names}
        state, calls = state0, 0
        for k in range(k_max):
            for j, a in enumerate(names):
                evs[a] = _add_paired(evs[a], counts[j, k])
            if k + 1 < start:
                continue
            rec, state = S.decide_bandit(evs, state, created_at=T0)
            calls += 1
            if rec.decision in FINAL:
                arm = names.index(rec.challenger) if rec.decision == "promote" else -1
                return FINAL[rec.decision], k + 1, rec.n, calls, arm
            # rec.shares_bp would be served next; under label feedback every row is paired whatever was
            # served, so the shares change who is exposed to which model, not the evidence.
        return NONE, k_max, evs[names[0]].n, calls, -1

    if not fast:
        return loop(1)
    firsts = [f for f in (_first_crossing(counts[j], alpha_arm, sim.mixture) for j in range(len(names)))
              if f is not None]
    first = min(firsts) if firsts else None
    start = k_max if first is None else max(1, first - 1)
    code, k, rows, calls, arm = loop(start)
    if (first is None and code != NONE) or (first is not None and code != NONE and k < first):
        code, k, rows, _, arm = run_bandit(sim, sc, _Replay(arms=counts), fast=False)
        return code, k, rows, -1, arm
    return code, k, rows, calls, arm


def run_ab(sim: Sim, sc: Scenario, rng, fast: bool = True):
    """extra = 1 if aborted by the sample-ratio check, else 0.

    Label feedback: paired evidence on every row, planned with Connor's formula
    for 90 → 92% at the simulated ψ; the served split (salted buckets, a
    binomial draw at the planned share) feeds the SRM check. Outcome feedback:
    each arm's served rows, planned per arm with the two-proportion formula.
    """
    n_rows, share = sim.rows_per_batch, sim.ab_share_bp / 10000
    p1, p2 = sim.p_champion, sim.p_champion + sc.diff
    if sc.feedback == "label":
        state = S.ABState.plan_paired(p1, p1 + GAIN, sim.discordant, alpha=sim.alpha, share_bp=sim.ab_share_bp)
        counts = draw_paired(sim, sc, rng)
        ev, served = S.PairedEvidence(CHAMP, CHALL), [0, 0]
    else:
        state = S.ABState.plan_unpaired(p1, p1 + GAIN, alpha=sim.alpha, share_bp=sim.ab_share_bp)
        ev = S.UnpairedEvidence(CHAMP, CHALL)
    for k in range(sim.max_batches):
        n2 = int(rng.binomial(n_rows, share))
        if sc.feedback == "label":
            ev = _add_paired(ev, counts[k])
            served = [served[0] + n_rows - n2, served[1] + n2]
            rec, state = S.decide_ab(ev, state, served=tuple(served), created_at=T0)
        else:
            n1 = n_rows - n2
            ev = ev.add_batch(int(rng.binomial(n1, p1)), n1, int(rng.binomial(n2, p2)), n2)
            rec, state = S.decide_ab(ev, state, created_at=T0)
        if rec.decision in FINAL:
            return FINAL[rec.decision], k + 1, rec.n, int(rec.test.startswith("sample-ratio")), _arm(rec)
    return NONE, sim.max_batches, ev.n, 0, -1


def run_canary(sim: Sim, sc: Scenario, rng, fast: bool = True):
    """extra = the step index reached (0 = 5%, …, 3 = 100%).

    Label feedback: every row is paired whatever share is served. Outcome
    feedback: the next batch serves the challenger the share the last decision
    asked for (``state.share_bp``); only served rows are judged.
    """
    state = S.CanaryState(delta=sim.delta, alpha=sim.alpha)
    n_rows = sim.rows_per_batch
    p1, p2 = sim.p_champion, sim.p_champion + sc.diff
    if sc.feedback == "label":
        counts = draw_paired(sim, sc, rng)
        ev = S.PairedEvidence(CHAMP, CHALL)
    else:
        ev = S.UnpairedEvidence(CHAMP, CHALL)
    for k in range(sim.max_batches):
        if sc.feedback == "label":
            ev = _add_paired(ev, counts[k])
        else:
            n2 = int(rng.binomial(n_rows, state.share_bp / 10000))
            n1 = n_rows - n2
            ev = ev.add_batch(int(rng.binomial(n1, p1)), n1, int(rng.binomial(n2, p2)), n2)
        step = state.step
        rec, state = S.decide_canary(ev, state, created_at=T0)
        if rec.decision in FINAL:
            return FINAL[rec.decision], k + 1, rec.n, step, _arm(rec)
    return NONE, sim.max_batches, ev.n, state.step, -1


RUNNERS = {"single": run_single, "shadow": run_shadow, "ab": run_ab, "canary": run_canary, "bandit": run_bandit}


def run_chunk(task) -> tuple:
    """Worker: experiments [start, stop) of one scenario. ``mode`` is "fast", "exhaustive" or "verify"."""
    sim, sc, start, stop, mode = task
    sc = Scenario(**sc)
    sim = scenario_sim(Sim(**sim), sc)
    runner = RUNNERS[sc.strategy]
    res = np.zeros((stop - start, 5), dtype=np.int64)
    mismatches = []
    t = time.process_time()
    for j, i in enumerate(range(start, stop)):
        if mode == "verify":
            a = runner(sim, sc, experiment_rng(sim, sc, i), fast=True)
            b = runner(sim, sc, experiment_rng(sim, sc, i), fast=False)
            if a[:3] != b[:3] or a[4] != b[4] or a[3] == -1:
                mismatches.append((i, a, b))
            res[j] = b
        else:
            res[j] = runner(sim, sc, experiment_rng(sim, sc, i), fast=(mode == "fast"))
    return sc.key, start, mode, res, mismatches, time.process_time() - t  # CPU seconds


# =========================================================================== statistics of the results
def cp_upper(x: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper–Pearson upper confidence bound for a binomial proportion x/n."""
    if n <= 0:
        return 1.0
    if x >= n:
        return 1.0
    return float(beta_dist.ppf(confidence, x + 1, n - x))


@dataclass
class Summary:
    key: str
    n: int
    promote: int  # promotions of any arm
    bad: int  # promotions DESIGN §4 bounds (a no-better challenger; canary: one worse by ≥ δ)
    good: int  # the other promotions
    abort: int
    undecided: int
    bad_upper: float  # one-sided 95% Clopper–Pearson upper bound of bad / n
    rows_median: float | None  # rows judged by the deciding record, decided experiments only
    rows_mean: float | None
    batches_median: float | None
    batches_mean: float | None
    rows_power80: int | None  # rows seen by which 80% of experiments had made a good promotion
    srm_aborts: int = 0
    calls_mean: float | None = None

    @property
    def bad_rate(self) -> float:
        return self.bad / self.n if self.n else float("nan")

    @property
    def good_rate(self) -> float:
        return self.good / self.n if self.n else float("nan")


def summarize(sc: Scenario, res: np.ndarray, sim: Sim) -> Summary:
    """Rates and rows to a decision from per-experiment results (code, batches, rows, extra, arm)."""
    res = np.asarray(res).reshape(-1, 5)
    sim = scenario_sim(sim, sc)
    n = len(res)
    code, batches, rows, extra, arm = (res[:, j] for j in range(5))
    bad_arm = np.array([is_bad(sc.strategy, d, sim) for d in sc.diffs])
    promoted = code == PROMOTE
    bad = promoted & bad_arm[arm.clip(0)]
    good = promoted & ~bad
    abort = int((code == ABORT).sum())
    decided = code != NONE
    med = lambda x: float(np.median(x)) if x.size else None  # noqa: E731
    mean = lambda x: float(np.mean(x)) if x.size else None  # noqa: E731
    seen = np.where(good, batches * sim.rows_per_batch, np.iinfo(np.int64).max)
    need = int(math.ceil(0.8 * n)) if n else 0
    p80 = int(np.sort(seen)[need - 1]) if n and int(good.sum()) >= need else None
    return Summary(
        key=sc.key, n=n, promote=int(promoted.sum()), bad=int(bad.sum()), good=int(good.sum()), abort=abort,
        undecided=int((~decided).sum()), bad_upper=cp_upper(int(bad.sum()), n),
        rows_median=med(rows[decided]), rows_mean=mean(rows[decided]),
        batches_median=med(batches[decided]), batches_mean=mean(batches[decided]),
        rows_power80=p80,
        srm_aborts=int(((code == ABORT) & (extra == 1)).sum()) if sc.strategy == "ab" else 0,
        calls_mean=mean(extra) if sc.strategy in FAST_FORWARD else None,
    )


# =========================================================================== driver
def run_all(sim: Sim, experiments: int, jobs: int = 1, verify: int = 0, exhaustive: bool = False,
            only: Sequence[str] | None = None, chunk: int = 250, progress=None, pool=None) -> dict:
    """Run every scenario (or those whose key starts with one of ``only``); returns results by key."""
    scs = [sc for sc in scenarios(sim) if not only or any(sc.key == o or sc.key.startswith(o.rstrip("/") + "/")
                                                          for o in only)]
    tasks = []
    cost = {"single": 0.01, "shadow": 1, "ab": 2, "canary": 6, "bandit": 2}  # rough seconds per chunk
    for sc in scs:
        mode = "exhaustive" if (exhaustive and sc.strategy in FAST_FORWARD) else "fast"
        n_sc = scenario_experiments(sc, experiments)
        for start in range(0, n_sc, chunk):
            tasks.append((cost[sc.strategy], (asdict(sim), asdict(sc), start, min(n_sc, start + chunk), mode)))
        if verify and not exhaustive and sc.strategy in FAST_FORWARD:
            tasks.append((cost[sc.strategy] * 20, (asdict(sim), asdict(sc), 0, min(verify, n_sc), "verify")))
    tasks.sort(key=lambda t: -t[0])  # long tasks first: better balance over the workers
    parts: dict[str, list] = {sc.key: [] for sc in scs}
    verified: dict[str, tuple[int, list]] = {}
    seconds: dict[str, float] = {sc.key: 0.0 for sc in scs}

    def collect(out):
        key, start, mode, res, mism, secs = out
        seconds[key] += secs
        if mode == "verify":
            verified[key] = (len(res), mism)
        else:
            parts[key].append((start, res))
        if progress:
            progress(key, mode, len(res))

    payload = [t[1] for t in tasks]
    if pool is not None:  # shared with the grid, whose cells were queued first
        for out in pool.map(run_chunk, payload, chunksize=1):
            collect(out)
    elif jobs <= 1:
        for task in payload:
            collect(run_chunk(task))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for out in pool.map(run_chunk, payload, chunksize=1):
                collect(out)
    results = {}
    for sc in scs:
        res = np.concatenate([r for _, r in sorted(parts[sc.key], key=lambda x: x[0])])
        results[sc.key] = {"scenario": sc, "res": res, "verified": verified.get(sc.key),
                           "seconds": seconds[sc.key],
                           "summary": summarize(sc, res, sim)}
    return results


# =========================================================================== report
def _pct(x: float | None, digits: int = 2) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}%"


def _num(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.0f}" if abs(x - round(x)) < 1e-9 or abs(x) >= 100 else f"{x:,.1f}"


def report(sim: Sim, results: dict, experiments: int, elapsed: float, command: str, jobs: int,
           exhaustive: bool) -> tuple[str, bool, bool]:
    """The printed report (markdown); also whether every target was met and every replay identical."""
    lines = [
        f"Command: `{command}`",
        "",
        f"{experiments:,} simulated experiments per scenario (the extras below the targets: a fifth, at least "
        f"1,000); {sim.rows_per_batch:,} rows per batch (the "
        f"pipeline's window), at most {sim.max_batches} batches; champion accuracy {sim.p_champion:.2f}; label "
        f"feedback: the models disagree on ψ = {100 * sim.discordant:g}% of the rows and the challenger wins a "
        f"disagreement with θ = 1/2 + Δ/(2ψ); outcome feedback: each arm's served rows only; α = {sim.alpha:g}, "
        f"canary δ = {sim.delta:g} (steps 5 → 25 → 50 → 100%, ≥ 500 rows a step), mSPRT Beta({sim.mixture:g}, "
        f"{sim.mixture:g}), bandit P(best) ≥ 0.95 with {sim.bandit_draws:,} draws; seed {sim.seed}; "
        f"{jobs} worker(s): {elapsed:.0f} s on the clock, {sum(r['seconds'] for r in results.values()):.0f} "
        "CPU-seconds.",
        "",
    ]
    groups: dict[tuple, dict] = {}
    for r in results.values():
        sc = r["scenario"]
        g = groups.setdefault((sc.strategy, sc.feedback, len(sc.diffs), sc.rows_per_batch), {})
        if sc.role in ("error", "power"):
            g[sc.role] = r
        elif sc.role == "both":
            g["power"] = r
            g.setdefault("mixed", r)

    # ---- targets
    lines += [
        "### Targets: bounded error ≤ α (judged by its one-sided 95% Clopper–Pearson upper bound); "
        "power at 90 → 92% ≥ 0.8",
        "",
        "| strategy | feedback | error DESIGN §4 bounds | truth | promoted | rate | 95% UCB | ≤ α | "
        "power (90 → 92%) | 95% CI | ≥ 0.8 |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | :---: | ---: | ---: | :---: |",
    ]
    all_ok = True
    for (strategy, feedback, n_arms, _), g in groups.items():
        if "error" not in g and "power" not in g:
            continue
        what = {"single": "— (checks only; it compares nothing)",
                "canary": "promoting a challenger worse by ≥ δ"}.get(strategy, "promoting a no-better challenger")
        name = strategy if n_arms == 1 else f"{strategy} ({n_arms} arms)"
        cells = [name, feedback, what]
        if "error" in g:
            s, sc = g["error"]["summary"], g["error"]["scenario"]
            bounded = strategy != "single"
            ok = s.bad_upper <= sim.alpha
            all_ok &= ok or not bounded
            cells += [sc.label, f"{s.bad:,}/{s.n:,}", _pct(s.bad_rate), _pct(s.bad_upper),
                      ("yes" if ok else "**NO**") if bounded else "n/a"]
        else:
            cells += ["—"] * 5
        if "power" in g:
            s = g["power"]["summary"]
            ok = s.good_rate >= 0.8
            all_ok &= ok
            lo, hi = _two_sided(s.good, s.n)
            cells += [_pct(s.good_rate, 1), f"{_pct(lo, 1)}–{_pct(hi, 1)}", "yes" if ok else "**NO**"]
        else:
            cells += ["—"] * 3
        lines.append("| " + " | ".join(cells) + " |")
        if "mixed" in g:
            s, sc = g["mixed"]["summary"], g["mixed"]["scenario"]
            ok = s.bad_upper <= sim.alpha
            all_ok &= ok
            lines.append(f"| {name} | {feedback} | promoting the no-better arm | {sc.label} | {s.bad:,}/{s.n:,} | "
                         f"{_pct(s.bad_rate)} | {_pct(s.bad_upper)} | {'yes' if ok else '**NO**'} | "
                         f"(the better arm: above) | | |")
    lines.append("")

    # ---- every scenario
    lines += [
        "### Every scenario: decisions, rows and batches to a decision",
        "",
        "| scenario | truth | experiments | promote | abort | undecided at the cap | rows to a decision: "
        "median / mean | batches: median / mean | notes |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results.values():
        sc, s = r["scenario"], r["summary"]
        notes = []
        if sc.strategy == "ab":
            plan = (S.ABState.plan_paired(sim.p_champion, sim.p_champion + GAIN, sim.discordant).planned_n
                    if sc.feedback == "label" else
                    S.ABState.plan_unpaired(sim.p_champion, sim.p_champion + GAIN).planned_n)
            unit = "rows (paired)" if sc.feedback == "label" else "rows per arm"
            notes.append(f"planned n {plan:,} {unit}; aborts by the sample-ratio check: {s.srm_aborts}")
        if sc.strategy == "canary":
            open_ = r["res"][:, 0] == NONE
            if open_.any():
                held = np.bincount(r["res"][open_, 3].clip(0, 3), minlength=4)
                notes.append("undecided, held at " + ", ".join(
                    f"{['5%', '25%', '50%', '100%'][i]}: {held[i]:,}" for i in range(4) if held[i]))
        if len(sc.diffs) > 1 and s.promote:
            notes.append(f"promoted the no-better arm {s.bad:,}, the better {s.good:,}")
        if sc.strategy in FAST_FORWARD and s.calls_mean is not None:
            notes.append(f"{s.calls_mean:.1f} calls/experiment")
        if r["verified"]:
            nv, mism = r["verified"]
            notes.append(f"replayed batch by batch: {nv - len(mism)}/{nv} identical")
        if s.rows_power80 is not None and sc.role in ("power", "both", "info") and s.good:
            notes.append(f"80% promoted by {s.rows_power80:,} rows")
        lines.append(
            f"| {sc.key} | {sc.label} | {s.n:,} | {_pct(s.promote / s.n)} | {_pct(s.abort / s.n)} | "
            f"{_pct(s.undecided / s.n)} | {_num(s.rows_median)} / {_num(s.rows_mean)} | "
            f"{_num(s.batches_median)} / {_num(s.batches_mean)} | {'; '.join(notes)} |")
    lines.append("")

    # ---- rows for the same power
    def find(pred):
        return next((r for r in results.values() if pred(r["scenario"])), None)

    n_paired = stats.sample_size_paired(sim.discordant, GAIN, sim.alpha, 0.8)
    n_unpaired = stats.sample_size_unpaired(sim.p_champion, sim.p_champion + GAIN, sim.alpha, 0.8)
    sh = find(lambda sc: sc.strategy == "shadow" and sc.role == "power")
    sh_fine = find(lambda sc: sc.strategy == "shadow" and sc.rows_per_batch and sc.diff > 0)
    ab_l = find(lambda sc: sc.strategy == "ab" and sc.feedback == "label" and sc.role == "power")
    ab_o = find(lambda sc: sc.strategy == "ab" and sc.feedback == "outcome" and sc.role == "power")
    lines += [
        "### Rows needed for 80% power at 90 → 92%",
        "",
        "| design | planned n (`stats.sample_size_*`) | rows in simulation | simulated power |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r, what in ((sh, "shadow: paired mSPRT after every 1,000-row batch"),
                    (sh_fine, "shadow: paired mSPRT after every {} rows")):
        if r:
            s, rsim = r["summary"], scenario_sim(sim, r["scenario"])
            lines.append(f"| {what.format(rsim.rows_per_batch)} | — (sequential) | "
                         f"{_num(s.rows_power80) if s.rows_power80 else '> cap'} by which 80% had promoted "
                         f"(median {_num(s.rows_median)} to a decision) | {_pct(s.good_rate, 1)} within the cap |")
    plan_l = S.ABState.plan_paired(sim.p_champion, sim.p_champion + GAIN, sim.discordant, alpha=sim.alpha).planned_n
    plan_o = S.ABState.plan_unpaired(sim.p_champion, sim.p_champion + GAIN, alpha=sim.alpha).planned_n
    if ab_l:
        s = ab_l["summary"]
        at_plan = stats.power_mcnemar(plan_l, sim.discordant, GAIN, sim.alpha)
        at_rows = stats.power_mcnemar(int(s.rows_median), sim.discordant, GAIN, sim.alpha) if s.rows_median else None
        lines.append(f"| A/B, label feedback: exact McNemar once (paired) | {plan_l:,} rows at ψ = "
                     f"{100 * sim.discordant:g}% by exact power ({_pct(at_plan, 1)} there; Connor: {n_paired:,}) | "
                     f"{_num(s.rows_median)} (the first batch boundary past the plan) | {_pct(s.good_rate, 1)} "
                     f"(exact power at {_num(s.rows_median)} rows: {_pct(at_rows, 1)}, times P(no SRM abort)) |")
    if ab_o:
        s = ab_o["summary"]
        at_plan = stats.power_two_proportion(plan_o, sim.p_champion, sim.p_champion + GAIN, sim.alpha)
        lines.append(f"| A/B, outcome feedback: two-proportion z once (unpaired, 50/50) | {plan_o:,} per arm by exact "
                     f"power ({_pct(at_plan, 1)} there; formula: {n_unpaired:,}) = {2 * plan_o:,} rows | "
                     f"{_num(s.rows_median)} (the first batch where the smaller arm passes the plan) | "
                     f"{_pct(s.good_rate, 1)} |")
    best = sh_fine or sh
    if best and ab_o and best["summary"].rows_power80:
        n80 = best["summary"].rows_power80
        lines += ["", f"Shadow reaches 80% power by {n80:,} rows: {2 * plan_o / n80:.1f}× fewer than the "
                      f"{2 * plan_o:,} an unpaired A/B plans (by exact power) for the same power, "
                      f"{n80 / plan_l:.1f}× the {plan_l:,} a fixed-n exact McNemar plans (the price of looking after "
                      "every batch)."]
    lines.append("")

    # ---- verification
    all_same = True
    checked = [(k, r["verified"]) for k, r in results.items() if r["verified"]]
    fallbacks = sum(int((r["res"][:, 3] == -1).sum()) for r in results.values()
                    if r["scenario"].strategy in FAST_FORWARD)
    if exhaustive:
        lines.append("Every strategy was called after every batch in every experiment (`--exhaustive`).")
    else:
        total = sum(v[0] for _, v in checked)
        bad = sum(len(v[1]) for _, v in checked)
        all_same = bad == 0 and fallbacks == 0
        lines.append(
            "Single, A/B and canary were called after every batch in every experiment. Shadow and bandit skip "
            "the calls before the mSPRT's first crossing (module docstring); "
            f"{total:,} of their experiments were replayed with a call after every batch: {total - bad:,} "
            f"identical, {bad} different; the real call disagreed with the skip {fallbacks} times.")
        for key, (_, mism) in checked:
            for i, a, b in mism[:5]:
                lines.append(f"- MISMATCH {key} experiment {i}: fast {a} vs batch by batch {b}")
    lines += ["", "All targets met." if all_ok else "**Some targets missed** (the NO cells)."]
    return "\n".join(lines), all_ok, all_same


def _two_sided(x: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    a = (1 - confidence) / 2
    lo = 0.0 if x == 0 else float(beta_dist.ppf(a, x, n - x + 1))
    hi = 1.0 if x == n else float(beta_dist.ppf(1 - a, x + 1, n - x))
    return lo, hi


def write_markdown(path: Path, text: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the generated block of ``path`` between ``begin`` and ``end`` (keeping any hand-written
    text around it); a file without the markers gets the block appended."""
    block = f"{begin}\n{text}\n{end}"
    if path.exists():
        old = path.read_text(encoding="utf-8")
        if begin in old and end in old:
            new = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: block, old, count=1, flags=re.S)
            path.write_text(new, encoding="utf-8")
            return
        path.write_text(old.rstrip("\n") + f"\n\n{block}\n", encoding="utf-8")
        return
    path.write_text(f"# Decision quality of the deployment strategies\n\n{block}\n", encoding="utf-8")


def readme_block(sim: Sim, results: dict, grid: dict | None, run_line: str) -> str:
    """The README's decision-quality tables, from the same run as DECISIONS.md."""
    lines = [run_line, "",
             "| strategy | feedback | error bounded by α | rate | 95% UCB | power, 90 → 92% |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    by_key = {r["scenario"].key: r for r in results.values()}
    what = {"canary": "promoting one worse by ≥ δ"}
    for key_err, key_pow, name in (
            ("shadow/label/+0.000", "shadow/label/+0.020", "shadow"), ("ab/label/+0.000", "ab/label/+0.020", "ab"),
            ("ab/outcome/+0.000", "ab/outcome/+0.020", "ab"), ("canary/label/-0.010", "canary/label/+0.020", "canary"),
            ("canary/outcome/-0.010", "canary/outcome/+0.020", "canary"),
            ("bandit/label/+0.000", "bandit/label/+0.020", "bandit"),
            ("bandit/label/+0.000,+0.000", "bandit/label/+0.020,+0.000", "bandit, 2 arms")):
        e, pw = by_key.get(key_err), by_key.get(key_pow)
        if not e or not pw:
            continue
        se, sp = e["summary"], pw["summary"]
        err = what.get(e["scenario"].strategy, "promoting a no-better arm" if "2 arms" in name
                       else "promoting a no-better challenger")
        lines.append(f"| {name} | {e['scenario'].feedback} | {err} | {_pct(se.bad_rate)} | {_pct(se.bad_upper)}"
                     f"{'' if se.bad_upper <= sim.alpha else ' **> α**'} | {_pct(sp.good_rate, 1)} |")
    if grid:
        from benchmarks import decision_grid as G

        w = G.worst(grid)
        lines += ["", f"**Every window size** (the grid, {grid['runs']:,} experiments a cell; label feedback up to "
                      f"{grid['label_rows']:,} rows an experiment, outcome feedback up to {grid['outcome_rows']:,}): "
                      f"largest 95% UCB {_pct(w['error_ucb'])} ({w['strategy']}, {w['feedback']}, "
                      f"{w['window']:,}-row windows) against α = {sim.alpha:g}.", ""]
        lines += G.readme_rows(grid)
        sentence = G.speed_sentence(grid)
        if sentence:
            lines += ["", sentence]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1,000 experiments a scenario (default 10,000)")
    ap.add_argument("--experiments", type=int, default=None, help="experiments per scenario")
    ap.add_argument("--seed", type=int, default=Sim.seed)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    ap.add_argument("--verify", type=int, default=None,
                    help="experiments per shadow/bandit scenario also replayed with a call after every batch "
                         "(default 50, --quick 20)")
    ap.add_argument("--exhaustive", action="store_true", help="call every strategy after every batch (slow)")
    ap.add_argument("--rows-per-batch", type=int, default=Sim.rows_per_batch)
    ap.add_argument("--max-batches", type=int, default=Sim.max_batches)
    ap.add_argument("--discordant", type=float, default=Sim.discordant, help="ψ, share of discordant rows")
    ap.add_argument("--only", nargs="*", default=None,
                    help="scenario keys or key prefixes ending at a '/', e.g. shadow canary/outcome")
    ap.add_argument("--no-grid", action="store_true",
                    help="skip the vectorised grid of window sizes, keyed traffic and re-read sources "
                         "(benchmarks/decision_grid.py)")
    ap.add_argument("--grid-label-rows", type=int, default=10_000,
                    help="rows per grid experiment with label feedback (default 10,000)")
    ap.add_argument("--grid-outcome-rows", type=int, default=20_000,
                    help="rows per grid experiment with outcome feedback (default 20,000)")
    ap.add_argument("--write", action="store_true",
                    help=f"write the report into {DEFAULT_OUT.name} and its summary into the README (one run, "
                         "both files)")
    ap.add_argument("--out", default=None, help=f"markdown file for the report with --write (default {DEFAULT_OUT})")
    ap.add_argument("--readme", default=None, help=f"README for the summary with --write (default {README})")
    args = ap.parse_args(argv)
    experiments = args.experiments or (1000 if args.quick else 10_000)
    verify = args.verify if args.verify is not None else (20 if args.quick else 50)
    sim = Sim(rows_per_batch=args.rows_per_batch, max_batches=args.max_batches, discordant=args.discordant,
              seed=args.seed)
    command = ".venv/bin/python benchmarks/decision_quality.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    from benchmarks import decision_grid  # imported before the run: the code that runs is the code read now

    t0 = time.perf_counter()
    load0 = os.getloadavg()
    cpu0 = _cpu_seconds()
    done = {"n": 0}

    def progress(key, mode, n):
        done["n"] += n
        print(f"\r  {done['n']:,} experiments done ({time.perf_counter() - t0:.0f} s) — last: {key} {mode}   ",
              end="", file=sys.stderr, flush=True)

    want_grid = not args.no_grid and not args.only
    gsim = decision_grid.GridSim(seed=args.seed)
    gkw = dict(label_rows=args.grid_label_rows, outcome_rows=args.grid_outcome_rows)
    grid, grid_ok = None, True
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        # One pool: the grid's long cells are queued first, the scenarios' chunks fill in behind them.
        futures = (decision_grid.submit_grid(pool, gsim, experiments, lambda m: print(f"\n  grid: {m}", file=sys.stderr,
                                                                                        flush=True), **gkw)
                   if want_grid else None)
        results = run_all(sim, experiments, jobs=args.jobs, verify=verify, exhaustive=args.exhaustive,
                          only=args.only, progress=progress, pool=pool)
        print(file=sys.stderr)
        elapsed = time.perf_counter() - t0
        text, all_ok, all_same = report(sim, results, experiments, elapsed, command, args.jobs, args.exhaustive)
        if want_grid:
            grid = decision_grid.run_grid(gsim, experiments, futures=futures, **gkw)
            grid_text, grid_ok = decision_grid.report(grid)
            text += "\n\n" + grid_text
    total = time.perf_counter() - t0
    load1 = os.getloadavg()
    run_line = (f"From one run of `{command}`: {total / 60:.0f} min on the clock, {_cpu_seconds() - cpu0:,.0f} "
                f"CPU-seconds over {args.jobs} worker(s), on {os.cpu_count()} cores shared with other work (load "
                f"average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end).")
    text = f"{run_line}\n\n{text}"
    print(text)
    print(f"\n{'every target met' if all_ok and grid_ok else 'SOME TARGETS MISSED'}; "
          f"{'every replay identical' if all_same else 'REPLAY MISMATCH'}", file=sys.stderr)
    if args.write:
        out = Path(args.out or DEFAULT_OUT)
        write_markdown(out, text)
        readme = Path(args.readme or README)
        write_markdown(readme, readme_block(sim, results, grid, run_line), README_BEGIN, README_END)
        print(f"(written to {out} and {readme})", file=sys.stderr)
    return 0 if all_same else 1


def _cpu_seconds() -> float:
    """CPU time of this process and its finished workers."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    sys.exit(main())
