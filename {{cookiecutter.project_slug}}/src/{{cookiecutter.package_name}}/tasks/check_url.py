"""Example task: check that a URL answers, with the HTTP client the worker shares across jobs.

Only http(s) URLs are accepted. A service that takes URLs from untrusted clients should also refuse
internal addresses (SSRF); this example leaves that policy to you.
"""

import logging
import time

import httpx
from pydantic import BaseModel, ConfigDict, HttpUrl

from .registry import Context, RetryPolicy, Task

log = logging.getLogger(__name__)


class CheckUrlArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl


async def check_url(ctx: Context, url: str) -> dict[str, int | float]:
    client: httpx.AsyncClient = ctx["http"]
    started = time.perf_counter()
    response = await client.get(url)
    elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    log.info(
        "checked url, status %d in %.1f ms (job %s)",
        response.status_code,
        elapsed_ms,
        ctx.get("job_id"),
    )
    return {"status_code": response.status_code, "elapsed_ms": elapsed_ms}


TASK = Task(
    name="check_url",
    function=check_url,
    args=CheckUrlArgs,
    timeout=15,
    # A refused connection or a slow answer may pass; an invalid URL will not.
    retry=RetryPolicy(on=(httpx.TransportError,), timeouts=True, backoff=2),
)
