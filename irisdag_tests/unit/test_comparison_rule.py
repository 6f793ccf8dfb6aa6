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
