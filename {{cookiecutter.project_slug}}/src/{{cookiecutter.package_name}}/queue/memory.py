"""An in-memory JobQueue: a fake for the fast test tier, never for running the service.

It keeps jobs in a dict and runs them only when a test calls `run_pending`, so tests decide exactly
when "the worker" acts. It has no persistence, no concurrency and no retries.
"""

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from .base import DuplicateJobError, JobError, JobRecord, JobState, QueueUnavailableError

TaskFunction = Callable[..., Awaitable[Any]]


class InMemoryJobQueue:
    def __init__(self) -> None:
        self.jobs: dict[str, JobRecord] = {}
        self.kwargs: dict[str, dict[str, Any]] = {}
        self.available = True

    def _check(self) -> None:
        if not self.available:
            raise QueueUnavailableError("the in-memory queue is switched off")

    async def enqueue(
        self, task: str, kwargs: Mapping[str, Any], *, job_id: str | None = None
    ) -> str:
        self._check()
        job_id = job_id or uuid.uuid4().hex
        if job_id in self.jobs:
            raise DuplicateJobError(job_id)
        self.jobs[job_id] = JobRecord(
            id=job_id, task=task, state=JobState.QUEUED, tries=0, enqueued_at=datetime.now(tz=UTC)
        )
        self.kwargs[job_id] = dict(kwargs)
        return job_id

    async def get(self, job_id: str) -> JobRecord | None:
        self._check()
        return self.jobs.get(job_id)

    async def ping(self) -> None:
        self._check()

    async def run_pending(self, functions: Mapping[str, TaskFunction], ctx: dict[str, Any]) -> int:
        """Run every queued job once, in order, as a worker would; return how many ran."""
        queued = [job for job in self.jobs.values() if job.state is JobState.QUEUED]
        for job in queued:
            started = replace(
                job,
                state=JobState.IN_PROGRESS,
                tries=job.tries + 1,
                started_at=datetime.now(tz=UTC),
            )
            self.jobs[job.id] = started
            job_ctx = {**ctx, "job_id": job.id, "job_try": started.tries}
            try:
                result = await functions[job.task](job_ctx, **self.kwargs[job.id])
            except Exception as exc:  # a worker records every failure; so does this fake
                self.jobs[job.id] = replace(
                    started,
                    state=JobState.FAILED,
                    finished_at=datetime.now(tz=UTC),
                    error=JobError(type(exc).__name__, str(exc)),
                )
            else:
                self.jobs[job.id] = replace(
                    started,
                    state=JobState.SUCCEEDED,
                    finished_at=datetime.now(tz=UTC),
                    result=result,
                )
        return len(queued)
