"""Order's decider: the outcome of a booking request, and the order it makes."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketing.contracts.events import (
    BookingCancelled,
    BookingRequested,
    HoldExpired,
    OrderConfirmed,
    OrderRejected,
    OrderReleased,
    SeatRelease,
)
from ticketing.contracts.inventory import ReleaseItemResult, ReleaseOutcome, ReservationOutcome
from ticketing.order.domain import (
    EVENT_TYPES,
    ImpossibleRelease,
    OrderEvent,
    OrderState,
    OrderStatus,
    RejectionReason,
    Verdict,
    check_released,
    decide_release,
    decide_verdict,
    evolve,
    to_release,
    version_of,
)
from ticketing.shared.errors import ImpossibleHistory
from ticketing.shared.event_codec import EventCodec

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


# --- releases


def _confirmed(tickets: int = 2) -> OrderConfirmed:
    return OrderConfirmed(
        message_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        booking_id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        ticket_count=tickets,
        total_price="50.00",
        confirmed_at=NOW,
    )


def _release_of(
    confirmed: OrderConfirmed, kind: type[SeatRelease] = BookingCancelled, **changed: Any
) -> SeatRelease:
    fields: dict[str, Any] = {
        "message_id": uuid.uuid4(),
        "booking_id": confirmed.booking_id,
        "event_id": confirmed.event_id,
        "ticket_count": confirmed.ticket_count,
        "cancelled_at" if kind is BookingCancelled else "expired_at": NOW,
    }
    return kind(**{**fields, **changed})


def _released(state: OrderState, **changed: Any) -> OrderReleased:
    fields: dict[str, Any] = {
        "message_id": uuid.uuid4(),
        "order_id": state.id,
        "booking_id": state.booking_id,
        "event_id": state.event_id,
        "ticket_count": state.ticket_count,
        "reason": "cancelled",
        "released_at": NOW,
    }
    return OrderReleased(**{**fields, **changed})


def _answer(state: OrderState, outcome: ReleaseOutcome, tickets: int) -> ReleaseItemResult:
    return ReleaseItemResult(state.booking_id, outcome, tickets, 7)


@pytest.mark.parametrize(
    ("kind", "reason"), [(BookingCancelled, "cancelled"), (HoldExpired, "expired")]
)
def test_a_confirmed_order_is_released_once_saying_why(
    kind: type[SeatRelease], reason: str
) -> None:
    confirmed = _confirmed(3)
    state = evolve(None, confirmed)
    release = _release_of(confirmed, kind)
    assert to_release(state, release)
    message_id = uuid.uuid4()
    event = decide_release(
        state, release, _answer(state, ReleaseOutcome.RELEASED, 3), message_id=message_id, now=NOW
    )
    assert event == OrderReleased(
        message_id=message_id,
        order_id=confirmed.order_id,
        booking_id=confirmed.booking_id,
        event_id=confirmed.event_id,
        ticket_count=3,
        reason=reason,  # type: ignore[arg-type]
        released_at=NOW,
    )
    assert version_of(event) == 2
    released = evolve(state, event)
    assert released == dataclasses.replace(
        state, status=OrderStatus.RELEASED, reason=reason, version=2
    )
    assert not to_release(released, release)  # released before: nothing more to give back
    assert not to_release(released, _release_of(confirmed, HoldExpired))
    with pytest.raises(ImpossibleHistory):
        evolve(released, _released(state))


def test_a_release_of_no_order_or_a_rejected_one_cannot_be() -> None:
    confirmed = _confirmed()
    with pytest.raises(ImpossibleRelease, match="which has no order"):
        to_release(None, _release_of(confirmed))
    rejected = evolve(
        None,
        OrderRejected(
            message_id=uuid.uuid4(),
            booking_id=confirmed.booking_id,
            event_id=confirmed.event_id,
            reason="insufficient_capacity",
            rejected_at=NOW,
        ),
    )
    with pytest.raises(ImpossibleRelease, match="whose order is REJECTED"):
        to_release(rejected, _release_of(confirmed, HoldExpired))


@pytest.mark.parametrize("changed", [{"event_id": uuid.uuid4()}, {"ticket_count": 5}])
def test_a_release_naming_other_seats_than_its_order_holds_cannot_be(
    changed: dict[str, Any],
) -> None:
    confirmed = _confirmed(2)
    with pytest.raises(ImpossibleRelease, match="its order holds 2"):
        to_release(evolve(None, confirmed), _release_of(confirmed, **changed))


@pytest.mark.parametrize(
    ("outcome", "tickets"),
    [(ReleaseOutcome.NOT_RESERVED, 0), (ReleaseOutcome.RELEASED, 1), (ReleaseOutcome.RELEASED, 3)],
)
def test_inventory_holding_no_seats_or_others_for_a_confirmed_order_cannot_be(
    outcome: ReleaseOutcome, tickets: int
) -> None:
    confirmed = _confirmed(2)
    state = evolve(None, confirmed)
    answer = _answer(state, outcome, tickets)
    with pytest.raises(ImpossibleRelease, match=f"answered {outcome.value}"):
        check_released(state, answer)
    with pytest.raises(ImpossibleRelease):
        decide_release(state, _release_of(confirmed), answer, message_id=uuid.uuid4(), now=NOW)


def test_a_release_of_another_order_cannot_follow() -> None:
    state = evolve(None, _confirmed(2))
    for changed in (
        {"order_id": uuid.uuid4()},
        {"booking_id": uuid.uuid4()},
        {"event_id": uuid.uuid4()},
        {"ticket_count": 1},
    ):
        with pytest.raises(ImpossibleHistory, match="is not of order"):
            evolve(state, _released(state, **changed))


@given(st.lists(st.sampled_from(["confirmed", "rejected", "released"]), min_size=1, max_size=4))
def test_a_stream_folds_only_as_an_outcome_then_at_most_one_release_of_a_confirmation(
    kinds: list[str],
) -> None:
    """Every history of one booking's order: only [confirmed], [rejected] and [confirmed,
    released] fold; anything else is impossible, wherever it goes wrong."""
    confirmed = _confirmed(2)
    template = evolve(None, confirmed)
    events: dict[str, OrderEvent] = {
        "confirmed": confirmed,
        "rejected": OrderRejected(
            message_id=uuid.uuid4(),
            booking_id=confirmed.booking_id,
            event_id=confirmed.event_id,
            reason="insufficient_capacity",
            rejected_at=NOW,
        ),
        "released": _released(template),
    }
    foldable = kinds in (["confirmed"], ["rejected"], ["confirmed", "released"])
    state: OrderState | None = None
    try:
        for kind in kinds:
            state = evolve(state, events[kind])
    except ImpossibleHistory:
        assert not foldable
    else:
        assert foldable
        assert state is not None
        assert state.version == len(kinds)
        assert (
            state.status
            is {
                "confirmed": OrderStatus.CONFIRMED,
                "rejected": OrderStatus.REJECTED,
                "released": OrderStatus.RELEASED,
            }[kinds[-1]]
        )


def test_a_release_is_stored_as_it_is_published() -> None:
    codec = EventCodec(EVENT_TYPES)
    event = _released(evolve(None, _confirmed()), reason="expired")
    stored = codec.encode(event)
    assert stored.encode() == msgspec.json.encode(event)
    assert codec.decode("OrderReleased", 1, stored) == event
