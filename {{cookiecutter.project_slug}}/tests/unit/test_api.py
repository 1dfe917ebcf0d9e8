"""The HTTP API on the in-memory queue: status codes, headers and bodies clients rely on."""

import re
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
import redis.exceptions

from {{ cookiecutter.package_name }}.queue import QueueUnavailableError
from {{ cookiecutter.package_name }}.queue.arq_queue import unavailable_as_queue_error
from {{ cookiecutter.package_name }}.settings import Settings

from .fake_queue import FakeQueue

RunJobs = Callable[[], Awaitable[int]]


async def test_enqueue_answers_202_with_the_job_location(client: httpx.AsyncClient) -> None:
    response = await client.post("/jobs", json={"task": "word_count", "args": {"text": "a b c"}})

    assert response.status_code == 202
    body = response.json()
    assert body["task"] == "word_count"
    assert body["state"] == "queued"
    assert body["queue"] == "tests:queue"
    assert response.headers["location"] == f"/jobs/{body['id']}" == body["url"]


async def test_a_job_goes_from_queued_to_succeeded_with_its_result(
    client: httpx.AsyncClient, run_jobs: RunJobs
) -> None:
    location = (
        await client.post("/jobs", json={"task": "word_count", "args": {"text": "one two three"}})
    ).headers["location"]

    queued = (await client.get(location)).json()
    assert queued["state"] == "queued"
    assert queued["tries"] == 0
    assert queued["result"] is None

    assert await run_jobs() == 1

    done = (await client.get(location)).json()
    assert done["state"] == "succeeded"
    assert done["tries"] == 1
    assert done["result"] == {"words": 3, "characters": 13}
    assert done["error"] is None
    assert done["enqueued_at"] <= done["started_at"] <= done["finished_at"]


async def test_a_failing_job_reports_the_error_without_a_traceback(
    client: httpx.AsyncClient, run_jobs: RunJobs, http_handler: list[object]
) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise ValueError("no scheme handler for this URL")  # not transient: no retry

    http_handler.append(broken)
    location = (
        await client.post(
            "/jobs", json={"task": "check_url", "args": {"url": "http://example.test/"}}
        )
    ).headers["location"]
    await run_jobs()

    job = (await client.get(location)).json()
    assert job["state"] == "failed"
    assert job["tries"] == 1
    assert job["error"] == {"type": "ValueError", "message": "no scheme handler for this URL"}
    assert "Traceback" not in str(job)


async def test_unknown_task_is_422_and_names_the_known_ones(
    client: httpx.AsyncClient, memory_queue: FakeQueue
) -> None:
    response = await client.post("/jobs", json={"task": "nope", "args": {}})

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "task"]
    assert "check_url" in error["msg"]
    assert "word_count" in error["msg"]
    assert memory_queue.jobs == {}


