"""What the benchmarks share: settings under a prefix of the run, worker processes, Redis's own
counters, cleanup, percentiles, tables and the goals."""

import asyncio
import base64
import contextlib
import importlib.util
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from arq.constants import health_check_key_suffix
from pydantic import RedisDsn
from redis.asyncio import Redis

from {{ cookiecutter.package_name }}.queue.wake_channel import wake_channel
from {{ cookiecutter.package_name }}.settings import QueueKey, Settings

PROJECT = Path(__file__).resolve().parent.parent
SAQ = importlib.util.find_spec("saq") is not None
"""saq, a peer queue, is measured where it is installed."""
OWN_COMMANDS = frozenset({"info", "zcard"})
"""What the benchmark itself sends while it times a drain (its readings and polls), left out of
the commands counted per job. (A worker's only ZCARD is arq's hourly health check.)"""


@dataclass(frozen=True)
class Goal:
    goal: str
    measured: str
    holds: bool


@dataclass(frozen=True)
class Run:
    """One benchmark run: its settings (queues under `prefix`), the job ids it made, so that
    cleanup deletes exactly what the run wrote on a Redis that others may share, and the goals
    each part checked."""

    settings: Settings
    prefix: str
    quick: bool
    job_ids: list[str]
    goals: list[Goal] = field(default_factory=list)


def bench_settings(prefix: str, redis_url: str) -> Settings:
    return Settings().model_copy(
        update={
            "queue_name": f"{prefix}:queue",
            "bulk_queue_name": f"{prefix}:bulk",
            "job_keep_result": 60,
            "job_retention": 600,
            "redis_url": RedisDsn(redis_url),
            # The run's own Redis for every queue, whatever the environment or .env says.
            "redis_sentinels": None,
            "bulk_redis_url": None,
        }
    )


@dataclass
class Worker:
    """A worker process, as deployed: one queue (for saq, its zset of incomplete jobs), its output
    in a temporary file."""

    label: str
    queue_name: str
    process: "subprocess.Popen[bytes]"
    log: IO[bytes]
    kind: Literal["ours", "arq", "saq"]
    task: str | None = None
    """The task it is given instead of the line's (ours with limits: bench.limited_worker)."""
    meta: dict[str, str] | None = None
    """What travels with each of its jobs (ours with webhooks: the callback URL)."""
    pairs: bool = False
    """Ours with dependencies: every second job of a batch runs after the one before it
    (queue.dependencies), so half its jobs wait for a parent and are freed by its end."""

    @property
    def ours(self) -> bool:
        return self.kind == "ours"

    def output(self, lines: int = 30) -> str:
        self.log.flush()
        self.log.seek(0)
        return b"".join(self.log.readlines()[-lines:]).decode(errors="replace")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def pause(self) -> None:
        """SIGSTOP: a worker that is not measured neither polls nor counts in Redis's CPU."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.resume()
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()

    def failed(self, why: str) -> RuntimeError:
        state = "running" if self.process.poll() is None else "exited"
        return RuntimeError(
            f"{self.label}: {why} (worker {state}); its output ends:\n{self.output()}"
        )


def cpu_seconds(pid: int) -> float:
    """CPU time of a process so far, all its threads (Linux: /proc). The scheduler's own count
    in nanoseconds (schedstat) where the kernel keeps it: /proc/<pid>/stat counts clock ticks
    (10 ms), so over an idle measure of 15 s it reads only 0, 0.07, 0.13 % ..., a step wider
    than the idle goal's margin. (A thread that ends leaves the sum: the workers' threads live
    as long as they do.)"""
    if not Path(f"/proc/{pid}/schedstat").exists():  # (a kernel without it: clock ticks)
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        user, system = int(fields[11]), int(fields[12])  # utime, stime (fields 14, 15)
        return (user + system) / os.sysconf("SC_CLK_TCK")
    spent = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # (a thread that ended meanwhile)
            spent += int((task / "schedstat").read_text().split()[0])
    return spent / 1e9


def start_worker(
    label: str,
    command: list[str],
    env: Mapping[str, str],
    queue_name: str,
    kind: Literal["ours", "arq", "saq"],
) -> Worker:
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by Worker.stop
    env = {**os.environ, **env}
    process = subprocess.Popen(command, cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return Worker(label, queue_name, process, log, kind)


def start_ours(run: Run, label: str, queue: QueueKey = "default", number: int = 0) -> Worker:
    """The project's `worker` command, every hook as shipped, on the run's queues (and the bulk
    queue's own Redis, if the run's settings name one); `number` tells a queue's workers apart."""
    command = [sys.executable, "-m", "{{ cookiecutter.package_name }}", "worker", "--queue", queue]
    return start_worker(
        label, command, ours_env(run, queue, number), run.settings.queue_for(queue), "ours"
    )


def start_limited(run: Run, label: str) -> Worker:
    """Ours with its limited task (bench.limited_worker), on a default queue of its own."""
    worker = start_variant(run, label, "limited", [sys.executable, "-m", "bench.limited_worker"])
    worker.task = "word_count_limited"
    return worker


def start_calling_back(run: Run, label: str, receiver: str) -> Worker:
    """Ours on a default queue of its own, each job with a callback URL: its webhook is signed
    and POSTed to `receiver` (bench.receiver) by a delivery job on the same queue."""
    env = {
        "WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"bench-" * 6).decode(),
        "WEBHOOK_ALLOW_HTTP": "true",
        "WEBHOOK_ALLOW_PRIVATE": "true",
    }
    command = [sys.executable, "-m", "{{ cookiecutter.package_name }}", "worker"]
    worker = start_variant(run, label, "webhooks", command, env)
    worker.meta = {"callback_url": receiver}
    return worker


