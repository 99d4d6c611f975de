"""The bench's own reads and writes of booking's tables (real MariaDB): the raw-write ceiling
writes what booking writes for an accepted booking, and the accept series counts what was
accepted."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal

import msgspec
import pytest
from benchmarks.accept import accepted_each_second
from benchmarks.raw import raw_booking_writes
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ticketing.booking.tables import bookings, customers
from ticketing.booking.tables import metadata as booking_metadata
from ticketing.contracts.events import BOOKINGS_TOPIC, BookingRequested
from ticketing.shared.db.engine import create_engine, create_server_engine, ensure_database
from ticketing.shared.settings import Settings


@pytest.fixture
async def scratch(databases: Settings) -> AsyncIterator[tuple[Settings, AsyncEngine]]:
    """An empty copy of booking's tables in a database of its own, as the bench uses."""
    settings = dataclasses.replace(
        databases, db_prefix=f"{databases.db_prefix}ceiling_{uuid.uuid4().hex[:6]}_"
    )
    await ensure_database(settings, "booking")
    engine = create_engine(settings, "booking")
    async with engine.begin() as conn:
        await conn.run_sync(booking_metadata.create_all)
    try:
        yield settings, engine
    finally:
        await engine.dispose()
        server = create_server_engine(settings)
        async with server.begin() as conn:
            await conn.execute(text(f"DROP DATABASE `{settings.database_name('booking')}`"))
        await server.dispose()


async def test_the_ceiling_writes_a_booking_and_its_real_booking_requested_event(
    scratch: tuple[Settings, AsyncEngine],
) -> None:
    settings, engine = scratch
    rate = await raw_booking_writes(
        settings, settings.database_name("booking"), concurrency=2, seconds=0.3
    )

    assert rate > 0
    async with engine.connect() as conn:
        bookings = (await conn.execute(text("SELECT id, event_id FROM bookings"))).all()
        rows = (
            await conn.execute(
                text(
                    "SELECT event_id, stream_id, stream_type, version, topic, message_key,"
                    " event_type, payload, correlation_id, published_at FROM event_store"
                )
            )
        ).all()
    assert len(rows) == len(bookings) > 0
    booked = {str(booking_id): str(event_id) for booking_id, event_id in bookings}
    for row in rows:
        # The payload is the event booking publishes, not a stand-in: the ceiling must make the
        # server parse and store as many bytes as a real booking does.
        event = msgspec.json.decode(row.payload, type=BookingRequested)
        assert str(event.booking_id) == str(row.stream_id)
        assert booked[str(row.stream_id)] == str(event.event_id) == row.message_key
        assert str(event.message_id) == str(uuid.UUID(str(row.event_id)))
        assert (row.stream_type, row.version, row.topic, row.event_type) == (
            "booking",
            1,
            BOOKINGS_TOPIC,
            "BookingRequested",
        )
        assert row.published_at is None  # waiting for the relay, as a real booking's does
        assert len(row.correlation_id) == 32


async def test_the_accept_series_counts_an_events_bookings_in_each_whole_second(
    scratch: tuple[Settings, AsyncEngine],
) -> None:
    _, engine = scratch
    customer, event, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    start = datetime(2026, 1, 1, 12, 0, 0, 250_000)
    # Offsets in seconds from the first booking: four in the first second, two in the second,
    # none in the third, one in a fourth second the run ended within.
    offsets = [0.0, 0.1, 0.5, 0.99, 1.0, 1.7, 3.5]
    rows = [
        booking_row(uuid.uuid4(), customer, event, start + timedelta(seconds=offset))
        for offset in offsets
    ]
    rows.append(booking_row(uuid.uuid4(), customer, other, start + timedelta(seconds=2.2)))
    async with engine.begin() as conn:
        await conn.execute(
            customers.insert().values(
                id=customer, name="S", email=f"s.{customer.hex}@example.com", created_at=start
            )
        )
        await conn.execute(bookings.insert(), rows)

    assert await accepted_each_second(engine, str(event)) == [4, 2, 0]
    assert await accepted_each_second(engine, str(uuid.uuid4())) == []


def booking_row(
    booking_id: uuid.UUID, customer: uuid.UUID, event: uuid.UUID, at: datetime
) -> dict[str, object]:
    return {
        "id": booking_id,
        "customer_id": customer,
        "event_id": event,
        "ticket_count": 1,
        "unit_price": Decimal("10.00"),
        "total_price": Decimal("10.00"),
        "status": "PENDING",
        "created_at": at,
        "updated_at": at,
        "version": 1,
    }
