"""Worker throughput: raw arq vs this service's worker with all its hooks, in ONE run.

    uv run python bench/throughput.py [--jobs 5000] [--rounds 3]

Both workers drain a queue pre-filled with no-op jobs, in burst mode, with the same arq settings
(max_jobs, poll_delay, keep_result) and the same Redis (REDIS_URL, else localhost:6379/0). The raw
one is arq as its docs show it (pickle, arq's log line per job). Ours adds everything a real job
goes through: the runner (ledger record, progress and cancel helpers, retry policy), msgpack, the
log context and filter{% if cookiecutter.use_metrics %}, and the metrics{% endif %}. The figure to watch is the ratio, not the
absolute rate, which moves with the machine. Keys are written under a prefix of this run and
deleted at the end.
"""

import argparse
import asyncio
import contextlib
import io
import logging.config
import statistics
import sys
import time
import uuid
from typing import Any

from arq import func
from arq.connections import ArqRedis, create_pool
from arq.jobs import serialize_job
from arq.logs import default_log_config
from arq.worker import Worker
from pydantic import BaseModel, RedisDsn

from {{ cookiecutter.package_name }}.queue import NewJob
from {{ cookiecutter.package_name }}.queue.arq import ArqJobQueue, redis_settings
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.tasks import Context, Task
from {{ cookiecutter.package_name }}.worker.runner import job_function
from {{ cookiecutter.package_name }}.worker.settings import worker_settings
from {{ cookiecutter.package_name }}.worker.wake import WakingWorker


class NoArgs(BaseModel):
    pass


async def noop(ctx: Context) -> None:
    return None


NOOP = Task(name="noop", function=noop, args=NoArgs)


async def fill_raw(pool: ArqRedis, queue: str, jobs: int) -> list[str]:
    now = int(time.time() * 1000)
    ids = [uuid.uuid4().hex for _ in range(jobs)]
    async with pool.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.psetex(f"arq:job:{job_id}", 600_000, serialize_job("noop", (), {}, None, now))
            pipe.zadd(queue, {job_id: now})
        await pipe.execute()
    return ids


def arq_cli_logging(sink: io.StringIO) -> None:
    """Logging as the `arq` command sets it up (a line per job start and end), into `sink`."""
    logging.config.dictConfig(default_log_config(verbose=False))
    arq_logger = logging.getLogger("arq")
    arq_logger.propagate = False
    for handler in arq_logger.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sink)


async def run_raw(
    settings: Settings, pool: ArqRedis, jobs: int, ids: list[str], sink: io.StringIO
) -> float:
    queue = f"{settings.queue_name}:raw"
    ids += await fill_raw(pool, queue, jobs)
    arq_cli_logging(sink)
    worker = Worker(
        functions=[func(noop, name="noop")],
        queue_name=queue,
        redis_pool=pool,
        burst=True,
        handle_signals=False,
        max_jobs=settings.worker_max_jobs,
        poll_delay=settings.worker_poll_delay,
        keep_result=settings.job_keep_result,
    )
    started = time.perf_counter()
    await worker.main()
    return jobs / (time.perf_counter() - started)


async def run_ours(settings: Settings, jobs: int, ids: list[str]) -> float:
    async with ArqJobQueue.connect(settings) as queue:
        for start in range(0, jobs, 1000):
            batch = [NewJob("noop", {}, settings.queue_name)] * min(1000, jobs - start)
            ids += await queue.enqueue_many(batch)
    options: dict[str, Any] = worker_settings(settings)
    options["functions"] = [func(job_function(NOOP), name="noop", max_tries=3)]
    options.pop("cron_jobs", None)  # a cron run would be one more job in the count
    worker = WakingWorker(**{**options, "burst": True, "handle_signals": False})
    started = time.perf_counter()
    try:
        await worker.main()
    finally:
        await worker.close()
    return jobs / (time.perf_counter() - started)


async def cleanup(pool: ArqRedis, prefix: str, ids: list[str]) -> None:
    """Delete what this run wrote, and nothing else: its prefix, and arq's keys of its jobs."""
    async for key in pool.scan_iter(match=f"{prefix}:*", count=1000):
        await pool.delete(key)
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        await pool.delete(*(f"arq:{kind}:{i}" for i in chunk for kind in ("result", "retry")))


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    base = Settings().model_copy(
        update={
            "queue_name": f"{prefix}:queue",
            "bulk_queue_name": f"{prefix}:bulk",
            "job_keep_result": 60,
            "job_retention": 600,
            "log_level": "INFO",  # a line per job start and end, as the arq CLI logs them
        }
    )
    if args.redis_url:
        base = base.model_copy(update={"redis_url": RedisDsn(args.redis_url)})
    # Both log every job, each its own way (arq's text lines; our JSON with context), to a sink.
    sink = io.StringIO()
    pool = await create_pool(redis_settings(base))
    raw_rates: list[float] = []
    our_rates: list[float] = []
    ids: list[str] = []
    try:
        with contextlib.redirect_stderr(sink):
            for _ in range(args.rounds):  # interleaved, so drift hits both alike
                raw_rates.append(await run_raw(base, pool, args.jobs, ids, sink))
                sink.seek(0)
                sink.truncate()
                our_rates.append(await run_ours(base, args.jobs, ids))
                sink.seek(0)
                sink.truncate()
    finally:
        await cleanup(pool, prefix, ids)
        await pool.aclose()
    raw, ours = statistics.median(raw_rates), statistics.median(our_rates)
    print(f"no-op jobs, {args.jobs} per round, median of {args.rounds} rounds")
    print(f"{'worker':<34}{'jobs/s':>10}")
    print(f"{'raw arq Worker':<34}{raw:>10.0f}")
    print(f"{'this service (all hooks)':<34}{ours:>10.0f}")
    print(f"{'ratio (goal >= 0.90)':<34}{ours / raw:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
