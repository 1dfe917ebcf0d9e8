"""Capacity: the same workers over one Redis and over two (the bulk queue on a server of its
own, BULK_REDIS_URL), in one run, and the per-job costs a capacity plan starts from.

Two workers per queue (`{{ cookiecutter.project_slug }} worker`, every hook as shipped), each a
process, drain both queues at once: `word_count` jobs on the default queue, one-page
`render_report` jobs of no wait on the bulk queue (both CPU-light, so the servers' share shows at
its largest; the bulk workers get the default queue's max_jobs). Layouts alternate over rounds;
each round fills both queues while the workers are paused (SIGSTOP), then times the drain of
both. Per job: the workers' CPU and each Redis's CPU (INFO cpu); during the drain, the cores each
side kept busy, which says what binds, and the connections the workers held. Then the Redis CPU
of an enqueue as POST /jobs makes it, and what a finished job keeps in Redis (MEMORY USAGE of its
record, events and index entry for JOB_RETENTION, of its result for JOB_KEEP_RESULT). The model
table divides a core by those costs: the Redis cores and worker processes a rate needs, and the
memory its retained jobs take.
"""

import asyncio
import contextlib
import math
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from arq.constants import result_key_prefix
from pydantic import RedisDsn
from redis.asyncio import Redis

from {{ cookiecutter.package_name }}.dev import local_redis
from {{ cookiecutter.package_name }}.queue import NewJob
from {{ cookiecutter.package_name }}.queue.arq_queue import ledger_for
from {{ cookiecutter.package_name }}.queue.shards import open_queue
from {{ cookiecutter.package_name }}.settings import QueueKey, Settings

from .common import Goal, Run, Worker, median, ready, start_ours, table, usage

WORKERS_PER_QUEUE = 2
JOBS_PER_QUEUE = 3000
WORK: dict[QueueKey, tuple[str, dict[str, object]]] = {
    "default": ("word_count", {"text": "the quick brown fox jumps over the lazy dog " * 4}),
    "bulk": ("render_report", {"pages": 1, "seconds_per_page": 0}),
}
UTILISATION = 0.7
"""The share of a core a plan fills: headroom for bursts, retries and a failover's catch-up."""
RATES = (1_000, 10_000, 100_000)
HEADER = [
    "layout",
    "jobs/s",
    "ratio",
    "worker us",
    "Redis us",
    "worker cores",
    "Redis cores",
    "conns",
]
DEFAULTS = Settings.model_fields
RETENTION: int = DEFAULTS["job_retention"].default
KEEP_RESULT: int = DEFAULTS["job_keep_result"].default


@dataclass
class Layout:
    name: str
    settings: Settings
    servers: dict[QueueKey, Redis]
    """The Redis of each queue (the same client twice when both queues share one)."""
    workers: list[Worker] = field(default_factory=list)

    def distinct(self) -> list[Redis]:
        return list({id(redis): redis for redis in self.servers.values()}.values())


@dataclass(frozen=True)
class Round:
    seconds: float
    jobs: int
    worker_cpu: float
    redis_cpu: list[float]
    """CPU seconds of each distinct server over the drain, in Layout.distinct's order."""
    default_ids: list[str]
    connections: int | None
    """The most connections the bulk queue's workers held at once while draining, on its own
    Redis (INFO clients, the benchmark's one left out); None with one Redis, where the other
    layout's idle workers are connected too."""


def layout(run: Run, name: str, servers: dict[QueueKey, Redis], bulk_url: str | None) -> Layout:
    """A layout's settings (queues of its own under the run's prefix) and its workers."""
    prefix = f"{run.prefix}:{name}"
    settings = run.settings.model_copy(
        update={
            "queue_name": f"{prefix}:queue",
            "bulk_queue_name": f"{prefix}:bulk",
            "bulk_redis_url": RedisDsn(bulk_url) if bulk_url else None,
            # As many slots as the default queue's: the bulk queue's few slots (for long jobs)
            # would bind the drain, and this part is about what Redis and the workers carry.
            "bulk_worker_max_jobs": run.settings.worker_max_jobs,
        }
    )
    own = Run(settings, f"{run.prefix}-{name}", run.quick, run.job_ids)
    workers = [
        start_ours(own, f"{name}: {queue} worker {number}", queue, number)
        for queue in WORK
        for number in range(WORKERS_PER_QUEUE)
    ]
    return Layout(name, settings, servers, workers)


