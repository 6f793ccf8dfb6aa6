"""DecisionRecord: JSON round trip, the ``lambda`` key, deterministic ids, Markdown."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest

from irisdag.core.decision import DecisionRecord, make_decision_id


def _record(**overrides) -> DecisionRecord:
    base = dict(
        decision_id="",
        strategy="shadow",
        evidence="paired",
        n=1000,
        b=10,
        c=30,
        champion="a" * 64,
        challenger="b" * 64,
        champion_accuracy=0.9,
        champion_ci=(0.88, 0.917),
        challenger_accuracy=0.92,
        challenger_ci=(0.902, 0.935),
        difference=0.02,
        difference_ci=(0.0085, 0.0318),
        interval_method="95% Tango score interval (paired, fixed-n)",
        test="paired mSPRT",
        statistic=3.4543,
        p_value=0.0316,
        alpha=0.05,
        mixture=1.0,
        lambda_=31.6369,
        mcnemar_p=0.0022214,
        decision="promote",
        reason="The challenger is better | by two points.",
        partitions=("2024-01-01-00:00", "2024-01-01-04:00"),
        n_excluded=12,
        created_at="2024-01-01T08:00:00+00:00",
    )
    base.update(overrides)
    return DecisionRecord(**base).with_id()


def test_to_dict_is_json_safe_and_uses_the_lambda_key():
    d = _record().to_dict()
    assert d["lambda"] == pytest.approx(31.6369)
    assert "lambda_" not in d
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["champion_ci"] == [0.88, 0.917]
    for key in ("decision_id", "strategy", "evidence", "n", "b", "c", "champion", "challenger",
                "champion_accuracy", "champion_ci", "challenger_accuracy", "challenger_ci", "difference",
                "difference_ci", "test", "statistic", "p_value", "alpha", "mixture", "lambda", "mcnemar_p",
                "decision", "reason", "partitions", "n_excluded", "created_at"):
        assert key in d, key


def test_round_trip_through_json_is_lossless():
    rec = _record()
    again = DecisionRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert again == rec
    assert DecisionRecord.from_json(rec.to_json()) == rec


def test_infinite_lambda_survives_strict_json():
    rec = _record(lambda_=math.inf, p_value=0.0)
    text = rec.to_json()  # allow_nan=False inside: would raise on a bare inf
    assert '"lambda": "inf"' in text
    assert DecisionRecord.from_json(text).lambda_ == math.inf


def test_record_is_frozen_and_validated():
    rec = _record()
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.decision = "abort"
    with pytest.raises(ValueError):
        _record(decision="maybe")
    with pytest.raises(ValueError):
        _record(strategy="yolo")
    with pytest.raises(ValueError):
        _record(evidence="vibes")
    with pytest.raises(ValueError):
        _record(reason="")


def test_decision_id_is_deterministic_and_ignores_time():
    one = _record(created_at="2024-01-01T08:00:00+00:00")
    two = _record(created_at="2025-06-30T23:59:59+00:00", reason="Same evidence, other words.")
    assert one.decision_id == two.decision_id
    assert len(one.decision_id) == 16 and int(one.decision_id, 16) >= 0


@pytest.mark.parametrize("change", [
    dict(n=1001), dict(b=11), dict(c=31), dict(n_excluded=0), dict(challenger="c" * 64),
    dict(champion="d" * 64), dict(strategy="canary"), dict(partitions=("2024-01-01-00:00",)),
    dict(decision="continue"), dict(shares_bp={"b" * 64: 2500}),
])
def test_decision_id_changes_with_the_evidence(change):
    assert _record(**change).decision_id != _record().decision_id


def test_make_decision_id_hashes_partitions_in_order():
    args = ("shadow", "v1", "v2")
    counts = {"n": 10, "b": 1, "c": 2}
    assert make_decision_id(*args, ["p1", "p2"], counts) == make_decision_id(*args, ("p1", "p2"), dict(counts))
    assert make_decision_id(*args, ["p1", "p2"], counts) != make_decision_id(*args, ["p2", "p1"], counts)
    # Key order of the counts mapping does not matter.
    assert make_decision_id(*args, ["p"], {"b": 1, "n": 10}) == make_decision_id(*args, ["p"], {"n": 10, "b": 1})


def test_markdown_is_a_two_column_table_people_can_read():
    md = _record().to_markdown()
    lines = md.splitlines()
    assert lines[0] == "| field | value |" and lines[1] == "| --- | --- |"
    for line in lines[2:]:
        cells = line.replace("\\|", "").strip("|").split("|")
        assert len(cells) == 2, line
    assert "**promote**" in md
    assert "90.00%" in md and "92.00%" in md          # accuracies as percentages
    assert "+2.00 points" in md                        # the difference in points
    assert "0.0316" in md and "31.64" in md            # p-value and Λ, rounded
    assert "1,000" in md                               # thousands separator
    assert "better \\| by two" in md                   # a pipe in text does not break the table
    assert "`aaaaaaaaaaaa…`" in md                      # long digests shortened


def test_markdown_formats_tiny_and_huge_numbers():
    md = _record(p_value=3.2e-12, lambda_=3.1e11, mcnemar_p=1e-20).to_markdown()
    assert "3.20e-12" in md and "3.100e+11" in md and "1.00e-20" in md
