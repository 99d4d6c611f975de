"""Order's Kafka entrypoint: a saga step per BookingRequested (reserve), BookingCancelled or
HoldExpired (give the seats back)."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from ticketing.contracts.events import ORDER_SUBSCRIPTION as SUBSCRIPTION
from ticketing.order.service import OrderService
from ticketing.shared.messaging.broker import create_broker
from ticketing.shared.messaging.consumer import MessageRunner
from ticketing.shared.messaging.consumer_metrics import ConsumerMetrics
from ticketing.shared.messaging.subscription import subscribe
from ticketing.shared.settings import Settings

# Every message booking publishes on the bookings topic, in the order it published them.
ACCEPTED = SUBSCRIPTION.events


def build_broker(
    settings: Settings, service: OrderService, metrics: ConsumerMetrics | None = None
) -> tuple[KafkaBroker, MessageRunner]:
    broker = create_broker(settings, client_id=SUBSCRIPTION.group)

    runner = subscribe(broker, settings, SUBSCRIPTION, handle=service.handle_batch, metrics=metrics)
    return broker, runner
