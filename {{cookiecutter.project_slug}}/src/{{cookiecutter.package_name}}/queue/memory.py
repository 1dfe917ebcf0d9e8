"""An in-memory JobQueue: a fake for the fast test tier, never for running the service.

It keeps jobs in dicts and runs them only when a test calls `run_pending`, so tests decide exactly
when "the worker" acts. It has no persistence, no concurrency, no retries and no expiry.
"""

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from .base import (
    DuplicateJobError,
    Enqueued,
    Idempotency,
    IdempotencyConflictError,
    JobCancelledError,
    JobError,
    JobEvent,
    JobFinishedError,
    JobNotFoundError,
    JobRecord,
    JobState,
    Progress,
    QueueUnavailableError,
)

TaskFunction = Callable[..., Awaitable[Any]]


def _now() -> datetime:
    return datetime.now(tz=UTC)


@dataclass
class _Job:
    record: JobRecord
    kwargs: dict[str, Any]


class InMemoryJobQueue:
    def __init__(self) -> None:
        self.jobs: dict[str, _Job] = {}
        self.event_log: dict[str, list[JobEvent]] = {}
        self.idempotency: dict[str, tuple[str, str]] = {}
        self.available = True

    def _check(self) -> None:
        if not self.available:
            raise QueueUnavailableError("the in-memory queue is switched off")

    def _event(self, job_id: str, **fields: Any) -> None:
        log = self.event_log.setdefault(job_id, [])
        log.append(JobEvent(id=f"{len(log) + 1}-0", at=_now(), **fields))

    def _update(self, job_id: str, **changes: Any) -> JobRecord:
        job = self.jobs[job_id]
        job.record = replace(job.record, **changes)
        if "state" in changes:
            self._event(job_id, kind="state", state=changes["state"])
        return job.record

    async def enqueue(
        self,
        task: str,
        kwargs: Mapping[str, Any],
        *,
        queue: str,
        job_id: str | None = None,
        idempotency: Idempotency | None = None,
        defer: float = 0,
    ) -> Enqueued:
        self._check()
        chosen = job_id or uuid.uuid4().hex
        if idempotency is not None and idempotency.key in self.idempotency:
            fingerprint, earlier = self.idempotency[idempotency.key]
            if fingerprint == idempotency.fingerprint:
                return Enqueued(earlier, created=False)
            raise IdempotencyConflictError(idempotency.key, earlier)
        if chosen in self.jobs:
            raise DuplicateJobError(chosen)
        if idempotency is not None:
            self.idempotency[idempotency.key] = (idempotency.fingerprint, chosen)
        # This fake has no clock: a deferred job stays deferred (run_pending skips it).
        state = JobState.DEFERRED if defer > 0 else JobState.QUEUED
        record = JobRecord(
            id=chosen, task=task, state=state, tries=0, queue=queue, enqueued_at=_now()
        )
        self.jobs[chosen] = _Job(record, dict(kwargs))
        self._event(chosen, kind="state", state=state)
        return Enqueued(chosen)

    async def get(self, job_id: str) -> JobRecord | None:
        self._check()
        job = self.jobs.get(job_id)
        return job.record if job else None

    async def cancel(self, job_id: str) -> JobRecord:
        self._check()
        job = self.jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        if job.record.state.finished:
            raise JobFinishedError(job_id, job.record.state)
        if job.record.state is JobState.IN_PROGRESS:
            return self._update(job_id, cancel_requested=True)
        return self._update(job_id, state=JobState.CANCELLED, finished_at=_now())

    async def events(
        self, job_id: str, after: str | None = None, wait: float = 0
    ) -> list[JobEvent]:
        self._check()
        log = self.event_log.get(job_id, [])
        start = next((i + 1 for i, event in enumerate(log) if event.id == after), 0)
        if start >= len(log) and wait:
            await asyncio.sleep(min(wait, 0.01))  # nothing runs concurrently in this fake
        return log[start:]

    async def ping(self) -> None:
        self._check()

    async def run_pending(self, functions: Mapping[str, TaskFunction], ctx: dict[str, Any]) -> int:
        """Run every queued job once, in order, as a worker would; return how many ran."""
        queued = [job for job in self.jobs.values() if job.record.state is JobState.QUEUED]
        for job in queued:
            job_id = job.record.id
            self._update(
                job_id, state=JobState.IN_PROGRESS, tries=job.record.tries + 1, started_at=_now()
            )

            async def progress(percent: float, message: str = "", job_id: str = job_id) -> None:
                self._update(job_id, progress=Progress(percent, message))
                self._event(job_id, kind="progress", progress=Progress(percent, message))

            async def cancel_requested(job_id: str = job_id) -> bool:
                return self.jobs[job_id].record.cancel_requested

            job_ctx = {
                **ctx,
                "job_id": job_id,
                "job_try": job.record.tries,
                "progress": progress,
                "cancel_requested": cancel_requested,
            }
            try:
                result = await functions[job.record.task](job_ctx, **job.kwargs)
            except JobCancelledError:
                self._update(job_id, state=JobState.CANCELLED, finished_at=_now())
            except Exception as exc:  # a worker records every failure; so does this fake
                error = JobError(type(exc).__name__, str(exc))
                self._update(job_id, state=JobState.FAILED, finished_at=_now(), error=error)
            else:
                self._update(job_id, state=JobState.SUCCEEDED, finished_at=_now(), result=result)
        return len(queued)
