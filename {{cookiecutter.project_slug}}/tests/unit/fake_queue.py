"""The fast tier's fake queue backend: every port of queue.base (JobQueue, QueueAdmin,
OperatorSessions) in memory, for tests only; it never ships in the package.

It keeps jobs in dicts and is also the JobRecorder that the worker's real job wrapper writes to:
the fast tier's `run_jobs` fixture takes `ready()` jobs and runs them through `worker.job_wrapper`,
so tests decide exactly when "the worker" acts. It has no persistence, no concurrency, no clock, no
expiry.
"""

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from {{ cookiecutter.package_name }}.queue.base import (
    DeadLetter,
    DeadLetterPage,
    DuplicateJobError,
    Enqueued,
    Idempotency,
    IdempotencyConflictError,
    JobError,
    JobEvent,
    JobFinishedError,
    JobNotFoundError,
    JobPage,
    JobRecord,
    JobRecorder,
    JobState,
    NewJob,
    ParentRefusedError,
    Progress,
    QueueBackend,
    QueueDepth,
    QueueStats,
    QueueUnavailableError,
    Waiting,
    WorkerInfo,
    carried,
    first_state,
)
from {{ cookiecutter.package_name }}.queue.dependencies import WAITING_FOR_PARENTS, in_batch
from {{ cookiecutter.package_name }}.queue.limits import CAP_RECHECK, TaskLimits


def _now() -> datetime:
    return datetime.now(tz=UTC)


@dataclass
class _Job:
    record: JobRecord
    kwargs: dict[str, Any]
    meta: dict[str, str]
    retry_due: bool = False
    """A try failed and asked for another: deferred, but the next `ready()` includes it."""
    pending: set[str] = field(default_factory=set)
    """Parents not yet succeeded, while it waits for them (queue.dependencies)."""
    doomed: str | None = None


