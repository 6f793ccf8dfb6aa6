"""Scoring on Dagster's Celery executor (``dagster-celery``, the ``celery`` extra).

``score_window_on_celery`` is the chunked scoring graph (``irisdag.defs.chunked``)
with ``dagster_celery.celery_executor``: the run's process plans the chunks,
and each chunk is a Celery task executed by whichever worker takes it. The
broker and result backend are the Redis already there, in a database and key
prefix of their own (so an ACL user can be limited to them); the run config
says where (``celery_run_config``), the workers read the same settings from
the YAML given to ``dagster-celery worker start -y``. Workers and the run share
the Dagster instance (``DAGSTER_HOME``: its storage holds the step outputs'
events) and the artifact store; the resources come from the environment
(``REDIS_URL``, ``IRISDAG_ARTIFACTS_DIR``), as in every other process.

Start a worker (one per process or machine)::

    dagster-celery worker start -A dagster_celery.app -y celery.yaml -n worker1

and launch: ``dagster job execute -m irisdag.definitions -j score_window_on_celery -c run.yaml``
(or from the UI's launchpad with the same run config).
"""
from __future__ import annotations

from dagster_celery import celery_executor

from irisdag.defs.chunked import score_window_in_chunks

CELERY_KEY_PREFIX = "irisdag-celery:"
CELERY_DB = 1
# The broker/backend's own Redis ACL user: keys under its prefix only, no admin or dangerous
# commands. Pub/sub channels stay open (&*): Celery's broadcast channels (worker control,
# events) carry no prefix. `ACL SETUSER irisdag-celery on >PASSWORD <these rules>`.
CELERY_ACL_RULES = (f"resetkeys resetchannels ~{CELERY_KEY_PREFIX}* &* "
                    "-@all +@read +@write +@list +@hash +@set +@sortedset +@string +@keyspace +@pubsub "
                    "+@transaction +@connection +@scripting +time -@admin -@dangerous")


def celery_urls(redis_url: str, db: int = CELERY_DB, user: str = "", password: str = "") -> str:
    """The broker/backend URL on the serving store's Redis server, database ``db``, as ``user`` if given."""
    scheme, rest = redis_url.rstrip("/").split("://", 1)
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    auth = f"{user}:{password}@" if user else (rest.split("/", 1)[0].rsplit("@", 1)[0] + "@" if "@" in rest else "")
    return f"{scheme}://{auth}{host}/{db}"


def celery_executor_config(redis_url: str, db: int = CELERY_DB, user: str = "", password: str = "") -> dict:
    """``execution.config`` for the Celery executor: broker and backend on ``redis_url``'s server."""
    url = celery_urls(redis_url, db, user, password)
    prefix = {"global_keyprefix": CELERY_KEY_PREFIX}
    return {
        "broker": url,
        "backend": url,
        "config_source": {
            "broker_transport_options": prefix,
            "result_backend_transport_options": prefix,
            "worker_prefetch_multiplier": 1,
            "task_acks_late": True,
        },
    }


def celery_run_config(partition: str, redis_url: str, *, chunk_keys: int | None = None,
                      versions: list[str] | None = None, db: int = CELERY_DB, user: str = "",
                      password: str = "") -> dict:
    """The whole run config of ``score_window_on_celery`` for one window."""
    config: dict = {"partition": partition}
    if chunk_keys is not None:
        config["chunk_keys"] = int(chunk_keys)
    if versions:
        config["versions"] = list(versions)
    return {"execution": {"config": celery_executor_config(redis_url, db, user, password)},
            "ops": {"plan_score_chunks": {"config": config}}}


# In the code location (irisdag.definitions) when the celery extra is installed; its
# resources are the code location's, so workers build them from the same environment.
score_window_on_celery = score_window_in_chunks.to_job(
    name="score_window_on_celery",
    executor_def=celery_executor,
    description="Score a window in chunks on Celery workers (dagster-celery); see irisdag.defs.celery.",
)
