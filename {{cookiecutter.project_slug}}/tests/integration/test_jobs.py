"""Enqueue through the API, a real arq Worker runs the job, the API reads the outcome from Redis."""

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from arq.constants import in_progress_key_prefix
from pydantic import RedisDsn
from redis.asyncio import Redis

from {{ cookiecutter.package_name }}.dev import free_port
from {{ cookiecutter.package_name }}.queue import JobError, NewJob
from {{ cookiecutter.package_name }}.queue.arq_queue import ArqJobQueue, ledger_for
from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import RunWorker, web_client


async def test_a_job_enqueued_through_the_api_is_run_by_the_worker(
    client: httpx.AsyncClient, run_worker: RunWorker
) -> None:
    accepted = await client.post("/jobs", json={"task": "word_count", "args": {"text": "a b c d"}})
    assert accepted.status_code == 202
    location = accepted.headers["location"]

    queued = (await client.get(location)).json()
    assert queued["state"] == "queued"

    worker = await run_worker()
    assert (worker.jobs_complete, worker.jobs_failed) == (1, 0)

    done = (await client.get(location)).json()
    assert done["state"] == "succeeded"
    assert done["result"] == {"words": 4, "characters": 7}
    assert done["tries"] == 1
    assert done["enqueued_at"] <= done["started_at"] <= done["finished_at"]


