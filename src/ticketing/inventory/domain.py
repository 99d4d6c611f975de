"""Inventory rules, in plain Python (no I/O, no framework).

The database enforces the capacity invariant itself (the event row's lock while deciding, and a
CHECK on ``left_capacity``); these functions state the rules so that they can be tested fast
and reused by fakes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from ticketing.contracts.inventory import (
    ReservationItem,
    ReservationItemResult,
    ReservationOutcome,
    ReservationStatus,
)
from ticketing.shared.errors import Conflict, InvalidInput

CENT = Decimal("0.01")
MAX_PRICE = Decimal("99999999.99")


def parse_price(text: str) -> Decimal:
    """A ticket price from its decimal string; at most two fraction digits, never negative."""
    try:
        price = Decimal(text)
    except InvalidOperation:
        raise InvalidInput('ticket_price must be a decimal string such as "49.00"') from None
    if not price.is_finite() or price < 0 or price > MAX_PRICE:
        raise InvalidInput(f"ticket_price must be between 0 and {MAX_PRICE}")
    if price != price.quantize(CENT):
        raise InvalidInput("ticket_price may have at most two fraction digits")
    return price.quantize(CENT)


def format_price(price: Decimal) -> str:
    return str(price.quantize(CENT))


def check_event_capacity(event_capacity: int, venue_capacity: int) -> None:
    """An event cannot sell more seats than its venue holds."""
    if event_capacity > venue_capacity:
        raise InvalidInput(
            f"total_capacity {event_capacity} exceeds the venue's capacity of {venue_capacity}",
            errors=[{"field": "total_capacity", "message": "exceeds the venue's capacity"}],
        )


def reservation_status(left_capacity: int, ticket_count: int) -> ReservationStatus:
    """The rule every reservation follows: reserve only when enough seats are left."""
    if ticket_count < 1:
        raise InvalidInput("ticket_count must be at least 1")
    if left_capacity >= ticket_count:
        return ReservationStatus.RESERVED
    return ReservationStatus.INSUFFICIENT


@dataclass(frozen=True, slots=True)
class Reservation:
    """The first answer given for a booking id; every repeat gets this answer again."""

    booking_id: uuid.UUID
    event_id: uuid.UUID
    ticket_count: int
    status: ReservationStatus
    left_capacity: int

    def is_repeat(self, event_id: uuid.UUID, ticket_count: int) -> bool:
        """Whether a request asks for exactly what this reservation holds."""
        return event_id == self.event_id and ticket_count == self.ticket_count

    def check_repeat(self, event_id: uuid.UUID, ticket_count: int) -> None:
        """A repeat must ask for the same thing; otherwise the booking id was reused by mistake."""
        if not self.is_repeat(event_id, ticket_count):
            raise Conflict(
                f"booking {self.booking_id} already holds a reservation for "
                f"{self.ticket_count} ticket(s) of event {self.event_id}"
            )


@dataclass(frozen=True, slots=True)
class Decisions:
    """What one batch of reservation requests decides (see :func:`decide`)."""

    results: list[ReservationItemResult]  # one per request, in request order
    new: list[Reservation]  # the reservations to record
    taken: dict[uuid.UUID, int]  # seats to take from each event


def decide(
    items: Sequence[ReservationItem],
    existing: Mapping[uuid.UUID, Reservation],
    capacity: Mapping[uuid.UUID, int],
) -> Decisions:
    """Decide a batch in request order, as if each were reserved alone one after the other.

    ``existing`` holds the reservations already recorded for these booking ids (a repeat gets
    its first answer back, or a conflict when it asks for something else); ``capacity`` holds
    the locked ``left_capacity`` of every existing event (absent: the event does not exist, and
    nothing is recorded for the booking id).
    """
    left = dict(capacity)
    known = dict(existing)
    results: list[ReservationItemResult] = []
    new: list[Reservation] = []
    taken: dict[uuid.UUID, int] = {}
    for item in items:
        first = known.get(item.booking_id)
        if first is not None:
            results.append(
                ReservationItemResult(
                    item.booking_id, ReservationOutcome(first.status.value), first.left_capacity
                )
                if first.is_repeat(item.event_id, item.ticket_count)
                else ReservationItemResult(item.booking_id, ReservationOutcome.CONFLICT)
            )
            continue
        seats = left.get(item.event_id)
        if seats is None:
            results.append(
                ReservationItemResult(item.booking_id, ReservationOutcome.EVENT_NOT_FOUND)
            )
            continue
        status = reservation_status(seats, item.ticket_count)
        if status is ReservationStatus.RESERVED:
            seats -= item.ticket_count
            left[item.event_id] = seats
            taken[item.event_id] = taken.get(item.event_id, 0) + item.ticket_count
        reservation = Reservation(item.booking_id, item.event_id, item.ticket_count, status, seats)
        known[item.booking_id] = reservation
        new.append(reservation)
        results.append(
            ReservationItemResult(item.booking_id, ReservationOutcome(status.value), seats)
        )
    return Decisions(results, new, taken)
