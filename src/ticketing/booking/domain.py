"""Booking rules, in plain Python (no I/O, no framework).

Booking is event-sourced (ADR 12): a customer's stream holds :class:`CustomerRegistered`; a
booking's stream starts with :class:`~ticketing.contracts.events.BookingRequested` (the
published contract, stored as it is sent) and goes through the lifecycle of ADR 17:

    PENDING -> CONFIRMED | HELD | REJECTED      (settled by the order saga's answer)
    HELD -> CONFIRMED (its client confirms) | EXPIRED (its time ran out) | CANCELLING
    CONFIRMED -> CANCELLING -> CANCELLED        (inventory released the seats)

:func:`evolve` applies one event to a state; the ``customers`` and ``bookings`` rows are its
results, written with the events, and a booking's row with its stream's ``version`` is the
state the next decision starts from (the decisions are in :mod:`ticketing.booking.lifecycle`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

import msgspec

from ticketing.contracts.booking import Booking, BookingStatus, Customer
from ticketing.contracts.events import (
    BookingCancelled,
    BookingRequested,
    HoldExpired,
)
from ticketing.shared.errors import Conflict, ImpossibleHistory, InvalidInput

CENT = Decimal("0.01")
CUSTOMER_STREAM = "customer"
BOOKING_STREAM = "booking"


# --- Events: facts, in the past tense. A change of a field is a new SCHEMA_VERSION with an
# upcaster for the old shape (the codec of repository.STORE). The published ones
# (BookingRequested, BookingCancelled, HoldExpired) are the contracts of
# ticketing.contracts.events, stored as they are sent.


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerRegistered:
    SCHEMA_VERSION: ClassVar[int] = 1

    customer_id: uuid.UUID
    name: str
    email: str
    address: str | None
    registered_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class BookingConfirmed:
    """The booking is confirmed: by the saga (no hold), or by its client (a HELD one)."""

    SCHEMA_VERSION: ClassVar[int] = 1

    booking_id: uuid.UUID
    order_id: uuid.UUID
    confirmed_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class BookingRejected:
    """The order saga could not reserve the seats; internal, like BookingConfirmed."""

    SCHEMA_VERSION: ClassVar[int] = 1

    booking_id: uuid.UUID
    reason: str
    rejected_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class BookingHeld:
    """The saga reserved the seats of a hold: they are the booking's until ``expires_at``."""

    SCHEMA_VERSION: ClassVar[int] = 1

    booking_id: uuid.UUID
    order_id: uuid.UUID
    expires_at: datetime
    held_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class CancellationRequested:
    """A cancel came while the booking was PENDING: it is cancelled once the saga answers."""

    SCHEMA_VERSION: ClassVar[int] = 1

    booking_id: uuid.UUID
    requested_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class SeatsReturned:
    """Inventory took a cancelled booking's seats back: the cancellation is complete."""

    SCHEMA_VERSION: ClassVar[int] = 1

    booking_id: uuid.UUID
    returned_at: datetime


StreamEvent = (
    BookingRequested
    | BookingHeld
    | BookingConfirmed
    | BookingRejected
    | CancellationRequested
    | BookingCancelled
    | HoldExpired
    | SeatsReturned
)
BookingEvent = CustomerRegistered | StreamEvent
EVENT_TYPES: tuple[type[BookingEvent], ...] = (
    CustomerRegistered,
    BookingRequested,
    BookingHeld,
    BookingConfirmed,
    BookingRejected,
    CancellationRequested,
    BookingCancelled,
    HoldExpired,
    SeatsReturned,
)


@dataclass(frozen=True, slots=True)
class BookingState:
    """A booking, its stream's version (how many of its events are applied) and the client
    that requested it (None for a booking requested before that was recorded)."""

    booking: Booking
    version: int
    requested_by: str | None = None


# --- Decisions -------------------------------------------------------------------------


class KeyInFlight(Conflict):
    """Another request holds the Idempotency-Key and has not answered yet."""

    def __init__(self) -> None:
        super().__init__(
            "a request with this Idempotency-Key is still being processed; retry shortly",
            retry_after=1,
        )


class KeyTakenOver(Conflict):
    """A retry took the request's Idempotency-Key over while the request was in flight."""

    def __init__(self) -> None:
        super().__init__(
            "a retry with this Idempotency-Key took it over while this request was in flight "
            "(after TICKETING_IDEMPOTENCY_INFLIGHT_SECONDS), so this request made no booking; "
            "repeat it with the same key for the answer to the retry",
            retry_after=1,
        )


def check_ticket_count(ticket_count: int, maximum: int) -> None:
    if ticket_count > maximum:
        raise InvalidInput(
            f"ticket_count {ticket_count} is over the limit of {maximum} tickets per booking",
            errors=[{"field": "ticket_count", "message": f"at most {maximum}"}],
        )


