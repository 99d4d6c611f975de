"""No record of a failed batch is skipped: against the real broker, every record published is
applied or dead-lettered, whatever failed on the way (the dead-letter topic, the runner itself,
a header FastStream cannot read)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from tests.harness.broker import read_topic
from tests.integration.order_db import requested
from tests.integration.subscriber import (
    Applied,
    consumer_settings,
    new_topic,
    subscribed,
)
from ticketing.contracts.events import EVENT_TYPE_HEADER, MESSAGE_ID_HEADER
from ticketing.shared.messaging.consumer import Delivery, MessageRunner, Received

PARTITIONS = 3


class OneByOne(Applied):
    """Refuses every batch of more than one, so that every record is handed over alone."""

    async def batch(self, received: Sequence[Received]) -> None:
        if len(received) > 1:
            raise RuntimeError("no batches here (test)")
        await super().batch(received)


async def publish(
    bootstrap: str, topic: str, count: int, *, poison_every: int = 0, odd_header: int = -1
) -> tuple[set[str], set[str]]:
    """Publish ``count`` records round-robin over the partitions: every ``poison_every``-th
    undecodable, the ``odd_header``-th with a header value that is not UTF-8. Returns the
    message ids of the good records and of the poison ones."""
    good: set[str] = set()
    poison: set[str] = set()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for n in range(count):
            event = requested()
            message_id = str(event.message_id)
            is_poison = poison_every > 0 and n % poison_every == poison_every - 1
            (poison if is_poison else good).add(message_id)
            headers = [
                (EVENT_TYPE_HEADER, b"BookingRequested"),
                (MESSAGE_ID_HEADER, message_id.encode()),
            ]
            if n == odd_header:
                headers.append(("x-binary", b"\xff\xfe\x00"))
            value = b"{not json" if is_poison else msgspec.json.encode(event)
            await producer.send_and_wait(
                topic, value, key=message_id.encode(), partition=n % PARTITIONS, headers=headers
            )
    finally:
        await producer.stop()
    return good, poison


def consuming(
    bootstrap: str, topic: str, applied: Applied, patch: Callable[[Any, MessageRunner], None]
) -> AbstractAsyncContextManager[Any]:
    """Our subscriber on ``topic`` (``patch`` gets its broker and runner before it starts)."""
    settings = consumer_settings(bootstrap)
    return subscribed(settings, topic, applied.batch, client_id="redelivery-test", patch=patch)


async def applies_all_then_more(
    bootstrap: str,
    topic: str,
    applied: Applied,
    good: set[str],
    patch: Callable[[Any, MessageRunner], None],
) -> None:
    """Consume until every record of ``good`` is applied, then publish more and see those applied
    too: records after a failure are applied (and their batches committed) as well."""
    async with consuming(bootstrap, topic, applied, patch):

        async def left() -> set[str]:
            return good - applied.ids

        await until_none_is_left(left)
        later, _ = await publish(bootstrap, topic, 6)
        good |= later
        await until_none_is_left(left)


async def dead_lettered(bootstrap: str, topic: str, expected: int) -> set[str]:
    records = await read_topic(bootstrap, f"{topic}.dlq", expected, timeout=2)
    return {dict(r.headers)[MESSAGE_ID_HEADER].decode() for r in records}


async def until_none_is_left(left: Callable[[], Awaitable[set[str]]], timeout: float = 30) -> None:
    """Wait until ``left`` (the records neither applied nor dead-lettered) is empty."""
    remaining = await left()
    try:
        async with asyncio.timeout(timeout):
            while remaining:
                await asyncio.sleep(0.1)
                remaining = await left()
    except TimeoutError:
        pytest.fail(f"{len(remaining)} records were neither applied nor dead-lettered")


async def test_a_dead_letter_topic_that_fails_for_a_while_skips_no_record(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = await new_topic(kafka_bootstrap, "redelivery", PARTITIONS)
    good, poison = await publish(kafka_bootstrap, topic, 24, poison_every=4)
    applied = Applied()
    refused = 0

    def failing_dead_letters(broker: Any, _: MessageRunner) -> None:
        publish_for_real = broker.publish

        async def flaky(value: bytes, to: str, **options: Any) -> Any:
            nonlocal refused
            if to.endswith(".dlq") and refused < 5:
                refused += 1
                raise KafkaConnectionError("the dead-letter topic is unreachable (test)")
            return await publish_for_real(value, to, **options)

        monkeypatch.setattr(broker, "publish", flaky)

    async with consuming(kafka_bootstrap, topic, applied, failing_dead_letters):

        async def left() -> set[str]:
            dead = await dead_lettered(kafka_bootstrap, topic, len(poison))
            assert applied.ids <= good
            assert dead <= poison
            return (good - applied.ids) | (poison - dead)

        await until_none_is_left(left)
    assert refused == 5


async def test_a_batch_that_fails_as_a_whole_comes_again_on_every_partition(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = await new_topic(kafka_bootstrap, "redelivery", PARTITIONS)
    good, _ = await publish(kafka_bootstrap, topic, 12)
    applied = Applied()
    failed: list[tuple[int, int]] = []

    def failing_once(_: Any, runner: MessageRunner) -> None:
        run_for_real = runner.run_batch

        async def fail_the_first(deliveries: list[Delivery], *args: Any) -> None:
            if not failed:
                failed.extend((d.partition, d.offset) for d in deliveries)
                raise RuntimeError("an unexpected failure escaped the batch (test)")
            await run_for_real(deliveries, *args)

        monkeypatch.setattr(runner, "run_batch", fail_the_first)

    await applies_all_then_more(kafka_bootstrap, topic, applied, good, failing_once)
    assert len({partition for partition, _ in failed}) > 1  # the failed batch spanned partitions


async def test_one_record_that_breaks_neither_stops_the_consumer_nor_skips_a_record(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure escaping one record's handling inside a batch (the records run concurrently):
    the batch comes again and the consumer goes on. With a task group on Python 3.11 this left
    the consume loop cancelled, and nothing was applied after it."""
    topic = await new_topic(kafka_bootstrap, "redelivery", PARTITIONS)
    good, _ = await publish(kafka_bootstrap, topic, 12)
    applied = OneByOne()
    broke: list[int] = []

    def breaking_once(_: Any, runner: MessageRunner) -> None:
        run_for_real = runner.run

        async def break_one(delivery: Delivery, *args: Any) -> None:
            if not broke:
                broke.append(delivery.offset)
                raise RuntimeError("a bug in one record's handling (test)")
            await run_for_real(delivery, *args)

        monkeypatch.setattr(runner, "run", break_one)

    await applies_all_then_more(kafka_bootstrap, topic, applied, good, breaking_once)
    assert broke


async def test_a_header_faststream_cannot_read_skips_no_record_of_its_batch(
    kafka_bootstrap: str,
) -> None:
    topic = await new_topic(kafka_bootstrap, "redelivery", PARTITIONS)
    good, _ = await publish(kafka_bootstrap, topic, 9, odd_header=4)
    applied = Applied()

    async with consuming(kafka_bootstrap, topic, applied, lambda *_: None):

        async def left() -> set[str]:
            return good - applied.ids

        await until_none_is_left(left)
