"""Jobs: enqueue (with idempotency), read, cancel, list events, stream events (SSE)."""

import functools
import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Path, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator, ValidationError
from starlette.applications import Starlette

{% if cookiecutter.use_metrics -%}
from ...metrics import JOBS_ENQUEUED
{% endif -%}
from ...queue import (
    DuplicateJobError,
    Enqueued,
    Idempotency,
    IdempotencyConflictError,
    JobEvent,
    JobFinishedError,
    JobNotFoundError,
    JobQueue,
    JobState,
    NewJob,
    QueueUnavailableError,
)
from ...settings import Settings
from ...tasks import TASKS, UnknownTaskError, prepare
{%- if cookiecutter.use_tracing %}
from ...tracing import caller_context, enqueue_span
{%- endif %}
from ..deps import QueueDep, SettingsDep, StreamSlotsDep
from ..json_body import StrictJsonRoute
from ..schemas import (
    JOB_ID_PATTERN,
    BatchAccepted,
    BatchRequest,
    EnqueueRequest,
    EventOut,
    JobAccepted,
    JobOut,
)
from ..streams import SlotStream

router = APIRouter(prefix="/jobs", tags=["jobs"], route_class=StrictJsonRoute)

JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="The job id from POST /jobs.")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Repeat a request safely: the same key and body return the same job.",
    ),
]

STREAM_ID_PART_MAX = 2**64 - 1


def stream_id(value: str | None) -> str | None:
    """A Redis stream id: both parts fit 64 bits unsigned. One past it would pass the pattern,
    fail in Redis and end the stream at once: a browser would reconnect in a loop."""
    if value is not None and any(int(part) > STREAM_ID_PART_MAX for part in value.split("-")):
        raise ValueError(f"each part of an event id is at most {STREAM_ID_PART_MAX}")
    return value


LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        pattern=r"^[0-9]{1,20}-[0-9]{1,20}$",
        description="Resume after this event (browsers send it when they reconnect).",
    ),
    AfterValidator(stream_id),
]

UNAVAILABLE = {"description": "Redis is unavailable; retry later"}
NOT_FOUND = {"description": "Unknown job, or its record has expired"}


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
    """What travels with a job into its worker: the request id{% if cookiecutter.use_tracing %} and the caller's trace context{% endif %}."""
    meta: dict[str, str] = {}
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        meta["request_id"] = request_id
{%- if cookiecutter.use_tracing %}
    meta.update(caller_context(request.headers))
{%- endif %}
    return meta


async def found(queue: JobQueue, job_id: str) -> JobOut:
    record = await queue.get(job_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id!r} not found")
    return JobOut.from_record(record)


async def submit(
    queue: JobQueue,
    settings: Settings,
    task_name: str,
    raw_args: Mapping[str, Any],
    *,
    job_id: str | None = None,
    defer: float | None = None,
    idempotency_key: str | None = None,
    meta: dict[str, str] | None = None,
) -> tuple[Enqueued, str]:
    """Validate a task's arguments and queue the job on its task's queue: POST /jobs, and the
    replay of a dead letter. Returns the job and its queue; bad input raises a 4xx."""
    try:
        kwargs = prepare(TASKS, task_name, raw_args)
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
        canonical = json.dumps([task_name, kwargs, job_id, defer], sort_keys=True)
        fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
        idempotency = Idempotency(idempotency_key, fingerprint, settings.idempotency_window)
    queue_name = settings.queue_for(TASKS[task_name].queue)
    meta = meta or {}

    async def put() -> Enqueued:
        return await queue.enqueue(
            task_name,
            kwargs,
            queue=queue_name,
            job_id=job_id,
            idempotency=idempotency,
            defer=defer or 0,
            meta=meta,
        )

    try:
{%- if cookiecutter.use_tracing %}
        with enqueue_span(task_name, queue_name, meta):  # puts its trace context into meta
            enqueued = await put()
{%- else %}
        enqueued = await put()
{%- endif %}
    except (DuplicateJobError, IdempotencyConflictError) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
{%- if cookiecutter.use_metrics %}
    if enqueued.created:
        JOBS_ENQUEUED.labels(task_name).inc()
{%- endif %}
    return enqueued, queue_name


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        status.HTTP_200_OK: {"description": "Replayed: this Idempotency-Key's earlier job"},
        status.HTTP_409_CONFLICT: {"description": "job_id taken, or Idempotency-Key reused"},
        status.HTTP_503_SERVICE_UNAVAILABLE: UNAVAILABLE,
    },
)
async def enqueue(
    body: EnqueueRequest,
    queue: QueueDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> JobAccepted:
    """Validate the task's arguments, queue the job, and point to it (`Location`)."""
    enqueued, queue_name = await submit(
        queue,
        settings,
        body.task,
        body.args,
        job_id=body.job_id,
        defer=body.defer_seconds,
        idempotency_key=idempotency_key,
        meta=job_meta(request),
    )
    url = job_url(request, enqueued.job_id)
    response.headers["Location"] = url
    state = JobState.DEFERRED if body.defer_seconds else JobState.QUEUED
    if not enqueued.created:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
        state = (await found(queue, enqueued.job_id)).state  # where the earlier job is now
    return JobAccepted(id=enqueued.job_id, task=body.task, state=state, queue=queue_name, url=url)


@router.post(
    "/batch",
    status_code=status.HTTP_202_ACCEPTED,
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: UNAVAILABLE},
)
async def enqueue_batch(
    body: BatchRequest, queue: QueueDep, settings: SettingsDep, request: Request
) -> BatchAccepted:
    """Queue up to 1,000 jobs in one request and one Redis round trip: all of them or, if any
    job's task or arguments are invalid (a 422 naming it), none.

    Every job gets a new id: a batch is not deduplicated, and sending it twice queues it twice.
    Where each job must run once, use POST /jobs with an Idempotency-Key or your own job_id.
    """
    jobs: list[NewJob] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(body.jobs):
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
        jobs.append(NewJob(item.task, kwargs, settings.queue_for(TASKS[item.task].queue)))
    if errors:
        raise RequestValidationError(errors)
    meta = job_meta(request)
{%- if cookiecutter.use_tracing %}
    with enqueue_span("batch", ",".join(sorted({job.queue for job in jobs})), meta):
        ids = await queue.enqueue_many(jobs, meta)
{%- else %}
    ids = await queue.enqueue_many(jobs, meta)
{%- endif %}
{%- if cookiecutter.use_metrics %}
    for job in jobs:
        JOBS_ENQUEUED.labels(job.task).inc()
{%- endif %}
    return BatchAccepted(
        jobs=[
            JobAccepted(
                id=job_id,
                task=job.task,
                state=JobState.QUEUED,
                queue=job.queue,
                url=job_url(request, job_id),
            )
            for job_id, job in zip(ids, jobs, strict=True)
        ]
    )


