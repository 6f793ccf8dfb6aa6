"""Serving-store validity, at start-up and periodically (DESIGN §1, §3).

Three asset checks on ``champion_model``, computed together:

- ``serving_store_routing``: routing resolves to registered, validated,
  complete versions of scheme ``iris-r1``; every arm and the rollback target
  cover what the champion covers; the server never evicts
  (``maxmemory-policy noeviction``) and has the ``irisdag`` library loaded.
- ``serving_store_lookups``: sampled lookups, through the same Lua ``lookup``
  consumers call, equal the stored answers of the version that answered.
- ``serving_store_champion_artifact``: the champion's model file (and the
  rollback target's) loads, and its SHA-256 equals the digest recorded with
  the version; a swapped or corrupted artifact is named with both digests.

The ``validate_serving_store`` job runs only these checks and fails the run
when one fails; every failure is also written to the audit stream
(``action=store_check``, ``outcome=failed``). It runs on a schedule and once
each time the code location loads (``serving_store_startup_sensor``). The
checks also run, without failing the run, whenever ``champion_model`` is
materialized.
"""

import os
import secrets
import socket
import time
from dataclasses import dataclass, field

import numpy as np
import redis
from dagster import (
    AssetCheckKey, AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetSelection, Config,
    DefaultScheduleStatus, DefaultSensorStatus, Failure, MetadataValue, RunRequest, ScheduleDefinition,
    SensorEvaluationContext, SensorResult, SkipReason, define_asset_job, multi_asset_check, sensor,
)
from pydantic import Field

from irisdag import serving
from irisdag.core.keys import SCHEME
from irisdag.defs.assets.models import champion_model
from irisdag.defs.resources import ArtifactStore
from irisdag.models.artifacts import CLASSES, DigestMismatch, ModelFormatError, load_model
from irisdag.store.resource import ServingStore, library_code, lua_source

ROUTING_CHECK = "serving_store_routing"
LOOKUPS_CHECK = "serving_store_lookups"
ARTIFACT_CHECK = "serving_store_champion_artifact"
CHECK_NAMES = (ROUTING_CHECK, LOOKUPS_CHECK, ARTIFACT_CHECK)
CHECK_KEYS = [AssetCheckKey(champion_model.key, name) for name in CHECK_NAMES]
JOB_NAME = "validate_serving_store"

# One id per load of this module, i.e. per code-location load (the gRPC code
# server, or `dagster dev`'s code process, imports it once).
LOAD_ID = f"{socket.gethostname()}-{os.getpid()}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


@dataclass
class Verdict:
    name: str
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    metadata: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def description(self) -> str:
        return "; ".join(self.problems) if self.problems else ("; ".join(self.notes) or "passed")


# ---- the three checks (plain functions: the job, the tests and a shell can call them) ----------------

def check_routing(store: ServingStore) -> Verdict:
    v = Verdict(ROUTING_CHECK)
    routing = store.routing()
    v.metadata.update({"epoch": routing.epoch, "champion": routing.champion or "(none)",
                       "previous": routing.previous or "(none)", "challenger": routing.challenger or "(none)",
                       "strategy": routing.strategy or "(none)", "shares": MetadataValue.json(dict(routing.shares))})
    _check_server(store, v)
    if store.is_cluster:
        _check_copies(store, routing, v)
    if not routing.champion:
        v.notes.append("nothing is served yet (routing names no champion)")
        return v
    champ = store.version_info(routing.champion)
    champ_gen = int((champ or {}).get("generation") or 0)
    serving_versions = [("champion", routing.champion)] + [("arm", a) for a, _ in routing.shares]
    if routing.previous:
        serving_versions.append(("previous", routing.previous))
    for role, version in serving_versions:
        info = store.version_info(version)
        if info is None:
            v.problems.append(f"routing's {role} {version[:12]}… is not registered")
            continue
        if info.get("validated") != "1":
            v.problems.append(f"routing's {role} {version[:12]}… is not validated (validated={info.get('validated')!r})")
        if info.get("complete") != "1":
            v.problems.append(f"routing's {role} {version[:12]}… is not complete")
        if info.get("scheme") != SCHEME:
            v.problems.append(f"routing's {role} {version[:12]}… answers for scheme {info.get('scheme')!r}, not {SCHEME}")
        if not info.get("digest"):
            v.problems.append(f"routing's {role} {version[:12]}… has no recorded digest")
        if role != "champion" and int(info.get("generation") or 0) < champ_gen:
            v.problems.append(f"routing's {role} {version[:12]}… covers kept inputs through generation "
                              f"{info.get('generation')}, the champion through {champ_gen}")
    if routing.challenger and store.version_info(routing.challenger) is None:
        v.problems.append(f"routing's challenger {routing.challenger[:12]}… is not registered")
    pending = store.inputs_generation() - champ_gen
    v.metadata.update({"champion_generation": champ_gen, "kept_batches": store.inputs_generation()})
    if pending > 0:
        v.notes.append(f"{pending} kept batch(es) not yet scored by the champion (a scoring run is pending)")
    if not v.problems:
        v.notes.insert(0, f"routing (epoch {routing.epoch}) resolves to validated, complete versions")
    return v


