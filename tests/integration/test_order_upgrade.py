"""Upgrading an order database of revision 0001 to the event store (0002) loses nothing.

Each test fills a database of its own at revision 0001 the way the 0001 code wrote rows (the
order row and its outbox row in one transaction, each with its own clock reading, and the
outcome's time read before both), some outbox rows published, some pending, some purged by
retention, then upgrades it and compares every event with what the 0001 code published or would
have published.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from alembic import command, op
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness import head_of, own_databases
from tests.harness import order_records as records
from tests.integration.test_order_event_store import Inventory, requested
from ticketing.contracts.events import ORDERS_TOPIC, BookingCancelled, OrderConfirmed, OrderRejected
from ticketing.order import projections
from ticketing.order.repository import STORE
from ticketing.order.service import OrderService
from ticketing.order.tables import event_store, orders
from ticketing.shared.consumer import Received
from ticketing.shared.db import create_engine
from ticketing.shared.migrations import alembic_config
from ticketing.shared.relay import OutboxRelay
from ticketing.shared.settings import Settings

T0 = datetime(2026, 11, 30, 9, 0, 0, 250000)  # naive UTC, as DATETIME(6) columns hold times
Outcome = OrderConfirmed | OrderRejected
_encode = msgspec.json.Encoder().encode


@dataclasses.dataclass(frozen=True)
class Old:
    """One order as the 0001 code recorded it: the outcome it published (or would have), its
    orders row and its outbox row (None: purged; with no orders row: a lone outbox row)."""

    outcome: Outcome
    row: dict[str, Any] | None
    outbox: dict[str, Any] | None
    correlation_id: str | None

    @property
    def booking_id(self) -> uuid.UUID:
        return self.outcome.booking_id

    @property
    def pending(self) -> bool:
        return self.outbox is not None and self.outbox["published_at"] is None


def recorded_as_0001(
    at: datetime,
    *,
    rejected: str | None = None,
    correlation_id: str | None = None,
    published: bool = True,
    purged: bool = False,
    lone: bool = False,
    ticket_count: int = 2,
    total_price: str = "50.00",
) -> Old:
    """What the 0001 code recorded for one booking settled at ``at``: the outcome's own time
    first, then the orders row, then the outbox row (three clock readings)."""
    booking_id, event_id, message_id, order_id = (uuid.uuid4() for _ in range(4))
    decided = at.replace(tzinfo=UTC)
    outcome: Outcome
    if rejected is None:
        outcome = OrderConfirmed(
            message_id=message_id,
            order_id=order_id,
            booking_id=booking_id,
            event_id=event_id,
            ticket_count=ticket_count,
            total_price=total_price,
            confirmed_at=decided,
        )
    else:
        outcome = OrderRejected(
            message_id=message_id,
            booking_id=booking_id,
            event_id=event_id,
            reason=rejected,
            rejected_at=decided,
        )
    row = {
        "id": order_id,
        "booking_id": booking_id,
        "event_id": event_id,
        "ticket_count": ticket_count,
        "total_price": Decimal(total_price),
        "status": "CONFIRMED" if rejected is None else "REJECTED",
        "reason": rejected,
        "created_at": at + timedelta(microseconds=40),
    }
    headers = {
        "event_type": type(outcome).__name__,
        "message_id": str(message_id),
        "correlation_id": correlation_id or str(message_id),
        "content-type": "application/json",
    }
    created = at + timedelta(microseconds=90)
    outbox = {
        "event_id": message_id,
        "aggregate_type": "order",
        "aggregate_id": str(booking_id),
        "topic": ORDERS_TOPIC,
        "message_key": str(booking_id),
        "event_type": type(outcome).__name__,
        "payload": _encode(outcome).decode(),
        "headers": _encode(headers).decode(),
        "created_at": created,
        "published_at": created + timedelta(milliseconds=3) if published else None,
    }
    return Old(outcome, None if lone else row, None if purged else outbox, correlation_id)


def old_orders() -> list[Old]:
    """Confirmed and rejected orders, published, pending and purged, with and without a
    correlation id; one purged at a time with no fraction of a second; one lone outbox row."""
    at = T0
    return [
        recorded_as_0001(at, purged=True, ticket_count=4, total_price="1234.50"),
        recorded_as_0001(  # its row's time falls on a whole second
            at.replace(microsecond=0) + timedelta(seconds=1, microseconds=-40),
            rejected="event_not_found",
            purged=True,
        ),
        recorded_as_0001(at + timedelta(seconds=2), correlation_id="req-published"),
        recorded_as_0001(at + timedelta(seconds=3), rejected="insufficient_capacity"),
        recorded_as_0001(
            at + timedelta(seconds=4), correlation_id='odd "id" \\ é', total_price="0.00"
        ),
        recorded_as_0001(at + timedelta(seconds=5), published=False, correlation_id="req-late"),
        recorded_as_0001(at + timedelta(seconds=6), rejected="reservation_conflict", lone=True),
        recorded_as_0001(
            at + timedelta(seconds=7), rejected="insufficient_capacity", published=False
        ),
        recorded_as_0001(at + timedelta(seconds=8), published=False, ticket_count=1),
    ]


OUTBOX_COLUMNS = (
    "event_id",
    "aggregate_type",
    "aggregate_id",
    "topic",
    "message_key",
    "event_type",
    "payload",
    "headers",
    "created_at",
    "published_at",
)


async def fill_as_0001(engine: AsyncEngine, old: list[Old]) -> None:
    async with engine.begin() as conn:
        for item in old:
            if item.row is not None:
                await conn.execute(insert(orders).values(**item.row))
            if item.outbox is not None:
                columns = ", ".join(OUTBOX_COLUMNS)
                marks = ", ".join(f":{c}" for c in OUTBOX_COLUMNS)
                values = {**item.outbox, "event_id": str(item.outbox["event_id"])}
                await conn.execute(text(f"INSERT INTO outbox ({columns}) VALUES ({marks})"), values)


@pytest.fixture
async def at_0001() -> AsyncIterator[Settings]:
    """Settings of an order database of this test's own at revision 0001; dropped afterwards."""
    async with own_databases("order", revision="0001") as settings:
        yield settings


