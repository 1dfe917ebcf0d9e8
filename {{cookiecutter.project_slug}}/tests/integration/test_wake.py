"""Workers wake on enqueue: an idle worker starts a job at once instead of at its next poll, and
the poll stays as the fallback for what publishes no notice (plain arq clients, deferred jobs).

Each worker here polls only every POLL seconds, so a job finished well inside that time proves
that something other than the poll started it. The bound is a fraction of POLL, not a speed target
(the benchmark measures latency: bench/latency.py).
"""

import asyncio
import itertools
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from arq.connections import create_pool
from arq.constants import in_progress_key_prefix, retry_key_prefix
from pydantic import RedisDsn
from redis.asyncio import Redis

from {{ cookiecutter.package_name }}.queue.arq_queue import redis_settings
from {{ cookiecutter.package_name }}.queue.serializer import serialize
from {{ cookiecutter.package_name }}.queue.wake_channel import wake_channel
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.worker.claim import Claimed
from {{ cookiecutter.package_name }}.worker.options import worker_options
from {{ cookiecutter.package_name }}.worker.process import WakingWorker

from .conftest import RedisServer, stop_worker

POLL = 6.0
SOON = POLL / 3

StartWorker = Callable[..., Awaitable[WakingWorker]]


@pytest.fixture
async def start_worker(settings: Settings) -> AsyncIterator[StartWorker]:
    running: list[tuple[WakingWorker, asyncio.Task[None]]] = []

    async def start(**overrides: object) -> WakingWorker:
        tuned = settings.model_copy(update={"worker_poll_delay": POLL, **overrides})
        options = {**worker_options(tuned), "cron_jobs": [], "handle_signals": False}
        worker = WakingWorker(**options)
        running.append((worker, asyncio.create_task(worker.async_run())))
        # Ready once it listens: connected, first poll done, wake channel subscribed.
        channel = wake_channel(tuned.queue_name)
        async with asyncio.timeout(10):
            # Polled: arq offers no event for either (it connects in main()).
            while worker._pool is None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            while not (await worker.pool.pubsub_numsub(channel))[0][1]:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        return worker

    yield start
    for worker, task in running:
        await stop_worker(worker, task)


