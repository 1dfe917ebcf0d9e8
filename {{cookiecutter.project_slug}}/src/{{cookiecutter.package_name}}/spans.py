"""Where tracing enters the code: web and worker take their spans from here, and nothing else
knows whether the project traces (the template's use_tracing). Traced, these are tracing.py's
OpenTelemetry spans; untraced, stand-ins with the same interface that do nothing, so the meta of
a job carries its request id alone.
"""
{%- if cookiecutter.use_tracing %}

from .tracing import caller_context, configure_tracing, enqueue_span, job_span

__all__ = ["caller_context", "configure_tracing", "enqueue_span", "job_span"]
{%- else %}

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, Protocol

from .settings import Settings


class Exporter(Protocol):
    def shutdown(self) -> None: ...


def configure_tracing(settings: Settings, service: str) -> Exporter | None:
    """Nothing to export: no exporter to shut down."""
    return None


def caller_context(headers: Mapping[str, str]) -> dict[str, str]:
    """No trace context is carried into jobs."""
    return {}


@contextmanager
def enqueue_span(task: str, queue_name: str, meta: MutableMapping[str, str]) -> Iterator[None]:
    yield


@contextmanager
def job_span(task: str, ctx: Mapping[str, Any], meta: Mapping[str, str]) -> Iterator[None]:
    yield
{%- endif %}
