"""A service's consumer metrics: the lag of each partition its consumers hold, read from the
aiokafka consumer behind each FastStream subscriber at scrape time, and the duplicates and dead
letters each subscription's runner counted.

Lag is the partition's highwater (the offset the next record produced will take, as the last
fetch answered it) less the consumer's position (the next offset it will fetch): the records
waiting on the broker for this consumer. Records fetched and still being applied are not in it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from prometheus_client import Counter, Metric
from prometheus_client.core import GaugeMetricFamily

from ticketing.shared.metrics import ReadAtScrape
from ticketing.shared.tally import Tally

# A partition whose position is not known at once (just assigned, its committed offset still
# being fetched) is left out of the scrape rather than waited for.
POSITION_WAIT_SECONDS = 0.05


class Consumer(Protocol):
    """What lag needs of an aiokafka consumer."""

    def assignment(self) -> set[TopicPartition]: ...

    def highwater(self, partition: TopicPartition) -> int | None: ...

    async def position(self, partition: TopicPartition) -> int: ...


async def lag_of(consumer: Consumer) -> dict[TopicPartition, int]:
    """Each assigned partition's lag; a partition with no fetch answered yet (no highwater) or
    no position known is left out, and so is one taken away meanwhile."""
    # Read in one go: no rebalance can take a partition between these calls.
    highwaters = {tp: consumer.highwater(tp) for tp in consumer.assignment()}
    known = {tp: high for tp, high in highwaters.items() if high is not None}
    positions = await asyncio.gather(*(_position(consumer, tp) for tp in known))
    return {
        tp: max(0, high - position)
        for (tp, high), position in zip(known.items(), positions, strict=True)
        if position is not None
    }


async def _position(consumer: Consumer, partition: TopicPartition) -> int | None:
    try:
        async with asyncio.timeout(POSITION_WAIT_SECONDS):
            return await consumer.position(partition)
    except (IllegalStateError, TimeoutError):
        return None


@dataclass(frozen=True, slots=True)
class _Tracked:
    group: str
    subscriber: Any  # FastStream's subscriber: its ``consumer`` is None until it started


class ConsumerMetrics(ReadAtScrape):
    """``consumer_lag_records{consumer,topic,partition}``,
    ``consumer_duplicates_total{consumer,topic}`` and
    ``consumer_dead_letters_total{consumer,topic}`` of the subscriptions :meth:`track` saw."""

    def __init__(self) -> None:
        super().__init__()
        self._tracked: list[_Tracked] = []
        self._duplicates = Counter(
            "consumer_duplicates",
            "Messages the inbox found applied before: acknowledged and skipped",
            ["consumer", "topic"],
            registry=None,
        )
        self._dead_letters = Counter(
            "consumer_dead_letters",
            "Messages sent to the dead-letter topic (undecodable, or failing every attempt)",
            ["consumer", "topic"],
            registry=None,
        )

    def track(self, subscriber: Any, *, group: str, topic: str) -> Tally:
        """Show the lag of ``subscriber``'s consumer; the tally its runner counts on (the
        children made now, so each count is one bound call and shows from the start at 0)."""
        self._tracked.append(_Tracked(group, subscriber))
        return Tally(
            duplicate=self._duplicates.labels(group, topic).inc,
            dead_letter=self._dead_letters.labels(group, topic).inc,
        )

    @staticmethod
    def _lag_family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "consumer_lag_records",
            "Records on the broker the consumer has not fetched yet (highwater - position)",
            labels=["consumer", "topic", "partition"],
        )

    def describe(self) -> Sequence[Metric]:
        return [
            self._lag_family(),
            *self._duplicates.describe(),
            *self._dead_letters.describe(),
        ]

    async def read(self) -> Sequence[Metric]:
        family = self._lag_family()
        for tracked in self._tracked:
            consumer = tracked.subscriber.consumer
            if consumer is None:  # not started yet, or stopped
                continue
            for tp, lag in sorted((await lag_of(consumer)).items()):
                family.add_metric([tracked.group, tp.topic, str(tp.partition)], lag)
        return [family]

    def collect(self) -> Iterator[Metric]:
        yield from super().collect()
        yield from self._duplicates.collect()
        yield from self._dead_letters.collect()
