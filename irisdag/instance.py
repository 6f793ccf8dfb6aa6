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
    return DagsterInstance.get()
