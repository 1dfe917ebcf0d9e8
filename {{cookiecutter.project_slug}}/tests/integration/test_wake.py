"""Workers wake on enqueue: an idle worker starts a job at once instead of at its next poll, and
the poll stays as the fallback for what publishes no notice (plain arq clients, deferred jobs).

Each worker here polls only every POLL seconds, so a job finished well inside that time proves
that something other than the poll started it. The bound is a fraction of POLL, not a speed target
(the benchmark measures latency: bench/latency.py).
"""

import asyncio
import itertools
import logging
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from arq.connections import create_pool
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix
from pydantic import RedisDsn
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from {{ cookiecutter.package_name }}.queue.arq_queue import redis_settings
from {{ cookiecutter.package_name }}.queue.serializer import serialize
from {{ cookiecutter.package_name }}.queue.wake_channel import (
    HandOff,
    handoff_channel,
    handoff_member,
    idle_workers_key,
    wake_channel,
)
from {{ cookiecutter.package_name }}.settings import QueueKey, Settings
from {{ cookiecutter.package_name }}.worker.claim import FRESH_MS, LOST_AFTER_MS, Claimed
from {{ cookiecutter.package_name }}.worker.options import worker_options
from {{ cookiecutter.package_name }}.worker.process import WakingWorker

from .conftest import RedisServer, stop_worker

POLL = 6.0
SOON = POLL / 3

StartWorker = Callable[..., Awaitable[WakingWorker]]


