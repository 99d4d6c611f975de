"""Where a consumer stands in its partitions: committed just past a batch once it is applied,
sought back to the batch's start when it failed, so that no record is ever passed over."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from faststream.kafka.message import ConsumerProtocol, KafkaMessage

from ticketing.shared.cancellation import stop_if_cancelled

log = structlog.get_logger(__name__)


def records_of(message: KafkaMessage) -> tuple[Any, ...]:
    records = message.raw_message
    return records if isinstance(records, tuple) else (records,)


def rewind(consumer: ConsumerProtocol, records: Sequence[Any]) -> None:
    """Seek each partition of a failed batch back to its first record, so the next fetch
    delivers the batch again. FastStream's ``nack`` stops at the first partition it cannot
    seek, and its earlier releases sought only the first record's partition."""
    first: dict[Any, int] = {}
    for record in records:
        partition = TopicPartition(record.topic, record.partition)
        first[partition] = min(record.offset, first.get(partition, record.offset))
    for partition, offset in first.items():
        try:
            consumer.seek(partition, offset)
        except IllegalStateError:
            # A rebalance took it: its next owner starts at its last commit, which never
            # passed these records.
            log.info("partition no longer assigned, not sought back", partition=str(partition))


async def commit(message: KafkaMessage) -> None:
    """Commit the consumer's offsets, which stand just past the batch it applied. A failed
    commit (a rebalance, the broker away) loses nothing: a later commit covers the records,
    or whoever gets them again skips them as duplicates."""
    try:
        await message.ack()
    except Exception as error:  # noqa: BLE001 - the records are safe either way
        stop_if_cancelled(error)
        log.warning("offset commit failed", error=repr(error))
