"""Booking's domain: a booking is requested once and settled at most once, the fold of its stream
and the settlement decisions agree whatever outcomes arrive, in any order; and the rules of a
request (tickets per booking, visible capacity, exact prices, the body's fingerprint)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketing.booking.domain import (
    BookingConfirmed,
    BookingRejected,
    BookingState,
    CustomerRegistered,
    StreamEvent,
    check_ticket_count,
    check_visible_capacity,
    customer_of,
    evolve,
    fingerprint,
    fold,
    total_price,
)
from ticketing.booking.lifecycle import decide_answer
from ticketing.contracts.booking import BookingStatus
from ticketing.contracts.events import BookingRequested, OrderConfirmed, OrderRejected
from ticketing.shared.errors import Conflict, ImpossibleHistory, InvalidInput

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def settlement(
    outcome: OrderConfirmed | OrderRejected, now: datetime
) -> BookingConfirmed | BookingRejected:
    if isinstance(outcome, OrderConfirmed):
        return BookingConfirmed(
            booking_id=outcome.booking_id, order_id=outcome.order_id, confirmed_at=now
        )
    return BookingRejected(booking_id=outcome.booking_id, reason=outcome.reason, rejected_at=now)


def decide_settlement(
    state: BookingState | None, outcome: OrderConfirmed | OrderRejected, now: datetime
) -> StreamEvent | None:
    """The one event a saga outcome decides for a booking that is no hold, or None."""
    events = decide_answer(state, outcome, now, hold_for=timedelta(minutes=15), new_id=uuid.uuid4)
    assert len(events) <= 1
    return events[0] if events else None


def requested(booking_id: uuid.UUID | None = None) -> BookingRequested:
    return BookingRequested(
        message_id=uuid.uuid4(),
        booking_id=booking_id or uuid.uuid4(),
        customer_id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        ticket_count=3,
        unit_price="12.50",
        total_price="37.50",
        requested_at=NOW,
    )


def confirmed(booking_id: uuid.UUID) -> OrderConfirmed:
    return OrderConfirmed(
        message_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        booking_id=booking_id,
        event_id=uuid.uuid4(),
        ticket_count=3,
        total_price="37.50",
        confirmed_at=NOW,
    )


def rejected(booking_id: uuid.UUID, reason: str = "insufficient_capacity") -> OrderRejected:
    return OrderRejected(
        message_id=uuid.uuid4(),
        booking_id=booking_id,
        event_id=uuid.uuid4(),
        reason=reason,
        rejected_at=NOW,
    )


def test_a_request_folds_into_a_pending_booking_at_version_1() -> None:
    event = requested()
    state = fold([event])
    assert state.version == 1
    booking = state.booking
    assert (booking.id, booking.status, booking.customer_id) == (
        event.booking_id,
        BookingStatus.PENDING,
        event.customer_id,
    )
    assert (booking.unit_price, booking.total_price, booking.created_at) == ("12.50", "37.50", NOW)
    assert booking.order_id is None
    assert booking.reason is None


def test_a_confirmation_carries_the_order_and_a_rejection_its_reason() -> None:
    event = requested()
    outcome = confirmed(event.booking_id)
    state = fold([event, settlement(outcome, NOW)])
    assert (state.version, state.booking.status, state.booking.order_id) == (
        2,
        BookingStatus.CONFIRMED,
        outcome.order_id,
    )
    state = fold([event, settlement(rejected(event.booking_id, "event_not_found"), NOW)])
    assert (state.version, state.booking.status, state.booking.reason) == (
        2,
        BookingStatus.REJECTED,
        "event_not_found",
    )


def test_impossible_histories_are_refused() -> None:
    event = requested()
    with pytest.raises(ImpossibleHistory):
        fold([event, event])  # requested twice
    with pytest.raises(ImpossibleHistory):
        evolve(None, settlement(confirmed(event.booking_id), NOW))  # settled, never requested
    with pytest.raises(ImpossibleHistory):
        fold([event, settlement(confirmed(uuid.uuid4()), NOW)])  # another booking's settlement
    first = fold([event, settlement(confirmed(event.booking_id), NOW)])
    with pytest.raises(ImpossibleHistory):
        evolve(first, settlement(rejected(event.booking_id), NOW))  # settled twice
    with pytest.raises(ImpossibleHistory):
        fold([])


@given(st.lists(st.booleans(), min_size=1, max_size=6))
def test_only_the_first_outcome_settles_a_booking(outcomes: list[bool]) -> None:
    """Deciding each arriving outcome against the state so far: the first settles, every later
    one is ignored, and the fold of what was decided is the first outcome's."""
    event = requested()
    state = fold([event])
    decided = []
    for is_confirmation in outcomes:
        outcome = confirmed(event.booking_id) if is_confirmation else rejected(event.booking_id)
        settled = decide_settlement(state, outcome, NOW)
        if settled is not None:
            decided.append(settled)
            state = evolve(state, settled)
    assert len(decided) == 1
    assert isinstance(decided[0], BookingConfirmed if outcomes[0] else BookingRejected)
    assert state.version == 2
    expected = BookingStatus.CONFIRMED if outcomes[0] else BookingStatus.REJECTED
    assert state.booking.status is expected


def test_an_outcome_for_an_unknown_booking_decides_nothing() -> None:
    assert decide_settlement(None, confirmed(uuid.uuid4()), NOW) is None


def test_a_registration_is_the_customer() -> None:
    event = CustomerRegistered(
        customer_id=uuid.uuid4(),
        name="Ada",
        email="ada@example.com",
        address=None,
        registered_at=NOW,
    )
    customer = customer_of(event)
    assert (customer.id, customer.name, customer.email, customer.address, customer.created_at) == (
        event.customer_id,
        "Ada",
        "ada@example.com",
        None,
        NOW,
    )


# A customer's event folded as a booking's is an impossible history, reported as such (verify and
# rebuild catch ImpossibleHistory; time travel answers 404), not a crash.
A_CUSTOMER_S_EVENT = CustomerRegistered(
    customer_id=uuid.uuid4(),
    name="Cy",
    email="cy@example.com",
    address=None,
    registered_at=datetime(2026, 12, 1, tzinfo=UTC),
)


def test_evolving_a_booking_with_a_customer_event_is_an_impossible_history() -> None:
    with pytest.raises(ImpossibleHistory):
        evolve(None, A_CUSTOMER_S_EVENT)  # type: ignore[arg-type]


def test_folding_a_customer_stream_as_a_booking_is_an_impossible_history() -> None:
    with pytest.raises(ImpossibleHistory):
        fold([A_CUSTOMER_S_EVENT])  # type: ignore[list-item]


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
