"""How the worker, the command line and `dev` take the database: a session per job, the outbox
relay, the `migrate` command, a local server for `dev`."""

import argparse
import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import urlsplit

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


@contextmanager
def dev_database(
    settings: Settings, started: Callable[[int], None]
) -> Iterator[tuple[dict[str, str], str | None]]:
    """What `dev`'s processes need of the database, migrated, and a line saying where it is:
    DATABASE_URL's server if it is set, else a PostgreSQL started here (its process id to
    `started`), gone at exit."""
    if settings.database_url is not None:
        migrate_in_process(None)
        yield {}, "DATABASE_URL"
        return
    # (Imported here: local.py takes dev's free_port, and dev imports this module.)
    from .local import NOT_FOUND, local_postgres, server_directory

    if server_directory() is None:
        raise SystemExit(f"dev: {NOT_FOUND}")  # what to do, not a traceback
    with local_postgres(started) as url:
        migrate_in_process(url)
        shown = urlsplit(url)._replace(netloc=urlsplit(url).netloc.split("@")[-1]).geturl()
        yield {"DATABASE_URL": url}, f"{shown}  (started here, data discarded at exit)"


def migrate_in_process(url: str | None) -> None:
    """`migrate` as a process of its own, as a deploy runs it, before web and workers start."""
    env = {**os.environ, **({"DATABASE_URL": url} if url else {})}
    package = __name__.split(".", maxsplit=1)[0]
    command = [sys.executable, "-m", package, "migrate"]
    ran = subprocess.run(command, env=env, check=False)  # noqa: S603 - this project's own command
    if ran.returncode != 0:
        raise SystemExit(f"dev: `migrate` failed (status {ran.returncode}); its output is above")
