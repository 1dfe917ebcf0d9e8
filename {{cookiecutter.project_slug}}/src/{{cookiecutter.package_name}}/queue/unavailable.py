"""Which Redis errors mean "Redis cannot serve us now": the one classification of the web (a 503)
and the worker (wait for Redis, see worker.outage).

Down, stalled, out of connections, full, read-only after a failover, loading its data: errors a
retry later fixes. Anything else (a ResponseError about our own command: a key of the wrong type,
a bad offset) is a bug, and surfaces as one at once: never disguised as an outage, where the web
would answer a false 503 and the worker would retry it until the job's timeout.
"""

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    ExecAbortError,
    InvalidResponse,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    WatchError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError


class NotReplicatedError(RedisError):
    """Fewer replicas than DURABLE_ENQUEUE_REPLICAS acknowledged a write in time (Redis WAIT).
    The write is on the master, which may yet fail before it reaches a replica: the client is
    told 503, and retries (with its Idempotency-Key, so that it gets the same job)."""


UNAVAILABLE: tuple[type[BaseException], ...] = (
    NotReplicatedError,
    RedisConnectionError,  # also loading, refused, too many clients, wrong password
    RedisTimeoutError,
    OutOfMemoryError,
    ReadOnlyError,
    WatchError,  # a transaction that lost its race (a retried command can meet its own first try)
    InvalidResponse,
    OSError,  # (the builtin TimeoutError is one)
)
UNAVAILABLE_REPLIES = (
    "MISCONF ",
    "BUSY ",
    "MASTERDOWN ",
    "NOREPLICAS ",
    "TRYAGAIN ",
    "CLUSTERDOWN ",
    "UNBLOCKED ",  # a blocking read cut by a failover
)
"""Replies that redis-py raises as a plain ResponseError but that say the same."""
REFUSED_TRANSACTIONS = ("OOM ", "READONLY ", "LOADING ", *UNAVAILABLE_REPLIES)
"""Why Redis may discard a whole transaction (EXECABORT) when it cannot serve: a full Redis
refuses the commands queued in a MULTI, and says so at EXEC."""


def unavailable(error: BaseException) -> bool:
    """Whether `error` says Redis cannot serve now (rather than that our command is wrong)."""
    if isinstance(error, UNAVAILABLE):
        return True
    if isinstance(error, ExecAbortError):
        reason = str(error).partition("because of: ")[2]
        return reason.startswith(REFUSED_TRANSACTIONS)
    return isinstance(error, ResponseError) and str(error).startswith(UNAVAILABLE_REPLIES)


def wrong_type(error: BaseException) -> bool:
    """Whether `error` is Redis refusing a command on a key that holds another kind of value."""
    return isinstance(error, ResponseError) and str(error).startswith("WRONGTYPE")