def _check_copies(store: ServingStore, routing, v: Verdict) -> None:
    """Redis Cluster: every shard tag's routing copy holds the control routing's epoch
    (docs/cluster.md); a copy behind is what a routing change that died half way leaves,
    and the next change (or `ServingStore.sync_routing`) completes it."""
    epochs = [c.epoch for c in store.routing_copies()]
    behind = sum(e < routing.epoch for e in epochs)
    ahead = sum(e > routing.epoch for e in epochs)
    v.metadata.update({"routing_copies": len(epochs), "routing_copies_behind": behind,
                       "routing_copies_ahead": ahead})
    if routing.epoch and behind:
        v.problems.append(f"{behind} of {len(epochs)} routing copies are behind epoch {routing.epoch} "
                          "(a routing change stopped half way; ServingStore.sync_routing() completes it)")
    if ahead:
        v.problems.append(f"{ahead} of {len(epochs)} routing copies are ahead of epoch {routing.epoch} (the control "
                          "slot lost a change in a failover; the next routing change outranks them)")


def _check_server(store: ServingStore, v: Verdict) -> None:
    client = store.client()
    try:
        # INFO, not CONFIG GET: the pipeline's ACL users may not read the configuration.
        policy = client.info("memory").get("maxmemory_policy", "")
        policy = policy.decode() if isinstance(policy, bytes) else str(policy)
        v.metadata["maxmemory_policy"] = policy
        if policy and policy != "noeviction":
            v.problems.append(f"Redis runs with maxmemory-policy {policy}: it may evict predictions "
                              "(the store needs noeviction)")
    except redis.ResponseError:
        v.metadata["maxmemory_policy"] = "unknown (INFO not allowed)"
    try:
        code = library_code(client)  # on a Redis Cluster: every primary must hold the same code
    except redis.ResponseError:
        v.metadata["functions"] = "not checked (a Redis without functions, or FUNCTION LIST not allowed)"
        return
    if code is None:
        where = " on every primary (the same code)" if store.is_cluster else ""
        v.problems.append(f"the irisdag function library is not loaded{where} (load it as the admin user: "
                          "python -m irisdag.defs.production redis-init)")
        return
    same = code == lua_source()
    v.metadata["functions"] = "irisdag library loaded" + ("" if same else " (differs from this code's)")
    if not same:
        v.notes.append("the loaded irisdag library differs from this code's lua/irisdag.lua (re-run redis-init)")


