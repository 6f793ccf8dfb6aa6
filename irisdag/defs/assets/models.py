"""Model assets: the serving champion and a retrained challenger, each an
XGBoost JSON artifact whose version is the SHA-256 of the file."""

from pathlib import Path

import numpy as np
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from irisdag.store.resource import ServingStore
from irisdag import serving
from irisdag.defs import settings
from irisdag.defs.settings import REDIS_RETRY
from irisdag.defs.retries import retry_transient_only
from irisdag.defs.assets.data import raw_iris
from irisdag.defs.resources import ArtifactStore
from irisdag.models.artifacts import import_model, save_model
from irisdag.models.training import train_model

CHAMPION_POINTER = "champion.version"
CHALLENGER_POINTER = "challenger.version"


def read_pointer(artifacts: ArtifactStore, name: str) -> str:
    path = artifacts.models_dir() / name
    return path.read_text().strip() if path.exists() else ""


def write_pointer(artifacts: ArtifactStore, name: str, version: str) -> None:
    path = artifacts.models_dir() / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(version + "\n")
    tmp.replace(path)


def trained_keys_path(artifacts: ArtifactStore, version: str) -> Path:
    return artifacts.models_dir() / f"{version}.trained_keys.npy"


def save_trained_keys(artifacts: ArtifactStore, version: str, X: np.ndarray) -> int:
    """The keys a model learned from: the comparison never judges a model on them."""
    keys = np.unique(serving.prepare(X).keys)
    np.save(trained_keys_path(artifacts, version), keys)
    return len(keys)


def load_trained_keys(artifacts: ArtifactStore, version: str) -> np.ndarray:
    path = trained_keys_path(artifacts, version)
    return np.load(path) if path.exists() else np.array([], dtype="U64")


def current_champion(serving_store: ServingStore, artifacts: ArtifactStore) -> str:
    """The routing's champion once something is served, else the bootstrap champion."""
    return serving_store.routing().champion or read_pointer(artifacts, CHAMPION_POINTER)


class ChampionConfig(Config):
    model_path: str = Field(
        default=settings.env("IRISDAG_CHAMPION_MODEL"),
        description="XGBoost JSON model to import as the first champion; empty = train one on the iris table.")


@asset(
    retry_policy=REDIS_RETRY,
    group_name="models", kinds={"xgboost"}, deps=[raw_iris],
    description=(
        "The serving model. Once routing serves a champion this is that version (promotions "
        "and rollbacks record a new materialization); before that it is imported from "
        "IRISDAG_CHAMPION_MODEL (an XGBoost JSON file such as the course's model.json) or "
        "trained on the iris table. Stored as XGBoost JSON; version = SHA-256 of the file."),
)
@retry_transient_only
def champion_model(context: AssetExecutionContext, config: ChampionConfig, artifacts: ArtifactStore,
                   serving_store: ServingStore) -> MaterializeResult:
    artifacts.pull("models")
    served = serving_store.routing().champion
    if served:
        version, source = served, "routing (the champion being served)"
        info = serving_store.version_info(version) or {}
    else:
        if config.model_path:
            art = import_model(artifacts.localize(config.model_path), artifacts.models_dir(), source=config.model_path)
            source = f"imported from {config.model_path}"
        else:
            from irisdag.defs.assets.data import iris_split
            split = iris_split()
            X, y = split.X_train, split.y_train
            booster = train_model(X, y, seed=settings.SEED)
            art = save_model(booster, artifacts.models_dir(), {"source": "trained on the iris table", "rows": len(y)})
            save_trained_keys(artifacts, art.version, X)
            source = "trained on the iris table"
        version = art.version
        serving_store.register_version(version, art.digest, role="champion", extra={"source": source})
        info = serving_store.version_info(version) or {}
    write_pointer(artifacts, CHAMPION_POINTER, version)
    artifacts.push("models")
    return MaterializeResult(metadata={
        "version": version,
        "source": source,
        "validated": info.get("validated", "pending"),
        "model_file": str(artifacts.models_dir() / f"{version}.json"),
    })


class ChallengerConfig(Config):
    seed: int = Field(default=settings.SEED, description="Training seed (training is deterministic).")
    max_depth: int = Field(default=3, description="XGBoost max_depth.")
    rounds: int = Field(default=50, description="Boosting rounds.")
    include_feedback: bool = Field(default=True, description="Train on the accumulated feedback too; False trains "
                                                             "on the iris table alone (a feedback-free baseline).")


@asset(
    retry_policy=REDIS_RETRY,
    group_name="models", kinds={"xgboost"}, deps=[raw_iris],
    description=(
        "A challenger retrained with XGBoost on the labelled training table (iris table plus "
        "accumulated feedback). Stored as XGBoost JSON with its SHA-256 version; the keys it "
        "learned from are recorded so the comparison never judges it on them."),
)
@retry_transient_only
def challenger_model(context: AssetExecutionContext, config: ChallengerConfig, artifacts: ArtifactStore,
                     serving_store: ServingStore) -> MaterializeResult:
    artifacts.pull("models", "data/raw_iris.npz")
    data = np.load(artifacts.data_path("raw_iris.npz"))
    X, y = data["X"], data["y"]
    if not config.include_feedback:
        X, y = X[: int(data["iris_rows"])], y[: int(data["iris_rows"])]
    params = {"max_depth": config.max_depth, "num_boost_round": config.rounds}
    booster = train_model(X, y, seed=config.seed, params=params)
    art = save_model(booster, artifacts.models_dir(),
                     {"source": "retrained on raw_iris", "rows": int(len(y)), "params": params, "seed": config.seed})
    n_keys = save_trained_keys(artifacts, art.version, X)
    serving_store.register_version(art.version, art.digest, role="challenger",
                                   extra={"source": "retrained on raw_iris", "trained_rows": str(len(y))})
    write_pointer(artifacts, CHALLENGER_POINTER, art.version)
    artifacts.push("models")
    info = serving_store.version_info(art.version) or {}
    return MaterializeResult(metadata={
        "version": art.version,
        "trained_rows": int(len(y)),
        "trained_keys": n_keys,
        "params": MetadataValue.json(params),
        "validated": info.get("validated", "pending"),
        "model_file": str(art.path),
    })
