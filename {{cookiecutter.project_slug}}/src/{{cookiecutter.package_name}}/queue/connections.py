"""How every process reaches Redis: the server at REDIS_URL, or the master that Sentinel names.

The web's pools, its event reader, the workers (and with them their wake listeners, heartbeats
and metrics) all take their connections from `redis_pool`, so one setting moves them all.

After a failover a connection may still lead to the old master, now a replica: every write then
fails with READONLY. redis-py's Sentinel connections reconnect on it (asking Sentinel again), and
so do the connections to REDIS_URL here (a managed Redis behind one endpoint moves that endpoint
to the new master): the connection closes and the command fails as a ConnectionError, which the
caller's retries and the web's 503 already handle, and the next connection finds the new master.
Without this a process would keep its demoted connections, and its errors, for its whole life.
"""

import asyncio
import contextlib
from typing import Any

from redis._parsers import _AsyncHiredisParser
from redis._parsers.hiredis import NOT_ENOUGH_DATA
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    ConnectionPool,
    SSLConnection,
)
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import HIREDIS_AVAILABLE

if HIREDIS_AVAILABLE:
    import hiredis

from ..settings import Settings
from .pool import BoundedPool

CONNECT_TIMEOUT = 2.0
"""Seconds to open a connection (to Redis or to a Sentinel)."""


class TimedReadsParser(_AsyncHiredisParser):
    """hiredis's parser, timing each read from the socket itself while `read_timeout` is set.

    redis-py times every reply with an asyncio timeout (a timer scheduled and cancelled), even
    one that has already arrived: a transaction's replies come in one packet, yet each costs a
    timer. A worker reads about 17 replies a job, and those timers were a tenth of its CPU.
    Timing the socket reads instead bounds every wait for Redis as tightly (no read waits longer
    than the socket timeout) while a reply already received costs nothing."""

    read_timeout: float | None = None

    async def can_read_destructive(self) -> bool:
        """Whether the connection holds data nobody asked for (a pooled connection must not),
        raising if it is closed. redis-py finds out by a socket read under a zero timeout, which
        waits a turn of the event loop and raises inside it: at every checkout from the pool,
        several times a job. What has arrived is in the stream's buffer already."""
        if not self._connected:
            raise RedisConnectionError("Connection closed by server.")
        reader: Any = self._reader  # (typed None by redis-py; hiredis's Reader once connected)
        if reader.gets() is not NOT_ENOUGH_DATA:
            return True
        stream = self._stream
        if stream is None:
            raise RedisConnectionError("Connection closed by server.")
        error = stream.exception()
        if error is not None:
            raise error
        if stream.at_eof():
            raise RedisConnectionError("Connection closed by server.")
        return bool(stream._buffer)  # type: ignore[attr-defined]  # (what it received, unread)

    async def read_from_socket(self) -> bool:
        if self.read_timeout is None:
            return await super().read_from_socket()  # type: ignore[no-untyped-call,no-any-return]
        async with asyncio.timeout(self.read_timeout):
            return await super().read_from_socket()  # type: ignore[no-untyped-call,no-any-return]


