"""Inventory rules, in plain Python (no I/O, no framework).

Inventory is event-sourced (ADR 12): a venue's stream holds :class:`VenueRegistered`; an
event's stream holds :class:`EventScheduled`, then one :class:`SeatsReserved` or
:class:`ReservationRefused` per booking id, and one :class:`SeatsReleased` per reserved
booking id whose seats went back. The ``decide_*`` functions (here and in
:mod:`ticketing.inventory.decisions`) turn a command and the current state into new events;
:func:`evolve` applies one event to a state. The projection rows (venues, events,
reservations) are ``evolve``'s results, written with the events, and an event's row with its
stream's ``version`` is the snapshot the next decision starts from, so that a long stream is
never folded to decide. (Time travel, ``as_of``, folds the stream up to the time asked for: a
read that asks for history pays for it.) A booking id's reservation is
:mod:`ticketing.inventory.reservation`.

The database still guards the capacity invariant itself (the event row's lock while deciding,
a CHECK on ``left_capacity``, and the store's unique stream version).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal

from ticketing.contracts.events import ReleaseReason
from ticketing.inventory.rules import (
    check_event_capacity,
    check_limit,
    check_start,
    format_price,
    parse_price,
)
from ticketing.shared.errors import ImpossibleHistory

VENUE_STREAM = "venue"
EVENT_STREAM = "event"


# --- Events: facts, in the past tense. A change of a field is a new SCHEMA_VERSION with an
# upcaster for the old shape (the codec of repository.STORE).


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueRegistered:
    SCHEMA_VERSION: ClassVar[int] = 1
    venue_id: uuid.UUID
    name: str
    address: str
    total_capacity: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EventScheduled:
    """Version 2 added ``max_tickets_per_customer`` (None: no limit)."""

    SCHEMA_VERSION: ClassVar[int] = 2
    event_id: uuid.UUID
    venue_id: uuid.UUID
    name: str
    total_capacity: int
    ticket_price: str  # decimal string, two fraction digits
    starts_at: datetime | None
    max_tickets_per_customer: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SeatsReserved:
    """Version 2 added ``customer_id`` (None: the request named nobody)."""

    SCHEMA_VERSION: ClassVar[int] = 2
    event_id: uuid.UUID
    booking_id: uuid.UUID
    ticket_count: int
    left_capacity: int  # after this reservation
    customer_id: uuid.UUID | None = None


RefusalReason = Literal["insufficient", "over_limit"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReservationRefused:
    """Not enough seats were left, or the customer would hold more than the event allows: the
    booking id keeps this answer. Version 2 added ``reason`` and ``customer_id``."""

    SCHEMA_VERSION: ClassVar[int] = 2
    event_id: uuid.UUID
    booking_id: uuid.UUID
    ticket_count: int
    left_capacity: int  # what was left (fewer than asked for, when insufficient)
    reason: RefusalReason = "insufficient"
    customer_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SeatsReleased:
    """A reserved booking's seats went back to the event (once per booking id)."""

    SCHEMA_VERSION: ClassVar[int] = 1
    event_id: uuid.UUID
    booking_id: uuid.UUID
    ticket_count: int
    left_capacity: int  # after this release
    reason: ReleaseReason


EventStreamEvent = EventScheduled | SeatsReserved | ReservationRefused | SeatsReleased
InventoryEvent = VenueRegistered | EventStreamEvent
EVENT_TYPES: tuple[type[InventoryEvent], ...] = (
    VenueRegistered,
    EventScheduled,
    SeatsReserved,
    ReservationRefused,
    SeatsReleased,
)


