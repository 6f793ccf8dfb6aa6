"""An experiment: one challenger (or several bandit arms) against the champion
under one strategy, from its start to its decision. Pure: no Dagster, no Redis.

The plan is fixed when the experiment starts (strategy, feedback kind, the
split or ramp, the A/B sample size); the strategy's state moves on with each
batch. The assets store both and call :func:`decide` after every batch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from irisdag.core import strategies
from irisdag.core.decision import DecisionRecord, utc_now
from irisdag.core.routing import Routing, route_key

STRATEGIES = ("single", "shadow", "ab", "canary", "bandit")
FEEDBACK_KINDS = ("label", "outcome")


@dataclass(frozen=True)
class ExperimentPlan:
    strategy: str = "shadow"
    feedback: str = "label"            # label: true labels (paired); outcome: depends on what was served
    arms: tuple = ()                   # challenger versions under test
    holdout_bp: int = 0
    alpha: float = 0.05
    mixture: float = 1.0               # paired mSPRT's Beta(a, a)
    canary_steps_bp: tuple = (500, 2500, 5000, 10000)
    min_rows_per_step: int = 500
    delta: float = 0.01                # canary non-inferiority margin
    ab_share_bp: int = 5000
    ab_power: float = 0.8
    ab_baseline: float = 0.90          # champion accuracy the A/B is planned for
    ab_min_effect: float = 0.02        # smallest gain worth detecting
    ab_discordant: float = 0.10        # planned share of discordant rows (paired A/B)
    bandit_threshold: float = 0.95

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy {self.strategy!r} is not one of {', '.join(STRATEGIES)}")
        if self.feedback not in FEEDBACK_KINDS:
            raise ValueError(f"feedback {self.feedback!r} is not one of {', '.join(FEEDBACK_KINDS)}")
        if self.strategy == "shadow" and self.feedback == "outcome":
            raise ValueError("shadow serves the champion only, so outcome feedback can never judge the "
                             "challenger; use label feedback or a strategy that serves it (ab, canary, bandit)")
        if not 0 <= int(self.holdout_bp) < 10000:
            raise ValueError(f"holdout_bp must be within 0..9999, got {self.holdout_bp}")
        object.__setattr__(self, "arms", tuple(self.arms))
        object.__setattr__(self, "canary_steps_bp", tuple(int(s) for s in self.canary_steps_bp))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["arms"], d["canary_steps_bp"] = list(self.arms), list(self.canary_steps_bp)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "ExperimentPlan":
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})


def initial_state(plan: ExperimentPlan) -> dict:
    """The strategy's state before the first batch (planned n, first ramp step, bandit arms)."""
    if plan.strategy == "ab":
        p1, p2 = plan.ab_baseline, min(0.999, plan.ab_baseline + plan.ab_min_effect)
        if plan.feedback == "label":
            state = strategies.ABState.plan_paired(p1, p2, plan.ab_discordant, alpha=plan.alpha,
                                                   power=plan.ab_power, share_bp=plan.ab_share_bp)
        else:
            state = strategies.ABState.plan_unpaired(p1, p2, alpha=plan.alpha, power=plan.ab_power,
                                                     share_bp=plan.ab_share_bp)
        return state.to_dict()
    if plan.strategy == "canary":
        return strategies.CanaryState(steps_bp=plan.canary_steps_bp, min_rows_per_step=plan.min_rows_per_step,
                                      delta=plan.delta, alpha=plan.alpha).to_dict()
    if plan.strategy == "bandit":
        return strategies.BanditState(arms=plan.arms, threshold=plan.bandit_threshold, alpha=plan.alpha,
                                      mixture=plan.mixture, shares_bp=dict(initial_shares(plan))).to_dict()
    return {}


def initial_shares(plan: ExperimentPlan) -> list[tuple[str, int]]:
    """What each non-champion arm serves from the start (shadow and single: nothing)."""
    if plan.strategy == "ab":
        return [(plan.arms[0], plan.ab_share_bp)]
    if plan.strategy == "canary":
        return [(plan.arms[0], plan.canary_steps_bp[0])]
    if plan.strategy == "bandit":
        each = (10000 - plan.holdout_bp) // (len(plan.arms) + 1)  # champion and arms start even
        return [(arm, each) for arm in plan.arms]
    return []


def served_routes(keys, routing: Routing) -> np.ndarray:
    """For each key, the version that served it under ``routing`` ('' = held out)."""
    out = np.empty(len(keys), dtype=object)
    for i, key in enumerate(keys):
        route, version = route_key(str(key), routing)
        out[i] = "" if route == "holdout" else version
    return out


