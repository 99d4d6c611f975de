"""Operating an outbox: status, replay (re-publish with the original message ids), purge."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, MetaData, Table, and_, delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ticketing.shared.outbox import OutboxRow, outbox_table, row_from_db, utcnow

OUTBOX = outbox_table(MetaData())


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxStatus:
    total: int
    pending: int
    oldest_pending_age_seconds: float | None
    last_published_id: int | None
    last_published_at: datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class ReplayFilter:
    since: datetime | None = None
    until: datetime | None = None
    aggregate_id: str | None = None
    event_type: str | None = None

    def where(self, table: Table) -> ColumnElement[bool]:
        clauses: list[ColumnElement[bool]] = [table.c.published_at.is_not(None)]
        if self.since is not None:
            clauses.append(table.c.created_at >= self.since)
        if self.until is not None:
            clauses.append(table.c.created_at < self.until)
        if self.aggregate_id is not None:
            clauses.append(table.c.aggregate_id == self.aggregate_id)
        if self.event_type is not None:
            clauses.append(table.c.event_type == self.event_type)
        return and_(*clauses)


async def status(engine: AsyncEngine, table: Table = OUTBOX) -> OutboxStatus:
    async with engine.connect() as conn:
        total = await conn.scalar(select(func.count()).select_from(table))
        pending_row = (
            await conn.execute(
                select(func.count(), func.min(table.c.created_at)).where(
                    table.c.published_at.is_(None)
                )
            )
        ).one()
        last = (
            await conn.execute(
                select(table.c.id, table.c.published_at)
                .where(table.c.published_at.is_not(None))
                .order_by(table.c.id.desc())
                .limit(1)
            )
        ).first()
    oldest = pending_row[1]
    return OutboxStatus(
        total=int(total or 0),
        pending=int(pending_row[0] or 0),
        oldest_pending_age_seconds=None
        if oldest is None
        else max(0.0, (utcnow() - oldest).total_seconds()),
        last_published_id=None if last is None else int(last.id),
        last_published_at=None if last is None else last.published_at,
    )


async def count_replayable(
    engine: AsyncEngine, selection: ReplayFilter, table: Table = OUTBOX
) -> int:
    async with engine.connect() as conn:
        value = await conn.scalar(
            select(func.count()).select_from(table).where(selection.where(table))
        )
    return int(value or 0)


async def replayable_rows(
    engine: AsyncEngine, selection: ReplayFilter, *, batch_size: int = 1000, table: Table = OUTBOX
) -> AsyncIterator[list[OutboxRow]]:
    """Published rows matching ``selection`` in id order, a batch at a time (keyset paging)."""
    after = 0
    while True:
        query = (
            select(table)
            .where(selection.where(table), table.c.id > after)
            .order_by(table.c.id)
            .limit(batch_size)
        )
        async with engine.connect() as conn:
            rows = [row_from_db(row) for row in await conn.execute(query)]
        if not rows:
            return
        yield rows
        after = rows[-1].id


async def purge(
    engine: AsyncEngine,
    older_than: timedelta,
    *,
    dry_run: bool = False,
    batch_size: int = 5000,
    table: Table = OUTBOX,
) -> int:
    """Delete published rows published before ``now - older_than``; pending rows are kept."""
    cutoff = utcnow() - older_than
    condition = and_(table.c.published_at.is_not(None), table.c.published_at < cutoff)
    if dry_run:
        async with engine.connect() as conn:
            return int(
                await conn.scalar(select(func.count()).select_from(table).where(condition)) or 0
            )
    deleted = 0
    while True:
        async with engine.begin() as conn:
            ids = list(
                (
                    await conn.execute(select(table.c.id).where(condition).limit(batch_size))
                ).scalars()
            )
            if not ids:
                return deleted
            await conn.execute(delete(table).where(table.c.id.in_(ids)))
        deleted += len(ids)


def parse_moment(text: str, *, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC when no zone is given) or an age such as ``90m``, ``2h``, ``7d``.

    Returned as naive UTC, the way the outbox stores times.
    """
    now = now or utcnow()
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (use ISO 8601 such as 2026-11-27T10:00:00Z, or an age "
            "such as 2h)"
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``30s``, ``15m``, ``2h``, ``7d``, ``1w``."""
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in _UNITS or not text[:-1].isdigit():
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 15m, 2h, 7d, 1w)")
    return timedelta(seconds=int(text[:-1]) * _UNITS[text[-1]])