class _TimedReads(AbstractConnection):
    """A connection whose replies are timed by its parser (TimedReadsParser) when it has one,
    and whose commands hiredis packs."""

    def pack_command(self, *args: Any) -> list[bytes]:
        """redis-py packs a command for its asyncio connections in Python, argument by argument
        (its blocking ones use hiredis's packer): a script call of the web's enqueue, two dozen
        arguments, cost more than a tenth of a request's CPU. hiredis's packer does the same in
        C, where it is installed and the arguments are what it packs alike."""
        encoder = self.encoder
        if (
            not HIREDIS_AVAILABLE
            or encoder.encoding != "utf-8"
            or encoder.encoding_errors != "strict"
        ):
            return super().pack_command(*args)
        # hiredis packs bytes, str, int and float as redis-py's encoder does (UTF-8, strict;
        # numbers by repr); a bool (hiredis would send "True") and anything else go to
        # redis-py's own packing and its DataError, and so does a command with a value past
        # redis-py's cutoff, which it sends as a chunk of its own (hiredis would copy it).
        # (Inline: a call per argument cost more, run cold at idle.)
        cutoff = self._buffer_cutoff
        for arg in args:
            kind = type(arg)
            if kind is str or kind is bytes:
                if len(arg) > cutoff:
                    return super().pack_command(*args)
            elif kind is not int and kind is not float:
                return super().pack_command(*args)
        first = args[0]
        # (redis-py's rule: a command name with a space, "CONFIG GET", is sent as two words)
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        return [hiredis.pack_command(args)]

    async def read_response(
        self,
        disable_decoding: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109  (redis-py's signature)
        *,
        disconnect_on_error: bool = True,
        push_request: bool | None = False,
    ) -> Any:
        parser = self._parser
        if (
            timeout is not None
            or not self.socket_timeout
            or not isinstance(parser, TimedReadsParser)
        ):
            return await super().read_response(
                disable_decoding,
                timeout,
                disconnect_on_error=disconnect_on_error,
                push_request=push_request,
            )
        # redis-py's read_response for this case (redis-py 5, RESP2, hiredis), with the timeout
        # on the socket reads alone (tests/integration/test_redis_replies.py).
        parser.read_timeout = self.socket_timeout
        try:
            response = await parser.read_response(disable_decoding=disable_decoding)
        except TimeoutError:
            if disconnect_on_error:
                await self.disconnect(nowait=True)
            raise RedisTimeoutError(f"Timeout reading from {self._host_error()}") from None
        except OSError as exc:
            if disconnect_on_error:
                await self.disconnect(nowait=True)
            message = f"Error while reading from {self._host_error()} : {exc.args}"
            raise RedisConnectionError(message) from None
        except BaseException:
            # (as redis-py: a read cut off, by a cancel or anything else, leaves the connection
            # mid-reply, unusable)
            if disconnect_on_error:
                await self.disconnect(nowait=True)
            raise
        finally:
            parser.read_timeout = None
        if self.health_check_interval:
            self.next_health_check = asyncio.get_running_loop().time() + self.health_check_interval
        if isinstance(response, ResponseError):
            raise response from None
        return response


class _ReconnectsWhenDemoted(_TimedReads):
    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except ReadOnlyError:
            await self.disconnect()
            raise RedisConnectionError(
                "Redis answered READONLY: this node is a replica now (a failover); reconnecting"
            ) from None


class FailoverConnection(_ReconnectsWhenDemoted, Connection):
    """A connection to REDIS_URL that reconnects when its node was demoted."""


class FailoverSSLConnection(_ReconnectsWhenDemoted, SSLConnection):
    """The same over TLS (rediss://)."""


class SentinelConnection(SentinelManagedConnection, _TimedReads):
    """redis-py's connection to the master Sentinel names, making one connection attempt per
    connect: redis-py's wraps its base class's retried connect in the same retries again, so an
    unreachable master took (retries + 1) squared attempts, minutes for a worker, before a command
    failed. The command's own retries still reconnect, asking Sentinel again each time."""

    async def connect(self) -> None:
        await self._connect_retry()  # type: ignore[no-untyped-call]  # (untyped in redis-py 5)


class SentinelSSLConnection(SentinelConnection, SSLConnection):
    """The same over TLS."""


class ClosingSentinelPool(SentinelConnectionPool):
    """redis-py's Sentinel pool, which also closes its connections to the Sentinels when it
    closes (redis-py leaves them open: a socket per Sentinel per pool)."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        try:
            await super().disconnect(inuse_connections)
        finally:
            if inuse_connections:  # the pool's end (a new master only drops idle connections)
                for sentinel in self.sentinel_manager.sentinels:
                    with contextlib.suppress(Exception):
                        await sentinel.aclose()


class BoundedSentinelPool(ClosingSentinelPool, BoundedPool):
    """The web's bounded pool (queue.pool) with its master found through Sentinel."""


def retry_policy(retries: int) -> Retry:
    """Backoff 0.05, 0.1, 0.2 ... capped at 2 s between tries: 10 retries ride out ~15 s."""
    return Retry(ExponentialBackoff(cap=2, base=0.05), retries=retries)


def connection_options(settings: Settings, socket_timeout: float, retries: int) -> dict[str, Any]:
    """The keywords of each connection (redis-py's Connection), wherever its address comes from."""
    url = settings.redis_url
    tls = url.scheme == "rediss"
    options: dict[str, Any] = {
        "db": settings.redis_database,
        "username": settings.redis_username,
        "password": settings.redis_password,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": socket_timeout,
        "retry": retry_policy(retries),
        # Timeouts listed here rather than by retry_on_timeout=True, with which redis-py appends
        # to this shared list at every new connection.
        "retry_on_error": [RedisConnectionError, RedisTimeoutError, OSError, TimeoutError],
    }
    if HIREDIS_AVAILABLE:  # (a dependency; without it, redis-py's parser and its timers)
        options["parser_class"] = TimedReadsParser
    if tls:
        # A private CA (self-hosted or some managed Redis); the system's CAs otherwise.
        ca = settings.redis_tls_ca_file
        options["ssl_ca_certs"] = str(ca) if ca else None
    if settings.redis_sentinels:
        options["connection_class"] = SentinelSSLConnection if tls else SentinelConnection
    else:
        options.update(
            host=url.host or "localhost",
            port=url.port or 6379,
            connection_class=FailoverSSLConnection if tls else FailoverConnection,
        )
    return options


def sentinel_options(settings: Settings, timeout: float = CONNECT_TIMEOUT) -> dict[str, Any]:
    """The keywords of each connection to a Sentinel (not to the master): its password and TLS."""
    password = settings.redis_sentinel_password
    options: dict[str, Any] = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "password": password.get_secret_value() if password else None,
    }
    if settings.redis_sentinel_tls:
        ca = settings.redis_tls_ca_file
        options.update(ssl=True, ssl_ca_certs=str(ca) if ca else None)
    return options


