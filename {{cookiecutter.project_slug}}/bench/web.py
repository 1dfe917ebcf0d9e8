"""HTTP: the enqueue endpoint (POST /jobs) vs a bare endpoint on the same server, in one run.

uvicorn serves the deployed app (one process, as the image's CMD runs it) plus a bare endpoint and
a naive enqueue for comparison (bench/server.py). A load generator of raw keep-alive connections
(not an HTTP library, which would be the bottleneck and flatter the ratio) sends the same POST to
each, in interleaved rounds, then measures the bulk path (POST /jobs/batch). It runs with both of
uvicorn's stacks: uvloop + httptools (what `uvicorn[standard]` picks by default, and the image
runs) and asyncio + h11. No worker runs: the jobs stay queued and are deleted afterwards.
"""

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from {{ cookiecutter.package_name }}.dev import free_port

from .common import Run, median, percentile, table

PROJECT = Path(__file__).resolve().parent.parent
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
    "bare": "bare endpoint",
    "naive": "naive enqueue (arq's enqueue_job only)",
    "enqueue": "POST /jobs (enqueue)",
}
STACKS = {
    "uvloop + httptools": ["--loop", "uvloop", "--http", "httptools"],
    "asyncio + h11": ["--loop", "asyncio", "--http", "h11"],
}


def request(path: str, body: bytes = BODY) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
{%- if cookiecutter.use_api_key %}
        f"X-API-Key: {API_KEY}\r\n"
{%- endif %}
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def one_connection(
    port: int, payload: bytes, until: float, latencies: list[float], statuses: Counter[str]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (sent := time.perf_counter()) < until:
            writer.write(payload)
            status = (await reader.readline()).split(b" ", 2)[1].decode()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
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


def start_server(run: Run, stack: list[str]) -> tuple["subprocess.Popen[bytes]", int]:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": str(run.settings.redis_url),
        "QUEUE_NAME": run.settings.queue_name,
        "BULK_QUEUE_NAME": run.settings.bulk_queue_name,
        "LOG_LEVEL": "WARNING",
{%- if cookiecutter.use_api_key %}
        "API_KEY": API_KEY,
{%- endif %}
    }
    command = [sys.executable, "-m", "uvicorn", "bench.server:create_bench_app", "--factory"]
    options = ["--host", "127.0.0.1", "--port", str(port), "--no-access-log", *stack]
    server = subprocess.Popen([*command, *options], cwd=PROJECT, env=env)
    return server, port


async def serve(run: Run, stack: list[str]) -> tuple["subprocess.Popen[bytes]", int]:
    """The server, once it accepts connections (uvicorn listens after the app's startup)."""
    server, port = start_server(run, stack)
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


async def measure(run: Run) -> str:
    seconds, rounds = (1.0, 1) if run.quick else (5.0, 3)
    rows: list[list[str]] = []
    for name, stack in STACKS.items():
        server, port = await serve(run, stack)
        try:
            for path in ENDPOINTS.values():  # warm-up: connections, imports, pools
                await load(port, path, 0.5)
            rates: dict[str, list[float]] = {kind: [] for kind in ENDPOINTS}
            latencies: dict[str, list[float]] = {kind: [] for kind in ENDPOINTS}
            for _ in range(rounds):  # interleaved, so drift hits all alike
                for kind, path in ENDPOINTS.items():
                    rate, samples = await load(port, path, seconds)
                    rates[kind].append(rate)
                    latencies[kind].extend(samples)
            # The bulk path: POST /jobs/batch with BATCH jobs a request.
            batch_rate, batch_latencies = await load(port, "/jobs/batch", seconds, BATCH_BODY)
        finally:
            server.terminate()
            server.wait(timeout=30)
        for kind, label in LABELS.items():
            rows.append(
                [
                    f"{name}: {label}",
                    f"{median(rates[kind]):.0f}",
                    f"{percentile(latencies[kind], 0.50) * 1000:.1f}",
                    f"{percentile(latencies[kind], 0.99) * 1000:.1f}",
                ]
            )
        naive = median(rates["naive"]) / median(rates["bare"])
        rows.append([f"{name}: naive / bare", f"{naive:.2f}", "", ""])
        ratio = median(rates["enqueue"]) / median(rates["bare"])
        rows.append([f"{name}: ratio (goal >= 0.60)", f"{ratio:.2f}", "", ""])
        rows.append(
            [
                f"{name}: POST /jobs/batch, jobs/s ({BATCH} a request)",
                f"{batch_rate * BATCH:.0f}",
                f"{percentile(batch_latencies, 0.50) * 1000:.1f}",
                f"{percentile(batch_latencies, 0.99) * 1000:.1f}",
            ]
        )
        bulk = batch_rate * BATCH / median(rates["enqueue"])
        rows.append([f"{name}: batch vs one job a request (goal >= 10)", f"{bulk:.1f}", "", ""])
    return table(
        f"HTTP: {CONNECTIONS} keep-alive connections, {rounds} x {seconds:g} s per endpoint",
        ["server and endpoint", "req/s", "p50 ms", "p99 ms"],
        rows,
    )
