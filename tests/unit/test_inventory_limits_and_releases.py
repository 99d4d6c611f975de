"""Inventory's limit per customer and its releases of seats, on in-memory records (the SQL
records are held to the same behaviour in tests/integration/test_inventory_ports.py)."""

from __future__ import annotations

import uuid

import pytest

from tests.fakes.inventory import InMemoryInventoryRecords
from ticketing.contracts.events import ReleaseReason
from ticketing.contracts.inventory import (
    EventCreate,
    ReleaseItem,
    ReleaseItemResult,
    ReleaseOutcome,
    ReservationItem,
    ReservationItemResult,
    ReservationOutcome,
    ReservationRequest,
    VenueCreate,
)
from ticketing.inventory.domain import (
    EventScheduled,
    EventState,
    ReservationRefused,
    SeatsReleased,
    SeatsReserved,
    fold,
)
from ticketing.inventory.service import InventoryService
from ticketing.shared.errors import Conflict, InvalidInput
from ticketing.shared.store.eventstore import Cause

CAUSE = Cause(actor="order", correlation_id="request-1", causation_id="request-1")
RESERVED, INSUFFICIENT = ReservationOutcome.RESERVED, ReservationOutcome.INSUFFICIENT
OVER_LIMIT = ReservationOutcome.OVER_LIMIT
RELEASED, NOT_RESERVED = ReleaseOutcome.RELEASED, ReleaseOutcome.NOT_RESERVED


def service() -> tuple[InventoryService, InMemoryInventoryRecords]:
    records = InMemoryInventoryRecords()
    return InventoryService(records), records


def answers(results: list[ReservationItemResult]) -> list[tuple[ReservationOutcome, int | None]]:
    return [(r.outcome, r.left_capacity) for r in results]


def item(
    event_id: uuid.UUID, count: int, customer: uuid.UUID | None, booking: uuid.UUID | None = None
) -> ReservationItem:
    return ReservationItem(event_id, booking or uuid.uuid4(), count, customer_id=customer)


def release(
    event_id: uuid.UUID, booking_id: uuid.UUID, reason: ReleaseReason = "cancelled"
) -> ReleaseItem:
    return ReleaseItem(event_id, booking_id, reason)


async def test_an_event_keeps_its_limit_from_the_request_to_its_state() -> None:
    inventory, records = service()
    venue = await inventory.create_venue(VenueCreate("Hall", "Road 1", 300), CAUSE)
    event = await inventory.create_event(
        EventCreate("Show", venue.id, 250, "10.00", max_tickets_per_customer=4), CAUSE
    )
    assert event.max_tickets_per_customer == 4
    (scheduled,) = records.history(event.id)
    assert isinstance(scheduled.event, EventScheduled)
    assert scheduled.event.max_tickets_per_customer == 4
    assert records.events[event.id].max_tickets_per_customer == 4
    with pytest.raises(InvalidInput, match="max_tickets_per_customer"):
        await inventory.create_event(
            EventCreate("Show", venue.id, 250, "10.00", max_tickets_per_customer=0), CAUSE
        )


async def test_a_customer_over_the_limit_is_refused_counting_the_earlier_items_of_the_batch() -> (
    None
):
    inventory, records = service()
    event_id = records.given_event(capacity=20, limit=4)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    first = await inventory.reserve_many([item(event_id, 3, alice)], CAUSE)
    batch = [
        item(event_id, 1, alice),  # 4: at the limit
        item(event_id, 1, alice),  # 5: over
        item(event_id, 4, bob),  # bob's own 4
        item(event_id, 5, None),  # nobody's: no limit applies
        item(event_id, 9, alice),  # over the limit and more than is left: the limit says so
    ]
    results = await inventory.reserve_many(batch, CAUSE)
    assert answers(first) == [(RESERVED, 17)]
    assert answers(results) == [
        (RESERVED, 16),
        (OVER_LIMIT, 16),
        (RESERVED, 12),
        (RESERVED, 7),
        (OVER_LIMIT, 7),
    ]
    refused = [
        r.event for r in records.history(event_id) if isinstance(r.event, ReservationRefused)
    ]
    assert [(e.booking_id, e.reason, e.customer_id) for e in refused] == [
        (batch[1].booking_id, "over_limit", alice),
        (batch[4].booking_id, "over_limit", alice),
    ]
    assert records.held_reads == [[(event_id, alice)], sorted([(event_id, alice), (event_id, bob)])]


async def test_an_over_limit_answer_is_kept_by_its_booking_id() -> None:
    inventory, records = service()
    event_id = records.given_event(capacity=10, limit=2)
    customer = uuid.uuid4()
    over = item(event_id, 3, customer)
    assert answers(await inventory.reserve_many([over], CAUSE)) == [(OVER_LIMIT, 10)]
    # The limit is now 2 for one seat more, but the booking id keeps its answer.
    assert answers(await inventory.reserve_many([over], CAUSE)) == [(OVER_LIMIT, 10)]
    with pytest.raises(Conflict, match="limit"):
        await inventory.reserve(event_id, ReservationRequest(over.booking_id, 3), CAUSE)
    assert records.events[event_id].left_capacity == 10
    assert len(records.history(event_id)) == 2


async def test_without_a_limit_no_seats_held_are_counted() -> None:
    inventory, records = service()
    event_id = records.given_event(capacity=10)
    customer = uuid.uuid4()
    results = await inventory.reserve_many([item(event_id, 4, customer)] * 1, CAUSE)
    results += await inventory.reserve_many([item(event_id, 6, customer)], CAUSE)
    assert answers(results) == [(RESERVED, 6), (RESERVED, 0)]
    assert records.held_reads == []


