"""The job lifecycle against real Redis and real workers: progress, cancel (queued, running,
finished, unknown), idempotency, records that outlive arq's results, and SSE from any replica."""

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from arq.jobs import serialize_result
from redis.asyncio import Redis

from {{ cookiecutter.package_name }}.queue.serializer import serialize
from {{ cookiecutter.package_name }}.settings import Settings

from ..auth import AUTH
from .conftest import RunWorker, StartWorkers, web_client


def report(pages: int, seconds: float = 0.05) -> dict[str, Any]:
    return {"task": "render_report", "args": {"pages": pages, "seconds_per_page": seconds}}


async def wait_for_state(
    client: httpx.AsyncClient, location: str, states: set[str], within: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        job: dict[str, Any] = (await client.get(location)).json()
        if job["state"] in states or time.monotonic() > deadline:
            assert job["state"] in states, job
            return job
        await asyncio.sleep(0.02)


async def test_a_long_job_goes_through_every_state_with_progress(
    client: httpx.AsyncClient, start_workers: StartWorkers
) -> None:
    location = (await client.post("/jobs", json=report(pages=5))).headers["location"]
    assert (await client.get(location)).json()["state"] == "queued"

    await start_workers()
    running = await wait_for_state(client, location, {"in_progress"})
    done = await wait_for_state(client, location, {"succeeded"})

    assert running["tries"] == 1
    assert done["result"] == {"pages": 5}
    assert done["progress"] == {"percent": 100.0, "message": "page 5 of 5"}
    events = (await client.get(f"{location}/events")).json()
    states = [e["state"] for e in events if e["kind"] == "state"]
    assert states == ["queued", "in_progress", "succeeded"]
    assert len([e for e in events if e["kind"] == "progress"]) == 5


async def test_a_cancelled_queued_job_never_runs(
    client: httpx.AsyncClient, run_worker: RunWorker
) -> None:
    location = (
        await client.post("/jobs", json={"task": "word_count", "args": {"text": "x"}})
    ).headers["location"]

    response = await client.post(f"{location}/cancel")
    worker = await run_worker()

    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"
    assert worker.jobs_complete == worker.jobs_failed == 0
    assert (await client.get(location)).json()["state"] == "cancelled"


async def test_a_running_job_is_cancelled(
    client: httpx.AsyncClient, start_workers: StartWorkers
) -> None:
    await start_workers()
    location = (await client.post("/jobs", json=report(pages=200, seconds=0.05))).headers[
        "location"
    ]
    await wait_for_state(client, location, {"in_progress"})
    while not (await client.get(location)).json()["progress"]:  # noqa: ASYNC110 - polling the API
        await asyncio.sleep(0.02)

    response = await client.post(f"{location}/cancel")
    job = await wait_for_state(client, location, {"cancelled"})

    assert response.status_code == 202
    assert response.json()["cancel_requested"] is True
    assert job["progress"]["percent"] < 100
    assert (await client.post(f"{location}/cancel")).status_code == 409


async def test_a_deferred_job_waits_for_its_time_then_runs(
    client: httpx.AsyncClient, start_workers: StartWorkers
) -> None:
    await start_workers()
    body = {"task": "word_count", "args": {"text": "later"}, "defer_seconds": 1}
    location = (await client.post("/jobs", json=body)).headers["location"]

    assert (await client.get(location)).json()["state"] == "deferred"
    job = await wait_for_state(client, location, {"succeeded"})
    assert job["started_at"] >= job["enqueued_at"]
    states = [e["state"] for e in (await client.get(f"{location}/events")).json()]
    assert states == ["deferred", "in_progress", "succeeded"]


async def test_a_cancelled_deferred_job_never_runs(
    client: httpx.AsyncClient, start_workers: StartWorkers
) -> None:
    await start_workers()
    body = {"task": "word_count", "args": {"text": "never"}, "defer_seconds": 0.5}
    location = (await client.post("/jobs", json=body)).headers["location"]

    assert (await client.post(f"{location}/cancel")).status_code == 200
    await asyncio.sleep(1.0)  # past its time: a worker would have started it by now

    job = (await client.get(location)).json()
    assert (job["state"], job["tries"], job["started_at"]) == ("cancelled", 0, None)


async def test_cancelling_an_unknown_id_does_not_poison_a_later_job_with_that_id(
    client: httpx.AsyncClient, run_worker: RunWorker
) -> None:
    job_id = f"later-{uuid.uuid4().hex}"

    assert (await client.post(f"/jobs/{job_id}/cancel")).status_code == 404
    accepted = await client.post(
        "/jobs", json={"task": "word_count", "args": {"text": "a b"}, "job_id": job_id}
    )
    await run_worker()

    assert accepted.status_code == 202
    job = (await client.get(f"/jobs/{job_id}")).json()
    assert job["state"] == "succeeded"
    assert job["result"] == {"words": 2, "characters": 3}


async def test_idempotency_replays_the_job_and_refuses_another_body(
    client: httpx.AsyncClient,
) -> None:
    headers = {"Idempotency-Key": f"key-{uuid.uuid4().hex}"}
    body = {"task": "word_count", "args": {"text": "same"}}

    first = await client.post("/jobs", json=body, headers=headers)
    again = await client.post("/jobs", json=body, headers=headers)
    other = await client.post(
        "/jobs", json={"task": "word_count", "args": {"text": "different"}}, headers=headers
    )

    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 409)
    assert again.json()["id"] == first.json()["id"]