class FakeQueue:
    def __init__(self) -> None:
        self.jobs: dict[str, _Job] = {}
        self.event_log: dict[str, list[JobEvent]] = {}
        self.idempotency: dict[str, tuple[str, str]] = {}
        self.dead: dict[str, DeadLetter] = {}
        self.sessions: dict[str, int] = {}
        """Open operator sessions and their lifetimes."""
        self.alive: list[WorkerInfo] = []
        """What `workers()` answers: this fake has no workers of its own; tests put some here."""
        self.available = True
        # The tasks' limits (queue.limits), kept in memory by the same rules as the ledger's
        # script: start times of the last window per task, and the jobs holding a cap's places.
        self.limit_starts: dict[str, list[float]] = {}
        self.limit_running: dict[str, set[str]] = {}
        self.limit_waiting: dict[str, list[str]] = {}  # a cap's line, longest waiting first
        self.children: dict[str, list[str]] = {}  # by parent, as the ledger's children sets

    def _check(self) -> None:
        if not self.available:
            raise QueueUnavailableError("the in-memory queue is switched off")

    def _event(self, job_id: str, **fields: Any) -> None:
        log = self.event_log.setdefault(job_id, [])
        log.append(JobEvent(id=f"{len(log) + 1}-0", at=_now(), **fields))

    def _update(
        self,
        job_id: str,
        event_error: JobError | None = None,
        retry_in: float | None = None,
        **changes: Any,
    ) -> JobRecord:
        job = self.jobs[job_id]
        if "state" in changes and "waiting" not in changes:
            changes["waiting"] = None  # a wait for a limit ends with any other change of state
        job.record = replace(job.record, **changes)
        if "state" in changes:
            state = changes["state"]
            waiting = changes["waiting"]
            self._event(
                job_id,
                kind="state",
                state=state,
                error=event_error,
                retry_in=retry_in,
                waiting=waiting,
            )
        return job.record

    async def enqueue(
        self,
        task: str,
        kwargs: Mapping[str, Any],
        *,
        queue_name: str,
        job_id: str | None = None,
        idempotency: Idempotency | None = None,
        defer: float = 0,
        meta: Mapping[str, str] | None = None,
        after: Sequence[str] = (),
    ) -> Enqueued:
        self._check()
        for parent in after:
            if parent not in self.jobs:
                raise ParentRefusedError(parent)
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
        state = first_state(defer)
        record = JobRecord(
            id=chosen,
            task=task,
            state=state,
            tries=0,
            queue=queue_name,
            enqueued_at=_now(),
            request_id=(meta or {}).get("request_id"),
        )
        self.jobs[chosen] = _Job(record, dict(kwargs), dict(meta or {}))
        if not after:
            self._event(chosen, kind="state", state=state)
            return Enqueued(chosen)
        # As queue.dependencies: deferred until its parents let it go (which may be now).
        waiting = Waiting(WAITING_FOR_PARENTS, None)
        job = self.jobs[chosen]
        job.meta["after"] = " ".join(after)
        job.record = replace(
            job.record, state=JobState.DEFERRED, waiting=waiting, parents=tuple(after)
        )
        self._event(chosen, kind="state", state=JobState.DEFERRED, waiting=waiting)
        for parent in after:
            ended = self.jobs[parent].record
            if ended.state is JobState.SUCCEEDED:
                continue
            if ended.state.finished:
                job.doomed = job.doomed or f"{parent} {ended.state.value}"
            else:
                self.children.setdefault(parent, []).append(chosen)
                job.pending.add(parent)
        if job.doomed or not job.pending:
            self._set_free(chosen)
        return Enqueued(chosen)

    def _set_free(self, job_id: str) -> None:
        self.jobs[job_id].pending.clear()
        self._update(job_id, state=JobState.QUEUED)

    def _settle_children(self, parent: str) -> None:
        record = self.jobs[parent].record
        for child in self.children.get(parent, []):
            job = self.jobs[child]
            if parent not in job.pending:
                continue
            if record.state is JobState.SUCCEEDED:
                job.pending.discard(parent)
            else:
                job.doomed = f"{parent} {record.state.value}"
            if job.doomed or not job.pending:
                self._set_free(child)

    async def enqueue_many(
        self, jobs: Sequence[NewJob], meta: Mapping[str, str] | None = None
    ) -> list[str]:
        self._check()
        for job in jobs:
            for parent in job.after:
                if not parent.startswith("#") and parent not in self.jobs:
                    raise ParentRefusedError(parent)
        ids: list[str] = []
        for job in jobs:
            after = [in_batch(parent, ids) for parent in job.after]
            enqueued = await self.enqueue(
                job.task, job.kwargs, queue_name=job.queue_name, meta=meta, after=after
            )
            ids.append(enqueued.job_id)
        return ids

    async def get(self, job_id: str) -> JobRecord | None:
        self._check()
        job = self.jobs.get(job_id)
        if job is None:
            return None
        return replace(job.record, children=tuple(sorted(self.children.get(job_id, ()))))

    async def cancel(self, job_id: str) -> JobRecord:
        self._check()
        job = self.jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        if job.record.state.finished:
            raise JobFinishedError(job_id, job.record.state)
        if job.record.state is JobState.IN_PROGRESS:
            return self._update(job_id, cancel_requested=True)
        job.pending.clear()
        cancelled = self._update(job_id, state=JobState.CANCELLED, finished_at=_now())
        self._settle_children(job_id)
        return cancelled

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

    def ready(self) -> list[tuple[JobRecord, dict[str, Any]]]:
        """The queued jobs and the retries due, oldest first, with their arguments (and meta, as
        arq passes it): what a worker would pick up. A retry is due at the next call, whatever
        its delay: this fake has no clock (and a job enqueued with a delay is never due)."""
        due = [
            job
            for job in self.jobs.values()
            if job.record.state is JobState.QUEUED or job.retry_due
        ]
        for job in due:
            job.retry_due = False
        return [(job.record, {**job.kwargs, **carried(job.meta)}) for job in due]

    def retry_later(self, job_id: str) -> None:
        """The job's try asked for another (arq's `Retry`): the next `ready()` includes it."""
        self.jobs[job_id].retry_due = True

    # JobRecorder: what the worker's job wrapper writes, so the fast tier runs the real job wrapper.

    async def started(
        self,
        job_id: str,
        task: str,
        queue_name: str,
        job_try: int,
        enqueued_at: datetime | None = None,
        limits: TaskLimits | None = None,
    ) -> float | None:
        if limits is not None:
            wait = self._limited(job_id, limits)
            if wait is not None:
                reason, seconds = wait
                until = _now() + timedelta(seconds=seconds)
                self._update(job_id, state=JobState.DEFERRED, waiting=Waiting(reason, until))
                return seconds
        self._update(
            job_id, state=JobState.IN_PROGRESS, tries=job_try, started_at=_now(), progress=None
        )
        return None

    def _limited(self, job_id: str, limits: TaskLimits) -> tuple[str, float] | None:
        """Why and how long the job waits, or None: it starts, and is counted."""
        now = time.monotonic()
        running = self.limit_running.setdefault(limits.task, set())
        line = self.limit_waiting.setdefault(limits.task, [])
        if limits.concurrency and job_id not in running and len(running) >= limits.concurrency:
            if job_id not in line:
                line.append(job_id)
            behind = line.index(job_id) // limits.concurrency
            return "concurrency", CAP_RECHECK * min(12, 1 + behind)
        window = limits.per_ms / 1000
        starts = [at for at in self.limit_starts.get(limits.task, []) if at > now - window]
        if limits.rate and len(starts) >= limits.rate:
            return "rate", starts[-limits.rate] + window - now
        if limits.rate:
            self.limit_starts[limits.task] = [*starts, now]
        if limits.concurrency:
            running.add(job_id)
            if job_id in line:
                line.remove(job_id)
        return None

    async def release(self, job_id: str, queue_name: str, limits: TaskLimits) -> None:
        self.limit_running.get(limits.task, set()).discard(job_id)

    def forget_start(self, job_id: str) -> None:
        pass  # (this fake writes every start at once)

    async def progress(self, job_id: str, percent: float, message: str = "") -> None:
        progress = Progress(max(0.0, min(100.0, float(percent))), message)
        self._update(job_id, progress=progress)
        self._event(job_id, kind="progress", progress=progress)

    async def cancel_requested(self, job_id: str) -> bool:
        return self.jobs[job_id].record.cancel_requested

    async def retrying(self, job_id: str, error: JobError, delay: float) -> None:
        self._update(
            job_id, state=JobState.DEFERRED, error=error, event_error=error, retry_in=delay
        )

    async def requeued(self, job_id: str, reason: JobError) -> None:
        self._update(job_id, state=JobState.QUEUED, event_error=reason)

    async def finished(
        self,
        job_id: str,
        state: JobState,
        *,
        result: Any = None,
        error: JobError | None = None,
        finished_at: datetime | None = None,
    ) -> None:
        self._update(
            job_id,
            state=state,
            finished_at=finished_at or _now(),
            result=result if state is JobState.SUCCEEDED else None,
            error=error,
            event_error=error,
        )
        self._settle_children(job_id)

    async def inputs(self, job_id: str, parents: Sequence[str]) -> tuple[str | None, list[Any]]:
        results = [self.jobs[p].record.result if p in self.jobs else None for p in parents]
        return self.jobs[job_id].doomed, results

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        if letter.job_id in self.jobs:  # the record ends failed with it (as the ledger's does)
            await self.finished(
                letter.job_id, JobState.FAILED, error=letter.error, finished_at=letter.failed_at
            )
        self.dead.pop(letter.job_id, None)  # re-added letters move to the newest end
        self.dead[letter.job_id] = letter

    # Dead letters, as the web reads them.

    async def dead_letters(self, limit: int, offset: int = 0) -> DeadLetterPage:
        self._check()
        newest_first = list(reversed(self.dead.values()))
        return DeadLetterPage(len(newest_first), newest_first[offset : offset + limit])

    async def dead_letter(self, job_id: str) -> DeadLetter | None:
        self._check()
        return self.dead.get(job_id)

    async def dead_letter_time(self, rank: int) -> float | None:
        self._check()
        newest_first = list(reversed(self.dead.values()))
        return newest_first[rank].failed_at.timestamp() * 1000 if rank < len(newest_first) else None

    async def remove_dead_letter(self, job_id: str) -> bool:
        self._check()
        return self.dead.pop(job_id, None) is not None

    async def purge_dead_letters(self) -> int:
        self._check()
        count = len(self.dead)
        self.dead.clear()
        return count

    async def stats(self) -> QueueStats:
        self._check()
        depths = []
        for name in sorted({job.record.queue or "" for job in self.jobs.values()}):
            states = [job.record.state for job in self.jobs.values() if job.record.queue == name]
            ready = states.count(JobState.QUEUED)
            depths.append(QueueDepth(name, ready, states.count(JobState.DEFERRED), 0.0))
        return QueueStats(depths, len(self.dead))

    async def recent_jobs(
        self,
        limit: int,
        *,
        before: float | None = None,
        state: JobState | None = None,
        task: str | None = None,
    ) -> JobPage:
        self._check()
        # Newest first by insertion (this fake's clock), `before` counting from the newest.
        ordered = list(reversed(self.jobs.values()))
        start = int(before or 0)
        matching = [
            job.record
            for job in ordered[start:]
            if (state is None or job.record.state is state)
            and (task is None or job.record.task == task)
        ]
        page = matching[:limit]
        if len(matching) <= limit:
            return JobPage(page, None)
        return JobPage(page, float(ordered.index(self.jobs[page[-1].id]) + 1))

    async def arguments(self, job_id: str) -> Mapping[str, Any] | None:
        self._check()
        if job_id in self.jobs:
            return dict(self.jobs[job_id].kwargs)
        letter = self.dead.get(job_id)
        return dict(letter.kwargs) if letter else None

    async def workers(self) -> list[WorkerInfo]:
        self._check()
        return list(self.alive)

    async def open_session(self, session: str, lifetime: int) -> None:
        self._check()
        self.sessions[session] = lifetime  # no clock: a session ends only when closed

    async def session_open(self, session: str) -> bool:
        self._check()
        return session in self.sessions

    async def close_session(self, session: str) -> None:
        self._check()
        self.sessions.pop(session, None)


def _honest(fake: FakeQueue) -> tuple[QueueBackend, JobRecorder]:
    """mypy --strict checks the fake against the ports it stands in for."""
    return fake, fake
