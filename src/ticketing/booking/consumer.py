"""Booking's Kafka entrypoint: settle bookings from the order saga's outcomes."""

from __future__ import annotations

from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from ticketing.booking.service import CONSUMER, BookingService
from ticketing.contracts.events import ORDERS_DLQ_TOPIC, ORDERS_TOPIC, OrderConfirmed, OrderRejected
from ticketing.shared.consumer import MessageRunner
from ticketing.shared.messaging import consumer_options, create_broker
from ticketing.shared.settings import Settings


def build_broker(settings: Settings, service: BookingService) -> KafkaBroker:
    broker = create_broker(settings, client_id=CONSUMER)
    runner = MessageRunner(
        broker,
        dlq_topic=ORDERS_DLQ_TOPIC,
        accepted=(OrderConfirmed, OrderRejected),
        max_attempts=settings.consumer_max_attempts,
    )

    async def settle(event: OrderConfirmed | OrderRejected) -> None:
        await service.apply_outcome(event)

    @broker.subscriber(
        ORDERS_TOPIC,
        group_id=CONSUMER,
        ack_policy=AckPolicy.MANUAL,
        title="booking-service:ticketing.orders",
        description="Moves a booking to CONFIRMED or REJECTED, once per message.",
        **consumer_options(settings),
    )
    async def on_order_outcome(body: Any, message: KafkaMessage) -> None:
        await runner.run(message, settle)

    return broker
