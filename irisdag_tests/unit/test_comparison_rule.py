"""The comparison asset's decision logic, pure and in milliseconds: which rows of a window are
judged (training exclusion by features, one key per input, the experiment-wide claim of features
and ids), as `experiments.judge_window` decides it. The asset only loads files and hands the
store's claim in; `integration/test_evidence_once.py` runs that shell through real Dagster runs."""
from __future__ import annotations

import numpy as np

from irisdag.core import experiments, keys


def _hex(token: int) -> str:
    """A 64-hex feature key whose token (its first 8 bytes) is ``token``."""
    return f"{token:016x}" + "ab" * 24


class Claims:
    """The store's first-claimer-wins rule over one experiment, in a dict (each call recorded)."""

    def __init__(self, owner: str, earlier=()):
        self.owner, self.by_token, self.calls = owner, {int(t): "earlier" for t in earlier}, []

    def __call__(self, tokens):
        tokens = [int(t) for t in np.asarray(tokens, dtype=np.uint64).tolist()]
        self.calls.append(tokens)
        return np.array([self.by_token.setdefault(t, self.owner) == self.owner for t in tokens], dtype=bool)


# Five distinct keys. Keys 0 and 2 carry the same features (an id batch: one input under two ids);
# the champion trained on key 3's features, the arm on key 4's.
FEATURES = np.array([10, 20, 10, 30, 40], dtype=np.uint64)
INVERSE = np.array([0, 1, 2, 3, 4, 0, 1, 2])
TRAINED = [[_hex(30), "short-key-ignored"], [_hex(40)]]


def _rows(judging):
    return judging.judged.tolist(), judging.excluded.tolist(), judging.repeated.tolist()


def test_without_a_claim_every_untrained_first_input_is_judged_once():
    j = experiments.judge_window(INVERSE, FEATURES, TRAINED)
    judged, excluded, repeated = _rows(j)
    assert judged == [True, True, False, False, False, False, False, False]
    assert excluded == [False, False, False, True, True, False, False, False]   # champion's and arm's
    assert repeated == [False, False, True, False, False, True, True, True]
    assert (j.judged.astype(int) + j.excluded + j.repeated == 1).all()


def test_each_compared_version_s_training_rows_are_excluded():
    only_champion = experiments.judge_window(INVERSE, FEATURES, TRAINED[:1])
    assert only_champion.excluded.tolist() == [False, False, False, True, False, False, False, False]
    assert only_champion.judged.tolist()[4] is True
    only_arm = experiments.judge_window(INVERSE, FEATURES, TRAINED[1:])
    assert only_arm.excluded.tolist() == [False, False, False, False, True, False, False, False]
    nothing = experiments.judge_window(INVERSE, FEATURES, [])
    assert nothing.judged.tolist() == [True, True, False, True, True, False, False, False]
    assert not nothing.excluded.any()


def test_a_feature_batch_claims_its_candidates_features_and_loses_what_an_earlier_window_owns():
    claims = Claims("w2", earlier=[20])              # key 1's features were judged in an earlier window
    j = experiments.judge_window(INVERSE, FEATURES, TRAINED, claim=claims)
    # Candidates only: keys 0 and 1 (key 2 repeats key 0's features, keys 3 and 4 were trained on).
    assert claims.calls == [[10, 20]]
    judged, excluded, repeated = _rows(j)
    assert judged == [True, False, False, False, False, False, False, False]
    assert excluded == [False, False, False, True, True, False, False, False]
    assert repeated == [False, True, True, False, False, True, True, True]


def test_an_id_batch_claims_features_and_ids_and_judges_only_what_it_owns_on_both():
    ids = np.array([100, 200, 300, 400, 500], dtype=np.uint64)
    claims = Claims("w2", earlier=[100])             # key 0's id was judged in an earlier window
    j = experiments.judge_window(INVERSE, FEATURES, TRAINED, ids=ids, claim=claims)
    assert claims.calls == [[10, 20], [100, 200]]    # both claimed: neither comes back later
    judged, excluded, repeated = _rows(j)
    assert judged == [False, True, False, False, False, False, False, False]
    assert excluded == [False, False, False, True, True, False, False, False]
    assert repeated == [True, False, True, False, False, True, True, True]
    # The same window again owns the same inputs (a re-run judges the same rows).
    again = experiments.judge_window(INVERSE, FEATURES, TRAINED, ids=ids, claim=claims)
    assert again.judged.tolist() == judged
    # A later window owns none of them.
    later = experiments.judge_window(INVERSE, FEATURES, TRAINED, ids=ids,
                                     claim=lambda t: np.array([claims.by_token.setdefault(int(x), "w3") == "w3"
                                                               for x in np.asarray(t).tolist()], dtype=bool))
    assert not later.judged.any() and later.repeated.sum() == 6


def test_the_feature_claim_alone_decides_when_the_id_is_new():
    ids = np.array([100, 200, 300, 400, 500], dtype=np.uint64)
    claims = Claims("w2", earlier=[10])              # the features came before under another id
    j = experiments.judge_window(INVERSE, FEATURES, TRAINED, ids=ids, claim=claims)
    assert j.judged.tolist() == [False, True, False, False, False, False, False, False]
    assert claims.by_token[100] == "w2"              # the new id is claimed all the same


