"""The worker process: arq's Worker, woken by enqueues instead of waiting out its poll delay.

arq sleeps `poll_delay` between polls of the queue, so a job queued on an idle worker starts up to
`poll_delay` late, and a short delay costs CPU and Redis commands around the clock. This worker
waits between polls for whichever comes first: a notice on the queue's wake channel (published by
every enqueue of the web, see queue.wake_channel), a finished job (a free slot), the next deferred
job or retry coming due, or `poll_delay` (the fallback that keeps plain arq clients' jobs running).
The polls themselves are arq's (aborts, health checks and cron behave as in arq), except that
due jobs are claimed many at a time in one script (worker.claim). An idle worker registers in its
queue's set of idle workers, and the web's enqueue hands it a job due now, claimed and whole, on
a channel of its own (queue.wake_channel, worker.handoff): the job starts as the message arrives,
with no Redis round trip of the worker's. A notice that names its job (no worker was registered)
is claimed by the listener itself when the worker is idle: the job starts without waiting for a
poll's read of the queue; anything else (a deferred job, one taken by another worker, a busy
worker) wakes the poll.

Unlike arq's, this worker never exits on a Redis error (a stall, a full memory, an outage of any
length): the poll logs it, backs off and tries again, finished jobs wait to be recorded, and the
worker resumes by itself when Redis does (see worker.outage, and the README's failure figures).

arq's `arq` command cannot run a Worker subclass, hence `{{ cookiecutter.project_slug }} worker` (cli.py).
"""

import asyncio
import contextlib
import logging
import math
import signal
import time
from datetime import datetime
from typing import Any

import uvloop
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms, to_seconds
from arq.worker import Worker

from ..cancellation import raise_if_cancelled
from ..logs import configure_logging
from ..queue.arq_queue import ledger_for, settle, settle_write
from ..queue.connections import redis_pool
from ..queue.deliveries import Delivery
from ..queue.ledger import RecordWrite
from ..queue.unavailable import unavailable
from ..queue.wake_channel import HandOff, wake_channel
from ..settings import QueueKey, Settings
from .claim import CLAIMED_READ, Claimed, Claimer, ClaimingRedis, LostClaims
from .end_line import hold_job_lines, write_held
from .handoff import IdleRegistration
from .heartbeat import proof_path, write_proof
from .job_end import end_job
from .options import worker_options
from .outage import BACKOFF_CAP, REDIS_ERRORS, SOCKET_TIMEOUT, Backoff, persist

log = logging.getLogger(__name__)

TURN_TIMEOUT = 20.0
"""Seconds one poll may take, redis-py's own retries included, before it counts as failed."""

NOTICE_WAIT = 10.0
"""Seconds the wake listener waits for a notice before it looks again (its reads time out)."""

IDLE_STRETCH = 4
"""How far an idle worker lengthens its fallback poll: each poll that finds nothing doubles the
wait, up to this many times `poll_delay`. Jobs enqueued through the web wake it by their notice
and deferred ones are timed to their due time, so only plain arq clients' jobs (which publish
nothing) wait for the fallback poll, up to 4 x poll_delay at idle; its CPU at idle falls about
as much. Any notice or started job brings the wait back to poll_delay; without a wake listener
(its subscription lost) the poll never stretches, as notices could not reach it. Nor past the
next cron run: arq queues a cron job during the poll that comes within CRON_WINDOW of its time.
"""

CRON_WINDOW = 1.0
"""Seconds before its time that arq's poll queues a cron job (max(poll_delay, 0.5) x 2, and this
worker gives arq a poll delay of 0)."""


