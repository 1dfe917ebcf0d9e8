"""Tasks' rate limits and caps (queue.limits) through the worker's real job wrapper, on the
in-memory queue (which keeps the limits by the ledger script's rules; the script itself is
tests/integration/test_limits.py's)."""

import asyncio
import math
from typing import Any

import httpx
import pytest
from arq.worker import Retry
from pydantic import BaseModel

from {{ cookiecutter.package_name }}.queue import JobState
from {{ cookiecutter.package_name }}.queue.limits import CAP_RECHECK
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.tasks import Context, Rate, Task
from {{ cookiecutter.package_name }}.worker.job_wrapper import TIMEOUT_BACKSTOP, job_function, limits_of, timeout

from .fake_queue import FakeQueue


class NoArgs(BaseModel):
    pass


async def run(
    memory_queue: FakeQueue, ctx: Context, task: Task, job_id: str, job_try: int = 1
) -> Any:
    """One start of the job, as arq makes it."""
    job_ctx: dict[str, Any] = {
        **ctx,
        "ledger": memory_queue,
        "job_id": job_id,
        "job_try": job_try,
        "queue_name": "queue",
    }
    return await job_function(task)(job_ctx)


async def enqueue(memory_queue: FakeQueue, task: Task) -> str:
    return (await memory_queue.enqueue(task.name, {}, queue_name="queue")).job_id


async def test_a_job_over_its_tasks_cap_waits_burning_no_try_and_goes_once_a_place_frees(
    memory_queue: FakeQueue, ctx: Context
) -> None:
    gate = asyncio.Event()

    async def held(ctx: Context) -> str:
        await gate.wait()
        return "done"

    task = Task("held", held, NoArgs, concurrency=1)
    first, second = await enqueue(memory_queue, task), await enqueue(memory_queue, task)
    running = asyncio.create_task(run(memory_queue, ctx, task, first))
    await asyncio.sleep(0)  # the first holds the only place
    with pytest.raises(Retry) as deferred:
        await run(memory_queue, ctx, task, second)
    assert deferred.value.defer_score == CAP_RECHECK * 1000

    waiting = memory_queue.jobs[second].record
    assert (waiting.state, waiting.tries) == (JobState.DEFERRED, 0)  # no try burnt
    assert waiting.waiting is not None
    assert waiting.waiting.reason == "concurrency"

    gate.set()
    assert await running == "done"  # its end gives the place back
    assert await run(memory_queue, ctx, task, second) == "done"
    done = memory_queue.jobs[second].record
    assert (done.state, done.tries, done.waiting) == (JobState.SUCCEEDED, 1, None)


async def test_a_failed_or_retried_try_gives_its_place_back_and_a_waiting_one_takes_none(
    memory_queue: FakeQueue, ctx: Context
) -> None:
    async def broken(ctx: Context) -> None:
        raise RuntimeError("broken")

    task = Task("broken", broken, NoArgs, concurrency=1)
    for _ in range(3):  # each failure frees the place for the next job
        with pytest.raises(RuntimeError):
            await run(memory_queue, ctx, task, await enqueue(memory_queue, task))
    assert memory_queue.limit_running["broken"] == set()


async def test_a_job_over_its_tasks_rate_waits_until_the_window_has_room(
    memory_queue: FakeQueue, ctx: Context, client: httpx.AsyncClient
) -> None:
    async def quick(ctx: Context) -> int:
        return 1

    task = Task("quick", quick, NoArgs, rate=Rate(2, per=60))
    ids = [await enqueue(memory_queue, task) for _ in range(3)]
    assert [await run(memory_queue, ctx, task, job_id) for job_id in ids[:2]] == [1, 1]
    with pytest.raises(Retry) as deferred:
        await run(memory_queue, ctx, task, ids[2])
    assert 59_000 < (deferred.value.defer_score or 0) <= 60_000

    job = (await client.get(f"/jobs/{ids[2]}")).json()
    assert job["state"] == "deferred"
    assert job["tries"] == 0
    assert job["waiting"]["reason"] == "rate"
    events = (await client.get(f"/jobs/{ids[2]}/events")).json()
    assert events[-1]["waiting"]["reason"] == "rate"


@pytest.mark.parametrize(
    ("limit", "per"), [(0, 1.0), (-1, 1.0), (1, 0.0), (1, -1.0), (1, math.nan), (1, math.inf)]
)
def test_a_rate_that_could_not_hold_is_refused_where_it_is_declared(limit: int, per: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        Rate(limit, per)


def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        Task("none", job_function, NoArgs, concurrency=0)


def test_a_tasks_limits_as_the_worker_checks_them(settings: Settings) -> None:
    plain = Task("plain", job_function, NoArgs)
    assert limits_of(plain, settings) is None
    task = Task("both", job_function, NoArgs, rate=Rate(5, per=0.25), concurrency=2)
    limits = limits_of(task, settings)
    assert limits is not None
    assert (limits.rate, limits.per_ms, limits.concurrency) == (5, 250, 2)
    # A place is held no longer than arq lets the job run.
    assert limits.hold_ms == round((timeout(task, settings) + TIMEOUT_BACKSTOP) * 1000)


async def test_the_task_list_shows_each_tasks_limits(client: httpx.AsyncClient) -> None:
    tasks = {task["name"]: task for task in (await client.get("/tasks")).json()}
    assert tasks["check_url"]["rate"] == {"limit": 20, "per": 1.0}
    assert tasks["check_url"]["concurrency"] == 10
    assert (tasks["word_count"]["rate"], tasks["word_count"]["concurrency"]) == (None, None)
