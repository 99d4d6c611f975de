"""FastStream's side of our consumers: a batch subscriber with manual acks whose batches go to
a :class:`~ticketing.shared.messaging.consumer.MessageRunner`, parsed and decoded by us rather
than by FastStream, and polling without sleeping."""

from __future__ import annotations

import itertools
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.message import ConsumerProtocol, KafkaAckableMessage, KafkaMessage

from ticketing.contracts.events import Subscription
from ticketing.shared.messaging.broker import consumer_options
from ticketing.shared.messaging.consumer import BatchHandler, MessageRunner
from ticketing.shared.messaging.consumer_metrics import ConsumerMetrics
from ticketing.shared.settings import Settings
from ticketing.shared.tally import NO_TALLY


def subscribe(
    broker: KafkaBroker,
    settings: Settings,
    subscription: Subscription,
    *,
    handle: BatchHandler,
    metrics: ConsumerMetrics | None = None,
) -> MessageRunner:
    """Subscribe the subscription's group to its topic in batches of up to
    ``TICKETING_CONSUMER_BATCH_SIZE``: each record is decoded to one of its events (the others
    go to its dead-letter topic) and the batch handed to ``handle`` (again
    record by record, as batches of one, when the batch failed); the offsets are committed
    after the whole batch completed, and a batch that fails anyway is sought back and
    delivered again. With ``metrics``, the subscription's lag, duplicates and dead letters
    show there."""

    async def parse(records: Any) -> KafkaMessage:
        return as_message(records, subscriber.consumer)

    topic, group = subscription.topic, subscription.group
    subscriber = broker.subscriber(
        topic,
        group_id=group,
        ack_policy=AckPolicy.MANUAL,
        batch=True,
        max_records=settings.consumer_batch_size,
        parser=parse,
        decoder=as_received,
        title=f"{group}:{topic}",
        description=subscription.effect,
        **consumer_options(settings),
    )
    wait_without_sleeping(subscriber)
    runner = MessageRunner(
        broker,
        dlq_topic=subscription.dlq_topic,
        accepted=subscription.events,
        max_attempts=settings.consumer_max_attempts,
        tally=NO_TALLY if metrics is None else metrics.track(subscriber, group=group, topic=topic),
    )

    @subscriber
    async def on_batch(message: Any) -> None:  # the body (as_received); Any: FastStream reads hints
        await runner.complete(message, handle)

    return runner


IDLE_WAIT_MS = 200


def wait_without_sleeping(subscriber: Any) -> None:
    """Make a FastStream batch subscriber wait for records instead of sleeping between polls.

    FastStream's batch subscriber asks aiokafka for records with a wait of ``batch_timeout_ms``
    and, when none came, sleeps as long again before it asks anew: a record that arrives during
    that sleep waits for the sleep to end, and with a short timeout the idle loop wakes a few
    hundred times a second. aiokafka's ``getmany`` returns as soon as records arrive, so the
    subscriber here asks with a long wait and never sleeps (a stopping consumer ends the wait).
    """
    if not callable(getattr(type(subscriber), "get_msg", None)):
        raise TypeError(
            f"{type(subscriber).__name__} has no get_msg to replace: FastStream changed"
        )
    max_records = subscriber.max_records

    async def get_msg(consumer: Any) -> tuple[Any, ...]:
        batches = await consumer.getmany(timeout_ms=IDLE_WAIT_MS, max_records=max_records)
        return tuple(itertools.chain.from_iterable(batches.values()))

    subscriber.get_msg = get_msg


def as_message(records: Any, consumer: ConsumerProtocol | None) -> KafkaMessage:
    """What the subscriber's parser makes of a batch: FastStream's message, without FastStream's
    own parsing, which decodes every header as strict UTF-8: a header that is not would fail
    the whole batch before our handler sees it, and FastStream would move on past its records.
    (The runner reads each record itself, tolerantly.)"""
    if consumer is None:  # only once stopped, when nothing is committed any more
        raise RuntimeError("a batch arrived after its subscriber's consumer stopped")
    return KafkaAckableMessage(raw_message=records, body=b"", consumer=consumer)


async def as_received(message: KafkaMessage) -> KafkaMessage:
    """The subscriber's decoder: hands the handler FastStream's message itself. The runner
    decodes each record into its event dataclass, so FastStream's own per-record JSON decoding
    would be wasted work; and taking the message as the body, not through an injected context
    field, keeps FastStream's dependency resolution from running a synchronous getter in a
    worker thread (a thread hop) for every batch."""
    return message
