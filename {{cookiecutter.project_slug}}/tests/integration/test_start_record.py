"""A job's start in its record (queue/ledger.py, START_WRITE_DELAY), on a real Redis: a job that
ends within the delay is recorded in one write with its start, a longer one says "in progress"
once the delay is over, and neither order nor content of the record and its events suffers from
the start being late: not when its delayed write is under way as the job ends, not when Redis
fails that write, not when the try ends without a word, and not when a cancel comes meanwhile.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from arq.constants import in_progress_key_prefix, job_key_prefix
from pydantic import RedisDsn
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from {{ cookiecutter.package_name }}.queue import JobError, JobRecord, JobState
from {{ cookiecutter.package_name }}.queue.arq_queue import ArqJobQueue, ledger_for
from {{ cookiecutter.package_name }}.queue.ledger import START_WRITE_DELAY, Change, Ledger, RecordWrite, record_from
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


async def test_a_start_under_way_and_the_next_change_apply_it_once_in_either_order(
    backend: ArqJobQueue, settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delayed write is slow to arrive (a busy Redis) as the job's next change goes: neither
    waits for the other, and the start, carried by both, applies once whichever lands first (a
    start landing after the change must not say "in progress" again)."""
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
    began = time.monotonic()
    await ledger.retrying(job_id, JobError("ValueError", "it failed"), 5)
    assert time.monotonic() - began < DELAY / 2  # (it did not wait for the start)
    await asyncio.sleep(DELAY)  # the start sent first has landed after it

    record = await stored(ledger, job_id)
    assert (record.state, record.tries) == (JobState.DEFERRED, 1)
    assert await states(backend, job_id) == ["queued", "in_progress", "deferred"]


