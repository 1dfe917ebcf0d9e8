"""The JobQueue on arq and Redis: the only module of the web side that imports arq.

A job's state comes from two places. The ledger (ledger.py) is authoritative once a job has
finished, and keeps it for JOB_RETENTION. While a job is alive, arq's own keys say where it is
(queued, deferred, in progress), which stays true even for jobs that plain arq clients enqueued.
"""

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import msgpack
from arq.connections import ArqRedis, RedisSettings
from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.jobs import DeserializationError, deserialize_job, deserialize_result, serialize_job
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..settings import Settings
from ..webhooks import event_body
from .base import (
    JOB_META,
    DeadLetter,
    DeadLetterPage,
    DuplicateJobError,
    Enqueued,
    Idempotency,
    IdempotencyConflictError,
    JobError,
    JobEvent,
    JobFinishedError,
    JobNotFoundError,
    JobPage,
    JobRecord,
    JobState,
    NewJob,
    ParentRefusedError,
    QueueDepth,
    QueueStats,
    QueueUnavailableError,
    WorkerInfo,
    carried,
    first_state,
)
from .connections import bounded_pool, redis_pool, retry_policy
from .deliveries import Delivery, delivery_id, delivery_job
from .dependencies import in_batch
from .enqueue import ENQUEUE, ENQUEUE_MANY
from .event_hub import BLOCK_SECONDS, EventHub, NotAStreamError
from .group_commit import GroupCommit
from .ledger import Ledger, RecordWrite, SuccessSink, event_from, record_from
from .liveness import decode_beat, registry_key
from .serializer import RemoteError, deserialize, serialize
from .unavailable import unavailable, wrong_type
from .wake_channel import idle_workers_key, wake_channel

log = logging.getLogger(__name__)


@contextlib.contextmanager
def unavailable_as_queue_error() -> Iterator[None]:
    """Redis not answering becomes QueueUnavailableError, which the routes turn into a 503; any
    other error of Redis is a bug and stays one (queue.unavailable)."""
    try:
        yield
    except Exception as exc:
        if unavailable(exc):
            raise QueueUnavailableError(str(exc)) from exc
        raise


def redis_settings(settings: Settings, retries: int = 10) -> RedisSettings:
    """arq's connection settings, which its Worker requires; the worker connects with
    queue.connections (WakingWorker._connect), as the web does."""
    return RedisSettings(
        host=settings.redis_url.host or "localhost",
        port=settings.redis_url.port or 6379,
        database=settings.redis_database,
        username=settings.redis_username,
        password=settings.redis_password,
        ssl=settings.redis_url.scheme == "rediss",
        ssl_ca_certs=str(settings.redis_tls_ca_file) if settings.redis_tls_ca_file else None,
        conn_timeout=2,
        retry=retry_policy(retries),
    )


# How long the readiness probe's key lives (ms): a little longer than any sensible probe period.
READY_PROBE_MS = 60_000

WEB_SOCKET_TIMEOUT = 5.0


def ledger_for(
    redis: Any,
    settings: Settings,
    success_sink: SuccessSink | None = None,
    start_delay: float = 0.0,
) -> Ledger:
    return Ledger(
        redis,
        settings.queue_name,
        settings.job_retention,
        settings.dead_letter_limit,
        success_sink,
        getattr(redis, "expires_extra_ms", 86_400_000),  # (arq's default, for a plain Redis)
        start_delay,
    )


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _error_type(error: BaseException) -> str:
    return error.type_name if isinstance(error, RemoteError) else type(error).__name__


def _cancelled(error: BaseException) -> bool:
    return _error_type(error) == "CancelledError"


def outcome(job_id: str, raw: bytes, ledger: JobRecord | None) -> JobRecord:
    """The record of a job from the result arq stored for it: a finished job that the ledger may
    not know as finished (a timeout, an abort before the start, a job from a plain arq client).
    Only reads: the worker writes it into the ledger (settle)."""
    info = deserialize_result(raw, deserializer=deserialize)
    error = None if info.success else info.result
    if info.success:
        state = JobState.SUCCEEDED
    elif error is not None and _cancelled(error) and (ledger is None or ledger.cancel_requested):
        state = JobState.CANCELLED
    else:
        state = JobState.FAILED
    job_error = None if error is None else JobError(_error_type(error), str(error))
    return replace(
        ledger or JobRecord(id=job_id, task=info.function, state=state, tries=0),
        state=state,
        tries=info.job_try or 1,
        enqueued_at=_utc(info.enqueue_time),
        started_at=_utc(info.start_time),
        finished_at=_utc(info.finish_time),
        result=info.result if info.success else None,
        error=job_error,
    )


