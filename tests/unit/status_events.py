"""Bookings' events and a status feed on an in-memory log, for the status feed's tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from tests.fakes.status_log import InMemoryStatusLog
from ticketing.booking.domain import BookingConfirmed
from ticketing.booking.status_feed import StatusFeed
from ticketing.contracts.booking import Booking, BookingStatus
from ticketing.contracts.events import BookingRequested

CUSTOMER = uuid.uuid4()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def requested(booking_id: uuid.UUID, customer_id: uuid.UUID = CUSTOMER) -> BookingRequested:
    return BookingRequested(
        message_id=uuid.uuid4(),
        booking_id=booking_id,
        customer_id=customer_id,
        event_id=uuid.uuid4(),
        ticket_count=1,
        unit_price="10.00",
        total_price="10.00",
        requested_at=datetime.now(UTC),
    )


def confirmed(booking_id: uuid.UUID) -> BookingConfirmed:
    return BookingConfirmed(
        booking_id=booking_id, order_id=uuid.uuid4(), confirmed_at=datetime.now(UTC)
    )


def booking(booking_id: uuid.UUID, status: BookingStatus) -> Booking:
    return Booking(
        id=booking_id,
        status=status,
        customer_id=CUSTOMER,
        event_id=uuid.uuid4(),
        ticket_count=1,
        unit_price="10.00",
        total_price=str(Decimal("10.00")),
        created_at=datetime.now(UTC),
    )


def feed_on(log: InMemoryStatusLog, clock: Clock | None = None) -> StatusFeed:
    return StatusFeed(log, interval=0.001, idle_interval=0.001, grace=2.0, clock=clock or Clock())
