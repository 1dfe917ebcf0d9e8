"""A plain arq worker, as arq's docs show one, for bench/latency.py:

arq bench.raw_worker.WorkerSettings    (REDIS_URL, QUEUE_NAME, POLL_DELAY from the environment)
"""

import os
from typing import Any

from arq.connections import RedisSettings


async def word_count(ctx: dict[str, Any], text: str) -> int:
    return len(text.split())


class WorkerSettings:
    functions = (word_count,)
    redis_settings = RedisSettings.from_dsn(os.environ.get("REDIS_URL", "redis://localhost:6379"))
    queue_name = os.environ.get("QUEUE_NAME", "arq:queue")
    poll_delay = float(os.environ.get("POLL_DELAY", "0.5"))
    max_jobs = 50
    keep_result = 60
