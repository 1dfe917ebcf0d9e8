"""The interface between the web app and a job queue, and the records it returns."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class JobState(StrEnum):
    QUEUED = "queued"
    DEFERRED = "deferred"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class JobError:
    """Why a job failed: the exception's type and message, never its traceback."""

    type: str
    message: str


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: str
    task: str
    state: JobState
    tries: int
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: Any = None
    error: JobError | None = None


class QueueUnavailableError(Exception):
    """The queue's store (Redis) did not answer."""


class DuplicateJobError(Exception):
    """A job with this id is queued, running, or its result is still kept."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} already exists")
        self.job_id = job_id


class JobQueue(Protocol):
    async def enqueue(
        self, task: str, kwargs: Mapping[str, Any], *, job_id: str | None = None
    ) -> str:
        """Queue `task(**kwargs)` and return the job id.

        Raises DuplicateJobError when `job_id` is taken, QueueUnavailableError when the store is
        down.
        """
        ...

    async def get(self, job_id: str) -> JobRecord | None:
        """The job's current record, or None when the id is unknown (or its result expired)."""
        ...

    async def ping(self) -> None:
        """Return when the store answers; raise QueueUnavailableError otherwise."""
        ...
