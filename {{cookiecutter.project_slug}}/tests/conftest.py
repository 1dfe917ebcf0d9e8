"""Fixtures for both tiers. tests/unit needs nothing running; tests/integration needs real Redis."""

import pytest
{%- if cookiecutter.use_api_key %}
from pydantic import SecretStr
{%- endif %}

from {{ cookiecutter.package_name }}.settings import Settings
{%- if cookiecutter.use_api_key %}

from .auth import TEST_API_KEY
{%- endif %}


@pytest.fixture
def settings() -> Settings:
    # Explicit values, so a developer's .env or environment cannot change what the tests see.
    return Settings(
        _env_file=None,
        redis_url="redis://127.0.0.1:1/0",
        queue_name="tests:queue",
        bulk_queue_name="tests:bulk",
{%- if cookiecutter.use_api_key %}
        api_key=SecretStr(TEST_API_KEY),
{%- endif %}
    )
