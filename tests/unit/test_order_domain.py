"""Order's decider: the outcome of a booking request, and the order it makes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketing.contracts.events import (
    BookingRequested,
    OrderConfirmed,
    OrderRejected,
)
from ticketing.contracts.inventory import (
    ReservationOutcome,
    ReservationStatus,
)
from ticketing.order.domain import (
    EVENT_TYPES,
    OrderState,
    OrderStatus,
    RejectionReason,
    Verdict,
    decide_verdict,
    evolve,
    order_status_of,
)
from ticketing.shared.errors import ImpossibleHistory
from ticketing.shared.store.codec import EventCodec

NOW = datetime(2026, 12, 6, 10, 0, 0, 123456, tzinfo=UTC)

requests = st.builds(
    BookingRequested,
    message_id=st.uuids(),
    booking_id=st.uuids(),
    customer_id=st.uuids(),
    event_id=st.uuids(),
    ticket_count=st.integers(1, 10),
    unit_price=st.just("25.00"),
    total_price=st.decimals("0", "99999.99", places=2).map(str),
    requested_at=st.datetimes(timezones=st.just(UTC)),
)
outcomes = st.sampled_from(ReservationOutcome)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(requests, outcomes, st.uuids(), st.uuids(), moments)
def test_an_outcome_is_the_order_or_the_rejection_of_what_was_asked(
    requested: BookingRequested,
    outcome: ReservationOutcome,
    order_id: uuid.UUID,
    message_id: uuid.UUID,
    now: datetime,
) -> None:
    event = decide_verdict(requested, outcome, order_id=order_id, message_id=message_id, now=now)
    assert (event.message_id, event.booking_id, event.event_id) == (
        message_id,
        requested.booking_id,
        requested.event_id,
    )
    state = evolve(None, event)
    assert (state.booking_id, state.event_id, state.version) == (
        requested.booking_id,
        requested.event_id,
        1,
    )
    if outcome is ReservationOutcome.RESERVED:
        assert event == OrderConfirmed(
            message_id=message_id,
            order_id=order_id,
            booking_id=requested.booking_id,
            event_id=requested.event_id,
            ticket_count=requested.ticket_count,
            total_price=requested.total_price,
            confirmed_at=now,
        )
        assert state == OrderState(
            id=order_id,
            booking_id=requested.booking_id,
            event_id=requested.event_id,
            status=OrderStatus.CONFIRMED,
            reason=None,
            ticket_count=requested.ticket_count,
            total_price=Decimal(requested.total_price),
            version=1,
        )
    else:
        assert isinstance(event, OrderRejected)
        assert event.rejected_at == now
        # A rejection has no order: its row is named by the event, as a rebuild names it.
        assert (state.id, state.status, state.reason) == (
            message_id,
            OrderStatus.REJECTED,
            event.reason,
        )
        assert (state.ticket_count, state.total_price) == (None, None)


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        (ReservationOutcome.INSUFFICIENT, RejectionReason.INSUFFICIENT_CAPACITY),
        (ReservationOutcome.EVENT_NOT_FOUND, RejectionReason.EVENT_NOT_FOUND),
        (ReservationOutcome.CONFLICT, RejectionReason.RESERVATION_CONFLICT),
        (ReservationOutcome.OVER_LIMIT, RejectionReason.CUSTOMER_LIMIT_REACHED),
    ],
)
def test_each_refusal_names_its_reason(
    outcome: ReservationOutcome, reason: RejectionReason
) -> None:
    event = decide_verdict(
        _requested(), outcome, order_id=uuid.uuid4(), message_id=uuid.uuid4(), now=NOW
    )
    assert isinstance(event, OrderRejected)
    assert event.reason == reason.value


@given(requests, outcomes, outcomes)
def test_a_booking_has_one_outcome_and_a_second_is_impossible(
    requested: BookingRequested, first: ReservationOutcome, second: ReservationOutcome
) -> None:
    state = evolve(None, _decided(requested, first))
    with pytest.raises(ImpossibleHistory):
        evolve(state, _decided(requested, second))


def test_only_an_order_event_can_start_a_stream() -> None:
    with pytest.raises(ImpossibleHistory):
        evolve(None, _requested())  # type: ignore[arg-type]


@given(requests, outcomes, moments)
def test_the_stored_event_reads_back_as_it_was_decided(
    requested: BookingRequested, outcome: ReservationOutcome, now: datetime
) -> None:
    """Stored as it is published (the same JSON), and read back equal: what the relay sends
    is what the saga decided."""
    codec = EventCodec(EVENT_TYPES)
    event = decide_verdict(
        requested, outcome, order_id=uuid.uuid4(), message_id=uuid.uuid4(), now=now
    )
    stored = codec.encode(event)
    assert stored.encode() == msgspec.json.encode(event)
    assert codec.decode(type(event).__name__, 1, stored) == event


def _decided(requested: BookingRequested, outcome: ReservationOutcome) -> Verdict:
    return decide_verdict(
        requested, outcome, order_id=uuid.uuid4(), message_id=uuid.uuid4(), now=NOW
    )


def _requested() -> BookingRequested:
    return BookingRequested(
        message_id=uuid.uuid4(),
        booking_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        ticket_count=2,
        unit_price="25.00",
        total_price="50.00",
        requested_at=NOW,
    )


def test_reservation_outcomes() -> None:
    assert order_status_of(ReservationStatus.RESERVED) == (OrderStatus.CONFIRMED, None)
    assert order_status_of(ReservationStatus.INSUFFICIENT) == (
        OrderStatus.REJECTED,
        RejectionReason.INSUFFICIENT_CAPACITY,
    )
