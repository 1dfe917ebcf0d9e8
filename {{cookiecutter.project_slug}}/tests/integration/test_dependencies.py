"""Jobs that run after others (queue.dependencies) on real Redis and real workers: chains with
results passed along, a fan-out and its join, parents that fail or are cancelled, and a worker
killed between the steps of a chain."""

import asyncio
import signal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from {{ cookiecutter.package_name }}.dev import free_port
from {{ cookiecutter.package_name }}.queue import JobError, JobState
from {{ cookiecutter.package_name }}.queue.arq_queue import ledger_for
from {{ cookiecutter.package_name }}.queue.dependencies import MAX_CHILDREN
from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import SpawnWorker, StartWorkers, web_client
from .test_faults import report, wait_for, wait_for_try
from .test_webhooks import SECRET

ENDED = {"succeeded", "failed", "cancelled"}


def job(task: str, args: dict[str, Any], ref: str | None, after: list[str]) -> dict[str, Any]:
    """A job as POST /jobs takes it, or, with a ref, as a batch does."""
    return {"task": task, "args": args, "after": after, **({"ref": ref} if ref else {})}


def count(text: str, ref: str | None = None, after: list[str] | None = None) -> dict[str, Any]:
    return job("word_count", {"text": text}, ref, after or [])


def total(ref: str | None = None, after: list[str] | None = None, text: str = "") -> dict[str, Any]:
    return job("word_total", {"text": text}, ref, after or [])


def failing() -> dict[str, Any]:
    """A job that fails at once, for good: nothing listens on the port."""
    return {"task": "check_url", "args": {"url": f"http://127.0.0.1:{free_port()}/"}}


