"""Order's Kafka entrypoint: one saga step per BookingRequested."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from ticketing.contracts.events import BOOKINGS_DLQ_TOPIC, BOOKINGS_TOPIC, BookingRequested
from ticketing.order.service import CONSUMER, OrderService
from ticketing.shared.consumer import MessageRunner
from ticketing.shared.messaging import create_broker
from ticketing.shared.settings import Settings
from ticketing.shared.subscription import subscribe


def build_broker(settings: Settings, service: OrderService) -> tuple[KafkaBroker, MessageRunner]:
    broker = create_broker(settings, client_id=CONSUMER)

    runner = subscribe(
        broker,
        settings,
        topic=BOOKINGS_TOPIC,
        group=CONSUMER,
        dlq_topic=BOOKINGS_DLQ_TOPIC,
        accepted=(BookingRequested,),
        handle=service.handle_batch,
        description="Reserves the tickets at inventory and records the order or the rejection.",
    )
    return broker, runner
