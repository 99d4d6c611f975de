"""The event store's table, one in each service database: the events, their metadata, and for a
published event its topic, key and when the relay published it.

``UNIQUE (stream_id, version)`` is what makes appends optimistic (see
:mod:`ticketing.shared.store.eventstore`)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.mysql import LONGTEXT

from ticketing.shared.db.columns import timestamp

STORE_TABLE = "event_store"
MAX_ID_LENGTH = 128  # correlation and causation ids: the longest X-Request-ID taken
TRACEPARENT_LENGTH = 64  # a version-00 traceparent has 55 characters; later versions may add


def event_store_table(metadata: MetaData) -> Table:
    """The store's table in a service's ``metadata`` (each service database has one)."""
    return Table(
        STORE_TABLE,
        metadata,
        Column("position", BigInteger, primary_key=True, autoincrement=True),
        # The event's own id: the message id consumers deduplicate on once it is published.
        Column("event_id", Uuid, nullable=False, unique=True),
        Column("stream_id", Uuid, nullable=False),
        Column("stream_type", String(32), nullable=False),
        Column("version", Integer, nullable=False),
        Column("event_type", String(64), nullable=False),
        Column("schema_version", Integer, nullable=False),
        Column("payload", Text().with_variant(LONGTEXT(), "mysql"), nullable=False),
        Column("correlation_id", String(MAX_ID_LENGTH), nullable=True),
        Column("causation_id", String(MAX_ID_LENGTH), nullable=True),
        # The W3C trace context of the work that recorded it, when tracing was on: the relay
        # publishes the event under it, so a trace survives the outbox and a replay.
        Column("traceparent", String(TRACEPARENT_LENGTH), nullable=True),
        Column("actor", Text, nullable=False),
        timestamp("recorded_at"),
        # Delivery: a published event's topic and key; internal events have none and are
        # stored with published_at set, so the relay's read never meets them.
        Column("topic", String(255), nullable=True),
        Column("message_key", String(255), nullable=True),
        timestamp("published_at", nullable=True),
        UniqueConstraint("stream_id", "version", name="uq_event_store_stream_version"),
        Index("ix_event_store_recorded_at", "recorded_at"),
        Index("ix_event_store_published_at_position", "published_at", "position"),
        CheckConstraint("version > 0", name="ck_event_store_version_positive"),
    )


# The columns an append writes, in the order of its rows.
INSERT_COLUMNS = (
    "event_id",
    "stream_id",
    "stream_type",
    "version",
    "event_type",
    "schema_version",
    "payload",
    "correlation_id",
    "causation_id",
    "traceparent",
    "actor",
    "recorded_at",
    "topic",
    "message_key",
    "published_at",
)
