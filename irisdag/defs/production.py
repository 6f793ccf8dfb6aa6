"""The production deployment (``IRISDAG_DEPLOYMENT=production``, DESIGN §5).

- Files between assets live in an S3 bucket (MinIO in ``docker-compose.yml``),
  reached through dagster-aws's ``S3Resource``. ``S3ArtifactStore`` keeps a
  local working copy under ``root()`` and syncs it at step boundaries: ``pull``
  downloads only objects that are missing locally or changed in the bucket,
  ``push`` uploads only files changed locally. Every upload carries the file's
  SHA-256 as object metadata; model files are still digest-checked before
  every load, so a swapped or corrupted object is refused, naming the expected
  and the found digest.
- Sources (``IRISDAG_BATCH_SOURCE``, ``IRISDAG_FEEDBACK_SOURCE``,
  ``IRISDAG_CHAMPION_MODEL``) may be ``s3://bucket/key`` URIs, e.g. the
  course's layout ``data/iris.csv``, ``data/iris_y.csv``, ``artifact/model.json``.
- The serving store is Redis from ``REDIS_URL`` (``redis://`` or ``rediss://``,
  the scoring user and its password in the URL); routing changes go as the
  routing user of ``IRISDAG_ROUTING_REDIS_URL`` (when set). Dagster's storage is
  Postgres, configured by the instance's own ``deploy/dagster.yaml``
  (``DAGSTER_POSTGRES_URL``), not by this code location.

Secrets (the Redis URL, the AWS keys) are given to the resources as
``EnvVar``s, so the UI shows the variable's name, never its value.

Redis ACL (``deploy/redis/users.acl.template``): the scoring user reads
``irisdag:*`` and writes answers, metadata and streams, each write command on
the keys it needs only (never ``irisdag:routing``); the routing user calls the
library's ``route`` (promote, rollback, abort, ramp runs); neither can load
functions: ``FUNCTION LOAD`` is server-wide (not scoped by key patterns), so the
Lua library is loaded by the admin user at deploy time with
``python -m irisdag.defs.production redis-init`` (a one-shot service in the
compose file, run from the same image as the code server, so the library
always matches the code). The consumer user may only look up and queue misses.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator, Mapping, Optional
from urllib.parse import urlsplit

import redis
from dagster import EnvVar
from dagster_aws.s3 import S3Resource
from pydantic import Field

from irisdag.defs.resources import ArtifactStore
from irisdag.paths import state_dir
from irisdag.store.resource import ServingStore, StoreUnavailable, redact_url

DEFAULT_PREFIX = "irisdag"
DEFAULT_REGION = "us-east-1"
MANIFEST_FILE = ".s3sync.json"
LOCK_FILE = ".s3sync.lock"
SOURCES_DIR = ".sources"        # downloaded s3:// sources (never pushed: dot folders are local only)
SINGLE_PUT_LIMIT = 64 << 20     # larger files go as multipart uploads
SHA256_METADATA = "sha256"      # x-amz-meta-sha256 on every uploaded object

# The course's bucket layout (DESIGN §1): file in the course folder -> key in the bucket.
COURSE_LAYOUT = {
    "iris.csv": "data/iris.csv",
    "iris_y.csv": "data/iris_y.csv",
    "model.json": "artifact/model.json",
}

# Redis ACL users (deploy/redis/users.acl.template) and the placeholders of their password hashes.
ACL_TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "redis" / "users.acl.template"
ACL_USERS = {"admin": "irisdag-admin", "scoring": "irisdag-scoring", "routing": "irisdag-routing",
             "consumer": "irisdag-consumer"}
ACL_PLACEHOLDERS = {role: f"@{role.upper()}_PASSWORD_SHA256@" for role in ACL_USERS}


class ProductionConfigError(ValueError):
    """The production deployment is missing a setting (the message names it)."""


# ---- helpers ------------------------------------------------------------------------

def _resolved(value):
    """An EnvVar's value (the resource was not initialized by Dagster), else the value itself."""
    if isinstance(value, EnvVar):
        return value.get_value()
    return value


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); ValueError naming the URI otherwise."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "s3" or not parts.netloc or not parts.path.strip("/"):
        raise ValueError(f"{uri!r} is not an s3://bucket/key URI")
    return parts.netloc, parts.path.lstrip("/")


