"""Operating an outbox, which is the service's event store: status, and replay (re-publish
with the original message ids). Events are never deleted (ADR 12)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ticketing.shared.clock import utcnow
from ticketing.shared.db import sql
from ticketing.shared.messaging.publishing import UNPUBLISHED_COLUMNS, Unpublished, unpublished
from ticketing.shared.store.table import STORE_TABLE

_TABLE = sql.quote(STORE_TABLE)


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxStatus:
    total: int  # published events, sent or not
    pending: int
    oldest_pending_age_seconds: float | None
    last_published_position: int | None
    last_published_at: datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class ReplayFilter:
    since: datetime | None = None
    until: datetime | None = None
    aggregate_id: str | None = None
    event_type: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        """The condition on published events sent already, and its parameters."""
        condition = "topic IS NOT NULL AND published_at IS NOT NULL"
        params: list[Any] = []
        for clause, value in (
            (" AND recorded_at >= %s", self.since),
            (" AND recorded_at < %s", self.until),
            (" AND stream_id = %s", self.aggregate_id),
            (" AND event_type = %s", self.event_type),
        ):
            if value is not None:
                condition += clause
                params.append(value)
        return condition, params


async def status(engine: AsyncEngine) -> OutboxStatus:
    async with engine.connect() as conn:
        ((total,),) = await sql.fetch_all(
            conn,
            f"SELECT COUNT(*) FROM {_TABLE} WHERE topic IS NOT NULL",  # noqa: S608
        )
        ((pending, oldest),) = await sql.fetch_all(
            conn,
            f"SELECT COUNT(*), MIN(recorded_at) FROM {_TABLE} "  # noqa: S608
            "WHERE published_at IS NULL",
        )
        last = await sql.fetch_all(
            conn,
            f"SELECT position, published_at FROM {_TABLE} "  # noqa: S608
            "WHERE topic IS NOT NULL AND published_at IS NOT NULL "
            "ORDER BY position DESC LIMIT 1",
        )
    return OutboxStatus(
        total=int(total or 0),
        pending=int(pending or 0),
        oldest_pending_age_seconds=None
        if oldest is None
        else max(0.0, (utcnow() - oldest).total_seconds()),
        last_published_position=int(last[0][0]) if last else None,
        last_published_at=last[0][1] if last else None,
    )


async def count_replayable(engine: AsyncEngine, selection: ReplayFilter) -> int:
    condition, params = selection.where()
    async with engine.connect() as conn:
        query = f"SELECT COUNT(*) FROM {_TABLE} WHERE {condition}"  # noqa: S608 - ours
        ((count,),) = await sql.fetch_all(conn, query, params)
    return int(count or 0)


async def replayable_rows(
    engine: AsyncEngine, selection: ReplayFilter, *, batch_size: int = 1000
) -> AsyncIterator[list[Unpublished]]:
    """Published events matching ``selection`` in position order, a batch at a time."""
    condition, params = selection.where()
    query = (
        f"SELECT {UNPUBLISHED_COLUMNS} FROM {_TABLE} "  # noqa: S608 - our names only
        f"WHERE {condition} AND position > %s ORDER BY position LIMIT %s"
    )
    after = 0
    while True:
        async with engine.connect() as conn:
            rows = [
                unpublished(row)
                for row in await sql.fetch_all(conn, query, [*params, after, batch_size])
            ]
        if not rows:
            return
        yield rows
        after = rows[-1].position
