"""A plain arq worker, as arq's docs show one, for the benchmarks:

arq bench.raw_worker.WorkerSettings    (REDIS_URL, QUEUE_NAME, MAX_JOBS, POLL_DELAY from the
                                        environment; arq's own defaults where unset)

Its tasks do what the project's do: `word_count` the example task's work, `sleep` the 10 ms of
I/O of the benchmark's I/O-bound jobs.
"""

import asyncio
import os
from typing import Any

from arq.connections import RedisSettings


async def word_count(ctx: dict[str, Any], text: str) -> dict[str, int]:
    return {"words": len(text.split()), "characters": len(text)}


async def sleep(ctx: dict[str, Any], seconds: float) -> None:
    await asyncio.sleep(seconds)


class WorkerSettings:
    functions = (word_count, sleep)
    redis_settings = RedisSettings.from_dsn(os.environ.get("REDIS_URL", "redis://localhost:6379"))
    queue_name = os.environ.get("QUEUE_NAME", "arq:queue")
    max_jobs = int(os.environ.get("MAX_JOBS", "10"))
    poll_delay = float(os.environ.get("POLL_DELAY", "0.5"))
    keep_result = 60
