"""The cap on event streams one web process serves at once (MAX_STREAMS).

Each open stream holds a socket, a task and its buffers for as long as its job runs, hours maybe:
without a cap, enough clients exhaust the process's memory or descriptors and every request of the
process fails. Beyond the cap a client gets a 503 with Retry-After, at once and without costing
Redis anything, and another replica may serve it meanwhile.
"""

from collections.abc import AsyncIterator, Mapping

from fastapi import HTTPException, status
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

RETRY_AFTER = "5"


class StreamSlots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def take(self) -> "Slot":
        """A slot for one stream; a 503 when all are taken."""
        if self.open >= self.limit:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"this server already serves its {self.limit} event streams; retry later",
                headers={"Retry-After": RETRY_AFTER},
            )
        self.open += 1
        return Slot(self)


class Slot:
    def __init__(self, slots: StreamSlots) -> None:
        self._slots: StreamSlots | None = slots

    def release(self) -> None:
        """Give the slot back (once; later calls do nothing)."""
        if self._slots is not None:
            self._slots.open -= 1
            self._slots = None


class SlotStream(StreamingResponse):
    """A streaming response that gives its slot back however it ends: the body's generator alone
    would not if the client left before the body started (its `finally` never runs)."""

    def __init__(
        self, content: AsyncIterator[str], slot: Slot, headers: Mapping[str, str], media_type: str
    ) -> None:
        super().__init__(content, headers=headers, media_type=media_type)
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()
