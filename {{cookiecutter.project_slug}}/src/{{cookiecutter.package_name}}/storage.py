"""Where the database enters the code: web, worker and the command line take it through here,
and nothing else knows whether the project has one (the template's `database`). With PostgreSQL,
these are database/'s; without, stand-ins with the same interface that hold nothing.
"""
{%- if cookiecutter.database == "postgres" %}

from .database import open_database
from .database.lifecycle import add_commands, dev_database, job_session, start_relay

__all__ = ["add_commands", "dev_database", "job_session", "open_database", "start_relay"]
{%- else %}

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager, nullcontext
from typing import Any

from .settings import Settings

NOTHING: AbstractAsyncContextManager[None] = nullcontext()


def open_database(settings: Settings) -> AbstractAsyncContextManager[None]:
    """No database to open: the web's state and the worker's ctx hold None."""
    return NOTHING


def job_session(ctx: Any) -> AbstractAsyncContextManager[None]:
    """No session for a job to take."""
    return NOTHING


def start_relay(database: None, settings: Settings) -> asyncio.Task[None] | None:
    """No outbox to relay."""
    return None


def add_commands(commands: Any) -> None:
    """No database commands (`migrate`)."""


def dev_database(
    settings: Settings, started: Callable[[int], None]
) -> AbstractContextManager[tuple[dict[str, str], str | None]]:
    """No database for `dev` to start: nothing for its processes' environment, nothing to say."""
    return nullcontext(({}, None))
{%- endif %}
