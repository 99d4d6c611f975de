"""An event store table of its own for relay tests, the rows appended to it, and a relay over it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import MetaData, Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ticketing.contracts.events import OrderRejected, Publication
from ticketing.shared.clock import utcnow
from ticketing.shared.db import sql
from ticketing.shared.db.engine import create_engine, ensure_database
from ticketing.shared.messaging.publishing import create_producer
from ticketing.shared.messaging.relay import OutboxRelay
from ticketing.shared.settings import ServiceName, Settings
from ticketing.shared.store.codec import EventCodec
from ticketing.shared.store.eventstore import Cause, EventStore, Pending
from ticketing.shared.store.table import event_store_table

SERVICE: ServiceName = "order"  # any service database name works; this one is dropped with the run


@pytest.fixture
async def outbox(databases: Settings) -> AsyncIterator[tuple[AsyncEngine, Table]]:
    settings = dataclasses.replace(databases, db_prefix=databases.db_prefix + "relay_")
    await ensure_database(settings, SERVICE)
    engine = create_engine(settings, SERVICE)
    table = event_store_table(MetaData())
    async with engine.begin() as conn:
        await conn.run_sync(table.metadata.drop_all)
        await conn.run_sync(table.metadata.create_all)
    try:
        yield engine, table
    finally:
        await engine.dispose()


def rejection(key: str, sequence: int) -> OrderRejected:
    """An event published under ``key``, numbered ``sequence`` (its ``reason`` says both)."""
    return OrderRejected(
        message_id=uuid.uuid4(),
        booking_id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        reason=f"{key}:{sequence}",
        rejected_at=datetime.now(UTC),
    )


async def append(conn: Any, table: Table, topic: str, event: OrderRejected) -> None:
    """Store ``event`` as a published one, keyed by its reason's key, on a stream of its own."""
    publication = Publication(OrderRejected, "test", topic, key=lambda e: e.reason.split(":")[0])
    store = EventStore(table, EventCodec([OrderRejected]), {"OrderRejected": publication})
    pending = [Pending(uuid.uuid4(), "test", 1, event)]
    await sql.run(conn, store.append(pending, Cause("relay-test"), utcnow()))


async def write_events(
    engine: AsyncEngine, table: Table, topic: str, keys: list[str], per_key: int
) -> None:
    for sequence in range(per_key):
        async with engine.begin() as conn:
            for key in keys:
                await append(conn, table, topic, rejection(key, sequence))


async def pending(engine: AsyncEngine, table: Table) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            select(func.count()).select_from(table).where(table.c.published_at.is_(None))
        )
    return int(count or 0)


async def wait_until_drained(engine: AsyncEngine, table: Table, timeout: float = 30) -> None:
    for _ in range(int(timeout / 0.05)):
        if await pending(engine, table) == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{await pending(engine, table)} rows still pending")


def relay_for(
    settings: Settings, engine: AsyncEngine, table: Table, lock: str, **kwargs: float
) -> OutboxRelay:
    return OutboxRelay(
        engine,
        table,
        lock_name=lock,
        producer_factory=lambda: create_producer(settings, "relay-test"),
        batch_size=50,
        **kwargs,
    )


def sequences_by_key(records: list[Any]) -> dict[str, list[int]]:
    """The sequence numbers each key's messages arrived in (written as ``reason`` = key:n)."""
    seen: dict[str, list[int]] = defaultdict(list)
    for record in records:
        key, number = json.loads(record.value)["reason"].split(":")
        assert record.key == key.encode()
        seen[key].append(int(number))
    return seen
