"""The Dagster instance the CLI, the UI and the tests share.

DAGSTER_HOME defaults to the project's local state folder; the root
``dagster.yaml`` is copied there so that the embedded default is configured by
the file in the repository.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from irisdag.paths import PROJECT_DIR, state_dir

FALLBACK_YAML = "telemetry:\n  enabled: false\nnux:\n  enabled: false\n"


def ensure_dagster_home() -> Path:
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"])  # the user's instance: never rewrite its dagster.yaml
    home = state_dir()
    os.environ["DAGSTER_HOME"] = str(home)
    target = home / "dagster.yaml"
    source = PROJECT_DIR / "dagster.yaml"
    if source.exists():
        if not target.exists() or target.read_bytes() != source.read_bytes():
            shutil.copyfile(source, target)
    elif not target.exists():
        target.write_text(FALLBACK_YAML)
    return home


def get_instance():
    from dagster import DagsterInstance

    ensure_dagster_home()
    _fast_local_sqlite()
    return DagsterInstance.get()


def _fast_local_sqlite() -> None:
    """synchronous=OFF on the local instance's SQLite files (this process only).

    Dagster's SQLite storage opens a connection per event and commits each one;
    with SQLite's default every commit waits for two fsyncs, which made the demo
    spend more time in fsync than in the pipeline. Without them a commit is
    handed to the OS: the database stays intact when a process dies (only a
    power loss can lose the newest events), acceptable for a local state folder;
    production uses Postgres. (WAL mode does not help here: each event's
    connection is the last one open, so every close checkpoints the WAL.)
    """
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if getattr(_fast_local_sqlite, "done", False):
        return

    @event.listens_for(Engine, "connect")
    def _pragmas(dbapi_connection, _record):
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.execute("PRAGMA synchronous=OFF")

    _fast_local_sqlite.done = True
