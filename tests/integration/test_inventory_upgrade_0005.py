"""Revision 0005 (limits per customer, releases) on an inventory database that holds the history
of revision 0004: its stored events (schema version 1) read as the new shapes, its rows gain
empty columns, and what was reserved before can be released after."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from alembic import command, op
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.databases import head_of, revision, run_alembic
from tests.integration.inventory_at_0001 import (
    E1,
    E2,
    at_0001,
    booking,
    engine,
    fill_as_0001,
    old_inventory,
)
from tests.integration.inventory_backfill import (
    check_backfill,
    upgrade_to_head,
)
from ticketing.contracts.inventory import (
    EventCreate,
    ReleaseItem,
    ReleaseOutcome,
    ReservationItem,
    ReservationOutcome,
)
from ticketing.inventory import projections
from ticketing.inventory.domain import EventScheduled, ReservationRefused, SeatsReserved
from ticketing.inventory.records import SqlInventoryRecords
from ticketing.inventory.repository import STORE
from ticketing.inventory.service import InventoryService
from ticketing.inventory.tables import metadata
from ticketing.shared.settings import Settings
from ticketing.shared.store.eventstore import Cause

CAUSE = Cause("upgrade-test")

__all__ = ["at_0001", "engine"]  # fixtures


async def at_0004(settings: Settings, engine: AsyncEngine) -> None:
    """The old inventory's rows, turned into the store's version-1 events by 0002."""
    await fill_as_0001(engine, old_inventory())
    await run_alembic(settings, "inventory", command.upgrade, "0004")
    assert await revision(engine) == "0004"


async def schema(engine: AsyncEngine, table: str) -> dict[str, Any]:
    """What the database holds of ``table``: columns with their nullability, indexes, checks."""
    async with engine.connect() as conn:
        columns = {
            row.Field: row.Null == "YES"
            for row in await conn.execute(text(f"SHOW COLUMNS FROM {table}"))
        }
        indexes = {row.Key_name for row in await conn.execute(text(f"SHOW INDEX FROM {table}"))}
        checks = set(
            (
                await conn.execute(
                    text(
                        "SELECT constraint_name FROM information_schema.check_constraints"
                        " WHERE constraint_schema = DATABASE() AND table_name = :t"
                    ),
                    {"t": table},
                )
            ).scalars()
        )
    return {"columns": columns, "indexes": indexes - {"PRIMARY"}, "checks": checks}


def declared(table: str) -> dict[str, Any]:
    """What ``ticketing.inventory.tables`` declares of ``table``."""
    declared = metadata.tables[table]
    return {
        "columns": {c.name: bool(c.nullable) for c in declared.columns},
        # MariaDB indexes each foreign key under its name.
        "indexes": {str(i.name) for i in declared.indexes}
        | {str(fk.name) for fk in declared.foreign_key_constraints},
        "checks": {
            str(c.name) for c in declared.constraints if c.__class__.__name__ == "CheckConstraint"
        },
    }


async def test_the_upgrade_adds_what_the_tables_declare_and_the_old_history_reads_the_same(
    at_0001: Settings, engine: AsyncEngine
) -> None:
    await at_0004(at_0001, engine)
    async with engine.connect() as conn:
        before = await conn.execute(text("SELECT * FROM event_store ORDER BY position"))
        stored = [dict(row._mapping) for row in before]
    await upgrade_to_head(at_0001)
    assert await revision(engine) == head_of("inventory")
    for table in ("events", "reservations"):
        assert await schema(engine, table) == declared(table)
    async with engine.connect() as conn:
        after = await conn.execute(text("SELECT * FROM event_store ORDER BY position"))
        # Nothing rewritten; a later revision adds the trace, which no event recorded before has.
        assert [dict(row._mapping) for row in after] == [
            {**row, "traceparent": None} for row in stored
        ]
        limits = set(await conn.execute(text("SELECT max_tickets_per_customer FROM events")))
        marks = await conn.execute(
            text(
                "SELECT DISTINCT customer_id, released_at, release_reason, release_left_capacity"
                " FROM reservations"
            )
        )
        assert limits == {(None,)}
        assert [tuple(row) for row in marks] == [(None, None, None, None)]
        decoded = [r.event for r in await STORE.page(conn, limit=100)]
    assert {row["schema_version"] for row in stored} == {1}  # read through the upcasters
    assert all(e.max_tickets_per_customer is None for e in decoded if isinstance(e, EventScheduled))
    assert all(e.customer_id is None for e in decoded if isinstance(e, SeatsReserved))
    refusals = [e for e in decoded if isinstance(e, ReservationRefused)]
    assert refusals
    assert {(e.reason, e.customer_id) for e in refusals} == {("insufficient", None)}
    await check_backfill(engine, old_inventory())


async def test_an_old_reservation_is_released_after_the_upgrade_and_limits_apply_to_new_events(
    at_0001: Settings, engine: AsyncEngine
) -> None:
    await at_0004(at_0001, engine)
    await upgrade_to_head(at_0001)
    service = InventoryService(SqlInventoryRecords(engine), engine)
    old = old_inventory()
    reserved, refused = booking(0x30, "d"), booking(0x50, "f")  # E2: 5 taken, then 1 refused
    results = await service.release_many(
        [ReleaseItem(E2, reserved, "cancelled"), ReleaseItem(E2, refused, "cancelled")], CAUSE
    )
    assert [(r.outcome, r.ticket_count, r.left_capacity) for r in results] == [
        (ReleaseOutcome.RELEASED, 5, old.left[E2] + 5),
        (ReleaseOutcome.NOT_RESERVED, 0, None),
    ]
    (again,) = await service.reserve_many([ReservationItem(E2, reserved, 5)], CAUSE)
    assert (again.outcome, again.left_capacity) == (ReservationOutcome.RESERVED, 0)
    event = await service.get_event(E1)
    assert event.max_tickets_per_customer is None
    venue = event.venue.id
    limited = await service.create_event(
        EventCreate("New", venue, 10, "1.00", max_tickets_per_customer=1), CAUSE
    )
    customer = uuid.uuid4()
    answers = await service.reserve_many(
        [ReservationItem(limited.id, uuid.uuid4(), 1, customer_id=customer) for _ in range(2)],
        CAUSE,
    )
    assert [a.outcome for a in answers] == [
        ReservationOutcome.RESERVED,
        ReservationOutcome.OVER_LIMIT,
    ]
    assert await projections.verify(engine) == []


async def test_an_upgrade_stopped_between_the_two_tables_finishes_when_run_again(
    at_0001: Settings, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await at_0004(at_0001, engine)
    execute = op.execute
    statements: list[str] = []

    def killed_before_the_second(statement: Any, *args: Any, **kwargs: Any) -> Any:
        statements.append(str(statement))
        if len(statements) == 2:
            raise KeyboardInterrupt  # the process is stopped here
        return execute(statement, *args, **kwargs)

    monkeypatch.setattr(op, "execute", killed_before_the_second)
    with pytest.raises(KeyboardInterrupt):
        await upgrade_to_head(at_0001)
    monkeypatch.setattr(op, "execute", execute)
    assert await revision(engine) == "0004"
    assert "max_tickets_per_customer" in (await schema(engine, "events"))["columns"]
    assert "customer_id" not in (await schema(engine, "reservations"))["columns"]
    await upgrade_to_head(at_0001)
    assert await revision(engine) == head_of("inventory")
    for table in ("events", "reservations"):
        assert await schema(engine, table) == declared(table)


async def test_a_downgrade_drops_what_the_upgrade_added_and_can_be_run_again_halfway(
    at_0001: Settings, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await at_0004(at_0001, engine)
    old = {table: await schema(engine, table) for table in ("events", "reservations")}
    await upgrade_to_head(at_0001)
    execute = op.execute
    ran: list[str] = []

    def killed_after_the_first(statement: Any, *args: Any, **kwargs: Any) -> Any:
        ran.append(str(statement))
        if len(ran) == 2:
            raise KeyboardInterrupt
        return execute(statement, *args, **kwargs)

    monkeypatch.setattr(op, "execute", killed_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        await run_alembic(at_0001, "inventory", command.downgrade, "0004")
    monkeypatch.setattr(op, "execute", execute)
    assert await revision(engine) == "0005"
    await run_alembic(at_0001, "inventory", command.downgrade, "0004")
    assert await revision(engine) == "0004"
    assert {table: await schema(engine, table) for table in old} == old
    await upgrade_to_head(at_0001)
    assert await projections.verify(engine) == []
