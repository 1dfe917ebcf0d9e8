"""The worker's log keeps job arguments out, as arq formats its job start line."""

import logging

import pytest

from {{ cookiecutter.package_name }}.worker.logs import JOB_START, hide_job_arguments


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
