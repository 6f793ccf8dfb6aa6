"""An experiment: one challenger (or several bandit arms) against the champion
under one strategy, from its start to its decision. Pure: no Dagster, no Redis.

The plan is fixed when the experiment starts (strategy, feedback kind, the
split or ramp, the A/B sample size); the strategy's state moves on with each
batch. The assets store both and call :func:`decide` after every batch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import hashlib

import numpy as np

from irisdag.core import strategies
from irisdag.core.decision import DecisionRecord, utc_now
from irisdag.core.keys import digests_of_quantized
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
    bandit_champion_floor_bp: int = strategies.DEFAULT_CHAMPION_FLOOR_BP  # the champion's least bandit share

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
                                      mixture=plan.mixture, champion_floor_bp=plan.bandit_champion_floor_bp,
                                      holdout_bp=plan.holdout_bp,
                                      shares_bp=dict(initial_shares(plan))).to_dict()
    return {}


def initial_shares(plan: ExperimentPlan) -> list[tuple[str, int]]:
    """What each non-champion arm serves from the start (shadow and single: nothing)."""
    if plan.strategy == "ab":
        return [(plan.arms[0], plan.ab_share_bp)]
    if plan.strategy == "canary":
        return [(plan.arms[0], plan.canary_steps_bp[0])]
    if plan.strategy == "bandit":
        served = 10000 - plan.holdout_bp
        each = served // (len(plan.arms) + 1)  # champion and arms start even, the champion's floor kept
        floor = -(-plan.bandit_champion_floor_bp * served // 10000)  # its floor is of the traffic served
        return [(arm, max(0, min(each, (served - floor) // len(plan.arms)))) for arm in plan.arms]
    return []


def served_routes(keys, routing: Routing) -> np.ndarray:
    """For each key, the version that served it under ``routing`` ('' = held out)."""
    out = np.empty(len(keys), dtype=object)
    for i, key in enumerate(keys):
        route, version = route_key(str(key), routing)
        out[i] = "" if route == "holdout" else version
    return out


def digest_tokens(digests) -> np.ndarray:
    """uint64 token per input from its raw SHA-256 digest (``S32``): the digest's first 8 bytes.

    Tokens name inputs in the per-experiment record of what was judged (8
    bytes an input, not 32 or 64); two inputs share one with probability about
    n²/2⁶⁵, under 1e-6 at 5M inputs.
    """
    d = np.ascontiguousarray(np.asarray(digests, dtype="S32"))
    if d.size == 0:
        return np.zeros(0, dtype=np.uint64)
    return np.frombuffer(d.tobytes(), dtype=">u8").reshape(len(d), 4)[:, 0].astype(np.uint64)


def hex_tokens(hex_keys) -> np.ndarray:
    """uint64 token of 64-hex feature keys (as :func:`digest_tokens` of their digests)."""
    keys = [str(k) for k in np.asarray(hex_keys).tolist()]
    return np.array([int(k[:16], 16) for k in keys if len(k) == 64], dtype=np.uint64)


def id_tokens(id_keys) -> np.ndarray:
    """uint64 token per ``id:<id>`` key: the first 8 bytes of SHA-256 of the key."""
    return np.array([int.from_bytes(hashlib.sha256(str(k).encode("utf-8")).digest()[:8], "big")
                     for k in np.asarray(id_keys).tolist()], dtype=np.uint64)


def first_of_each(tokens) -> np.ndarray:
    """bool per position: the first occurrence of its token (later ones repeat an input already there)."""
    tokens = np.asarray(tokens)
    first = np.zeros(len(tokens), dtype=bool)
    if len(tokens):
        first[np.unique(tokens, return_index=True)[1]] = True
    return first


@dataclass(frozen=True)
class Judging:
    """Which rows of a window are judged, and why the others are not (one bool per row each).

    Exactly one of ``judged``, ``excluded`` (a compared model was trained on
    the row's features, whatever the batch is keyed by) and ``repeated`` (its
    input — feature key, or id — was judged already in this experiment, in an
    earlier window or earlier in this one) is set for every row.
    """

    judged: np.ndarray
    excluded: np.ndarray
    repeated: np.ndarray


def judge_rows(inverse, trained_key, owned_key) -> Judging:
    """The count-once rule for one window.

    ``inverse`` maps each row to its distinct key; ``trained_key`` (per key)
    marks keys whose features a compared model trained on; ``owned_key`` (per
    key) marks keys this window is the first in the experiment to judge (see
    the store's ``claim_inputs``). A key's first row in the window is judged
    when the key is owned and not trained on; every other row of an
    untrained key is a repeat.
    """
    inverse = np.asarray(inverse)
    trained_key, owned_key = np.asarray(trained_key, dtype=bool), np.asarray(owned_key, dtype=bool)
    if trained_key.shape != owned_key.shape:
        raise ValueError(f"trained ({trained_key.shape}) and owned ({owned_key.shape}) flags differ in shape")
    if len(inverse) and (inverse.min() < 0 or inverse.max() >= len(trained_key)):
        raise ValueError("a row maps to no distinct key")
    excluded = trained_key[inverse]
    first_row = first_of_each(inverse)
    judged = first_row & owned_key[inverse] & ~excluded
    return Judging(judged=judged, excluded=excluded, repeated=~excluded & ~judged)


def feature_tokens(digests, quantized, keyed_by_id: bool) -> np.ndarray:
    """uint64 token per distinct key of a batch, named by the input's features whatever the batch is keyed by.

    A feature-keyed batch's ``digests`` are already the features' digests; an
    id-keyed batch's are not (they name the id), so its inputs are named by
    the digests of their ``quantized`` features.
    """
    if keyed_by_id:
        return digest_tokens(digests_of_quantized(np.asarray(quantized)))
    return digest_tokens(digests)


def judge_window(inverse, features, trained_hex_keys, *, ids=None, claim=None) -> Judging:
    """The comparison's rule for which rows of one window are judged (pure; the asset supplies the claim).

    ``features``: :func:`feature_tokens` per distinct key; ``inverse``: each
    row's distinct key; ``trained_hex_keys``: one list of 64-hex feature keys
    per compared version (the champion and every arm) that it trained on;
    ``ids``: the :func:`id_tokens` of an id-keyed batch's keys (None when keyed
    by features); ``claim(tokens) -> bool array``: which of these inputs this
    window is the first in the experiment to judge (the store's
    ``claim_inputs``; None judges every candidate, as in a one-window
    replay). A key is a candidate when no compared version trained on its
    features and it is the first key of its features in this window (an id
    batch may carry one input under several ids); a candidate is owned when
    the claim grants its features and, in an id batch, its id too (both are
    claimed, so neither comes back later).
    """
    features = np.asarray(features, dtype=np.uint64)
    trained = np.zeros(0, dtype=np.uint64)
    for hex_keys in trained_hex_keys:
        trained = np.union1d(trained, hex_tokens(hex_keys))
    trained_key = np.isin(features, trained)
    candidate = ~trained_key & first_of_each(features)
    if claim is None:
        owned = candidate
    else:
        idx = np.flatnonzero(candidate)
        got = np.asarray(claim(features[idx]), dtype=bool)
        if ids is not None:
            got = got & np.asarray(claim(np.asarray(ids, dtype=np.uint64)[idx]), dtype=bool)
        owned = np.zeros(len(features), dtype=bool)
        owned[idx] = got
    return judge_rows(inverse, trained_key, owned & candidate)


@dataclass
class WindowEvidence:
    """One window's counts, per arm (paired against the champion) and per served arm (unpaired)."""

    paired: dict = field(default_factory=dict)     # arm -> {n, b, c, champion_right, challenger_right, excluded, repeated}
    served: dict = field(default_factory=dict)     # version -> {n, right}: judged rows = distinct keys
    holdout: dict = field(default_factory=dict)    # {n, champion_right}