@dataclass
class WindowEvidence:
    """One window's counts, per arm (paired against the champion) and per served arm (unpaired)."""

    paired: dict = field(default_factory=dict)     # arm -> {n, b, c, champion_right, challenger_right, excluded}
    served: dict = field(default_factory=dict)     # version -> {n, right}
    holdout: dict = field(default_factory=dict)    # {n, champion_right}


def count_window(truth, champion_pred, arm_preds: dict, served_by, judged) -> WindowEvidence:
    """Counts of one window. ``judged`` marks rows no compared model trained on."""
    truth = np.asarray(truth)
    champ_right = np.asarray(champion_pred) == truth
    held = served_by == ""
    use = judged & ~held
    ev = WindowEvidence()
    for arm, pred in arm_preds.items():
        chall_right = np.asarray(pred) == truth
        ev.paired[arm] = {
            "n": int(use.sum()), "b": int((champ_right & ~chall_right & use).sum()),
            "c": int((~champ_right & chall_right & use).sum()),
            "champion_right": int((champ_right & use).sum()), "challenger_right": int((chall_right & use).sum()),
            "excluded": int((~judged).sum()),
        }
    for version in {v for v in served_by[use]}:
        rows = use & (served_by == version)
        right = champ_right if version not in arm_preds else (np.asarray(arm_preds[version]) == truth)
        ev.served[version] = {"n": int(rows.sum()), "right": int((right & rows).sum())}
    ev.holdout = {"n": int((judged & held).sum()), "champion_right": int((champ_right & judged & held).sum())}
    return ev


def paired_evidence(champion: str, arm: str, windows: dict) -> strategies.PairedEvidence:
    ev = strategies.PairedEvidence(champion=champion, challenger=arm)
    for p in sorted(windows):  # windows in time order: each is one look
        w = windows[p]["paired"].get(arm)
        if w is not None:
            ev = ev.add_batch(b=w["b"], c=w["c"], n=w["n"], champion_right=w["champion_right"],
                              challenger_right=w["challenger_right"], partition=p, n_excluded=w["excluded"])
    return ev


def unpaired_evidence(champion: str, arm: str, windows: dict) -> strategies.UnpairedEvidence:
    ev = strategies.UnpairedEvidence(champion=champion, challenger=arm)
    for p in sorted(windows):
        s = windows[p]["served"]
        a, b = s.get(champion, {"n": 0, "right": 0}), s.get(arm, {"n": 0, "right": 0})
        if a["n"] or b["n"]:
            ev = ev.add_batch(a["right"], a["n"], b["right"], b["n"], partition=p)
    return ev


def decide(plan: ExperimentPlan, state: dict, champion: str, windows: dict,
           validated: bool | None) -> tuple[DecisionRecord, dict]:
    """The strategy's decision after the latest window, and its next state."""
    arm = plan.arms[0]
    if plan.strategy == "single":
        return strategies.decide_single(validated, champion=champion, challenger=arm), state
    if plan.strategy == "shadow":
        return strategies.decide_shadow(paired_evidence(champion, arm, windows), alpha=plan.alpha,
                                        mixture=plan.mixture), state
    if plan.strategy == "bandit":
        evidence = {a: paired_evidence(champion, a, windows) for a in plan.arms}
        record, new = strategies.decide_bandit(evidence, strategies.BanditState.from_dict(state))
        return record, new.to_dict()
    evidence = (paired_evidence(champion, arm, windows) if plan.feedback == "label"
                else unpaired_evidence(champion, arm, windows))
    if plan.strategy == "ab":
        served = (sum(w["served"].get(champion, {}).get("n", 0) for w in windows.values()),
                  sum(w["served"].get(arm, {}).get("n", 0) for w in windows.values()))
        record, new = strategies.decide_ab(evidence, strategies.ABState.from_dict(state), served=served)
        return record, new.to_dict()
    record, new = strategies.decide_canary(evidence, strategies.CanaryState.from_dict(state))
    return record, new.to_dict()


def nothing_to_compare(strategy: str, champion: str, challenger: str, why: str, alpha: float) -> DecisionRecord:
    return DecisionRecord(
        decision_id="", strategy=strategy if strategy in STRATEGIES else "shadow", evidence="paired", n=0,
        champion=champion, challenger=challenger, decision="continue",
        reason=f"Nothing to compare: {why}.", alpha=alpha, created_at=utc_now()).with_id()