async def drain_both(run: Run, where: Layout, jobs: int) -> Round:
    """Fill both queues with the workers paused, resume them, time until both are empty."""
    settings = where.settings
    ids: dict[QueueKey, list[str]] = {}
    async with open_queue(settings) as backend:
        for queue, (task, kwargs) in WORK.items():
            ids[queue] = []
            for start in range(0, jobs, 1000):
                batch = [NewJob(task, kwargs, settings.queue_for(queue))] * min(1000, jobs - start)
                ids[queue] += await backend.enqueue_many(batch)
            run.job_ids.extend(ids[queue])
    servers = where.distinct()
    before = [(await usage(redis)).cpu for redis in servers]
    peak = 0
    cpu = sum(worker.cpu_seconds() for worker in where.workers)
    started = time.perf_counter()
    for worker in where.workers:
        worker.resume()
    own = where.servers["bulk"] if len(servers) > 1 else None  # only its workers connect there
    for queue, redis in where.servers.items():
        while await redis.zcard(settings.queue_for(queue)):
            if time.perf_counter() - started > 300:
                raise where.workers[0].failed(f"{where.name}: the {queue} queue did not drain")
            if own is not None:
                peak = max(peak, await connections(own) - 1)  # (the benchmark's own: one)
            await asyncio.sleep(0.005)
    seconds = time.perf_counter() - started
    for worker in where.workers:
        worker.pause()
    after = [(await usage(redis)).cpu for redis in servers]
    return Round(
        seconds,
        jobs * len(WORK),
        sum(worker.cpu_seconds() for worker in where.workers) - cpu,
        [end - start for start, end in zip(before, after, strict=True)],
        ids["default"],
        peak if own is not None else None,
    )


async def enqueue_cost(run: Run, where: Layout, jobs: int) -> float:
    """Redis CPU seconds a job costs to enqueue as POST /jobs does (one script call a job, 32
    calls in flight, so that they share round trips as concurrent requests do); the jobs then
    run, unmeasured."""
    settings, redis = where.settings, where.servers["default"]
    task, kwargs = WORK["default"]
    ids: list[str] = []
    async with open_queue(settings) as backend:

        async def one() -> str:
            return (await backend.enqueue(task, kwargs, queue_name=settings.queue_name)).job_id

        before = (await usage(redis)).cpu
        for start in range(0, jobs, 32):
            ids += await asyncio.gather(*(one() for _ in range(min(32, jobs - start))))
        spent = (await usage(redis)).cpu - before
    run.job_ids.extend(ids)
    workers = [w for w in where.workers if w.queue_name == settings.queue_name]
    for worker in workers:
        worker.resume()
    deadline = time.monotonic() + 300
    while await redis.zcard(settings.queue_name):
        if time.monotonic() > deadline:
            raise workers[0].failed("the enqueued jobs did not run")
        await asyncio.sleep(0.01)
    for worker in workers:
        worker.pause()
    return spent / jobs


async def connections(redis: Redis) -> int:
    clients: dict[str, Any] = await redis.info("clients")
    return int(clients["connected_clients"])


async def kept_bytes(
    redis: Redis, settings: Settings, job_ids: Sequence[str]
) -> tuple[float, float]:
    """What a finished job keeps in Redis (bytes, mean over the sample): its record, events and
    entry in the listing's index (for JOB_RETENTION), and its result (for JOB_KEEP_RESULT)."""
    ledger = ledger_for(redis, settings)
    record = result = 0
    for job_id in job_ids:
        record += await redis.memory_usage(ledger.key(job_id)) or 0
        record += await redis.memory_usage(ledger.events_key(job_id)) or 0
        result += await redis.memory_usage(result_key_prefix + job_id) or 0
    entries = max(1, await redis.zcard(ledger.index))
    index = (await redis.memory_usage(ledger.index) or 0) / entries
    count = max(1, len(job_ids))
    return record / count + index, result / count


def plan(rate: int, per_redis: float, per_worker: float, record: float, result: float) -> list[str]:
    memory = rate * (RETENTION * record + KEEP_RESULT * result) / 2**30
    hour = rate * 3600 * (record + result) / 2**30
    return [
        f"{rate:,}",
        f"{rate / (UTILISATION * per_redis):.1f}",
        str(math.ceil(rate / (UTILISATION * per_worker))),
        f"{memory:,.1f}",
        f"{hour:,.1f}",
    ]


