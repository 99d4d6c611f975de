"""Order's records in memory, and inventory as the saga calls it (reservations and releases)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from tests.fakes.inventory import InMemoryInventory
from ticketing.contracts.inventory import (
    ReleaseItem,
    ReleaseItemResult,
    ReservationItem,
    ReservationItemResult,
)
from ticketing.order.domain import OrderEvent, OrderState, evolve, version_of
from ticketing.shared.db.unit_of_work import AlreadyRecorded
from ticketing.shared.errors import Unavailable
from ticketing.shared.store.eventstore import Cause

Pause = Callable[[], Awaitable[object]]


async def _nothing() -> None:
    return None


class InMemoryOrderRecords:
    """Order's records: the inbox, and the order streams (version -> event with its cause),
    written all or nothing per call. The database's keys are kept: a message is claimed once,
    a stream's version recorded once, and an outcome's row added once. As there, nothing
    checks that a release follows its booking's confirmation (the service reads first)."""

    def __init__(self) -> None:
        self.claimed: set[uuid.UUID] = set()
        self.streams: dict[uuid.UUID, dict[int, tuple[OrderEvent, Cause]]] = {}
        self.transactions = 0
        # Bookings whose ``orders`` row exists with no event (a tampered projection): their
        # key is taken, though neither the inbox nor the store knows of them.
        self.stray_rows: set[uuid.UUID] = set()
        # Awaited on entering every call: lets other tasks run there, as a database round
        # trip does.
        self.pause: Pause = _nothing

    @property
    def outcomes(self) -> dict[uuid.UUID, tuple[OrderEvent, Cause]]:
        """Each booking's outcome (its stream's version 1) with its cause."""
        return {booking: stream[1] for booking, stream in self.streams.items() if 1 in stream}

    @property
    def releases(self) -> dict[uuid.UUID, tuple[OrderEvent, Cause]]:
        """Each released booking's release (its stream's version 2) with its cause."""
        return {booking: stream[2] for booking, stream in self.streams.items() if 2 in stream}

    async def record(
        self,
        message_ids: Sequence[uuid.UUID],
        decide_at: Callable[[datetime], Sequence[tuple[OrderEvent, Cause]]],
    ) -> None:
        await self.pause()
        changes = decide_at(datetime.now(UTC))
        taken = set(message_ids) & self.claimed
        keys = [(event.booking_id, version_of(event)) for event, _ in changes]
        booked = {
            (booking, version)
            for booking, version in keys
            if version in self.streams.get(booking, {})
            or (version == 1 and booking in self.stray_rows)
        }
        repeated = len(set(message_ids)) < len(message_ids) or len(set(keys)) < len(keys)
        if taken or booked or repeated:
            raise AlreadyRecorded(f"claimed {taken or ''} recorded {booked or ''}")
        self.claimed.update(message_ids)
        for (booking, version), change in zip(keys, changes, strict=True):
            self.streams.setdefault(booking, {})[version] = change
        self.transactions += 1

    async def has_verdict(self, booking_id: uuid.UUID) -> bool:
        await self.pause()
        return 1 in self.streams.get(booking_id, {})

    async def orders(self, booking_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, OrderState]:
        await self.pause()
        found: dict[uuid.UUID, OrderState] = {}
        for booking_id in set(booking_ids) & set(self.streams):
            state: OrderState | None = None
            stream = self.streams[booking_id]
            for version in sorted(stream):
                state = evolve(state, stream[version][0])
            assert state is not None
            found[booking_id] = state
        return found


class SagaInventory:
    """Inventory as the saga calls it: reservations answered by inventory's own service over
    in-memory records (:class:`InMemoryInventory`), and releases answered as the release
    contract says: a booking id's reserved seats go back to its event once, a repeat answers
    as the first release did, and a booking id with no reservation of seats at that event is
    ``not_reserved``."""

    def __init__(self, inventory: InMemoryInventory | None = None) -> None:
        self.inventory = inventory or InMemoryInventory()
        self.release_calls: list[list[ReleaseItem]] = []
        # Answers to hand out instead, by booking id (an inventory whose data is broken).
        self.answers: dict[uuid.UUID, ReleaseItemResult] = {}
        self.pause: Pause = _nothing

    @property
    def calls(self) -> list[list[ReservationItem]]:
        return self.inventory.calls

    @property
    def down(self) -> bool:
        return self.inventory.down

    @down.setter
    def down(self, value: bool) -> None:
        self.inventory.down = value

    def schedule(self, capacity: int) -> uuid.UUID:
        return self.inventory.schedule(capacity)

    def left(self, event_id: uuid.UUID) -> int:
        return self.inventory.states[event_id].left_capacity

    async def reserve_many(
        self, items: list[ReservationItem], *, correlation_id: str | None = None
    ) -> list[ReservationItemResult]:
        await self.pause()
        return await self.inventory.reserve_many(items, correlation_id=correlation_id)

    async def release_many(
        self, items: list[ReleaseItem], *, correlation_id: str | None = None
    ) -> list[ReleaseItemResult]:
        await self.pause()
        self.release_calls.append(list(items))
        if self.inventory.down:
            raise Unavailable("inventory is unreachable")
        # Inventory's own release decides, except where a test gave a broken answer instead.
        decided = [item for item in items if item.booking_id not in self.answers]
        answers = iter(await self.inventory.release_many(decided) if decided else [])
        return [self.answers.get(item.booking_id) or next(answers) for item in items]
