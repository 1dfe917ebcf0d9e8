"""Enqueue a task and read a job."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from ...queue import DuplicateJobError, JobState, QueueUnavailableError
from ...tasks import TASKS, UnknownTaskError, prepare
from ..deps import QueueDep
from ..schemas import JOB_ID_PATTERN, EnqueueRequest, JobAccepted, JobOut

router = APIRouter(prefix="/jobs", tags=["jobs"])

JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="The job id from POST /jobs.")]

UNAVAILABLE = {"description": "Redis is unavailable; retry later"}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        status.HTTP_409_CONFLICT: {"description": "A job with this job_id exists"},
        status.HTTP_503_SERVICE_UNAVAILABLE: UNAVAILABLE,
    },
)
async def enqueue(
    body: EnqueueRequest, queue: QueueDep, request: Request, response: Response
) -> JobAccepted:
    """Validate the task's arguments, queue the job, and point to it (`Location`)."""
    try:
        kwargs = prepare(TASKS, body.task, body.args)
    except UnknownTaskError as exc:
        raise RequestValidationError(
            [{"type": "unknown_task", "loc": ("body", "task"), "msg": str(exc), "input": body.task}]
        ) from exc
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", "args", *error["loc"])} for error in exc.errors()]
        ) from exc
    try:
        job_id = await queue.enqueue(body.task, kwargs, job_id=body.job_id)
    except DuplicateJobError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except QueueUnavailableError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "queue unavailable", headers={"Retry-After": "5"}
        ) from exc
    url = str(request.url_for("get_job", job_id=job_id).path)
    response.headers["Location"] = url
    return JobAccepted(id=job_id, task=body.task, state=JobState.QUEUED, url=url)


@router.get(
    "/{job_id}",
    responses={
        status.HTTP_404_NOT_FOUND: {"description": "Unknown job, or its result has expired"},
        status.HTTP_503_SERVICE_UNAVAILABLE: UNAVAILABLE,
    },
)
async def get_job(job_id: JobId, queue: QueueDep) -> JobOut:
    try:
        record = await queue.get(job_id)
    except QueueUnavailableError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "queue unavailable", headers={"Retry-After": "5"}
        ) from exc
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id!r} not found")
    return JobOut.from_record(record)
