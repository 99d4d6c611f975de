"""The event store's ``traceparent`` column (booking 0006, inventory 0006, order 0004) on a
database of each service's own: events recorded before keep no trace, the column is what the
table declares, and both directions can be run again after a run that did its work but did not
record its revision (MariaDB commits each DDL statement)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Table, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.databases import engine_of, head_of, own_databases, revision, run_alembic
from ticketing.booking.tables import event_store as booking_store
from ticketing.inventory.tables import event_store as inventory_store
from ticketing.order.tables import event_store as order_store
from ticketing.shared.settings import ServiceName

BEFORE: dict[ServiceName, str] = {"booking": "0005", "inventory": "0005", "order": "0003"}
STORES: dict[ServiceName, Table] = {
    "booking": booking_store,
    "inventory": inventory_store,
    "order": order_store,
}
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"  # version 00: 55 chars
T0 = datetime(2026, 12, 6, 9, 0, 0, 250000)  # naive UTC, as DATETIME(6) columns hold times


async def columns(engine: AsyncEngine) -> list[tuple[str, str, bool]]:
    """The store's columns in their order: name, type, nullable."""
    async with engine.connect() as conn:
        rows = await conn.execute(text("SHOW COLUMNS FROM event_store"))
        return [(row.Field, row.Type, row.Null == "YES") for row in rows]


async def record(engine: AsyncEngine, store: Table, version: int, **extra: str) -> uuid.UUID:
    """One event row, naming only the columns the store had before the trace (and ``extra``)."""
    event_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            store.insert().values(
                event_id=event_id,
                stream_id=uuid.UUID(int=1),
                stream_type="test",
                version=version,
                event_type="Tested",
                schema_version=1,
                payload="{}",
                correlation_id="c-1",
                actor="migration-test",
                recorded_at=T0,
                **extra,
            )
        )
    return event_id


async def events(engine: AsyncEngine, store: Table) -> list[tuple[Any, ...]]:
    """The rows without their trace, as every revision has them."""
    kept = [c for c in store.c if c.name != "traceparent"]
    async with engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(select(*kept).order_by(store.c.position))]


async def traces(engine: AsyncEngine, store: Table) -> dict[uuid.UUID, str | None]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(store.c.event_id, store.c.traceparent))
        return dict(rows.all())


@pytest.mark.parametrize("service", list(BEFORE))
async def test_the_trace_column_comes_and_goes_and_each_way_can_run_again(
    service: ServiceName,
) -> None:
    store, before, head = STORES[service], BEFORE[service], head_of(service)
    async with (
        own_databases(service, revision=before) as settings,
        engine_of(settings, service) as engine,
    ):
        old = await record(engine, store, 1)
        untraced = await columns(engine)
        assert "traceparent" not in {name for name, _, _ in untraced}

        await run_alembic(settings, service, command.upgrade, "head")
        assert await revision(engine) == head
        traced = await columns(engine)
        assert [(name, nullable) for name, _, nullable in traced] == [
            (c.name, bool(c.nullable)) for c in store.c
        ]
        assert ("traceparent", "varchar(64)", True) in traced
        assert await traces(engine, store) == {old: None}
        new = await record(engine, store, 2, traceparent=TRACEPARENT)
        assert await traces(engine, store) == {old: None, new: TRACEPARENT}
        rows = await events(engine, store)

        # Its work done but its revision not recorded: run again, it changes nothing.
        await run_alembic(settings, service, command.stamp, before)
        await run_alembic(settings, service, command.upgrade, "head")
        assert await revision(engine) == head
        assert await columns(engine) == traced
        assert await traces(engine, store) == {old: None, new: TRACEPARENT}

        await run_alembic(settings, service, command.downgrade, "-1")
        assert await revision(engine) == before
        assert await columns(engine) == untraced
        assert await events(engine, store) == rows

        await run_alembic(settings, service, command.stamp, head)
        await run_alembic(settings, service, command.downgrade, "-1")
        assert await revision(engine) == before
        assert await columns(engine) == untraced
        assert await events(engine, store) == rows
