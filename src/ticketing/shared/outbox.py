"""The transactional outbox: a service's append-only event log.

A service appends an event in the same transaction as the state change it describes
(:func:`append`). The :class:`~ticketing.shared.relay.OutboxRelay` publishes rows later.
Rows are kept after publishing (replay reads them) until retention purges them.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
)
from sqlalchemy.dialects.mysql import DATETIME, LONGTEXT
from sqlalchemy.ext.asyncio import AsyncConnection

from ticketing.contracts.events import (
    CORRELATION_ID_HEADER,
    EVENT_TYPE_HEADER,
    MESSAGE_ID_HEADER,
)
from ticketing.shared import sql


class Event(Protocol):
    """Any event contract: a dataclass with a ``message_id``."""

    @property
    def message_id(self) -> uuid.UUID: ...


def outbox_table(metadata: MetaData) -> Table:
    """The ``outbox`` table, the same in every service database (see migration_ops)."""
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("event_id", Uuid, nullable=False, unique=True),
        Column("aggregate_type", String(64), nullable=False),
        Column("aggregate_id", String(64), nullable=False),
        Column("topic", String(255), nullable=False),
        Column("message_key", String(255), nullable=False),
        Column("event_type", String(128), nullable=False),
        # JSON text: what the relay sends and replay reads back, readable in the database too.
        Column("payload", Text().with_variant(LONGTEXT(), "mysql"), nullable=False),
        Column("headers", Text, nullable=False),
        Column("created_at", DATETIME(fsp=6), nullable=False),
        Column("published_at", DATETIME(fsp=6), nullable=True),
        Index("ix_outbox_published_at_id", "published_at", "id"),
        Index("ix_outbox_created_at", "created_at"),
        Index("ix_outbox_aggregate", "aggregate_type", "aggregate_id"),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    event_id: uuid.UUID
    topic: str
    key: bytes
    event_type: str
    payload: bytes
    headers: list[tuple[str, bytes]]
    created_at: datetime
    published_at: datetime | None


_encoder = msgspec.json.Encoder()


def encode_event(event: Any) -> bytes:
    return _encoder.encode(event)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def build_row(
    event: Event,
    *,
    topic: str,
    key: str,
    aggregate_type: str,
    aggregate_id: str,
    correlation_id: str | None = None,
) -> dict[str, Any]:
    """The values of one outbox row for ``event``."""
    event_type = type(event).__name__
    headers = {
        EVENT_TYPE_HEADER: event_type,
        MESSAGE_ID_HEADER: str(event.message_id),
        CORRELATION_ID_HEADER: correlation_id or str(event.message_id),
        "content-type": "application/json",
    }
    return {
        "event_id": event.message_id,
        "aggregate_type": aggregate_type,
        "aggregate_id": aggregate_id,
        "topic": topic,
        "message_key": key,
        "event_type": event_type,
        "payload": encode_event(event).decode(),
        "headers": _encoder.encode(headers).decode(),
        "created_at": utcnow(),
    }


# The columns a new row fills, in the order of :func:`row_values`.
ROW_COLUMNS = (
    "event_id",
    "aggregate_type",
    "aggregate_id",
    "topic",
    "message_key",
    "event_type",
    "payload",
    "headers",
    "created_at",
)


async def append(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Write outbox ``rows`` (from :func:`build_row`) inside the caller's transaction, with
    one multi-row statement (on the driver's cursor: every event passes here)."""
    await sql.run(conn, append_statement(table, rows))


def append_statement(table: Table, rows: Sequence[dict[str, Any]]) -> sql.Statement:
    """The statement of :func:`append`, for :func:`ticketing.shared.sql.commit_all`."""
    return sql.Statement(
        sql.insert_sql(table, ROW_COLUMNS), [row_values(row) for row in rows], rows=True
    )


def row_values(row: dict[str, Any]) -> tuple[Any, ...]:
    """The values of a :func:`build_row` row for an insert of :data:`ROW_COLUMNS`."""
    return (str(row["event_id"]), *(row[column] for column in ROW_COLUMNS[1:]))


_decode_headers = msgspec.json.Decoder(dict[str, str])


def decode_headers(stored: str) -> list[tuple[str, bytes]]:
    """An outbox row's ``headers`` column as Kafka record headers."""
    return [(name, value.encode()) for name, value in _decode_headers.decode(stored).items()]


def row_from_db(row: Any) -> OutboxRow:
    return OutboxRow(
        id=row.id,
        event_id=row.event_id,
        topic=row.topic,
        key=row.message_key.encode(),
        event_type=row.event_type,
        payload=row.payload.encode(),
        headers=decode_headers(row.headers),
        created_at=row.created_at,
        published_at=row.published_at,
    )
