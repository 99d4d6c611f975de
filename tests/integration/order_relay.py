"""Order's relay run once against a producer that records what it is asked to send."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from ticketing.order.tables import event_store
from ticketing.shared.messaging.relay import OutboxRelay


class RecordingProducer:
    """Acknowledges every send at once and keeps what was sent, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []

    async def send(
        self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[None]:
        self.sent.append((topic, key, value, headers))
        acknowledged: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acknowledged.set_result(None)
        return acknowledged


async def relay_once(engine: AsyncEngine) -> RecordingProducer:
    """What the relay publishes now, marked as published."""
    relay = OutboxRelay(
        engine,
        event_store,
        lock_name="test",
        producer_factory=RecordingProducer,
    )
    producer = RecordingProducer()
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await relay.publish(conn, producer)
    return producer
