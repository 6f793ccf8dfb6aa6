"""The Redis serving store (DESIGN §3): the resource, its Lua library, the embedded server.

The names below are imported on first use: `irisdag.store.resource` imports redis-py
(about 0.2 s), which the command line's lookup (`irisdag.store.consumer`) does without.
"""
from __future__ import annotations

import importlib

_FROM_RESOURCE = ("LABELS", "ServingStore", "StoreClient", "StoreError", "StoreUnavailable", "close_clients",
                  "lua_source", "redact_url")

__all__ = [*_FROM_RESOURCE, "embedded"]


def __getattr__(name: str):
    if name in _FROM_RESOURCE:  # ServingStore imports Dagster: only when asked for
        return getattr(importlib.import_module("irisdag.store.resource"), name)
    if name == "embedded":
        return importlib.import_module("irisdag.store.embedded")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