async def test_a_key_whose_job_is_gone_is_taken_by_the_next_request(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # A claim that outlived its job (as one claimed apart from writing its job could): the
    # key must not answer with a job that does not exist (a 404 for the whole window).
    headers = {"Idempotency-Key": f"key-{uuid.uuid4().hex}"}
    body = {"task": "word_count", "args": {"text": "again"}}
    first = (await client.post("/jobs", json=body, headers=headers)).json()["id"]
    async with Redis.from_url(str(settings.redis_url)) as redis:
        record = f"{settings.queue_name}:job:{first}"
        await redis.delete(record, f"{record}:events", f"arq:job:{first}")
        await redis.zrem(settings.queue_name, first)

    again = await client.post("/jobs", json=body, headers=headers)
    replayed = await client.post("/jobs", json=body, headers=headers)

    assert again.status_code == 202, again.text
    assert again.json()["id"] != first
    assert (await client.get(again.headers["location"])).status_code == 200
    assert (replayed.status_code, replayed.json()["id"]) == (200, again.json()["id"])


async def test_the_record_outlives_arqs_result(settings: Settings, run_worker: RunWorker) -> None:
    short = settings.model_copy(update={"job_keep_result": 1})
    async with web_client(short) as http:
        location = (
            await http.post("/jobs", json={"task": "word_count", "args": {"text": "kept"}})
        ).headers["location"]
        await run_worker()
        await http.get(location)
        await asyncio.sleep(1.5)  # arq's result (keep_result 1 s) is gone by now
        job = (await http.get(location)).json()

    assert job["state"] == "succeeded"
    assert job["result"] == {"words": 1, "characters": 4}


async def test_reading_a_job_writes_nothing(client: httpx.AsyncClient, settings: Settings) -> None:
    # arq holds an outcome the record lacks (as after arq's own timeout): the read reports it
    # and leaves the record to the worker.
    location = (await client.post("/jobs", json=report(pages=1))).headers["location"]
    job_id = location.rsplit("/", 1)[1]
    outcome = serialize_result(
        "render_report",
        (),
        {},
        1,
        0,
        False,
        RuntimeError("boom"),
        0,
        1,
        job_id,
        settings.queue_name,
        job_id=job_id,
        serializer=serialize,
    )
    async with Redis.from_url(str(settings.redis_url)) as redis:
        await redis.zrem(settings.bulk_queue_name, job_id)
        await redis.delete(f"arq:job:{job_id}")
        await redis.set(f"arq:result:{job_id}", outcome)
        before = await redis.hgetall(f"{settings.queue_name}:job:{job_id}")

        job = (await client.get(location)).json()

        after = await redis.hgetall(f"{settings.queue_name}:job:{job_id}")
    assert job["state"] == "failed"
    assert after == before


async def test_the_worker_records_a_job_aborted_before_its_start(
    client: httpx.AsyncClient, settings: Settings, run_worker: RunWorker
) -> None:
    # A cancel that met the job already claimed: arq ends it unstarted, never seen by the job
    # wrapper.
    location = (await client.post("/jobs", json=report(pages=1))).headers["location"]
    job_id = location.rsplit("/", 1)[1]
    async with Redis.from_url(str(settings.redis_url)) as redis:
        await redis.hset(f"{settings.queue_name}:job:{job_id}", "cancel_requested", "1")
        await redis.zadd("arq:abort", {job_id: int(time.time() * 1000)})
        await run_worker("bulk")

        state = await redis.hget(f"{settings.queue_name}:job:{job_id}", "state")
    assert state == b"cancelled"


async def test_two_web_replicas_serve_the_same_jobs_status_and_stream(
    serve: Callable[[], Awaitable[str]], start_workers: StartWorkers
) -> None:
    first, second = await serve(), await serve()
    async with httpx.AsyncClient(timeout=30, headers=AUTH) as http:
        location = (await http.post(f"{first}/jobs", json=report(pages=10))).headers["location"]
        await start_workers()

        events = []
        async with http.stream("GET", f"{second}{location}/stream") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            async for line in stream.aiter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line.removeprefix("data: ")))

        from_first = (await http.get(f"{first}{location}")).json()
        from_second = (await http.get(f"{second}{location}")).json()

    assert events[0]["state"] == "queued"
    assert events[-1]["state"] == "succeeded"  # the stream ended with the job
    assert [e["progress"]["percent"] for e in events if e["kind"] == "progress"][-1] == 100.0
    assert from_first == from_second
    assert from_first["state"] == "succeeded"


async def test_a_late_stream_client_gets_the_events_so_far(
    client: httpx.AsyncClient, run_worker: RunWorker
) -> None:
    location = (await client.post("/jobs", json=report(pages=3, seconds=0))).headers["location"]
    await run_worker("bulk")

    text = (await client.get(f"{location}/stream")).text

    assert text.count("event: progress") == 3
    assert text.rstrip().endswith('"state":"succeeded"}')