def settle_write(ledger: Ledger, job_id: str, raw: bytes) -> RecordWrite | None:
    """The write that finishes the record of a job arq ended without the job wrapper recording
    it (arq's own timeout, an abort before the start), from the result arq stored, so that the
    outcome outlives arq's result and the job's children are told (the ledger's SETTLE, a no-op
    for a record already finished). None for a success: only the job wrapper returns one, and it
    recorded it."""
    info = deserialize_result(raw, deserializer=deserialize)
    if info.success:
        return None
    error = info.result
    job_error = None if error is None else JobError(_error_type(error), str(error))
    aborted = error is not None and _cancelled(error)
    return ledger.settling(job_id, job_error, _utc(info.finish_time), aborted)


async def settle(ledger: Ledger, job_id: str, raw: bytes) -> None:
    """settle_write, sent alone (arq's own end of a job whose end it could not run)."""
    write = settle_write(ledger, job_id, raw)
    if write is not None:
        await write.send()


def _no_job_if_wrong_type(reply: Any) -> Any:
    """A pipeline's reply, with a key of another type read as no key: an id whose keys hold
    something else (a plain arq client's job named like another job's events) names no job of
    ours, a 404 rather than a 500. Any other error is raised."""
    if isinstance(reply, Exception):
        if wrong_type(reply):
            return None
        raise reply
    return reply


