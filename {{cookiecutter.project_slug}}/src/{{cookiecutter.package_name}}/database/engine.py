"""The engine: one connection pool per process, bounded in size and in every wait."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy.exc
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ..settings import Settings


class DatabaseUnavailableError(Exception):
    """The database did not answer, or answered that it cannot take the work now."""


UNAVAILABLE_STATES = ("08", "53", "57P01", "57P02", "57P03", "58")
"""SQLSTATEs (or their classes) of a server that cannot take the work now: the connection failed
(08), out of connections or memory (53: "too many clients"), shutting down, restarting or
starting up (57P01-57P03), a system error (58)."""
CONFLICT_STATES = ("40001", "40P01")
"""A serialization failure or a deadlock: the transaction was chosen to give way, and would
succeed if tried again."""


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE PostgreSQL answered with, wherever the error carries it: asyncpg's own error
    (raised bare while connecting), or SQLAlchemy's wrapper of it (its `orig`, whose cause is
    asyncpg's)."""
    seen: BaseException | None = error
    for _ in range(4):  # (a chain, not a loop: a few links at most)
        if seen is None:
            return None
        state = getattr(seen, "sqlstate", None)
        if isinstance(state, str) and state:
            return state
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


def unavailable(error: BaseException) -> bool:
    """Whether `error` means "the database is not there now" (down, restarting, out of
    connections, every pooled connection busy past the timeout, a statement past it) rather than
    a mistake in what was asked. asyncpg raises OSError and TimeoutError as they are when it
    cannot connect, and its own errors (with a SQLSTATE) when the server refuses; SQLAlchemy
    wraps what the driver raises once connected."""
    if isinstance(
        error,
        OSError
        | TimeoutError
        | DatabaseUnavailableError
        | sqlalchemy.exc.OperationalError
        | sqlalchemy.exc.InterfaceError
        | sqlalchemy.exc.TimeoutError,
    ) or (isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated):
        return True
    state = sqlstate(error)
    return state is not None and state.startswith(UNAVAILABLE_STATES)


def worth_retrying(error: BaseException) -> bool:
    """A task's database error that another try may not meet: the server unavailable for now,
    or the transaction chosen to give way to another (a deadlock, a serialization failure)."""
    return unavailable(error) or sqlstate(error) in CONFLICT_STATES


class Database:
    """An engine and its sessions. Nothing connects until a session runs a statement."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # expire_on_commit off: an object read in a transaction stays readable after it without
        # a lazy load, which asyncio sessions cannot do implicitly.
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)

    def session(self) -> AsyncSession:
        """A new session: for one request or one job, closed by `async with`."""
        return self.sessions()

    async def dispose(self) -> None:
        await self.engine.dispose()


def connect(settings: Settings) -> Database | None:
    """The database DATABASE_URL names, or None when it is not set."""
    if settings.database_url is None:
        return None
    timeout = settings.database_timeout
    engine = create_async_engine(
        settings.database_url.get_secret_value(),
        pool_size=settings.database_pool_size,
        max_overflow=0,  # the size is the cap: PostgreSQL's max_connections is shared by all
        pool_timeout=timeout,  # waiting for a free connection
        pool_pre_ping=True,  # a connection the server dropped (restart, failover) is replaced
        pool_recycle=1800,
        # Statements and their parameters stay out of error messages and logs: a document's
        # text, or whatever a task writes, is the users' data.
        hide_parameters=True,
        connect_args={
            "timeout": timeout,  # connecting
            "command_timeout": timeout,  # each statement: a stalled server fails it, not hangs
            "server_settings": {"application_name": settings.app_name[:63]},
        },
    )
    return Database(engine)


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database | None]:
    """The database for as long as the block runs (None without DATABASE_URL); its pool is
    closed after."""
    database = connect(settings)
    try:
        yield database
    finally:
        if database is not None:
            await database.dispose()
