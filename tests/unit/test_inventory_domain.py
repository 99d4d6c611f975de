"""Inventory's rules: exact prices, an event no bigger than its venue, enough seats for a
reservation and the same seats for a repeat, and cursors that round-trip."""

import uuid
from decimal import Decimal

import pytest

from ticketing.contracts.inventory import (
    ReservationOutcome,
    ReservationStatus,
)
from ticketing.inventory.decisions import reservation_status
from ticketing.inventory.domain import (
    VenueState,
    decide_register_venue,
    decide_schedule_event,
    evolve,
)
from ticketing.inventory.reservation import Reservation
from ticketing.inventory.rules import check_event_capacity, format_price, parse_price
from ticketing.shared.errors import Conflict, InvalidInput
from ticketing.shared.http.pagination import decode_cursor, encode_cursor


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("49", "49.00"),
        ("49.5", "49.50"),
        ("0", "0.00"),
        ("0.99", "0.99"),
        ("99999999.99", "99999999.99"),
    ],
)
def test_prices_are_exact_decimals_with_two_places(text: str, expected: str) -> None:
    assert format_price(parse_price(text)) == expected
    assert parse_price(text) == Decimal(expected)


@pytest.mark.parametrize("text", ["abc", "", "-1", "1.005", "NaN", "Infinity", "100000000"])
def test_bad_prices_are_rejected(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_price(text)


def test_event_capacity_may_equal_but_not_exceed_the_venue() -> None:
    check_event_capacity(100, 100)
    with pytest.raises(InvalidInput) as raised:
        check_event_capacity(101, 100)
    assert raised.value.extensions["errors"][0]["field"] == "total_capacity"


@pytest.mark.parametrize(
    ("left", "count", "status"),
    [
        (5, 5, ReservationStatus.RESERVED),
        (5, 1, ReservationStatus.RESERVED),
        (5, 6, ReservationStatus.INSUFFICIENT),
        (0, 1, ReservationStatus.INSUFFICIENT),
    ],
)
def test_reservation_needs_enough_seats_left(
    left: int, count: int, status: ReservationStatus
) -> None:
    assert reservation_status(left, count) is status


def test_reservation_of_no_seats_is_invalid() -> None:
    with pytest.raises(InvalidInput):
        reservation_status(10, 0)


def test_a_repeat_must_ask_for_the_same_seats() -> None:
    event_id = uuid.uuid4()
    first = Reservation(uuid.uuid4(), event_id, 2, ReservationOutcome.RESERVED, 8)
    first.check_repeat(event_id, 2)
    with pytest.raises(Conflict):
        first.check_repeat(event_id, 3)
    with pytest.raises(Conflict):
        first.check_repeat(uuid.uuid4(), 2)


def test_cursor_round_trips_and_rejects_garbage() -> None:
    some_id = uuid.uuid4()
    assert decode_cursor(encode_cursor(some_id)) == some_id
    for garbage in ("@@@", "abc", "x" * 40):
        with pytest.raises(InvalidInput):
            decode_cursor(garbage)


def hall(capacity: int) -> VenueState:
    state = evolve(None, decide_register_venue(uuid.uuid4(), "Hall", "Main St 1", capacity))
    assert isinstance(state, VenueState)
    return state


@pytest.mark.parametrize(("price", "stored"), [("49", "49.00"), ("49.5", "49.50"), ("0", "0.00")])
def test_a_scheduled_event_keeps_its_price_with_two_decimals(price: str, stored: str) -> None:
    venue = hall(100)
    event = decide_schedule_event(
        uuid.uuid4(), venue, name="Gig", total_capacity=100, ticket_price=price, starts_at=None
    )
    assert event.ticket_price == stored
    assert event.venue_id == venue.id
    assert event.total_capacity == 100


def test_an_event_cannot_hold_more_seats_than_its_venue() -> None:
    with pytest.raises(InvalidInput, match="exceeds the venue"):
        decide_schedule_event(
            uuid.uuid4(),
            hall(100),
            name="Gig",
            total_capacity=101,
            ticket_price="1",
            starts_at=None,
        )


@pytest.mark.parametrize("price", ["abc", "-1", "1.005", "NaN", "Infinity", "100000000"])
def test_an_event_cannot_be_scheduled_at_a_bad_price(price: str) -> None:
    with pytest.raises(InvalidInput, match="ticket_price"):
        decide_schedule_event(
            uuid.uuid4(),
            hall(100),
            name="Gig",
            total_capacity=10,
            ticket_price=price,
            starts_at=None,
        )
