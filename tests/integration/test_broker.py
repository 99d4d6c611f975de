"""The harness's Kafka-protocol broker works with FastStream through our broker factory."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any

import anyio.to_thread
import msgspec
import pytest
from faststream.kafka.annotations import KafkaMessage

from tests.integration.order_db import requested
from tests.integration.subscriber import subscribed
from ticketing.contracts.events import (
    CORRELATION_ID_HEADER,
    EVENT_TYPE_HEADER,
    MESSAGE_ID_HEADER,
)
from ticketing.shared.messaging.broker import create_broker
from ticketing.shared.messaging.consumer import Received
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


async def test_our_subscribers_hand_batches_over_without_a_worker_thread(
    base_settings: Settings, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastStream resolves an injected context field (the message) with a synchronous getter,
    which its dependency injection runs in a worker thread: a thread hop for every batch. Our
    subscribers take the message as the decoded body instead; no batch may cross a thread."""
    thread_calls: list[object] = []
    run_sync = anyio.to_thread.run_sync

    async def counting_run_sync(func: Any, *args: Any, **kwargs: Any) -> Any:
        thread_calls.append(func)
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting_run_sync)
    settings = dataclasses.replace(
        base_settings,
        kafka_bootstrap=kafka_bootstrap,
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=300,
    )
    topic = f"harness.{uuid.uuid4().hex}"
    received: asyncio.Queue[Received] = asyncio.Queue()

    async def handle_batch(batch: Sequence[Received]) -> None:
        for item in batch:
            await received.put(item)

    event = requested()
    async with subscribed(settings, topic, handle_batch, client_id="thread-test") as broker:
        await broker.publish(
            msgspec.json.encode(event),
            topic,
            key=str(event.booking_id).encode(),
            headers={
                EVENT_TYPE_HEADER: "BookingRequested",
                MESSAGE_ID_HEADER: str(event.message_id),
                CORRELATION_ID_HEADER: "thread-test",
            },
        )
        got = await asyncio.wait_for(received.get(), timeout=30)
    assert got == Received(event, "thread-test")
    assert thread_calls == []
