from datetime import datetime, timedelta

import pytest

from ticketing.booking.domain import (
    check_ticket_count,
    check_visible_capacity,
    fingerprint,
    total_price,
)
from ticketing.cli.arguments import parse_duration, parse_moment
from ticketing.contracts.inventory import ReservationStatus
from ticketing.order.domain import OrderStatus, RejectionReason, order_status_of
from ticketing.shared.errors import Conflict, InvalidInput

NOW = datetime(2026, 11, 27, 12, 0, 0)


def test_ticket_count_is_capped_per_booking() -> None:
    check_ticket_count(10, maximum=10)
    with pytest.raises(InvalidInput):
        check_ticket_count(11, maximum=10)


def test_visible_capacity_check_is_a_conflict() -> None:
    check_visible_capacity(3, 3)
    with pytest.raises(Conflict) as refused:
        check_visible_capacity(2, 3)
    assert refused.value.extensions["left_capacity"] == 2


def test_total_price_is_exact() -> None:
    assert total_price("0.10", 3) == "0.30"
    assert total_price("49.99", 7) == "349.93"


def test_fingerprint_depends_on_every_byte() -> None:
    assert fingerprint(b'{"a":1}') == fingerprint(b'{"a":1}')
    assert fingerprint(b'{"a":1}') != fingerprint(b'{"a": 1}')


def test_reservation_outcomes() -> None:
    assert order_status_of(ReservationStatus.RESERVED) == (OrderStatus.CONFIRMED, None)
    assert order_status_of(ReservationStatus.INSUFFICIENT) == (
        OrderStatus.REJECTED,
        RejectionReason.INSUFFICIENT_CAPACITY,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("1w", timedelta(weeks=1)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "d", "7x", "-1d", "1.5h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_moments_are_ages_or_iso_times_in_utc() -> None:
    assert parse_moment("2h", now=NOW) == NOW - timedelta(hours=2)
    assert parse_moment("2026-11-27T10:00:00Z", now=NOW) == datetime(2026, 11, 27, 10)
    assert parse_moment("2026-11-27T11:00:00+01:00", now=NOW) == datetime(2026, 11, 27, 10)
    assert parse_moment("2026-11-27T10:00:00", now=NOW) == datetime(2026, 11, 27, 10)
    with pytest.raises(ValueError, match="not a time"):
        parse_moment("yesterday", now=NOW)
