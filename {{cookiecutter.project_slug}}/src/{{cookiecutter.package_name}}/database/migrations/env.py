"""Alembic's environment: migrations run on an asyncio engine, one transaction for the whole
upgrade, under an advisory lock so that two `migrate` runs at once take turns."""

import asyncio

from alembic import context
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from {{ cookiecutter.package_name }}.database.models import Base
from {{ cookiecutter.package_name }}.settings import get_settings

# Any number the service uses for no other lock: the migrations' turn.
MIGRATION_LOCK = 7_253_146_001
LOCK_TIMEOUT = "10s"
"""How long a migration's statement waits for a table's lock. A migration waiting for one holds
up every query on that table behind it: better to fail (and be run again) than to stop the
service for as long as the lock's holder takes."""


def database_url() -> str:
    """The URL `migrate` passed, or (alembic's own command line) DATABASE_URL's."""
    url = context.config.attributes.get("url")
    if url is None:
        configured = get_settings().database_url
        if configured is None:
            raise SystemExit("DATABASE_URL is not set")
        url = configured.get_secret_value()
    return str(url)


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        compare_type=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        # (After the turn is ours: waiting for another migrate is not waiting for a table.)
        connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        context.run_migrations()


async def run_online() -> None:
    engine = create_async_engine(database_url(), poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    # `alembic upgrade head --sql`: the SQL written out for a DBA, nothing connected.
    context.configure(url=database_url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(run_online())
