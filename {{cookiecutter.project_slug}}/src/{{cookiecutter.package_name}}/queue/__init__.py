"""The queue port: what the web and the tasks need from a job queue, and its implementations.

Routes talk to `JobQueue`, never to arq: arq is in maintenance-only mode, and keeping it behind this
interface means swapping the backend touches this package alone.
"""

from .base import (
    DuplicateJobError,
    JobError,
    JobQueue,
    JobRecord,
    JobState,
    QueueUnavailableError,
)

__all__ = [
    "DuplicateJobError",
    "JobError",
    "JobQueue",
    "JobRecord",
    "JobState",
    "QueueUnavailableError",
]
