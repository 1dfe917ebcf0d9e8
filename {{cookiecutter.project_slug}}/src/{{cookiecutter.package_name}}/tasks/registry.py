"""What a task is: its name, function, argument model, queue, and how it runs.

The web validates arguments against `args` before it enqueues, so bad input is a 422 to the client,
not a failure in the worker; each queue's worker serves exactly the tasks routed to that queue.
"""

import json
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, quote_plus

from pydantic import BaseModel, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from ..json_values import first_unencodable
from ..settings import QueueKey
from .context import Context as Context  # what tasks import with Task

TaskFunction = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Which failures are transient, and how long to wait before the next try.

    arq retries nothing by itself but `Retry`: a plain exception or a timeout fails the job. A task
    lists here what is worth another try (a refused connection, a 503), within its tries. The wait
    doubles each try, from `backoff` up to `max_backoff`, plus up to 25 % random jitter so that
    jobs that failed together do not all come back at the same moment.
    """

    on: tuple[type[Exception], ...] = ()
    timeouts: bool = False
    """Retry a try that ran out of time."""
    when: Callable[[Exception], bool] | None = None
    """Retry an error this says yes to, whatever its type (a database error by its SQLSTATE)."""
    backoff: float = 1.0
    max_backoff: float = 300.0

    def applies(self, error: Exception, *, timed_out: bool) -> bool:
        if timed_out:
            return self.timeouts
        return isinstance(error, self.on) or (self.when is not None and self.when(error))

    def delay(self, job_try: int) -> float:
        """Seconds to wait after failed try number `job_try` (1 for the first)."""
        base = min(self.max_backoff, self.backoff * 2.0 ** (job_try - 1))
        return base * (1 + 0.25 * random.random())  # noqa: S311 - jitter, not cryptography


NO_RETRY: Final = RetryPolicy()


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `limit` starts of a task in any `per` seconds, counted across every worker (the
    queue's Redis holds the count: queue.limits). A job over it waits, burning no try."""

    limit: int
    per: float

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"a rate allows at least 1 start, not {self.limit}")
        if not 0.001 <= self.per <= 86_400:  # (NaN fails this too)
            raise ValueError(f"a rate's period is 1 ms to a day, not {self.per!r} s")


@dataclass(frozen=True, slots=True)
class Task:
    name: str
    function: TaskFunction
    args: type[BaseModel]
    queue: QueueKey = "default"
    timeout: float | None = None
    """Seconds; None takes the queue's JOB_TIMEOUT or BULK_JOB_TIMEOUT."""
    retry: RetryPolicy = NO_RETRY
    max_tries: int | None = None
    """Starts allowed (crash and shutdown re-runs included); None takes JOB_MAX_TRIES."""
    keep_result: int | None = None
    """Seconds arq keeps the result; None takes JOB_KEEP_RESULT. The job record lives longer."""
    rate: Rate | None = None
    """Starts allowed per period, fleet-wide (queue.limits); None: no limit."""
    concurrency: int | None = None
    """Jobs of this task running at once, fleet-wide (queue.limits); None: no cap."""
    internal: bool = False
    """The service's own (deliver_webhook): clients cannot enqueue it, every queue's worker
    serves it, an operator's replay of its dead letter may."""

    def __post_init__(self) -> None:
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"task {self.name!r}: concurrency is at least 1")

    @property
    def limited(self) -> bool:
        return self.rate is not None or self.concurrency is not None


class UnknownTaskError(LookupError):
    def __init__(self, name: str, known: Mapping[str, Task]) -> None:
        public = sorted(task for task, declared in known.items() if not declared.internal)
        super().__init__(f"unknown task {name!r}; known tasks: {', '.join(public)}")


REDACTED = "[redacted]"


def redacted_fields(task: Task) -> frozenset[str]:
    """The fields the task's argument model marks `json_schema_extra={"redact": True}`."""
    return frozenset(
        field_name
        for field_name, field in task.args.model_fields.items()
        if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("redact")
    )


def redact(tasks: Mapping[str, Task], name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """`kwargs` for showing (the dashboard, the API's dead letters): the values of redacted
    fields replaced, all of them for an unknown task."""
    task = tasks.get(name)
    if task is None:
        return dict.fromkeys(kwargs, REDACTED)
    hidden = redacted_fields(task)
    return {
        key: REDACTED if key in hidden and value is not None else value
        for key, value in kwargs.items()
    }


def secrets_of(task: Task, kwargs: Mapping[str, Any]) -> tuple[str, ...]:
    """The texts to take out of anything about this job that leaves the worker: each redacted
    value as it was given and as error messages quote it (repr of the text and of its bytes,
    JSON, URL-encoded), longest first so that no part of a longer form is left behind."""
    texts: list[str] = []
    for name in redacted_fields(task):
        value = kwargs.get(name)
        if value is None or value == "":
            continue
        texts += [value] if isinstance(value, str) else [str(value), json.dumps(value, default=str)]
    return quoted_forms(texts)


def quoted_forms(texts: Iterable[str]) -> tuple[str, ...]:
    """Each text as it was given and as error messages quote it (repr of the text and of its
    bytes, JSON, URL-encoded), longest first so that no part of a longer form is left behind."""
    forms: set[str] = set()
    for text in texts:
        quoted = {
            repr(text)[1:-1],
            repr(text.encode("utf-8", "backslashreplace"))[2:-1],
            json.dumps(text)[1:-1],
            json.dumps(text, ensure_ascii=False)[1:-1],
        }
        # A repr inside a longer one may escape the other quote (it picks its quotes whole).
        quoted |= {form.replace("'", "\\'") for form in quoted}
        quoted |= {form.replace('"', '\\"') for form in quoted}
        forms |= {text, quote(text, safe=""), quote_plus(text), *quoted}
    forms.discard("")
    return tuple(sorted(forms, key=len, reverse=True))


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every occurrence of each secret (see secrets_of) replaced by [redacted]."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def prepare(
    tasks: Mapping[str, Task],
    name: str,
    raw_args: Mapping[str, Any],
    *,
    internal: bool = False,
) -> dict[str, Any]:
    """Validate `raw_args` for task `name`; return the JSON-ready keyword arguments to enqueue.
    An internal task is unknown unless `internal` (an operator's replay of its dead letter).

    Raises UnknownTaskError, or pydantic's ValidationError for bad arguments.
    """
    task = tasks.get(name)
    if task is None or (task.internal and not internal):
        raise UnknownTaskError(name, tasks)
    kwargs = task.args.model_validate(raw_args).model_dump(mode="json")
    # A model may still make what a job cannot carry (a float field takes the string "nan").
    if problem := first_unencodable(kwargs):
        loc, message = problem
        error = InitErrorDetails(
            type=PydanticCustomError("not_carried", message), loc=loc, input=None
        )
        raise ValidationError.from_exception_data(task.args.__name__, [error])
    return kwargs
