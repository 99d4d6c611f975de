"""Booking rules, in plain Python (no I/O, no framework).

Booking is event-sourced (ADR 12): a customer's stream holds :class:`CustomerRegistered`; a
booking's stream holds :class:`~ticketing.contracts.events.BookingRequested` (the published
contract, stored as it is sent), then one :class:`BookingConfirmed` or :class:`BookingRejected`
when the order saga's outcome arrives. :func:`evolve` applies one event to a state; the
``customers`` and ``bookings`` rows are its results, written with the events, and a booking's
row with its stream's ``version`` is the state the next decision starts from.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import ClassVar

from ticketing.contracts.booking import Booking, BookingStatus, Customer
from ticketing.contracts.events import BookingRequested, OrderConfirmed, OrderRejected
from ticketing.shared.errors import Conflict, ImpossibleHistory, InvalidInput

CENT = Decimal("0.01")
CUSTOMER_STREAM = "customer"
BOOKING_STREAM = "booking"


# --- Events: facts, in the past tense. A change of a field is a new SCHEMA_VERSION with an
# upcaster for the old shape (the codec of repository.STORE).


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
    """The order saga reserved the seats; internal (the saga published OrderConfirmed)."""

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


BookingEvent = CustomerRegistered | BookingRequested | BookingConfirmed | BookingRejected
EVENT_TYPES: tuple[type[BookingEvent], ...] = (
    CustomerRegistered,
    BookingRequested,
    BookingConfirmed,
    BookingRejected,
)


@dataclass(frozen=True, slots=True)
class BookingState:
    """A booking and its stream's version (how many of its events are applied)."""

    booking: Booking
    version: int


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


def settlement(
    outcome: OrderConfirmed | OrderRejected, now: datetime
) -> BookingConfirmed | BookingRejected:
    """The event that settles a booking with the saga's ``outcome``."""
    if isinstance(outcome, OrderConfirmed):
        return BookingConfirmed(
            booking_id=outcome.booking_id, order_id=outcome.order_id, confirmed_at=now
        )
    return BookingRejected(booking_id=outcome.booking_id, reason=outcome.reason, rejected_at=now)


def decide_settlement(
    state: BookingState | None, outcome: OrderConfirmed | OrderRejected, now: datetime
) -> BookingConfirmed | BookingRejected | None:
    """The event that settles the booking, or None when there is nothing to settle: the
    booking is unknown, or settled already (an outcome is final; a second one is ignored)."""
    if state is None or state.booking.status is not BookingStatus.PENDING:
        return None
    return settlement(outcome, now)


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


def evolve(
    state: BookingState | None, event: BookingRequested | BookingConfirmed | BookingRejected
) -> BookingState:
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
        )
        return BookingState(booking, 1)
    if not isinstance(event, BookingConfirmed | BookingRejected):
        raise ImpossibleHistory(f"{type(event).__name__} is not an event of a booking's stream")
    if state is None or state.booking.id != event.booking_id:
        raise ImpossibleHistory(f"{type(event).__name__} of booking {event.booking_id} out of turn")
    if state.booking.status is not BookingStatus.PENDING:
        raise ImpossibleHistory(f"booking {event.booking_id} was settled twice")
    old = state.booking
    if isinstance(event, BookingConfirmed):
        settled = _with(old, BookingStatus.CONFIRMED, order_id=event.order_id, reason=None)
    else:
        settled = _with(old, BookingStatus.REJECTED, order_id=None, reason=event.reason)
    return BookingState(settled, state.version + 1)


def _with(
    booking: Booking, status: BookingStatus, *, order_id: uuid.UUID | None, reason: str | None
) -> Booking:
    return Booking(
        id=booking.id,
        status=status,
        customer_id=booking.customer_id,
        event_id=booking.event_id,
        ticket_count=booking.ticket_count,
        unit_price=booking.unit_price,
        total_price=booking.total_price,
        created_at=booking.created_at,
        order_id=order_id,
        reason=reason,
    )


def fold(events: Iterable[BookingRequested | BookingConfirmed | BookingRejected]) -> BookingState:
    """A booking's state from its stream's events (at least one)."""
    state: BookingState | None = None
    for event in events:
        state = evolve(state, event)
    if state is None:
        raise ImpossibleHistory("a booking's stream holds no event")
    return state
