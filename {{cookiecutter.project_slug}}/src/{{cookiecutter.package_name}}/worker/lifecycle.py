"""Worker startup and shutdown: build what tasks share once per process, and close it."""

import asyncio
import contextlib
import logging

import httpx
from redis.exceptions import RedisError

from ..queue.arq import ledger_for
from ..settings import Settings
from ..tasks import Context
from .heartbeat import beat_forever, worker_key
from .logs import hide_job_arguments

log = logging.getLogger(__name__)


async def startup(ctx: Context) -> None:
    """Put the job ledger, the shared HTTP client and the liveness loop in ctx (arq already put
    `redis` there)."""
    settings: Settings = ctx["settings"]
    logging.getLogger("{{ cookiecutter.package_name }}").setLevel(settings.log_level)
    if not settings.log_job_arguments:
        hide_job_arguments()
    ctx["ledger"] = ledger_for(ctx["redis"], settings)
    ctx["http"] = httpx.AsyncClient(timeout=httpx.Timeout(10.0), follow_redirects=True)
    ctx["heartbeat"] = asyncio.create_task(
        beat_forever(ctx["redis"], settings, ctx["queue"]), name="heartbeat"
    )
    log.info("worker started on queue %s", ctx["queue_name"])


async def shutdown(ctx: Context) -> None:
    settings: Settings = ctx["settings"]
    heartbeat: asyncio.Task[None] | None = ctx.pop("heartbeat", None)
    if heartbeat is not None:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        # A clean stop removes this worker's key at once; the others keep theirs.
        with contextlib.suppress(RedisError, OSError):
            await ctx["redis"].delete(worker_key(settings, ctx["queue"]))
    http: httpx.AsyncClient | None = ctx.pop("http", None)
    if http is not None:
        await http.aclose()
    log.info("worker stopped")
