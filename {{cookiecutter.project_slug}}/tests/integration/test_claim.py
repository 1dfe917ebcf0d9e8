"""The worker's claim of due jobs (worker.claim), on real Redis: what arq's WATCH/MULTI claim
decides, for many jobs in one script, and what arq's run_job would read of each job next."""

import asyncio
import time
import uuid
from typing import Any

import pytest
from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, retry_key_prefix
from pydantic import RedisDsn
from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from {{ cookiecutter.package_name }}.queue import JobRecord
from {{ cookiecutter.package_name }}.queue.arq_queue import ArqJobQueue
from {{ cookiecutter.package_name }}.queue.wake_channel import handoff_member, idle_workers_key
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.worker import process
from {{ cookiecutter.package_name }}.worker.claim import LOST_AFTER_MS, Claimer
from {{ cookiecutter.package_name }}.worker.options import worker_options
from {{ cookiecutter.package_name }}.worker.process import WakingWorker

from .conftest import RedisServer, stop_worker

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

        claimed = await Claimer(redis, queue, LIFETIME, aborts=True).claim(
            list(ids.values()), NOW, "t1"
        )

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
        await forget(redis, list(ids.values()))


async def test_a_claim_sent_again_gets_its_own_jobs_back(settings: Settings) -> None:
    """redis-py resends a command whose reply a dropped connection lost: the second run of the
    same claim finds the claims the first one wrote, and returns them rather than skip them."""
    queue = settings.queue_name
    async with Redis.from_url(str(settings.redis_url)) as redis:
        ids = [f"{queue}-{n}" for n in range(3)]
        await redis.zadd(queue, dict.fromkeys(ids, NOW))
        claimer = Claimer(redis, queue, LIFETIME, aborts=True)

        first = await claimer.claim(ids, NOW, "same")
        await redis.pexpire(in_progress_key_prefix + ids[0], 1000)  # (long after the first run)
        again = await claimer.claim(ids, NOW, "same")
        other = await claimer.claim(ids, NOW, "another")

        assert [job.job_id for job in first] == ids
        assert again == first
        assert other == []
        # The job starts now: its claim runs a full lifetime from the second run, not the first.
        assert await redis.pttl(in_progress_key_prefix + ids[0]) > LIFETIME - 10_000
        await forget(redis, ids)


async def test_a_claim_reads_each_job_as_arqs_run_job_would(settings: Settings) -> None:
    """What arq's run_job reads and writes first (the job, its try counted, an abort taken),
    done in the claim: a try counted once also when the claim is sent again."""
    queue = settings.queue_name
    async with Redis.from_url(str(settings.redis_url)) as redis:
        ids = [f"{queue}-{name}" for name in ("first", "again", "aborted", "expired")]
        await redis.zadd(queue, dict.fromkeys(ids, NOW))
        for job_id in ids[:3]:
            await redis.set(job_key_prefix + job_id, f"job {job_id}".encode(), px=LIFETIME)
        await redis.set(retry_key_prefix + ids[1], 2)  # two tries before this one
        await redis.zadd(abort_jobs_ss, {ids[2]: NOW})
        claimer = Claimer(redis, queue, LIFETIME, aborts=True)

        claimed = await claimer.claim(ids, NOW, "t1")
        again = await claimer.claim(ids, NOW, "t1")  # redis-py's resend after a lost reply

        assert [(job.job, job.job_try, job.aborted) for job in claimed] == [
            (f"job {ids[0]}".encode(), 1, False),
            (f"job {ids[1]}".encode(), 3, False),
            (f"job {ids[2]}".encode(), 1, True),
            (None, 1, False),
        ]
        assert [job.job_try for job in again] == [1, 3, 1, 1]
        assert await redis.zscore(abort_jobs_ss, ids[2]) is None
        assert 0 < await redis.ttl(retry_key_prefix + ids[0]) <= 88400
        await forget(redis, ids)
        await redis.delete(*(job_key_prefix + job_id for job_id in ids))


