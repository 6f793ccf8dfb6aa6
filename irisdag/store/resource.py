"""The serving store resource: the one class that talks to Redis (DESIGN §3).

Keys (all under ``irisdag:``):

- ``version:<v>``  HASH of a model version's metadata: digest, scheme,
  created_at, role, validated, complete, generation, keys, classes, and its
  layout (shards, layout, stored; next_layout, next_shards while resharding),
  extras.
- ``pred:<v>:<s>`` / ``pred:<v>:i<s>`` (layout 0), ``pred:<v>:g<g>:<s>`` /
  ``pred:<v>:g<g>:i<s>`` (after a reshard)  the version's answers, sharded
  into small hashes that Redis keeps in its compact listpack encoding (see
  FILL_MAX, `_reshard`); read only by the Lua ``lookup`` functions.
- ``routing``  HASH (champion, previous, challenger, strategy, shares,
  holdout_bp, salt, epoch, updated_at), changed only by the Lua ``route``.
- ``audit``, ``misses``, ``decisions``  capped streams; ``decision`` (latest
  decision), ``inputs`` (kept-input partitions), ``evidence:<experiment>``,
  ``judged:<experiment>:<s>`` (which window first judged each input, see
  `claim_inputs`; deleted by `release_claims` once the experiment has ended).

Redis >= 7 runs the Lua library ``irisdag`` with FCALL/FCALL_RO; Redis 6.2
(the embedded default) runs the same bodies with EVALSHA.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from irisdag.lazy import numpy as np  # imported on first use: a lookup needs none
import redis

from irisdag.core.keys import ID_PREFIX, SCHEME
from irisdag.core.routing import Routing, dump_shares
from irisdag.store import embedded
from irisdag.store.common import (  # noqa: F401 - names this module has always offered
    ENTRY_MARKER as _ENTRY_MARKER,
    LABELS,
    LOOKUP_CHUNK,
    BatchAnswers,
    codes_onto as _codes_onto,
    digest_call_args as _digest_call_args,
    LUA_FUNCTIONS as _LUA_FUNCTIONS,
    MISSES_KEY,
    ROUTING_KEY,
    STREAM_MAXLEN,
    StoreError,
    StoreUnavailable,
    eval_script,
    eval_sha as _eval_sha,
    lua_source,
    miss_fields,
    now as _now,
    redact_url,
)
from irisdag.store.resp import ReplyReader, bulk as _bulk

OPERATIONS_KEY = "irisdag:routing:operations"  # HASH operation id -> epoch it applied (idempotence)
AUDIT_KEY = "irisdag:audit"
DEAD_MISSES_KEY = "irisdag:misses:dead"          # stream: short records of poisoned misses
DEAD_COUNTS_KEY = "irisdag:misses:dead:counts"   # HASH kind -> how many were dead-lettered
# A legitimate miss entry (key, features, time) is about 150 bytes. Larger ones are never
# read (the Lua reader measures them in Redis); the server bounds what can be queued at all
# (proto-max-bulk-len and client-query-buffer-limit in deploy/redis/redis.conf).
MISS_ENTRY_MAX_BYTES = 2048
MISSES_PAGE = 1000
INPUTS_KEY = "irisdag:inputs"
DECISION_KEY = "irisdag:decision"
DECISIONS_KEY = "irisdag:decisions"
VERSION_PREFIX = "irisdag:version:"
VERSIONS_KEY = "irisdag:versions"  # SET of registered version ids (no SCAN: the pipeline users may not)
PRED_PREFIX = "irisdag:pred:"
EVIDENCE_PREFIX = "irisdag:evidence:"
EXPERIMENT_PREFIX = "irisdag:experiment:"
JUDGED_PREFIX = "irisdag:judged:"
JUDGED_SHARDS = 1024  # small hashes: Redis keeps each compact (listpack) up to a few hundred entries
CLAIM_CHUNK = 20_000
RUN_FAILURES_KEY = "irisdag:run_failures"  # HASH run id -> time its failure was audited

DECISIONS_MAXLEN = 10_000
WRITE_CHUNK_BYTES = 4 << 20  # bytes of pipelined HSETs per socket write
# Shard sizing, never read from the server's CONFIG. Redis keeps a hash in its
# compact listpack encoding up to hash-max-listpack-entries entries: 512 compiled
# into 7.x, 128 in the sample redis.conf; we assume 128 everywhere. About 36
# bytes an answer in a listpack, plus ~200 bytes a shard hash (its key name,
# dict entry, allocator rounding): measured 44.6 B an answer at a mean of 32 a
# shard, 43.3 at 40, 42.6 at 64, 41.2 at 80. A version grows: its shard count
# is planned when it is registered and when a batch's size is known
# (`reserve_keys`: RESERVE_FILL a shard), and whenever a write would take the
# mean past FILL_MAX it is resharded to at least twice the shards
# (`_reshard`), so the mean stays within 40..80 and no shard nears 128
# (P(Poisson(80) >= 128) ~ 1e-7). Shards that hold nothing cost nothing.
FILL_TARGET = 64
RESERVE_FILL = 72
FILL_MAX = 80
MIN_SHARDS = 16
MAX_SHARDS = 1 << 22
RESHARD_STEP = 256  # old shards copied per call of the Lua `reshard` (~20k answers: a few ms of Redis)
GENERATION_FIELD = "generation"
# Version fields only the store sets; `extra` may not overwrite them.
_RESERVED = frozenset({"digest", "scheme", "created_at", "role", "validated", "validated_reason",
                       "validated_at", "complete", "generation", "keys", "shards", "layout",
                       "next_layout", "next_shards", "stored", "classes"})

# Version ids become parts of key names and SCAN patterns: no ':' and no glob characters.
_VERSION_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

# ---- Lua --------------------------------------------------------------------

def library_code(client: redis.Redis) -> str | None:
    """The code of the ``irisdag`` library loaded on the server (FUNCTION LIST, read only), or None."""
    libraries = client.function_list(library="irisdag", withcode=True)
    if isinstance(libraries, dict):  # a Redis Cluster: every primary's answer; all must hold this code
        codes = {_library_code_of(libs) for libs in libraries.values()}
        return codes.pop() if len(codes) == 1 else None
    return _library_code_of(libraries)


def _library_code_of(libraries) -> str | None:
    for lib in libraries or []:
        items = lib.items() if isinstance(lib, dict) else zip(lib[::2], lib[1::2])
        fields = {_s(k): v for k, v in items}
        if _s(fields.get("library_name")) == "irisdag":
            return _s(fields.get("library_code"))
    return None


# ---- connections (per process, per URL) -------------------------------------

@dataclass
class _Conn:
    client: redis.Redis
    functions: bool | None = None  # server has FUNCTION/FCALL (Redis >= 7)
    loaded: bool = False
    keys: "Keyspace" = field(default_factory=lambda: SINGLE)  # key names: one server or a cluster
    lock: threading.Lock = field(default_factory=threading.Lock)
    # The salt in force as the last `lookup_digests` reply named it ("": no experiment, None:
    # none seen yet): the next call sends its keys' buckets under it, and Redis uses them only
    # if that is still the salt (else it hashes the keys itself).
    lookup_salt: str | None = None


_CONNS: dict[str, _Conn] = {}
_ROUTING_STORES: dict[str, "StoreClient"] = {}
_CONNS_LOCK = threading.Lock()

# ---- read replicas (docs/replicas.md) ------------------------------------------

READ_URLS_ENV = "IRISDAG_REDIS_READ_URLS"
REPLICA_RETRY_AFTER = 5.0  # seconds a replica that could not answer is skipped
REPLICA_SOCKET_TIMEOUT = 10.0  # one lookup call's reply takes milliseconds; a hung replica is given up on


def parse_read_urls(text: str, primary_url: str) -> tuple[str, ...]:
    """The replica URLs of IRISDAG_REDIS_READ_URLS (comma-separated), checked.

    Refused (ValueError, one line naming the value) without a REDIS_URL: the
    embedded server (Redis 6.2, lookups by EVALSHA) has no replicas.
    """
    urls = tuple(u.strip() for u in (text or "").split(",") if u.strip())
    if not urls:
        return ()
    if not (primary_url or "").strip():
        raise ValueError(f"{READ_URLS_ENV} is set ({', '.join(redact_url(u) for u in urls)}) but REDIS_URL is not: "
                         "the embedded server has no replicas; set REDIS_URL to the primary or unset "
                         f"{READ_URLS_ENV}")
    for url in urls:
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"{READ_URLS_ENV}: {redact_url(url)!r} is not a redis:// or rediss:// URL")
    return urls


class _ReadSet:
    """A process's replicas for lookups: round robin from a random start, skipping for
    REPLICA_RETRY_AFTER seconds a replica that could not answer."""

    def __init__(self, urls: tuple[str, ...], clock=time.monotonic):
        self.urls = urls
        self.next = random.randrange(len(urls))
        self.down_until: dict[str, float] = {}
        self.lock = threading.Lock()
        self.clock = clock

    def order(self) -> list[str]:
        """The replicas to try for one lookup, in order (the primary comes after them)."""
        with self.lock:
            start, self.next = self.next, (self.next + 1) % len(self.urls)
        now = self.clock()
        rotated = self.urls[start:] + self.urls[:start]
        return [u for u in rotated if self.down_until.get(u, 0.0) <= now]

    def mark_down(self, url: str) -> None:
        self.down_until[url] = self.clock() + REPLICA_RETRY_AFTER


_READ_SETS: dict[tuple[str, ...], _ReadSet] = {}


def _replica_unavailable(err: BaseException) -> bool:
    """Whether a replica's failure means "ask the next one, then the primary"."""
    if isinstance(err, redis.AuthenticationError):
        return False  # misconfigured credentials: said, not hidden behind the primary
    # Down, unreachable, hung, loading its data (BusyLoadingError), or MASTERDOWN: its link to
    # the primary is down and it runs with replica-serve-stale-data no (docs/replicas.md).
    if isinstance(err, (redis.ConnectionError, redis.TimeoutError, OSError, redis.exceptions.MasterDownError)):
        return True
    text = str(err).lower()
    # The library has not reached it yet (FUNCTION LOAD replicates).
    return isinstance(err, redis.ResponseError) and (
        text.startswith(("masterdown", "loading")) or "function not found" in text)


def _is_cluster(client: redis.Redis) -> bool:
    """Whether ``client``'s server is a Redis Cluster node: ``INFO cluster`` says
    cluster_enabled:1 (a user refused INFO: CLUSTER SLOTS answers, which redis-py's
    cluster client needs anyway). Connection errors propagate (`ping` names the URL)."""
    try:
        return str(client.info("cluster").get("cluster_enabled", 0)) == "1"
    except redis.exceptions.NoPermissionError:
        try:
            client.execute_command("CLUSTER SLOTS")
            return True
        except redis.ResponseError:
            return False  # a single server ("cluster support disabled"), or not allowed either


def _cluster_client(url: str):
    """redis-py's own Redis Cluster client, seeded with the node ``url`` names."""
    from redis.cluster import RedisCluster

    return RedisCluster.from_url(url, socket_timeout=120, socket_connect_timeout=5)


def close_clients() -> None:
    """Forget the cached clients (tests; after the server was restarted or stopped)."""
    with _CONNS_LOCK:
        for conn in _CONNS.values():
            try:
                conn.client.close()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass
        _CONNS.clear()


def _s(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ("" if value is None else str(value))


def _decode_hash(raw: dict) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in raw.items()}


def _field_value(value) -> str:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, separators=(",", ":"), default=str)
    if isinstance(value, bool):
        return "1" if value else "0"
    return "" if value is None else str(value)


def pred_key(version: str, shard: int, *, ids: bool = False, layout: int = 0) -> str:
    """The hash holding a shard of a version's answers (feature keys, or id keys) in one of its layouts."""
    return f"{pred_prefix(version, layout)}{'i' if ids else ''}{shard}"


def pred_prefix(version: str, layout: int = 0) -> str:
    """Shard hash names of a layout: layout 0 ``pred:<v>:<s>``, a resharded one ``pred:<v>:g<layout>:<s>``."""
    return f"{PRED_PREFIX}{version}:" + (f"g{int(layout)}:" if int(layout) else "")


