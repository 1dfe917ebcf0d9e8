"""The HTTP API on the in-memory queue: status codes, headers and bodies clients rely on."""

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from {{ cookiecutter.package_name }}.queue.memory import InMemoryJobQueue
from {{ cookiecutter.package_name }}.settings import Settings

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
    client: httpx.AsyncClient, memory_queue: InMemoryJobQueue
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
    memory_queue: InMemoryJobQueue,
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
    ],
)
async def test_malformed_requests_are_422(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post(
        "/jobs", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 422


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


async def test_a_malformed_job_id_is_422(client: httpx.AsyncClient) -> None:
    assert (await client.get("/jobs/" + "x" * 300)).status_code == 422


async def test_enqueue_and_read_say_503_with_retry_after_when_the_queue_is_down(
    client: httpx.AsyncClient, memory_queue: InMemoryJobQueue
) -> None:
    memory_queue.available = False

    enqueue = await client.post("/jobs", json={"task": "word_count", "args": {"text": "x"}})
    read = await client.get("/jobs/any")

    for response in (enqueue, read):
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"


async def test_liveness_does_not_depend_on_the_queue(
    client: httpx.AsyncClient, memory_queue: InMemoryJobQueue
) -> None:
    memory_queue.available = False

    response = await client.get("/health/live")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_readiness_follows_the_queue(
    client: httpx.AsyncClient, memory_queue: InMemoryJobQueue
) -> None:
    assert (await client.get("/health/ready")).status_code == 200

    memory_queue.available = False
    down = await client.get("/health/ready")
    assert down.status_code == 503
    assert down.json()["status"] == "unavailable"

    memory_queue.available = True
    assert (await client.get("/health/ready")).status_code == 200


async def test_tasks_are_listed_with_their_argument_schemas(client: httpx.AsyncClient) -> None:
    tasks = {task["name"]: task for task in (await client.get("/tasks")).json()}

    assert set(tasks) == {"word_count", "check_url", "render_report"}
    assert tasks["render_report"]["queue"] == "bulk"
    assert tasks["word_count"]["args_schema"]["required"] == ["text"]


async def test_a_body_over_the_limit_is_413_and_nothing_is_queued(
    client: httpx.AsyncClient, memory_queue: InMemoryJobQueue, settings: Settings
) -> None:
    text = "x" * settings.max_request_bytes
    response = await client.post("/jobs", json={"task": "word_count", "args": {"text": text}})

    assert response.status_code == 413
    assert "too large" in response.json()["detail"]
    assert memory_queue.jobs == {}


async def test_a_chunked_body_over_the_limit_is_413(
    client: httpx.AsyncClient, memory_queue: InMemoryJobQueue, settings: Settings
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


@pytest.mark.parametrize("value", ["nonsense", "1-2-3", "-1", "9" * 30 + "-0"])
async def test_a_malformed_last_event_id_is_422(client: httpx.AsyncClient, value: str) -> None:
    location = (
        await client.post("/jobs", json={"task": "word_count", "args": {"text": "x"}})
    ).headers["location"]

    response = await client.get(f"{location}/stream", headers={"Last-Event-ID": value})

    assert response.status_code == 422


async def test_a_batch_is_queued_whole_in_order(
    client: httpx.AsyncClient, memory_queue: InMemoryJobQueue, run_jobs: RunJobs
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
    client: httpx.AsyncClient, memory_queue: InMemoryJobQueue, jobs: list[object], loc: list[object]
) -> None:
    response = await client.post("/jobs/batch", json={"jobs": jobs})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc
    assert memory_queue.jobs == {}
