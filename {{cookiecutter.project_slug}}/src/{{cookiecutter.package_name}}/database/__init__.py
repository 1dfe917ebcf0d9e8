"""The service's database (PostgreSQL through SQLAlchemy's asyncio layer and asyncpg): what tasks
write their own data to, and the outbox that makes a job part of a transaction.

web and worker each open it once (`open_database`, in the web's lifespan and the worker's startup)
and take a session from it per request or per job (`Database.session`), never sharing one.
"""

from .engine import (
    Database,
    DatabaseUnavailableError,
    open_database,
    sqlstate,
    unavailable,
    worth_retrying,
)
from .models import Base, Document, OutboxJob, WordCount
from .outbox import relay, relay_forever, stage_job

__all__ = [
    "Base",
    "Database",
    "DatabaseUnavailableError",
    "Document",
    "OutboxJob",
    "WordCount",
    "open_database",
    "relay",
    "relay_forever",
    "sqlstate",
    "stage_job",
    "unavailable",
    "worth_retrying",
]
