"""The AsyncAPI 3 document of every Kafka topic: who publishes what, and who consumes it.

Built from the event contracts with FastStream's generator on a documentation-only broker (the
running services publish through the relays of their event stores, which FastStream does not
see). What is published, by whom and where comes from ``contracts.events.PUBLICATIONS``.
"""

from __future__ import annotations

from functools import reduce
from operator import or_
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from ticketing import __version__
from ticketing.contracts.events import (
    BOOKINGS_DLQ_TOPIC,
    BOOKINGS_TOPIC,
    ORDERS_DLQ_TOPIC,
    ORDERS_TOPIC,
    PUBLICATIONS,
    BookingCancelled,
    BookingRequested,
    HoldExpired,
    OrderConfirmed,
    OrderRejected,
    OrderReleased,
)

HEADERS_NOTE = (
    "Headers: event_type (the payload's type), message_id (deduplication key, equal to the "
    "payload's message_id), correlation_id, content-type application/json."
)


def _document_broker(bootstrap: str) -> KafkaBroker:
    broker = KafkaBroker(
        bootstrap, description="Kafka topics of the ticketing system. " + HEADERS_NOTE
    )
    by_topic: dict[tuple[str, str], list[type[Any]]] = {}
    for publication in PUBLICATIONS.values():
        by_topic.setdefault((publication.topic, publication.publisher), []).append(
            publication.event
        )
    for (topic, publisher), types in by_topic.items():
        names = " or ".join(event.__name__ for event in types)
        broker.publisher(
            topic,
            schema=reduce(or_, types),
            title=f"{publisher} publishes {names}",
            description=f"Stored in {publisher}'s event store with the change it records, "
            "then published by its relay; the message id is the event's id in the store.",
        )

    @broker.subscriber(
        BOOKINGS_TOPIC,
        group_id="order-service",
        title="order-service consumes BookingRequested, BookingCancelled or HoldExpired",
        description="BookingRequested: reserves at inventory, records the order, publishes the "
        "outcome. BookingCancelled or HoldExpired (only for a booking whose order is "
        "confirmed): gives the seats back at inventory and publishes OrderReleased, once per "
        f"booking. Messages that keep failing go to {BOOKINGS_DLQ_TOPIC}.",
    )
    async def order_service(
        event: BookingRequested | BookingCancelled | HoldExpired,
    ) -> None:  # pragma: no cover - docs only
        del event

    @broker.subscriber(
        ORDERS_TOPIC,
        group_id="booking-service",
        title="booking-service consumes OrderConfirmed, OrderRejected or OrderReleased",
        description="OrderConfirmed or OrderRejected: moves the booking to CONFIRMED (HELD, "
        "for a hold) or REJECTED. OrderReleased: moves a cancelled booking to CANCELLED. Once "
        f"per message. Messages that keep failing go to {ORDERS_DLQ_TOPIC}.",
    )
    async def booking_service(
        event: OrderConfirmed | OrderRejected | OrderReleased,
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
