"""The Redis serving store (DESIGN §3): the resource, its Lua library, the embedded server."""
from irisdag.store import embedded
from irisdag.store.resource import (
    LABELS,
    StoreClient,
    StoreError,
    StoreUnavailable,
    close_clients,
    lua_source,
    redact_url,
)

__all__ = [
    "LABELS",
    "ServingStore",
    "StoreClient",
    "StoreError",
    "StoreUnavailable",
    "close_clients",
    "embedded",
    "lua_source",
    "redact_url",
]


def __getattr__(name: str):
    if name == "ServingStore":  # imports Dagster: only when asked for
        from irisdag.store.resource import ServingStore

        return ServingStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
