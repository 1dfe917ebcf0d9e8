"""Fast tier: the app on the in-memory queue (a fake, named as such); tasks with a ctx of ours."""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from arq.worker import Retry
from asgi_lifespan import LifespanManager

from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.tasks import TASKS, Context
from {{ cookiecutter.package_name }}.web.app import create_app
from {{ cookiecutter.package_name }}.worker.job_wrapper import job_function

from ..auth import AUTH
from .fake_queue import FakeQueue


@pytest.fixture
def memory_queue() -> FakeQueue:
    return FakeQueue()


@pytest.fixture
async def client(settings: Settings, memory_queue: FakeQueue) -> AsyncIterator[httpx.AsyncClient]:
    @asynccontextmanager
    async def open_fake(_settings: Settings) -> AsyncIterator[FakeQueue]:
        yield memory_queue

    app = create_app(settings, queue_factory=open_fake)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=AUTH
        ) as http:
            yield http


@pytest.fixture
def http_handler() -> list[Callable[[httpx.Request], httpx.Response]]:
    """Tests append the handler that answers the tasks' outgoing HTTP requests."""
    return []


@pytest.fixture
async def ctx(
    settings: Settings, http_handler: list[Callable[[httpx.Request], httpx.Response]]
) -> AsyncIterator[Context]:
    """What worker.lifecycle.startup gives a task, with outgoing HTTP answered in-process."""

    def answer(request: httpx.Request) -> httpx.Response:
        if not http_handler:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        return http_handler[-1](request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        yield {"settings": settings, "http": http, "job_id": "test-job", "job_try": 1}


@pytest.fixture
def run_jobs(memory_queue: FakeQueue, ctx: dict[str, Any]) -> Callable[[], Any]:
    """Run the queued jobs once, in order, through the worker's real job wrapper, as arq would: a
    job that asks for a retry runs again at the next call (the fake has no clock for its delay).
    Returns how many jobs started."""

    async def run() -> int:
        ready = memory_queue.ready()
        for record, kwargs in ready:
            job_ctx = {
                **ctx,
                "ledger": memory_queue,
                "job_id": record.id,
                "job_try": record.tries + 1,
                "queue_name": record.queue,
                "enqueue_time": record.enqueued_at,
            }
            try:
                await job_function(TASKS[record.task])(job_ctx, **kwargs)
            except Retry:
                memory_queue.retry_later(record.id)
            except Exception:  # noqa: S110 - the job wrapper has recorded it, as arq's worker would
                pass
        return len(ready)

    return run
