"""The Dagster instance the CLI, the UI and the tests share.

DAGSTER_HOME defaults to the project's local state folder; the root
``dagster.yaml`` is copied there so that the embedded default is configured by
the file in the repository.
"""
from __future__ import annotations

import contextlib
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
    instance = DagsterInstance.get()
    _reuse_sqlite_engines(instance)
    return instance


def _reuse_sqlite_engines(instance) -> None:
    """One SQLAlchemy engine per SQLite file for this process's instance.

    Dagster's SQLite storages build an engine for every use and throw it away: the
    event log one for every event (about 220 in a demo), each time running the
    dialect's first-connect setup, which costs more than the insert. Here each file
    keeps one engine. Connections still open and close with every use (NullPool, as
    Dagster's), so each close still checkpoints the WAL into the run's file, which a
    UI watching the run waits for. The files, their schema and every statement stay
    Dagster's. Only the exact local classes are changed, and only on this instance
    object (the CLI's demo and rollback): another storage, or a Dagster whose
    internals differ, keeps its own code.
    """
    import threading

    from dagster._core.storage.event_log.sqlite import sqlite_event_log
    from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engines: dict[str, object] = {}
    lock = threading.Lock()

    def engine_for(conn_string: str, **kwargs):
        with lock:
            engine = engines.get(conn_string)
            if engine is None:
                engine = engines[conn_string] = create_engine(conn_string, poolclass=NullPool, **kwargs)
            return engine

    events = instance.event_log_storage
    if type(events) is sqlite_event_log.SqliteEventLogStorage and all(
            hasattr(events, a) for a in ("_db_lock", "_initialized_dbs", "_initdb", "conn_string_for_shard")) \
            and hasattr(sqlite_event_log, "SQLITE_BUSY_TIMEOUT_SECONDS"):
        timeout = {"timeout": sqlite_event_log.SQLITE_BUSY_TIMEOUT_SECONDS}

        @contextlib.contextmanager
        def _connect(shard: str):  # SqliteEventLogStorage._connect, with the engine kept
            with events._db_lock:
                engine = engine_for(events.conn_string_for_shard(shard), connect_args=timeout)
                if shard not in events._initialized_dbs:
                    with _alembic_scripts_read_once():
                        events._initdb(engine)
                    events._initialized_dbs.add(shard)
                with engine.connect() as conn:
                    with conn.begin():
                        yield conn

        events._connect = _connect
    runs = instance.run_storage
    if type(runs) is SqliteRunStorage and isinstance(getattr(runs, "_conn_string", None), str):
        @contextlib.contextmanager
        def connect():  # SqliteRunStorage.connect, with the engine kept
            with engine_for(runs._conn_string).connect() as conn:
                with conn.begin():
                    yield conn

        runs.connect = connect


_ALEMBIC_SCRIPTS: dict = {}


@contextlib.contextmanager
def _alembic_scripts_read_once():
    """While Dagster sets up a run's event log file (it checks and stamps its alembic
    revision), alembic's migration scripts are read once a process, not twice a run:
    reading them (about a hundred files) was most of a run's storage setup."""
    from alembic.script import ScriptDirectory

    original = ScriptDirectory.__dict__.get("from_config")
    if not isinstance(original, classmethod):
        yield
        return

    def from_config(cls, config):
        key = (cls, config.config_file_name, config.get_main_option("script_location"))
        script = _ALEMBIC_SCRIPTS.get(key)
        if script is None:
            script = _ALEMBIC_SCRIPTS[key] = original.__func__(cls, config)
        return script

    ScriptDirectory.from_config = classmethod(from_config)
    try:
        yield
    finally:
        ScriptDirectory.from_config = original


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
