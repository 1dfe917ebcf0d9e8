"""The web app as it is deployed, plus two endpoints to compare it with, for bench/web.py:

    uvicorn bench.server:create_bench_app --factory

`/bench/bare` answers without work; `/bench/naive` enqueues the way a minimal FastAPI + arq example
does (arq's `enqueue_job` on a pool, no validation, no record). Both sit behind the same middleware
on the same server, so ratios measure what enqueueing costs, not the server or the machine.
"""

import asyncio
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
    lock = asyncio.Lock()

    @app.post("/bench/bare", include_in_schema=False)
    async def bare() -> dict[str, str]:
        return {"ok": "yes"}

    @app.post("/bench/naive", include_in_schema=False)
    async def naive(body: dict[str, Any]) -> dict[str, str]:
        async with lock:
            if not pools:
                queue_name = f"{settings.queue_name}:naive"
                pools.append(
                    await create_pool(redis_settings(settings), default_queue_name=queue_name)
                )
        job = await pools[0].enqueue_job(body["task"], **body["args"])
        return {"id": job.job_id if job else ""}

    return app
