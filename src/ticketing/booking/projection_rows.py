"""Booking's projection rows two ways, for their check and rebuild: as its events say they must
be (each stream folded) and as its tables hold them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from ticketing.booking.domain import (
    CENT,
    CUSTOMER_STREAM,
    BookingConfirmed,
    BookingHeld,
    BookingRejected,
    BookingState,
    CancellationRequested,
    CustomerRegistered,
    SeatsReturned,
    customer_of,
    evolve,
)
from ticketing.booking.repository import STORE, booking_of_row, customer_of_row
from ticketing.booking.tables import bookings, customers
from ticketing.contracts.booking import Booking, Customer
from ticketing.contracts.events import BookingCancelled, BookingRequested, HoldExpired
from ticketing.shared.errors import ImpossibleHistory
from ticketing.shared.store.eventstore import Recorded
from ticketing.shared.store.projections import all_streams

PAGE = 5000


@dataclass(frozen=True, slots=True)
class BookingRow:
    """A bookings row as the events say it must be (prices to the cent, times aware)."""

    booking: Booking
    version: int
    updated_at: datetime
    requested_by: str | None = None


@dataclass
class Projection:
    customers: dict[uuid.UUID, Customer] = field(default_factory=dict)
    bookings: dict[uuid.UUID, BookingRow] = field(default_factory=dict)


def _cents(price: str) -> str:
    return str(Decimal(price).quantize(CENT))


def _row_of(state: BookingState, at: datetime) -> BookingRow:
    booking = state.booking
    booking = Booking(
        id=booking.id,
        status=booking.status,
        customer_id=booking.customer_id,
        event_id=booking.event_id,
        ticket_count=booking.ticket_count,
        unit_price=_cents(booking.unit_price),
        total_price=_cents(booking.total_price),
        created_at=booking.created_at.astimezone(UTC),
        order_id=booking.order_id,
        reason=booking.reason,
        hold=booking.hold,
        expires_at=None if booking.expires_at is None else booking.expires_at.astimezone(UTC),
        cancel_requested=booking.cancel_requested,
    )
    return BookingRow(booking, state.version, at.astimezone(UTC), state.requested_by)


# The field of each booking event that says when its change was made.
_TIME_OF: dict[type[Any], str] = {
    BookingRequested: "requested_at",
    BookingHeld: "held_at",
    BookingConfirmed: "confirmed_at",
    BookingRejected: "rejected_at",
    CancellationRequested: "requested_at",
    BookingCancelled: "cancelled_at",
    HoldExpired: "expired_at",
    SeatsReturned: "returned_at",
}


def _event_time(event: Any) -> datetime:
    """When the change an event records was made: the time the projection row keeps."""
    field_name = _TIME_OF.get(type(event))
    if field_name is None:
        raise ImpossibleHistory(f"{type(event).__name__} is not a booking's event")
    moment: datetime = getattr(event, field_name)
    return moment


def fold_booking(history: list[Recorded]) -> BookingRow:
    """A booking's row from its stream (versions checked against the fold)."""
    state: BookingState | None = None
    for recorded in history:
        state = evolve(state, recorded.event)
        if state.version != recorded.version:
            raise ImpossibleHistory(
                f"event at position {recorded.position} is version {recorded.version}, "
                f"the fold is at {state.version}"
            )
    if state is None:
        raise ImpossibleHistory("the stream holds no event")
    return _row_of(state, _event_time(history[-1].event))


def fold_customer(history: list[Recorded]) -> Customer:
    if len(history) != 1 or not isinstance(history[0].event, CustomerRegistered):
        raise ImpossibleHistory("a customer's stream holds its registration only")
    customer = customer_of(history[0].event)
    return Customer(
        id=customer.id,
        name=customer.name,
        email=customer.email,
        address=customer.address,
        created_at=customer.created_at.astimezone(UTC),
    )


async def folded(conn: AsyncConnection, problems: list[str]) -> Projection:
    """Every stream folded, a page of events at a time."""
    state = Projection()
    for stream_id, history in (await all_streams(STORE, conn, page=PAGE)).items():
        try:
            if history[0].stream_type == CUSTOMER_STREAM:
                state.customers[stream_id] = fold_customer(history)
            else:
                state.bookings[stream_id] = fold_booking(history)
        except ImpossibleHistory as error:
            problems.append(f"stream {stream_id} cannot be folded: {error}")
    return state


def stored_booking(row: Any) -> BookingRow:
    return BookingRow(
        booking_of_row(row), row.version, row.updated_at.replace(tzinfo=UTC), row.requested_by
    )


async def stored(conn: AsyncConnection) -> Projection:
    state = Projection()
    for row in await conn.execute(select(customers)):
        state.customers[row.id] = customer_of_row(row)
    for row in await conn.execute(select(bookings)):
        state.bookings[row.id] = stored_booking(row)
    return state
