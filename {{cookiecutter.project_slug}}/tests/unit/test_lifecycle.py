"""Job lifecycle through the API on the in-memory queue: cancel, idempotency, events, stream."""

from collections.abc import Awaitable, Callable

import httpx
import pytest

from {{ cookiecutter.package_name }}.queue import JobCancelledError
from {{ cookiecutter.package_name }}.tasks import Context
from {{ cookiecutter.package_name }}.tasks.render_report import render_report

from .fake_queue import FakeQueue

RunJobs = Callable[[], Awaitable[int]]
REPORT = {"task": "render_report", "args": {"pages": 4, "seconds_per_page": 0}}


async def test_a_cancelled_queued_job_never_starts(
    client: httpx.AsyncClient, run_jobs: RunJobs
) -> None:
    location = (await client.post("/jobs", json=REPORT)).headers["location"]

    cancelled = await client.post(f"{location}/cancel")

    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"
    assert await run_jobs() == 0
    assert (await client.get(location)).json()["state"] == "cancelled"


async def test_cancelling_a_finished_job_is_409(
    client: httpx.AsyncClient, run_jobs: RunJobs
) -> None:
    location = (await client.post("/jobs", json=REPORT)).headers["location"]
    await run_jobs()

    response = await client.post(f"{location}/cancel")

    assert response.status_code == 409
    assert "succeeded" in response.json()["detail"]


async def test_cancelling_an_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.post("/jobs/nobody/cancel")).status_code == 404


async def test_a_long_task_reports_progress_as_events(
    client: httpx.AsyncClient, run_jobs: RunJobs
) -> None:
    location = (await client.post("/jobs", json=REPORT)).headers["location"]
    await run_jobs()

    job = (await client.get(location)).json()
    events = (await client.get(f"{location}/events")).json()

    assert job["state"] == "succeeded"
    assert job["queue"] == "tests:bulk"
    assert job["progress"] == {"percent": 100.0, "message": "page 4 of 4"}
    assert [e["state"] for e in events if e["kind"] == "state"] == [
        "queued",
        "in_progress",
        "succeeded",
    ]
    assert [e["progress"]["percent"] for e in events if e["kind"] == "progress"] == [
        25.0,
        50.0,
        75.0,
        100.0,
    ]


async def test_the_stream_sends_the_events_so_far_and_ends_with_the_job(
    client: httpx.AsyncClient, run_jobs: RunJobs
) -> None:
    location = (await client.post("/jobs", json=REPORT)).headers["location"]
    await run_jobs()

    response = await client.get(f"{location}/stream")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    blocks = [block for block in response.text.split("\n\n") if block]
    assert blocks[0].startswith("id: ")
    assert "event: state" in blocks[-1]
    assert '"state":"succeeded"' in blocks[-1]
    assert sum("event: progress" in block for block in blocks) == 4


async def test_events_and_stream_of_an_unknown_job_are_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/jobs/nobody/events")).status_code == 404
    assert (await client.get("/jobs/nobody/stream")).status_code == 404


async def test_the_same_idempotency_key_and_body_return_the_same_job(
    client: httpx.AsyncClient, memory_queue: FakeQueue
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = await client.post("/jobs", json=REPORT, headers=headers)
    again = await client.post("/jobs", json=REPORT, headers=headers)

    assert first.status_code == 202
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert len(memory_queue.jobs) == 1


async def test_a_replay_reports_where_the_earlier_job_is_now(
    client: httpx.AsyncClient, run_jobs: RunJobs
) -> None:
    headers = {"Idempotency-Key": "order-43"}
    await client.post("/jobs", json=REPORT, headers=headers)
    await run_jobs()

    again = await client.post("/jobs", json=REPORT, headers=headers)

    assert again.status_code == 200
    assert again.json()["state"] == "succeeded"


async def test_a_deferred_job_waits_and_can_be_cancelled(
    client: httpx.AsyncClient, run_jobs: RunJobs
) -> None:
    accepted = await client.post("/jobs", json={**REPORT, "defer_seconds": 60})
    location = accepted.headers["location"]

    assert accepted.status_code == 202
    assert accepted.json()["state"] == "deferred"
    assert await run_jobs() == 0
    assert (await client.get(location)).json()["state"] == "deferred"
    cancelled = await client.post(f"{location}/cancel")
    assert (cancelled.status_code, cancelled.json()["state"]) == (200, "cancelled")


@pytest.mark.parametrize(
    "defer", [0, -1, "soon", 7 * 86_400 + 1], ids=["zero", "negative", "text", "past-retention"]
)
async def test_a_bad_defer_is_422_and_nothing_is_queued(
    client: httpx.AsyncClient, memory_queue: FakeQueue, defer: object
) -> None:
    response = await client.post("/jobs", json={**REPORT, "defer_seconds": defer})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "defer_seconds"]
    assert memory_queue.jobs == {}


async def test_the_same_idempotency_key_with_another_body_is_409(
    client: httpx.AsyncClient, memory_queue: FakeQueue
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    await client.post("/jobs", json=REPORT, headers=headers)
    other = {"task": "render_report", "args": {"pages": 5}}

    response = await client.post("/jobs", json=other, headers=headers)

    assert response.status_code == 409
    assert "order-42" in response.json()["detail"]
    assert len(memory_queue.jobs) == 1


@pytest.mark.parametrize("key", ["", "has space", "x" * 201])
async def test_a_malformed_idempotency_key_is_422(client: httpx.AsyncClient, key: str) -> None:
    response = await client.post("/jobs", json=REPORT, headers={"Idempotency-Key": key})

    assert response.status_code == 422


async def test_render_report_stops_between_pages_when_asked(ctx: Context) -> None:
    reports: list[float] = []

    async def progress(percent: float, message: str = "") -> None:
        reports.append(percent)

    async def cancel_requested() -> bool:
        return len(reports) >= 2

    job_ctx: Context = {**ctx, "progress": progress, "cancel_requested": cancel_requested}
    with pytest.raises(JobCancelledError):
        await render_report(job_ctx, pages=10, seconds_per_page=0)

    assert reports == [10.0, 20.0]
