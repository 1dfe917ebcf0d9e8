"""Jobs that run after others (queue.dependencies) in the fast tier: the API's checks, and chains
run through the worker's real job wrapper on the in-memory queue (which frees and dooms
dependents by the ledger script's rules; the script itself is tests/integration/
test_dependencies.py's)."""

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from {{ cookiecutter.package_name }}.queue import JobState
from {{ cookiecutter.package_name }}.queue.base import JOB_META
from {{ cookiecutter.package_name }}.queue.deliveries import Delivery
from {{ cookiecutter.package_name }}.tasks import TASKS
from {{ cookiecutter.package_name }}.worker.job_wrapper import job_function

from .fake_queue import FakeQueue

RunJobs = Callable[[], Any]


def count(text: str, **extra: Any) -> dict[str, Any]:
    return {"task": "word_count", "args": {"text": text}, **extra}


def total(**extra: Any) -> dict[str, Any]:
    return {"task": "word_total", **extra}


async def run_all(run_jobs: RunJobs) -> None:
    while await run_jobs():
        pass


async def test_a_batch_chain_runs_in_order_with_each_result_passed_to_the_next(
    client: httpx.AsyncClient, memory_queue: FakeQueue, run_jobs: RunJobs
) -> None:
    answer = await client.post(
        "/jobs/batch",
        json={
            "jobs": [
                count("one two", ref="a"),
                count("three", ref="b"),
                total(ref="join", after=["a", "b"], args={"text": "four"}),
                total(after=["join"]),
            ]
        },
    )
    assert answer.status_code == 202, answer.text
    a, b, join, last = answer.json()["jobs"]
    assert [job["state"] for job in (a, b, join, last)] == [
        "queued",
        "queued",
        "deferred",
        "deferred",
    ]
    assert join["ref"] == "join"
    waiting = (await client.get(f"/jobs/{join['id']}")).json()
    assert waiting["waiting"] == {"reason": "parents", "until": None}
    assert waiting["parents"] == [a["id"], b["id"]]
    assert (await client.get(f"/jobs/{a['id']}")).json()["children"] == [join["id"]]

    assert await run_jobs() == 2  # the parents only: the others wait
    assert await run_jobs() == 1
    assert await run_jobs() == 1
    assert await run_jobs() == 0
    joined = (await client.get(f"/jobs/{join['id']}")).json()
    assert (joined["state"], joined["result"]) == ("succeeded", {"words": 4, "parents": 2})
    assert (await client.get(f"/jobs/{last['id']}")).json()["result"] == {
        "words": 4,
        "parents": 1,
    }


async def test_a_cancelled_parent_ends_its_dependents_cancelled_with_the_reason(
    client: httpx.AsyncClient, run_jobs: RunJobs
) -> None:
    parent = (await client.post("/jobs", json=count("later", defer_seconds=60))).json()
    child = (await client.post("/jobs", json=total(after=[parent["id"]]))).json()
    grandchild = (await client.post("/jobs", json=total(after=[child["id"]]))).json()

    assert (await client.post(f"/jobs/{parent['id']}/cancel")).status_code == 200
    await run_all(run_jobs)
    ended_child = (await client.get(f"/jobs/{child['id']}")).json()
    assert ended_child["state"] == "cancelled"
    assert ended_child["error"] == {
        "type": "ParentCancelled",
        "message": f"job {parent['id']} that it runs after cancelled",
    }
    assert ended_child["started_at"] is None
    ended_grandchild = (await client.get(f"/jobs/{grandchild['id']}")).json()
    assert ended_grandchild["state"] == "cancelled"
    assert child["id"] in ended_grandchild["error"]["message"]


async def test_a_doomed_dependent_sends_its_webhook_cancelled_with_the_reason(
    memory_queue: FakeQueue, ctx: dict[str, Any]
) -> None:
    parent = await memory_queue.enqueue("word_count", {"text": "x"}, queue_name="queue")
    child = await memory_queue.enqueue("word_total", {}, queue_name="queue", after=[parent.job_id])
    await memory_queue.finished(parent.job_id, JobState.FAILED)
    sent: list[Delivery] = []
    meta = {**memory_queue.jobs[child.job_id].meta, "callback_url": "https://example.com/hook"}
    job_ctx = {
        **ctx,
        "ledger": memory_queue,
        "job_id": child.job_id,
        "job_try": 1,
        "queue_name": "queue",
        "delivery_sink": lambda _job_id, delivery: sent.append(delivery),
    }

    assert await job_function(TASKS["word_total"])(job_ctx, **{JOB_META: meta}) is None
    [delivery] = sent
    body = json.loads(delivery.body)
    assert body["type"] == "job.cancelled"
    assert body["data"]["error"]["type"] == "ParentFailed"
    assert memory_queue.jobs[child.job_id].record.state is JobState.CANCELLED


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (total(after=["no-such-job"]), "unknown_parent"),
        (total(after=["me"], job_id="me"), "invalid_after"),
        (total(after=["x"], defer_seconds=5), "invalid_after"),
        (total(after=["bad id"]), "string_pattern_mismatch"),
        (total(after=[f"job{n}" for n in range(101)]), "too_long"),
    ],
)
async def test_a_job_after_no_job_or_after_itself_is_a_422(
    client: httpx.AsyncClient, memory_queue: FakeQueue, body: dict[str, Any], kind: str
) -> None:
    answer = await client.post("/jobs", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["type"] == kind
    assert memory_queue.jobs == {}


@pytest.mark.parametrize(
    ("jobs", "kind", "loc"),
    [
        ([total(after=["b"]), count("x", ref="b")], "invalid_after", [0, "after", 0]),
        ([count("x", ref="a"), total(ref="a", after=["a"])], "duplicate_ref", [1, "ref"]),
        ([total(ref="a", after=["a"])], "invalid_after", [0, "after", 0]),
        ([count("x", ref="a"), total(after=["a", "gone"])], "unknown_parent", []),
    ],
)
async def test_a_batch_job_after_a_later_or_unknown_one_is_a_422_and_nothing_is_queued(
    client: httpx.AsyncClient,
    memory_queue: FakeQueue,
    jobs: list[dict[str, Any]],
    kind: str,
    loc: list[Any],
) -> None:
    answer = await client.post("/jobs/batch", json={"jobs": jobs})
    assert answer.status_code == 422, answer.text
    error = answer.json()["detail"][0]
    assert error["type"] == kind
    assert error["loc"] == ["body", "jobs", *loc]
    assert memory_queue.jobs == {}


async def test_an_idempotency_key_tells_two_requests_apart_by_their_parents(
    client: httpx.AsyncClient,
) -> None:
    one = (await client.post("/jobs", json=count("a"))).json()["id"]
    two = (await client.post("/jobs", json=count("b"))).json()["id"]
    key = {"Idempotency-Key": "after-1"}
    first = await client.post("/jobs", json=total(after=[one]), headers=key)
    assert first.status_code == 202
    again = await client.post("/jobs", json=total(after=[one, one]), headers=key)
    assert again.status_code == 200  # a parent named twice is the same request
    other = await client.post("/jobs", json=total(after=[two]), headers=key)
    assert other.status_code == 409
