"""Event streams that share one web process's Redis reader (queue/event_hub.py): a stream that
joins a running job late, and one that resumes with Last-Event-ID after the reader has moved on,
get exactly the events a stream open from the start got, and all of them end with the job; the
reader serves waiters behind it from a read of their own, and takes in a new job at once."""

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx

from {{ cookiecutter.package_name }}.queue import JobState
from {{ cookiecutter.package_name }}.queue.arq_queue import ArqJobQueue, ledger_for
from {{ cookiecutter.package_name }}.queue.event_hub import BLOCK_SECONDS
from {{ cookiecutter.package_name }}.settings import Settings

from ..auth import AUTH
from .conftest import StartWorkers

Event = tuple[str, dict[str, object]]  # (id, data)


async def stream(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> list[Event]:
    events: list[Event] = []
    event_id = ""
    async with http.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                event_id = line.removeprefix("id: ")
            elif line.startswith("data: "):
                events.append((event_id, json.loads(line.removeprefix("data: "))))
    return events


async def test_late_and_resuming_streams_get_the_events_an_early_one_got(
    serve: Callable[[], Awaitable[str]], start_workers: StartWorkers
) -> None:
    base = await serve()
    pages = 8
    body = {"task": "render_report", "args": {"pages": pages, "seconds_per_page": 0.3}}
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=AUTH) as http:
        location = (await http.post("/jobs", json=body)).headers["location"]
        early = asyncio.create_task(stream(http, f"{location}/stream", {}))
        await start_workers()
        while True:  # until the job is well under way, the shared reader passing events on
            so_far = (await http.get(f"{location}/events")).json()
            if sum(event["kind"] == "progress" for event in so_far) >= 3:
                break
            await asyncio.sleep(0.05)
        third = so_far[2]["id"]
        late, resumed = await asyncio.gather(
            stream(http, f"{location}/stream", {}),
            stream(http, f"{location}/stream", {"Last-Event-ID": third}),
        )
        from_start = await early

    assert from_start[-1][1]["state"] == "succeeded"
    assert sum(data["kind"] == "progress" for _, data in from_start) == pages
    assert late == from_start
    assert [event_id for event_id, _ in from_start][2] == third
    assert resumed == from_start[3:]


async def test_the_shared_reader_serves_waiters_behind_it_and_wakes_for_a_new_job(
    settings: Settings,
) -> None:
    async with ArqJobQueue.connect(settings) as backend:
        ledger = ledger_for(backend._redis, settings)
        job, other = uuid.uuid4().hex, uuid.uuid4().hex
        await ledger.created(job, "word_count", settings.queue_name)
        await ledger.created(other, "word_count", settings.queue_name)
        [created] = await backend.events(job)

        ahead = asyncio.create_task(backend.events(job, after=created.id, wait=10))
        await asyncio.sleep(0.2)  # the reader blocks on the job's events now
        await ledger.progress(job, 50)
        [progress] = await ahead

        # A waiter behind what the reader has passed on catches up at once, not at a new event.
        started = time.monotonic()
        behind = await backend.events(job, after=created.id, wait=10)
        assert [event.id for event in behind] == [progress.id]
        assert time.monotonic() - started < 5
        from_start = await backend.events(job, after="0-0", wait=10)
        assert [event.id for event in from_start] == [created.id, progress.id]
        assert await backend.events(job, after=progress.id, wait=0.3) == []  # nothing new

        # A job the blocked read does not cover yet: the reader is woken to add it.
        waiting = asyncio.create_task(backend.events(job, after=progress.id, wait=10))
        [other_created] = await backend.events(other)
        joined = asyncio.create_task(backend.events(other, after=other_created.id, wait=10))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await ledger.progress(other, 10)
        [other_progress] = await joined
        assert other_progress.progress is not None
        assert time.monotonic() - started < BLOCK_SECONDS - 1  # not after the blocked read ends
        await ledger.finished(job, JobState.SUCCEEDED)
        [finished] = await waiting
        assert finished.state is JobState.SUCCEEDED
