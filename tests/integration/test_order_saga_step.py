"""The running order service, alone: a BookingRequested sent to Kafka becomes one outcome in
order's store, which its relay publishes to ``ticketing.orders`` as it was stored."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import select

from tests.harness.serving import Stack
from tests.integration.helpers import create_event
from ticketing.contracts.events import (
    BOOKINGS_TOPIC,
    ORDERS_TOPIC,
    BookingRequested,
    OrderConfirmed,
)
from ticketing.order import projections
from ticketing.order.repository import STORE
from ticketing.order.tables import event_store


async def send(stack: Stack, event: BookingRequested, correlation_id: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            BOOKINGS_TOPIC,
            value=msgspec.json.encode(event),
            key=str(event.event_id).encode(),
            headers=[
                ("event_type", b"BookingRequested"),
                ("message_id", str(event.message_id).encode()),
                ("correlation_id", correlation_id.encode()),
            ],
        )
    finally:
        await producer.stop()


async def published_for(stack: Stack, booking_id: uuid.UUID, timeout: float = 30) -> list[Any]:
    """Every record of ``ticketing.orders`` keyed by ``booking_id``, once there is one (and
    a moment more, for a second one that should not come)."""
    consumer = AIOKafkaConsumer(
        ORDERS_TOPIC,
        bootstrap_servers=stack.settings.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        settle_until = None
        now = asyncio.get_running_loop().time()
        while now < (settle_until or deadline):
            batch = await consumer.getmany(timeout_ms=200)
            found += [
                record
                for records in batch.values()
                for record in records
                if record.key == str(booking_id).encode()
            ]
            now = asyncio.get_running_loop().time()
            if found and settle_until is None:
                settle_until = now + 1.0
    finally:
        await consumer.stop()
    return found


async def test_a_booking_request_is_settled_once_and_published_as_stored(stack: Stack) -> None:
    event = await create_event(stack.inventory, capacity=5, price="20.00")
    request = BookingRequested(
        message_id=uuid.uuid4(),
        booking_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        event_id=uuid.UUID(event["id"]),
        ticket_count=2,
        unit_price="20.00",
        total_price="40.00",
        requested_at=datetime.now(UTC),
    )
    await send(stack, request, "corr-order-alone")
    await send(stack, request, "corr-order-alone")  # redelivered: one effect
    records = await published_for(stack, request.booking_id)
    assert len(records) == 1
    (record,) = records
    engine = stack.engines["order"]
    async with engine.connect() as conn:
        (recorded,) = await STORE.stream(conn, request.booking_id)
        published_at = await conn.scalar(
            select(event_store.c.published_at).where(event_store.c.position == recorded.position)
        )
    outcome = msgspec.json.decode(record.value, type=OrderConfirmed)
    assert outcome == recorded.event
    assert (outcome.ticket_count, outcome.total_price) == (2, "40.00")
    assert dict(record.headers) == {
        "event_type": b"OrderConfirmed",
        "message_id": str(recorded.event_id).encode(),
        "correlation_id": b"corr-order-alone",
        "content-type": b"application/json",
    }
    assert recorded.causation_id == str(request.message_id)
    for _ in range(50):  # marked once the broker acknowledged it
        if published_at is not None:
            break
        await asyncio.sleep(0.1)
        async with engine.connect() as conn:
            published_at = await conn.scalar(
                select(event_store.c.published_at).where(
                    event_store.c.position == recorded.position
                )
            )
    assert published_at is not None
    assert not [p for p in await projections.verify(engine) if str(request.booking_id) in p]
