"""Hostile cases for the 0002 upgrade followed by a rebuild: 0001 data with a reservation
whose event row is gone (0001 has no foreign key from reservations to events)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from alembic import op
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.test_inventory_upgrade import (
    T0,
    at_0001,
    check_backfill,
    downgrade_to_0001,
    engine,
    fill_as_0001,
    old_inventory,
    revision,
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


async def test_a_downgrade_that_stopped_halfway_can_be_run_again(
    at_0001: Settings, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upgrade was made resumable because MariaDB commits each DDL statement; the
    downgrade commits three and is not: stopped after the first, alembic still says 0002 and
    running it again fails on the column already dropped."""
    old = old_inventory()
    await fill_as_0001(engine, old)
    await upgrade_to_head(at_0001)
    drop_table = op.drop_table

    def killed_before_dropping_the_store(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt  # the process is stopped here

    monkeypatch.setattr(op, "drop_table", killed_before_dropping_the_store)
    with pytest.raises(KeyboardInterrupt):
        await downgrade_to_0001(at_0001)
    monkeypatch.setattr(op, "drop_table", drop_table)
    assert await revision(engine) == "0002"  # 0003's downgrade finished; 0002's stopped
    await downgrade_to_0001(at_0001)
    assert await revision(engine) == "0001"
    await upgrade_to_head(at_0001)
    await check_backfill(engine, old)
