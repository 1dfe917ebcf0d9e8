"""Rate limits and concurrency caps of tasks (queue.limits) against real Redis: the ledger's
check on its own, then worker processes sharing a limit (tests.integration.limited_worker)."""

import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from arq.constants import retry_key_prefix
from redis.asyncio import Redis

from {{ cookiecutter.package_name }}.queue import JobEvent, JobRecord, JobState, NewJob, TaskLimits
from {{ cookiecutter.package_name }}.queue.arq_queue import ArqJobQueue, ledger_for
from {{ cookiecutter.package_name }}.queue.limits import CAP_RECHECK
from {{ cookiecutter.package_name }}.queue.wake_channel import wake_channel
from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import SpawnWorker
from .limited_worker import CAP, RATE

PROJECT = Path(__file__).resolve().parents[2]


async def start(redis: Redis, settings: Settings, job_id: str, limits: TaskLimits) -> float | None:
    """A worker's start of the job as arq makes it: its try counted first (arq's INCR)."""
    await redis.incr(retry_key_prefix + job_id)
    ledger = ledger_for(redis, settings)
    return await ledger.started(job_id, limits.task, settings.queue_name, 1, None, limits)


async def record(redis: Redis, settings: Settings, job_id: str) -> JobRecord:
    async with ArqJobQueue.connect(settings) as backend:
        found = await backend.get(job_id)
    assert found is not None
    return found


async def test_a_start_over_the_rate_waits_for_its_booked_time_and_burns_no_try(
    settings: Settings,
) -> None:
    limits = TaskLimits("limited", rate=2, per_ms=60_000)
    ids = [uuid.uuid4().hex for _ in range(4)]
    async with Redis.from_url(str(settings.redis_url)) as redis:
        answers = []
        for job_id in ids:
            answers.append(await start(redis, settings, job_id, limits))
            await asyncio.sleep(0.01)  # (starts a few ms apart: their bookings are too)
        first, second, third, fourth = answers
        assert (first, second) == (None, None)
        assert third is not None
        assert 59 < third <= 60
        # The fourth books the window after the second start, not the third's time again:
        # waiting jobs come back spread over the windows, not all at once.
        assert fourth is not None
        third_until, fourth_until = [
            (await record(redis, settings, job_id)).waiting for job_id in ids[2:]
        ]
        assert third_until is not None
        assert fourth_until is not None
        assert third_until.until is not None
        assert fourth_until.until is not None
        assert fourth_until.until > third_until.until
        assert await redis.get(retry_key_prefix + ids[2]) == b"0"  # the try given back
        assert await redis.get(retry_key_prefix + ids[0]) == b"1"

        waiting = await record(redis, settings, ids[2])
        assert waiting.state is JobState.DEFERRED
        assert waiting.waiting is not None
        assert waiting.waiting.reason == "rate"
        assert waiting.waiting.until is not None
        booked = (waiting.waiting.until - datetime.now(tz=UTC)).total_seconds()
        assert 58 < booked <= 60
        assert (await record(redis, settings, ids[0])).state is JobState.IN_PROGRESS


async def test_a_booked_start_goes_when_the_window_has_room_and_its_wait_is_over(
    settings: Settings,
) -> None:
    limits = TaskLimits("limited", rate=2, per_ms=400)
    ids = [uuid.uuid4().hex for _ in range(3)]
    async with Redis.from_url(str(settings.redis_url)) as redis:
        assert await start(redis, settings, ids[0], limits) is None
        assert await start(redis, settings, ids[1], limits) is None
        wait = await start(redis, settings, ids[2], limits)
        assert wait is not None
        assert 0 < wait <= 0.4
        await asyncio.sleep(wait + 0.01)
        assert await start(redis, settings, ids[2], limits) is None
        started = await record(redis, settings, ids[2])
        assert (started.state, started.waiting, started.tries) == (JobState.IN_PROGRESS, None, 1)
        events = [event for event in await _events(settings, ids[2]) if event.state]
        assert [event.state for event in events][-2:] == [JobState.DEFERRED, JobState.IN_PROGRESS]
        assert events[-2].waiting is not None
        assert events[-2].waiting.reason == "rate"


async def _events(settings: Settings, job_id: str) -> list[JobEvent]:
    async with ArqJobQueue.connect(settings) as backend:
        return list(await backend.events(job_id))


