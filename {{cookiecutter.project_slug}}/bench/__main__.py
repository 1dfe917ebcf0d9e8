"""`uv run python -m bench [worker] [http] [latency] [--quick] [--redis-url URL]`

Runs the benchmarks against a real Redis (REDIS_URL, else localhost:6379/0) and prints one table
per part, each with its ratio measured in this run: quote ratios, not absolute rates, which move
with the machine. Everything is written under a prefix of its own and deleted at the end.
"""

import argparse
import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable

from . import latency, throughput, web
from .common import Run, bench_settings, cleanup

PARTS: dict[str, Callable[[Run], Awaitable[str]]] = {
    "worker": throughput.measure,
    "http": web.measure,
    "latency": latency.measure,
}


async def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("parts", nargs="*", choices=[*PARTS, []], help="default: all")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny, not a figure")
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    job_ids: list[str] = []
    try:
        for name in args.parts or PARTS:
            # Queues of its own per part: jobs one part leaves queued (http) must not sit in
            # front of another part's (latency).
            part = f"{prefix}:{name}"
            run = Run(bench_settings(part, args.redis_url), part, args.quick, job_ids)
            print(await PARTS[name](run), end="\n\n", flush=True)
    finally:
        await cleanup(Run(bench_settings(prefix, args.redis_url), prefix, args.quick, job_ids))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
