"""Upgrading an order database of revision 0001 to the event store (0002) loses nothing.

Each test fills a database of its own at revision 0001 the way the 0001 code wrote rows (the
order row and its outbox row in one transaction, each with its own clock reading, and the
outcome's time read before both), some outbox rows published, some pending, some purged by
retention, then upgrades it and compares every event with what the 0001 code published or would
have published.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import op
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.databases import order_records as records
from tests.harness.databases import revision, tables
from tests.integration.order_at_0001 import (
    OUTBOX_COLUMNS,
    Old,
    at_0001,
    check_upgraded,
    engine,
    migrate,
    old,
    rows_of,
)
from tests.integration.order_db import Inventory, requested
from tests.integration.order_relay import relay_once
from ticketing.contracts.events import ORDERS_TOPIC, BookingCancelled, OrderConfirmed
from ticketing.order import projections
from ticketing.order.repository import STORE
from ticketing.order.service import OrderService
from ticketing.order.tables import event_store, orders
from ticketing.shared.messaging.consumer import Received
from ticketing.shared.settings import Settings

__all__ = ["at_0001", "engine", "old"]  # fixtures


async def test_upgrade_turns_every_order_into_the_event_it_published(
    at_0001: Settings, engine: AsyncEngine, old: list[Old]
) -> None:
    await migrate(at_0001, "head")
    await check_upgraded(engine, old)


async def test_pending_outcomes_are_published_after_the_upgrade_as_the_0001_relay_would_have(
    at_0001: Settings, engine: AsyncEngine, old: list[Old]
) -> None:
    await migrate(at_0001, "head")
    producer = await relay_once(engine)
    pending = [item for item in old if item.pending]
    assert len(pending) == 3
    assert producer.sent == [
        (
            ORDERS_TOPIC,
            str(item.booking_id).encode(),
            item.outbox["payload"].encode(),  # type: ignore[index]
            [(k, v.encode()) for k, v in json.loads(item.outbox["headers"]).items()],  # type: ignore[index]
        )
        for item in pending
    ]
    assert (await relay_once(engine)).sent == []


async def test_the_saga_after_the_upgrade_gives_no_booking_a_second_order(
    at_0001: Settings, engine: AsyncEngine, old: list[Old]
) -> None:
    await migrate(at_0001, "head")
    service = OrderService(records(engine), Inventory())
    again = dataclasses.replace(requested(), booking_id=old[0].booking_id)
    await service.handle_batch([Received(again, None)])  # its order is there: nothing more
    new = requested()
    await service.handle_batch([Received(new, None)])
    async with engine.connect() as conn:
        assert len(await STORE.stream(conn, old[0].booking_id)) == 1
        assert len(await STORE.stream(conn, new.booking_id)) == 1
    assert await projections.verify(engine) == []


async def test_an_order_confirmed_before_the_upgrade_is_released_after_it(
    at_0001: Settings, engine: AsyncEngine, old: list[Old]
) -> None:
    """Its outcome, made from the 0001 rows, is the stream's version 1: the release is version
    2, and its row keeps the time the upgrade gave it."""
    await migrate(at_0001, "head")
    item = old[2]  # confirmed and published
    outcome = item.outcome
    assert isinstance(outcome, OrderConfirmed)
    before = (await rows_of(engine, select(orders).where(orders.c.booking_id == item.booking_id)))[
        0
    ]
    inventory = Inventory(held={item.booking_id: outcome.ticket_count})
    cancel = BookingCancelled(
        message_id=uuid.uuid4(),
        booking_id=item.booking_id,
        event_id=outcome.event_id,
        ticket_count=outcome.ticket_count,
        cancelled_at=datetime.now(UTC),
    )
    await OrderService(records(engine), inventory).handle_batch([Received(cancel, None)])
    async with engine.connect() as conn:
        history = await STORE.stream(conn, item.booking_id)
    assert [type(r.event).__name__ for r in history] == ["OrderConfirmed", "OrderReleased"]
    assert history[1].event.order_id == outcome.order_id
    after = (await rows_of(engine, select(orders).where(orders.c.booking_id == item.booking_id)))[0]
    assert after == {**before, "status": "RELEASED", "reason": "cancelled"}
    assert await projections.verify(engine) == []


async def test_an_upgrade_stopped_halfway_can_be_run_again(
    at_0001: Settings, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, old: list[Old]
) -> None:
    """MariaDB commits each DDL statement: killed while filling the store, the upgrade leaves
    the store table and nullable columns behind at revision 0001; run again, it finishes."""
    execute = op.execute

    def killed_while_filling(sql: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(sql, str) and sql.lstrip().startswith("UPDATE orders"):
            raise KeyboardInterrupt  # the process is stopped here
        return execute(sql, *args, **kwargs)

    monkeypatch.setattr(op, "execute", killed_while_filling)
    with pytest.raises(KeyboardInterrupt):
        await migrate(at_0001, "head")
    monkeypatch.undo()
    assert await revision(engine) == "0001"
    assert {"event_store", "outbox"} <= await tables(engine)
    await migrate(at_0001, "head")
    await check_upgraded(engine, old)


async def test_an_upgrade_stopped_after_dropping_the_outbox_is_finished_by_the_next_run(
    at_0001: Settings, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, old: list[Old]
) -> None:
    """The outbox is dropped last: once it is gone, the store is whole, and running the upgrade
    again must keep it (not start over from an outbox that is no more)."""
    drop_table = op.drop_table

    def killed_after_dropping(name: str, *args: Any, **kwargs: Any) -> Any:
        drop_table(name, *args, **kwargs)
        if name == "outbox":
            raise KeyboardInterrupt

    monkeypatch.setattr(op, "drop_table", killed_after_dropping)
    with pytest.raises(KeyboardInterrupt):
        await migrate(at_0001, "head")
    monkeypatch.undo()
    assert await revision(engine) == "0001"
    await migrate(at_0001, "head")
    await check_upgraded(engine, old)


async def test_downgrade_gives_back_the_outbox_and_upgrading_again_the_same_store(
    at_0001: Settings, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, old: list[Old]
) -> None:
    await migrate(at_0001, "head")
    store = await rows_of(engine, select(event_store).order_by(event_store.c.position))
    table = await rows_of(engine, select(orders).order_by(orders.c.booking_id))

    drop_table = op.drop_table

    def killed_before_dropping_the_store(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "event_store":
            raise KeyboardInterrupt
        return drop_table(name, *args, **kwargs)

    monkeypatch.setattr(op, "drop_table", killed_before_dropping_the_store)
    with pytest.raises(KeyboardInterrupt):
        await migrate(at_0001, "0001")
    monkeypatch.undo()
    assert await revision(engine) == "0002"
    await migrate(at_0001, "0001")
    assert await revision(engine) == "0001"
    assert "event_store" not in await tables(engine)

    async with engine.connect() as conn:
        outbox = {
            row.aggregate_id: dict(row._mapping)
            for row in await conn.execute(text("SELECT * FROM outbox ORDER BY id"))
        }
    assert len(outbox) == len(old)
    for item, event in zip(old, store_events(store, old), strict=True):
        row = outbox[str(item.booking_id)]
        kept = {column: row[column] for column in OUTBOX_COLUMNS}
        assert str(kept.pop("event_id")) == str(event["event_id"])
        if item.outbox is not None:
            assert kept == {k: v for k, v in item.outbox.items() if k != "event_id"}
        else:  # purged: back as the published event the upgrade made of it
            assert kept["payload"] == event["payload"]
            assert kept["published_at"] == kept["created_at"] == event["recorded_at"]
            assert json.loads(kept["headers"]) == {
                "event_type": event["event_type"],
                "message_id": str(event["event_id"]),
                "correlation_id": str(event["event_id"]),
                "content-type": "application/json",
            }
    assert await rows_of(engine, select(orders).order_by(orders.c.booking_id)) == table

    await migrate(at_0001, "head")
    assert await rows_of(engine, select(event_store).order_by(event_store.c.position)) == store
    assert await projections.verify(engine) == []


def store_events(store: list[dict[str, Any]], old: list[Old]) -> list[dict[str, Any]]:
    by_stream = {row["stream_id"]: row for row in store}
    return [by_stream[item.booking_id] for item in old]


async def test_an_outbox_row_the_0001_code_never_wrote_stops_the_upgrade_before_any_change(
    at_0001: Settings, engine: AsyncEngine, old: list[Old]
) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE outbox SET aggregate_type = 'test' LIMIT 1"))
    with pytest.raises(RuntimeError, match="1 outbox rows that are no outcome of an order"):
        await migrate(at_0001, "head")
    assert await revision(engine) == "0001"
    assert "event_store" not in await tables(engine)
