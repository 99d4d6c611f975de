"""Tracing against the real broker and MariaDB: with tracing on, what a record's headers or a
statement's failure carry must neither stop a consumer nor leak into the exported spans."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.harness.broker import read_topic
from tests.harness.databases import own_databases
from tests.integration.order_db import requested
from tests.integration.subscriber import (
    Applied,
    consumer_settings,
    new_topic,
    subscribed,
)
from ticketing.booking.domain import CustomerRegistered
from ticketing.booking.records import SqlBookingRecords
from ticketing.contracts.events import EVENT_TYPE_HEADER, MESSAGE_ID_HEADER
from ticketing.shared import tracing
from ticketing.shared.db.engine import create_engine
from ticketing.shared.db.unit_of_work import AlreadyRecorded
from ticketing.shared.store.eventstore import Cause

PARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@contextmanager
def traced() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory, for what runs inside (the test's own records are published
    before, by a producer no instrumentation touches)."""
    exporter = InMemorySpanExporter()
    assert tracing.configure("review", {}, exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with traced() as exporter:
        yield exporter


async def publish(bootstrap: str, topic: str, extra: list[tuple[str, bytes]]) -> set[str]:
    """A record carrying the ``extra`` headers, then a plain one behind it on the same
    partition; their message ids."""
    ids: set[str] = set()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for headers in (extra, []):
            event = requested()
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
    kafka_bootstrap: str, odd: list[tuple[str, bytes]]
) -> None:
    """With tracing off such a record is applied (its headers are decoded leniently). With it
    on, the aiokafka instrumentation's receive wrapper decoded trace headers strictly: the
    fetch raised UnicodeDecodeError, which ended FastStream's consume loop for good."""
    topic = await new_topic(kafka_bootstrap, "tracing-review", 1)
    sent = await publish(kafka_bootstrap, topic, odd)
    applied = Applied()
    settings = consumer_settings(kafka_bootstrap)
    with traced():
        async with subscribed(settings, topic, applied.batch, client_id="tracing-review"):
            try:
                async with asyncio.timeout(20):
                    while sent - applied.ids:
                        await asyncio.sleep(0.1)
            except TimeoutError:
                pytest.fail(f"{len(sent - applied.ids)} of {len(sent)} records were never applied")


def registration(email: str) -> CustomerRegistered:
    return CustomerRegistered(
        customer_id=uuid.uuid4(),
        name="Ada",
        email=email,
        address=None,
        registered_at=datetime.now(UTC),
    )


def everything_exported(exporter: InMemorySpanExporter) -> str:
    """Every name, attribute, event and status text of the exported spans, as one string."""
    parts: list[str] = []
    for span in exporter.get_finished_spans():
        parts += [span.name, repr(dict(span.attributes or {})), str(span.status.description)]
        for event in span.events:
            parts += [event.name, repr(dict(event.attributes or {}))]
    return "\n".join(parts)


async def test_a_taken_email_is_not_exported_with_the_failed_statements_span(
    spans: InMemorySpanExporter,
) -> None:
    """A registration with an e-mail taken fails on its unique key; MariaDB's message names the
    duplicate value. The statement's span may say that it failed, not what the value was."""
    email = f"ada.{uuid.uuid4().hex[:8]}@example.com"
    tracer = trace.get_tracer("review", tracer_provider=tracing._state.provider)  # type: ignore[union-attr]
    async with own_databases("booking") as settings:
        engine = create_engine(settings, "booking")
        try:
            records = SqlBookingRecords(engine, consumer="review")
            with tracer.start_as_current_span("POST /api/v1/customers", kind=SpanKind.SERVER):
                await records.register_customer(registration(email), Cause("review"))
                with pytest.raises(AlreadyRecorded):
                    await records.register_customer(registration(email), Cause("review"))
        finally:
            await engine.dispose()
    exported = everything_exported(spans)
    assert "INSERT" in exported  # the statements were traced
    assert email not in exported
    (failed,) = [s for s in spans.get_finished_spans() if s.status.status_code is StatusCode.ERROR]
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "IntegrityError"
    assert failed.attributes["db.response.status_code"] == "1062"


async def test_a_dead_lettered_record_carries_one_traceparent_in_its_producers_trace(
    kafka_bootstrap: str,
) -> None:
    """The dead-letter copy kept the record's headers, traceparent included, and the Kafka
    instrumentation appended the dead-letter send's own: two traceparent headers, which readers
    resolve differently (aiokafka's instrumentation takes the first, our consumer the last)."""
    topic = await new_topic(kafka_bootstrap, "tracing-review", 1)
    sent = await publish(
        kafka_bootstrap, topic, [("traceparent", PARENT), (EVENT_TYPE_HEADER, b"NoSuchEvent")]
    )
    applied = Applied()
    settings = consumer_settings(kafka_bootstrap)
    with traced():
        async with subscribed(settings, topic, applied.batch, client_id="tracing-review"):
            (dead,) = await read_topic(kafka_bootstrap, f"{topic}.dlq", 1, timeout=20)
    assert len(sent - applied.ids) == 1
    traceparents = [value for name, value in dead.headers if name == "traceparent"]
    assert len(traceparents) == 1, traceparents
    assert traceparents[0].split(b"-")[1] == PARENT.split(b"-")[1]
