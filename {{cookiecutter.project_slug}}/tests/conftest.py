"""Fixtures for both tiers. tests/unit needs nothing running; tests/integration needs real Redis."""

import pytest

from {{ cookiecutter.package_name }}.settings import Settings


@pytest.fixture
def settings() -> Settings:
    # Explicit values, so a developer's .env or environment cannot change what the tests see.
    return Settings(
        _env_file=None,
        redis_url="redis://127.0.0.1:1/0",
        queue_name="tests:queue",
        bulk_queue_name="tests:bulk",
    )