def check_visible_capacity(left_capacity: int, ticket_count: int) -> None:
    """Advisory early rejection; inventory's reservation is what decides."""
    if left_capacity < ticket_count:
        raise Conflict(
            f"only {left_capacity} ticket(s) left for this event, {ticket_count} requested",
            left_capacity=left_capacity,
        )


def total_price(unit_price: str, ticket_count: int) -> str:
    return str((Decimal(unit_price) * ticket_count).quantize(CENT))


def fingerprint(body: bytes) -> str:
    """What an idempotency key is bound to: the exact request body."""
    return hashlib.sha256(body).hexdigest()


# --- Evolution -------------------------------------------------------------------------


def customer_of(event: CustomerRegistered) -> Customer:
    """A customer's state: its stream holds its registration only."""
    return Customer(
        id=event.customer_id,
        name=event.name,
        email=event.email,
        address=event.address,
        created_at=event.registered_at,
    )


# Which event may follow which state: (event type, the statuses it may follow).
_FOLLOWS: dict[type[Any], frozenset[BookingStatus]] = {
    BookingHeld: frozenset({BookingStatus.PENDING}),
    BookingConfirmed: frozenset({BookingStatus.PENDING, BookingStatus.HELD}),
    BookingRejected: frozenset({BookingStatus.PENDING}),
    CancellationRequested: frozenset({BookingStatus.PENDING}),
    BookingCancelled: frozenset({BookingStatus.HELD, BookingStatus.CONFIRMED}),
    HoldExpired: frozenset({BookingStatus.HELD}),
    SeatsReturned: frozenset({BookingStatus.CANCELLING}),
}


def evolve(state: BookingState | None, event: StreamEvent) -> BookingState:
    """The booking after ``event`` (``state``: before it, None before the first event). A
    pure function: the projection and every fold go through it."""
    if isinstance(event, BookingRequested):
        if state is not None:
            raise ImpossibleHistory(f"booking {event.booking_id} was requested twice")
        booking = Booking(
            id=event.booking_id,
            status=BookingStatus.PENDING,
            customer_id=event.customer_id,
            event_id=event.event_id,
            ticket_count=event.ticket_count,
            unit_price=event.unit_price,
            total_price=event.total_price,
            created_at=event.requested_at,
            hold=event.hold,
        )
        return BookingState(booking, 1, event.requested_by)
    follows = _FOLLOWS.get(type(event))
    if follows is None:
        raise ImpossibleHistory(f"{type(event).__name__} is not an event of a booking's stream")
    if state is None or state.booking.id != event.booking_id:
        raise ImpossibleHistory(f"{type(event).__name__} of booking {event.booking_id} out of turn")
    old = state.booking
    if old.status not in follows:
        raise ImpossibleHistory(
            f"{type(event).__name__} cannot follow booking {event.booking_id}'s {old.status}"
        )
    if isinstance(event, CancellationRequested) and old.cancel_requested:
        raise ImpossibleHistory(f"booking {event.booking_id}'s cancel was requested twice")
    booking = _applied(old, event)
    return BookingState(booking, state.version + 1, state.requested_by)


def _applied(old: Booking, event: StreamEvent) -> Booking:
    """``old`` with what ``event`` changed (it is known to follow ``old``)."""
    changes: dict[str, Any]
    match event:
        case BookingHeld():
            changes = {
                "status": BookingStatus.HELD,
                "order_id": event.order_id,
                "expires_at": event.expires_at,
            }
        case BookingConfirmed():
            changes = {
                "status": BookingStatus.CONFIRMED,
                "order_id": event.order_id,
                "expires_at": None,
            }
        case BookingRejected():
            changes = {"status": BookingStatus.REJECTED, "reason": event.reason}
        case CancellationRequested():
            changes = {"cancel_requested": True}
        case BookingCancelled():
            changes = {"status": BookingStatus.CANCELLING}
        case HoldExpired():
            changes = {"status": BookingStatus.EXPIRED}
        case SeatsReturned():
            changes = {"status": BookingStatus.CANCELLED}
        case _:
            raise ImpossibleHistory(f"{type(event).__name__} is not an event of a booking's stream")
    return msgspec.structs.replace(old, **changes)


def evolve_all(state: BookingState, events: Iterable[StreamEvent]) -> BookingState:
    """The booking after each of ``events`` in turn, from ``state``."""
    for event in events:
        state = evolve(state, event)
    return state


def fold(events: Iterable[StreamEvent]) -> BookingState:
    """A booking's state from its stream's events (at least one)."""
    state: BookingState | None = None
    for event in events:
        state = evolve(state, event)
    if state is None:
        raise ImpossibleHistory("a booking's stream holds no event")
    return state
