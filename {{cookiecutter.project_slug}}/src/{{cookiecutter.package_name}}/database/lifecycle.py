"""How the worker and the command line take the database: a session per job, the outbox relay,
the `migrate` command."""

import argparse
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ..queue.shards import open_queue
from ..settings import Settings, get_settings
from .engine import Database
from .outbox import relay_forever


@asynccontextmanager
async def job_session(ctx: Any) -> AsyncIterator[None]:
    """`ctx["session"]` for one try of one job, closed after it (an open transaction rolled
    back): no two jobs share a session. It connects only if the task runs a statement."""
    database: Database | None = ctx.get("database")
    if database is None:
        yield
        return
    async with database.session() as session:
        ctx["session"] = session
        try:
            yield
        finally:
            del ctx["session"]


def start_relay(database: Database | None, settings: Settings) -> asyncio.Task[None] | None:
    """The worker's outbox relay (database.outbox), on a queue connection of its own."""
    if database is None:
        return None

    async def run() -> None:
        async with open_queue(settings) as queue:
            await relay_forever(database, queue)

    return asyncio.create_task(run(), name="outbox-relay")


def add_commands(commands: Any) -> None:
    """`migrate`, on the project's command line (cli.py)."""
    migrate = commands.add_parser(
        "migrate", help="bring the database's schema to the newest migration (Alembic)"
    )
    migrate.set_defaults(run=run_migrate)


def run_migrate(_args: argparse.Namespace) -> int:
    from .migrate import migrate  # (Alembic loads for this command only)

    migrate(get_settings())
    return 0
