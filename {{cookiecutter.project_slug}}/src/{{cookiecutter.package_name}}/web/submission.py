"""Submitting jobs: a task's arguments validated and the job queued on its task's queue, with
what travels along into the worker. POST /jobs and /jobs/batch, and the replays of dead letters
(API and dashboard) all submit through here."""

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.applications import Starlette

from ..meters import count_enqueued
from ..queue import (
    DuplicateJobError,
    Enqueued,
    Idempotency,
    IdempotencyConflictError,
    JobQueue,
    MisplacedJobError,
    NewJob,
    ParentRefusedError,
)
from ..settings import Settings
from ..spans import caller_context, enqueue_span
from ..tasks import TASKS, UnknownTaskError, prepare
from ..webhooks import CallbackRefusedError, check_url
from .schemas import BatchItem


def job_url(request: Request, job_id: str) -> str:
    """The path of GET /jobs/{job_id}: the Location of an accepted job."""
    return jobs_path(request.app, request.scope.get("root_path", "")) + job_id


@functools.lru_cache(maxsize=16)
def jobs_path(app: Starlette, root_path: str) -> str:
    """The path that job ids follow, looked up once per app and mount point: url_for walks
    every route, a cost each accepted job would pay."""
    probe = "-"
    return f"{root_path}{app.url_path_for('get_job', job_id=probe)}".removesuffix(probe)


def job_meta(request: Request) -> dict[str, str]:
    """What travels with a job into its worker: the request id and, traced, the caller's trace
    context (spans.py)."""
    meta: dict[str, str] = {}
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        meta["request_id"] = request_id
    meta.update(caller_context(request.headers))
    return meta


async def submit(
    job_queue: JobQueue,
    settings: Settings,
    task_name: str,
    raw_args: Mapping[str, Any],
    *,
    job_id: str | None = None,
    defer: float | None = None,
    idempotency_key: str | None = None,
    meta: dict[str, str] | None = None,
    callback_url: str | None = None,
    internal: bool = False,
    after: Sequence[str] = (),
) -> tuple[Enqueued, str]:
    """Validate a task's arguments and queue the job on its task's queue: POST /jobs, and the
    replay of a dead letter (`internal`: the service's own tasks too). Returns the job and its
    queue; bad input raises a 4xx."""
    meta = meta or {}
    after = tuple(dict.fromkeys(after))  # (a parent named twice is one parent)
    if after and (defer is not None or job_id in after):
        why = "a job that runs after others cannot also be deferred"
        if job_id in after:
            why = "a job cannot run after itself"
        error = {"type": "invalid_after", "loc": ("body", "after"), "msg": why, "input": after}
        raise RequestValidationError([error])
    if callback_url is not None:
        meta["callback_url"] = checked_callback(settings, callback_url)
    try:
        kwargs = prepare(TASKS, task_name, raw_args, internal=internal)
    except UnknownTaskError as exc:
        raise RequestValidationError(
            [{"type": "unknown_task", "loc": ("body", "task"), "msg": str(exc), "input": task_name}]
        ) from exc
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", "args", *error["loc"])} for error in exc.errors()]
        ) from exc
    if defer is not None and defer > settings.job_retention:
        # The job's record would expire before the job starts.
        raise RequestValidationError(
            [
                {
                    "type": "less_than_equal",
                    "loc": ("body", "defer_seconds"),
                    "msg": f"Input should be less than or equal to {settings.job_retention}",
                    "input": defer,
                }
            ]
        )
    idempotency = None
    if idempotency_key is not None:
        canonical = json.dumps(
            [task_name, kwargs, job_id, defer, callback_url, after], sort_keys=True
        )
        fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
        idempotency = Idempotency(idempotency_key, fingerprint, settings.idempotency_window)
    queue_name = settings.queue_for(TASKS[task_name].queue)

    try:
        with enqueue_span(task_name, queue_name, meta):  # puts its trace context into meta
            enqueued = await job_queue.enqueue(
                task_name,
                kwargs,
                queue_name=queue_name,
                job_id=job_id,
                idempotency=idempotency,
                defer=defer or 0,
                meta=meta,
                after=after,
            )
    except (DuplicateJobError, IdempotencyConflictError) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except ParentRefusedError as exc:
        raise unknown_parent(("body", "after"), exc) from exc
    except MisplacedJobError as exc:
        where = ("body", "after") if after and "after" in str(exc) else ("body", "job_id")
        raise misplaced(where, str(exc), job_id) from exc
    if enqueued.created:
        count_enqueued(task_name)
    return enqueued, queue_name