def start_chained(run: Run, label: str) -> Worker:
    """Ours on a default queue of its own, half its jobs running after the other half."""
    command = [sys.executable, "-m", "{{ cookiecutter.package_name }}", "worker"]
    worker = start_variant(run, label, "chained", command)
    worker.pairs = True
    return worker


def start_variant(
    run: Run, label: str, suffix: str, command: list[str], extra: Mapping[str, str] | None = None
) -> Worker:
    """Ours, by `command`, on a default queue of its own (`<queue>-<suffix>`)."""
    queue_name = f"{run.settings.queue_name}-{suffix}"
    env = {
        **ours_env(run, "default", 0),
        "QUEUE_NAME": queue_name,
        "WORKER_ID": f"{run.prefix}-{suffix}",
        **(extra or {}),
    }
    return start_worker(label, command, env, queue_name, "ours")


def ours_env(run: Run, queue: QueueKey, number: int) -> dict[str, str]:
    settings = run.settings
    return {
        "REDIS_URL": str(settings.redis_url),
        "BULK_REDIS_URL": str(settings.bulk_redis_url or ""),
        "REDIS_SENTINELS": "",  # the run's own Redis, whatever the environment or .env says
        "QUEUE_NAME": settings.queue_name,
        "BULK_QUEUE_NAME": settings.bulk_queue_name,
        "JOB_KEEP_RESULT": str(settings.job_keep_result),
        "BULK_WORKER_MAX_JOBS": str(settings.bulk_worker_max_jobs),
        "WORKER_ID": f"{run.prefix}-{queue}-{number}",
    }


def start_raw(run: Run, label: str, queue_name: str, max_jobs: int, poll_delay: float) -> Worker:
    """Plain arq, as its docs show it (`arq bench.raw_worker.WorkerSettings`)."""
    env = {
        "REDIS_URL": str(run.settings.redis_url),
        "QUEUE_NAME": queue_name,
        "MAX_JOBS": str(max_jobs),
        "POLL_DELAY": str(poll_delay),
    }
    command = [sys.executable, "-m", "arq", "bench.raw_worker.WorkerSettings"]
    return start_worker(label, command, env, queue_name, "arq")


def start_saq(run: Run, label: str, name: str, concurrency: int) -> Worker:
    """saq (`python -m saq bench.saq_worker.settings`), logging a line per job as arq does."""
    env = {
        "REDIS_URL": str(run.settings.redis_url),
        "QUEUE_NAME": name,
        "CONCURRENCY": str(concurrency),
    }
    command = [sys.executable, "-m", "saq", "bench.saq_worker.settings", "--verbose"]
    return start_worker(label, command, env, f"saq:{name}:incomplete", "saq")


async def ready(redis: Redis, workers: Sequence[Worker]) -> None:
    """Until each arq worker polls (arq writes its health key at its first poll) and, ours,
    listens on its wake channel. (saq's are ready when their warm-up jobs are done.)"""
    deadline = time.monotonic() + 60
    for worker in workers:
        if worker.kind == "saq":
            continue
        while not await redis.exists(worker.queue_name + health_check_key_suffix) or (
            worker.ours and not (await redis.pubsub_numsub(wake_channel(worker.queue_name)))[0][1]
        ):
            if worker.process.poll() is not None or time.monotonic() > deadline:
                raise worker.failed("did not start")
            await asyncio.sleep(0.05)


@dataclass(frozen=True)
class Usage:
    """Redis's CPU seconds and calls per command so far (INFO cpu, INFO commandstats)."""

    cpu: float
    calls: dict[str, int]

    def commands_since(self, before: "Usage") -> int:
        """Commands sent between the two readings; the benchmark's own left out."""
        return sum(
            n - before.calls.get(name, 0)
            for name, n in self.calls.items()
            if name.split("|")[0] not in OWN_COMMANDS
        )


async def usage(redis: Redis) -> Usage:
    cpu: dict[str, Any] = await redis.info("cpu")
    stats: dict[str, Any] = await redis.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}
    return Usage(float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), calls)


async def cleanup(redis_url: str, prefix: str, job_ids: list[str]) -> None:
    """Delete the run's prefix (saq's keys too), and arq's keys of its jobs (arq's keys carry no
    queue name)."""
    async with Redis.from_url(redis_url) as redis:
        async for key in redis.scan_iter(match=f"*{prefix}:*", count=1000):
            if await redis.type(key) == b"zset":  # a queue: jobs never run
                job_ids.extend(member.decode() for member in await redis.zrange(key, 0, -1))
            await redis.delete(key)
        kinds = ("job", "result", "retry", "in-progress")
        for start in range(0, len(job_ids), 500):
            chunk = job_ids[start : start + 500]
            await redis.delete(*(f"arq:{kind}:{job_id}" for job_id in chunk for kind in kinds))


def percentile(samples: Sequence[float], share: float) -> float:
    """The `share` (0-1) percentile of `samples`, by the nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def ratio(ours: float, yardstick: float) -> str:
    return f"{ours / yardstick:.2f}x" if yardstick else "-"


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table, first column left-aligned, the others right-aligned."""
    cells = [list(header)] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [title]
    for row in cells:
        first, *rest = row
        lines.append(
            first.ljust(widths[0] + 2)
            + "".join(cell.rjust(width + 2) for cell, width in zip(rest, widths[1:], strict=True))
        )
    return "\n".join(lines)


def goals_table(goals: Sequence[Goal]) -> str:
    rows = [[goal.goal, goal.measured, "yes" if goal.holds else "no"] for goal in goals]
    return table("Goals", ["goal", "measured", "holds"], rows)
