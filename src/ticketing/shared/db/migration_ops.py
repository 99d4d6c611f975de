"""Versioned alembic operations for the tables every service shares (event store, inbox).

A migration calls a ``_v1`` function; a later change adds a ``_v2`` so old migrations keep
creating exactly what they created when they were written.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import DATETIME, LONGTEXT


def create_outbox_table_v1() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("aggregate_type", sa.String(64), nullable=False),
        sa.Column("aggregate_id", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("message_key", sa.String(255), nullable=False),
        sa.Column("event_type", sa.String(128), nullable=False),
        sa.Column("payload", LONGTEXT(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("created_at", DATETIME(fsp=6), nullable=False),
        sa.Column("published_at", DATETIME(fsp=6), nullable=True),
        mysql_engine="InnoDB",
    )
    op.create_index("ix_outbox_published_at_id", "outbox", ["published_at", "id"])
    op.create_index("ix_outbox_created_at", "outbox", ["created_at"])
    op.create_index("ix_outbox_aggregate", "outbox", ["aggregate_type", "aggregate_id"])


def create_inbox_table_v1() -> None:
    op.create_table(
        "processed_messages",
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("message_id", sa.Uuid(), primary_key=True),
        sa.Column("processed_at", DATETIME(fsp=6), nullable=False),
        mysql_engine="InnoDB",
    )


def drop_shared_tables_v1() -> None:
    op.drop_table("processed_messages")
    op.drop_table("outbox")


def create_event_store_table_v1() -> None:
    """The event store (``ticketing.shared.store.eventstore``), as issue 18 first made it."""
    op.create_table(
        "event_store",
        sa.Column("position", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("stream_id", sa.Uuid(), nullable=False),
        sa.Column("stream_type", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("payload", LONGTEXT(), nullable=False),
        sa.Column("correlation_id", sa.String(128), nullable=True),
        sa.Column("causation_id", sa.String(128), nullable=True),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("recorded_at", DATETIME(fsp=6), nullable=False),
        sa.UniqueConstraint("stream_id", "version", name="uq_event_store_stream_version"),
        sa.CheckConstraint("version > 0", name="ck_event_store_version_positive"),
        mysql_engine="InnoDB",
    )
    op.create_index("ix_event_store_recorded_at", "event_store", ["recorded_at"])


def add_event_store_delivery_v1() -> None:
    """The store becomes the outbox: published events' topic, key and publication time. Events
    already stored are internal (nothing published them), so they count as delivered."""
    op.add_column("event_store", sa.Column("topic", sa.String(255), nullable=True))
    op.add_column("event_store", sa.Column("message_key", sa.String(255), nullable=True))
    op.add_column("event_store", sa.Column("published_at", DATETIME(fsp=6), nullable=True))
    op.execute("UPDATE event_store SET published_at = recorded_at")
    op.create_index(
        "ix_event_store_published_at_position", "event_store", ["published_at", "position"]
    )


def widen_event_store_actor_v1() -> None:
    """An actor is a token's client id, which has no length limit of its own."""
    op.alter_column(
        "event_store", "actor", type_=sa.Text(), existing_type=sa.String(255), nullable=False
    )


def narrow_event_store_actor_v1() -> None:
    """Back to 255 characters; refused (data too long) while a longer actor is stored."""
    op.alter_column(
        "event_store", "actor", type_=sa.String(255), existing_type=sa.Text(), nullable=False
    )


def has_column(table: str, column: str) -> bool:
    """Whether ``table`` has ``column`` now: MariaDB commits each DDL statement, so a migration
    that stopped halfway is run again whole and must skip what it already did."""
    return column in {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def add_event_store_traceparent_v1() -> None:
    """The trace of the work that recorded each event, so the relay can publish it under that
    trace and a trace survives the outbox and a replay; events recorded before have none (NULL)."""
    if not has_column("event_store", "traceparent"):
        # Where the table declares it, so a migrated store and a created one are alike.
        op.execute(
            "ALTER TABLE event_store ADD COLUMN traceparent VARCHAR(64) NULL AFTER causation_id"
        )


def drop_event_store_traceparent_v1() -> None:
    """Back to no trace: the traces recorded are lost, the events themselves are kept."""
    if has_column("event_store", "traceparent"):
        op.drop_column("event_store", "traceparent")
