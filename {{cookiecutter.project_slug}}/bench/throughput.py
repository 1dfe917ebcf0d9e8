"""Worker throughput and cost per job: this service's worker vs raw arq, in one run.

Each worker is a process of its own, as deployed, on a queue of its own: ours is the project's
`worker` command with every hook as shipped (job record and events, retry policy, msgpack, log
context, wake on enqueue{% if cookiecutter.use_metrics %}, metrics{% endif %}); the yardsticks run `arq bench.raw_worker.WorkerSettings`:
tuned (ours' max_jobs, polling every 10 ms), at the project's settings (its max_jobs and poll
delay), and at arq's defaults (10 jobs, 0.5 s); where saq is installed, a saq worker of as many
slots is a peer row{% if cookiecutter.use_dashboard %}, and a last row drains ours again while a dashboard is polled{% endif %}. After a
warm-up drain each, a round fills each worker's queue while the worker
is stopped (SIGSTOP; the others stay stopped too, so Redis's counters are the measured one's),
resumes it and times the drain until its queue is empty. Rounds alternate the workers; figures are
medians. Per job: the worker's CPU time, and Redis's (INFO cpu) and commands (INFO commandstats,
those run inside scripts included) over the drain.

Two lines: `word_count` jobs (the example task: CPU-light, so the hooks' cost shows at its
largest), and 10 ms of I/O a job (`render_report` of one page of 10 ms on the bulk queue, with its
progress and cancel checks; raw arq sleeps 10 ms) at the bulk worker's max_jobs.
"""

import asyncio
{%- if cookiecutter.use_dashboard %}
import os
{%- endif %}
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from arq.constants import result_key_prefix
from arq.jobs import serialize_job
from redis.asyncio import Redis

from {{ cookiecutter.package_name }}.dev import free_port
from {{ cookiecutter.package_name }}.queue import NewJob
from {{ cookiecutter.package_name }}.queue.arq_queue import ArqJobQueue
from {{ cookiecutter.package_name }}.settings import QueueKey

from . import saq_worker
from .common import (
    PROJECT,
    SAQ,
    Goal,
    Run,
    Worker,
    median,
    ratio,
    ready,
    start_calling_back,
    start_chained,
    start_limited,
    start_ours,
    start_raw,
    start_saq,
    table,
    usage,
)
{% if cookiecutter.use_dashboard %}
DASHBOARD_POLL = 0.5
"""Seconds between the poller's fetches: four times the overview page's own refresh."""
{% endif %}
TEXT = "the quick brown fox jumps over the lazy dog " * 4


@dataclass(frozen=True)
class Line:
    title: str
    queue: QueueKey
    task: str
    kwargs: dict[str, Any]
    raw_task: str
    raw_kwargs: dict[str, Any]
    jobs: int
    shares: tuple[float, float]
    """Of `jobs`, what raw arq at the project's settings and at arq's defaults drain: polling
    every 0.5 s they would take minutes for all. Not fewer than a few polls' worth, or the
    figure would time one poll: arq reads max(100, 5 x max_jobs) ids a poll, and starts jobs
    while slots free up, or (10 ms jobs on 4 slots) only max_jobs a poll."""


@dataclass
class Figures:
    rates: list[float]
    cpu: list[float]
    redis_cpu: list[float]
    commands: list[float]


async def fill(
    run: Run, redis: Redis, backend: ArqJobQueue, worker: Worker, line: Line, jobs: int
) -> list[str]:
    """`jobs` jobs on the worker's queue: ours through the project's batch enqueue (records and
    all), raw arq's as arq's `enqueue_job` writes them (pickle), saq's by its `enqueue`."""
    ids: list[str] = []
    if worker.kind == "saq":
        name = worker.queue_name.removeprefix("saq:").removesuffix(":incomplete")
        peer = saq_worker.queue(str(run.settings.redis_url), name)
        try:
            for _ in range(jobs):
                await peer.enqueue(line.raw_task, **line.raw_kwargs)
        finally:
            await peer.disconnect()
        return ids
    if worker.pairs:
        # Its records under its own queue's name, as its worker's ledger reads them: a parent's
        # end finds its children there.
        own = run.settings.model_copy(update={"queue_name": worker.queue_name})
        async with ArqJobQueue.connect(own) as chained:
            for start in range(0, jobs, 1000):
                size = min(1000, jobs - start)
                after = [(f"#{n - 1}",) if n % 2 else () for n in range(size)]
                batch = [NewJob(line.task, line.kwargs, worker.queue_name, a) for a in after]
                ids += await chained.enqueue_many(batch)
    elif worker.ours:
        for start in range(0, jobs, 1000):
            task = worker.task or line.task
            batch = [NewJob(task, line.kwargs, worker.queue_name)] * min(1000, jobs - start)
            ids += await backend.enqueue_many(batch, worker.meta)
    else:
        now = int(time.time() * 1000)
        ids = [uuid.uuid4().hex for _ in range(jobs)]
        job = serialize_job(line.raw_task, (), line.raw_kwargs, None, now)
        async with redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.psetex(f"arq:job:{job_id}", 600_000, job)
                pipe.zadd(worker.queue_name, {job_id: now})
            await pipe.execute()
    run.job_ids.extend(ids)
    return ids