async def test_a_success_is_handed_over_without_waiting_for_its_start(
    backend: ArqJobQueue, settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the task's return and the hand-over of its success nothing waits: a cancel or a
    stop landing in such a wait would undo a success (the job cancelled, or run again)."""
    job_id = await queued(backend, settings)
    handed: dict[str, RecordWrite] = {}
    ledger = ledger_for(redis, settings, handed.__setitem__, start_delay=DELAY)
    write = ledger._write_script

    async def slow(*args: Any, **kwargs: Any) -> Any:
        reply = await write(*args, **kwargs)
        await asyncio.sleep(5 * DELAY)  # the reply is slow to come back
        return reply

    monkeypatch.setattr(ledger, "_write_script", slow)
    await ledger.started(job_id, "word_count", settings.queue_name, 1)
    await asyncio.sleep(DELAY * 1.5)  # the delayed write awaits its reply
    began = time.monotonic()
    await ledger.finished(job_id, JobState.SUCCEEDED, result={"words": 2})
    assert time.monotonic() - began < DELAY / 2
    await handed.pop(job_id).send()  # (as arq's end of the job writes it)

    record = await stored(ledger, job_id)
    assert (record.state, record.tries) == (JobState.SUCCEEDED, 1)
    assert await states(backend, job_id) == ["queued", "in_progress", "succeeded"]


async def test_changes_at_once_and_a_start_applied_but_unanswered_apply_it_once(
    backend: ArqJobQueue, settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two progress reports in flight together (a task reporting from two coroutines) both carry
    the start; a delayed write that Redis ran but whose answer never came (a stall past its
    timeout) stays pending and the end carries it again. Each start applies once, and a later
    carrier drops no progress."""
    job_id = await queued(backend, settings)
    ledger = worker_ledger(redis, settings)
    await ledger.started(job_id, "word_count", settings.queue_name, 1)
    await asyncio.gather(ledger.progress(job_id, 10), ledger.progress(job_id, 100, "done"))
    record = await stored(ledger, job_id)
    assert record.progress is not None
    assert record.progress.percent in (10, 100)
    assert await states(backend, job_id) == ["queued", "in_progress"]

    other = await queued(backend, settings)
    write = ledger._write_script

    async def unanswered(*args: Any, **kwargs: Any) -> Any:
        await write(*args, **kwargs)
        raise RedisTimeoutError("Timeout reading from Redis")

    monkeypatch.setattr(ledger, "_write_script", unanswered)
    await ledger.started(other, "word_count", settings.queue_name, 1)
    await asyncio.sleep(DELAY * 1.5)
    monkeypatch.setattr(ledger, "_write_script", write)
    await ledger.finished(other, JobState.FAILED, error=JobError("ValueError", "it failed"))
    assert await states(backend, other) == ["queued", "in_progress", "failed"]


async def test_a_start_arriving_after_an_end_that_did_not_carry_it_changes_nothing(
    backend: ArqJobQueue, settings: Settings, redis: Redis
) -> None:
    """An ending arq makes itself (its own timeout) is written from arq's result, without the
    pending start (worker.process SETTLE): the start's delayed write after it is a no-op."""
    job_id = await queued(backend, settings)
    ledger = worker_ledger(redis, settings)
    await ledger.started(job_id, "word_count", settings.queue_name, 1)
    error = JobError("TimeoutError", "arq's own timeout")
    await ledger.settling(job_id, error, None, aborted=False).send()
    await asyncio.sleep(DELAY * 2)  # the delayed write has come and gone

    record = await stored(ledger, job_id)
    assert record.state == JobState.FAILED
    assert await states(backend, job_id) == ["queued", "failed"]
    ledger.forget_start(job_id)


async def test_a_try_whose_worker_died_before_its_start_was_written_leaves_the_next_its_own(
    backend: ArqJobQueue, settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README "Job lifecycle": a worker killed within the delay leaves no trace of that try's
    start, and the try that runs the job again writes its own; the dead try's start, had it been
    sent before a stall and arrived late, would not overwrite the later try's."""
    job_id = await queued(backend, settings)
    dead = worker_ledger(redis, settings)
    await dead.started(job_id, "word_count", settings.queue_name, 1)
    dead.forget_start(job_id)  # (its process is gone: its timer with it)
    assert (await stored(dead, job_id)).state == JobState.QUEUED

    other = worker_ledger(redis, settings)  # another worker, the second try
    await other.started(job_id, "word_count", settings.queue_name, 2)
    await asyncio.sleep(DELAY * 1.5)
    event = {"kind": "state", "state": "in_progress", "at": "2000-01-01T00:00:00+00:00"}
    start = Change({"state": "in_progress", "tries": "1"}, event)
    await dead._write_script(*dead.change(job_id, {}, before=start))  # try 1's, arriving late
    await other.finished(job_id, JobState.SUCCEEDED, result=None)

    record = await stored(other, job_id)
    assert (record.state, record.tries) == (JobState.SUCCEEDED, 2)
    assert await states(backend, job_id) == ["queued", "in_progress", "succeeded"]


async def test_a_start_redis_failed_is_written_later_by_itself(
    backend: ArqJobQueue, settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long job that reports nothing: its start, lost to a short outage, is tried again."""
    job_id = await queued(backend, settings)
    ledger = worker_ledger(redis, settings)
    write = ledger._write_script
    refusals = [1]

    async def once_refused(*args: Any, **kwargs: Any) -> Any:
        if refusals:
            refusals.pop()
            raise RedisConnectionError("Redis is away")
        return await write(*args, **kwargs)

    monkeypatch.setattr(ledger, "_write_script", once_refused)
    await ledger.started(job_id, "word_count", settings.queue_name, 1)
    await asyncio.sleep(DELAY * 5)  # refused at DELAY, written at 3 x DELAY

    record = await stored(ledger, job_id)
    assert (record.state, record.tries) == (JobState.IN_PROGRESS, 1)
    assert not refusals
    ledger.forget_start(job_id)


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


async def test_the_first_job_on_a_new_redis_is_recorded_with_arqs_result(
    settings: Settings, own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis that never ran the ledger's scripts (new, restarted, failed over): the worker
    loads them at its start, so the first job's record ends in the transaction that stores
    arq's result, not in a write of its own after it (on NOSCRIPT inside the transaction)."""
    alone: list[RecordWrite] = []
    send = RecordWrite.send

    async def sent_alone(write: RecordWrite) -> Any:
        alone.append(write)
        return await send(write)

    monkeypatch.setattr(RecordWrite, "send", sent_alone)
    mine = settings.model_copy(update={"redis_url": RedisDsn(own_redis.url)})
    options = {**worker_options(mine, "default"), "cron_jobs": []}
    async with ArqJobQueue.connect(mine) as backend, Redis.from_url(own_redis.url) as redis:
        await redis.script_flush()  # (the test's own server)
        job_id = await queued(backend, mine)
        worker = WakingWorker(**{**options, "burst": True, "handle_signals": False})
        try:
            await worker.main()
        finally:
            await worker.close()
        assert alone == []
        record = await stored(ledger_for(redis, mine), job_id)
        assert (record.state, record.tries) == (JobState.SUCCEEDED, 1)


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
