"""Example task: check that a URL answers, with the HTTP client the worker shares across jobs.

Only http(s) URLs are accepted. A service that takes URLs from untrusted clients should also refuse
internal addresses (SSRF); this example leaves that policy to you.
"""

import logging
import time

import httpx
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from .registry import Context, Rate, RetryPolicy, Task

log = logging.getLogger(__name__)


class CheckUrlArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl
    # Marked for redaction: the dashboard shows "[redacted]" (the worker's log shows no arguments).
    bearer_token: str | None = Field(
        default=None,
        max_length=4096,
        description="Sent as `Authorization: Bearer ...`.",
        json_schema_extra={"redact": True},
    )


async def check_url(
    ctx: Context, url: str, bearer_token: str | None = None
) -> dict[str, int | float]:
    client: httpx.AsyncClient = ctx["http"]
    headers = {"Authorization": f"Bearer {bearer_token}"} if bearer_token else {}
    started = time.perf_counter()
    response = await client.get(url, headers=headers)
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
    # Polite to the hosts it checks, across every worker: at most 20 checks in any second and
    # 10 at once; a job over either waits its turn (queue.limits), other tasks are not held up.
    rate=Rate(20, per=1),
    concurrency=10,
)
