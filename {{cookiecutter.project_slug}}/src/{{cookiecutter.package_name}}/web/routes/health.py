"""Liveness (the process answers) and readiness (it can reach Redis)."""

import asyncio

from fastapi import APIRouter, Response, status

from ...queue import QueueUnavailableError
from ..deps import QueueDep
from ..schemas import HealthOut

router = APIRouter(prefix="/health", tags=["health"])

# Readiness must answer quickly even when Redis hangs: a probe that times out says nothing useful.
READY_TIMEOUT = 2.0


@router.get("/live")
async def live() -> HealthOut:
    return HealthOut(status="ok")


@router.get(
    "/ready",
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": HealthOut}},
)
async def ready(queue: QueueDep, response: Response) -> HealthOut:
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await queue.ping()
    except (QueueUnavailableError, TimeoutError) as exc:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return HealthOut(status="unavailable", detail=f"redis: {exc or 'timed out'}")
    return HealthOut(status="ok")
