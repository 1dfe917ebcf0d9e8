"""A saq worker, the peer queue the benchmarks measure where saq is installed (it is no dependency
of the project):

python -m saq bench.saq_worker.settings    (REDIS_URL, QUEUE_NAME, CONCURRENCY from the environment)

Its tasks are raw_worker's: the example task's work, and 10 ms of I/O.
"""

import asyncio
import importlib
import os
from typing import Any


async def word_count(ctx: dict[str, Any], *, text: str) -> dict[str, int]:
    return {"words": len(text.split()), "characters": len(text)}


async def sleep(ctx: dict[str, Any], *, seconds: float) -> None:
    await asyncio.sleep(seconds)


def queue(redis_url: str, name: str) -> Any:
    """A saq queue; imported here, not at the top: the module loads (and type-checks) without
    saq."""
    return importlib.import_module("saq").Queue.from_url(redis_url, name=name)


def settings() -> dict[str, Any]:
    return {
        "queue": queue(os.environ["REDIS_URL"], os.environ["QUEUE_NAME"]),
        "functions": [word_count, sleep],
        "concurrency": int(os.environ.get("CONCURRENCY", "10")),
    }
