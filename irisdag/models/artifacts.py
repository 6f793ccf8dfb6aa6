"""Model artifacts: XGBoost JSON files, content addressed, digest-checked on load.

A model version is the lowercase hex SHA-256 of its XGBoost JSON file. The
store is a directory holding ``<version>.json`` (the model, exactly the bytes
that were hashed) and ``<version>.meta.json`` (training info). Files are
written to a temporary file and renamed into place, so a reader never sees a
half-written model. Models are never pickled, and pickles are never loaded.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xgboost as xgb

from irisdag.core.keys import N_FEATURES, SCHEME, InputError, invalid_mask, validate_features
from irisdag.models.validation import ModelFormatError, check_model_bytes

CLASSES = ("setosa", "versicolor", "virginica")
N_CLASSES = len(CLASSES)
OBJECTIVES = ("multi:softprob", "multi:softmax")
MODEL_SUFFIX = ".json"
META_SUFFIX = ".meta.json"
MAX_MODEL_BYTES = 256 * 1024 * 1024
PREDICT_CHUNK_ROWS = 262_144

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class DigestMismatch(ValueError):
    """The model file's SHA-256 is not the one expected."""

    def __init__(self, path, expected: str, found: str):
        super().__init__(
            f"model file {path}: SHA-256 digest mismatch: expected {expected}, found {found}; "
            "the file was changed or corrupted and is not loaded")
        self.path = str(path)
        self.expected = expected
        self.found = found


@dataclass(frozen=True)
class ModelArtifact:
    """A stored model: ``version`` == ``digest`` == SHA-256 of the JSON file at ``path``."""

    version: str
    path: Path
    digest: str
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def meta_path(self) -> Path:
        return self.path.with_name(self.version + META_SUFFIX)

    def load(self) -> xgb.Booster:
        """The booster, after checking the file's digest again."""
        return load_model(self.path, self.version, self.digest)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_version(text) -> bool:
    return isinstance(text, str) and bool(_HEX64.match(text))


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, os.PathLike)):
        return os.fspath(obj)
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _describe_json_model(data: bytes, name: str) -> dict:
    """Check the bytes are a sound XGBoost JSON model for 4 features and 3 classes; return facts about it.

    Size and format first (pickles, archives), then the whole structure
    (``validation.check_model_bytes``): XGBoost never sees bytes that fail here.
    """
    if len(data) == 0:
        raise ModelFormatError(f"{name}: empty file, not an XGBoost JSON model", "empty")
    if len(data) > MAX_MODEL_BYTES:
        raise ModelFormatError(f"{name}: {len(data)} bytes, larger than the {MAX_MODEL_BYTES} byte limit for a model",
                               "size")
    head = data[:2]
    if head[:1] == b"\x80" or head in (b"(d", b"(l", b"(i", b"(c", b"}q", b"]q", b"cc"):
        raise ModelFormatError(
            f"{name}: looks like a Python pickle; irisdag never loads pickled models, "
            "save the model as XGBoost JSON (booster.save_model('model.json'))", "pickle")
    if head == b"PK":
        raise ModelFormatError(f"{name}: is a zip archive, not an XGBoost JSON model", "archive")
    # The structural check is a function of the bytes alone: once per content and process
    # (a demo loads each model about six times; the check is most of a load).
    digest = sha256_bytes(data)
    facts = _CHECKED.get(digest)
    if facts is None:
        facts = check_model_bytes(data, name)
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.pop(next(iter(_CHECKED)))
        _CHECKED[digest] = facts
    return dict(facts)


_CHECKED: dict[str, dict] = {}  # SHA-256 of model bytes that passed -> their facts
_CHECKED_MAX = 256


def _booster_from_bytes(data: bytes, name: str, checked: bool = False) -> xgb.Booster:
    """The booster of checked model bytes: every load goes through the structural check first."""
    if not checked:
        _describe_json_model(data, name)
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(data))
    except xgb.core.XGBoostError as err:
        raise ModelFormatError(f"{name}: XGBoost could not load the model: {str(err).splitlines()[0]}",
                               "xgboost-refused") from None
    if booster.num_features() != N_FEATURES:
        raise ModelFormatError(f"{name}: model takes {booster.num_features()} features, an iris model takes {N_FEATURES}")
    return booster