async def test_a_capped_jobs_end_makes_the_longest_waiting_one_due_and_wakes_the_workers(
    settings: Settings,
) -> None:
    limits = TaskLimits("capped", concurrency=1, hold_ms=60_000)
    holder, waiter, later = (uuid.uuid4().hex for _ in range(3))
    async with Redis.from_url(str(settings.redis_url)) as redis:
        assert await start(redis, settings, holder, limits) is None
        assert await start(redis, settings, waiter, limits) == CAP_RECHECK
        # Second in line: it falls back later than the head (an end wakes the head first).
        assert await start(redis, settings, later, limits) == 2 * CAP_RECHECK
        # arq put them back in the queue for the recheck's time.
        due = time.time() * 1000 + CAP_RECHECK * 1000
        await redis.zadd(settings.queue_name, {waiter: due, later: due})
        async with redis.pubsub() as pubsub:
            await pubsub.subscribe(wake_channel(settings.queue_name))
            await pubsub.get_message(timeout=1)  # the subscription's confirmation
            await ledger_for(redis, settings).release(holder, settings.queue_name, limits)
            notice = await pubsub.get_message(timeout=2)
        assert notice is not None
        assert notice["type"] == "message"
        assert (await redis.zscore(settings.queue_name, waiter) or due) <= time.time() * 1000
        assert await redis.zscore(settings.queue_name, later) == due  # one place, one job
        assert await start(redis, settings, waiter, limits) is None
        assert await start(redis, settings, later, limits) == CAP_RECHECK


async def test_a_place_held_by_a_job_killed_mid_run_lapses_with_its_longest_run(
    settings: Settings,
) -> None:
    limits = TaskLimits("capped", concurrency=1, hold_ms=300)
    killed, next_one = uuid.uuid4().hex, uuid.uuid4().hex
    async with Redis.from_url(str(settings.redis_url)) as redis:
        assert await start(redis, settings, killed, limits) is None
        assert await start(redis, settings, next_one, limits) == CAP_RECHECK
        await asyncio.sleep(0.35)  # no end was ever written
        assert await start(redis, settings, next_one, limits) is None


# Worker processes sharing the limits.


LIMITED_WORKER = (sys.executable, "-m", "tests.integration.limited_worker")
"""A worker serving the limited tasks too (limited_worker.py)."""


async def finished(settings: Settings, ids: list[str], within: float) -> list[JobRecord]:
    """The records of `ids` once every one has ended (within `within` seconds)."""
    deadline = time.monotonic() + within
    async with ArqJobQueue.connect(settings) as backend:
        while True:
            records = [await backend.get(job_id) for job_id in ids]
            ended = [r for r in records if r is not None and r.state.finished]
            if len(ended) == len(ids):
                return ended
            if time.monotonic() > deadline:
                states = sorted(str(r.state) if r else "missing" for r in records)
                raise AssertionError(f"{len(ended)} of {len(ids)} jobs ended: {states}")
            await asyncio.sleep(0.5)


@pytest.mark.slow
async def test_three_workers_never_start_more_than_the_rate_in_any_window(
    settings: Settings, spawn_worker: SpawnWorker
) -> None:
    """300 jobs of a task limited to 50 starts in any 10 s, served by three worker processes."""
    for _ in range(3):
        spawn_worker(command=LIMITED_WORKER)
    async with ArqJobQueue.connect(settings) as backend:
        ids = await backend.enqueue_many(
            [NewJob("rate_limited", {}, settings.queue_name) for _ in range(300)]
        )
    records = await finished(settings, ids, within=120)
    assert {record.state for record in records} == {JobState.SUCCEEDED}
    assert {record.tries for record in records} == {1}  # waiting burned no try
    starts = sorted(record.started_at.timestamp() for record in records if record.started_at)
    assert len(starts) == 300
    # Any window of the period, by the workers' clock (the check uses Redis's: a few ms apart,
    # hence the window shortened by 50 ms): the most starts in one.
    period = RATE.per - 0.05
    most = max(
        sum(1 for other in starts[index:] if other < start + period)
        for index, start in enumerate(starts)
    )
    assert most <= RATE.limit
    assert starts[-1] - starts[0] >= 5 * RATE.per - 1  # six windows' worth, not one burst


@pytest.mark.slow
async def test_a_cap_holds_across_workers_while_other_tasks_run_at_full_speed(
    settings: Settings, spawn_worker: SpawnWorker
) -> None:
    for _ in range(2):
        spawn_worker(command=LIMITED_WORKER)
    async with ArqJobQueue.connect(settings) as backend:
        capped = await backend.enqueue_many(
            [NewJob("capped", {"seconds": 0.3}, settings.queue_name) for _ in range(30)]
        )
        others = await backend.enqueue_many(
            [
                NewJob("word_count", {"text": f"word {index}"}, settings.queue_name)
                for index in range(200)
            ]
        )
    done = await finished(settings, others, within=60)
    async with ArqJobQueue.connect(settings) as backend:
        capped_now = [await backend.get(job_id) for job_id in capped]
    # 30 jobs of 0.3 s three at a time take 3 s at least; the others were not held behind them.
    assert sum(1 for r in capped_now if r is not None and r.state.finished) <= 15
    assert {record.state for record in done} == {JobState.SUCCEEDED}

    records = await finished(settings, capped, within=60)
    assert {record.state for record in records} == {JobState.SUCCEEDED}
    assert {record.tries for record in records} == {1}
    async with Redis.from_url(str(settings.redis_url)) as redis:
        most = int(await redis.get(f"{settings.queue_name}:capped:most") or 0)
    assert most == CAP  # reached, never passed
