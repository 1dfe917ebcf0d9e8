"""Bounded connections, on real processes: a thousand event streams on one job share the web's
Redis reads, its Redis connections stay bounded during the burst and fall back after it, and a
stream beyond MAX_STREAMS gets a 503 with Retry-After.

The web connects as a Redis user of its own (`web`), so `CLIENT LIST` tells its connections from
the worker's and the test's. Marked slow; the figures are printed (`pytest -s`) and quoted in
README.md ("Connections and streams").
"""

import asyncio
import contextlib
import json
import resource
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from redis import Redis

from {{ cookiecutter.package_name }}.dev import answers, free_port
from {{ cookiecutter.package_name }}.settings import Settings

from ..auth import AUTH
from .conftest import SpawnWeb, SpawnWorker, require_server_binary

pytestmark = pytest.mark.slow

STREAMS = 1000
PAGES = 10  # the job reports progress PAGES times, one page every SECONDS_PER_PAGE
SECONDS_PER_PAGE = 0.4
BACKLOG = ("--backlog", str(2 * STREAMS))
"""uvicorn's listen backlog: room for every stream's connection at once."""


@dataclass
class OwnRedis:
    url: str
    """As the default user: the test and the worker."""
    web_url: str
    """As the user `web`: the web process alone."""

    def clients(self, user: str = "web") -> int:
        with Redis.from_url(self.url) as redis:
            listed = redis.client_list()
        return sum(1 for client in listed if client.get("user") == user)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    # A thousand sockets here and in the web (which inherits the limit): more than the usual
    # soft limit of 1024 descriptors, well within the hard one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * STREAMS if hard == resource.RLIM_INFINITY else min(hard, 4 * STREAMS)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    port = free_port()
    command = [require_server_binary(), "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--dir", str(tmp_path), "--save", "", "--appendonly", "no"]
    command += ["--user", "web", "on", "nopass", "~*", "&*", "+@all"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        if not answers(url, wait=10):
            pytest.fail("redis-server did not start")
        yield OwnRedis(url, f"redis://web@127.0.0.1:{port}/0")
    finally:
        process.terminate()
        process.wait(timeout=10)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class StreamClient:
    """One event stream over a raw socket: a thousand httpx clients would cost this test's one
    process more CPU than the web it measures."""

    def __init__(self, base: str, path: str) -> None:
        self.host, self.port = base.removeprefix("http://").split(":")
        headers = "".join(f"{name}: {value}\r\n" for name, value in AUTH.items())
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nAccept: text/event-stream\r\n"
            f"Connection: close\r\n{headers}\r\n"
        ).encode()
        self.received = b""
        self.open = asyncio.Event()  # the answer's head and the first event are in
        self.writer: asyncio.StreamWriter | None = None

    async def run(self) -> str:
        reader, self.writer = await asyncio.open_connection(self.host, int(self.port))
        try:
            self.writer.write(self.request)
            await self.writer.drain()
            while chunk := await reader.read(65536):
                self.received += chunk
                if b"\r\n\r\n" in self.received and (
                    b"event: " in self.received or not self.received.startswith(b"HTTP/1.1 200")
                ):
                    self.open.set()
        finally:
            self.open.set()
            self.writer.close()
        return self.received.decode()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def events_of(text: str) -> list[dict[str, object]]:
    return [
        json.loads(line.removeprefix("data: "))
        for line in text.splitlines()
        if line.startswith("data: ")
    ]


async def enqueue_report(base: str) -> str:
    body = {"task": "render_report", "args": {"pages": PAGES, "seconds_per_page": SECONDS_PER_PAGE}}
    async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=30) as http:
        response = await http.post("/jobs", json=body)
    assert response.status_code == 202, response.text
    return response.headers["location"]


