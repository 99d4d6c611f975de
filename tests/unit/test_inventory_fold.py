"""Inventory's ``evolve`` and ``fold``: a refusal changes only the version, reserved seats come
off those left, a scheduled event starts full at version one, and an event a stream cannot be at
is an impossible history."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.inventory_streams import event_state, scheduled
from ticketing.inventory.domain import (
    EventState,
    InventoryEvent,
    ReservationRefused,
    SeatsReserved,
    VenueState,
    decide_register_venue,
    decide_schedule_event,
    evolve,
    fold,
)
from ticketing.shared.errors import ImpossibleHistory


@given(st.integers(0, 100), st.integers(1, 100), st.integers(1, 1000))
def test_a_refusal_changes_only_the_version(left: int, count: int, version: int) -> None:
    event_id = uuid.uuid4()
    state = dataclasses.replace(
        event_state([scheduled(event_id, 100)]), left_capacity=left, version=version
    )
    refused = ReservationRefused(
        event_id=event_id, booking_id=uuid.uuid4(), ticket_count=count, left_capacity=left
    )
    assert evolve(state, refused) == dataclasses.replace(state, version=version + 1)


@given(st.integers(1, 100), st.integers(1, 100), st.integers(1, 1000))
def test_reserved_seats_are_subtracted_from_those_left(left: int, count: int, version: int) -> None:
    event_id = uuid.uuid4()
    state = dataclasses.replace(
        event_state([scheduled(event_id, 100)]), left_capacity=left, version=version
    )
    reserved = SeatsReserved(
        event_id=event_id, booking_id=uuid.uuid4(), ticket_count=count, left_capacity=left - count
    )
    assert evolve(state, reserved) == dataclasses.replace(
        state, left_capacity=left - count, version=version + 1
    )


def test_a_scheduled_event_starts_with_every_seat_left_at_version_one() -> None:
    venue = evolve(None, decide_register_venue(uuid.uuid4(), "Hall", "Main St 1", 300))
    assert isinstance(venue, VenueState)
    starts_at = datetime(2030, 5, 1, 20, tzinfo=UTC)
    event = decide_schedule_event(
        uuid.uuid4(),
        venue,
        name="Gig",
        total_capacity=200,
        ticket_price="12.5",
        starts_at=starts_at,
    )
    state = fold([event])
    assert state == EventState(
        event.event_id, venue.id, "Gig", 200, 200, Decimal("12.50"), starts_at, 1
    )
    assert venue == VenueState(venue.id, "Hall", "Main St 1", 300, 1)


def test_fold_of_no_events_is_no_state() -> None:
    assert fold([]) is None


def wrong_states() -> list[tuple[VenueState | EventState | None, InventoryEvent]]:
    event_id, venue_id, booking_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    venue = VenueState(venue_id, "Hall", "Main St 1", 10, 1)
    event = event_state([scheduled(event_id, 10)])
    registered = decide_register_venue(venue_id, "Hall", "Main St 1", 10)
    reserved = SeatsReserved(
        event_id=event_id, booking_id=booking_id, ticket_count=1, left_capacity=9
    )
    refused = ReservationRefused(
        event_id=event_id, booking_id=booking_id, ticket_count=11, left_capacity=10
    )
    return [
        (venue, registered),
        (event, registered),
        (event, scheduled(event_id, 10)),
        (venue, scheduled(event_id, 10)),
        (None, reserved),
        (venue, reserved),
        (None, refused),
        (venue, refused),
        (event_state([scheduled(uuid.uuid4(), 10)]), reserved),  # another event's stream
        (event_state([scheduled(uuid.uuid4(), 10)]), refused),
    ]


@pytest.mark.parametrize(("state", "event"), wrong_states())
def test_evolve_refuses_an_event_its_stream_cannot_be_at(
    state: VenueState | EventState | None, event: InventoryEvent
) -> None:
    with pytest.raises(ImpossibleHistory):
        evolve(state, event)


def test_evolve_refuses_what_is_not_an_inventory_event() -> None:
    with pytest.raises(TypeError, match="not an inventory event"):
        evolve(None, object())  # type: ignore[arg-type]
