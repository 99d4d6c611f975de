"""What the outbox relay sends: a row committed late inside the batch in flight keeps its key's
order, and only published event types go out, as their contract, with their ids."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections import defaultdict
from typing import ClassVar, cast

import msgspec
from aiokafka import AIOKafkaProducer
from sqlalchemy import Table, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.broker import create_topics, read_topic
from tests.integration.relay_rows import (
    append,
    outbox,
    pending,
    rejection,
    relay_for,
    wait_until_drained,
)
from ticketing.contracts.events import OrderRejected, Publication
from ticketing.shared.clock import utcnow
from ticketing.shared.db import sql
from ticketing.shared.messaging.relay import OutboxRelay
from ticketing.shared.settings import Settings
from ticketing.shared.store.codec import EventCodec
from ticketing.shared.store.eventstore import Cause, EventStore, Pending

__all__ = ["outbox"]  # the fixture: an event store table of the test's own


class RecordingProducer:
    """A producer that acknowledges every send at once and notes the order of the sends (the
    order aiokafka keeps per partition); ``watched_sent`` is set once ``watch`` was sent."""

    def __init__(self, watch: str) -> None:
        self.sent: list[str] = []
        self.watch = watch
        self.watched_sent = asyncio.Event()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(
        self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[None]:
        reason = json.loads(value)["reason"]
        self.sent.append(reason)
        if reason == self.watch:
            self.watched_sent.set()
        acknowledged: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acknowledged.set_result(None)
        return acknowledged


async def commit_rows(engine: AsyncEngine, table: Table, key: str, sequences: range) -> None:
    for sequence in sequences:
        async with engine.begin() as conn:
            await append(conn, table, "relay.order", rejection(key, sequence))


async def test_a_row_committed_late_inside_the_batch_in_flight_keeps_its_keys_order(
    outbox: tuple[AsyncEngine, Table],
) -> None:
    """With batches of 4: ids 1-4 are the first batch; id 6 ("late:0") commits only once the
    second batch (5, 7, 8, 9) was read and is being sent, and id 10 ("late:1", the same key)
    right after it, before the relay reads its third batch (it reads that after marking the
    first, which waits for a lock held until then). Both must go out in id order."""
    engine, table = outbox
    await commit_rows(engine, table, "early", range(5))  # ids 1-5
    async with engine.connect() as late, engine.connect() as gate:
        await late.begin()
        await append(late, table, "relay.order", rejection("late", 0))  # 6, not committed yet
        await commit_rows(engine, table, "early", range(5, 8))  # ids 7-9
        # Marking the first batch waits for this lock, so the third read waits until both
        # late rows are committed.
        await gate.begin()
        await gate.execute(
            text(f"SELECT position FROM {table.name} ORDER BY position LIMIT 1 FOR UPDATE")
        )
        producer = RecordingProducer(watch="early:4")  # the second batch's first row
        relay = OutboxRelay(
            engine,
            table,
            lock_name=f"late-{uuid.uuid4().hex}",
            producer_factory=lambda: cast(AIOKafkaProducer, producer),
            batch_size=4,
            poll_interval=0.05,
        )
        task = asyncio.create_task(relay.run())
        try:
            await asyncio.wait_for(producer.watched_sent.wait(), timeout=30)
            await late.commit()
            await commit_rows(engine, table, "late", range(1, 2))  # id 10
            await gate.rollback()
            await wait_until_drained(engine, table)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    ids = {}
    async with engine.connect() as conn:
        for row_id, payload in await conn.execute(select(table.c.position, table.c.payload)):
            ids[json.loads(payload)["reason"]] = row_id
    assert ids["late:0"] < ids["early:5"] < ids["late:1"]  # the late row is inside the range
    by_key: dict[str, list[str]] = defaultdict(list)
    for reason in producer.sent:
        by_key[reason.split(":")[0]].append(reason)
    assert by_key == {
        key: sorted((r for r in ids if r.startswith(f"{key}:")), key=ids.__getitem__)
        for key in ("early", "late")
    }


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Noted:
    """An internal event: its type has no publication."""

    SCHEMA_VERSION: ClassVar[int] = 1

    note: str


async def test_only_published_types_go_out_as_their_contract_with_their_ids(
    outbox: tuple[AsyncEngine, Table], base_settings: Settings, kafka_bootstrap: str
) -> None:
    """Internal events are stored as delivered and never sent; a published event goes out as
    its contract's JSON, its event id as message id, its correlation id (or its message id)."""
    engine, table = outbox
    settings = dataclasses.replace(base_settings, kafka_bootstrap=kafka_bootstrap)
    topic = f"relay.{uuid.uuid4().hex}"
    await create_topics(kafka_bootstrap, 1, topic)  # one partition: one order to compare with
    publication = Publication(OrderRejected, "test", topic, key=lambda e: str(e.booking_id))
    store = EventStore(table, EventCodec([OrderRejected, Noted]), {"OrderRejected": publication})
    stream = uuid.uuid4()
    first, second = rejection("a", 0), rejection("b", 1)
    events = [
        Pending(stream, "test", 1, Noted(note="internal")),
        Pending(stream, "test", 2, first, Cause("relay-test", correlation_id="trace-1")),
        Pending(stream, "test", 3, Noted(note="internal again")),
        Pending(stream, "test", 4, second),
    ]
    async with engine.begin() as conn:
        await sql.run(conn, store.append(events, Cause("relay-test"), utcnow()))
    assert await pending(engine, table) == 2
    relay = relay_for(settings, engine, table, f"types-{uuid.uuid4().hex}")
    task = asyncio.create_task(relay.run())
    try:
        await wait_until_drained(engine, table)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert relay.published == 2
    records = await read_topic(kafka_bootstrap, topic, 3, timeout=5)
    assert [record.value for record in records] == [
        msgspec.json.encode(first),
        msgspec.json.encode(second),
    ]
    assert [record.key for record in records] == [
        str(first.booking_id).encode(),
        str(second.booking_id).encode(),
    ]
    assert [dict(record.headers) for record in records] == [
        {
            "event_type": b"OrderRejected",
            "message_id": str(event.message_id).encode(),
            "correlation_id": correlation,
            "content-type": b"application/json",
        }
        for event, correlation in [(first, b"trace-1"), (second, str(second.message_id).encode())]
    ]
    async with engine.connect() as conn:
        ids = (await conn.execute(select(table.c.event_id).order_by(table.c.position))).scalars()
        assert list(ids)[1::2] == [first.message_id, second.message_id]
