"""Inventory's write use cases on in-memory records (fast; the SQL records are checked against
the same behaviour in tests/integration/test_inventory_ports.py)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pytest

from tests.fakes.inventory import InMemoryInventoryRecords
from tests.unit.inventory_service import CAUSE, service
from ticketing.contracts.inventory import (
    EventCreate,
    ReservationItem,
    ReservationItemResult,
    ReservationOutcome,
    ReservationRequest,
    ReservationStatus,
    VenueCreate,
)
from ticketing.inventory.domain import (
    EventScheduled,
    ReservationRefused,
    SeatsReserved,
    VenueRegistered,
)
from ticketing.inventory.service import DUPLICATE_RETRIES
from ticketing.shared.db.unit_of_work import AlreadyRecorded
from ticketing.shared.errors import Conflict, InvalidInput, NotFound
from ticketing.shared.store.eventstore import Cause

RESERVED, INSUFFICIENT = ReservationOutcome.RESERVED, ReservationOutcome.INSUFFICIENT


def answers(results: list[ReservationItemResult]) -> list[tuple[ReservationOutcome, int | None]]:
    return [(r.outcome, r.left_capacity) for r in results]


async def test_a_venue_is_registered_as_the_first_event_of_its_stream() -> None:
    inventory, records = service()
    venue = await inventory.create_venue(VenueCreate("Hall", "Road 1", 300), CAUSE)
    (recorded,) = records.history(venue.id)
    assert recorded.event == VenueRegistered(
        venue_id=venue.id, name="Hall", address="Road 1", total_capacity=300
    )
    assert recorded.cause == CAUSE
    assert records.venues[venue.id].total_capacity == 300


async def test_an_event_is_scheduled_at_its_venue_with_every_seat_left() -> None:
    inventory, records = service()
    venue = await inventory.create_venue(VenueCreate("Hall", "Road 1", 300), CAUSE)
    event = await inventory.create_event(EventCreate("Show", venue.id, 250, "49.5"), CAUSE)
    assert (event.venue, event.total_capacity, event.left_capacity) == (venue, 250, 250)
    assert event.ticket_price == "49.50"
    (recorded,) = records.history(event.id)
    assert isinstance(recorded.event, EventScheduled)
    assert recorded.cause == CAUSE
    assert records.events[event.id].left_capacity == 250


async def test_an_event_at_an_unknown_venue_is_not_found_and_records_nothing() -> None:
    inventory, records = service()
    with pytest.raises(NotFound):
        await inventory.create_event(EventCreate("Show", uuid.uuid4(), 10, "1.00"), CAUSE)
    assert (records.events, records.transactions) == ({}, 0)


async def test_an_event_larger_than_its_venue_is_refused_and_records_nothing() -> None:
    inventory, records = service()
    venue = await inventory.create_venue(VenueCreate("Hall", "Road 1", 100), CAUSE)
    with pytest.raises(InvalidInput, match="exceeds the venue's capacity"):
        await inventory.create_event(EventCreate("Show", venue.id, 101, "1.00"), CAUSE)
    assert records.events == {}
    assert records.transactions == 1  # the venue's only


async def test_a_batch_is_decided_in_order_and_never_takes_seats_that_are_not_left() -> None:
    inventory, records = service()
    event_id = records.given_event(capacity=3)
    items = [ReservationItem(event_id, uuid.uuid4(), n) for n in (2, 2, 1)]
    results = await inventory.reserve_many(items, CAUSE)
    assert answers(results) == [(RESERVED, 1), (INSUFFICIENT, 1), (RESERVED, 0)]
    assert records.events[event_id].left_capacity == 0
    assert [type(r.event) for r in records.history(event_id)] == [
        EventScheduled,
        SeatsReserved,
        ReservationRefused,
        SeatsReserved,
    ]
    assert records.existing_reads == [[]]  # the first attempt reads no reservations
    assert records.transactions == 3  # venue, event, batch


async def test_a_repeat_gets_its_first_answer_and_takes_no_more_seats() -> None:
    inventory, records = service()
    event_id = records.given_event(capacity=5)
    item = ReservationItem(event_id, uuid.uuid4(), 2)
    first = await inventory.reserve_many([item], CAUSE)
    again = await inventory.reserve_many([item, item], CAUSE)
    assert answers(first) == [(RESERVED, 3)]
    assert answers(again) == [(RESERVED, 3), (RESERVED, 3)]
    assert records.events[event_id].left_capacity == 3
    assert len(records.history(event_id)) == 2
    # Optimistic, refused on the booking id, then decided knowing its reservation.
    assert records.existing_reads == [[], [], [item.booking_id] * 2]


async def test_a_booking_id_asking_for_other_seats_is_a_conflict() -> None:
    inventory, records = service()
    event_id, other_event = records.given_event(capacity=5), records.given_event(capacity=5)
    booking_id = uuid.uuid4()
    await inventory.reserve_many([ReservationItem(event_id, booking_id, 2)], CAUSE)
    results = await inventory.reserve_many(
        [ReservationItem(event_id, booking_id, 1), ReservationItem(other_event, booking_id, 2)],
        CAUSE,
    )
    assert answers(results) == [(ReservationOutcome.CONFLICT, None)] * 2
    with pytest.raises(Conflict):
        await inventory.reserve(event_id, ReservationRequest(booking_id, 3), CAUSE)
    assert records.events[event_id].left_capacity == 3
    assert records.events[other_event].left_capacity == 5


async def test_an_unknown_event_records_nothing_for_its_booking_id() -> None:
    inventory, records = service()
    event_id = records.given_event(capacity=5)
    lost, kept = uuid.uuid4(), uuid.uuid4()
    results = await inventory.reserve_many(
        [ReservationItem(uuid.uuid4(), lost, 1), ReservationItem(event_id, kept, 1)], CAUSE
    )
    assert answers(results) == [(ReservationOutcome.EVENT_NOT_FOUND, None), (RESERVED, 4)]
    assert set(records.reservations) == {kept}
    with pytest.raises(NotFound):
        await inventory.reserve(uuid.uuid4(), ReservationRequest(lost, 1), CAUSE)


async def test_the_single_reservation_answers_as_the_batch_does() -> None:
    inventory, records = service()
    event_id = records.given_event(capacity=2)
    booking_id = uuid.uuid4()
    result = await inventory.reserve(event_id, ReservationRequest(booking_id, 2), CAUSE)
    assert (result.status, result.left_capacity) == (ReservationStatus.RESERVED, 0)
    refused = await inventory.reserve(event_id, ReservationRequest(uuid.uuid4(), 1), CAUSE)
    assert (refused.status, refused.left_capacity) == (ReservationStatus.INSUFFICIENT, 0)


def concurrently(
    records: InMemoryInventoryRecords, times: int, commit: Callable[[], Awaitable[object]]
) -> list[None]:
    """Make another transaction commit ``commit()`` meanwhile in each of the next ``times``
    reserves (not in its own); one item in the list returned per commit."""
    ran: list[None] = []
    inside = False

    async def meanwhile() -> None:
        nonlocal inside
        if inside or len(ran) == times:
            return
        ran.append(None)
        inside = True
        try:
            await commit()
        finally:
            inside = False

    records.meanwhile = meanwhile
    return ran


async def test_a_concurrent_repeat_on_the_optimistic_attempt_is_decided_again_as_a_repeat() -> None:
    inventory, records = service()
    event_id = records.given_event(capacity=10)
    items = [ReservationItem(event_id, uuid.uuid4(), n) for n in (3, 2)]
    concurrently(records, 1, lambda: inventory.reserve_many(items[:1], Cause(actor="other")))
    results = await inventory.reserve_many(items, CAUSE)
    assert answers(results) == [(RESERVED, 7), (RESERVED, 5)]
    assert records.events[event_id].left_capacity == 5
    reserved = [r.event for r in records.history(event_id)[1:]]
    assert reserved == [  # once each
        SeatsReserved(
            event_id=event_id, booking_id=items[0].booking_id, ticket_count=3, left_capacity=7
        ),
        SeatsReserved(
            event_id=event_id, booking_id=items[1].booking_id, ticket_count=2, left_capacity=5
        ),
    ]
    # This batch's optimistic attempt, the other's, then this one's retry knowing both ids.
    assert records.existing_reads == [[], [], [i.booking_id for i in items]]


async def test_a_batch_refused_on_every_attempt_gives_up_after_the_retries() -> None:
    inventory, records = service()
    event_id, elsewhere = records.given_event(capacity=50), records.given_event(capacity=50)
    items = [ReservationItem(event_id, uuid.uuid4(), 1) for _ in range(DUPLICATE_RETRIES + 2)]
    taken = iter(items)

    async def another_of_its_booking_ids_elsewhere() -> None:
        item = next(taken)
        await inventory.reserve_many([ReservationItem(elsewhere, item.booking_id, 1)], CAUSE)

    ran = concurrently(records, 100, another_of_its_booking_ids_elsewhere)
    with pytest.raises(AlreadyRecorded):
        await inventory.reserve_many(items, CAUSE)
    assert len(ran) == DUPLICATE_RETRIES + 1  # one commit meanwhile per attempt
    assert records.events[event_id].left_capacity == 50  # nothing of the batch recorded


async def test_each_reservation_event_carries_its_items_cause_or_the_requests() -> None:
    inventory, records = service()
    event_id = records.given_event(capacity=10)
    items = [
        ReservationItem(event_id, uuid.uuid4(), 1, causation_id="message-1", correlation_id="c-1"),
        ReservationItem(event_id, uuid.uuid4(), 1),
        ReservationItem(event_id, uuid.uuid4(), 1, causation_id="message-3"),
    ]
    await inventory.reserve_many(items, CAUSE)
    causes = [r.cause for r in records.history(event_id)[1:]]
    assert causes == [
        Cause("admin", correlation_id="c-1", causation_id="message-1"),
        CAUSE,
        Cause("admin", correlation_id="request-1", causation_id="message-3"),
    ]
