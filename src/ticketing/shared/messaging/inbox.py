"""The inbox: which messages a consumer has applied. Written in the same transaction as the
effects, so a redelivered message is recognised and skipped (idempotent consumer)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Column, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ticketing.shared.clock import utcnow
from ticketing.shared.db import sql
from ticketing.shared.db.columns import timestamp, uuid_key


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "processed_messages",
        metadata,
        Column("consumer", String(100), primary_key=True),
        uuid_key("message_id"),
        timestamp("processed_at"),
    )


async def seen(engine: AsyncEngine, table: Table, consumer: str, message_id: uuid.UUID) -> bool:
    """Whether ``consumer`` applied ``message_id``: what a duplicate key on a batch of one must
    be asked, since only the inbox's key says "applied before" (a stale projection breaks
    another key, and that message must not be acked)."""
    query = select(table.c.message_id).where(
        table.c.consumer == consumer, table.c.message_id == message_id
    )
    async with engine.connect() as conn:
        return (await conn.scalar(query)) is not None


def claim_all_statement(
    table: Table, consumer: str, message_ids: Sequence[uuid.UUID]
) -> sql.Statement:
    """Record every message as applied, in one statement (for a unit of work); any that
    already was makes the statement fail on the primary key (1062), so the transaction applies
    none of them."""
    now = utcnow()
    statement = sql.insert_sql(table, ("consumer", "message_id", "processed_at"))
    return sql.Statement(statement, [(consumer, str(m), now) for m in message_ids], rows=True)
