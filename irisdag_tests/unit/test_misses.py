"""What a queued miss may hold (irisdag.core.misses): pure, milliseconds."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from irisdag.core import keys as keyscheme
from irisdag.core import misses as m


def test_a_feature_miss_parses_and_is_rekeyed_from_its_features():
    key = keyscheme.input_key((5.0, 2.9, 1.1, 0.4))
    miss = m.parse_miss({"key": "f" * 64, "features": "[5.0, 2.9, 1.1, 0.4]", "time": "t"})
    assert miss.scorable and miss.features == (5.0, 2.9, 1.1, 0.4) and miss.key == key


def test_an_id_miss_parses_without_features():
    miss = m.parse_miss({"key": "id:user-9", "id": "user-9"})
    assert not miss.scorable and miss.key == "id:user-9" and miss.entity_id == "user-9"


@pytest.mark.parametrize("fields, kind", [
    ({}, m.NO_KEY),
    ({"key": "A" * 64, "features": "[1,2,3,4]"}, m.BAD_KEY),
    ({"key": "a" * 63, "features": "[1,2,3,4]"}, m.BAD_KEY),
    ({"key": "a" * 64}, m.NO_FEATURES),
    ({"key": "a" * 64, "features": "{"}, m.NOT_JSON),
    ({"key": "a" * 64, "features": "[Infinity, 1, 1, 1]"}, m.NOT_JSON),
    ({"key": "a" * 64, "features": "[-Infinity, 1, 1, 1]"}, m.NOT_JSON),
    ({"key": "a" * 64, "features": "[1, 2, 3, 4]" + " " * 600}, m.NOT_JSON),
    ({"key": "a" * 64, "features": '["1", 2, 3, 4]'}, m.INVALID_FEATURES),
    ({"key": "a" * 64, "features": "[1, 2, 3, 4, 5]"}, m.INVALID_FEATURES),
    ({"key": "a" * 64, "features": "[1, 2, 3, 1e6]"}, m.INVALID_FEATURES),
    ({"key": "a" * 64, "features": "[1, 2, 3, 10000000000000000000000000000]"}, m.INVALID_FEATURES),
    ({"key": "a" * 64, "features": "null"}, m.INVALID_FEATURES),
    ({"key": "id:", "id": ""}, m.BAD_ID),
    ({"key": "id:a", "id": "b"}, m.BAD_ID),
    ({"key": "id:" + "x" * 300}, m.BAD_ID),
])
def test_poisoned_entries_are_refused_by_kind(fields, kind):
    with pytest.raises(m.PoisonedMiss) as err:
        m.parse_miss(fields)
    assert err.value.kind == kind and err.value.reason


texts = st.text(max_size=80) | st.builds(json.dumps, st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=12))


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(st.sampled_from(["key", "features", "id", "time", "other"]), texts, max_size=5),
       st.sampled_from(["", "a" * 64, "id:u1"]))
def test_any_entry_parses_or_is_refused_never_anything_else(fields, key):
    if key and "key" not in fields:
        fields = {**fields, "key": key}
    try:
        miss = m.parse_miss(fields)
    except m.PoisonedMiss as err:
        assert err.kind in {m.NO_KEY, m.BAD_KEY, m.NOT_JSON, m.INVALID_FEATURES, m.NO_FEATURES, m.BAD_ID}
        return
    if miss.scorable:
        assert miss.key == keyscheme.input_key(miss.features)
    else:
        assert miss.key.startswith("id:")
