"""Kafka plumbing (FastStream). Brokers are built from settings, never at import time.

Idempotent producers are a setting: on for Apache Kafka, off for brokers such as Tansu that do
not implement InitProducerId. Exactly-once effects come from consumer-side deduplication anyway.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker

from ticketing.shared.messaging.partitioner import Murmur2Partitioner
from ticketing.shared.settings import Settings

log = structlog.get_logger(__name__)


def create_broker(settings: Settings, *, client_id: str) -> KafkaBroker:
    """A FastStream Kafka broker for one service; connect it in the service's lifespan."""
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        request_timeout_ms=15_000,
        graceful_timeout=10.0,
        partitioner=Murmur2Partitioner(),
        logger=None,
    )


def consumer_options(settings: Settings) -> dict[str, Any]:
    """Subscriber options every consumer group of ours shares."""
    return {
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.kafka_session_timeout_ms,
        "heartbeat_interval_ms": settings.kafka_heartbeat_interval_ms,
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
    }


async def start_with_retry(broker: KafkaBroker, *, max_delay: float = 5.0) -> None:
    """Start ``broker`` (its consumers), retrying with backoff while Kafka is unreachable."""
    delay = 0.2
    while True:
        try:
            await broker.start()
        except (KafkaError, OSError, TimeoutError) as error:
            log.warning("kafka unavailable, retrying", error=repr(error), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
        else:
            log.info("kafka consumers started")
            return


async def ping(broker: KafkaBroker) -> None:
    if not await broker.ping(timeout=1.0):
        raise ConnectionError("kafka does not answer")


async def consumers_joined(broker: KafkaBroker) -> None:
    """Raise unless every consumer of ``broker`` has joined its group: until then no record
    reaches the service, however long it has been up."""
    for subscriber in broker.subscribers:
        consumer = getattr(subscriber, "consumer", None)
        if consumer is None or not has_joined(consumer):
            group = getattr(subscriber, "group_id", None)
            raise ConnectionError(f"the consumer of group {group} has not joined it yet")


def has_joined(consumer: Any) -> bool:
    """Whether an aiokafka consumer has completed a join of its group since it subscribed.

    aiokafka gives the subscription an assignment only when a join completes, and an empty one
    when the group has more members than partitions: that member is ready too, as a standby.
    A later rebalance keeps the previous assignment until the next one arrives, so a replica
    joining the group does not make the others unready (which would refuse bookings that
    their HTTP side can take meanwhile).
    """
    subscription = consumer._subscription.subscription  # aiokafka has no public signal for it
    return subscription is not None and subscription.assignment is not None
