"""The JobQueue on arq and Redis: the only module of the web side that imports arq."""

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from arq.connections import ArqRedis, RedisSettings
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.jobs import DeserializationError, deserialize_job, deserialize_result
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..settings import Settings
from .base import DuplicateJobError, JobError, JobRecord, JobState, QueueUnavailableError

log = logging.getLogger(__name__)

# Errors that mean "Redis is not there (now)"; anything else is a bug and should surface as one.
UNAVAILABLE = (RedisError, OSError, TimeoutError)


def redis_settings(settings: Settings, retries: int = 5) -> RedisSettings:
    """arq's connection settings from our URL.

    Unlike `RedisSettings.from_dsn` this decodes percent-escaped user names and passwords, and it
    retries commands with backoff (0.1, 0.2, 0.4 ... s), so a Redis blip of a few seconds does not
    kill an idle worker.
    """
    url = settings.redis_url
    return RedisSettings(
        host=url.host or "localhost",
        port=url.port or 6379,
        database=int((url.path or "/0").lstrip("/") or 0),
        username=unquote(url.username) if url.username else None,
        password=unquote(url.password) if url.password else None,
        ssl=url.scheme == "rediss",
        conn_timeout=2,
        conn_retries=5,
        conn_retry_delay=1,
        retry_on_timeout=True,
        retry_on_error=[RedisConnectionError, RedisTimeoutError, OSError],
        retry=Retry(ExponentialBackoff(cap=2, base=0.05), retries=retries),
    )


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class ArqJobQueue:
    def __init__(self, redis: ArqRedis, queue_name: str) -> None:
        self._redis = redis
        self._queue_name = queue_name

    @classmethod
    @asynccontextmanager
    async def connect(cls, settings: Settings) -> AsyncIterator["ArqJobQueue"]:
        """Open the pool for the web app, and close it on exit.

        Unlike arq's `create_pool` this does not insist on Redis at start-up: the app starts, says
        503 on /health/ready and on enqueue while Redis is away, and recovers by itself.
        """
        # Few retries: a client waiting for its 503 is better served by a quick answer.
        conf = redis_settings(settings, retries=2)
        redis = ArqRedis(
            host=conf.host,
            port=conf.port,
            db=conf.database,
            username=conf.username,
            password=conf.password,
            ssl=conf.ssl,
            socket_connect_timeout=conf.conn_timeout,
            # A hung Redis must not hang requests: fail the command, the route answers 503.
            socket_timeout=5,
            retry=conf.retry,
            retry_on_error=conf.retry_on_error,
            retry_on_timeout=conf.retry_on_timeout,
            default_queue_name=settings.queue_name,
        )
        queue = cls(redis, settings.queue_name)
        try:
            await queue.ping()
        except QueueUnavailableError as exc:
            log.warning("Redis is not answering yet (%s); readiness says 503 until it does", exc)
        try:
            yield queue
        finally:
            await redis.aclose()

    async def enqueue(
        self, task: str, kwargs: Mapping[str, Any], *, job_id: str | None = None
    ) -> str:
        try:
            job = await self._redis.enqueue_job(
                task, _job_id=job_id, _queue_name=self._queue_name, **kwargs
            )
        except UNAVAILABLE as exc:
            raise QueueUnavailableError(str(exc)) from exc
        if job is None:
            raise DuplicateJobError(job_id or "?")
        return job.job_id

    async def get(self, job_id: str) -> JobRecord | None:
        # One round trip instead of arq's Job.status() + Job.info() (three).
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(result_key_prefix + job_id)
                pipe.get(job_key_prefix + job_id)
                pipe.exists(in_progress_key_prefix + job_id)
                pipe.zscore(self._queue_name, job_id)
                result_raw, job_raw, in_progress, score = await pipe.execute()
        except UNAVAILABLE as exc:
            raise QueueUnavailableError(str(exc)) from exc

        try:
            if result_raw is not None:
                return self._finished(job_id, result_raw)
            if job_raw is None:
                return None
            job = deserialize_job(job_raw)
        except DeserializationError:
            return JobRecord(
                id=job_id,
                task="?",
                state=JobState.FAILED,
                tries=0,
                error=JobError("DeserializationError", "the stored job cannot be read"),
            )
        if in_progress:
            state = JobState.IN_PROGRESS
        elif score is not None and score > datetime.now(tz=UTC).timestamp() * 1000:
            state = JobState.DEFERRED
        else:
            state = JobState.QUEUED
        return JobRecord(
            id=job_id,
            task=job.function,
            state=state,
            tries=job.job_try or 0,
            enqueued_at=_utc(job.enqueue_time),
        )

    def _finished(self, job_id: str, raw: bytes) -> JobRecord:
        info = deserialize_result(raw)
        common: dict[str, Any] = {
            "id": job_id,
            "task": info.function,
            "tries": info.job_try or 1,
            "enqueued_at": _utc(info.enqueue_time),
            "started_at": _utc(info.start_time),
            "finished_at": _utc(info.finish_time),
        }
        if info.success:
            return JobRecord(state=JobState.SUCCEEDED, result=info.result, **common)
        error = info.result
        return JobRecord(
            state=JobState.FAILED,
            error=JobError(type(error).__name__, str(error)),
            **common,
        )

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except UNAVAILABLE as exc:
            raise QueueUnavailableError(str(exc)) from exc