async def finished_within(client: httpx.AsyncClient, location: str, limit: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if (await client.get(location)).json()["state"] == "succeeded":
            return time.monotonic() - started
        await asyncio.sleep(0.01)
    raise AssertionError(f"{location} did not finish within {limit} s")


async def test_an_idle_worker_starts_a_job_on_enqueue_not_at_its_next_poll(
    client: httpx.AsyncClient, start_worker: StartWorker
) -> None:
    await start_worker()
    await asyncio.sleep(0.2)  # well into the idle wait

    accepted = await client.post("/jobs", json={"task": "word_count", "args": {"text": "now"}})

    assert await finished_within(client, accepted.headers["location"], SOON) < SOON


async def test_a_batch_wakes_the_worker_too(
    client: httpx.AsyncClient, start_worker: StartWorker
) -> None:
    await start_worker()
    jobs = [{"task": "word_count", "args": {"text": "x " * n}} for n in range(1, 4)]

    accepted = (await client.post("/jobs/batch", json={"jobs": jobs})).json()

    for job in accepted["jobs"]:
        await finished_within(client, job["url"], SOON)


async def test_a_full_worker_takes_the_next_job_when_a_slot_frees(
    client: httpx.AsyncClient, start_worker: StartWorker
) -> None:
    await start_worker(worker_max_jobs=1)
    body = {"task": "word_count", "args": {"text": "one at a time"}}
    locations = [(await client.post("/jobs", json=body)).headers["location"] for _ in range(3)]

    for location in locations:
        await finished_within(client, location, SOON)


async def test_a_deferred_job_starts_when_due_not_at_the_next_poll(
    client: httpx.AsyncClient, start_worker: StartWorker
) -> None:
    await start_worker()
    body = {"task": "word_count", "args": {"text": "later"}, "defer_seconds": 0.5}
    accepted = await client.post("/jobs", json=body)
    assert (await client.get(accepted.headers["location"])).json()["state"] == "deferred"

    elapsed = await finished_within(client, accepted.headers["location"], SOON)

    assert elapsed >= 0.4  # not before it was due


async def test_a_job_from_a_plain_arq_client_still_runs_at_the_poll_delay(
    settings: Settings, client: httpx.AsyncClient, start_worker: StartWorker
) -> None:
    await start_worker(worker_poll_delay=0.3)
    # arq's own enqueue publishes no notice: only the fallback poll can find this job.
    pool = await create_pool(
        redis_settings(settings),
        default_queue_name=settings.queue_name,
        job_serializer=serialize,
    )
    try:
        job = await pool.enqueue_job("word_count", text="plain arq")
        assert job is not None
    finally:
        await pool.aclose()

    await finished_within(client, f"/jobs/{job.job_id}", 5)


async def test_a_retry_starts_when_due_not_at_the_next_poll(
    client: httpx.AsyncClient, start_worker: StartWorker
) -> None:
    await start_worker()
    with socket.socket() as closed:  # a port nobody listens on: a transient error, retried
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    body = {"task": "check_url", "args": {"url": f"http://127.0.0.1:{port}/"}}
    location = (await client.post("/jobs", json=body)).headers["location"]

    async def seen(done: Callable[[dict[str, Any]], bool], limit: float) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if done((await client.get(location)).json()):
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{location} not there within {limit} s")

    await seen(lambda job: job["state"] == "deferred", SOON)  # the first try failed
    failed = time.monotonic()
    await seen(lambda job: job["tries"] >= 2, POLL - 1)  # check_url's first retry: 2 to 2.5 s

    assert time.monotonic() - failed >= 1.9  # not before it was due


async def test_an_idle_worker_polls_with_one_read(
    settings: Settings, own_redis: RedisServer, start_worker: StartWorker
) -> None:
    """Idle, a poll reads the queue and nothing else: no abort check with no job running, and
    the next deferred job's time is read again only when something was queued."""
    worker = await start_worker(redis_url=RedisDsn(own_redis.url), worker_poll_delay=0.05)
    polls = 0
    poll = worker._poll

    async def counted() -> float:
        nonlocal polls
        polls += 1
        return await poll()

    async with Redis.from_url(own_redis.url) as redis:
        await redis.config_resetstat()
        worker._poll = counted  # type: ignore[method-assign]
        await asyncio.sleep(1)
        stats = await redis.info("commandstats")

    assert polls >= 5  # (idle, the wait stretches to 4 x 0.05 s)
    calls = {name.removeprefix("cmdstat_"): entry["calls"] for name, entry in stats.items()}
    assert "multi" not in calls  # arq's abort check: a transaction per poll
    assert calls.get("zrangebyscore", 0) <= polls + 1  # the poll's read, and no other


async def test_an_idle_worker_stretches_its_fallback_poll_until_a_notice(
    client: httpx.AsyncClient, start_worker: StartWorker
) -> None:
    """Polls that find nothing double the wait, up to IDLE_STRETCH x the poll delay; a job
    enqueued through the web still starts at once, and brings the wait back to the poll delay."""
    worker = await start_worker(worker_poll_delay=0.1)
    polled: list[float] = []
    poll = worker._poll

    async def timed() -> float:
        polled.append(time.monotonic())
        return await poll()

    worker._poll = timed  # type: ignore[method-assign]
    await asyncio.sleep(2)
    idle = [b - a for a, b in itertools.pairwise(polled)]
    accepted = await client.post("/jobs", json={"task": "word_count", "args": {"text": "now"}})
    elapsed = await finished_within(client, accepted.headers["location"], SOON)
    woken = len(polled)
    await asyncio.sleep(0.25)
    after = [b - a for a, b in itertools.pairwise(polled[woken - 1 :])]

    assert 0.35 <= max(idle) <= 0.6, idle  # 4 x 0.1 s, not more
    assert min(idle[-3:]) >= 0.35, idle  # and it stays stretched while idle
    assert elapsed < SOON  # the notice, not the poll
    assert after, polled
    assert min(after) < 0.2, after  # back to the poll delay


async def test_a_notice_naming_its_job_starts_it_without_a_poll(
    client: httpx.AsyncClient, start_worker: StartWorker
) -> None:
    """The web's notice carries the job's id: an idle worker with a free slot claims that job
    at once, where it used to poll the queue first (a round trip the job waited for)."""
    worker = await start_worker()
    by_notice = started_by_notice(worker)
    body = {"task": "word_count", "args": {"text": "by its notice"}}

    accepted = await client.post("/jobs", json=body)
    await finished_within(client, accepted.headers["location"], SOON)

    assert by_notice == [accepted.json()["id"]]
    assert (await client.get(accepted.headers["location"])).json()["tries"] == 1


async def test_a_busy_worker_leaves_a_notices_job_to_its_poll(
    client: httpx.AsyncClient, start_worker: StartWorker
) -> None:
    """Only an idle worker claims a notice's job itself: a busy one (here one job running, as
    it counts them) polls, so a burst of notices costs one read, not a claim per notice and
    worker. The job still starts at once."""
    worker = await start_worker()
    by_notice = started_by_notice(worker)
    worker.job_counter += 1  # (one job running)
    body = {"task": "word_count", "args": {"text": "polled for"}}
    try:
        accepted = await client.post("/jobs", json=body)
        elapsed = await finished_within(client, accepted.headers["location"], SOON)
    finally:
        worker.job_counter -= 1

    assert by_notice == []
    assert elapsed < SOON


async def test_a_claim_answered_after_a_stop_starts_no_job_and_gives_it_back(
    settings: Settings, client: httpx.AsyncClient, start_worker: StartWorker
) -> None:
    """A stop that comes while a notice's claim is under way: the claimed job is not started
    but given back (no claim left, no try counted), for another worker."""
    worker = await start_worker()
    assert worker._claimer is not None  # (made by the first poll)
    claim = worker._claimer.claim

    async def stopped_meanwhile(job_ids: list[str], now_ms: int, token: str) -> list[Claimed]:
        claimed = await claim(job_ids, now_ms, token)
        if claimed:  # (what a stop sets, whichever claims it: the poll or the listener)
            worker.allow_pick_jobs = False
        return claimed

    worker._claimer.claim = stopped_meanwhile  # type: ignore[method-assign]
    body = {"task": "word_count", "args": {"text": "given back"}}

    job_id = (await client.post("/jobs", json=body)).json()["id"]
    await asyncio.sleep(0.3)

    assert (await client.get(f"/jobs/{job_id}")).json()["state"] == "queued"
    async with Redis.from_url(str(settings.redis_url)) as redis:
        assert not await redis.exists(in_progress_key_prefix + job_id)
        assert not await redis.exists(retry_key_prefix + job_id)


async def test_notices_and_polls_together_never_run_more_jobs_than_slots(
    client: httpx.AsyncClient, start_worker: StartWorker
) -> None:
    """Jobs claimed by their notices and by polls at once (a burst of enqueues, polls every
    50 ms): never more running than the worker's slots, every job run once."""
    worker = await start_worker(worker_max_jobs=2, worker_poll_delay=0.05)
    running = most = 0
    run_job = worker.run_job

    async def counted(job_id: str, score: int) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(0.02)  # (the job holds its slot a while)
            await run_job(job_id, score)
        finally:
            running -= 1

    worker.run_job = counted  # type: ignore[method-assign]
    body = {"task": "word_count", "args": {"text": "one of many"}}
    sent = await asyncio.gather(*(client.post("/jobs", json=body) for _ in range(12)))

    for accepted in sent:
        assert (await finished_within(client, accepted.headers["location"], SOON)) < SOON
        assert (await client.get(accepted.headers["location"])).json()["tries"] == 1
    assert most == 2


async def test_a_stopped_worker_takes_no_job_a_notice_names(
    client: httpx.AsyncClient, start_worker: StartWorker
) -> None:
    """Between a stop (SIGINT: arq's stop at once) and close(), the wake listener still reads
    notices: it starts none of their jobs, which wait for another worker."""
    worker = await start_worker()
    worker.handle_sig(signal.SIGINT)
    body = {"task": "word_count", "args": {"text": "after the stop"}}

    location = (await client.post("/jobs", json=body)).headers["location"]
    await asyncio.sleep(0.3)

    assert (await client.get(location)).json()["state"] == "queued"


def started_by_notice(worker: WakingWorker) -> list[str]:
    """The ids of the jobs `worker` claims through their notices (not by a poll), as it does."""
    started: list[str] = []
    noticed = worker._start_noticed

    async def spied(job_id: str) -> bool:
        if await noticed(job_id):
            started.append(job_id)
            return True
        return False

    worker._start_noticed = spied  # type: ignore[method-assign]
    return started
