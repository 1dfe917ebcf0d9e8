"""A job's start in its record (queue/ledger.py, START_WRITE_DELAY), on a real Redis: a job that
ends within the delay is recorded in one write with its start, a longer one says "in progress"
once the delay is over, and neither order nor content of the record and its events suffers from
the start being late: not when its delayed write is under way as the job ends, not when Redis
fails that write, not when the try ends without a word, and not when a cancel comes meanwhile.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from arq.constants import in_progress_key_prefix, job_key_prefix
from pydantic import RedisDsn
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from {{ cookiecutter.package_name }}.queue import JobError, JobRecord, JobState
from {{ cookiecutter.package_name }}.queue.arq_queue import ArqJobQueue, ledger_for
from {{ cookiecutter.package_name }}.queue.ledger import START_WRITE_DELAY, Ledger, record_from
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.worker.options import worker_options
from {{ cookiecutter.package_name }}.worker.process import WakingWorker

from .conftest import RedisServer

DELAY = 0.2
EVALS = ("eval", "evalsha", "evalsha_ro", "eval_ro", "fcall")


@pytest.fixture
async def backend(settings: Settings) -> AsyncIterator[ArqJobQueue]:
    async with ArqJobQueue.connect(settings) as queue:
        yield queue


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    async with Redis.from_url(str(settings.redis_url)) as client:
        yield client


async def queued(backend: ArqJobQueue, settings: Settings) -> str:
    enqueued = await backend.enqueue("word_count", {"text": "a b"}, queue_name=settings.queue_name)
    return enqueued.job_id


def worker_ledger(redis: Redis, settings: Settings) -> Ledger:
    return ledger_for(redis, settings, start_delay=DELAY)


async def stored(ledger: Ledger, job_id: str) -> JobRecord:
    """The record as the ledger holds it (the API's reads add arq's own view of the job)."""
    raw = await ledger.redis.hgetall(ledger.key(job_id))  # type: ignore[misc]
    return record_from(job_id, {name.decode(): value.decode() for name, value in raw.items()})


async def states(backend: ArqJobQueue, job_id: str) -> list[str]:
    return [event.state.value for event in await backend.events(job_id) if event.state]


async def test_a_short_job_is_recorded_once_with_its_start(
    backend: ArqJobQueue, settings: Settings, redis: Redis
) -> None:
    job_id = await queued(backend, settings)
    ledger = worker_ledger(redis, settings)
    writes = count_writes(ledger)

    await ledger.started(job_id, "word_count", settings.queue_name, 1)
    record = await stored(ledger, job_id)
    assert record.state == JobState.QUEUED  # not written yet
    await ledger.finished(job_id, JobState.SUCCEEDED, result={"words": 2})

    assert len(writes) == 1
    record = await stored(ledger, job_id)
    assert (record.state, record.tries, record.result) == (JobState.SUCCEEDED, 1, {"words": 2})
    assert record.started_at is not None
    assert record.finished_at is not None
    assert record.enqueued_at is not None
    assert record.enqueued_at <= record.started_at <= record.finished_at
    assert await states(backend, job_id) == ["queued", "in_progress", "succeeded"]
    await asyncio.sleep(DELAY * 1.5)  # no late start after the end
    assert len(writes) == 1
    assert await states(backend, job_id) == ["queued", "in_progress", "succeeded"]


async def test_a_longer_job_says_in_progress_once_the_delay_is_over(
    backend: ArqJobQueue, settings: Settings, redis: Redis
) -> None:
    job_id = await queued(backend, settings)
    ledger = worker_ledger(redis, settings)

    await ledger.started(job_id, "word_count", settings.queue_name, 1)
    await asyncio.sleep(DELAY * 2)
    record = await stored(ledger, job_id)
    assert (record.state, record.tries) == (JobState.IN_PROGRESS, 1)
    await ledger.progress(job_id, 50)
    await ledger.finished(job_id, JobState.SUCCEEDED, result=None)

    assert await states(backend, job_id) == ["queued", "in_progress", "succeeded"]


async def test_a_change_waits_for_the_start_already_under_way(
    backend: ArqJobQueue, settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delayed write is slow to arrive (a busy Redis) as the job ends: the end waits for it,
    or the start would land after the end and the record say "in progress" for good."""
    job_id = await queued(backend, settings)
    ledger = worker_ledger(redis, settings)
    write = ledger._write_script

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(DELAY)
        return await write(*args, **kwargs)

    monkeypatch.setattr(ledger, "_write_script", slow)
    await ledger.started(job_id, "word_count", settings.queue_name, 1)
    await asyncio.sleep(DELAY * 1.5)  # its write is under way, not done
    monkeypatch.setattr(ledger, "_write_script", write)
    await ledger.retrying(job_id, JobError("ValueError", "it failed"), 5)
    await asyncio.sleep(DELAY)  # (a start sent after the end would have landed by now)

    record = await stored(ledger, job_id)
    assert (record.state, record.tries) == (JobState.DEFERRED, 1)
    assert await states(backend, job_id) == ["queued", "in_progress", "deferred"]