async def drain(
    run: Run, redis: Redis, backend: ArqJobQueue, worker: Worker, line: Line, jobs: int
) -> tuple[float, float, float, int]:
    """One round of one worker: seconds to drain `jobs`, its CPU seconds, Redis's CPU seconds
    and commands."""
    ids = await fill(run, redis, backend, worker, line, jobs)
    before, cpu = await usage(redis), worker.cpu_seconds()
    started = time.perf_counter()
    worker.resume()
    # arq removes a job from its queue in the transaction that stores its result (saq from its
    # zset of incomplete jobs, as it stores the job's end).
    while await redis.zcard(worker.queue_name):
        if worker.process.poll() is not None or time.perf_counter() - started > 300:
            raise worker.failed("did not drain its queue")
        await asyncio.sleep(0.005)
    seconds = time.perf_counter() - started
    worker.pause()
    after, cpu = await usage(redis), worker.cpu_seconds() - cpu
    found = 0
    for n in range(0, len(ids), 500):
        found += await redis.exists(*(result_key_prefix + job_id for job_id in ids[n : n + 500]))
    if found != len(ids):
        raise worker.failed(f"{jobs - found} of {jobs} jobs left no result")
    return seconds, cpu, after.cpu - before.cpu, after.commands_since(before)
{%- if cookiecutter.use_dashboard %}


def start_poller(run: Run) -> "subprocess.Popen[bytes]":
    """An operator with the dashboard open (bench/dashboard_poller.py) on ours' queues."""
    settings = run.settings
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
    command = [sys.executable, "-m", "bench.dashboard_poller", str(DASHBOARD_POLL)]
    return subprocess.Popen(command, cwd=PROJECT, env=env)
{%- endif %}


def start_receiver() -> tuple["subprocess.Popen[bytes]", str]:
    """A webhook receiver (bench/receiver.py) on a free port, and its URL."""
    port = free_port()
    command = [sys.executable, "-m", "bench.receiver", str(port)]
    return subprocess.Popen(command, cwd=PROJECT), f"http://127.0.0.1:{port}/"


