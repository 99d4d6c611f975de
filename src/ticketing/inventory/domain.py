"""Inventory rules, in plain Python (no I/O, no framework).

Inventory is event-sourced (ADR 12): a venue's stream holds :class:`VenueRegistered`; an
event's stream holds :class:`EventScheduled`, then one :class:`SeatsReserved` or
:class:`ReservationRefused` per booking id. The ``decide_*`` functions turn a command and the
current state into new events; :func:`evolve` applies one event to a state. The projection
rows (venues, events, reservations) are ``evolve``'s results, written with the events, and an
event's row with its stream's ``version`` is the snapshot the next decision starts from: a
stream of 100,000 reservations is never folded to decide. (Time travel, ``as_of``, folds the
stream up to the time asked for: a read that asks for history pays for it.)

The database still guards the capacity invariant itself (the event row's lock while deciding,
a CHECK on ``left_capacity``, and the store's unique stream version).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import ClassVar

from ticketing.contracts.inventory import (
    ReservationItem,
    ReservationItemResult,
    ReservationOutcome,
    ReservationStatus,
)
from ticketing.shared.errors import Conflict, ImpossibleHistory, InvalidInput

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
    SCHEMA_VERSION: ClassVar[int] = 1
    event_id: uuid.UUID
    venue_id: uuid.UUID
    name: str
    total_capacity: int
    ticket_price: str  # decimal string, two fraction digits
    starts_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SeatsReserved:
    SCHEMA_VERSION: ClassVar[int] = 1
    event_id: uuid.UUID
    booking_id: uuid.UUID
    ticket_count: int
    left_capacity: int  # after this reservation


@dataclass(frozen=True, slots=True, kw_only=True)
class ReservationRefused:
    """Not enough seats were left: the booking id keeps this answer."""

    SCHEMA_VERSION: ClassVar[int] = 1
    event_id: uuid.UUID
    booking_id: uuid.UUID
    ticket_count: int
    left_capacity: int  # what was left, fewer than asked for


EventStreamEvent = EventScheduled | SeatsReserved | ReservationRefused
InventoryEvent = VenueRegistered | EventStreamEvent
EVENT_TYPES: tuple[type[InventoryEvent], ...] = (
    VenueRegistered,
    EventScheduled,
    SeatsReserved,
    ReservationRefused,
)


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


def check_start(starts_at: datetime | None) -> None:
    """A start time must exist in UTC (it is stored so): ``0001-01-01T00:30+01:00`` does not."""
    if starts_at is None:
        return
    try:
        starts_at.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(
            "starts_at is outside the years 1 to 9999 in UTC",
            errors=[{"field": "starts_at", "message": "outside the years 1 to 9999 in UTC"}],
        ) from None


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
    raise TypeError(f"not an inventory event: {event!r}")


def fold(events: Iterable[InventoryEvent]) -> VenueState | EventState | None:
    """The state of one stream after all of ``events`` (in version order)."""
    state: VenueState | EventState | None = None
    for event in events:
        state = evolve(state, event)
    return state


def reservation_of(event: SeatsReserved | ReservationRefused) -> Reservation:
    """The reservation a reservation event records for its booking id."""
    status = (
        ReservationStatus.RESERVED
        if isinstance(event, SeatsReserved)
        else ReservationStatus.INSUFFICIENT
    )
    return Reservation(
        event.booking_id, event.event_id, event.ticket_count, status, event.left_capacity
    )


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
) -> EventScheduled:
    """Schedule an event at ``venue``: its capacity must fit, its price must be valid."""
    price = parse_price(ticket_price)
    check_event_capacity(total_capacity, venue.total_capacity)
    check_start(starts_at)
    return EventScheduled(
        event_id=event_id,
        venue_id=venue.id,
        name=name,
        total_capacity=total_capacity,
        ticket_price=format_price(price),
        starts_at=starts_at,
    )


@dataclass(frozen=True, slots=True)
class Decisions:
    """What one batch of reservation requests decides (see :func:`decide`)."""

    results: list[ReservationItemResult]  # one per request, in request order
    events: list[tuple[int, SeatsReserved | ReservationRefused]]  # (stream version, event)
    states: dict[uuid.UUID, EventState]  # the new state of every event that changed
    new: list[Reservation]  # the reservations the events record


def decide(
    items: Sequence[ReservationItem],
    existing: Mapping[uuid.UUID, Reservation],
    states: Mapping[uuid.UUID, EventState],
) -> Decisions:
    """Decide a batch in request order, as if each were reserved alone one after the other.

    ``existing`` holds the reservations already recorded for these booking ids (a repeat gets
    its first answer back, or a conflict when it asks for something else); ``states`` holds
    the locked state of every existing event (absent: the event does not exist, and nothing is
    recorded for the booking id). Each new reservation is an event on its event's stream.
    """
    current = dict(states)
    known = dict(existing)
    results: list[ReservationItemResult] = []
    events: list[tuple[int, SeatsReserved | ReservationRefused]] = []
    new: list[Reservation] = []
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
        state = current.get(item.event_id)
        if state is None:
            results.append(
                ReservationItemResult(item.booking_id, ReservationOutcome.EVENT_NOT_FOUND)
            )
            continue
        status = reservation_status(state.left_capacity, item.ticket_count)
        fact: SeatsReserved | ReservationRefused
        if status is ReservationStatus.RESERVED:
            fact = SeatsReserved(
                event_id=item.event_id,
                booking_id=item.booking_id,
                ticket_count=item.ticket_count,
                left_capacity=state.left_capacity - item.ticket_count,
            )
        else:
            fact = ReservationRefused(
                event_id=item.event_id,
                booking_id=item.booking_id,
                ticket_count=item.ticket_count,
                left_capacity=state.left_capacity,
            )
        after = evolve(state, fact)
        assert isinstance(after, EventState)
        current[item.event_id] = after
        events.append((after.version, fact))
        reservation = reservation_of(fact)
        known[item.booking_id] = reservation
        new.append(reservation)
        results.append(
            ReservationItemResult(
                item.booking_id, ReservationOutcome(status.value), fact.left_capacity
            )
        )
    changed = {event_id: current[event_id] for event_id in {e.event_id for _, e in events}}
    return Decisions(results, events, changed, new)
