"""How the worker runs a task: the job's record kept up to date around the call, progress and
cancellation helpers in ctx, the task's retry policy, and a dead letter when a job fails for good.

arq itself retries only on `Retry`: a plain exception or a timeout fails the job at once, and a job
whose every start was cut off (crash, shutdown) ends as a bare "max retries exceeded" that never
reaches the task. So the worker registers each task with one start more than its tries (see
worker.settings), and this wrapper decides: retry with backoff, or fail and keep a dead letter.
"""

import asyncio
import traceback
from datetime import UTC, datetime
from functools import partial
from typing import Any

import structlog
from arq.worker import Retry

from ..queue import DeadLetter, JobCancelledError, JobError, JobRecorder, JobState
from ..queue.base import JOB_META
from ..queue.serializer import RemoteError
from ..settings import Settings
from ..tasks import Context, Task, scrub, secrets_of
{%- if cookiecutter.use_tracing %}
from ..tracing import job_span
{%- endif %}


class TriesExhaustedError(Exception):
    """Every start of the job was cut off (its worker stopped or died) before it finished."""


class ScrubbedError(RemoteError):
    """A task's failure with its redacted arguments taken out: what the worker raises to arq
    (which stores and logs it) in place of the exception itself."""


def scrubbed(exc: BaseException, message: str, secrets: tuple[str, ...]) -> ScrubbedError:
    text = scrub("".join(traceback.format_exception(exc)), secrets)
    error = ScrubbedError(type(exc).__name__, message, text)
    # Logs and spans print the notes of an exception: where the task failed, redacted.
    error.add_note(f"The task's own traceback, redacted:\n{text.rstrip()}")
    return error


def max_tries(task: Task, settings: Settings) -> int:
    return task.max_tries or settings.job_max_tries


def timeout(task: Task, settings: Settings) -> float:
    if task.timeout is not None:
        return task.timeout
    return settings.bulk_job_timeout if task.queue == "bulk" else settings.job_timeout


def job_function(task: Task) -> Any:
    """The coroutine arq runs for `task`: the task itself, with its record kept in the ledger."""

    async def run(ctx: Context, **kwargs: Any) -> Any:
        meta: dict[str, str] = kwargs.pop(JOB_META, None) or {}
        # Every log line of this job, ours, the task's and arq's, carries these.
        log_context = structlog.contextvars.bound_contextvars(
            job_id=ctx["job_id"],
            task=task.name,
            job_try=ctx["job_try"],
            queue=ctx["queue_name"],
            request_id=meta.get("request_id"),
        )
        with log_context{% if cookiecutter.use_tracing %}, job_span(task.name, ctx, meta){% endif %}:
            return await execute(ctx, kwargs)

    async def execute(ctx: Context, kwargs: dict[str, Any]) -> Any:
        recorder: JobRecorder = ctx["ledger"]
        settings: Settings = ctx["settings"]
        job_id: str = ctx["job_id"]
        job_try: int = ctx["job_try"]
        tries = max_tries(task, settings)

        async def fail(error: JobError) -> None:
            await recorder.finished(job_id, JobState.FAILED, error=error)
            enqueued = ctx.get("enqueue_time")
            await recorder.add_dead_letter(
                DeadLetter(
                    job_id=job_id,
                    task=task.name,
                    queue=ctx["queue_name"],
                    kwargs=kwargs,
                    error=error,
                    tries=min(job_try, tries),
                    enqueued_at=enqueued if isinstance(enqueued, datetime) else None,
                    failed_at=datetime.now(tz=UTC),
                )
            )

        if job_try > tries:
            message = f"started {tries} times, never finished (its worker stopped or died)"
            await fail(JobError(TriesExhaustedError.__name__, message))
            raise TriesExhaustedError(message)

        enqueued = ctx.get("enqueue_time")
        await recorder.started(
            job_id,
            task.name,
            ctx["queue_name"],
            job_try,
            enqueued if isinstance(enqueued, datetime) else None,
        )
        ctx["progress"] = partial(recorder.progress, job_id)
        ctx["cancel_requested"] = partial(recorder.cancel_requested, job_id)
        limit = timeout(task, settings)
        failure: ScrubbedError | None = None
        try:
            # Our own deadline, just inside arq's, so that a timeout can be retried by policy.
            async with asyncio.timeout(limit) as deadline:
                result = await task.function(ctx, **kwargs)
        except JobCancelledError:
            await recorder.finished(job_id, JobState.CANCELLED)
            return None
        except asyncio.CancelledError:
            # An abort (cancel requested) is final; a shutdown re-queues the job and its next
            # start updates the record.
            if await asyncio.shield(recorder.cancel_requested(job_id)):
                await asyncio.shield(recorder.finished(job_id, JobState.CANCELLED))
            raise
        except Retry:
            raise  # the task asked for it; arq runs it again and the next start updates the record
        except Exception as exc:
            timed_out = deadline.expired()
            # Redacted arguments never leave the worker, not even quoted by an error message
            # (httpx quotes a header it refuses): the record, events, dead letter, and what arq
            # stores and logs (the scrubbed error and traceback instead of the exception, whose
            # chain and frames hold them), and with it the job's span.
            secrets = secrets_of(task, kwargs)
            error = (
                JobError("TimeoutError", f"timed out after {limit:g} s")
                if timed_out
                else JobError(type(exc).__name__, scrub(str(exc), secrets))
            )
            shown = scrubbed(exc, error.message, secrets) if secrets else None
            if job_try < tries and task.retry.applies(exc, timed_out=timed_out):
                delay = task.retry.delay(job_try)
                await recorder.retrying(job_id, error, delay)
                raise Retry(defer=delay) from (shown or exc)
            await fail(error)
            if shown is None:
                raise
            failure = shown  # raised below, outside this block: no trace of `exc` as its context
        if failure is not None:
            raise failure
        await recorder.finished(job_id, JobState.SUCCEEDED, result=result)
        return result

    run.__name__ = run.__qualname__ = task.name
    return run
