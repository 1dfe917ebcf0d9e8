"""Dead letters: jobs that failed for good. List them, look at one, replay it as a new job, or
forget them."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status

from ...queue import JobState
from ..deps import AdminDep, QueueDep, SettingsDep
from ..json_body import StrictJsonRoute
from ..schemas import (
    JOB_ID_PATTERN,
    MAX_OFFSET,
    UNAVAILABLE,
    DeadLetterOut,
    DeadLetterPageOut,
    JobAccepted,
    PurgedOut,
)
from ..submission import job_meta, job_url, submit

router = APIRouter(prefix="/dead-letters", tags=["dead letters"], route_class=StrictJsonRoute)

LetterId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="The failed job's id.")]
NOT_FOUND = {"description": "No dead letter for this job"}


@router.get("", responses={status.HTTP_503_SERVICE_UNAVAILABLE: UNAVAILABLE})
async def list_dead_letters(
    admin: AdminDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> DeadLetterPageOut:
    """Newest first; `total` counts every letter kept."""
    page = await admin.dead_letters(limit, offset)
    return DeadLetterPageOut(
        total=page.total, letters=[DeadLetterOut.from_letter(letter) for letter in page.letters]
    )


@router.get(
    "/{job_id}",
    responses={
        status.HTTP_404_NOT_FOUND: NOT_FOUND,
        status.HTTP_503_SERVICE_UNAVAILABLE: UNAVAILABLE,
    },
)
async def get_dead_letter(job_id: LetterId, admin: AdminDep) -> DeadLetterOut:
    letter = await admin.dead_letter(job_id)
    if letter is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dead letter for job {job_id!r}")
    return DeadLetterOut.from_letter(letter)


@router.post(
    "/{job_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        status.HTTP_404_NOT_FOUND: NOT_FOUND,
        422: {  # (starlette renamed the constant; the number is stable)
            "description": "The task no longer exists or no longer takes these arguments"
        },
        status.HTTP_503_SERVICE_UNAVAILABLE: UNAVAILABLE,
    },
)
async def replay_dead_letter(
    job_id: LetterId,
    admin: AdminDep,
    job_queue: QueueDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
) -> JobAccepted:
    """Queue the failed job again as a NEW job (`Location`), then drop the letter.

    The arguments are validated as on POST /jobs: if the task changed since, this is a 422 and the
    letter stays.
    """
    letter = await admin.dead_letter(job_id)  # its arguments whole, redacted ones included
    if letter is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dead letter for job {job_id!r}")
    enqueued, queue_name = await submit(
        job_queue,
        settings,
        letter.task,
        letter.kwargs,
        meta=job_meta(request),
        internal=True,  # a webhook's delivery is replayed like any job
    )
    # Redis gone here: 503, the new job is queued and the letter stays, visibly.
    await admin.remove_dead_letter(job_id)
    url = job_url(request, enqueued.job_id)
    response.headers["Location"] = url
    return JobAccepted(
        id=enqueued.job_id, task=letter.task, state=JobState.QUEUED, queue=queue_name, url=url
    )


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        status.HTTP_404_NOT_FOUND: NOT_FOUND,
        status.HTTP_503_SERVICE_UNAVAILABLE: UNAVAILABLE,
    },
)
async def delete_dead_letter(job_id: LetterId, admin: AdminDep) -> None:
    removed = await admin.remove_dead_letter(job_id)
    if not removed:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dead letter for job {job_id!r}")


@router.delete("", responses={status.HTTP_503_SERVICE_UNAVAILABLE: UNAVAILABLE})
async def purge_dead_letters(admin: AdminDep) -> PurgedOut:
    """Forget every dead letter."""
    return PurgedOut(purged=await admin.purge_dead_letters())
