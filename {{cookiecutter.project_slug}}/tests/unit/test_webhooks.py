"""Completion webhooks in the fast tier: the signature as Standard Webhooks' verifier computes it,
which callback URLs are refused, the API's answers, and what the job wrapper hands over at each
outcome (tests/integration/test_webhooks.py delivers them for real)."""

import base64
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError
from standardwebhooks import Webhook

from {{ cookiecutter.package_name }}.queue.deliveries import Delivery
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.tasks import TASKS, Context
from {{ cookiecutter.package_name }}.webhooks import CallbackRefusedError, check_url, secret_bytes, sign
from {{ cookiecutter.package_name }}.worker.job_wrapper import job_function

from .fake_queue import FakeQueue

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_the_signature_is_the_one_standard_webhooks_verifier_computes() -> None:
    body = b'{"type": "job.succeeded", "data": {"id": "x"}}'
    stamp = int(datetime.now(tz=UTC).timestamp())
    ours = sign(secret_bytes(SECRET), "msg-1", stamp, body)
    theirs = Webhook(SECRET).sign("msg-1", datetime.fromtimestamp(stamp, tz=UTC), body.decode())
    assert ours == theirs
    headers = {"webhook-id": "msg-1", "webhook-timestamp": str(stamp), "webhook-signature": ours}
    assert Webhook(SECRET).verify(body, headers) == {"type": "job.succeeded", "data": {"id": "x"}}


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://example.com/hook", "only https"),
        ("ftp://example.com/hook", "only https"),
        ("https://user:pass@example.com/hook", "no credentials"),
        ("https:///hook", "no host"),
        ("https://127.0.0.1/hook", "not a public address"),
        ("https://10.1.2.3/hook", "not a public address"),
        ("https://169.254.169.254/latest/meta-data", "not a public address"),  # cloud metadata
        ("https://[::1]/hook", "not a public address"),
        ("https://[::ffff:127.0.0.1]/hook", "not a public address"),  # IPv4 inside IPv6
        ("https://[fe80::1]/hook", "not a public address"),
        ("https://0.0.0.0/hook", "not a public address"),
        ("https://224.0.0.1/hook", "not a public address"),
        ("https://example.com:99999/hook", "not a URL"),
        ("https://" + "a" * 2100 + ".com/", "longer than"),
    ],
)
def test_a_callback_the_service_must_not_call_is_refused(url: str, why: str) -> None:
    with pytest.raises(CallbackRefusedError, match=why):
        check_url(url, allow_http=False, allow_private=False)


def test_allowed_callbacks_and_the_switches_that_allow_more() -> None:
    assert check_url("https://hooks.example.com/x?t=1", allow_http=False, allow_private=False) == (
        "https",
        "hooks.example.com",
        443,
    )
    assert check_url("https://8.8.8.8:8443/", allow_http=False, allow_private=False)[2] == 8443
    assert check_url("http://127.0.0.1:9/", allow_http=True, allow_private=True)[1] == "127.0.0.1"


@pytest.mark.parametrize(
    "secret",
    ["not-whsec", "whsec_", "whsec_" + base64.b64encode(b"short").decode(), "whsec_!!!!"],
)
def test_a_webhook_secret_that_signs_nothing_worth_trusting_is_refused(secret: str) -> None:
    with pytest.raises(ValidationError, match="WEBHOOK_SECRET") as refused:
        Settings(_env_file=None, webhook_secret=secret)
    assert secret.removeprefix("whsec_") not in str(refused.value) or len(secret) <= 6


async def test_a_callback_without_a_secret_configured_is_a_422(client: httpx.AsyncClient) -> None:
    body = {"task": "word_count", "args": {"text": "x"}, "callback_url": "https://example.com/"}
    answer = await client.post("/jobs", json=body)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["type"] == "webhooks_not_configured"


async def test_a_refused_callback_is_a_422_and_queues_nothing(
    client: httpx.AsyncClient, settings: Settings, memory_queue: FakeQueue
) -> None:
    settings.webhook_secret = SecretStr(SECRET)
    body = {"task": "word_count", "args": {"text": "x"}, "callback_url": "https://10.0.0.1/"}
    answer = await client.post("/jobs", json=body)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["type"] == "callback_refused"
    assert memory_queue.jobs == {}


async def test_clients_can_neither_see_nor_enqueue_the_services_own_delivery_task(
    client: httpx.AsyncClient,
) -> None:
    names = [task["name"] for task in (await client.get("/tasks")).json()]
    assert "deliver_webhook" not in names
    body = {"task": "deliver_webhook", "args": {"url": "https://x", "message_id": "m", "body": ""}}
    answer = await client.post("/jobs", json=body)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["type"] == "unknown_task"
    assert "deliver_webhook" not in answer.json()["detail"][0]["msg"].split("known tasks:")[1]
    batch = await client.post("/jobs/batch", json={"jobs": [body]})
    assert batch.status_code == 422


@pytest.mark.parametrize(
    ("text", "state"), [("two words", "succeeded"), (None, "failed")], ids=["success", "failure"]
)
async def test_the_job_wrapper_hands_the_webhook_over_at_the_jobs_end(
    memory_queue: FakeQueue, ctx: Context, text: str | None, state: str
) -> None:
    handed: dict[str, Delivery] = {}
    job_id = (await memory_queue.enqueue("word_count", {}, queue_name="q")).job_id
    job_ctx: dict[str, Any] = {
        **ctx,
        "ledger": memory_queue,
        "job_id": job_id,
        "job_try": 1,
        "queue_name": "q",
        "delivery_sink": handed.__setitem__,
    }
    run = job_function(TASKS["word_count"])
    meta = {"_meta": {"callback_url": "https://hooks.example.com/"}}
    if text is None:
        with pytest.raises(TypeError):  # no text: the task fails, for good
            await run(job_ctx, **meta)
    else:
        await run(job_ctx, text=text, **meta)
    delivery = handed[job_id]
    assert delivery.url == "https://hooks.example.com/"
    assert f'"type": "job.{state}"' in delivery.body

    handed.clear()  # without a callback_url, nothing is handed over
    other = (await memory_queue.enqueue("word_count", {}, queue_name="q")).job_id
    await run({**job_ctx, "job_id": other}, text="a b")
    assert handed == {}


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1::a00:1",  # local-use NAT64
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "::ffff:0:7f00:1",  # IPv4-translated
        "fec0::1",  # site-local
    ],
)
def test_ipv6_forms_that_lead_to_an_ipv4_address_are_refused(address: str) -> None:
    with pytest.raises(CallbackRefusedError, match="not a public address"):
        check_url(f"https://[{address}]/hook", allow_http=False, allow_private=False)
