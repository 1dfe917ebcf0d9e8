"""Liveness (the process answers) and readiness (it can queue jobs: Redis answers and takes
writes)."""

import asyncio
import logging

from fastapi import APIRouter, Response, status

from ...queue import QueueUnavailableError
from ..deps import QueueDep
from ..schemas import HealthOut

log = logging.getLogger(__name__)

router = APIRouter(prefix="/health", tags=["health"])

# Readiness must answer quickly even when Redis hangs: a probe that times out says nothing useful.
READY_TIMEOUT = 2.0
# As every other 503 of the service (web/errors.py): Redis comes back in seconds, or the
# orchestrator's probe period paces the retries anyway.
RETRY_AFTER = "5"


@router.get("/live")
async def live() -> HealthOut:
    return HealthOut(status="ok")


@router.get(
    "/ready",
    responses={
        status.HTTP_503_SERVICE_UNAVAILABLE: {
            "model": HealthOut,
            "description": "Redis does not answer, or refuses writes (full, read-only); "
            "with Retry-After",
        }
    },
)
async def ready(job_queue: QueueDep, response: Response) -> HealthOut:
    """200 when a job could be queued now: Redis answers and takes a write (a full Redis or a
    read-only replica answers PING but refuses every job)."""
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await job_queue.ping()
    except (QueueUnavailableError, TimeoutError) as exc:
        # Redis's own words go to the log only: they name servers, limits and configuration,
        # none of which a caller of an unauthenticated probe needs.
        log.warning("not ready: %s", exc or f"Redis did not answer within {READY_TIMEOUT} s")
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        response.headers["Retry-After"] = RETRY_AFTER
        return HealthOut(status="unavailable", detail="redis does not answer or refuses writes")
    return HealthOut(status="ok")