async def test_a_thousand_streams_of_one_job_share_bounded_redis_connections(
    own_redis: OwnRedis,
    settings: Settings,
    spawn_worker: SpawnWorker,
    spawn_web: SpawnWeb,
) -> None:
    on_own = settings.model_copy(update={"redis_url": own_redis.url})
    idle_timeout = 2  # the default is 30 s: this test waits for the fall back
    base, _web = spawn_web(
        on_own, BACKLOG, redis_url=own_redis.web_url, redis_idle_timeout=idle_timeout
    )
    pool_bound = Settings(_env_file=None).redis_max_connections
    location = await enqueue_report(base)  # no worker yet: the job waits for the streams

    started = time.monotonic()
    clients = [StreamClient(base, f"{location}/stream") for _ in range(STREAMS)]
    runs = [asyncio.create_task(client.run()) for client in clients]
    await asyncio.wait_for(asyncio.gather(*(c.open.wait() for c in clients)), timeout=60)
    opened = time.monotonic() - started
    assert all(c.received.startswith(b"HTTP/1.1 200") for c in clients), {
        c.received[:200] for c in clients if not c.received.startswith(b"HTTP/1.1 200")
    }
    with_streams_open = own_redis.clients()

    peak = with_streams_open
    peak_total = 0

    async def sample() -> None:
        nonlocal peak, peak_total
        while True:
            with Redis.from_url(own_redis.url) as redis:
                listed = await asyncio.to_thread(redis.client_list)
            peak = max(peak, sum(1 for client in listed if client.get("user") == "web"))
            peak_total = max(peak_total, len(listed) - 1)  # not the sampler's own
            await asyncio.sleep(0.1)

    with Redis.from_url(own_redis.url) as redis:
        redis.config_resetstat()  # from here on: the reads of the job's events
    sampler = asyncio.create_task(sample())
    spawn_worker("bulk", settings=on_own)
    try:
        texts = await asyncio.wait_for(asyncio.gather(*runs), timeout=90)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    streamed = time.monotonic() - started
    with Redis.from_url(own_redis.url) as redis:
        stats = redis.info("commandstats")
    reads = {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("xread", "xrange")}

    print(
        f"\n{STREAMS} streams of one job: all open in {opened:.1f} s, all ended with the job "
        f"{streamed:.1f} s after the first connected. The web's Redis connections: "
        f"{with_streams_open} with every stream open, at most {peak} while the job ran "
        f"(all clients of Redis: at most {peak_total}; REDIS_MAX_CONNECTIONS={pool_bound}). "
        f"Redis reads while the job ran: {reads['xread']} XREAD, {reads['xrange']} XRANGE "
        f"for {PAGES + 2} events"
    )
    ends = [events_of(text)[-1] if events_of(text) else {} for text in texts]
    assert all(end.get("state") == "succeeded" for end in ends), [
        (end, text[-300:]) for end, text in zip(ends, texts, strict=True) if end != ends[0]
    ][:3]
    progress = {sum(e["kind"] == "progress" for e in events_of(text)) for text in texts}
    assert progress == {PAGES}  # every stream got every progress report, none twice
    assert peak <= pool_bound + 1, f"{peak} connections of the web (bound {pool_bound} + 1)"
    assert reads["xread"] < STREAMS / 10, reads  # one reader for all, not one per stream

    ended = time.monotonic()
    at_end = after = own_redis.clients()
    while after > 1 and time.monotonic() - ended < 30:  # 1: the streams' reader may linger
        await asyncio.sleep(0.2)
        after = own_redis.clients()
    print(
        f"The web's Redis connections: {at_end} when the streams ended, {after} "
        f"{time.monotonic() - ended:.1f} s later (REDIS_IDLE_TIMEOUT={idle_timeout})"
    )
    assert after <= 1, f"the web still holds {after} connections"