async def test_a_claim_given_back_leaves_the_jobs_as_before_it(settings: Settings) -> None:
    """A worker told to stop while its claim was under way gives the jobs back: its claims
    gone and the tries they counted uncounted; a claim that is no longer its own is left."""
    queue = settings.queue_name
    async with Redis.from_url(str(settings.redis_url)) as redis:
        ids = [f"{queue}-{name}" for name in ("fresh", "tried", "taken")]
        await redis.zadd(queue, dict.fromkeys(ids, NOW))
        await redis.set(retry_key_prefix + ids[1], 2)
        claimer = Claimer(redis, queue, LIFETIME, aborts=True)
        claimed = await claimer.claim(ids, NOW, "mine")
        await redis.set(in_progress_key_prefix + ids[2], b"another's")  # (expired, re-claimed)

        await claimer.give_back([job.job_id for job in claimed], "mine")

        assert not await redis.exists(*(in_progress_key_prefix + job_id for job_id in ids[:2]))
        assert not await redis.exists(retry_key_prefix + ids[0])
        assert await redis.get(retry_key_prefix + ids[1]) == b"2"
        assert await redis.get(in_progress_key_prefix + ids[2]) == b"another's"
        assert await redis.get(retry_key_prefix + ids[2]) == b"1"
        await forget(redis, ids)


async def test_a_claimed_job_runs_without_a_read_of_its_own(
    settings: Settings, own_redis: RedisServer
) -> None:
    """The worker as shipped, on a Redis of the test's own whose command counts are the
    worker's: each job costs one transaction (its end), not two (arq's read, then its end)."""
    mine = settings.model_copy(update={"redis_url": RedisDsn(own_redis.url)})
    options = {**worker_options(mine, "default"), "cron_jobs": [], "handle_signals": False}
    async with ArqJobQueue.connect(mine) as backend, Redis.from_url(own_redis.url) as redis:
        ids = []
        for n in range(20):
            enqueued = await backend.enqueue(
                "word_count", {"text": "a " * n}, queue_name=mine.queue_name
            )
            ids.append(enqueued.job_id)
        await redis.config_resetstat()
        worker = WakingWorker(**{**options, "burst": True})
        try:
            await worker.main()
        finally:
            await worker.close()
        calls = await redis.info("commandstats")
        for job_id in ids:
            job = await backend.get(job_id)
            assert job is not None
            assert (job.state.value, job.tries) == ("succeeded", 1)

    assert calls["cmdstat_exec"]["calls"] == len(ids), calls


async def test_workers_claiming_the_same_jobs_at_once_share_them_out(settings: Settings) -> None:
    queue = settings.queue_name
    async with Redis.from_url(str(settings.redis_url)) as redis:
        ids = [uuid.uuid4().hex for _ in range(300)]
        await redis.zadd(queue, dict.fromkeys(ids, NOW))
        claimers = [Claimer(redis, queue, LIFETIME, aborts=True) for _ in range(4)]

        rounds = await asyncio.gather(
            *(
                claimer.claim(ids[start:] + ids[:start], NOW, f"claim-{n}-{start}")
                for n, claimer in enumerate(claimers)
                for start in (0, 150)
            )
        )

        taken = [job.job_id for claimed in rounds for job in claimed]
        assert sorted(taken) == sorted(ids)  # each job once, none left
        await forget(redis, ids)


async def forget(redis: Redis, ids: list[str]) -> None:
    """The claims' keys, and the tries they counted."""
    await redis.delete(*(prefix + job_id for job_id in ids for prefix in PREFIXES))


PREFIXES = (in_progress_key_prefix, retry_key_prefix)


