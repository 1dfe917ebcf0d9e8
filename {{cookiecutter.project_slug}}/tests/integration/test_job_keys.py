"""A job's keys are its id after a prefix (`<queue>:job:<id>`, a hash) and before a suffix
(`<queue>:job:<id>:events`, a stream): no id a client chooses may reach another job's keys, and a
key that holds something else (an id a plain arq client chose, data of an older version) is never
a 500: reads by such an id are a 404, the other jobs' streams go on, and a worker that meets one
fails that job at once instead of waiting for Redis until the job's timeout."""

import asyncio
import time
import uuid

import httpx
import pytest
from pydantic import RedisDsn
from redis.asyncio import Redis

from {{ cookiecutter.package_name }}.queue import JobNotFoundError
from {{ cookiecutter.package_name }}.queue.arq_queue import ArqJobQueue, ledger_for
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.worker.options import worker_options
from {{ cookiecutter.package_name }}.worker.process import WakingWorker

from .conftest import RedisServer, RunWorker


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A failing test on a worker that waits for Redis as for an outage waits this long, not 300 s.
    return settings.model_copy(update={"job_timeout": 6})


async def test_a_client_cannot_choose_an_id_that_names_another_jobs_events(
    client: httpx.AsyncClient,
) -> None:
    victim = f"victim-{uuid.uuid4().hex}"
    body = {"task": "word_count", "args": {"text": "x"}, "job_id": victim}
    assert (await client.post("/jobs", json=body)).status_code == 202

    taken = await client.post("/jobs", json={**body, "job_id": f"{victim}:events"})

    assert taken.status_code == 422, taken.text
    events = await client.get(f"/jobs/{victim}/events")
    assert events.status_code == 200, events.text
    assert [event["state"] for event in events.json()] == ["queued"]


async def test_an_id_naming_another_jobs_events_is_no_job(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    job = (await client.post("/jobs", json={"task": "word_count", "args": {"text": "x"}})).json()
    # `<id>:events` is a key of the job (its events, a stream), not a job: a read by it was a 500
    # (WRONGTYPE).
    alias = f"{job['id']}:events"

    for response in (
        await client.get(f"/jobs/{alias}"),
        await client.get(f"/jobs/{alias}/events"),
        await client.get(f"/jobs/{alias}/stream"),
        await client.post(f"/jobs/{alias}/cancel"),
    ):
        assert response.status_code == 404, (response.request.url, response.text)
    assert (await client.get(f"/jobs/{job['id']}")).json()["state"] == "queued"


async def test_a_key_of_another_type_ends_its_own_streams_only(settings: Settings) -> None:
    async with ArqJobQueue.connect(settings) as backend:
        ledger = ledger_for(backend._redis, settings)
        good, bad = uuid.uuid4().hex, uuid.uuid4().hex
        await ledger.created(good, "word_count", settings.queue_name)
        await ledger.created(bad, "word_count", settings.queue_name)
        [created] = await backend.events(good)
        # What a job with the id `<bad>:events` wrote before such ids were refused: its record
        # (a hash) where the events of `bad` were.
        async with Redis.from_url(str(settings.redis_url)) as redis:
            await redis.delete(ledger.events_key(bad))
            await redis.hset(ledger.events_key(bad), mapping={"task": "word_count"})

        assert await backend.events(bad) == []  # not a 500
        waiting = asyncio.create_task(backend.events(good, after=created.id, wait=10))
        await asyncio.sleep(0.2)  # the shared reader blocks on the good job's events
        with pytest.raises(JobNotFoundError):
            await backend.events(bad, after="0-0", wait=10)  # its read is refused: WRONGTYPE
        await asyncio.sleep(0.2)
        assert not waiting.done()  # the good job's stream was not ended with it
        await ledger.progress(good, 50)
        [progress] = await waiting

    assert progress.progress is not None
    assert progress.progress.percent == 50


async def test_a_job_whose_record_is_another_type_runs_once_and_the_worker_goes_on(
    client: httpx.AsyncClient,
    settings: Settings,
    run_worker: RunWorker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its start goes with its end (ledger.START_WRITE_DELAY), so the keys are met at the end,
    inside arq's end-of-job transaction: left alone and logged, not an error that ends the
    worker or runs the job again."""
    job_id = f"clobbered-{uuid.uuid4().hex}"
    body = {"task": "word_count", "args": {"text": "a b"}, "job_id": job_id}
    assert (await client.post("/jobs", json=body)).status_code == 202
    other = (await client.post("/jobs", json={"task": "word_count", "args": {"text": "c"}})).json()
    async with Redis.from_url(str(settings.redis_url)) as redis:
        record = ledger_for(redis, settings).key(job_id)
        await redis.delete(record)
        await redis.xadd(record, {"kind": "not a record"})
    started = time.monotonic()

    worker = await run_worker()

    # A bug (WRONGTYPE), not an outage: no waiting until the job's timeout, no try again.
    assert time.monotonic() - started < settings.job_timeout / 2
    assert (worker.jobs_complete, worker.jobs_failed, worker.jobs_retried) == (2, 0, 0)
    assert "its record's keys hold another type: not recorded" in caplog.text
    async with Redis.from_url(str(settings.redis_url)) as redis:
        assert await redis.type(record) == b"stream"  # left as it was
    assert (await client.get(f"/jobs/{other['id']}")).json()["state"] == "succeeded"


async def test_a_finished_job_keeps_about_a_kilobyte_and_a_half(
    settings: Settings, own_redis: RedisServer
) -> None:
    """README "Capacity": with dev.REDIS_OPTIONS (compose's too), a finished job's record, its
    events and its entry in the listing take about 1.5 KB for JOB_RETENTION (a stream node of
    the default 4 KB made it 5.4 KB)."""
    mine = settings.model_copy(update={"redis_url": RedisDsn(own_redis.url)})
    async with ArqJobQueue.connect(mine) as backend:
        jobs = [
            await backend.enqueue("word_count", {"text": "kept"}, queue_name=mine.queue_name)
            for _ in range(20)
        ]
    ids = [job.job_id for job in jobs]
    options = {**worker_options(mine, "default"), "cron_jobs": []}
    worker = WakingWorker(**{**options, "burst": True, "handle_signals": False})
    await worker.main()
    await worker.close()
    async with Redis.from_url(own_redis.url) as redis:
        ledger = ledger_for(redis, mine)
        records = [await redis.memory_usage(ledger.key(job_id)) or 0 for job_id in ids]
        events = [await redis.memory_usage(ledger.events_key(job_id)) or 0 for job_id in ids]
        index = (await redis.memory_usage(ledger.index) or 0) / await redis.zcard(ledger.index)
        states = [(await redis.hget(ledger.key(job_id), "state")) for job_id in ids]
    assert states == [b"succeeded"] * len(ids)
    kept = (sum(records) + sum(events)) / len(ids) + index
    print(f"\nkept per finished job: {kept:.0f} bytes (events {max(events)})")
    assert max(events) < 1300
    assert kept < 2000
