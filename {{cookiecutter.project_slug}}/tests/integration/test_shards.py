"""Sharding by queue on real processes: the bulk queue on a Redis of its own (BULK_REDIS_URL),
the web and a worker per queue as the Dockerfile runs them. Every job runs, every read finds its
job on the right server from the id alone, and the operator's reads show both servers."""

import asyncio
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import RedisDsn
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from {{ cookiecutter.package_name }}.queue import DeadLetter, JobError
from {{ cookiecutter.package_name }}.queue.arq_queue import ledger_for
from {{ cookiecutter.package_name }}.queue.shards import BULK_ID_PREFIX, MERGED_READ_TIMEOUT, open_queue
from {{ cookiecutter.package_name }}.settings import Settings

from ..auth import AUTH
from .conftest import RedisServer, SpawnWeb, SpawnWorker

pytestmark = pytest.mark.slow


@pytest.fixture
def sharded(settings: Settings, own_redis: RedisServer) -> Settings:
    """The test's settings with the bulk queue on a redis-server of its own."""
    return settings.model_copy(update={"bulk_redis_url": RedisDsn(own_redis.url)})


async def finished(http: httpx.AsyncClient, job_id: str, within: float = 30) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        reply = await http.get(f"/jobs/{job_id}")
        assert reply.status_code == 200, (job_id, reply.text)
        job: dict[str, Any] = reply.json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        assert asyncio.get_running_loop().time() < deadline, job
        await asyncio.sleep(0.05)


def record_on(url: str, settings: Settings, job_id: str) -> bool:
    """Whether the server at `url` holds the job's record."""
    with Redis.from_url(url) as redis:
        return bool(redis.exists(ledger_for(redis, settings).key(job_id)))


async def test_both_queues_run_on_their_own_servers_and_every_read_finds_its_job(
    sharded: Settings, spawn_web: SpawnWeb, spawn_worker: SpawnWorker
) -> None:
    spawn_worker("default", settings=sharded)
    spawn_worker("bulk", settings=sharded)
    base, _web = spawn_web(sharded)
    report = {"task": "render_report", "args": {"pages": 2, "seconds_per_page": 0}}
    count = {"task": "word_count", "args": {"text": "one server each"}}
    async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=10) as http:
        accepted = [await http.post("/jobs", json=job) for job in (count, report) * 4]
        batch = await http.post("/jobs/batch", json={"jobs": [report] * 5})
        own = await http.post("/jobs", json={**report, "job_id": f"{BULK_ID_PREFIX}mine"})
        assert [r.status_code for r in (*accepted, batch, own)] == [202] * 10, batch.text
        ids = [r.json()["id"] for r in accepted] + [job["id"] for job in batch.json()["jobs"]]
        ids.append(own.json()["id"])
        bulk = [job_id for job_id in ids if job_id.startswith(BULK_ID_PREFIX)]
        assert len(bulk) == 4 + 5 + 1, ids  # the service's ids say the bulk queue's server

        jobs = [await finished(http, job_id) for job_id in ids]
        assert [job["state"] for job in jobs] == ["succeeded"] * len(ids), jobs
        for job_id in ids:
            on_bulk = job_id in bulk
            assert record_on(str(sharded.bulk_redis_url), sharded, job_id) is on_bulk, job_id
            assert record_on(str(sharded.redis_url), sharded, job_id) is not on_bulk, job_id
            events = await http.get(f"/jobs/{job_id}/events")
            assert [e["state"] for e in events.json() if e["kind"] == "state"][-1] == "succeeded"

        # A deferred bulk job is cancelled on its server; a stream reads its server's events.
        later = await http.post("/jobs", json={**report, "defer_seconds": 60})
        later_id = later.json()["id"]
        assert (await http.post(f"/jobs/{later_id}/cancel")).json()["state"] == "cancelled"
        async with http.stream("GET", f"/jobs/{later_id}/stream") as stream:
            lines = [line async for line in stream.aiter_lines() if line.startswith("data:")]
        assert '"cancelled"' in lines[-1], lines
        assert (await http.get(f"/jobs/{BULK_ID_PREFIX}unknown")).status_code == 404


