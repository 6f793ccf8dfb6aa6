"""The decision record (DESIGN §4): what the comparison decided, and on what evidence.

A :class:`DecisionRecord` is immutable, JSON-safe through :meth:`to_dict` /
:meth:`from_dict`, readable in the Dagster UI through :meth:`to_markdown`, and
carries a deterministic ``decision_id`` (:func:`make_decision_id`): the same
evidence judged by the same strategy gives the same id, so the promotion
sensor, which uses it as its run key, acts on a decision once.

Pure Python: no Dagster, no Redis.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

__all__ = [
    "DECISIONS",
    "STRATEGIES",
    "EVIDENCE_KINDS",
    "DecisionRecord",
    "make_decision_id",
    "utc_now",
]

DECISIONS = ("promote", "ramp", "continue", "abort")
STRATEGIES = ("single", "shadow", "ab", "canary", "bandit")
#: ``none`` is for the ``single`` strategy, which compares nothing (checks only).
EVIDENCE_KINDS = ("paired", "unpaired", "none")


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string (seconds), the format of ``created_at``."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def make_decision_id(
    strategy: str,
    champion: str,
    challenger: str,
    partitions: Iterable[str],
    counts: Mapping[str, Any],
    decision: str = "",
) -> str:
    """Deterministic short id of a decision: 16 hex digits of a SHA-256.

    Hashes the strategy, both versions, the batches judged (in order), the
    counts (any mapping of JSON-serialisable values, e.g. ``n``, ``b``, ``c``,
    ``n_excluded``) and the decision itself. Nothing time-dependent goes in,
    so judging the same evidence again yields the same id, and the sensor,
    which uses it as run key, acts once.
    """
    payload = {
        "strategy": str(strategy),
        "champion": str(champion),
        "challenger": str(challenger),
        "partitions": [str(p) for p in partitions],
        "counts": {str(k): counts[k] for k in sorted(counts)},
        "decision": str(decision),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _json_default(obj):
    # numpy scalars and tuples without importing numpy here.
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    raise TypeError(f"not JSON-serialisable: {obj!r}")


def _safe_float(x):
    """JSON-safe float: non-finite values become the strings 'inf', '-inf', 'nan'."""
    if x is None:
        return None
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _load_float(x):
    if x is None:
        return None
    return float(x)  # float("inf") / float("nan") parse the strings back


def _pair(x):
    if x is None:
        return None
    lo, hi = x
    return (_load_float(lo), _load_float(hi))


_FLOAT_FIELDS = (
    "champion_accuracy",
    "challenger_accuracy",
    "difference",
    "statistic",
    "p_value",
    "alpha",
    "mixture",
    "lambda_",
    "mcnemar_p",
)
_PAIR_FIELDS = ("champion_ci", "challenger_ci", "difference_ci")
_INT_FIELDS = ("n", "b", "c", "n_excluded", "n_repeated")


@dataclass(frozen=True)
class DecisionRecord:
    """One decision of the comparison (DESIGN §4).

    Fields (``None`` where a field does not apply):

    - ``decision_id`` — deterministic id (:func:`make_decision_id`), the sensor's run key
    - ``strategy`` — ``single``, ``shadow``, ``ab``, ``canary``, ``bandit``
    - ``evidence`` — ``paired`` (every version scored every row, label feedback),
      ``unpaired`` (served traffic per arm, outcome feedback), ``none`` (single)
    - ``n`` — rows judged (paired) or rows of both arms (unpaired)
    - ``b``, ``c`` — paired only: champion right & challenger wrong, the reverse
    - ``champion``, ``challenger`` — the compared versions
    - ``champion_accuracy``/``champion_ci``, ``challenger_accuracy``/``challenger_ci``
      — accuracies with 95% Wilson intervals
    - ``difference``, ``difference_ci`` — challenger − champion accuracy and its
      interval (method in ``interval_method``)
    - ``test``, ``statistic``, ``p_value`` (always-valid where sequential), ``alpha``
    - ``mixture``, ``lambda_`` — mSPRT mixture parameter and likelihood ratio
      (serialised as ``lambda``)
    - ``mcnemar_p`` — paired only: the exact McNemar p beside the sequential test
    - ``decision`` — ``promote``, ``ramp``, ``continue``, ``abort``; ``reason`` in words
    - ``partitions`` — the batches judged; ``n_excluded`` — rows left out because a
      compared model was trained on their features (whatever the batch is keyed
      by); ``n_repeated`` — rows not judged because their input (feature key,
      or id) was judged already in this experiment: each input counts once;
      ``not_judged`` — why rows were left out, in words; ``created_at`` — ISO 8601 UTC
    - ``interval_method`` — how ``difference_ci`` was computed
    - ``shares_bp`` — routing shares (version → basis points) the decision asks
      for, for ``ramp`` (canary, bandit); empty otherwise
    """

    decision_id: str
    strategy: str
    evidence: str
    n: int
    champion: str
    challenger: str
    decision: str
    reason: str
    b: int | None = None
    c: int | None = None
    champion_accuracy: float | None = None
    champion_ci: tuple[float, float] | None = None
    challenger_accuracy: float | None = None
    challenger_ci: tuple[float, float] | None = None
    difference: float | None = None
    difference_ci: tuple[float, float] | None = None
    test: str = ""
    statistic: float | None = None
    p_value: float | None = None
    alpha: float | None = None
    mixture: float | None = None
    lambda_: float | None = None
    mcnemar_p: float | None = None
    partitions: tuple[str, ...] = ()
    n_excluded: int = 0
    n_repeated: int = 0
    not_judged: str = ""
    created_at: str = ""
    interval_method: str = ""
    shares_bp: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self):
        if self.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {self.decision!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.evidence not in EVIDENCE_KINDS:
            raise ValueError(f"evidence must be one of {EVIDENCE_KINDS}, got {self.evidence!r}")
        if not self.reason:
            raise ValueError("a decision needs a reason in words")
        if not self.not_judged:
            object.__setattr__(self, "not_judged", _not_judged(self.n_excluded or 0, self.n_repeated or 0))
        # Normalise containers so records compare equal after a JSON round trip.
        object.__setattr__(self, "partitions", tuple(str(p) for p in self.partitions))
        object.__setattr__(self, "shares_bp", {str(k): int(v) for k, v in dict(self.shares_bp).items()})
        for name in _PAIR_FIELDS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, (float(value[0]), float(value[1])))
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, int(value))
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))

    # ------------------------------------------------------------------ ids
    def counts(self) -> dict[str, Any]:
        """The counts that identify the evidence (what :func:`make_decision_id` hashes)."""
        out = {"evidence": self.evidence, "n": self.n, "b": self.b, "c": self.c, "n_excluded": self.n_excluded}
        if self.n_repeated:
            out["n_repeated"] = self.n_repeated
        return out

    def expected_id(self) -> str:
        """The id this record's evidence and decision hash to."""
        return make_decision_id(
            self.strategy, self.champion, self.challenger, self.partitions,
            {**self.counts(), "shares_bp": dict(sorted(self.shares_bp.items()))}, self.decision,
        )

    def with_id(self) -> "DecisionRecord":
        """A copy whose ``decision_id`` is :meth:`expected_id`."""
        return replace(self, decision_id=self.expected_id())

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; ``lambda_`` is stored under the key ``lambda``.

        Tuples become lists; an infinite likelihood ratio becomes the string
        ``"inf"`` (strict JSON has no infinity).
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            key = "lambda" if f.name == "lambda_" else f.name
            if f.name in _FLOAT_FIELDS:
                value = _safe_float(value)
            elif f.name in _PAIR_FIELDS:
                value = None if value is None else [_safe_float(value[0]), _safe_float(value[1])]
            elif f.name == "partitions":
                value = list(value)
            elif f.name == "shares_bp":
                value = dict(value)
            out[key] = value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DecisionRecord":
        """Inverse of :meth:`to_dict` (accepts ``lambda`` or ``lambda_``; ignores unknown keys)."""
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            name = "lambda_" if key == "lambda" else key
            if name not in known:
                continue
            if name in _FLOAT_FIELDS:
                value = _load_float(value)
            elif name in _PAIR_FIELDS:
                value = _pair(value)
            elif name == "partitions":
                value = tuple(value or ())
            elif name == "shares_bp":
                value = dict(value or {})
            kwargs[name] = value
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> "DecisionRecord":
        return cls.from_dict(json.loads(text))

    # ------------------------------------------------------------------ display
    def to_markdown(self) -> str:
        """A two-column Markdown table (field | value) for the Dagster UI."""
        rows: list[tuple[str, str]] = [
            ("decision", f"**{self.decision}**"),
            ("reason", self.reason),
            ("strategy", self.strategy),
            ("champion", _code(self.champion)),
            ("challenger", _code(self.challenger)),
            ("evidence", self.evidence),
            ("rows judged (n)", f"{self.n:,}"),
        ]
        if self.b is not None or self.c is not None:
            rows.append(("champion only right (b)", _int(self.b)))
            rows.append(("challenger only right (c)", _int(self.c)))
        if self.champion_accuracy is not None:
            rows.append(("champion accuracy", _pct_ci(self.champion_accuracy, self.champion_ci, "Wilson")))
        if self.challenger_accuracy is not None:
            rows.append(("challenger accuracy", _pct_ci(self.challenger_accuracy, self.challenger_ci, "Wilson")))
        if self.difference is not None:
            label = self.interval_method or "interval"
            rows.append(("difference (challenger − champion)", _pp_ci(self.difference, self.difference_ci, label)))
        if self.test:
            rows.append(("test", self.test))
        if self.statistic is not None:
            rows.append(("statistic", _num(self.statistic)))
        if self.p_value is not None:
            rows.append(("p-value", _p(self.p_value)))
        if self.alpha is not None:
            rows.append(("alpha", _num(self.alpha)))
        if self.mixture is not None:
            rows.append(("mixture", _num(self.mixture)))
        if self.lambda_ is not None:
            rows.append(("likelihood ratio Λ", _num(self.lambda_)))
        if self.mcnemar_p is not None:
            rows.append(("exact McNemar p (fixed-n, for reference)", _p(self.mcnemar_p)))
        if self.shares_bp:
            rows.append(("shares", ", ".join(f"{_code(v)}: {bp / 100:g}%" for v, bp in self.shares_bp.items())))
        rows.append(("batches judged", _partitions(self.partitions)))
        rows.append(("rows excluded (trained on)", f"{self.n_excluded:,}"))
        rows.append(("rows repeated (input judged before)", f"{self.n_repeated:,}"))
        rows.append(("not judged, why", self.not_judged))
        rows.append(("decision id", _code(self.decision_id)))
        if self.created_at:
            rows.append(("created at", self.created_at))
        lines = ["| field | value |", "| --- | --- |"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in rows]
        return "\n".join(lines)


