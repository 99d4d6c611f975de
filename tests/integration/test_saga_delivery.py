"""At-least-once delivery meets idempotent consumers: duplicates and poison messages, a poison
message dead-lettered before it reserves any seat."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import msgspec
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fakes.dead_letters import DeadLetters
from tests.harness.broker import read_topic
from tests.harness.databases import order_records as records
from tests.harness.serving import Stack
from tests.integration.flow import book, order_service, settled, setup_sale
from tests.integration.order_db import (
    Inventory,
    engine,
    order_db,
    requested,
)
from ticketing.booking.tables import event_store as booking_store
from ticketing.contracts.events import (
    BOOKINGS_DLQ_TOPIC,
    BOOKINGS_TOPIC,
    EVENT_TYPE_HEADER,
    BookingRequested,
)
from ticketing.order.service import OrderService
from ticketing.order.tables import event_store as order_store
from ticketing.order.tables import orders
from ticketing.shared.messaging.consumer import Delivery, MessageRunner, Received
from ticketing.shared.messaging.publishing import message_headers

__all__ = ["engine", "order_db"]  # fixtures


async def left(stack: Stack, event_id: str) -> int:
    value: int = (await stack.inventory.get(f"/api/v1/events/{event_id}")).json()["left_capacity"]
    return value


async def orders_for(stack: Stack, booking_id: str) -> int:
    async with stack.engines["order"].connect() as conn:
        value = await conn.scalar(
            select(func.count())
            .select_from(orders)
            .where(orders.c.booking_id == uuid.UUID(booking_id))
        )
    return int(value or 0)


async def publish_raw(
    stack: Stack, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


async def test_a_redelivered_booking_request_has_one_effect(stack: Stack) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=10)
    accepted = (await book(stack, customer_id, event_id, 2)).json()
    assert (await settled(stack, accepted["id"]))["status"] == "CONFIRMED"
    async with stack.engines["booking"].connect() as conn:
        row = (
            await conn.execute(
                select(booking_store).where(
                    booking_store.c.stream_id == uuid.UUID(accepted["id"]),
                    booking_store.c.event_type == "BookingRequested",
                )
            )
        ).one()
    headers = message_headers(row.event_type, row.event_id, row.correlation_id)
    for _ in range(3):  # the same message, delivered again (e.g. a relay crash before marking)
        await publish_raw(
            stack, BOOKINGS_TOPIC, row.payload.encode(), row.message_key.encode(), headers
        )
    # A later booking on the same partition proves the duplicates were consumed before it.
    later = (await book(stack, customer_id, event_id, 1)).json()
    assert (await settled(stack, later["id"]))["status"] == "CONFIRMED"
    assert await orders_for(stack, accepted["id"]) == 1
    assert await left(stack, event_id) == 7
    async with stack.engines["order"].connect() as conn:
        outcomes = await conn.scalar(
            select(func.count())
            .select_from(order_store)
            .where(order_store.c.stream_id == uuid.UUID(accepted["id"]))
        )
    assert outcomes == 1


async def test_concurrent_handling_of_one_message_applies_it_once(stack: Stack) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=10)
    event = BookingRequested(
        message_id=uuid.uuid4(),
        booking_id=uuid.uuid4(),
        customer_id=uuid.UUID(customer_id),
        event_id=uuid.UUID(event_id),
        ticket_count=4,
        unit_price="25.00",
        total_price="100.00",
        requested_at=datetime.now(UTC),
    )
    async with order_service(stack) as (service, credentials):
        await asyncio.gather(*(service.handle_batch([Received(event, None)]) for _ in range(8)))
    assert credentials.fetches == 1  # eight concurrent calls, one token
    assert await orders_for(stack, str(event.booking_id)) == 1
    assert await left(stack, event_id) == 6


async def test_a_poison_message_goes_to_the_dlq_and_the_partition_keeps_flowing(
    stack: Stack,
) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=10)
    poison_key = event_id.encode()  # same key, so the same partition as the next booking
    await publish_raw(
        stack,
        BOOKINGS_TOPIC,
        b'{"this is": "not a booking"}',
        poison_key,
        [("event_type", b"BookingRequested"), ("message_id", str(uuid.uuid4()).encode())],
    )
    accepted = (await book(stack, customer_id, event_id, 1)).json()
    assert (await settled(stack, accepted["id"]))["status"] == "CONFIRMED"
    dead = await read_topic(stack.settings.kafka_bootstrap, BOOKINGS_DLQ_TOPIC, 50, timeout=5)
    mine = [r for r in dead if r.value == b'{"this is": "not a booking"}' and r.key == poison_key]
    assert len(mine) == 1
    headers = dict(mine[0].headers)
    assert b"invalid" in headers["dlq_error"]
    assert headers["dlq_source_topic"] == BOOKINGS_TOPIC.encode()


async def test_a_request_whose_price_is_no_decimal_reserves_no_seats(
    engine: AsyncEngine,
) -> None:
    """Its contract types the prices as ``str``: such a message once decoded, was reserved at
    inventory, and only then failed to become its ``orders`` row, dead-lettered with its seats
    held. Prices are held to the shape the services write when the message is decoded."""
    inventory = Inventory()
    payload = msgspec.json.encode(requested(total_price="fifty"))
    dead = DeadLetters()
    stand_in: object = dead
    runner = MessageRunner(stand_in, dlq_topic="t.dlq", accepted=(BookingRequested,))  # type: ignore[arg-type]
    delivery = Delivery("t", 0, 0, None, payload, {EVENT_TYPE_HEADER: "BookingRequested"})
    await runner.run_batch([delivery], OrderService(records(engine), inventory).handle_batch)
    assert inventory.calls == [], "seats were reserved for a request that is dead-lettered"
    assert dead.published == [payload]