@pytest.fixture
async def engine(at_0001: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(at_0001, "order")
    try:
        yield engine
    finally:
        await engine.dispose()


async def migrate(settings: Settings, to: str) -> None:
    config = alembic_config(settings, "order")
    if to == "0001":
        await asyncio.to_thread(command.downgrade, config, to)
    else:
        await asyncio.to_thread(command.upgrade, config, to)


async def revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        found: str | None = await conn.scalar(text("SELECT version_num FROM alembic_version"))
        return found


async def tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.execute(text("SHOW TABLES"))).scalars())


async def rows_of(engine: AsyncEngine, query: Any) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


def expected_event(item: Old, event_id: uuid.UUID) -> Outcome:
    """The event the store must hold: what was published, or for a purged row, what the code
    would have published under the new message id, at the row's time."""
    if item.outbox is not None:
        return item.outcome
    assert item.row is not None
    at = item.row["created_at"].replace(tzinfo=UTC)
    if isinstance(item.outcome, OrderConfirmed):
        return dataclasses.replace(item.outcome, message_id=event_id, confirmed_at=at)
    return dataclasses.replace(item.outcome, message_id=event_id, rejected_at=at)


async def check_upgraded(engine: AsyncEngine, old: list[Old]) -> None:
    """Every order is the one event of its booking's stream, as it was (or would have been)
    published, and the table is what the events say."""
    assert await revision(engine) == head_of("order")
    assert "outbox" not in await tables(engine)
    stored = await rows_of(engine, select(event_store).order_by(event_store.c.position))
    assert len(stored) == len(old)
    by_stream = {row["stream_id"]: row for row in stored}
    table = {row["booking_id"]: row for row in await rows_of(engine, select(orders))}
    async with engine.connect() as conn:
        recorded = {r.stream_id: r for r in await STORE.page(conn, limit=100)}
    for item in old:
        row = by_stream[item.booking_id]
        event = expected_event(item, row["event_id"])
        assert recorded[item.booking_id].event == event
        assert row["payload"] == _encode(event).decode()  # as msgspec writes it, byte for byte
        assert row["event_id"] == event.message_id
        kept = item.outbox
        at = kept["created_at"] if kept else item.row["created_at"]  # type: ignore[index]
        assert (row["recorded_at"], row["published_at"]) == (
            at,
            kept["published_at"] if kept else at,
        )
        assert (row["stream_type"], row["version"], row["schema_version"]) == ("order", 1, 1)
        assert (row["event_type"], row["topic"], row["message_key"]) == (
            type(event).__name__,
            ORDERS_TOPIC,
            str(item.booking_id),
        )
        assert (row["actor"], row["causation_id"]) == ("migration", None)
        assert row["correlation_id"] == (item.correlation_id if kept else None)
        order = table[item.booking_id]
        assert order["created_at"] == row["recorded_at"]
        if isinstance(event, OrderConfirmed):
            assert (order["id"], order["ticket_count"], order["total_price"]) == (
                event.order_id,
                event.ticket_count,
                Decimal(event.total_price),
            )
        else:
            assert (order["id"], order["ticket_count"], order["total_price"]) == (
                event.message_id,
                None,
                None,
            )
    times = [row["recorded_at"] for row in stored]
    assert times == sorted(times), "positions follow the times"
    assert await projections.verify(engine) == []


