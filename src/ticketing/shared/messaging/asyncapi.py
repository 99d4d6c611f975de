"""The AsyncAPI 3 document of every Kafka topic: who publishes what, and who consumes it.

Built from the event contracts with FastStream's generator on a documentation-only broker (the
running services publish through the relays of their event stores, which FastStream does not
see). What is published, by whom and where comes from ``contracts.events.PUBLICATIONS``; who
consumes it, from the subscriptions the consuming services declare there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from functools import reduce
from operator import or_
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from ticketing import __version__
from ticketing.contracts.events import PUBLICATIONS, SUBSCRIPTIONS, Subscription

HEADERS_NOTE = (
    "Headers: event_type (the payload's type), message_id (deduplication key, equal to the "
    "payload's message_id), correlation_id, content-type application/json."
)


def _document_broker(bootstrap: str, subscriptions: Iterable[Subscription]) -> KafkaBroker:
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
    for subscription in subscriptions:
        *others, last = [event.__name__ for event in subscription.events]
        names = f"{', '.join(others)} or {last}" if others else last
        broker.subscriber(
            subscription.topic,
            group_id=subscription.group,
            title=f"{subscription.group} consumes {names}",
            description=f"{subscription.effect} Messages that keep failing go to "
            f"{subscription.dlq_topic}.",
        )(_consumer_of(subscription.events))
    return broker


def _consumer_of(events: tuple[type[Any], ...]) -> Callable[..., Awaitable[None]]:
    """A handler FastStream documents as taking any of ``events`` (it reads the annotation)."""

    async def consume(event: Any) -> None:  # pragma: no cover - docs only
        del event

    consume.__annotations__ = {"event": reduce(or_, events), "return": None}
    return consume


def asyncapi_document(
    bootstrap: str = "kafka:9092", subscriptions: Iterable[Subscription] = SUBSCRIPTIONS
) -> dict[str, Any]:
    """The document of the published events and of ``subscriptions``, the consumer groups the
    consuming services declare."""
    spec = AsyncAPI(
        _document_broker(bootstrap, subscriptions),
        title="ticketing events",
        version=__version__,
        description="Event contracts of the ticketing booking saga.",
        schema_version="3.0.0",
    )
    document: dict[str, Any] = spec.to_specification().to_jsonable()
    return document