async def test_what_cannot_live_on_one_server_is_a_422_and_nothing_is_queued(
    sharded: Settings, spawn_web: SpawnWeb
) -> None:
    base, _web = spawn_web(sharded)
    report = {"task": "render_report", "args": {"pages": 1}}
    count = {"task": "word_count", "args": {"text": "x"}}
    async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=10) as http:
        refused = [
            await http.post("/jobs/batch", json={"jobs": [count, report]}),
            await http.post("/jobs", json={**report, "job_id": "mine-1"}),
            await http.post("/jobs", json={**count, "job_id": f"{BULK_ID_PREFIX}1"}),
            # A job runs after jobs of its own server only (queue.dependencies).
            await http.post("/jobs", json={**report, "after": ["a-default-job"]}),
            await http.post(
                "/jobs/batch", json={"jobs": [{**count, "after": [f"{BULK_ID_PREFIX}x"]}]}
            ),
        ]
        for reply in refused:
            assert reply.status_code == 422, reply.text
            assert reply.json()["detail"][0]["type"] == "misplaced_job", reply.text
        for url in (sharded.redis_url, sharded.bulk_redis_url):
            with Redis.from_url(str(url)) as redis:
                for queue in (sharded.queue_name, sharded.bulk_queue_name):
                    assert redis.zcard(queue) == 0


async def test_the_operator_reads_merge_both_servers(
    sharded: Settings, spawn_web: SpawnWeb, spawn_worker: SpawnWorker
) -> None:
    spawn_worker("default", settings=sharded)
    spawn_worker("bulk", settings=sharded)
    base, _web = spawn_web(sharded)
    # Dead letters on both servers, their failure times interleaved: 7 and 5, newest first.
    start = datetime.now(tz=UTC) - timedelta(hours=1)
    letters: dict[str, datetime] = {}
    for index in range(12):
        on_bulk = index % 5 in (1, 3)
        job_id = f"{BULK_ID_PREFIX}{index}" if on_bulk else f"dead-{index}"
        store = sharded.with_queue_redis("bulk" if on_bulk else "default")
        letters[job_id] = start + timedelta(seconds=index)
        async with AsyncRedis.from_url(str(store.redis_url)) as redis:
            await ledger_for(redis, store).add_dead_letter(
                DeadLetter(
                    job_id=job_id,
                    task="render_report" if on_bulk else "word_count",
                    queue=store.bulk_queue_name if on_bulk else store.queue_name,
                    kwargs={"pages": 1} if on_bulk else {"text": "x"},
                    error=JobError("ValueError", "broken"),
                    tries=3,
                    failed_at=letters[job_id],
                )
            )
    newest_first = sorted(letters, key=letters.__getitem__, reverse=True)
    async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=10) as http:
        for limit in (1, 4, 5, 12, 20):
            pages = []
            for offset in range(0, 13, limit):
                page = (await http.get(f"/dead-letters?limit={limit}&offset={offset}")).json()
                assert page["total"] == 12
                pages += [letter["job_id"] for letter in page["letters"]]
            assert pages == newest_first, limit

        # A replayed letter goes back to its own queue's server, under an id that says so.
        replay = await http.post(f"/dead-letters/{BULK_ID_PREFIX}3/replay")
        assert replay.status_code == 202, replay.text
        replayed = replay.json()["id"]
        assert replayed.startswith(BULK_ID_PREFIX)
        assert (await finished(http, replayed))["state"] == "succeeded"
        assert (await http.get(f"/dead-letters/{BULK_ID_PREFIX}3")).status_code == 404

        bulk_job = {"task": "render_report", "args": {"pages": 1, "seconds_per_page": 0}}
        ids = [replayed]
        for job in ({"task": "word_count", "args": {"text": "a"}}, bulk_job) * 3:
            ids.append((await http.post("/jobs", json=job)).json()["id"])
            await asyncio.sleep(0.002)  # distinct enqueue times: one order to expect
        for job_id in ids:
            await finished(http, job_id)
        # Purging empties both servers.
        assert (await http.delete("/dead-letters")).json()["purged"] == 11

    # The read model the dashboard and /metrics show, as the web opens it.
    async with open_queue(sharded) as admin:
        listed: list[str] = []
        before = None
        while True:
            page = await admin.recent_jobs(2, before=before)
            listed += [job.id for job in page.jobs]
            if page.next_before is None:
                break
            before = page.next_before
        assert listed == ids[::-1]  # newest first, across both servers, each job once
        bulk_only = await admin.recent_jobs(10, task="render_report")
        bulk_only_ids = {job_id for job_id in ids if job_id.startswith(BULK_ID_PREFIX)}
        assert [job.id for job in bulk_only.jobs] == [i for i in listed if i in bulk_only_ids]
        stats = await admin.stats()
        queues = [sharded.queue_name, sharded.bulk_queue_name]
        assert [depth.name for depth in stats.queues] == queues
        assert stats.dead_letters == 0
        assert sorted(info.queue for info in await admin.workers()) == sorted(queues)


