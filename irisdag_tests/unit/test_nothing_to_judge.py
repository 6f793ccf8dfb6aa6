"""Why n is 0 (issue 10 item 8): a decision with no judged rows says whether no feedback
arrived or every row with feedback was a training row of a compared model."""
import numpy as np

from irisdag.core.strategies import PairedEvidence, decide_shadow


def test_all_rows_excluded_as_training_rows_is_said_with_the_count():
    y = np.array([0, 1, 2] * 350)
    evidence = PairedEvidence.from_rows(y, y, y, champion="a", challenger="b", partition="w1",
                                        exclude=np.ones(len(y), dtype=bool))
    record = decide_shadow(evidence)
    assert record.decision == "continue" and record.n == 0 and record.n_excluded == 1050
    assert "all 1,050 rows with feedback were left out" in record.reason and "trained on them" in record.reason
    assert "No rows with feedback yet" not in record.reason


def test_no_feedback_at_all_says_so():
    record = decide_shadow(PairedEvidence("a", "b").add_batch(b=0, c=0, n=0, champion_right=0,
                                                              challenger_right=0, partition="w1"))
    assert record.n == 0 and record.reason == "No rows with feedback yet: nothing to judge."
