"""The transactional outbox: a job enqueued with a database write, or not at all.

Redis and PostgreSQL cannot commit together. Enqueue before the commit, and a rollback leaves a
job about a row that never existed; enqueue after it, and a crash between the two loses the job
for a row that does. So the job is written as a row of `outbox` inside the transaction that wants
it (`stage_job`): it exists exactly when the write does. `relay` then hands outbox rows to the
queue and deletes them. The web relays its own row right after the commit (the job starts at
once); every worker relays what is left (`relay_forever`: a web that died after its commit, or
Redis down at the time), each row locked by one relay at a time (FOR UPDATE SKIP LOCKED).

A row can be enqueued twice: a relay that enqueued it and died before its delete commits. The
job id is the row's, so the second enqueue finds the job there (DuplicateJobError) and only
deletes the row: the job runs once (while the job's record lasts, JOB_RETENTION).

A row the queue refuses for another reason than an outage (a bug: its arguments were validated
before they were staged) is tried MAX_ATTEMPTS times, then left out of the relays' claims with its
error in `last_error`, for an operator: it never holds up the rows behind it.
"""

import asyncio
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..queue import DuplicateJobError, JobQueue, QueueUnavailableError
from ..queue.shards import BULK_ID_PREFIX
from ..settings import QueueKey, Settings
from .engine import Database, unavailable
from .models import OutboxJob

log = logging.getLogger(__name__)

BATCH = 100
"""Rows one relay pass takes (a pass with a full batch is followed by another at once)."""
POLL_SECONDS = 1.0
"""How often a worker looks for rows left behind; the web's own relay needs no poll."""
BACKOFF_SECONDS = 5.0
"""The wait after a pass that failed (database or Redis down), before the next."""
MAX_ATTEMPTS = 5
"""Relays of a row the queue refuses (not an outage) before it is left for an operator."""


def stage_job(
    session: AsyncSession,
    settings: Settings,
    task: str,
    kwargs: Mapping[str, Any],
    queue: QueueKey,
    meta: Mapping[str, str] | None = None,
) -> str:
    """Add a job to the session's transaction and return its id. `kwargs` are the task's validated
    arguments (tasks.prepare), `queue` its task's queue. Nothing is enqueued until the transaction
    commits and a relay runs."""
    # A bulk job's id says so: with BULK_REDIS_URL, that is how its server is found (shards).
    job_id = (BULK_ID_PREFIX if queue == "bulk" else "") + uuid.uuid4().hex
    session.add(
        OutboxJob(
            job_id=job_id,
            task=task,
            queue_name=settings.queue_for(queue),
            kwargs=dict(kwargs),
            meta=dict(meta or {}),
        )
    )
    return job_id


async def relay(database: Database, queue: JobQueue, only: str | None = None) -> int:
    """Hand outbox rows to the queue, oldest first (at most BATCH; the row of job `only`, if
    given), and delete them in the same transaction. Returns how many rows it claimed.

    A row whose enqueue fails for another reason than an outage counts an attempt (see
    MAX_ATTEMPTS); an outage ends the pass, keeping the deletes of the rows already enqueued.
    """
    async with database.session() as session, session.begin():
        claim = (
            select(OutboxJob)
            .where(OutboxJob.attempts < MAX_ATTEMPTS)
            .order_by(OutboxJob.created_at)
            .limit(BATCH)
        )
        if only is not None:
            claim = claim.where(OutboxJob.job_id == only)
        rows = (await session.scalars(claim.with_for_update(skip_locked=True))).all()
        for row in rows:
            try:
                await queue.enqueue(
                    row.task,
                    row.kwargs,
                    queue_name=row.queue_name,
                    job_id=row.job_id,
                    meta=row.meta,
                )
            except DuplicateJobError:
                pass  # enqueued by a relay whose delete was lost: the job is there already
            except QueueUnavailableError:
                break
            except Exception as exc:
                row.attempts += 1
                row.last_error = f"{type(exc).__name__}: {exc}"[:1000]
                left = row.attempts >= MAX_ATTEMPTS
                log.error(
                    "outbox job %s (%s) refused by the queue (%s)%s",
                    row.job_id,
                    row.task,
                    row.last_error,
                    ": left in the outbox for an operator" if left else "; tried again later",
                )
                continue
            await session.delete(row)
    return len(rows)


async def relay_forever(database: Database, queue: JobQueue) -> None:
    """A worker's relay: pass after pass until cancelled, quickly while rows keep coming, every
    POLL_SECONDS when the outbox is empty, after BACKOFF_SECONDS when a pass failed."""
    while True:
        try:
            claimed = await relay(database, queue)
        except Exception as exc:
            if not unavailable(exc):
                log.exception("outbox relay pass failed")
            else:
                log.warning("outbox relay: database unavailable (%s)", type(exc).__name__)
            await asyncio.sleep(BACKOFF_SECONDS)
            continue
        if claimed < BATCH:
            await asyncio.sleep(POLL_SECONDS)