async def test_a_claim_that_takes_a_job_takes_its_worker_out_of_the_idle_set(
    settings: Settings,
) -> None:
    """A worker registered as idle is busy once it claims a job: its entry leaves the idle set
    (no job is handed to it then), in the claim's own script; a claim that takes nothing leaves
    it there."""
    queue = settings.queue_name
    idle = idle_workers_key(queue)
    member = handoff_member("w1", LIFETIME, aborts=True)
    async with Redis.from_url(str(settings.redis_url)) as redis:
        ids = [f"{queue}-{n}" for n in range(2)]
        await redis.zadd(queue, {ids[0]: NOW, ids[1]: NOW + 1})  # (the second not due)
        await redis.zadd(idle, {member: 1})
        claimer = Claimer(redis, queue, LIFETIME, aborts=True)

        nothing = await claimer.claim(ids[1:], NOW, "t1", member=member)
        still = await redis.zscore(idle, member)
        claimed = await claimer.claim(ids, NOW, "t2", member=member)

        assert nothing == []
        assert still == 1
        assert [job.job_id for job in claimed] == ids[:1]
        assert await redis.zscore(idle, member) is None
        await forget(redis, ids)
        await redis.delete(idle)


async def one_job_in_a_burst(settings: Settings) -> tuple[WakingWorker, JobRecord | None]:
    """One job queued, then a worker in burst mode until it has run it (15 s at most: less than
    a claim left to expire); the worker and the job's record."""
    options = {**worker_options(settings, "default"), "cron_jobs": [], "handle_signals": False}
    async with ArqJobQueue.connect(settings) as backend:
        job_id = (
            await backend.enqueue("word_count", {"text": "a b"}, queue_name=settings.queue_name)
        ).job_id
        worker = WakingWorker(**{**options, "burst": True})
        try:
            async with asyncio.timeout(15):
                await worker.main()
        finally:
            await worker.close()
        return worker, await backend.get(job_id)


async def test_a_claim_whose_answer_was_lost_is_sent_again_and_counts_its_try_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis ran the claim, its answer never came (every retry of redis-py failed, or the turn's
    timeout cut it): the next poll sends the claim again under the same token, so the job runs at
    once, on its first try, instead of waiting for its claim to expire and counting two tries."""
    tokens: list[str] = []
    lost_at: list[float] = []
    claim = Claimer.claim

    async def answer_lost(self: Claimer, job_ids: list[str], *args: Any, **kwargs: Any) -> Any:
        tokens.append(args[1])
        claimed = await claim(self, job_ids, *args, **kwargs)
        if len(tokens) == 1:
            assert claimed, "the first claim took nothing: the fault was not met"
            lost_at.append(time.monotonic())
            raise RedisTimeoutError("Timeout reading from socket (the claim's answer lost)")
        return claimed

    monkeypatch.setattr(Claimer, "claim", answer_lost)
    worker, job = await one_job_in_a_burst(settings)
    ran_after = time.monotonic() - lost_at[0]

    assert worker.in_progress_timeout_s > 20  # (a claim left to expire would outlast this test)
    print(f"\nclaim's answer lost: the job had run {ran_after:.2f} s after")
    assert job is not None
    assert (job.state.value, job.tries) == ("succeeded", 1)
    assert len(tokens) >= 2
    assert tokens[1] == tokens[0]


async def test_a_claim_cut_by_the_polls_turn_timeout_is_sent_again_and_counts_its_try_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other way an answer is lost: Redis ran the claim, and the poll's turn timeout cut the
    wait for its answer (a cancel inside the claim, not an error of redis-py). The next poll
    sends it again under the same token: the job runs on its first try."""
    tokens: list[str] = []
    claim = Claimer.claim

    async def answer_late(self: Claimer, job_ids: list[str], *args: Any, **kwargs: Any) -> Any:
        tokens.append(args[1])
        claimed = await claim(self, job_ids, *args, **kwargs)
        if len(tokens) == 1:
            assert claimed, "the first claim took nothing: the fault was not met"
            await asyncio.sleep(60)  # (the answer that never comes: the turn ends first)
        return claimed

    monkeypatch.setattr(Claimer, "claim", answer_late)
    monkeypatch.setattr(process, "TURN_TIMEOUT", 0.5)
    _, job = await one_job_in_a_burst(settings)

    assert job is not None
    assert (job.state.value, job.tries) == ("succeeded", 1)
    assert len(tokens) >= 2
    assert tokens[1] == tokens[0]


