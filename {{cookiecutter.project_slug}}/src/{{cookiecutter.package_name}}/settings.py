"""Settings shared by the web app and the worker: one class, read from the environment and `.env`.

Both processes must agree on the Redis URL and the queue name, so both read them from here.
"""

from functools import lru_cache
from typing import Literal, Self

from pydantic import Field, RedisDsn, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

QueueKey = Literal["default", "bulk"]
"""`default` for short jobs; `bulk` for long ones, on workers of their own (see worker.settings)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    app_name: str = "{{ cookiecutter.project_slug }}"
    redis_url: RedisDsn = Field(
        default=RedisDsn("redis://localhost:6379/0"),
        description="Redis for the queue: redis:// or rediss:// (TLS), credentials allowed.",
    )
    queue_name: str = Field(
        default="{{ cookiecutter.project_slug }}:queue",
        min_length=1,
        max_length=200,
        description="The queue the web enqueues to and the worker reads.",
    )

    bulk_queue_name: str = Field(
        default="{{ cookiecutter.project_slug }}:bulk",
        min_length=1,
        max_length=200,
        description="The queue of long tasks, served by workers of their own.",
    )
    job_retention: int = Field(
        default=7 * 86_400,
        ge=60,
        description="Seconds a job's record and events stay readable after its last change.",
    )
    idempotency_window: int = Field(
        default=86_400, ge=1, description="Seconds an Idempotency-Key returns the same job."
    )
    stream_ping_interval: float = Field(
        default=15, gt=0, le=300, description="Seconds between keep-alive pings of event streams."
    )

    # Worker tuning. arq's own defaults (10 jobs, 0.5 s poll) cap I/O-bound jobs near 20 jobs/s per
    # worker: a worker refills its free slots only once per poll. 50 slots polled every 50 ms keep
    # slots busy (about 2,000 jobs/s of 10 ms jobs) for about 20 Redis commands/s when idle.
    worker_max_jobs: int = Field(
        default=50, ge=1, le=10_000, description="Jobs one worker runs at once."
    )
    worker_poll_delay: float = Field(
        default=0.05, gt=0, le=60, description="Seconds between queue polls of an idle worker."
    )
    # A crashed worker's job runs again only after the longest task timeout + 10 s: keep it short
    # and give long tasks their own timeout.
    job_timeout: float = Field(
        default=30, gt=0, le=86_400, description="Default task timeout, seconds."
    )
    # Every start counts as a try, a re-queue at shutdown too: with 1 try a deploy fails running
    # jobs for good.
    job_max_tries: int = Field(default=3, ge=1, le=100, description="Starts allowed per job.")
    job_keep_result: int = Field(
        default=3600, ge=0, description="Seconds a result stays readable (and its id stays taken)."
    )
    job_completion_wait: int = Field(
        default=20,
        ge=0,
        le=3600,
        description="Seconds a stopping worker lets running jobs finish before it re-queues them.",
    )
    worker_heartbeat_interval: float = Field(
        default=10, gt=0, le=300, description="Seconds between a worker's liveness writes."
    )
    worker_id: str | None = Field(
        default=None,
        max_length=200,
        description="Name of this worker in its liveness key; the host name when unset.",
    )

    bulk_worker_max_jobs: int = Field(
        default=4, ge=1, le=10_000, description="Long jobs one bulk worker runs at once."
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _replays_find_their_job(self) -> Self:
        # A replayed Idempotency-Key points to its earlier job: that job's record must still exist.
        if self.idempotency_window > self.job_retention:
            raise ValueError(
                f"IDEMPOTENCY_WINDOW ({self.idempotency_window} s) must not exceed "
                f"JOB_RETENTION ({self.job_retention} s)"
            )
        return self

    def queue_for(self, key: QueueKey) -> str:
        """The queue name of a task's queue key (`default` or `bulk`)."""
        return self.bulk_queue_name if key == "bulk" else self.queue_name


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
