"""Redis faults as the web meets them: a stall past the socket timeout in the middle of an enqueue
with an Idempotency-Key, a full Redis (noeviction) and a read-only one (a failover's old master).

Each test runs a redis-server of its own (conftest.RedisServer) and the web app with its real
lifespan on it; workers are real processes. Marked slow: they wait out real timeouts.
"""

import asyncio
import hashlib
import signal
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import RedisDsn
from redis import Redis
from redis.exceptions import OutOfMemoryError, RedisError

from {{ cookiecutter.package_name }}.queue import DeadLetter, JobError, JobState
from {{ cookiecutter.package_name }}.queue.arq_queue import WEB_SOCKET_TIMEOUT, ArqJobQueue, ledger_for
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.web.app import create_app

from ..auth import AUTH
from .conftest import RedisServer, SpawnWorker

pytestmark = pytest.mark.slow

# Long enough for the web's first send of the enqueue to time out and redis-py to send it again,
# short enough that the retry is still waiting when Redis resumes: then the stalled first send
# runs first, and the retry meets its own first try.
STALL = WEB_SOCKET_TIMEOUT + 2.5
# Longer than every try of the web (three sends, 5 s each): it answers 503 while Redis still
# holds the sends, which then run when it resumes.
LONG_STALL = 4 * WEB_SOCKET_TIMEOUT + 5
# What Redis says when it refuses a write, which a readiness answer must not repeat.
REDIS_WORDS = ("OOM", "maxmemory", "READONLY", "replica", "command not allowed")


@pytest.fixture
def own_settings(own_redis: RedisServer, settings: Settings) -> Settings:
    return settings.model_copy(update={"redis_url": RedisDsn(own_redis.url)})


