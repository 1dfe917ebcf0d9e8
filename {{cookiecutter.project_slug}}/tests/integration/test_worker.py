"""The worker's own behaviour against real Redis: its liveness key, the probe that reads it, and
the `{{ cookiecutter.project_slug }} worker --burst` command that drains a queue and exits."""

import asyncio
import contextlib
import dataclasses
import http.server
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.tasks import Context
from {{ cookiecutter.package_name }}.worker import job_end, process
from {{ cookiecutter.package_name }}.worker.heartbeat import worker_key
from {{ cookiecutter.package_name }}.worker.lifecycle import shutdown, startup
from {{ cookiecutter.package_name }}.worker.options import worker_options
from {{ cookiecutter.package_name }}.worker.process import WakingWorker

from .conftest import RunWorker, project_command, service_env


def probe(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "REDIS_URL": str(settings.redis_url),
        "QUEUE_NAME": settings.queue_name,
        "BULK_QUEUE_NAME": settings.bulk_queue_name,
        "WORKER_ID": settings.worker_id or "",
    }
    return subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.package_name }}.worker.probe", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def test_the_probe_follows_this_workers_heartbeat(settings: Settings) -> None:
    assert probe(settings).returncode == 1  # not started yet

    async with Redis.from_url(str(settings.redis_url)) as redis:
        ctx: Context = {
            "settings": settings,
            "redis": redis,
            "queue": "default",
            "queue_name": settings.queue_name,
        }
        await startup(ctx)
        try:
            for _ in range(50):
                if await redis.exists(worker_key(settings)):
                    break
                await asyncio.sleep(0.05)
            alive = await asyncio.to_thread(probe, settings)
            other = await asyncio.to_thread(
                probe, settings.model_copy(update={"worker_id": "another-worker"})
            )
            bulk = await asyncio.to_thread(probe, settings, "bulk")
        finally:
            await shutdown(ctx)
        gone = await asyncio.to_thread(probe, settings)

    assert alive.returncode == 0, alive.stderr
    assert other.returncode == 1  # another worker's key says nothing about this one
    assert bulk.returncode == 1  # nor does the default queue's worker for this host's bulk worker
    assert gone.returncode == 1  # a clean stop removes the key at once
    assert "no recent heartbeat" in gone.stderr


def test_workers_on_one_host_without_worker_id_are_told_apart(
    settings: Settings, tmp_path: Path
) -> None:
    env = service_env(settings)
    env.pop("WORKER_ID", None)
    workers = []
    for n in range(2):
        with (tmp_path / f"worker-{n}.log").open("wb") as out:
            command = [project_command(), "worker"]
            workers.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT))
    try:
        with SyncRedis.from_url(str(settings.redis_url)) as redis:
            deadline = time.monotonic() + 30
            while len(keys := list(redis.scan_iter(f"{settings.queue_name}:worker:*"))) < 2:
                assert time.monotonic() < deadline, f"workers did not beat: {keys}"
                time.sleep(0.1)
        names = sorted(key.decode().rsplit(":", 1)[1] for key in keys)
        host = socket.gethostname()
        assert names == sorted(f"{host}-{worker.pid}" for worker in workers), names
        # The probe (a process of its own) knows this host's worker by the host name.
        host_probe = probe(settings.model_copy(update={"worker_id": None}))
        assert host_probe.returncode == 0, host_probe.stderr
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(timeout=30)


def test_the_probe_refuses_an_unknown_queue(settings: Settings) -> None:
    result = probe(settings, "nightly")

    assert result.returncode == 2
    assert "invalid choice: 'nightly'" in result.stderr


