"""How the worker runs a task: it keeps the job's ledger record up to date around the call and
gives the task its progress and cancellation helpers in ctx."""

import asyncio
from functools import partial
from typing import Any

from arq.worker import Retry

from ..queue import JobCancelledError, JobError, JobState
from ..queue.ledger import Ledger
from ..tasks import Context, Task


def job_function(task: Task) -> Any:
    """The coroutine arq runs for `task`: the task itself, with its record kept in the ledger."""

    async def run(ctx: Context, **kwargs: Any) -> Any:
        ledger: Ledger = ctx["ledger"]
        job_id: str = ctx["job_id"]
        await ledger.started(job_id, task.name, ctx["queue_name"], ctx["job_try"])
        ctx["progress"] = partial(ledger.progress, job_id)
        ctx["cancel_requested"] = partial(ledger.cancel_requested, job_id)
        try:
            result = await task.function(ctx, **kwargs)
        except JobCancelledError:
            await ledger.finished(job_id, JobState.CANCELLED)
            return None
        except asyncio.CancelledError:
            # An abort (cancel requested) is final; a timeout or a shutdown re-queue is told
            # apart later from arq's own result (see queue.arq).
            if await asyncio.shield(ledger.cancel_requested(job_id)):
                await asyncio.shield(ledger.finished(job_id, JobState.CANCELLED))
            raise
        except Retry:
            raise  # arq runs it again; the next start updates the record
        except Exception as exc:
            error = JobError(type(exc).__name__, str(exc))
            await ledger.finished(job_id, JobState.FAILED, error=error)
            raise
        await ledger.finished(job_id, JobState.SUCCEEDED, result=result)
        return result

    run.__name__ = run.__qualname__ = task.name
    return run
