"""A worker of the default queue serving two more tasks with limits (queue.limits), run as a
process of its own by test_limits.py: `python -m tests.integration.limited_worker`.

Its tasks note what the test checks in Redis: `rate_limited` nothing but its start (the ledger
has it), `capped` how many of its jobs run at once (the highest count it ever saw)."""

import asyncio

import uvloop
from arq import func
from pydantic import BaseModel

from {{ cookiecutter.package_name }}.logs import configure_logging
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.tasks import Context, Rate, Task
from {{ cookiecutter.package_name }}.worker.job_wrapper import job_function
from {{ cookiecutter.package_name }}.worker.options import worker_options
from {{ cookiecutter.package_name }}.worker.process import WakingWorker

RATE = Rate(50, per=10)
CAP = 3

# The running count, and the highest it reached, in one step: no two starts read the same count.
ENTER = """
local now = redis.call('INCR', KEYS[1])
if now > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], now) end
return now
"""


class NoArgs(BaseModel):
    pass


class Pause(BaseModel):
    seconds: float


async def rate_limited(ctx: Context) -> None:
    """Its start is all the test reads (the record's started_at)."""


async def capped(ctx: Context, seconds: float) -> None:
    prefix = ctx["settings"].queue_name
    redis = ctx["redis"]
    enter = redis.register_script(ENTER)
    await enter([f"{prefix}:capped:running", f"{prefix}:capped:most"])
    try:
        await asyncio.sleep(seconds)
    finally:
        await redis.decr(f"{prefix}:capped:running")


TASKS = (
    Task("rate_limited", rate_limited, NoArgs, rate=RATE),
    Task("capped", capped, Pause, concurrency=CAP),
)


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    options = worker_options(settings, "default")
    options["functions"] = [
        *options["functions"],
        *(func(job_function(task), name=task.name, max_tries=4) for task in TASKS),
    ]
    asyncio.set_event_loop(uvloop.new_event_loop())
    WakingWorker(**options).run()


if __name__ == "__main__":
    main()