def test_feature_tokens_name_inputs_by_their_features_whatever_the_keying():
    X = np.array([[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]])
    q = keys.quantize_array(X)
    by_features = experiments.feature_tokens(keys.digests_of_quantized(q), q, keyed_by_id=False)
    ids = experiments.id_tokens(np.array(["id:a", "id:b"]))
    # An id batch's digests name the ids: the tokens come from its quantized features instead.
    by_id = experiments.feature_tokens(np.array([b"x" * 32, b"y" * 32], dtype="S32"), q, keyed_by_id=True)
    assert by_id.tolist() == by_features.tolist() != ids.tolist()
    assert by_features.tolist() == experiments.hex_tokens(keys.keys_of_quantized(q)).tolist()
    assert experiments.feature_tokens(np.array([b"x" * 32], dtype="S32"), q[:1], keyed_by_id=False).tolist() == [
        int.from_bytes(b"x" * 8, "big")]


# ------------------------------------------------------------------ the window's counts, exactly
def _window():
    # Rows:      0  1  2  3  4  5  6  7  8  9
    truth = [0, 0, 1, 1, 2, 2, 0, 1, 2, 0]
    champ = [0, 1, 1, 0, 2, 0, 0, 1, 2, 1]      # right on rows 0, 2, 4, 6, 7, 8
    arms = {"a1": np.array([0, 0, 2, 1, 2, 2, 1, 1, 0, 0]),   # right on 0, 1, 3, 4, 5, 7, 9
            "a2": np.array([1, 0, 1, 0, 0, 2, 0, 1, 2, 1])}   # right on 1, 2, 5, 6, 7, 8
    served_by = np.array(["a1", "champ", "", "a2", "champ", "a1", "", "a1", "champ", "a2"], dtype=object)
    judged = [1, 1, 1, 1, 1, 1, 0, 1, 0, 0]     # 0/1 flags are flags: row 6 held out, 8 and 9 not judged
    excluded = np.array([0, 0, 0, 0, 0, 0, 1, 0, 1, 0], dtype=bool)
    repeated = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 1], dtype=bool)
    return np.array(truth), np.array(champ), arms, served_by, judged, excluded, repeated


def test_count_window_counts_each_arm_paired_each_served_version_and_the_holdout_exactly():
    truth, champ, arms, served_by, judged, excluded, repeated = _window()
    ev = experiments.count_window(truth, champ, arms, served_by, judged, excluded=excluded, repeated=repeated)
    # Judged and not held out: rows 0, 1, 3, 4, 5, 7 (row 2 is judged but held out).
    assert ev.paired == {
        "a1": {"n": 6, "b": 0, "c": 3, "champion_right": 3, "challenger_right": 6, "excluded": 2, "repeated": 1},
        "a2": {"n": 6, "b": 2, "c": 2, "champion_right": 3, "challenger_right": 3, "excluded": 2, "repeated": 1},
    }
    # Served: a1 rows 0, 5, 7 (all right by a1); champ rows 1, 4 (right on 4); a2 row 3 (wrong).
    assert ev.served == {"a1": {"n": 3, "right": 3}, "champ": {"n": 2, "right": 1}, "a2": {"n": 1, "right": 0}}
    assert ev.holdout == {"n": 1, "champion_right": 1, "excluded": 2, "repeated": 1}


def test_count_window_by_default_counts_every_row_not_judged_as_excluded_and_none_repeated():
    truth, champ, arms, served_by, judged, _, _ = _window()
    ev = experiments.count_window(truth, champ, {"a1": arms["a1"]}, served_by, judged)
    assert (ev.paired["a1"]["excluded"], ev.paired["a1"]["repeated"]) == (3, 0)
    assert (ev.holdout["excluded"], ev.holdout["repeated"]) == (3, 0)


def test_judge_rows_refuses_rows_that_map_to_no_key_and_mismatched_flags():
    import pytest

    flags = np.zeros(3, dtype=bool)
    for bad in ([0, 3], [-1, 0], [3]):           # one past the end alone is refused too
        with pytest.raises(ValueError, match="maps to no distinct key"):
            experiments.judge_rows(np.array(bad), flags, flags)
    with pytest.raises(ValueError, match=r"trained \(\(3,\)\) and owned \(\(2,\)\) flags differ in shape"):
        experiments.judge_rows(np.array([0]), flags, np.zeros(2, dtype=bool))
    # 0/1 flags are flags.
    j = experiments.judge_rows(np.array([0, 1, 2, 0]), [0, 1, 0], [1, 1, 0])
    assert (j.judged.tolist(), j.excluded.tolist(), j.repeated.tolist()) == (
        [True, False, False, False], [False, True, False, False], [False, False, True, True])


def test_tokens_are_uint64_also_when_empty_or_one_and_keep_trailing_zero_bytes():
    for tokens in (experiments.digest_tokens([]), experiments.hex_tokens([]), experiments.id_tokens([])):
        assert tokens.dtype == np.uint64 and tokens.shape == (0,)
    one = experiments.digest_tokens([bytes(range(1, 33))])
    assert one.dtype == np.uint64 and one.tolist() == [0x0102030405060708]
    # numpy hands out S items without their trailing zero bytes: the S32 view keeps every digest whole.
    zeros = [b"\x01" * 8 + b"\x00" * 24, b"\x02" * 8 + b"\x00" * 24]
    assert experiments.digest_tokens(zeros).tolist() == [0x0101010101010101, 0x0202020202020202]
    small = experiments.hex_tokens(["0" * 15 + "5" + "0" * 48])
    assert small.dtype == np.uint64 and small.tolist() == [5]
    ids = experiments.id_tokens(["id:a"])        # sha256(b"id:a") starts 85a0aaf389421026
    assert ids.dtype == np.uint64 and ids.tolist() == [0x85A0AAF389421026]
