"""What a task gets as `ctx`: arq's per-job context, typed, so that mypy --strict checks every key
a task reads (a misspelt key, or a call with the wrong arguments, fails the type check).

arq puts `redis`, `job_id`, `job_try`, `enqueue_time` and `score` there; worker.options the
settings and the queue; worker.lifecycle what tasks share (`http`); worker.job_wrapper, for each
try, `progress` and `cancel_requested`. The rest is the worker's own.
"""

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypedDict

import httpx
from redis.asyncio import Redis
{%- if cookiecutter.database == "postgres" %}
from sqlalchemy.ext.asyncio import AsyncSession
{%- endif %}

from ..settings import QueueKey, Settings


class ReportProgress(Protocol):
    def __call__(self, percent: float, message: str = "") -> Awaitable[None]:
        """Record how far the job is (0-100) and what it is doing; it shows on the job's record
        and its event stream. A report lost to a Redis outage is dropped, never fatal."""
        ...


class Context(TypedDict, total=False):
    # arq's, for each job
    redis: Redis
    job_id: str
    job_try: int
    enqueue_time: datetime
    score: int
    # worker.options
    settings: Settings
    queue: QueueKey
    """The queue's key, as the API and `worker --queue` name it: "default" or "bulk"."""
    queue_name: str
    """The Redis name of that queue (arq's queue_name), the sorted set its jobs wait in."""
    cron_jobs: Sequence[Any]
    # worker.lifecycle: shared by every job of the worker
    http: httpx.AsyncClient
    """One HTTP client for all tasks (connection pooling; 10 s timeout, redirects followed)."""
    webhook_clients: Any
    database: Any
    """The database (storage.py), or None without one."""
    database_scope: Any
    outbox_relay: asyncio.Task[None] | None
    """The deliveries' HTTP clients, one per receiver's name (tasks.deliver_webhook)."""
    ledger: Any
    heartbeat: asyncio.Task[None]
    tracing: Any
    error_reports: Callable[[], None] | None
    metrics_server: Callable[[], None] | None
    # worker.process
    running_jobs: Callable[[], int]
    loop_wedged: Callable[[], float | None]
    success_sink: Callable[[str, Any], None]
    """Takes a success's record write, to send with arq's end of the job (queue.ledger)."""
    delivery_sink: Callable[[str, Any], None]
    """Takes a job's webhook delivery, to queue with arq's end of the job (queue.deliveries)."""
    # worker.job_wrapper, for each try
    progress: ReportProgress
    parents: Mapping[str, Any]
    """A job enqueued to run `after` others: their results, by id, in the order given (JSON
    values, as GET /jobs/{id} shows them). Absent for other jobs."""
    cancel_requested: Callable[[], Awaitable[bool]]
    """Whether a cancel was requested: a task that sees yes raises JobCancelledError."""
{%- if cookiecutter.database == "postgres" %}
    session: AsyncSession
    """This try's own database session (never another job's), closed after it: `async with
    ctx["session"].begin():` for one transaction. It connects on its first statement only."""
{%- endif %}
