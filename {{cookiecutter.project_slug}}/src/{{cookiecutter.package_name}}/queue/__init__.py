"""The queue port: what the web and the tasks need from a job queue, and its implementations.

Routes talk to its ports (`JobQueue` for jobs, `QueueAdmin` for operators, `OperatorSessions` for
the dashboard's log in), never to arq: arq is in maintenance-only mode, and keeping it behind these
interfaces means swapping the backend touches this package (and the worker) alone.
"""

from .base import (
    FINISHED,
    DeadLetter,
    DeadLetterPage,
    DuplicateJobError,
    Enqueued,
    Idempotency,
    IdempotencyConflictError,
    JobCancelledError,
    JobError,
    JobEvent,
    JobFinishedError,
    JobNotFoundError,
    JobPage,
    JobQueue,
    JobRecord,
    JobRecorder,
    JobState,
    NewJob,
    OperatorSessions,
    Progress,
    QueueAdmin,
    QueueBackend,
    QueueDepth,
    QueueStats,
    QueueUnavailableError,
    WorkerInfo,
)

__all__ = [
    "FINISHED",
    "DeadLetter",
    "DeadLetterPage",
    "DuplicateJobError",
    "Enqueued",
    "Idempotency",
    "IdempotencyConflictError",
    "JobCancelledError",
    "JobError",
    "JobEvent",
    "JobFinishedError",
    "JobNotFoundError",
    "JobPage",
    "JobQueue",
    "JobRecord",
    "JobRecorder",
    "JobState",
    "NewJob",
    "OperatorSessions",
    "Progress",
    "QueueAdmin",
    "QueueBackend",
    "QueueDepth",
    "QueueStats",
    "QueueUnavailableError",
    "WorkerInfo",
]
