"""Kafka broker factory (FastStream). Built from settings, never at import time.

Idempotent producers are a setting: on for Apache Kafka, off for brokers such as Tansu that do
not implement InitProducerId. Exactly-once effects come from consumer-side deduplication anyway.
"""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from ticketing.platform.settings import Settings


def create_broker(settings: Settings, *, client_id: str) -> KafkaBroker:
    """A FastStream Kafka broker for one service; connect it in the service's lifespan."""
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        request_timeout_ms=15_000,
        graceful_timeout=10.0,
    )
