"""The inbox: which messages a consumer has applied. Written in the same transaction as the
effects, so a redelivered message is recognised and skipped (idempotent consumer)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Column, MetaData, String, Table, Uuid, insert, select
from sqlalchemy.dialects.mysql import DATETIME
from sqlalchemy.ext.asyncio import AsyncConnection

from ticketing.shared import sql
from ticketing.shared.clock import utcnow


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "processed_messages",
        metadata,
        Column("consumer", String(100), primary_key=True),
        Column("message_id", Uuid, primary_key=True),
        Column("processed_at", DATETIME(fsp=6), nullable=False),
    )


async def claim(conn: AsyncConnection, table: Table, consumer: str, message_id: uuid.UUID) -> bool:
    """Record ``message_id`` as applied by ``consumer``; False when it already was.

    A concurrent claim of the same message waits on the first one's row lock and then sees the
    duplicate, so exactly one transaction applies the message.
    """
    result = await conn.execute(
        insert(table)
        .prefix_with("IGNORE")
        .values(consumer=consumer, message_id=message_id, processed_at=utcnow())
    )
    return result.rowcount == 1


async def seen(conn: AsyncConnection, table: Table, consumer: str, message_id: uuid.UUID) -> bool:
    """A cheap early check (the claim inside the transaction is what decides)."""
    query = select(table.c.message_id).where(
        table.c.consumer == consumer, table.c.message_id == message_id
    )
    return (await conn.scalar(query)) is not None


def claim_all_statement(
    table: Table, consumer: str, message_ids: Sequence[uuid.UUID]
) -> sql.Statement:
    """Record every message as applied, in one statement (for
    :func:`ticketing.shared.sql.commit_all`); any that already was makes the statement fail on
    the primary key (1062), so the transaction applies none of them."""
    now = utcnow()
    statement = sql.insert_sql(table, ("consumer", "message_id", "processed_at"))
    return sql.Statement(statement, [(consumer, str(m), now) for m in message_ids], rows=True)
