"""Review of tracing (issue 22) against the real broker and MariaDB: with tracing on, what a
record's headers or a statement's failure carry must neither stop a consumer nor leak into
the exported spans."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.harness import create_topics
from ticketing.contracts.events import EVENT_TYPE_HEADER, MESSAGE_ID_HEADER, BookingRequested
from ticketing.shared import tracing
from ticketing.shared.consumer import Received
from ticketing.shared.messaging import create_broker
from ticketing.shared.settings import Settings
from ticketing.shared.subscription import subscribe

PARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure("review", {}, exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown()


def booking_requested() -> BookingRequested:
    return BookingRequested(
        message_id=uuid.uuid4(),
        booking_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        ticket_count=1,
        unit_price="10.00",
        total_price="10.00",
        requested_at=datetime.now(UTC).replace(tzinfo=None),
    )


async def publish(bootstrap: str, topic: str, extra: list[tuple[str, bytes]]) -> set[str]:
    """A record carrying the ``extra`` headers, then a plain one behind it on the same
    partition; their message ids."""
    ids: set[str] = set()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for headers in (extra, []):
            event = booking_requested()
            ids.add(str(event.message_id))
            await producer.send_and_wait(
                topic,
                msgspec.json.encode(event),
                partition=0,
                headers=[
                    (EVENT_TYPE_HEADER, b"BookingRequested"),
                    (MESSAGE_ID_HEADER, str(event.message_id).encode()),
                    *headers,
                ],
            )
    finally:
        await producer.stop()
    return ids


@asynccontextmanager
async def consuming(bootstrap: str, topic: str, applied: set[str]) -> AsyncIterator[None]:
    settings = Settings(
        kafka_bootstrap=bootstrap,
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=300,
        kafka_fetch_max_wait_ms=20,
        consumer_max_attempts=2,
    )

    async def handle(received: Sequence[Received]) -> None:
        applied.update(str(item.event.message_id) for item in received)

    broker = create_broker(settings, client_id="tracing-review")
    subscribe(
        broker,
        settings,
        topic=topic,
        group=f"group-{uuid.uuid4().hex[:8]}",
        dlq_topic=f"{topic}.dlq",
        accepted=(BookingRequested,),
        handle=handle,
        description="tracing review",
    )
    try:
        await broker.start()
        yield
    finally:
        await broker.stop()


@pytest.mark.parametrize(
    "odd",
    [
        [("traceparent", b"\xff\xfe")],
        [("baggage", b"k=\xff")],
        [("traceparent", PARENT), ("tracestate", b"a=\xff")],
    ],
    ids=["traceparent", "baggage", "tracestate"],
)
async def test_a_trace_header_that_is_not_utf8_neither_stops_the_consumer_nor_skips_a_record(
    kafka_bootstrap: str, spans: InMemorySpanExporter, odd: list[tuple[str, bytes]]
) -> None:
    """With tracing off such a record is applied (its headers are decoded leniently). With it
    on, the aiokafka instrumentation's receive wrapper decoded trace headers strictly: the
    fetch raised UnicodeDecodeError, which ended FastStream's consume loop for good."""
    topic = f"tracing-review.{uuid.uuid4().hex}"
    await create_topics(kafka_bootstrap, 1, topic, f"{topic}.dlq")
    sent = await publish(kafka_bootstrap, topic, odd)
    applied: set[str] = set()
    async with consuming(kafka_bootstrap, topic, applied):
        try:
            async with asyncio.timeout(20):
                while sent - applied:
                    await asyncio.sleep(0.1)
        except TimeoutError:
            pytest.fail(f"{len(sent - applied)} of {len(sent)} records were never applied")
