"""Defaults from the environment (DESIGN §6), read when the code location loads.

Every asset and job runs with no hand-written run config; run config only
overrides these.
"""

import os

from dagster import Backoff, Jitter, RetryPolicy

STRATEGIES = ("single", "shadow", "ab", "canary", "bandit")


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def default_strategy() -> str:
    value = env("IRISDAG_STRATEGY", "shadow") or "shadow"
    if value not in STRATEGIES:
        raise ValueError(f"IRISDAG_STRATEGY={value!r} is not one of {', '.join(STRATEGIES)}")
    return value


BATCH_ROWS = 1000          # rows per generated batch
DRIFT = 1.0                # generator drift at full strength
DRIFT_WINDOWS = 6          # windows until the drift is at full strength (one day)
MIN_ACCURACY = 0.8         # validity: accuracy on the trusted test set
CHALLENGER_MARGIN = 0.05   # validity: a challenger may trail the champion by at most this
ALPHA = 0.05
MIXTURE = 1.0              # Beta(a, a) mixture of the paired mSPRT
TRUSTED_GENERATED_ROWS = 1000
HOLDOUT_FRACTION = 0.2     # real iris rows held out of training for the trusted test set
SEED = 7

# Redis or the object store may blip (failover, restart): steps that talk to them
# retry with backoff. Only such transient faults are retried: each step with this
# policy is wrapped in retries.retry_transient_only, which turns every other error
# (parse, format, refusal, validation) into Failure(allow_retries=False).
REDIS_RETRY = RetryPolicy(max_retries=3, delay=0.5, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)
