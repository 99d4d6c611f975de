"""Order's Kafka entrypoint: one saga step per BookingRequested."""

from __future__ import annotations

from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from ticketing.contracts.events import BOOKINGS_DLQ_TOPIC, BOOKINGS_TOPIC, BookingRequested
from ticketing.order.service import CONSUMER, OrderService
from ticketing.shared.consumer import MessageRunner
from ticketing.shared.messaging import consumer_options, create_broker
from ticketing.shared.settings import Settings


def build_broker(settings: Settings, service: OrderService) -> tuple[KafkaBroker, MessageRunner]:
    broker = create_broker(settings, client_id=CONSUMER)
    runner = MessageRunner(
        broker,
        dlq_topic=BOOKINGS_DLQ_TOPIC,
        accepted=(BookingRequested,),
        max_attempts=settings.consumer_max_attempts,
    )

    async def apply(event: BookingRequested) -> None:
        await service.handle_booking_requested(event)

    @broker.subscriber(
        BOOKINGS_TOPIC,
        group_id=CONSUMER,
        ack_policy=AckPolicy.MANUAL,
        title="order-service:ticketing.bookings",
        description="Reserves the tickets at inventory and records the order or the rejection.",
        **consumer_options(settings),
    )
    async def on_booking_requested(body: Any, message: KafkaMessage) -> None:
        await runner.run(message, apply)

    return broker, runner