@pytest.fixture
async def web(own_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its real lifespan on the test's own Redis; generous client timeouts, as the
    web's own answer is what a test judges."""
    app = create_app(own_settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=AUTH, timeout=120
        ) as http:
            yield http


def claimed_job(settings: Settings, key: str) -> str | None:
    """The job id the Idempotency-Key's claim in Redis points at, if the key is claimed."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    with Redis.from_url(str(settings.redis_url)) as redis:
        raw = redis.get(f"{settings.queue_name}:idempotency:{digest}")
    return None if raw is None else raw.decode().split(" ")[1]


async def finished(http: httpx.AsyncClient, location: str, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        job: dict[str, Any] = (await http.get(location)).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"not finished within {within} s: {job}"
        await asyncio.sleep(0.1)


async def ready_within(http: httpx.AsyncClient, seconds: float) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        response = await http.get("/health/ready")
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.2)


def executed(redis: Redis, *names: str) -> int:
    """How many commands of these names Redis has run to the end (not refused or failed)."""
    stats: Any = redis.info("commandstats")
    counts = [stats.get(f"cmdstat_{name}", {}) for name in names]
    return sum(
        c.get("calls", 0) - c.get("failed_calls", 0) - c.get("rejected_calls", 0) for c in counts
    )


FILLER = 3_000_000
"""Bytes of filler: with the limit 1 MB under what Redis then uses, freeing them brings it 2 MB
under the limit."""


def fill(redis: Redis) -> list[str]:
    """Make Redis full for every write, as the README advises it be (noeviction): write filler,
    then set `maxmemory` 1 MB below the memory in use. A limit just above it (filled up to the
    limit) flickers: used memory dips when Redis frees a client's buffers, and a write slips
    through. Returns the filler's keys: deleting them makes room again."""
    keys = [f"filler:{n}" for n in range(FILLER // 65_536)]
    with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.set(key, b"x" * 65_536)
        pipe.execute()
    redis.config_set("maxmemory-policy", "noeviction")
    used = int(redis.info("memory")["used_memory"])  # type: ignore[index]  # sync client
    redis.config_set("maxmemory", used - 1_000_000)
    with pytest.raises(OutOfMemoryError):
        redis.set("filler:probe", b"x")
    return keys


@pytest.mark.parametrize("stall", [STALL, LONG_STALL], ids=["retried", "given-up"])
async def test_an_enqueue_with_a_key_during_a_stall_is_a_job_that_runs_or_a_503_never_a_404(
    stall: float,
    own_redis: RedisServer,
    own_settings: Settings,
    web: httpx.AsyncClient,
    spawn_worker: SpawnWorker,
) -> None:
    key = f"stall-{uuid.uuid4().hex}"
    body = {"task": "word_count", "args": {"text": "through a stall"}}
    headers = {"Idempotency-Key": key}
    assert own_redis.process is not None
    # A service that has run a while: Redis knows the enqueue's script (else both sends of it
    # would fail alike, NOSCRIPT, and only a third one, after loading it, would run).
    warm = await web.post("/jobs", json={"task": "word_count", "args": {"text": "warm"}})
    assert warm.status_code == 202, warm.text
    with Redis.from_url(own_redis.url) as redis:
        before = executed(redis, "evalsha", "set")

    own_redis.process.send_signal(signal.SIGSTOP)
    try:
        answer = asyncio.create_task(web.post("/jobs", json=body, headers=headers))
        await asyncio.sleep(stall)
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
    first = await answer

    with Redis.from_url(own_redis.url) as redis:
        ran = executed(redis, "evalsha", "set") - before
    print(f"\nstall of {stall} s: answered {first.status_code}; the enqueue ran {ran} times")
    assert first.status_code in (200, 202, 503), first.text  # never 404, never 500
    if first.status_code == 503:
        assert first.headers["retry-after"], first.headers
        # The web gave up; the sends Redis held ran when it resumed (the fault was met).
        assert ran >= 1, "no send of the enqueue ever ran"
        first = await web.post("/jobs", json=body, headers=headers)  # the client's retry
        print(f"the same request after the 503: {first.status_code}")
        assert first.status_code in (200, 202), first.text
    else:
        assert ran >= 2, "the stalled send and its retry did not both run: the fault was not met"
    location = first.headers["location"]
    job_id = first.json()["id"]
    assert (await web.get(location)).status_code == 200  # the job exists
    assert claimed_job(own_settings, key) == job_id  # and the key points at it

    again = await web.post("/jobs", json=body, headers=headers)
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert (again.json()["id"], again.headers["location"]) == (job_id, location)

    spawn_worker("default", settings=own_settings)
    job = await finished(web, location, within=60)
    assert (job["state"], job["result"]["words"]) == ("succeeded", 3), job
    events = (await web.get(f"{location}/events")).json()
    runs = [e["state"] for e in events if e["kind"] == "state"].count("in_progress")
    print(f"the job succeeded after {runs} run(s)")
    assert runs == 1, events


async def test_an_enqueue_with_its_own_job_id_during_a_stall_is_that_job_not_a_conflict(
    own_redis: RedisServer,
    own_settings: Settings,
    web: httpx.AsyncClient,
    spawn_worker: SpawnWorker,
) -> None:
    # Without a key, the retried send finds the job id taken, by its own first try.
    job_id = f"stall-{uuid.uuid4().hex}"
    body = {"task": "word_count", "args": {"text": "my own id"}, "job_id": job_id}
    assert own_redis.process is not None
    warm = await web.post("/jobs", json={"task": "word_count", "args": {"text": "warm"}})
    assert warm.status_code == 202, warm.text
    with Redis.from_url(own_redis.url) as redis:
        before = executed(redis, "evalsha")

    own_redis.process.send_signal(signal.SIGSTOP)
    try:
        answer = asyncio.create_task(web.post("/jobs", json=body))
        await asyncio.sleep(STALL)
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
    first = await answer

    with Redis.from_url(own_redis.url) as redis:
        ran = executed(redis, "evalsha") - before
    print(f"\nstall of {STALL} s, job_id given: answered {first.status_code}; ran {ran} times")
    assert ran >= 2, "the stalled send and its retry did not both run: the fault was not met"
    assert first.status_code == 202, first.text
    assert first.json()["id"] == job_id
    spawn_worker("default", settings=own_settings)
    job = await finished(web, first.headers["location"], within=60)
    assert job["state"] == "succeeded", job


async def test_a_full_redis_is_not_ready_and_refuses_jobs_without_leaving_a_trace(
    own_redis: RedisServer, own_settings: Settings, web: httpx.AsyncClient
) -> None:
    assert (await web.get("/health/ready")).status_code == 200
    with Redis.from_url(own_redis.url) as redis:
        # As the README advises: a full Redis refuses writes rather than evicting jobs.
        filler = fill(redis)

        ready = await web.get("/health/ready")
        key = f"full-{uuid.uuid4().hex}"
        job_id = f"full-{uuid.uuid4().hex}"
        body = {"task": "word_count", "args": {"text": "no room"}, "job_id": job_id}
        refused = await web.post("/jobs", json=body, headers={"Idempotency-Key": key})
        batch = {"jobs": [{"task": "word_count", "args": {"text": "no room"}}] * 3}
        refused_batch = await web.post("/jobs/batch", json=batch)

        redis.delete(*filler)
        recovered = await ready_within(web, 10)

    assert ready.status_code == 503, ready.text
    assert ready.headers["retry-after"] == "5"
    assert ready.json()["status"] == "unavailable"
    assert not [word for word in REDIS_WORDS if word in ready.text], ready.text
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"]
    assert refused_batch.status_code == 503, refused_batch.text
    assert recovered.status_code == 200, recovered.text
    # Nothing was half-written: no record of the refused job, and its key is free for any body.
    assert claimed_job(own_settings, key) is None
    assert (await web.get(f"/jobs/{job_id}")).status_code == 404
    other = {"task": "word_count", "args": {"text": "another body"}}
    accepted = await web.post("/jobs", json=other, headers={"Idempotency-Key": key})
    assert accepted.status_code == 202, accepted.text


async def test_jobs_are_read_while_redis_is_full(
    own_redis: RedisServer, own_settings: Settings, web: httpx.AsyncClient
) -> None:
    # Reads outside MULTI: a full Redis refuses every command queued in a transaction, reads too.
    accepted = await web.post("/jobs", json={"task": "word_count", "args": {"text": "kept"}})
    location = accepted.headers["location"]
    done = (await web.post("/jobs", json={"task": "word_count", "args": {"text": "done"}})).json()
    async with ArqJobQueue.connect(own_settings) as backend:  # ended: its stream ends too
        await ledger_for(backend._redis, own_settings).finished(done["id"], JobState.SUCCEEDED)
    with Redis.from_url(own_redis.url) as redis:
        filler = fill(redis)
        try:
            job = await web.get(location)
            events = await web.get(f"{location}/events")
            streamed = await web.get(f"{done['url']}/stream")
            refused = await web.post("/jobs", json={"task": "word_count", "args": {"text": "x"}})
        finally:
            redis.delete(*filler)

    assert job.status_code == 200, job.text
    assert job.json()["state"] == "queued"
    assert events.status_code == 200, events.text
    assert [event["state"] for event in events.json()] == ["queued"]
    assert streamed.status_code == 200, streamed.text
    assert "event: state" in streamed.text
    assert '"state":"succeeded"' in streamed.text
    assert refused.status_code == 503, refused.text


async def test_a_read_only_redis_after_a_failover_is_not_ready(
    own_redis: RedisServer, web: httpx.AsyncClient, tmp_path: Path
) -> None:
    directory = tmp_path / "new-primary"
    directory.mkdir()
    new_primary = RedisServer(directory)  # the server a failover promoted
    new_primary.start()
    try:
        assert (await web.get("/health/ready")).status_code == 200
        with Redis.from_url(own_redis.url) as redis:
            redis.replicaof("127.0.0.1", new_primary.command[2])
            ready = await web.get("/health/ready")
            refused = await web.post("/jobs", json={"task": "word_count", "args": {"text": "ro"}})
            redis.replicaof("NO", "ONE")
        recovered = await ready_within(web, 10)
    finally:
        new_primary.stop()

    assert ready.status_code == 503, ready.text
    assert ready.headers["retry-after"] == "5"
    assert not [word for word in REDIS_WORDS if word in ready.text], ready.text
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"]
    assert recovered.status_code == 200, recovered.text


async def test_a_redis_that_forgot_its_scripts_still_takes_every_enqueue_and_record_write(
    own_redis: RedisServer,
    own_settings: Settings,
    web: httpx.AsyncClient,
    spawn_worker: SpawnWorker,
) -> None:
    """Web and worker send their scripts by SHA (EVALSHA); a restarted or failed-over Redis,
    or SCRIPT FLUSH, leaves it without them, and each must load its script again, not fail:
    an enqueue alone, enqueues grouped into one round trip, and a worker's record writes."""
    job = {"task": "word_count", "args": {"text": "a b"}}
    with Redis.from_url(own_redis.url) as redis:
        redis.script_flush()
        alone = await web.post("/jobs", json=job)
        assert alone.status_code == 202, alone.text
        spawn_worker(settings=own_settings)
        jobs = [await finished(web, alone.headers["location"], within=20)]
        redis.script_flush()  # the running worker's next record writes meet an empty cache
        together = await asyncio.gather(*(web.post("/jobs", json=job) for _ in range(20)))
        assert [answer.status_code for answer in together] == [202] * 20
        for answer in together:
            jobs.append(await finished(web, answer.headers["location"], within=20))
        scripts_run = executed(redis, "evalsha")

    outcome = ("succeeded", {"words": 2, "characters": 3})
    assert [(job["state"], job["result"]) for job in jobs] == [outcome] * 21
    assert scripts_run >= 2 * len(jobs), "enqueues and record writes go by SHA"


async def test_concurrent_keyed_enqueues_during_a_stall_each_run_once_or_get_a_503(
    own_redis: RedisServer,
    own_settings: Settings,
    web: httpx.AsyncClient,
    spawn_worker: SpawnWorker,
    group_sizes: list[int],
) -> None:
    """Enqueues that share a round trip (queue/group_commit.py) meet a stall together: redis-py
    sends their pipeline again, the first one still runs when Redis resumes, and each request
    must still get its own job, once, or a 503 whose retry gets it."""
    assert own_redis.process is not None
    warm = await web.post("/jobs", json={"task": "word_count", "args": {"text": "warm"}})
    assert warm.status_code == 202, warm.text
    requests = [
        ({"task": "word_count", "args": {"text": f"job {i}"}}, {"Idempotency-Key": f"k{i}-{uid}"})
        for i, uid in enumerate(uuid.uuid4().hex for _ in range(10))
    ]

    own_redis.process.send_signal(signal.SIGSTOP)
    try:
        answers = asyncio.gather(*(web.post("/jobs", json=b, headers=h) for b, h in requests))
        await asyncio.sleep(STALL)
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
    firsts = await answers

    assert max(group_sizes) > 1, "the enqueues did not share a round trip: the fault was not met"
    locations = []
    for (body, headers), first in zip(requests, firsts, strict=True):
        assert first.status_code in (202, 503), first.text  # never 404, 409 or 500
        if first.status_code == 503:
            first = await web.post("/jobs", json=body, headers=headers)  # the client's retry
            assert first.status_code in (200, 202), first.text
        assert claimed_job(own_settings, headers["Idempotency-Key"]) == first.json()["id"]
        locations.append(first.headers["location"])
    assert len(set(locations)) == len(requests)

    spawn_worker("default", settings=own_settings)
    for location in locations:
        job = await finished(web, location, within=60)
        assert (job["state"], job["result"]["words"]) == ("succeeded", 2), job
        events = (await web.get(f"{location}/events")).json()
        assert [e["state"] for e in events if e["kind"] == "state"].count("in_progress") == 1


async def test_a_full_redis_refuses_concurrent_enqueues_each_with_a_503_and_no_trace(
    own_redis: RedisServer, own_settings: Settings, web: httpx.AsyncClient
) -> None:
    """Enqueues sharing one pipeline each meet the full Redis alone: each its own 503, none
    half-written, and the keys are free afterwards."""
    keys = [f"full-{i}-{uuid.uuid4().hex}" for i in range(10)]
    body = {"task": "word_count", "args": {"text": "no room"}}
    with Redis.from_url(own_redis.url) as redis:
        filler = fill(redis)
        try:
            refused = await asyncio.gather(
                *(web.post("/jobs", json=body, headers={"Idempotency-Key": k}) for k in keys)
            )
            queued = redis.zcard(own_settings.queue_name)
        finally:
            redis.delete(*filler)

    assert [answer.status_code for answer in refused] == [503] * len(keys)
    assert all(answer.headers["retry-after"] for answer in refused)
    assert queued == 0
    assert [claimed_job(own_settings, key) for key in keys] == [None] * len(keys)
    accepted = await asyncio.gather(
        *(web.post("/jobs", json=body, headers={"Idempotency-Key": k}) for k in keys)
    )
    assert [answer.status_code for answer in accepted] == [202] * len(keys)


async def test_a_job_that_fails_for_good_ends_with_its_letter_or_not_at_all(
    own_redis: RedisServer, own_settings: Settings
) -> None:
    """The worker writes a job's failure and its dead letter in one transaction: a Redis that
    refuses the write (full, here) leaves the record as it was and no letter (the try ends and
    the job runs again), never a record saying failed without its letter, or the reverse."""
    job_id = f"doomed-{uuid.uuid4().hex}"
    letter = DeadLetter(
        job_id=job_id,
        task="word_count",
        queue=own_settings.queue_name,
        kwargs={"text": "x"},
        error=JobError("ValueError", "no"),
        tries=1,
        enqueued_at=None,
        failed_at=datetime.now(tz=UTC),
    )
    async with ArqJobQueue.connect(own_settings) as backend:
        ledger = ledger_for(backend._redis, own_settings)
        await ledger.created(job_id, "word_count", own_settings.queue_name)
        await ledger.started(job_id, "word_count", own_settings.queue_name, 1)
        with Redis.from_url(own_redis.url) as redis:
            filler = fill(redis)
            with pytest.raises(RedisError):
                await ledger.add_dead_letter(letter)
            record = await backend.get(job_id)
            assert record is not None
            assert record.state is JobState.IN_PROGRESS
            assert await ledger.dead_letters.get(job_id) is None
            redis.delete(*filler)

        await ledger.add_dead_letter(letter)

        record = await backend.get(job_id)
        assert record is not None
        assert (record.state, record.error) == (JobState.FAILED, letter.error)
        kept = await ledger.dead_letters.get(job_id)
        assert kept is not None
        assert kept.error == letter.error
