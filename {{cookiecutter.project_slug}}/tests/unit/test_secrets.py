"""Redacted arguments never leave the worker, not even quoted inside an error message: not in the
job's record, its events, the API's dead letters, the dashboard, nor in what the worker hands arq
to store and log, nor in the job's span. The failure here is the one httpx really raises for a
bearer token with a newline: it refuses the header and quotes it whole."""

import traceback
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis.exceptions
{%- if cookiecutter.use_tracing %}
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
{%- endif %}
from pydantic import BaseModel, Field

from {{ cookiecutter.package_name }}.queue.serializer import serialize
from {{ cookiecutter.package_name }}.tasks import TASKS, Task, scrub, secrets_of
from {{ cookiecutter.package_name }}.worker.job_wrapper import ScrubbedError, job_function

{% if cookiecutter.use_dashboard -%}
from ..auth import TEST_OPERATOR_KEY
{% endif -%}
from .fake_queue import FakeQueue

RunJobs = Callable[[], Any]
TOKEN = "s3cret-part-one\nsecond-part-XYZ"  # noqa: S105 - a token to look for
# The token, its halves, and the ways messages quote it (str repr, bytes repr, JSON).
LEAKS = [TOKEN, "s3cret-part-one", "second-part-XYZ", repr(TOKEN), repr(TOKEN.encode())]


def refuse_header(request: httpx.Request) -> httpx.Response:
    """What httpx's HTTP/1.1 layer raises for a header value with a newline."""
    raise httpx.LocalProtocolError(f"Illegal header value {request.headers.raw[-1][1]!r}")


