"""Modules imported on first use. The command line's lookup and status need neither numpy
nor pandas; importing numpy alone costs about a third of a lookup's start-up."""
from __future__ import annotations

import importlib


class LazyModule:
    """Stands for a module until an attribute is first read, then imports it."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self._name), attr)


numpy = LazyModule("numpy")
