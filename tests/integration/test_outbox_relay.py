"""The outbox relay (publishing from an event store) against the real database and a real
Kafka-protocol broker."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, ClassVar, cast

import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import MetaData, Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness import create_topics, free_port, kafka_broker, read_topic
from ticketing.contracts.events import OrderRejected, Publication
from ticketing.shared import sql
from ticketing.shared.clock import utcnow
from ticketing.shared.db import create_engine, ensure_database
from ticketing.shared.event_codec import EventCodec
from ticketing.shared.event_table import event_store_table
from ticketing.shared.eventstore import Cause, EventStore, Pending
from ticketing.shared.publishing import Unpublished, create_producer, send_rows
from ticketing.shared.relay import OutboxRelay
from ticketing.shared.settings import ServiceName, Settings

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


async def test_two_relays_publish_every_row_once_in_key_order(
    outbox: tuple[AsyncEngine, Table], base_settings: Settings, kafka_bootstrap: str
) -> None:
    engine, table = outbox
    settings = dataclasses.replace(base_settings, kafka_bootstrap=kafka_bootstrap)
    topic = f"relay.{uuid.uuid4().hex}"
    await create_topics(kafka_bootstrap, 3, topic)
    lock = f"relay-test-{uuid.uuid4().hex}"
    relays = [relay_for(settings, engine, table, lock) for _ in range(2)]
    tasks = [asyncio.create_task(relay.run()) for relay in relays]
    try:
        keys = [f"k{i}" for i in range(6)]
        await write_events(engine, table, topic, keys, per_key=20)
        await wait_until_drained(engine, table)
        assert sum(relay.is_leader for relay in relays) == 1
        assert sum(relay.published for relay in relays) == 120
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    records = await read_topic(kafka_bootstrap, topic, 120)
    assert len(records) == 120
    ordered = sequences_by_key(records)
    assert ordered == {key: list(range(20)) for key in keys}
    headers = dict(records[0].headers)
    assert headers["event_type"] == b"OrderRejected"
    assert uuid.UUID(headers["message_id"].decode())


async def test_a_wake_up_publishes_without_waiting_for_the_poll(
    outbox: tuple[AsyncEngine, Table], base_settings: Settings, kafka_bootstrap: str
) -> None:
    engine, table = outbox
    settings = dataclasses.replace(base_settings, kafka_bootstrap=kafka_bootstrap)
    topic = f"relay.{uuid.uuid4().hex}"
    relay = relay_for(settings, engine, table, f"wake-{uuid.uuid4().hex}", poll_interval=3600)
    task = asyncio.create_task(relay.run())
    try:
        while not relay.is_leader:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # the relay is now idle, waiting an hour for its next poll
        await write_events(engine, table, topic, ["only"], per_key=1)
        relay.wake()
        await wait_until_drained(engine, table, timeout=10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_broker_outage_loses_nothing(
    outbox: tuple[AsyncEngine, Table], base_settings: Settings
) -> None:
    engine, table = outbox
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    settings = dataclasses.replace(base_settings, kafka_bootstrap=bootstrap)
    topic = f"relay.{uuid.uuid4().hex}"
    relay = relay_for(settings, engine, table, f"outage-{uuid.uuid4().hex}", max_backoff=0.5)
    task = asyncio.create_task(relay.run())
    try:
        await write_events(engine, table, topic, ["a", "b"], per_key=5)
        await asyncio.sleep(1.5)  # no broker: the relay keeps retrying
        assert await pending(engine, table) == 10
        with kafka_broker(port=port) as started:
            assert started == bootstrap
            await wait_until_drained(engine, table)
            records = await read_topic(bootstrap, topic, 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sequences_by_key(records) == {"a": list(range(5)), "b": list(range(5))}


async def test_rows_land_where_the_producer_would_put_them_in_order_in_any_batch_size(
    kafka_bootstrap: str,
) -> None:
    """send_rows keeps the producer's own partitioning and the row order, with batches that fill
    up and a row larger than any batch."""
    topic = f"relay.batches.{uuid.uuid4().hex[:8]}"
    await create_topics(kafka_bootstrap, 3, topic)
    keys = [f"key-{n}" for n in range(6)]
    rows = [
        Unpublished(
            position=index,
            topic=topic,
            key=keys[index % len(keys)].encode(),
            payload=(b"x" * 3000 if index == 40 else f"{index}".encode()),
            headers=[("sequence", str(index).encode())],
        )
        for index in range(120)
    ]
    # Batches of at most 1 KiB: many fill up, and row 40 fits in none.
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_batch_size=1024)
    await producer.start()
    try:
        await send_rows(producer, rows)
        expected = {
            key: (await producer.send_and_wait(topic, b"probe", key=key.encode())).partition
            for key in keys
        }
    finally:
        await producer.stop()
    records = [r for r in await read_topic(kafka_bootstrap, topic, 126) if r.value != b"probe"]
    assert len(records) == 120
    sequences: dict[str, list[int]] = defaultdict(list)
    for record in records:
        key = record.key.decode()
        assert record.partition == expected[key]
        sequences[key].append(int(dict(record.headers)["sequence"]))
    assert sequences == {k: list(range(n, 120, len(keys))) for n, k in enumerate(keys)}


async def test_a_relay_cancelled_in_the_middle_of_a_query_stops(
    outbox: tuple[AsyncEngine, Table], base_settings: Settings, kafka_bootstrap: str
) -> None:
    """Cancelled while MySQL runs its read, the relay's connection dies and handing it back to
    the pool fails; that failure must not pass for an ordinary one and restart the relay (a
    service that stops would wait for it forever)."""
    engine, table = outbox
    settings = dataclasses.replace(base_settings, kafka_bootstrap=kafka_bootstrap)
    relay = relay_for(settings, engine, table, f"cancel-{uuid.uuid4().hex}", poll_interval=0.05)
    task = asyncio.create_task(relay.run())
    try:
        while not relay.is_leader:
            await asyncio.sleep(0.02)
        async with engine.connect() as holder:
            # A write lock on the table: the relay's next read waits for it inside MySQL.
            await holder.execute(text(f"LOCK TABLES {table.name} WRITE"))
            try:
                await asyncio.sleep(0.5)
                task.cancel()
                done, _ = await asyncio.wait([task], timeout=10)
            finally:
                await holder.execute(text("UNLOCK TABLES"))
        assert done, "the cancelled relay went on running"
        assert task.cancelled()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


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