def count_window(truth, champion_pred, arm_preds: dict, served_by, judged, *, excluded=None,
                 repeated=None) -> WindowEvidence:
    """Counts of one window over the ``judged`` rows (one per distinct input, none trained on).

    ``excluded`` and ``repeated`` (bool per row) are only counted, for the
    record; by default every row not judged counts as excluded.
    """
    truth = np.asarray(truth)
    judged = np.asarray(judged, dtype=bool)
    excluded = ~judged if excluded is None else np.asarray(excluded, dtype=bool)
    repeated = np.zeros_like(judged) if repeated is None else np.asarray(repeated, dtype=bool)
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
            "excluded": int(excluded.sum()), "repeated": int(repeated.sum()),
        }
    for version in {v for v in served_by[use]}:
        rows = use & (served_by == version)
        right = champ_right if version not in arm_preds else (np.asarray(arm_preds[version]) == truth)
        ev.served[version] = {"n": int(rows.sum()), "right": int((right & rows).sum())}
    ev.holdout = {"n": int((judged & held).sum()), "champion_right": int((champ_right & judged & held).sum())}
    ev.holdout.update({"excluded": int(excluded.sum()), "repeated": int(repeated.sum())})
    return ev


def paired_evidence(champion: str, arm: str, windows: dict) -> strategies.PairedEvidence:
    ev = strategies.PairedEvidence(champion=champion, challenger=arm)
    for p in sorted(windows):  # windows in time order: each is one look
        w = windows[p]["paired"].get(arm)
        if w is not None:
            ev = ev.add_batch(b=w["b"], c=w["c"], n=w["n"], champion_right=w["champion_right"],
                              challenger_right=w["challenger_right"], partition=p, n_excluded=w["excluded"],
                              n_repeated=w.get("repeated", 0))
    return ev


def unpaired_evidence(champion: str, arm: str, windows: dict) -> strategies.UnpairedEvidence:
    ev = strategies.UnpairedEvidence(champion=champion, challenger=arm)
    for p in sorted(windows):
        s = windows[p]["served"]
        a, b = s.get(champion, {"n": 0, "right": 0}), s.get(arm, {"n": 0, "right": 0})
        held = windows[p].get("holdout", {})
        if a["n"] or b["n"]:
            ev = ev.add_batch(a["right"], a["n"], b["right"], b["n"], partition=p,
                              n_excluded=held.get("excluded", 0), n_repeated=held.get("repeated", 0))
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
        collect = paired_evidence if plan.feedback == "label" else unpaired_evidence
        evidence = {a: collect(champion, a, windows) for a in plan.arms}
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
