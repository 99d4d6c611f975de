"""The harness's Kafka-protocol broker works with FastStream through our broker factory."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

from faststream.kafka.annotations import KafkaMessage

from ticketing.shared.messaging import create_broker
from ticketing.shared.settings import Settings


async def test_publish_and_consume_round_trip(
    base_settings: Settings, kafka_bootstrap: str
) -> None:
    settings = dataclasses.replace(base_settings, kafka_bootstrap=kafka_bootstrap)
    broker = create_broker(settings, client_id="harness-test")
    topic = f"harness.{uuid.uuid4().hex}"
    received: asyncio.Queue[tuple[dict[str, str], bytes | None, str, str]] = asyncio.Queue()

    @broker.subscriber(
        topic,
        group_id=f"group-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
    )
    async def handle(body: dict[str, str], message: KafkaMessage) -> None:
        key = message.raw_message.key  # type: ignore[union-attr]
        await received.put((body, key, message.correlation_id, message.headers["event-type"]))

    await broker.start()
    try:
        correlation_id = str(uuid.uuid4())
        await broker.publish(
            {"hello": "world"},
            topic,
            key=b"event-1",
            correlation_id=correlation_id,
            headers={"event-type": "HarnessChecked"},
        )
        body, key, seen_id, event_type = await asyncio.wait_for(received.get(), timeout=30)
    finally:
        await broker.stop()
    assert body == {"hello": "world"}
    assert key == b"event-1"
    assert seen_id == correlation_id
    assert event_type == "HarnessChecked"
