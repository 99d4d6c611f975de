"""Booking's projections checked against its events (fold the store, compare with the tables)
and rebuilt from them: ``ticketing projections verify|rebuild --service booking``."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ticketing.booking.domain import BOOKING_STREAM, CUSTOMER_STREAM
from ticketing.booking.projection_rows import (
    BookingRow,
    Projection,
    fold_booking,
    fold_customer,
    folded,
    stored,
    stored_booking,
)
from ticketing.booking.repository import STORE, customer_of_row, customer_row
from ticketing.booking.tables import bookings, customers, event_store
from ticketing.shared.clock import naive_utc
from ticketing.shared.db.engine import run_transaction
from ticketing.shared.errors import ImpossibleHistory
from ticketing.shared.store.projections import Rebuilt, verify_projection
from ticketing.shared.store.projections import differences as table_differences

TABLES = ("customers", "bookings")


def differences(expected: Projection, actual: Projection) -> Iterator[str]:
    """Every row that the events and the tables disagree on, in words."""
    yield from table_differences("customers", expected.customers, actual.customers)
    yield from table_differences("bookings", expected.bookings, actual.bookings)


async def verify(engine: AsyncEngine) -> list[str]:
    """Every difference between booking's events and its tables (empty: they agree)."""
    return await verify_projection(engine, folded, stored, differences)


async def rebuild(engine: AsyncEngine) -> Rebuilt:
    """Rewrite every projection row from the events, in place, while booking keeps running:
    each stream's row is locked (as a settlement locks it), the stream read and folded, and
    the row written as the fold says, in one transaction. Customers go first (bookings name
    them). Rows no stream accounts for are deleted."""
    done = Rebuilt(TABLES)
    streams = await _streams(engine)
    for stream_type in (CUSTOMER_STREAM, BOOKING_STREAM):
        for stream_id in streams.get(stream_type, []):
            try:
                await _rebuild_stream(engine, stream_type, stream_id, done)
            except ImpossibleHistory as error:
                done.broken.append(f"stream {stream_id}: {error}")
    await _delete_orphans(engine, done)
    return done


async def _streams(engine: AsyncEngine) -> dict[str, list[uuid.UUID]]:
    stream_type = func.min(event_store.c.stream_type).label("stream_type")
    query = select(event_store.c.stream_id, stream_type).group_by(event_store.c.stream_id)
    found: dict[str, list[uuid.UUID]] = {}
    async with engine.connect() as conn:
        for row in await conn.execute(query):
            found.setdefault(row.stream_type, []).append(row.stream_id)
    return found


async def _rebuild_stream(
    engine: AsyncEngine, stream_type: str, stream_id: uuid.UUID, done: Rebuilt
) -> None:
    table = customers if stream_type == CUSTOMER_STREAM else bookings

    async def work(conn: AsyncConnection) -> None:
        current = (
            await conn.execute(select(table).where(table.c.id == stream_id).with_for_update())
        ).first()
        history = await STORE.stream(conn, stream_id)
        if stream_type == CUSTOMER_STREAM:
            row = customer_row(fold_customer(history))
            have = None if current is None else customer_row(customer_of_row(current))
        else:
            row = _bookings_values(fold_booking(history))
            have = None if current is None else _bookings_values(stored_booking(current))
        if current is None:
            await conn.execute(insert(table).values(**row))
        elif have != row:
            await conn.execute(update(table).where(table.c.id == stream_id).values(**row))
        else:
            return
        done.written[table.name] += 1

    await run_transaction(engine, work)


def _bookings_values(row: BookingRow) -> dict[str, Any]:
    booking = row.booking
    return {
        "id": booking.id,
        "customer_id": booking.customer_id,
        "event_id": booking.event_id,
        "ticket_count": booking.ticket_count,
        "unit_price": Decimal(booking.unit_price),
        "total_price": Decimal(booking.total_price),
        "status": booking.status.value,
        "order_id": booking.order_id,
        "reason": booking.reason,
        "created_at": naive_utc(booking.created_at),
        "updated_at": naive_utc(row.updated_at),
        "version": row.version,
        "hold": booking.hold,
        "expires_at": None if booking.expires_at is None else naive_utc(booking.expires_at),
        "cancel_requested": booking.cancel_requested,
        "requested_by": row.requested_by,
    }


async def _delete_orphans(engine: AsyncEngine, done: Rebuilt) -> None:
    """Delete rows that no stream accounts for: bookings, then customers no booking names.

    A candidate's row is locked and the store asked again before it goes: a row created since
    the streams were listed has its stream by then (both are written in one transaction)."""
    for table in (bookings, customers):
        async with engine.connect() as conn:
            orphans = list(
                (
                    await conn.execute(
                        select(table.c.id).where(
                            ~select(event_store.c.position)
                            .where(event_store.c.stream_id == table.c.id)
                            .exists()
                        )
                    )
                ).scalars()
            )
        for orphan in orphans:
            await run_transaction(engine, _dropper(table, orphan, done))


def _dropper(
    table: Table, orphan: uuid.UUID, done: Rebuilt
) -> Callable[[AsyncConnection], Awaitable[None]]:
    async def drop(conn: AsyncConnection) -> None:
        await _drop(conn, table, orphan, done)

    return drop


async def _drop(conn: AsyncConnection, table: Table, orphan: uuid.UUID, done: Rebuilt) -> None:
    locked = await conn.scalar(select(table.c.id).where(table.c.id == orphan).with_for_update())
    if locked is None or await STORE.stream_page(conn, orphan, after_version=0, limit=1):
        return
    if table is customers:
        named = select(bookings.c.id).where(bookings.c.customer_id == orphan).limit(1)
        if await conn.scalar(named) is not None:
            done.broken.append(f"customers {orphan}: has no events but bookings name it")
            return
    await conn.execute(delete(table).where(table.c.id == orphan))
    done.deleted[table.name] += 1
