"""Fault injection on real processes: workers stopped and killed mid-job, Redis restarted under
load, transient failures retried, exhausted jobs dead-lettered and replayed.

Marked slow (they wait out real timeouts); CI runs them. The figures they measure (recovery
times, jobs lost) are printed (`pytest -s`) and quoted in README.md.
"""

import asyncio
import http.server
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from {{ cookiecutter.package_name }}.dev import free_port
from {{ cookiecutter.package_name }}.settings import Settings

from ..auth import AUTH
from .conftest import Process, RedisServer, SpawnWeb, SpawnWorker, StartWorkers

pytestmark = pytest.mark.slow


def report(pages: int, seconds: float) -> dict[str, Any]:
    return {"task": "render_report", "args": {"pages": pages, "seconds_per_page": seconds}}


async def wait_for(
    client: httpx.AsyncClient, location: str, states: set[str], within: float
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        job: dict[str, Any] = (await client.get(location)).json()
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, f"not {states} within {within} s: {job}"
        await asyncio.sleep(0.05)


async def wait_for_try(
    client: httpx.AsyncClient, location: str, job_try: int, within: float
) -> dict[str, Any]:
    """The job as first seen in progress on its `job_try`-th try."""
    deadline = time.monotonic() + within
    while True:
        job: dict[str, Any] = (await client.get(location)).json()
        if job["state"] == "in_progress" and job["tries"] == job_try:
            return job
        assert time.monotonic() < deadline, f"not on try {job_try} within {within} s: {job}"
        await asyncio.sleep(0.02)


async def states_of(client: httpx.AsyncClient, location: str) -> list[str]:
    events = (await client.get(f"{location}/events")).json()
    return [e["state"] for e in events if e["kind"] == "state"]


async def succeeded_once(client: httpx.AsyncClient, location: str) -> bool:
    events = (await client.get(f"{location}/events")).json()
    return [e["state"] for e in events if e["kind"] == "state"].count("succeeded") == 1


async def test_sigterm_mid_job_loses_nothing_and_runs_each_job_to_the_end_once(
    client: httpx.AsyncClient, spawn_worker: SpawnWorker
) -> None:
    # Short jobs end within the completion wait; long ones are re-queued and end on the next worker.
    wait = 2
    first = spawn_worker("bulk", bulk_worker_max_jobs=10, job_completion_wait=wait)
    short = [(await client.post("/jobs", json=report(2, 0.25))).headers["location"] for _ in "ab"]
    # Long: far past the completion wait however late the SIGTERM comes (a slow machine).
    long = [(await client.post("/jobs", json=report(10, 1.0))).headers["location"] for _ in "abc"]
    # Slow pages: the progress of its second try is seen before that try reports any.
    slow = (await client.post("/jobs", json=report(4, 1.5))).headers["location"]
    for location in [*short, *long, slow]:
        await wait_for(client, location, {"in_progress"}, within=10)
    while (await client.get(slow)).json()["progress"] is None:  # noqa: ASYNC110 - polls the API
        await asyncio.sleep(0.05)

    stopped_at = time.monotonic()
    assert await asyncio.to_thread(first.stop, signal.SIGTERM, 30) == 0, first.output()
    stop_seconds = time.monotonic() - stopped_at
    requeued = (await client.get(slow)).json()
    second = spawn_worker("bulk", bulk_worker_max_jobs=10)
    restarted = await wait_for_try(client, slow, 2, within=10)
    jobs = [await wait_for(client, loc, {"succeeded", "failed"}, 30) for loc in short + long]
    slow_job = await wait_for(client, slow, {"succeeded", "failed"}, 30)

    print(f"\nSIGTERM: worker exited in {stop_seconds:.1f} s (completion wait {wait} s)")
    assert stop_seconds < wait + 5
    assert [job["state"] for job in jobs] == ["succeeded"] * 5, jobs
    assert [job["tries"] for job in jobs] == [1, 1, 2, 2, 2]  # long ones: re-queued once
    assert all([await succeeded_once(client, location) for location in short + long])
    assert second.alive()
    # A re-queued job says so in its history before it starts again; the new try's progress
    # starts anew (the record drops the cut-off try's at the new start).
    for location in short:
        assert await states_of(client, location) == ["queued", "in_progress", "succeeded"]
    twice = ["queued", "in_progress", "queued", "in_progress", "succeeded"]
    for location in [*long, slow]:
        assert await states_of(client, location) == twice
        events = (await client.get(f"{location}/events")).json()
        why = [(e["error"] or {}).get("type") for e in events if e["state"] == "queued"]
        assert why == [None, "WorkerStopped"], events
    assert (requeued["state"], slow_job["state"], slow_job["tries"]) == ("queued", "succeeded", 2)
    before = requeued["progress"]["percent"]
    assert before >= 50, requeued
    assert restarted["progress"] is None or restarted["progress"]["percent"] < before, restarted


async def test_sigkill_mid_job_reruns_it_within_its_timeout_plus_a_bounded_margin(
    client: httpx.AsyncClient, spawn_worker: SpawnWorker
) -> None:
    timeout = 3  # the bulk queue's task timeout for this test; the job itself takes 2 s
    first = spawn_worker("bulk", bulk_job_timeout=timeout)
    location = (await client.post("/jobs", json=report(4, 0.5))).headers["location"]
    await wait_for(client, location, {"in_progress"}, within=10)

    killed_at = time.monotonic()
    first.stop(signal.SIGKILL)
    spawn_worker("bulk", bulk_job_timeout=timeout)
    job = await wait_for(client, location, {"succeeded", "failed"}, within=60)
    recovered = time.monotonic() - killed_at

    # arq re-runs it once the dead worker's in-progress key expires: the worker's longest task
    # timeout + 1 s (our backstop) + 10 s (arq's margin); then the job's own 2 s.
    bound = timeout + 1 + 10 + 2 + 3
    print(f"\nSIGKILL: job finished {recovered:.1f} s after the kill (bound {bound} s)")
    assert (job["state"], job["tries"]) == ("succeeded", 2), job
    assert recovered < bound


@pytest.fixture
def web_process(own_redis: RedisServer, spawn_web: SpawnWeb) -> tuple[str, Process]:
    """The web app as its own process (the Dockerfile's command), on the restartable Redis."""
    return spawn_web(redis_url=own_redis.url)


async def test_a_redis_restart_under_load_loses_no_accepted_job(
    own_redis: RedisServer,
    web_process: tuple[str, Process],
    settings: Settings,
    spawn_worker: SpawnWorker,
) -> None:
    base, web = web_process
    on_restartable = settings.model_copy(update={"redis_url": own_redis.url})
    worker = spawn_worker("default", settings=on_restartable)
    accepted: list[str] = []
    statuses: list[int] = []
    ready_during_outage: list[int] = []

    async def enqueue_for(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        async with httpx.AsyncClient(base_url=base, timeout=30, headers=AUTH) as http:
            while time.monotonic() < deadline:
                body = {"task": "word_count", "args": {"text": f"job {len(statuses)}"}}
                response = await http.post("/jobs", json=body)
                statuses.append(response.status_code)
                if response.status_code == 202:
                    accepted.append(response.headers["location"])
                else:
                    assert response.headers.get("retry-after"), response.text
                await asyncio.sleep(0.05)

    load = asyncio.create_task(enqueue_for(9))
    await asyncio.sleep(2)
    await asyncio.to_thread(own_redis.stop)
    outage_started = time.monotonic()
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=AUTH) as http:
        await asyncio.sleep(1)
        ready_during_outage.append((await http.get("/health/ready")).status_code)
        await asyncio.sleep(2)
    await asyncio.to_thread(own_redis.start)
    outage = time.monotonic() - outage_started
    await load

    async with httpx.AsyncClient(base_url=base, timeout=30, headers=AUTH) as http:
        deadline = time.monotonic() + 30
        pending = list(accepted)
        while pending and time.monotonic() < deadline:
            states = [(await http.get(location)).json()["state"] for location in pending]
            pending = [
                loc for loc, state in zip(pending, states, strict=True) if state != "succeeded"
            ]
            await asyncio.sleep(0.2)
        recovered = (await http.get("/health/ready")).status_code

    refused = statuses.count(503)
    print(
        f"\nRedis down {outage:.1f} s: {len(accepted)} accepted, {refused} refused with 503, "
        f"{len(pending)} accepted jobs lost"
    )
    assert set(statuses) <= {202, 503}, statuses  # never a 500
    assert refused > 0, "the outage was not seen"
    assert ready_during_outage == [503]
    assert recovered == 200
    assert pending == [], f"accepted jobs not run: {pending}\n{worker.output()[-3000:]}"
    assert worker.alive(), worker.output()
    assert web.alive(), web.output()


class FlakyServer:
    """An HTTP endpoint that is not there until `open()`: connections are refused before."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.server: http.server.HTTPServer | None = None

    def open(self) -> None:
        class Ok(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", self.port), Ok)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def flaky() -> Iterator[FlakyServer]:
    server = FlakyServer()
    yield server
    server.close()


async def test_a_transient_failure_is_retried_with_growing_delays_then_succeeds(
    client: httpx.AsyncClient, start_workers: StartWorkers, flaky: FlakyServer
) -> None:
    await start_workers()
    body = {"task": "check_url", "args": {"url": flaky.url}}
    location = (await client.post("/jobs", json=body)).headers["location"]

    retries: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while len(retries) < 2 and time.monotonic() < deadline:  # refused twice, then it answers
        events = (await client.get(f"{location}/events")).json()
        retries = [e for e in events if e["state"] == "deferred"]
        await asyncio.sleep(0.05)
    flaky.open()
    job = await wait_for(client, location, {"succeeded", "failed"}, within=30)

    assert (job["state"], job["tries"]) == ("succeeded", 3), job
    assert [e["error"]["type"] for e in retries] == ["ConnectError", "ConnectError"]
    first, second = (e["retry_in"] for e in retries)
    assert 2 <= first <= 2.5 < 4 <= second <= 5  # check_url backs off from 2 s, doubling


async def test_an_exhausted_job_is_dead_lettered_and_its_replay_succeeds(
    settings: Settings, start_workers: StartWorkers, flaky: FlakyServer, client: httpx.AsyncClient
) -> None:
    await start_workers()
    body = {"task": "check_url", "args": {"url": flaky.url}}
    job_id = (await client.post("/jobs", json=body)).json()["id"]

    job = await wait_for(client, f"/jobs/{job_id}", {"failed"}, within=30)
    letter = (await client.get(f"/dead-letters/{job_id}")).json()
    flaky.open()
    replay = await client.post(f"/dead-letters/{job_id}/replay")
    replayed = await wait_for(client, replay.headers["location"], {"succeeded", "failed"}, 30)

    assert job["tries"] == settings.job_max_tries
    assert (letter["tries"], letter["error"]["type"]) == (settings.job_max_tries, "ConnectError")
    assert letter["args"] == {"url": flaky.url, "bearer_token": None}
    assert replay.status_code == 202
    assert replayed["state"] == "succeeded"
    assert (await client.get(f"/dead-letters/{job_id}")).status_code == 404
