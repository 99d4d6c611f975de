"""Hostile cases for the 0002 upgrade (event store backfill): 0001 data whose times do not
follow the order decided, and an upgrade that stops halfway."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from alembic import op
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness import head_of
from tests.integration.test_inventory_upgrade import (
    E1,
    T0,
    V1,
    OldInventory,
    Written,
    at_0001,
    booking,
    check_backfill,
    decide_as_0001,
    engine,
    fill_as_0001,
    old_inventory,
    revision,
    upgrade_to_head,
)
from ticketing.inventory import projections
from ticketing.inventory.domain import EventScheduled, VenueRegistered
from ticketing.shared.settings import Settings

__all__ = ["at_0001", "engine"]  # fixtures


def skewed_inventory() -> OldInventory:
    """Two single reservations of one event from two inventory replicas whose clocks are a
    millisecond apart: the one decided second carries the earlier ``created_at``. Each row's
    ``left_capacity`` still says which came first (seats left only ever go down)."""
    venue = VenueRegistered(venue_id=V1, name="Hall", address="Street", total_capacity=10)
    event = EventScheduled(
        event_id=E1,
        venue_id=V1,
        name="Skewed",
        total_capacity=10,
        ticket_price="10.00",
        starts_at=None,
    )
    batches = [
        (T0 + timedelta(seconds=10, milliseconds=2), [(E1, booking(0x10, "first"), 3)]),
        (T0 + timedelta(seconds=10, milliseconds=1), [(E1, booking(0x20, "second"), 2)]),
    ]
    written, left = decide_as_0001({E1: 10}, batches)
    return OldInventory(
        [Written(venue, T0)], [Written(event, T0 + timedelta(seconds=1))], written, left
    )


async def test_upgrade_orders_reservations_by_the_seats_they_left_not_by_clock_time(
    at_0001: Settings, engine: AsyncEngine
) -> None:
    old = skewed_inventory()
    await fill_as_0001(engine, old)
    await upgrade_to_head(at_0001)
    assert await projections.verify(engine) == []


async def test_an_upgrade_that_stopped_during_the_backfill_can_be_run_again(
    at_0001: Settings, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MariaDB commits each DDL statement: an upgrade killed while copying the rows (a deploy
    timeout, an OOM kill) leaves the store table and the version columns behind at revision
    0001. Running the upgrade again must finish it."""
    old = old_inventory()
    await fill_as_0001(engine, old)
    execute = op.execute

    def killed_during_backfill(sql: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(sql, str) and sql.lstrip().startswith("INSERT INTO event_store"):
            raise KeyboardInterrupt  # the process is stopped here
        return execute(sql, *args, **kwargs)

    monkeypatch.setattr(op, "execute", killed_during_backfill)
    with pytest.raises(KeyboardInterrupt):
        await upgrade_to_head(at_0001)
    monkeypatch.undo()
    assert await revision(engine) == "0001"
    await upgrade_to_head(at_0001)
    assert await revision(engine) == head_of("inventory")
    await check_backfill(engine, old)


async def test_an_upgrade_that_stopped_during_the_backfill_leaves_tables_the_0001_code_can_write(
    at_0001: Settings, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rolled back to the 0001 code after a failed upgrade (alembic still says 0001), inventory
    must still register venues: its INSERT names no ``version`` column."""
    execute = op.execute

    def killed_during_backfill(sql: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(sql, str) and sql.lstrip().startswith("INSERT INTO event_store"):
            raise KeyboardInterrupt
        return execute(sql, *args, **kwargs)

    monkeypatch.setattr(op, "execute", killed_during_backfill)
    with pytest.raises(KeyboardInterrupt):
        await upgrade_to_head(at_0001)
    monkeypatch.undo()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO venues (id, name, address, total_capacity, created_at) "
                "VALUES (UUID(), 'Hall', 'Street', 10, UTC_TIMESTAMP(6))"
            )
        )
