"""Inventory's projections checked against its events (fold the store, compare with the
tables) and rebuilt from them.

``ticketing projections verify --service inventory`` prints every difference; the resilience
suite runs it after each scenario. ``ticketing projections rebuild --service inventory``
rewrites every row the events disagree with.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ticketing.inventory.domain import (
    EVENT_STREAM,
    VENUE_STREAM,
    EventState,
    InventoryEvent,
    ReservationRefused,
    SeatsReleased,
    SeatsReserved,
    VenueState,
    evolve,
    fold,
)
from ticketing.inventory.holdings import reservation_of_row
from ticketing.inventory.repository import STORE, event_state, venue_row, venue_state
from ticketing.inventory.reservation import Reservation, released, reservation_of
from ticketing.inventory.rewrite import delete_orphans, write_event_row, write_reservations
from ticketing.inventory.tables import event_store, events, reservations, venues
from ticketing.shared.db.engine import run_transaction
from ticketing.shared.errors import ImpossibleHistory
from ticketing.shared.store.projections import Rebuilt, verify_projection
from ticketing.shared.store.projections import differences as table_differences

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
    broken: set[uuid.UUID] = set()  # folded no further: the tables cannot agree with them
    after = 0
    while page := await STORE.page(conn, after=after, limit=PAGE):
        for recorded in page:
            after = recorded.position
            event = recorded.event
            if recorded.stream_id in broken:
                continue
            before = state.venues.get(recorded.stream_id) or state.events.get(recorded.stream_id)
            try:
                now = evolve(before, event)
            except ImpossibleHistory as error:
                problems.append(
                    f"stream {recorded.stream_id} cannot be folded at position "
                    f"{recorded.position}: {error}"
                )
                broken.add(recorded.stream_id)
                continue
            if now.version != recorded.version:
                problems.append(
                    f"stream {recorded.stream_id}: event at position {recorded.position} is "
                    f"version {recorded.version}, the fold is at {now.version}"
                )
            if isinstance(now, VenueState):
                state.venues[now.id] = now
                continue
            state.events[now.id] = now
            if isinstance(event, SeatsReserved | ReservationRefused | SeatsReleased):
                if event.left_capacity != now.left_capacity:
                    problems.append(
                        f"event {now.id}: {recorded.event_type} at position "
                        f"{recorded.position} says {event.left_capacity} seats are left, "
                        f"the fold says {now.left_capacity}"
                    )
                try:
                    reservation_fold(state.reservations, event)
                except ImpossibleHistory as error:
                    problems.append(f"position {recorded.position}: {error}")
    return state


def reservation_fold(held: dict[uuid.UUID, Reservation], event: InventoryEvent) -> None:
    """Apply one event of an event's stream to the reservations (by booking id) it records:
    a reservation event records one; a release marks its reservation released."""
    if isinstance(event, SeatsReserved | ReservationRefused):
        held[event.booking_id] = reservation_of(event)
    elif isinstance(event, SeatsReleased):
        before = held.get(event.booking_id)
        if before is None:
            raise ImpossibleHistory(f"{event!r} releases no reservation")
        held[event.booking_id] = released(before, event)


async def stored(conn: AsyncConnection) -> Projection:
    """What the projection tables hold."""
    state = Projection()
    for row in await conn.execute(select(venues)):
        state.venues[row.id] = venue_state(row)
    for row in await conn.execute(select(events)):
        state.events[row.id] = event_state(row)
    for row in await conn.execute(select(reservations)):
        state.reservations[row.booking_id] = reservation_of_row(row)
    return state


def differences(expected: Projection, actual: Projection) -> Iterator[str]:
    """Every row that the events and the tables disagree on, in words."""
    yield from table_differences("venues", expected.venues, actual.venues)
    yield from table_differences("events", _comparable(expected.events), _comparable(actual.events))
    yield from table_differences("reservations", expected.reservations, actual.reservations)


def _comparable(states: dict[uuid.UUID, EventState]) -> dict[uuid.UUID, EventState]:
    """Event states with ``starts_at`` in UTC (the table stores it so)."""
    return {
        key: dataclasses.replace(state, starts_at=_utc(state.starts_at))
        for key, state in states.items()
    }


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


async def verify(engine: AsyncEngine) -> list[str]:
    """Every difference between inventory's events and its tables (empty: they agree)."""
    return await verify_projection(engine, folded, stored, differences)


