"""Where connections lead: REDIS_URL's server, or the master Sentinel names; and what a demoted
node's READONLY and a short WAIT become."""

from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.connection import Connection, ConnectionPool, SSLConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ReadOnlyError, ResponseError

from {{ cookiecutter.package_name }}.dev import free_port, run_dev
from {{ cookiecutter.package_name }}.queue.connections import (
    BoundedSentinelPool,
    ClosingSentinelPool,
    FailoverConnection,
    FailoverSSLConnection,
    SentinelConnection,
    SentinelSSLConnection,
    bounded_pool,
    redis_pool,
    sentinel_manager,
)
from {{ cookiecutter.package_name }}.queue.group_commit import replicated
from {{ cookiecutter.package_name }}.queue.pool import BoundedPool
from {{ cookiecutter.package_name }}.queue.unavailable import NotReplicatedError, unavailable
from {{ cookiecutter.package_name }}.settings import Settings


def test_sentinels_are_read_as_host_and_port_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_SENTINELS", " sentinel-1:26379, [::1]:26380,")
    monkeypatch.setenv("REDIS_SENTINEL_PASSWORD", "")

    settings = Settings(_env_file=None)

    assert settings.redis_sentinels == [("sentinel-1", 26379), ("::1", 26380)]
    assert settings.redis_sentinel_password is None


def test_without_sentinels_connections_go_to_the_url_and_reconnect_when_demoted() -> None:
    plain = Settings(_env_file=None, redis_url="redis://u:p%40ss@cache.internal:6380/2")
    tls = Settings(_env_file=None, redis_url="rediss://cache.internal:6380/0")

    pool = redis_pool(plain, socket_timeout=1, retries=1)
    bounded = bounded_pool(
        tls, socket_timeout=1, retries=1, max_connections=3, idle_timeout=1, wait_timeout=1
    )

    assert type(pool) is ConnectionPool
    assert pool.connection_class is FailoverConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache.internal", 6380, 2)
    assert (kwargs["username"], kwargs["password"]) == ("u", "p@ss")
    assert type(bounded) is BoundedPool
    assert bounded.connection_class is FailoverSSLConnection


def test_with_sentinels_every_pool_asks_them_for_the_master() -> None:
    settings = Settings(
        _env_file=None,
        redis_url="rediss://u:secret@ignored:1/4",
        redis_sentinels="s1:26379,s2:26379",
        redis_sentinel_master="orders",
    )

    pool = redis_pool(settings, socket_timeout=1, retries=1)
    bounded = bounded_pool(
        settings, socket_timeout=1, retries=1, max_connections=3, idle_timeout=1, wait_timeout=1
    )

    for each in (pool, bounded):
        assert isinstance(each, ClosingSentinelPool)
        assert each.service_name == "orders"
        assert each.connection_kwargs["db"] == 4
        assert "host" not in each.connection_kwargs
        assert each.connection_class is SentinelSSLConnection
    assert isinstance(bounded, BoundedSentinelPool)
    assert isinstance(bounded, BoundedPool)  # bounded, and trimmed when idle, as without Sentinel
    assert isinstance(pool, ClosingSentinelPool)
    hosts = [s.connection_pool.connection_kwargs["host"] for s in pool.sentinel_manager.sentinels]
    assert hosts == ["s1", "s2"]


SENTINEL_SECRET = "sentinel-secret"  # noqa: S105 - a test's


