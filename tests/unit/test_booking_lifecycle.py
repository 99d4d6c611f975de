"""The booking lifecycle's decisions (ADR 17): each rule of issue 19 that booking decides, and a
property over any order of saga answers, confirms, cancels and clock ticks: the decided events
always fold, and a booking asks for its seats back at most once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ticketing.booking.domain import (
    BookingConfirmed,
    BookingHeld,
    BookingRejected,
    BookingState,
    CancellationRequested,
    SeatsReturned,
    StreamEvent,
    evolve,
    fold,
)
from ticketing.booking.lifecycle import (
    Caller,
    check_not_expired,
    decide_answer,
    decide_cancel,
    decide_confirm,
    decide_expiry,
)
from ticketing.contracts.booking import BookingStatus
from ticketing.contracts.events import (
    BookingCancelled,
    BookingRequested,
    HoldExpired,
    OrderConfirmed,
    OrderRejected,
    OrderReleased,
)
from ticketing.shared.errors import Conflict, Forbidden

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
HOLD = timedelta(minutes=15)
OWNER = Caller("box-office")


def requested(*, hold: bool = False, by: str | None = "box-office") -> BookingState:
    return fold(
        [
            BookingRequested(
                message_id=uuid.uuid4(),
                booking_id=uuid.uuid4(),
                customer_id=uuid.uuid4(),
                event_id=uuid.uuid4(),
                ticket_count=2,
                unit_price="10.00",
                total_price="20.00",
                requested_at=NOW,
                hold=hold,
                requested_by=by,
            )
        ]
    )


def confirmed(state: BookingState) -> OrderConfirmed:
    b = state.booking
    return OrderConfirmed(
        message_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        booking_id=b.id,
        event_id=b.event_id,
        ticket_count=b.ticket_count,
        total_price=b.total_price,
        confirmed_at=NOW,
    )


def rejected(state: BookingState) -> OrderRejected:
    b = state.booking
    return OrderRejected(
        message_id=uuid.uuid4(),
        booking_id=b.id,
        event_id=b.event_id,
        reason="customer_limit_reached",
        rejected_at=NOW,
    )


def released(state: BookingState) -> OrderReleased:
    b = state.booking
    return OrderReleased(
        message_id=uuid.uuid4(),
        order_id=b.order_id or uuid.uuid4(),
        booking_id=b.id,
        event_id=b.event_id,
        ticket_count=b.ticket_count,
        reason="cancelled",
        released_at=NOW,
    )


def apply(state: BookingState, events: list[StreamEvent]) -> BookingState:
    for event in events:
        state = evolve(state, event)
    return state


def answer(state: BookingState, saga: object, at: datetime = NOW) -> BookingState:
    assert isinstance(saga, OrderConfirmed | OrderRejected | OrderReleased)
    return apply(state, decide_answer(state, saga, at, hold_for=HOLD, new_id=uuid.uuid4))


def held() -> BookingState:
    state = requested(hold=True)
    return answer(state, confirmed(state))


def test_a_hold_is_held_until_its_time_and_a_plain_booking_confirmed() -> None:
    state = held()
    assert state.booking.status is BookingStatus.HELD
    assert state.booking.expires_at == NOW + HOLD
    assert state.booking.order_id is not None
    plain = requested()
    assert answer(plain, confirmed(plain)).booking.status is BookingStatus.CONFIRMED


def test_confirming_a_hold_and_confirming_again() -> None:
    state = held()
    events = decide_confirm(state, OWNER, NOW + timedelta(minutes=1), uuid.uuid4)
    assert [type(e) for e in events] == [BookingConfirmed]
    state = apply(state, events)
    assert state.booking.status is BookingStatus.CONFIRMED
    assert state.booking.expires_at is None
    assert decide_confirm(state, OWNER, NOW, uuid.uuid4) == []  # idempotent


def test_confirming_a_pending_booking_is_a_409_to_retry() -> None:
    with pytest.raises(Conflict) as refused:
        decide_confirm(requested(hold=True), OWNER, NOW, uuid.uuid4)
    assert refused.value.extensions["retry_after"] == 1


@pytest.mark.parametrize("status", ["EXPIRED", "CANCELLING", "CANCELLED", "REJECTED"])
def test_confirming_a_booking_past_its_hold_is_a_409(status: str) -> None:
    state = ended(status)
    with pytest.raises(Conflict) as refused:
        decide_confirm(state, OWNER, NOW, uuid.uuid4)
    assert "retry_after" not in refused.value.extensions


def ended(status: str) -> BookingState:
    """A booking that ended in ``status``."""
    if status == "REJECTED":
        state = requested()
        return answer(state, rejected(state))
    state = held()
    if status == "EXPIRED":
        return apply(state, decide_expiry(state, NOW + HOLD, uuid.uuid4))
    state = apply(state, decide_cancel(state, OWNER, NOW, uuid.uuid4))
    if status == "CANCELLED":
        state = answer(state, released(state))
    assert state.booking.status == status
    return state


def test_a_hold_confirmed_at_or_after_its_time_expires_instead() -> None:
    state = held()
    events = decide_confirm(state, OWNER, NOW + HOLD, uuid.uuid4)
    assert [type(e) for e in events] == [HoldExpired]
    after = apply(state, events)
    with pytest.raises(Conflict):
        check_not_expired(after)


def test_only_the_requesting_client_or_an_admin_changes_a_booking() -> None:
    state = held()
    for decide in (decide_confirm, decide_cancel):
        with pytest.raises(Forbidden):
            decide(state, Caller("someone-else"), NOW, uuid.uuid4)
        assert decide(state, Caller("someone-else", admin=True), NOW, uuid.uuid4)
    legacy = requested(hold=True, by=None)  # requested before the requester was recorded
    legacy = answer(legacy, confirmed(legacy))
    with pytest.raises(Forbidden):
        decide_cancel(legacy, OWNER, NOW, uuid.uuid4)
    assert decide_cancel(legacy, Caller("ops", admin=True), NOW, uuid.uuid4)


def test_a_cancel_gives_the_seats_back_once_inventory_released_them() -> None:
    for start in (held(), answer(requested(), confirmed(requested()))):
        cancelled = decide_cancel(start, OWNER, NOW, uuid.uuid4)
        assert [type(e) for e in cancelled] == [BookingCancelled]
        state = apply(start, cancelled)
        assert state.booking.status is BookingStatus.CANCELLING
        assert decide_cancel(state, OWNER, NOW, uuid.uuid4) == []  # a repeat
        state = answer(state, released(state))
        assert state.booking.status is BookingStatus.CANCELLED
        assert decide_cancel(state, OWNER, NOW, uuid.uuid4) == []
        assert decide_answer(state, released(state), NOW, hold_for=HOLD, new_id=uuid.uuid4) == []


@pytest.mark.parametrize("status", ["EXPIRED", "REJECTED"])
def test_cancelling_an_expired_or_rejected_booking_is_a_409(status: str) -> None:
    with pytest.raises(Conflict):
        decide_cancel(ended(status), OWNER, NOW, uuid.uuid4)


def test_a_cancel_while_pending_waits_for_the_outcome_then_compensates() -> None:
    for hold in (False, True):
        state = requested(hold=hold)
        asked = decide_cancel(state, OWNER, NOW, uuid.uuid4)
        assert [type(e) for e in asked] == [CancellationRequested]
        state = apply(state, asked)
        assert (state.booking.status, state.booking.cancel_requested) == (
            BookingStatus.PENDING,
            True,
        )
        assert decide_cancel(state, OWNER, NOW, uuid.uuid4) == []  # never asked twice
        events = decide_answer(state, confirmed(state), NOW, hold_for=HOLD, new_id=uuid.uuid4)
        first = BookingHeld if hold else BookingConfirmed
        assert [type(e) for e in events] == [first, BookingCancelled]
        assert apply(state, events).booking.status is BookingStatus.CANCELLING
    state = requested()
    state = apply(state, decide_cancel(state, OWNER, NOW, uuid.uuid4))
    events = decide_answer(state, rejected(state), NOW, hold_for=HOLD, new_id=uuid.uuid4)
    assert [type(e) for e in events] == [BookingRejected]  # nothing was reserved


def test_the_expiry_takes_only_holds_past_their_time() -> None:
    state = held()
    assert decide_expiry(state, NOW + HOLD - timedelta(microseconds=1), uuid.uuid4) == []
    expired = decide_expiry(state, NOW + HOLD, uuid.uuid4)
    assert [type(e) for e in expired] == [HoldExpired]
    state = apply(state, expired)
    assert decide_expiry(state, NOW + 2 * HOLD, uuid.uuid4) == []
    # The seats of an expired hold come back without another change of state.
    assert decide_answer(state, released(state), NOW, hold_for=HOLD, new_id=uuid.uuid4) == []


def test_a_second_saga_outcome_changes_nothing() -> None:
    state = held()
    assert decide_answer(state, confirmed(state), NOW, hold_for=HOLD, new_id=uuid.uuid4) == []
    assert decide_answer(state, rejected(state), NOW, hold_for=HOLD, new_id=uuid.uuid4) == []


STEPS = st.lists(
    st.sampled_from(
        ["confirmed", "rejected", "released", "confirm", "cancel", "admin-cancel", "tick"]
    ),
    max_size=12,
)


@settings(max_examples=300)
@given(hold=st.booleans(), steps=STEPS)
def test_any_order_of_steps_folds_and_asks_for_the_seats_back_at_most_once(
    hold: bool, steps: list[str]
) -> None:
    """Whatever arrives in whatever order, each decision is made on the state so far (as on
    the locked row): the events fold, a cancel or an expiry asks for the seats back at most
    once, and only for a booking whose seats were reserved."""
    state = requested(hold=hold)
    history: list[StreamEvent] = []
    now = NOW
    reserved = False
    for step in steps:
        now += timedelta(minutes=6)
        try:
            if step in ("confirmed", "rejected", "released"):
                made: OrderConfirmed | OrderRejected | OrderReleased
                if step == "confirmed":
                    made = confirmed(state)
                elif step == "rejected":
                    made = rejected(state)
                else:
                    made = released(state)
                events = decide_answer(state, made, now, hold_for=HOLD, new_id=uuid.uuid4)
            elif step == "confirm":
                events = decide_confirm(state, OWNER, now, uuid.uuid4)
            elif step in ("cancel", "admin-cancel"):
                caller = OWNER if step == "cancel" else Caller("ops", admin=True)
                events = decide_cancel(state, caller, now, uuid.uuid4)
            else:
                events = decide_expiry(state, now, uuid.uuid4)
        except Conflict:
            continue
        state = apply(state, events)
        history += events
        reserved = reserved or any(isinstance(e, BookingHeld | BookingConfirmed) for e in history)
    releases = [e for e in history if isinstance(e, BookingCancelled | HoldExpired)]
    assert len(releases) <= 1
    if releases:
        assert reserved
    assert state.version == 1 + len(history)
    if any(isinstance(e, SeatsReturned) for e in history):
        assert state.booking.status is BookingStatus.CANCELLED
