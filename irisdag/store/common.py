"""What every client of the serving store shares, without importing redis-py: key names,
class names, the Lua texts, the miss entry's fields, the errors and the URL shown in
messages. `resource.StoreClient` (redis-py) and `consumer` (the command line's lookup,
a small RESP client) both use these, so a key or a field is defined once.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

from irisdag.lazy import numpy as np  # imported on first use: a lookup needs none

LABELS = ("setosa", "versicolor", "virginica")  # class index -> name

ROUTING_KEY = "irisdag:routing"
MISSES_KEY = "irisdag:misses"
STREAM_MAXLEN = 100_000

LUA_FUNCTIONS = ("lookup", "lookup_digests", "route", "buckets", "reshard", "misses_read", "dead_letter")
ENTRY_MARKER = "-- @@entry-points"
# Keys per FCALL. Larger lists go as several calls in one pipeline (still one
# round trip), so that one call holds Redis for a bounded time: a few us a
# key, about 1-2 us more when an experiment makes Lua take each key's SHA-1.
LOOKUP_CHUNK = 10_000
_LUA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lua", "irisdag.lua")


class StoreError(RuntimeError):
    """The serving store refused or failed an operation."""


class StoreUnavailable(StoreError):
    """Redis cannot be reached (the message names the URL, never its password)."""


# ---- Lua --------------------------------------------------------------------

@functools.cache
def lua_source() -> str:
    """The `irisdag` function library, as loaded by FUNCTION LOAD."""
    with open(_LUA_PATH, encoding="utf-8") as f:
        return f.read()


@functools.cache
def eval_script(name: str) -> str:
    """The EVAL form of one library function (Redis 6.2): the same bodies, then a call."""
    if name not in LUA_FUNCTIONS:
        raise KeyError(name)
    source = lua_source()
    body = source.split("\n", 1)[1] if source.startswith("#!") else source  # 5.1 rejects the shebang
    body = body.split(ENTRY_MARKER, 1)[0]
    return f"{body}\nreturn {name}(KEYS, ARGV)\n"


@functools.cache
def eval_sha(name: str) -> str:
    """SHA-1 of `eval_script(name)`, as EVALSHA names it."""
    return hashlib.sha1(eval_script(name).encode("utf-8")).hexdigest()


# ---- values ---------------------------------------------------------------------

def now() -> str:
    """The current UTC time as the store records it (ISO 8601, milliseconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def miss_fields(entry: dict) -> dict[str, str]:
    """The fields of one ``irisdag:misses`` entry: key, then features (JSON) or id, then time."""
    key = entry.get("key")
    if not key:
        raise ValueError(f"a miss needs its key: {entry!r}")
    fields = {"key": str(key)}
    features = entry.get("features")
    if features is not None:
        fields["features"] = features if isinstance(features, str) else json.dumps([float(x) for x in features])
    if entry.get("id") is not None:
        fields["id"] = str(entry["id"])
    fields["time"] = str(entry.get("time") or now())
    return fields


def label_name(label: bytes | str) -> str:
    """A stored answer as the class name: an index ("0", "1", "2") or already a name."""
    text = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
    return LABELS[int(text)] if text in ("0", "1", "2") else text


def redact_url(url: str) -> str:
    """The URL with its password replaced by ***."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
        if parts.password is None and query == parts.query:
            return url
        netloc = parts.netloc
        if parts.password is not None:
            netloc = f"{parts.username or ''}:***@{netloc.rsplit('@', 1)[1]}"
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparseable Redis URL>"


# ---- batch answers (raw-key lookups) -----------------------------------------------

def digest_call_args(blob: bytes, salt: str | None) -> list:
    """The arguments of one ``lookup_digests`` call: the raw keys joined and, when the salt of
    an experiment is known (the last reply's), that salt and the keys' buckets under it, 2
    bytes a key big-endian. Redis uses the buckets only if the salt is still the one in force
    (else it hashes the keys itself), so they save its time and never decide an answer."""
    if not salt or not blob:
        return [blob]
    from irisdag.core.routing import buckets_of_digests

    return [blob, salt, buckets_of_digests(salt, blob).astype(">u2").tobytes()]


def codes_onto(codes: np.ndarray, names: list[str], versions: list[str], more: bool) -> np.ndarray:
    """Codes naming ``names`` (index i: code 4 * (1 + i) + label) renumbered onto ``versions``,
    which gains the names it lacks; ``more``: ``versions`` already holds earlier answers."""
    if names == versions[:len(names)] and not (more and len(names) != len(versions)):
        return codes
    remap = np.arange(256, dtype=np.uint8)
    for j, name in enumerate(names):
        if name not in versions:
            versions.append(name)
        k = versions.index(name)
        for label in range(4):
            remap[4 * (1 + j) + label] = 4 * (1 + k) + label
    return remap[codes]


@dataclass(frozen=True)
class BatchAnswers:
    """What `ServingStore.lookup_digests` answers: one code a key and the versions they name.

    ``codes`` (uint8): 0 miss, 1 holdout, else 4 * (1 + i) + class index,
    where ``versions[i]`` answered (i = 0: the champion; i >= 1: an arm of
    the experiment, route challenger).
    """

    codes: np.ndarray
    versions: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def labels(self) -> np.ndarray:
        """int8 class index a key, -1 where there is none (miss, holdout)."""
        c = self.codes
        return np.where(c >= 4, c % 4, -1).astype(np.int8)

    @property
    def version_index(self) -> np.ndarray:
        """int16 index into ``versions`` a key, -1 where none answered."""
        c = self.codes.astype(np.int16)
        return np.where(c >= 4, c // 4 - 1, -1).astype(np.int16)

    @classmethod
    def joined(cls, parts: Sequence["BatchAnswers"]) -> "BatchAnswers":
        """The answers of several `lookup_digests` calls, in order, as one (codes onto one ``versions``)."""
        versions: list[str] = []
        codes = [codes_onto(p.codes, list(p.versions), versions, i > 0) for i, p in enumerate(parts)]
        return cls(np.concatenate(codes) if codes else np.zeros(0, np.uint8), tuple(versions))

    def route_table(self) -> list[tuple]:
        """(label, version, route) for each of the 256 codes, as `records` gives them."""
        table = [(None, None, "miss")] * 256
        table[1] = (None, None, "holdout")
        for i, v in enumerate(self.versions):
            for label, name in enumerate(LABELS):
                if 4 * (1 + i) + label < 256:
                    table[4 * (1 + i) + label] = (name, v or None, "champion" if i == 0 else "challenger")
        return table

    def records(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        """The answers as `ServingStore.lookup` gives them: {"key", "label", "version", "route"}."""
        table = self.route_table()
        return [{"key": k, "label": t[0], "version": t[1], "route": t[2]}
                for k, t in zip(keys, map(table.__getitem__, self.codes.tolist()))]
