"""Dead letters: jobs that failed for good, kept with what it takes to look at and replay them.

Keys (prefix = the default queue's name, like every key of the service):
  `<prefix>:dead`        sorted set: job id -> failure time (ms); the index, read newest first
  `<prefix>:dead:<id>`   hash: task, queue, arguments (serializer.py), error, tries, times

A job id fails once for good, so it is the letter's id. Reads are bounded pages of the index, never
a scan. Beyond DEAD_LETTER_LIMIT letters the oldest are dropped, so a failure storm cannot fill
Redis; the count is visible on GET /dead-letters.
"""

from collections.abc import Awaitable
from datetime import datetime
from typing import cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from .base import DeadLetter, DeadLetterPage, JobError
from .serializer import deserialize, serialize


class DeadLetters:
    def __init__(self, redis: "Redis", prefix: str, limit: int) -> None:
        self.redis = redis
        self.index = f"{prefix}:dead"
        self.limit = limit

    def key(self, job_id: str) -> str:
        return f"{self.index}:{job_id}"

    def queue(self, pipe: Pipeline, letter: DeadLetter) -> None:
        """The letter's writes, queued on a transaction (the job's record ends failed in the same
        one: queue.ledger): its reply before the last lists the letters it pushed out of the
        newest `limit` (for `forget`)."""
        fields = {
            "task": letter.task,
            "queue": letter.queue,
            # The arguments as the job carried them (datetimes stay datetimes for a replay).
            "kwargs": serialize(dict(letter.kwargs)),
            "error_type": letter.error.type,
            "error_message": letter.error.message,
            "tries": str(letter.tries),
            "enqueued_at": letter.enqueued_at.isoformat() if letter.enqueued_at else "",
            "failed_at": letter.failed_at.isoformat(),
        }
        score = letter.failed_at.timestamp() * 1000
        pipe.hset(self.key(letter.job_id), mapping=fields)
        pipe.zadd(self.index, {letter.job_id: score})
        # Keep the newest `limit`: drop the index entries beyond it (their hashes: `forget`).
        pipe.zrange(self.index, 0, -(self.limit + 1))
        pipe.zremrangebyrank(self.index, 0, -(self.limit + 1))

    async def forget(self, dropped: list[bytes]) -> None:
        """Delete the letters `queue` pushed out of the index."""
        if dropped:
            await self.redis.delete(*(self.key(job_id.decode()) for job_id in dropped))

    async def get(self, job_id: str) -> DeadLetter | None:
        raw = await cast("Awaitable[dict[bytes, bytes]]", self.redis.hgetall(self.key(job_id)))
        return letter_from(job_id, raw) if raw else None

    async def time_at(self, rank: int) -> float | None:
        """When the `rank`-th newest letter failed (ms), or None past the last."""
        entries = await self.redis.zrevrange(self.index, rank, rank, withscores=True)
        return float(entries[0][1]) if entries else None

    async def page(self, limit: int, offset: int = 0) -> DeadLetterPage:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.index)
            pipe.zrevrange(self.index, offset, offset + limit - 1)
            total, ids = await pipe.execute()
        letters = []
        if ids:
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hgetall(self.key(job_id.decode()))
                hashes = await pipe.execute()
            for job_id, raw in zip(ids, hashes, strict=True):
                if raw:  # (a letter dropped between the two reads is skipped)
                    letters.append(letter_from(job_id.decode(), raw))
        return DeadLetterPage(total=total, letters=letters)

    async def remove(self, job_id: str) -> bool:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.index, job_id)
            pipe.delete(self.key(job_id))
            removed, _ = await pipe.execute()
        return bool(removed)

    async def purge(self) -> int:
        """Remove every letter, in bounded batches; return how many there were."""
        purged = 0
        while ids := await self.redis.zrange(self.index, 0, 499):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zrem(self.index, *ids)
                pipe.delete(*(self.key(job_id.decode()) for job_id in ids))
                removed, _ = await pipe.execute()
            purged += removed
        return purged


def _time(value: str) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def letter_from(job_id: str, raw: dict[bytes, bytes]) -> DeadLetter:
    fields = {k.decode(): v.decode() for k, v in raw.items() if k != b"kwargs"}
    return DeadLetter(
        job_id=job_id,
        task=fields["task"],
        queue=fields["queue"],
        kwargs=deserialize(raw[b"kwargs"]),
        error=JobError(fields["error_type"], fields["error_message"]),
        tries=int(fields["tries"]),
        enqueued_at=_time(fields.get("enqueued_at", "")),
        failed_at=datetime.fromisoformat(fields["failed_at"]),
    )
