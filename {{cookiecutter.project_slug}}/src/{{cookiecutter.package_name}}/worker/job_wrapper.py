"""How the worker runs a task: the job's record kept up to date around the call, progress and
cancellation helpers in ctx, the task's retry policy, and a dead letter when a job fails for good.

arq itself retries only on `Retry`: a plain exception or a timeout fails the job at once, and a job
whose every start was cut off (crash, shutdown) ends as a bare "max retries exceeded" that never
reaches the task. So the worker registers each task with one start more than its tries (see
worker.options), and this wrapper decides: retry with backoff, or fail and keep a dead letter.

When Redis fails a write of the record (an outage past redis-py's retries, a full memory), the
try ends and arq runs the job again once Redis is back: at least once, never lost, never left
"in progress". Progress and cancel checks are the task's, mid-work: those fail softly instead.
"""

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import structlog
from arq.worker import Retry

from ..json_values import first_unencodable, printable
from ..queue import (
    DeadLetter,
    JobCancelledError,
    JobError,
    JobRecorder,
    JobState,
    TaskLimits,
)
from ..queue.base import JOB_META
from ..queue.deliveries import Delivery, delivery_id
from ..queue.dependencies import doomed_by
from ..queue.serializer import RemoteError
from ..queue.unavailable import unavailable
from ..reporting import job_scope, report_job_failure
from ..settings import Settings
from ..spans import job_span
from ..storage import job_session
from ..tasks import Context, Task, scrub, secrets_of
from ..webhooks import event_body
from .outage import REDIS_ERRORS, Backoff

log = logging.getLogger(__name__)
T = TypeVar("T")


class UnencodableResultError(Exception):
    """The task returned a value JSON cannot carry (NaN, an infinity, a lone surrogate, an integer
    past 64 bits): stored, it would make every read of the job fail."""


class TriesExhaustedError(Exception):
    """Every start of the job was cut off (its worker stopped or died) before it finished."""


class ScrubbedError(RemoteError):
    """A task's failure with its redacted arguments taken out: what the worker raises to arq
    (which stores and logs it) in place of the exception itself."""


def error_message(exc: BaseException, secrets: tuple[str, ...]) -> str:
    """The failure's message without any redacted value, whole or in part. An encoding error
    names the character it met and where: of a redacted value, that is a piece of it."""
    if isinstance(exc, UnicodeError) and secrets:
        part = getattr(exc, "object", None)
        text = part if isinstance(part, str) else ""
        if isinstance(part, bytes | bytearray):
            text = bytes(part).decode("utf-8", "replace")
        if any(secret in text for secret in secrets):
            verb = "decoded" if isinstance(exc, UnicodeDecodeError) else "encoded"
            encoding, reason = getattr(exc, "encoding", "?"), getattr(exc, "reason", "")
            return f"a redacted value could not be {verb} as {encoding}: {reason}"
    return printable(scrub(str(exc), secrets))


def scrubbed(exc: BaseException, message: str, secrets: tuple[str, ...]) -> ScrubbedError:
    # The exception's own line says what `message` says, redacted its way (error_message).
    whole = "".join(traceback.format_exception(exc)).replace(str(exc), message)
    text = printable(scrub(whole, secrets))
    error = ScrubbedError(type(exc).__name__, message, text)
    # Logs and spans print the notes of an exception: where the task failed, redacted.
    error.add_note(f"The task's own traceback, redacted:\n{text.rstrip()}")
    return error


TIMEOUT_BACKSTOP = 1.0
"""arq's timeout is the job wrapper's deadline plus this: the wrapper's fires first, and can
retry."""

OUTAGE_RETRY_DELAY = 1.0
"""Seconds after Redis takes its re-queue that a job cut off by an outage runs again. Not zero:
re-queueing then writes the queue (ZINCRBY), which waits for the outage's end (worker.process), so
a full Redis, which still lets a job go back (DEL), cannot spin it through all its tries."""

SOFT_WAIT = 1.0
"""Seconds a task's progress report or cancel check may wait for Redis (then it gives up)."""


WORKER_STOPPED = JobError(
    "WorkerStopped", "its worker stopped before the job ended; queued again for another try"
)


class RecordUnavailableError(Exception):
    """Redis did not take a write of the job's record in time: the try ends, the job runs again."""


