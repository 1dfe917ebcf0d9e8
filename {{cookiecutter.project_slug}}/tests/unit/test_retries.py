"""Retry policy and dead letters through the worker's real job wrapper, on the in-memory queue."""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from arq.worker import Retry

from {{ cookiecutter.package_name }}.queue import DeadLetter, JobError
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.tasks import TASKS, RetryPolicy
from {{ cookiecutter.package_name }}.worker.job_wrapper import UnencodableResultError, job_function, max_tries

from .fake_queue import FakeQueue

RunJobs = Callable[[], Awaitable[int]]
CHECK = {"task": "check_url", "args": {"url": "http://example.test/"}}


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


async def test_a_transient_error_is_retried_then_the_job_succeeds(
    client: httpx.AsyncClient, run_jobs: RunJobs, http_handler: list[object]
) -> None:
    http_handler.append(refuse)
    location = (await client.post("/jobs", json=CHECK)).headers["location"]

    await run_jobs()
    waiting = (await client.get(location)).json()
    http_handler.append(lambda request: httpx.Response(204))
    await run_jobs()
    done = (await client.get(location)).json()

    assert waiting["state"] == "deferred"
    assert waiting["error"] == {"type": "ConnectError", "message": "connection refused"}
    assert (done["state"], done["tries"], done["error"]) == ("succeeded", 2, None)
    events = (await client.get(f"{location}/events")).json()
    retry = next(event for event in events if event["state"] == "deferred")
    assert retry["error"]["type"] == "ConnectError"
    assert retry["retry_in"] >= 2  # check_url backs off from 2 s


async def test_tries_used_up_end_in_a_dead_letter_that_replays_as_a_new_job(
    client: httpx.AsyncClient,
    run_jobs: RunJobs,
    http_handler: list[object],
    memory_queue: FakeQueue,
    settings: Settings,
) -> None:
    http_handler.append(refuse)
    job_id = (await client.post("/jobs", json=CHECK)).json()["id"]
    for _ in range(max_tries(TASKS["check_url"], settings)):
        await run_jobs()

    job = (await client.get(f"/jobs/{job_id}")).json()
    letters = (await client.get("/dead-letters")).json()
    http_handler.append(lambda request: httpx.Response(200))
    replay = await client.post(f"/dead-letters/{job_id}/replay")
    await run_jobs()

    assert (job["state"], job["tries"]) == ("failed", settings.job_max_tries)
    assert letters["total"] == 1
    [letter] = letters["letters"]
    assert letter["job_id"] == job_id
    assert letter["args"] == {"url": "http://example.test/", "bearer_token": None}  # validated
    assert letter["error"] == {"type": "ConnectError", "message": "connection refused"}
    assert letter["tries"] == settings.job_max_tries
    assert replay.status_code == 202
    new_id = replay.json()["id"]
    assert new_id != job_id
    assert replay.headers["location"] == f"/jobs/{new_id}"
    assert (await client.get(f"/jobs/{new_id}")).json()["state"] == "succeeded"
    assert (await client.get("/dead-letters")).json()["total"] == 0
    assert memory_queue.dead == {}


async def test_a_permanent_error_goes_to_the_dead_letters_at_once(
    client: httpx.AsyncClient, run_jobs: RunJobs, http_handler: list[object]
) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise ValueError("bad handler")

    http_handler.append(broken)
    job_id = (await client.post("/jobs", json=CHECK)).json()["id"]
    await run_jobs()

    letter = (await client.get(f"/dead-letters/{job_id}")).json()
    assert (letter["tries"], letter["error"]["type"]) == (1, "ValueError")


async def test_dead_letters_are_listed_newest_first_deleted_and_purged(
    client: httpx.AsyncClient, run_jobs: RunJobs, http_handler: list[object]
) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise ValueError("bad handler")

    http_handler.append(broken)
    ids = [(await client.post("/jobs", json=CHECK)).json()["id"] for _ in range(3)]
    await run_jobs()

    page = (await client.get("/dead-letters", params={"limit": 2})).json()
    rest = (await client.get("/dead-letters", params={"limit": 2, "offset": 2})).json()
    deleted = await client.delete(f"/dead-letters/{ids[0]}")
    again = await client.delete(f"/dead-letters/{ids[0]}")
    purged = (await client.delete("/dead-letters")).json()

    assert page["total"] == 3
    assert [letter["job_id"] for letter in page["letters"] + rest["letters"]] == ids[::-1]
    assert (deleted.status_code, again.status_code) == (204, 404)
    assert purged == {"purged": 2}
    assert (await client.get("/dead-letters")).json() == {"total": 0, "letters": []}


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        pytest.param("GET", "/dead-letters/nobody", {}, id="get-unknown"),
        pytest.param("POST", "/dead-letters/nobody/replay", {}, id="replay-unknown"),
        pytest.param("DELETE", "/dead-letters/nobody", {}, id="delete-unknown"),
        pytest.param("GET", "/dead-letters/bad id!", {}, id="malformed-id"),
        pytest.param("GET", "/dead-letters", {"limit": 0}, id="limit-zero"),
        pytest.param("GET", "/dead-letters", {"limit": 501}, id="limit-too-big"),
        pytest.param("GET", "/dead-letters", {"offset": -1}, id="negative-offset"),
    ],
)
async def test_bad_dead_letter_requests_are_4xx(
    client: httpx.AsyncClient, method: str, path: str, params: dict[str, Any]
) -> None:
    response = await client.request(method, path, params=params)

    assert response.status_code in (404, 422)
    assert response.json()["detail"]