@router.get(
    "/{job_id}",
    responses={
        status.HTTP_404_NOT_FOUND: NOT_FOUND,
        status.HTTP_503_SERVICE_UNAVAILABLE: UNAVAILABLE,
    },
)
async def get_job(job_id: JobId, queue: QueueDep) -> JobOut:
    return await found(queue, job_id)


@router.post(
    "/{job_id}/cancel",
    responses={
        status.HTTP_202_ACCEPTED: {"description": "Running: its worker is stopping it"},
        status.HTTP_404_NOT_FOUND: NOT_FOUND,
        status.HTTP_409_CONFLICT: {"description": "The job has already finished"},
        status.HTTP_503_SERVICE_UNAVAILABLE: UNAVAILABLE,
    },
)
async def cancel_job(job_id: JobId, queue: QueueDep, response: Response) -> JobOut:
    """A queued job never starts (200, cancelled); a running one is stopped by its worker (202)."""
    try:
        record = await queue.cancel(job_id)
    except JobNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except JobFinishedError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    if not record.state.finished:
        response.status_code = status.HTTP_202_ACCEPTED
    return JobOut.from_record(record)


@router.get(
    "/{job_id}/events",
    responses={
        status.HTTP_404_NOT_FOUND: NOT_FOUND,
        status.HTTP_503_SERVICE_UNAVAILABLE: UNAVAILABLE,
    },
)
async def list_events(job_id: JobId, queue: QueueDep) -> list[EventOut]:
    """The job's state changes and progress reports so far, oldest first."""
    await found(queue, job_id)
    return [EventOut.from_event(event) for event in await queue.events(job_id)]


def sse(event: JobEvent) -> str:
    data = EventOut.from_event(event).model_dump_json(exclude_none=True)
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n"


@router.get(
    "/{job_id}/stream",
    response_class=StreamingResponse,
    responses={
        status.HTTP_200_OK: {"content": {"text/event-stream": {}}},
        status.HTTP_404_NOT_FOUND: NOT_FOUND,
        status.HTTP_503_SERVICE_UNAVAILABLE: {
            "description": "Redis is unavailable, or this server serves MAX_STREAMS streams "
            "already; retry after Retry-After"
        },
    },
)
async def stream_events(
    job_id: JobId,
    queue: QueueDep,
    settings: SettingsDep,
    slots: StreamSlotsDep,
    request: Request,
    last_event_id: LastEventId = None,
) -> StreamingResponse:
    """Server-Sent Events: the events so far, then live ones, until the job ends.

    Any web replica serves any job (the events live in Redis; the streams of one process share
    one Redis reader). Comment lines (`: ping`) keep idle connections open through proxies.
    """
    slot = slots.take()  # first: a refused stream costs Redis nothing
    try:
        await found(queue, job_id)
    except BaseException:
        slot.release()
        raise

    async def events() -> AsyncIterator[str]:
        after = last_event_id or "0-0"
        try:
            batch = await queue.events(job_id, after=last_event_id)
            while True:
                for event in batch:
                    yield sse(event)
                    after = event.id
                    if event.state is not None and event.state.finished:
                        return
                if await request.is_disconnected():
                    return
                batch = await queue.events(job_id, after=after, wait=settings.stream_ping_interval)
                if not batch:
                    record = await queue.get(job_id)
                    if record is None or record.state.finished:
                        # Finished without a new event here (e.g. a timeout): one last look.
                        batch = await queue.events(job_id, after=after)
                        for event in batch:
                            yield sse(event)
                        return
                    yield ": ping\n\n"
        except QueueUnavailableError:
            return  # the client reconnects with Last-Event-ID and resumes
        except JobNotFoundError:
            return  # no events of a job under this id (its key holds something else)

    return SlotStream(
        events(),
        slot,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
