"""Where error reporting enters the code: web and worker report failures through here, and
nothing else knows whether the project reports errors (the template's use_sentry). Reporting,
these are error_reports.py's Sentry; not, stand-ins with the same interface that do nothing.
"""
{%- if cookiecutter.use_sentry %}

from .error_reports import configure_error_reports, job_scope, report_job_failure, tag_request

__all__ = ["configure_error_reports", "job_scope", "report_job_failure", "tag_request"]
{%- else %}

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .settings import QueueKey, Settings


def configure_error_reports(settings: Settings, service: str) -> Callable[[], None] | None:
    """Nowhere to report to: nothing to send at shutdown."""
    return None


@contextmanager
def job_scope(
    job_id: str,
    task: str,
    queue: QueueKey,
    request_id: str | None,
    secrets: Callable[[], tuple[str, ...]],
) -> Iterator[None]:
    yield


def report_job_failure(error: BaseException) -> None:
    """Logged and counted already (worker.job_wrapper): nothing more."""


def tag_request(request_id: str) -> None:
    pass
{%- endif %}
