"""Order records each outcome as the one event of its booking's stream, which is also what the
relay publishes, with its ``orders`` row and the inbox claim, on both paths (one message, and a
batch in one round trip)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness import as_the_runner_does, own_databases
from tests.harness import order_records as records
from ticketing.contracts.events import ORDERS_TOPIC, BookingRequested, OrderConfirmed
from ticketing.contracts.inventory import (
    ReleaseItem,
    ReleaseItemResult,
    ReleaseOutcome,
    ReservationItem,
    ReservationItemResult,
    ReservationOutcome,
)
from ticketing.order import projections
from ticketing.order.inventory_client import InventoryClient
from ticketing.order.repository import STORE
from ticketing.order.service import CONSUMER, OrderService
from ticketing.order.tables import event_store, inbox, orders
from ticketing.shared.consumer import Received
from ticketing.shared.db import create_engine
from ticketing.shared.settings import Settings
from ticketing.shared.unit_of_work import AlreadyRecorded


class Inventory(InventoryClient):
    """Inventory as the saga sees it, answering each booking id as told (reserved unless told
    otherwise) and releasing the seats it reserved (or was given as ``held``), and counting
    the calls."""

    def __init__(
        self,
        answers: dict[uuid.UUID, ReservationOutcome] | None = None,
        *,
        held: dict[uuid.UUID, int] | None = None,
    ) -> None:
        self.answers = answers or {}
        self.held = dict(held or {})  # booking id -> seats reserved
        self.calls: list[list[ReservationItem]] = []
        self.release_calls: list[list[ReleaseItem]] = []

    async def reserve_many(
        self, items: list[ReservationItem], *, correlation_id: str | None = None
    ) -> list[ReservationItemResult]:
        self.calls.append(items)
        answers = []
        for item in items:
            outcome = self.answers.get(item.booking_id, ReservationOutcome.RESERVED)
            if outcome is ReservationOutcome.RESERVED:
                self.held.setdefault(item.booking_id, item.ticket_count)
            answers.append(ReservationItemResult(item.booking_id, outcome))
        return answers

    async def release_many(
        self, items: list[ReleaseItem], *, correlation_id: str | None = None
    ) -> list[ReleaseItemResult]:
        self.release_calls.append(items)
        return [
            ReleaseItemResult(item.booking_id, ReleaseOutcome.RELEASED, self.held[item.booking_id])
            if item.booking_id in self.held
            else ReleaseItemResult(item.booking_id, ReleaseOutcome.NOT_RESERVED)
            for item in items
        ]


def requested(*, ticket_count: int = 2, total_price: str = "50.00") -> BookingRequested:
    return BookingRequested(
        message_id=uuid.uuid4(),
        booking_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        ticket_count=ticket_count,
        unit_price="25.00",
        total_price=total_price,
        requested_at=datetime.now(UTC),
    )


@pytest.fixture
async def order_db() -> AsyncIterator[Settings]:
    """Settings of an order database of this test's own, at head; dropped afterwards."""
    async with own_databases("order") as settings:
        yield settings


