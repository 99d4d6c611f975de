"""Inventory's events of the limits and releases: the store's codec reads the version-1 shapes
of before as the new ones, the new events survive a round trip, and ``evolve`` and
``released`` refuse a history that cannot have happened."""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketing.contracts.inventory import ReservationOutcome
from ticketing.inventory.domain import (
    EventScheduled,
    EventState,
    InventoryEvent,
    ReservationRefused,
    SeatsReleased,
    SeatsReserved,
    evolve,
)
from ticketing.inventory.repository import STORE
from ticketing.inventory.reservation import Release, released, reservation_of
from ticketing.shared.errors import ImpossibleHistory

EVENT, VENUE, BOOKING = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
V1 = {
    "EventScheduled": {
        "event_id": str(EVENT),
        "venue_id": str(VENUE),
        "name": "Gig",
        "total_capacity": 10,
        "ticket_price": "5.00",
        "starts_at": None,
    },
    "SeatsReserved": {
        "event_id": str(EVENT),
        "booking_id": str(BOOKING),
        "ticket_count": 2,
        "left_capacity": 8,
    },
    "ReservationRefused": {
        "event_id": str(EVENT),
        "booking_id": str(BOOKING),
        "ticket_count": 12,
        "left_capacity": 10,
    },
}


def test_version_one_shapes_read_as_no_limit_no_customer_and_a_refusal_for_want_of_seats() -> None:
    codec = STORE.codec
    scheduled = codec.decode("EventScheduled", 1, json.dumps(V1["EventScheduled"]))
    reserved = codec.decode("SeatsReserved", 1, json.dumps(V1["SeatsReserved"]))
    refused = codec.decode("ReservationRefused", 1, json.dumps(V1["ReservationRefused"]))
    assert scheduled == EventScheduled(
        event_id=EVENT,
        venue_id=VENUE,
        name="Gig",
        total_capacity=10,
        ticket_price="5.00",
        starts_at=None,
        max_tickets_per_customer=None,
    )
    assert reserved == SeatsReserved(
        event_id=EVENT, booking_id=BOOKING, ticket_count=2, left_capacity=8, customer_id=None
    )
    assert (refused.reason, refused.customer_id) == ("insufficient", None)
    assert reservation_of(refused).status is ReservationOutcome.INSUFFICIENT


NEW_EVENTS: st.SearchStrategy[InventoryEvent] = st.one_of(
    st.builds(
        EventScheduled,
        event_id=st.uuids(),
        venue_id=st.uuids(),
        name=st.text(max_size=20),
        total_capacity=st.integers(1, 10**6),
        ticket_price=st.just("1.00"),
        starts_at=st.none(),
        max_tickets_per_customer=st.none() | st.integers(1, 10**6),
    ),
    st.builds(
        SeatsReserved,
        event_id=st.uuids(),
        booking_id=st.uuids(),
        ticket_count=st.integers(1, 1000),
        left_capacity=st.integers(0, 10**6),
        customer_id=st.none() | st.uuids(),
    ),
    st.builds(
        ReservationRefused,
        event_id=st.uuids(),
        booking_id=st.uuids(),
        ticket_count=st.integers(1, 1000),
        left_capacity=st.integers(0, 10**6),
        reason=st.sampled_from(["insufficient", "over_limit"]),
        customer_id=st.none() | st.uuids(),
    ),
    st.builds(
        SeatsReleased,
        event_id=st.uuids(),
        booking_id=st.uuids(),
        ticket_count=st.integers(1, 1000),
        left_capacity=st.integers(0, 10**6),
        reason=st.sampled_from(["cancelled", "expired"]),
    ),
)


@given(NEW_EVENTS)
def test_the_new_shapes_survive_a_round_trip(event: InventoryEvent) -> None:
    payload = STORE.codec.encode(event)
    assert STORE.codec.decode(type(event).__name__, type(event).SCHEMA_VERSION, payload) == event


def state(left: int, total: int = 10) -> EventState:
    scheduled = EventScheduled(
        event_id=EVENT,
        venue_id=VENUE,
        name="Gig",
        total_capacity=total,
        ticket_price="5.00",
        starts_at=None,
        max_tickets_per_customer=3,
    )
    first = evolve(None, scheduled)
    assert isinstance(first, EventState)
    assert first.max_tickets_per_customer == 3
    return dataclasses.replace(first, left_capacity=left)


def release_of(count: int, left: int, event_id: uuid.UUID = EVENT) -> SeatsReleased:
    return SeatsReleased(
        event_id=event_id,
        booking_id=BOOKING,
        ticket_count=count,
        left_capacity=left,
        reason="expired",
    )


def test_a_release_gives_seats_back_up_to_the_total_and_no_further() -> None:
    after = evolve(state(6), release_of(4, 10))
    assert isinstance(after, EventState)
    assert (after.left_capacity, after.version) == (10, 2)
    with pytest.raises(ImpossibleHistory):
        evolve(state(7), release_of(4, 11))
    with pytest.raises(ImpossibleHistory):
        evolve(state(6), release_of(1, 7, event_id=uuid.uuid4()))
    with pytest.raises(ImpossibleHistory):
        evolve(None, release_of(1, 7))


def test_only_a_reservation_holding_those_seats_is_released_and_only_once() -> None:
    reserved = reservation_of(
        SeatsReserved(event_id=EVENT, booking_id=BOOKING, ticket_count=2, left_capacity=8)
    )
    refused = reservation_of(
        ReservationRefused(
            event_id=EVENT, booking_id=BOOKING, ticket_count=2, left_capacity=1, reason="over_limit"
        )
    )
    once = released(reserved, release_of(2, 10))
    assert once.release == Release("expired", 10)
    assert not once.holds_seats
    assert refused.status is ReservationOutcome.OVER_LIMIT
    for impossible, event in [
        (once, release_of(2, 10)),
        (refused, release_of(2, 10)),
        (reserved, release_of(3, 10)),
        (reserved, release_of(2, 10, event_id=uuid.uuid4())),
    ]:
        with pytest.raises(ImpossibleHistory):
            released(impossible, event)
