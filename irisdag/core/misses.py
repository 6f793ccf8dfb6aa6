"""What a queued miss may hold (DESIGN §3). Misses are hints written by
untrusted consumers: an entry either parses into a `Miss`, or is refused with a
`PoisonedMiss` naming its kind and the reason (the pipeline dead-letters it).

An entry (the fields of one ``irisdag:misses`` stream entry, as text):
  ``key``       the lookup key: 64 lowercase hex (a feature key) or ``id:<id>``
  ``features``  JSON array of the four input values (feature misses)
  ``id``        the entity id (id misses: nothing to score, acknowledged as such)
  ``time``      when the consumer queued it (free text, informational)
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Mapping

from irisdag.core import keys as keyscheme

MAX_FEATURES_TEXT = 512  # four numbers as JSON take well under 100 characters

# Kinds of poisoned entries (the dead-letter counts are kept by kind).
OVERSIZED = "oversized"
NO_KEY = "no_key"
BAD_KEY = "bad_key"
NOT_JSON = "not_json"
INVALID_FEATURES = "invalid_features"
NO_FEATURES = "no_features"
BAD_ID = "bad_id"


class PoisonedMiss(ValueError):
    """A miss entry that cannot be used; ``kind`` is one of the constants above."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class Miss:
    key: str                    # the key the consumer looked up
    features: tuple | None      # validated inputs (feature misses)
    entity_id: str | None       # the entity id (id misses)

    @property
    def scorable(self) -> bool:
        return self.features is not None


def _is_feature_key(key: str) -> bool:
    return len(key) == 64 and all(c in "0123456789abcdef" for c in key)


def _shown(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def oversized(size: int, limit: int) -> PoisonedMiss:
    return PoisonedMiss(OVERSIZED, f"entry of {size} bytes is over the reader's limit of {limit} bytes")


def parse_miss(fields: Mapping[str, str]) -> Miss:
    """The miss an entry describes, or PoisonedMiss naming what is wrong with it."""
    key = fields.get("key") or ""
    if not key:
        raise PoisonedMiss(NO_KEY, "entry has no key")
    entity_id = fields.get("id")
    if not (_is_feature_key(key) or key.startswith(keyscheme.ID_PREFIX)):
        raise PoisonedMiss(BAD_KEY, f"key {_shown(key)} is neither 64 lowercase hex nor id:<id>")
    text = fields.get("features")
    if text is None or text == "":
        if key.startswith(keyscheme.ID_PREFIX):
            try:
                expected = keyscheme.id_key(key[len(keyscheme.ID_PREFIX):])
            except keyscheme.InputError as err:
                raise PoisonedMiss(BAD_ID, f"key {_shown(key)}: {err}") from None
            if entity_id is not None and (not _valid_id(entity_id) or keyscheme.id_key(entity_id) != expected):
                raise PoisonedMiss(BAD_ID, f"id {_shown(entity_id)} does not match key {_shown(key)}")
            return Miss(key=expected, features=None, entity_id=key[len(keyscheme.ID_PREFIX):])
        raise PoisonedMiss(NO_FEATURES, f"feature key {key[:16]}… came without its features")
    if len(text) > MAX_FEATURES_TEXT:
        raise PoisonedMiss(NOT_JSON, f"features are {len(text)} characters, more than four numbers take")
    try:
        values = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as err:
        raise PoisonedMiss(NOT_JSON, f"features {_shown(text)} are not JSON ({err})") from None
    if not isinstance(values, list) or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        raise PoisonedMiss(INVALID_FEATURES, f"features {_shown(text)} are not a JSON array of numbers")
    try:
        features = keyscheme.validate_features(values)
    except (keyscheme.InputError, OverflowError) as err:
        raise PoisonedMiss(INVALID_FEATURES, f"features {_shown(text)}: {err}") from None
    if any(not math.isfinite(v) for v in features):  # validate_features refuses these; kept explicit
        raise PoisonedMiss(INVALID_FEATURES, f"features {_shown(text)} are not finite")
    return Miss(key=keyscheme.input_key(features), features=features, entity_id=None)


def _valid_id(entity_id) -> bool:
    try:
        keyscheme.id_key(entity_id)
        return True
    except keyscheme.InputError:
        return False


def _no_constant(name: str):
    # json accepts NaN, Infinity and -Infinity by default; no consumer may send them.
    raise ValueError(f"{name} is not a number")
