"""HTTP: the enqueue endpoint (POST /jobs) vs the naive arq enqueue and a bare endpoint, in one
run.

uvicorn serves the deployed app (one process, as the image's CMD runs it, uvloop + httptools as
the image runs it) plus a bare endpoint and a naive enqueue for comparison (bench/server.py). A
load generator of raw keep-alive connections (not an HTTP library, which would be the bottleneck
and flatten the ratios) sends the same POST to each, in alternated rounds, then measures the bulk
path (POST /jobs/batch). No worker runs: the jobs stay queued and are deleted afterwards.
"""

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from {{ cookiecutter.package_name }}.dev import free_port, server_binary

from .common import PROJECT, Goal, Run, cpu_seconds, median, percentile, ratio, table

CONNECTIONS = 32
JOB = {"task": "word_count", "args": {"text": "hello bench"}}
BODY = json.dumps(JOB).encode()
BATCH = 100
BATCH_BODY = json.dumps({"jobs": [JOB] * BATCH}).encode()
{%- if cookiecutter.use_api_key %}
# The server gets this key; the bare endpoint ignores the header, the job endpoint checks it.
API_KEY = "bench-" + "k" * 32
{%- endif %}
ENDPOINTS = {"bare": "/bench/bare", "naive": "/bench/naive", "enqueue": "/jobs"}
LABELS = {
    "enqueue": "POST /jobs (this service)",
    "naive": "naive enqueue (lifespan pool + arq's enqueue_job)",
    "bare": "bare endpoint",
}
STACK = ["--loop", "uvloop", "--http", "httptools"]


