"""Hostile cases for the 0002 upgrade followed by a rebuild: 0001 data with a reservation
whose event row is gone (0001 has no foreign key from reservations to events)."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.test_inventory_upgrade import (
    T0,
    at_0001,
    engine,
    fill_as_0001,
    old_inventory,
    upgrade_to_head,
)
from ticketing.inventory import projections
from ticketing.shared.settings import Settings

__all__ = ["at_0001", "engine"]  # fixtures


async def test_a_rebuild_names_the_stream_of_a_reservation_whose_event_row_was_gone(
    at_0001: Settings, engine: AsyncEngine
) -> None:
    """The upgrade turns the reservation into version 2 of a stream with no version 1, which
    verify reports for ever. A rebuild must then say it could not rebuild that stream (exit
    1) and leave its row as it is, not delete the row, skip the stream and report success."""
    await fill_as_0001(engine, old_inventory())
    gone, booking = uuid.uuid4(), uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO reservations VALUES (:b, :e, 2, 'reserved', 3, :at)"),
            {"b": str(booking), "e": str(gone), "at": T0},
        )
    await upgrade_to_head(at_0001)
    assert any(str(gone) in problem for problem in await projections.verify(engine))

    done = await projections.rebuild(engine)

    assert any(str(gone) in problem for problem in done.broken), done
    async with engine.connect() as conn:
        kept = await conn.scalar(
            text("SELECT COUNT(*) FROM reservations WHERE booking_id = :b"), {"b": str(booking)}
        )
    assert kept == 1
