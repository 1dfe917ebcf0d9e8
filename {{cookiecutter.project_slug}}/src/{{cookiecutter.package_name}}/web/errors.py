"""Errors every route shares, answered in one place."""

from fastapi import Request, status
from fastapi.responses import JSONResponse


async def queue_unavailable(_request: Request, _exc: Exception) -> JSONResponse:
    """Redis did not answer (QueueUnavailableError, from any route): 503, worth a retry."""
    return JSONResponse(
        {"detail": "queue unavailable"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "5"},
    )
