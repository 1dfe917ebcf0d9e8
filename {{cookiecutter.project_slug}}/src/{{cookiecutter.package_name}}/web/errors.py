"""Errors every route shares, answered in one place."""

import json
from typing import Any

from fastapi import Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..json_values import printable


async def queue_unavailable(_request: Request, _exc: Exception) -> JSONResponse:
    """Redis did not answer (QueueUnavailableError, from any route): 503, worth a retry."""
    return JSONResponse(
        {"detail": "queue unavailable"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "5"},
    )


async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 as FastAPI answers it, but never echoing what JSON cannot carry: an `input` of NaN, a
    lone surrogate or bytes that are not UTF-8 would make the answer itself fail (a 500 and a
    closed connection instead of the 422)."""
    return JSONResponse(
        {"detail": [carried(error) for error in exc.errors()]},
        status_code=422,  # (starlette renamed the constant; the number is stable)
    )


def carried(error: Any) -> Any:
    """One validation error as JSON; without its `input` and `ctx` when they cannot be encoded."""
    try:
        encoded = jsonable_encoder(error)
        json.dumps(encoded, allow_nan=False).encode()  # raises what the response would raise
    except (ValueError, RecursionError):  # UnicodeError is a ValueError; deep nesting recurses
        shown = {key: value for key, value in error.items() if key not in ("input", "ctx")}
        shown["loc"] = [part if isinstance(part, int) else printable(part) for part in error["loc"]]
        shown["msg"] = printable(error.get("msg", ""))
        return {key: printable(value) if key == "type" else value for key, value in shown.items()}
    return encoded
