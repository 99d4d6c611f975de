"""Booking's Kafka entrypoint: the order saga's answers (an order confirmed or rejected, or a
cancelled booking's seats released)."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from ticketing.booking.service import BookingService
from ticketing.booking.settlement import CONSUMER
from ticketing.contracts.events import (
    ORDERS_DLQ_TOPIC,
    ORDERS_TOPIC,
    OrderConfirmed,
    OrderRejected,
    OrderReleased,
)
from ticketing.shared.consumer_metrics import ConsumerMetrics
from ticketing.shared.messaging import create_broker
from ticketing.shared.settings import Settings
from ticketing.shared.subscription import subscribe


def build_broker(
    settings: Settings, service: BookingService, metrics: ConsumerMetrics | None = None
) -> KafkaBroker:
    broker = create_broker(settings, client_id=CONSUMER)

    subscribe(
        broker,
        settings,
        topic=ORDERS_TOPIC,
        group=CONSUMER,
        dlq_topic=ORDERS_DLQ_TOPIC,
        accepted=(OrderConfirmed, OrderRejected, OrderReleased),
        handle=service.apply_saga_answers,
        description="Moves a booking to CONFIRMED, HELD or REJECTED when the saga answers, and "
        "a cancelled one to CANCELLED once its seats are back; once per message.",
        metrics=metrics,
    )
    return broker
