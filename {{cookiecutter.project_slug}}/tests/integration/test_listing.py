"""What the dashboard reads, on real Redis: recent jobs (newest first, filtered, paged by a cursor,
bounded), the live workers from their heartbeats, and a job's arguments while they are kept."""

import asyncio
from typing import Any

import httpx
from arq.connections import create_pool

from {{ cookiecutter.package_name }}.queue import JobState
from {{ cookiecutter.package_name }}.queue.arq_queue import ArqJobQueue, redis_settings
from {{ cookiecutter.package_name }}.queue.ledger import RECENT_SCAN
from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import RunWorker, StartWorkers


async def test_recent_jobs_newest_first_filtered_and_paged(
    settings: Settings, client: httpx.AsyncClient, run_worker: RunWorker
) -> None:
    ids = []
    for n in range(7):
        body: dict[str, Any] = {"task": "render_report", "args": {"pages": 1}}
        if n % 2:
            body = {"task": "word_count", "args": {"text": f"job {n}"}}
        ids.append((await client.post("/jobs", json=body)).json()["id"])
    await run_worker()  # the word counts run; the reports wait for the bulk queue's worker

    async with ArqJobQueue.connect(settings) as backend:
        first = await backend.recent_jobs(3)
        second = await backend.recent_jobs(3, before=first.next_before)
        third = await backend.recent_jobs(3, before=second.next_before)
        done = await backend.recent_jobs(10, state=JobState.SUCCEEDED)
        reports = await backend.recent_jobs(10, task="render_report")

    newest_first = list(reversed(ids))
    assert [job.id for job in first.jobs + second.jobs + third.jobs] == newest_first
    assert third.next_before is None
    assert [job.id for job in done.jobs] == [ids[5], ids[3], ids[1]]
    assert {job.state for job in done.jobs} == {JobState.SUCCEEDED}
    assert [job.id for job in reports.jobs] == [ids[6], ids[4], ids[2], ids[0]]


async def test_a_rare_state_costs_a_bounded_walk(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    jobs = [{"task": "word_count", "args": {"text": "x"}}] * 1000
    for _ in range(RECENT_SCAN // 1000 + 1):
        assert (await client.post("/jobs/batch", json={"jobs": jobs})).status_code == 202

    async with ArqJobQueue.connect(settings) as backend:
        page = await backend.recent_jobs(5, state=JobState.FAILED)

    # None found within the walk: an empty page that says where to go on, not a full scan.
    assert page.jobs == []
    assert page.next_before is not None


async def test_live_workers_come_from_their_heartbeats(
    settings: Settings, start_workers: StartWorkers
) -> None:
    await start_workers()
    async with ArqJobQueue.connect(settings) as backend:
        async with asyncio.timeout(10):
            while len(workers := await backend.workers()) < 2:  # noqa: ASYNC110 - polled, as the page
                await asyncio.sleep(0.05)

    assert {worker.queue for worker in workers} == {settings.queue_name, settings.bulk_queue_name}
    assert all(worker.worker_id == settings.worker_id for worker in workers)
{%- if cookiecutter.use_cron %}
    [default] = [worker for worker in workers if worker.queue == settings.queue_name]
    assert set(default.cron) == {"cron:queue_report"}  # arq's name for the cron job
    assert default.cron["cron:queue_report"] > default.last_beat
{%- endif %}


async def test_arguments_while_queued_after_the_run_and_of_a_plain_arq_job(
    settings: Settings, client: httpx.AsyncClient, run_worker: RunWorker
) -> None:
    body = {"task": "word_count", "args": {"text": "kept"}}
    job_id = (await client.post("/jobs", json=body, headers={"X-Request-ID": "r-1"})).json()["id"]
    pool = await create_pool(redis_settings(settings), default_queue_name=settings.queue_name)
    try:
        plain = await pool.enqueue_job("word_count", text="from arq")
    finally:
        await pool.aclose()
    assert plain is not None

    async with ArqJobQueue.connect(settings) as backend:
        queued = await backend.arguments(job_id)
        await run_worker()
        finished = await backend.arguments(job_id)
        unknown = await backend.arguments("no-such-job")

    assert queued == {"text": "kept"}  # the request id that travels along is not an argument
    assert finished == {"text": "kept"}  # from the result, while it is kept
    assert unknown is None
