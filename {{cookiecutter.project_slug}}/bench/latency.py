"""End-to-end latency on an idle worker, and what an idle worker costs, in one run: this
service (web and worker, woken by enqueue, polling every 0.5 s as a fallback) vs raw arq polling
at its default 0.5 s and at 10 ms, and saq (woken by enqueue) where it is installed.

Each is a process of its own, as deployed: ours is the web under uvicorn and the project's
`worker` command, the raw ones run `arq bench.raw_worker.WorkerSettings`. After a warm-up
job each, jobs go one at a time with an idle pause before each (the workers take turns): ours by
POST /jobs to the web, the others by their client's enqueue. A job's latency runs from the send
until its result is stored, as Redis tells a subscriber (ResultWatch), in three parts: the
request (until the 202, or until the enqueue returns), the wake (until the job's start:
`started_at` of its record; for raw arq and saq the start they store, to the millisecond) and the
run with its record (until the result). Beside them, the floor this machine sets at idle,
measured in the same loop: a bare endpoint of the same web process (bench/server.py) and a Redis
PING, each after an idle pause. Then all idle together while their CPU time is read from /proc
(Linux).
"""

import asyncio
import contextlib
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis, create_pool
from arq.constants import result_key_prefix
from arq.jobs import deserialize_result
from redis.exceptions import ResponseError

from {{ cookiecutter.package_name }}.queue.arq_queue import ledger_for, redis_settings
from {{ cookiecutter.package_name }}.queue.ledger import Ledger

from . import saq_worker
from .common import (
    SAQ,
    Goal,
    Run,
    Worker,
    percentile,
    ready,
    start_ours,
    start_raw,
    start_saq,
    table,
)
from .web import exchange, request, serve


@dataclass
class Samples:
    worker: Worker
    jobs: int
    poll_delay: float
    total: list[float] = field(default_factory=list)
    request: list[float] = field(default_factory=list)
    wake: list[float] = field(default_factory=list)
    run: list[float] = field(default_factory=list)
    peer: Any = None
    """saq's client queue, for a saq worker."""

    def add(self, sent: float, accepted: float, started: float, done: float) -> None:
        self.total.append(done - sent)
        self.request.append(accepted - sent)
        self.wake.append(started - accepted)
        self.run.append(done - started)


class ResultWatch:
    """When a job's result is stored, as Redis tells it: a keyspace notification of the write,
    pushed to a subscriber of the run's own (Redis is told to send those of string keys for the
    run, and its setting is put back afterwards). A poll would measure mostly its own period:
    asyncio rounds a sleep up to the millisecond, so a poll every "0.5 ms" came every 1.4 ms.
    The subscriber's connection is read by a task of its own, which notes each write's time as
    it arrives. Where Redis refuses the setting (a managed Redis without CONFIG), it polls after
    all, and says so."""

    def __init__(self, pool: ArqRedis) -> None:
        self.pool = pool
        self.db = int(pool.connection_pool.connection_kwargs.get("db", 0))
        self.setting: str | None = None
        self.connection: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.writes: dict[bytes, float] = {}
        self.arrived = asyncio.Event()

    async def open(self) -> None:
        try:
            self.setting = (await self.pool.config_get("notify-keyspace-events"))[
                "notify-keyspace-events"
            ]
            await self.pool.config_set("notify-keyspace-events", f"{self.setting}K$")
        except ResponseError as exc:
            print(f"latency: keyspace notifications refused ({exc}); polling for results")
            return
        connection = self.pool.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        self.connection = connection
        await connection.connect()
        await connection.send_command("PSUBSCRIBE", f"__keyspace@{self.db}__:*")
        await connection.read_response()  # (the subscription's confirmation)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            kind, _pattern, channel, event = await self.connection.read_response(timeout=None)
            if kind == b"pmessage" and event == b"set":
                if len(self.writes) > 100_000:  # (other clients' writes, on a shared Redis)
                    self.writes.clear()
                self.writes[channel] = time.time()
                self.arrived.set()

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if self.connection is not None:
            await self.connection.disconnect()
        if self.setting is not None:
            await self.pool.config_set("notify-keyspace-events", self.setting)

    async def written(self, key: str, worker: Worker, sent: float) -> float:
        """The wall-clock time `key` was next written (SET) after `sent`."""
        channel = f"__keyspace@{self.db}__:{key}".encode()
        while (left := sent + 10 - time.time()) > 0:
            if self.reader is None:
                if await self.pool.exists(key):
                    return time.time()
                await asyncio.sleep(0.0005)
                continue
            at = self.writes.pop(channel, None)
            if at is not None and at >= sent:
                return at
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self.arrived.wait()
        raise worker.failed(f"no write of {key} within 10 s")


async def saq_job(
    watch: ResultWatch, worker: Worker, peer: Any, text: str, sent: float
) -> tuple[float, float, float, float]:
    """One job through saq: its job key holds its state and start (milliseconds), written at
    each change of state."""
    job = await peer.enqueue("word_count", text=text)
    accepted = time.time()
    while True:
        done = await watch.written(job.id, worker, sent)
        stored = json.loads(await watch.pool.get(job.id) or b"{}")
        if stored.get("status") == "complete":
            return sent, accepted, stored["started"] / 1000, done


