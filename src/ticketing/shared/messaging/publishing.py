"""How a stored event becomes a Kafka message and is sent, for the relay and for a replay alike:
each is sent under its event id as message id, in the trace it was recorded in."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ticketing.contracts.events import CORRELATION_ID_HEADER, EVENT_TYPE_HEADER, MESSAGE_ID_HEADER
from ticketing.shared import tracing
from ticketing.shared.messaging.partitioner import Murmur2Partitioner
from ticketing.shared.settings import Settings

log = structlog.get_logger(__name__)


def message_headers(
    event_type: str, event_id: uuid.UUID | str, correlation_id: str | None
) -> list[tuple[str, bytes]]:
    """The Kafka headers of a published event (what consumers read of it besides the payload)."""
    message_id = str(event_id).encode()
    return [
        (EVENT_TYPE_HEADER, event_type.encode()),
        (MESSAGE_ID_HEADER, message_id),
        (CORRELATION_ID_HEADER, correlation_id.encode() if correlation_id else message_id),
        ("content-type", b"application/json"),
    ]


def create_producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        linger_ms=0,
        request_timeout_ms=10_000,
        max_batch_size=256 * 1024,
        partitioner=Murmur2Partitioner(),
    )


async def start_producer(producer: AIOKafkaProducer, *, max_delay: float = 5.0) -> None:
    """Start ``producer``, retrying with backoff until the broker answers."""
    delay = 0.1
    while True:
        try:
            await producer.start()
        except KafkaError as error:
            log.warning("kafka unavailable, retrying", error=repr(error), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
        else:
            return


@dataclasses.dataclass(frozen=True, slots=True)
class Unpublished:
    """A stored event as Kafka gets it: topic, key, payload and headers (and its position), and
    the trace it was recorded in."""

    position: int
    topic: str
    key: bytes
    payload: bytes
    headers: list[tuple[str, bytes]]
    traceparent: str | None = None


# What the relay and replay read of a stored event: only what goes to Kafka.
UNPUBLISHED_COLUMNS = (
    "position, topic, message_key, payload, event_type, event_id, correlation_id, traceparent"
)


def unpublished(row: Sequence[Any]) -> Unpublished:
    """A row of :data:`UNPUBLISHED_COLUMNS` as the message it is sent as."""
    position, topic, key, payload, event_type, event_id, correlation_id, traceparent = row
    return Unpublished(
        int(position),
        str(topic),
        str(key).encode(),
        payload.encode() if isinstance(payload, str) else bytes(payload),
        message_headers(str(event_type), event_id, correlation_id),
        traceparent,
    )


async def send_rows(producer: AIOKafkaProducer, rows: Sequence[Unpublished]) -> None:
    """Send ``rows`` in order and wait until the broker acknowledged every one; with tracing
    on, each is sent in the trace it was recorded in (the Kafka instrumentation adds the
    ``traceparent`` header), which a replay keeps too.

    One ``send`` per row, not aiokafka's batch API: batches built that way were refused by
    Tansu with UnknownError after a broker restart, which stalled the relay (the broker-restart
    chaos scenario); a per-row send was never refused.
    """
    pending = []
    for row in rows:
        with tracing.resumed(row.traceparent):
            pending.append(
                await producer.send(row.topic, value=row.payload, key=row.key, headers=row.headers)
            )
    await asyncio.gather(*pending)
