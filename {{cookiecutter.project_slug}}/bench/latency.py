"""End-to-end latency on an idle worker, and what an idle worker costs, in one run: this
service's worker (woken by enqueue, polling every 0.5 s as a fallback) vs raw arq polling at its
default 0.5 s and at 10 ms.

Each worker is a process of its own, as deployed: ours is `{{ cookiecutter.project_slug }} worker`, the raw ones run
`arq bench.raw_worker.WorkerSettings`. Jobs are enqueued one at a time with an idle pause between
them (ours through the web's own enqueue code, the raw ones through arq's `enqueue_job`), and the
latency runs until arq's result key exists, polled every 0.5 ms for all three. Then all three
idle together while their CPU time is read from /proc (Linux).
"""

import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from arq.connections import ArqRedis, create_pool
from arq.constants import health_check_key_suffix, result_key_prefix

from {{ cookiecutter.package_name }}.queue.arq_queue import ArqJobQueue, redis_settings
from {{ cookiecutter.package_name }}.queue.wake_channel import wake_channel
from {{ cookiecutter.package_name }}.settings import Settings

from .common import Run, percentile, table

PROJECT = Path(__file__).resolve().parent.parent


@dataclass
class Worker:
    label: str
    queue_name: str
    process: "subprocess.Popen[bytes]"
    jobs: int
    poll_delay: float
    log: IO[bytes]
    """The worker's output: shown when a job of it never finishes."""

    def output(self, lines: int = 30) -> str:
        self.log.flush()
        self.log.seek(0)
        return b"".join(self.log.readlines()[-lines:]).decode(errors="replace")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        user, system = int(fields[11]), int(fields[12])  # utime, stime (fields 14, 15)
        return (user + system) / os.sysconf("SC_CLK_TCK")


def start_raw(
    settings: Settings, queue_name: str, poll_delay: float, label: str, jobs: int, log: IO[bytes]
) -> Worker:
    env = {
        **os.environ,
        "REDIS_URL": str(settings.redis_url),
        "QUEUE_NAME": queue_name,
        "POLL_DELAY": str(poll_delay),
    }
    command = [str(Path(sys.executable).with_name("arq")), "bench.raw_worker.WorkerSettings"]
    process = subprocess.Popen(command, cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return Worker(label, queue_name, process, jobs, poll_delay, log)


def start_ours(settings: Settings, prefix: str, jobs: int, log: IO[bytes]) -> Worker:
    env = {
        **os.environ,
        "REDIS_URL": str(settings.redis_url),
        "QUEUE_NAME": settings.queue_name,
        "BULK_QUEUE_NAME": settings.bulk_queue_name,
        "JOB_KEEP_RESULT": str(settings.job_keep_result),
        "WORKER_ID": prefix,
    }
    command = [str(Path(sys.executable).with_name("{{ cookiecutter.project_slug }}")), "worker"]
    process = subprocess.Popen(command, cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT)
    label = f"this service (wakes on enqueue, poll {settings.worker_poll_delay:g} s)"
    return Worker(label, settings.queue_name, process, jobs, settings.worker_poll_delay, log)


async def ready(pool: ArqRedis, worker: Worker, ours: bool) -> None:
    """Until the worker polls (arq's health key is written at its first poll) and, for ours,
    listens on its wake channel."""
    deadline = time.monotonic() + 30
    while not await pool.exists(worker.queue_name + health_check_key_suffix) or (
        ours and not (await pool.pubsub_numsub(wake_channel(worker.queue_name)))[0][1]
    ):
        if worker.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{worker.label} did not start")
        await asyncio.sleep(0.05)


async def visible(
    pool: ArqRedis, worker: Worker, job_id: str, started: float, limit: float = 10
) -> float:
    key = result_key_prefix + job_id
    while not await pool.exists(key):
        if time.perf_counter() - started > limit:
            raise RuntimeError(
                f"{worker.label}: job {job_id} had no result after {limit} s "
                f"(worker {'running' if worker.process.poll() is None else 'exited'}); "
                f"its output ends:\n{worker.output()}"
            )
        await asyncio.sleep(0.0005)
    return time.perf_counter() - started


async def latencies(
    pool: ArqRedis, backend: ArqJobQueue | None, worker: Worker, job_ids: list[str]
) -> list[float]:
    samples = []
    for n in range(worker.jobs):
        # Idle, then enqueue at a random point of the worker's poll cycle: a fixed pause would
        # lock onto the cycle (the last job ended just after a poll) and measure one phase only.
        await asyncio.sleep(0.02 + random.uniform(0, worker.poll_delay))
        started = time.perf_counter()
        if backend is not None:
            job_id = (
                await backend.enqueue(
                    "word_count", {"text": f"job {n}"}, queue_name=worker.queue_name
                )
            ).job_id
        else:
            job = await pool.enqueue_job("word_count", f"job {n}", _queue_name=worker.queue_name)
            if job is None:
                raise RuntimeError("arq refused a new job id")
            job_id = job.job_id
        job_ids.append(job_id)
        samples.append(await visible(pool, worker, job_id, started))
    return samples


async def measure(run: Run) -> str:
    settings = run.settings
    idle = 3.0 if run.quick else 15.0
    few, many = (4, 20) if run.quick else (30, 200)
    logs = [tempfile.TemporaryFile() for _ in range(3)]  # noqa: SIM115 - closed below
    ours = start_ours(settings, run.prefix, many, logs[0])
    raw_default = start_raw(
        settings, f"{run.prefix}:raw-0.5", 0.5, "raw arq, poll 0.5 s", few, logs[1]
    )
    raw_fast = start_raw(
        settings, f"{run.prefix}:raw-0.01", 0.01, "raw arq, poll 10 ms", many, logs[2]
    )
    workers = [raw_default, raw_fast, ours]
    rows: list[list[str]] = []
    pool = await create_pool(redis_settings(settings))
    try:
        async with ArqJobQueue.connect(settings) as backend:
            for worker in workers:
                await ready(pool, worker, worker is ours)
            samples = {
                worker.label: await latencies(
                    pool, backend if worker is ours else None, worker, run.job_ids
                )
                for worker in workers
            }
        await asyncio.sleep(1)  # let the last jobs' bookkeeping settle
        before = {worker.label: worker.cpu_seconds() for worker in workers}
        await asyncio.sleep(idle)
        for worker in workers:
            cpu = (worker.cpu_seconds() - before[worker.label]) / idle * 100
            times = samples[worker.label]
            rows.append(
                [
                    worker.label,
                    str(len(times)),
                    f"{percentile(times, 0.50) * 1000:.1f}",
                    f"{percentile(times, 0.99) * 1000:.1f}",
                    f"{cpu:.2f}",
                ]
            )
    finally:
        for worker in workers:
            worker.process.terminate()
        for worker in workers:
            worker.process.wait(timeout=30)
            worker.log.close()
        await pool.aclose()
    return table(
        f"End-to-end latency on an idle worker (enqueue -> result), and idle CPU over {idle:g} s"
        " (goal: p50 <= 5 ms at <= 0.5 % CPU)",
        ["worker", "jobs", "p50 ms", "p99 ms", "idle CPU %"],
        rows,
    )