async def one_job(
    run: Run,
    watch: ResultWatch,
    ledger: Ledger,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    samples: Samples,
) -> tuple[float, float, float, float]:
    """One job through an idle worker (ours by the web): when it was sent, accepted, started
    and done."""
    worker, text = samples.worker, f"job {uuid.uuid4().hex[:8]}"
    sent = time.time()
    if worker.ours:
        body = json.dumps({"task": "word_count", "args": {"text": text}}).encode()
        status, answer = await exchange(reader, writer, request("/jobs", body))
        accepted = time.time()
        if status != "202":
            raise RuntimeError(f"POST /jobs answered {status}: {answer!r}")
        job_id = json.loads(answer)["id"]
    elif worker.kind == "saq":
        return await saq_job(watch, worker, samples.peer, text, sent)
    else:
        job = await watch.pool.enqueue_job("word_count", text=text, _queue_name=worker.queue_name)
        accepted = time.time()
        if job is None:
            raise RuntimeError("arq refused a new job id")
        job_id = job.job_id
    run.job_ids.append(job_id)
    done = await watch.written(result_key_prefix + job_id, worker, sent)
    pool = watch.pool
    if worker.ours:
        # redis-py types its commands as sync or async at once.
        at = await pool.hget(ledger.key(job_id), "started_at")  # type: ignore[misc]
        started = datetime.fromisoformat((at or b"").decode()).timestamp()
    else:
        stored = await pool.get(result_key_prefix + job_id)
        started = deserialize_result(stored or b"").start_time.timestamp()
    return sent, accepted, started, done


async def floor(
    pool: ArqRedis, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[float, float]:
    """After the idle pause that precedes it: a bare endpoint's answer, then a Redis PING."""
    sent = time.perf_counter()
    status, answer = await exchange(reader, writer, request("/bench/bare", b"{}"))
    bare = time.perf_counter() - sent
    if status != "200":
        raise RuntimeError(f"the bare endpoint answered {status}: {answer!r}")
    await asyncio.sleep(0.02 + random.uniform(0, 0.5))
    sent = time.perf_counter()
    await pool.ping()
    return bare, time.perf_counter() - sent


async def measure(run: Run) -> str:
    settings = run.settings
    idle = 3.0 if run.quick else 15.0
    few, many = (4, 20) if run.quick else (30, 200)
    poll = settings.worker_poll_delay
    ours = Samples(start_ours(run, f"this service (wakes on enqueue, poll {poll:g} s)"), many, poll)
    raw = [
        Samples(start_raw(run, "raw arq, poll 0.5 s", f"{run.prefix}:raw-0.5", 10, 0.5), few, 0.5),
        Samples(
            start_raw(run, "raw arq, poll 10 ms", f"{run.prefix}:raw-0.01", 10, 0.01), many, 0.01
        ),
    ]
    if SAQ:
        name = f"{run.prefix}:saq"
        raw.append(Samples(start_saq(run, "saq (wakes on enqueue)", name, 10), many, 0.5))
        raw[-1].peer = saq_worker.queue(str(settings.redis_url), name)
    everyone = [*raw, ours]
    web, port = await serve(run)  # the deployed app and, for the floor, a bare endpoint
    pool = await create_pool(redis_settings(settings))
    ledger = ledger_for(pool, settings)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    watch = ResultWatch(pool)
    await watch.open()
    bare: list[float] = []
    ping: list[float] = []
    try:
        await ready(pool, [samples.worker for samples in everyone])
        for samples in everyone:  # warm-up: connections, imports, first-call caches
            await one_job(run, watch, ledger, reader, writer, samples)
        for n in range(many):
            for samples in everyone:
                if n >= samples.jobs:
                    continue
                # Idle, then enqueue at a random point of the worker's poll cycle: a fixed pause
                # would lock onto the cycle and measure one phase of it only.
                await asyncio.sleep(0.02 + random.uniform(0, samples.poll_delay))
                times = await one_job(run, watch, ledger, reader, writer, samples)
                samples.add(*times)
            if n < few:
                await asyncio.sleep(0.02 + random.uniform(0, 0.5))
                answered, pinged = await floor(pool, reader, writer)
                bare.append(answered)
                ping.append(pinged)
        await asyncio.sleep(1)  # let the last jobs' bookkeeping settle
        before = [samples.worker.cpu_seconds() for samples in everyone]
        await asyncio.sleep(idle)
        cpu = [
            (samples.worker.cpu_seconds() - spent) / idle * 100
            for samples, spent in zip(everyone, before, strict=True)
        ]
    finally:
        await watch.close()
        writer.close()
        for samples in everyone:
            samples.worker.stop()
        web.terminate()
        web.wait(timeout=30)
        await pool.aclose()
        for samples in everyone:
            if samples.peer is not None:
                await samples.peer.disconnect()

    def ms(values: list[float], share: float = 0.5) -> str:
        return f"{percentile(values, share) * 1000:.1f}"

    def fine(values: list[float]) -> str:
        return f"{percentile(values, 0.5) * 1000:.2f}"

    rows = [
        [
            samples.worker.label,
            str(samples.jobs),
            ms(samples.total),
            ms(samples.total, 0.99),
            ms(samples.request),
            ms(samples.wake),
            ms(samples.run),
            f"{spent:.2f}",
        ]
        for samples, spent in zip(everyone, cpu, strict=True)
    ]
    p50, idle_cpu = percentile(ours.total, 0.5) * 1000, cpu[-1]
    run.goals.extend(
        [
            Goal("latency at idle: this service's p50 <= 3 ms", f"{p50:.1f} ms", p50 <= 3),
            Goal("idle worker CPU <= 0.1 %", f"{idle_cpu:.2f} %", idle_cpu <= 0.1),
        ]
    )
    columns = ["worker", "jobs", "p50 ms", "p99 ms", "request", "wake", "run+record"]
    return (
        table(
            f"End-to-end latency on an idle worker (send -> result, and its parts: p50s), and "
            f"idle CPU over {idle:g} s",
            [*columns, "idle CPU %"],
            rows,
        )
        + f"\nThe floor at idle here and now (p50s of {len(bare)}, each after an idle pause): "
        f"a bare endpoint of the same web {fine(bare)} ms, a Redis PING {fine(ping)} ms"
    )
