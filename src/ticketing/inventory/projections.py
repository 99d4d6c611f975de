"""Inventory's projections checked against its events: fold the store, compare with the tables.

``ticketing projections verify --service inventory`` prints every difference; the resilience
suite runs it after each scenario.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ticketing.contracts.inventory import ReservationStatus
from ticketing.inventory.domain import (
    EventState,
    Reservation,
    ReservationRefused,
    SeatsReserved,
    VenueState,
    evolve,
    reservation_of,
)
from ticketing.inventory.repository import STORE
from ticketing.inventory.tables import events, reservations, venues

PAGE = 5000


@dataclass
class Projection:
    """Inventory's state: what the tables hold, or what the events fold into."""

    venues: dict[uuid.UUID, VenueState] = field(default_factory=dict)
    events: dict[uuid.UUID, EventState] = field(default_factory=dict)
    reservations: dict[uuid.UUID, Reservation] = field(default_factory=dict)


async def folded(conn: AsyncConnection, problems: list[str]) -> Projection:
    """Every stream folded with ``evolve``, a page of events at a time; an event whose own
    record of the seats left disagrees with the fold is added to ``problems``."""
    state = Projection()
    after = 0
    while page := await STORE.page(conn, after=after, limit=PAGE):
        for recorded in page:
            after = recorded.position
            event = recorded.event
            before = state.venues.get(recorded.stream_id) or state.events.get(recorded.stream_id)
            now = evolve(before, event)
            if now.version != recorded.version:
                problems.append(
                    f"stream {recorded.stream_id}: event at position {recorded.position} is "
                    f"version {recorded.version}, the fold is at {now.version}"
                )
            if isinstance(now, VenueState):
                state.venues[now.id] = now
                continue
            state.events[now.id] = now
            if isinstance(event, SeatsReserved | ReservationRefused):
                if event.left_capacity != now.left_capacity:
                    problems.append(
                        f"event {now.id}: {recorded.event_type} at position "
                        f"{recorded.position} says {event.left_capacity} seats are left, "
                        f"the fold says {now.left_capacity}"
                    )
                state.reservations[event.booking_id] = reservation_of(event)
    return state


async def stored(conn: AsyncConnection) -> Projection:
    """What the projection tables hold."""
    state = Projection()
    for row in await conn.execute(select(venues)):
        state.venues[row.id] = VenueState(
            row.id, row.name, row.address, row.total_capacity, row.version
        )
    for row in await conn.execute(select(events)):
        state.events[row.id] = EventState(
            id=row.id,
            venue_id=row.venue_id,
            name=row.name,
            total_capacity=row.total_capacity,
            left_capacity=row.left_capacity,
            ticket_price=row.ticket_price,
            starts_at=None if row.starts_at is None else row.starts_at.replace(tzinfo=UTC),
            version=row.version,
        )
    for row in await conn.execute(select(reservations)):
        state.reservations[row.booking_id] = Reservation(
            row.booking_id,
            row.event_id,
            row.ticket_count,
            ReservationStatus(row.status),
            row.left_capacity,
        )
    return state


def differences(expected: Projection, actual: Projection) -> Iterator[str]:
    """Every row that the events and the tables disagree on, in words."""
    for table, want, have in (
        ("venues", expected.venues, actual.venues),
        ("events", _comparable(expected.events), _comparable(actual.events)),
        ("reservations", expected.reservations, actual.reservations),
    ):
        for key in sorted(want.keys() | have.keys()):
            if key not in have:
                yield f"{table} {key}: missing; the events say {want[key]}"
            elif key not in want:
                yield f"{table} {key}: {have[key]} has no events"
            elif want[key] != have[key]:
                yield f"{table} {key}: the table holds {have[key]}, the events say {want[key]}"


def _comparable(states: dict[uuid.UUID, EventState]) -> dict[uuid.UUID, EventState]:
    """Event states with ``starts_at`` in UTC (the table stores it so)."""
    return {
        key: EventState(
            id=state.id,
            venue_id=state.venue_id,
            name=state.name,
            total_capacity=state.total_capacity,
            left_capacity=state.left_capacity,
            ticket_price=state.ticket_price,
            starts_at=_utc(state.starts_at),
            version=state.version,
        )
        for key, state in states.items()
    }


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


async def verify(engine: AsyncEngine) -> list[str]:
    """Every difference between inventory's events and its tables (empty: they agree). Read in
    one REPEATABLE READ transaction, whose snapshot the first read fixes, so that writes going
    on meanwhile are seen in both or in neither."""
    problems: list[str] = []
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            expected = await folded(conn, problems)
            actual = await stored(conn)
    return problems + list(differences(expected, actual))