class RecordKeeper:
    """The worker's JobRecorder, for one try: every write ends by `until` (loop time), before
    arq's own timeout would fail the job, and a Redis outage (or a stall past `until`) becomes
    RecordUnavailableError, which no task handler below mistakes for the task's own failure."""

    def __init__(self, inner: JobRecorder, until: float) -> None:
        self.inner = inner
        self.until = until

    async def _write(self, write: Callable[[], Awaitable[T]]) -> T:
        """Write, and again after a pause if Redis fails it, as long as `until` allows."""
        backoff = Backoff()
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with asyncio.timeout_at(self.until):
                    return await write()
            except REDIS_ERRORS as exc:  # (a TimeoutError is an OSError)
                if not unavailable(exc):
                    raise  # a bug: the job fails now, it does not wait out its timeout
                delay = backoff.failed()
                if loop.time() + delay >= self.until:
                    raise RecordUnavailableError(str(exc) or type(exc).__name__) from exc
                await asyncio.sleep(delay)

    async def _soft(self, call: Awaitable[T], fallback: T, lost: str) -> T:
        """For what may fail softly: wait for Redis at most SOFT_WAIT, then log `lost` and
        answer `fallback` (an outage only; a bug raises)."""
        try:
            async with asyncio.timeout(SOFT_WAIT):
                return await call
        except REDIS_ERRORS as exc:
            if not unavailable(exc):
                raise
            log.warning("%s (%s)", lost, exc)
            return fallback

    async def started(
        self,
        job_id: str,
        task: str,
        queue_name: str,
        job_try: int,
        enqueued_at: datetime | None = None,
        limits: TaskLimits | None = None,
    ) -> float | None:
        return await self._write(
            lambda: self.inner.started(job_id, task, queue_name, job_try, enqueued_at, limits)
        )

    async def inputs(self, job_id: str, parents: Sequence[str]) -> tuple[str | None, list[Any]]:
        """Read as a write is made: the job cannot start without them."""
        return await self._write(lambda: self.inner.inputs(job_id, parents))

    async def progress(self, job_id: str, percent: float, message: str = "") -> None:
        """For the task, mid-work: a progress report lost to an outage is dropped (the next one,
        or the outcome, replaces it) rather than failing the work."""
        call = self.inner.progress(job_id, percent, message)
        await self._soft(call, None, "progress not recorded; the job goes on")

    async def cancel_requested(self, job_id: str) -> bool:
        """For the task: unknown while Redis is away, so no (a cancel is seen once it is back)."""
        call = self.inner.cancel_requested(job_id)
        return await self._soft(call, False, "could not read whether a cancel was requested")

    async def retrying(self, job_id: str, error: JobError, delay: float) -> None:
        await self._write(lambda: self.inner.retrying(job_id, error, delay))

    async def finished(
        self,
        job_id: str,
        state: JobState,
        *,
        result: Any = None,
        error: JobError | None = None,
        finished_at: datetime | None = None,
    ) -> None:
        await self._write(
            lambda: self.inner.finished(
                job_id, state, result=result, error=error, finished_at=finished_at
            )
        )

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        await self._write(lambda: self.inner.add_dead_letter(letter))

    async def requeued(self, job_id: str, reason: JobError) -> None:
        """At shutdown: a note in the history, for at most SOFT_WAIT (the next start writes the
        record anyway), so a stopping worker never waits for Redis."""
        await self._soft(self.inner.requeued(job_id, reason), None, "the re-queue not recorded")


def max_tries(task: Task, settings: Settings) -> int:
    return task.max_tries or settings.job_max_tries


def timeout(task: Task, settings: Settings) -> float:
    if task.timeout is not None:
        return task.timeout
    if task.internal:
        # Served by every queue's workers: never longer than any queue's own tasks, or it would
        # lengthen that queue's crash recovery (arq re-runs a dead worker's job only after the
        # longest timeout of its tasks + 10 s: worker.options).
        return min(settings.job_timeout, settings.bulk_job_timeout)
    return settings.bulk_job_timeout if task.queue == "bulk" else settings.job_timeout


def limits_of(task: Task, settings: Settings) -> TaskLimits | None:
    """The task's limits as the ledger checks them, or None."""
    if not task.limited:
        return None
    rate = task.rate
    return TaskLimits(
        task.name,
        rate=rate.limit if rate else 0,
        per_ms=max(1, round(rate.per * 1000)) if rate else 0,
        concurrency=task.concurrency or 0,
        # A start holds its place no longer than arq lets the job run, then its claim lapses.
        hold_ms=round((timeout(task, settings) + TIMEOUT_BACKSTOP) * 1000),
    )


