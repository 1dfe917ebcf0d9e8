"""Sharding by queue: the bulk queue's jobs on a Redis of their own (BULK_REDIS_URL).

One Redis runs on one core, and that core bounds the jobs a second of every queue on it (README
"Capacity"). With BULK_REDIS_URL the bulk queue's jobs, records, events, dead letters and
workers live on a second server. Everything about one job stays on one server, so each write is
still one server's atomic script, and nothing is ever written to two servers at once.

A job's server follows from its id alone: ids of the bulk queue's jobs start with
BULK_ID_PREFIX (the service makes them so; a client that picks its own id follows the same rule
or gets a 422). A read of one job goes to one server; the operator's reads (listings, dead
letters, depths, workers) ask both and merge their answers.
"""

import asyncio
import heapq
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol, cast

from ..settings import QueueKey, Settings
from .arq_queue import ArqJobQueue
from .base import (
    DeadLetter,
    DeadLetterPage,
    Enqueued,
    Idempotency,
    JobEvent,
    JobPage,
    JobRecord,
    JobState,
    MisplacedJobError,
    NewJob,
    QueueBackend,
    QueueStats,
    QueueUnavailableError,
    WorkerInfo,
)

BULK_ID_PREFIX = "bulk-"
MERGED_READ_TIMEOUT = 2.0
"""Seconds a merged read (depths, workers) waits for each server before leaving it out."""

log = logging.getLogger(__name__)


def queue_of_id(job_id: str) -> QueueKey:
    """The queue whose server holds the job with this id."""
    return "bulk" if job_id.startswith(BULK_ID_PREFIX) else "default"


class Shard(QueueBackend, Protocol):
    """One queue's store: a backend that can also say when its `rank`-th newest dead letter
    failed (ms), so that pages of two stores merge without reading what comes before them."""

    async def dead_letter_time(self, rank: int) -> float | None: ...


@asynccontextmanager
async def open_queue(settings: Settings) -> AsyncIterator[QueueBackend]:
    """The web's queue backend: one Redis for both queues, or one for each with BULK_REDIS_URL."""
    if settings.bulk_redis_url is None:
        async with ArqJobQueue.connect(settings) as backend:
            yield backend
        return
    async with (
        ArqJobQueue.connect(settings, [settings.queue_name]) as default,
        ArqJobQueue.connect(
            settings.with_queue_redis("bulk"), [settings.bulk_queue_name], BULK_ID_PREFIX
        ) as bulk,
    ):
        # Two URLs may still reach one database (another name of the host, a proxy): each queue
        # would then list the other's jobs as its own, twice. (Not checked while either
        # server is away at start-up.)
        first, second = await asyncio.gather(identity(default), identity(bulk))
        if first is not None and first == second:
            raise ValueError(
                "BULK_REDIS_URL reaches the same Redis database as REDIS_URL: leave it unset "
                "for one Redis"
            )
        yield ShardedQueue(default, bulk, settings.queue_name, settings.bulk_queue_name)


async def identity(store: ArqJobQueue) -> str | None:
    try:
        return await asyncio.wait_for(store.server_identity(), MERGED_READ_TIMEOUT)
    except TimeoutError:
        return None