async def submit_batch(
    job_queue: JobQueue, settings: Settings, items: Sequence[BatchItem], meta: dict[str, str]
) -> tuple[list[str], list[NewJob]]:
    """Validate every job of a batch and queue them all, or none if any is invalid (a 422 that
    names each). Returns the new ids and the jobs, in order."""
    jobs: list[NewJob] = []
    errors: list[dict[str, Any]] = []
    refs: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.ref is None:
            continue
        if item.ref in refs:
            loc = ("body", "jobs", index, "ref")
            msg = f"ref {item.ref!r} is taken by job {refs[item.ref]} of the batch"
            errors.append({"type": "duplicate_ref", "loc": loc, "msg": msg, "input": item.ref})
        refs.setdefault(item.ref, index)
    for index, item in enumerate(items):
        after = _batch_parents(item.after, refs, index, errors)
        try:
            kwargs = prepare(TASKS, item.task, item.args)
        except UnknownTaskError as exc:
            loc = ("body", "jobs", index, "task")
            errors.append({"type": "unknown_task", "loc": loc, "msg": str(exc), "input": item.task})
            continue
        except ValidationError as exc:
            for error in exc.errors():
                errors.append({**error, "loc": ("body", "jobs", index, "args", *error["loc"])})
            continue
        queue_name = settings.queue_for(TASKS[item.task].queue)
        jobs.append(NewJob(item.task, kwargs, queue_name, after))
    if errors:
        raise RequestValidationError(errors)
    try:
        with enqueue_span("batch", ",".join(sorted({job.queue_name for job in jobs})), meta):
            ids = await job_queue.enqueue_many(jobs, meta)
    except ParentRefusedError as exc:
        raise unknown_parent(("body", "jobs"), exc) from exc
    except MisplacedJobError as exc:
        raise misplaced(("body", "jobs"), str(exc), [item.task for item in items]) from exc
    for job in jobs:
        count_enqueued(job.task)
    return ids, jobs


def _batch_parents(
    after: Sequence[str], refs: Mapping[str, int], index: int, errors: list[dict[str, Any]]
) -> tuple[str, ...]:
    """A batch job's parents as the queue takes them: `#<index>` for an earlier job of the batch
    (by its ref), an id for an existing job. A ref of this job or a later one is an error: a
    batch is written in order, so it holds no cycle."""
    parents: dict[str, None] = {}
    for position, parent in enumerate(after):
        if parent not in refs:
            parents[parent] = None  # an existing job's id
        elif refs[parent] < index:
            parents[f"#{refs[parent]}"] = None
        else:
            loc = ("body", "jobs", index, "after", position)
            msg = f"ref {parent!r} is not of an earlier job of the batch"
            errors.append({"type": "invalid_after", "loc": loc, "msg": msg, "input": parent})
    return tuple(parents)


def unknown_parent(loc: tuple[str, ...], exc: ParentRefusedError) -> RequestValidationError:
    kind = "too_many_dependents" if exc.crowded else "unknown_parent"
    return RequestValidationError(
        [{"type": kind, "loc": loc, "msg": str(exc), "input": exc.job_id}]
    )


def checked_callback(settings: Settings, url: str) -> str:
    """A job's callback URL, if this service may call it (webhooks.py), else a 422."""
    try:
        check_url(
            url,
            allow_http=settings.webhook_allow_http,
            allow_private=settings.webhook_allow_private,
        )
    except CallbackRefusedError as exc:
        kind, message = "callback_refused", f"callback_url refused: {exc}"
    else:
        if settings.webhook_secret is not None:
            return url
        kind, message = "webhooks_not_configured", "this service has no WEBHOOK_SECRET set"
    error = {"type": kind, "loc": ("body", "callback_url"), "msg": message, "input": url}
    raise RequestValidationError([error])


def misplaced(loc: tuple[str, ...], message: str, given: Any) -> RequestValidationError:
    """A job that cannot go where its queue's jobs live (queue.shards), as a 422."""
    return RequestValidationError(
        [{"type": "misplaced_job", "loc": loc, "msg": message, "input": given}]
    )
