"""Inventory's database adapter: SQLAlchemy Core statements on one connection."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeAlias

from sqlalchemy import Row, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ticketing.contracts.inventory import Event, ReservationStatus, Venue
from ticketing.inventory.domain import Reservation, format_price
from ticketing.inventory.tables import events, reservations, venues
from ticketing.shared import sql

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


# The reservation path (every booking passes here) runs on the driver's cursor.
_RESERVATION_COLUMNS = (
    "booking_id",
    "event_id",
    "ticket_count",
    "status",
    "left_capacity",
    "created_at",
)
_ADD_RESERVATIONS = sql.insert_sql(reservations, _RESERVATION_COLUMNS)
_TAKE_SEATS = "UPDATE events SET left_capacity = left_capacity - %s WHERE id = %s"


async def lock_capacity(
    conn: AsyncConnection, event_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """``left_capacity`` of each existing event, row-locked until the transaction ends.

    Locks are taken in id order, so two transactions locking overlapping events never deadlock.
    """
    if not event_ids:
        return {}
    ordered = sorted(event_ids)
    rows = await sql.fetch_all(
        conn,
        "SELECT id, left_capacity FROM events "  # noqa: S608 - placeholders only
        f"WHERE id IN ({sql.placeholders(len(ordered))}) ORDER BY id FOR UPDATE",
        [str(event_id) for event_id in ordered],
    )
    return {uuid.UUID(str(event_id)): int(left) for event_id, left in rows}


def take_seats_statement(event_id: uuid.UUID, seats: int) -> sql.Statement:
    """Take ``seats`` of the event's left capacity, in the transaction that locked the event's
    row and decided it has them (for :func:`ticketing.shared.sql.commit_all`). Should it not,
    the ``left_capacity >= 0`` check constraint refuses the statement, the transaction fails
    whole, and nothing is oversold."""
    return sql.Statement(_TAKE_SEATS, [seats, str(event_id)])


def add_reservations_statement(new: Sequence[Reservation]) -> sql.Statement:
    """Record reservations (``new`` not empty); a booking id that already has one fails on the
    primary key (1062). For :func:`ticketing.shared.sql.commit_all`."""
    now = utcnow()
    return sql.Statement(
        _ADD_RESERVATIONS,
        [
            (
                str(r.booking_id),
                str(r.event_id),
                r.ticket_count,
                r.status.value,
                r.left_capacity,
                now,
            )
            for r in new
        ],
        rows=True,
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
