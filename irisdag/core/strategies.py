"""Deployment strategies: the pure decision logic behind the comparison (DESIGN §4).

The Dagster assets call these after every batch. Each takes the evidence (and,
where the strategy has memory, its state: a frozen dataclass that round-trips
through ``to_dict``/``from_dict``) and returns a :class:`DecisionRecord` (and
the new state). Nothing here touches Dagster or Redis.

Evidence
    :class:`PairedEvidence` — label feedback: every version scored every row,
    so each row with feedback is a pair; only discordant rows (``b`` champion
    only right, ``c`` challenger only right) carry information.
    :class:`UnpairedEvidence` — outcome feedback: each arm's *served* rows,
    kept per batch so tests can stratify.

Strategies and the error each keeps at most α
    ``single``  — promote once the checks pass (no comparison).
    ``shadow``  — paired mSPRT after every batch; promote when the always-valid
                  p ≤ α and c > b (promoting a no-better challenger ≤ α).
    ``ab``      — fixed-n: a planned n, sample-ratio check, then exact McNemar
                  (paired) or Fisher / two-proportion z (unpaired) once.
    ``canary``  — ramp steps; always-valid confidence sequence for Δ =
                  challenger − champion: ramp while its lower bound > −δ, abort
                  when its upper bound < 0, promote after the last step
                  (promoting a challenger worse by ≥ δ).
    ``bandit``  — Thompson shares; P(best) ≥ threshold only *triggers* the
                  confirmatory paired mSPRT, which decides.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping, Sequence

import numpy as np

from irisdag.core import stats
from irisdag.core.decision import DecisionRecord, utc_now

__all__ = [
    "BatchCounts",
    "PairedEvidence",
    "UnpairedBatch",
    "UnpairedEvidence",
    "ABState",
    "CanaryState",
    "BanditState",
    "DEFAULT_CANARY_STEPS_BP",
    "DEFAULT_CHAMPION_FLOOR_BP",
    "decide_single",
    "decide_shadow",
    "decide_ab",
    "decide_canary",
    "decide_bandit",
    "shadow_always_valid_p",
    "msprt_crossing",
]

DEFAULT_CANARY_STEPS_BP = (500, 2500, 5000, 10000)
# The bandit champion's least share of served traffic. Under outcome feedback the
# confirmatory test compares served rows, so a champion starved by Thompson sampling
# could never be shown worse than an arm (1.4% power at 20,000 rows with no floor).
DEFAULT_CHAMPION_FLOOR_BP = 2000
_WILSON = 0.95  # level of the per-model accuracy intervals in every record


def _count(name: str, value) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _from_dict(cls, data: Mapping[str, Any]):
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


# =========================================================================== evidence
@dataclass(frozen=True)
class BatchCounts:
    """Paired counts of one batch (partition).

    ``n`` rows judged; ``b`` champion right & challenger wrong; ``c`` the
    reverse; ``champion_right``/``challenger_right`` each model's correct rows;
    ``n_excluded`` rows left out because a compared model was trained on them;
    ``n_repeated`` rows not judged because their input was judged already in
    this experiment (re-read or repeated: each input counts once).
    """

    partition: str
    n: int
    b: int
    c: int
    champion_right: int
    challenger_right: int
    n_excluded: int = 0
    n_repeated: int = 0

    def __post_init__(self):
        for name in ("n", "b", "c", "champion_right", "challenger_right", "n_excluded", "n_repeated"):
            object.__setattr__(self, name, _count(name, getattr(self, name)))
        object.__setattr__(self, "partition", str(self.partition))
        both = self.champion_right - self.b
        if both < 0 or self.challenger_right - self.c != both:
            raise ValueError(
                f"inconsistent paired counts in batch {self.partition!r}: champion_right − b "
                f"({self.champion_right} − {self.b}) must equal challenger_right − c "
                f"({self.challenger_right} − {self.c}), the rows both got right"
            )
        if both + self.b + self.c > self.n:
            raise ValueError(f"batch {self.partition!r}: more right answers than rows ({self.n})")


@dataclass(frozen=True)
class PairedEvidence:
    """Paired evidence accumulated over batches (immutable: adding returns a new one).

    Totals ``n``, ``b``, ``c``, ``champion_right``, ``challenger_right`` and
    ``n_excluded`` are sums over ``batches``; each batch is one look for the
    sequential tests.
    """

    champion: str = ""
    challenger: str = ""
    batches: tuple[BatchCounts, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "batches", tuple(
            b if isinstance(b, BatchCounts) else BatchCounts(**b) for b in self.batches
        ))
        seen: set[str] = set()
        for batch in self.batches:
            if batch.partition in seen:
                raise ValueError(f"batch {batch.partition!r} counted twice")
            seen.add(batch.partition)

    # ------------------------------------------------------------ totals
    @property
    def n(self) -> int:
        return sum(x.n for x in self.batches)

    @property
    def b(self) -> int:
        return sum(x.b for x in self.batches)

    @property
    def c(self) -> int:
        return sum(x.c for x in self.batches)

    @property
    def champion_right(self) -> int:
        return sum(x.champion_right for x in self.batches)

    @property
    def challenger_right(self) -> int:
        return sum(x.challenger_right for x in self.batches)

    @property
    def n_excluded(self) -> int:
        return sum(x.n_excluded for x in self.batches)

    @property
    def n_repeated(self) -> int:
        return sum(x.n_repeated for x in self.batches)

    @property
    def partitions(self) -> tuple[str, ...]:
        return tuple(x.partition for x in self.batches)

    # ------------------------------------------------------------ building
    def add_batch(
        self,
        b: int,
        c: int,
        n: int,
        champion_right: int,
        challenger_right: int,
        partition: str | None = None,
        n_excluded: int = 0,
        n_repeated: int = 0,
    ) -> "PairedEvidence":
        """A new evidence with one more batch (``partition`` defaults to its index).

        A partition already present raises ``ValueError``: a batch counted
        twice would inflate the evidence.
        """
        name = str(len(self.batches)) if partition is None else str(partition)
        batch = BatchCounts(name, n, b, c, champion_right, challenger_right, n_excluded, n_repeated)
        return replace(self, batches=self.batches + (batch,))

    def add_rows(self, champion_pred, challenger_pred, truth, partition: str | None = None, exclude=None) -> "PairedEvidence":
        """Count one batch from per-row predictions and true labels, then :meth:`add_batch`.

        ``exclude`` (optional boolean array) marks rows a compared model was
        trained on; they are left out and counted in ``n_excluded``.
        """
        champ = np.asarray(champion_pred)
        chall = np.asarray(challenger_pred)
        y = np.asarray(truth)
        if not (champ.ndim == chall.ndim == y.ndim == 1) or not (champ.shape == chall.shape == y.shape):
            raise ValueError(
                f"predictions and truth must be 1-D arrays of one length, got shapes "
                f"{champ.shape}, {chall.shape}, {y.shape}"
            )
        keep = np.ones(y.shape, dtype=bool)
        if exclude is not None:
            ex = np.asarray(exclude, dtype=bool)
            if ex.shape != y.shape:
                raise ValueError(f"exclude has shape {ex.shape}, expected {y.shape}")
            keep = ~ex
        right1 = (champ == y) & keep
        right2 = (chall == y) & keep
        return self.add_batch(
            b=int(np.sum(right1 & ~right2)),
            c=int(np.sum(right2 & ~right1)),
            n=int(keep.sum()),
            champion_right=int(right1.sum()),
            challenger_right=int(right2.sum()),
            partition=partition,
            n_excluded=int((~keep).sum()),
        )

    @classmethod
    def from_rows(cls, champion_pred, challenger_pred, truth, *, champion: str = "", challenger: str = "",
                  partition: str | None = None, exclude=None) -> "PairedEvidence":
        """Evidence of one batch from numpy arrays of predictions and true labels."""
        return cls(champion, challenger).add_rows(champion_pred, challenger_pred, truth, partition, exclude)

    def prefix(self, k: int) -> "PairedEvidence":
        """The evidence as it stood after the first ``k`` batches."""
        return replace(self, batches=self.batches[:k])

    def looks(self) -> list[tuple[int, int, int]]:
        """Cumulative ``(b, c, n)`` after each batch: the sequential tests' looks."""
        out, b, c, n = [], 0, 0, 0
        for x in self.batches:
            b, c, n = b + x.b, c + x.c, n + x.n
            out.append((b, c, n))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"champion": self.champion, "challenger": self.challenger,
                "batches": [asdict(x) for x in self.batches]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PairedEvidence":
        return cls(data.get("champion", ""), data.get("challenger", ""),
                   tuple(BatchCounts(**x) for x in data.get("batches", ())))