@pytest.mark.parametrize(
    ("args", "loc"),
    [
        pytest.param({}, ["body", "args", "text"], id="missing"),
        pytest.param({"text": ""}, ["body", "args", "text"], id="empty"),
        pytest.param({"text": 5}, ["body", "args", "text"], id="wrong-type"),
        pytest.param({"text": "x", "extra": 1}, ["body", "args", "extra"], id="unexpected"),
    ],
)
async def test_bad_arguments_are_422_at_enqueue_and_nothing_is_queued(
    client: httpx.AsyncClient,
    memory_queue: FakeQueue,
    args: dict[str, object],
    loc: list[str],
) -> None:
    response = await client.post("/jobs", json={"task": "word_count", "args": args})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc
    assert memory_queue.jobs == {}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{", id="malformed-json"),
        pytest.param(b"[]", id="not-an-object"),
        pytest.param(b'{"args": {}}', id="no-task"),
        pytest.param(
            b'{"task": "word_count", "args": {"text": "x"}, "job_id": "a b"}', id="bad-job-id"
        ),
        # A job's keys are its id between a prefix and `:events`: an id of `<other>:events`
        # would write its record onto the other job's events.
        pytest.param(
            b'{"task": "word_count", "args": {"text": "x"}, "job_id": "report:events"}',
            id="colon-in-job-id",
        ),
    ],
)
async def test_malformed_requests_are_422(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post(
        "/jobs", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 422


# What Python's json reads but no JSON answer can hold again (nor msgpack, for the big integer):
# once echoed in a validation error, or accepted into a job, it made a 500 and a closed connection.
HOSTILE = [
    pytest.param(b'{"task": NaN}', id="nan-task"),
    pytest.param(b'{"task": "word_count", "args": {"text": NaN}}', id="nan-argument"),
    pytest.param(b'{"task": "render_report", "args": {"pages": Infinity}}', id="infinity-argument"),
    pytest.param(b'{"task": "render_report", "args": {"pages": 1e400}}', id="overflowing-float"),
    pytest.param(
        b'{"task": "render_report", "args": {"pages": 99999999999999999999999}}',
        id="int-past-64-bits",
    ),
    pytest.param(
        b'{"task": "word_count", "args": {"text": "x"}, "defer_seconds": NaN}', id="nan-defer"
    ),
    pytest.param(
        b'{"task": "word_count", "args": {"text": "x"}, "defer_seconds": Infinity}',
        id="infinite-defer",
    ),
    pytest.param(
        b'{"task": "word_count", "args": {"text": "x"}, "defer_seconds": -Infinity}',
        id="minus-infinite-defer",
    ),
    pytest.param(b'{"task": "word_count", "args": {"text": "x"}, "job_id": NaN}', id="nan-job-id"),
    pytest.param(b'{"task": "\\ud800", "args": {}}', id="surrogate-task"),
    pytest.param(b'{"task": "word_count", "args": {"text": "\\ud800"}}', id="surrogate-argument"),
    pytest.param(
        b'{"task": "word_count", "args": {"text": "x", "\\udfff": 1}}', id="surrogate-argument-key"
    ),
    pytest.param(
        b'{"task": "word_count", "args": {"text": "x"}, "\\ud800": 1}', id="surrogate-key"
    ),
    pytest.param(
        b'{"task": "word_count", "args": {"text": "x"}, "job_id": "\\udc00"}', id="surrogate-job-id"
    ),
    pytest.param(
        b'{"task": "word_count", "args": {"text": "\xed\xa0\x80"}}', id="raw-surrogate-bytes"
    ),
    pytest.param(b'{"task": "word_count", "args": {"text": "\xff"}}', id="not-utf-8"),
    # Deep nesting: validation and error reports recurse (a 500 at about 1,000 levels).
    *(
        pytest.param(
            b'{"task": "word_count", "args": {"text": ' + b"[" * n + b"]" * n + b"}}",
            id=f"nested-{n}",
        )
        for n in (65, 1_000, 1_400, 5_000)
    ),
    pytest.param(
        b'{"task": "word_count", "args": {"text": "x"}, "job_id": '
        + b'{"a": ' * 1_200
        + b"1"
        + b"}" * 1_200
        + b"}",
        id="nested-objects",
    ),
]


@pytest.mark.parametrize("body", HOSTILE)
async def test_hostile_bytes_are_422_and_nothing_is_queued(
    client: httpx.AsyncClient, memory_queue: FakeQueue, body: bytes
) -> None:
    response = await client.post(
        "/jobs", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"]
    assert memory_queue.jobs == {}


@pytest.mark.parametrize("body", HOSTILE)
async def test_hostile_bytes_in_a_batch_are_422_and_nothing_is_queued(
    client: httpx.AsyncClient, memory_queue: FakeQueue, body: bytes
) -> None:
    batch = b'{"jobs": [{"task": "word_count", "args": {"text": "fine"}}, ' + body + b"]}"
    response = await client.post(
        "/jobs/batch", content=batch, headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert memory_queue.jobs == {}


async def test_valid_unicode_and_nan_as_text_are_accepted(
    client: httpx.AsyncClient, run_jobs: RunJobs
) -> None:
    body = '{"task": "word_count", "args": {"text": "NaN \\ud83d\\ude00 \\\\ud800"}}'
    response = await client.post(
        "/jobs", content=body.encode(), headers={"content-type": "application/json"}
    )
    await run_jobs()

    assert response.status_code == 202
    job = (await client.get(response.headers["location"])).json()
    assert job["result"] == {"words": 3, "characters": len("NaN \U0001f600 \\ud800")}


async def test_a_body_the_error_cannot_echo_is_still_a_422(client: httpx.AsyncClient) -> None:
    # No content type: FastAPI hands the raw bytes to validation, which echoes them as input.
    response = await client.post("/jobs", content=b"\xff\xfe")

    assert response.status_code == 422
    assert "input" not in response.json()["detail"][0]


async def test_every_json_body_is_parsed_strictly(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    operations = [
        (method, path)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    ]
    assert ("post", "/jobs") in operations

    for method, path in operations:
        response = await client.request(
            method,
            re.sub(r"{[^}]+}", "some-id", path),
            content=b'{"a": NaN, "b": "\\ud800"}',
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 422, (method, path)
        assert response.json()["detail"][0]["type"] == "json_invalid", (method, path)


async def test_a_taken_job_id_is_409(client: httpx.AsyncClient) -> None:
    request = {"task": "word_count", "args": {"text": "x"}, "job_id": "report-2024"}

    assert (await client.post("/jobs", json=request)).status_code == 202
    second = await client.post("/jobs", json=request)

    assert second.status_code == 409
    assert "report-2024" in second.json()["detail"]


async def test_an_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/jobs/does-not-exist")

    assert response.status_code == 404
    assert "does-not-exist" in response.json()["detail"]


async def test_ids_the_service_makes_with_a_colon_are_read(client: httpx.AsyncClient) -> None:
    # A cron run's id is `cron:<name>:<ts>`: clients may not choose a `:`, but they read such ids.
    response = await client.get("/jobs/cron:nightly:1700000000000")

    assert response.status_code == 404, response.text


async def test_a_malformed_job_id_is_422(client: httpx.AsyncClient) -> None:
    assert (await client.get("/jobs/" + "x" * 300)).status_code == 422


async def test_enqueue_and_read_say_503_with_retry_after_when_the_queue_is_down(
    client: httpx.AsyncClient, memory_queue: FakeQueue
) -> None:
    memory_queue.available = False

    enqueue = await client.post("/jobs", json={"task": "word_count", "args": {"text": "x"}})
    read = await client.get("/jobs/any")

    for response in (enqueue, read):
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.ConnectionError("Connection refused"),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"),
        redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
        redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
        redis.exceptions.ResponseError("MISCONF Redis is configured to save RDB snapshots"),
        ConnectionResetError(),
    ],
    ids=repr,
)
def test_redis_unable_to_serve_is_queue_unavailable(error: Exception) -> None:
    with pytest.raises(QueueUnavailableError), unavailable_as_queue_error():
        raise error


def test_a_redis_error_about_our_own_command_is_not_disguised_as_an_outage() -> None:
    # A bug (a bad range, a wrong type) must surface as one, not as "queue unavailable".
    with pytest.raises(redis.exceptions.ResponseError), unavailable_as_queue_error():
        raise redis.exceptions.ResponseError("ERR value is out of range")


async def test_liveness_does_not_depend_on_the_queue(
    client: httpx.AsyncClient, memory_queue: FakeQueue
) -> None:
    memory_queue.available = False

    response = await client.get("/health/live")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_readiness_follows_the_queue(
    client: httpx.AsyncClient, memory_queue: FakeQueue
) -> None:
    assert (await client.get("/health/ready")).status_code == 200

    memory_queue.available = False
    down = await client.get("/health/ready")
    assert down.status_code == 503
    assert down.headers["retry-after"] == "5"
    assert down.json()["status"] == "unavailable"
    # The store's own error text goes to the log, never to the caller of the probe.
    assert "switched off" not in down.text

    memory_queue.available = True
    assert (await client.get("/health/ready")).status_code == 200


async def test_tasks_are_listed_with_their_argument_schemas(client: httpx.AsyncClient) -> None:
    tasks = {task["name"]: task for task in (await client.get("/tasks")).json()}

    assert set(tasks) == {
        "word_count",
        "word_total",
        "check_url",
        "render_report",
{%- if cookiecutter.database == "postgres" %}
        "index_document",
{%- endif %}
    }
    assert tasks["render_report"]["queue"] == "bulk"
    assert tasks["word_count"]["args_schema"]["required"] == ["text"]


async def test_a_body_over_the_limit_is_413_and_nothing_is_queued(
    client: httpx.AsyncClient, memory_queue: FakeQueue, settings: Settings
) -> None:
    text = "x" * settings.max_request_bytes
    response = await client.post("/jobs", json={"task": "word_count", "args": {"text": text}})

    assert response.status_code == 413
    assert "too large" in response.json()["detail"]
    assert memory_queue.jobs == {}


async def test_a_chunked_body_over_the_limit_is_413(
    client: httpx.AsyncClient, memory_queue: FakeQueue, settings: Settings
) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"task": "word_count", "args": {"text": "'
        for _ in range(settings.max_request_bytes // 65_536 + 1):
            yield b"x" * 65_536
        yield b'"}}'

    response = await client.post(
        "/jobs", content=chunks(), headers={"content-type": "application/json"}
    )

    assert response.status_code == 413
    assert memory_queue.jobs == {}


@pytest.mark.parametrize(
    "value",
    [
        "nonsense",
        "1-2-3",
        "-1",
        "9" * 30 + "-0",
        # Past 64 bits (Redis's limit): it passed the pattern and ended the stream at once.
        "99999999999999999999-0",
        "0-18446744073709551616",
    ],
)
async def test_a_malformed_last_event_id_is_422(client: httpx.AsyncClient, value: str) -> None:
    location = (
        await client.post("/jobs", json={"task": "word_count", "args": {"text": "x"}})
    ).headers["location"]

    response = await client.get(f"{location}/stream", headers={"Last-Event-ID": value})

    assert response.status_code == 422


async def test_a_batch_is_queued_whole_in_order(
    client: httpx.AsyncClient, memory_queue: FakeQueue, run_jobs: RunJobs
) -> None:
    texts = ["one", "two words", "and three words"]
    body = {"jobs": [{"task": "word_count", "args": {"text": text}} for text in texts]}

    response = await client.post("/jobs/batch", json=body)
    await run_jobs()

    assert response.status_code == 202
    jobs = response.json()["jobs"]
    assert [job["task"] for job in jobs] == ["word_count"] * 3
    assert len({job["id"] for job in jobs}) == 3
    results = [(await client.get(job["url"])).json()["result"]["words"] for job in jobs]
    assert results == [1, 2, 3]


@pytest.mark.parametrize(
    ("jobs", "loc"),
    [
        pytest.param([], ["body", "jobs"], id="empty"),
        pytest.param(
            [{"task": "word_count", "args": {"text": "ok"}}, {"task": "nope", "args": {}}],
            ["body", "jobs", 1, "task"],
            id="unknown-task",
        ),
        pytest.param(
            [{"task": "word_count", "args": {"text": "ok"}}, {"task": "word_count", "args": {}}],
            ["body", "jobs", 1, "args", "text"],
            id="bad-args",
        ),
        pytest.param(
            [{"task": "word_count", "args": {"text": "x"}}] * 1001, ["body", "jobs"], id="too-many"
        ),
    ],
)
async def test_a_batch_with_any_bad_job_is_422_and_queues_none(
    client: httpx.AsyncClient, memory_queue: FakeQueue, jobs: list[object], loc: list[object]
) -> None:
    response = await client.post("/jobs/batch", json={"jobs": jobs})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc
    assert memory_queue.jobs == {}