@pytest.fixture
async def start_worker(settings: Settings) -> AsyncIterator[StartWorker]:
    running: list[tuple[WakingWorker, asyncio.Task[None]]] = []

    async def start(queue: QueueKey = "default", **overrides: object) -> WakingWorker:
        tuned = settings.model_copy(update={"worker_poll_delay": POLL, **overrides})
        options = {**worker_options(tuned, queue), "cron_jobs": [], "handle_signals": False}
        worker = WakingWorker(**options)
        running.append((worker, asyncio.create_task(worker.async_run())))
        # Ready once it listens: connected, first poll done, wake channel subscribed, and
        # registered as idle (the poll the subscription wakes).
        channel = wake_channel(tuned.queue_for(queue))
        async with asyncio.timeout(10):
            # Polled: arq offers no event for either (it connects in main()).
            while worker._pool is None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            while not (await worker.pool.pubsub_numsub(channel))[0][1]:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            while worker._registration is None or not worker._registration.held:  # noqa: ASYNC110
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
    at once, where it used to poll the queue first (a round trip the job waited for). (A worker
    registered as idle is handed its job instead: below.)"""
    worker = await unregistered(await start_worker())
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
    worker = await unregistered(await start_worker())
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
    worker = await unregistered(await start_worker())
    assert worker._claimer is not None  # (made by the first poll)
    claim = worker._claimer.claim

    async def stopped_meanwhile(
        job_ids: list[str], now_ms: int, token: str, member: str = "", handed: str = ""
    ) -> list[Claimed]:
        claimed = await claim(job_ids, now_ms, token, member, handed)
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


async def test_an_idle_worker_whose_claims_answer_was_lost_registers_again(
    settings: Settings, start_worker: StartWorker
) -> None:
    """A poll's claim carries the worker's idle-set entry, which Redis takes out once the claim
    takes a job. Its answer lost (and the job gone before the claim goes again), the worker cannot
    know whether its entry is still there: it registers again at its next idle poll, so that jobs
    are handed to it again, rather than take itself for registered until its hourly refresh."""
    worker = await start_worker()
    assert worker._claimer is not None
    assert worker._registration is not None
    member = worker._registration.member
    claim = worker._claimer.claim
    lost: list[str] = []
    pool = await create_pool(redis_settings(settings))

    async def answer_lost(
        job_ids: list[str], now_ms: int, token: str, member: str = "", handed: str = ""
    ) -> list[Claimed]:
        claimed = await claim(job_ids, now_ms, token, member, handed)
        if claimed and not lost:
            lost.extend(job.job_id for job in claimed)
            await pool.zrem(settings.queue_name, *lost)  # (cancelled meanwhile, say)
            raise RedisTimeoutError("Timeout reading from socket (the claim's answer lost)")
        return claimed

    worker._claimer.claim = answer_lost  # type: ignore[method-assign]
    idle = idle_workers_key(settings.queue_name)
    try:
        # A plain arq client's job, then a notice that names none: the worker's poll claims it.
        await pool.enqueue_job("word_count", text="plain", _queue_name=settings.queue_name)
        await pool.publish(wake_channel(settings.queue_name), "")
        async with asyncio.timeout(SOON):
            while not lost:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        taken_out = await pool.zscore(idle, member) is None
        async with asyncio.timeout(SOON):
            while await pool.zscore(idle, member) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    finally:
        prefixes = (job_key_prefix, in_progress_key_prefix, retry_key_prefix)
        await pool.delete(*(prefix + job_id for job_id in lost for prefix in prefixes))
        await pool.aclose()

    assert taken_out, "the lost claim left the entry in: the fault was not met"


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


@pytest.mark.parametrize("registered", [True, False], ids=["handed-over", "noticed"])
async def test_a_stopped_worker_takes_no_job_a_notice_names_or_is_handed(
    settings: Settings, client: httpx.AsyncClient, start_worker: StartWorker, registered: bool
) -> None:
    """Between a stop (SIGINT: arq's stop at once) and close(), the wake listener still reads
    notices and jobs handed over: it starts none of them; one handed over is given back (no
    claim, no try left), for another worker."""
    worker = await start_worker()
    if not registered:
        await unregistered(worker)
    worker.handle_sig(signal.SIGINT)
    body = {"task": "word_count", "args": {"text": "after the stop"}}

    job_id = (await client.post("/jobs", json=body)).json()["id"]
    await asyncio.sleep(0.3)

    assert (await client.get(f"/jobs/{job_id}")).json()["state"] == "queued"
    async with Redis.from_url(str(settings.redis_url)) as redis:
        assert not await redis.exists(in_progress_key_prefix + job_id)
        assert not await redis.exists(retry_key_prefix + job_id)


async def test_an_idle_worker_is_handed_its_job_and_claims_nothing_itself(
    settings: Settings, client: httpx.AsyncClient, start_worker: StartWorker
) -> None:
    """A registered idle worker gets the job itself, claimed for it by the enqueue: it starts
    the job without a claim of its own (no Redis round trip before the start), runs it once,
    and registers again once idle."""
    worker = await start_worker()
    claims = claims_of(worker)
    handed = handed_to(worker)
    body = {"task": "word_count", "args": {"text": "handed over"}}

    accepted = await client.post("/jobs", json=body)
    await finished_within(client, accepted.headers["location"], SOON)

    job = (await client.get(accepted.headers["location"])).json()
    assert handed == [accepted.json()["id"]]
    assert claims == []
    assert job["tries"] == 1
    assert job["result"] == {"words": 2, "characters": 11}
    async with asyncio.timeout(SOON):  # (its poll after the job: no job, so idle again)
        while not worker._registration or not worker._registration.held:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    async with Redis.from_url(str(settings.redis_url)) as redis:
        members = await redis.zrange(idle_workers_key(settings.queue_name), 0, -1)
    assert [member.decode() for member in members] == [worker._registration.member]


async def test_a_job_whose_hand_off_message_was_lost_runs_once_no_message_could_start_it(
    client: httpx.AsyncClient, start_worker: StartWorker
) -> None:
    """The message that hands a job to an idle worker is lost on its way (the worker's connection
    dropped after Redis sent it). The worker's poll takes the job as its own once its claim is
    LOST_AFTER_MS old, when a message still to come would be confirmed before its start and
    that confirmation fails: the job runs once, on its first try, long before its claim
    expires."""
    worker = await start_worker(worker_poll_delay=0.5)
    lifetime = worker.in_progress_timeout_s
    lost: list[bytes] = []
    start_handed = worker._start_handed

    async def message_lost(data: bytes) -> None:
        if not lost:
            lost.append(data)
            return
        await start_handed(data)

    worker._start_handed = message_lost  # type: ignore[method-assign]
    ran = runs_of(worker)
    body = {"task": "word_count", "args": {"text": "message lost"}}

    accepted = await client.post("/jobs", json=body)
    took = await finished_within(client, accepted.headers["location"], lifetime)
    await start_handed(lost[0])  # the lost message, arriving after all: not run again
    await asyncio.sleep(0.3)

    job = (await client.get(accepted.headers["location"])).json()
    print(f"\nhand-off lost: the job ran {took:.1f} s after, its claim {lifetime:g} s")
    assert lost, "no job was handed over: the fault was not met"
    assert LOST_AFTER_MS / 1000 - 0.5 <= took <= LOST_AFTER_MS / 1000 + 4  # (+ polls, stretched)
    assert took < lifetime / 2
    assert ran == [accepted.json()["id"]]
    assert (job["state"], job["tries"]) == ("succeeded", 1)


async def test_a_job_for_a_worker_gone_without_a_word_goes_to_the_next_idle_one(
    settings: Settings, client: httpx.AsyncClient, start_worker: StartWorker
) -> None:
    """A worker killed while idle leaves its entry in the idle set, and nobody on its channel:
    Redis delivers the job to nobody, so the enqueue takes the next entry. The dead one's entry
    is gone after that one job."""
    worker = await start_worker()
    handed = handed_to(worker)
    dead = handoff_member("killed-worker", 60_000, aborts=True)
    key = idle_workers_key(settings.queue_name)
    async with Redis.from_url(str(settings.redis_url)) as redis:
        await redis.zadd(key, {dead: time.time() + 3600})  # the first to be handed a job
        body = {"task": "word_count", "args": {"text": "not lost"}}

        accepted = await client.post("/jobs", json=body)
        await finished_within(client, accepted.headers["location"], SOON)

        assert handed == [accepted.json()["id"]]
        assert await redis.zscore(key, dead) is None


@pytest.mark.slow
async def test_a_job_handed_to_a_worker_that_never_takes_it_runs_elsewhere_once_its_claim_ends(
    settings: Settings, client: httpx.AsyncClient, start_worker: StartWorker
) -> None:
    """A frozen worker (here a subscriber that never reads, its claims 3 s long) is handed a job:
    its claim holds the job for that long, as any claim of a frozen worker does, then another
    worker's poll takes it."""
    await start_worker(worker_poll_delay=0.5)
    key = idle_workers_key(settings.queue_name)
    frozen = handoff_member("frozen-worker", 3_000, aborts=True)
    async with Redis.from_url(str(settings.redis_url)) as redis:
        listener = redis.pubsub()
        await listener.subscribe(handoff_channel(settings.queue_name, "frozen-worker"))
        await redis.zadd(key, {frozen: time.time() + 3600})  # handed the next job
        body = {"task": "word_count", "args": {"text": "held too long"}}
        started = time.monotonic()

        accepted = await client.post("/jobs", json=body)
        held = await redis.get(in_progress_key_prefix + accepted.json()["id"])
        await finished_within(client, accepted.headers["location"], 3 + 3)
        took = time.monotonic() - started

        message = None
        async with asyncio.timeout(5):
            while message is None or message["type"] != "message":
                message = await listener.get_message(timeout=1)
        await listener.aclose()
    assert held == b"frozen-worker"
    assert took >= 3 - 0.1  # not before its claim ended
    assert HandOff.parse(message["data"]).job_id == accepted.json()["id"]


@pytest.mark.parametrize("late", ["past-fresh", "three-quarters"])
@pytest.mark.parametrize("held", [True, False], ids=["still-held", "lapsed"])
async def test_a_late_hand_off_starts_only_once_its_claim_is_confirmed(
    settings: Settings, start_worker: StartWorker, held: bool, late: str
) -> None:
    """A message older than FRESH_MS (the worker frozen meanwhile, or its reads lagging) starts
    its job only once the claim is confirmed still the worker's, and extended to a full lifetime,
    so that a job that runs to its timeout still ends inside its claim: if it lapsed, another
    worker may have run the job, and this one does not start it."""
    worker = await start_worker()
    assert worker._registration is not None
    token, lifetime = worker._registration.token, worker._registration.lifetime_ms
    ran = runs_of(worker)
    job_id = f"late-{held}-{late}"
    async with Redis.from_url(str(settings.redis_url)) as redis:
        server_ms = int(float(".".join(map(str, await redis.time()))) * 1000)
        if held:
            await redis.set(in_progress_key_prefix + job_id, token, px=5_000)
        sent_ms = server_ms - (FRESH_MS + 1000 if late == "past-fresh" else lifetime * 3 // 4)
        payload = serialize({"t": 1, "f": "word_count", "a": [], "k": {"text": "x"}, "et": 0})
        head = f"{sent_ms} 1 0 {server_ms} {len(job_id)}\n".encode()

        await worker._start_handed(head + job_id.encode() + payload)
        claim = await redis.pttl(in_progress_key_prefix + job_id)
        await asyncio.sleep(0.2)

    assert ran == ([job_id] if held else [])
    if held:
        assert claim > 5_000  # confirmed: a full lifetime from now


async def test_a_handed_jobs_claim_is_the_workers_own_full_claim(
    settings: Settings, client: httpx.AsyncClient, start_worker: StartWorker
) -> None:
    """The enqueue claims a handed job for the worker's claim lifetime (its job timeout and
    10 s), as the worker's own claims: a job that runs long, or blocks the event loop, is not
    taken by another worker while it runs."""
    worker = await start_worker("bulk")
    assert worker._registration is not None
    handed = handed_to(worker)
    body = {"task": "render_report", "args": {"pages": 2, "seconds_per_page": 0.5}}

    job_id = (await client.post("/jobs", json=body)).json()["id"]
    async with Redis.from_url(str(settings.redis_url)) as redis:
        await asyncio.sleep(0.3)
        claim = await redis.pttl(in_progress_key_prefix + job_id)

    assert handed == [job_id]
    assert worker._registration.lifetime_ms - 2_000 < claim <= worker._registration.lifetime_ms


async def unregistered(worker: WakingWorker) -> WakingWorker:
    """`worker` out of the idle set: jobs reach it by notice, as they reach a worker that is
    not registered (its next idle poll registers it again)."""
    assert worker._claimer is not None
    assert worker._registration is not None
    await worker._registration.unregister(worker._claimer)
    return worker


def claims_of(worker: WakingWorker) -> list[list[str]]:
    """The candidates of each claim `worker` sends to Redis (by its polls or its notices)."""
    assert worker._claimer is not None
    claims: list[list[str]] = []
    claim = worker._claimer.claim

    async def spied(
        job_ids: list[str], now_ms: int, token: str, member: str = "", handed: str = ""
    ) -> list[Claimed]:
        if job_ids:  # (none: nothing is sent)
            claims.append(job_ids)
        return await claim(job_ids, now_ms, token, member, handed)

    worker._claimer.claim = spied  # type: ignore[method-assign]
    return claims


def handed_to(worker: WakingWorker) -> list[str]:
    """The ids of the jobs handed to `worker` that it started."""
    started: list[str] = []
    start = worker._start_handed

    async def spied(data: bytes) -> None:
        before = set(worker.tasks)
        await start(data)
        started.extend(job_id for job_id in worker.tasks if job_id not in before)

    worker._start_handed = spied  # type: ignore[method-assign]
    return started


def runs_of(worker: WakingWorker) -> list[str]:
    """The ids of the jobs `worker` runs from now on (by any path)."""
    ran: list[str] = []
    run_job = worker.run_job

    async def spied(job_id: str, score: int) -> None:
        ran.append(job_id)
        await run_job(job_id, score)

    worker.run_job = spied  # type: ignore[method-assign]
    return ran


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


async def test_a_registration_redis_refuses_is_logged_once_and_retried_at_each_idle_poll(
    start_worker: StartWorker, caplog: pytest.LogCaptureFixture
) -> None:
    """A full Redis refuses the idle registration at every idle poll: one warning, not one a
    poll, and the worker registers again once Redis takes it (jobs come by notice meanwhile)."""
    worker = await unregistered(await start_worker(worker_poll_delay=0.05))
    assert worker._claimer is not None
    register = worker._claimer.register
    tries = 0

    async def refused(member: str) -> int:
        nonlocal tries
        tries += 1
        raise ResponseError("OOM command not allowed when used memory > 'maxmemory'.")

    worker._claimer.register = refused  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="{{ cookiecutter.package_name }}.worker.process"):
        await asyncio.sleep(0.6)
        worker._claimer.register = register  # type: ignore[method-assign]
        async with asyncio.timeout(2):
            while not worker._registration or not worker._registration.held:  # noqa: ASYNC110
                await asyncio.sleep(0.01)

    assert tries >= 3
    warnings = [r for r in caplog.records if "could not register as idle" in r.getMessage()]
    assert len(warnings) == 1
