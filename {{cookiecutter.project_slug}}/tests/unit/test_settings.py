"""Settings come from the environment; bad values stop the process with a clear error."""

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.queue.arq_queue import redis_settings
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
        ("REDIS_SENTINELS", "sentinel-1"),
        ("REDIS_SENTINELS", "sentinel-1:26379,sentinel-2:port"),
        ("REDIS_SENTINELS", "sentinel-1:70000"),
        ("DURABLE_ENQUEUE_REPLICAS", "-1"),
        ("DURABLE_ENQUEUE_TIMEOUT", "10"),  # longer than the web's socket timeout
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


def test_env_example_names_every_setting_and_nothing_else() -> None:
    text = (Path(__file__).parents[2] / ".env.example").read_text(encoding="utf-8")
    # Set (NAME=value) or shown commented out (# NAME=), as a newcomer copies it to .env.
    named = set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))

    assert named == {name.upper() for name in Settings.model_fields}


def test_an_idempotency_window_longer_than_the_retention_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"IDEMPOTENCY_WINDOW \(90000 s\) must not exceed"):
        Settings(_env_file=None, idempotency_window=90_000, job_retention=3600)


def test_the_completion_wait_follows_the_stop_grace_period() -> None:
    assert Settings(_env_file=None).completion_wait == 20
    assert Settings(_env_file=None, stop_grace_period=120).completion_wait == 110
    assert Settings(_env_file=None, job_completion_wait=3).completion_wait == 3


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param({"job_max_tries": 1}, "JOB_MAX_TRIES must be at least 2", id="single-try"),
        pytest.param(
            {"stop_grace_period": 30, "job_completion_wait": 26},
            r"JOB_COMPLETION_WAIT \(26 s\) \+ 5 s must fit in STOP_GRACE_PERIOD \(30 s\)",
            id="wait-longer-than-grace",
        ),
    ],
)
def test_settings_that_would_lose_work_at_shutdown_are_refused(
    values: dict[str, int], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings.model_validate(values)


def test_a_refused_setting_is_named_without_showing_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "http://user:hunter2-secret@cache:6379")

    with pytest.raises(ValidationError, match="redis_url") as refused:
        Settings(_env_file=None)

    assert "hunter2-secret" not in str(refused.value)
