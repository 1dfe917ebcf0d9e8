"""Worker startup and shutdown: build what tasks share once per process, and close it."""

import asyncio
import contextlib
import logging

import httpx
import structlog
from redis.exceptions import RedisError

from ..logs import configure_logging
from ..meters import metered_recorder, serve_worker_metrics
from ..queue.arq_queue import ledger_for
from ..queue.ledger import START_WRITE_DELAY
from ..reporting import configure_error_reports
from ..settings import Settings
from ..spans import configure_tracing
from ..storage import open_database, start_relay
from ..tasks import Context
from ..tasks.deliver_webhook import WebhookClients
from .end_line import hold_end_lines
from .heartbeat import beat_forever, worker_key
from .log_redaction import hide_job_arguments, hide_url_paths
from .outage import REDIS_ERRORS, SOCKET_TIMEOUT

log = logging.getLogger(__name__)


async def startup(ctx: Context) -> None:
    """Put the job ledger, the shared HTTP client and the liveness loop in ctx (arq already put
    `redis` there)."""
    settings: Settings = ctx["settings"]
    configure_logging(settings.log_level, settings.log_format)
    hide_job_arguments(redacted_only=settings.log_job_arguments)
    hide_url_paths()
    hold_end_lines()
    ctx["tracing"] = configure_tracing(settings, f"{settings.app_name}-worker")
    ctx["error_reports"] = configure_error_reports(settings, f"{settings.app_name}-worker")
    ledger = ledger_for(ctx["redis"], settings, ctx.get("success_sink"), START_WRITE_DELAY)
    ctx["ledger"] = metered_recorder(ledger)
    try:
        async with asyncio.timeout(SOCKET_TIMEOUT):
            await ledger.load_scripts()
    except REDIS_ERRORS as exc:  # a worker starts during an outage: its first write loads them
        log.warning("could not load the ledger's scripts (%s); loaded on first use", exc)
    ctx["metrics_server"] = serve_worker_metrics(settings)
    ctx["http"] = httpx.AsyncClient(timeout=httpx.Timeout(10.0), follow_redirects=True)
    ctx["webhook_clients"] = WebhookClients()
    # The database, if the project has one (storage.py): a session per job (job_wrapper) and the
    # relay of jobs written with a transaction (database.outbox).
    ctx["database_scope"] = scope = contextlib.AsyncExitStack()
    ctx["database"] = await scope.enter_async_context(open_database(settings))
    ctx["outbox_relay"] = start_relay(ctx["database"], settings)
    ctx["heartbeat"] = asyncio.create_task(
        beat_forever(
            ctx["redis"],
            settings,
            ctx["queue"],
            ctx.get("running_jobs", lambda: 0),
            ctx.get("loop_wedged", lambda: None),
            ctx.get("cron_jobs", ()),
        ),
        name="heartbeat",
    )
    log.info("worker started on queue %s", ctx["queue_name"])


async def job_started(ctx: Context) -> None:
    """arq calls this in the job's own asyncio task, before its "→" line: what is bound here is on
    every log line of the job, arq's included (the job wrapper adds the task and request id)."""
    structlog.contextvars.bind_contextvars(
        job_id=ctx["job_id"], job_try=ctx["job_try"], queue=ctx["queue_name"]
    )


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
    stop_metrics = ctx.pop("metrics_server", None)
    if stop_metrics is not None:
        stop_metrics()
    http: httpx.AsyncClient | None = ctx.pop("http", None)
    if http is not None:
        await http.aclose()
    clients: WebhookClients | None = ctx.pop("webhook_clients", None)
    if clients is not None:
        await clients.aclose()
    relay: asyncio.Task[None] | None = ctx.pop("outbox_relay", None)
    if relay is not None:
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay
    database_scope: contextlib.AsyncExitStack | None = ctx.pop("database_scope", None)
    if database_scope is not None:
        await database_scope.aclose()  # the pool's connections closed
    tracing = ctx.pop("tracing", None)
    if tracing is not None:
        tracing.shutdown()  # sends the spans still buffered
    send_reports = ctx.pop("error_reports", None)
    if send_reports is not None:
        send_reports()  # the error reports still queued
    log.info("worker stopped")