async def test_a_failed_job_reads_as_failed_with_its_error(
    client: httpx.AsyncClient, run_worker: RunWorker
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/"
    location = (
        await client.post("/jobs", json={"task": "check_url", "args": {"url": closed}})
    ).headers["location"]

    worker = await run_worker()
    assert worker.jobs_failed == 1

    job = (await client.get(location)).json()
    assert job["state"] == "failed"
    assert job["error"]["type"] == "ConnectError"
    assert job["result"] is None


async def test_a_taken_job_id_is_409_while_the_result_is_kept(
    client: httpx.AsyncClient, run_worker: RunWorker
) -> None:
    # arq's job keys are not per queue: a unique id keeps runs on a shared Redis apart.
    request = {"task": "word_count", "args": {"text": "x"}, "job_id": f"nightly-{uuid.uuid4().hex}"}
    assert (await client.post("/jobs", json=request)).status_code == 202
    await run_worker()

    again = await client.post("/jobs", json=request)

    assert again.status_code == 409


async def test_unknown_jobs_are_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/jobs/never-enqueued")).status_code == 404


async def test_the_queue_is_the_configured_one(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await client.post("/jobs", json={"task": "word_count", "args": {"text": "x"}})

    async with Redis.from_url(str(settings.redis_url)) as redis:
        assert await redis.zcard(settings.queue_name) == 1


async def test_readiness_and_enqueue_say_503_while_redis_is_unreachable(
    settings: Settings,
) -> None:
    down = settings.model_copy(update={"redis_url": RedisDsn(f"redis://127.0.0.1:{free_port()}/0")})
    async with web_client(down) as http:  # starts without Redis, unlike arq's create_pool
        ready = await http.get("/health/ready")
        enqueue = await http.post("/jobs", json={"task": "word_count", "args": {"text": "x"}})
        live = await http.get("/health/live")

    assert ready.status_code == 503
    assert enqueue.status_code == 503
    assert enqueue.headers["retry-after"] == "5"
    assert live.status_code == 200


async def test_a_batch_lands_in_one_round_trip_and_every_job_runs(
    client: httpx.AsyncClient, run_worker: RunWorker, settings: Settings
) -> None:
    body = {
        "jobs": [{"task": "word_count", "args": {"text": "w " * n}} for n in range(1, 201)]
        + [{"task": "render_report", "args": {"pages": 1, "seconds_per_page": 0}}]
    }

    response = await client.post("/jobs/batch", json=body, headers={"X-Request-ID": "batch-1"})
    await run_worker()
    await run_worker("bulk")

    assert response.status_code == 202
    jobs = response.json()["jobs"]
    assert [job["queue"] for job in jobs] == [settings.queue_name] * 200 + [
        settings.bulk_queue_name
    ]
    records = [(await client.get(job["url"])).json() for job in jobs]
    assert {record["state"] for record in records} == {"succeeded"}
    assert [record["result"]["words"] for record in records[:200]] == list(range(1, 201))
    assert {record["request_id"] for record in records} == {"batch-1"}


async def test_a_durable_enqueue_no_replica_acknowledged_is_a_503_and_its_retry_the_same_job(
    settings: Settings,
) -> None:
    """DURABLE_ENQUEUE_REPLICAS: the test's Redis has no replica, so WAIT times out. The job may
    be on the master all the same: a retry with the same Idempotency-Key gets that job."""
    durable = settings.model_copy(
        update={"durable_enqueue_replicas": 1, "durable_enqueue_timeout": 0.2}
    )
    body = {"task": "word_count", "args": {"text": "kept twice?"}}
    key = {"Idempotency-Key": f"durable-{uuid.uuid4().hex}"}
    for_sure: list[httpx.Response] = []
    for each in (durable, settings):  # the second: the replica is back (here: not asked for)
        async with web_client(each) as client:
            for_sure.append(await client.post("/jobs", json=body, headers=key))
            for_sure.append(await client.post("/jobs/batch", json={"jobs": [body]}))

    refused, refused_batch, replayed, _batch = for_sure
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"]
    assert refused_batch.status_code == 503, refused_batch.text
    assert replayed.status_code == 200, replayed.text  # the job the refused request wrote
    assert replayed.headers["idempotent-replayed"] == "true"


async def test_a_batch_sent_again_writes_nothing_twice(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py sends a command again after a timeout, while the first may still run: the second
    execution of a batch finds the first one's jobs (their ids are new) and writes nothing."""
    ids = iter([uuid.uuid4() for _ in range(3)] * 2)
    jobs = [NewJob("word_count", {"text": f"job {n}"}, settings.queue_name) for n in range(3)]
    async with ArqJobQueue.connect(settings) as backend:
        monkeypatch.setattr(uuid, "uuid4", lambda: next(ids))  # the same new ids, twice
        first = await backend.enqueue_many(jobs, {"request_id": "first"})
        again = await backend.enqueue_many(jobs, {"request_id": "again"})
        redis = Redis.from_url(str(settings.redis_url))
        try:
            queued = await redis.zrange(settings.queue_name, 0, -1)
            ledger = ledger_for(redis, settings)
            events = [await redis.xlen(ledger.events_key(job_id)) for job_id in first]
        finally:
            await redis.aclose()
        records = [await backend.get(job_id) for job_id in first]
    assert again == first
    assert sorted(queued) == sorted(job_id.encode() for job_id in first)
    assert events == [1, 1, 1]
    assert {record.request_id for record in records if record} == {"first"}


async def test_concurrent_enqueues_share_round_trips_and_each_gets_its_own_answer(
    client: httpx.AsyncClient,
    settings: Settings,
    run_worker: RunWorker,
    group_sizes: list[int],
) -> None:
    """Calls of the enqueue script made in one turn of the event loop leave as one pipeline
    (queue/group_commit.py); each request still gets its own answer, errors included, and every
    202 is a job in Redis."""
    taken = f"taken-{uuid.uuid4().hex}"
    first = await client.post(
        "/jobs", json={"task": "word_count", "args": {"text": "first"}, "job_id": taken}
    )
    assert first.status_code == 202
    bodies: list[dict[str, Any]] = [
        {"task": "word_count", "args": {"text": f"job {i}"}} for i in range(100)
    ]
    bodies.insert(50, {"task": "word_count", "args": {"text": "again"}, "job_id": taken})

    answers = await asyncio.gather(*(client.post("/jobs", json=body) for body in bodies))

    codes = [answer.status_code for answer in answers]
    assert codes == [202] * 50 + [409] + [202] * 50
    assert len({answer.json()["id"] for answer in answers if answer.status_code == 202}) == 100
    assert max(group_sizes) > 1, "no two calls shared a round trip"
    assert sum(group_sizes) == 102
    async with Redis.from_url(str(settings.redis_url)) as redis:
        assert await redis.zcard(settings.queue_name) == 101
    worker = await run_worker()
    assert (worker.jobs_complete, worker.jobs_failed) == (101, 0)


async def test_a_job_claimed_for_its_next_try_reads_so_without_the_last_tries_progress(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    """Between a worker's claim and its record of the start, a read says what the claim means:
    in progress, on the next try, with no progress yet (not the cut-off try's)."""
    body = {"task": "word_count", "args": {"text": "again"}}
    job_id = (await client.post("/jobs", json=body)).json()["id"]
    async with Redis.from_url(str(settings.redis_url)) as redis:
        ledger = ledger_for(redis, settings)
        await ledger.started(job_id, "word_count", settings.queue_name, 1)
        await ledger.progress(job_id, 50, "half way")
        await ledger.requeued(job_id, JobError("WorkerStopped", "its worker stopped"))
        await redis.set(in_progress_key_prefix + job_id, b"a worker's claim")
        try:
            job = (await client.get(f"/jobs/{job_id}")).json()
        finally:
            await redis.delete(in_progress_key_prefix + job_id)

    assert (job["state"], job["tries"], job["progress"]) == ("in_progress", 2, None)
