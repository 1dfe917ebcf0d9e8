"""The worker's side of the hand-off (queue.wake_channel): its entry in the queue's set of idle
workers, and what it knows of Redis's clock.

A job handed over arrives claimed for the worker's claim lifetime (arq's in-progress time). A
message that reaches the worker late (the worker was frozen, or its reads lagged) may carry a
claim that has lapsed, and a job another worker has started since: one older than FRESH_MS (2 s)
is confirmed (the claim still this worker's, and extended to a full lifetime) before it starts,
or not started at all. Only a message that young starts its job on the claim as the hand-off wrote
it, so a job that runs to its timeout still ends inside its claim. Its age is reckoned with
Redis's clock, read when the worker registered, so that the two machines' clocks never need to
agree.
"""

import asyncio
import math
import time
import uuid

from ..queue.wake_channel import handoff_channel, handoff_member
from .claim import FRESH_MS, Claimer
from .outage import SOCKET_TIMEOUT

REGISTRATION_REFRESH = 3600.0
"""Seconds after which an idle worker registers again (its entry stays, and the set's expiry of
a day moves on): an entry lost without this worker seeing it (the set expired or was evicted)
comes back within this time."""


class IdleRegistration:
    """This worker's entry in its queue's idle set."""

    def __init__(self, queue_name: str, lifetime_ms: int, aborts: bool) -> None:
        self.token = uuid.uuid4().hex
        self.channel = handoff_channel(queue_name, self.token)
        self.member = handoff_member(self.token, lifetime_ms, aborts)
        self.lifetime_ms = lifetime_ms
        self.held: bool | None = False
        """Whether Redis holds the entry: True, False, or None when unknown (a registration
        whose answer was lost, or one that a hand-off or a claim may have taken out since)."""
        self._offset_ms: float | None = None  # Redis's clock minus ours, at most
        self._registered_at = -math.inf
        self._doubts = 0  # (counted by `doubt`)

    def due(self) -> bool:
        """Whether to register (again) now."""
        return not self.held or time.monotonic() - self._registered_at > REGISTRATION_REFRESH

    async def register(self, claimer: Claimer) -> None:
        self.held = None
        doubts = self._doubts
        sent = time.monotonic()
        async with asyncio.timeout(SOCKET_TIMEOUT):
            redis_ms = await claimer.register(self.member)
        # Redis read its clock after `sent`: an offset that makes a message look older, if any.
        self._offset_ms = redis_ms - sent * 1000
        self._registered_at = sent
        # Not taken out meanwhile, by a hand-off or a claim, nor maybe by a claim whose answer
        # was lost (Redis may have run it after this registration).
        if self.held is None and self._doubts == doubts:
            self.held = True

    def doubt(self) -> None:
        """A claim that carried the entry went unanswered: Redis may have taken it out, so the
        worker registers again at its next idle poll."""
        self.held = None
        self._doubts += 1

    async def unregister(self, claimer: Claimer) -> None:
        async with asyncio.timeout(SOCKET_TIMEOUT):
            await claimer.unregister(self.member)
        self.held = False

    def fresh(self, sent_ms: int) -> bool:
        """Whether a message Redis sent at `sent_ms` (its clock) is young enough that the claim
        it carries surely still holds for the job's whole run: younger than FRESH_MS (or half
        the claim's lifetime, if that is less)."""
        if self._offset_ms is None:
            return False
        age = time.monotonic() * 1000 + self._offset_ms - sent_ms
        return age <= min(FRESH_MS, self.lifetime_ms / 2)
