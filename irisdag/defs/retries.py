"""Retry only what a retry can fix.

Dagster's ``RetryPolicy`` retries a step on any exception, so a parse error, a
refused model or a wrong row would be retried three times and the run would
end on "Exceeded max_retries" instead of its cause. Steps with a retry policy
are therefore wrapped in ``retry_transient_only``: an exception that is (or
was caused by) a transient fault of a service — Redis unreachable, timing
out, loading, failing over; the object store's connection errors, throttling
and 5xx — propagates unchanged and the policy retries it; every other error
is deterministic and becomes ``Failure(allow_retries=False)`` carrying the
same message, so the step fails once, with its cause.
"""
from __future__ import annotations

import functools
import inspect

import redis.exceptions as redis_errors
from dagster import Failure, RetryRequested
from dagster._core.errors import DagsterError

from irisdag.store.resource import StoreUnavailable

TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,     # includes BusyLoadingError (LOADING) and AuthenticationError's siblings
    redis_errors.TimeoutError,
    redis_errors.TryAgainError,
    redis_errors.ReadOnlyError,       # a replica promoted/demoted under us during a failover
    redis_errors.ClusterDownError,
    ConnectionError,                  # builtin: refused, reset, aborted, broken pipe
    TimeoutError,
    StoreUnavailable,                 # the store's own "cannot reach Redis at <url>"
)
# redis-py raises these as subclasses of ConnectionError, but no retry fixes them.
NOT_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    redis_errors.AuthenticationError,
    redis_errors.AuthorizationError,
)
S3_TRANSIENT_CODES = frozenset({
    "RequestTimeout", "RequestTimeoutException", "SlowDown", "Throttling", "ThrottlingException",
    "ServiceUnavailable", "InternalError", "503", "500", "502", "504",
})


def _botocore_transient(err: BaseException) -> bool:
    try:
        from botocore import exceptions as boto_errors
    except ImportError:  # the local deployment runs without boto
        return False
    if isinstance(err, (boto_errors.EndpointConnectionError, boto_errors.ConnectionClosedError,
                        boto_errors.ReadTimeoutError, boto_errors.ConnectTimeoutError)):
        return True
    if isinstance(err, boto_errors.ClientError):
        response = getattr(err, "response", None) or {}
        code = str((response.get("Error") or {}).get("Code", ""))
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return code in S3_TRANSIENT_CODES or status in (500, 502, 503, 504)
    return False


def is_transient(err: BaseException) -> bool:
    """True when ``err`` or an exception in its cause/context chain is a fault a later try may not meet.

    A chain holding a refusal no retry can change (bad credentials, missing
    permission) is not transient, whatever wraps it.
    """
    chain = []
    while err is not None and len(chain) < 16:
        chain.append(err)
        err = err.__cause__ or err.__context__
    if any(isinstance(e, NOT_TRANSIENT_TYPES) for e in chain):
        return False
    return any(isinstance(e, TRANSIENT_TYPES) or _botocore_transient(e) for e in chain)


def final_failure(err: BaseException) -> Failure:
    """The deterministic error as a Failure that Dagster does not retry, keeping its message."""
    message = str(err) or type(err).__name__
    return Failure(description=message, allow_retries=False,
                   metadata={"error": type(err).__name__, "retried": "no: the error is deterministic"})


def _classify(err: Exception) -> None:
    if isinstance(err, (Failure, RetryRequested, DagsterError)) or is_transient(err):
        raise err
    raise final_failure(err) from err


def retry_transient_only(fn):
    """Wrap an op/asset body so that its RetryPolicy applies to transient errors only."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - classified, never swallowed
                _classify(err)
        return generator

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - classified, never swallowed
            _classify(err)
    return wrapper
