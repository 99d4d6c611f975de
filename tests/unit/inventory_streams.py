"""Events of one inventory event's stream, built as the decider records them, and their fold."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from ticketing.inventory.domain import (
    EventScheduled,
    EventState,
    EventStreamEvent,
    ReservationRefused,
    SeatsReserved,
    fold,
)


def event_state(events: Iterable[EventStreamEvent]) -> EventState:
    state = fold(events)
    assert isinstance(state, EventState)
    return state


def reserve(state: EventState, booking_id: uuid.UUID, count: int) -> EventStreamEvent:
    """What a reservation of ``count`` seats records (the rule the history is built with)."""
    if count <= state.left_capacity:
        return SeatsReserved(
            event_id=state.id,
            booking_id=booking_id,
            ticket_count=count,
            left_capacity=state.left_capacity - count,
        )
    return ReservationRefused(
        event_id=state.id,
        booking_id=booking_id,
        ticket_count=count,
        left_capacity=state.left_capacity,
    )


def scheduled(event_id: uuid.UUID, capacity: int) -> EventScheduled:
    return EventScheduled(
        event_id=event_id,
        venue_id=uuid.uuid4(),
        name="Concert",
        total_capacity=capacity,
        ticket_price="10.00",
        starts_at=None,
    )
