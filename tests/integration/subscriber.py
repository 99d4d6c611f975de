"""Our subscriber on a topic of the test broker, as the services subscribe, started and stopped
around a test's block, and what it applied."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from faststream.kafka import KafkaBroker

from tests.harness.broker import create_topics
from ticketing.contracts.events import BookingRequested, Subscription
from ticketing.shared.messaging.broker import create_broker
from ticketing.shared.messaging.consumer import BatchHandler, MessageRunner, Received
from ticketing.shared.messaging.subscription import subscribe
from ticketing.shared.settings import Settings


class Applied:
    """What the consumer applied, by message id (a redelivered record is applied once)."""

    def __init__(self) -> None:
        self.ids: set[str] = set()

    async def batch(self, received: Sequence[Received]) -> None:
        self.ids.update(str(item.event.message_id) for item in received)


def consumer_settings(bootstrap: str) -> Settings:
    """A consumer that notices a lost member, fetches and gives up on a record quickly, so that
    a test waits seconds, not minutes, for a redelivery or a dead letter."""
    return Settings(
        kafka_bootstrap=bootstrap,
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=300,
        kafka_fetch_max_wait_ms=20,
        consumer_max_attempts=2,
    )


async def new_topic(bootstrap: str, prefix: str, partitions: int) -> str:
    """A topic of the caller's own, and its dead-letter topic."""
    topic = f"{prefix}.{uuid.uuid4().hex}"
    await create_topics(bootstrap, partitions, topic, f"{topic}.dlq")
    return topic


@asynccontextmanager
async def subscribed(
    settings: Settings,
    topic: str,
    handle: BatchHandler,
    *,
    client_id: str,
    patch: Callable[[Any, MessageRunner], None] | None = None,
) -> AsyncIterator[KafkaBroker]:
    """A broker of its own with our subscriber on ``topic`` in a group of its own (``patch``
    gets the broker and the runner before it starts); stopped afterwards."""
    broker = create_broker(settings, client_id=client_id)
    subscription = Subscription(
        group=f"group-{uuid.uuid4().hex[:8]}",
        topic=topic,
        dlq_topic=f"{topic}.dlq",
        events=(BookingRequested,),
        effect=client_id,
    )
    runner = subscribe(broker, settings, subscription, handle=handle)
    if patch is not None:
        patch(broker, runner)
    try:
        await broker.start()
        yield broker
    finally:
        await broker.stop()