TABLES = ("venues", "events", "reservations")


async def rebuild(engine: AsyncEngine) -> Rebuilt:
    """Rewrite every projection row from the events, in place, while inventory keeps running.

    Each event's stream is folded, then its row is locked (the lock every reservation takes
    first), the events appended meanwhile are folded too, and the row and its reservations
    are written as the fold says, all in one transaction: a reservation waits for it, and then
    decides from the rebuilt row. Rows no stream accounts for are deleted.
    """
    done = Rebuilt(TABLES)
    venue_ids, event_ids = await _streams(engine)
    for stream_id, rebuild_stream in [
        *((venue_id, _rebuild_venue) for venue_id in venue_ids),
        *((event_id, _rebuild_event) for event_id in event_ids),
    ]:
        try:
            await rebuild_stream(engine, stream_id, done)
        except ImpossibleHistory as error:
            done.broken.append(f"stream {stream_id}: {error}")
    await delete_orphans(engine, venue_ids, event_ids, done)
    return done


async def _streams(engine: AsyncEngine) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    # Every stream, even one whose first version is missing (it cannot be folded, and is
    # reported rather than taken for an orphan): a walk of the (stream_id, version) key.
    stream_type = func.min(event_store.c.stream_type).label("stream_type")
    query = select(event_store.c.stream_id, stream_type).group_by(event_store.c.stream_id)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    venue_ids = [row.stream_id for row in rows if row.stream_type == VENUE_STREAM]
    event_ids = [row.stream_id for row in rows if row.stream_type == EVENT_STREAM]
    return venue_ids, event_ids


async def _rebuild_venue(engine: AsyncEngine, venue_id: uuid.UUID, done: Rebuilt) -> None:
    async def work(conn: AsyncConnection) -> None:
        history = await STORE.stream(conn, venue_id)
        state = fold(r.event for r in history)
        assert isinstance(state, VenueState)
        row = venue_row(state)
        current = (
            await conn.execute(select(venues).where(venues.c.id == venue_id).with_for_update())
        ).first()
        if current is None:
            created = {"created_at": history[0].recorded_at.replace(tzinfo=None)}
            await conn.execute(insert(venues).values(**row, **created))
        elif any(getattr(current, key) != value for key, value in row.items()):
            await conn.execute(update(venues).where(venues.c.id == venue_id).values(**row))
        else:
            return
        done.written["venues"] += 1

    await run_transaction(engine, work)


async def _rebuild_event(engine: AsyncEngine, event_id: uuid.UUID, done: Rebuilt) -> None:
    async with engine.connect() as conn:  # the long part, without holding the row
        history = await STORE.stream(conn, event_id)

    async def work(conn: AsyncConnection) -> None:
        current = (
            await conn.execute(select(events).where(events.c.id == event_id).with_for_update())
        ).first()
        recorded = list(history)
        while tail := await STORE.stream_page(
            conn, event_id, after_version=recorded[-1].version, limit=PAGE
        ):
            recorded += tail
        state: EventState | None = None
        wanted: dict[uuid.UUID, Reservation] = {}
        times: dict[uuid.UUID, tuple[datetime, datetime | None]] = {}  # created, released
        for item in recorded:
            after = evolve(state, item.event)
            assert isinstance(after, EventState)
            state = after
            reservation_fold(wanted, item.event)
            at = item.recorded_at.replace(tzinfo=None)
            if isinstance(item.event, SeatsReserved | ReservationRefused):
                times[item.event.booking_id] = (at, None)
            elif isinstance(item.event, SeatsReleased):
                times[item.event.booking_id] = (times[item.event.booking_id][0], at)
        assert state is not None
        await write_event_row(conn, state, current, recorded[0].recorded_at, done)
        await write_reservations(conn, event_id, wanted, times, done)

    await run_transaction(engine, work)
