"""Inventory in memory: the reservation call other services make."""

from __future__ import annotations

import uuid
from decimal import Decimal

from ticketing.contracts.inventory import ReservationItem, ReservationItemResult
from ticketing.inventory.domain import EventState, Reservation, decide
from ticketing.shared.errors import Unavailable


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
