"""Riding out a Redis that is away, stalled or full: which errors mean that, and how to wait.

A worker restarted during an outage meets the same Redis, so a worker never exits on one: each
loop that talks to Redis logs the error, waits (growing, capped, jittered so that a fleet of
workers does not come back in lockstep) and tries again, for as long as the outage lasts.
"""

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from ..queue.unavailable import unavailable

REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError)
"""What a call to Redis may raise. Only an outage (queue.unavailable: Redis not answering,
answering too late, refusing writes when full or read-only, loading, a transaction cut by a lost
connection) is waited out; anything else is a bug of the command (a key of another type, say),
raised at once: retried, it would fail the same way until the job's timeout, holding its slot."""

SOCKET_TIMEOUT = 5.0
"""Seconds a Redis reply may take. Without one, a stalled Redis (or a connection that died without
a word) holds a poll for as long as the stall lasts; with it, the stall is an error like any other
outage, which the worker's loops ride out."""

BACKOFF_FIRST = 0.5
BACKOFF_CAP = 5.0
"""Seconds between tries during an outage: 0.5, 1, 2, 4, 5, 5 ... each between half and all of
that (jitter), so the worker resumes at most about five seconds after Redis does."""

log = logging.getLogger(__name__)


class Backoff:
    """Delays that grow with each failure in a row and start over after a success."""

    def __init__(self, first: float = BACKOFF_FIRST, cap: float = BACKOFF_CAP) -> None:
        self.first, self.cap = first, cap
        self.failures = 0
        self.since: float | None = None  # monotonic time of the first failure in a row

    def failed(self) -> float:
        """Count a failure; the seconds to wait before the next try."""
        if self.since is None:
            self.since = time.monotonic()
        ceiling = min(self.cap, self.first * 2**self.failures)
        self.failures += 1
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret

    def succeeded(self) -> float | None:
        """Start over; how long the failures in a row lasted (None if there were none)."""
        lasted = None if self.since is None else time.monotonic() - self.since
        self.failures, self.since = 0, None
        return lasted


async def persist(call: Callable[[], Awaitable[None]], what: str) -> None:
    """Run `call` until it succeeds, waiting out Redis outages: for writes whose content is known
    and must not be lost (a finished job's result, its removal from the queue)."""
    backoff = Backoff()
    while True:
        try:
            await call()
        except REDIS_ERRORS as exc:
            if not unavailable(exc):
                raise
            delay = backoff.failed()
            if backoff.failures == 1:
                log.warning("could not %s (%s); trying again until Redis takes it", what, exc)
            await asyncio.sleep(delay)
        else:
            lasted = backoff.succeeded()
            if lasted is not None:
                log.info("could %s after %.1f s", what, lasted)
            return
