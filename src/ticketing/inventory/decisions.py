"""Inventory's batch decisions, in plain Python: which bookings get seats (:func:`decide`) and
whose seats go back (:func:`decide_release`), each from the locked states of the events
concerned and what is already recorded for the booking ids."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from ticketing.contracts.inventory import (
    ReleaseItem,
    ReleaseItemResult,
    ReleaseOutcome,
    ReservationItem,
    ReservationItemResult,
    ReservationOutcome,
    ReservationStatus,
)
from ticketing.inventory.domain import (
    EventState,
    RefusalReason,
    ReservationRefused,
    SeatsReleased,
    SeatsReserved,
    evolve,
)
from ticketing.inventory.reservation import Reservation, released, reservation_of
from ticketing.shared.errors import InvalidInput

CustomerSeats = tuple[uuid.UUID, uuid.UUID]  # (event id, customer id)


def reservation_status(left_capacity: int, ticket_count: int) -> ReservationStatus:
    """The rule every reservation follows: reserve only when enough seats are left."""
    if ticket_count < 1:
        raise InvalidInput("ticket_count must be at least 1")
    if left_capacity >= ticket_count:
        return ReservationStatus.RESERVED
    return ReservationStatus.INSUFFICIENT


def counted(
    pairs: Iterable[CustomerSeats], states: Mapping[uuid.UUID, EventState]
) -> list[CustomerSeats]:
    """Of the (event, customer) pairs of a batch, those whose seats held must be counted: the
    events that exist and set a limit per customer (for the others, nothing is read)."""
    return sorted(
        {
            (event_id, customer_id)
            for event_id, customer_id in pairs
            if (state := states.get(event_id)) is not None
            and state.max_tickets_per_customer is not None
        }
    )


def customers_of(items: Iterable[ReservationItem]) -> list[CustomerSeats]:
    """The (event, customer) pairs of the items that name their customer."""
    return [(i.event_id, i.customer_id) for i in items if i.customer_id is not None]


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
    held: Mapping[CustomerSeats, int] | None = None,
) -> Decisions:
    """Decide a batch in request order, as if each were reserved alone one after the other.

    ``existing`` holds the reservations already recorded for these booking ids (a repeat gets
    its first answer back, or a conflict when it asks for something else); ``states`` holds
    the locked state of every existing event (absent: the event does not exist, and nothing is
    recorded for the booking id); ``held`` the seats each customer holds now (reserved, not
    released) at each event of ``counted``. A customer who would hold more than the event's
    limit is refused ``over_limit``, counting the earlier items of this batch too; that check
    comes before the capacity's, so a buyer over the limit learns so even when it is sold out.
    Each new reservation is an event on its event's stream.
    """
    current = dict(states)
    known = dict(existing)
    holding = dict(held or {})
    results: list[ReservationItemResult] = []
    events: list[tuple[int, SeatsReserved | ReservationRefused]] = []
    new: list[Reservation] = []
    for item in items:
        first = known.get(item.booking_id)
        if first is not None:
            results.append(
                ReservationItemResult(item.booking_id, first.status, first.left_capacity)
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
        fact = _reservation_event(item, state, holding)
        after = evolve(state, fact)
        assert isinstance(after, EventState)
        current[item.event_id] = after
        events.append((after.version, fact))
        reservation = reservation_of(fact)
        known[item.booking_id] = reservation
        new.append(reservation)
        results.append(
            ReservationItemResult(item.booking_id, reservation.status, fact.left_capacity)
        )
    changed = {event_id: current[event_id] for event_id in {e.event_id for _, e in events}}
    return Decisions(results, events, changed, new)


def _refusal(
    item: ReservationItem,
    state: EventState,
    key: CustomerSeats | None,
    holding: Mapping[CustomerSeats, int],
) -> RefusalReason | None:
    """Why ``item`` may not take its seats at ``state`` (the customer's limit first, then the
    seats left), or None when it may."""
    limit = state.max_tickets_per_customer
    if limit is not None and key is not None and holding.get(key, 0) + item.ticket_count > limit:
        return "over_limit"
    if reservation_status(state.left_capacity, item.ticket_count) is ReservationStatus.INSUFFICIENT:
        return "insufficient"
    return None


def _reservation_event(
    item: ReservationItem, state: EventState, holding: dict[CustomerSeats, int]
) -> SeatsReserved | ReservationRefused:
    """What ``item`` records at ``state``; the seats it takes are added to ``holding``."""
    key = None if item.customer_id is None else (item.event_id, item.customer_id)
    reason = _refusal(item, state, key, holding)
    if reason is not None:
        return ReservationRefused(
            event_id=item.event_id,
            booking_id=item.booking_id,
            ticket_count=item.ticket_count,
            left_capacity=state.left_capacity,
            reason=reason,
            customer_id=item.customer_id,
        )
    if key is not None:
        holding[key] = holding.get(key, 0) + item.ticket_count
    return SeatsReserved(
        event_id=item.event_id,
        booking_id=item.booking_id,
        ticket_count=item.ticket_count,
        left_capacity=state.left_capacity - item.ticket_count,
        customer_id=item.customer_id,
    )


@dataclass(frozen=True, slots=True)
class Releases:
    """What one batch of releases decides (see :func:`decide_release`)."""

    results: list[ReleaseItemResult]  # one per request, in request order
    events: list[tuple[int, SeatsReleased]]  # (stream version, event)
    states: dict[uuid.UUID, EventState]  # the new state of every event that changed
    released: list[Reservation]  # the reservations released now, as they become


# What the records port is given to decide with, once it has read (and locked) what it needs.
DecideBatch = Callable[
    [
        Mapping[uuid.UUID, EventState],
        Mapping[uuid.UUID, Reservation],
        Mapping[CustomerSeats, int],
    ],
    Decisions,
]
DecideReleases = Callable[
    [Mapping[uuid.UUID, EventState], Mapping[uuid.UUID, Reservation]], Releases
]


def decide_release(
    items: Sequence[ReleaseItem],
    existing: Mapping[uuid.UUID, Reservation],
    states: Mapping[uuid.UUID, EventState],
) -> Releases:
    """Decide a batch of releases in request order.

    ``existing`` holds the reservations recorded for these booking ids, ``states`` the locked
    state of every existing event. A booking id holding seats at the item's event gives them
    back (a :class:`SeatsReleased` on its stream); one released before answers ``released``
    again with what that release said, and changes nothing; any other (no reservation, a
    refused one, one at another event) is ``not_reserved``.
    """
    current = dict(states)
    known = dict(existing)
    results: list[ReleaseItemResult] = []
    events: list[tuple[int, SeatsReleased]] = []
    now_released: dict[uuid.UUID, Reservation] = {}
    for item in items:
        reservation = known.get(item.booking_id)
        state = current.get(item.event_id)
        if (
            reservation is None
            or state is None
            or reservation.event_id != item.event_id
            or reservation.status is not ReservationOutcome.RESERVED
        ):
            results.append(ReleaseItemResult(item.booking_id, ReleaseOutcome.NOT_RESERVED))
            continue
        if reservation.release is None:
            fact = SeatsReleased(
                event_id=item.event_id,
                booking_id=item.booking_id,
                ticket_count=reservation.ticket_count,
                left_capacity=state.left_capacity + reservation.ticket_count,
                reason=item.reason,
            )
            after = evolve(state, fact)
            assert isinstance(after, EventState)
            current[item.event_id] = after
            events.append((after.version, fact))
            reservation = released(reservation, fact)
            known[item.booking_id] = now_released[item.booking_id] = reservation
        assert reservation.release is not None
        results.append(
            ReleaseItemResult(
                item.booking_id,
                ReleaseOutcome.RELEASED,
                reservation.ticket_count,
                reservation.release.left_capacity,
            )
        )
    changed = {event_id: current[event_id] for event_id in {e.event_id for _, e in events}}
    return Releases(results, events, changed, list(now_released.values()))
