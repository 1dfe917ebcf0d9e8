"""The FastAPI app factory. Its lifespan opens the queue (the ArqRedis pool) and closes it."""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError

from ..logs import configure_logging
from ..queue import QueueBackend, QueueUnavailableError
from ..queue.shards import open_queue as open_backend
from ..reporting import configure_error_reports
from ..settings import Settings, get_settings
from ..spans import configure_tracing
from ..storage import open_database
from .errors import invalid_request, queue_unavailable
from .limits import BodyLimit
from .operator import require_operator_key
from .proxy import trust_proxies
from .request_id import RequestId
from .routes import dead_letters, health, jobs, tasks
from .streams import StreamSlots

# Where the template's options enter the web app: each its real part, or a stand-in (absent.py).
# isort: off
{%- if cookiecutter.use_api_key %}
from .auth import guard_jobs  # X-API-Key on the job routes
{%- else %}
from .absent import guard_jobs
{%- endif %}
{%- if cookiecutter.use_dashboard %}
from .dashboard import mount_dashboard
{%- else %}
from .absent import mount_dashboard
{%- endif %}
{%- if cookiecutter.database == "postgres" %}
from .routes.documents import mount_documents
{%- else %}
from .absent import mount_documents
{%- endif %}
{%- if cookiecutter.use_metrics %}
from .routes.metrics import mount_metrics
{%- else %}
from .absent import mount_metrics
{%- endif %}
# isort: on

QueueFactory = Callable[[Settings], AbstractAsyncContextManager[QueueBackend]]


def create_app(
    settings: Settings | None = None, queue_factory: QueueFactory | None = None
) -> FastAPI:
    """Build the app. Tests pass their own settings and, for the fast tier, an in-memory queue."""
    settings = settings or get_settings()
    jobs_guards = guard_jobs(settings)  # first: a web without its API key never starts
    open_queue: QueueFactory = queue_factory or open_backend
    # Before the app is built: the integrations wrap what the app's middleware is made of.
    send_reports = configure_error_reports(settings, f"{settings.app_name}-web")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        # Lifespan state reaches every request as `request.state`; see deps.py.
        tracing = configure_tracing(settings, f"{settings.app_name}-web")
        async with open_queue(settings) as backend, open_database(settings) as database:
            streams = StreamSlots(settings.max_streams)  # per process, as the cap is
            yield {
                "backend": backend,
                "database": database,
                "settings": settings,
                "streams": streams,
            }
        if tracing is not None:
            tracing.shutdown()  # sends the spans still buffered
        if send_reports is not None:
            send_reports()  # the error reports still queued

    configure_logging(settings.log_level, settings.log_format)
    app = FastAPI(title=settings.app_name, lifespan=lifespan)
    app.add_exception_handler(QueueUnavailableError, queue_unavailable)
    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestId)  # even a 413 carries the request id
    trust_proxies(app, settings)  # outermost: every part sees the scheme the browser used
    jobs.add_enqueue_route(app, jobs_guards)  # (first: every job comes through it)
    app.include_router(jobs.router, dependencies=jobs_guards)
    # Operators only, whatever the answer to use_api_key: closed until OPERATOR_KEY is set.
    app.include_router(dead_letters.router, dependencies=[Depends(require_operator_key)])
    app.include_router(tasks.router)
    app.include_router(health.router)
    mount_documents(app, jobs_guards)
    mount_metrics(app)
    mount_dashboard(app)
    return app
