"""The worker process: arq's Worker, woken by enqueues instead of waiting out its poll delay.

arq sleeps `poll_delay` between polls of the queue, so a job queued on an idle worker starts up to
`poll_delay` late, and a short delay costs CPU and Redis commands around the clock. This worker
waits between polls for whichever comes first: a notice on the queue's wake channel (published by
every enqueue of the web, see queue.wake), a finished job (a free slot), the next deferred job or
retry coming due, or `poll_delay` (the fallback that keeps plain arq clients' jobs running). The
polls themselves are arq's: claiming, aborts, health checks and cron behave as in arq.

arq's `arq` command cannot run a Worker subclass, hence `{{ cookiecutter.project_slug }} worker` (cli.py).
"""

import asyncio
import contextlib
import logging
import time
from typing import Any

import uvloop
from arq.utils import to_seconds
from arq.worker import Worker
from redis.exceptions import RedisError

from ..logs import configure_logging
from ..queue.wake import wake_channel
from ..settings import QueueKey, Settings
from .settings import worker_settings

log = logging.getLogger(__name__)


class WakingWorker(Worker):
    def __init__(self, **kwargs: Any) -> None:
        self.fallback_poll_delay = to_seconds(kwargs.get("poll_delay", 0.5)) or 0.5
        # arq's loop sleeps `poll_delay` minus the time a poll took; here the waiting happens at
        # the end of each poll (below), so arq's own sleep is zero.
        super().__init__(**{**kwargs, "poll_delay": 0})
        self._wake = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._read = self._started = self._left = 0
        self._backlog = False
        self.ctx["running_jobs"] = lambda: self.job_counter  # reported by the heartbeat

    # arq's private poll steps are extended below (pinned: arq>=0.28,<0.29; the behaviour is
    # tested in tests/integration/test_wake.py).
    async def _poll_iteration(self) -> None:
        if self._listener is None and not self.burst:
            self._listener = asyncio.create_task(self._listen(), name="wake-listener")
        # Cleared before the poll: a notice arriving during it ends the wait below at once.
        self._wake.clear()
        self._read = self._started = self._left = 0
        full = self.job_counter >= self.max_jobs  # arq reads nothing from the queue then
        # A job stays at the head of the queue while it runs: read past this worker's own.
        limit = self.queue_read_limit
        self.queue_read_limit = asked = limit + len(self.tasks)
        try:
            await super()._poll_iteration()
        finally:
            self.queue_read_limit = limit
        # Jobs wait that this poll did not start (no free slot, or more than it read): poll again
        # as soon as there is a free slot, where arq would wait out its poll delay.
        self._backlog = full or self._left > 0 or self._read >= asked
        if self._backlog and self._started > 0 and self.job_counter < self.max_jobs:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(await self._until_next_poll()):
                await self._wake.wait()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        self._read = len(job_ids)
        running = len(self.tasks)
        # arq would spend a Redis round trip on each of this worker's own running jobs to find
        # it in progress.
        new = [job_id for job_id in job_ids if job_id.decode() not in self.tasks]
        await super().start_jobs(new)
        self._started = len(self.tasks) - running
        self._left = len(new) - self._started  # (or running elsewhere: these count too)

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        # Jobs wait for slots: poll once a quarter of the slots are free (or the only one), so
        # that one poll starts several jobs rather than one poll per finished job.
        if self._backlog and self.max_jobs - self.job_counter >= max(1, self.max_jobs // 4):
            self._wake.set()

    async def _until_next_poll(self) -> float:
        """The poll delay, or less if a deferred job (or a retry) comes due sooner."""
        now_ms = time.time() * 1000
        try:
            due = await self.pool.zrangebyscore(
                self.queue_name, f"({now_ms}", "+inf", start=0, num=1, withscores=True
            )
        except (RedisError, OSError) as exc:
            # Only a hint: a Redis away for longer than the retries must not stop the worker;
            # arq's own poll meets the outage next and rides it out.
            log.warning("could not read the next due job (%s); polling as usual", exc)
            return self.fallback_poll_delay
        if not due:
            return self.fallback_poll_delay
        return min(self.fallback_poll_delay, max(0.0, (float(due[0][1]) - now_ms) / 1000))

    async def _listen(self) -> None:
        channel = wake_channel(self.queue_name)
        while True:
            pubsub = self.pool.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                self._wake.set()  # whatever was queued while nobody listened
                async for _notice in pubsub.listen():
                    self._wake.set()
            except (RedisError, OSError) as exc:
                log.warning(
                    "wake channel lost (%s); polling every %g s until it is back",
                    exc,
                    self.fallback_poll_delay,
                )
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py 5
            await asyncio.sleep(self.fallback_poll_delay)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        await super().close()


def run_worker(queue: QueueKey = "default", *, burst: bool = False) -> None:
    """Run one queue's worker until SIGTERM/SIGINT (which drain it), or until the queue is
    empty with `burst`."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    # uvloop, as uvicorn uses for the web: arq's Worker takes the loop set here (bench/ measures).
    asyncio.set_event_loop(uvloop.new_event_loop())
    WakingWorker(**worker_settings(settings, queue), burst=burst).run()