def _with(**fields: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def upcast(shape: dict[str, Any]) -> dict[str, Any]:
        return {**shape, **fields}

    return upcast


# The store's upcasters: what each older shape stood for. Events before the limits named no
# customer and no limit, and every refusal then was for want of seats.
UPCASTERS = {
    ("EventScheduled", 1): _with(max_tickets_per_customer=None),
    ("SeatsReserved", 1): _with(customer_id=None),
    ("ReservationRefused", 1): _with(reason="insufficient", customer_id=None),
}


# --- States: what evolve folds the events into (the projections hold the same).


@dataclass(frozen=True, slots=True)
class VenueState:
    id: uuid.UUID
    name: str
    address: str
    total_capacity: int
    version: int


@dataclass(frozen=True, slots=True)
class EventState:
    id: uuid.UUID
    venue_id: uuid.UUID
    name: str
    total_capacity: int
    left_capacity: int
    ticket_price: Decimal
    starts_at: datetime | None
    version: int
    max_tickets_per_customer: int | None = None


def evolve(state: VenueState | EventState | None, event: InventoryEvent) -> VenueState | EventState:
    """The state after ``event`` (``state``: its stream's state before it, None before the
    first event). A pure function: the projections and every fold go through it."""
    match event:
        case VenueRegistered():
            if state is not None:
                raise ImpossibleHistory(f"venue {event.venue_id} is registered twice")
            return VenueState(event.venue_id, event.name, event.address, event.total_capacity, 1)
        case EventScheduled():
            if state is not None:
                raise ImpossibleHistory(f"event {event.event_id} is scheduled twice")
            return EventState(
                id=event.event_id,
                venue_id=event.venue_id,
                name=event.name,
                total_capacity=event.total_capacity,
                left_capacity=event.total_capacity,
                ticket_price=Decimal(event.ticket_price),
                starts_at=event.starts_at,
                version=1,
                max_tickets_per_customer=event.max_tickets_per_customer,
            )
        case SeatsReserved() | ReservationRefused():
            if not isinstance(state, EventState) or state.id != event.event_id:
                raise ImpossibleHistory(
                    f"{type(event).__name__} of event {event.event_id} cannot follow {state!r}"
                )
            taken = event.ticket_count if isinstance(event, SeatsReserved) else 0
            return dataclasses.replace(
                state, left_capacity=state.left_capacity - taken, version=state.version + 1
            )
        case SeatsReleased():
            if not isinstance(state, EventState) or state.id != event.event_id:
                raise ImpossibleHistory(
                    f"SeatsReleased of event {event.event_id} cannot follow {state!r}"
                )
            left = state.left_capacity + event.ticket_count
            if left > state.total_capacity:
                raise ImpossibleHistory(
                    f"event {state.id} would have {left} of {state.total_capacity} seats left"
                )
            return dataclasses.replace(state, left_capacity=left, version=state.version + 1)
    raise TypeError(f"not an inventory event: {event!r}")


def fold(events: Iterable[InventoryEvent]) -> VenueState | EventState | None:
    """The state of one stream after all of ``events`` (in version order)."""
    state: VenueState | EventState | None = None
    for event in events:
        state = evolve(state, event)
    return state


def decide_register_venue(
    venue_id: uuid.UUID, name: str, address: str, total_capacity: int
) -> VenueRegistered:
    return VenueRegistered(
        venue_id=venue_id, name=name, address=address, total_capacity=total_capacity
    )


def decide_schedule_event(
    event_id: uuid.UUID,
    venue: VenueState,
    *,
    name: str,
    total_capacity: int,
    ticket_price: str,
    starts_at: datetime | None,
    max_tickets_per_customer: int | None = None,
) -> EventScheduled:
    """Schedule an event at ``venue``: its capacity must fit, its price must be valid."""
    price = parse_price(ticket_price)
    check_event_capacity(total_capacity, venue.total_capacity)
    check_start(starts_at)
    check_limit(max_tickets_per_customer)
    return EventScheduled(
        event_id=event_id,
        venue_id=venue.id,
        name=name,
        total_capacity=total_capacity,
        ticket_price=format_price(price),
        starts_at=starts_at,
        max_tickets_per_customer=max_tickets_per_customer,
    )