class ArqJobQueue:
    def __init__(
        self,
        redis: ArqRedis,
        settings: Settings,
        hub: EventHub,
        queues: Sequence[str] | None = None,
        id_prefix: str = "",
    ) -> None:
        self._redis = redis
        self._settings = settings
        # The queues whose jobs live on this Redis: both, or one queue's shard (queue.shards).
        self._queues = tuple(queues or (settings.queue_name, settings.bulk_queue_name))
        self._id_prefix = id_prefix  # what the ids this store makes start with
        self._ledger = ledger_for(redis, settings)
        self._hub = hub
        # EVALSHA, and the script's text only when Redis has forgotten it (a restart).
        # Concurrent enqueues share round trips (and, durable, one WAIT for replicas).
        replicas = settings.durable_enqueue_replicas
        replica_timeout = settings.durable_enqueue_timeout
        self._durable = "1" if replicas else "0"  # (replays then write too: queue/enqueue.py)
        self._enqueue_script = GroupCommit(redis, ENQUEUE, replicas, replica_timeout)
        self._enqueue_many_script = GroupCommit(redis, ENQUEUE_MANY, replicas, replica_timeout)

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, settings: Settings, queues: Sequence[str] | None = None, id_prefix: str = ""
    ) -> AsyncIterator["ArqJobQueue"]:
        """Open the pool for the web app, and close it on exit. `queues` and `id_prefix` make it
        one queue's shard (queue.shards); by default it holds both queues.

        Unlike arq's `create_pool` this does not insist on Redis at start-up: the app starts, says
        503 on /health/ready and on enqueue while Redis is away, and recovers by itself.
        """
        # Few retries: a client waiting for its 503 is better served by a quick answer. A hung
        # Redis must not hang requests: fail the command, the route answers 503. Nothing blocks
        # on this pool (event streams read through the hub's own connection).
        pool = bounded_pool(
            settings,
            socket_timeout=WEB_SOCKET_TIMEOUT,
            retries=2,
            max_connections=settings.redis_max_connections,
            idle_timeout=settings.redis_idle_timeout,
            wait_timeout=WEB_SOCKET_TIMEOUT,  # waiting for a free connection, then 503
        )
        redis = ArqRedis(
            pool,
            default_queue_name=settings.queue_name,
            job_serializer=serialize,
            job_deserializer=deserialize,
        )

        def open_reader() -> Redis:
            # One connection, outside the bound: it blocks up to BLOCK_SECONDS per read.
            timeout = BLOCK_SECONDS + WEB_SOCKET_TIMEOUT
            reader = redis_pool(settings, socket_timeout=timeout, retries=2, max_connections=1)
            return Redis(connection_pool=reader)

        hub = EventHub(redis, open_reader, settings.queue_name)
        backend = cls(redis, settings, hub, queues, id_prefix)
        try:
            await backend.ping()
        except QueueUnavailableError as exc:
            log.warning("Redis is not answering yet (%s); readiness says 503 until it does", exc)
        trimming = asyncio.create_task(pool.close_idle_forever(), name="redis-idle")
        try:
            yield backend
        finally:
            trimming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await trimming
            await hub.close()
            await redis.aclose()
            await pool.disconnect()

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
        with unavailable_as_queue_error():
            return await self._enqueue(
                task, kwargs, queue_name, job_id, idempotency, defer, meta or {}, tuple(after)
            )

    async def _enqueue(
        self,
        task: str,
        kwargs: Mapping[str, Any],
        queue_name: str,
        job_id: str | None,
        idempotency: Idempotency | None,
        defer: float,
        meta: Mapping[str, str],
        after: tuple[str, ...] = (),
    ) -> Enqueued:
        """One command, one round trip (arq's enqueue_job takes four): the script ENQUEUE claims
        the key, checks the id and writes record, job, queue entry and wake notice, all or none
        (queue/enqueue.py says why, and how a retried command recognises its own first try)."""
        chosen = job_id or self._new_id()
        state = first_state(defer)
        request_id = meta.get("request_id")
        keys, args = self._ledger.creation(chosen, task, queue_name, state, request_id, after)
        payload, ttl_ms, score = self._job(task, kwargs, meta, defer, after)
        keys += (job_key_prefix + chosen, result_key_prefix + chosen, queue_name, abort_jobs_ss)
        keys += (in_progress_key_prefix + chosen, retry_key_prefix + chosen)
        keys += (idle_workers_key(queue_name),)
        given = "1" if job_id else "0"
        more: tuple[bytes | int | str, ...] = (
            payload,
            ttl_ms,
            score,
            wake_channel(queue_name),
            given,
            self._durable,
            " ".join(after),
            self._expires_ms,
            "1" if not defer else "0",  # due now: it may go to an idle worker (the hand-off)
        )
        if idempotency is not None:
            digest = hashlib.sha256(idempotency.key.encode()).hexdigest()
            keys += (f"{self._settings.queue_name}:idempotency:{digest}",)
            more += (f"{idempotency.fingerprint} {chosen}", idempotency.window)
        outcome = await self._enqueue_script(keys=keys, args=(*args, *more))
        if outcome[0] == b"created":
            return Enqueued(chosen)
        if outcome[0] in (b"unknown", b"crowded"):
            raise ParentRefusedError(outcome[1].decode(), crowded=outcome[0] == b"crowded")
        if outcome[0] == b"taken" or idempotency is None:  # (only a claim answers otherwise)
            raise DuplicateJobError(chosen)
        fingerprint, _, earlier_id = outcome[1].decode().partition(" ")
        if fingerprint == idempotency.fingerprint:
            return Enqueued(earlier_id, created=False)
        raise IdempotencyConflictError(idempotency.key, earlier_id)

    async def _callback_of(self, job_id: str) -> str | None:
        """The callback URL its client gave the job (in its meta), if any."""
        raw = await self._redis.get(job_key_prefix + job_id)
        if raw is None:
            return None
        try:
            meta = deserialize_job(raw, deserializer=deserialize).kwargs.get(JOB_META) or {}
        except DeserializationError:  # a plain arq client's job in another format: none
            return None
        callback = meta.get("callback_url") if isinstance(meta, dict) else None
        return callback if isinstance(callback, str) else None

    @property
    def _expires_ms(self) -> int:
        return int(self._redis.expires_extra_ms)

    def _new_id(self) -> str:
        return self._id_prefix + uuid.uuid4().hex

    def _job(
        self,
        task: str,
        kwargs: Mapping[str, Any],
        meta: Mapping[str, str],
        defer: float,
        after: Sequence[str] = (),
    ) -> tuple[bytes, int, int]:
        """What ArqRedis.enqueue_job writes for a job: the serialized job, its time to live (ms)
        and its score in the queue (when it may start, ms). A job that runs `after` others
        carries their ids (its worker reads their results) and is kept while it waits, as long
        as their records are: its parents' end sets arq's usual lifetime (queue.dependencies)."""
        enqueued_ms = int(time.time() * 1000)
        defer_ms = int(defer * 1000)
        if after:
            meta = {**meta, "after": " ".join(after)}
            defer_ms = self._settings.job_retention * 1000
        payload = serialize_job(
            task, (), {**kwargs, **carried(meta)}, None, enqueued_ms, serializer=serialize
        )
        return payload, defer_ms + self._redis.expires_extra_ms, enqueued_ms + defer_ms

    async def enqueue_many(
        self, jobs: Sequence[NewJob], meta: Mapping[str, str] | None = None
    ) -> list[str]:
        ids = [self._new_id() for _ in jobs]  # new ids: nothing to check or clean up first
        meta = meta or {}
        request_id = meta.get("request_id")
        queues = sorted({job.queue_name for job in jobs})
        rows: list[tuple[str | bytes | int, ...]] = []
        kept: list[str] = []
        earlier: list[str] = []  # parents from before the batch, checked first
        for job_id, job in zip(ids, jobs, strict=True):
            after = tuple(in_batch(parent, ids) for parent in job.after)
            earlier += [parent for parent in job.after if not parent.startswith("#")]
            _keys, (*kept, _fresh, change, now_ms, _id) = self._ledger.creation(
                job_id, job.task, job.queue_name, request_id=request_id, after=after
            )
            payload, ttl_ms, score = self._job(job.task, job.kwargs, meta, 0, after)
            # Numbers as text: Lua would print a large one in floating-point notation.
            position = 2 + queues.index(job.queue_name)  # (KEYS[1] is the index)
            row = (change, now_ms, job_id, payload, str(ttl_ms), str(score), position)
            rows.append((*row, " ".join(after)))
        records = self._ledger.key("")
        keys = [self._ledger.index, *queues]
        args: list[str | bytes] = [
            *kept,  # retention and events kept: the same for every job
            records,
            self._ledger.events_key("").removeprefix(records),
            job_key_prefix,
            msgpack.packb(rows, use_bin_type=False),  # (Redis's cmsgpack predates bin types)
            self._durable,
            " ".join(earlier),
            str(self._expires_ms),
            *(wake_channel(queue) for queue in queues),
        ]
        with unavailable_as_queue_error():
            # (ENQUEUE_MANY: all or none)
            outcome = await self._enqueue_many_script(keys=keys, args=args)
        if isinstance(outcome, list):
            raise ParentRefusedError(outcome[1].decode(), crowded=outcome[0] == b"crowded")
        return ids

    async def get(self, job_id: str) -> JobRecord | None:
        with unavailable_as_queue_error():
            return await self._get(job_id)

    async def _get(self, job_id: str) -> JobRecord | None:
        # One round trip for the ledger and every arq key that says where the job is. Not a
        # transaction: a full Redis refuses every command queued in a MULTI, reads included, and
        # clients must still read their jobs then. (A job moving on between two of these reads
        # is read as it was a moment ago, as with any read.)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._ledger.key(job_id))
            pipe.get(result_key_prefix + job_id)
            pipe.get(job_key_prefix + job_id)
            pipe.exists(in_progress_key_prefix + job_id)
            pipe.smembers(self._ledger.children_key(job_id))
            for queue_name in self._queues:
                pipe.zscore(queue_name, job_id)
            replies = await pipe.execute(raise_on_error=False)
        raw_fields, result_raw, job_raw, in_progress, children, *scores = map(
            _no_job_if_wrong_type, replies
        )
        fields = {k.decode(): v.decode() for k, v in (raw_fields or {}).items()}
        ledger = record_from(job_id, fields) if fields else None
        if ledger is not None and children:
            ledger = replace(ledger, children=tuple(sorted(child.decode() for child in children)))
        if ledger is not None and ledger.state.finished:
            return ledger
        try:
            if result_raw is not None:
                return outcome(job_id, result_raw, ledger)
            job = (
                deserialize_job(job_raw, deserializer=deserialize) if job_raw is not None else None
            )
        except DeserializationError:
            return JobRecord(
                id=job_id,
                task=ledger.task if ledger else "?",
                state=JobState.FAILED,
                tries=ledger.tries if ledger else 0,
                error=JobError("DeserializationError", "the stored job cannot be read"),
            )
        score = next((s for s in scores if s is not None), None)
        if in_progress:
            state = JobState.IN_PROGRESS
        elif score is not None:
            deferred = score > time.time() * 1000
            state = JobState.DEFERRED if deferred else JobState.QUEUED
        elif ledger is not None:
            return ledger
        else:
            return None
        if ledger is not None:
            if state is JobState.IN_PROGRESS and ledger.state is not JobState.IN_PROGRESS:
                # arq has claimed the job; the job wrapper is about to record its start, which
                # drops an earlier try's progress: this try has reported none yet.
                return replace(ledger, state=state, tries=ledger.tries + 1, progress=None)
            return replace(ledger, state=state)
        if job is None:
            return None
        return JobRecord(
            id=job_id,
            task=job.function,
            state=state,
            tries=job.job_try or 0,
            enqueued_at=_utc(job.enqueue_time),
        )

    async def cancel(self, job_id: str) -> JobRecord:
        with unavailable_as_queue_error():
            return await self._cancel(job_id)

    async def _cancel(self, job_id: str) -> JobRecord:
        record = await self._get(job_id)
        if record is None:
            # Nothing is written for an unknown id, so it cannot poison a later job (arq #485).
            raise JobNotFoundError(job_id)
        if record.state.finished:
            raise JobFinishedError(job_id, record.state)
        if record.state in (JobState.QUEUED, JobState.DEFERRED):
            # Taken off its queue, or from its parents, before any worker claimed it: it never
            # starts. One script (the ledger's CANCEL) with its record, its children and its
            # webhook's delivery, as a worker would have sent it (queue.deliveries).
            delivery = None
            callback = await self._callback_of(job_id)
            if callback is not None:
                body = event_body(job_id, record.task, "cancelled", tries=record.tries)
                message_id = delivery_id(job_id, record.enqueued_at)
                payload = delivery_job(Delivery(callback, body, message_id))
                delivery = (job_key_prefix + message_id, payload, self._expires_ms)
            job_key = job_key_prefix + job_id
            if await self._ledger.cancel_unclaimed(job_id, job_key, self._queues, delivery):
                return await self._get(job_id) or record
            again = await self._get(job_id)
            if again is None or again.state.finished:
                # Ended meanwhile (or a resent cancel's first execution cancelled it).
                return again or record
            record = again
        # Running (or claimed a moment ago): ask its worker to cancel it.
        await self._ledger.request_cancel(job_id)
        await self._redis.zadd(abort_jobs_ss, {job_id: int(time.time() * 1000)})
        return replace(record, cancel_requested=True)

    async def events(
        self, job_id: str, after: str | None = None, wait: float = 0
    ) -> list[JobEvent]:
        with unavailable_as_queue_error():
            if wait > 0 and after is not None:
                key = self._ledger.events_key(job_id)
                try:
                    entries = await self._hub.wait(key, after, wait)
                except NotAStreamError as exc:
                    raise JobNotFoundError(job_id) from exc
                except RedisError as exc:  # (its catch-up read, on the pool)
                    if wrong_type(exc):
                        raise JobNotFoundError(job_id) from exc
                    raise
                return [event_from(entry_id, fields) for entry_id, fields in entries]
            try:
                return await self._ledger.events(job_id, after)
            except RedisError as exc:
                if wrong_type(exc):  # its key holds no stream: no events of a job
                    return []
                raise

    async def server_identity(self) -> str | None:
        """The server's run id and the database this store uses; None while Redis is away, or
        when its ACL refuses INFO (a check made where it can be, never a reason not to start)."""
        try:
            info: dict[str, Any] = await self._redis.info("server")
        except RedisError:
            return None
        return f"{info.get('run_id')}/{self._settings.redis_database}"

    async def ping(self) -> None:
        # A write, not PING: a full Redis (noeviction) and a read-only replica after a failover
        # answer PING and reads, yet refuse every job. One tiny key with an expiry, the same for
        # every replica of the web: nothing accumulates, and the probe costs one SET.
        with unavailable_as_queue_error():
            await self._redis.set(f"{self._settings.queue_name}:ready", b"1", px=READY_PROBE_MS)

    async def dead_letters(self, limit: int, offset: int = 0) -> DeadLetterPage:
        with unavailable_as_queue_error():
            return await self._ledger.dead_letters.page(limit, offset)

    async def dead_letter_time(self, rank: int) -> float | None:
        """When the `rank`-th newest dead letter failed (ms): how queue.shards pages letters of
        two stores without reading all those before the page."""
        with unavailable_as_queue_error():
            return await self._ledger.dead_letters.time_at(rank)

    async def dead_letter(self, job_id: str) -> DeadLetter | None:
        with unavailable_as_queue_error():
            return await self._ledger.dead_letters.get(job_id)

    async def remove_dead_letter(self, job_id: str) -> bool:
        with unavailable_as_queue_error():
            return await self._ledger.dead_letters.remove(job_id)

    async def purge_dead_letters(self) -> int:
        with unavailable_as_queue_error():
            return await self._ledger.dead_letters.purge()

    async def stats(self) -> QueueStats:
        with unavailable_as_queue_error():
            now_ms = time.time() * 1000
            async with self._redis.pipeline(transaction=False) as pipe:
                for queue_name in self._queues:
                    pipe.zcount(queue_name, "-inf", now_ms)
                    pipe.zcard(queue_name)
                    pipe.zrangebyscore(queue_name, "-inf", now_ms, start=0, num=1, withscores=True)
                pipe.zcard(self._ledger.dead_letters.index)
                *per_queue, dead = await pipe.execute()
            depths = []
            for index, queue_name in enumerate(self._queues):
                ready, total, oldest = per_queue[3 * index : 3 * index + 3]
                age = max(0.0, (now_ms - oldest[0][1]) / 1000) if oldest else 0.0
                depths.append(QueueDepth(queue_name, int(ready), int(total) - int(ready), age))
            return QueueStats(depths, int(dead))

    async def recent_jobs(
        self,
        limit: int,
        *,
        before: float | None = None,
        state: JobState | None = None,
        task: str | None = None,
    ) -> JobPage:
        with unavailable_as_queue_error():
            jobs, positions, next_before = await self._ledger.recent(limit, before, state, task)
        return JobPage(jobs, next_before, positions)

    async def arguments(self, job_id: str) -> Mapping[str, Any] | None:
        with unavailable_as_queue_error():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(job_key_prefix + job_id)
                pipe.get(result_key_prefix + job_id)
                job_raw, result_raw = await pipe.execute()
            try:
                if job_raw is not None:
                    kwargs = deserialize_job(job_raw, deserializer=deserialize).kwargs
                elif result_raw is not None:
                    kwargs = deserialize_result(result_raw, deserializer=deserialize).kwargs
                else:
                    letter = await self._ledger.dead_letters.get(job_id)
                    return dict(letter.kwargs) if letter else None
            except DeserializationError:
                return None
        return {name: value for name, value in kwargs.items() if name != JOB_META}

    async def workers(self) -> list[WorkerInfo]:
        with unavailable_as_queue_error():
            keys: list[bytes] = []
            for queue_name in self._queues:
                keys += await self._redis.zrevrange(registry_key(queue_name), 0, 99)
            beats = await self._redis.mget(keys) if keys else []
        alive = [info for raw in beats if raw and (info := decode_beat(raw)) is not None]
        return sorted(alive, key=lambda info: info.last_beat, reverse=True)[:100]

    def _session_key(self, session: str) -> str:
        return f"{self._settings.queue_name}:session:{session}"

    async def open_session(self, session: str, lifetime: int) -> None:
        with unavailable_as_queue_error():
            await self._redis.set(self._session_key(session), b"1", ex=lifetime)

    async def session_open(self, session: str) -> bool:
        with unavailable_as_queue_error():
            return bool(await self._redis.exists(self._session_key(session)))

    async def close_session(self, session: str) -> None:
        with unavailable_as_queue_error():
            await self._redis.delete(self._session_key(session))