def request(path: str, body: bytes = BODY) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
{%- if cookiecutter.use_api_key %}
        f"X-API-Key: {API_KEY}\r\n"
{%- endif %}
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes
) -> tuple[str, bytes]:
    """One request on a keep-alive connection: the answer's status and body."""
    writer.write(payload)
    status = (await reader.readline()).split(b" ", 2)[1].decode()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def one_connection(
    port: int, payload: bytes, until: float, latencies: list[float], statuses: Counter[str]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (sent := time.perf_counter()) < until:
            status, _body = await exchange(reader, writer, payload)
            latencies.append(time.perf_counter() - sent)
            statuses[status] += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def load(
    port: int, path: str, seconds: float, body: bytes = BODY
) -> tuple[float, list[float]]:
    """Requests per second and latencies of `CONNECTIONS` keep-alive clients for `seconds`."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    until = time.perf_counter() + seconds
    payload = request(path, body)
    await asyncio.gather(
        *(one_connection(port, payload, until, latencies, statuses) for _ in range(CONNECTIONS))
    )
    unexpected = {status: n for status, n in statuses.items() if status not in ("200", "202")}
    if unexpected:
        raise RuntimeError(f"{path} answered {unexpected}: the benchmark measured errors")
    return len(latencies) / seconds, latencies


def start_server(run: Run, app: str, **extra: str) -> tuple["subprocess.Popen[bytes]", int]:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": str(run.settings.redis_url),
        "QUEUE_NAME": run.settings.queue_name,
        "BULK_QUEUE_NAME": run.settings.bulk_queue_name,
        # The run's own Redis for everything, whatever the environment or .env says.
        "BULK_REDIS_URL": "",
        "REDIS_SENTINELS": "",
        "LOG_LEVEL": "WARNING",
{%- if cookiecutter.use_api_key %}
        "API_KEY": API_KEY,
{%- endif %}
        **extra,
    }
    command = [sys.executable, "-m", "uvicorn", app, "--factory", *STACK]
    command += ["--no-access-log", "--log-level", "warning"]
    options = ["--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen([*command, *options], cwd=PROJECT, env=env), port


async def serve(
    run: Run, app: str = "bench.server:create_bench_app", **extra: str
) -> tuple["subprocess.Popen[bytes]", int]:
    """uvicorn serving `app` on the run's queues (`extra`: more settings, as environment
    variables), once it accepts connections (uvicorn listens after the app's startup)."""
    server, port = start_server(run, app, **extra)
    deadline = time.monotonic() + 30
    while True:
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError("the benchmark server did not start") from None
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return server, port


def redis_cpu(redis: Redis) -> float:
    info: dict[str, Any] = redis.info("cpu")  # type: ignore[assignment]  # (sync client)
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def measure(run: Run) -> str:
    seconds, rounds = (1.0, 1) if run.quick else (5.0, 3)
    server, port = await serve(run)
    # CPU per request of the web process and of Redis, over each round (the web serves nothing
    # else meanwhile; the bare endpoint's Redis figure is what the others' is measured against).
    web_us: dict[str, list[float]] = {kind: [] for kind in [*ENDPOINTS, "batch"]}
    redis_us: dict[str, list[float]] = {kind: [] for kind in [*ENDPOINTS, "batch"]}
    try:
        with Redis.from_url(str(run.settings.redis_url)) as redis:

            async def timed(kind: str, path: str, body: bytes = BODY) -> tuple[float, list[float]]:
                web, store = cpu_seconds(server.pid), redis_cpu(redis)
                per_second, samples = await load(port, path, seconds, body)
                done = len(samples) * (BATCH if kind == "batch" else 1)
                web_us[kind].append((cpu_seconds(server.pid) - web) / done * 1e6)
                redis_us[kind].append((redis_cpu(redis) - store) / done * 1e6)
                return per_second, samples

            for path in ENDPOINTS.values():  # warm-up: connections, imports, pools
                await load(port, path, 0.5)
            rates: dict[str, list[float]] = {kind: [] for kind in ENDPOINTS}
            latencies: dict[str, list[float]] = {kind: [] for kind in ENDPOINTS}
            for n in range(rounds):
                # Alternated: each round starts with the next endpoint, so drift hits all alike.
                kinds = list(ENDPOINTS)
                for kind in kinds[n % len(kinds) :] + kinds[: n % len(kinds)]:
                    per_second, samples = await timed(kind, ENDPOINTS[kind])
                    rates[kind].append(per_second)
                    latencies[kind].extend(samples)
            # The bulk path: POST /jobs/batch with BATCH jobs a request (CPU per job).
            batch_rate, batch_latencies = await timed("batch", "/jobs/batch", BATCH_BODY)
    finally:
        server.terminate()
        server.wait(timeout=30)
    rate = {kind: median(values) for kind, values in rates.items()}
    rows: list[list[str]] = [
        [
            label,
            f"{rate[kind]:.0f}",
            ratio(rate[kind], rate["naive"]),
            ratio(rate[kind], rate["bare"]),
            f"{percentile(latencies[kind], 0.50) * 1000:.1f}",
            f"{percentile(latencies[kind], 0.99) * 1000:.1f}",
            f"{median(web_us[kind]):.0f}",
            f"{median(redis_us[kind]):.0f}",
        ]
        for kind, label in LABELS.items()
    ]
    batch = batch_rate * BATCH
    rows.append(
        [
            f"POST /jobs/batch, jobs/s ({BATCH} a request)",
            f"{batch:.0f}",
            ratio(batch, rate["naive"]),
            ratio(batch, rate["bare"]),
            f"{percentile(batch_latencies, 0.50) * 1000:.1f}",
            f"{percentile(batch_latencies, 0.99) * 1000:.1f}",
            f"{median(web_us['batch']):.0f}",
            f"{median(redis_us['batch']):.0f}",
        ]
    )
    durable = await measure_durable(run, seconds, rounds)
    run.goals.extend(
        [
            Goal(
                "HTTP: POST /jobs >= 1.2x the naive arq enqueue",
                ratio(rate["enqueue"], rate["naive"]),
                rate["enqueue"] >= 1.2 * rate["naive"],
            ),
            Goal(
                "HTTP: jobs/s by POST /jobs/batch >= 10x by POST /jobs",
                ratio(batch, rate["enqueue"]),
                batch >= 10 * rate["enqueue"],
            ),
        ]
    )
    main = table(
        f"HTTP (uvloop + httptools): {CONNECTIONS} keep-alive connections, {rounds} x "
        f"{seconds:g} s per endpoint, median req/s; ratios to the naive enqueue and to bare; "
        "CPU us per request (per job for the batch) of the web process and of Redis",
        ["endpoint", "req/s", "/ naive", "/ bare", "p50 ms", "p99 ms", "web us", "Redis us"],
        rows,
    )
    return f"{main}\n\n{durable}"


@contextlib.contextmanager
def master_and_replica() -> Iterator[str | None]:
    """A master and its replica of this benchmark's own (never the run's Redis, which may be
    someone's: a replica would copy all of it), the replica in sync; the master's URL, or None
    without a server program."""
    found = server_binary()
    if found is None:
        yield None
        return
    with contextlib.ExitStack() as stack:
        servers: list[subprocess.Popen[bytes]] = []

        def start(*options: str) -> int:
            port = free_port()
            data = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-durable-"))
            command = [found[0], "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
            server = subprocess.Popen(
                [*command, "--dir", data, *options], stdout=subprocess.DEVNULL
            )
            servers.append(server)
            return port

        try:
            master = start()
            start("--replicaof", "127.0.0.1", str(master))
            url = f"redis://127.0.0.1:{master}/0"
            deadline = time.monotonic() + 30
            while not replica_online(url):
                if time.monotonic() > deadline:
                    raise RuntimeError("the durable enqueue's replica did not come in sync")
                time.sleep(0.1)
            yield url
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=30)


def replica_online(url: str) -> bool:
    try:
        with Redis.from_url(url, socket_timeout=1) as master:
            replicas = master.info("replication")
    except (RedisError, OSError):
        return False
    return any(
        isinstance(value, dict) and value.get("state") == "online"
        for key, value in replicas.items()
        if key.startswith("slave")
    )


async def measure_durable(run: Run, seconds: float, rounds: int) -> str:
    """The cost of DURABLE_ENQUEUE_REPLICAS=1: POST /jobs with and without it on a master with
    one replica (so the replication itself costs both sides alike), alternated rounds."""
    with master_and_replica() as url:
        if url is None:
            return "Durable enqueue: skipped (no redis-server or valkey-server to replicate)"
        plain, plain_port = await serve(run, REDIS_URL=url)
        durable, durable_port = await serve(run, REDIS_URL=url, DURABLE_ENQUEUE_REPLICAS="1")
        ports = {"plain": plain_port, "durable": durable_port}
        rates: dict[str, list[float]] = {kind: [] for kind in ports}
        latencies: dict[str, list[float]] = {kind: [] for kind in ports}
        try:
            for port in ports.values():
                await load(port, ENDPOINTS["enqueue"], 0.5)
            for n in range(rounds):
                kinds = list(ports) if n % 2 == 0 else list(reversed(ports))
                for kind in kinds:
                    per_second, samples = await load(ports[kind], ENDPOINTS["enqueue"], seconds)
                    rates[kind].append(per_second)
                    latencies[kind].extend(samples)
        finally:
            for server in (plain, durable):
                server.terminate()
                server.wait(timeout=30)
    rate = {kind: median(values) for kind, values in rates.items()}
    labels = {
        "plain": "POST /jobs, DURABLE_ENQUEUE_REPLICAS=0",
        "durable": "POST /jobs, DURABLE_ENQUEUE_REPLICAS=1 (Redis WAIT)",
    }
    rows = [
        [
            labels[kind],
            f"{rate[kind]:.0f}",
            ratio(rate[kind], rate["plain"]),
            f"{percentile(latencies[kind], 0.50) * 1000:.1f}",
            f"{percentile(latencies[kind], 0.99) * 1000:.1f}",
        ]
        for kind in ports
    ]
    return table(
        f"Durable enqueue: one replica attached, {CONNECTIONS} connections, {rounds} x "
        f"{seconds:g} s each, median req/s",
        ["endpoint", "req/s", "/ not durable", "p50 ms", "p99 ms"],
        rows,
    )
