"""Deterministic routing of a lookup (DESIGN §3).

bucket = int(first 8 hex of SHA-1(salt + ":" + key), 16) mod 10000; buckets
below ``holdout_bp`` are held out, the next ones go to the arms of ``shares``
in order, the rest to the champion. The Lua ``lookup`` function implements the
same rule; tests hold the two together.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

BASIS_POINTS = 10_000
ROUTES = ("champion", "challenger", "holdout", "miss", "fallback")


def bucket(salt: str, key: str) -> int:
    digest = hashlib.sha1(f"{salt}:{key}".encode("utf-8")).hexdigest()
    return int(digest[:8], 16) % BASIS_POINTS


def buckets_of_digests(salt: str, digests):
    """`bucket` of many raw 32-byte keys (numpy ``S32``, or bytes joined) at once, as uint16:
    the key hashed is each digest's 64-hex form. A lookup client sends these with its keys so
    that Redis skips the SHA-1 a key during an experiment (the Lua checks the salt)."""
    import numpy as np

    if isinstance(digests, (bytes, bytearray, memoryview)):
        blob = bytes(digests)
    else:
        blob = np.ascontiguousarray(digests, dtype="S32").tobytes()
    if len(blob) % 32:
        raise ValueError(f"buckets_of_digests: {len(blob)} bytes is not a whole number of 32-byte keys")
    n = len(blob) // 32
    if n == 0:
        return np.zeros(0, np.uint16)
    # salt:hex of every key made by numpy, then one SHA-1 a key (the only per-key Python work);
    # the first 4 bytes of each 20-byte digest are its first 8 hex digits.
    salted = np.char.add(np.bytes_(f"{salt}:".encode("utf-8")), np.frombuffer(blob.hex().encode("ascii"), "S64"))
    sha1 = hashlib.sha1
    digests = b"".join([sha1(k).digest() for k in salted.tolist()])
    return (np.frombuffer(digests, ">u4").reshape(n, 5)[:, 0] % BASIS_POINTS).astype(np.uint16)


_SHARE_ITEM = re.compile(r'"([^"]+)"\s*:\s*(\d+)')


def parse_shares(text: str | None) -> list[tuple[str, int]]:
    """Shares JSON object to an ordered list; order matters (arms take buckets in order)."""
    if not text:
        return []
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError(f"shares must be a JSON object, got {text!r}")
    items = [(str(k), int(v)) for k, v in obj.items()]
    for v, bp in items:
        if bp < 0 or bp > BASIS_POINTS:
            raise ValueError(f"share of {v} is {bp} basis points; must be within 0..10000")
    return items


def dump_shares(items) -> str:
    pairs = items.items() if isinstance(items, dict) else items
    return json.dumps({str(k): int(v) for k, v in pairs}, separators=(",", ":"))


@dataclass(frozen=True)
class Routing:
    champion: str = ""
    previous: str = ""
    challenger: str = ""
    strategy: str = ""
    shares: tuple = field(default_factory=tuple)  # ((version, bp), ...)
    holdout_bp: int = 0
    salt: str = ""
    epoch: int = 0
    updated_at: str = ""

    @classmethod
    def from_hash(cls, h: dict) -> "Routing":
        def s(name):
            v = h.get(name, "")
            return v.decode() if isinstance(v, bytes) else (v or "")
        return cls(
            champion=s("champion"), previous=s("previous"), challenger=s("challenger"),
            strategy=s("strategy"), shares=tuple(parse_shares(s("shares"))),
            holdout_bp=int(s("holdout_bp") or 0), salt=s("salt"),
            epoch=int(s("epoch") or 0), updated_at=s("updated_at"))

    def to_hash(self) -> dict:
        return {
            "champion": self.champion, "previous": self.previous, "challenger": self.challenger,
            "strategy": self.strategy, "shares": dump_shares(self.shares),
            "holdout_bp": str(int(self.holdout_bp)), "salt": self.salt,
            "epoch": str(int(self.epoch)), "updated_at": self.updated_at,
        }

    def role_of(self, version: str) -> str:
        """A version's role, from routing alone (a version's stored `role` field can be stale):
        champion, challenger (the challenger or any arm of `shares`), previous, or "-"."""
        if version == self.champion:
            return "champion"
        if version == self.challenger or any(version == v for v, _ in self.shares):
            return "challenger"
        if version == self.previous:
            return "previous"
        return "-"

    def versions(self) -> list[str]:
        """Every version this routing can send traffic to or roll back to."""
        out = []
        for v in [self.champion, self.previous, self.challenger, *[v for v, _ in self.shares]]:
            if v and v not in out:
                out.append(v)
        return out


def route_bucket(b: int, routing: Routing) -> tuple[str, str | None]:
    """(route, version) for a bucket: holdout, a non-champion arm, or the champion."""
    if b < routing.holdout_bp:
        return "holdout", None
    edge = routing.holdout_bp
    for version, bp in routing.shares:
        edge += bp
        if b < edge:
            return "challenger", version
    return "champion", routing.champion or None


def route_key(key: str, routing: Routing) -> tuple[str, str | None]:
    if routing.holdout_bp == 0 and not routing.shares:
        return "champion", routing.champion or None
    return route_bucket(bucket(routing.salt, key), routing)
