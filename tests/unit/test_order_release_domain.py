"""Order's decider for releases: a confirmed order gives its seats back once, saying why, and
only a history of an outcome then at most one release of a confirmation folds."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketing.contracts.events import (
    BookingCancelled,
    HoldExpired,
    OrderConfirmed,
    OrderRejected,
    OrderReleased,
    SeatRelease,
)
from ticketing.contracts.inventory import ReleaseItemResult, ReleaseOutcome
from ticketing.order.domain import (
    EVENT_TYPES,
    ImpossibleRelease,
    OrderEvent,
    OrderState,
    OrderStatus,
    check_released,
    decide_release,
    evolve,
    to_release,
    version_of,
)
from ticketing.shared.errors import ImpossibleHistory
from ticketing.shared.store.codec import EventCodec

NOW = datetime(2026, 12, 6, 10, 0, 0, 123456, tzinfo=UTC)


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
