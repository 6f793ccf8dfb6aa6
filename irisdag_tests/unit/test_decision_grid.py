"""The vectorised grid (benchmarks/decision_grid.py) applies the strategies' own rules: experiments
replayed window by window through ``decide_canary`` / ``decide_bandit`` end the same way."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks import decision_grid as G
from irisdag.core.strategies import BanditState, CanaryState, PairedEvidence, UnpairedEvidence, decide_bandit, decide_canary

FINAL = {"promote": G.PROMOTE, "abort": G.ABORT}


def _replay(strategy, feedback, trace, run, window, sim):
    ev = PairedEvidence("champ", "arm") if feedback == "label" else UnpairedEvidence("champ", "arm")
    state = (CanaryState(min_rows_per_step=sim.min_rows_per_step, delta=sim.delta, alpha=sim.alpha) if strategy == "canary"
             else BanditState(arms=("arm",), alpha=sim.alpha))
    for look, counts in enumerate(trace):
        x = [int(v) for v in counts[run]]
        if feedback == "label":
            b, c, both, _ = x
            ev = ev.add_batch(b=b, c=c, n=window, champion_right=both + b, challenger_right=both + c)
        else:
            ev = ev.add_batch(*x)
        if strategy == "canary":
            rec, state = decide_canary(ev, state)
        else:
            rec, state = decide_bandit({"arm": ev}, state)
        if rec.decision in FINAL:
            return FINAL[rec.decision], (look + 1) * window
    return G.NONE, sim.max_rows


@pytest.mark.parametrize("strategy,feedback,diff", [
    ("canary", "label", 0.0), ("canary", "outcome", 0.08), ("bandit", "label", 0.02), ("bandit", "outcome", 0.10)])
def test_grid_decisions_equal_the_strategy_replayed_window_by_window(strategy, feedback, diff):
    sim = G.GridSim(max_rows=3000 if feedback == "label" else 6000, p_champion=0.9 if feedback == "label" else 0.85,
                    exact_trigger=True)
    runs, window = 24, 50
    trace: list = []
    rng = np.random.default_rng(5)
    run = G.run_canary if strategy == "canary" else G.run_bandit
    code, when = run(sim, feedback, diff, window, runs, rng, trace=trace)
    assert (code != G.NONE).any()                     # the cell decides something to compare
    same = sum((int(code[r]), int(when[r])) == _replay(strategy, feedback, trace, r, window, sim) for r in range(runs))
    assert same == runs


@pytest.mark.parametrize("champion_floor_bp", [0, 2000, 3500])
def test_grid_outcome_bandit_serves_the_champion_its_floor_as_decide_bandit_does(champion_floor_bp):
    # A far better arm (90 → 99%) drives P(best) to 1 within a few windows; afterwards the champion
    # is served its floor, as decide_bandit's shares ask, and no more.
    sim = G.GridSim(max_rows=4000, champion_floor_bp=champion_floor_bp, alpha=1e-9, threshold=0.999)
    trace: list = []
    G.run_bandit(sim, "outcome", 0.09, 100, 200, np.random.default_rng(3), trace=trace)
    late = np.array(trace[20:])               # (windows, runs, [k1, n1, k2, n2]), P(best) long past 0.999
    open_ = late[..., 1] + late[..., 3] > 0   # windows of experiments still open
    champion_share = late[..., 1][open_].sum() / (late[..., 1] + late[..., 3])[open_].sum()
    assert champion_share == pytest.approx(champion_floor_bp / 10000, abs=0.01)
    state = BanditState(arms=("arm",), champion_floor_bp=champion_floor_bp, alpha=1e-12)
    ev = UnpairedEvidence("champ", "arm").add_batch(k1=3, n1=30, k2=27, n2=30)  # P(best) exactly 1
    assert decide_bandit({"arm": ev}, state)[0].shares_bp == {"arm": 10000 - champion_floor_bp}


def test_the_grid_runs_only_the_cells_asked_for():
    tasks = G.grid_tasks(G.GridSim(), 10, only=["bandit/outcome"])
    assert sorted({(t[2], t[3], t[4]) for t in tasks}) == [("bandit", "outcome", "new")]
    assert sorted((t[5], t[7]) for t in tasks) == sorted((w, role) for w in G.WINDOWS for role in ("error", "power"))
    everything = G.grid_tasks(G.GridSim(), 10)
    assert len(everything) == 2 * (5 * len(G.WINDOWS) + 2)  # five interval rows of every window, two speed cells
    canary = G.grid_tasks(G.GridSim(), 10, only=["canary/outcome"])
    assert len(canary) == 2 * (2 * len(G.WINDOWS) + 2)      # new and old intervals, and the speed cells
