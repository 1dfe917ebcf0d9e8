"""What a task is: its name, function, argument model, queue, and how it runs.

The web validates arguments against `args` before it enqueues, so bad input is a 422 to the client,
not a failure in the worker; each queue's worker serves exactly the tasks routed to that queue.
"""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ..settings import QueueKey

Context = dict[str, Any]
"""arq's per-job context: what `worker.lifecycle.startup` put there, plus job_id, job_try, redis,
and `progress` / `cancel_requested` from `worker.runner`."""

TaskFunction = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Task:
    name: str
    function: TaskFunction
    args: type[BaseModel]
    queue: QueueKey = "default"
    timeout: float | None = None
    """Seconds; None takes the worker's JOB_TIMEOUT."""
    max_tries: int | None = None
    """Starts allowed (crash and shutdown re-runs included); None takes JOB_MAX_TRIES."""
    keep_result: int | None = None
    """Seconds arq keeps the result; None takes JOB_KEEP_RESULT. The job record lives longer."""


class UnknownTaskError(LookupError):
    def __init__(self, name: str, known: Mapping[str, Task]) -> None:
        super().__init__(f"unknown task {name!r}; known tasks: {', '.join(sorted(known))}")


def prepare(tasks: Mapping[str, Task], name: str, raw_args: Mapping[str, Any]) -> dict[str, Any]:
    """Validate `raw_args` for task `name`; return the JSON-ready keyword arguments to enqueue.

    Raises UnknownTaskError, or pydantic's ValidationError for bad arguments.
    """
    task = tasks.get(name)
    if task is None:
        raise UnknownTaskError(name, tasks)
    return task.args.model_validate(raw_args).model_dump(mode="json")
