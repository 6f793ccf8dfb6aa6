"""Misses (DESIGN §3): a lookup no routed version answers is queued by the
consumer; this sensor sees the queue and requests a run that scores the missed
inputs with every routed version, keeps them as a batch (so later challengers
are backfilled over them too) and only then acknowledges them."""
import numpy as np
from dagster import (
    DefaultSensorStatus, OpExecutionContext, RunRequest, SensorEvaluationContext, SkipReason, job, op, sensor,
)

from irisdag import serving
from irisdag.core import keys as keyscheme
from irisdag.defs.assets.predictions import load_checked
from irisdag.defs.settings import REDIS_RETRY
from irisdag.defs.retries import retry_transient_only
from irisdag.defs.resources import ArtifactStore
from irisdag.store.resource import ServingStore

MISS_BATCH_PREFIX = "misses-"
MAX_MISSES_PER_RUN = 100_000


@op(retry_policy=REDIS_RETRY, description="Score queued misses with every routed version, store them, then acknowledge.")
@retry_transient_only
def store_misses(context: OpExecutionContext, serving_store: ServingStore, artifacts: ArtifactStore) -> dict:
    entries = serving_store.read_misses(MAX_MISSES_PER_RUN)
    if not entries:
        return {"stored": 0}
    rows, unscorable, mismatched = [], [], []
    for e in entries:
        if e["features"] is None:
            unscorable.append(e)  # an id miss carries no features: nothing to score it with
            continue
        try:
            values = keyscheme.validate_features(e["features"])
        except keyscheme.InputError as err:
            unscorable.append({**e, "reason": str(err)})
            continue
        if keyscheme.input_key(values) != e["key"]:
            mismatched.append(e)  # the consumer keyed it differently: store under the right key anyway
        rows.append(values)
    stored = 0
    if rows:
        # Keep the missed inputs as a batch: every routed version covers them, and so
        # will every later challenger's backfill (a promotion never loses these keys).
        partition = f"{MISS_BATCH_PREFIX}{entries[-1]['stream_id'].replace('-', '.')}"
        d = artifacts.batch_dir(partition)
        serving.prepare_array(d, np.array(rows, dtype=np.float64))
        artifacts.push(f"batches/{partition}")
        # Registered as a kept batch only once every routed version has scored it (DESIGN §2/§3):
        # a batch that cannot be scored never blocks later scoring runs.
        boosters = {v: load_checked(serving_store, artifacts, v) for v in serving_store.routing().versions()}
        stored = serving.score_then_keep(serving_store, boosters, partition, artifacts.batches_root(),
                                         log=context.log.info)
        artifacts.push("batches")
    # Acknowledged only now that every answer is stored.
    serving_store.ack_misses([e["stream_id"] for e in entries])
    for e in unscorable:
        context.log.warning(f"miss {e['key']} cannot be scored: {e.get('reason', 'it carries no features')}")
    return {"stored": stored, "unscorable": len(unscorable), "rekeyed": len(mismatched)}


@job(tags={"irisdag/action": "store_misses"},
     description="Score and store the inputs consumers missed (requested by the miss sensor).")
def score_misses():
    store_misses()


@sensor(job=score_misses, minimum_interval_seconds=30, default_status=DefaultSensorStatus.STOPPED,
        description="Requests `score_misses` when consumers have queued misses (run key: the newest miss).")
def miss_sensor(context: SensorEvaluationContext, serving_store: ServingStore):
    pending = serving_store.pending_misses()
    if not pending:
        return SkipReason("no misses queued")
    newest = serving_store.read_misses(MAX_MISSES_PER_RUN)[-1]["stream_id"]
    return RunRequest(run_key=f"misses-{newest}", tags={"irisdag/pending_misses": str(pending)})
