"""Upgrading a booking database of revision 0002 to the event store (0003) loses nothing.

Each test fills a database of its own at revision 0002 the way the 0002 code wrote rows,
upgrades it, and compares the events with the rows they came from. Outbox rows are matched to
bookings as the old code matched them (its ``aggregate_id`` folds case), and a row no booking
accounts for makes the upgrade refuse before it changes anything.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import cast

import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.databases import run_alembic, tables
from tests.integration.booking_at_0002 import (
    OldBooking,
    at_0002,
    check_backfill,
    engine,
    migrate,
    old,
    store_rows,
)
from ticketing.booking import projections
from ticketing.booking.tables import event_store
from ticketing.contracts.events import BOOKINGS_TOPIC, BookingRequested
from ticketing.shared.messaging.relay import OutboxRelay
from ticketing.shared.settings import Settings

__all__ = ["at_0002", "engine", "old"]  # fixtures


async def test_upgrade_turns_every_row_into_its_events(
    at_0002: Settings, engine: AsyncEngine, old: list[OldBooking]
) -> None:
    await migrate(at_0002, "head")
    await check_backfill(engine, old)


class Recording:
    """A producer that records what it is asked to send, and acknowledges it at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, dict[str, bytes]]] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(
        self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[None]:
        self.sent.append((topic, key, value, dict(headers)))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_a_request_the_old_relay_had_not_sent_goes_out_as_it_would_have(
    at_0002: Settings, engine: AsyncEngine, old: list[OldBooking]
) -> None:
    await migrate(at_0002, "head")
    producer = Recording()
    relay = OutboxRelay(
        engine,
        event_store,
        lock_name=f"upgrade-{uuid.uuid4().hex}",
        producer_factory=lambda: cast(AIOKafkaProducer, producer),
        poll_interval=0.05,
    )
    task = asyncio.create_task(relay.run())
    try:
        for _ in range(200):
            if relay.published:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    pending = old[0].requested
    assert producer.sent == [
        (
            BOOKINGS_TOPIC,
            str(pending.event_id).encode(),
            msgspec.json.encode(pending),
            {
                "event_type": b"BookingRequested",
                "message_id": str(pending.message_id).encode(),
                "correlation_id": b"trace-a",
                "content-type": b"application/json",
            },
        )
    ]


async def test_an_interrupted_upgrade_runs_again_and_a_finished_one_is_not_redone(
    at_0002: Settings, engine: AsyncEngine, old: list[OldBooking]
) -> None:
    async with engine.begin() as conn:  # what a run stopped after its first steps left
        await conn.execute(text("CREATE TABLE migration_booking_message_ids (x INT)"))
        await conn.execute(text("CREATE TABLE event_store (x INT)"))
        await conn.execute(text("ALTER TABLE bookings ADD COLUMN version INT"))
    await migrate(at_0002, "head")
    await check_backfill(engine, old)
    before = await store_rows(engine)
    # Every step done but recording the revision: running it again changes nothing.
    await run_alembic(at_0002, "booking", command.stamp, "0002")
    await migrate(at_0002, "head")
    assert await store_rows(engine) == before


async def test_downgrade_gives_the_outbox_back_and_upgrade_keeps_every_id(
    at_0002: Settings, engine: AsyncEngine, old: list[OldBooking]
) -> None:
    await migrate(at_0002, "head")
    upgraded = await store_rows(engine)
    await migrate(at_0002, "0002")
    assert {"outbox"} <= await tables(engine)
    assert "event_store" not in await tables(engine)
    async with engine.connect() as conn:
        outbox = list(await conn.execute(text("SELECT * FROM outbox ORDER BY id")))
    assert [uuid.UUID(row.event_id) for row in outbox] == [
        row.event_id for row in upgraded if row.topic is not None
    ]
    pending = outbox[0]
    assert pending.published_at is None
    assert json.loads(pending.headers) == {
        "event_type": "BookingRequested",
        "message_id": str(old[0].requested.message_id),
        "correlation_id": "trace-a",
        "content-type": "application/json",
    }
    assert msgspec.json.decode(pending.payload, type=BookingRequested) == old[0].requested
    await migrate(at_0002, "head")
    again = await store_rows(engine)
    published = [(r.stream_id, r.event_id, r.payload) for r in upgraded if r.topic is not None]
    assert [(r.stream_id, r.event_id, r.payload) for r in again if r.topic is not None] == (
        published
    )
    assert await projections.verify(engine) == []


async def test_an_unsent_request_whose_outbox_row_is_not_matched_is_kept_or_refused(
    at_0002: Settings, engine: AsyncEngine, old: list[OldBooking]
) -> None:
    unsent = old[0]
    assert unsent.outbox == "pending"
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE outbox SET aggregate_id = UPPER(aggregate_id) WHERE aggregate_id = :b"),
            {"b": str(unsent.requested.booking_id)},
        )
        # The old code's own lookups still find it (the column folds case).
        found = await conn.scalar(
            text("SELECT COUNT(*) FROM outbox WHERE aggregate_id = :b AND published_at IS NULL"),
            {"b": str(unsent.requested.booking_id)},
        )
    assert found == 1
    await migrate(at_0002, "head")
    requested = [
        row
        for row in await store_rows(engine)
        if row.stream_id == unsent.requested.booking_id and row.version == 1
    ]
    assert [(row.event_id, row.published_at) for row in requested] == [
        (unsent.requested.message_id, None)
    ], "the unsent BookingRequested was dropped: it is stored under a new id as published"


async def test_an_outbox_row_of_no_booking_makes_the_upgrade_refuse_before_any_change(
    at_0002: Settings, engine: AsyncEngine, old: list[OldBooking]
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, topic, message_key, "
                "event_type, payload, headers, created_at) VALUES (UUID(), 'booking', "
                "'no-such-booking', 't', 'k', 'BookingRequested', '{}', '{}', UTC_TIMESTAMP(6))"
            )
        )
    with pytest.raises(Exception, match="1 row\\(s\\) of no booking"):
        await migrate(at_0002, "head")
    assert {"outbox", "bookings"} <= await tables(engine)
    assert "event_store" not in await tables(engine)
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT version_num FROM alembic_version")) == "0002"