def assert_no_secret(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text


@pytest.fixture
async def failed_job(
    client: httpx.AsyncClient,
    run_jobs: RunJobs,
    http_handler: list[Callable[[httpx.Request], httpx.Response]],
) -> str:
    """A check_url job with a bearer token that failed every try (and was retried meanwhile)."""
    http_handler.append(refuse_header)
    args = {"url": "https://example.test/", "bearer_token": TOKEN}
    answer = await client.post("/jobs", json={"task": "check_url", "args": args})
    while await run_jobs():
        pass
    job_id: str = answer.json()["id"]
    assert (await client.get(f"/jobs/{job_id}")).json()["state"] == "failed"
    return job_id


async def test_the_record_and_events_say_why_without_the_secret(
    client: httpx.AsyncClient, failed_job: str
) -> None:
    job = (await client.get(f"/jobs/{failed_job}")).json()
    events = await client.get(f"/jobs/{failed_job}/events")

    assert job["error"] == {
        "type": "LocalProtocolError",
        "message": "Illegal header value b'Bearer [redacted]'",
    }
    assert [event["error"]["message"] for event in events.json() if event.get("error")] == [
        "Illegal header value b'Bearer [redacted]'"
    ] * 3  # two tries retried, the last failed
    assert_no_secret(str(job))
    assert_no_secret(events.text)


async def test_dead_letters_show_neither_the_argument_nor_the_error(
    client: httpx.AsyncClient, memory_queue: FakeQueue, failed_job: str
) -> None:
    listing = await client.get("/dead-letters")
    letter = await client.get(f"/dead-letters/{failed_job}")

    assert letter.json()["args"] == {"url": "https://example.test/", "bearer_token": "[redacted]"}
    assert "[redacted]" in letter.json()["error"]["message"]
    assert_no_secret(listing.text)
    assert_no_secret(letter.text)
    assert memory_queue.dead[failed_job].kwargs["bearer_token"] == TOKEN  # kept for the replay


async def test_a_replayed_dead_letter_keeps_the_secret_it_needs(
    client: httpx.AsyncClient, memory_queue: FakeQueue, failed_job: str
) -> None:
    replayed = await client.post(f"/dead-letters/{failed_job}/replay")

    assert replayed.status_code == 202
    assert memory_queue.jobs[replayed.json()["id"]].kwargs["bearer_token"] == TOKEN
{%- if cookiecutter.use_dashboard %}


async def test_the_dashboard_job_page_shows_neither(
    client: httpx.AsyncClient, failed_job: str
) -> None:
    login = await client.post(  # the operator's session, as a browser gets it
        "/dashboard/login",
        content=f"key={TEST_OPERATOR_KEY}",
        headers={"content-type": "application/x-www-form-urlencoded", "origin": "http://test"},
    )
    assert login.status_code == 303
    page = await client.get(f"/dashboard/jobs/{failed_job}")
    dead = await client.get("/dashboard/dead-letters")

    assert page.status_code == 200
    assert "[redacted]" in page.text
    assert_no_secret(page.text.replace("&#x27;", "'"))
    assert_no_secret(dead.text.replace("&#x27;", "'"))
{%- endif %}
{%- if cookiecutter.use_tracing %}


async def test_the_span_records_the_scrubbed_error(
    spans: InMemorySpanExporter, failed_job: str
) -> None:
    runs = [span for span in spans.get_finished_spans() if span.name == "run check_url"]

    assert len(runs) == 3
    for span in runs:
        assert_no_secret(str(span.to_json()))
{%- endif %}


async def test_what_arq_stores_and_logs_is_the_scrubbed_error(
    ctx: dict[str, Any],
    memory_queue: FakeQueue,
    http_handler: list[Callable[[httpx.Request], httpx.Response]],
) -> None:
    http_handler.append(refuse_header)
    kwargs = {"url": "https://example.test/", "bearer_token": TOKEN}
    job_id = (await memory_queue.enqueue("check_url", kwargs, queue_name="q")).job_id
    job_ctx = {**ctx, "ledger": memory_queue, "queue_name": "q", "job_id": job_id, "job_try": 3}

    with pytest.raises(ScrubbedError) as caught:
        await job_function(TASKS["check_url"])(job_ctx, **kwargs)

    error = caught.value
    assert error.type_name == "LocalProtocolError"
    assert "Traceback" in error.traceback  # where it failed, for whoever reads the result
    assert "LocalProtocolError: Illegal header value b'Bearer [redacted]'" in error.traceback
    assert error.__context__ is None  # the original, secret and all, is not chained
    logged = "".join(traceback.format_exception(error))  # as arq's log line and the span show it
    assert "LocalProtocolError: Illegal header value b'Bearer [redacted]'" in logged
    assert_no_secret(logged)
    assert error.__cause__ is None
    stored = serialize({"r": error}).decode("utf-8", "replace")  # as arq stores the result
    assert_no_secret(stored)
    assert_no_secret(str(error))


def chain(error: BaseException | None) -> list[BaseException]:
    """The exception and every cause and context behind it, shown or not."""
    seen: list[BaseException] = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


class Login(BaseModel):
    password: str = Field(json_schema_extra={"redact": True})


async def log_in(ctx: dict[str, Any], password: str) -> None:
    raise ValueError(f"the server refused {password!r}")


async def test_a_redis_outage_while_failing_the_job_chains_no_secret(
    ctx: dict[str, Any], memory_queue: FakeQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def redis_gone(*_args: object) -> None:
        raise redis.exceptions.ConnectionError("Connection refused")

    monkeypatch.setattr(memory_queue, "add_dead_letter", redis_gone)
    task = Task("log_in", log_in, Login, timeout=0.1)  # the record's writes give up soon after
    job_id = (await memory_queue.enqueue("log_in", {"password": TOKEN}, queue_name="q")).job_id
    job_ctx = {**ctx, "ledger": memory_queue, "queue_name": "q", "job_id": job_id, "job_try": 3}

    with pytest.raises(Exception) as caught:  # noqa: PT011 - whatever the worker makes of it
        await job_function(task)(job_ctx, password=TOKEN)

    for error in chain(caught.value):
        assert_no_secret(repr(error) + str(error))
        if isinstance(error, ScrubbedError):
            assert_no_secret(error.traceback)


def test_every_quoted_form_of_a_secret_is_scrubbed() -> None:
    secrets = secrets_of(TASKS["check_url"], {"url": "https://x.test/", "bearer_token": TOKEN})
    quoted = [TOKEN, repr(TOKEN), repr(TOKEN.encode()), '"s3cret-part-one\\nsecond-part-XYZ"']
    quoted.append("s3cret-part-one%0Asecond-part-XYZ")  # in a URL

    for text in quoted:
        assert_no_secret(scrub(f"before {text} after", secrets))
    assert secrets_of(TASKS["check_url"], {"url": "https://x.test/", "bearer_token": None}) == ()


@pytest.mark.parametrize(
    "quoting",
    [
        lambda secret: repr(b'Bearer "x" ' + secret.encode()),  # repr escapes the ' in it
        lambda secret: repr(f'say "{secret}"'),
        lambda secret: str({"password": secret}),
    ],
)
def test_a_secret_quoted_inside_a_longer_repr_is_scrubbed(quoting: Callable[[str], str]) -> None:
    secret = "it's\nsecret-XYZ-42"  # noqa: S105 - a secret to look for
    task = Task("log_in", log_in, Login)

    assert "secret-XYZ-42" not in scrub(quoting(secret), secrets_of(task, {"password": secret}))


async def read_a_file(ctx: dict[str, Any], password: str) -> None:
    # A file name that is not UTF-8 comes back from os.fsdecode with a lone surrogate.
    name = b"report-\xff.pdf".decode("utf-8", "surrogateescape")
    raise FileNotFoundError(f"no such file: {name}")


async def test_an_error_quoting_undecodable_bytes_is_recorded_and_shown(
    client: httpx.AsyncClient, ctx: dict[str, Any], memory_queue: FakeQueue
) -> None:
    task = Task("read_a_file", read_a_file, Login, max_tries=1)
    job_id = (await memory_queue.enqueue("read_a_file", {"password": "x"}, queue_name="q")).job_id
    job_ctx = {**ctx, "ledger": memory_queue, "queue_name": "q", "job_id": job_id, "job_try": 1}

    with pytest.raises(ScrubbedError):
        await job_function(task)(job_ctx, password="x")
    job = await client.get(f"/jobs/{job_id}")

    assert job.status_code == 200
    assert job.json()["error"]["message"] == "no such file: report-\\udcff.pdf"


@pytest.mark.parametrize("token", ["abc-\xe9-defgh", "\U00010000-secret", "abc-\u2028-rest"])
async def test_an_encoding_error_names_no_character_of_the_secret_nor_where(
    client: httpx.AsyncClient,
    ctx: dict[str, Any],
    memory_queue: FakeQueue,
    http_handler: list[Callable[[httpx.Request], httpx.Response]],
    token: str,
) -> None:
    http_handler.append(lambda request: httpx.Response(204))
    kwargs = {"url": "https://example.test/", "bearer_token": token}
    job_id = (await memory_queue.enqueue("check_url", kwargs, queue_name="q")).job_id
    job_ctx = {**ctx, "ledger": memory_queue, "queue_name": "q", "job_id": job_id, "job_try": 3}

    # httpx refuses a header that is not ASCII, naming the character and its position.
    with pytest.raises(ScrubbedError) as caught:
        await job_function(TASKS["check_url"])(job_ctx, **kwargs)
    job = (await client.get(f"/jobs/{job_id}")).json()

    odd = next(char for char in token if not char.isascii())
    message = job["error"]["message"]
    assert message.startswith("a redacted value could not be encoded as ascii: ")
    for shown in (message, caught.value.traceback, str(caught.value)):
        assert odd not in shown
        assert repr(odd)[1:-1] not in shown  # as escapes, too
        assert "position" not in shown
