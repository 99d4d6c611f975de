"""Review: a customer's event folded as a booking's is an impossible history, reported as such
(verify and rebuild catch ImpossibleHistory; time travel must answer 404), not a crash."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from ticketing.booking.domain import CustomerRegistered, evolve, fold
from ticketing.shared.errors import ImpossibleHistory

REGISTERED = CustomerRegistered(
    customer_id=uuid.uuid4(),
    name="Cy",
    email="cy@example.com",
    address=None,
    registered_at=datetime(2026, 12, 1, tzinfo=UTC),
)


def test_evolving_a_booking_with_a_customer_event_is_an_impossible_history() -> None:
    with pytest.raises(ImpossibleHistory):
        evolve(None, REGISTERED)  # type: ignore[arg-type]


def test_folding_a_customer_stream_as_a_booking_is_an_impossible_history() -> None:
    with pytest.raises(ImpossibleHistory):
        fold([REGISTERED])  # type: ignore[list-item]
