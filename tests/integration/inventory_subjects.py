"""Inventory's records port as a subject of the port tests, in memory or on SQL alike, and the
events and decisions the tests give it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fakes.inventory import InMemoryInventoryRecords
from tests.harness.databases import own_databases
from ticketing.contracts.inventory import ReservationItem, ReservationOutcome
from ticketing.inventory import holdings
from ticketing.inventory import repository as repo
from ticketing.inventory.decisions import CustomerSeats, DecideBatch, Decisions, decide
from ticketing.inventory.domain import (
    EventScheduled,
    EventState,
    ReservationRefused,
    SeatsReserved,
    VenueState,
    decide_register_venue,
    decide_schedule_event,
    evolve,
)
from ticketing.inventory.ports import InventoryRecords
from ticketing.inventory.records import SqlInventoryRecords
from ticketing.inventory.reservation import Reservation
from ticketing.inventory.tables import events
from ticketing.shared.db.engine import create_engine
from ticketing.shared.store.eventstore import Cause

CAUSE = Cause(actor="admin", correlation_id="request-1", causation_id="request-1")


@pytest.fixture(scope="module")
async def database() -> AsyncIterator[AsyncEngine]:
    """One inventory database of this module's own (each test uses ids of its own)."""
    async with own_databases("inventory") as settings:
        engine = create_engine(settings, "inventory")
        try:
            yield engine
        finally:
            await engine.dispose()


@dataclass
class Subject:
    """An adapter of the port, and what its database (or its memory) holds."""

    records: InventoryRecords
    engine: AsyncEngine | None = None

    async def history(self, stream_id: uuid.UUID) -> list[tuple[Any, Cause]]:
        """The stream's events in version order, each with its stored cause."""
        if isinstance(self.records, InMemoryInventoryRecords):
            return [(r.event, r.cause) for r in self.records.history(stream_id)]
        assert self.engine is not None
        async with self.engine.connect() as conn:
            stored = await repo.STORE.stream(conn, stream_id)
        assert [r.version for r in stored] == list(range(1, len(stored) + 1))
        return [(r.event, Cause(r.actor, r.correlation_id, r.causation_id)) for r in stored]

    async def left(self, event_id: uuid.UUID) -> int:
        if isinstance(self.records, InMemoryInventoryRecords):
            return self.records.events[event_id].left_capacity
        assert self.engine is not None
        async with self.engine.connect() as conn:
            left = await conn.scalar(select(events.c.left_capacity).where(events.c.id == event_id))
        assert isinstance(left, int)
        return left

    async def reservations(self, *booking_ids: uuid.UUID) -> dict[uuid.UUID, Reservation]:
        if isinstance(self.records, InMemoryInventoryRecords):
            held = self.records.reservations
            return {b: held[b] for b in booking_ids if b in held}
        assert self.engine is not None
        async with self.engine.connect() as conn:
            return await holdings.get_reservations(conn, booking_ids)


@pytest.fixture(params=["memory", "sql"])
def subject(request: pytest.FixtureRequest) -> Subject:
    if request.param == "memory":
        return Subject(InMemoryInventoryRecords())
    engine: AsyncEngine = request.getfixturevalue("database")
    return Subject(SqlInventoryRecords(engine), engine)


async def given_event(
    records: InventoryRecords, capacity: int, limit: int | None = None
) -> EventState:
    """A venue and an event of ``capacity`` seats there (at most ``limit`` per customer); the
    event's state."""
    registered = decide_register_venue(uuid.uuid4(), "Hall", "Road 1", capacity)
    await records.register_venue(registered, CAUSE)

    def schedule(venue: VenueState) -> EventScheduled:
        return decide_schedule_event(
            uuid.uuid4(),
            venue,
            name="Show",
            total_capacity=capacity,
            ticket_price="10.00",
            starts_at=None,
            max_tickets_per_customer=limit,
        )

    recorded = await records.schedule_event(registered.venue_id, schedule, CAUSE)
    assert recorded is not None
    state = evolve(None, recorded[1])
    assert isinstance(state, EventState)
    return state


def deciding(items: Sequence[ReservationItem], seen: list[Any] | None = None) -> DecideBatch:
    """Inventory's own decision for ``items``; what it was given is added to ``seen``."""

    def decide_batch(
        states: Mapping[uuid.UUID, EventState],
        existing: Mapping[uuid.UUID, Reservation],
        held: Mapping[CustomerSeats, int],
    ) -> Decisions:
        if seen is not None:
            seen.append((dict(states), dict(existing), dict(held)))
        return decide(items, existing, states, held)

    return decide_batch


def taking(state: EventState, *takes: tuple[uuid.UUID, int]) -> DecideBatch:
    """A decision made from ``state`` whatever the records hold: each booking id of ``takes``
    takes its seats, as the next versions of the event's stream."""
    facts: list[tuple[int, SeatsReserved | ReservationRefused]] = []
    new: list[Reservation] = []
    current = state
    for booking_id, count in takes:
        fact = SeatsReserved(
            event_id=state.id,
            booking_id=booking_id,
            ticket_count=count,
            left_capacity=current.left_capacity - count,
        )
        after = evolve(current, fact)
        assert isinstance(after, EventState)
        current = after
        facts.append((after.version, fact))
        new.append(
            Reservation(
                booking_id, state.id, count, ReservationOutcome.RESERVED, fact.left_capacity
            )
        )
    return lambda states, existing, held: Decisions([], facts, {state.id: current}, new)
