"""The AsyncAPI 3 document of every Kafka topic: who publishes what, and who consumes it.

Built from the event contracts with FastStream's generator on a documentation-only broker (the
running services publish through their outbox relays, which FastStream does not see).
"""

from __future__ import annotations

from typing import Any

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from ticketing import __version__
from ticketing.contracts.events import (
    BOOKINGS_DLQ_TOPIC,
    BOOKINGS_TOPIC,
    ORDERS_DLQ_TOPIC,
    ORDERS_TOPIC,
    BookingRequested,
    OrderConfirmed,
    OrderRejected,
)

HEADERS_NOTE = (
    "Headers: event_type (the payload's type), message_id (deduplication key, equal to the "
    "payload's message_id), correlation_id, content-type application/json."
)


def _document_broker(bootstrap: str) -> KafkaBroker:
    broker = KafkaBroker(
        bootstrap, description="Kafka topics of the ticketing system. " + HEADERS_NOTE
    )
    broker.publisher(
        BOOKINGS_TOPIC,
        schema=BookingRequested,
        title="booking publishes BookingRequested",
        description="Written to booking's outbox with the PENDING booking; key = event id.",
    )
    broker.publisher(
        ORDERS_TOPIC,
        schema=OrderConfirmed | OrderRejected,
        title="order publishes OrderConfirmed or OrderRejected",
        description="Written to order's outbox with the order decision; key = booking id.",
    )

    @broker.subscriber(
        BOOKINGS_TOPIC,
        group_id="order-service",
        title="order-service consumes BookingRequested",
        description="Reserves at inventory, records the order, publishes the outcome. "
        f"Messages that keep failing go to {BOOKINGS_DLQ_TOPIC}.",
    )
    async def order_service(event: BookingRequested) -> None:  # pragma: no cover - docs only
        del event

    @broker.subscriber(
        ORDERS_TOPIC,
        group_id="booking-service",
        title="booking-service consumes the order outcome",
        description="Moves the booking to CONFIRMED or REJECTED, once per message. "
        f"Messages that keep failing go to {ORDERS_DLQ_TOPIC}.",
    )
    async def booking_service(
        event: OrderConfirmed | OrderRejected,
    ) -> None:  # pragma: no cover - docs only
        del event

    return broker


def asyncapi_document(bootstrap: str = "kafka:9092") -> dict[str, Any]:
    spec = AsyncAPI(
        _document_broker(bootstrap),
        title="ticketing events",
        version=__version__,
        description="Event contracts of the ticketing booking saga.",
        schema_version="3.0.0",
    )
    document: dict[str, Any] = spec.to_specification().to_jsonable()
    return document
