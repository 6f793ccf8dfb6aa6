"""The Redis serving store (DESIGN §3): the resource, its Lua library, the embedded server."""
from irisdag.store import embedded
from irisdag.store.resource import (
    LABELS,
    ServingStore,
    StoreError,
    StoreUnavailable,
    close_clients,
    lua_source,
    redact_url,
)

__all__ = [
    "LABELS",
    "ServingStore",
    "StoreError",
    "StoreUnavailable",
    "close_clients",
    "embedded",
    "lua_source",
    "redact_url",
]