async def test_a_start_redis_refused_goes_with_the_next_change(
    backend: ArqJobQueue, settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = await queued(backend, settings)
    ledger = worker_ledger(redis, settings)
    write = ledger._write_script

    async def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise RedisConnectionError("Redis is away")

    monkeypatch.setattr(ledger, "_write_script", refused)
    await ledger.started(job_id, "word_count", settings.queue_name, 2)
    await asyncio.sleep(DELAY * 2)  # its delayed write failed
    monkeypatch.setattr(ledger, "_write_script", write)
    record = await stored(ledger, job_id)
    assert record.state == JobState.QUEUED

    await ledger.finished(job_id, JobState.CANCELLED)

    record = await stored(ledger, job_id)
    assert (record.state, record.tries) == (JobState.CANCELLED, 2)
    assert record.started_at is not None
    assert await states(backend, job_id) == ["queued", "in_progress", "cancelled"]


async def test_a_try_that_ends_without_a_change_leaves_no_late_start(
    backend: ArqJobQueue, settings: Settings, redis: Redis
) -> None:
    """A try that ends by a Retry the task raised, or by an outage, writes nothing: its start
    must not arrive afterwards and say "in progress" of a job that waits in its queue."""
    job_id = await queued(backend, settings)
    ledger = worker_ledger(redis, settings)

    await ledger.started(job_id, "word_count", settings.queue_name, 1)
    ledger.forget_start(job_id)
    await asyncio.sleep(DELAY * 2)

    record = await stored(ledger, job_id)
    assert record.state == JobState.QUEUED
    assert await states(backend, job_id) == ["queued"]


async def test_a_cancel_leaves_a_claimed_job_to_its_worker_whatever_its_record_says(
    backend: ArqJobQueue, settings: Settings, redis: Redis
) -> None:
    """Claimed, its start not written yet: the record says "queued" and arq keeps the job in its
    queue while it runs. Taking it off the queue would call it cancelled while it runs on (and
    its end then say "succeeded"); the cancel goes to its worker instead."""
    job_id = await queued(backend, settings)
    await redis.set(in_progress_key_prefix + job_id, "a worker's claim", px=10_000)

    record = await backend.cancel(job_id)

    assert record.cancel_requested
    assert record.state == JobState.IN_PROGRESS  # (as arq's claim says)
    assert await redis.zscore(settings.queue_name, job_id) is not None  # still queued for arq
    ledger = ledger_for(redis, settings)
    kept = await stored(ledger, job_id)
    assert (kept.state, kept.cancel_requested) == (JobState.QUEUED, True)
    # Claimed between the web's read of the job and its cancel: the cancel's script refuses.
    other = await queued(backend, settings)
    await redis.set(in_progress_key_prefix + other, "a worker's claim", px=10_000)
    assert not await ledger.cancel_unclaimed(other, job_key_prefix + other, [settings.queue_name])
    assert await redis.zscore(settings.queue_name, other) is not None
    assert await redis.exists(job_key_prefix + other)
    assert (await stored(ledger, other)).state == JobState.QUEUED


async def test_the_worker_records_a_short_job_in_one_script_call(
    settings: Settings, own_redis: RedisServer
) -> None:
    """The worker as shipped (START_WRITE_DELAY), on a Redis of the test's own whose command
    counts are the worker's: twenty short jobs, each recorded whole by one script call."""
    assert START_WRITE_DELAY > 0
    mine = settings.model_copy(update={"redis_url": RedisDsn(own_redis.url)})
    options = {**worker_options(mine, "default"), "cron_jobs": []}
    async with ArqJobQueue.connect(mine) as backend, Redis.from_url(own_redis.url) as redis:
        for jobs in (1, 20):  # the first run loads the scripts
            ids = [await queued(backend, mine) for _ in range(jobs)]
            await redis.config_resetstat()
            worker = WakingWorker(**{**options, "burst": True, "handle_signals": False})
            try:
                await worker.main()
            finally:
                await worker.close()

        calls = await redis.info("commandstats")
        scripts = sum(calls.get(f"cmdstat_{name}", {}).get("calls", 0) for name in EVALS)
        # One a job (its end, with its start), plus the claims of the polls.
        assert 20 <= scripts < 30, calls
        for job_id in ids:
            record = await stored(ledger_for(redis, mine), job_id)
            assert (record.state, record.tries) == (JobState.SUCCEEDED, 1)
            assert record.started_at is not None
            assert await states(backend, job_id) == ["queued", "in_progress", "succeeded"]


def count_writes(ledger: Ledger) -> list[object]:
    """Every script call the ledger makes on its own (not in another's transaction)."""
    calls: list[object] = []
    for name in ("_write_script", "_finish_script", "_succeed_script"):
        script: Callable[..., Any] = getattr(ledger, name)

        def counted(*args: Any, _script: Callable[..., Any] = script, **kwargs: Any) -> Any:
            calls.append(args)
            return _script(*args, **kwargs)

        setattr(ledger, name, counted)
    return calls
