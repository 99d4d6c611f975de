"""Booking's Kafka entrypoint: the order saga's answers (an order confirmed or rejected, or a
cancelled booking's seats released)."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from ticketing.booking.service import BookingService
from ticketing.contracts.events import BOOKING_SUBSCRIPTION as SUBSCRIPTION
from ticketing.shared.messaging.broker import create_broker
from ticketing.shared.messaging.consumer_metrics import ConsumerMetrics
from ticketing.shared.messaging.subscription import subscribe
from ticketing.shared.settings import Settings


def build_broker(
    settings: Settings, service: BookingService, metrics: ConsumerMetrics | None = None
) -> KafkaBroker:
    broker = create_broker(settings, client_id=SUBSCRIPTION.group)

    subscribe(broker, settings, SUBSCRIPTION, handle=service.apply_saga_answers, metrics=metrics)
    return broker