async def test_an_outage_of_the_bulk_queue_s_redis_leaves_the_default_queue_whole(
    sharded: Settings, own_redis: RedisServer, spawn_web: SpawnWeb, spawn_worker: SpawnWorker
) -> None:
    spawn_worker("default", settings=sharded)
    base, _web = spawn_web(sharded)
    async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=30) as http:
        report = {"task": "render_report", "args": {"pages": 1, "seconds_per_page": 0}}
        earlier = (await http.post("/jobs", json=report)).json()["id"]
        own_redis.stop()

        assert (await http.get("/health/ready")).status_code == 200  # stays in rotation
        accepted = await http.post("/jobs", json={"task": "word_count", "args": {"text": "x"}})
        assert accepted.status_code == 202, accepted.text
        assert (await finished(http, accepted.json()["id"]))["state"] == "succeeded"
        refused = await http.post("/jobs", json=report)
        assert refused.status_code == 503, refused.text
        assert "retry-after" in refused.headers
        assert (await http.get(f"/jobs/{earlier}")).status_code == 503

    async with open_queue(sharded) as admin:  # what /metrics and the dashboard's overview read
        stats = await admin.stats()
        assert stats.unreachable == [sharded.bulk_queue_name]
        assert [depth.name for depth in stats.queues] == [sharded.queue_name]
        assert [info.queue for info in await admin.workers()] == [sharded.queue_name]


async def test_a_stalled_bulk_redis_holds_no_read_of_the_default_queue(
    sharded: Settings, own_redis: RedisServer, spawn_web: SpawnWeb
) -> None:
    base, _web = spawn_web(sharded)
    assert own_redis.process is not None
    own_redis.process.send_signal(signal.SIGSTOP)  # accepts connections, answers nothing
    async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=30) as http:
        started = time.monotonic()
        assert (await http.get("/health/ready")).status_code == 200
        accepted = await http.post("/jobs", json={"task": "word_count", "args": {"text": "x"}})
        assert accepted.status_code == 202, accepted.text
        assert (await http.get(f"/jobs/{accepted.json()['id']}")).status_code == 200
        assert time.monotonic() - started < 2  # none of these waits for the bulk server

    async with open_queue(sharded) as admin:  # what /metrics and the dashboard's overview read
        started = time.monotonic()
        stats = await admin.stats()
        workers = await admin.workers()
        waited = time.monotonic() - started
    assert stats.unreachable == [sharded.bulk_queue_name]
    assert [depth.name for depth in stats.queues] == [sharded.queue_name]
    assert workers == []
    assert waited < 2 * MERGED_READ_TIMEOUT + 1, waited  # bounded, not the socket timeouts


async def test_two_urls_that_reach_one_database_are_refused_at_start(settings: Settings) -> None:
    # model_copy skips the settings' own check of the URLs: this is the servers' run ids'.
    same = settings.model_copy(update={"bulk_redis_url": RedisDsn(f"{settings.redis_url}")})
    with pytest.raises(ValueError, match="reaches the same Redis database as REDIS_URL"):
        async with open_queue(same):
            pass
