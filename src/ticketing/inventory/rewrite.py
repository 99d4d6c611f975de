"""The writes of a rebuild (:func:`ticketing.inventory.projections.rebuild`): an event's row and
its reservations as its events say, and the rows that no stream accounts for deleted."""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ticketing.inventory.domain import EventState
from ticketing.inventory.repository import event_row
from ticketing.inventory.reservation import Reservation
from ticketing.inventory.tables import event_store, events, reservations, venues
from ticketing.shared.db.engine import run_transaction
from ticketing.shared.store.projections import Rebuilt


async def write_event_row(
    conn: AsyncConnection,
    state: EventState,
    current: Any,
    scheduled_at: datetime,
    done: Rebuilt,
) -> None:
    row = event_row(state)
    if current is None:
        created = {"created_at": scheduled_at.replace(tzinfo=None)}
        await conn.execute(insert(events).values(**row, **created))
    elif any(getattr(current, key) != value for key, value in row.items()):
        await conn.execute(update(events).where(events.c.id == state.id).values(**row))
    else:
        return
    done.written["events"] += 1


async def write_reservations(
    conn: AsyncConnection,
    event_id: uuid.UUID,
    wanted: dict[uuid.UUID, Reservation],
    times: dict[uuid.UUID, tuple[datetime, datetime | None]],
    done: Rebuilt,
) -> None:
    """Make the event's reservations exactly those its events record (a booking id's row that
    names another event is moved here: the events say where it belongs)."""
    have = {
        row.booking_id: row
        for row in await conn.execute(
            select(reservations).where(reservations.c.event_id == event_id)
        )
    }
    extra = [booking_id for booking_id in have if booking_id not in wanted]
    if extra:
        await conn.execute(delete(reservations).where(reservations.c.booking_id.in_(extra)))
        done.deleted["reservations"] += len(extra)
    for booking_id, reservation in wanted.items():
        created_at, released_at = times[booking_id]
        release = reservation.release
        row = {
            "event_id": reservation.event_id,
            "ticket_count": reservation.ticket_count,
            "status": reservation.status.value,
            "left_capacity": reservation.left_capacity,
            "customer_id": reservation.customer_id,
            "released_at": released_at,
            "release_reason": None if release is None else release.reason,
            "release_left_capacity": None if release is None else release.left_capacity,
        }
        current = have.get(booking_id)
        if current is not None and all(
            getattr(current, key) == value for key, value in row.items()
        ):
            continue
        upsert = mysql_insert(reservations).values(
            booking_id=booking_id, created_at=created_at, **row
        )
        await conn.execute(upsert.on_duplicate_key_update(**row))
        done.written["reservations"] += 1


async def delete_orphans(
    engine: AsyncEngine,
    venue_ids: list[uuid.UUID],
    event_ids: list[uuid.UUID],
    done: Rebuilt,
) -> None:
    """Delete the rows of streams that do not exist: reservations, then events, then venues
    (the order the foreign key needs).

    The streams were listed before the rebuild began, and a venue or an event created since is
    not among them: each candidate's row is locked and the store asked again, and a stream
    found there now keeps its rows (they are written with its first event, in one
    transaction, so a committed row always has its stream)."""
    known_events, known_venues = set(event_ids), set(venue_ids)
    async with engine.connect() as conn:
        event_rows = set((await conn.execute(select(events.c.id))).scalars())
        held = set((await conn.execute(select(reservations.c.event_id).distinct())).scalars())
        venue_rows = set((await conn.execute(select(venues.c.id))).scalars())

    async def drop_event(conn: AsyncConnection, stray: uuid.UUID) -> None:
        await conn.execute(select(events.c.id).where(events.c.id == stray).with_for_update())
        if await _has_stream(conn, stray):
            return
        gone = await conn.execute(delete(reservations).where(reservations.c.event_id == stray))
        done.deleted["reservations"] += gone.rowcount
        gone = await conn.execute(delete(events).where(events.c.id == stray))
        done.deleted["events"] += gone.rowcount

    async def drop_venue(conn: AsyncConnection, stray: uuid.UUID) -> None:
        await conn.execute(select(venues.c.id).where(venues.c.id == stray).with_for_update())
        if await _has_stream(conn, stray):
            return
        referring = await conn.scalar(select(events.c.id).where(events.c.venue_id == stray))
        if referring is not None:
            done.broken.append(f"venue {stray} has no events, but event {referring} is held there")
            return
        gone = await conn.execute(delete(venues).where(venues.c.id == stray))
        done.deleted["venues"] += gone.rowcount

    for stray in sorted((held | event_rows) - known_events):
        await run_transaction(engine, functools.partial(drop_event, stray=stray))
    for stray in sorted(venue_rows - known_venues):
        await run_transaction(engine, functools.partial(drop_venue, stray=stray))


async def _has_stream(conn: AsyncConnection, stream_id: uuid.UUID) -> bool:
    query = select(event_store.c.position).where(event_store.c.stream_id == stream_id).limit(1)
    return (await conn.scalar(query)) is not None