@contextlib.asynccontextmanager
async def layouts(run: Run) -> AsyncIterator[list[Layout]]:
    """Both layouts with their workers started, ready and paused; the second Redis (the bulk
    queue's shard) is this part's own, stopped at the end."""
    with local_redis(None, os.environ.get("PATH")) as (bulk_url, _origin):
        main = Redis.from_url(str(run.settings.redis_url))
        shard = Redis.from_url(bulk_url)
        started: list[Layout] = []
        try:
            started.append(layout(run, "one", {"default": main, "bulk": main}, None))
            started.append(layout(run, "two", {"default": main, "bulk": shard}, bulk_url))
            for where in started:
                for queue, redis in where.servers.items():
                    name = where.settings.queue_for(queue)
                    await ready(redis, [w for w in where.workers if w.queue_name == name])
                for worker in where.workers:
                    worker.pause()
            yield started
        finally:
            for where in started:
                for worker in where.workers:
                    worker.stop()
            await main.aclose()
            await shard.aclose()


async def measure(run: Run) -> str:
    jobs = 150 if run.quick else JOBS_PER_QUEUE
    rounds = 1 if run.quick else 3
    async with layouts(run) as (one, two):
        results: dict[str, list[Round]] = {one.name: [], two.name: []}
        for where in (one, two):  # warm-up: connections, imports, first-call caches
            await drain_both(run, where, 50)
        enqueue = median([await enqueue_cost(run, one, jobs) for _ in range(rounds)])
        for n in range(rounds):  # alternated, so that drift hits both alike
            for where in (one, two) if n % 2 == 0 else (two, one):
                results[where.name].append(await drain_both(run, where, jobs))
        record, result = await kept_bytes(
            one.servers["default"], one.settings, results[one.name][-1].default_ids[:200]
        )
    cores = os.cpu_count() or 1
    rates = {name: median([r.jobs / r.seconds for r in done]) for name, done in results.items()}
    rows = []
    for name, done in results.items():
        servers = range(len(done[0].redis_cpu))
        rows.append(
            [
                "one Redis" if name == one.name else "two Redis (bulk queue on its own)",
                f"{rates[name]:.0f}",
                f"{rates[name] / rates[one.name]:.2f}x",
                f"{median([r.worker_cpu / r.jobs for r in done]) * 1e6:.0f}",
                " + ".join(
                    f"{median([r.redis_cpu[i] / r.jobs for r in done]) * 1e6:.0f}" for i in servers
                ),
                f"{median([r.worker_cpu / r.seconds for r in done]):.2f}",
                " + ".join(
                    f"{median([r.redis_cpu[i] / r.seconds for r in done]):.2f}" for i in servers
                ),
                str(max(r.connections or 0 for r in done)) if done[0].connections else "-",
            ]
        )
    single = results[one.name]
    run_cost = median([sum(r.redis_cpu) / r.jobs for r in single])
    per_redis = 1 / (enqueue + run_cost)
    per_worker = 1 / median([r.worker_cpu / r.jobs for r in single])
    run.goals.append(
        Goal(
            "capacity: two Redis >= 0.9x one Redis (sharding costs no worker throughput)",
            f"{rates[two.name] / rates[one.name]:.2f}x",
            rates[two.name] >= 0.9 * rates[one.name],
        )
    )
    measured = table(
        f"Capacity: {WORKERS_PER_QUEUE} workers per queue drain {jobs} jobs on each of two queues "
        f"at once; medians of {rounds} rounds, ratio to one Redis; per job the CPU us of the "
        f"workers and of each Redis; while draining, the cores each kept busy (of {cores}) and "
        f"the most connections the bulk queue's {WORKERS_PER_QUEUE} workers held on its own Redis",
        HEADER,
        rows,
    )
    model = table(
        f"Capacity model from this run: a job costs Redis {enqueue * 1e6:.0f} us to enqueue (as "
        f"POST /jobs) and {run_cost * 1e6:.0f} us to run, so a Redis core carries "
        f"{per_redis:,.0f} jobs/s; a worker process (a core) {per_worker:,.0f}; a finished job "
        f"keeps {record:,.0f} bytes for "
        f"JOB_RETENTION ({RETENTION:,} s by default) and its result {result:,.0f} bytes for "
        f"JOB_KEEP_RESULT ({KEEP_RESULT:,} s); plans fill {UTILISATION:.0%} of each core",
        ["jobs/s", "Redis cores", "worker processes", "GiB kept (defaults)", "GiB kept (1 h)"],
        [plan(rate, per_redis, per_worker, record, result) for rate in RATES],
    )
    return f"{measured}\n\n{model}"
