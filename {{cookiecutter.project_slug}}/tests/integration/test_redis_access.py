"""Redis as production runs it: an ACL user with a password (percent-escaped in the URL), and
TLS with a private CA. Each test starts a redis-server of its own, configured that way."""

import asyncio
import contextlib
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from asgi_lifespan import LifespanManager
from pydantic import RedisDsn
from redis.asyncio import Redis

from {{ cookiecutter.package_name }}.dev import answers, free_port
from {{ cookiecutter.package_name }}.queue.connections import TimedReadsParser, redis_pool
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.web.app import create_app
from {{ cookiecutter.package_name }}.worker.options import worker_options
from {{ cookiecutter.package_name }}.worker.process import WakingWorker

from .conftest import require_server_binary, web_client

PASSWORD = "s3cr@t:pass/word"  # noqa: S105 - a test server's; characters a URL must escape
ESCAPED = "s3cr%40t%3Apass%2Fword"


def start_redis(*args: str) -> "subprocess.Popen[bytes]":
    server = require_server_binary()
    return subprocess.Popen(
        [server, "--save", "", "--appendonly", "no", *args], stdout=subprocess.DEVNULL
    )


def stop(process: "subprocess.Popen[bytes]") -> None:
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def acl_redis() -> Iterator[int]:
    """A Redis whose default user is off: only `app` with its password gets in."""
    port = free_port()
    process = start_redis(
        "--port", str(port), "--bind", "127.0.0.1",
        # One argument per word: redis-server joins them into `user <name> <rules...>`.
        "--user", "default", "off",
        "--user", "app", "on", f">{PASSWORD}", "~*", "&*", "+@all",
    )  # fmt: skip
    try:
        url = f"redis://app:{ESCAPED}@127.0.0.1:{port}/0"
        if not answers(url, wait=10):
            pytest.fail("the ACL redis-server did not start")
        yield port
    finally:
        stop(process)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A Redis that speaks TLS only, with a certificate from a CA of this test's own."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    port = free_port()
    process = start_redis(
        "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
        "--tls-cert-file", str(cert_file), "--tls-key-file", str(key_file),
        "--tls-ca-cert-file", str(ca_file), "--tls-auth-clients", "no",
    )  # fmt: skip
    try:
        process.wait(timeout=1)  # a server built without TLS stops at once; one with it runs on
    except subprocess.TimeoutExpired:
        try:
            yield port, ca_file
        finally:
            stop(process)
        return
    # Built without TLS (the embedded Valkey): TLS ends at a terminator in front of a plain
    # server, as with managed Redis behind stunnel. The client's side is the same either way.
    plain = free_port()
    process = start_redis("--port", str(plain), "--bind", "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    try:
        if not answers(f"redis://127.0.0.1:{plain}/0", wait=10):
            pytest.fail("the redis-server behind the TLS terminator did not start")
        with tls_terminator(context, port, plain):
            yield port, ca_file
    finally:
        stop(process)


@contextlib.contextmanager
def tls_terminator(context: ssl.SSLContext, port: int, backend: int) -> Iterator[None]:
    """Accept TLS on `port` and relay the plain bytes to 127.0.0.1:`backend`, in a thread."""
    loop = asyncio.new_event_loop()
    writers: set[asyncio.StreamWriter] = set()
    relays: set[asyncio.Task[None]] = set()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", backend)
        writers.add(backend_writer)
        both = asyncio.gather(relay(reader, backend_writer), relay(backend_reader, writer))
        relays.add(both)  # type: ignore[arg-type]  # a gathering future, cancelled at the end
        await both

    async def shutdown() -> None:
        server.close()
        for task in relays:
            task.cancel()
        for writer in writers:
            writer.close()
        await asyncio.sleep(0.1)  # the transports finish closing

    server = loop.run_until_complete(asyncio.start_server(accept, "127.0.0.1", port, ssl=context))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


async def enqueue_and_run(settings: Settings) -> dict[str, object]:
    """The whole path on these settings: web enqueues, a real worker runs, web reads."""
    async with web_client(settings) as http:
        ready = await http.get("/health/ready")
        assert ready.status_code == 200, ready.text
        body = {"task": "word_count", "args": {"text": "over acl"}}
        location = (await http.post("/jobs", json=body)).headers["location"]
        options = {**worker_options(settings), "burst": True, "handle_signals": False}
        worker = WakingWorker(**options)
        try:
            await worker.main()
        finally:
            await worker.close()
        job: dict[str, object] = (await http.get(location)).json()
        return job


def on(settings: Settings, url: str, **changes: object) -> Settings:
    name = f"access-{uuid.uuid4().hex[:8]}"
    return settings.model_copy(
        update={
            "redis_url": RedisDsn(url),
            "queue_name": f"{name}:queue",
            "bulk_queue_name": f"{name}:bulk",
            **changes,
        }
    )


async def test_an_acl_user_with_an_escaped_password_gets_in(
    acl_redis: int, settings: Settings
) -> None:
    url = f"redis://app:{ESCAPED}@127.0.0.1:{acl_redis}/0"

    job = await enqueue_and_run(on(settings, url))

    assert job["state"] == "succeeded"


async def test_a_wrong_password_is_not_ready_and_not_leaked(
    acl_redis: int, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://app:wrong-{ESCAPED}@127.0.0.1:{acl_redis}/0"
    app = create_app(on(settings, url))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            ready = await http.get("/health/ready")

    assert ready.status_code == 503
    assert "wrong-" not in caplog.text
    assert "wrong-" not in ready.text


async def test_tls_with_a_private_ca_works_end_to_end(
    tls_redis: tuple[int, Path], settings: Settings
) -> None:
    port, ca_file = tls_redis

    job = await enqueue_and_run(
        on(settings, f"rediss://127.0.0.1:{port}/0", redis_tls_ca_file=ca_file)
    )

    assert job["state"] == "succeeded"


async def test_over_tls_replies_are_read_as_over_plain_tcp(
    tls_redis: tuple[int, Path], settings: Settings
) -> None:
    """The service's reading of replies (queue/connections.py: the parser times socket reads,
    a pooled connection is checked by what its stream holds) through TLS, a TLS proxy's or
    Redis's own: a transaction's replies come back whole, and a pooled connection holding a
    reply nobody read, or closed by the server, is not handed out."""
    port, ca_file = tls_redis
    own = on(settings, f"rediss://127.0.0.1:{port}/0", redis_tls_ca_file=ca_file)
    redis = Redis(connection_pool=redis_pool(own, socket_timeout=2.0, retries=0))
    pool = redis.connection_pool
    try:
        async with redis.pipeline(transaction=True) as pipe:
            for n in range(50):
                pipe.set(f"tls:{n}", n)
            assert await pipe.execute() == [True] * 50
        connection = await pool.get_connection()
        assert isinstance(connection._parser, TimedReadsParser)  # (the service's path)
        await connection.send_command("PING")
        await asyncio.sleep(0.1)  # the reply has arrived, unread
        await pool.release(connection)
        assert await redis.get("tls:7") == b"7"  # not the stray PONG
        connection = await pool.get_connection()
        await connection.send_command("CLIENT", "ID")
        own_id = await connection.read_response()
        await pool.release(connection)
        killer = Redis(connection_pool=redis_pool(own, socket_timeout=2.0, retries=0))
        try:
            assert await killer.client_kill_filter(_id=own_id) == 1
        finally:
            await killer.aclose(close_connection_pool=True)
        await asyncio.sleep(0.2)  # (through a proxy, its end of the connection closes too)
        assert await redis.get("tls:8") == b"8"
    finally:
        await redis.aclose(close_connection_pool=True)


async def test_tls_refuses_a_server_it_cannot_verify(
    tls_redis: tuple[int, Path], settings: Settings
) -> None:
    port, _ca_file = tls_redis  # the system's CAs do not know this server's
    app = create_app(on(settings, f"rediss://127.0.0.1:{port}/0"))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            ready = await http.get("/health/ready")

    assert ready.status_code == 503
