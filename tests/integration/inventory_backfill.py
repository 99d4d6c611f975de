"""Migrating an inventory database between revision 0001 and the event store, and the checks that
the backfilled store holds exactly the rows' history in the order it happened."""

from __future__ import annotations

import uuid
from datetime import UTC, timedelta
from typing import Any

from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.databases import run_alembic
from tests.integration.inventory_at_0001 import OldInventory
from ticketing.inventory import projections
from ticketing.inventory.domain import (
    EventScheduled,
    InventoryEvent,
    ReservationRefused,
    SeatsReserved,
    VenueRegistered,
)
from ticketing.inventory.repository import STORE
from ticketing.shared.settings import Settings


async def upgrade_to_head(settings: Settings) -> None:
    await run_alembic(settings, "inventory", command.upgrade, "head")


async def downgrade_to_0001(settings: Settings) -> None:
    await run_alembic(settings, "inventory", command.downgrade, "0001")


async def store_rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every row of the event store, in position order, as stored, but for the event ids (new
    ones each time rows are turned into events)."""
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT * FROM event_store ORDER BY position"))
        stored = [dict(row._mapping) for row in rows]
    ids = [row.pop("event_id") for row in stored]
    assert len(set(ids)) == len(ids)
    return stored


async def versions(engine: AsyncEngine, table: str) -> dict[uuid.UUID, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(text(f"SELECT id, version FROM {table}"))
        return {uuid.UUID(str(row.id)): row.version for row in rows}


async def check_backfill(engine: AsyncEngine, old: OldInventory) -> None:
    """The store holds exactly the rows' history, in the order it happened, and the tables
    agree with it."""
    assert await projections.verify(engine) == []
    rows = await store_rows(engine)
    assert len(rows) == len(old.venues) + len(old.events) + len(old.reservations)
    assert all(
        (r["actor"], r["correlation_id"], r["causation_id"], r["schema_version"])
        == ("migration", None, None, 1)
        for r in rows
    )
    times = [r["recorded_at"] for r in rows]
    assert times == sorted(times), "positions follow the recorded times"
    written = {_key(w.event): w.at for w in [*old.venues, *old.events, *old.reservations]}
    async with engine.connect() as conn:
        recorded = await STORE.page(conn, limit=len(rows) + 1)
        for w in old.venues:
            assert isinstance(w.event, VenueRegistered)
            (only,) = await STORE.stream(conn, w.event.venue_id)
            assert (only.stream_type, only.version, only.event) == ("venue", 1, w.event)
        for w in old.events:
            assert isinstance(w.event, EventScheduled)
            stream = await STORE.stream(conn, w.event.event_id)
            assert [r.event for r in stream] == [w.event, *old.decided(w.event.event_id)]
            assert [r.version for r in stream] == list(range(1, len(stream) + 1))
            assert {r.stream_type for r in stream} == {"event"}
            starts_at = stream[0].event.starts_at
            assert starts_at is None or starts_at.utcoffset() == timedelta(0)
    assert [r.recorded_at for r in recorded] == [
        written[_key(r.event)].replace(tzinfo=UTC) for r in recorded
    ]
    venue_ids = [_key(w.event)[1] for w in old.venues]
    event_ids = [_key(w.event)[1] for w in old.events]
    assert await versions(engine, "venues") == dict.fromkeys(venue_ids, 1)
    assert await versions(engine, "events") == {e: 1 + len(old.decided(e)) for e in event_ids}


def _key(event: InventoryEvent) -> tuple[str, uuid.UUID]:
    """The row an event comes from: its table and primary key."""
    match event:
        case VenueRegistered():
            return ("venues", event.venue_id)
        case EventScheduled():
            return ("events", event.event_id)
        case SeatsReserved() | ReservationRefused():
            return ("reservations", event.booking_id)
    raise TypeError(event)
