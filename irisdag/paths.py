"""Where local state lives: the project's local state folder.

``IRISDAG_HOME`` wins; otherwise ``.irisdag/`` beside ``setup.py`` when running
from a checkout (the usual case), else ``~/.irisdag``. It is also DAGSTER_HOME
when that is unset, so ``irisdag status`` after ``irisdag demo`` sees the same
instance and store.
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent


def state_dir() -> Path:
    env = os.environ.get("IRISDAG_HOME")
    if env:
        path = Path(env)
    elif (PROJECT_DIR / "setup.py").exists():
        path = PROJECT_DIR / ".irisdag"
    else:
        path = Path.home() / ".irisdag"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sub_dir(*parts: str) -> Path:
    path = state_dir().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
