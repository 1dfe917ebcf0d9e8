"""What the API accepts and returns."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from ..queue import DeadLetter, JobEvent, JobRecord, JobState, Waiting
from ..queue.dependencies import MAX_PARENTS
from ..settings import QueueKey
from ..tasks import TASKS, Task, redact

JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
"""A job id as reads take it: ids the service makes itself may hold `:` (a cron run's is
`cron:<name>:<ts>`)."""
CLIENT_JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
"""A job id a client chooses: no `:`, the separator of Redis keys. A job's keys are its id after a
prefix (`<queue>:job:<id>`) and before a suffix (`<queue>:job:<id>:events`), so an id of
`<other>:events` would write its record onto another job's events."""
MAX_OFFSET = 1_000_000
"""How deep a page may start: further is no use to a reader, and near 2**63 Redis refuses it."""

JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="The job id from POST /jobs.")]
ParentId = Annotated[str, Field(pattern=JOB_ID_PATTERN)]
BatchRef = Annotated[str, Field(pattern=CLIENT_JOB_ID_PATTERN)]

UNAVAILABLE = {"description": "Redis is unavailable; retry later"}
"""The OpenAPI response of every route that needs Redis."""


class EnqueueRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"task": "word_count", "args": {"text": "hello arq"}}]},
    )

    task: str = Field(min_length=1, max_length=100, description="A task name from GET /tasks.")
    args: dict[str, Any] = Field(default_factory=dict, description="The task's arguments.")
    job_id: str | None = Field(
        default=None,
        pattern=CLIENT_JOB_ID_PATTERN,
        description="Your own id (letters, digits, `_`, `.`, `-`): refused (409) while a job "
        "or result with it exists.",
    )
    defer_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Start the job this many seconds from now, at most JOB_RETENTION.",
    )
    callback_url: str | None = Field(
        default=None,
        max_length=2048,
        description="Called when the job ends (succeeded, failed, cancelled) with its final "
        "state, signed as Standard Webhooks sign (needs WEBHOOK_SECRET; https and public "
        "addresses only, unless allowed).",
    )
    after: list[ParentId] = Field(
        default_factory=list,
        max_length=MAX_PARENTS,
        description="Ids of jobs this one runs after: it starts once all have succeeded (their "
        "results in the task's `ctx['parents']`), and ends cancelled if one fails or is "
        "cancelled. An unknown id is a 422.",
    )


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=100, description="A task name from GET /tasks.")
    args: dict[str, Any] = Field(default_factory=dict, description="The task's arguments.")
    ref: BatchRef | None = Field(
        default=None, description="A name for this job that later jobs of the batch use in `after`."
    )
    after: list[ParentId] = Field(
        default_factory=list,
        max_length=MAX_PARENTS,
        description="Jobs this one runs after: the `ref` of an earlier job of the batch, or the "
        "id of an existing job.",
    )


class BatchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"jobs": [{"task": "word_count", "args": {"text": "one of many"}}]}]
        },
    )

    jobs: list[BatchItem] = Field(min_length=1, max_length=1000)


class JobAccepted(BaseModel):
    id: str
    task: str
    state: JobState
    queue: str
    url: str
    ref: str | None = Field(default=None, description="The job's `ref` in its batch, if given.")


class JobErrorOut(BaseModel):
    type: str
    message: str


class ProgressOut(BaseModel):
    percent: float
    message: str


class WaitingOut(BaseModel):
    reason: str = Field(
        description='"rate": the task\'s rate limit; "concurrency": its cap of running jobs; '
        '"parents": the jobs it runs after.'
    )
    until: datetime | None = Field(
        description="When the job is due again (a running job's end may make it sooner); none "
        "while it waits for its parents."
    )

    @classmethod
    def of(cls, waiting: Waiting | None) -> "WaitingOut | None":
        return None if waiting is None else cls(reason=waiting.reason, until=waiting.until)