async def test_a_burst_worker_drains_its_queue_and_exits(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    locations = [
        (await client.post("/jobs", json={"task": "word_count", "args": {"text": text}})).headers[
            "location"
        ]
        for text in ("one", "two words", "and three words")
    ]
    env = {
        **os.environ,
        "REDIS_URL": str(settings.redis_url),
        "QUEUE_NAME": settings.queue_name,
        "BULK_QUEUE_NAME": settings.bulk_queue_name,
        "WORKER_ID": settings.worker_id or "",
    }
    command = [project_command(), "worker", "--burst"]

    result = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 0, result.stderr
    jobs = [(await client.get(location)).json() for location in locations]
    assert [job["state"] for job in jobs] == ["succeeded"] * 3
    assert [job["result"]["words"] for job in jobs] == [1, 2, 3]


async def test_a_real_worker_logs_job_starts_without_their_arguments(
    client: httpx.AsyncClient, run_worker: RunWorker, caplog: pytest.LogCaptureFixture
) -> None:
    secret = f"secret-{uuid.uuid4().hex}"
    await client.post("/jobs", json={"task": "word_count", "args": {"text": secret}})

    with caplog.at_level(logging.INFO, logger="arq.worker"):
        worker = await run_worker()

    assert worker.jobs_complete == 1
    assert "word_count(…)" in caplog.text
    assert secret not in caplog.text


async def test_a_log_line_from_inside_a_job_carries_the_job_and_its_request(
    settings: Settings,
    client: httpx.AsyncClient,
    run_worker: RunWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()  # not a terminal: JSON lines
    # (Patched here, in the test's body: pytest puts its own capture back after set-up.)
    monkeypatch.setattr(sys, "stderr", stream)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoContent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    body = {"task": "check_url", "args": {"url": f"http://127.0.0.1:{server.server_port}/"}}
    try:
        job_id = (
            await client.post("/jobs", json=body, headers={"X-Request-ID": "req-from-gateway"})
        ).json()["id"]
        await run_worker()
    finally:
        server.shutdown()
        server.server_close()

    logged = [json.loads(line) for line in stream.getvalue().splitlines() if '"job_id"' in line]
    arq_start = next(line for line in logged if "check_url(…)" in str(line["event"]))
    in_task = next(line for line in logged if str(line["event"]).startswith("checked url"))
    context = {"job_id": job_id, "job_try": 1, "queue": settings.queue_name}
    assert {key: arq_start[key] for key in context} == context
    assert {key: in_task[key] for key in context} == context
    assert (in_task["task"], in_task["request_id"]) == ("check_url", "req-from-gateway")
    assert {line["job_id"] for line in logged} == {job_id}


class NoContent(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


async def test_a_worker_told_to_stop_stops_even_when_the_cancel_is_lost(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python 3.11's asyncio.wait_for, which redis-py sends every command through, drops a cancel
    that lands as the command completes (CPython gh-86296). The worker then polled on after
    SIGTERM or close(): here a poll step loses the cancel the same way, on any Python."""
    worker = WakingWorker(**{**worker_options(settings, "default"), "handle_signals": False})
    inside, lost = asyncio.Event(), asyncio.Event()
    heart_beat = worker.heart_beat

    async def heart_beat_that_loses_a_cancel() -> None:
        await heart_beat()
        if lost.is_set():
            return
        inside.set()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:  # as wait_for does when its call has just completed
            lost.set()

    monkeypatch.setattr(worker, "heart_beat", heart_beat_that_loses_a_cancel)
    task = asyncio.create_task(worker.async_run())
    try:
        await asyncio.wait_for(inside.wait(), 10)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)

        assert lost.is_set()
        assert task in done, "the worker kept polling after it was told to stop"
        assert task.cancelled()
    finally:
        if not task.done():
            task.cancel()
        await worker.close()


async def test_a_worker_closed_while_a_job_ends_still_shuts_down(
    settings: Settings, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """arq awaits a job's end write in a shield: a stop that lands there cancels the job's task,
    and arq's close, which waits for those tasks, stopped at that CancelledError before running
    on_shutdown (the liveness key stayed) and before closing its pool."""
    worker = WakingWorker(**{**worker_options(settings, "default"), "handle_signals": False})
    ending = asyncio.Event()
    finish_job = worker.finish_job

    async def slow_finish_job(*args: object, **kwargs: object) -> None:
        ending.set()
        await asyncio.sleep(0.5)
        await finish_job(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(worker, "finish_job", slow_finish_job)
    await client.post("/jobs", json={"task": "word_count", "args": {"text": "last words"}})
    task = asyncio.create_task(worker.async_run())
    try:
        await asyncio.wait_for(ending.wait(), 10)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.close()  # raised CancelledError before the fix

        async with Redis.from_url(str(settings.redis_url)) as redis:
            assert not await redis.exists(worker_key(settings))  # on_shutdown ran
    finally:
        if not task.done():
            task.cancel()


async def test_a_job_that_returns_as_the_stop_comes_is_not_run_again(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    """A stop that lands after a job returned and before arq resumed to write its end: arq's
    own stop cancels the whole run, the result is lost, and the job goes back into the queue
    although the ledger had been told it succeeded (it then ran twice, "succeeded" twice in its
    events). The stop is scheduled by the job's last step, so it runs in exactly that gap."""
    worker = WakingWorker(**{**worker_options(settings, "default"), "handle_signals": False})
    function = worker.functions["word_count"]
    loop = asyncio.get_running_loop()

    async def returns_as_the_stop_comes(ctx: dict[Any, Any], *args: Any, **kwargs: Any) -> Any:
        result = await function.coroutine(ctx, *args, **kwargs)
        loop.call_soon(worker.handle_sig, signal.SIGTERM)  # before arq's run resumes
        return result

    worker.functions["word_count"] = dataclasses.replace(
        function, coroutine=returns_as_the_stop_comes
    )
    location = (
        await client.post("/jobs", json={"task": "word_count", "args": {"text": "just in time"}})
    ).headers["location"]
    job_id = location.rsplit("/", 1)[-1]
    task = asyncio.create_task(worker.async_run())
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
    finally:
        await worker.close()

    job = (await client.get(location)).json()
    assert (job["state"], job["tries"], job["result"]["words"]) == ("succeeded", 1, 3)
    async with Redis.from_url(str(settings.redis_url)) as redis:
        assert await redis.zscore(settings.queue_name, job_id) is None  # not queued again
        assert await redis.exists(f"arq:result:{job_id}")  # arq's end, with the result
    events = (await client.get(f"{location}/events")).json()
    states = [event["state"] for event in events if event["kind"] == "state"]
    assert states.count("succeeded") == 1


async def test_a_success_is_recorded_with_arqs_end_even_when_redis_lost_the_script(
    settings: Settings, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A success's record rides in arq's end-of-job transaction (worker.job_end). A Redis that
    forgot the ledger's script (restarted, failed over) fails that one command inside it: the
    record is sent again alone, and arq's writes are not undone."""
    worker = WakingWorker(
        **{**worker_options(settings, "default"), "burst": True, "handle_signals": False}
    )
    finish_job = worker.finish_job

    async def finish_job_after_a_script_flush(*args: object, **kwargs: object) -> None:
        await worker.pool.script_flush()
        await finish_job(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(worker, "finish_job", finish_job_after_a_script_flush)
    location = (
        await client.post("/jobs", json={"task": "word_count", "args": {"text": "one two"}})
    ).headers["location"]
    try:
        await worker.main()
    finally:
        await worker.close()

    job = (await client.get(location)).json()
    assert (job["state"], job["result"]["words"]) == ("succeeded", 2)
    async with Redis.from_url(str(settings.redis_url)) as redis:
        # The ledger's own record (a read of the job would also say "succeeded" from arq's
        # result alone), and arq's end.
        record = f"{settings.queue_name}:job:{job['id']}"
        assert await redis.hget(record, "state") == b"succeeded"
        assert await redis.zcard(settings.queue_name) == 0
        assert not await redis.exists(f"arq:in-progress:{job['id']}")


@contextlib.contextmanager
def success_lines(order: list[str]) -> Iterator[list[logging.LogRecord]]:
    """arq's success lines as the root logger's handlers get them (the worker's logging set-up
    empties arq's own handlers): each noted in `order` as it comes, and kept."""
    lines: list[logging.LogRecord] = []

    class Noted(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "←" in record.getMessage():
                order.append("success line")
                lines.append(record)

    handler = Noted()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lines
    finally:
        root.removeHandler(handler)


async def test_a_jobs_success_line_is_written_once_its_end_is(
    client: httpx.AsyncClient,
    run_worker: RunWorker,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """arq logs a success before it writes the job's end; the worker writes that line after the
    end's write (worker.end_line): no line says a job succeeded before its result is stored,
    and the line is written once, with the job's fields."""
    order: list[str] = []
    end_job = job_end.end_job

    async def noted(*args: Any, **kwargs: Any) -> None:
        await end_job(*args, **kwargs)
        order.append("end written")

    monkeypatch.setattr(process, "end_job", noted)
    body = {"task": "word_count", "args": {"text": "said after"}}
    job_id = (await client.post("/jobs", json=body)).json()["id"]
    with success_lines(order) as lines, caplog.at_level(logging.INFO, logger="arq.worker"):
        await run_worker()

    assert order == ["end written", "success line"]
    assert job_id in lines[0].getMessage()


async def test_a_success_line_waits_for_an_end_that_redis_refused_at_first(
    client: httpx.AsyncClient,
    run_worker: RunWorker,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis away as the job ends (its end's write refused, then taken on the next try): the
    success line comes once the end is stored, not with the refused write, and once."""
    order: list[str] = []
    end_job = job_end.end_job

    async def refused_once(*args: Any, **kwargs: Any) -> None:
        if "refused" not in order:
            order.append("refused")
            raise RedisConnectionError("Redis went away")
        await end_job(*args, **kwargs)
        order.append("end written")

    monkeypatch.setattr(process, "end_job", refused_once)
    body = {"task": "word_count", "args": {"text": "said late"}}
    await client.post("/jobs", json=body)
    with success_lines(order), caplog.at_level(logging.INFO, logger="arq.worker"):
        await run_worker()

    assert order == ["refused", "end written", "success line"]