class WakingWorker(Worker):
    """arq's Worker, woken by enqueues, that outlives any Redis outage (see worker.outage)."""

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("redis_pool") is not None:
            # Its client is a ClaimingRedis of its own (worker.claim), connected in main().
            raise TypeError("WakingWorker connects to Redis itself: pass redis_settings")
        self.fallback_poll_delay = to_seconds(kwargs.get("poll_delay", 0.5)) or 0.5
        # arq's loop sleeps `poll_delay` minus the time a poll took; here the waiting happens at
        # the end of each poll (below), so arq's own sleep is zero.
        super().__init__(**{**kwargs, "poll_delay": 0})
        self._wake = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._read = self._started = self._left = 0
        self._backlog = False
        self._claimer: Claimer | None = None
        self._registration: IdleRegistration | None = None  # (made with the claimer)
        self._lost_claims = LostClaims(self.in_progress_timeout_s)
        self._resent = False  # the last claim sent a lost claim's jobs again, and no others
        self._unregistered_since_error = False
        # Held while a claim is under way (the poll's or the listener's): each counts free slots
        # before its claim, and two at once could claim one job more than there are slots.
        self._claiming = asyncio.Lock()
        # The earliest job of the queue not yet due (ms), as last read, and whether that read
        # still holds: only an enqueue (its notice) or a retry of this worker's puts a job
        # before it. (Plain arq clients publish nothing: theirs run at the poll delay.)
        # (Counted, so that a notice arriving during the read makes it stale too.)
        self._next_due: float | None = None
        self._changes = 0
        self._next_due_as_of = -1  # the count of changes the last read saw
        self._outage = Backoff()
        self._idle_polls = 0  # polls in a row that found nothing (see IDLE_STRETCH)
        self._listening = False  # subscribed to the wake channel: notices can arrive
        self._turned_at = time.monotonic()
        # The longest a healthy poll loop goes without ending a turn: a poll, then its wait.
        self.turn_limit = TURN_TIMEOUT + max(self.fallback_poll_delay, BACKOFF_CAP) + 5
        # Successes the ledger hands over, written with arq's end of the job (finish_job).
        self._successes: dict[str, RecordWrite] = {}
        self.ctx["success_sink"] = self._successes.__setitem__
        # Webhook deliveries the job wrapper hands over, queued with arq's end of the job.
        self._deliveries: dict[str, Delivery] = {}
        self.ctx["delivery_sink"] = self._deliveries.__setitem__
        self.ctx["running_jobs"] = lambda: self.job_counter  # reported by the heartbeat
        self.ctx["loop_wedged"] = self.wedged_for  # no beat while stuck: the probe fails

    def wedged_for(self) -> float | None:
        """Seconds since the poll loop last ended a turn, if that is longer than it ever takes."""
        idle = time.monotonic() - self._turned_at
        return idle if idle > self.turn_limit else None

    async def main(self) -> None:
        if self._pool is None:
            self._pool = await self._connect()
        await super().main()

    async def _connect(self) -> ArqRedis:
        """The worker's Redis client, once Redis answers: a worker started during an outage
        waits for it (alive, for the probe) instead of exiting into a restart loop. arq's own
        `create_pool` gives up after a few tries and sets no socket timeout."""
        settings: Settings = self.ctx["settings"]
        proof = proof_path(settings, self.ctx.get("queue", "default"))
        backoff = Backoff()
        while True:
            redis = ClaimingRedis(
                # The master at REDIS_URL or the one Sentinel names (queue.connections); retries
                # with backoff ride out a Redis restart of ~15 s without an error.
                redis_pool(settings, socket_timeout=SOCKET_TIMEOUT, retries=10),
                job_serializer=self.job_serializer,
                job_deserializer=self.job_deserializer,
                default_queue_name=self.queue_name,
                expires_extra_ms=self.expires_extra_ms,
            )
            try:
                async with asyncio.timeout(SOCKET_TIMEOUT):  # not redis-py's whole retry budget
                    await redis.ping()
            except REDIS_ERRORS as exc:
                await redis.aclose(close_connection_pool=True)
                if not unavailable(exc):
                    raise
                delay = backoff.failed()
                log.warning("Redis does not answer (%s); trying again in %.1f s", exc, delay)
                self._turned_at = time.monotonic()
                write_proof(proof, None, str(exc) or type(exc).__name__)
                await asyncio.sleep(delay)
            else:
                return redis

    # arq's private poll steps are extended below (pinned: arq>=0.28,<0.29; the behaviour is
    # tested in tests/integration/test_wake.py and test_outages.py).
    async def _poll_iteration(self) -> None:
        if not self.burst and (self._listener is None or self._listener.done()):
            self._listener = asyncio.create_task(self._listen(), name="wake-listener")
        # Cleared before the poll: a notice arriving during it ends the wait below at once.
        self._wake.clear()
        try:
            async with asyncio.timeout(TURN_TIMEOUT):
                wait = await self._poll()
        except REDIS_ERRORS as exc:
            # arq would let this end the worker (and a restart meets the same Redis): log it,
            # wait, try again. The wake listener's reconnection ends the wait early. An error
            # that is no outage (queue.unavailable) is logged as the bug it is, traceback and
            # all; the worker goes on with its running jobs rather than exit (every worker at
            # once, into a restart loop).
            wait = self._outage.failed()
            outage = unavailable(exc)
            log.log(
                logging.WARNING if outage else logging.ERROR,
                "Redis error in the poll (%s: %s); trying again in %.1f s",
                type(exc).__name__,
                exc,
                wait,
                exc_info=not outage,
            )
        else:
            lasted = self._outage.succeeded()
            if lasted is not None:
                log.info("Redis answers again: polling resumed after %.1f s of errors", lasted)
        self._turned_at = time.monotonic()
        raise_if_cancelled()  # SIGTERM or close() during the poll, lost by Python 3.11
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _poll(self) -> float:
        """arq's poll (claim due jobs, aborts, reaping, health check, cron); then the seconds to
        wait before the next one."""
        self._read = self._started = self._left = 0
        self._resent = False
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
        self._idle_polls = self._idle_polls + 1 if self._read == 0 and not self.tasks else 0
        if self._backlog and (self._started or self._resent) and self.job_counter < self.max_jobs:
            return 0
        if self.job_counter == 0 and self._listening and self.allow_pick_jobs:
            await self._register()
        return await self._until_next_poll()

    def _claims(self) -> tuple[Claimer, IdleRegistration]:
        if self._claimer is None or self._registration is None:
            lifetime_ms = int(self.in_progress_timeout_s * 1000)
            self._claimer = Claimer(self.pool, self.queue_name, lifetime_ms, self.allow_abort_jobs)
            self._registration = IdleRegistration(
                self.queue_name, lifetime_ms, self.allow_abort_jobs
            )
        return self._claimer, self._registration

    async def _register(self) -> None:
        """Enter this idle worker in its queue's idle set (once: a hand-off or a claim of its own
        takes it out), so that the web hands it the next job due now."""
        claimer, registration = self._claims()
        if not registration.due():
            return
        try:
            await registration.register(claimer)
        except REDIS_ERRORS as exc:  # jobs still come by notice and poll
            # Said once, not at every idle poll while it lasts (a full Redis refuses it).
            if not self._unregistered_since_error:
                log.log(
                    logging.WARNING if unavailable(exc) else logging.ERROR,
                    "could not register as idle (%s); jobs come by notice meanwhile",
                    exc,
                    exc_info=not unavailable(exc),
                )
            self._unregistered_since_error = True
        else:
            self._unregistered_since_error = False

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Start the due jobs among `job_ids`, as many as there are free slots, claimed in one
        round trip (worker.claim) where arq's own start_jobs takes four per job."""
        self._read = len(job_ids)
        # arq would spend a Redis round trip on each of this worker's own running jobs to find
        # it in progress.
        new = [job_id.decode() for job_id in job_ids if job_id.decode() not in self.tasks]
        self._started, self._left = 0, len(new)
        self._started = len(await self._claim_and_start(new))
        self._left = len(new) - self._started  # (or running elsewhere: these count too)

    async def _claim_and_start(self, job_ids: list[str]) -> list[Claimed]:
        """Claim as many of `job_ids` as there are free slots, and start those claimed."""
        claimer, registration = self._claims()
        async with self._claiming:
            # Nothing is counted before Redis answers: an outage mid-claim takes no slot.
            wanted = job_ids[: self.max_jobs - self.job_counter]
            token, ids = self._lost_claims.next_claim(wanted)
            # Registered as idle: a claimed job takes the worker out of the set (busy).
            member = registration.member if registration.held is not False else ""
            try:
                claimed = await claimer.claim(
                    ids, timestamp_ms(), token, member, registration.token
                )
            except BaseException:  # (a cancel too: the turn's timeout, a stop)
                self._lost_claims.lost(token, ids)
                if member:
                    registration.doubt()
                raise
            self._lost_claims.answered(token, ids)
            # A lost claim's jobs went alone: the others wait for a poll at once (start_jobs).
            self._resent = len(ids) < len(wanted)
            # A job handed over whose message the listener took while this claim was under way,
            # if the claim took it too (worker.claim: a hand-off it took for lost): it runs here.
            claimed = [job for job in claimed if job.job_id not in self.tasks]
            if claimed:
                registration.held = False
            # Told to stop while the claim was under way (the listener's claims outlive the main
            # task), or a job handed over meanwhile took a slot: those jobs go back for another
            # worker, their tries uncounted.
            room = self.max_jobs - self.job_counter if self.allow_pick_jobs else 0
            claimed, extra = claimed[:room], claimed[room:]
            if extra:
                await self._give_back(claimer, [job.job_id for job in extra], token)
            for job in claimed:
                await self._start(job)
        return claimed

    async def _start(self, job: Claimed) -> asyncio.Task[None]:
        await self.sem.acquire()  # never waits: the slot was free
        self.job_counter += 1
        task = self.loop.create_task(self._run_claimed(job))
        task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
        self.tasks[job.job_id] = task
        return task

    async def _give_back(self, claimer: Claimer, job_ids: list[str], token: str) -> None:
        try:
            async with asyncio.timeout(SOCKET_TIMEOUT):
                await claimer.give_back(job_ids, token)
        except REDIS_ERRORS as exc:  # their claims expire instead, as any claim left behind
            log.warning("could not give back %d claimed jobs (%s)", len(job_ids), exc)

    async def _start_noticed(self, job_id: str) -> bool:
        """Start the job a notice named, claimed here and now; False if this worker may not
        (stopping, busy, running it already) or the claim found it not for now (deferred, taken
        by another worker, gone), which the poll then sorts out as it does any notice.

        Only an idle worker claims so: every idle worker claims each notice's job (one of them
        gets it), a cost per worker and notice that is nothing at idle, where latency is the
        point. A busy worker's polls take a burst's notices together, one read for many."""
        if not job_id or job_id in self.tasks:  # a notice naming no job: the poll looks
            return False
        if not self.allow_pick_jobs or self.job_counter > 0 or self._claiming.locked():
            return False
        try:
            claimed = await self._claim_and_start([job_id])
        except REDIS_ERRORS as exc:  # the poll meets the outage next, and rides it out
            log.log(
                logging.WARNING if unavailable(exc) else logging.ERROR,
                "could not claim noticed job %s (%s); the poll will",
                job_id,
                exc,
                exc_info=not unavailable(exc),
            )
            return False
        if not claimed:
            return False
        self._idle_polls = 0  # (as a poll that starts a job would)
        self.tasks[job_id].add_done_callback(lambda _: self._ended_unpolled())
        # The poll checks aborts: while the job runs, at the poll delay, not a stretched one.
        self.loop.call_later(self.fallback_poll_delay, self._wake.set)
        return True

    async def _take_handed(self, data: bytes) -> None:
        try:
            await self._start_handed(data)
        except ValueError:  # not the enqueue script's: nothing to take (its lease lapses, if any)
            log.error("unreadable message on this worker's hand-off channel: %r", data[:200])

    async def _start_handed(self, data: bytes) -> None:
        """Start the job the web handed to this worker, claimed for it already (worker.handoff);
        give it back, for another worker, if this one may not start it (stopping, full)."""
        claimer, registration = self._claims()
        registration.held = False  # (the enqueue took this worker out of the idle set)
        handed = HandOff.parse(data)
        job = Claimed(handed.job_id, handed.score, handed.job, handed.job_try, handed.aborted)
        token = registration.token
        if not registration.fresh(handed.sent_ms):
            # A late message: its claim may have lapsed, and another worker run the job since.
            try:
                async with asyncio.timeout(SOCKET_TIMEOUT):
                    confirmed = await claimer.confirm(job.job_id, token)
            except REDIS_ERRORS as exc:  # the claim lapses, and a poll takes the job
                log.warning("could not confirm job %s handed over late (%s)", job.job_id, exc)
                return
            if not confirmed:
                log.info("job %s was handed over too long ago: left to the poll", job.job_id)
                return
        # (After the confirmation, if any: a stop, a full worker or a poll's claim of the job
        # may have come during its round trip.)
        if job.job_id in self.tasks:  # (taken by a poll of this worker: it runs already)
            return
        if not self.allow_pick_jobs or self.job_counter >= self.max_jobs:
            await self._give_back(claimer, [job.job_id], token)
            return
        task = await self._start(job)
        self._idle_polls = 0  # (as a poll that starts a job would)
        task.add_done_callback(lambda _: self._ended_unpolled())
        # The poll checks aborts: while the job runs, at the poll delay, not a stretched one.
        self.loop.call_later(self.fallback_poll_delay, self._wake.set)

    def _ended_unpolled(self) -> None:
        """A job the listener started has ended: with nothing else running, the poll looks at
        once (it drops finished tasks, and waits the poll delay again, not a stretched one),
        not while the job ran, when its reads would have competed with the job's."""
        if self.job_counter == 0:
            self._wake.set()

    async def _run_claimed(self, job: Claimed) -> None:
        """arq's run of a job, its opening read answered from the claim (worker.claim), its
        log lines written after its end (worker.end_line)."""
        CLAIMED_READ.set(job.read())  # (this task's context alone)
        # Its lines wait for finish_job, which writes them once the end is stored; if that never
        # comes (stopped before), they are written here, but for the success line.
        hold_job_lines()
        try:
            await self.run_job(job.job_id, job.score)
        finally:
            write_held(ends=False)

    async def run_job(self, job_id: str, score: int) -> None:
        claimed = time.monotonic()
        try:
            await super().run_job(job_id, score)
        except REDIS_ERRORS as exc:
            if not unavailable(exc):
                raise
            # Only arq's reads before the job's start meet Redis unguarded (its end is persisted,
            # below): the job never ran. Give its claim back, so that it runs as soon as Redis
            # is back rather than when the claim expires (its longest timeout + 10 s).
            log.warning("could not start job %s (%s); it will run once Redis is back", job_id, exc)
            await self._release(job_id, claimed)
        finally:
            # A success handed over by a job stopped before its end was written: the job runs
            # again (its claim expires), and its next try records its own outcome.
            self._successes.pop(job_id, None)
            self._deliveries.pop(job_id, None)

    async def _release(self, job_id: str, claimed: float) -> None:
        """Delete this worker's claim of a job that never started, while it surely is still
        this worker's: never after it may have expired and been claimed by another worker."""
        backoff = Backoff()
        expires = claimed + self.in_progress_timeout_s - BACKOFF_CAP  # with a margin
        while (left := expires - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(left):
                    await self.pool.delete(in_progress_key_prefix + job_id)
            except REDIS_ERRORS as exc:
                if not unavailable(exc):
                    raise
                await asyncio.sleep(backoff.failed())
            else:
                return

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        # The job's outcome is known: write it once Redis takes it, however long that is. (arq
        # would drop it, and the job would run again only after its in-progress key expired.)
        # A success's record goes in the same transaction (worker.job_end); never with a job
        # that arq puts back in the queue, whose next try records its own outcome.
        record = self._successes.pop(job_id, None)
        delivery = self._deliveries.pop(job_id, None)
        if record is None and finish and result_data is not None:
            # An ending arq made itself (its own timeout, an abort before the start): the
            # record follows arq's result in the same transaction, its children told with it.
            record = self._settling(job_id, result_data)
        await persist(
            lambda: end_job(
                self.pool,
                self.queue_name,
                job_id,
                finish,
                result_data,
                result_timeout_s,
                keep_result_forever,
                incr_score,
                keep_in_progress,
                record if finish else None,
                delivery if finish else None,
            ),
            "record the end of a job",
        )
        write_held()  # the job's lines, now that its end is stored (worker.end_line)
        if incr_score:
            self._notice()  # a retry, queued for later: the wait until the next poll is recounted

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        end = super().finish_failed_job
        await persist(lambda: end(job_id, result_data), "record the end of a failed job")
        if result_data is not None:
            await self._settle(job_id, result_data)

    def _settling(self, job_id: str, result_data: bytes) -> RecordWrite | None:
        settings: Settings | None = self.ctx.get("settings")
        if settings is None:
            return None
        return settle_write(ledger_for(self.pool, settings), job_id, result_data)

    async def _settle(self, job_id: str, result_data: bytes) -> None:
        """The job's record finished as arq ended it, where the job wrapper could not (arq's
        timeout, an abort before the start): the worker writes records, reads of the web never
        do."""
        settings: Settings | None = self.ctx.get("settings")
        if settings is None:
            return
        ledger = ledger_for(self.pool, settings)
        await persist(lambda: settle(ledger, job_id, result_data), "record the end of a job")

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        # Jobs wait for slots: poll once a quarter of the slots are free (or the only one), so
        # that one poll starts several jobs rather than one poll per finished job.
        if self._backlog and self.max_jobs - self.job_counter >= max(1, self.max_jobs // 4):
            self._wake.set()

    async def _cancel_aborted_jobs(self) -> None:
        # An abort concerns running jobs only (one not started yet is refused at its start, in
        # arq's run_job): an idle worker saves a transaction per poll.
        if self.job_tasks:
            await super()._cancel_aborted_jobs()

    def _notice(self) -> None:
        """Something was queued: poll now, and read the next due job again."""
        self._changes += 1
        self._idle_polls = 0
        self._wake.set()

    async def _until_next_poll(self) -> float:
        """The poll delay, or less if a deferred job (or a retry) comes due sooner."""
        now_ms = time.time() * 1000
        due = self._next_due
        if self._next_due_as_of == self._changes and (due is None or due > now_ms):
            return self._wait_for(due, now_ms)
        changes = self._changes
        try:
            found = await self.pool.zrangebyscore(
                self.queue_name, f"({now_ms}", "+inf", start=0, num=1, withscores=True
            )
        except REDIS_ERRORS as exc:
            # Only a hint: arq's own poll meets the outage next and rides it out.
            log.log(
                logging.WARNING if unavailable(exc) else logging.ERROR,
                "could not read the next due job (%s); polling as usual",
                exc,
                exc_info=not unavailable(exc),
            )
            return self.fallback_poll_delay  # (not stretched: this is no idle poll)
        self._next_due = float(found[0][1]) if found else None
        self._next_due_as_of = changes
        return self._wait_for(self._next_due, now_ms)

    def _wait_for(self, due: float | None, now_ms: float) -> float:
        delay = self._fallback_delay()
        if due is None:
            return delay
        return min(delay, max(0.0, (due - now_ms) / 1000))

    def _fallback_delay(self) -> float:
        """poll_delay, stretched while idle (IDLE_STRETCH), never past the next cron run."""
        if not self._listening or self._idle_polls < 2:
            return self.fallback_poll_delay
        stretch = min(IDLE_STRETCH, 2 ** (self._idle_polls - 1))
        runs = [job.next_run for job in self.cron_jobs if job.next_run is not None]
        until_cron = math.inf
        if runs:
            until_cron = (min(runs) - datetime.now(tz=self.timezone)).total_seconds() - CRON_WINDOW
        stretched = min(self.fallback_poll_delay * stretch, until_cron)
        return float(max(self.fallback_poll_delay, stretched))

    async def run_cron(self, n: datetime, delay: float, num_windows: int = 2) -> None:
        before = [job.next_run for job in self.cron_jobs]
        await super().run_cron(n, delay, num_windows)
        if [job.next_run for job in self.cron_jobs] != before:
            # A cron job was queued (arq's enqueue publishes no notice): time the wait to it.
            self._notice()

    async def _listen(self) -> None:
        channel = wake_channel(self.queue_name)
        _, registration = self._claims()
        own = registration.channel.encode()
        backoff = Backoff()
        while True:
            raise_if_cancelled()  # close() cancels this task; Python 3.11 may lose that
            pubsub = self.pool.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel, registration.channel)
                backoff.succeeded()
                if registration.held:
                    # Jobs handed over while nobody listened took the entry out (unsent): the
                    # next idle poll registers again.
                    registration.held = None
                self._listening = True
                self._notice()  # whatever was queued while nobody listened; ends a backoff
                while True:
                    raise_if_cancelled()
                    # A read with a timeout of its own: the connection's socket timeout would
                    # end an idle subscription every few seconds.
                    notice = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=NOTICE_WAIT
                    )
                    if notice is None:
                        continue
                    if notice["channel"] == own:
                        await self._take_handed(notice["data"])
                    elif not await self._start_noticed(notice["data"].decode(errors="replace")):
                        self._notice()
            except REDIS_ERRORS as exc:
                # Polling goes on without it: even a bug here only delays jobs, and is logged.
                delay = backoff.failed()
                log.log(
                    logging.WARNING if unavailable(exc) else logging.ERROR,
                    "wake channel lost (%s); polling every %g s, listening again in %.1f s",
                    exc,
                    self.fallback_poll_delay,
                    delay,
                    exc_info=not unavailable(exc),
                )
            finally:
                self._listening = False
                with contextlib.suppress(*REDIS_ERRORS):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py 5
            await asyncio.sleep(delay)

    def handle_sig(self, signum: int) -> None:
        """arq's stop now (SIGINT, or SIGTERM without a completion wait), its jobs stopped as
        `_stop_jobs` does."""
        log.info("shutdown on %s: %d jobs to stop", signal.Signals(signum).name, len(self.tasks))
        self.allow_pick_jobs = False  # nor a job its notice names, until close() ends the listener
        self._stop_jobs()
        self._stop_main(signum)

    async def _wait_for_tasks_to_complete(self, signum: signal.Signals) -> None:
        """arq's stop after SIGTERM: running jobs get the completion wait, then are stopped."""
        await self._unregister()  # (a job handed over meanwhile would be given back)
        if self.tasks:  # (no job starts after the signal)
            await asyncio.wait(list(self.tasks.values()), timeout=self._job_completion_wait)
        left = sum(not task.done() for task in self.tasks.values())
        log.info("shutdown on %s: completion wait over, %d jobs to stop", signum.name, left)
        self._stop_jobs()
        self._stop_main(signum)

    def _stop_jobs(self) -> None:
        """Stop every job still running, to be re-queued. arq cancels the task of its whole run
        (read, job, end); but a job that has just returned (its task done, arq not yet resumed
        to write its end) would lose its result to that cancel and run again, after the ledger
        had been told it succeeded. A running job is cancelled through its own task, which is a
        no-op once it has returned; the others (not started yet, or writing their end in arq's
        shield, which goes on) are cancelled whole, as arq does."""
        for job_id, task in self.tasks.items():
            if not task.done():
                (self.job_tasks.get(job_id) or task).cancel()

    async def _give_back_lost(self) -> None:
        """Claims whose answers were lost and that were not sent again before this stop: what
        Redis ran of them goes back for the other workers (their tries uncounted), rather than
        wait for their claims to expire. One socket timeout for all: a stop during an outage
        leaves them to expire."""
        if self._claimer is None:
            return
        try:
            async with asyncio.timeout(SOCKET_TIMEOUT):
                for token, job_ids in self._lost_claims.pending():
                    # (A job running here is not given back: a message may have started it.)
                    ids = sorted(job_id for job_id in job_ids if job_id not in self.tasks)
                    if ids:
                        await self._claimer.give_back(ids, token)
        except REDIS_ERRORS as exc:
            log.warning("could not give back the jobs of claims left unanswered (%s)", exc)

    def _stop_main(self, signum: int) -> None:
        if self.main_task is not None:
            self.main_task.cancel()
        if self.on_stop is not None:
            self.on_stop(signal.Signals(signum))

    async def _unregister(self) -> None:
        """Out of the idle set: no more jobs handed over."""
        if self._claimer is None or self._registration is None or not self._pool:
            return
        if self._registration.held is not False:
            with contextlib.suppress(*REDIS_ERRORS):  # (those handed over are given back)
                await self._registration.unregister(self._claimer)

    async def close(self) -> None:
        self.allow_pick_jobs = False
        await self._unregister()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        # arq's own close, but its wait for the job tasks takes their exceptions as results: a
        # job cancelled while its end is being written (arq awaits that write in a shield) ends
        # with CancelledError, and arq's close would stop there, before on_shutdown (the liveness
        # key, buffered spans, the HTTP client) and before closing the pool.
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        if self._pool is None:
            return
        await self._give_back_lost()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        with contextlib.suppress(*REDIS_ERRORS):  # a stop during an outage still shuts down
            await self.pool.delete(self.health_check_key)
        if self.on_shutdown:
            await self.on_shutdown(self.ctx)
        await self.pool.aclose(close_connection_pool=True)
        self._pool = None


def run_worker(queue: QueueKey = "default", *, burst: bool = False) -> None:
    """Run one queue's worker until SIGTERM/SIGINT (which drain it), or until the queue is
    empty with `burst`."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    # uvloop, as uvicorn uses for the web: arq's Worker takes the loop set here (bench/ measures).
    asyncio.set_event_loop(uvloop.new_event_loop())
    WakingWorker(**worker_options(settings, queue), burst=burst).run()
