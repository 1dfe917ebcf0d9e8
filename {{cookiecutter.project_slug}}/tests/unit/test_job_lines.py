"""A job's log lines (worker.end_line): held off the job's way to its result, written in order
with the job's fields once its end is stored, or by a thread of their own when the job runs long,
even one that blocks the event loop."""

import contextvars
import io
import json
import logging
import time
from collections.abc import Iterator

import pytest
import structlog

from {{ cookiecutter.package_name }}.logs import configure_logging
from {{ cookiecutter.package_name }}.worker import end_line
from {{ cookiecutter.package_name }}.worker.end_line import (
    AWAKE,
    HOLD_LIMIT,
    JOB_SUCCESS,
    PARK_AFTER,
    hold_end_lines,
    hold_job_lines,
    write_held,
)


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """The worker's own output (JSON lines), its job lines held as the worker holds them."""
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    hold_end_lines()
    yield stream
    configure_logging("INFO", "json")  # (back to stderr, without the holder)


def events(output: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.getvalue().splitlines()]


def a_job() -> None:
    """Log as a job does: arq's start, the task's line (in its context), arq's success."""
    arq = logging.getLogger("arq.worker")
    with structlog.contextvars.bound_contextvars(job_id="j-1", queue="q"):
        arq.info("%6.2fs → %s(%s)%s", 0.0, "j-1:word_count", "…", "")
        with structlog.contextvars.bound_contextvars(task="word_count"):
            logging.getLogger("tasks").info("counted %d words", 2)
        arq.info(JOB_SUCCESS, 0.0, "j-1:word_count", "")


def test_a_jobs_lines_wait_for_its_end_then_come_in_order_with_its_fields(
    output: io.StringIO,
) -> None:
    context = contextvars.copy_context()
    context.run(hold_job_lines)
    context.run(a_job)
    logging.getLogger("elsewhere").info("not a job's")

    before_end = events(output)
    context.run(write_held)  # (the end is stored)
    after = events(output)

    assert [line["event"] for line in before_end] == ["not a job's"]
    assert [line["event"] for line in after[1:]] == [
        "  0.00s → j-1:word_count(…)",
        "counted 2 words",
        "  0.00s ← j-1:word_count ● ",
    ]
    assert all(line["job_id"] == "j-1" for line in after[1:])  # (bound when logged)
    assert after[2]["task"] == "word_count"
    assert "task" not in after[1]


def test_a_job_stopped_before_its_end_leaves_its_lines_but_no_success_line(
    output: io.StringIO,
) -> None:
    context = contextvars.copy_context()
    context.run(hold_job_lines)
    context.run(a_job)

    context.run(write_held, False)  # (over, its end never written)
    logging.getLogger("arq.worker").info("after the job")

    assert [line["event"] for line in events(output)] == [
        "  0.00s → j-1:word_count(…)",
        "counted 2 words",
        "after the job",
    ]


def test_a_job_that_blocks_the_loop_has_its_start_line_written_meanwhile(
    output: io.StringIO,
) -> None:
    """A job still running after HOLD_LIMIT has its lines written by the thread, even while it
    holds the interpreter in a loop of its own (as a task that blocks the event loop does)."""
    context = contextvars.copy_context()
    context.run(hold_job_lines)
    start = logging.getLogger("arq.worker")
    context.run(start.info, "%6.2fs → %s(%s)%s", 0.0, "j-2:stuck", "…", "")
    logged = time.monotonic()

    seen = None
    while time.monotonic() - logged < 4 * HOLD_LIMIT:  # busy, never yielding (no sleep)
        if seen is None and output.getvalue():
            seen = time.monotonic() - logged

    assert seen is not None
    assert HOLD_LIMIT * 0.9 <= seen <= HOLD_LIMIT * 2 + 0.2
    assert [line["event"] for line in events(output)] == ["  0.00s → j-2:stuck(…)"]


def test_a_held_line_says_what_its_arguments_were_and_an_error_is_not_held(
    output: io.StringIO,
) -> None:
    """A held line is rendered when logged (its arguments may change before it is written); a
    line with an exception goes out at once, after the lines held before it."""
    context = contextvars.copy_context()
    context.run(hold_job_lines)
    pages = [1]
    log = logging.getLogger("tasks")
    context.run(log.info, "pages %s", pages)
    pages.append(2)

    def failing() -> None:
        try:
            raise ValueError("broken")
        except ValueError:
            log.exception("it failed")

    context.run(failing)

    assert [line["event"] for line in events(output)] == ["pages [1]", "it failed"]
    assert "ValueError: broken" in str(events(output)[1]["exception"])


def test_the_thread_sleeps_while_no_job_holds_lines_and_wakes_for_the_next(
    output: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle worker's thread parks (no timer wakes it: its CPU at idle) once it has found
    nothing held PARK_AFTER times; the next held line wakes it, and is written in time."""
    monkeypatch.setattr(end_line, "HOLD_LIMIT", 0.04)  # (read by the thread at each look)
    deadline = time.monotonic() + 0.5 + PARK_AFTER * 0.02 + 2  # (a look under way: 0.25 s)
    while AWAKE.is_set():
        assert time.monotonic() < deadline, "the thread never parked"
        time.sleep(0.01)
    time.sleep(0.2)  # parked, it writes nothing and finds nothing to write

    context = contextvars.copy_context()
    context.run(hold_job_lines)
    context.run(logging.getLogger("tasks").info, "still working")
    logged = time.monotonic()

    assert AWAKE.is_set()  # woken by the line
    while not output.getvalue():  # busy, never yielding: as a job blocking the loop
        assert time.monotonic() - logged < 2, "the woken thread never wrote the held line"
    assert [line["event"] for line in events(output)] == ["still working"]