async def test_a_letter_whose_task_changed_is_not_replayed_and_is_kept(
    client: httpx.AsyncClient, memory_queue: FakeQueue
) -> None:
    job_id = "from-an-older-release"
    # A letter whose arguments the task no longer accepts (it was renamed since).
    await memory_queue.add_dead_letter(
        DeadLetter(
            job_id=job_id,
            task="check_url",
            queue="tests:queue",
            kwargs={"address": "http://example.test/"},
            error=JobError("ConnectError", "refused"),
            tries=3,
            failed_at=datetime.now(tz=UTC),
        )
    )

    response = await client.post(f"/dead-letters/{job_id}/replay")

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["body", "args"]
    assert (await client.get(f"/dead-letters/{job_id}")).status_code == 200
    assert memory_queue.jobs == {}


def test_backoff_grows_with_each_try_within_its_jitter_and_cap() -> None:
    policy = RetryPolicy(on=(ConnectionError,), backoff=1, max_backoff=8)

    delays = [[policy.delay(job_try) for _ in range(50)] for job_try in range(1, 7)]

    for job_try, samples in enumerate(delays, start=1):
        base = min(8, 2 ** (job_try - 1))
        assert all(base <= delay <= base * 1.25 for delay in samples), (job_try, samples)
    assert max(delays[0]) < min(delays[1])
    assert max(delays[1]) < min(delays[2])
    assert len({round(delay, 6) for delay in delays[2]}) > 1  # jittered, not fixed


@pytest.mark.parametrize(
    ("error", "timed_out", "retried"),
    [
        pytest.param(ConnectionError("x"), False, True, id="listed-error"),
        pytest.param(ValueError("x"), False, False, id="other-error"),
        pytest.param(TimeoutError(), True, True, id="timeout"),
    ],
)
def test_the_policy_names_what_is_transient(
    error: Exception, timed_out: bool, retried: bool
) -> None:
    policy = RetryPolicy(on=(ConnectionError,), timeouts=True)

    assert policy.applies(error, timed_out=timed_out) is retried
    assert not RetryPolicy().applies(error, timed_out=timed_out)


async def test_a_job_whose_every_start_was_cut_off_fails_with_a_dead_letter(
    ctx: dict[str, Any], memory_queue: FakeQueue, settings: Settings
) -> None:
    """arq allows one start more than the task's tries; that start records the loss."""
    task = TASKS["word_count"]
    enqueued = await memory_queue.enqueue("word_count", {"text": "x"}, queue_name="tests:queue")
    job_ctx = {
        **ctx,
        "ledger": memory_queue,
        "job_id": enqueued.job_id,
        "job_try": max_tries(task, settings) + 1,
        "queue_name": "tests:queue",
    }

    with pytest.raises(Exception, match="never finished"):
        await job_function(task)(job_ctx, text="x")

    record = memory_queue.jobs[enqueued.job_id].record
    assert (record.state, record.error and record.error.type) == ("failed", "TriesExhaustedError")
    assert enqueued.job_id in memory_queue.dead


async def test_a_timeout_is_retried_when_the_policy_says_so(
    ctx: dict[str, Any], memory_queue: FakeQueue, settings: Settings
) -> None:
    async def slow(ctx: dict[str, Any], url: str) -> None:
        await asyncio.sleep(10)

    task = replace(TASKS["check_url"], function=slow, timeout=0.05)
    enqueued = await memory_queue.enqueue("check_url", {"url": "x"}, queue_name="tests:queue")
    job_ctx = {
        **ctx,
        "ledger": memory_queue,
        "job_id": enqueued.job_id,
        "job_try": 1,
        "queue_name": "tests:queue",
    }

    with pytest.raises(Retry):
        await job_function(task)(job_ctx, url="x")

    record = memory_queue.jobs[enqueued.job_id].record
    assert record.state == "deferred"
    assert record.error is not None
    assert (record.error.type, record.error.message) == ("TimeoutError", "timed out after 0.05 s")


@pytest.mark.parametrize(
    ("result", "where"),
    [
        ({"ratio": float("nan")}, "['ratio']"),
        ([1, float("inf")], "[1]"),
        ({"name": "\ud800"}, "['name']"),
        ({"count": 2**70}, "['count']"),
    ],
)
async def test_a_result_json_cannot_carry_fails_the_job_and_its_record_stays_readable(
    client: httpx.AsyncClient,
    ctx: dict[str, Any],
    memory_queue: FakeQueue,
    result: object,
    where: str,
) -> None:
    async def returns(ctx: dict[str, Any], text: str) -> object:
        return result

    task = replace(TASKS["word_count"], function=returns)
    enqueued = await memory_queue.enqueue("word_count", {"text": "x"}, queue_name="tests:queue")
    job_ctx = {
        **ctx,
        "ledger": memory_queue,
        "job_id": enqueued.job_id,
        "job_try": 1,
        "queue_name": "tests:queue",
    }

    with pytest.raises(UnencodableResultError):
        await job_function(task)(job_ctx, text="x")
    job = await client.get(f"/jobs/{enqueued.job_id}")

    assert job.status_code == 200
    assert job.json()["state"] == "failed"
    assert job.json()["result"] is None
    assert job.json()["error"]["type"] == "UnencodableResultError"
    assert f"(at result{where})" in job.json()["error"]["message"]
    assert enqueued.job_id in memory_queue.dead
