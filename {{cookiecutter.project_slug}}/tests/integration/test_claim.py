"""The worker's claim of due jobs (worker.claim), on real Redis: what arq's WATCH/MULTI claim
decides, for many jobs in one script."""

import asyncio
import uuid

from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis

from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.worker.claim import Claimer

NOW = 1_800_000_000_000
LIFETIME = 60_000


async def test_a_claim_takes_due_queued_jobs_that_no_worker_holds(settings: Settings) -> None:
    queue = settings.queue_name
    async with Redis.from_url(str(settings.redis_url)) as redis:
        ids = {name: f"{queue}-{name}" for name in ("due", "early", "held", "gone", "later")}
        await redis.zadd(
            queue,
            {ids["due"]: NOW - 5, ids["early"]: NOW, ids["held"]: NOW - 1, ids["later"]: NOW + 1},
        )
        await redis.set(in_progress_key_prefix + ids["held"], b"1")  # another worker's (arq's)

        claimed = await Claimer(redis, queue, LIFETIME).claim(list(ids.values()), NOW, "t1")

        assert [(job.job_id, job.score) for job in claimed] == [
            (ids["due"], NOW - 5),
            (ids["early"], NOW),
        ]
        for name in ("due", "early"):
            key = in_progress_key_prefix + ids[name]
            assert await redis.get(key) == b"t1"
            assert 0 < await redis.pttl(key) <= LIFETIME
        assert await redis.get(in_progress_key_prefix + ids["held"]) == b"1"
        for name in ("gone", "later"):
            assert not await redis.exists(in_progress_key_prefix + ids[name])
        await redis.delete(*(in_progress_key_prefix + job_id for job_id in ids.values()))


async def test_a_claim_sent_again_gets_its_own_jobs_back(settings: Settings) -> None:
    """redis-py resends a command whose reply a dropped connection lost: the second run of the
    same claim finds the claims the first one wrote, and returns them rather than skip them."""
    queue = settings.queue_name
    async with Redis.from_url(str(settings.redis_url)) as redis:
        ids = [f"{queue}-{n}" for n in range(3)]
        await redis.zadd(queue, dict.fromkeys(ids, NOW))
        claimer = Claimer(redis, queue, LIFETIME)

        first = await claimer.claim(ids, NOW, "same")
        again = await claimer.claim(ids, NOW, "same")
        other = await claimer.claim(ids, NOW, "another")

        assert [job.job_id for job in first] == ids
        assert again == first
        assert other == []
        await redis.delete(*(in_progress_key_prefix + job_id for job_id in ids))


async def test_workers_claiming_the_same_jobs_at_once_share_them_out(settings: Settings) -> None:
    queue = settings.queue_name
    async with Redis.from_url(str(settings.redis_url)) as redis:
        ids = [uuid.uuid4().hex for _ in range(300)]
        await redis.zadd(queue, dict.fromkeys(ids, NOW))
        claimers = [Claimer(redis, queue, LIFETIME) for _ in range(4)]

        rounds = await asyncio.gather(
            *(
                claimer.claim(ids[start:] + ids[:start], NOW, f"claim-{n}-{start}")
                for n, claimer in enumerate(claimers)
                for start in (0, 150)
            )
        )

        taken = [job.job_id for claimed in rounds for job in claimed]
        assert sorted(taken) == sorted(ids)  # each job once, none left
        await redis.delete(*(in_progress_key_prefix + job_id for job_id in ids))
