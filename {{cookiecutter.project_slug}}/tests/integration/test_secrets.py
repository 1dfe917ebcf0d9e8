"""Hostile input and secrets against the real app, real Redis and a real worker process: hostile
bytes are a 422, and a bearer token that httpx refuses (and quotes) reaches none of the job's
record, events, dead letter, the worker's log, nor the result arq stores."""

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
from arq.constants import result_key_prefix
from arq.jobs import deserialize_result
from redis.asyncio import Redis

from {{ cookiecutter.package_name }}.queue.serializer import deserialize
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.tasks.registry import REDACTED

from ..auth import AUTH
from .conftest import SpawnWorker

TOKEN = "s3cret-part-one\nsecond-part-XYZ"  # noqa: S105 - a token to look for
LEAKS = [TOKEN, "s3cret-part-one", "second-part-XYZ", repr(TOKEN), repr(TOKEN.encode())]


def assert_no_secret(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text


@pytest.mark.parametrize(
    "body",
    [
        b'{"task": NaN}',
        b'{"task": "word_count", "args": {"text": "\\ud800"}}',
        b'{"task": "word_count", "args": {"text": "x"}, "defer_seconds": Infinity}',
        b'{"jobs": [{"task": "word_count", "args": {"\\udfff": 1}}]}',
    ],
)
async def test_hostile_bytes_are_422_from_the_real_app(
    serve: Callable[[], Awaitable[str]], body: bytes
) -> None:
    base = await serve()
    path = "/jobs/batch" if body.startswith(b'{"jobs"') else "/jobs"
    async with httpx.AsyncClient(base_url=base, headers=AUTH) as http:
        answer = await http.post(path, content=body, headers={"content-type": "application/json"})

    assert answer.status_code == 422
    assert answer.json()["detail"]


async def test_a_dead_letter_page_near_2_to_the_63_is_422_not_503(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.get("/dead-letters", params={"offset": 9223372036854775806})

    assert answer.status_code == 422


async def test_a_refused_bearer_token_leaves_the_worker_in_no_form(
    settings: Settings,
    client: httpx.AsyncClient,
    spawn_worker: SpawnWorker,
    serve: Callable[[], Awaitable[str]],
) -> None:
    target = await serve()  # something that listens: httpx connects, then refuses the header
    # One retry, then the dead letter; arguments in the log, but the redacted one.
    worker = spawn_worker(job_max_tries=2, log_job_arguments="true")
    args = {"url": f"{target}/health/live", "bearer_token": TOKEN}
    job_id = (await client.post("/jobs", json={"task": "check_url", "args": args})).json()["id"]

    deadline = time.monotonic() + 90
    while (job := (await client.get(f"/jobs/{job_id}")).json())["state"] != "failed":
        assert time.monotonic() < deadline, (job, worker.output())
        await asyncio.sleep(0.2)
    async with Redis.from_url(str(settings.redis_url)) as redis:
        for _ in range(50):  # arq writes its result just after our record
            stored = await redis.get(result_key_prefix + job_id)
            if stored:
                break
            await asyncio.sleep(0.1)
    events = await client.get(f"/jobs/{job_id}/events")
    letter = await client.get(f"/dead-letters/{job_id}")
    worker.stop()

    assert job["error"]["type"] == "LocalProtocolError"
    assert "[redacted]" in job["error"]["message"]
    assert letter.json()["args"] == {"url": args["url"], "bearer_token": "[redacted]"}
    # arq's line for the failure is there, with where the task failed, scrubbed.
    assert "failed, ScrubbedError: Illegal header value b'Bearer [redacted]'" in worker.output()
    assert "The task's own traceback, redacted" in worker.output()
    assert "bearer_token='[redacted]'" in worker.output()  # its job start lines
    assert stored
    assert_no_secret(str(job))
    assert_no_secret(events.text)
    assert_no_secret(letter.text)
    assert_no_secret(worker.output())
    # The result arq keeps (for JOB_KEEP_RESULT) holds the job's arguments, redacted, and the
    # scrubbed error: the token in no form, as bytes in any encoding msgpack may use.
    assert b"Bearer [redacted]" in stored
    result = deserialize_result(stored, deserializer=deserialize)
    assert result.kwargs["bearer_token"] == REDACTED
    assert result.kwargs["url"] == args["url"]
    for leak in (*LEAKS, "s3cret", "second-part"):
        assert leak.encode() not in stored
        assert leak not in repr(result.kwargs)
