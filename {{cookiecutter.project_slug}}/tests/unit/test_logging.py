"""Structured logs: JSON lines off a terminal, with the context bound to the request or job."""

import io
import json
import logging
from datetime import UTC, datetime

import httpx
import pytest
import structlog

from {{ cookiecutter.package_name }}.logs import JsonLines, configure_logging


@pytest.fixture
def output() -> io.StringIO:
    """Where the service's log goes (not a terminal: JSON lines, as in a container)."""
    return io.StringIO()


def lines(output: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.getvalue().splitlines() if line.startswith("{")]


def test_library_and_own_lines_are_json_with_the_bound_context(output: io.StringIO) -> None:
    configure_logging("INFO", "auto", output)

    with structlog.contextvars.bound_contextvars(job_id="j-1", task="word_count"):
        logging.getLogger("arq.worker").info("%s started", "a job")
        structlog.get_logger("tests").info("own line", pages=3)
    logging.getLogger("tests").debug("below the level")

    first, second = lines(output)
    assert first["event"] == "a job started"
    assert (first["job_id"], first["task"], first["level"]) == ("j-1", "word_count", "info")
    assert first["logger"] == "arq.worker"
    assert second["event"] == "own line"
    assert (second["pages"], second["job_id"]) == (3, "j-1")
    assert "timestamp" in second


def test_the_lean_json_line_says_what_structlogs_full_chain_says(output: io.StringIO) -> None:
    """Plain logging calls (arq's lines, the tasks') skip structlog's chain for speed
    (logs.JsonLines); the line must not change for it."""
    configure_logging("INFO", "json", output)
    [handler] = [h for h in logging.getLogger().handlers if h.get_name() == "structlog"]
    lean = handler.formatter
    assert isinstance(lean, JsonLines)
    record = logging.LogRecord("arq.worker", logging.WARNING, __file__, 1, "%s → %s", None, None)
    record.args = ("0.01s", "job\ud800 «1»")  # a lone surrogate and non-ASCII text

    with structlog.contextvars.bound_contextvars(job_id="j-1", job_try=2, odd=object()):
        fast, full = json.loads(lean.format(record)), json.loads(lean.fallback.format(record))

    at, then = (datetime.fromisoformat(line.pop("timestamp")) for line in (fast, full))
    assert at.tzinfo == then.tzinfo == UTC
    assert abs((then - at).total_seconds()) < 1
    assert fast == full
    assert fast["event"] == "0.01s → job\ud800 «1»"
    assert (fast["level"], fast["logger"], fast["job_try"]) == ("warning", "arq.worker", 2)


@pytest.mark.parametrize(
    "created",
    [
        1_800_000_000.0,
        1_800_000_000.000001,
        1_800_000_000.5,
        1_800_000_000.999999,
        1_800_000_001.25,
    ],
)
def test_a_lines_time_is_its_records_to_the_microsecond(created: float) -> None:
    """The lean line's timestamp (built once a second, logs.JsonLines.timestamp), for times in
    one second and the next: ISO 8601 in UTC, six digits, the record's time within 1 us."""
    lean = JsonLines(logging.Formatter())
    lean.timestamp(1_800_000_000.75)  # a second already written

    text = lean.timestamp(created)

    assert text.endswith("Z")
    assert len(text.split(".")[1]) == 7
    at = datetime.fromisoformat(text)
    assert at.tzinfo == UTC
    assert abs(at.timestamp() - created) < 1.5e-6


def test_an_exception_is_one_json_line(output: io.StringIO) -> None:
    configure_logging("INFO", "json", output)

    try:
        raise ValueError("broken")
    except ValueError:
        logging.getLogger("tests").exception("it failed")

    [line] = lines(output)
    assert "ValueError: broken" in str(line["exception"])


def test_an_access_log_switched_off_stays_off(
    output: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    access = logging.getLogger("uvicorn.access")
    # What uvicorn's --no-access-log (the image's CMD) does before the app factory runs.
    monkeypatch.setattr(access, "handlers", [])
    monkeypatch.setattr(access, "propagate", False)
    # (Levels as they come: another test's uvicorn may have raised them.)
    monkeypatch.setattr(access, "level", logging.NOTSET)

    configure_logging("INFO", "json", output)
    access.warning('127.0.0.1 - "POST /jobs HTTP/1.1" 202')
    logging.getLogger("uvicorn.error").warning("Application startup complete.")

    assert [line["logger"] for line in lines(output)] == ["uvicorn.error"]


def test_console_format_is_readable_text(output: io.StringIO) -> None:
    configure_logging("INFO", "console", output)

    logging.getLogger("tests").info("hello %s", "there")

    assert "hello there" in output.getvalue()
    assert lines(output) == []


async def test_a_request_id_is_echoed_made_when_missing_and_stored_on_the_job(
    client: httpx.AsyncClient,
) -> None:
    body = {"task": "word_count", "args": {"text": "x"}}
    given = await client.post("/jobs", json=body, headers={"X-Request-ID": "gateway-42"})
    made = await client.post("/jobs", json=body)
    unusable = await client.post(
        "/jobs", json=body, headers={"X-Request-ID": "bad id; " + "x" * 80}
    )

    assert given.headers["x-request-id"] == "gateway-42"
    assert (await client.get(given.headers["location"])).json()["request_id"] == "gateway-42"
    assert len(made.headers["x-request-id"]) == 32
    assert unusable.headers["x-request-id"] != "bad id; " + "x" * 80
    assert (await client.get("/health/live")).headers["x-request-id"]
