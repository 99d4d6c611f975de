"""Booking's status log in memory: events committed at positions in any order, as concurrent
transactions commit them, for the status feed to read."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from ticketing.booking.domain import BOOKING_STREAM
from ticketing.shared.store.eventstore import Recorded


class InMemoryStatusLog:
    """Booking's store as the status feed reads it, where the test decides when each event
    becomes visible (commits), whatever its position: a lower position may commit later."""

    def __init__(self) -> None:
        self.events: dict[int, Recorded] = {}
        self.customers: dict[uuid.UUID, uuid.UUID] = {}
        self.reads = 0

    def commit(self, *recorded: Recorded) -> None:
        for item in recorded:
            self.events[item.position] = item
            event = item.event
            if item.stream_type == BOOKING_STREAM and hasattr(event, "customer_id"):
                self.customers[item.stream_id] = event.customer_id

    async def start_position(self, before: datetime) -> int:
        earlier = [p for p, r in self.events.items() if r.recorded_at < before]
        return max(earlier, default=0)

    async def after(self, position: int, limit: int) -> list[Recorded]:
        self.reads += 1
        return [self.events[p] for p in sorted(self.events) if p > position][:limit]

    async def customers_of(self, booking_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
        return {b: self.customers[b] for b in booking_ids if b in self.customers}

    async def of_customer(
        self, customer_id: uuid.UUID, *, after: int, upto: int, limit: int
    ) -> list[Recorded]:
        mine = [
            self.events[p]
            for p in sorted(self.events)
            if after < p <= upto and self.customers.get(self.events[p].stream_id) == customer_id
        ]
        return mine[:limit]


def recorded(position: int, event: object, *, stream_id: uuid.UUID, version: int) -> Recorded:
    """``event`` as the store holds it at ``position`` in a booking's stream."""
    return Recorded(
        position=position,
        event_id=uuid.uuid4(),
        stream_id=stream_id,
        stream_type=BOOKING_STREAM,
        version=version,
        event_type=type(event).__name__,
        event=event,
        actor="test",
        correlation_id=None,
        causation_id=None,
        recorded_at=datetime.now(UTC),
    )
