"""The ceilings every figure is compared with, measured on the same machine in the same run."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiomysql
from aiokafka import AIOKafkaProducer

from ticketing.booking.repository import STORE
from ticketing.contracts.events import BookingRequested
from ticketing.shared.clock import utcnow
from ticketing.shared.db.engine import server_connect_args
from ticketing.shared.settings import Settings
from ticketing.shared.store.eventstore import Cause, Pending

BOOKING_SQL = (
    "INSERT INTO bookings (id, customer_id, event_id, ticket_count, unit_price, total_price,"
    " status, created_at, updated_at, version)"
    " VALUES (%s, %s, %s, 1, 10.00, 10.00, 'PENDING', %s, %s, 1)"
)


def booking_write(
    customer_id: uuid.UUID, event_id: uuid.UUID
) -> tuple[tuple[Any, ...], str, tuple[Any, ...]]:
    """What one accepted booking writes, as booking writes it: the booking's row, and the
    statement and values of its BookingRequested event, built by booking's own store (the JSON
    payload is most of the bytes the server parses)."""
    booking_id, now = uuid.uuid4(), datetime.now(UTC)
    requested = BookingRequested(
        message_id=uuid.uuid4(),
        booking_id=booking_id,
        customer_id=customer_id,
        event_id=event_id,
        ticket_count=1,
        unit_price="10.00",
        total_price="10.00",
        requested_at=now,
    )
    created = now.replace(tzinfo=None)
    cause = Cause("raw-ceiling", correlation_id=uuid.uuid4().hex)
    event = STORE.append([Pending(booking_id, "booking", 1, requested)], cause, created)
    booking = (str(booking_id), str(customer_id), str(event_id), created, created)
    return booking, event.sql, tuple(event.params[0])


async def raw_booking_writes(
    settings: Settings, database: str, *, concurrency: int, seconds: float
) -> float:
    """Booking row + its event in one transaction, raw aiomysql, one process: writes/s."""
    pool = await aiomysql.create_pool(
        **server_connect_args(settings),
        db=database,
        minsize=concurrency,
        maxsize=concurrency,
        autocommit=False,
    )
    customer_id, event_id = uuid.uuid4(), uuid.uuid4()
    async with pool.acquire() as conn, conn.cursor() as cursor:
        now = utcnow()
        await cursor.execute(
            "INSERT INTO customers (id, name, email, created_at) VALUES (%s, %s, %s, %s)",
            (str(customer_id), "Raw", f"raw.{customer_id.hex}@example.com", now),
        )
        await conn.commit()
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        async with pool.acquire() as conn:
            while time.perf_counter() < deadline:
                booking, event_sql, event = booking_write(customer_id, event_id)
                async with conn.cursor() as cursor:
                    await cursor.execute(BOOKING_SQL, booking)
                    await cursor.execute(event_sql, event)
                await conn.commit()
                done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    pool.close()
    await pool.wait_closed()
    return done / elapsed


async def raw_producer(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    """The same messages through a bare aiokafka producer: messages/s."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=2, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        started = time.perf_counter()
        pending = [await producer.send(topic, value=value, key=key) for key, value in messages]
        await asyncio.gather(*pending)
        return len(messages) / (time.perf_counter() - started)
    finally:
        await producer.stop()
