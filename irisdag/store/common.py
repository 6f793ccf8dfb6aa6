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
from datetime import datetime, timezone

LABELS = ("setosa", "versicolor", "virginica")  # class index -> name

ROUTING_KEY = "irisdag:routing"
MISSES_KEY = "irisdag:misses"
STREAM_MAXLEN = 100_000

LUA_FUNCTIONS = ("lookup", "lookup_digests", "route", "buckets", "reshard", "misses_read", "dead_letter")
ENTRY_MARKER = "-- @@entry-points"
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
