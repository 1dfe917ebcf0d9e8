"""The tables, as SQLAlchemy declares them. A change here needs a migration:
`uv run alembic revision --autogenerate -m "what changed"` writes it (review it before committing);
tests/integration/test_database.py fails while the migrations and these models disagree."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, MetaData, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Constraint names fixed by rule, not left to the server: a later migration that drops or alters
# one must be able to name it.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
JSON_VALUE = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Document(Base):
    """A text the service keeps (POST /documents), and whether its words were counted."""

    __tablename__ = "documents"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200), unique=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    indexed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    indexed_by: Mapped[str | None] = mapped_column(String(64))
    """The job that last wrote its word counts."""


class WordCount(Base):
    """How often a word occurs in a document: the index_document task's result."""

    __tablename__ = "word_counts"

    document_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True
    )
    word: Mapped[str] = mapped_column(String(100), primary_key=True)
    count: Mapped[int]


class OutboxJob(Base):
    """A job written with the transaction that wants it, waiting to be handed to the queue
    (database.outbox): it exists exactly when that transaction committed."""

    __tablename__ = "outbox"

    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    task: Mapped[str] = mapped_column(String(100))
    queue_name: Mapped[str] = mapped_column(String(200))
    kwargs: Mapped[dict[str, Any]] = mapped_column(JSON_VALUE)
    meta: Mapped[dict[str, str]] = mapped_column(JSON_VALUE)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
    attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    """Relays that failed to hand it over for another reason than an outage (a bug)."""
    last_error: Mapped[str | None] = mapped_column(Text)
