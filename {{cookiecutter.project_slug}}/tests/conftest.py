"""Fixtures for both tiers. tests/unit needs nothing running; tests/integration needs real Redis."""

import os
{%- if cookiecutter.use_tracing %}
from collections.abc import Iterator
{%- endif %}

import pytest
{%- if cookiecutter.use_tracing %}
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
{%- endif %}
from pydantic import SecretStr

from {{ cookiecutter.package_name }}.dev import server_binary
from {{ cookiecutter.package_name }}.settings import Settings

from .auth import {% if cookiecutter.use_api_key %}TEST_API_KEY, {% endif %}TEST_OPERATOR_KEY


def pytest_report_header() -> str:
    """Which Redis the integration tier uses (see its redis_url fixture)."""
    url = os.environ.get("REDIS_URL")
    if url:
        return f"redis: REDIS_URL={url}"
    found = server_binary()
    return f"redis: {found[1]} at {found[0]}" if found else "redis: no server program found"


@pytest.fixture
def settings() -> Settings:
    # Explicit values, so a developer's .env or environment cannot change what the tests see.
    return Settings(
        _env_file=None,
        redis_url="redis://127.0.0.1:1/0",
        queue_name="tests:queue",
        bulk_queue_name="tests:bulk",
        bulk_redis_url=None,
        operator_key=SecretStr(TEST_OPERATOR_KEY),
{%- if cookiecutter.use_api_key %}
        api_key=SecretStr(TEST_API_KEY),
{%- endif %}
    )
{%- if cookiecutter.use_tracing %}


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    """Every span of this test process, kept in memory. OpenTelemetry takes one global provider
    per process, so both tiers share this one."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


@pytest.fixture
def spans(span_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    """The spans finished during one test."""
    span_exporter.clear()
    yield span_exporter
    span_exporter.clear()
{%- endif %}