async def release(ctx: Context, limits: TaskLimits) -> None:
    """Give a capped job's place back; lost to an outage, it lapses with the job's longest run.
    Shielded: a worker stopping mid-job still frees its places."""
    try:
        async with asyncio.timeout(SOFT_WAIT):
            await asyncio.shield(ctx["ledger"].release(ctx["job_id"], ctx["queue_name"], limits))
    except REDIS_ERRORS as exc:
        if not unavailable(exc):
            raise
        log.warning("the job's place in its task's cap could not be given back (%s)", exc)


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
        callback = meta.get("callback_url")

        def secrets() -> tuple[str, ...]:  # (read only for an error report that is sent)
            return (*secrets_of(task, kwargs), *([callback] if callback else []))

        scope = job_scope(
            ctx["job_id"], task.name, ctx.get("queue", "default"), meta.get("request_id"), secrets
        )
        with log_context, job_span(task.name, ctx, meta), scope:
            held: list[TaskLimits] = []  # the cap this try holds a place in, once it does
            try:
                parents = tuple(meta.get("after", "").split())
                return await execute(ctx, kwargs, held, callback, parents)
            except RecordUnavailableError as exc:
                # arq re-queues the job (its end is written once Redis takes it, see
                # worker.process) and it runs again: the try counts, like one cut off by a deploy.
                log.warning("the job's record could not be written (%s); it will run again", exc)
                raise Retry(defer=OUTAGE_RETRY_DELAY) from exc
            finally:
                ctx["ledger"].forget_start(ctx["job_id"])
                for limits in held:
                    await release(ctx, limits)

    def announce(
        ctx: Context,
        callback: str | None,
        state: JobState,
        tries: int,
        *,
        result: Any = None,
        error: JobError | None = None,
    ) -> None:
        """Hand the job's webhook (its client gave a callback_url) to the worker, which queues
        its delivery with the job's end: both written, or neither (queue.deliveries)."""
        sink = ctx.get("delivery_sink")
        if callback is None or sink is None:
            return
        body = event_body(
            ctx["job_id"],
            task.name,
            state.value,
            tries=tries,
            result=result,
            error=(error.type, error.message) if error else None,
        )
        enqueued = ctx.get("enqueue_time")
        message_id = delivery_id(
            ctx["job_id"], enqueued if isinstance(enqueued, datetime) else None
        )
        sink(ctx["job_id"], Delivery(callback, body, message_id))

    async def execute(
        ctx: Context,
        kwargs: dict[str, Any],
        held: list[TaskLimits],
        callback: str | None,
        parents: tuple[str, ...],
    ) -> Any:
        settings: Settings = ctx["settings"]
        job_id: str = ctx["job_id"]
        job_try: int = ctx["job_try"]
        tries = max_tries(task, settings)
        limit = timeout(task, settings)
        # arq's timeout, limit + TIMEOUT_BACKSTOP, counts from about now: the task and the
        # writes before it end by `ends`, the last write by half the backstop later.
        ends = asyncio.get_running_loop().time() + limit
        recorder = RecordKeeper(ctx["ledger"], until=ends)

        async def fail(error: JobError, raised: BaseException) -> None:
            # One write: the record ends failed together with its dead letter.
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
            announce(ctx, callback, JobState.FAILED, min(job_try, tries), error=error)
            report_job_failure(raised)  # (once: a try that is retried is no report)

        if job_try > tries:
            message = f"started {tries} times, never finished (its worker stopped or died)"
            exhausted = TriesExhaustedError(message)
            await fail(JobError(TriesExhaustedError.__name__, message), exhausted)
            raise exhausted

        if parents:
            # What its parents left it (queue.dependencies): their results, or a parent that
            # failed or was cancelled, which ends this job cancelled instead of running it.
            doomed, results = await recorder.inputs(job_id, parents)
            if doomed is not None:
                parent, how = doomed_by(doomed)
                kind = "ParentFailed" if how == JobState.FAILED else "ParentCancelled"
                error = JobError(kind, f"job {parent} that it runs after {how}")
                await recorder.finished(job_id, JobState.CANCELLED, error=error)
                announce(ctx, callback, JobState.CANCELLED, job_try - 1, error=error)
                return None
            ctx["parents"] = dict(zip(parents, results, strict=True))

        enqueued = ctx.get("enqueue_time")
        limits = limits_of(task, settings)
        if limits is not None and limits.concurrency:
            # Held from the call on: a cancel that lands after Redis counted the start, before
            # its answer, still gives the place back (giving back a place never taken is a no-op
            # that wakes the head of the line).
            held.append(limits)
        wait = await recorder.started(
            job_id,
            task.name,
            ctx["queue_name"],
            job_try,
            enqueued if isinstance(enqueued, datetime) else None,
            limits,
        )
        if wait is not None:
            # Over the task's limits (queue.limits): back in the queue until its booked time,
            # its try given back, this worker's slot free for other jobs at once.
            held.clear()  # (no place taken)
            raise Retry(defer=wait)
        ctx["progress"] = partial(recorder.progress, job_id)
        ctx["cancel_requested"] = partial(recorder.cancel_requested, job_id)
        recorder.until = ends + TIMEOUT_BACKSTOP / 2  # the outcome's write, whatever it is
        failed: tuple[JobError, float | None, Exception, Exception] | None = None
        try:
            # Our own deadline, just inside arq's, so that a timeout can be retried by policy.
            async with asyncio.timeout_at(ends) as deadline, job_session(ctx):
                result = await task.function(ctx, **kwargs)
        except JobCancelledError:
            await recorder.finished(job_id, JobState.CANCELLED)
            announce(ctx, callback, JobState.CANCELLED, job_try)
            return None
        except asyncio.CancelledError:
            # An abort (cancel requested) is final; a shutdown re-queues the job, and its history
            # says so. (Past arq's own timeout, arq fails the job instead: nothing to add.)
            if await asyncio.shield(recorder.cancel_requested(job_id)):
                await asyncio.shield(recorder.finished(job_id, JobState.CANCELLED))
                announce(ctx, callback, JobState.CANCELLED, job_try)
            elif asyncio.get_running_loop().time() < ends + TIMEOUT_BACKSTOP / 2:
                await asyncio.shield(recorder.requeued(job_id, WORKER_STOPPED))
            raise
        except Retry:
            raise  # the task asked for it; arq runs it again and the next start updates the record
        except Exception as exc:
            timed_out = deadline.expired()
            # Redacted arguments never leave the worker, not even quoted by an error message
            # (httpx quotes a header it refuses): not in the record, events or dead letter, nor
            # in what arq stores and logs or the span shows, which get a scrubbed copy of the
            # exception instead of the exception (its chain and frames hold them).
            secrets = secrets_of(task, kwargs)
            error = (
                JobError("TimeoutError", f"timed out after {limit:g} s")
                if timed_out
                # (an error may quote bytes as lone surrogates: Redis and JSON take escapes)
                else JobError(type(exc).__name__, error_message(exc, secrets))
            )
            retried = job_try < tries and task.retry.applies(exc, timed_out=timed_out)
            failed = (
                error,
                task.retry.delay(job_try) if retried else None,
                scrubbed(exc, error.message, secrets) if secrets else exc,
                exc,
            )
        if failed is not None:
            # Out of the except block: nothing raised from here on has `exc` as its context.
            error, delay, raised, original = failed
            if delay is not None:
                await recorder.retrying(job_id, error, delay)
                raise Retry(defer=delay) from raised
            # Its report is the exception itself, with its frames (error reports take the job's
            # secrets out of it themselves: reporting.py).
            await fail(error, original)
            raise raised
        unencodable = first_unencodable(result)
        if unencodable is not None:
            # A bug of the task, the same on every try: failed at once, with where and why.
            where, why = unencodable
            path = "".join(f"[{part!r}]" for part in where)
            message = printable(f"the result cannot be stored: {why} (at result{path})")
            unencodable_error = UnencodableResultError(message)
            await fail(JobError(UnencodableResultError.__name__, message), unencodable_error)
            raise unencodable_error
        await recorder.finished(job_id, JobState.SUCCEEDED, result=result)
        announce(ctx, callback, JobState.SUCCEEDED, job_try, result=result)
        return result

    run.__name__ = run.__qualname__ = task.name
    return run