def _file_digests(path: Path) -> tuple[str, str]:
    """(MD5 hex, SHA-256 hex) of a file, read once."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            md5.update(block)
            sha.update(block)
    return md5.hexdigest(), sha.hexdigest()


def _etag(raw: str | None) -> str:
    return (raw or "").strip('"')


def _simple_etag(etag: str) -> bool:
    """A single-part upload's ETag is the MD5 of the bytes; a multipart one has a '-N' suffix."""
    return len(etag) == 32 and "-" not in etag


def _stat(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _local_only(relative: str) -> bool:
    """Dot files and folders (temporary files, the manifest, downloaded sources) are never synced."""
    return any(part.startswith(".") for part in Path(relative).parts)


S3_SETTINGS = ("region_name", "endpoint_url", "aws_access_key_id", "aws_secret_access_key", "aws_session_token")
_CLIENTS: dict[tuple, object] = {}
_CLIENTS_LOCK = threading.Lock()


# ---- the artifact store on S3 -------------------------------------------------------------

class S3ArtifactStore(ArtifactStore):
    """Files between assets in an S3 bucket, with a local working copy under ``root()``.

    Keys are ``<prefix>/<path relative to root()>``, e.g.
    ``irisdag/models/<version>.json`` or ``irisdag/batches/<window>/keys.npy``.
    A small manifest (``.s3sync.json``, guarded by a file lock shared by the
    processes of one machine) remembers each synced file's ETag and local size
    and mtime, so unchanged files are neither downloaded nor uploaded again.
    ``pull`` and ``push`` return the relative paths they transferred.
    """

    bucket: str = Field(description="The bucket (IRISDAG_S3_BUCKET).")
    prefix: str = Field(default=DEFAULT_PREFIX, description="Key prefix of every file (IRISDAG_S3_PREFIX).")
    # dagster-aws S3Resource settings (EnvVars in production). Plain fields, not a nested
    # resource: a nested resource makes Dagster open this one as a context manager, which
    # callers that build contexts by hand (irisdag demo's sensor evaluation) do not do.
    region_name: Optional[str] = Field(default=None, description="AWS_REGION")
    endpoint_url: Optional[str] = Field(default=None, description="AWS_ENDPOINT_URL (MinIO, moto)")
    aws_access_key_id: Optional[str] = Field(default=None, description="AWS_ACCESS_KEY_ID")
    aws_secret_access_key: Optional[str] = Field(default=None, description="AWS_SECRET_ACCESS_KEY")
    aws_session_token: Optional[str] = Field(default=None, description="AWS_SESSION_TOKEN")

    # ---- plumbing -----------------------------------------------------------

    def root(self) -> Path:
        if self.base_dir:
            path = Path(self.base_dir)
        else:
            path = state_dir() / "s3-working-copy" / self._bucket() / (self._prefix().replace("/", "_") or "_")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _bucket(self) -> str:
        bucket = _resolved(self.bucket) or ""
        if not bucket:
            raise ProductionConfigError("the S3 artifact store needs a bucket (IRISDAG_S3_BUCKET)")
        return bucket

    def _prefix(self) -> str:
        return (_resolved(self.prefix) or "").strip("/")

    def key_for(self, relative: str) -> str:
        relative = relative.strip("/")
        prefix = self._prefix()
        return f"{prefix}/{relative}" if prefix and relative else (prefix or relative)

    def _relative(self, key: str) -> str:
        prefix = self._prefix()
        return key[len(prefix) + 1:] if prefix else key

    def s3_resource(self) -> S3Resource:
        """dagster-aws's S3Resource for this store's settings (EnvVars resolved)."""
        settings = {name: _resolved(getattr(self, name)) for name in S3_SETTINGS}
        return S3Resource(**{k: v for k, v in settings.items() if v is not None})

    def client(self):
        """A boto3 S3 client built by dagster-aws's S3Resource (one per process and setting)."""
        cache_key = tuple((name, str(_resolved(getattr(self, name)))) for name in S3_SETTINGS)
        client = _CLIENTS.get(cache_key)
        if client is None:
            with _CLIENTS_LOCK:
                client = _CLIENTS.get(cache_key)
                if client is None:
                    client = _CLIENTS[cache_key] = self.s3_resource().get_client()
        return client

    @contextlib.contextmanager
    def _synced(self) -> Iterator[dict]:
        """The manifest, under the working copy's lock; saved on exit."""
        root = self.root()
        with open(root / LOCK_FILE, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                path = root / MANIFEST_FILE
                try:
                    manifest = json.loads(path.read_text("utf-8"))
                except (FileNotFoundError, ValueError):
                    manifest = {}
                before = json.dumps(manifest, sort_keys=True)
                yield manifest
                if json.dumps(manifest, sort_keys=True) != before:
                    tmp = path.with_name(path.name + ".tmp")
                    tmp.write_text(json.dumps(manifest, sort_keys=True), "utf-8")
                    tmp.replace(path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _remote(self, relative: str) -> dict[str, dict]:
        """Objects at ``relative`` (a file) or under it (a folder): relative path -> {etag, size}."""
        relative = relative.strip("/")
        base = self.key_for(relative)
        out: dict[str, dict] = {}
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket(), Prefix=base):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key != base and not key.startswith(base.rstrip("/") + "/"):
                    continue  # "batches/w1" must not match "batches/w10/..."
                rel = self._relative(key)
                if rel and not rel.endswith("/") and not _local_only(rel):
                    out[rel] = {"etag": _etag(obj.get("ETag")), "size": int(obj.get("Size", 0))}
        return out

    def _download(self, key: str, target: Path) -> str:
        """Download an object atomically; returns its ETag."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                response = self.client().get_object(Bucket=self._bucket(), Key=key)
                body = response["Body"]
                for chunk in iter(lambda: body.read(1 << 20), b""):
                    f.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return _etag(response.get("ETag"))

    def _upload(self, path: Path, key: str, sha256: str) -> str:
        """Upload a file with its SHA-256 as metadata; returns the new ETag."""
        client = self.client()
        extra = {"Metadata": {SHA256_METADATA: sha256}}
        if path.stat().st_size <= SINGLE_PUT_LIMIT:
            data = path.read_bytes()
            md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
            response = client.put_object(Bucket=self._bucket(), Key=key, Body=data, ContentMD5=md5, **extra)
            return _etag(response.get("ETag"))
        client.upload_file(str(path), self._bucket(), key, ExtraArgs=extra)
        return _etag(client.head_object(Bucket=self._bucket(), Key=key).get("ETag"))

    # ---- the hooks every asset calls -----------------------------------------------------

    def pull(self, *relative: str) -> list[str]:
        """Make these files or folders of the bucket present locally.

        Downloads an object only when the local file is missing or the object
        changed in the bucket since this working copy last synced it (the
        bucket is the truth; a local file with unpublished changes to an
        object that did not change in the bucket is kept).
        """
        root = self.root()
        fetched: list[str] = []
        with self._synced() as manifest:
            for rel in relative:
                for name, obj in self._remote(rel).items():
                    local = root / name
                    entry = manifest.get(name)
                    if local.is_file():
                        if entry and entry.get("etag") == obj["etag"]:
                            continue  # the bucket has not changed since the last sync
                        if _simple_etag(obj["etag"]) and _file_digests(local)[0] == obj["etag"]:
                            manifest[name] = {"etag": obj["etag"], **_stat(local)}
                            continue  # same bytes already
                    manifest[name] = {"etag": self._download(self.key_for(name), local), **_stat(local)}
                    fetched.append(name)
        return fetched

    def push(self, *relative: str) -> list[str]:
        """Publish these files or folders of the working copy.

        Uploads a file only when it changed locally since it was last synced
        (and its bytes differ from the object's); a file that was synced
        before and has since been deleted locally is deleted in the bucket too,
        unless the object changed there meanwhile. Files never synced and not
        present locally are left alone, so a partial working copy never
        deletes what it does not hold.
        """
        root = self.root()
        sent: list[str] = []
        with self._synced() as manifest:
            for rel in relative:
                rel = rel.strip("/")
                remote = self._remote(rel)
                base = root / rel
                files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else []
                for path in files:
                    name = path.relative_to(root).as_posix()
                    if _local_only(name):
                        continue
                    entry = manifest.get(name)
                    obj = remote.get(name)
                    if entry and obj and entry.get("etag") == obj["etag"] and \
                            entry.get("size") == path.stat().st_size and entry.get("mtime_ns") == path.stat().st_mtime_ns:
                        continue  # unchanged locally since the last sync, and the bucket has it
                    md5, sha = _file_digests(path)
                    if obj and obj["etag"] == md5:
                        manifest[name] = {"etag": md5, **_stat(path)}
                        continue
                    manifest[name] = {"etag": self._upload(path, self.key_for(name), sha), **_stat(path)}
                    sent.append(name)
                prefix = "" if not rel else rel + "/"
                for name in [n for n in manifest if "://" not in n and (n == rel or n.startswith(prefix))]:
                    if (root / name).exists():
                        continue
                    obj = remote.get(name)
                    if obj and obj["etag"] == manifest[name].get("etag"):
                        self.client().delete_object(Bucket=self._bucket(), Key=self.key_for(name))
                        sent.append(name)
                    del manifest[name]
        return sent

    def list_dirs(self, relative: str) -> list[str]:
        """Folders directly under a folder, in the bucket (and any only in the working copy)."""
        relative = relative.strip("/")
        base = self.key_for(relative).rstrip("/") + "/"
        names = set(super().list_dirs(relative))
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket(), Prefix=base, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(base):].strip("/")
                if name and not name.startswith("."):
                    names.add(name)
        return sorted(names)

    def localize(self, uri: str) -> str:
        """A local file for a source: a path as given, or an ``s3://bucket/key`` object, downloaded
        into the working copy's ``.sources/`` only when missing or changed."""
        if "://" not in uri:
            return uri
        if not uri.lower().startswith("s3://"):
            raise ValueError(f"{uri}: only local paths and s3://bucket/key URIs are supported")
        bucket, key = parse_s3_uri(uri)
        local = self.root() / SOURCES_DIR / bucket / key
        client = self.client()
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except client.exceptions.ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(f"{uri}: no such object in bucket {bucket}") from None
            raise
        etag = _etag(head.get("ETag"))
        with self._synced() as manifest:
            entry = manifest.get(f"s3://{bucket}/{key}")
            if not (local.is_file() and entry and entry.get("etag") == etag
                    and entry.get("size") == local.stat().st_size):
                target = local
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
                os.close(fd)
                try:
                    client.download_file(bucket, key, tmp)
                    os.replace(tmp, target)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
                manifest[f"s3://{bucket}/{key}"] = {"etag": etag, **_stat(local)}
        return str(local)

    def object_sha256(self, relative: str) -> str | None:
        """The SHA-256 recorded on an object when it was uploaded (None when absent)."""
        head = self.client().head_object(Bucket=self._bucket(), Key=self.key_for(relative))
        return (head.get("Metadata") or {}).get(SHA256_METADATA)


# ---- the serving store with its URL from the environment ------------------------------------

_STORES: dict[str, ServingStore] = {}


class EnvServingStore(ServingStore):
    """The serving store whose ``redis_url`` may be an ``EnvVar`` (shown by name in the UI).

    Dagster resolves the variable when it initializes the resource; a caller
    using the object directly (``irisdag demo``) gets it resolved here.
    """

    def _direct(self) -> ServingStore | None:
        if not isinstance(self.redis_url, EnvVar):
            return None
        url = self.redis_url.get_value() or ""
        if not url:
            raise StoreUnavailable(f"{self.redis_url.env_var_name} is not set: the production serving store needs it")
        store = _STORES.get(url)
        if store is None:
            store = _STORES[url] = ServingStore(redis_url=url)
        return store

    def _conn(self):
        direct = self._direct()
        return direct._conn() if direct is not None else super()._conn()

    @property
    def label(self) -> str:
        direct = self._direct()
        return direct.label if direct is not None else super().label

    def routing_store(self) -> ServingStore:
        """The routing user's store (``routing_url``, an EnvVar resolved here when used directly)."""
        url = (_resolved(self.routing_url) or "").strip() if self.routing_url else ""
        if not url:
            return self
        store = _STORES.get(url)
        if store is None:
            store = _STORES[url] = ServingStore(redis_url=url)
        return store


# ---- the production resources ------------------------------------------------------------

def _env_or_none(environ: Mapping[str, str], name: str):
    return EnvVar(name) if (environ.get(name) or "").strip() else None


def check_redis_url(url: str, name: str = "REDIS_URL") -> str:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("redis", "rediss"):
        raise ProductionConfigError(
            f"{name} must be redis:// or rediss:// (with the user and its password), got {redact_url(url)!r}")
    parts = urlsplit(url)
    if not parts.password:
        raise ProductionConfigError(
            f"{name} {redact_url(url)} has no password: production Redis runs with ACL users "
            "(redis://irisdag-scoring:PASSWORD@host:6379/0)")
    return url


def s3_settings(environ: Mapping[str, str] | None = None) -> dict:
    """S3Resource settings from the standard AWS variables (EnvVars, so secrets stay out of the UI)."""
    environ = os.environ if environ is None else environ
    return {
        "region_name": environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
        "endpoint_url": _env_or_none(environ, "AWS_ENDPOINT_URL"),
        "aws_access_key_id": _env_or_none(environ, "AWS_ACCESS_KEY_ID"),
        "aws_secret_access_key": _env_or_none(environ, "AWS_SECRET_ACCESS_KEY"),
        "aws_session_token": _env_or_none(environ, "AWS_SESSION_TOKEN"),
    }


def s3_resource(environ: Mapping[str, str] | None = None) -> S3Resource:
    """dagster-aws's S3Resource from the standard AWS variables."""
    return S3Resource(**{k: v for k, v in s3_settings(environ).items() if v is not None})


def production_resources(environ: Mapping[str, str] | None = None) -> dict:
    """S3 (through dagster-aws) for files, Redis from REDIS_URL for answers.

    Refuses, naming the variable, when REDIS_URL or IRISDAG_S3_BUCKET is
    missing: production never falls back to the embedded Redis or local files.
    """
    environ = os.environ if environ is None else environ
    url = (environ.get("REDIS_URL") or "").strip()
    if not url:
        raise ProductionConfigError(
            "IRISDAG_DEPLOYMENT=production needs REDIS_URL (redis:// or rediss://, the pipeline user's credentials)")
    check_redis_url(url)
    bucket = (environ.get("IRISDAG_S3_BUCKET") or "").strip()
    if not bucket:
        raise ProductionConfigError("IRISDAG_DEPLOYMENT=production needs IRISDAG_S3_BUCKET (the artifact bucket)")
    prefix = (environ.get("IRISDAG_S3_PREFIX") or DEFAULT_PREFIX).strip().strip("/")
    settings = s3_settings(environ)
    # Routing changes (promote, rollback, abort, ramp, the start of serving) go as the routing
    # user when IRISDAG_ROUTING_REDIS_URL is set; otherwise as REDIS_URL's user.
    routing_url = (environ.get("IRISDAG_ROUTING_REDIS_URL") or "").strip()
    if routing_url:
        check_redis_url(routing_url, "IRISDAG_ROUTING_REDIS_URL")
    return {
        "serving_store": EnvServingStore(redis_url=EnvVar("REDIS_URL"),
                                         routing_url=EnvVar("IRISDAG_ROUTING_REDIS_URL") if routing_url else ""),
        "artifacts": S3ArtifactStore(bucket=bucket, prefix=prefix, **settings,
                                     base_dir=(environ.get("IRISDAG_ARTIFACTS_DIR") or "").strip()),
        # The same bucket's client for any op that wants raw S3 (dagster-aws's resource).
        "s3": S3Resource(**{k: v for k, v in settings.items() if v is not None}),
    }


# ---- deploy-time helpers (also used by the tests) -------------------------------------------

def render_acl(passwords: Mapping[str, str], template: str | None = None) -> str:
    """The Redis ACL file: the template with each role's password as a SHA-256 hash (``#<hex>``)."""
    text = ACL_TEMPLATE.read_text("utf-8") if template is None else template
    # Redis ACL files have no comment syntax: keep only the user lines.
    text = "".join(line for line in text.splitlines(keepends=True) if line.strip() and not line.lstrip().startswith("#"))
    for role, placeholder in ACL_PLACEHOLDERS.items():
        password = passwords.get(role)
        if not password:
            raise ProductionConfigError(f"no password given for the Redis {role} user")
        text = text.replace(placeholder, hashlib.sha256(password.encode("utf-8")).hexdigest())
    return text


def load_functions(admin_url: str) -> dict:
    """Load the ``irisdag`` Lua library as the admin user (deploy time); returns what was loaded."""
    from irisdag.store.resource import library_code, lua_source

    store = ServingStore(redis_url=admin_url)
    store.ping()
    # Directly, not through ensure_functions (which tolerates users without FUNCTION LOAD):
    # at deploy time a refusal must fail the step.
    store.client().function_load(lua_source(), replace=True)
    code = library_code(store.client())  # a Redis Cluster: FUNCTION LOAD went to every primary
    if code is None:
        raise StoreUnavailable(f"FUNCTION LOAD did not register the irisdag library on {store.label}")
    return {"library": "irisdag", "matches_code": code == lua_source(), "server": store.label}


def bootstrap_bucket(client, bucket: str, course_dir: str | os.PathLike | None = None) -> list[str]:
    """Create the bucket if needed and load the course's files into their layout; returns the keys written."""
    try:
        client.head_bucket(Bucket=bucket)
    except client.exceptions.ClientError:
        client.create_bucket(Bucket=bucket)
    written = []
    if course_dir:
        for name, key in COURSE_LAYOUT.items():
            path = Path(course_dir) / name
            if path.is_file():
                client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(),
                                  Metadata={SHA256_METADATA: hashlib.sha256(path.read_bytes()).hexdigest()})
                written.append(key)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m irisdag.defs.production",
                                     description="Deploy-time steps of the production stack.")
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("redis-init", help="load the irisdag Lua library as the Redis admin user")
    init.add_argument("--admin-url", default=os.environ.get("REDIS_ADMIN_URL", ""),
                      help="admin user's URL (default: REDIS_ADMIN_URL)")
    acl = sub.add_parser("render-acl", help="print the ACL file for the given passwords (from the environment)")
    acl.add_argument("--template", default=str(ACL_TEMPLATE))
    boot = sub.add_parser("bootstrap-bucket", help="create IRISDAG_S3_BUCKET and load the course files")
    boot.add_argument("--course-dir", default=os.environ.get("IRISDAG_COURSE_DIR", ""))
    args = parser.parse_args(argv)
    try:
        if args.command == "redis-init":
            if not args.admin_url:
                raise ProductionConfigError("redis-init needs --admin-url or REDIS_ADMIN_URL")
            print(json.dumps(load_functions(args.admin_url)))
        elif args.command == "render-acl":
            passwords = {role: os.environ.get(f"IRISDAG_REDIS_{role.upper()}_PASSWORD", "") for role in ACL_USERS}
            sys.stdout.write(render_acl(passwords, Path(args.template).read_text("utf-8")))
        else:
            bucket = os.environ.get("IRISDAG_S3_BUCKET", "")
            if not bucket:
                raise ProductionConfigError("bootstrap-bucket needs IRISDAG_S3_BUCKET")
            client = S3ArtifactStore(bucket=bucket, **s3_settings()).client()
            written = bootstrap_bucket(client, bucket, args.course_dir or None)
            print(json.dumps({"bucket": bucket, "written": written}))
    except (ProductionConfigError, StoreUnavailable, FileNotFoundError, redis.RedisError) as err:
        print(f"irisdag: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
