"""Failover under load, on real processes: Sentinel promoting a replica after the master is killed,
and a managed-style switch (the node behind one endpoint demoted, the endpoint moved on).

The web (the app with its lifespan, the `client` fixture) and the workers (processes of their own)
submit and run jobs all along; afterwards every worker is alive and the accepted jobs are counted:
succeeded, or lost (unknown to the service). The figures are printed (`pytest -s`) and quoted in
README.md. Marked slow; CI runs them.
"""

import asyncio
import contextlib
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from pydantic import RedisDsn, SecretStr
from redis import Redis

from {{ cookiecutter.package_name }}.dev import answers, free_port, master_answers
from {{ cookiecutter.package_name }}.settings import QueueKey, Settings

from .conftest import Process, SpawnWorker, require_server_binary, web_client
from .service_load import Load, load_on, settle, summary

pytestmark = pytest.mark.slow

MASTER = "service-master"
JOB_TIMEOUT = 5  # a job cut off by the failover runs again after its timeout + 11 s
SETTLE_WITHIN = 60


class Node:
    """A redis-server (or, `sentinel=True`, a Sentinel) of this test's own, on a free port."""

    def __init__(
        self, directory: Path, *options: str, sentinel: bool = False, password: str = ""
    ) -> None:
        directory.mkdir()
        self.port = free_port()
        auth = f":{quote(password, safe='')}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        config = directory / "node.conf"  # Sentinel rewrites its configuration file: one each
        lines = [f"port {self.port}", "bind 127.0.0.1", f'dir "{directory}"', *options]
        config.write_text("\n".join(lines) + "\n")
        self.command = [require_server_binary(), str(config)]
        if sentinel:
            self.command.append("--sentinel")
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL)
        if not answers(self.url, wait=10):
            pytest.fail(f"{self.command} did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


DATA = ("appendonly yes", "appendfsync always", 'save ""')


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.stop()


def wait_until(check: Callable[[], bool], within: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, f"{what} did not happen in {within} s"
        time.sleep(0.2)
    return time.monotonic() - started


def role(node: Node) -> str:
    try:
        with Redis.from_url(node.url, socket_timeout=1) as redis:
            return str(redis.execute_command("ROLE")[0], "ascii")
    except Exception:  # down or loading: not a master yet
        return "down"


def named_master(sentinels: list[Node]) -> set[int]:
    """The ports the Sentinels name as the master's (one, once they agree)."""
    ports = set()
    for sentinel in sentinels:
        with Redis.from_url(sentinel.url, socket_timeout=1) as redis:
            address = redis.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
        ports.add(int(address[1]))
    return ports


def replica_in_sync(master: Node) -> bool:
    with Redis.from_url(master.url, socket_timeout=1) as redis:
        info = redis.info("replication")
    return any(
        isinstance(value, dict) and value.get("state") == "online"
        for key, value in info.items()
        if key.startswith("slave")
    )


async def start_workers(
    spawn_worker: SpawnWorker, settings: Settings, **env: object
) -> list[Process]:
    """A default and a bulk worker, processes of their own."""

    def spawn(queue: QueueKey) -> Process:
        options: dict[str, Any] = {
            "job_timeout": JOB_TIMEOUT,
            "bulk_job_timeout": JOB_TIMEOUT,
            **env,
        }
        return spawn_worker(queue, settings, **options)

    return list(await asyncio.gather(*(asyncio.to_thread(spawn, q) for q in ("default", "bulk"))))


async def report(
    fault: str, client: httpx.AsyncClient, load: Load, workers: list[Process]
) -> Counter[str]:
    """Every accepted job followed to its end; the figures printed; every worker alive."""
    states = await settle(client, load.accepted, SETTLE_WITHIN)
    outcome = Counter(states.values())
    print(f"\n{fault}: {summary(load, outcome)}")
    for worker in workers:
        assert worker.alive(), f"{worker.name} exited:\n{worker.output()[-4000:]}"
    assert load.accepted, "no job was accepted"
    others = {loc: state for loc, state in states.items() if state not in ("succeeded", "lost")}
    assert not others, f"accepted jobs neither succeeded nor lost: {list(others.items())[:5]}"
    return outcome


async def accepts_again(client: httpx.AsyncClient, within: float) -> float:
    """Seconds until the web accepts a job again and a worker has run it."""
    started = time.monotonic()
    body = {"task": "word_count", "args": {"text": "are you back"}}
    while (response := await client.post("/jobs", json=body)).status_code != 202:
        assert response.status_code == 503, response.text
        assert time.monotonic() - started < within, "the web did not accept jobs again"
        await asyncio.sleep(0.2)
    while True:
        read = await client.get(response.headers["location"])
        assert read.status_code in (200, 503), read.text  # (503: Redis not answering that read)
        if read.status_code == 200 and read.json()["state"] == "succeeded":
            break
        assert time.monotonic() - started < within, "the workers did not run jobs again"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


# ---------------------------------------------------------------------------------------------
# Sentinel: a master, a replica, three Sentinels; the master killed under load.


@pytest.fixture
def sentinel_setup(nodes: list[Node], tmp_path: Path) -> tuple[Node, Node, list[Node]]:
    master = Node(tmp_path / "master", *DATA)
    replica = Node(tmp_path / "replica", *DATA, f"replicaof 127.0.0.1 {master.port}")
    nodes += [master, replica]
    sentinels = []
    for n in range(3):
        sentinels.append(
            Node(
                tmp_path / f"sentinel-{n}",
                f"sentinel monitor {MASTER} 127.0.0.1 {master.port} 2",
                f"sentinel down-after-milliseconds {MASTER} 1000",
                f"sentinel failover-timeout {MASTER} 10000",
                sentinel=True,
            )
        )
    nodes += sentinels
    wait_until(lambda: replica_in_sync(master), 20, "the replica's first sync")
    return master, replica, sentinels


def through_sentinel(
    settings: Settings, setup: tuple[Node, Node, list[Node]], durable: int
) -> Settings:
    master, _replica, sentinels = setup
    return settings.model_copy(
        update={
            "redis_url": RedisDsn(master.url),  # its database; the address comes from Sentinel
            "redis_sentinels": [("127.0.0.1", node.port) for node in sentinels],
            "redis_sentinel_master": MASTER,
            "durable_enqueue_replicas": durable,
            "durable_enqueue_timeout": 0.5,
        }
    )


def sentinel_env(settings: Settings) -> dict[str, object]:
    return {
        "redis_sentinels": ",".join(
            f"{host}:{port}" for host, port in settings.redis_sentinels or []
        ),
        "redis_sentinel_master": settings.redis_sentinel_master,
        "durable_enqueue_replicas": settings.durable_enqueue_replicas,
    }


def test_the_dev_runner_finds_the_master_through_the_sentinels(
    settings: Settings, sentinel_setup: tuple[Node, Node, list[Node]]
) -> None:
    through = through_sentinel(settings, sentinel_setup, 0)
    assert master_answers(through)
    assert not master_answers(through.model_copy(update={"redis_sentinel_master": "unknown"}))


SECRET = "m@ster:secret/1"  # noqa: S105 - test servers'; characters a URL must escape
SENTINEL_SECRET = "sentinel-secret-2"  # noqa: S105


async def test_sentinels_and_a_master_with_passwords_and_a_wrong_one_not_leaked(
    nodes: list[Node], tmp_path: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    master = Node(tmp_path / "master", *DATA, f'requirepass "{SECRET}"', password=SECRET)
    sentinel = Node(
        tmp_path / "sentinel",
        f'requirepass "{SENTINEL_SECRET}"',
        f"sentinel monitor {MASTER} 127.0.0.1 {master.port} 1",
        f'sentinel auth-pass {MASTER} "{SECRET}"',
        sentinel=True,
        password=SENTINEL_SECRET,
    )
    nodes += [master, sentinel]
    escaped = "m%40ster%3Asecret%2F1"
    through = settings.model_copy(
        update={
            "redis_url": RedisDsn(f"redis://:{escaped}@127.0.0.1:1/0"),  # (its host: unused)
            "redis_sentinels": [("127.0.0.1", sentinel.port)],
            "redis_sentinel_master": MASTER,
            "redis_sentinel_password": SecretStr(SENTINEL_SECRET),
        }
    )
    wrong = through.model_copy(update={"redis_sentinel_password": SecretStr("wrong-sentinel")})

    async with web_client(through) as client:
        accepted = await client.post("/jobs", json={"task": "word_count", "args": {"text": "a"}})
        read = await client.get(accepted.headers["location"])
    async with web_client(wrong) as client:
        refused = await client.get("/health/ready")

    assert accepted.status_code == 202, accepted.text
    assert read.json()["state"] == "queued"
    assert refused.status_code == 503
    for secret in ("wrong-sentinel", SENTINEL_SECRET, SECRET):
        assert secret not in caplog.text
        assert secret not in refused.text


@pytest.mark.parametrize("durable", [1, 0], ids=["durable", "not-durable"])
async def test_sentinel_promotes_the_replica_and_no_durably_accepted_job_is_lost(
    spawn_worker: SpawnWorker,
    settings: Settings,
    sentinel_setup: tuple[Node, Node, list[Node]],
    durable: int,
) -> None:
    master, replica, sentinels = sentinel_setup
    settings = through_sentinel(settings, sentinel_setup, durable)
    workers = await start_workers(spawn_worker, settings, **sentinel_env(settings))
    async with web_client(settings) as client:
        async with load_on(client) as load:
            await asyncio.sleep(3)
            master.kill()
            promoted = await asyncio.to_thread(
                wait_until, lambda: named_master(sentinels) == {replica.port}, 60, "the failover"
            )
            # The old master comes back (as a restarted pod would), and Sentinel makes it a
            # replica of the new one: durable enqueues have a replica to wait for again. (Back
            # before every Sentinel names the new master, it would take writes as a master for a
            # moment, and lose them when it becomes a replica: README, "Durable enqueue".)
            master.start()
            back = await accepts_again(client, 60)
            await asyncio.sleep(2)
        outcome = await report(
            f"Sentinel failover, durable enqueue {'on' if durable else 'off'} (promoted after "
            f"{promoted:.1f} s, a new job ran {back:.1f} s after the old master's restart)",
            client,
            load,
            workers,
        )
    assert load.statuses[503] > 0, "the switch was not seen: the test measured nothing"
    if durable:
        assert outcome["lost"] == 0


async def test_a_durable_replay_waits_for_the_replicas_too(
    nodes: list[Node], tmp_path: Path, settings: Settings
) -> None:
    """A 503 for want of a replica leaves the job on the master; the client's retry with the same
    Idempotency-Key (here through another web process) gets that job only once a replica has it:
    WAIT covers a connection's own writes, and the retry's connection wrote before the job."""
    master = Node(tmp_path / "master", *DATA)
    replica = Node(tmp_path / "replica", *DATA, f"replicaof 127.0.0.1 {master.port}")
    nodes += [master, replica]
    await asyncio.to_thread(wait_until, lambda: replica_in_sync(master), 20, "the first sync")
    durable = settings.model_copy(
        update={
            "redis_url": RedisDsn(master.url),
            "durable_enqueue_replicas": 1,
            "durable_enqueue_timeout": 0.3,
        }
    )
    body = {"task": "word_count", "args": {"text": "replicated?"}}
    key = {"Idempotency-Key": f"durable-{uuid.uuid4().hex}"}
    assert replica.process is not None
    # The web process the retry reaches opened first: its connection's last write (its start's
    # readiness check) is older than the refused job's, and the replica has it.
    async with web_client(durable) as second:
        with Redis.from_url(master.url) as redis:  # the replica acknowledges all so far
            redis.set(f"{settings.queue_name}:synced", b"1", px=60_000)
            assert redis.execute_command("WAIT", 1, 5000) == 1
        replica.process.send_signal(signal.SIGSTOP)  # and no more
        try:
            async with web_client(durable) as first:
                refused = await first.post("/jobs", json=body, headers=key)
            retried = await second.post("/jobs", json=body, headers=key)
        finally:
            replica.process.send_signal(signal.SIGCONT)
    async with web_client(durable) as third:
        replayed = await third.post("/jobs", json=body, headers=key)

    assert refused.status_code == 503, refused.text
    assert retried.status_code == 503, retried.text  # still on the master only
    assert replayed.status_code == 200, replayed.text  # the replica has it now
    assert replayed.headers["idempotent-replayed"] == "true"


# ---------------------------------------------------------------------------------------------
# One endpoint (a managed Redis): a proxy in front of two nodes; a coordinated failover (FAILOVER)
# demotes the master under load, then the endpoint moves to the new one. Connections made before
# the move still lead to the demoted node.


class Endpoint:
    """A TCP proxy standing for a managed service's endpoint; `target` is where new connections
    go, as DNS would send them after a failover (open ones stay where they are)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.close()
                with contextlib.suppress(OSError, asyncio.CancelledError):
                    await sink.wait_closed()

        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        try:
            await asyncio.gather(pump(reader, upstream[1]), pump(upstream[0], writer))
        finally:
            self._links.discard(task)

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        links = list(self._links)
        for task in links:
            task.cancel()
        await asyncio.gather(*links, return_exceptions=True)
        await self._server.wait_closed()


@pytest.fixture
async def endpoint_setup(
    nodes: list[Node], tmp_path: Path
) -> AsyncIterator[tuple[Node, Node, Endpoint]]:
    first = Node(tmp_path / "first", *DATA)
    second = Node(tmp_path / "second", *DATA, f"replicaof 127.0.0.1 {first.port}")
    nodes += [first, second]
    await asyncio.to_thread(wait_until, lambda: replica_in_sync(first), 20, "the first sync")
    endpoint = Endpoint(first.port)
    await endpoint.start()
    yield first, second, endpoint
    await endpoint.close()


async def test_a_demoted_node_behind_one_endpoint_is_left_for_the_new_master(
    endpoint_setup: tuple[Node, Node, Endpoint],
    settings: Settings,
    spawn_worker: SpawnWorker,
) -> None:
    first, second, endpoint = endpoint_setup
    url = f"redis://127.0.0.1:{endpoint.port}/0"
    settings = settings.model_copy(update={"redis_url": RedisDsn(url)})
    workers = await start_workers(spawn_worker, settings)
    async with web_client(settings) as client:
        async with load_on(client) as load:
            await asyncio.sleep(3)
            with Redis.from_url(first.url) as redis:
                # The managed service's switch: writes paused until the replica has caught up,
                # then the roles swapped.
                redis.execute_command("FAILOVER", "TO", "127.0.0.1", second.port, "TIMEOUT", 5000)
            await asyncio.to_thread(wait_until, lambda: role(second) == "master", 20, "FAILOVER")
            endpoint.target = second.port
            back = await accepts_again(client, 30)
            await asyncio.sleep(2)
        outcome = await report(
            f"Endpoint moved after FAILOVER (a new job ran {back:.1f} s after the move)",
            client,
            load,
            workers,
        )
    assert outcome["lost"] == 0
