"""Booking's database adapter: the event store and its projections (customers, bookings), read
and appended with SQLAlchemy Core statements on one connection."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from ticketing.booking.domain import (
    BOOKING_STREAM,
    CUSTOMER_STREAM,
    EVENT_TYPES,
    BookingState,
    CustomerRegistered,
    customer_of,
)
from ticketing.booking.idempotency import KeyClaim
from ticketing.booking.tables import bookings, customers, event_store
from ticketing.contracts.booking import Booking, BookingStatus, Customer
from ticketing.contracts.events import (
    PUBLICATIONS,
    BookingRequested,
    upcast_booking_requested_v1,
)
from ticketing.shared.clock import naive_utc, utcnow
from ticketing.shared.db import sql
from ticketing.shared.db.unit_of_work import UnitOfWork
from ticketing.shared.store.codec import EventCodec
from ticketing.shared.store.eventstore import Cause, EventStore, Pending

STORE = EventStore(
    event_store,
    EventCodec(EVENT_TYPES, {("BookingRequested", 1): upcast_booking_requested_v1}),
    PUBLICATIONS,
)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC)


def customer_of_row(row: Any) -> Customer:
    """A customers row as the customer it records (times aware)."""
    return Customer(
        id=row.id,
        name=row.name,
        email=row.email,
        address=row.address,
        created_at=_aware(row.created_at),
    )


def booking_of_row(row: Any) -> Booking:
    """A bookings row as the booking it records (times aware)."""
    return Booking(
        id=row.id,
        status=BookingStatus(row.status),
        customer_id=row.customer_id,
        event_id=row.event_id,
        ticket_count=row.ticket_count,
        unit_price=str(row.unit_price),
        total_price=str(row.total_price),
        created_at=_aware(row.created_at),
        order_id=row.order_id,
        reason=row.reason,
        hold=bool(row.hold),
        expires_at=None if row.expires_at is None else _aware(row.expires_at),
        cancel_requested=bool(row.cancel_requested),
    )


def booking_state(row: Any) -> BookingState:
    """A booking's row as the state its next decision starts from."""
    return BookingState(booking_of_row(row), row.version, row.requested_by)


def customer_row(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.id,
        "name": customer.name,
        "email": customer.email,
        "address": customer.address,
        "created_at": naive_utc(customer.created_at),
    }


async def register_customer(
    uow: UnitOfWork, *, event: CustomerRegistered, cause: Cause
) -> Customer:
    """Record a registration and its projection (a taken email fails on its unique key)."""
    customer = customer_of(event)
    pending = [Pending(customer.id, CUSTOMER_STREAM, 1, event)]
    uow.write(
        sql.insert_row(customers, customer_row(customer)), STORE.append(pending, cause, utcnow())
    )
    return customer


async def get_customer(conn: AsyncConnection, customer_id: uuid.UUID) -> Customer | None:
    row = (await conn.execute(select(customers).where(customers.c.id == customer_id))).first()
    return None if row is None else customer_of_row(row)


async def customer_exists(conn: AsyncConnection, customer_id: uuid.UUID) -> bool:
    query = select(customers.c.id).where(customers.c.id == customer_id)
    return (await conn.scalar(query)) is not None


_BOOKING_COLUMNS = (
    "id",
    "customer_id",
    "event_id",
    "ticket_count",
    "unit_price",
    "total_price",
    "status",
    "created_at",
    "updated_at",
    "version",
    "hold",
    "requested_by",
)
_ADD_BOOKINGS = sql.insert_sql(bookings, _BOOKING_COLUMNS)


def add_bookings_statement(new: Sequence[tuple[Booking, str | None]]) -> sql.Statement:
    """Insert ``new`` PENDING bookings (their streams' first event), each with the client that
    requested it, with one multi-row statement, for :func:`ticketing.shared.db.sql.commit_all`
    (every accepted booking passes here)."""
    rows = []
    for booking, requested_by in new:
        created = naive_utc(booking.created_at)
        rows.append(
            (
                str(booking.id),
                str(booking.customer_id),
                str(booking.event_id),
                booking.ticket_count,
                Decimal(booking.unit_price),
                Decimal(booking.total_price),
                booking.status.value,
                created,
                created,
                1,
                booking.hold,
                requested_by,
            )
        )
    return sql.Statement(_ADD_BOOKINGS, rows, rows=True)


@dataclass(frozen=True, slots=True)
class NewBooking:
    """What accepting one booking writes: its row, its BookingRequested event (with the cause
    of its request), its idempotency key's answer (when the request came with a key, which it
    holds). Their time is set when they are written (:meth:`at`), so that a booking's
    ``created_at`` is when its event was recorded: the booking exists ``as_of`` that time."""

    booking: Booking
    requested: BookingRequested
    cause: Cause
    idempotency_key: KeyClaim | None
    answer: list[bytes] = field(default_factory=list)  # the 202's body, once written

    def at(self, now: datetime) -> tuple[Booking, BookingRequested]:
        return (
            msgspec.structs.replace(self.booking, created_at=now),
            dataclasses.replace(self.requested, requested_at=now),
        )


def requested_statement(
    requested: Sequence[tuple[BookingRequested, Cause]], cause: Cause, now: datetime
) -> sql.Statement:
    """Append each BookingRequested (with the cause of its own request) as its booking
    stream's first event; the relay publishes them."""
    pending = [Pending(event.booking_id, BOOKING_STREAM, 1, event, why) for event, why in requested]
    return STORE.append(pending, cause, now)


async def get_booking(conn: AsyncConnection, booking_id: uuid.UUID) -> Booking | None:
    row = (await conn.execute(select(bookings).where(bookings.c.id == booking_id))).first()
    return None if row is None else booking_of_row(row)


async def list_bookings(
    conn: AsyncConnection, customer_id: uuid.UUID, *, limit: int, after: uuid.UUID | None
) -> list[Booking]:
    query = (
        select(bookings)
        .where(bookings.c.customer_id == customer_id)
        .order_by(bookings.c.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(bookings.c.id > after)
    return [booking_of_row(row) for row in await conn.execute(query)]


async def customers_of(
    conn: AsyncConnection, booking_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """The customer of each of ``booking_ids`` that exists."""
    query = select(bookings.c.id, bookings.c.customer_id).where(bookings.c.id.in_(booking_ids))
    return {row.id: row.customer_id for row in await conn.execute(query)}


async def last_position_before(conn: AsyncConnection, before: datetime) -> int:
    """The position of the last event of booking's store recorded before ``before`` (naive
    UTC), 0 if none: one step back along the ``recorded_at`` index (the highest position of
    them all would read every earlier event). Clocks and commits may put a higher position
    earlier: the feed then starts a little further back, which only reads a little more."""
    query = (
        select(event_store.c.position)
        .where(event_store.c.recorded_at < before)
        .order_by(event_store.c.recorded_at.desc())
        .limit(1)
    )
    return int(await conn.scalar(query) or 0)
