"""Inventory's database adapter: SQLAlchemy Core statements on one connection."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeAlias

from sqlalchemy import Row, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ticketing.contracts.inventory import Event, ReservationStatus, Venue
from ticketing.inventory.domain import Reservation, format_price
from ticketing.inventory.tables import events, reservations, venues

AnyRow: TypeAlias = Row[*tuple[Any, ...]]


def utcnow() -> datetime:
    """Naive UTC, as stored in DATETIME columns."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_utc_naive(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None)


def _venue(row: AnyRow) -> Venue:
    return Venue(id=row.id, name=row.name, address=row.address, total_capacity=row.total_capacity)


_EVENT_COLUMNS = (
    events.c.id,
    events.c.name,
    events.c.total_capacity,
    events.c.left_capacity,
    events.c.ticket_price,
    events.c.starts_at,
    venues.c.id.label("venue_id"),
    venues.c.name.label("venue_name"),
    venues.c.address.label("venue_address"),
    venues.c.total_capacity.label("venue_total_capacity"),
)


def _event(row: AnyRow) -> Event:
    return Event(
        id=row.id,
        name=row.name,
        venue=Venue(
            id=row.venue_id,
            name=row.venue_name,
            address=row.venue_address,
            total_capacity=row.venue_total_capacity,
        ),
        total_capacity=row.total_capacity,
        left_capacity=row.left_capacity,
        ticket_price=format_price(row.ticket_price),
        starts_at=None if row.starts_at is None else row.starts_at.replace(tzinfo=UTC),
    )


async def add_venue(conn: AsyncConnection, venue: Venue) -> None:
    await conn.execute(
        insert(venues).values(
            id=venue.id,
            name=venue.name,
            address=venue.address,
            total_capacity=venue.total_capacity,
            created_at=utcnow(),
        )
    )


async def get_venue(conn: AsyncConnection, venue_id: uuid.UUID) -> Venue | None:
    row = (await conn.execute(select(venues).where(venues.c.id == venue_id))).first()
    return None if row is None else _venue(row)


async def add_event(
    conn: AsyncConnection,
    *,
    event_id: uuid.UUID,
    name: str,
    venue_id: uuid.UUID,
    total_capacity: int,
    ticket_price: Decimal,
    starts_at: datetime | None,
) -> None:
    await conn.execute(
        insert(events).values(
            id=event_id,
            name=name,
            venue_id=venue_id,
            total_capacity=total_capacity,
            left_capacity=total_capacity,
            ticket_price=ticket_price,
            starts_at=to_utc_naive(starts_at),
            created_at=utcnow(),
        )
    )


async def get_event(conn: AsyncConnection, event_id: uuid.UUID) -> Event | None:
    query = select(*_EVENT_COLUMNS).join_from(events, venues).where(events.c.id == event_id)
    row = (await conn.execute(query)).first()
    return None if row is None else _event(row)


async def list_events(conn: AsyncConnection, *, limit: int, after: uuid.UUID | None) -> list[Event]:
    """Events in id order (creation order, ids are UUIDv7), starting after ``after``."""
    query = select(*_EVENT_COLUMNS).join_from(events, venues).order_by(events.c.id).limit(limit)
    if after is not None:
        query = query.where(events.c.id > after)
    return [_event(row) for row in await conn.execute(query)]


async def event_exists(conn: AsyncConnection, event_id: uuid.UUID) -> bool:
    return (await conn.scalar(select(events.c.id).where(events.c.id == event_id))) is not None


async def lock_capacity(
    conn: AsyncConnection, event_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """``left_capacity`` of each existing event, row-locked until the transaction ends.

    Locks are taken in id order, so two transactions locking overlapping events never deadlock.
    """
    if not event_ids:
        return {}
    query = (
        select(events.c.id, events.c.left_capacity)
        .where(events.c.id.in_(sorted(event_ids)))
        .order_by(events.c.id)
        .with_for_update()
    )
    return {row.id: int(row.left_capacity) for row in await conn.execute(query)}


async def take_capacity(conn: AsyncConnection, event_id: uuid.UUID, ticket_count: int) -> bool:
    """The conditional UPDATE: True when ``ticket_count`` seats were taken, False (and nothing
    changed) when fewer are left. It never drives ``left_capacity`` below zero."""
    result = await conn.execute(
        update(events)
        .where(events.c.id == event_id, events.c.left_capacity >= ticket_count)
        .values(left_capacity=events.c.left_capacity - ticket_count)
    )
    return result.rowcount == 1


async def add_reservations(conn: AsyncConnection, new: Sequence[Reservation]) -> None:
    """Record reservations; a booking id that already has one fails on the primary key (1062)."""
    if not new:
        return
    now = utcnow()
    await conn.execute(
        insert(reservations),
        [
            {
                "booking_id": r.booking_id,
                "event_id": r.event_id,
                "ticket_count": r.ticket_count,
                "status": r.status.value,
                "left_capacity": r.left_capacity,
                "created_at": now,
            }
            for r in new
        ],
    )


async def get_reservations(
    conn: AsyncConnection, booking_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Reservation]:
    query = select(reservations).where(reservations.c.booking_id.in_(booking_ids))
    return {row.booking_id: _reservation(row) for row in await conn.execute(query)}


def _reservation(row: AnyRow) -> Reservation:
    return Reservation(
        booking_id=row.booking_id,
        event_id=row.event_id,
        ticket_count=row.ticket_count,
        status=ReservationStatus(row.status),
        left_capacity=row.left_capacity,
    )
