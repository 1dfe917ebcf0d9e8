"""Worker throughput: raw arq vs this service's worker with all its hooks, in one run.

Both workers drain a queue pre-filled with no-op jobs, in burst mode, with the same arq settings
(max_jobs, keep_result) and the same Redis, both polling every 10 ms: raw arq's fastest setting, so
the ratio is the cost of our hooks, not the gain of waking on enqueue. The raw one is arq as its
docs show it (pickle, arq's log line per job). Ours adds everything a real job goes through: the
job wrapper (ledger record, progress and cancel helpers, retry policy), msgpack, the log context and
filter{% if cookiecutter.use_metrics %}, the metrics{% endif %}. The figure to watch is the ratio, not the absolute rate, which moves with
the machine.
"""
{% if cookiecutter.use_dashboard %}
import asyncio
{%- endif %}
import contextlib
import io
import logging.config
{%- if cookiecutter.use_dashboard %}
import os
import subprocess
import sys
{%- endif %}
import time
import uuid
{%- if cookiecutter.use_dashboard %}
from pathlib import Path
{%- endif %}
from typing import Any

from arq import func
from arq.connections import ArqRedis, create_pool
from arq.jobs import serialize_job
from arq.logs import default_log_config
from arq.worker import Worker
from pydantic import BaseModel

from {{ cookiecutter.package_name }}.queue import NewJob
from {{ cookiecutter.package_name }}.queue.arq_queue import ArqJobQueue, redis_settings
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.tasks import Task
from {{ cookiecutter.package_name }}.worker.job_wrapper import job_function
from {{ cookiecutter.package_name }}.worker.options import worker_options
from {{ cookiecutter.package_name }}.worker.process import WakingWorker

from .common import Run, median, table
{% if cookiecutter.use_dashboard %}
DASHBOARD_POLL = 0.5
"""Seconds between the poller's fetches: four times the overview page's own refresh."""
{% endif %}

class NoArgs(BaseModel):
    pass


async def noop(ctx: dict[str, Any]) -> None:
    return None


NOOP = Task(name="noop", function=noop, args=NoArgs)


async def fill_raw(pool: ArqRedis, queue_name: str, jobs: int) -> list[str]:
    now = int(time.time() * 1000)
    ids = [uuid.uuid4().hex for _ in range(jobs)]
    async with pool.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.psetex(f"arq:job:{job_id}", 600_000, serialize_job("noop", (), {}, None, now))
            pipe.zadd(queue_name, {job_id: now})
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
    queue_name = f"{settings.queue_name}:raw"
    ids += await fill_raw(pool, queue_name, jobs)
    arq_cli_logging(sink)
    worker = Worker(
        functions=[func(noop, name="noop")],
        queue_name=queue_name,
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
    async with ArqJobQueue.connect(settings) as backend:
        for start in range(0, jobs, 1000):
            batch = [NewJob("noop", {}, settings.queue_name)] * min(1000, jobs - start)
            ids += await backend.enqueue_many(batch)
    options: dict[str, Any] = worker_options(settings)
    options["functions"] = [func(job_function(NOOP), name="noop", max_tries=3)]
    options.pop("cron_jobs", None)  # a cron run would be one more job in the count
    worker = WakingWorker(**{**options, "burst": True, "handle_signals": False})
    started = time.perf_counter()
    try:
        await worker.main()
    finally:
        await worker.close()
    return jobs / (time.perf_counter() - started)


{%- if cookiecutter.use_dashboard %}


def start_poller(settings: Settings) -> "subprocess.Popen[bytes]":
    env = {
        **os.environ,
        "REDIS_URL": str(settings.redis_url),
        "QUEUE_NAME": settings.queue_name,
        "BULK_QUEUE_NAME": settings.bulk_queue_name,
        "LOG_LEVEL": "WARNING",
        "OPERATOR_KEY": "bench-operator-" + "k" * 32,
{%- if cookiecutter.use_api_key %}
        "API_KEY": "bench-" + "k" * 32,
{%- endif %}
    }
    return subprocess.Popen(
        [sys.executable, "-m", "bench.dashboard_poller", str(DASHBOARD_POLL)],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
    )


async def run_ours_watched(settings: Settings, jobs: int, ids: list[str]) -> float:
    """Ours again, while a dashboard is open and polled (bench/dashboard_poller.py)."""
    poller = start_poller(settings)
    try:
        await asyncio.sleep(1)  # the poller is up and polling
        if poller.poll() is not None:
            raise RuntimeError("the dashboard poller did not start")
        return await run_ours(settings, jobs, ids)
    finally:
        poller.terminate()
        poller.wait(timeout=30)
{%- endif %}


async def measure(run: Run) -> str:
    """Raw arq vs ours, interleaved rounds (drift hits all alike); the table with the ratios."""
    jobs, rounds = (300, 1) if run.quick else (5000, 3)
    settings = run.settings.model_copy(update={"log_level": "INFO", "worker_poll_delay": 0.01})
    # Both log every job, each its own way (arq's text lines; our JSON with context), to a sink.
    sink = io.StringIO()
    pool = await create_pool(redis_settings(settings))
    rates: dict[str, list[float]] = {"raw": [], "ours": [], "watched": []}
    try:
        with contextlib.redirect_stderr(sink):
            for _ in range(rounds):
                rates["raw"].append(await run_raw(settings, pool, jobs, run.job_ids, sink))
                sink.seek(0)
                sink.truncate()
                rates["ours"].append(await run_ours(settings, jobs, run.job_ids))
                sink.seek(0)
                sink.truncate()
{%- if cookiecutter.use_dashboard %}
                rates["watched"].append(await run_ours_watched(settings, jobs, run.job_ids))
                sink.seek(0)
                sink.truncate()
{%- endif %}
    finally:
        await pool.aclose()
        logging.getLogger("arq").handlers.clear()
    raw, ours = median(rates["raw"]), median(rates["ours"])
    rows = [
        ["raw arq Worker", f"{raw:.0f}"],
        ["this service (all hooks)", f"{ours:.0f}"],
        ["ratio (goal >= 0.90)", f"{ours / raw:.2f}"],
    ]
{%- if cookiecutter.use_dashboard %}
    watched = median(rates["watched"])
    rows += [
        [f"this service, dashboard polled every {DASHBOARD_POLL:g} s", f"{watched:.0f}"],
        ["dashboard open / closed", f"{watched / ours:.2f}"],
    ]
{%- endif %}
    return table(
        f"Worker throughput: no-op jobs, {jobs} per round, median of {rounds} rounds",
        ["worker", "jobs/s"],
        rows,
    )
