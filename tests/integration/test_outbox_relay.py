"""The outbox relay (publishing from an event store) against the real database and a real
Kafka-protocol broker."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import defaultdict

from aiokafka import AIOKafkaProducer
from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.broker import create_topics, kafka_broker, read_topic
from tests.harness.processes import free_port
from tests.integration.relay_rows import (
    outbox,
    pending,
    relay_for,
    sequences_by_key,
    wait_until_drained,
    write_events,
)
from ticketing.shared.messaging.publishing import Unpublished, send_rows
from ticketing.shared.settings import Settings

__all__ = ["outbox"]  # the fixture: an event store table of the test's own


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
