"""The interface between the web app and a job queue, and the records it returns."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from .limits import TaskLimits

JOB_META = "_meta"
"""The keyword that carries a job's metadata (request id, trace context if traced) next to its
arguments; the worker's job wrapper takes it out before the task sees them. Jobs from plain arq
clients lack it."""


def carried(meta: Mapping[str, str]) -> dict[str, Any]:
    """A job's meta as the extra keyword argument that carries it, or nothing."""
    return {JOB_META: dict(meta)} if meta else {}


class JobState(StrEnum):
    QUEUED = "queued"
    DEFERRED = "deferred"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


def first_state(defer: float | None) -> JobState:
    """A new job's state: deferred while it waits `defer` seconds to start, else queued."""
    return JobState.DEFERRED if defer is not None and defer > 0 else JobState.QUEUED


@dataclass(frozen=True, slots=True)
class JobError:
    """Why a job failed: the exception's type and message, never its traceback."""

    type: str
    message: str


@dataclass(frozen=True, slots=True)
class Progress:
    percent: float
    message: str = ""


@dataclass(frozen=True, slots=True)
class Waiting:
    """Why a job waits to start: its task's limits (queue.limits), and until when it is booked;
    or the jobs it runs after (queue.dependencies), with no time said."""

    reason: str  # "rate", "concurrency" or "parents"
    until: datetime | None


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One entry of a job's history: a state change or a progress report."""

    id: str
    kind: str  # "state" or "progress"
    at: datetime
    state: JobState | None = None
    progress: Progress | None = None
    error: JobError | None = None
    """Failed, or a try failed and the job is deferred for another (then `retry_in` seconds)."""
    retry_in: float | None = None
    waiting: Waiting | None = None
    """Deferred by its task's limits."""


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: str
    task: str
    state: JobState
    tries: int
    queue: str | None = None
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: Any = None
    error: JobError | None = None
    progress: Progress | None = None
    cancel_requested: bool = False
    request_id: str | None = None
    """The web request that enqueued the job (its X-Request-ID)."""
    waiting: Waiting | None = None
    """Deferred by its task's limits (queue.limits) or its parents, not started yet."""
    parents: tuple[str, ...] = ()
    """The jobs it runs after (queue.dependencies)."""
    children: tuple[str, ...] = ()
    """The jobs that run after it (read with the job alone, not in listings)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A job that failed for good (a permanent error, or its tries used up), kept for replay."""

    job_id: str
    task: str
    queue: str
    kwargs: Mapping[str, Any]
    error: JobError
    tries: int
    failed_at: datetime
    enqueued_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    total: int
    """All letters kept, not just this page's."""
    letters: list[DeadLetter]


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[JobRecord]
    """Newest first."""
    next_before: float | None
    """Pass as `before` for the next, older page; None when there is none."""
    positions: list[float] = field(default_factory=list)
    """Each job's place in the listing (a page after it starts `before` it): what merges the
    pages of two stores (queue.shards). Empty from a store that cannot say."""


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker whose liveness key is fresh (worker.heartbeat)."""

    worker_id: str
    queue: str
    last_beat: datetime
    running: int = 0
    """Jobs it ran at its last beat."""
    cron: Mapping[str, datetime] = field(default_factory=dict)
    """Next run of each cron job this worker schedules."""


@dataclass(frozen=True, slots=True)
class NewJob:
    """One job of a batch: its task, validated arguments, and the Redis name of its queue."""

    task: str
    kwargs: Mapping[str, Any]
    queue_name: str
    after: tuple[str, ...] = ()
    """Ids of the jobs it runs after: existing ones, or earlier jobs of the same batch."""


@dataclass(frozen=True, slots=True)
class QueueDepth:
    name: str
    ready: int
    deferred: int
    oldest_ready_age: float
    """Seconds the oldest ready job has waited; 0 when none waits."""


@dataclass(frozen=True, slots=True)
class QueueStats:
    queues: list[QueueDepth]
    dead_letters: int
    unreachable: list[str] = field(default_factory=list)
    """Queues whose Redis did not answer (with the bulk queue on a Redis of its own): left out
    of the figures above, which come from the servers that answered."""


@dataclass(frozen=True, slots=True)
class Enqueued:
    job_id: str
    created: bool = True
    """False when an idempotency key returned an earlier job."""


@dataclass(frozen=True, slots=True)
class Idempotency:
    key: str
    fingerprint: str
    window: int = field(default=86_400)


class JobCancelledError(Exception):
    """Raised by a task that saw `await ctx["cancel_requested"]()` say yes: it stops cleanly."""


class QueueUnavailableError(Exception):
    """The queue's store (Redis) did not answer."""