def sentinel_manager(settings: Settings) -> Sentinel:
    """The Sentinels that name the master: asked in turn, the first that knows it answers."""
    # (redis-py 5 leaves Sentinel's classes untyped)
    return Sentinel(settings.redis_sentinels, sentinel_kwargs=sentinel_options(settings))  # type: ignore[no-untyped-call]


def redis_pool(
    settings: Settings, *, socket_timeout: float, retries: int, max_connections: int | None = None
) -> ConnectionPool:
    """redis-py's pool of connections to the master (unbounded unless `max_connections`)."""
    options = connection_options(settings, socket_timeout, retries)
    if max_connections is not None:
        options["max_connections"] = max_connections
    if settings.redis_sentinels:
        master = settings.redis_sentinel_master
        return ClosingSentinelPool(master, sentinel_manager(settings), **options)  # type: ignore[no-untyped-call]
    return ConnectionPool(**options)


def bounded_pool(
    settings: Settings,
    *,
    socket_timeout: float,
    retries: int,
    max_connections: int,
    idle_timeout: float,
    wait_timeout: float,
) -> BoundedPool:
    """The web's pool of connections to the master (queue.pool): at most `max_connections`,
    waiting up to `wait_timeout` for a free one, closing those idle for `idle_timeout`."""
    options = connection_options(settings, socket_timeout, retries)
    options.update(max_connections=max_connections, timeout=wait_timeout)
    if settings.redis_sentinels:
        return BoundedSentinelPool(  # type: ignore[no-untyped-call]
            settings.redis_sentinel_master,
            sentinel_manager(settings),
            idle_timeout=idle_timeout,
            **options,
        )
    return BoundedPool(idle_timeout=idle_timeout, **options)
