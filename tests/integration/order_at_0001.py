"""An order database at revision 0001, filled the way the 0001 code wrote rows (the order row and
its outbox row in one transaction, each with its own clock reading, the outcome's time read
before both; some outbox rows published, some pending, some purged), and the checks that its
upgrade to the event store kept every outcome as it was published."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from alembic import command
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.databases import engine_of, head_of, own_databases, revision, run_alembic, tables
from ticketing.contracts.events import ORDERS_TOPIC, OrderConfirmed, OrderRejected
from ticketing.order import projections
from ticketing.order.repository import STORE
from ticketing.order.tables import event_store, orders
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
    async with engine_of(at_0001, "order") as engine:
        yield engine


@pytest.fixture
async def old(engine: AsyncEngine) -> list[Old]:
    """The orders of ``old_orders``, written into this test's database as 0001 wrote them."""
    written = old_orders()
    await fill_as_0001(engine, written)
    return written


async def migrate(settings: Settings, to: str) -> None:
    step = command.downgrade if to == "0001" else command.upgrade
    await run_alembic(settings, "order", step, to)


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
