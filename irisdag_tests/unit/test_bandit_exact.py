"""The bandit's state and decision checked exactly (the mutation review, docs/mutation-review.md):
fields normalised as stored, bounds refused exactly on their edges, records field by field."""
from __future__ import annotations

import pytest

from irisdag.core.strategies import BanditState

ARM_PRIOR_MESSAGE = "arm_prior must be two positive Beta parameters, got {!r}"


def test_bandit_state_normalises_every_field_as_stored():
    state = BanditState(arms=[1, "y"], dropped=[1], shares_bp={1: "2500", "y": 2500.0}, arm_prior=[2, 1])
    assert state.arms == ("1", "y") and type(state.arms) is tuple
    assert state.dropped == ("1",) and type(state.dropped) is tuple
    assert state.shares_bp == {"1": 2500, "y": 2500} and [type(v) for v in state.shares_bp.values()] == [int, int]
    assert state.arm_prior == (2.0, 1.0) and type(state.arm_prior) is tuple
    assert [type(x) for x in state.arm_prior] == [float, float]
    assert state.to_dict() == {
        "arms": ["1", "y"], "threshold": 0.95, "alpha": 0.05, "mixture": 1.0, "draws": 20000, "floor_bp": 0,
        "champion_floor_bp": 2000, "seed": 0, "shares_bp": {"1": 2500, "y": 2500}, "dropped": ["1"],
        "done": None, "arm_prior": [2.0, 1.0]}
    # Stored as JSON and read back: the same state; a stored state without the optional keys reads too.
    assert BanditState.from_dict(state.to_dict()) == state
    assert BanditState.from_dict({"arms": ["x"]}) == BanditState(arms=("x",))


@pytest.mark.parametrize("arm_prior", [(0.5, 2.0), (1e-9, 1e-9), (3, 7)])
def test_any_two_positive_beta_parameters_are_an_arm_prior(arm_prior):
    assert BanditState(arms=("x",), arm_prior=arm_prior).arm_prior == tuple(float(x) for x in arm_prior)


@pytest.mark.parametrize("arm_prior", [(0.0, 1.0), (1.0, 0.0), (-1.0, 1.0), (1.0,), (1.0, 1.0, 1.0)])
def test_an_arm_prior_other_than_two_positive_parameters_is_refused(arm_prior):
    with pytest.raises(ValueError) as err:
        BanditState(arms=("x",), arm_prior=arm_prior)
    assert str(err.value) == ARM_PRIOR_MESSAGE.format(tuple(float(x) for x in arm_prior))


@pytest.mark.parametrize("arms", [(), ("x", "x"), ("x", "y", "x")])
def test_a_bandit_needs_distinct_arms(arms):
    with pytest.raises(ValueError) as err:
        BanditState(arms=arms)
    assert str(err.value) == "a bandit needs one or more distinct challenger arms"


@pytest.mark.parametrize("threshold", [0.5000001, 0.75, 0.9999999])
def test_a_threshold_strictly_between_one_half_and_one_is_accepted(threshold):
    assert BanditState(arms=("x",), threshold=threshold).threshold == threshold


@pytest.mark.parametrize("threshold", [0.5, 1.0, 0.4, 1.5])
def test_a_threshold_on_or_outside_one_half_and_one_is_refused(threshold):
    with pytest.raises(ValueError) as err:
        BanditState(arms=("x",), threshold=threshold)
    assert str(err.value) == f"threshold must be within (0.5, 1), got {threshold!r}"


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_the_bandit_refuses_an_alpha_outside_zero_and_one(alpha):
    with pytest.raises(ValueError, match=f"alpha must be strictly between 0 and 1, got {alpha!r}"):
        BanditState(arms=("x",), alpha=alpha)
