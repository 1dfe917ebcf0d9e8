"""Redis faults that outlast every timeout and retry: a stall, a full memory, an outage of minutes.

Each test runs the service as it runs in production, two default workers and a bulk worker as
processes of their own, on a redis-server the test owns and breaks, with jobs submitted to the
web all along. Afterwards every worker process is still alive and every accepted job has
succeeded: none lost, none stuck. The figures are printed (`pytest -s`) and quoted in README.md.

Marked slow (they wait out the faults); CI runs them.
"""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import httpx
import pytest
from pydantic import RedisDsn
from redis import Redis

from {{ cookiecutter.package_name }}.settings import QueueKey, Settings

from .conftest import Process, RedisServer, SpawnWorker, service_env
from .service_load import Load, load_on, settle, summary

pytestmark = pytest.mark.slow

# Short task timeouts: a job whose claim a fault cut off runs again once its in-progress key
# expires (the worker's longest timeout + 11 s), which bounds how long the tests wait for it.
JOB_TIMEOUT, BULK_JOB_TIMEOUT = 5, 5
SETTLE_WITHIN = 60  # seconds after the fault for every accepted job to succeed


@pytest.fixture
def settings(settings: Settings, own_redis: RedisServer) -> Settings:
    """The web (the `client` fixture) and the workers (`spawn_worker`) on the Redis these tests
    break."""
    return settings.model_copy(update={"redis_url": RedisDsn(own_redis.url)})


async def start_workers(spawn_worker: SpawnWorker) -> list[Process]:
    """Two default workers and a bulk worker, started side by side."""
    queues: tuple[QueueKey, ...] = ("default", "default", "bulk")

    def spawn(queue: QueueKey) -> Process:
        return spawn_worker(queue, job_timeout=JOB_TIMEOUT, bulk_job_timeout=BULK_JOB_TIMEOUT)

    return list(await asyncio.gather(*(asyncio.to_thread(spawn, queue) for queue in queues)))


async def first_job_after(client: httpx.AsyncClient, since: float) -> float:
    """Seconds from `since` (the fault's end) until a job submitted now has run."""
    body = {"task": "word_count", "args": {"text": "are you back"}}
    deadline = time.monotonic() + SETTLE_WITHIN
    while True:
        response = await client.post("/jobs", json=body)
        if response.status_code == 202:
            break
        assert time.monotonic() < deadline, "the web did not accept jobs again"
        await asyncio.sleep(0.2)
    location = response.headers["location"]
    while (await client.get(location)).json()["state"] != "succeeded":
        assert time.monotonic() < deadline, "the workers did not resume"
        await asyncio.sleep(0.1)
    return time.monotonic() - since


async def check_after(
    fault: str,
    client: httpx.AsyncClient,
    load: Load,
    workers: list[Process],
    ended: float,
    resumed: float,
) -> None:
    """Every worker alive, every accepted job succeeded; the figures printed."""
    states = await settle(client, load.accepted, SETTLE_WITHIN)
    drained = time.monotonic() - ended
    outcome = Counter(states.values())
    print(
        f"\n{fault}: {summary(load, outcome)}; "
        f"a new job ran {resumed:.1f} s after the fault, every accepted job had ended "
        f"{drained:.1f} s after it; workers alive: {sum(w.alive() for w in workers)}/{len(workers)}"
    )
    for worker in workers:
        assert worker.alive(), f"{worker.name} exited:\n{worker.output()[-4000:]}"
    assert load.accepted, "no job was accepted"
    not_done = [loc for loc, state in states.items() if state != "succeeded"]
    details = [(await client.get(loc)).text for loc in not_done[:5]]
    assert not not_done, f"{len(not_done)} accepted jobs did not succeed: {details}"


