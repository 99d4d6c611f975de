"""Relay throughput: the services' own outbox relay drains pending events to the broker, against
a bare producer sending the same messages in the same run."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from typing import Any

from sqlalchemy import MetaData

from benchmarks.raw import raw_producer
from tests.e2e.devprocess import DevProcess
from ticketing.shared.clock import utcnow
from ticketing.shared.db.engine import create_engine, ensure_database
from ticketing.shared.messaging.publishing import create_producer
from ticketing.shared.messaging.relay import OutboxRelay
from ticketing.shared.store.table import event_store_table


async def relay_throughput(dev: DevProcess, rows: int) -> dict[str, Any]:
    settings = dataclasses.replace(
        dev.settings,
        db_prefix=dev.settings.db_prefix + "relay_",
        kafka_bootstrap=dev.env["TICKETING_KAFKA_BOOTSTRAP"],
    )
    await ensure_database(settings, "order")
    engine = create_engine(settings, "order")
    table = event_store_table(MetaData())
    async with engine.begin() as conn:
        await conn.run_sync(table.metadata.create_all)
    payload = json.dumps({"message_id": str(uuid.uuid4()), "reason": "x" * 120})
    now = utcnow()
    messages: list[tuple[bytes, bytes]] = []
    for chunk in range(0, rows, 5000):
        batch = []
        for _ in range(min(5000, rows - chunk)):
            key = str(uuid.uuid4())
            batch.append(
                {
                    "event_id": uuid.uuid4(),
                    "stream_id": uuid.uuid4(),
                    "stream_type": "bench",
                    "version": 1,
                    "event_type": "OrderRejected",
                    "schema_version": 1,
                    "payload": payload,
                    "actor": "bench",
                    "recorded_at": now,
                    "topic": "bench.relay",
                    "message_key": key,
                }
            )
            messages.append((key.encode(), payload.encode()))
        async with engine.begin() as conn:
            await conn.execute(table.insert(), batch)
    relay = OutboxRelay(
        engine,
        table,
        lock_name=f"bench-{uuid.uuid4().hex}",
        producer_factory=lambda: create_producer(settings, "bench-relay"),
        batch_size=2000,
        poll_interval=0.05,
    )
    started = time.perf_counter()
    task = asyncio.create_task(relay.run())
    while relay.published < rows:
        await asyncio.sleep(0.05)
    relay_rate = rows / (time.perf_counter() - started)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await engine.dispose()
    raw_rate = await raw_producer(settings.kafka_bootstrap, "bench.raw", messages)
    return {
        "rows": rows,
        "relay_events_per_second": round(relay_rate),
        "raw_producer_per_second": round(raw_rate),
        "ratio": round(relay_rate / raw_rate, 3),
    }
