"""Upgrading an inventory database of revision 0001 to the event store (0002) loses nothing.

Each test fills a database of its own at revision 0001 the way the 0001 code wrote rows,
upgrades it, and compares the backfilled events with the rows they came from: in the order
decided even when the rows' times say otherwise, after an upgrade or a downgrade stopped
halfway, and with a reservation whose event row was gone (0001 has no foreign key from
reservations to events).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from alembic import op
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.databases import head_of, revision, tables
from tests.integration.cli_process import run_cli
from tests.integration.inventory_at_0001 import (
    E1,
    E3,
    T0,
    V1,
    OldInventory,
    Written,
    at_0001,
    booking,
    decide_as_0001,
    engine,
    fill_as_0001,
    old,
    tied_inventory,
)
from tests.integration.inventory_backfill import (
    check_backfill,
    downgrade_to_0001,
    store_rows,
    upgrade_to_head,
    versions,
)
from ticketing.contracts.inventory import ReservationItem, ReservationOutcome
from ticketing.inventory import projections
from ticketing.inventory.domain import (
    EventScheduled,
    ReservationRefused,
    SeatsReserved,
    VenueRegistered,
)
from ticketing.inventory.records import SqlInventoryRecords
from ticketing.inventory.repository import STORE
from ticketing.inventory.service import InventoryService
from ticketing.inventory.tables import events
from ticketing.shared.settings import Settings
from ticketing.shared.store.eventstore import Cause

__all__ = ["at_0001", "engine", "old"]  # fixtures


async def test_upgrade_turns_every_row_into_its_event_in_the_order_decided(
    at_0001: Settings, engine: AsyncEngine, old: OldInventory
) -> None:
    await upgrade_to_head(at_0001)
    assert await revision(engine) == head_of("inventory")
    await check_backfill(engine, old)


async def test_reservations_after_the_upgrade_append_the_next_versions(
    at_0001: Settings, engine: AsyncEngine, old: OldInventory
) -> None:
    await upgrade_to_head(at_0001)
    before = await versions(engine, "events")
    new_e1, new_e3 = uuid.uuid4(), uuid.uuid4()
    results = await InventoryService(SqlInventoryRecords(engine), engine).reserve_many(
        [ReservationItem(E1, new_e1, 1), ReservationItem(E3, new_e3, 2)],
        Cause("upgrade-test", correlation_id="after-upgrade"),
    )
    assert [(r.outcome, r.left_capacity) for r in results] == [
        (ReservationOutcome.RESERVED, old.left[E1] - 1),
        (ReservationOutcome.RESERVED, old.left[E3] - 2),
    ]
    async with engine.connect() as conn:
        e1 = await STORE.stream(conn, E1)
        e3 = await STORE.stream(conn, E3)
    assert (e1[-1].version, e1[-1].event.booking_id, e1[-1].actor) == (
        before[E1] + 1,
        new_e1,
        "upgrade-test",
    )
    assert [(r.version, type(r.event)) for r in e3] == [(1, EventScheduled), (2, SeatsReserved)]
    assert await versions(engine, "events") == {**before, E1: before[E1] + 1, E3: 2}
    assert await projections.verify(engine) == []


async def test_downgrade_then_upgrade_again_rebuilds_the_same_store(
    at_0001: Settings, engine: AsyncEngine, old: OldInventory
) -> None:
    await upgrade_to_head(at_0001)
    first = await store_rows(engine)
    await downgrade_to_0001(at_0001)
    assert await revision(engine) == "0001"
    async with engine.connect() as conn:
        columns = set((await conn.execute(text("SHOW COLUMNS FROM events"))).scalars())
    assert "event_store" not in await tables(engine)
    assert "version" not in columns
    await upgrade_to_head(at_0001)
    assert await store_rows(engine) == first
    await check_backfill(engine, old)


async def test_a_refusal_batched_after_the_reservation_that_left_its_seats_comes_after_it(
    at_0001: Settings, engine: AsyncEngine
) -> None:
    """Both rows record 0 seats left and share a time; only the reservation can have come
    first (a refusal leaves the count as it was), whatever their booking ids."""
    old = tied_inventory()
    await fill_as_0001(engine, old)
    await upgrade_to_head(at_0001)
    async with engine.connect() as conn:
        stream = await STORE.stream(conn, E1)
    assert [type(r.event) for r in stream] == [EventScheduled, SeatsReserved, ReservationRefused]
    await check_backfill(engine, old)


async def test_projections_verify_agrees_after_the_upgrade_and_names_a_tampered_event(
    at_0001: Settings, engine: AsyncEngine, old: OldInventory
) -> None:
    prefix = at_0001.db_prefix
    upgraded = await asyncio.to_thread(run_cli, "db", "upgrade", "inventory", prefix=prefix)
    assert upgraded.returncode == 0, upgraded.stderr
    agree = await asyncio.to_thread(
        run_cli, "projections", "verify", "--service", "inventory", prefix=prefix
    )
    assert agree.returncode == 0, agree.stdout + agree.stderr
    assert agree.stdout.splitlines() == ["inventory: agree"]

    async with engine.begin() as conn:
        await conn.execute(
            update(events).where(events.c.id == E1).values(left_capacity=events.c.left_capacity - 1)
        )
    tampered = await asyncio.to_thread(
        run_cli, "projections", "verify", "--service", "inventory", prefix=prefix
    )
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    lines = tampered.stdout.splitlines()
    assert lines[-1] == "inventory: 1 difference(s)"
    (line,) = lines[:-1]
    assert line.startswith(f"inventory: events {E1}: the table holds ")
    assert f"left_capacity={old.left[E1] - 1}" in line


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
    at_0001: Settings, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, old: OldInventory
) -> None:
    """MariaDB commits each DDL statement: an upgrade killed while copying the rows (a deploy
    timeout, an OOM kill) leaves the store table and the version columns behind at revision
    0001. Running the upgrade again must finish it."""
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


async def test_a_rebuild_names_the_stream_of_a_reservation_whose_event_row_was_gone(
    at_0001: Settings, engine: AsyncEngine, old: OldInventory
) -> None:
    """The upgrade turns the reservation into version 2 of a stream with no version 1, which
    verify reports for ever. A rebuild must then say it could not rebuild that stream (exit
    1) and leave its row as it is, not delete the row, skip the stream and report success."""
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
    at_0001: Settings, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, old: OldInventory
) -> None:
    """The upgrade was made resumable because MariaDB commits each DDL statement; the
    downgrade commits three and is not: stopped after the first, alembic still says 0002 and
    running it again fails on the column already dropped."""
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