async def batch(client: httpx.AsyncClient, *jobs: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.post("/jobs/batch", json={"jobs": list(jobs)})
    assert response.status_code == 202, response.text
    accepted: list[dict[str, Any]] = response.json()["jobs"]
    return accepted


async def ended(client: httpx.AsyncClient, job_id: str, within: float = 30) -> dict[str, Any]:
    return await wait_for(client, f"/jobs/{job_id}", ENDED, within)


async def states(client: httpx.AsyncClient, job_id: str) -> list[str]:
    events = (await client.get(f"/jobs/{job_id}/events")).json()
    return [event["state"] for event in events if event["kind"] == "state"]


async def test_a_chain_of_three_runs_in_order_each_step_given_the_one_before_s_result(
    client: httpx.AsyncClient, start_workers: StartWorkers
) -> None:
    first, second, third = await batch(
        client,
        count("one two three", ref="first"),
        total(ref="second", after=["first"], text="four"),
        total(ref="third", after=["second"], text="five six"),
    )
    assert [job["state"] for job in (first, second, third)] == ["queued", "deferred", "deferred"]
    assert [job["ref"] for job in (first, second, third)] == ["first", "second", "third"]
    waiting = (await client.get(f"/jobs/{third['id']}")).json()
    assert waiting["state"] == "deferred"
    assert waiting["waiting"] == {"reason": "parents", "until": None}
    assert waiting["parents"] == [second["id"]]
    await start_workers()

    last = await ended(client, third["id"])
    middle = await ended(client, second["id"])
    start = await ended(client, first["id"])
    assert [job["state"] for job in (start, middle, last)] == ["succeeded"] * 3
    assert middle["result"] == {"words": 4, "parents": 1}  # 3 passed along, 1 of its own
    assert last["result"] == {"words": 6, "parents": 1}
    assert start["finished_at"] <= middle["started_at"]
    assert middle["finished_at"] <= last["started_at"]
    assert start["children"] == [second["id"]]
    assert start["parents"] == []
    assert middle["children"] == [third["id"]]
    assert middle["parents"] == [first["id"]]
    assert await states(client, second["id"]) == [
        "deferred",  # waiting for its parent
        "queued",  # freed by its parent's end
        "in_progress",
        "succeeded",
    ]
    events = (await client.get(f"/jobs/{second['id']}/events")).json()
    assert events[0]["waiting"] == {"reason": "parents", "until": None}


async def test_a_fan_out_of_twenty_is_joined_by_a_job_that_runs_after_all_of_them(
    client: httpx.AsyncClient, start_workers: StartWorkers
) -> None:
    parts = [count(" ".join(["word"] * (n + 1)), ref=f"part{n}") for n in range(20)]
    *counted, join = await batch(client, *parts, total(after=[f"part{n}" for n in range(20)]))
    await start_workers()

    joined = await ended(client, join["id"])
    assert joined["state"] == "succeeded", joined
    assert joined["result"] == {"words": sum(range(1, 21)), "parents": 20}
    assert joined["parents"] == [job["id"] for job in counted]
    for job in counted:
        part = (await client.get(f"/jobs/{job['id']}")).json()
        assert part["finished_at"] <= joined["started_at"]
        assert part["children"] == [join["id"]]


async def test_a_failed_parent_ends_its_dependents_and_theirs_cancelled_with_the_reason(
    client: httpx.AsyncClient, start_workers: StartWorkers
) -> None:
    parent, child, grandchild = await batch(
        client,
        {**failing(), "ref": "parent"},
        total(ref="child", after=["parent"]),
        total(after=["child"]),
    )
    await start_workers()

    ended_child = await ended(client, child["id"])
    ended_grandchild = await ended(client, grandchild["id"])
    assert (await client.get(f"/jobs/{parent['id']}")).json()["state"] == "failed"
    assert ended_child["state"] == "cancelled"
    assert ended_child["error"] == {
        "type": "ParentFailed",
        "message": f"job {parent['id']} that it runs after failed",
    }
    assert ended_grandchild["state"] == "cancelled"
    assert ended_grandchild["error"]["type"] == "ParentCancelled"
    assert child["id"] in ended_grandchild["error"]["message"]
    for never_run in (ended_child, ended_grandchild):
        assert never_run["started_at"] is None
        assert never_run["result"] is None
    assert await states(client, child["id"]) == ["deferred", "queued", "cancelled"]


async def test_a_cancelled_parent_ends_its_dependent_and_a_waiting_dependent_can_be_cancelled(
    client: httpx.AsyncClient, start_workers: StartWorkers
) -> None:
    await start_workers()
    later = {"task": "word_count", "args": {"text": "later"}, "defer_seconds": 60}
    parent = (await client.post("/jobs", json=later)).json()
    child = (await client.post("/jobs", json=total(after=[parent["id"]]))).json()
    other_parent = (await client.post("/jobs", json=later)).json()
    waiting = (await client.post("/jobs", json=total(after=[other_parent["id"]]))).json()
    after_waiting = (await client.post("/jobs", json=total(after=[waiting["id"]]))).json()
    assert child["state"] == "deferred"

    assert (await client.post(f"/jobs/{parent['id']}/cancel")).json()["state"] == "cancelled"
    cancelled_child = await ended(client, child["id"])
    assert cancelled_child["state"] == "cancelled"
    assert cancelled_child["error"]["type"] == "ParentCancelled"

    # A dependent still waiting is cancelled at once, like a queued job; its own dependents
    # follow, and its parent's end later frees nothing.
    assert (await client.post(f"/jobs/{waiting['id']}/cancel")).json()["state"] == "cancelled"
    assert (await ended(client, after_waiting["id"]))["state"] == "cancelled"
    assert (await client.post(f"/jobs/{other_parent['id']}/cancel")).status_code == 200
    await asyncio.sleep(0.5)
    assert (await client.get(f"/jobs/{waiting['id']}")).json()["started_at"] is None
    assert await states(client, waiting["id"]) == ["deferred", "cancelled"]


async def test_parents_that_ended_already_free_or_end_a_new_dependent_at_once(
    client: httpx.AsyncClient, start_workers: StartWorkers
) -> None:
    await start_workers()
    done, failed = await batch(client, count("done and dusted"), failing())
    await ended(client, done["id"])
    await ended(client, failed["id"])

    runs = (await client.post("/jobs", json=total(after=[done["id"], done["id"]]))).json()
    doomed = (await client.post("/jobs", json=total(after=[done["id"], failed["id"]]))).json()
    assert (await ended(client, runs["id"]))["result"] == {"words": 3, "parents": 1}
    assert (await ended(client, doomed["id"]))["error"]["type"] == "ParentFailed"


async def test_an_unknown_parent_is_a_422_and_nothing_is_queued(
    client: httpx.AsyncClient, settings: Settings, redis_url: str
) -> None:
    unknown = await client.post("/jobs", json=total(after=["no-such-job"]))
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["detail"][0]["type"] == "unknown_parent"
    assert unknown.json()["detail"][0]["input"] == "no-such-job"

    in_batch = await client.post(
        "/jobs/batch", json={"jobs": [count("fine", ref="a"), total(after=["a", "missing"])]}
    )
    assert in_batch.status_code == 422, in_batch.text
    assert in_batch.json()["detail"][0]["input"] == "missing"

    forward = await client.post(
        "/jobs/batch", json={"jobs": [total(after=["b"]), count("later", ref="b")]}
    )
    assert forward.status_code == 422
    assert forward.json()["detail"][0]["loc"] == ["body", "jobs", 0, "after", 0]

    # Keys of a job that are not its record name no job (and are no 5xx).
    parent = (await client.post("/jobs", json=count("a parent"))).json()["id"]
    for key in (f"{parent}:events", f"{parent}:children"):
        await client.post("/jobs", json=total(after=[parent]))  # (its children set exists)
        not_a_job = await client.post("/jobs", json=total(after=[key]))
        assert not_a_job.status_code == 422, not_a_job.text
        assert not_a_job.json()["detail"][0]["type"] == "unknown_parent"

    itself = await client.post("/jobs", json={**total(after=["me"]), "job_id": "me"})
    assert itself.status_code == 422
    deferred = await client.post("/jobs", json={**total(after=["x"]), "defer_seconds": 5})
    assert deferred.status_code == 422

    redis = Redis.from_url(redis_url)
    try:
        # Only the valid parent and its two children were queued (the children waiting).
        assert await redis.zcard(settings.queue_name) == 1
        assert await redis.zcard(f"{settings.queue_name}:jobs") == 3
    finally:
        await redis.aclose()


async def test_a_parent_whose_end_is_written_twice_counts_once_for_its_dependent(
    client: httpx.AsyncClient, settings: Settings, redis_url: str
) -> None:
    """At least once: a parent that ran twice writes its success twice. Its dependent, which also
    waits for another parent, must not take the second write for that other one's."""
    later = {"task": "word_count", "args": {"text": "not yet"}, "defer_seconds": 60}
    one = (await client.post("/jobs", json=later)).json()["id"]
    two = (await client.post("/jobs", json=later)).json()["id"]
    child = (await client.post("/jobs", json=total(after=[one, two]))).json()["id"]
    redis = Redis.from_url(redis_url)
    try:
        ledger = ledger_for(redis, settings)
        # A try that failed and is retried is no end: its dependents keep waiting.
        await ledger.retrying(one, JobError("ConnectError", "refused"), 1.0)
        await ledger.finished(one, JobState.SUCCEEDED, result={"words": 1})
        await ledger.finished(one, JobState.SUCCEEDED, result={"words": 1})
        waiting = (await client.get(f"/jobs/{child}")).json()
        assert (waiting["state"], waiting["waiting"]["reason"]) == ("deferred", "parents")
        assert await redis.zscore(settings.queue_name, child) is None
        # Nothing of a waiting job expires: it waits as long as its parents take.
        for key in (ledger.key(child), ledger.events_key(child), f"arq:job:{child}"):
            assert await redis.ttl(key) == -1, key
        assert await redis.ttl(ledger.children_key(two)) == -1

        await ledger.finished(two, JobState.SUCCEEDED, result={"words": 2})
        assert (await client.get(f"/jobs/{child}")).json()["state"] == "queued"
        assert await redis.zscore(settings.queue_name, child) is not None
        # Read from the parents' records, in the order given (nothing was copied into the child).
        assert await ledger.inputs(child, [two, one]) == (None, [{"words": 2}, {"words": 1}])
        assert not [f for f in await redis.hkeys(ledger.key(child)) if f.startswith(b"input")]
        # Freed, it expires again: its record with the retention, its job as arq's do.
        assert 0 < await redis.ttl(ledger.key(child)) <= settings.job_retention
        assert 0 < await redis.pttl(f"arq:job:{child}") <= 86_400_000
        assert 0 < await redis.ttl(ledger.children_key(two)) <= settings.job_retention
    finally:
        await redis.aclose()


async def test_the_web_s_cancel_of_a_waiting_dependent_is_one_script_with_its_webhook(
    settings: Settings, redis_url: str
) -> None:
    settings = settings.model_copy(update={"webhook_secret": SecretStr(SECRET)})
    async with web_client(settings) as client:
        await cancel_a_waiting_dependent(client, settings, redis_url)


async def cancel_a_waiting_dependent(
    client: httpx.AsyncClient, settings: Settings, redis_url: str
) -> None:
    later = {"task": "word_count", "args": {"text": "not yet"}, "defer_seconds": 60}
    parent = (await client.post("/jobs", json=later)).json()["id"]
    body = {**total(after=[parent]), "callback_url": "https://hooks.example.com/done"}
    child = (await client.post("/jobs", json=body)).json()
    assert child["state"] == "deferred", child
    grandchild = (await client.post("/jobs", json=total(after=[child["id"]]))).json()["id"]

    cancelled = await client.post(f"/jobs/{child['id']}/cancel")
    assert cancelled.json()["state"] == "cancelled", cancelled.text
    redis = Redis.from_url(redis_url)
    try:
        # Its delivery is queued with it, and its own dependent is doomed with it.
        queued = await redis.zrange(settings.queue_name, 0, -1)
        [message] = [m for m in queued if b":webhook:" in m]
        assert message.startswith(child["id"].encode())
        assert await redis.exists(b"arq:job:" + message)
        assert await redis.hget(f"{settings.queue_name}:job:{grandchild}", "doomed") == (
            f"{child['id']} cancelled".encode()
        )
        assert await redis.zscore(settings.queue_name, grandchild) is not None
        assert not await redis.exists(f"arq:job:{child['id']}")
        # Cancelling again: the job has ended (409), nothing is sent twice.
        assert (await client.post(f"/jobs/{child['id']}/cancel")).status_code == 409
        ledger = ledger_for(redis, settings)
        queues = (settings.queue_name, settings.bulk_queue_name)
        job_key = f"arq:job:{child['id']}"
        assert not await ledger.cancel_unclaimed(child["id"], job_key, queues)  # (a resend)
        queued = await redis.zrange(settings.queue_name, 0, -1)
        assert len([m for m in queued if b":webhook:" in m]) == 1
        # Its parent's end later frees nothing.
        await ledger.finished(parent, JobState.SUCCEEDED, result=None)
        assert (await client.get(f"/jobs/{child['id']}")).json()["state"] == "cancelled"
    finally:
        await redis.aclose()


async def test_a_job_takes_at_most_max_children_dependents_then_a_422(
    client: httpx.AsyncClient,
) -> None:
    later = {"task": "word_count", "args": {"text": "not yet"}, "defer_seconds": 60}
    parent = (await client.post("/jobs", json=later)).json()["id"]
    batch = {"jobs": [total(after=[parent])] * (MAX_CHILDREN - 1)}
    assert (await client.post("/jobs/batch", json=batch)).status_code == 202
    too_many = await client.post("/jobs/batch", json={"jobs": [total(after=[parent])] * 2})
    assert too_many.status_code == 422, too_many.text
    assert too_many.json()["detail"][0]["type"] == "too_many_dependents"
    assert (await client.post("/jobs", json=total(after=[parent]))).status_code == 202
    crowded = await client.post("/jobs", json=total(after=[parent]))
    assert crowded.status_code == 422
    assert crowded.json()["detail"][0]["input"] == parent
    assert len((await client.get(f"/jobs/{parent}")).json()["children"]) == MAX_CHILDREN


@pytest.mark.slow
async def test_a_worker_killed_mid_chain_loses_no_step_and_runs_none_again_but_the_cut_one(
    client: httpx.AsyncClient, spawn_worker: SpawnWorker
) -> None:
    timeout = 3
    spawn_worker("default")
    first_bulk = spawn_worker("bulk", bulk_job_timeout=timeout)
    first, second, third = await batch(
        client,
        {**report(1, 0.1), "ref": "first"},
        {**report(4, 0.5), "ref": "second", "after": ["first"]},
        total(after=["second"]),
    )
    # Its first try recorded as started (in_progress alone may come before arq counts the try:
    # a kill then would make the re-run its first try).
    await wait_for_try(client, f"/jobs/{second['id']}", 1, within=20)

    first_bulk.stop(signal.SIGKILL)
    spawn_worker("bulk", bulk_job_timeout=timeout)
    last = await ended(client, third["id"], within=60)

    done = [(await client.get(f"/jobs/{job['id']}")).json() for job in (first, second)]
    assert [job["state"] for job in done] == ["succeeded", "succeeded"]
    assert [job["tries"] for job in done] == [1, 2]  # the cut step again, not the one before
    assert (last["state"], last["tries"]) == ("succeeded", 1)
    assert last["result"] == {"words": 0, "parents": 1}
    assert done[1]["finished_at"] <= last["started_at"]
    for job in (first, second, third):
        assert (await states(client, job["id"])).count("succeeded") == 1
