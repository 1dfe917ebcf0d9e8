"""The worker's side of the hand-off (queue.wake_channel): its entry in the queue's set of idle
workers, what it knows of Redis's clock, and the confirmation of a handed-off job's claim.

A job handed over arrives claimed for HANDOFF_LEASE_MS only, so that one sent to a worker that
never takes it goes to another worker soon. The worker therefore confirms the claim (extends it
to arq's full in-progress time) a quarter of the lease after the start, if the job still runs:
most jobs are done before, and their end deletes the claim, so they cost no command more. A
message that reaches the worker late (the worker was frozen, or its reads lagged) may carry a
claim that has lapsed already, and a job another worker has started since: such a job is
confirmed before it starts, or not started at all. Its age is reckoned with Redis's clock, read
when the worker registered, so that the two machines' clocks never need to agree.
"""

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable

from ..queue.wake_channel import HANDOFF_LEASE_MS, handoff_channel, handoff_member
from .claim import Claimer
from .outage import REDIS_ERRORS, SOCKET_TIMEOUT, Backoff

log = logging.getLogger(__name__)

FRESH_MS = HANDOFF_LEASE_MS / 4
"""A hand-off younger than this starts at once; its claim is confirmed this long after."""


class IdleRegistration:
    """This worker's entry in its queue's idle set."""

    def __init__(self, queue_name: str, lifetime_ms: int, aborts: bool) -> None:
        self.token = uuid.uuid4().hex
        self.channel = handoff_channel(queue_name, self.token)
        self.member = handoff_member(self.token, lifetime_ms, aborts)
        self.held: bool | None = False
        """Whether Redis holds the entry: True, False, or None when unknown (a registration
        whose answer was lost). A claim counts a job on its way unless it is surely not held."""
        self._offset_ms: float | None = None  # Redis's clock minus ours, at most

    async def register(self, claimer: Claimer) -> None:
        self.held = None
        sent = time.monotonic() * 1000
        async with asyncio.timeout(SOCKET_TIMEOUT):
            redis_ms = await claimer.register(self.member)
        # Redis read its clock after `sent`: an offset that makes a message look older, if any.
        self._offset_ms = redis_ms - sent
        self.held = True

    async def unregister(self, claimer: Claimer) -> None:
        async with asyncio.timeout(SOCKET_TIMEOUT):
            await claimer.unregister(self.member)
        self.held = False

    def age_ms(self, sent_ms: int) -> float:
        """How old a message Redis sent at `sent_ms` (its clock) is, at most."""
        if self._offset_ms is None:
            return math.inf
        return time.monotonic() * 1000 + self._offset_ms - sent_ms


async def confirm_claim(
    claimer: Claimer, job_id: str, token: str, until: float, running: Callable[[], bool]
) -> None:
    """Extend a handed-off job's claim to its full lifetime, trying until `until` (monotonic:
    when the lease ends); a lapsed claim is logged while the job still runs (`running`)."""
    backoff = Backoff()
    while (left := until - time.monotonic()) > 0:
        try:
            async with asyncio.timeout(min(left, SOCKET_TIMEOUT)):
                confirmed = await claimer.confirm(job_id, token)
        except REDIS_ERRORS as exc:
            log.warning("could not confirm job %s (%s); trying again", job_id, exc)
            await asyncio.sleep(min(backoff.failed(), max(0.0, until - time.monotonic())))
            continue
        if not confirmed and running():
            log.warning("job %s: its hand-off claim lapsed before it was confirmed", job_id)
        return
    if running():
        log.warning("job %s: its hand-off claim may lapse (Redis did not answer)", job_id)
