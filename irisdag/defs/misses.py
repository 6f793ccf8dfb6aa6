"""Misses (DESIGN §3): a lookup no routed version answers is queued by the
consumer; this sensor sees the queue and requests a run that scores the missed
inputs with every routed version, keeps them as a batch (so later challengers
are backfilled over them too) and only then acknowledges them.

Entries are written by untrusted consumers. One that is oversized (never read:
the store's reader measures it inside Redis), does not parse or does not
validate goes to ``irisdag:misses:dead`` as a short record and leaves the
queue at once, so no entry can stop it; the ``misses_dead_letters`` check
counts them by kind."""
import numpy as np
from dagster import (
    AssetCheckResult, AssetCheckSeverity, DefaultSensorStatus, MetadataValue, OpExecutionContext, RunRequest,
    SensorEvaluationContext, SkipReason, asset_check, job, op, sensor,
)

from irisdag import serving
from irisdag.core import misses as misscore
from irisdag.defs.assets.models import champion_model
from irisdag.defs.assets.predictions import load_checked
from irisdag.defs.settings import REDIS_RETRY
from irisdag.defs.retries import retry_transient_only
from irisdag.defs.resources import ArtifactStore
from irisdag.store.resource import MISS_ENTRY_MAX_BYTES, ServingStore

MISS_BATCH_PREFIX = "misses-"
MAX_MISSES_PER_RUN = 100_000


def sort_misses(entries) -> tuple[list, list, list, int]:
    """(scorable (stream id, Miss), id misses (stream id, Miss), poisoned (stream id, kind, reason,
    key), rekeyed count) for raw entries of `ServingStore.misses_page`. Never raises on an entry."""
    scorable, id_misses, poisoned, rekeyed = [], [], [], 0
    for e in entries:
        fields = e["fields"]
        if fields is None:
            err = misscore.oversized(e["size"], MISS_ENTRY_MAX_BYTES)
            poisoned.append((e["stream_id"], err.kind, err.reason, ""))
            continue
        try:
            miss = misscore.parse_miss(fields)
        except misscore.PoisonedMiss as err:
            poisoned.append((e["stream_id"], err.kind, err.reason, fields.get("key", "")))
            continue
        except Exception as err:  # noqa: BLE001 - an entry must never stop the queue
            poisoned.append((e["stream_id"], misscore.INVALID_FEATURES, f"{type(err).__name__}: {err}",
                             fields.get("key", "")))
            continue
        if miss.scorable:
            rekeyed += miss.key != fields.get("key")  # the consumer keyed it differently: stored under the right key
            scorable.append((e["stream_id"], miss))
        else:
            id_misses.append((e["stream_id"], miss))
    return scorable, id_misses, poisoned, rekeyed


@op(retry_policy=REDIS_RETRY, description="Score queued misses with every routed version, store them, then "
                                          "acknowledge; poisoned entries go to irisdag:misses:dead.")
@retry_transient_only
def store_misses(context: OpExecutionContext, serving_store: ServingStore, artifacts: ArtifactStore) -> dict:
    entries, after = [], "-"
    while len(entries) < MAX_MISSES_PER_RUN:
        _, _, page = serving_store.misses_page(after=after)
        if not page:
            break
        entries += page
        after = page[-1]["stream_id"]
    if not entries:
        return {"stored": 0}
    scorable, id_misses, poisoned, rekeyed = sort_misses(entries)
    del entries
    # Poisoned entries leave the queue first, whatever happens to the rest (allowed under OOM).
    dead = serving_store.dead_letter_misses(poisoned)
    for stream_id, kind, reason, _ in poisoned[:20]:
        context.log.warning(f"miss {stream_id} dead-lettered ({kind}): {reason}")
    stored = 0
    if scorable:
        # Keep the missed inputs as a batch: every routed version covers them, and so
        # will every later challenger's backfill (a promotion never loses these keys).
        partition = f"{MISS_BATCH_PREFIX}{scorable[-1][0].replace('-', '.')}"
        d = artifacts.batch_dir(partition)
        serving.prepare_array(d, np.array([m.features for _, m in scorable], dtype=np.float64))
        artifacts.push(f"batches/{partition}")
        # Registered as a kept batch only once every routed version has scored it (DESIGN §2/§3):
        # a batch that cannot be scored never blocks later scoring runs.
        boosters = {v: load_checked(serving_store, artifacts, v) for v in serving_store.routing().versions()}
        stored = serving.score_then_keep(serving_store, boosters, partition, artifacts.batches_root(),
                                         log=context.log.info)
        artifacts.push("batches")
    # Acknowledged only now that every answer is stored.
    serving_store.ack_misses([sid for sid, _ in scorable] + [sid for sid, _ in id_misses])
    for _, m in id_misses[:20]:
        context.log.warning(f"miss {m.key} cannot be scored: an id miss carries no features")
    return {"stored": stored, "unscorable": len(id_misses), "rekeyed": int(rekeyed), "dead_lettered": dead,
            "poisoned": len(poisoned)}


@job(tags={"irisdag/action": "store_misses"},
     description="Score and store the inputs consumers missed (requested by the miss sensor).")
def score_misses():
    store_misses()


@sensor(job=score_misses, minimum_interval_seconds=30, default_status=DefaultSensorStatus.STOPPED,
        description="Requests `score_misses` when consumers have queued misses (run key: the newest miss).")
def miss_sensor(context: SensorEvaluationContext, serving_store: ServingStore):
    # Length and newest id only: no entry's fields are read here, so none can break the sensor.
    pending, newest = serving_store.newest_miss()
    if not pending:
        return SkipReason("no misses queued")
    return RunRequest(run_key=f"misses-{newest}", tags={"irisdag/pending_misses": str(pending)})


@asset_check(asset=champion_model, name="misses_dead_letters",
             description="Queued misses that were oversized, not JSON or invalid, dead-lettered to "
                         "irisdag:misses:dead (counted by kind since the start). WARN when there are any.")
def misses_dead_letters(serving_store: ServingStore) -> AssetCheckResult:
    counts, kept, newest = serving_store.dead_letters(count=5)
    total = sum(counts.values())
    pending, _ = serving_store.newest_miss()
    return AssetCheckResult(
        passed=total == 0, severity=AssetCheckSeverity.WARN,
        description=("no queued miss was refused" if total == 0 else
                     f"{total} queued miss(es) were refused and dead-lettered "
                     f"({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))}); "
                     f"newest: {newest[-1].get('reason', '') if newest else ''}"),
        metadata={"dead_lettered": total, "by_kind": MetadataValue.json(counts), "records_kept": kept,
                  "pending_misses": pending,
                  "newest": MetadataValue.json([{k: r.get(k, "") for k in ("source_id", "kind", "reason", "time")}
                                                for r in newest])})


MISSES_CHECKS = [misses_dead_letters]