# ---------------------------------------------------------------------- formatting
def _not_judged(n_excluded: int, n_repeated: int) -> str:
    """Why rows with feedback were left out of the evidence, in words."""
    parts = []
    if n_excluded:
        parts.append(f"{n_excluded:,} row(s) excluded: a compared model was trained on their features")
    if n_repeated:
        parts.append(f"{n_repeated:,} row(s) repeated: their input was judged already in this experiment "
                     "(each input counts once)")
    return "; ".join(parts) + "." if parts else "Every row with feedback was judged."



def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    text = str(text)
    if not text:
        return "—"
    return f"`{text[:12]}…`" if len(text) > 16 else f"`{text}`"


def _int(x) -> str:
    return "—" if x is None else f"{x:,}"


def _num(x: float) -> str:
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if math.isnan(x):
        return "—"
    if x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-3):
        return f"{x:.3e}"
    return f"{x:,.4g}"


def _p(p: float) -> str:
    if p < 1e-4:
        return f"{p:.2e}"
    return f"{p:.4f}"


def _pct_ci(x: float, ci, method: str) -> str:
    text = f"{100 * x:.2f}%"
    if ci is not None:
        text += f" (95% {method} {100 * ci[0]:.2f}% to {100 * ci[1]:.2f}%)"
    return text


def _pp_ci(x: float, ci, method: str) -> str:
    text = f"{100 * x:+.2f} points"
    if ci is not None:
        text += f" ({method}: {100 * ci[0]:+.2f} to {100 * ci[1]:+.2f})"
    return text


def _partitions(parts: tuple[str, ...]) -> str:
    if not parts:
        return "—"
    if len(parts) <= 4:
        return ", ".join(parts)
    return f"{len(parts)} ({parts[0]} … {parts[-1]})"