# ---- Redis Cluster key layout (docs/cluster.md) ------------------------------------
# On one server every key keeps the names above. On a Redis Cluster every key is
# the same name with a hash tag after `irisdag:`: control keys (routing, version
# metadata, audit, misses, decisions, evidence, ...) `irisdag:{irisdag}:...`, all
# in one slot, so the Lua `route` stays one atomic call; a version's answer shard s
# `irisdag:{<tag of s mod CLUSTER_TAGS>}:pred:...`, beside that tag's stamped copy
# of the routing (`irisdag:{<tag>}:routing`) and of each version's layout
# (`irisdag:{<tag>}:version:<v>`), so a lookup reads one slot on one node.
CONTROL_TAG = "irisdag"
CLUSTER_TAGS = 1024  # shard counts are multiples of it on a cluster
_SLOTS = 16384


@functools.cache
def cluster_tags() -> tuple[str, ...]:
    """The hash tag of each of the CLUSTER_TAGS shard groups: tag t is the smallest
    non-negative integer, in decimal, whose slot lies in [16 t, 16 t + 16). The tags
    so cover the slot space evenly, and each master holds answers in proportion to
    the slots it serves (341 or 342 tags of 1024 each, for 3 equal masters)."""
    from redis.crc import key_slot

    width = _SLOTS // CLUSTER_TAGS
    tags: list[str | None] = [None] * CLUSTER_TAGS
    left, i = CLUSTER_TAGS, 0
    while left:
        t = key_slot(str(i).encode()) // width
        if tags[t] is None:
            tags[t] = str(i)
            left -= 1
        i += 1
    return tuple(tags)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Keyspace:
    """The key names of one store: one server (``tags`` = 0: the names above, unchanged)
    or a Redis Cluster (``tags`` = CLUSTER_TAGS: hash-tagged, docs/cluster.md)."""

    tags: int = 0

    @property
    def cluster(self) -> bool:
        return self.tags > 0

    @property
    def base(self) -> str:
        return f"irisdag:{{{CONTROL_TAG}}}:" if self.tags else "irisdag:"

    def __getattr__(self, name: str) -> str:
        # routing, operations, audit, ...: the single-server constant's name under this base.
        single = _CONTROL_NAMES.get(name)
        if single is None:
            raise AttributeError(name)
        return self.base + single[len("irisdag:"):]

    def tag_base(self, shard: int) -> str:
        """The prefix of the keys of shard ``shard``'s group (its hash tag on a cluster)."""
        return f"irisdag:{{{cluster_tags()[shard % self.tags]}}}:" if self.tags else "irisdag:"

    def pred_prefix(self, version: str, layout: int = 0, shard: int = 0) -> str:
        return f"{self.tag_base(shard)}pred:{version}:" + (f"g{int(layout)}:" if int(layout) else "")

    def pred_key(self, version: str, shard: int, *, ids: bool = False, layout: int = 0) -> str:
        return f"{self.pred_prefix(version, layout, shard)}{'i' if ids else ''}{shard}"

    def routing_copy(self, tag: int) -> str:
        """A shard group's stamped copy of the routing (cluster)."""
        return self.tag_base(tag) + "routing"

    def layout_copy(self, tag: int, version: str) -> str:
        """A shard group's stamped copy of a version's layout (cluster)."""
        return f"{self.tag_base(tag)}version:{version}"

    def judged(self, experiment: str, shard: int) -> str:
        return f"{self.tag_base(shard)}judged:{experiment}:{shard}"

    def round_shards(self, shards: int) -> int:
        """A shard count this layout can use: on a cluster a multiple of the tags."""
        if not self.tags:
            return int(shards)
        return max(1, -(-int(shards) // self.tags)) * self.tags


SINGLE = Keyspace()
_CONTROL_NAMES = {
    "routing": ROUTING_KEY, "operations": OPERATIONS_KEY, "audit": AUDIT_KEY, "misses": MISSES_KEY,
    "dead_misses": DEAD_MISSES_KEY, "dead_counts": DEAD_COUNTS_KEY, "inputs": INPUTS_KEY,
    "decision": DECISION_KEY, "decisions": DECISIONS_KEY, "version_prefix": VERSION_PREFIX,
    "versions": VERSIONS_KEY, "evidence_prefix": EVIDENCE_PREFIX, "experiment_prefix": EXPERIMENT_PREFIX,
    "run_failures": RUN_FAILURES_KEY,
}


def _tag_of_key(key: str) -> int:
    """A key's shard tag on a cluster: its shard mod CLUSTER_TAGS, which is its leading 32
    bits (feature keys) or SHA-1's (id keys) mod CLUSTER_TAGS, since shard counts are
    multiples of it. A key that is neither (never stored) goes to tag 0 and misses."""
    if key.startswith(ID_PREFIX):
        return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) % CLUSTER_TAGS
    try:
        return int(key[:8], 16) % CLUSTER_TAGS if len(key) == 64 else 0
    except ValueError:
        return 0


def shard_of(key: str, shards: int) -> int:
    """The shard of one key: leading 8 hex digits (feature keys) or of SHA-1(key) (id keys)."""
    if key.startswith(ID_PREFIX):
        return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) % shards
    return int(key[:8], 16) % shards


def _is_hex_key(key: str) -> bool:
    return len(key) == 64 and all(c in "0123456789abcdef" for c in key)


def _digest_array(keys) -> np.ndarray | None:
    """Keys given as raw SHA-256 digests (a numpy ``S32`` or ``V32`` array), contiguous; else None."""
    if isinstance(keys, np.ndarray) and keys.dtype.kind in "SV" and keys.dtype.itemsize == 32:
        return np.ascontiguousarray(keys.reshape(-1))
    return None


