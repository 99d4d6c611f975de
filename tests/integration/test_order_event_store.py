"""Order records each outcome as the one event of its booking's stream, which is also what the
relay publishes, with its ``orders`` row and the inbox claim, on both paths (one message, and a
batch in one round trip)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.broker import as_the_runner_does
from tests.harness.databases import order_records as records
from tests.integration.order_db import (
    Inventory,
    count,
    engine,
    order_db,
    order_rows,
    requested,
    stored,
)
from ticketing.contracts.events import ORDERS_TOPIC, OrderConfirmed
from ticketing.contracts.inventory import (
    ReservationOutcome,
)
from ticketing.order import projections
from ticketing.order.repository import STORE
from ticketing.order.service import CONSUMER, OrderService
from ticketing.order.tables import event_store, inbox
from ticketing.shared.db.unit_of_work import AlreadyRecorded
from ticketing.shared.messaging.consumer import Received

__all__ = ["engine", "order_db"]  # fixtures


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