def test_sentinels_over_tls_with_a_password(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("a CA")
    settings = Settings(
        _env_file=None,
        redis_sentinels="s1:26379",
        redis_sentinel_password=SENTINEL_SECRET,
        redis_sentinel_tls=True,
        redis_tls_ca_file=ca,
    )

    (sentinel,) = sentinel_manager(settings).sentinels

    options = sentinel.connection_pool.connection_kwargs
    assert sentinel.connection_pool.connection_class is SSLConnection
    assert options["ssl_ca_certs"] == str(ca)
    assert options["password"] == SENTINEL_SECRET
    assert SENTINEL_SECRET not in repr(sentinel)


async def test_a_readonly_answer_closes_the_connection_and_is_retried_as_a_connection_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connection = FailoverConnection(host="127.0.0.1", port=1)
    closed: list[bool] = []

    async def demoted(*_args: object, **_kwargs: object) -> None:
        raise ReadOnlyError("You can't write against a read only replica.")

    async def disconnect(*_args: object, **_kwargs: object) -> None:
        closed.append(True)

    monkeypatch.setattr("redis.asyncio.connection.Connection.read_response", demoted)
    monkeypatch.setattr(connection, "disconnect", disconnect)

    with pytest.raises(RedisConnectionError, match="READONLY"):
        await connection.read_response()
    assert closed == [True]


async def test_a_sentinel_connection_tries_the_master_retries_plus_one_times_not_squared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """redis-py's Sentinel connection retries its base class's connect, which retries itself."""

    class Pool:
        is_master, check_connection = True, False

        async def get_master_address(self) -> tuple[str, int]:
            return "127.0.0.1", free_port()

    attempts: list[int] = []

    async def refused(*_args: object) -> None:
        attempts.append(1)
        raise RedisConnectionError("refused")

    connection = SentinelConnection(  # type: ignore[no-untyped-call]  # (untyped in redis-py 5)
        connection_pool=Pool(), retry=Retry(NoBackoff(), 2)
    )
    monkeypatch.setattr(connection, "_connect", refused)

    with pytest.raises(RedisConnectionError):
        await connection.connect()
    assert len(attempts) == 3  # redis-py's own: 9


def test_writes_fewer_replicas_acknowledged_fail_as_unavailable() -> None:
    taken = ValueError("taken")

    enough = replicated(["created", taken, 2], 2, 500)
    short = replicated(["created", taken, 1], 2, 500)

    assert enough == ["created", taken]
    assert short[1] is taken  # a call's own error stays its error
    assert isinstance(short[0], NotReplicatedError)
    assert "1 of 2 replicas" in str(short[0])
    assert unavailable(short[0])  # the web's 503, with Retry-After
    refused = ResponseError("WAIT cannot be used with replica instances")
    demoted = replicated(["created", refused], 1, 500)
    assert isinstance(demoted[0], NotReplicatedError)  # a 503, not a 500


def test_the_dev_runner_refuses_sentinels_that_name_no_master(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With REDIS_SENTINELS set it must not start a Redis of its own (the processes it starts
    would read the Sentinels anyway): it says what is wrong instead."""
    monkeypatch.setenv("REDIS_SENTINELS", f"127.0.0.1:{free_port()}")  # nothing listens there

    assert run_dev(port=free_port()) == 1
    assert "REDIS_SENTINELS is set, but no master 'mymaster'" in capsys.readouterr().err


PACKED = [
    ("PING",),
    ("CONFIG GET", "maxmemory"),  # a command name of two words: sent as two
    (b"CLIENT SETNAME", "web"),
    ("SET", "k\u00e9y", "v\u00e4lue \U0001f600", "PX", 1000),
    ("EVALSHA", "0" * 40, 2, "key:1", b"key:\xff", 0, -7, 2**70, 0.1, 1e-7, 1.5e300),
    ("ZADD", "q", float("inf"), "a", float("-inf"), "b", float("nan"), "c"),
    ("SET", "big", b"x" * 100_000),  # past redis-py's chunking threshold
]


@pytest.mark.parametrize("command", PACKED, ids=[str(command[0]) for command in PACKED])
@pytest.mark.parametrize("connection", [FailoverConnection, SentinelConnection])
def test_commands_are_packed_as_redis_py_packs_them(
    command: tuple[Any, ...], connection: type[FailoverConnection]
) -> None:
    """hiredis packs the commands of the project's connections (queue.connections): byte for
    byte what redis-py's own packing sends."""
    ours = connection() if connection is FailoverConnection else make_sentinel_connection()
    theirs = Connection()

    assert b"".join(ours.pack_command(*command)) == b"".join(theirs.pack_command(*command))


@pytest.mark.parametrize(
    ("argument", "error"),
    [(True, DataError), (None, DataError), ([1], DataError), ("lone \udc80", UnicodeEncodeError)],
)
def test_what_redis_py_refuses_to_send_is_refused_alike(argument: Any, error: type) -> None:
    """A bool (hiredis would send "True"), None, a list, a lone surrogate: the error redis-py's
    own packing raises, nothing sent."""
    for connection in (FailoverConnection(), Connection()):
        with pytest.raises(error):
            connection.pack_command("SET", "key", argument)


def make_sentinel_connection() -> SentinelConnection:
    sentinels = Sentinel([("127.0.0.1", free_port())])  # type: ignore[no-untyped-call]
    pool = ClosingSentinelPool("mymaster", sentinels)  # type: ignore[no-untyped-call]
    return SentinelConnection(connection_pool=pool)  # type: ignore[no-untyped-call]