class JobOut(BaseModel):
    id: str
    task: str
    state: JobState
    queue: str | None
    tries: int
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    result: Any = None
    error: JobErrorOut | None = None
    progress: ProgressOut | None = None
    cancel_requested: bool = False
    request_id: str | None = Field(
        default=None, description="X-Request-ID of the request that enqueued the job."
    )
    waiting: WaitingOut | None = Field(
        default=None,
        description="Deferred by the task's limits or its parents: why, and until when.",
    )
    parents: list[str] = Field(default_factory=list, description="The jobs it runs after.")
    children: list[str] = Field(default_factory=list, description="The jobs that run after it.")

    @classmethod
    def from_record(cls, record: JobRecord) -> "JobOut":
        return cls(
            id=record.id,
            task=record.task,
            state=record.state,
            queue=record.queue,
            tries=record.tries,
            enqueued_at=record.enqueued_at,
            started_at=record.started_at,
            finished_at=record.finished_at,
            result=record.result,
            error=JobErrorOut(type=record.error.type, message=record.error.message)
            if record.error
            else None,
            progress=ProgressOut(percent=record.progress.percent, message=record.progress.message)
            if record.progress
            else None,
            cancel_requested=record.cancel_requested,
            request_id=record.request_id,
            waiting=WaitingOut.of(record.waiting),
            parents=list(record.parents),
            children=list(record.children),
        )


class EventOut(BaseModel):
    id: str
    kind: str
    at: datetime
    state: JobState | None = None
    progress: ProgressOut | None = None
    error: JobErrorOut | None = None
    retry_in: float | None = Field(
        default=None, description="Seconds until the next try, when a try failed and is retried."
    )
    waiting: WaitingOut | None = Field(
        default=None, description="Deferred by the task's limits: why, and until when."
    )

    @classmethod
    def from_event(cls, event: JobEvent) -> "EventOut":
        progress, error = event.progress, event.error
        return cls(
            id=event.id,
            kind=event.kind,
            at=event.at,
            state=event.state,
            progress=ProgressOut(percent=progress.percent, message=progress.message)
            if progress
            else None,
            error=JobErrorOut(type=error.type, message=error.message) if error else None,
            retry_in=event.retry_in,
            waiting=WaitingOut.of(event.waiting),
        )


class RateOut(BaseModel):
    limit: int = Field(description="Starts allowed in any `per` seconds, fleet-wide.")
    per: float


class TaskOut(BaseModel):
    name: str
    queue: QueueKey
    args_schema: dict[str, Any]
    rate: RateOut | None = Field(
        default=None, description="The task's rate limit: a job over it waits, burning no try."
    )
    concurrency: int | None = Field(
        default=None, description="How many of the task's jobs run at once at most, fleet-wide."
    )

    @classmethod
    def of(cls, task: Task) -> "TaskOut":
        rate = task.rate
        return cls(
            name=task.name,
            queue=task.queue,
            args_schema=task.args.model_json_schema(),
            rate=RateOut(limit=rate.limit, per=rate.per) if rate else None,
            concurrency=task.concurrency,
        )


class HealthOut(BaseModel):
    status: str
    detail: str | None = None


class DeadLetterOut(BaseModel):
    job_id: str
    task: str
    queue: str
    args: dict[str, Any]
    error: JobErrorOut
    tries: int
    enqueued_at: datetime | None
    failed_at: datetime

    @classmethod
    def from_letter(cls, letter: DeadLetter) -> "DeadLetterOut":
        return cls(
            job_id=letter.job_id,
            task=letter.task,
            queue=letter.queue,
            # Kept whole for the replay, shown redacted like on the dashboard.
            args=redact(TASKS, letter.task, letter.kwargs),
            error=JobErrorOut(type=letter.error.type, message=letter.error.message),
            tries=letter.tries,
            enqueued_at=letter.enqueued_at,
            failed_at=letter.failed_at,
        )


class DeadLetterPageOut(BaseModel):
    total: int = Field(description="Every dead letter kept, not just this page's.")
    letters: list[DeadLetterOut]


class PurgedOut(BaseModel):
    purged: int


class BatchAccepted(BaseModel):
    jobs: list[JobAccepted] = Field(description="One per requested job, in the same order.")
