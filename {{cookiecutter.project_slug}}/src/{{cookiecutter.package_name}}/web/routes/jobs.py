"""Jobs: enqueue (with idempotency), read, cancel, list events, stream events (SSE)."""

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, HTTPException, Request, Response, params, status
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator

from ...queue import (
    JobEvent,
    JobFinishedError,
    JobNotFoundError,
    JobQueue,
    JobState,
    QueueUnavailableError,
    first_state,
)
from ..deps import QueueDep, SettingsDep, StreamSlotsDep, queue_of, settings_of
from ..json_body import StrictJsonRoute
from ..lean_route import EnqueueRoute
from ..schemas import (
    UNAVAILABLE,
    BatchAccepted,
    BatchRequest,
    EnqueueRequest,
    EventOut,
    JobAccepted,
    JobId,
    JobOut,
)
from ..streams import SlotStream
from ..submission import job_meta, job_url, submit, submit_batch

router = APIRouter(prefix="/jobs", tags=["jobs"], route_class=StrictJsonRoute)

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

NOT_FOUND = {"description": "Unknown job, or its record has expired"}


async def found(job_queue: JobQueue, job_id: str) -> JobOut:
    record = await job_queue.get(job_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id!r} not found")
    return JobOut.from_record(record)


async def enqueue(
    body: EnqueueRequest,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Validate the task's arguments, queue the job, and point to it (`Location`)."""
    job_queue, settings = queue_of(request), settings_of(request)  # (not Depends: deps.py)
    enqueued, queue_name = await submit(
        job_queue,
        settings,
        body.task,
        body.args,
        job_id=body.job_id,
        defer=body.defer_seconds,
        idempotency_key=idempotency_key,
        meta=job_meta(request),
        callback_url=body.callback_url,
        after=body.after,
    )
    url = job_url(request, enqueued.job_id)
    headers = {"Location": url}
    code, state = status.HTTP_202_ACCEPTED, first_state(body.defer_seconds)
    if body.after:
        state = JobState.DEFERRED  # (until its parents let it start: queue.dependencies)
    if not enqueued.created:
        code = status.HTTP_200_OK
        headers["Idempotent-Replayed"] = "true"
        state = (await found(job_queue, enqueued.job_id)).state  # where the earlier job is now
    accepted = JobAccepted(
        id=enqueued.job_id, task=body.task, state=state, queue=queue_name, url=url
    )
    # The answer built here, not returned as the model: FastAPI would validate and encode again
    # the model it was just given, on the path every job takes (response_model keeps the docs).
    return Response(
        accepted.model_dump_json(), code, headers=headers, media_type="application/json"
    )


ENQUEUE_ROUTE: dict[str, Any] = {
    "methods": ["POST"],
    "status_code": status.HTTP_202_ACCEPTED,
    "response_model": JobAccepted,
    "responses": {
        status.HTTP_200_OK: {"description": "Replayed: this Idempotency-Key's earlier job"},
        status.HTTP_409_CONFLICT: {"description": "job_id taken, or Idempotency-Key reused"},
        status.HTTP_503_SERVICE_UNAVAILABLE: UNAVAILABLE,
    },
}


def add_enqueue_route(app: FastAPI, guards: list[params.Depends]) -> None:
    """POST /jobs on the app itself, ahead of the routers: a request is matched against one
    route, not through an included router (FastAPI matches those twice, route by route), as the
    same route it would be in `router` (path, tags, guards, strict JSON; the same OpenAPI)."""
    app.router.add_api_route(
        router.prefix,
        enqueue,
        tags=list(router.tags),
        dependencies=guards,
        route_class_override=EnqueueRoute,
        **ENQUEUE_ROUTE,
    )


@router.post(
    "/batch",
    status_code=status.HTTP_202_ACCEPTED,
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: UNAVAILABLE},
)
async def enqueue_batch(
    body: BatchRequest, job_queue: QueueDep, settings: SettingsDep, request: Request
) -> BatchAccepted:
    """Queue up to 1,000 jobs in one request and one Redis round trip: all of them or, if any
    job's task or arguments are invalid (a 422 naming it), none.

    Every job gets a new id: a batch is not deduplicated, and sending it twice queues it twice.
    Where each job must run once, use POST /jobs with an Idempotency-Key or your own job_id.

    A job may run `after` earlier jobs of the batch, named by their `ref`, or existing jobs by
    id: a chain, or a fan-out and its join, in one request.
    """
    ids, jobs = await submit_batch(job_queue, settings, body.jobs, job_meta(request))
    return BatchAccepted(
        jobs=[
            JobAccepted(
                id=job_id,
                task=job.task,
                state=JobState.DEFERRED if job.after else JobState.QUEUED,
                queue=job.queue_name,
                url=job_url(request, job_id),
                ref=item.ref,
            )
            for job_id, job, item in zip(ids, jobs, body.jobs, strict=True)
        ]
    )


@router.get(
    "/{job_id}",
    responses={
        status.HTTP_404_NOT_FOUND: NOT_FOUND,
        status.HTTP_503_SERVICE_UNAVAILABLE: UNAVAILABLE,
    },
)
async def get_job(job_id: JobId, job_queue: QueueDep) -> JobOut:
    return await found(job_queue, job_id)


@router.post(
    "/{job_id}/cancel",
    responses={
        status.HTTP_202_ACCEPTED: {"description": "Running: its worker is stopping it"},
        status.HTTP_404_NOT_FOUND: NOT_FOUND,
        status.HTTP_409_CONFLICT: {"description": "The job has already finished"},
        status.HTTP_503_SERVICE_UNAVAILABLE: UNAVAILABLE,
    },
)
async def cancel_job(job_id: JobId, job_queue: QueueDep, response: Response) -> JobOut:
    """A queued job never starts (200, cancelled); a running one is stopped by its worker (202)."""
    try:
        record = await job_queue.cancel(job_id)
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
async def list_events(job_id: JobId, job_queue: QueueDep) -> list[EventOut]:
    """The job's state changes and progress reports so far, oldest first."""
    await found(job_queue, job_id)
    return [EventOut.from_event(event) for event in await job_queue.events(job_id)]


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
    job_queue: QueueDep,
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
        await found(job_queue, job_id)
    except BaseException:
        slot.release()
        raise

    async def events() -> AsyncIterator[str]:
        after = last_event_id or "0-0"
        try:
            batch = await job_queue.events(job_id, after=last_event_id)
            while True:
                for event in batch:
                    yield sse(event)
                    after = event.id
                    if event.state is not None and event.state.finished:
                        return
                if await request.is_disconnected():
                    return
                batch = await job_queue.events(
                    job_id, after=after, wait=settings.stream_ping_interval
                )
                if not batch:
                    record = await job_queue.get(job_id)
                    if record is None or record.state.finished:
                        # Finished without a new event here (e.g. a timeout): one last look.
                        batch = await job_queue.events(job_id, after=after)
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