async def test_a_worker_that_stops_gives_back_the_jobs_of_a_claim_left_unanswered(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every answer lost, Redis running each claim: the worker stops with a claim it never saw
    answered, and gives its jobs back (no claim left, no try counted) for the other workers,
    instead of leaving them held until the claim expires."""
    claim = Claimer.claim
    lost = asyncio.Event()

    async def answer_lost(self: Claimer, job_ids: list[str], *args: Any, **kwargs: Any) -> Any:
        if await claim(self, job_ids, *args, **kwargs):
            lost.set()
        raise RedisTimeoutError("Timeout reading from socket (the claim's answer lost)")

    monkeypatch.setattr(Claimer, "claim", answer_lost)
    options = {**worker_options(settings, "default"), "cron_jobs": [], "handle_signals": False}
    async with (
        ArqJobQueue.connect(settings) as backend,
        Redis.from_url(str(settings.redis_url)) as redis,
    ):
        job_id = (
            await backend.enqueue("word_count", {"text": "a b"}, queue_name=settings.queue_name)
        ).job_id
        worker = WakingWorker(**options)
        task = asyncio.create_task(worker.async_run())
        try:
            async with asyncio.timeout(10):
                await lost.wait()
            held = await redis.get(in_progress_key_prefix + job_id)
        finally:
            await stop_worker(worker, task)

        assert held is not None, "no claim held: the fault was not met"
        assert not await redis.exists(in_progress_key_prefix + job_id)
        assert not await redis.exists(retry_key_prefix + job_id)
        assert await redis.zscore(settings.queue_name, job_id) is not None  # (still queued)
        await redis.zrem(settings.queue_name, job_id)


async def test_a_job_handed_to_this_worker_is_its_own_once_no_message_could_start_it(
    settings: Settings,
) -> None:
    """A hand-off whose message never arrived: the claim takes the job as this worker's once
    its claim is older than LOST_AFTER_MS (before that, the message may still come and start
    it unconfirmed), on the try the hand-off counted, and re-keys the claim to its own token, so
    that the message, arriving after all, fails its confirmation. Another worker's hand-off is
    left alone."""
    queue = settings.queue_name
    async with Redis.from_url(str(settings.redis_url)) as redis:
        ids = [f"{queue}-{name}" for name in ("young", "old", "another's")]
        await redis.zadd(queue, dict.fromkeys(ids, NOW))
        young, old = LIFETIME - LOST_AFTER_MS + 1000, LIFETIME - LOST_AFTER_MS - 1000
        await redis.set(in_progress_key_prefix + ids[0], b"mine", px=young)
        await redis.set(in_progress_key_prefix + ids[1], b"mine", px=old)
        await redis.set(in_progress_key_prefix + ids[2], b"theirs", px=10_000)
        for job_id in ids:
            await redis.set(retry_key_prefix + job_id, 1)  # (the hand-off's try)
        claimer = Claimer(redis, queue, LIFETIME, aborts=True)

        unnamed = await claimer.claim(ids, NOW, "t0")
        claimed = await claimer.claim(ids, NOW, "t1", handed="mine")
        again = await claimer.claim(ids, NOW, "t1", handed="mine")  # (redis-py's resend)

        assert unnamed == []
        assert [(job.job_id, job.job_try) for job in claimed] == [(ids[1], 1)]
        assert again == claimed
        assert await redis.get(in_progress_key_prefix + ids[1]) == b"t1"
        assert await redis.pttl(in_progress_key_prefix + ids[1]) > old + 1000
        assert await redis.get(in_progress_key_prefix + ids[0]) == b"mine"
        assert await redis.get(retry_key_prefix + ids[1]) == b"1"
        await forget(redis, ids)
