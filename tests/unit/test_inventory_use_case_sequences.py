"""Inventory's use cases under generated sequences of batches: no sequence of reservations sells
more seats than an event has, and none of reservations and releases breaks its capacity or its
limit per customer."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes.inventory import InMemoryInventoryRecords
from tests.unit.inventory_service import CAUSE, service
from ticketing.contracts.inventory import (
    ReleaseItem,
    ReleaseOutcome,
    ReservationItem,
    ReservationOutcome,
)
from ticketing.inventory.domain import (
    EventState,
    SeatsReleased,
    SeatsReserved,
    fold,
)

BOOKINGS = 8
REQUESTS = st.tuples(st.integers(0, BOOKINGS - 1), st.integers(1, 4))


@settings(max_examples=150, deadline=None)
@given(
    capacities=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    batches=st.lists(st.lists(REQUESTS, min_size=1, max_size=6), max_size=8),
)
async def test_no_sequence_of_batches_sells_more_seats_than_an_event_has(
    capacities: tuple[int, int], batches: list[list[tuple[int, int]]]
) -> None:
    """Booking ids come back, with the same or other seats; every event's seats left are its
    capacity less what its reservations hold, never below zero, and its stream folds into it."""
    inventory, records = service()
    event_ids = [records.given_event(capacity) for capacity in capacities]
    booking_ids = [uuid.uuid4() for _ in range(BOOKINGS)]
    first: dict[uuid.UUID, tuple[ReservationOutcome, int | None]] = {}
    for batch in batches:
        items = [ReservationItem(event_ids[b % 2], booking_ids[b], tickets) for b, tickets in batch]
        for item, result in zip(items, await inventory.reserve_many(items, CAUSE), strict=True):
            answer = (result.outcome, result.left_capacity)
            if result.outcome is not ReservationOutcome.CONFLICT:
                assert first.setdefault(item.booking_id, answer) == answer
        for event_id, capacity in zip(event_ids, capacities, strict=True):
            held = [r for r in records.reservations.values() if r.event_id == event_id]
            reserved = sum(r.ticket_count for r in held if r.status is ReservationOutcome.RESERVED)
            state = records.events[event_id]
            assert reserved <= capacity
            assert state.left_capacity == capacity - reserved
            folded = fold(r.event for r in records.history(event_id))
            assert isinstance(folded, EventState)
            assert folded == state


CUSTOMERS = 3
RESERVE_ITEMS = st.tuples(st.integers(0, BOOKINGS - 1), st.integers(0, 1), st.integers(1, 4))
RELEASE_ITEMS = st.tuples(st.integers(0, BOOKINGS - 1), st.integers(0, 1), st.booleans())
BATCHES = st.one_of(
    st.tuples(st.just("reserve"), st.lists(RESERVE_ITEMS, min_size=1, max_size=6)),
    st.tuples(st.just("release"), st.lists(RELEASE_ITEMS, min_size=1, max_size=4)),
)


def customer_of(booking: int, customers: list[uuid.UUID]) -> uuid.UUID | None:
    """Each booking is one customer's, the last one nobody's (no limit applies to it)."""
    return None if booking == BOOKINGS - 1 else customers[booking % CUSTOMERS]


@settings(max_examples=200, deadline=None)
@given(
    events=st.tuples(
        st.tuples(st.integers(1, 12), st.none() | st.integers(1, 6)),
        st.tuples(st.integers(1, 12), st.none() | st.integers(1, 6)),
    ),
    batches=st.lists(BATCHES, max_size=10),
)
async def test_no_sequence_of_reserves_and_releases_breaks_capacity_or_limits(
    events: tuple[tuple[int, int | None], tuple[int, int | None]],
    batches: list[tuple[str, list[tuple[int, int, Any]]]],
) -> None:
    """Reserves and releases with repeats, conflicts, wrong events and limits: seats left stay
    within 0 and the total and are the total less the seats held (reserved, not released); no
    customer ever holds more than the limit, even between two events of a stream; a booking
    id's answers never change; and each stream folds into its event's state."""
    inventory, records = service()
    event_ids = [records.given_event(capacity, limit) for capacity, limit in events]
    booking_ids = [uuid.uuid4() for _ in range(BOOKINGS)]
    customers = [uuid.uuid4() for _ in range(CUSTOMERS)]
    reserved_first: dict[uuid.UUID, tuple[ReservationOutcome, int | None]] = {}
    released_first: dict[uuid.UUID, tuple[int, int | None]] = {}
    for kind, batch in batches:
        if kind == "reserve":
            items = [
                ReservationItem(
                    event_ids[e], booking_ids[b], tickets, customer_id=customer_of(b, customers)
                )
                for b, e, tickets in batch
            ]
            results = await inventory.reserve_many(items, CAUSE)
            for item, result in zip(items, results, strict=True):
                answer = (result.outcome, result.left_capacity)
                if result.outcome is not ReservationOutcome.CONFLICT:
                    assert reserved_first.setdefault(item.booking_id, answer) == answer
        else:
            releases = [
                ReleaseItem(event_ids[e], booking_ids[b], "expired" if late else "cancelled")
                for b, e, late in batch
            ]
            for release, given in zip(
                releases, await inventory.release_many(releases, CAUSE), strict=True
            ):
                if given.outcome is ReleaseOutcome.RELEASED:
                    seats = (given.ticket_count, given.left_capacity)
                    assert released_first.setdefault(release.booking_id, seats) == seats
        for event_id, (capacity, _) in zip(event_ids, events, strict=True):
            holding = [
                r for r in records.reservations.values() if r.event_id == event_id and r.holds_seats
            ]
            state = records.events[event_id]
            assert 0 <= state.left_capacity <= capacity
            assert state.left_capacity == capacity - sum(r.ticket_count for r in holding)
            assert fold(r.event for r in records.history(event_id)) == state
    for event_id, (_, limit) in zip(event_ids, events, strict=True):
        check_limit_throughout(records, event_id, limit)


def check_limit_throughout(
    records: InMemoryInventoryRecords, event_id: uuid.UUID, limit: int | None
) -> None:
    """Walk the event's stream: after each of its events, no customer holds more than
    ``limit`` seats, and a release gives back exactly what its booking held."""
    held: dict[uuid.UUID, int] = {}
    holding: dict[uuid.UUID, tuple[uuid.UUID | None, int]] = {}
    for recorded in records.history(event_id):
        event = recorded.event
        if isinstance(event, SeatsReserved):
            holding[event.booking_id] = (event.customer_id, event.ticket_count)
            if event.customer_id is not None:
                held[event.customer_id] = held.get(event.customer_id, 0) + event.ticket_count
        elif isinstance(event, SeatsReleased):
            customer, count = holding.pop(event.booking_id)
            assert count == event.ticket_count
            if customer is not None:
                held[customer] -= count
        if limit is not None:
            assert all(seats <= limit for seats in held.values()), held
