"""Worker startup and shutdown: build what tasks share once per process, and close it."""

import asyncio
import contextlib
import logging

import httpx
import structlog
{%- if cookiecutter.use_metrics %}
from prometheus_client import start_http_server
{%- endif %}
from redis.exceptions import RedisError

from ..logs import configure_logging
{%- if cookiecutter.use_metrics %}
from ..metrics import MeteredRecorder
{%- endif %}
from ..queue.arq import ledger_for
from ..settings import Settings
from ..tasks import Context
{%- if cookiecutter.use_tracing %}
from ..tracing import configure_tracing
{%- endif %}
from .heartbeat import beat_forever, worker_key
from .logs import hide_job_arguments

log = logging.getLogger(__name__)


async def startup(ctx: Context) -> None:
    """Put the job ledger, the shared HTTP client and the liveness loop in ctx (arq already put
    `redis` there)."""
    settings: Settings = ctx["settings"]
    configure_logging(settings.log_level, settings.log_format)
    hide_job_arguments(redacted_only=settings.log_job_arguments)
{%- if cookiecutter.use_tracing %}
    ctx["tracing"] = configure_tracing(settings, f"{settings.app_name}-worker")
{%- endif %}
{%- if cookiecutter.use_metrics %}
    ctx["ledger"] = MeteredRecorder(ledger_for(ctx["redis"], settings))
    if settings.worker_metrics_port is not None:
        try:
            ctx["metrics_server"], _thread = start_http_server(settings.worker_metrics_port)
        except OSError as exc:
            raise RuntimeError(
                f"WORKER_METRICS_PORT {settings.worker_metrics_port} is not free ({exc}): "
                "give each worker on a host a port of its own, or leave it unset"
            ) from exc
{%- else %}
    ctx["ledger"] = ledger_for(ctx["redis"], settings)
{%- endif %}
    ctx["http"] = httpx.AsyncClient(timeout=httpx.Timeout(10.0), follow_redirects=True)
    ctx["heartbeat"] = asyncio.create_task(
        beat_forever(
            ctx["redis"],
            settings,
            ctx["queue"],
            ctx.get("running_jobs", lambda: 0),
            ctx.get("loop_wedged", lambda: None),
        ),
        name="heartbeat",
    )
    log.info("worker started on queue %s", ctx["queue_name"])


async def job_started(ctx: Context) -> None:
    """arq calls this in the job's own asyncio task, before its "→" line: what is bound here is on
    every log line of the job, arq's included (the runner adds the task and request id)."""
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
{%- if cookiecutter.use_metrics %}
    metrics_server = ctx.pop("metrics_server", None)
    if metrics_server is not None:
        metrics_server.shutdown()
        metrics_server.server_close()
{%- endif %}
    http: httpx.AsyncClient | None = ctx.pop("http", None)
    if http is not None:
        await http.aclose()
{%- if cookiecutter.use_tracing %}
    tracing = ctx.pop("tracing", None)
    if tracing is not None:
        tracing.shutdown()  # sends the spans still buffered
{%- endif %}
    log.info("worker stopped")
