"""The web app as it is deployed, plus two endpoints to compare it with, for bench/web.py:

    uvicorn bench.server:create_bench_app --factory

`/bench/bare` answers without work; `/bench/naive` enqueues the way a minimal FastAPI + arq example
does (a pool opened by the lifespan, `await pool.enqueue_job`, no validation, no record). Both sit
behind the same middleware on the same server, so ratios measure what enqueueing costs, not the
server or the machine.
"""

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from arq.connections import ArqRedis, create_pool
from fastapi import FastAPI

from {{ cookiecutter.package_name }}.queue.arq_queue import redis_settings
from {{ cookiecutter.package_name }}.settings import get_settings
from {{ cookiecutter.package_name }}.web.app import create_app


def create_bench_app() -> FastAPI:
    settings = get_settings()
    app = create_app(settings)
    pools: list[ArqRedis] = []
    lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def with_pool(app: FastAPI) -> AsyncIterator[Any]:
        async with lifespan(app) as state:
            queue = f"{settings.queue_name}:naive"
            pools.append(await create_pool(redis_settings(settings), default_queue_name=queue))
            try:
                yield state
            finally:
                await pools.pop().aclose()

    app.router.lifespan_context = with_pool

    @app.post("/bench/bare", include_in_schema=False)
    async def bare() -> dict[str, str]:
        return {"ok": "yes"}

    @app.post("/bench/naive", include_in_schema=False)
    async def naive(body: dict[str, Any]) -> dict[str, str]:
        job = await pools[0].enqueue_job(body["task"], **body["args"])
        return {"id": job.job_id if job else ""}

    return app
