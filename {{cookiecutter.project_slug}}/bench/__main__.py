"""`uv run python -m bench [worker] [http] [latency] [capacity] [--quick] [--redis-url URL]`

Runs the benchmarks against a Redis of their own (a `redis-server` or `valkey-server` started on a
free port, found as the project's `dev` command finds one), or the one at --redis-url, and prints
one table per part, each row a yardstick measured in this run, then the goals and whether they
hold: quote ratios, not absolute rates, which move with the machine. Everything is written under
a prefix of its own and deleted at the end.
"""

import argparse
import contextlib
import os
import sys
import uuid
from collections.abc import Awaitable, Callable

import uvloop

from {{ cookiecutter.package_name }}.dev import local_redis

from . import capacity, latency, throughput, web
from .common import SAQ, Goal, Run, bench_settings, cleanup, goals_table

PARTS: dict[str, Callable[[Run], Awaitable[str]]] = {
    "worker": throughput.measure,
    "http": web.measure,
    "latency": latency.measure,
    "capacity": capacity.measure,
}


async def run_parts(parts: list[str], redis_url: str, quick: bool) -> None:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    job_ids: list[str] = []
    goals: list[Goal] = []
    try:
        for name in parts:
            # Queues of its own per part: jobs one part leaves queued (http) must not sit in
            # front of another part's (latency).
            part = f"{prefix}:{name}"
            run = Run(bench_settings(part, redis_url), part, quick, job_ids)
            print(await PARTS[name](run), end="\n\n", flush=True)
            goals += run.goals
    finally:
        await cleanup(redis_url, prefix, job_ids)
    if not SAQ:
        # A peer queue, measured where it is installed (it is no dependency of the project).
        print("saq: not installed", end="\n\n")
    print(goals_table(goals), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("parts", nargs="*", choices=[*PARTS, []], help="default: all")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny, not a figure")
    parser.add_argument("--redis-url", default=None, help="default: a Redis of its own")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        redis_url = args.redis_url
        if redis_url is None:
            redis_url, origin = stack.enter_context(local_redis(None, os.environ.get("PATH")))
            print(f"Redis: {origin}, {redis_url}", end="\n\n", flush=True)
        # uvloop, as the service runs: the client is the instrument of the latency part, and
        # asyncio's own loop added a fifth of a millisecond of its own to each job it timed.
        uvloop.run(run_parts(args.parts or list(PARTS), redis_url, args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