async def test_a_release_gives_the_seats_back_once_and_a_repeat_answers_the_same() -> None:
    inventory, records = service()
    event_id = records.given_event(capacity=10)
    kept, given_back = item(event_id, 2, uuid.uuid4()), item(event_id, 3, uuid.uuid4())
    await inventory.reserve_many([kept, given_back], CAUSE)
    first = await inventory.release_many([release(event_id, given_back.booking_id)], CAUSE)
    again = await inventory.release_many(
        [release(event_id, given_back.booking_id, "expired")] * 2, CAUSE
    )
    assert first == [ReleaseItemResult(given_back.booking_id, RELEASED, 3, 8)]
    assert again == first * 2
    assert records.events[event_id].left_capacity == 8
    (released,) = [r for r in records.history(event_id) if isinstance(r.event, SeatsReleased)]
    assert released.event == SeatsReleased(
        event_id=event_id,
        booking_id=given_back.booking_id,
        ticket_count=3,
        left_capacity=8,
        reason="cancelled",
    )
    assert released.cause == CAUSE
    folded = fold(r.event for r in records.history(event_id))
    assert folded == records.events[event_id]


async def test_only_a_reservation_holding_seats_at_that_event_is_released() -> None:
    inventory, records = service()
    event_id, other = records.given_event(capacity=2), records.given_event(capacity=5)
    reserved, refused = item(event_id, 2, None), item(event_id, 1, None)
    assert answers(await inventory.reserve_many([reserved, refused], CAUSE)) == [
        (RESERVED, 0),
        (INSUFFICIENT, 0),
    ]
    results = await inventory.release_many(
        [
            release(event_id, uuid.uuid4()),  # no reservation
            release(event_id, refused.booking_id),  # refused: no seats
            release(other, reserved.booking_id),  # its seats are at another event
            release(uuid.uuid4(), reserved.booking_id),  # at no event at all
        ],
        CAUSE,
    )
    assert [r.outcome for r in results] == [NOT_RESERVED] * 4
    assert [(r.ticket_count, r.left_capacity) for r in results] == [(0, None)] * 4
    assert records.events[event_id].left_capacity == 0
    assert records.events[other].left_capacity == 5
    assert len(records.history(event_id)) == 3


async def test_a_released_booking_id_keeps_its_first_answer_and_never_takes_seats_again() -> None:
    inventory, records = service()
    event_id = records.given_event(capacity=4)
    booking = item(event_id, 3, uuid.uuid4())
    await inventory.reserve_many([booking], CAUSE)
    await inventory.release_many([release(event_id, booking.booking_id)], CAUSE)
    assert answers(await inventory.reserve_many([booking], CAUSE)) == [(RESERVED, 1)]
    assert records.events[event_id].left_capacity == 4
    assert [type(r.event) for r in records.history(event_id)] == [
        EventScheduled,
        SeatsReserved,
        SeatsReleased,
    ]


async def test_released_seats_stop_counting_toward_the_limit() -> None:
    inventory, records = service()
    event_id = records.given_event(capacity=10, limit=3)
    customer = uuid.uuid4()
    held = item(event_id, 3, customer)
    await inventory.reserve_many([held], CAUSE)
    assert answers(await inventory.reserve_many([item(event_id, 1, customer)], CAUSE)) == [
        (OVER_LIMIT, 7)
    ]
    await inventory.release_many([release(event_id, held.booking_id, "expired")], CAUSE)
    assert answers(await inventory.reserve_many([item(event_id, 3, customer)], CAUSE)) == [
        (RESERVED, 7)
    ]


async def test_a_release_committed_meanwhile_is_decided_again_and_released_once() -> None:
    """Another replica releases the same booking id between this one's reads and its writes
    (in the database the event's lock rules this out; here the stream's version catches it)."""
    inventory, records = service()
    event_id = records.given_event(capacity=5)
    booking = item(event_id, 2, None)
    await inventory.reserve_many([booking], CAUSE)
    other = Cause(actor="other-replica")
    ran = False

    async def meanwhile() -> None:
        nonlocal ran
        if not ran:
            ran = True
            await inventory.release_many([release(event_id, booking.booking_id)], other)

    records.meanwhile = meanwhile
    results = await inventory.release_many([release(event_id, booking.booking_id)], CAUSE)
    assert results == [ReleaseItemResult(booking.booking_id, RELEASED, 2, 5)]
    releases = [r for r in records.history(event_id) if isinstance(r.event, SeatsReleased)]
    assert [r.cause for r in releases] == [other]
    state = records.events[event_id]
    assert isinstance(state, EventState)
    assert state.left_capacity == 5


async def test_each_release_event_carries_its_items_cause_or_the_requests() -> None:
    inventory, records = service()
    event_id = records.given_event(capacity=5)
    bookings = [item(event_id, 1, None) for _ in range(2)]
    await inventory.reserve_many(bookings, CAUSE)
    items = [
        ReleaseItem(
            event_id, bookings[0].booking_id, "expired", causation_id="m-1", correlation_id="c-1"
        ),
        ReleaseItem(event_id, bookings[1].booking_id, "cancelled"),
    ]
    await inventory.release_many(items, CAUSE)
    causes = [r.cause for r in records.history(event_id)[3:]]
    assert causes == [Cause("order", correlation_id="c-1", causation_id="m-1"), CAUSE]