def _store(data: bytes, directory, meta: Mapping[str, Any]) -> ModelArtifact:
    """Write model bytes and sidecar into the store under their digest."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    version = sha256_bytes(data)
    path = directory / (version + MODEL_SUFFIX)
    if not (path.exists() and sha256_file(path) == version):
        _atomic_write(path, data)
    meta_path = directory / (version + META_SUFFIX)
    record = dict(meta)
    if meta_path.exists():
        try:
            old = json.loads(meta_path.read_text("utf-8"))
        except (OSError, ValueError):
            old = {}
        if isinstance(old, dict):
            # Same bytes, same model: the first record's creation time stands, and
            # what it knew is kept unless the new record says something else.
            merged = dict(old)
            merged.update({k: v for k, v in record.items() if v is not None or k not in old})
            if old.get("created_at"):
                merged["created_at"] = old["created_at"]
            record = merged
    record.update(version=version, digest=version, file=path.name, bytes=len(data))
    _atomic_write(meta_path, json.dumps(record, indent=2, sort_keys=True, default=_json_default).encode("utf-8"))
    record = json.loads(meta_path.read_text("utf-8"))
    return ModelArtifact(version=version, path=path, digest=version, meta=record)


def _base_meta(facts: dict, meta: Mapping[str, Any] | None) -> dict:
    record = {
        "rows": None,
        "trained_keys": None,
        "params": None,
        "source": None,
        "created_at": _now(),
        "format": "xgboost-json",
        "scheme": SCHEME,
        "classes": list(CLASSES),
        "xgboost_version": xgb.__version__,
    }
    record.update(facts)
    record.update(meta or {})
    return record


def save_model(booster: xgb.Booster, directory, meta: Mapping[str, Any] | None = None) -> ModelArtifact:
    """Store a booster as XGBoost JSON under ``<directory>/<sha256>.json`` with a ``.meta.json`` sidecar.

    ``meta`` is the training info (``rows``, ``trained_keys`` file name,
    ``params``, ``source``, anything else JSON-able); ``created_at``, digest
    and model facts are added. Same model bytes, same version.
    """
    data = bytes(booster.save_raw(raw_format="json"))
    facts = _describe_json_model(data, "booster")
    facts["num_boosted_rounds"] = booster.num_boosted_rounds()
    return _store(data, directory, _base_meta(facts, meta))


def import_model(path_or_bytes, directory, source: str | None = None, meta: Mapping[str, Any] | None = None) -> ModelArtifact:
    """Copy an external XGBoost JSON model (e.g. the course's model.json) into the store, byte for byte.

    Refuses, with a ``ModelFormatError`` naming the file: pickles, non-JSON,
    JSON that is not an XGBoost model, models for other than 4 features and
    3 classes, files XGBoost cannot load. The version is the SHA-256 of the
    original bytes.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
        name = source or "<model bytes>"
    else:
        p = Path(path_or_bytes)
        name = str(p)
        if not p.is_file():
            raise FileNotFoundError(f"model file {name} does not exist")
        size = p.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise ModelFormatError(f"{name}: {size} bytes, larger than the {MAX_MODEL_BYTES} byte limit for a model")
        data = p.read_bytes()
        source = source or str(p.resolve())
    facts = _describe_json_model(data, name)
    booster = _booster_from_bytes(data, name, checked=True)
    facts["num_boosted_rounds"] = booster.num_boosted_rounds()
    try:
        out = _inplace_predict(booster, np.array([[5.0, 2.9, 1.1, 0.4]]))
    except xgb.core.XGBoostError as err:
        raise ModelFormatError(f"{name}: XGBoost could not predict with the model: {str(err).splitlines()[0]}",
                               "xgboost-refused") from None
    if out.size not in (1, N_CLASSES):
        raise ModelFormatError(f"{name}: model predicts {out.size} outputs per row, expected {N_CLASSES} class probabilities")
    record = {"imported": True, "source": source}
    record.update(meta or {})
    return _store(data, directory, _base_meta(facts, record))


def model_path(directory_or_path, version: str | None = None) -> Path:
    """The model file: ``directory_or_path`` itself when it is a file, else ``<dir>/<version>.json``."""
    p = Path(directory_or_path)
    if p.is_dir():
        if not version:
            raise ValueError(f"{p} is a directory: a model version is needed to find the file")
        return p / (version + MODEL_SUFFIX)
    return p


def load_model(directory_or_path, version: str | None = None, expected_digest: str | None = None) -> xgb.Booster:
    """Load a stored model after recomputing its SHA-256.

    The expected digest is ``expected_digest``, else ``version`` (versions are
    digests), else the file name's 64-hex stem. Raises ``DigestMismatch``
    (a ValueError) naming both digests when the file's bytes differ; the bytes
    that were hashed are the bytes loaded.
    """
    path = model_path(directory_or_path, version)
    expected = expected_digest or version
    if not expected:
        stem = path.name[: -len(MODEL_SUFFIX)] if path.name.endswith(MODEL_SUFFIX) else path.stem
        if not is_version(stem):
            raise ValueError(f"model file {path}: no expected digest given and the file name is not one")
        expected = stem
    expected = expected.lower()
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    data = path.read_bytes()
    found = sha256_bytes(data)
    if found != expected:
        raise DigestMismatch(path, expected, found)
    return _booster_from_bytes(data, str(path))


def read_meta(directory, version: str) -> dict:
    """The sidecar record of a stored version ({} when there is none)."""
    p = Path(directory) / (version + META_SUFFIX)
    if not p.exists():
        return {}
    return json.loads(p.read_text("utf-8"))


def get_artifact(directory, version: str) -> ModelArtifact:
    """The artifact of a stored version (no digest check here: ``load`` checks)."""
    path = Path(directory) / (version + MODEL_SUFFIX)
    if not path.is_file():
        raise FileNotFoundError(f"model version {version} is not in the store {directory}")
    return ModelArtifact(version=version, path=path, digest=version, meta=read_meta(directory, version))


def list_versions(directory) -> list[str]:
    """Stored versions, oldest file first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [p for p in d.iterdir() if p.name.endswith(MODEL_SUFFIX) and not p.name.endswith(META_SUFFIX)
             and is_version(p.name[: -len(MODEL_SUFFIX)])]
    found.sort(key=lambda p: (p.stat().st_mtime, p.name))
    return [p.name[: -len(MODEL_SUFFIX)] for p in found]


def _check_features(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1 and X.shape[0] == N_FEATURES:
        X = X.reshape(1, N_FEATURES)
    if X.ndim != 2 or X.shape[1] != N_FEATURES:
        raise ValueError(f"features must have shape (n, {N_FEATURES}), got {X.shape}")
    return X


# Up to this many rows a prediction runs on one thread: an iris model predicts ~1 row a
# microsecond, while starting and joining OpenMP's threads costs milliseconds (tens on a
# busy machine). Larger chunks use every core (nthread 0).
SINGLE_THREAD_ROWS = 20_000


def _inplace_predict(booster: xgb.Booster, X: np.ndarray, threads: int | None = None) -> np.ndarray:
    """XGBoost's prediction of valid rows, on ``threads`` threads or the count that suits their number."""
    booster.set_param({"nthread": threads if threads is not None else 1 if len(X) <= SINGLE_THREAD_ROWS else 0})
    return np.asarray(booster.inplace_predict(X, validate_features=False))


def predict_proba(booster: xgb.Booster, X, *, chunk_rows: int = PREDICT_CHUNK_ROWS) -> np.ndarray:
    """Class probabilities float32 (N, 3) of a multi:softprob model, in chunks."""
    X = _check_features(X)
    out = np.empty((len(X), N_CLASSES), dtype=np.float32)
    for start in range(0, len(X), chunk_rows):
        part = X[start:start + chunk_rows]
        _refuse_invalid(part, start)
        p = _inplace_predict(booster, part)
        if p.ndim != 2 or p.shape[1] != N_CLASSES:
            raise ValueError(f"model output has shape {p.shape}; probabilities need a multi:softprob model")
        out[start:start + len(part)] = p
    return out


def _refuse_invalid(part: np.ndarray, offset: int) -> None:
    """Refuse the first invalid row with the validation's own InputError (row = 1-based row of ``X``)."""
    bad = invalid_mask(part)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        validate_features([float(v) for v in part[i]], row=offset + i + 1)  # raises, naming value and position
        raise InputError(f"{part[i].tolist()} is not a valid input", value=part[i].tolist(), row=offset + i + 1)


def predict_labels(booster: xgb.Booster, X, *, chunk_rows: int = PREDICT_CHUNK_ROWS,
                   threads: int | None = None) -> np.ndarray:
    """Class indices int8 (N,) for float (N, 4) features: argmax of softprob, or softmax's class.

    Predicts ``chunk_rows`` rows at a time so memory stays bounded for large N.
    ``threads``: XGBoost threads (default: one for small inputs, all cores above).
    Rows must be valid inputs (finite, |x| < 1e6): validation is the batch's
    job, and NaN would silently mean "missing" to XGBoost.
    """
    X = _check_features(X)
    out = np.empty(len(X), dtype=np.int8)
    for start in range(0, len(X), chunk_rows):
        part = X[start:start + chunk_rows]
        _refuse_invalid(part, start)
        p = _inplace_predict(booster, part, threads)
        if p.ndim == 2 and p.shape[1] == N_CLASSES:
            labels = p.argmax(axis=1)
        elif p.ndim == 1 or (p.ndim == 2 and p.shape[1] == 1):
            labels = np.rint(p.reshape(-1))
        else:
            raise ValueError(f"model output has shape {p.shape}; expected ({len(part)}, {N_CLASSES}) or ({len(part)},)")
        if len(labels) and (labels.min() < 0 or labels.max() >= N_CLASSES):
            raise ValueError(f"model predicted a class outside 0..{N_CLASSES - 1}")
        out[start:start + len(part)] = labels
    return out
