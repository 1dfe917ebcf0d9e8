"""The worker's log keeps job arguments out, as arq formats its job start line."""

import logging

import httpx
import pytest

from {{ cookiecutter.package_name }}.worker.log_redaction import (
    JOB_START,
    HideJobArguments,
    HideUrlPaths,
    hide_job_arguments,
    hide_url_paths,
)


def test_the_job_start_line_keeps_the_job_and_drops_its_arguments(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("tests.arq.worker")
    hide_job_arguments(logger)
    hide_job_arguments(logger)  # installing twice filters once

    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info(JOB_START, 0.01, "job-1:word_count", "text='my secret'", " try=2")
        logger.info("%s something else with %s", "a line", "its arguments")

    assert caplog.messages == [
        "  0.01s → job-1:word_count(…) try=2",
        "a line something else with its arguments",
    ]
    assert len(logger.filters) == 1


@pytest.mark.parametrize(
    ("arguments", "shown"),
    [
        (
            "bearer_token='s3cret\\nline', url='https://example.test/'",
            "bearer_token='[redacted]', url='https://example.test/'",
        ),
        ("bearer_token=\"it's s3cret\", url='x'", "bearer_token='[redacted]', url='x'"),
        ("bearer_token='s3cret-cut-sh…", "bearer_token='[redacted]'"),  # arq cut the line short
        ("bearer_token=None, url='x'", "bearer_token='[redacted]', url='x'"),
    ],
)
def test_shown_arguments_still_hide_the_redacted_ones(
    caplog: pytest.LogCaptureFixture, arguments: str, shown: str
) -> None:
    logger = logging.getLogger("tests.arq.worker.shown")
    hide_job_arguments(logger, redacted_only=True)  # LOG_JOB_ARGUMENTS on

    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info(JOB_START, 0.01, "job-1:check_url", arguments, "")
        logger.info(JOB_START, 0.01, "job-2:word_count", "text='kept'", "")

    assert caplog.messages == [
        f"  0.01s → job-1:check_url({shown})",
        "  0.01s → job-2:word_count(text='kept')",
    ]
    assert "s3cret" not in caplog.text


def test_httpx_request_lines_lose_their_path_and_query(caplog: pytest.LogCaptureFixture) -> None:
    """A URL's path or query may carry a token (a webhook receiver's, a URL given to check_url)."""
    hide_url_paths()
    hide_url_paths()  # installed once however often the worker starts
    url = httpx.URL("https://hooks.example.com/T0KEN/in?token=s3cret&x=1")
    with caplog.at_level(logging.INFO, logger="httpx"):
        logging.getLogger("httpx").info(
            'HTTP Request: %s %s "%s %d %s"', "POST", url, "HTTP/1.1", 200, "OK"
        )
    assert "https://hooks.example.com/..." in caplog.text
    assert "s3cret" not in caplog.text
    assert "T0KEN" not in caplog.text
    assert len([f for f in logging.getLogger("httpx").filters if isinstance(f, HideUrlPaths)]) == 1


@pytest.mark.parametrize(
    ("arguments", "shown"),
    [
        # arq sorts the keywords: the meta comes first.
        (
            "_meta={'callback_url': 'https://h.example/T0KEN}', 'request_id': 'r1'}, text='hi'",
            "_meta=…, text='hi'",
        ),
        ("_meta={'callback_url': 'https://h.example/T0K…", "_meta=…"),  # cut short by arq
    ],
)
def test_shown_arguments_never_show_the_jobs_meta(arguments: str, shown: str) -> None:
    """LOG_JOB_ARGUMENTS shows a job's arguments, not its meta: it may hold a callback URL."""
    assert HideJobArguments(redacted_only=True).redact("abc:word_count", arguments) == shown
