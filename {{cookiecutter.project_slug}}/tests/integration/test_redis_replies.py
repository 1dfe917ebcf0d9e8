"""How the service's Redis connections read replies (queue/connections.py), on a real Redis: a
reply already received costs no timer, a reply that never comes still ends at the socket
timeout, and a pooled connection holding data nobody read, or closed by the server, is never
handed out as it is."""

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import RedisDsn
from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from {{ cookiecutter.package_name }}.queue.connections import redis_pool
from {{ cookiecutter.package_name }}.settings import Settings

from .conftest import RedisServer

SOCKET_TIMEOUT = 0.5


@contextlib.asynccontextmanager
async def client(settings: Settings, server: RedisServer) -> AsyncIterator[Redis]:
    """A client on the service's connections (no retries), to `server`."""
    own = settings.model_copy(update={"redis_url": RedisDsn(server.url)})
    redis = Redis(connection_pool=redis_pool(own, socket_timeout=SOCKET_TIMEOUT, retries=0))
    try:
        yield redis
    finally:
        await redis.aclose(close_connection_pool=True)


@pytest.fixture
def timers(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """The delays of the timeouts the reads of replies start: redis-py's own (around each
    reply) and the parser's (around each read from the socket)."""
    started: list[float | None] = []
    real = asyncio.timeout

    def counted(delay: float | None) -> Any:
        started.append(delay)
        return real(delay)

    monkeypatch.setattr("redis.asyncio.connection.async_timeout", counted)
    monkeypatch.setattr("asyncio.timeout", counted)  # (what the parser calls)
    return started


async def test_replies_received_together_cost_one_timer_not_one_each(
    settings: Settings, own_redis: RedisServer, timers: list[float | None]
) -> None:
    async with client(settings, own_redis) as redis:
        await redis.ping()  # connected
        timers.clear()
        async with redis.pipeline(transaction=True) as pipe:
            for n in range(50):
                pipe.set(f"replies:{n}", n)
            replies = await pipe.execute()
    assert replies == [True] * 50
    # 52 replies (MULTI's, 50 QUEUED, EXEC's): redis-py times each of them.
    reads = [delay for delay in timers if delay == SOCKET_TIMEOUT]
    assert 1 <= len(reads) <= 3, timers


async def test_a_reply_that_never_comes_ends_at_the_socket_timeout(
    settings: Settings, own_redis: RedisServer
) -> None:
    assert own_redis.process is not None
    async with client(settings, own_redis) as redis:
        await redis.ping()
        try:
            own_redis.process.send_signal(signal.SIGSTOP)  # connected, answers nothing
            started = time.monotonic()
            with pytest.raises(RedisTimeoutError):
                async with asyncio.timeout(10 * SOCKET_TIMEOUT):  # (the test's own bound)
                    await redis.get("replies:never")
            assert SOCKET_TIMEOUT * 0.9 <= time.monotonic() - started < 3 * SOCKET_TIMEOUT
        finally:
            own_redis.process.send_signal(signal.SIGCONT)
        # The connection cut off mid-reply (its GET answered late) is not reused: the next
        # commands of the same client get their own replies.
        await redis.set("replies:after", "mine")
        assert await redis.get("replies:after") == b"mine"


async def test_a_pooled_connection_with_an_unread_reply_or_closed_is_not_handed_out(
    settings: Settings, own_redis: RedisServer
) -> None:
    async with client(settings, own_redis) as redis:
        pool = redis.connection_pool
        await redis.set("replies:key", "value")
        # A reply nobody read (a command cut off after its send): the connection goes back to
        # the pool with it.
        connection = await pool.get_connection()
        await connection.send_command("PING")
        await asyncio.sleep(0.1)  # the reply has arrived
        await pool.release(connection)
        assert await redis.get("replies:key") == b"value"  # not the stray PONG
        # Closed by the server while in the pool.
        connection = await pool.get_connection()
        await connection.send_command("CLIENT", "ID")
        own_id = await connection.read_response()
        await pool.release(connection)
        async with Redis.from_url(own_redis.url) as other:
            assert await other.client_kill_filter(_id=own_id) == 1
        await asyncio.sleep(0.1)
        assert await redis.get("replies:key") == b"value"