@dataclass(frozen=True)
class UnpairedBatch:
    """One batch of served traffic: the champion's arm ``k1`` right of ``n1``, the challenger's ``k2`` of ``n2``."""

    partition: str
    k1: int
    n1: int
    k2: int
    n2: int
    n_excluded: int = 0
    n_repeated: int = 0

    def __post_init__(self):
        for name in ("k1", "n1", "k2", "n2", "n_excluded", "n_repeated"):
            object.__setattr__(self, name, _count(name, getattr(self, name)))
        object.__setattr__(self, "partition", str(self.partition))
        if self.k1 > self.n1 or self.k2 > self.n2:
            raise ValueError(f"batch {self.partition!r}: successes exceed rows")


@dataclass(frozen=True)
class UnpairedEvidence:
    """Unpaired evidence (outcome feedback) per batch; tests stratify by batch."""

    champion: str = ""
    challenger: str = ""
    batches: tuple[UnpairedBatch, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "batches", tuple(
            b if isinstance(b, UnpairedBatch) else UnpairedBatch(**b) for b in self.batches
        ))
        seen: set[str] = set()
        for batch in self.batches:
            if batch.partition in seen:
                raise ValueError(f"batch {batch.partition!r} counted twice")
            seen.add(batch.partition)

    k1 = property(lambda self: sum(x.k1 for x in self.batches))
    n1 = property(lambda self: sum(x.n1 for x in self.batches))
    k2 = property(lambda self: sum(x.k2 for x in self.batches))
    n2 = property(lambda self: sum(x.n2 for x in self.batches))
    n = property(lambda self: self.n1 + self.n2)
    n_excluded = property(lambda self: sum(x.n_excluded for x in self.batches))
    n_repeated = property(lambda self: sum(x.n_repeated for x in self.batches))
    partitions = property(lambda self: tuple(x.partition for x in self.batches))

    def add_batch(self, k1: int, n1: int, k2: int, n2: int, partition: str | None = None,
                  n_excluded: int = 0, n_repeated: int = 0) -> "UnpairedEvidence":
        name = str(len(self.batches)) if partition is None else str(partition)
        return replace(self, batches=self.batches + (UnpairedBatch(name, k1, n1, k2, n2, n_excluded, n_repeated),))

    def strata(self) -> list[tuple[int, int, int, int]]:
        return [(x.k1, x.n1, x.k2, x.n2) for x in self.batches]

    def prefix(self, k: int) -> "UnpairedEvidence":
        return replace(self, batches=self.batches[:k])

    def to_dict(self) -> dict[str, Any]:
        return {"champion": self.champion, "challenger": self.challenger,
                "batches": [asdict(x) for x in self.batches]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "UnpairedEvidence":
        return cls(data.get("champion", ""), data.get("challenger", ""),
                   tuple(UnpairedBatch(**x) for x in data.get("batches", ())))


# =========================================================================== record helpers
def _fmt_p(p: float) -> str:
    return f"{p:.2e}" if p < 1e-4 else f"{p:.4f}"


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _paired_record(ev: PairedEvidence, *, strategy: str, decision: str, reason: str, test: str,
                   statistic=None, p_value=None, alpha=None, mixture=None, lam=None,
                   difference_ci=None, interval_method=None, shares_bp=None,
                   created_at: str | None = None) -> DecisionRecord:
    """A fully filled record for paired evidence (Wilson, Tango interval, McNemar beside)."""
    n, b, c = ev.n, ev.b, ev.c
    acc1 = ev.champion_right / n if n else None
    acc2 = ev.challenger_right / n if n else None
    if difference_ci is None:
        difference_ci = stats.paired_diff_interval(b, c, n, _WILSON)
        interval_method = "95% Tango score interval (paired, fixed-n)"
    record = DecisionRecord(
        decision_id="",
        strategy=strategy,
        evidence="paired",
        n=n,
        b=b,
        c=c,
        champion=ev.champion,
        challenger=ev.challenger,
        champion_accuracy=acc1,
        champion_ci=stats.wilson(ev.champion_right, n, _WILSON) if n else None,
        challenger_accuracy=acc2,
        challenger_ci=stats.wilson(ev.challenger_right, n, _WILSON) if n else None,
        difference=(c - b) / n if n else None,
        difference_ci=difference_ci if n else None,
        interval_method=interval_method if n else "",
        test=test,
        statistic=statistic,
        p_value=p_value,
        alpha=alpha,
        mixture=mixture,
        lambda_=lam,
        mcnemar_p=stats.mcnemar_exact(b, c),
        decision=decision,
        reason=reason,
        partitions=ev.partitions,
        n_excluded=ev.n_excluded,
        n_repeated=ev.n_repeated,
        created_at=created_at or utc_now(),
        shares_bp=shares_bp or {},
    )
    return record.with_id()


def _unpaired_record(ev: UnpairedEvidence, *, strategy: str, decision: str, reason: str, test: str,
                     statistic=None, p_value=None, alpha=None, mixture=None, lam=None,
                     difference_ci=None, interval_method=None, shares_bp=None,
                     created_at: str | None = None) -> DecisionRecord:
    k1, n1, k2, n2 = ev.k1, ev.n1, ev.k2, ev.n2
    acc1 = k1 / n1 if n1 else None
    acc2 = k2 / n2 if n2 else None
    if difference_ci is None and n1 and n2:
        difference_ci = stats.newcombe_diff(k1, n1, k2, n2, _WILSON)
        interval_method = "95% Newcombe hybrid score interval (fixed-n)"
    record = DecisionRecord(
        decision_id="",
        strategy=strategy,
        evidence="unpaired",
        n=ev.n,
        champion=ev.champion,
        challenger=ev.challenger,
        champion_accuracy=acc1,
        champion_ci=stats.wilson(k1, n1, _WILSON) if n1 else None,
        challenger_accuracy=acc2,
        challenger_ci=stats.wilson(k2, n2, _WILSON) if n2 else None,
        difference=(acc2 - acc1) if (n1 and n2) else None,
        difference_ci=difference_ci if (n1 and n2) else None,
        interval_method=(interval_method or "") if (n1 and n2) else "",
        test=test,
        statistic=statistic,
        p_value=p_value,
        alpha=alpha,
        mixture=mixture,
        lambda_=lam,
        decision=decision,
        reason=reason,
        partitions=ev.partitions,
        n_excluded=ev.n_excluded,
        n_repeated=ev.n_repeated,
        created_at=created_at or utc_now(),
        shares_bp=shares_bp or {},
    )
    return record.with_id()


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    return alpha


# =========================================================================== single
def decide_single(validated: bool | None, *, champion: str = "", challenger: str = "",
                  created_at: str | None = None) -> DecisionRecord:
    """``single``: the challenger replaces the champion once its checks pass.

    ``validated`` is the checks' verdict: ``True`` → promote; ``False`` →
    abort (a version that failed its checks is never served); ``None`` (not
    yet checked) → continue. No statistics are involved (evidence ``none``).
    """
    if validated is True:
        decision, reason = "promote", "The challenger passed its validity checks; the single strategy promotes it without a comparison."
    elif validated is False:
        decision, reason = "abort", "The challenger failed its validity checks; it is never served."
    elif validated is None:
        decision, reason = "continue", "The challenger's validity checks have not reported yet."
    else:
        raise TypeError(f"validated must be True, False or None, got {validated!r}")
    record = DecisionRecord(
        decision_id="", strategy="single", evidence="none", n=0, champion=champion,
        challenger=challenger, decision=decision, reason=reason, test="validity checks",
        created_at=created_at or utc_now(),
    )
    return record.with_id()


# =========================================================================== shadow
def _history(looks_p_history) -> list[tuple[float, int]]:
    """Earlier looks as (p, direction): a bare p has no known direction (0); (p, ±1) pairs carry theirs."""
    out = []
    for item in looks_p_history or ():
        p, direction = (item, 0) if isinstance(item, (int, float)) else (item[0], int(item[1]))
        p = float(p)
        if not 0.0 <= p <= 1.0:  # also refuses NaN
            raise ValueError(f"an earlier always-valid p-value is not in [0, 1]: {p!r}")
        if direction not in (-1, 0, 1):
            raise ValueError(f"an earlier look's direction must be -1, 0 or +1, got {direction!r}")
        out.append((p, direction))
    return out


def shadow_always_valid_p(evidence: PairedEvidence, mixture: float = 1.0,
                          looks_p_history: Sequence | None = None) -> tuple[float, float, float]:
    """Paired mSPRT over every batch of ``evidence`` (each batch one look).

    Returns ``(always_valid_p, log_lambda_now, lambda_now)``: the running
    minimum of min(1, 1/Λ) over the batch looks and any earlier looks'
    p-values in ``looks_p_history`` (floats, or (p, direction) pairs), and
    the likelihood ratio at the last look.
    """
    lams = []
    for b, c, _ in evidence.looks():
        lams.append(stats.paired_msprt(b, c, mixture)[1])
    p = stats.always_valid_p(lams)
    for earlier, _ in _history(looks_p_history):
        p = min(p, earlier)
    log_lam, lam = stats.paired_msprt(evidence.b, evidence.c, mixture)
    return p, log_lam, lam


def msprt_crossing(evidence: PairedEvidence, alpha: float, mixture: float = 1.0) -> tuple[int | None, int]:
    """First batch look at which the paired mSPRT crossed 1/α, and its direction there.

    Returns ``(k, direction)``: ``k`` the number of batches up to and including
    the crossing (``None`` if Λ never reached 1/α), ``direction`` +1 if the
    challenger led (c > b) at that look, −1 if the champion did, 0 without a
    crossing. A sequential test stops at its first crossing: its guarantee is
    about that stopping time, so the crossing's direction is the verdict even
    if later batches were added before anyone looked.

    A look crosses when its always-valid p, min(1, 1/Λ), is at most α: the
    same number the record shows, so a crossing and "p ≤ α" never disagree
    (Λ ≥ 1/α and 1/Λ ≤ α can differ by one rounding, e.g. b = 0, c = 17).
    """
    alpha = _check_alpha(alpha)
    for k, (b, c, _) in enumerate(evidence.looks(), start=1):
        _, lam = stats.paired_msprt(b, c, mixture)
        if stats.always_valid_p([lam]) <= alpha:
            return k, (1 if c > b else -1)  # Λ ≤ 1 < 1/α whenever b = c, so never a tie here
    return None, 0



def no_rows_reason(evidence) -> str:
    """Why n is 0: no feedback yet, or every row with feedback was left out because a
    compared model trained on it (e.g. the same file scored again after retraining)."""
    excluded = getattr(evidence, "n_excluded", 0)
    if excluded:
        return (f"Nothing to judge: all {excluded:,} rows with feedback were left out because a compared "
                "model was trained on them (a model is never judged on its training rows), so n = 0. "
                "New rows are needed to compare the models.")
    return "No rows with feedback yet: nothing to judge."

def decide_shadow(evidence: PairedEvidence, alpha: float = 0.05, mixture: float = 1.0,
                  looks_p_history: Sequence | None = None, *, strategy: str = "shadow",
                  created_at: str | None = None) -> DecisionRecord:
    """``shadow``: the paired mSPRT after every batch.

    promote when the always-valid p ≤ α and c > b; abort when p ≤ α and
    b > c; otherwise continue. Each batch of ``evidence`` is a look. The test
    stops at its first crossing: when p first reached α at batch k, the
    record judges the evidence up to batch k (so the same crossing always
    gives the same record and id, however many batches arrived since).
    ``looks_p_history`` adds always-valid p-values of looks not in the
    evidence (e.g. read from earlier records), as floats or (p, direction)
    pairs. A crossing known only from the history decides in the direction
    recorded *at that crossing* (the first such look); a bare p-value has no
    direction, and today's counts never stand in for it: such a crossing
    alone decides nothing (continue, saying so). No evidence yet (n = 0 or
    no discordant row) → continue.
    """
    if not isinstance(evidence, PairedEvidence):
        raise TypeError("the shadow strategy judges paired evidence (the challenger serves nobody, "
                        "so only label feedback can judge it)")
    alpha = _check_alpha(alpha)
    test = f"paired mSPRT, Beta({mixture:g}, {mixture:g}) mixture over discordant pairs; statistic = log Λ"
    k, direction = msprt_crossing(evidence, alpha, mixture)
    crossed_note = ""
    if k is not None:
        if k < len(evidence.batches):
            crossed_note = (f" The test crossed at batch {evidence.batches[k - 1].partition!r} ({k} of "
                            f"{len(evidence.batches)}) and stopped there; this judges the evidence up to it.")
        evidence = evidence.prefix(k)
    b, c, n = evidence.b, evidence.c, evidence.n
    p, log_lam, lam = shadow_always_valid_p(evidence, mixture, looks_p_history)
    if k is None and p <= alpha:
        # No look of the evidence crossed, so an earlier look did: its recorded direction decides.
        direction = next(d for q, d in _history(looks_p_history) if q <= alpha)
    if n == 0 or b + c == 0:
        reason = (no_rows_reason(evidence) if n == 0 else
                  f"No discordant rows among {n:,}: both models were right or wrong on the same rows, "
                  "so there is no evidence either way yet.")
        return _paired_record(evidence, strategy=strategy, decision="continue", reason=reason, test=test,
                              statistic=log_lam, p_value=p, alpha=alpha, mixture=mixture, lam=lam,
                              created_at=created_at)
    split = (f"Of {b + c:,} discordant rows the challenger alone was right on {c:,} (c) and the champion "
             f"alone on {b:,} (b)")
    if p <= alpha and direction > 0:
        decision = "promote"
        reason = (f"{split}; the always-valid p-value {_fmt_p(p)} is at most α = {alpha:g}: the challenger is "
                  f"better ({100 * (c - b) / n:+.2f} accuracy points). Promote.{crossed_note}")
    elif p <= alpha and direction < 0:
        decision = "abort"
        reason = (f"{split}; the always-valid p-value {_fmt_p(p)} is at most α = {alpha:g}: the challenger is "
                  f"worse ({100 * (c - b) / n:+.2f} accuracy points). Abort.{crossed_note}")
    else:
        decision = "continue"
        # p ≤ α without a direction: only an earlier look given as a bare p-value can do that
        # (a crossing in the evidence always has one, as b ≠ c there).
        why = (f"the always-valid p-value {_fmt_p(p)} is above α = {alpha:g}" if p > alpha else
               f"an earlier look reached p {_fmt_p(p)}, but which model led at that look is not recorded, and "
               "today's counts cannot stand in for it")
        reason = f"{split}; {why}, so keep collecting (looking again after the next batch is safe)."
    return _paired_record(evidence, strategy=strategy, decision=decision, reason=reason, test=test,
                          statistic=log_lam, p_value=p, alpha=alpha, mixture=mixture, lam=lam,
                          created_at=created_at)


# =========================================================================== A/B
@dataclass(frozen=True)
class ABState:
    """A/B plan and memory.

    ``planned_n``: rows for paired evidence (every row is a pair) or rows *per
    arm* for unpaired evidence, fixed in advance by a power calculation
    (:meth:`plan_paired`, :meth:`plan_unpaired`). ``share_bp``: the
    challenger's planned share in basis points (the SRM check's expectation).
    ``srm_alpha``: a split whose SRM p (:func:`stats.srm_pvalue`) is below it
    is a mismatch.
    ``decided``: the final record (as a dict) once the test has been decided;
    later calls return it unchanged, so it acts once.
    """

    planned_n: int
    share_bp: int = 5000
    alpha: float = 0.05
    srm_alpha: float = 0.001
    decided: Mapping[str, Any] | None = None

    def __post_init__(self):
        if _count("planned_n", self.planned_n) < 1:
            raise ValueError("planned_n must be at least 1")
        if not 0 < int(self.share_bp) < 10000:
            raise ValueError(f"share_bp must be within 1..9999, got {self.share_bp!r}")
        _check_alpha(self.alpha)
        _check_alpha(self.srm_alpha)

    @classmethod
    def plan_paired(cls, p_champion: float, p_challenger: float, p_discordant: float, *,
                    alpha: float = 0.05, power: float = 0.8, share_bp: int = 5000) -> "ABState":
        """Plan by the exact McNemar test's exact power (:func:`stats.planned_n_paired`), not Connor's approximation."""
        n = stats.planned_n_paired(p_discordant, p_challenger - p_champion, alpha, power)
        return cls(planned_n=n, share_bp=share_bp, alpha=alpha)

    @classmethod
    def plan_unpaired(cls, p_champion: float, p_challenger: float, *, alpha: float = 0.05,
                      power: float = 0.8, share_bp: int = 5000) -> "ABState":
        """Plan rows per arm by the z test's exact power (:func:`stats.planned_n_unpaired`); both arms must reach it."""
        n = stats.planned_n_unpaired(p_champion, p_challenger, alpha, power)
        return cls(planned_n=n, share_bp=share_bp, alpha=alpha)

    def to_dict(self) -> dict[str, Any]:
        return {"planned_n": self.planned_n, "share_bp": self.share_bp, "alpha": self.alpha,
                "srm_alpha": self.srm_alpha, "decided": None if self.decided is None else dict(self.decided)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ABState":
        return _from_dict(cls, data)


def decide_ab(evidence: PairedEvidence | UnpairedEvidence, state: ABState,
              served: tuple[int, int] | None = None, *,
              created_at: str | None = None) -> tuple[DecisionRecord, ABState]:
    """``ab``: a fixed split, decided once at the planned n.

    ``served`` = distinct keys routed to (champion, challenger) so far, for
    the sample-ratio-mismatch check (routing hashes keys, so the key is the
    randomized unit, not the row); required for paired evidence (every
    version scores every row, so the evidence itself cannot show the split),
    taken from the arm sizes for unpaired evidence (judged rows are distinct
    inputs: each counts once).

    1. SRM first, at every look: p < ``srm_alpha`` → abort (the
       routing is broken, the result cannot be trusted).
    2. Before the planned n → continue (a fixed-n test may not be peeked at).
    3. At the first batch where the planned n is reached, judge the evidence
       up to that batch exactly once: paired → exact McNemar; unpaired →
       Fisher exact when an expected cell is below 5, else the pooled
       two-proportion z. promote when p ≤ α and the challenger is better,
       abort otherwise (at the planned n, not shown better means not better
       enough). The record is kept in the state and returned by later calls.
    """
    if state.decided is not None:
        return DecisionRecord.from_dict(state.decided), state
    paired = isinstance(evidence, PairedEvidence)
    if not paired and not isinstance(evidence, UnpairedEvidence):
        raise TypeError(f"evidence must be PairedEvidence or UnpairedEvidence, got {type(evidence).__name__}")
    if served is None:
        if paired:
            raise ValueError("decide_ab needs served=(champion_rows, challenger_rows) for paired evidence: "
                             "the sample-ratio check compares the routed split with the plan")
        served = (evidence.n1, evidence.n2)
    served = (_count("served champion rows", served[0]), _count("served challenger rows", served[1]))
    planned = (10000 - int(state.share_bp), int(state.share_bp))
    srm_p = stats.srm_pvalue(served, planned)
    build = _paired_record if paired else _unpaired_record

    if srm_p < state.srm_alpha:
        share = served[1] / sum(served)
        reason = (f"Sample-ratio mismatch: the challenger got {served[1]:,} of {sum(served):,} distinct keys "
                  f"({_pct(share)}) against a planned {_pct(state.share_bp / 10000)} (p "
                  f"{_fmt_p(srm_p)} < {state.srm_alpha:g}). The routing is broken, so the comparison "
                  "cannot be trusted. Abort.")
        record = build(evidence, strategy="ab", decision="abort", reason=reason,
                       test="sample-ratio mismatch on distinct keys (chi-square; exact binomial where an expected "
                            "count is below 5)", statistic=None, p_value=srm_p,
                       alpha=state.srm_alpha, created_at=created_at)
        return record, replace(state, decided=record.to_dict())

    # The first batch at which the planned n is reached.
    k_reached = None
    for k in range(1, len(evidence.batches) + 1):
        pre = evidence.prefix(k)
        size = pre.n if paired else min(pre.n1, pre.n2)
        if size >= state.planned_n:
            k_reached = k
            break
    if k_reached is None:
        size = evidence.n if paired else min(evidence.n1, evidence.n2)
        unit = "rows" if paired else "rows in the smaller arm"
        test = "exact McNemar at the planned n" if paired else "Fisher exact / two-proportion z at the planned n"
        reason = (f"{size:,} of the planned {state.planned_n:,} {unit}; the fixed-n test is decided once, at "
                  f"the planned n (sample ratio fine, p {_fmt_p(srm_p)}).")
        record = build(evidence, strategy="ab", decision="continue", reason=reason, test=test,
                       alpha=state.alpha, created_at=created_at)
        return record, state

    ev = evidence.prefix(k_reached)
    alpha = state.alpha
    if paired:
        b, c = ev.b, ev.c
        p = stats.mcnemar_exact(b, c)
        z = (c - b) / math.sqrt(b + c) if b + c else 0.0
        better, worse = c > b, b > c
        test = "exact McNemar (two-sided), once at the planned n; statistic = (c − b)/√(b + c)"
        what = f"c = {c:,} challenger-only right vs b = {b:,} champion-only right"
    else:
        k1, n1, k2, n2 = ev.k1, ev.n1, ev.k2, ev.n2
        pooled = (k1 + k2) / (n1 + n2)
        expected = [n1 * pooled, n1 * (1 - pooled), n2 * pooled, n2 * (1 - pooled)]
        z, p_z = stats.two_proportion_z(k1, n1, k2, n2)
        if min(expected) < 5:
            p = stats.fisher(k1, n1, k2, n2)
            test = "Fisher exact (two-sided), once at the planned n; statistic = two-proportion z"
        else:
            p = p_z
            test = "two-proportion z (pooled, two-sided), once at the planned n"
        better, worse = k2 / n2 > k1 / n1, k2 / n2 < k1 / n1
        what = f"challenger {k2:,}/{n2:,} vs champion {k1:,}/{n1:,}"
    if p <= alpha and better:
        decision, verdict = "promote", f"p {_fmt_p(p)} ≤ α = {alpha:g} and the challenger is better. Promote."
    elif p <= alpha and worse:
        decision, verdict = "abort", f"p {_fmt_p(p)} ≤ α = {alpha:g} and the challenger is worse. Abort."
    else:
        decision, verdict = "abort", (f"p {_fmt_p(p)} > α = {alpha:g}: at the planned n the challenger is not "
                                      "shown better, and a fixed-n test cannot be extended. Abort.")
    reason = f"Planned n reached after {k_reached} batch(es): {what}; {verdict}"
    record = build(ev, strategy="ab", decision=decision, reason=reason, test=test, statistic=z, p_value=p,
                   alpha=alpha, created_at=created_at)
    return record, replace(state, decided=record.to_dict())


# =========================================================================== canary
@dataclass(frozen=True)
class CanaryState:
    """Canary plan and position.

    ``steps_bp`` the challenger's shares in basis points (default 5% → 25% →
    50% → 100%); ``step`` the index of the share now served; ``step_started_n``
    the evidence's n when that step began; ``min_rows_per_step`` rows judged
    within a step before it may advance; ``delta`` the non-inferiority margin
    δ; ``alpha``; ``rho`` the confidence sequence's ρ (tightest near
    n·s² ≈ ρ); ``arm_prior`` the Beta(a, b) mixture of each arm's Bernoulli
    confidence sequence (outcome feedback); ``done`` ``promote`` or ``abort``
    once finished.
    """

    steps_bp: tuple[int, ...] = DEFAULT_CANARY_STEPS_BP
    step: int = 0
    step_started_n: int = 0
    min_rows_per_step: int = 500
    delta: float = 0.01
    alpha: float = 0.05
    rho: float = 20.0
    arm_prior: tuple[float, float] = (1.0, 1.0)
    done: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "arm_prior", tuple(float(x) for x in self.arm_prior))
        if len(self.arm_prior) != 2 or not all(x > 0 for x in self.arm_prior):
            raise ValueError(f"arm_prior must be two positive Beta parameters, got {self.arm_prior!r}")
        steps = tuple(int(x) for x in self.steps_bp)
        object.__setattr__(self, "steps_bp", steps)
        if not steps or any(not 0 < x <= 10000 for x in steps) or list(steps) != sorted(set(steps)):
            raise ValueError(f"steps_bp must increase strictly within 1..10000, got {steps!r}")
        if not 0 <= self.step < len(steps):
            raise ValueError(f"step {self.step} outside 0..{len(steps) - 1}")
        _count("min_rows_per_step", self.min_rows_per_step)
        _count("step_started_n", self.step_started_n)
        if not 0 <= self.delta < 1:
            raise ValueError(f"delta must be within [0, 1), got {self.delta!r}")
        _check_alpha(self.alpha)
        if self.rho <= 0:
            raise ValueError("rho must be > 0")
        if self.done not in (None, "promote", "abort"):
            raise ValueError(f"done must be None, 'promote' or 'abort', got {self.done!r}")

    @property
    def share_bp(self) -> int:
        """The challenger's share now (0 once aborted)."""
        return 0 if self.done == "abort" else self.steps_bp[self.step]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["steps_bp"], d["arm_prior"] = list(self.steps_bp), list(self.arm_prior)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CanaryState":
        data = dict(data)
        for key in ("steps_bp", "arm_prior"):
            if key in data:
                data[key] = tuple(data[key])
        return _from_dict(cls, data)


def _canary_interval(evidence, state: CanaryState) -> tuple[float, float, float, float | None]:
    """(lo, hi, Δ̂, Λ of non-inferiority or None) of the always-valid confidence sequence for Δ.

    Paired: the normal mixture over the per-row differences. Unpaired
    (outcome feedback): one Bernoulli confidence sequence per arm at α/2
    (Robbins' beta-binomial mixture, :func:`stats.bernoulli_cs`), exact at any
    number of rows; Δ ∈ [lo₂ − hi₁, hi₂ − lo₁] then holds with probability
    ≥ 1 − α at every look. It has no single likelihood ratio (Λ None).
    """
    if isinstance(evidence, PairedEvidence):
        n, b, c = evidence.n, evidence.b, evidence.c
        if n == 0:
            return -1.0, 1.0, 0.0, 1.0
        s_n = c - b
        s2 = (b + c) / n - (s_n / n) ** 2  # per-row variance of D ∈ {−1, 0, 1}
        lo, hi = stats.confidence_sequence(s_n, n, s2, state.rho, state.alpha)
        lam = stats.noninferiority_lambda(s_n, n, s2, state.rho, state.delta)
        return lo, hi, s_n / n, lam
    k1, n1, k2, n2 = evidence.k1, evidence.n1, evidence.k2, evidence.n2
    lo1, hi1 = stats.bernoulli_cs(k1, n1, state.alpha / 2, state.arm_prior)
    lo2, hi2 = stats.bernoulli_cs(k2, n2, state.alpha / 2, state.arm_prior)
    est = (k2 / n2 if n2 else 0.0) - (k1 / n1 if n1 else 0.0) if (n1 and n2) else 0.0
    return max(-1.0, lo2 - hi1), min(1.0, hi2 - lo1), est, None


def decide_canary(evidence: PairedEvidence | UnpairedEvidence, state: CanaryState, *,
                  created_at: str | None = None) -> tuple[DecisionRecord, CanaryState]:
    """``canary``: ramp on non-inferiority, judged by an always-valid confidence sequence.

    The sequence for Δ = challenger − champion accuracy over all evidence so
    far (paired: :func:`stats.confidence_sequence` on the per-row differences;
    unpaired: one Bernoulli confidence sequence per arm at α/2, :func:`stats.bernoulli_cs`):

    - upper bound < 0 → abort (share 0), at any time;
    - ``min_rows_per_step`` rows judged in this step and lower bound > −δ →
      ramp to the next step's share, or promote after the last step;
    - otherwise continue.

    Returns the record (``shares_bp`` = the share the decision asks for) and
    the new state. A finished canary (``done``) raises ``ValueError``.
    """
    if state.done is not None:
        raise ValueError(f"the canary is finished ({state.done}); start a new CanaryState")
    paired = isinstance(evidence, PairedEvidence)
    if not paired and not isinstance(evidence, UnpairedEvidence):
        raise TypeError(f"evidence must be PairedEvidence or UnpairedEvidence, got {type(evidence).__name__}")
    lo, hi, est, lam = _canary_interval(evidence, state)
    p = None if lam is None else (min(1.0, 1.0 / lam) if lam > 0 else 1.0)
    n = evidence.n
    in_step = n - state.step_started_n
    if in_step < 0:
        raise ValueError(f"evidence has {n} rows but the current step began at {state.step_started_n}")
    challenger = evidence.challenger
    share_now = state.steps_bp[state.step]
    last = state.step == len(state.steps_bp) - 1
    band = f"always-valid {1 - state.alpha:.0%} interval for the accuracy difference {100 * lo:+.2f} to {100 * hi:+.2f} points"

    if n > 0 and hi < 0:
        decision, new_state, shares = "abort", replace(state, done="abort"), {challenger: 0}
        reason = f"The challenger is worse: {band}, entirely below 0. Abort the canary (share → 0%)."
    elif in_step >= state.min_rows_per_step and lo > -state.delta:
        if last:
            decision, new_state, shares = "promote", replace(state, done="promote"), {challenger: 10000}
            reason = (f"Last step ({share_now / 100:g}%) done with {in_step:,} rows: {band}, above −δ = "
                      f"{-100 * state.delta:+.2f} points (not worse by δ). Promote.")
        else:
            nxt = state.steps_bp[state.step + 1]
            decision, shares = "ramp", {challenger: nxt}
            new_state = replace(state, step=state.step + 1, step_started_n=n)
            reason = (f"Step {state.step + 1} of {len(state.steps_bp)} ({share_now / 100:g}%) judged {in_step:,} "
                      f"rows: {band}, above −δ = {-100 * state.delta:+.2f} points. Ramp to {nxt / 100:g}%.")
    else:
        decision, new_state, shares = "continue", state, {challenger: share_now}
        if in_step < state.min_rows_per_step:
            why = f"this step has judged {in_step:,} of its minimum {state.min_rows_per_step:,} rows"
        else:
            why = f"the lower bound is not yet above −δ = {-100 * state.delta:+.2f} points"
        reason = f"Hold at {share_now / 100:g}%: {why} ({band})."

    if paired:
        test = (f"confidence sequence (normal mixture, ρ = {state.rho:g}) for non-inferiority, δ = {state.delta:g}; "
                "statistic = lower bound; p-value = min(1, 1/Λ) of Δ = −δ at this look")
    else:
        a, b_ = state.arm_prior
        test = (f"Bernoulli confidence sequence per arm at α/2 (Robbins' beta-binomial mixture, Beta({a:g}, "
                f"{b_:g})), exact at any number of rows; Δ within [lo₂ − hi₁, hi₂ − lo₁]; non-inferiority, "
                f"δ = {state.delta:g}; statistic = lower bound")
    method = f"always-valid {1 - state.alpha:.0%} confidence sequence"
    build = _paired_record if paired else _unpaired_record
    record = build(evidence, strategy="canary", decision=decision, reason=reason, test=test,
                   statistic=lo, p_value=p, alpha=state.alpha, mixture=state.rho if paired else None, lam=lam,
                   difference_ci=(lo, hi), interval_method=method, shares_bp=shares,
                   created_at=created_at)
    return record, new_state


# =========================================================================== bandit
@dataclass(frozen=True)
class BanditState:
    """Bandit plan and memory.

    ``arms`` the challenger versions; ``threshold`` the P(best) that triggers
    the confirmatory test; ``alpha`` the family-wise level, split evenly over
    the arms (Bonferroni: each arm's mSPRT runs at α/len(arms));
    ``mixture`` the mSPRT's Beta(a, a); ``draws`` Monte Carlo draws for
    P(best); ``floor_bp`` minimum share per live arm (exploration);
    ``champion_floor_bp`` minimum share of the champion, whose served rows the
    outcome-feedback test compares every arm against (both floors are of the
    traffic not held out); ``holdout_bp`` the experiment's holdout, which the
    shares leave out; ``seed`` makes shares a function of the evidence;
    ``shares_bp`` the shares now served; ``dropped`` arms shown worse; ``done``
    ``promote``/``abort`` once finished.
    """

    arms: tuple[str, ...]
    threshold: float = 0.95
    alpha: float = 0.05
    mixture: float = 1.0
    draws: int = 20_000
    floor_bp: int = 0
    champion_floor_bp: int = DEFAULT_CHAMPION_FLOOR_BP
    holdout_bp: int = 0
    seed: int = 0
    shares_bp: Mapping[str, int] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()
    done: str | None = None
    arm_prior: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self):
        object.__setattr__(self, "arm_prior", tuple(float(x) for x in self.arm_prior))
        if len(self.arm_prior) != 2 or not all(x > 0 for x in self.arm_prior):
            raise ValueError(f"arm_prior must be two positive Beta parameters, got {self.arm_prior!r}")
        object.__setattr__(self, "arms", tuple(str(a) for a in self.arms))
        object.__setattr__(self, "dropped", tuple(str(a) for a in self.dropped))
        object.__setattr__(self, "shares_bp", {str(k): int(v) for k, v in dict(self.shares_bp).items()})
        if not self.arms or len(set(self.arms)) != len(self.arms):
            raise ValueError("a bandit needs one or more distinct challenger arms")
        if not 0.5 < self.threshold < 1.0:
            raise ValueError(f"threshold must be within (0.5, 1), got {self.threshold!r}")
        _check_alpha(self.alpha)
        for name in ("floor_bp", "champion_floor_bp", "holdout_bp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10000:
                raise ValueError(f"{name} must be an integer number of basis points within 0..9999, got {value!r}")
        if self.champion_floor_bp + len(self.arms) * self.floor_bp > 10000:
            raise ValueError(f"champion_floor_bp {self.champion_floor_bp} plus floor_bp {self.floor_bp} for each of "
                             f"{len(self.arms)} arm(s) exceeds 10000 basis points")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["arms"], d["dropped"], d["shares_bp"] = list(self.arms), list(self.dropped), dict(self.shares_bp)
        d["arm_prior"] = list(self.arm_prior)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BanditState":
        data = dict(data)
        for key in ("arms", "dropped", "arm_prior"):
            if key in data:
                data[key] = tuple(data[key])
        return _from_dict(cls, data)


def decide_bandit(evidence: Mapping[str, PairedEvidence | UnpairedEvidence], state: BanditState,
                  rng: np.random.Generator | None = None, *,
                  created_at: str | None = None) -> tuple[DecisionRecord, BanditState]:
    """``bandit``: Thompson-sampling shares; P(best) only triggers the confirmatory test.

    ``evidence`` maps each challenger arm to its paired evidence against the
    champion (every version scores every row, so all share the same rows and
    champion), or under outcome feedback its *served* traffic against the
    champion's (:class:`UnpairedEvidence`; pairing against an arm that was not
    served would be invalid). Per batch:

    1. Paired: an arm whose paired mSPRT against the champion first crossed
       1/(α/K) (always-valid p ≤ α/K over the batch looks) with b > c is
       dropped (share 0). Unpaired: the confirmatory test is Bernoulli
       confidence sequences (the champion's at α/2, each arm's at α/(2K));
       an arm whose upper bound is below the champion's lower bound is
       dropped. All dropped → abort.
    2. Posterior Beta(1 + right, 1 + wrong) per version (champion included);
       P(best) by Monte Carlo; of the traffic not held out, the champion keeps
       ``champion_floor_bp``, each live arm ``floor_bp``, and what is left is
       shared by P(best) over the champion and the live arms.
    3. If the live arm most likely best has P(best) ≥ ``threshold``, the
       confirmatory test decides: promote that arm if it is shown better
       (paired: crossed with c > b; unpaired: its lower bound above the
       champion's upper bound). P(best) alone never promotes (STATS.md: it promoted
       a no-better arm 29% of the time).
    4. Otherwise ramp when the shares change, else continue.

    ``rng`` defaults to one seeded by ``state.seed`` and the rows judged, so
    the same evidence gives the same shares and the same decision id.
    """
    if state.done is not None:
        raise ValueError(f"the bandit is finished ({state.done}); start a new BanditState")
    missing = [a for a in state.arms if a not in evidence]
    if missing:
        raise ValueError(f"no evidence for arm(s) {missing}")
    evs = [evidence[a] for a in state.arms]
    paired = isinstance(evs[0], PairedEvidence)
    kind = PairedEvidence if paired else UnpairedEvidence
    for arm, ev in zip(state.arms, evs):
        if not isinstance(ev, kind):
            raise TypeError(f"arm {arm!r}: evidence must be PairedEvidence for every arm or UnpairedEvidence for "
                            f"every arm, got {type(ev).__name__}")
        same = ((ev.n, ev.champion_right) == (evs[0].n, evs[0].champion_right) if paired
                else (ev.k1, ev.n1) == (evs[0].k1, evs[0].n1))
        if not same or ev.champion != evs[0].champion:
            raise ValueError(f"arm {arm!r} was not judged on the same rows against the same champion")
    k_arms = len(state.arms)
    alpha_arm = state.alpha / k_arms
    n = evs[0].n
    build = _paired_record if paired else _unpaired_record

    # 1. The confirmatory test per arm; drop arms shown worse.
    p_arm, lam_arm, verdict = {}, {}, {}
    dropped = list(state.dropped)
    for arm, ev in zip(state.arms, evs):
        if paired:
            p_arm[arm], _, lam_arm[arm] = shadow_always_valid_p(ev, state.mixture)
            _, verdict[arm] = msprt_crossing(ev, alpha_arm, state.mixture)  # +1 better, −1 worse, 0 open
        else:
            p_arm[arm], lam_arm[arm] = None, None
            verdict[arm] = _unpaired_verdict(ev, state.alpha, k_arms, state.arm_prior)
        if arm not in dropped and verdict[arm] < 0:
            dropped.append(arm)
    live = [a for a in state.arms if a not in dropped]
    if paired:
        confirm = (f"confirmatory paired mSPRT, Beta({state.mixture:g}, {state.mixture:g}) mixture at "
                   f"α/{k_arms} = {alpha_arm:g}")
    else:
        a, b_ = state.arm_prior
        confirm = (f"confirmatory unpaired test on served traffic: Bernoulli confidence sequences (beta-binomial "
                   f"mixture Beta({a:g}, {b_:g})), the champion's at α/2 and each arm's at α/(2·{k_arms}); an arm "
                   "is better when its lower bound is above the champion's upper bound")
    test = f"Thompson sampling (Beta(1 + right, 1 + wrong)); {confirm}; statistic = P(best)"

    def shown(arm):
        return (f"always-valid p {_fmt_p(p_arm[arm])} ≤ {alpha_arm:g}" if paired else
                "its confidence sequence lies entirely on that side of the champion's")

    if not live:
        focus = min(state.arms, key=lambda a: p_arm[a]) if paired else state.arms[0]
        ev = evidence[focus]
        reason = (f"Every challenger is worse than the champion ({'with b > c, ' if paired else ''}"
                  f"{shown(focus)} for {', '.join(state.arms)}). Abort the bandit; all traffic back to the champion.")
        shares = {a: 0 for a in state.arms}
        record = build(ev, strategy="bandit", decision="abort", reason=reason, test=test,
                       statistic=None, p_value=p_arm[focus], alpha=alpha_arm, mixture=state.mixture if paired else None,
                       lam=lam_arm[focus], shares_bp=shares, created_at=created_at)
        return record, replace(state, dropped=tuple(dropped), shares_bp=shares, done="abort")

    # 2. Posterior probability of being best, over the champion and the live arms.
    if rng is None:
        rng = np.random.default_rng([int(state.seed), int(n), k_arms])
    live_evs = [evidence[a] for a in live]
    if paired:
        right = [evs[0].champion_right] + [ev.challenger_right for ev in live_evs]
        wrong = [n - r for r in right]
    else:
        right = [evs[0].k1] + [ev.k2 for ev in live_evs]
        wrong = [evs[0].n1 - evs[0].k1] + [ev.n2 - ev.k2 for ev in live_evs]
    pbest = stats.prob_best(right, wrong, state.draws, rng)
    floors = np.array([state.champion_floor_bp] + [state.floor_bp] * len(live)) / 10000
    shares_frac = floors + (1 - floors.sum()) * pbest
    bp = stats.shares_to_bp(shares_frac, total=10000 - state.holdout_bp)  # held-out buckets are no one's
    shares = {a: 0 for a in state.arms}
    shares.update({a: bp[i + 1] for i, a in enumerate(live)})
    pbest_arm = {a: float(pbest[i + 1]) for i, a in enumerate(live)}
    focus = max(live, key=lambda a: pbest_arm[a])
    ev = evidence[focus]
    top = pbest_arm[focus]

    # 3. Confirmatory test, triggered by P(best).
    if top >= state.threshold and verdict[focus] > 0:
        counts = (f"c = {ev.c:,} vs b = {ev.b:,}" if paired else
                  f"served {ev.k2:,}/{ev.n2:,} right vs the champion's {ev.k1:,}/{ev.n1:,}")
        reason = (f"{_code(focus)} is best with posterior probability {top:.3f} ≥ {state.threshold:g}, and the "
                  f"confirmatory test agrees: {counts}, {shown(focus)}. Promote it.")
        final = {a: (10000 if a == focus else 0) for a in state.arms}
        record = build(ev, strategy="bandit", decision="promote", reason=reason, test=test,
                       statistic=top, p_value=p_arm[focus], alpha=alpha_arm, mixture=state.mixture if paired else None,
                       lam=lam_arm[focus], shares_bp=final, created_at=created_at)
        return record, replace(state, dropped=tuple(dropped), shares_bp=final, done="promote")

    if top >= state.threshold:
        unconvinced = (f"always-valid p {_fmt_p(p_arm[focus])} > {alpha_arm:g}" if paired else
                       "its confidence sequence still overlaps the champion's")
        why = (f"P(best) of {_code(focus)} is {top:.3f} ≥ {state.threshold:g}, but the confirmatory test "
               f"is not convinced ({unconvinced}); P(best) alone never promotes")
    else:
        why = f"the likeliest best challenger {_code(focus)} has P(best) {top:.3f} < {state.threshold:g}"
    changed = dict(shares) != dict(state.shares_bp)
    summary = ", ".join(f"{_code(a)} {shares[a] / 100:g}%" for a in state.arms)
    newly = [a for a in dropped if a not in state.dropped]
    dropped_txt = f" Dropped as worse: {', '.join(newly)}." if newly else ""
    decision = "ramp" if changed else "continue"
    reason = (f"{why[0].upper()}{why[1:]}. Thompson shares: {summary}; champion the rest."
              f"{dropped_txt}{' Ramp to these shares.' if changed else ''}")
    record = build(ev, strategy="bandit", decision=decision, reason=reason, test=test,
                   statistic=top, p_value=p_arm[focus], alpha=alpha_arm, mixture=state.mixture if paired else None,
                   lam=lam_arm[focus], shares_bp=shares, created_at=created_at)
    return record, replace(state, dropped=tuple(dropped), shares_bp=shares)


def _unpaired_verdict(ev: UnpairedEvidence, alpha: float, k_arms: int, prior) -> int:
    """+1 when the arm's served accuracy is shown above the champion's, −1 below, 0 open.

    The champion's Bernoulli confidence sequence at α/2 and the arm's at
    α/(2K): with every sequence holding (probability ≥ 1 − α for all K arms
    together, at every look), no arm is ever shown better than it is.
    """
    lo1, hi1 = stats.bernoulli_cs(ev.k1, ev.n1, alpha / 2, prior)
    lo2, hi2 = stats.bernoulli_cs(ev.k2, ev.n2, alpha / (2 * k_arms), prior)
    return 1 if lo2 > hi1 else (-1 if hi2 < lo1 else 0)


def _code(version: str) -> str:
    return version if len(version) <= 16 else version[:12] + "…"