class DuplicateJobError(Exception):
    """A job with this id is queued, running, or its result is still kept."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} already exists")
        self.job_id = job_id


class IdempotencyConflictError(Exception):
    """The idempotency key was used with a different request."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was used for another request (job {job_id})")
        self.job_id = job_id


class MisplacedJobError(ValueError):
    """A job that cannot go where its queue's jobs live: with the bulk queue on a Redis of its
    own (queue.shards), a client's id for one queue's job must not look like the other's, and a
    batch cannot span both servers. A 422: the request is wrong, not the service."""


class ParentRefusedError(ValueError):
    """A job was to run after a job this store does not know (never queued, or its record
    expired, or one kept on the other queue's Redis), or after one that has all the dependents
    it may have (`crowded`: queue.dependencies.MAX_CHILDREN): a 422, nothing queued."""

    def __init__(self, job_id: str, crowded: bool = False) -> None:
        message = f"no job {job_id!r} to run after"
        if crowded:
            message = f"job {job_id!r} has as many jobs running after it as it may"
        super().__init__(message)
        self.job_id = job_id
        self.crowded = crowded


class JobNotFoundError(LookupError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found")


class JobFinishedError(Exception):
    def __init__(self, job_id: str, state: JobState) -> None:
        super().__init__(f"job {job_id!r} already {state.value}")
        self.state = state


class JobRecorder(Protocol):
    """What the worker writes about the jobs it runs (worker.job_wrapper); the ledger implements
    it."""

    async def started(
        self,
        job_id: str,
        task: str,
        queue_name: str,
        job_try: int,
        enqueued_at: datetime | None = None,
        limits: TaskLimits | None = None,
    ) -> float | None:
        """The try's start; with `limits`, only if they allow it now: else the seconds the job
        waits, and its record says why (queue.limits)."""
        ...

    async def release(self, job_id: str, queue_name: str, limits: TaskLimits) -> None:
        """A job of a capped task ended (however): its place in the cap is free."""
        ...

    def forget_start(self, job_id: str) -> None:
        """The try is over: a start the recorder has not written yet never is (a start may go
        with the job's next change instead of a write of its own: queue.ledger)."""
        ...

    async def inputs(self, job_id: str, parents: Sequence[str]) -> tuple[str | None, list[Any]]:
        """What a dependent's parents left it (queue.dependencies): the `doomed` mark of a
        parent that failed or was cancelled, if any, and each parent's result, in order."""
        ...

    async def progress(self, job_id: str, percent: float, message: str = "") -> None: ...

    async def cancel_requested(self, job_id: str) -> bool: ...

    async def retrying(self, job_id: str, error: JobError, delay: float) -> None:
        """The try failed with a transient error; the job runs again in `delay` seconds."""
        ...

    async def requeued(self, job_id: str, reason: JobError) -> None:
        """The try was cut off (its worker stopped): the job is queued again, for `reason`."""
        ...

    async def finished(
        self,
        job_id: str,
        state: JobState,
        *,
        result: Any = None,
        error: JobError | None = None,
        finished_at: datetime | None = None,
    ) -> None: ...

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        """The job failed for good: its record ends failed (the letter's error and time) and
        the letter is kept, together or not at all."""
        ...


class JobQueue(Protocol):
    """The jobs API's port: queue jobs, read and cancel one, follow its events, and say whether
    a job could be queued now (readiness)."""

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
        """Queue `task(**kwargs)` on the queue whose Redis name is `queue_name`, to start after
        `defer` seconds (or, `after` given, once those jobs have all succeeded: see
        queue.dependencies), and return its id. `meta` travels with the job into the worker (never
        into the task's arguments): its `request_id` goes onto the job's record and every log
        line of the job; in a traced project, W3C trace context (`traceparent`) continues the
        caller's trace (see spans.py).

        Raises DuplicateJobError when `job_id` is taken, IdempotencyConflictError when the key
        was used for another request, ParentRefusedError for an id of `after` with no job (or
        no room for one more dependent),
        QueueUnavailableError when the store is down.
        """
        ...

    async def enqueue_many(
        self, jobs: Sequence[NewJob], meta: Mapping[str, str] | None = None
    ) -> list[str]:
        """Queue all of `jobs` at once (one round trip, all or none) under new ids, in order,
        each with `meta` (see enqueue). A job's `after` may name an earlier job of the batch by
        its index (`#<index>`). Raises ParentRefusedError as enqueue does."""
        ...

    async def get(self, job_id: str) -> JobRecord | None:
        """The job's current record, or None when the id is unknown (or its record expired)."""
        ...

    async def cancel(self, job_id: str) -> JobRecord:
        """Stop a job: a queued one never starts, a running one is cancelled.

        Returns the record after the request (cancelled, or still in progress while the worker
        stops it). Raises JobNotFoundError or JobFinishedError.
        """
        ...

    async def events(
        self, job_id: str, after: str | None = None, wait: float = 0
    ) -> list[JobEvent]:
        """The job's events after event id `after`, waiting up to `wait` seconds for one.
        Raises JobNotFoundError if a wait finds no events of a job under this id."""
        ...

    async def ping(self) -> None:
        """Return when the store answers and takes writes (a job could be queued now); raise
        QueueUnavailableError otherwise."""
        ...


class QueueAdmin(Protocol):
    """The operator's port (dead letters, the dashboard, /metrics): the read model of queues,
    jobs and workers, and what is done with dead letters."""

    async def dead_letters(self, limit: int, offset: int = 0) -> DeadLetterPage:
        """Dead letters, newest first."""
        ...

    async def dead_letter(self, job_id: str) -> DeadLetter | None: ...

    async def remove_dead_letter(self, job_id: str) -> bool:
        """Forget one letter; False if there was none."""
        ...

    async def purge_dead_letters(self) -> int:
        """Forget every letter; return how many there were."""
        ...

    async def stats(self) -> QueueStats:
        """Depth and lag of each queue and the dead letters' count: bounded reads, no scans."""
        ...

    async def recent_jobs(
        self,
        limit: int,
        *,
        before: float | None = None,
        state: JobState | None = None,
        task: str | None = None,
    ) -> JobPage:
        """Jobs newest first by enqueue time (before `before`, a page's `next_before`), of one
        state and task if given. Reads a bounded number of records: a page of a rare state may
        come back short, with `next_before` set to go on."""
        ...

    async def arguments(self, job_id: str) -> Mapping[str, Any] | None:
        """The job's arguments while they are kept (queued, running, a result not yet expired,
        or a dead letter), else None."""
        ...

    async def workers(self) -> list[WorkerInfo]:
        """The workers alive now (fresh liveness keys), most recent beat first, at most 100."""
        ...


class OperatorSessions(Protocol):
    """Operator sessions of the web (the dashboard's log in): the web keeps no state of its own,
    so every replica must see a log out at once."""

    async def open_session(self, session: str, lifetime: int) -> None:
        """Remember a session (a digest, never a token) for `lifetime` seconds."""
        ...

    async def session_open(self, session: str) -> bool:
        """Whether the session was opened and has neither expired nor been closed."""
        ...

    async def close_session(self, session: str) -> None:
        """End a session now (nothing happens if it is not open)."""
        ...


class QueueBackend(JobQueue, QueueAdmin, OperatorSessions, Protocol):
    """Everything a backend implements (queue.arq_queue's ArqJobQueue, the fast tier's fake): the
    web opens one and each route sees it through the port it needs (web.deps)."""
