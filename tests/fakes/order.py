"""Order's records in memory."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from ticketing.order.domain import OrderEvent
from ticketing.shared.eventstore import Cause
from ticketing.shared.unit_of_work import AlreadyRecorded


class InMemoryOrderRecords:
    """Order's records: the inbox, the order streams (one outcome each) and their causes."""

    def __init__(self) -> None:
        self.claimed: set[uuid.UUID] = set()
        self.outcomes: dict[uuid.UUID, tuple[OrderEvent, Cause]] = {}
        self.transactions = 0
        # Bookings whose ``orders`` row exists with no event (a tampered projection): their
        # key is taken, though neither the inbox nor the store knows of them.
        self.stray_rows: set[uuid.UUID] = set()

    async def record(
        self,
        message_ids: Sequence[uuid.UUID],
        decide_at: Callable[[datetime], Sequence[tuple[OrderEvent, Cause]]],
    ) -> None:
        outcomes = decide_at(datetime.now(UTC))
        taken = set(message_ids) & self.claimed
        bookings = [event.booking_id for event, _ in outcomes]
        booked = set(bookings) & (set(self.outcomes) | self.stray_rows)
        repeated = len(set(message_ids)) < len(message_ids) or len(set(bookings)) < len(bookings)
        if taken or booked or repeated:
            raise AlreadyRecorded(f"claimed {taken or ''} recorded {booked or ''}")
        self.claimed.update(message_ids)
        for event, cause in outcomes:
            self.outcomes[event.booking_id] = (event, cause)
        self.transactions += 1

    async def has_outcome(self, booking_id: uuid.UUID) -> bool:
        return booking_id in self.outcomes