def check_lookups(store: ServingStore, artifacts: ArtifactStore, per_window: int = 100, max_windows: int = 4,
                  seed: int | None = None) -> Verdict:
    v = Verdict(LOOKUPS_CHECK)
    routing = store.routing()
    if not routing.champion:
        v.notes.append("nothing is served yet")
        return v
    info = store.version_info(routing.champion) or {}
    covered = store.kept_partitions()[:int(info.get("generation") or 0)]
    if not covered:
        v.notes.append("the champion covers no kept batch yet")
        return v
    rng = np.random.default_rng(seed)
    newest = covered[-2:]
    older = [p for p in covered if p not in newest]
    windows = newest + ([str(p) for p in rng.choice(older, size=min(len(older), max_windows - len(newest)), replace=False)]
                        if older and max_windows > len(newest) else [])
    sampled = held = unverified = 0
    misses, mismatches, errors = [], [], []
    for partition in windows:
        artifacts.pull(f"batches/{partition}")
        d = artifacts.batch_dir(partition)
        try:
            batch = serving.load_prepared(d)
        except FileNotFoundError:
            v.problems.append(f"kept batch {partition} is not in the artifact store")
            continue
        if not batch.n_keys:
            continue
        idx = np.sort(rng.choice(batch.n_keys, size=min(per_window, batch.n_keys), replace=False))
        try:
            results = store.lookup(batch.key_list(idx))
        except redis.RedisError as err:
            errors.append(f"lookup failed: {err}")
            break
        stored: dict[str, np.ndarray | None] = {}
        for i, r in zip(idx.tolist(), results):
            sampled += 1
            if r["route"] == "holdout":
                held += 1
                continue
            if r["route"] == "miss" or r["label"] is None:
                misses.append(r["key"])
                continue
            version = r["version"]
            if version not in stored:
                path = serving.predictions_path(d, version)
                stored[version] = np.load(path) if path.exists() else None
            answers = stored[version]
            if answers is None:
                unverified += 1
                if version == routing.champion:
                    errors.append(f"no stored answers of the champion for batch {partition}")
                continue
            if r["label"] != CLASSES[int(answers[i])]:
                mismatches.append(r["key"])
    v.metadata.update({"windows": MetadataValue.json(windows), "sampled": sampled, "held_out": held,
                       "misses": len(misses), "mismatches": len(mismatches), "unverified": unverified})
    if errors:
        v.problems.append(errors[0])
    if misses:
        v.problems.append(f"{len(misses)} of {sampled} sampled kept keys miss (e.g. {misses[0]})")
    if mismatches:
        v.problems.append(f"{len(mismatches)} of {sampled} sampled lookups differ from the stored answers "
                          f"(e.g. {mismatches[0]})")
    if not v.problems:
        v.notes.append(f"{sampled - held - unverified} sampled lookups over {len(windows)} batch(es) "
                       "equal the stored answers")
    return v


def check_champion_artifact(store: ServingStore, artifacts: ArtifactStore) -> Verdict:
    v = Verdict(ARTIFACT_CHECK)
    routing = store.routing()
    if not routing.champion:
        v.notes.append("nothing is served yet")
        return v
    for role, version in (("champion", routing.champion), ("previous", routing.previous)):
        if not version:
            continue
        info = store.version_info(version) or {}
        digest = info.get("digest", "")
        v.metadata[f"{role}_digest"] = digest or "(none)"
        if digest != version:
            v.problems.append(f"{role} {version[:12]}…: recorded digest {digest or '(none)'} is not its version id")
        artifacts.pull(f"models/{version}.json")
        try:
            load_model(artifacts.models_dir(), version, digest or version)
        except DigestMismatch as err:
            v.problems.append(f"{role} {version[:12]}… refused: expected SHA-256 {err.expected}, found {err.found}")
        except (FileNotFoundError, ModelFormatError) as err:
            v.problems.append(f"{role} {version[:12]}… does not load: {err}")
    if not v.problems:
        v.notes.append("the champion" + (" and the rollback target" if routing.previous else "")
                       + " load with their recorded SHA-256")
    return v


def run_store_checks(store: ServingStore, artifacts: ArtifactStore, seed: int | None = None) -> list[Verdict]:
    out = []
    for name, fn in ((ROUTING_CHECK, lambda: check_routing(store)),
                     (LOOKUPS_CHECK, lambda: check_lookups(store, artifacts, seed=seed)),
                     (ARTIFACT_CHECK, lambda: check_champion_artifact(store, artifacts))):
        try:
            out.append(fn())
        except Exception as err:  # noqa: BLE001 - a check that cannot run has failed, with the reason
            out.append(Verdict(name, problems=[f"the check could not run: {err.__class__.__name__}: {err}"]))
    return out


