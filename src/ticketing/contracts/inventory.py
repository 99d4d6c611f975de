"""Inventory's HTTP contract: what clients send and receive (public and internal paths)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

import msgspec

from ticketing.contracts.events import ReleaseReason
from ticketing.contracts.history import AwareDatetime, HistoryEntry

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, description="Display name")]
Address = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
Capacity = Annotated[int, msgspec.Meta(ge=1, le=1_000_000, description="Number of seats")]
Price = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^(0|[1-9][0-9]{0,7})(\.[0-9]{1,2})?$",
        description='Decimal string with at most two fraction digits, e.g. "49.00"',
        examples=["49.00"],
    ),
]
TicketCount = Annotated[int, msgspec.Meta(ge=1, le=1000)]
PerCustomer = Annotated[
    int,
    msgspec.Meta(
        ge=1,
        le=1_000_000,
        description="The most seats one customer may hold or have confirmed for this event",
    ),
]


class VenueCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    address: Address
    total_capacity: Capacity


class Venue(msgspec.Struct):
    id: uuid.UUID
    name: str
    address: str
    total_capacity: int


class EventCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    venue_id: uuid.UUID
    total_capacity: Capacity
    ticket_price: Price
    starts_at: AwareDatetime | None = None
    max_tickets_per_customer: PerCustomer | None = None


class Event(msgspec.Struct):
    id: uuid.UUID
    name: str
    venue: Venue
    total_capacity: int
    left_capacity: int  # held and confirmed seats are taken
    ticket_price: str
    starts_at: datetime | None
    max_tickets_per_customer: int | None = None


class EventPage(msgspec.Struct):
    items: list[Event]
    next_cursor: str | None = msgspec.field(default=None)


class EventHistoryPage(msgspec.Struct):
    items: list[HistoryEntry]
    next_cursor: str | None = msgspec.field(default=None)


class ReservationStatus(StrEnum):
    RESERVED = "reserved"
    INSUFFICIENT = "insufficient"


class ReservationRequest(msgspec.Struct, forbid_unknown_fields=True):
    booking_id: uuid.UUID
    ticket_count: TicketCount


class ReservationResult(msgspec.Struct):
    booking_id: uuid.UUID
    status: ReservationStatus
    left_capacity: int


MAX_RESERVATION_BATCH = 500


class ReservationItem(msgspec.Struct, forbid_unknown_fields=True):
    event_id: uuid.UUID
    booking_id: uuid.UUID
    ticket_count: TicketCount
    # What caused this item (the saga's message) and the booking's correlation id: stored with
    # the reservation's event. Optional; the request's own are used when absent.
    causation_id: str | None = None
    correlation_id: str | None = None
    # Whose booking it is: an event's max_tickets_per_customer counts this customer's seats.
    # The saga always names one; an item without one is nobody's and no limit applies to it.
    customer_id: uuid.UUID | None = None


class ReservationBatch(msgspec.Struct, forbid_unknown_fields=True):
    """Several bookings' reservations, decided in one transaction, in this order."""

    items: Annotated[
        list[ReservationItem], msgspec.Meta(min_length=1, max_length=MAX_RESERVATION_BATCH)
    ]


class ReservationOutcome(StrEnum):
    """A batch item's answer: the reservation's status, or why there is none."""

    RESERVED = "reserved"
    INSUFFICIENT = "insufficient"
    EVENT_NOT_FOUND = "event_not_found"  # nothing recorded: the booking id stays unused
    CONFLICT = "conflict"  # the booking id already holds a different reservation
    OVER_LIMIT = "over_limit"  # the customer would hold more than max_tickets_per_customer


class ReservationItemResult(msgspec.Struct):
    booking_id: uuid.UUID
    outcome: ReservationOutcome
    left_capacity: int | None = None  # after this reservation; None without one


class ReservationBatchResult(msgspec.Struct):
    items: list[ReservationItemResult]  # in the order of the request


class ReleaseItem(msgspec.Struct, forbid_unknown_fields=True):
    """Give a booking's reserved seats back to its event (at most once per booking id)."""

    event_id: uuid.UUID
    booking_id: uuid.UUID
    reason: ReleaseReason
    causation_id: str | None = None
    correlation_id: str | None = None


class ReleaseBatch(msgspec.Struct, forbid_unknown_fields=True):
    """Several bookings' releases, decided in one transaction."""

    items: Annotated[
        list[ReleaseItem], msgspec.Meta(min_length=1, max_length=MAX_RESERVATION_BATCH)
    ]


class ReleaseOutcome(StrEnum):
    RELEASED = "released"  # the seats are back (now, or by an earlier release of this booking)
    NOT_RESERVED = "not_reserved"  # the booking id holds no reservation of seats at this event


class ReleaseItemResult(msgspec.Struct):
    booking_id: uuid.UUID
    outcome: ReleaseOutcome
    ticket_count: int = 0  # the seats released
    left_capacity: int | None = None  # after the release (the first one, for a repeat)


class ReleaseBatchResult(msgspec.Struct):
    items: list[ReleaseItemResult]  # in the order of the request