class RecordingProducer:
    """Acknowledges every send at once and keeps what was sent, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []

    async def send(
        self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[None]:
        self.sent.append((topic, key, value, headers))
        acknowledged: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acknowledged.set_result(None)
        return acknowledged


async def relay_once(engine: AsyncEngine) -> RecordingProducer:
    """What the relay publishes now, marked as published."""
    relay = OutboxRelay(
        engine,
        event_store,
        lock_name="test",
        producer_factory=RecordingProducer,
    )
    producer = RecordingProducer()
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await relay.publish(conn, producer)
    return producer


async def test_upgrade_turns_every_order_into_the_event_it_published(
    at_0001: Settings, engine: AsyncEngine
) -> None:
    old = old_orders()
    await fill_as_0001(engine, old)
    await migrate(at_0001, "head")
    await check_upgraded(engine, old)


async def test_pending_outcomes_are_published_after_the_upgrade_as_the_0001_relay_would_have(
    at_0001: Settings, engine: AsyncEngine
) -> None:
    old = old_orders()
    await fill_as_0001(engine, old)
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
    at_0001: Settings, engine: AsyncEngine
) -> None:
    old = old_orders()
    await fill_as_0001(engine, old)
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
    at_0001: Settings, engine: AsyncEngine
) -> None:
    """Its outcome, made from the 0001 rows, is the stream's version 1: the release is version
    2, and its row keeps the time the upgrade gave it."""
    old = old_orders()
    await fill_as_0001(engine, old)
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
    at_0001: Settings, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MariaDB commits each DDL statement: killed while filling the store, the upgrade leaves
    the store table and nullable columns behind at revision 0001; run again, it finishes."""
    old = old_orders()
    await fill_as_0001(engine, old)
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
    at_0001: Settings, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox is dropped last: once it is gone, the store is whole, and running the upgrade
    again must keep it (not start over from an outbox that is no more)."""
    old = old_orders()
    await fill_as_0001(engine, old)
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
    at_0001: Settings, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = old_orders()
    await fill_as_0001(engine, old)
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
    at_0001: Settings, engine: AsyncEngine
) -> None:
    old = old_orders()
    await fill_as_0001(engine, old)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE outbox SET aggregate_type = 'test' LIMIT 1"))
    with pytest.raises(RuntimeError, match="1 outbox rows that are no outcome of an order"):
        await migrate(at_0001, "head")
    assert await revision(engine) == "0001"
    assert "event_store" not in await tables(engine)
