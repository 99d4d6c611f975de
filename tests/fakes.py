"""In-memory stand-ins for the ports the services' use cases talk to, so that the use cases run
in fast unit tests (the SQL adapters and the HTTP clients are tested against the real things in
tests/integration). Each keeps the rules its real counterpart keeps: unique keys refuse a
second write, a reservation is decided by inventory's own pure ``decide``."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal

from ticketing.contracts.inventory import ReservationItem, ReservationItemResult
from ticketing.inventory.domain import EventState, Reservation, decide
from ticketing.order.domain import OrderEvent
from ticketing.shared.errors import Unavailable
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


class InMemoryInventory:
    """Inventory's reservation call, decided by inventory's own domain over events held here;
    ``down`` makes it answer as an unreachable inventory does."""

    def __init__(self) -> None:
        self.states: dict[uuid.UUID, EventState] = {}
        self.reservations: dict[uuid.UUID, Reservation] = {}
        self.calls: list[list[ReservationItem]] = []
        self.down = False

    def schedule(self, capacity: int) -> uuid.UUID:
        event_id = uuid.uuid4()
        venue = uuid.uuid4()
        self.states[event_id] = EventState(
            event_id, venue, "Show", capacity, capacity, Decimal("10.00"), None, 1
        )
        return event_id

    async def reserve_many(
        self, items: list[ReservationItem], *, correlation_id: str | None = None
    ) -> list[ReservationItemResult]:
        del correlation_id
        self.calls.append(list(items))
        if self.down:
            raise Unavailable("inventory is unreachable")
        existing = {
            item.booking_id: self.reservations[item.booking_id]
            for item in items
            if item.booking_id in self.reservations
        }
        decisions = decide(items, existing, self.states)
        self.states.update(decisions.states)
        for reservation in decisions.new:
            self.reservations[reservation.booking_id] = reservation
        return decisions.results
