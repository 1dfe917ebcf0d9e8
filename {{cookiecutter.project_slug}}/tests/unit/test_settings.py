"""Settings come from the environment; bad values stop the process with a clear error."""

import pytest
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.queue.arq import redis_settings
from {{ cookiecutter.package_name }}.settings import Settings


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6380/2")
    monkeypatch.setenv("QUEUE_NAME", "reports")
    monkeypatch.setenv("WORKER_MAX_JOBS", "7")

    settings = Settings(_env_file=None)

    assert str(settings.redis_url) == "redis://cache.internal:6380/2"
    assert settings.queue_name == "reports"
    assert settings.worker_max_jobs == 7


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REDIS_URL", "http://localhost:6379"),
        ("REDIS_URL", "not a url"),
        ("WORKER_MAX_JOBS", "0"),
        ("WORKER_POLL_DELAY", "-1"),
        ("JOB_MAX_TRIES", "zero"),
        ("QUEUE_NAME", ""),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(ValidationError, match=name.lower()):
        Settings(_env_file=None)


def test_redis_settings_decode_credentials_database_and_tls() -> None:
    settings = Settings(
        _env_file=None,
        redis_url="rediss://app:p%40ss%3Aword@redis.example:6390/3",
    )

    conf = redis_settings(settings)

    assert (conf.host, conf.port, conf.database) == ("redis.example", 6390, 3)
    assert (conf.username, conf.password) == ("app", "p@ss:word")
    assert conf.ssl is True
    assert conf.retry is not None
