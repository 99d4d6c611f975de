"""Order's Kafka entrypoint: a saga step per BookingRequested (reserve), BookingCancelled or
HoldExpired (give the seats back)."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from ticketing.contracts.events import (
    BOOKINGS_DLQ_TOPIC,
    BOOKINGS_TOPIC,
    BookingCancelled,
    BookingRequested,
    HoldExpired,
)
from ticketing.order.service import CONSUMER, OrderService
from ticketing.shared.consumer import MessageRunner
from ticketing.shared.consumer_metrics import ConsumerMetrics
from ticketing.shared.messaging import create_broker
from ticketing.shared.settings import Settings
from ticketing.shared.subscription import subscribe

# Every message booking publishes on the bookings topic, in the order it published them.
ACCEPTED = (BookingRequested, BookingCancelled, HoldExpired)


def build_broker(
    settings: Settings, service: OrderService, metrics: ConsumerMetrics | None = None
) -> tuple[KafkaBroker, MessageRunner]:
    broker = create_broker(settings, client_id=CONSUMER)

    runner = subscribe(
        broker,
        settings,
        topic=BOOKINGS_TOPIC,
        group=CONSUMER,
        dlq_topic=BOOKINGS_DLQ_TOPIC,
        accepted=ACCEPTED,
        handle=service.handle_batch,
        description="Reserves the tickets at inventory and records the order or the rejection; "
        "gives a confirmed order's seats back when its booking is cancelled or its hold expires.",
        metrics=metrics,
    )
    return broker, runner
