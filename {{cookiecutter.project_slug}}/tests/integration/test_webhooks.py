"""Signed completion webhooks (webhooks.py, tasks/deliver_webhook.py) against real Redis, a real
worker and a real HTTP receiver, checked with Standard Webhooks' own verifier."""

import asyncio
import base64
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from pydantic import SecretStr
from redis import Redis as SyncRedis
from redis.exceptions import RedisError
from standardwebhooks import Webhook

from {{ cookiecutter.package_name }}.queue.deliveries import Delivery
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.worker.job_end import end_job

from ..auth import TEST_OPERATOR_KEY
from .conftest import RedisServer, StartWorkers
from .test_redis_faults_web import fill

SECRET = "whsec_" + base64.b64encode(b"a test secret of 32 bytes, ok!!!").decode()
OPERATOR = {"X-Operator-Key": TEST_OPERATOR_KEY}


@dataclass
class Receiver:
    """An HTTP endpoint on 127.0.0.1 that answers each POST with the next of `answers` (then
    200), and keeps what it got."""

    url: str
    answers: list[int] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def wait(self, count: int, within: float = 30) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + within
        while len(self.got) < count:
            assert time.monotonic() < deadline, f"{len(self.got)} of {count} deliveries came"
            await asyncio.sleep(0.05)
        return self.got


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            state.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
            if state.delays:
                time.sleep(state.delays.pop(0))
            self.send_response(state.answers.pop(0) if state.answers else 200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks?token=t0ken"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The tests' settings with webhooks on, and a receiver on loopback http allowed."""
    return settings.model_copy(
        update={
            "webhook_secret": SecretStr(SECRET),
            "webhook_allow_http": True,
            "webhook_allow_private": True,
            "job_max_tries": 2,  # a delivery's tries too: the dead letter comes in seconds
        }
    )


@pytest.fixture
async def workers(start_workers: StartWorkers) -> None:
    await start_workers()


def verified(delivery: tuple[dict[str, str], bytes]) -> Any:
    """The delivery's JSON, once Standard Webhooks' verifier accepts its signature."""
    headers, body = delivery
    return Webhook(SECRET).verify(body, headers)


async def test_a_finished_job_is_posted_to_its_callback_signed_as_standard_webhooks_verify(
    client: httpx.AsyncClient,
    receiver: Receiver,
    workers: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = {"task": "word_count", "args": {"text": "called back"}, "callback_url": receiver.url}
    job_id = (await client.post("/jobs", json=body)).json()["id"]

    [delivery] = await receiver.wait(1)
    event = verified(delivery)
    assert event["type"] == "job.succeeded"
    assert event["data"] == {
        "id": job_id,
        "task": "word_count",
        "state": "succeeded",
        "tries": 1,
        "result": {"words": 2, "characters": 11},
    }
    headers, _ = delivery
    assert headers["webhook-id"].startswith(f"{job_id}:webhook:")
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 30
    with pytest.raises(Exception, match="signature"):  # another secret: refused
        Webhook("whsec_" + base64.b64encode(b"x" * 32).decode()).verify(delivery[1], headers)
    # The job had ended when its webhook came; the delivery is a job of its own, readable.
    assert (await client.get(f"/jobs/{job_id}")).json()["state"] == "succeeded"
    deadline = time.monotonic() + 10
    while (sent := (await client.get(f"/jobs/{headers['webhook-id']}")).json())["state"] != (
        "succeeded"
    ):
        assert time.monotonic() < deadline, sent  # (its end is written just after the POST)
        await asyncio.sleep(0.05)
    assert sent["task"] == "deliver_webhook"
    assert SECRET not in caplog.text
    assert "127.0.0.1" in caplog.text  # httpx's request line is there, without its query
    assert "t0ken" not in caplog.text
    assert SECRET.removeprefix("whsec_") not in caplog.text


async def test_a_receiver_that_fails_gets_the_same_message_again_until_it_takes_it(
    client: httpx.AsyncClient, receiver: Receiver, workers: None
) -> None:
    receiver.answers = [500]
    body = {"task": "word_count", "args": {"text": "again"}, "callback_url": receiver.url}
    job_id = (await client.post("/jobs", json=body)).json()["id"]

    first, second = await receiver.wait(2)
    assert verified(first) == verified(second)  # the same event, signed again at each try
    message_id = first[0]["webhook-id"]
    assert second[0]["webhook-id"] == message_id
    assert message_id.startswith(f"{job_id}:webhook:")
    deadline = time.monotonic() + 10
    while (sent := (await client.get(f"/jobs/{message_id}")).json())["state"] != "succeeded":
        assert time.monotonic() < deadline, sent  # (its end is written just after the POST)
        await asyncio.sleep(0.05)
    assert sent["tries"] == 2


async def test_a_delivery_that_fails_for_good_is_a_dead_letter_an_operator_replays(
    client: httpx.AsyncClient, receiver: Receiver, workers: None
) -> None:
    receiver.answers = [503, 503]  # both tries (JOB_MAX_TRIES=2 here)
    body = {"task": "word_count", "args": {"text": "lost"}, "callback_url": receiver.url}
    job_id = (await client.post("/jobs", json=body)).json()["id"]
    first, _ = await receiver.wait(2)

    letter_url = f"/dead-letters/{first[0]['webhook-id']}"
    deadline = time.monotonic() + 10
    while (letter := await client.get(letter_url, headers=OPERATOR)).status_code == 404:
        assert time.monotonic() < deadline, "no dead letter for the delivery"
        await asyncio.sleep(0.1)
    shown = letter.json()
    assert shown["task"] == "deliver_webhook"
    assert shown["error"]["type"] == "DeliveryFailedError"
    assert shown["args"]["url"] == "[redacted]"  # its query may hold the receiver's token

    replay = await client.post(f"{letter_url}/replay", headers=OPERATOR)
    assert replay.status_code == 202
    third = (await receiver.wait(3))[2]
    assert verified(third)["data"]["id"] == job_id
    assert third[0]["webhook-id"] == first[0]["webhook-id"]  # the same message: a repeat


async def test_a_job_cancelled_before_it_starts_is_called_back_too(
    client: httpx.AsyncClient, receiver: Receiver, start_workers: StartWorkers
) -> None:
    body = {
        "task": "word_count",
        "args": {"text": "never"},
        "callback_url": receiver.url,
        "defer_seconds": 60,
    }
    job_id = (await client.post("/jobs", json=body)).json()["id"]
    assert (await client.post(f"/jobs/{job_id}/cancel")).json()["state"] == "cancelled"
    await start_workers()

    [delivery] = await receiver.wait(1)
    assert verified(delivery)["type"] == "job.cancelled"
    assert verified(delivery)["data"]["state"] == "cancelled"


async def test_a_name_that_resolves_to_a_private_address_is_refused_at_delivery(
    client: httpx.AsyncClient, receiver: Receiver, settings: Settings, workers: None
) -> None:
    """The worker resolves the name and checks every address it gets: localhost is loopback.
    Refused for good: no try more, a dead letter, nothing reaches the receiver."""
    settings.webhook_allow_private = False  # the worker's settings are this object
    url = receiver.url.replace("127.0.0.1", "localhost")
    body = {"task": "word_count", "args": {"text": "inside"}, "callback_url": url}
    job_id = (await client.post("/jobs", json=body)).json()["id"]

    deadline = time.monotonic() + 10
    while not (letters := (await client.get("/dead-letters", headers=OPERATOR)).json()["letters"]):
        assert time.monotonic() < deadline, "no dead letter for the refused delivery"
        await asyncio.sleep(0.1)
    [letter] = letters
    assert letter["job_id"].startswith(f"{job_id}:webhook:")
    assert letter["error"]["type"] == "CallbackRefusedError"
    assert letter["tries"] == 1
    assert receiver.got == []
    assert json.dumps(letter).count("not a public address") == 1


async def test_a_receiver_slower_than_the_timeout_gets_the_message_again(
    client: httpx.AsyncClient, receiver: Receiver, settings: Settings, workers: None
) -> None:
    """The whole exchange ends by WEBHOOK_TIMEOUT (a receiver that never answers holds no
    worker slot), and the try counts as failed."""
    settings.webhook_timeout = 0.5
    receiver.delays = [2.0]  # the first answer comes late
    body = {"task": "word_count", "args": {"text": "slow"}, "callback_url": receiver.url}
    job_id = (await client.post("/jobs", json=body)).json()["id"]
    first, second = await receiver.wait(2)
    assert first[0]["webhook-id"] == second[0]["webhook-id"]
    assert verified(second)["data"]["id"] == job_id


async def test_a_jobs_end_and_its_delivery_are_written_together_or_not_at_all(
    own_redis: RedisServer,
) -> None:
    """The delivery rides in arq's end-of-job transaction (worker.job_end): on a full Redis
    neither the job's end nor its delivery is written (the job runs again, and announces its
    end then); once there is room, both are, in one step."""
    job_id, queue = "ending", "q"
    delivery = Delivery("https://hooks.example.com/", '{"type": "job.succeeded"}', "ending:wh")
    with SyncRedis.from_url(own_redis.url) as redis:
        redis.zadd(queue, {job_id: 1})
        redis.set(f"arq:job:{job_id}", b"job")
        filler = fill(redis)
    pool = ArqRedis.from_url(own_redis.url)
    try:

        async def end() -> None:
            await end_job(
                pool, queue, job_id, True, b"result", 60, False, None, None, None, delivery
            )

        with pytest.raises(RedisError):
            await end()
        assert await pool.exists(f"arq:result:{job_id}", "arq:job:ending:wh") == 0
        assert await pool.zrange(queue, 0, -1) == [job_id.encode()]  # still queued, alone

        await pool.delete(*filler)
        sent: list[set[str]] = []  # the keys of each transaction end_job sends
        pipeline = pool.pipeline

        def watched(*args: Any, **kwargs: Any) -> Any:
            pipe = pipeline(*args, **kwargs)
            execute = pipe.execute

            async def recorded(*args: Any, **kwargs: Any) -> Any:
                sent.append({str(cmd[1]) for cmd, _ in pipe.command_stack if len(cmd) > 1})
                return await execute(*args, **kwargs)

            pipe.execute = recorded
            return pipe

        pool.pipeline = watched
        await end()
        # One transaction holds the job's end and its delivery: no crash can fall between them.
        assert [keys >= {f"arq:result:{job_id}", "arq:job:ending:wh"} for keys in sent] == [True]
        assert await pool.exists(f"arq:result:{job_id}", "arq:job:ending:wh") == 2
        assert await pool.zrange(queue, 0, -1) == [b"ending:wh"]  # the job gone, its delivery in
    finally:
        await pool.aclose()


async def test_a_proxy_named_in_the_environment_is_not_used(
    client: httpx.AsyncClient,
    receiver: Receiver,
    workers: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A proxy's tunnel would check the receiver's certificate against its address, not its
    name: deliveries ignore HTTP(S)_PROXY. Here the proxy is a port nobody listens on."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    body = {"task": "word_count", "args": {"text": "direct"}, "callback_url": receiver.url}
    job_id = (await client.post("/jobs", json=body)).json()["id"]
    [delivery] = await receiver.wait(1)
    assert verified(delivery)["data"]["id"] == job_id
