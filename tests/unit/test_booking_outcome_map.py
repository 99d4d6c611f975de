"""The outcomes booking's metrics count (issue 22) are the statuses the domain's evolve gives:
checked along every path of the lifecycle, so the counter's map cannot drift from the domain."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from ticketing.booking import domain
from ticketing.booking.lifecycle import (
    Caller,
    decide_answer,
    decide_cancel,
    decide_confirm,
    decide_expiry,
)
from ticketing.booking.metrics import SETTLEMENTS, STATUS_REACHED_BY
from ticketing.contracts.booking import BookingStatus
from ticketing.contracts.events import (
    BookingRequested,
    OrderConfirmed,
    OrderRejected,
    OrderReleased,
)

OWNER = Caller("box-office")


def _walk(state: domain.BookingState, events: Sequence[domain.StreamEvent]) -> domain.BookingState:
    """Apply ``events``, checking that each one counted leads to its outcome and that each
    one not counted leads to no outcome."""
    for event in events:
        state = domain.evolve(state, event)
        status = state.booking.status
        if type(event) in STATUS_REACHED_BY:
            assert status is STATUS_REACHED_BY[type(event)]
        else:
            assert status in (BookingStatus.PENDING, BookingStatus.CANCELLING)
    return state


@pytest.mark.parametrize("hold", [False, True])
@pytest.mark.parametrize("path", ["confirmed", "rejected", "cancelled", "expired", "early"])
def test_each_outcome_is_the_status_its_event_leads_to(hold: bool, path: str) -> None:
    """The map the counter reads agrees with the domain's own evolve along every path of the
    lifecycle (ADR 17), not a second opinion of it."""
    booking_id, now = uuid.uuid4(), datetime.now(UTC)
    pending = domain.evolve(
        None,
        BookingRequested(
            message_id=uuid.uuid4(),
            booking_id=booking_id,
            customer_id=uuid.uuid4(),
            event_id=uuid.uuid4(),
            ticket_count=1,
            unit_price="25.00",
            total_price="25.00",
            requested_at=now,
            hold=hold,
            requested_by="box-office",
        ),
    )
    if path == "early":  # cancelled while PENDING, then the saga answers
        pending = _walk(pending, decide_cancel(pending, OWNER, now, uuid.uuid4))
    answer: OrderConfirmed | OrderRejected = OrderConfirmed(
        message_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        booking_id=booking_id,
        event_id=uuid.uuid4(),
        ticket_count=1,
        total_price="25.00",
        confirmed_at=now,
    )
    if path == "rejected":
        answer = OrderRejected(
            message_id=uuid.uuid4(),
            booking_id=booking_id,
            event_id=uuid.uuid4(),
            reason="sold out",
            rejected_at=now,
        )
    hold_for = timedelta(minutes=15)
    state = _walk(
        pending, decide_answer(pending, answer, now, hold_for=hold_for, new_id=uuid.uuid4)
    )
    if path == "confirmed" and hold:
        state = _walk(state, decide_confirm(state, OWNER, now, uuid.uuid4))
    if path == "expired" and hold:
        state = _walk(state, decide_expiry(state, now + hold_for, uuid.uuid4))
    if path == "cancelled":
        state = _walk(state, decide_cancel(state, OWNER, now, uuid.uuid4))
    if state.booking.status is BookingStatus.CANCELLING:
        assert isinstance(answer, OrderConfirmed)
        released = OrderReleased(
            message_id=uuid.uuid4(),
            order_id=answer.order_id,
            booking_id=booking_id,
            event_id=uuid.uuid4(),
            ticket_count=1,
            reason="cancelled",
            released_at=now,
        )
        state = _walk(
            state, decide_answer(state, released, now, hold_for=hold_for, new_id=uuid.uuid4)
        )
    assert state.booking.status in STATUS_REACHED_BY.values()
    assert set(SETTLEMENTS) <= set(STATUS_REACHED_BY)