class ShardedQueue:
    """The web's backend over two stores, the default queue's and the bulk queue's."""

    def __init__(
        self, default: Shard, bulk: Shard, default_queue_name: str, bulk_queue_name: str
    ) -> None:
        self._default = default
        self._bulk = bulk
        self._default_queue_name = default_queue_name
        self._bulk_queue_name = bulk_queue_name
        self._both = (default, bulk)

    def _of_queue(self, queue_name: str) -> Shard:
        return self._bulk if queue_name == self._bulk_queue_name else self._default

    def _of_id(self, job_id: str) -> Shard:
        return self._bulk if queue_of_id(job_id) == "bulk" else self._default

    # The jobs API: one job, one server.

    async def enqueue(
        self,
        task: str,
        kwargs: Mapping[str, Any],
        *,
        queue_name: str,
        job_id: str | None = None,
        idempotency: Idempotency | None = None,
        defer: float = 0,
        meta: Mapping[str, str] | None = None,
        after: Sequence[str] = (),
    ) -> Enqueued:
        store = self._of_queue(queue_name)
        self._check_parents(store, after)
        if job_id is not None and self._of_id(job_id) is not store:
            # Reads would look for it on the other server and never find it.
            if store is self._bulk:
                raise MisplacedJobError(
                    f"a job of the bulk queue needs an id starting with {BULK_ID_PREFIX!r}: "
                    "that queue has a Redis of its own, and the id says where the job is"
                )
            raise MisplacedJobError(
                f"ids starting with {BULK_ID_PREFIX!r} are for jobs of the bulk queue, which "
                "has a Redis of its own"
            )
        return await store.enqueue(
            task,
            kwargs,
            queue_name=queue_name,
            job_id=job_id,
            idempotency=idempotency,
            defer=defer,
            meta=meta,
            after=after,
        )

    def _check_parents(self, store: Shard, after: Sequence[str]) -> None:
        """A job runs after jobs of its own server only: its parents' end frees it in the same
        script (queue.dependencies)."""
        if any(self._of_id(parent) is not store for parent in after if not parent.startswith("#")):
            raise MisplacedJobError(
                "a job can run after jobs of its own queue's Redis only: the bulk queue has a "
                "Redis of its own"
            )

    async def enqueue_many(
        self, jobs: Sequence[NewJob], meta: Mapping[str, str] | None = None
    ) -> list[str]:
        stores = {self._of_queue(job.queue_name) for job in jobs}
        if len(stores) > 1:
            # All or none is one server's promise: a batch cannot span two.
            raise MisplacedJobError(
                "a batch holds jobs of one queue's Redis only: the bulk queue has a Redis of "
                "its own, so send its jobs in a batch of their own"
            )
        store = next(iter(stores), self._default)
        for job in jobs:
            self._check_parents(store, job.after)
        return await store.enqueue_many(jobs, meta)

    async def get(self, job_id: str) -> JobRecord | None:
        return await self._of_id(job_id).get(job_id)

    async def cancel(self, job_id: str) -> JobRecord:
        return await self._of_id(job_id).cancel(job_id)

    async def events(
        self, job_id: str, after: str | None = None, wait: float = 0
    ) -> list[JobEvent]:
        return await self._of_id(job_id).events(job_id, after, wait)

    async def ping(self) -> None:
        # Readiness asks the default queue's server only: an outage of the bulk queue's server
        # answers 503 to the requests that need it, and does not take every web replica out of
        # its load balancer (which would refuse the default queue's jobs as well).
        await self._default.ping()

    # The operator's reads: both servers, merged.

    async def dead_letter(self, job_id: str) -> DeadLetter | None:
        return await self._of_id(job_id).dead_letter(job_id)

    async def remove_dead_letter(self, job_id: str) -> bool:
        return await self._of_id(job_id).remove_dead_letter(job_id)

    async def purge_dead_letters(self) -> int:
        counts = await asyncio.gather(*(store.purge_dead_letters() for store in self._both))
        return sum(counts)

    async def dead_letters(self, limit: int, offset: int = 0) -> DeadLetterPage:
        # Whole or a 503, and soon: each step waits MERGED_READ_TIMEOUT at most for a server (a
        # stalled one would otherwise hold the dashboard's overview for its socket timeouts).
        first, second = self._both
        totals = await asyncio.gather(*(bounded(store.dead_letters(1, 0)) for store in self._both))
        total = sum(page.total for page in totals)
        skip_first = await split(
            offset,
            totals[0].total,
            totals[1].total,
            lambda rank: bounded(first.dead_letter_time(rank)),
            lambda rank: bounded(second.dead_letter_time(rank)),
        )
        pages = await asyncio.gather(
            bounded(first.dead_letters(limit, skip_first)),
            bounded(second.dead_letters(limit, offset - skip_first)),
        )
        # One order with `split`'s: newest first, on equal times the first store's letters first
        # (heapq.merge keeps each page's own order and prefers the earlier page on a tie).
        letters = heapq.merge(*(page.letters for page in pages), key=newest_first)
        return DeadLetterPage(total=total, letters=list(itertools.islice(letters, limit)))

    async def stats(self) -> QueueStats:
        # What monitoring reads (/metrics, the dashboard's overview): a server that does not
        # answer is named, not allowed to hide the other queue's depths and lag.
        answers = await answering(*(store.stats() for store in self._both))
        queues = (self._default_queue_name, self._bulk_queue_name)
        return QueueStats(
            [depth for stats in answers if stats is not None for depth in stats.queues],
            sum(stats.dead_letters for stats in answers if stats is not None),
            [queue for queue, stats in zip(queues, answers, strict=True) if stats is None],
        )

    async def recent_jobs(
        self,
        limit: int,
        *,
        before: float | None = None,
        state: JobState | None = None,
        task: str | None = None,
    ) -> JobPage:
        pages = await asyncio.gather(
            *(
                store.recent_jobs(limit, before=before, state=state, task=task)
                for store in self._both
            )
        )
        return merge_pages(pages, limit)

    async def arguments(self, job_id: str) -> Mapping[str, Any] | None:
        return await self._of_id(job_id).arguments(job_id)

    async def workers(self) -> list[WorkerInfo]:
        answers = await answering(*(store.workers() for store in self._both))
        alive = [info for workers in answers if workers is not None for info in workers]
        return sorted(alive, key=lambda info: info.last_beat, reverse=True)[:100]

    # Operator sessions belong to the web, not to a queue: the default queue's server.

    async def open_session(self, session: str, lifetime: int) -> None:
        await self._default.open_session(session, lifetime)

    async def session_open(self, session: str) -> bool:
        return await self._default.session_open(session)

    async def close_session(self, session: str) -> None:
        await self._default.close_session(session)


