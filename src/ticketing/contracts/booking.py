"""Booking's HTTP contract."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

import msgspec

from ticketing.contracts.history import HistoryEntry

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Email = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=254,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        examples=["ada@example.com"],
    ),
]
Address = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
TicketCount = Annotated[int, msgspec.Meta(ge=1, le=1000, description="Tickets to book")]
# The longest a client may wait for a booking to settle (``GET /api/v1/bookings/{id}?wait=``);
# the gateway lets a waiting request run this long past its usual timeout.
MAX_WAIT_SECONDS = 30


class CustomerCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    email: Email
    address: Address | None = None


class Customer(msgspec.Struct):
    id: uuid.UUID
    name: str
    email: str
    address: str | None
    created_at: datetime


class BookingStatus(StrEnum):
    PENDING = "PENDING"  # the order saga has not answered yet
    HELD = "HELD"  # seats reserved until expires_at; confirm it (stands in for payment)
    CONFIRMED = "CONFIRMED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"  # the hold ran out; its seats go back to the event
    CANCELLING = "CANCELLING"  # cancelled; inventory has not released the seats yet
    CANCELLED = "CANCELLED"


# The states a client waits through: a long-poll answers once a booking is in none of them.
TRANSIENT_STATUSES = frozenset({BookingStatus.PENDING, BookingStatus.CANCELLING})


class BookingCreate(msgspec.Struct, forbid_unknown_fields=True):
    customer_id: uuid.UUID
    event_id: uuid.UUID
    ticket_count: TicketCount
    hold: Annotated[
        bool,
        msgspec.Meta(
            description="Hold the seats (the booking settles to HELD until expires_at) "
            "rather than confirm them at once"
        ),
    ] = False


class Booking(msgspec.Struct, omit_defaults=True):
    id: uuid.UUID
    status: BookingStatus
    customer_id: uuid.UUID
    event_id: uuid.UUID
    ticket_count: int
    unit_price: str
    total_price: str
    created_at: datetime
    order_id: uuid.UUID | None = None
    reason: str | None = None
    hold: bool = False
    expires_at: datetime | None = None  # a HELD booking's: EXPIRED when not confirmed by then
    cancel_requested: bool = False  # cancelled while PENDING: cancelled once it settles


class BookingPage(msgspec.Struct):
    items: list[Booking]
    next_cursor: str | None = None


class BookingHistoryPage(msgspec.Struct):
    items: list[HistoryEntry]
    next_cursor: str | None = None


class BookingStatusChange(msgspec.Struct):
    """One change of a booking's state, as a customer's booking stream sends it (the event's
    ``id:`` is its position in booking's event store, for ``Last-Event-ID``)."""

    booking_id: uuid.UUID
    status: BookingStatus
    event_type: str
    recorded_at: datetime
    order_id: uuid.UUID | None = None
    reason: str | None = None
    expires_at: datetime | None = None