async def test_a_stream_beyond_max_streams_is_a_503_with_retry_after_and_frees_its_slot(
    own_redis: OwnRedis, settings: Settings, spawn_web: SpawnWeb
) -> None:
    on_own = settings.model_copy(update={"redis_url": own_redis.url})
    cap = 5
    base, _web = spawn_web(
        on_own, BACKLOG, redis_url=own_redis.web_url, max_streams=cap, stream_ping_interval=0.5
    )
    location = await enqueue_report(base)  # no worker: the streams stay open

    clients = [StreamClient(base, f"{location}/stream") for _ in range(cap)]
    runs = [asyncio.create_task(client.run()) for client in clients]
    await asyncio.wait_for(asyncio.gather(*(c.open.wait() for c in clients)), timeout=30)
    assert all(c.received.startswith(b"HTTP/1.1 200") for c in clients)

    async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=30) as http:
        async with http.stream("GET", f"{location}/stream") as refused:
            assert refused.status_code == 503  # at once, not after the stream
            await refused.aread()
        assert int(refused.headers["retry-after"]) > 0
        assert refused.headers["content-type"] == "application/json"
        assert "streams" in refused.json()["detail"]
        assert (await http.get(location)).status_code == 200  # other requests are served

        clients[0].close()  # a client leaves: its slot comes free (noticed at the next ping)
        deadline = time.monotonic() + 20
        while True:
            async with http.stream("GET", f"{location}/stream") as again:
                if again.status_code == 200:
                    break
            assert time.monotonic() < deadline, "the slot of a closed stream never came free"
            await asyncio.sleep(0.2)

    for client in clients:
        client.close()
    await asyncio.gather(*runs, return_exceptions=True)


async def test_streams_outlive_the_loss_of_the_webs_redis_connections(
    own_redis: OwnRedis,
    settings: Settings,
    spawn_worker: SpawnWorker,
    spawn_web: SpawnWeb,
) -> None:
    """Redis drops every connection of the web (a failover, a proxy restart) mid-job: the shared
    reader reconnects, and each stream goes on or ends so that its client resumes with
    Last-Event-ID; either way every client gets every event once, up to the job's end."""
    on_own = settings.model_copy(update={"redis_url": own_redis.url})
    base, _web = spawn_web(on_own, BACKLOG, redis_url=own_redis.web_url, stream_ping_interval=1)
    location = await enqueue_report(base)
    resumed = 0

    async def follow(http: httpx.AsyncClient) -> list[tuple[str, dict[str, object]]]:
        nonlocal resumed
        got: list[tuple[str, dict[str, object]]] = []
        while not got or got[-1][1].get("state") != "succeeded":
            headers = {"Last-Event-ID": got[-1][0]} if got else {}
            with contextlib.suppress(httpx.TransportError):
                async with http.stream("GET", f"{location}/stream", headers=headers) as response:
                    event_id = ""
                    async for line in response.aiter_lines():
                        if line.startswith("id: "):
                            event_id = line.removeprefix("id: ")
                        elif line.startswith("data: "):
                            got.append((event_id, json.loads(line.removeprefix("data: "))))
            if got[-1][1].get("state") != "succeeded":
                resumed += 1
                await asyncio.sleep(0.2)
        return got

    async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=60) as http:
        followers = [asyncio.create_task(follow(http)) for _ in range(20)]
        spawn_worker("bulk", settings=on_own)
        while True:
            events = (await http.get(f"{location}/events")).json()
            if sum(event["kind"] == "progress" for event in events) >= 2:
                break
            await asyncio.sleep(0.05)
        killed = 0
        with Redis.from_url(own_redis.url) as redis:
            for _ in range(40):  # for 2 s: more often than a command's retries absorb
                killed += redis.execute_command("CLIENT", "KILL", "USER", "web")
                await asyncio.sleep(0.05)
        streams = await asyncio.wait_for(asyncio.gather(*followers), timeout=60)
        events = (await http.get(f"{location}/events")).json()
        late = (await http.get(f"{location}/stream")).text  # a new stream works, too

    print(f"\nKilled {killed} connections of the web mid-job; streams resumed {resumed} times")
    assert killed >= 1
    expected = [(event["id"], event["kind"]) for event in events]
    assert events[-1]["state"] == "succeeded"
    for got in streams:
        assert [(event_id, data["kind"]) for event_id, data in got] == expected
    assert late.rstrip().endswith('"state":"succeeded"}')