async def answering(*reads: Awaitable[Any]) -> list[Any]:
    """Each read's answer, None for a store that did not answer within MERGED_READ_TIMEOUT
    (logged); raises when none did."""
    answers = await asyncio.gather(*map(bounded, reads), return_exceptions=True)
    for answer in answers:
        if isinstance(answer, BaseException) and not isinstance(answer, QueueUnavailableError):
            raise answer
    if all(isinstance(answer, BaseException) for answer in answers):
        raise cast("BaseException", answers[0])
    for answer in answers:
        if isinstance(answer, QueueUnavailableError):
            log.warning("a queue's Redis does not answer (%s): read without it", answer)
    return [None if isinstance(answer, BaseException) else answer for answer in answers]


async def bounded(read: Awaitable[Any]) -> Any:
    """A read that a stalled server cannot hold past MERGED_READ_TIMEOUT: the web's own socket
    timeout and retries would keep /metrics (and the dashboard's overview) waiting longer than a
    scrape lasts, and the other queue's figures would be lost with the stalled one's."""
    try:
        return await asyncio.wait_for(read, MERGED_READ_TIMEOUT)
    except TimeoutError as exc:
        raise QueueUnavailableError(f"no answer within {MERGED_READ_TIMEOUT:g} s") from exc


def newest_first(letter: DeadLetter) -> float:
    return -letter.failed_at.timestamp()


def merge_pages(pages: Sequence[JobPage], limit: int) -> JobPage:
    """One page, newest first, of the pages that several stores gave for the same request.

    A store's page is complete down to its `next_before` (a store that stopped early, at its
    read bound or at `limit`, has seen nothing older than that); so the merged page holds only
    jobs at or above the highest of those, and goes on from where it stops.
    """
    frontier = max(
        (page.next_before for page in pages if page.next_before is not None), default=None
    )
    placed = sorted(
        (
            (position, job)
            for page in pages
            for position, job in zip(page.positions, page.jobs, strict=True)
            if frontier is None or position >= frontier
        ),
        key=lambda pair: pair[0],
        reverse=True,
    )
    taken = placed[:limit]
    jobs = [job for _, job in taken]
    if len(placed) > limit:
        return JobPage(jobs, taken[-1][0], [position for position, _ in taken])
    return JobPage(jobs, frontier, [position for position, _ in taken])


async def split(
    offset: int,
    first_total: int,
    second_total: int,
    first_time: Callable[[int], Awaitable[float | None]],
    second_time: Callable[[int], Awaitable[float | None]],
) -> int:
    """How many of the `offset` newest items of two newest-first lists come from the first:
    a binary search that reads two items a step (about 2 log2(offset) reads), where reading
    every item before a deep page would read up to the whole dead-letter index."""
    low, high = max(0, offset - second_total), min(offset, first_total)
    while low < high:
        taken = (low + high) // 2  # items from the first list; offset - taken from the second
        next_first, last_second = await asyncio.gather(
            first_time(taken), second_time(offset - taken - 1)
        )
        if next_first is None or last_second is None:  # changed while we read: settle here
            return taken
        if next_first >= last_second:  # the first's next item comes first: take more of it
            low = taken + 1
        else:
            high = taken
    return low