async def test_a_redis_stalled_past_every_timeout_stops_no_worker_and_loses_no_job(
    client: httpx.AsyncClient, spawn_worker: SpawnWorker, own_redis: RedisServer
) -> None:
    workers = await start_workers(spawn_worker)
    assert own_redis.process is not None
    async with load_on(client) as load:
        await asyncio.sleep(3)
        # Stopped, not gone: connections open, commands sent, no reply. Longer than the web's and
        # the workers' socket timeouts and redis-py's retries.
        own_redis.process.send_signal(signal.SIGSTOP)
        await asyncio.sleep(20)
        own_redis.process.send_signal(signal.SIGCONT)
        ended = time.monotonic()
        resumed = await first_job_after(client, ended)
    await check_after("Redis stalled 20 s", client, load, workers, ended, resumed)


async def test_a_full_redis_stops_no_worker_and_every_accepted_job_succeeds_once_freed(
    client: httpx.AsyncClient, spawn_worker: SpawnWorker, own_redis: RedisServer
) -> None:
    workers = await start_workers(spawn_worker)
    with Redis.from_url(own_redis.url) as redis:
        async with load_on(client) as load:
            await asyncio.sleep(3)
            # Full: every write is refused (OutOfMemoryError), as with the README's advice of
            # noeviction once memory runs out. Reads still answer.
            redis.config_set("maxmemory-policy", "noeviction")
            redis.config_set("maxmemory", int(redis.info("memory")["used_memory"]) + 64_000)
            refused_before = load.statuses[503]
            await asyncio.sleep(20)
            refused_while_full = load.statuses[503] - refused_before
            redis.config_set("maxmemory", 0)
            ended = time.monotonic()
            resumed = await first_job_after(client, ended)
    assert refused_while_full > 0, "Redis was never full"
    await check_after("Redis full 20 s", client, load, workers, ended, resumed)


def probe(
    settings: Settings, worker: Process, queue: str = "default"
) -> "subprocess.CompletedProcess[str]":
    """`python -m …worker.probe` as the platform runs it for `worker`."""
    env = service_env(settings, worker_id=worker.name)
    return subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.package_name }}.worker.probe", queue],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.timeout(300)  # the outage alone takes 90 s
async def test_workers_wait_out_a_long_outage_alive_for_their_probe_and_lose_no_job(
    client: httpx.AsyncClient,
    spawn_worker: SpawnWorker,
    own_redis: RedisServer,
    settings: Settings,
) -> None:
    workers = await start_workers(spawn_worker)
    # One more worker, on queues of its own (no job of the load: a frozen worker's jobs would
    # time out), to stand for a wedged one: its whole process is frozen during the outage.
    queues = {"queue_name": settings.queue_name, "bulk_queue_name": settings.bulk_queue_name}
    apart = settings.model_copy(update={key: f"{name}-apart" for key, name in queues.items()})
    wedged = await asyncio.to_thread(spawn_worker, "default", apart)
    live = workers[0]
    async with load_on(client) as load:
        await asyncio.sleep(3)
        await asyncio.to_thread(own_redis.stop)  # its data stays in --dir (append-only file)
        started = time.monotonic()
        os.kill(wedged.process.pid, signal.SIGSTOP)
        await asyncio.sleep(50)  # past redis-py's retries (~15 s) and the workers' old limit
        during = await asyncio.to_thread(probe, settings, live)
        stuck = await asyncio.to_thread(probe, apart, wedged)
        os.kill(wedged.process.pid, signal.SIGCONT)
        await asyncio.sleep(max(0.0, 90 - (time.monotonic() - started)))
        await asyncio.to_thread(own_redis.start)  # the same --dir and append-only file
        ended = time.monotonic()
        resumed = await first_job_after(client, ended)
    print(f"\nprobe during the outage: live worker {during.returncode}, wedged {stuck.returncode}")
    # During an outage a live worker's probe passes (a restart cannot bring Redis back) and says
    # what it waits for; a worker that stopped turning fails it.
    assert during.returncode == 0, during.stdout + during.stderr
    assert "waiting for Redis" in during.stdout, during.stdout
    assert stuck.returncode == 1, stuck.stdout + stuck.stderr
    assert "no recent heartbeat" in stuck.stderr
    await check_after("Redis down 90 s", client, load, [*workers, wedged], ended, resumed)
    recovered = await asyncio.to_thread(probe, apart, wedged)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