# ---- Dagster ----------------------------------------------------------------------------

class StoreCheckConfig(Config):
    fail_run: bool = Field(default=False, description="Fail the run when a check fails (the validate_serving_store job).")
    seed: int = Field(default=-1, description="Sampling seed (-1: a fresh sample each run).")


@multi_asset_check(
    specs=[
        AssetCheckSpec(ROUTING_CHECK, asset=champion_model,
                       description="Routing resolves to registered, validated, complete iris-r1 versions; arms and "
                                   "the rollback target cover what the champion covers; Redis never evicts and "
                                   "has the irisdag library loaded."),
        AssetCheckSpec(LOOKUPS_CHECK, asset=champion_model,
                       description="Sampled lookups (the consumers' Lua lookup) over kept batches equal the stored "
                                   "answers of the version that answered; no kept key misses."),
        AssetCheckSpec(ARTIFACT_CHECK, asset=champion_model,
                       description="The champion's (and the rollback target's) XGBoost JSON loads from the artifact "
                                   "store and its SHA-256 equals the digest recorded with the version."),
    ],
    can_subset=False,
    description="Validity of what is served (DESIGN §3). Failures are also written to the audit stream.",
)
def serving_store_checks(context, config: StoreCheckConfig, serving_store: ServingStore, artifacts: ArtifactStore):
    verdicts = run_store_checks(serving_store, artifacts, seed=None if config.seed < 0 else config.seed)
    failed = [v for v in verdicts if not v.passed]
    for v in failed:
        try:
            serving_store.audit_event("store_check", "failed", v.description, run_id=context.run.run_id, check=v.name)
        except redis.RedisError as err:
            context.log.error(f"could not write the failure of {v.name} to the audit stream: {err}")
    for v in verdicts:
        (context.log.info if v.passed else context.log.error)(f"{v.name}: {v.description}")
        yield AssetCheckResult(asset_key=champion_model.key, check_name=v.name, passed=v.passed,
                               severity=AssetCheckSeverity.ERROR, description=v.description[:2000],
                               metadata={**v.metadata, "problems": MetadataValue.json(v.problems)})
    if failed and config.fail_run:
        raise Failure(description="serving store check failed: " + " | ".join(f"{v.name}: {v.description}" for v in failed),
                      allow_retries=False)


validate_serving_store = define_asset_job(
    JOB_NAME,
    selection=AssetSelection.checks(*CHECK_KEYS),
    config={"ops": {"serving_store_checks": {"config": {"fail_run": True, "seed": -1}}}},
    description="Re-validate the serving store (routing, sampled lookups, the champion's artifact digest). "
                "Fails the run, and writes the audit stream, when a check fails.",
    tags={"irisdag/kind": "store-check"},
)

validate_serving_store_schedule = ScheduleDefinition(
    name="validate_serving_store_schedule", job=validate_serving_store, cron_schedule="15 * * * *",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Re-validates the serving store every hour.")


@sensor(job=validate_serving_store, minimum_interval_seconds=30, default_status=DefaultSensorStatus.RUNNING,
        description="Validates the serving store once each time the code location loads (start-up, deploy, reload).")
def serving_store_startup_sensor(context: SensorEvaluationContext):
    if context.cursor == LOAD_ID:
        return SkipReason(f"the serving store was validated after this code location loaded ({LOAD_ID})")
    return SensorResult(
        run_requests=[RunRequest(run_key=f"startup-{LOAD_ID}", tags={"irisdag/trigger": "code-location-load",
                                                                     "irisdag/load_id": LOAD_ID})],
        cursor=LOAD_ID)


STORE_CHECK_JOBS = [validate_serving_store]
STORE_CHECK_SCHEDULES = [validate_serving_store_schedule]
STORE_CHECK_SENSORS = [serving_store_startup_sensor]
STORE_CHECKS = [serving_store_checks]