def _labels_array(labels, n: int, version: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.shape != (n,):
        raise ValueError(f"write_predictions({version}): {n} keys but labels of shape {arr.shape}")
    if n and arr.dtype.kind not in "iub":
        as_int = arr.astype(np.int64)
        if not np.array_equal(as_int, arr):
            raise ValueError(f"write_predictions({version}): labels must be class indices 0, 1, 2")
        arr = as_int
    arr = arr.astype(np.int64, copy=False)
    if n and (arr.min() < 0 or arr.max() >= len(LABELS)):
        bad = arr[(arr < 0) | (arr >= len(LABELS))][0]
        raise ValueError(f"write_predictions({version}): label {bad} is not a class index 0, 1, 2")
    return arr


# One HSET field/value pair as RESP bulk strings: $32 <32 key bytes> $1 <digit>.
# A structured dtype lets numpy lay out all pairs of a write at once.
@functools.cache
def _pair_layout():
    """The packed HSET field/value layout and its constant parts (numpy, built on first write)."""
    return (np.dtype([("head", "V5"), ("key", "V32"), ("mid", "V6"), ("label", "u1"), ("tail", "V2")]),
            np.frombuffer(b"$32\r\n", "V5")[0], np.frombuffer(b"\r\n$1\r\n", "V6")[0],
            np.frombuffer(b"\r\n", "V2")[0])


def _hset_heads(names, field_counts: np.ndarray) -> list[bytes]:
    """RESP heads ``*<2 + 2c>  $4 HSET  $<len> <name>`` of HSETs of c field/value pairs each,
    built by numpy for all shards at once (names: ``S`` array or list of bytes)."""
    names = np.asarray(names, dtype="S")
    add = np.strings.add
    head = add(add(b"*", (2 + 2 * np.asarray(field_counts, dtype=np.int64)).astype("S")), b"\r\n$4\r\nHSET\r\n$")
    head = add(add(head, np.strings.str_len(names).astype("S")), b"\r\n")
    return add(add(head, names), b"\r\n").tolist()


# ---- raw pipelines -------------------------------------------------------------
# The write and lookup paths pack their commands themselves and read the replies
# straight off the connection's socket: redis-py's parser costs several
# microseconds a reply, more than Redis takes to answer one.

def _raw_socket(conn):
    """The connected socket of a redis-py connection with nothing buffered, or None (then use redis-py)."""
    sock = getattr(conn, "_sock", None)
    if sock is None:
        return None
    parser = getattr(conn, "_parser", None)
    buffer = getattr(parser, "_buffer", None)
    try:
        if buffer is not None and hasattr(buffer, "unread_bytes") and buffer.unread_bytes():
            return None
    except Exception:  # noqa: BLE001 - parser internals differ (hiredis): let redis-py read
        return None
    return sock


class _ReplyReader(ReplyReader):
    """`resp.ReplyReader` raising and returning redis-py's exceptions, as redis-py's own parser would."""

    __slots__ = ()
    timeout_error = redis.TimeoutError
    connection_error = redis.ConnectionError
    protocol_error = redis.InvalidResponse

    def error_reply(self, message: str) -> Exception:
        return _response_error(message)

    def read_integer_total(self, count: int):
        """The sum of the next ``count`` integer replies (HSET's fields added), or the first
        error reply (returned, as `read` returns it).

        Splits every complete reply line that has arrived at once, rather than a
        `read` call per reply: a write of a million answers gets tens of
        thousands of replies. A line that is not an integer goes through `read`.
        """
        total = 0
        while count > 0:
            available = self.buf.count(b"\r\n", self.pos)
            if available == 0:
                self._fill()
                continue
            take = min(count, available)
            lines = self.buf[self.pos:].split(b"\r\n", take)
            rest = lines.pop()
            if any(line[:1] != b":" for line in lines):
                reply = self.read()
                if isinstance(reply, Exception):
                    return reply
                total += int(reply)
                count -= 1
                continue
            total += sum(map(int, [line[1:] for line in lines]))
            self.pos = len(self.buf) - len(rest)
            count -= take
        return total


def _response_error(message: str) -> Exception:
    """An error reply as redis-py would raise it (NOSCRIPT -> NoScriptError, NOPERM -> ...)."""
    try:
        from redis._parsers.base import BaseParser

        return BaseParser.parse_error(message)
    except Exception:  # noqa: BLE001 - redis-py internals moved: a plain ResponseError
        return redis.ResponseError(message)


def _command_key(head: bytes) -> bytes:
    """The second argument (the key) of a RESP-packed command."""
    pos = head.index(b"\r\n") + 2            # past *N
    pos = head.index(b"\r\n", pos) + 2       # past $len of the command name
    pos = head.index(b"\r\n", pos) + 2       # past the name
    end = head.index(b"\r\n", pos)
    n = int(head[pos + 1:end])
    return head[end + 2:end + 2 + n]


def _pack_call(head: Sequence, keys: list[str]) -> bytes:
    """One command: ``head`` arguments, then ``keys`` (str), as RESP."""
    out = [b"*%d\r\n" % (len(head) + len(keys))]
    out += [_bulk(a) for a in head]
    if keys and all(isinstance(k, str) and len(k) == 64 for k in keys) and (joined := "".join(keys)).isascii() and len(joined) == 64 * len(keys):
        out.append(b"$64\r\n" + "\r\n$64\r\n".join(keys).encode("ascii") + b"\r\n")
    else:
        out += [_bulk(k) for k in keys]
    return b"".join(out)


# Replies after which a cluster's slot map is reloaded and a batch sent again.
_CLUSTER_MOVES = (redis.exceptions.MovedError, redis.exceptions.AskError, redis.exceptions.ClusterDownError,
                  redis.exceptions.TryAgainError)

ROUTE_CODES = {0: "miss", 1: "holdout"}
ROUTE_WAIT_MS = 1000  # cluster: how long a routing change waits for a replica of the control slot
REPLICA_WAIT_MS = 1000  # cluster: how long a batch of answers or copies waits for a replica of each master  # codes >= 4: 4 * (1 + arm) + class index




@dataclass(frozen=True)
class _Layout:
    """Where a version's answers are: the layout lookups read, and the one a reshard fills."""

    FIELDS = ("validated", "shards", "layout", "next_layout", "next_shards", "stored")

    validated: str
    shards: int
    layout: int
    next_layout: int | None
    next_shards: int
    stored: int

    @classmethod
    def parse(cls, version: str, values) -> "_Layout | None":
        validated, shards, layout, next_layout, next_shards, stored = (_s(v) for v in values)
        if not validated and not shards:
            return None
        return cls(validated=validated, shards=int(shards or 0), layout=int(layout or 0),
                   next_layout=int(next_layout) if next_layout else None, next_shards=int(next_shards or 0),
                   stored=int(stored or 0))

    def all(self) -> list[tuple[int, int]]:
        """(layout, shards) of every layout that must receive answers: the served one, then the next."""
        out = [(self.layout, self.shards)] if self.shards else []
        if self.next_layout is not None:
            out.append((self.next_layout, self.next_shards))
        return out


class StoreClient:
    """The Redis serving store: predictions, routing, audit, misses, decisions.

    ``redis_url`` empty means the embedded server (`irisdag.store.embedded`);
    otherwise a ``redis://`` or ``rediss://`` URL with user and password.
    This plain class is what the command line uses (no Dagster import, so a
    lookup starts fast); `ServingStore` is the same class as a Dagster resource.
    """

    def __init__(self, redis_url: str = "", routing_url: str = "", read_urls: str = ""):
        self.redis_url = redis_url
        # The Redis routing user's URL (IRISDAG_ROUTING_REDIS_URL), used only to change routing
        # (the Lua `route`) and to audit refused routing attempts; empty: redis_url.
        self.routing_url = routing_url
        # Replicas that answer `lookup` and `lookup_digests` (IRISDAG_REDIS_READ_URLS,
        # comma-separated; docs/replicas.md); everything else, misses included, goes to redis_url.
        self.read_urls = parse_read_urls(read_urls, redis_url)

    @classmethod
    def from_env(cls):
        """The store named by REDIS_URL (the embedded one when unset)."""
        import os

        return cls(redis_url=os.environ.get("REDIS_URL", ""),
                   routing_url=os.environ.get("IRISDAG_ROUTING_REDIS_URL", ""),
                   read_urls=os.environ.get(READ_URLS_ENV, ""))

    def routing_store(self) -> "StoreClient":
        """The store as the routing user (DESIGN §3): itself when no routing URL is set."""
        url = (self.routing_url or "").strip()
        if not url or url == (self.redis_url or "").strip():
            return self
        store = _ROUTING_STORES.get(url)
        if store is None:
            store = _ROUTING_STORES[url] = StoreClient(redis_url=url)
        return store

    # ---- connection -------------------------------------------------------

    def _conn(self) -> _Conn:
        url = self.redis_url.strip()
        cache_key = url or f"embedded:{embedded.server_dir()}"
        conn = _CONNS.get(cache_key)
        if conn is not None:
            return conn
        with _CONNS_LOCK:
            conn = _CONNS.get(cache_key)
            if conn is None:
                if url:
                    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
                    if scheme not in ("redis", "rediss", "unix"):
                        raise ValueError(f"redis_url must start with redis:// or rediss://, got {redact_url(url)!r}")
                    client = redis.Redis.from_url(url, socket_timeout=120, socket_connect_timeout=5)
                    if _is_cluster(client):
                        client.close()
                        conn = _CONNS[cache_key] = _Conn(client=_cluster_client(url), functions=True,
                                                         keys=Keyspace(tags=CLUSTER_TAGS))
                        return conn
                else:
                    try:
                        client = embedded.client()
                    except embedded.EmbeddedServerError as err:
                        raise StoreUnavailable(str(err)) from err
                conn = _CONNS[cache_key] = _Conn(client=client)
        return conn

    @property
    def label(self) -> str:
        """Where the store is, for messages (never the password)."""
        return redact_url(self.redis_url) if self.redis_url else f"the embedded server in {embedded.server_dir()}"

    def client(self) -> redis.Redis:
        """The process's redis-py client for this store (bytes responses): a
        ``redis.cluster.RedisCluster`` when the URL names a node of a Redis Cluster."""
        return self._conn().client

    def _keys(self) -> Keyspace:
        """This store's key names (today's on one server; hash-tagged on a cluster)."""
        return self._conn().keys

    @property
    def is_cluster(self) -> bool:
        """Whether the store is a Redis Cluster (detected from the server on first connect)."""
        return self._conn().keys.cluster

    def ping(self) -> None:
        """Raise StoreUnavailable with a clear message when Redis cannot be reached."""
        try:
            conn = self._conn()
            conn.client.ping()
        except StoreUnavailable:
            raise
        except redis.AuthenticationError as err:
            raise StoreUnavailable(f"Redis at {self.label} refused the credentials: {err}") from err
        except (redis.ConnectionError, redis.TimeoutError, OSError) as err:
            raise StoreUnavailable(f"cannot reach Redis at {self.label}: {err}") from err
        except redis.ResponseError as err:
            raise StoreUnavailable(f"Redis at {self.label} refused PING: {err}") from err

    def _server_has_functions(self, conn: _Conn) -> bool:
        if conn.functions is None:
            try:
                version = _s(conn.client.info("server").get("redis_version", "0"))
                conn.functions = int(version.split(".")[0]) >= 7
            except redis.exceptions.NoPermissionError:
                # Only Redis >= 7 has the key selectors a consumer user is given.
                conn.functions = True
        return conn.functions

    # ---- Lua functions -----------------------------------------------------

    def ensure_functions(self, force: bool = False) -> None:
        """Make sure the Lua library (Redis >= 7) or its scripts (6.2) are there; once per process.

        Reads never write (DESIGN §3): the library is loaded only when it is
        missing or differs from this code's, so a full Redis (noeviction refuses
        FUNCTION LOAD) or a user without FUNCTION LOAD still serves lookups with
        what was loaded at deploy time. ``force`` (after a call found nothing
        loaded) checks again.
        """
        conn = self._conn()
        if conn.loaded and not force:
            return
        with conn.lock:
            if conn.loaded and not force:
                return
            if self._server_has_functions(conn):
                self._ensure_library(conn)
            else:
                self._ensure_scripts(conn)
            conn.loaded = True

    def _ensure_library(self, conn: _Conn) -> None:
        try:
            loaded = library_code(conn.client)
        except redis.exceptions.NoPermissionError:
            return  # a consumer calls what the deploy loaded; a missing library shows on the call
        if loaded == lua_source():
            return
        try:
            conn.client.function_load(lua_source(), replace=True)
        except redis.ResponseError as err:
            if loaded is not None:
                return  # another version of the library serves: the deploy-time load is the path
            raise StoreError(f"the irisdag function library is not loaded on {self.label} and loading it "
                             f"was refused ({err}); load it as the admin user: "
                             "python -m irisdag.defs.production redis-init") from err

    def _ensure_scripts(self, conn: _Conn) -> None:
        shas = [_eval_sha(name) for name in _LUA_FUNCTIONS]
        try:
            present = conn.client.script_exists(*shas)
        except redis.exceptions.NoPermissionError:
            return
        for name, sha, there in zip(_LUA_FUNCTIONS, shas, present):
            if there:
                continue
            try:
                got = _s(conn.client.script_load(eval_script(name)))
            except redis.exceptions.NoPermissionError:
                return
            if got != sha:
                raise StoreError(f"SCRIPT LOAD of {name} returned sha {got}, expected {sha}")

    def _reload_after(self, errors: list, conn: _Conn) -> bool:
        """Whether a failed Lua call is worth one retry after reloading the library."""
        if any(self._is_not_loaded(e) for e in errors):
            self.ensure_functions(force=True)  # the server lost them (restart, FUNCTION FLUSH)
            return True
        if conn.functions and any("unknown command" in str(e).lower() for e in errors):
            conn.functions = False  # guessed >= 7 without INFO; it is not
            self.ensure_functions(force=True)
            return True
        return False

    @staticmethod
    def _is_not_loaded(err: Exception) -> bool:
        text = str(err).lower()
        return isinstance(err, redis.exceptions.NoScriptError) or "function not found" in text

    def _queue_call(self, pipe, conn: _Conn, name: str, keys: Sequence[str], args: Sequence, readonly: bool):
        if conn.functions:
            pipe.execute_command("FCALL_RO" if readonly else "FCALL", name, len(keys), *keys, *args)
        else:
            pipe.execute_command("EVALSHA", _eval_sha(name), len(keys), *keys, *args)

    def _call_many(self, name: str, keys: Sequence[str], arg_lists: list[Sequence], *, readonly: bool) -> list:
        """Run a library function once per argument list, all in one round trip."""
        conn = self._conn()
        self.ensure_functions()
        for attempt in range(2):
            pipe = conn.client.pipeline(transaction=False)
            for args in arg_lists:
                self._queue_call(pipe, conn, name, keys, args, readonly)
            results = pipe.execute(raise_on_error=False)
            errors = [r for r in results if isinstance(r, Exception)]
            if not errors:
                return results
            if attempt == 0 and self._reload_after(errors, conn):
                continue
            raise errors[0]
        raise AssertionError("unreachable")

    def _call(self, name: str, keys: Sequence[str], args: Sequence, *, readonly: bool):
        return self._call_many(name, keys, [args], readonly=readonly)[0]

    def lua_buckets(self, pairs: Iterable[tuple[str, str]]) -> list[int]:
        """Routing buckets computed by the Lua SHA-1 (for checks against the Python rule)."""
        flat: list[str] = []
        for salt, key in pairs:
            flat += [salt, key]
        if not flat:
            return []
        step = 2 * 1_000  # every pair is a SHA-1 in Lua: keep each call short
        chunks = [flat[i:i + step] for i in range(0, len(flat), step)]
        out: list[int] = []
        for part in self._call_many("buckets", [], chunks, readonly=True):
            out += [int(b) for b in part]
        return out

    # ---- versions ------------------------------------------------------------

    def _plan_shards(self, expected_keys: int) -> int:
        # The version will have to cover what the champion covers, and more.
        planned = max(int(expected_keys or 0), 0)
        champion = _s(self.client().hget(self._keys().routing, "champion"))
        if champion:
            planned = max(planned, int(_s(self.client().hget(self._keys().version_prefix + champion, "keys")) or 0))
        return self._keys().round_shards(min(MAX_SHARDS, max(MIN_SHARDS, math.ceil(planned / FILL_TARGET))))

    def register_version(self, version: str, digest: str, *, role: str, extra: dict | None = None,
                         expected_keys: int = 0) -> dict[str, str]:
        """Record a model version; re-registering never resets its verdict, progress or layout.

        ``expected_keys`` sizes the prediction layout (the current champion's
        key count is a floor, since a challenger must cover what the champion
        serves); it grows later as answers arrive (`reserve_keys`, `_reshard`).
        ``classes`` (the class names, comma-separated, in index order) lets
        the Lua ``lookup`` answer names to consumers in any language.
        """
        if not _VERSION_ID.fullmatch(version or ""):
            raise ValueError(f"bad version id {version!r}: letters, digits, '.', '_' and '-' only")
        extra = dict(extra or {})
        clash = _RESERVED & set(extra)
        if clash:
            raise ValueError(f"register_version({version}): extra may not set {sorted(clash)}")
        client = self.client()
        key = self._keys().version_prefix + version
        known = _s(client.hget(key, "digest"))
        if known and known != digest:
            raise ValueError(f"version {version} is already registered with digest {known}, not {digest}")
        shards = self._plan_shards(expected_keys)
        fields = {"digest": digest, "scheme": SCHEME, "role": role, "classes": ",".join(LABELS),
                  **{str(k): _field_value(v) for k, v in extra.items()}}
        pipe = client.pipeline(transaction=True)
        pipe.hset(key, mapping=fields)
        pipe.sadd(self._keys().versions, version)
        for name, value in (("created_at", _now()), ("validated", "pending"), ("complete", "0"),
                            ("generation", "0"), ("keys", "0"), ("shards", str(shards)), ("layout", "0"),
                            ("stored", "0")):
            pipe.hsetnx(key, name, value)
        pipe.hgetall(key)
        info = _decode_hash(pipe.execute()[-1])
        if self._keys().cluster:  # every shard tag's copy of the layout, for lookups there
            layout = _Layout.parse(version, [info.get(f, "") for f in _Layout.FIELDS])
            self._cluster_calls(self._layout_mirrors(version, dataclasses.replace(layout, next_layout=None),
                                                     info.get("classes", "")))
        return info

    def set_validated(self, version: str, ok: bool, reason: str) -> None:
        """Record the checks' verdict: validated = "1" (passed) or "0" (failed), with the reason."""
        key = self._keys().version_prefix + version
        client = self.client()
        if not client.exists(key):
            raise ValueError(f"version {version} is not registered")
        client.hset(key, mapping={"validated": "1" if ok else "0", "validated_reason": reason or "",
                                  "validated_at": _now()})

    def set_version_fields(self, version: str, **fields: str) -> None:
        """Descriptive fields the pipeline keeps on a version (``role``, ``lifecycle``).

        The store's own fields (digest, verdict, completeness, layout) are never
        set this way: they change only through their dedicated methods.
        """
        bad = (_RESERVED - {"role"}) & set(fields)
        if bad:
            raise ValueError(f"set_version_fields({version}): {sorted(bad)} belong to the store")
        key = self._keys().version_prefix + version
        client = self.client()
        if not client.exists(key):
            raise ValueError(f"version {version} is not registered")
        client.hset(key, mapping={k: _field_value(v) for k, v in fields.items()})

    def served_champion(self) -> tuple[str, str]:
        """(champion version, its model digest) with HGETs only, as the consumer's ACL allows."""
        client = self.client()
        champion = _s(client.hget(self._keys().routing, "champion"))
        digest = _s(client.hget(self._keys().version_prefix + champion, "digest")) if champion else ""
        return champion, digest

    def version_info(self, version: str) -> dict[str, str] | None:
        """The version's metadata hash (str values), or None when unknown."""
        raw = self.client().hgetall(self._keys().version_prefix + version)
        return _decode_hash(raw) if raw else None

    def versions(self) -> list[dict[str, str]]:
        """Every registered version's metadata, each with its ``version``, oldest first."""
        client = self.client()
        listed = {_s(v) for v in client.smembers(self._keys().versions)}
        try:  # versions registered before the index existed, where SCAN is allowed (admin, embedded)
            listed |= {_s(k)[len(self._keys().version_prefix):] for k in client.scan_iter(match=self._keys().version_prefix + "*", count=1000)}
        except redis.exceptions.NoPermissionError:
            pass  # the ACL users may not SCAN (DESIGN §3): the index is the list
        keys = sorted(self._keys().version_prefix + v for v in listed)
        if not keys:
            return []
        pipe = client.pipeline(transaction=False)
        for k in keys:
            pipe.hgetall(k)
        out = []
        for k, raw in zip(keys, pipe.execute()):
            if raw:
                out.append({"version": k[len(self._keys().version_prefix):], **_decode_hash(raw)})
        out.sort(key=lambda d: (d.get("created_at", ""), d["version"]))
        return out

    def mark_generation(self, version: str, generation: int, keys_added: int) -> None:
        """After a batch's last chunk: the version covers the kept inputs through `generation`.

        Sets ``complete`` = "1", adds ``keys_added`` to ``keys``; ``generation``
        never moves back (a re-run of an older batch leaves it as it is).
        """
        key = self._keys().version_prefix + version
        with self.client().pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    digest, current = pipe.hmget(key, "digest", "generation")
                    if not digest:
                        raise ValueError(f"version {version} is not registered")
                    pipe.multi()
                    pipe.hset(key, mapping={"generation": str(max(int(_s(current) or 0), int(generation))),
                                            "complete": "1"})
                    pipe.hincrby(key, "keys", int(keys_added))
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue

    def recount_keys(self, version: str) -> int:
        """Count the answers Redis holds for a version and store that as its ``keys``; returns it.

        For recovery: a batch retried after its write died mid-way (Redis or
        the run killed) adds only the keys that were new on the retry, so
        ``keys`` misses what the dead attempt wrote. One HLEN per shard hash,
        pipelined (about 1 ms per 2,000 shards). Also resets ``stored``, the
        running count that decides when the version is resharded.
        """
        client = self.client()
        layout = self._layout(version)
        total = self._count_answers(layout.layout, layout.shards, version)
        client.hset(self._keys().version_prefix + version, mapping={"keys": str(total), "stored": str(total)})
        return total

    def _count_answers(self, layout: int, shards: int, version: str) -> int:
        # Packed here and sent as raw pipelined writes: redis-py's pipeline spends ~100 us a
        # command in Python, which made a recount a second of every demo window.
        empty = memoryview(b"")
        commands = []
        for ids in (False, True):
            for s in range(shards):
                name = self._keys().pred_key(version, s, ids=ids, layout=layout).encode()
                commands.append((b"*2\r\n$4\r\nHLEN\r\n$%d\r\n%s\r\n" % (len(name), name), empty))
        total = self._send_pipelined(version, commands)
        return total

    def delete_version(self, version: str) -> int:
        """UNLINK a version's metadata and answers; refused while routing names it.

        Returns the number of keys unlinked.
        """
        if not _VERSION_ID.fullmatch(version or ""):
            raise ValueError(f"bad version id {version!r}")
        vkey = self._keys().version_prefix + version
        client = self.client()
        with client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(self._keys().routing, vkey)
                    routing = Routing.from_hash(_decode_hash(pipe.hgetall(self._keys().routing)))
                    if version in routing.versions():
                        raise ValueError(f"version {version} is still named by routing "
                                         f"(epoch {routing.epoch}); it cannot be deleted")
                    if self._keys().cluster:
                        # Every copy must have moved past the routing that named it: copy the
                        # control routing out (a newer epoch than this one aborts the EXEC).
                        self.sync_routing()
                        named = [c.epoch for c in self.routing_copies() if version in c.versions()]
                        if named:
                            raise ValueError(f"version {version} is still named by {len(named)} routing "
                                             f"copies (epoch {max(named)}); it cannot be deleted")
                    found = _Layout.parse(version, pipe.hmget(vkey, *_Layout.FIELDS))
                    layouts = found.all() if found else []
                    pipe.multi()
                    pipe.unlink(vkey)
                    pipe.srem(self._keys().versions, version)
                    removed = pipe.execute()[0]
                    break
                except redis.WatchError:
                    continue
        # The metadata is gone, so no route can name the version any more.
        keys = self._keys()
        if layouts:
            names = [keys.pred_key(version, s, ids=ids, layout=g) for g, n in layouts for s in range(n)
                     for ids in (False, True)]
        else:  # registered by someone else, or half deleted: find its hashes (where SCAN is allowed)
            pattern = f"irisdag:{{*}}:pred:{version}:*" if keys.cluster else f"{PRED_PREFIX}{version}:*"
            try:
                names = [_s(k) for k in client.scan_iter(match=pattern, count=1000)]
            except redis.exceptions.NoPermissionError:
                names = []
        if keys.cluster:
            names += [keys.layout_copy(t, version) for t in range(keys.tags)]
        else:
            names.append(f"{PRED_PREFIX}{version}")  # the single-hash layout of DESIGN §3, if any
        removed += self._unlink(names)
        self.release_claims()  # an experiment whose version goes has ended: its claims go too
        return int(removed)

    # ---- predictions -----------------------------------------------------------

    def write_predictions(self, version: str, keys: Sequence[str], labels) -> int:
        """Store a version's answers: key -> class index (0, 1, 2).

        Pipelined, one multi-field HSET per shard hash; never sets ``complete``
        (that is `mark_generation`, after a batch's last chunk). Refused
        (ValueError) unless the version is registered and validated.
        Returns how many keys were new to the version (a rewrite counts 0),
        which is what `mark_generation` adds to ``keys``.

        ``keys`` may also be a numpy ``S32`` array of raw digests (what a
        prepared batch holds): the fast path, with no hex at all.

        When these answers could take the version's mean past FILL_MAX a
        shard, the version is resharded first (`_reshard`). While a reshard
        runs (here or in another process) answers go to both layouts, and a
        write that raced a switch is repeated in the new layout, so the layout
        lookups read is always complete.
        """
        digests = _digest_array(keys)
        if digests is None:
            keys = keys if isinstance(keys, list) else list(keys)
        labels_arr = _labels_array(labels, len(keys), version)
        layout = self._layout(version, writing=True)
        if len(keys) == 0:
            return 0
        hex_raw, hex_labels, id_keys, id_labels = self._split_keys(version, keys, digests, labels_arr)
        # Grow first only for a write that would surely overfill the layout; otherwise write,
        # then grow on the count of answers that were really new (a rewrite adds none).
        layout = self._make_room(version, layout, len(labels_arr), limit=2 * FILL_MAX)
        written: list[tuple[int, int]] = []
        added = 0
        for g, n in layout.all():
            got = self._write_layout(version, g, n, hex_raw, hex_labels, id_keys, id_labels)
            if not written:
                added = got
            written.append((g, n))
        if added:
            self.client().hincrby(self._keys().version_prefix + version, "stored", added)
        # A reshard may have begun or switched while these answers were sent:
        # they must be in every layout the version may serve from.
        while True:
            current = self._layout(version)
            now = current.all()
            missing = [t for t in now if t not in written]
            if not missing:
                break
            for g, n in missing:
                self._write_layout(version, g, n, hex_raw, hex_labels, id_keys, id_labels)
                written.append((g, n))
        retired = [(g, n) for g, n in written if (g, n) not in now]
        for g, n in retired:  # the reshard already unlinked it; drop what this write recreated
            self._unlink_written(version, g, n, hex_raw, id_keys)
        self._make_room(version, current, 0, limit=FILL_MAX)
        return added

    def _split_keys(self, version: str, keys, digests, labels: np.ndarray):
        """(raw 32-byte feature keys joined, their labels, id keys, their labels)."""
        none = np.zeros(0, dtype=np.int64)
        if digests is not None:
            return digests.tobytes(), labels, [], none
        hex_raw = self._hex_keys_raw(keys)
        if hex_raw is not None:
            return hex_raw, labels, [], none
        hex_idx, id_idx = [], []
        for i, key in enumerate(keys):
            if not isinstance(key, str):
                raise ValueError(f"write_predictions({version}): key {key!r} is not a string")
            if _is_hex_key(key):
                hex_idx.append(i)
            elif key.startswith(ID_PREFIX) and len(key) > len(ID_PREFIX):
                id_idx.append(i)
            else:
                raise ValueError(f"write_predictions({version}): {key!r} is neither a 64-hex input key "
                                 "(lowercase) nor an id:<id> key")
        raw = bytes.fromhex("".join(keys[i] for i in hex_idx)) if hex_idx else b""
        return raw, labels[hex_idx], [keys[i] for i in id_idx], labels[id_idx]

    def _write_layout(self, version: str, layout: int, n_shards: int, hex_raw: bytes, hex_labels: np.ndarray,
                      id_keys: list[str], id_labels: np.ndarray) -> int:
        added = 0
        if hex_raw:
            added += self._write_hex(version, n_shards, hex_raw, hex_labels, layout=layout)
        if id_keys:
            added += self._write_ids(version, n_shards, id_keys, id_labels, layout=layout)
        return added

    def _unlink_written(self, version: str, layout: int, n_shards: int, hex_raw: bytes, id_keys: list[str]) -> None:
        shards = set()
        if hex_raw:
            lead = np.frombuffer(hex_raw, ">u4")[::8]
            k = self._keys()
        shards |= {k.pred_key(version, int(s), layout=layout) for s in np.unique(lead % np.uint32(n_shards))}
        shards |= {k.pred_key(version, shard_of(key, n_shards), ids=True, layout=layout) for key in id_keys}
        self._unlink(sorted(shards))

    # ---- layout and resharding ---------------------------------------------------

    def _layout(self, version: str, *, writing: bool = False) -> "_Layout":
        fields = self.client().hmget(self._keys().version_prefix + version, *_Layout.FIELDS)
        layout = _Layout.parse(version, fields)
        if layout is None:
            raise ValueError(f"version {version} is not registered; register it before writing predictions")
        if writing and layout.validated != "1":
            raise ValueError(f"version {version} is not validated (validated={layout.validated}); "
                             "predictions of a version without a passing verdict are refused")
        if layout.shards < 1:
            raise ValueError(f"version {version} has no shard count; re-register it")
        return layout

    def reserve_keys(self, version: str, incoming: int) -> int:
        """Before a batch of ``incoming`` distinct keys is written: grow the version's layout
        once, for all of them, rather than doubling chunk by chunk. Returns the shard count.

        Sized for RESERVE_FILL a shard if every incoming key were new, and only
        when the batch is larger than what the version holds: it then ends up
        holding at least ``incoming`` answers, so the mean stays at 36 or more a
        shard even when most keys were stored already.
        Refused, like a write, unless the version is registered and validated.
        """
        layout = self._layout(version, writing=True)
        if layout.next_layout is not None:
            layout = self._reshard(version, layout, layout.next_shards)
        incoming = max(int(incoming), 0)
        need = layout.stored + incoming
        # Only a batch at least as large as what is stored: the version then ends with at least
        # `incoming` answers, so sizing for all of them keeps the mean at RESERVE_FILL / 2 or
        # more whatever the overlap. Smaller batches grow it by doubling (`_make_room`).
        if incoming > layout.stored and need > layout.shards * FILL_MAX and layout.shards < MAX_SHARDS:
            layout = self._reshard(version, layout, math.ceil(need / RESERVE_FILL))
        return layout.shards

    def _make_room(self, version: str, layout: "_Layout", incoming: int, *, limit: int) -> "_Layout":
        """Finish a reshard left half done, and grow a layout that ``incoming`` more answers
        would fill past ``limit`` a shard on average: to twice the shards, or FILL_TARGET a
        shard if that is more (so the mean after growing is 40..64)."""
        if layout.next_layout is not None:
            layout = self._reshard(version, layout, layout.next_shards)
        need = layout.stored + incoming
        if need > layout.shards * limit and layout.shards < MAX_SHARDS:
            layout = self._reshard(version, layout, max(2 * layout.shards, math.ceil(need / FILL_TARGET)))
        return layout

    def _reshard(self, version: str, layout: "_Layout", shards: int) -> "_Layout":
        """Copy a version's answers into a new layout of ``shards`` hashes, then switch to it.

        1. claim: ``next_layout``/``next_shards`` are set (compare-and-set; a
           reshard already claimed, by a process that died or still runs, is
           joined instead); from then on every write goes to both layouts;
        2. copy: the Lua ``reshard`` copies RESHARD_STEP old shards a call,
           inside Redis (lookups run between the calls, on the old layout,
           which stays complete);
        3. switch: ``layout``/``shards`` are set and ``next_*`` removed in one
           transaction, if nobody switched first; lookups read both fields in
           one call, so each call sees one complete layout;
        4. the old layout's hashes are unlinked.
        Copies are idempotent (same key, same answer), so two reshards of one
        version, or a write racing a copy, lose nothing.
        """
        keys = self._keys()
        shards = keys.round_shards(min(MAX_SHARDS, max(int(shards), MIN_SHARDS)))
        vkey = keys.version_prefix + version
        client = self.client()
        with client.pipeline(transaction=True) as pipe:  # 1. claim
            while True:
                try:
                    pipe.watch(vkey)
                    current = _Layout.parse(version, pipe.hmget(vkey, *_Layout.FIELDS))
                    if current is None:
                        raise ValueError(f"version {version} is not registered")
                    if current.layout != layout.layout and current.next_layout is None:
                        pipe.unwatch()
                        return current  # someone else finished a reshard meanwhile
                    if current.next_layout is not None:
                        pipe.unwatch()
                        break
                    pipe.multi()
                    pipe.hset(vkey, mapping={"next_layout": str(current.layout + 1), "next_shards": str(shards)})
                    pipe.execute()
                    current = dataclasses.replace(current, next_layout=current.layout + 1, next_shards=shards)
                    break
                except redis.WatchError:
                    continue
        src, dst = current.layout, current.next_layout
        copied = 0
        if keys.cluster:  # 2. copy, tag by tag (a tag's old and new shards share its slot)
            copied = self._cluster_reshard_copy(version, current)
        calls = [[pred_prefix(version, src), pred_prefix(version, dst), str(current.next_shards), str(lo),
                  str(min(current.shards, lo + RESHARD_STEP))]
                 for lo in range(0, current.shards, RESHARD_STEP)] if not keys.cluster else []
        for i in range(0, len(calls), 16):  # 2. copy: 16 calls a round trip
            copied += sum(int(c) for c in self._call_many("reshard", [], calls[i:i + 16], readonly=False))
        if keys.cluster:  # lookups move to the new layout, complete now, before writes stop filling the old
            self._cluster_calls(self._layout_mirrors(version, dataclasses.replace(
                current, layout=dst, shards=current.next_shards, next_layout=None)), wait_ms=REPLICA_WAIT_MS)
        with client.pipeline(transaction=True) as pipe:  # 3. switch
            while True:
                try:
                    pipe.watch(vkey)
                    now = _Layout.parse(version, pipe.hmget(vkey, *_Layout.FIELDS))
                    if now is None or now.layout != src or now.next_layout != dst:
                        pipe.unwatch()
                        return self._layout(version)  # another process switched first and unlinks
                    pipe.multi()
                    pipe.hset(vkey, mapping={"layout": str(dst), "shards": str(current.next_shards),
                                             "stored": str(max(now.stored, copied))})
                    pipe.hdel(vkey, "next_layout", "next_shards")
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        names = [keys.pred_key(version, s, ids=ids, layout=src) for s in range(current.shards)
                 for ids in (False, True)]
        self._unlink(names)  # 4. the old layout
        return self._layout(version)

    def _cluster_reshard_copy(self, version: str, current: "_Layout") -> int:
        """Cluster: the Lua ``reshard`` for each shard tag t (old shards t, t + T, ...), on
        t's slot, RESHARD_STEP old shards a call, pipelined per node."""
        keys = self._keys()
        items = []
        stride = keys.tags * RESHARD_STEP
        for t in range(keys.tags):
            src = keys.pred_prefix(version, current.layout, t)
            dst = keys.pred_prefix(version, current.next_layout, t)
            for lo in range(t, current.shards, stride):
                args = [src, dst, str(current.next_shards), str(lo), str(min(current.shards, lo + stride)),
                        str(keys.tags)]
                items.append((keys.routing_copy(t),
                              (_pack_call(["FCALL", "reshard", "1", keys.routing_copy(t)], args),)))
        return sum(int(c) for c in self._cluster_calls(items, wait_ms=REPLICA_WAIT_MS))

    def _unlink(self, names: list[str]) -> int:
        """UNLINK keys, 1,000 a command on one server, one command a key (per node, pipelined) on a cluster."""
        if not names:
            return 0
        if self._keys().cluster:
            return sum(int(r) for r in self._on_nodes([(n, (_pack_call(["UNLINK", n], []),)) for n in names]))
        client = self.client()
        return sum(int(client.unlink(*names[i:i + 1000])) for i in range(0, len(names), 1000))

    @staticmethod
    def _hex_keys_raw(keys: list) -> bytes | None:
        """The keys' 32-byte binaries joined, when every key is a lowercase 64-hex key; else None."""
        try:
            if set(map(len, keys)) != {64}:
                return None
            joined = "".join(keys)
        except TypeError:
            return None
        if any(c in joined for c in "ABCDEF"):
            return None
        try:
            raw = bytes.fromhex(joined)
        except ValueError:
            return None
        # fromhex skips whitespace, so a key with spaces decodes short.
        return raw if len(raw) == 32 * len(keys) else None

    def _write_hex(self, version: str, n_shards: int, raw: bytes, labels: np.ndarray, *, layout: int = 0) -> int:
        n = len(labels)
        key_bytes = np.frombuffer(raw, np.uint8).reshape(n, 32)
        lead = ((key_bytes[:, 0].astype(np.uint32) << 24) | (key_bytes[:, 1].astype(np.uint32) << 16)
                | (key_bytes[:, 2].astype(np.uint32) << 8) | key_bytes[:, 3].astype(np.uint32))
        # Small unsigned shard ids make numpy's stable argsort a radix sort.
        shard = (lead % np.uint32(n_shards)).astype(np.uint16 if n_shards <= 1 << 16 else np.uint32)
        order = np.argsort(shard, kind="stable")
        _PAIR, _PAIR_HEAD, _PAIR_MID, _PAIR_TAIL = _pair_layout()
        pairs = np.empty(n, _PAIR)
        pairs["head"] = _PAIR_HEAD
        pairs["key"] = np.frombuffer(raw, "V32")[order]
        pairs["mid"] = _PAIR_MID
        pairs["label"] = labels[order].astype(np.uint8) + ord("0")
        pairs["tail"] = _PAIR_TAIL
        body = memoryview(pairs.view(np.uint8))
        size = _PAIR.itemsize
        counts = np.bincount(shard, minlength=n_shards)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        keyspace = self._keys()
        used = np.flatnonzero(counts)
        if keyspace.cluster:
            names = [keyspace.pred_key(version, s, layout=layout).encode() for s in used.tolist()]
        else:
            names = np.strings.add(pred_prefix(version, layout).encode("utf-8"), used.astype("S"))
        heads = _hset_heads(names, counts[used])
        first = (starts[used] * size).tolist()
        last = ((starts[used] + counts[used]) * size).tolist()
        return self._send_pipelined(version, list(zip(heads, [body[a:b] for a, b in zip(first, last)])))

    def _send_pipelined(self, version: str, commands: list[tuple[bytes, memoryview]]) -> int:
        """Send pre-packed commands in large writes, reading replies one chunk behind.

        Every reply is an integer (fields added) or an error; they are read off
        the socket directly (`_ReplyReader`) unless redis-py must (then with
        ``read_response``). Redis parses chunk i + 1 while Python reads chunk
        i's replies and joins chunk i + 2.

        On a Redis Cluster each command goes to the node serving its key (the
        second argument of every command sent this way), through `_on_nodes`.
        """
        if self._keys().cluster:
            try:
                return sum(int(r) for r in self._on_nodes([(_command_key(h), (h, b)) for h, b in commands],
                                                          wait_ms=REPLICA_WAIT_MS))
            except redis.ResponseError as err:
                raise StoreError(f"writing predictions of {version} to {self.label} failed: {err}") from err
        pool = self.client().connection_pool
        conn = pool.get_connection()
        added = 0
        sock = _raw_socket(conn)
        reader = _ReplyReader(sock) if sock is not None else None

        def collect(count: int) -> None:
            nonlocal added
            if reader is not None:
                replies = [reader.read_integer_total(count)]
            else:
                replies = (conn.read_response(disable_decoding=True) for _ in range(count))
            for reply in replies:
                if isinstance(reply, Exception):
                    # Stop at the first refusal (e.g. OOM under noeviction): the disconnect
                    # below drops what is still queued, and frees its buffers in Redis.
                    raise reply
                added += int(reply)

        try:
            pending = 0  # commands sent whose replies are unread
            parts: list = []
            size = in_chunk = 0
            for head, body in commands:
                parts.append(head)
                parts.append(body)
                size += len(head) + len(body)
                in_chunk += 1
                if size >= WRITE_CHUNK_BYTES:
                    conn.send_packed_command([b"".join(parts)], check_health=False)
                    collect(pending)  # the previous chunk's replies
                    pending = in_chunk
                    parts, size, in_chunk = [], 0, 0
            if parts:
                conn.send_packed_command([b"".join(parts)], check_health=False)
            collect(pending + in_chunk)
            if reader is not None and not reader.drained():
                conn.disconnect()  # never expected: bytes beyond our replies
        except redis.ResponseError as err:
            conn.disconnect()  # replies still in flight: the connection is out of step
            raise StoreError(f"writing predictions of {version} to {self.label} failed: {err}") from err
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)
        return added

    # ---- Redis Cluster: raw pipelines per node ----------------------------------------

    def _on_nodes(self, items: list[tuple], *, triples: bool = False, attempts: int = 2, wait_ms: int = 0) -> list:
        """Cluster: send pre-packed commands, each to the master serving its key's slot
        (redis-py's slot map), one pipeline a node; the replies in the items' order.

        ``items`` are (key, parts): ``parts`` the command's RESP bytes. Every
        node's commands are sent before any reply is read, so the nodes work at
        once. An error reply raises (the first); after a redirection (MOVED,
        ASK), CLUSTERDOWN or a lost connection the slot map is refreshed and the
        whole batch sent again, once: callers send only commands that may run twice
        (a repeated HSET counts its fields as not new: `recount_keys` corrects counts).
        ``wait_ms``: each node's pipeline ends with WAIT 1 (writes): the batch returns
        once a replica of every master holds it, or after ``wait_ms`` (best effort: a
        master without a live replica does not stop the store).
        """
        client = self.client()
        wait = _pack_call(["WAIT", "1", str(int(wait_ms))], []) if wait_ms else b""
        for attempt in range(attempts):
            last = attempt + 1 >= attempts
            groups: dict[str, list[int]] = {}
            nodes = {}
            try:
                manager = client.nodes_manager
                for i, (key, _) in enumerate(items):
                    node = manager.get_node_from_slot(client.keyslot(key))
                    nodes[node.name] = node
                    groups.setdefault(node.name, []).append(i)
            except (redis.exceptions.SlotNotCoveredError, redis.exceptions.ClusterDownError) as err:
                if last:
                    raise redis.ConnectionError(f"the cluster at {self.label} serves no node for a slot: {err}") from err
                self._refresh_slots()
                continue
            replies: list = [None] * len(items)
            failure: Exception | None = None
            sent: list = []
            try:
                for name, idx in groups.items():
                    pool = client.get_redis_connection(nodes[name]).connection_pool
                    c = pool.get_connection()
                    sent.append((pool, c, idx))
                    parts: list = []
                    size = 0
                    for i in idx:
                        for part in items[i][1]:
                            parts.append(part)
                            size += len(part)
                        if size >= WRITE_CHUNK_BYTES:
                            c.send_packed_command([b"".join(parts)], check_health=False)
                            parts, size = [], 0
                    if wait:
                        parts.append(wait)
                    if parts:
                        c.send_packed_command([b"".join(parts)], check_health=False)
                for _, c, idx in sent:
                    sock = _raw_socket(c)
                    reader = _ReplyReader(sock) if sock is not None else None
                    for i in idx:
                        if reader is not None:
                            replies[i] = reader.read_triples() if triples else reader.read()
                            continue
                        try:
                            replies[i] = c.read_response(disable_decoding=True)
                        except redis.ResponseError as err:
                            replies[i] = err
                    if wait:  # how many replicas acknowledged: best effort, not an error
                        reader.read() if reader is not None else c.read_response(disable_decoding=True)
                    if reader is not None and not reader.drained():
                        c.disconnect()  # never expected: bytes beyond our replies
            except (redis.ConnectionError, redis.TimeoutError, OSError) as err:
                failure = err
                for _, c, _ in sent:
                    c.disconnect()
            except BaseException:
                for _, c, _ in sent:
                    c.disconnect()
                raise
            finally:
                for pool, c, _ in sent:
                    pool.release(c)
            if failure is None:
                errors = [r for r in replies if isinstance(r, Exception)]
                if not errors:
                    return replies
                redirected = any(isinstance(e, _CLUSTER_MOVES) for e in errors)
                if last or not redirected:
                    raise errors[0]
            elif last:
                raise failure
            self._refresh_slots()
        raise AssertionError("unreachable")

    def _lookup_keyspace(self) -> Keyspace:
        """The key names lookups use: with read replicas (IRISDAG_REDIS_READ_URLS, one server's;
        docs/replicas.md) today's, without asking the primary, which may be down."""
        return SINGLE if getattr(self, "read_urls", ()) else self._keys()

    def _refresh_slots(self) -> None:
        """Reload the cluster's slot map (after a failover or a redirection); quiet when
        the cluster cannot answer yet (the caller's next attempt reports)."""
        try:
            self.client().nodes_manager.initialize()
        except Exception:  # noqa: BLE001 - the cluster is still electing a master
            pass

    def _write_ids(self, version: str, n_shards: int, keys: list[str], labels: np.ndarray, *,
                   layout: int = 0) -> int:
        groups: dict[int, dict[bytes, int]] = {}
        for key, label in zip(keys, labels.tolist()):
            groups.setdefault(shard_of(key, n_shards), {})[key[len(ID_PREFIX):].encode("utf-8")] = label
        pipe = self.client().pipeline(transaction=False)
        for s, mapping in groups.items():
            pipe.hset(self._keys().pred_key(version, s, ids=True, layout=layout), mapping=mapping)
        try:
            return int(sum(pipe.execute()))
        except redis.ResponseError as err:
            raise StoreError(f"writing predictions of {version} to {self.label} failed: {err}") from err

    def lookup(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        """The served answer per key: {"key", "label", "version", "route"}, in one round trip.

        ``label`` is the class name (None for holdout and miss); ``route`` is
        champion, challenger, holdout or miss. Up to LOOKUP_CHUNK keys go in
        one call of the Lua ``lookup``; more go as several calls in one
        pipeline, and each call's answers are decoded while Redis runs the next.
        """
        keys = [str(k) for k in keys]
        if not keys:
            return []
        if self._lookup_keyspace().cluster:
            return self._cluster_lookup(keys)
        chunks = [keys[i:i + LOOKUP_CHUNK] for i in range(0, len(keys), LOOKUP_CHUNK)]
        parts: list[list[dict[str, Any]]] = [[] for _ in chunks]
        # Few distinct values come back: decode each once.
        names: dict = {str(i).encode(): label for i, label in enumerate(LABELS)}
        text: dict = {}

        def decode(i: int, entries) -> None:
            out = []
            for key, (route, version, label) in zip(chunks[i], entries):
                if label and label not in names:
                    names[label] = _s(label)
                if version and version not in text:
                    text[version] = _s(version)
                if route not in text:
                    text[route] = _s(route)
                out.append({"key": key, "label": names[label] if label else None,
                            "version": text[version] if version else None, "route": text[route]})
            parts[i] = out

        self._call_chunks("lookup", [self._lookup_keyspace().routing], chunks, decode, readonly=True,
                          replicas=True)
        return parts[0] if len(parts) == 1 else [d for part in parts for d in part]

    def lookup_digests(self, digests) -> BatchAnswers:
        """Served answers for raw keys (a numpy ``S32`` array of SHA-256 digests, or bytes
        joined), in one round trip: the batch path, several times faster than `lookup`.

        Up to LOOKUP_CHUNK keys a call of the Lua ``lookup_digests``, pipelined;
        routing is read once a call, so should it change between calls the
        answers of each call are still from one routing (codes are remapped to
        one ``versions`` list).
        """
        if isinstance(digests, (bytes, bytearray, memoryview)):
            blob = bytes(digests)
            if len(blob) % 32:
                raise ValueError(f"lookup_digests: {len(blob)} bytes is not a whole number of 32-byte keys")
        else:
            arr = _digest_array(digests)
            if arr is None:
                raise ValueError("lookup_digests needs raw 32-byte keys (numpy S32), e.g. keys.digests_of_hex")
            blob = arr.tobytes()
        n = len(blob) // 32
        if n == 0:
            return BatchAnswers(np.zeros(0, np.uint8), ())
        conn = self._conn()
        if self._lookup_keyspace().cluster:
            return self._cluster_lookup_digests(blob, conn)
        step = 32 * LOOKUP_CHUNK
        salt = conn.lookup_salt
        chunks = [_digest_call_args(blob[i:i + step], salt) for i in range(0, len(blob), step)]
        codes = np.empty(n, np.uint8)
        versions: list[str] = []

        def take(i: int, reply) -> None:
            if i == 0:
                versions.clear()  # a call that starts over (reload, another replica) starts afresh
            part = _codes_onto(np.frombuffer(reply[0], np.uint8), [_s(v) for v in reply[1:-1]], versions, bool(i))
            codes[i * LOOKUP_CHUNK:i * LOOKUP_CHUNK + len(part)] = part
            conn.lookup_salt = _s(reply[-1])

        self._call_chunks("lookup_digests", [self._lookup_keyspace().routing], chunks, take, readonly=True,
                          replicas=True)
        return BatchAnswers(codes, tuple(versions))

    # ---- lookups on a Redis Cluster (docs/cluster.md) ---------------------------------------

    def _cluster_calls(self, items: list[tuple], *, triples: bool = False, attempts: int = 2,
                       wait_ms: int = 0) -> list:
        """`_on_nodes` for library calls: a node that lost the library gets it again, once."""
        self.ensure_functions()
        try:
            return self._on_nodes(items, triples=triples, attempts=attempts, wait_ms=wait_ms)
        except redis.ResponseError as err:
            if not self._is_not_loaded(err):
                raise
            self.ensure_functions(force=True)
            return self._on_nodes(items, triples=triples, attempts=attempts, wait_ms=wait_ms)

    def _tag_calls(self, name: str, groups: dict[int, list], readonly: bool = True) -> list[tuple]:
        """One FCALL(_RO) ``name`` per shard tag, on that tag's routing copy, with its arguments."""
        keys = self._keys()
        command = "FCALL_RO" if readonly else "FCALL"
        items = []
        for tag, args in groups.items():
            rkey = keys.routing_copy(tag)
            items.append((rkey, (_pack_call([command, name, "1", rkey], list(args)),)))
        return items

    def _cluster_lookup(self, keys: list[str]) -> list[dict[str, Any]]:
        """`lookup` on a cluster: the keys of each shard tag in one call on that tag's slot
        (its routing copy, layouts and answers are there), all calls to a node in one
        pipeline, every node at once."""
        by_tag: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            by_tag.setdefault(_tag_of_key(key), []).append(i)
        parts: list[list[int]] = []
        items: list[tuple] = []
        for tag, idx in by_tag.items():
            for start in range(0, len(idx), LOOKUP_CHUNK):
                part = idx[start:start + LOOKUP_CHUNK]
                parts.append(part)
                items += self._tag_calls("lookup", {tag: [keys[i] for i in part]})
        out: list[dict[str, Any] | None] = [None] * len(keys)
        for part, entries in zip(parts, self._cluster_calls(items, triples=True)):
            for i, (route, version, label) in zip(part, entries):
                label = _s(label) if label else None
                out[i] = {"key": keys[i], "label": LABELS[int(label)] if label and label.isdigit() else label,
                          "version": _s(version) if version else None, "route": _s(route)}
        return out  # type: ignore[return-value]

    def _cluster_lookup_digests(self, blob: bytes, conn: _Conn) -> "BatchAnswers":
        """`lookup_digests` on a cluster: keys grouped by shard tag (leading 32 bits mod the
        tags), one call a tag and chunk, pipelined per node; each call's versions are
        mapped into one list (a tag's routing copy may be an epoch ahead of another's
        while a routing change propagates)."""
        n = len(blob) // 32
        lead = np.frombuffer(blob, ">u4").reshape(n, 8)[:, 0]
        tags = (lead % np.uint32(CLUSTER_TAGS)).astype(np.uint16)
        order = np.argsort(tags, kind="stable")
        counts = np.bincount(tags, minlength=CLUSTER_TAGS)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        rows = np.frombuffer(blob, "V32")
        parts: list[np.ndarray] = []
        items: list[tuple] = []
        for tag in np.flatnonzero(counts).tolist():
            idx = order[int(starts[tag]):int(starts[tag]) + int(counts[tag])]
            for start in range(0, len(idx), LOOKUP_CHUNK):
                part = idx[start:start + LOOKUP_CHUNK]
                parts.append(part)
                items += self._tag_calls("lookup_digests",
                                         {tag: _digest_call_args(rows[part].tobytes(), conn.lookup_salt)})
        codes = np.zeros(n, np.uint8)
        versions: list[str] = []
        for part, reply in zip(parts, self._cluster_calls(items)):
            conn.lookup_salt = _s(reply[-1])
            codes[part] = _codes_onto(np.frombuffer(reply[0], np.uint8), [_s(v) for v in reply[1:-1]], versions, True)
        return BatchAnswers(codes, tuple(versions))

    # ---- read replicas (docs/replicas.md) ------------------------------------------

    def _read_set(self) -> _ReadSet | None:
        urls = getattr(self, "read_urls", ())  # the Dagster resource has none: the pipeline reads its writes
        if not urls:
            return None
        reads = _READ_SETS.get(urls)
        if reads is None:
            with _CONNS_LOCK:
                reads = _READ_SETS.setdefault(urls, _ReadSet(urls))
        return reads

    def _replica_conn(self, url: str) -> _Conn:
        cache_key = f"replica:{url}"
        conn = _CONNS.get(cache_key)
        if conn is None:
            with _CONNS_LOCK:
                conn = _CONNS.get(cache_key)
                if conn is None:
                    client = redis.Redis.from_url(url, socket_timeout=REPLICA_SOCKET_TIMEOUT,
                                                  socket_connect_timeout=2)
                    if _is_cluster(client):
                        client.close()
                        raise StoreError(f"{READ_URLS_ENV}: {redact_url(url)} is a Redis Cluster node; a cluster "
                                         "answers lookups from its masters through REDIS_URL alone "
                                         f"(docs/cluster.md): unset {READ_URLS_ENV}")
                    conn = _CONNS[cache_key] = _Conn(client=client)
        if not self._server_has_functions(conn):
            raise StoreError(f"{READ_URLS_ENV}: {redact_url(url)} runs Redis < 7; lookups on replicas need "
                             "FCALL_RO (Redis >= 7): unset it or upgrade the replicas")
        return conn

    def _call_chunks(self, name: str, keys: Sequence[str], arg_lists: list[list[str]], on_reply, *,
                     readonly: bool, replicas: bool = False) -> None:
        """`_call_many` for long argument lists of str: packed here, replies read off the socket
        and handed to ``on_reply(index, reply)`` as each arrives. Same reload-and-retry rules.

        ``replicas`` (read-only functions): ask the read replicas first, in turn; one that
        cannot answer is skipped for a while and the next one, then the primary, answers.
        """
        reads = self._read_set() if replicas and readonly else None
        for url in reads.order() if reads else ():
            try:
                conn = self._replica_conn(url)
                self._chunks_on(conn, name, keys, arg_lists, on_reply, readonly=True, replica=True)
                return
            except redis.AuthenticationError as err:
                raise StoreError(f"the read replica {redact_url(url)} ({READ_URLS_ENV}) refused the credentials: "
                                 f"{err}") from err
            except Exception as err:  # noqa: BLE001 - sorted by _replica_unavailable
                if not _replica_unavailable(err):
                    raise
                reads.mark_down(url)
        self._chunks_on(self._conn(), name, keys, arg_lists, on_reply, readonly=readonly)

    def _chunks_on(self, conn: _Conn, name: str, keys: Sequence[str], arg_lists: list[list[str]], on_reply, *,
                   readonly: bool, replica: bool = False) -> None:
        if not replica:
            self.ensure_functions()  # a replica gets the library by replication, never loads it
        for attempt in range(2):
            if conn.functions:
                head = ["FCALL_RO" if readonly else "FCALL", name, str(len(keys)), *keys]
            else:
                head = ["EVALSHA", _eval_sha(name), str(len(keys)), *keys]
            payloads = [_pack_call(head, list(args)) for args in arg_lists]
            pool = conn.client.connection_pool
            c = pool.get_connection()
            errors: list[Exception] = []
            try:
                sock = _raw_socket(c)
                reader = _ReplyReader(sock) if sock is not None else None
                # Keep one call queued behind the one Redis runs: Redis reads a call's
                # arguments only between calls, so sending them all at once would block
                # here until the last started, with no reply decoded meanwhile.
                ahead = 2
                c.send_packed_command(payloads[:ahead], check_health=False)
                for i in range(len(payloads)):
                    if reader is None:
                        reply = c.read_response(disable_decoding=True)
                    else:
                        reply = reader.read_triples() if name == "lookup" else reader.read()
                    if isinstance(reply, Exception):
                        errors.append(reply)
                    elif not errors:
                        on_reply(i, reply)
                    if i + ahead < len(payloads):
                        c.send_packed_command([payloads[i + ahead]], check_health=False)
                if reader is not None and not reader.drained():
                    c.disconnect()  # never expected: bytes beyond our replies
            except redis.ResponseError as err:
                c.disconnect()  # redis-py raised it with replies unread: out of step
                errors.append(err)
            except BaseException:
                c.disconnect()
                raise
            finally:
                pool.release(c)
            if not errors:
                return
            if attempt == 0 and not replica and self._reload_after(errors, conn):
                continue
            raise errors[0]

    # ---- kept inputs -------------------------------------------------------------

    def partition_index(self, partition: str) -> int:
        """The stable index (1, 2, 3, ...) of a kept-input partition, given on first sight."""
        if partition == GENERATION_FIELD:
            raise ValueError(f"a partition may not be named {GENERATION_FIELD!r}")
        client = self.client()
        known = client.hget(self._keys().inputs, partition)
        if known is not None:
            return int(known)
        with client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(self._keys().inputs)
                    known, current = pipe.hmget(self._keys().inputs, partition, GENERATION_FIELD)
                    if known is not None:
                        return int(known)
                    index = int(_s(current) or 0) + 1
                    pipe.multi()
                    pipe.hset(self._keys().inputs, mapping={partition: str(index), GENERATION_FIELD: str(index)})
                    pipe.execute()
                    return index
                except redis.WatchError:
                    continue

    def inputs_generation(self) -> int:
        """How many kept-input partitions there are (the newest index)."""
        return int(_s(self.client().hget(self._keys().inputs, GENERATION_FIELD)) or 0)

    def kept_partitions(self) -> list[str]:
        """The kept-input partitions, in index order."""
        raw = _decode_hash(self.client().hgetall(self._keys().inputs))
        raw.pop(GENERATION_FIELD, None)
        return [p for p, _ in sorted(raw.items(), key=lambda kv: int(kv[1]))]

    # ---- routing ---------------------------------------------------------------

    def routing(self) -> Routing:
        """The current routing (epoch 0 and no champion when never set)."""
        return Routing.from_hash(_decode_hash(self.client().hgetall(self._keys().routing)))

    def set_routing(self, expected_epoch: int, changes: dict, *, action: str, decision_id: str = "",
                    run_id: str = "", operation: str = "",
                    version_fields: dict[str, dict[str, str]] | None = None) -> tuple[bool, str, int]:
        """Change routing through the Lua ``route``: compare-and-set on epoch, audited.

        ``changes`` holds any of champion, previous, challenger, strategy,
        shares (dict or list of (version, bp), order kept), holdout_bp, salt.
        ``operation`` (e.g. ``promote:<decision id>``) makes the change take
        effect once: a second call with the same id, retried or concurrent,
        changes nothing and answers applied ("already applied at epoch N").
        ``version_fields`` ({version: {"role"/"lifecycle": value}}) are written
        by the same function, only when the change applies.
        Returns (applied, reason, epoch): the new epoch, or the current one
        when refused or already applied.
        """
        payload: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "shares":
                payload[name] = value if isinstance(value, str) else dump_shares(value or {})
            elif name == "holdout_bp":
                payload[name] = int(value or 0)
            else:
                payload[name] = "" if value is None else str(value)
        meta = {str(v): {str(k): _field_value(x) for k, x in fields.items()}
                for v, fields in (version_fields or {}).items() if v}
        store = self.routing_store()
        keys = store._keys()
        args = [str(int(expected_epoch)), json.dumps(payload), action, decision_id or "", run_id or "", _now(),
                operation or "", json.dumps(meta) if meta else ""]
        if not keys.cluster:
            ok, reason, epoch = store._call("route", [keys.routing, keys.audit, keys.operations], args,
                                            readonly=False)
            return bool(int(ok)), _s(reason), int(epoch)
        ok, reason, epoch = store._cluster_route(args)
        store.sync_routing()  # also after a refusal or a repeat: finishes what a dead caller left half done
        return ok, reason, epoch

    # ---- routing on a Redis Cluster (docs/cluster.md) ----------------------------------------

    def _cluster_route(self, args: list[str]) -> tuple[bool, str, int]:
        """The Lua ``route`` on the control slot, with the epoch floor (the highest epoch any
        routing copy holds), then WAIT for one replica on the same connection, so that the
        change survives a failover of the control master before any copy shows it."""
        keys = self._keys()
        floor = max(self._copy_epochs(), default=0)
        route = _pack_call(["FCALL", "route", "3", keys.routing, keys.audit, keys.operations], [*args, str(floor)])
        wait = _pack_call(["WAIT", "1", str(ROUTE_WAIT_MS)], [])
        # Sent once (attempts=1): the call may have applied before a lost reply; its retry
        # is the caller's, by its operation id.
        reply, _acked = self._cluster_calls([(keys.routing, (route,)), (keys.routing, (wait,))], attempts=1)
        return bool(int(reply[0])), _s(reply[1]), int(reply[2])

    def _copy_epochs(self) -> list[int]:
        """The epoch of every shard tag's routing copy (0 where there is none)."""
        keys = self._keys()
        items = [(keys.routing_copy(t), (_pack_call(["HGET", keys.routing_copy(t), "epoch"], []),))
                 for t in range(keys.tags)]
        return [int(_s(r) or 0) for r in self._on_nodes(items)]

    def sync_routing(self) -> int:
        """Cluster: copy the control routing into every shard tag's routing copy, stamped
        with its epoch (a copy takes only a newer epoch: copies never move back), and the
        layout of every version it names into their layout copies. Idempotent; every
        routing change ends with it, and a check or a later change repairs a sync that
        died half way. Returns the epoch copied (0 on one server: nothing to do)."""
        keys = self._keys()
        if not keys.cluster:
            return 0
        control = _decode_hash(self.client().hgetall(keys.routing))
        epoch = int(control.get("epoch") or 0)
        if not epoch:
            return 0
        fields = [x for kv in sorted(control.items()) if kv[0] != "epoch" for x in kv]
        items = [(keys.routing_copy(t), (_pack_call(["FCALL", "mirror", "1", keys.routing_copy(t), "epoch",
                                                     str(epoch)], fields),)) for t in range(keys.tags)]
        for version in Routing.from_hash(control).versions():
            items += self._layout_mirrors(version)
        self._cluster_calls(items, wait_ms=REPLICA_WAIT_MS)
        return epoch

    def _layout_mirrors(self, version: str, layout: "_Layout | None" = None, classes: str | None = None) -> list:
        """The calls that copy a version's served layout (or ``layout``) into every shard tag."""
        keys = self._keys()
        if layout is None:
            layout = _Layout.parse(version, self.client().hmget(keys.version_prefix + version, *_Layout.FIELDS))
            if layout is None:
                return []
            layout = dataclasses.replace(layout, next_layout=None)
        if classes is None:
            classes = _s(self.client().hget(keys.version_prefix + version, "classes"))
        fields = ["shards", str(layout.shards), "classes", classes]
        return [(keys.layout_copy(t, version),
                 (_pack_call(["FCALL", "mirror", "1", keys.layout_copy(t, version), "layout", str(layout.layout)],
                             fields),)) for t in range(keys.tags)]

    def routing_copies(self) -> list[Routing]:
        """Cluster: every shard tag's routing copy, as Routing (for checks and tests)."""
        keys = self._keys()
        items = [(keys.routing_copy(t), (_pack_call(["HGETALL", keys.routing_copy(t)], []),))
                 for t in range(keys.tags)]
        out = []
        for flat in self._on_nodes(items):
            out.append(Routing.from_hash({_s(flat[i]): _s(flat[i + 1]) for i in range(0, len(flat), 2)}))
        return out

    def applied_operation(self, operation: str) -> int | None:
        """The epoch at which a routing operation (see `set_routing`) applied, or None."""
        if not operation:
            return None
        epoch = self.client().hget(self._keys().operations, operation)
        return None if epoch is None else int(epoch)

    def audit_refusal(self, action: str, reason: str, *, decision_id: str = "", run_id: str = "") -> None:
        """Audit an attempt refused before it reached the routing function (e.g. nothing to roll back to)."""
        routing = self.routing()
        self.routing_store().client().xadd(self._keys().audit, {
            "action": action, "outcome": "refused", "champion": routing.champion, "previous": routing.previous,
            "challenger": routing.challenger, "strategy": routing.strategy, "reason": reason,
            "epoch": str(routing.epoch), "decision_id": decision_id, "run_id": run_id, "time": _now(),
        }, maxlen=STREAM_MAXLEN, approximate=True)

    def audit_event(self, action: str, outcome: str, reason: str = "", *, run_id: str = "",
                    **fields: Any) -> str:
        """Append a pipeline event that changes nothing served (e.g. a failed serving-store
        check) to the audit stream, with the current routing; returns its stream id."""
        routing = self.routing()
        entry = {"action": action, "outcome": outcome, "champion": routing.champion,
                 "previous": routing.previous, "challenger": routing.challenger,
                 "epoch": str(routing.epoch), "reason": reason, "run_id": run_id, "time": _now()}
        entry.update({str(k): _field_value(v) for k, v in fields.items()})
        return _s(self.client().xadd(self._keys().audit, entry, maxlen=STREAM_MAXLEN, approximate=True))

    def audit(self, count: int = 50) -> list[dict[str, str]]:
        """The newest `count` audit entries, newest last, each with its stream ``id``."""
        entries = self.client().xrevrange(self._keys().audit, count=count)
        return [{"id": _s(eid), **_decode_hash(fields)} for eid, fields in reversed(entries)]

    def record_run_failure(self, run_id: str, *, job: str, steps: Sequence[str] = (), assets: Sequence[str] = (),
                           error: str = "", partition: str = "", failure_reason: str = "",
                           time: str = "") -> str:
        """Audit a failed Dagster run, once: an ``irisdag:audit`` entry with action ``run_failure``.

        Returns the new entry's stream id, or "" when this run was already
        recorded (the run failure sensor may see a run again). The entry and
        the run's mark in ``irisdag:run_failures`` are written in one MULTI.
        """
        if not run_id:
            raise ValueError("record_run_failure needs the run id")
        fields = {
            "action": "run_failure", "outcome": "failed", "run_id": run_id, "job": job or "",
            "partition": partition or "", "steps": ",".join(steps), "assets": ",".join(assets),
            "error": (error or "")[:4000], "failure_reason": failure_reason or "", "time": time or _now(),
        }
        with self.client().pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(self._keys().run_failures)
                    if pipe.hexists(self._keys().run_failures, run_id):
                        pipe.unwatch()
                        return ""
                    pipe.multi()
                    pipe.xadd(self._keys().audit, fields, maxlen=STREAM_MAXLEN, approximate=True)
                    pipe.hset(self._keys().run_failures, run_id, fields["time"])
                    return _s(pipe.execute()[0])
                except redis.WatchError:
                    continue

    def recorded_run_failures(self, run_ids: Iterable[str]) -> set[str]:
        """Which of these run ids already have their failure audited."""
        run_ids = list(run_ids)
        if not run_ids:
            return set()
        seen = self.client().hmget(self._keys().run_failures, run_ids)
        return {r for r, t in zip(run_ids, seen) if t is not None}

    # ---- misses ----------------------------------------------------------------

    def queue_misses(self, entries: Iterable[dict]) -> list[str]:
        """Append missed inputs to the capped ``irisdag:misses`` stream; returns their stream ids.

        Each entry has ``key`` and ``features`` (four numbers) or ``id``.
        """
        pipe = self.client().pipeline(transaction=False)
        n = 0
        for entry in entries:
            pipe.xadd(self._keys().misses, miss_fields(entry), maxlen=STREAM_MAXLEN, approximate=True)
            n += 1
        if not n:
            return []
        replies = pipe.execute(raise_on_error=False)
        refused = [r for r in replies if isinstance(r, Exception)]
        if refused:  # e.g. a full Redis: noeviction refuses XADD
            raise StoreError(f"Redis at {self.label} refused to queue {len(refused)} of {n} miss(es): "
                             f"{str(refused[0]).splitlines()[0]}") from refused[0]
        return [_s(i) for i in replies]

    def misses_page(self, count: int = MISSES_PAGE, after: str = "-",
                    max_bytes: int = MISS_ENTRY_MAX_BYTES) -> tuple[int, str, list[dict[str, Any]]]:
        """(queue length, newest entry id or "", up to ``count`` entries after ``after``), oldest first.

        Entries are untrusted: each is {"stream_id", "size", "fields"} where
        ``fields`` holds the raw (decoded) strings, or None when the entry is
        larger than ``max_bytes``: the server measures it and never sends it
        (the Lua ``misses_read``), so what a reader holds is bounded.
        """
        count = max(0, min(int(count), MISSES_PAGE))
        reply = self._call("misses_read", [self._keys().misses], [after or "-", str(count), str(int(max_bytes))],
                           readonly=True)
        length, newest, out = int(reply[0]), _s(reply[1]) if reply[1] else "", []
        for item in reply[2:]:
            flat = item[2:]
            fields = None if len(item) == 2 else {_s(flat[i]): _s(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}
            out.append({"stream_id": _s(item[0]), "size": int(item[1]), "fields": fields})
        return length, newest, out

    def read_misses(self, count: int = 1000) -> list[dict[str, Any]]:
        """The oldest unacknowledged misses: {"stream_id", "key", "features" or None, "id" or None,
        "time", "size", "fields"}; ``features`` is the parsed JSON when it parses (None otherwise: see
        ``fields``, and `irisdag.core.misses.parse_miss` for the validation); ``fields`` is None for
        an entry over MISS_ENTRY_MAX_BYTES, which is never read."""
        out: list[dict[str, Any]] = []
        after = "-"
        while len(out) < count:
            _, _, page = self.misses_page(min(MISSES_PAGE, count - len(out)), after)
            if not page:
                break
            for e in page:
                fields = e["fields"] or {}
                try:
                    features = json.loads(fields["features"]) if fields.get("features") else None
                except ValueError:
                    features = None
                out.append({"stream_id": e["stream_id"], "key": fields.get("key", ""), "features": features,
                            "id": fields.get("id") or None, "time": fields.get("time", ""),
                            "size": e["size"], "fields": e["fields"]})
            after = page[-1]["stream_id"]
        return out

    def newest_miss(self) -> tuple[int, str]:
        """(how many misses are queued, the newest one's id or "") without reading any entry's fields."""
        length, newest, _ = self.misses_page(0)
        return length, newest

    def dead_letter_misses(self, entries: Iterable[tuple[str, str, str, str]]) -> int:
        """Move poisoned misses to ``irisdag:misses:dead``: (stream id, kind, reason, key) each.

        One Lua call (allowed under OOM) deletes each from the queue and appends a
        short record (never the payload) and counts it by kind; returns how many moved.
        """
        args: list[str] = []
        for stream_id, kind, reason, key in entries:
            args += [str(stream_id), str(kind), str(reason)[:300], str(key)[:300]]
        if not args:
            return 0
        moved = 0
        for i in range(0, len(args), 4 * 1000):
            moved += int(self._call("dead_letter", [self._keys().misses, self._keys().dead_misses, self._keys().dead_counts],
                                    [_now(), *args[i:i + 4 * 1000]], readonly=False))
        return moved

    def dead_letters(self, count: int = 20) -> tuple[dict[str, int], int, list[dict[str, str]]]:
        """(dead-lettered misses counted by kind since the start, records kept, the newest
        ``count`` records, newest last)."""
        client = self.client()
        counts = {k: int(v) for k, v in _decode_hash(client.hgetall(self._keys().dead_counts)).items()}
        kept = int(client.xlen(self._keys().dead_misses))
        newest = [{"id": _s(eid), **_decode_hash(f)} for eid, f in reversed(client.xrevrange(self._keys().dead_misses, count=count))]
        return counts, kept, newest

    def ack_misses(self, ids: Iterable[str]) -> int:
        """Acknowledge (delete) misses once their answers are stored; returns how many."""
        ids = list(ids)
        return int(self.client().xdel(self._keys().misses, *ids)) if ids else 0

    def pending_misses(self) -> int:
        """How many misses wait to be scored."""
        return int(self.client().xlen(self._keys().misses))

    # ---- decisions and evidence ------------------------------------------------------

    def record_decision(self, record: dict) -> str:
        """Keep a decision record: the latest in ``irisdag:decision``, all in ``irisdag:decisions``."""
        text = json.dumps(record, default=str)
        pipe = self.client().pipeline(transaction=True)
        pipe.hset(self._keys().decision, mapping={"latest": text, "decision_id": str(record.get("decision_id", ""))})
        pipe.xadd(self._keys().decisions, {"decision_id": str(record.get("decision_id", "")), "record": text},
                  maxlen=DECISIONS_MAXLEN, approximate=True)
        return _s(pipe.execute()[-1])

    def latest_decision(self) -> dict | None:
        """The newest decision record, or None."""
        text = self.client().hget(self._keys().decision, "latest")
        return json.loads(text) if text else None

    def evidence_put(self, experiment: str, partition: str, counts: dict) -> None:
        """Store one partition's evidence counts for an experiment (idempotent per partition)."""
        self.client().hset(self._keys().evidence_prefix + experiment, partition, json.dumps(counts, sort_keys=True, default=str))

    def claim_inputs(self, experiment: str, partition: str, tokens) -> np.ndarray:
        """Claim inputs for the window ``partition`` of ``experiment``: the first window to claim one judges it.

        ``tokens`` are uint64 names of inputs (``experiments.digest_tokens`` /
        ``id_tokens``). Returns, per token, whether ``partition`` owns it: it
        claimed it now, or had claimed it before (so re-running a window
        judges the same inputs again, and two windows at once never both
        own one: HSETNX decides). Kept per experiment under
        ``irisdag:judged:<experiment>:<s>``, 8 bytes a field.
        """
        tokens = np.asarray(tokens, dtype=np.uint64)
        owned = np.zeros(len(tokens), dtype=bool)
        if not len(tokens):
            return owned
        raw = tokens.astype(">u8").tobytes()
        shards = (tokens % np.uint64(JUDGED_SHARDS)).tolist()
        me = partition.encode("utf-8")
        client = self.client()
        keyspace = self._keys()
        for start in range(0, len(tokens), CLAIM_CHUNK):
            stop = min(len(tokens), start + CLAIM_CHUNK)
            pipe = client.pipeline(transaction=False)
            for i in range(start, stop):
                name, fld = keyspace.judged(experiment, shards[i]), raw[8 * i:8 * i + 8]
                pipe.hsetnx(name, fld, me)
                pipe.hget(name, fld)
            replies = pipe.execute()
            owned[start:stop] = [r == me for r in replies[1::2]]
        return owned

    def release_claims(self, experiment: str | None = None) -> int:
        """Delete the input claims (``claim_inputs``) of an experiment that has ended; returns the keys removed.

        Without ``experiment``: the one routing names, once routing names no challenger any more
        (promote, abort and rollback end an experiment and keep its id as ``salt``). With it: that
        experiment, unless routing still runs it. Its claims are never read again. The scoring user
        runs this (it may UNLINK ``irisdag:judged:*``; the routing user, which ends experiments, may
        not): the next window's comparison, the start of the next experiment and ``delete_version``
        call it. The experiment is marked (``claims_released``), so a later call costs two reads;
        an experiment without a record made no claims.
        """
        routing = self.routing()
        if experiment is None:
            experiment = routing.salt if not routing.challenger else ""
        elif experiment == routing.salt and routing.challenger:
            return 0  # still running
        if not experiment:
            return 0
        client, keyspace = self.client(), self._keys()
        record = keyspace.experiment_prefix + experiment
        if not client.exists(record) or client.hexists(record, "claims_released"):
            return 0
        removed = self._unlink([keyspace.judged(experiment, s) for s in range(JUDGED_SHARDS)])
        client.hset(record, "claims_released", json.dumps(_now()))
        return removed

    def evidence_all(self, experiment: str) -> dict[str, dict]:
        """Every partition's evidence counts for an experiment."""
        raw = self.client().hgetall(self._keys().evidence_prefix + experiment)
        return {_s(p): json.loads(v) for p, v in sorted(raw.items())}

    def experiment_put(self, experiment: str, fields: dict) -> None:
        """Record an experiment's settings and its strategy's state (JSON values)."""
        self.client().hset(self._keys().experiment_prefix + experiment,
                           mapping={k: json.dumps(v, sort_keys=True, default=str) for k, v in fields.items()})

    def experiment_get(self, experiment: str) -> dict | None:
        """An experiment's settings and state, or None when it was never started."""
        raw = self.client().hgetall(self._keys().experiment_prefix + experiment)
        return {_s(k): json.loads(v) for k, v in raw.items()} if raw else None


# ---- the Dagster resource -------------------------------------------------------

def _dagster_resource_class():
    import dagster as dg
    from pydantic import Field

    class ServingStore(dg.ConfigurableResource, StoreClient):
        """The serving store as a Dagster resource (`StoreClient`'s operations).

        ``redis_url`` empty means the embedded server (`irisdag.store.embedded`);
        otherwise a ``redis://`` or ``rediss://`` URL with user and password.
        """

        redis_url: str = Field(
            default="",
            description="redis:// or rediss:// URL (user and password in the URL); empty: the embedded server.")
        routing_url: str = Field(
            default="",
            description="URL of the Redis routing user, used only to change routing (the Lua `route`) and to "
                        "audit refused routing attempts (IRISDAG_ROUTING_REDIS_URL); empty: redis_url.")

        def setup_for_execution(self, context: dg.InitResourceContext) -> None:
            """At the start of a run (or sensor tick), before any step: Redis must answer.

            Without this a run with Redis down would run its Redis-free steps (files
            written, assets materialized) and fail later on a bare socket error that
            names no URL. Now it fails at resource initialization, changing nothing,
            with StoreUnavailable naming the URL (never its password).
            """
            self.ping()

    ServingStore.__module__, ServingStore.__qualname__ = __name__, "ServingStore"
    return ServingStore


def __getattr__(name: str):
    # Dagster is imported only when something asks for the resource class: the
    # command line's lookup and status use StoreClient and start in a fraction of a second.
    if name == "ServingStore":
        cls = globals()["ServingStore"] = _dagster_resource_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