@pytest.fixture
async def engine(order_db: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(order_db, "order")
    try:
        yield engine
    finally:
        await engine.dispose()


async def stored(engine: AsyncEngine, booking_ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    """The store's rows of ``booking_ids``' streams, in position order."""
    query = (
        select(event_store)
        .where(event_store.c.stream_id.in_(booking_ids))
        .order_by(event_store.c.position)
    )
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def order_rows(engine: AsyncEngine) -> dict[uuid.UUID, dict[str, Any]]:
    async with engine.connect() as conn:
        return {row.booking_id: dict(row._mapping) for row in await conn.execute(select(orders))}


async def count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


async def test_one_message_appends_its_outcome_for_the_relay_with_its_row_and_claim(
    engine: AsyncEngine,
) -> None:
    wakes: list[None] = []
    service = OrderService(records(engine), Inventory(), after_commit=lambda: wakes.append(None))
    message = requested(ticket_count=3, total_price="75.50")
    await service.handle_batch([Received(message, "corr-one")])
    (row,) = await stored(engine, [message.booking_id])
    async with engine.connect() as conn:
        (recorded,) = await STORE.stream(conn, message.booking_id)
    event = recorded.event
    assert isinstance(event, OrderConfirmed)
    assert (event.booking_id, event.event_id, event.ticket_count, event.total_price) == (
        message.booking_id,
        message.event_id,
        3,
        "75.50",
    )
    assert row["event_id"] == event.message_id  # consumers deduplicate on it
    assert (row["stream_type"], row["version"], row["event_type"]) == (
        "order",
        1,
        "OrderConfirmed",
    )
    assert (row["actor"], row["correlation_id"], row["causation_id"]) == (
        CONSUMER,
        "corr-one",
        str(message.message_id),
    )
    assert (row["topic"], row["message_key"], row["published_at"]) == (
        ORDERS_TOPIC,
        str(message.booking_id),
        None,
    )
    assert event.confirmed_at == recorded.recorded_at
    order = (await order_rows(engine))[message.booking_id]
    assert (order["id"], order["status"], order["created_at"]) == (
        event.order_id,
        "CONFIRMED",
        row["recorded_at"],
    )
    assert await count(engine, inbox) == 1
    assert wakes == [None]
    assert await projections.verify(engine) == []


async def test_a_batch_appends_every_outcome_in_one_round_trip_each_with_its_own_cause(
    engine: AsyncEngine,
) -> None:
    messages = [requested() for _ in range(4)]
    refused = {messages[1].booking_id: ReservationOutcome.INSUFFICIENT}
    inventory = Inventory(refused)
    service = OrderService(records(engine), inventory)
    batch = [Received(m, f"corr-{i}") for i, m in enumerate(messages)]
    batch.append(Received(dataclasses.replace(messages[0], message_id=uuid.uuid4()), "again"))
    await service.handle_batch(batch)
    assert len(inventory.calls) == 1
    rows = await stored(engine, [m.booking_id for m in messages])
    assert [(r["stream_id"], r["version"]) for r in rows] == [(m.booking_id, 1) for m in messages]
    assert [(r["correlation_id"], r["causation_id"]) for r in rows] == [
        (f"corr-{i}", str(m.message_id)) for i, m in enumerate(messages)
    ]
    assert [r["event_type"] for r in rows] == [
        "OrderConfirmed",
        "OrderRejected",
        "OrderConfirmed",
        "OrderConfirmed",
    ]
    assert {r["published_at"] for r in rows} == {None}
    table = await order_rows(engine)
    rejected = table[messages[1].booking_id]
    assert (rejected["id"], rejected["reason"], rejected["ticket_count"]) == (
        rows[1]["event_id"],
        "insufficient_capacity",
        None,
    )
    assert await count(engine, inbox) == 4  # the booking's second message was skipped
    assert await projections.verify(engine) == []


async def test_a_redelivered_batch_goes_one_by_one_and_no_booking_gets_a_second_outcome(
    engine: AsyncEngine,
) -> None:
    inventory = Inventory()
    service = OrderService(records(engine), inventory)
    first, second = requested(), requested()
    await service.handle_batch([Received(first, None)])
    # Redelivered, with a new message: applied one by one, each once.
    other_message = dataclasses.replace(second, message_id=uuid.uuid4())
    redelivered = [Received(first, None), Received(second, None)]
    with pytest.raises(AlreadyRecorded):  # the runner then hands each message over alone
        await service.handle_batch(redelivered)
    await as_the_runner_does(service.handle_batch, redelivered)
    await service.handle_batch([Received(other_message, None)])
    await service.handle_batch(
        [Received(dataclasses.replace(first, message_id=uuid.uuid4()), None)]
    )
    rows = await stored(engine, [first.booking_id, second.booking_id])
    assert [r["stream_id"] for r in rows] == [first.booking_id, second.booking_id]
    assert len(await order_rows(engine)) == 2
    assert await count(engine, event_store) == 2
    assert await projections.verify(engine) == []


async def test_concurrent_messages_for_one_booking_record_one_outcome(
    engine: AsyncEngine,
) -> None:
    """Eight messages for one booking, each its own (not a redelivery): the stream's version 1
    is taken once, whoever comes first."""
    service = OrderService(records(engine), Inventory())
    message = requested()
    await asyncio.gather(
        *(
            service.handle_batch(
                [Received(dataclasses.replace(message, message_id=uuid.uuid4()), None)]
            )
            for _ in range(8)
        )
    )
    assert len(await stored(engine, [message.booking_id])) == 1
    async with engine.connect() as conn:
        versions = await conn.scalar(text("SELECT COUNT(*) FROM orders"))
    assert versions == 1