async def measure_line(run: Run, redis: Redis, line: Line) -> tuple[str, list[Goal]]:
    settings = run.settings
    if line.queue == "default":
        max_jobs = settings.worker_max_jobs
    else:
        max_jobs = settings.bulk_worker_max_jobs
    poll = settings.worker_poll_delay
    raw_name = f"{run.prefix}:raw-{line.queue}"
    ours = start_ours(run, f"this service (max_jobs {max_jobs}, wakes on enqueue)", line.queue)
    tuned = start_raw(
        run, f"raw arq tuned (max_jobs {max_jobs}, poll 0.01 s)", f"{raw_name}-t", max_jobs, 0.01
    )
    project = start_raw(
        run,
        f"raw arq, project settings (max_jobs {max_jobs}, poll {poll:g} s)",
        f"{raw_name}-p",
        max_jobs,
        poll,
    )
    defaults = start_raw(
        run, "raw arq defaults (max_jobs 10, poll 0.5 s)", f"{raw_name}-d", 10, 0.5
    )
    workers = [ours, tuned, project, defaults]
    limited = calling = chained = receiver = None
    if line.queue == "default":
        # The cost of limits: the same task with a rate limit and a cap that are never reached.
        limited = start_limited(run, "this service, the task with a rate limit and a cap")
        # The cost of webhooks: each job's end signed and POSTed (by its delivery job, on the
        # same queue, counted in the drain) to a receiver that answers at once.
        receiver, url = start_receiver()
        calling = start_calling_back(run, "this service, each job calling back (webhook)", url)
        # The cost of dependencies: half the jobs wait for the other half, each freed by its
        # parent's end.
        chained = start_chained(run, "this service, every second job after the one before")
        workers[1:1] = [limited, calling, chained]
    if SAQ:
        name = f"{run.prefix}:saq-{line.queue}"
        workers.append(start_saq(run, f"saq (concurrency {max_jobs})", name, max_jobs))
    sizes = {
        project.label: line.jobs if poll < 0.1 else round(line.jobs * line.shares[0]),
        defaults.label: round(line.jobs * line.shares[1]),
    }
    rounds = 1 if run.quick else 3
    figures = {worker.label: Figures([], [], [], []) for worker in workers}
{%- if cookiecutter.use_dashboard %}
    watched = f"this service, dashboard polled every {DASHBOARD_POLL:g} s"
    if line.queue == "default":
        figures[watched] = Figures([], [], [], [])
{%- endif %}
    try:
        async with ArqJobQueue.connect(settings) as client:
            await ready(redis, workers)
            for worker in workers:
                worker.pause()
            for worker in workers:  # warm-up: connections, imports, first-call caches
                await drain(run, redis, client, worker, line, min(50, *sizes.values()))
            for n in range(rounds):
                # Alternated: each round starts with the next worker, so drift hits all alike.
                for worker in workers[n % len(workers) :] + workers[: n % len(workers)]:
                    jobs = sizes.get(worker.label, line.jobs)
                    seconds, cpu, redis_cpu, commands = await drain(
                        run, redis, client, worker, line, jobs
                    )
                    row = figures[worker.label]
                    row.rates.append(jobs / seconds)
                    row.cpu.append(cpu / jobs)
                    row.redis_cpu.append(redis_cpu / jobs)
                    row.commands.append(commands / jobs)
{%- if cookiecutter.use_dashboard %}
                    if worker is ours and watched in figures:
                        poller = start_poller(run)
                        try:
                            await asyncio.sleep(2)  # the poller is up and polling
                            if poller.poll() is not None:
                                raise RuntimeError("the dashboard poller did not start")
                            seconds, cpu, redis_cpu, commands = await drain(
                                run, redis, client, worker, line, jobs
                            )
                        finally:
                            poller.terminate()
                            poller.wait(timeout=30)
                        figures[watched].rates.append(jobs / seconds)
                        figures[watched].cpu.append(cpu / jobs)
                        figures[watched].redis_cpu.append(redis_cpu / jobs)
                        figures[watched].commands.append(commands / jobs)
{%- endif %}
    finally:
        for worker in workers:
            worker.stop()
        if receiver is not None:
            receiver.terminate()
            receiver.wait(timeout=30)
    base = {name: median(values) for name, values in vars(figures[tuned.label]).items()}
    rows = []
    for label, row in figures.items():
        rate, cpu, redis_cpu = median(row.rates), median(row.cpu), median(row.redis_cpu)
        rows.append(
            [
                label,
                str(sizes.get(label, line.jobs)),
                f"{rate:.0f}",
                ratio(rate, base["rates"]),
                f"{cpu * 1e6:.0f}",
                ratio(cpu, base["cpu"]),
                f"{redis_cpu * 1e6:.0f}",
                ratio(redis_cpu, base["redis_cpu"]),
                f"{median(row.commands):.1f}",
            ]
        )
    mine = {name: median(values) for name, values in vars(figures[ours.label]).items()}
    goals = [
        Goal(
            f"{line.title}: jobs/s >= 0.90x raw tuned",
            ratio(mine["rates"], base["rates"]),
            mine["rates"] >= 0.9 * base["rates"],
        )
    ]
    if line.queue == "default":
        goals += [
            Goal(
                f"{line.title}: worker CPU/job <= 1.2x raw tuned",
                ratio(mine["cpu"], base["cpu"]),
                mine["cpu"] <= 1.2 * base["cpu"],
            ),
            Goal(
                f"{line.title}: Redis CPU/job <= 1.5x raw tuned",
                ratio(mine["redis_cpu"], base["redis_cpu"]),
                mine["redis_cpu"] <= 1.5 * base["redis_cpu"],
            ),
        ]
    costs = ""
    variants = (
        (limited, "Limits' cost (queue.limits)"),
        (calling, "Webhooks' cost"),
        (chained, "Dependencies' cost (half the jobs after a parent)"),
    )
    for variant, what in variants:
        if variant is None:
            continue
        theirs = {name: median(values) for name, values in vars(figures[variant.label]).items()}
        costs += (
            f"\n{what}: jobs/s {ratio(theirs['rates'], mine['rates'])} this service's plain "
            f"jobs; per job, worker CPU {(theirs['cpu'] - mine['cpu']) * 1e6:+.0f} us, Redis CPU "
            f"{(theirs['redis_cpu'] - mine['redis_cpu']) * 1e6:+.0f} us, commands "
            f"{theirs['commands'] - mine['commands']:+.1f}"
        )
    text = table(
        f"Worker throughput, {line.title}: jobs a drain; per job the worker's CPU, Redis's CPU and "
        f"commands; medians of {rounds} rounds, ratios to raw arq tuned",
        ["worker", "jobs", "jobs/s", "ratio", "CPU us", "ratio", "Redis us", "ratio", "commands"],
        rows,
    )
    return text + costs, goals


async def measure(run: Run) -> str:
    count, words = "word_count", {"text": TEXT}
    report, sleep = {"pages": 1, "seconds_per_page": 0.01}, {"seconds": 0.01}
    lines = [
        Line(count, "default", count, words, count, words, 3000, (0.2, 0.2)),
        Line("10 ms I/O", "bulk", "render_report", report, "sleep", sleep, 400, (0.1, 1)),
    ]
    if run.quick:
        lines = [replace(line, jobs=line.jobs // 10) for line in lines]
    texts = []
    async with Redis.from_url(str(run.settings.redis_url)) as redis:
        for line in lines:
            text, goals = await measure_line(run, redis, line)
            texts.append(text)
            run.goals.extend(goals)
    return "\n\n".join(texts)
