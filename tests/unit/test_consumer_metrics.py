"""Consumer metrics (issue 22): the lag read off an aiokafka consumer, and the duplicates and
dead letters a subscription's runner counts, each under its own consumer and topic."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.fakes.booking import InMemoryBookingRecords, InMemoryEvents
from tests.fakes.order import InMemoryOrderRecords, SagaInventory
from ticketing.booking.service import BookingService
from ticketing.contracts.booking import BookingCreate, CustomerCreate
from ticketing.contracts.events import (
    EVENT_TYPE_HEADER,
    BookingRequested,
    OrderConfirmed,
    OrderRejected,
)
from ticketing.order.service import OrderService
from ticketing.shared import tally
from ticketing.shared.messaging.consumer import Delivery, MessageRunner, Received
from ticketing.shared.messaging.consumer_metrics import ConsumerMetrics, lag_of
from ticketing.shared.store.eventstore import Cause
from ticketing.shared.tally import Tally, counting


class FakeConsumer:
    """An aiokafka consumer's assignment, highwaters and positions."""

    def __init__(
        self,
        highwaters: dict[TopicPartition, int | None],
        positions: dict[TopicPartition, int | None],
    ) -> None:
        self.highwaters = highwaters
        self.positions = positions  # None: no position yet (it would be waited for)
        self.revoked: set[TopicPartition] = set()

    def assignment(self) -> set[TopicPartition]:
        return set(self.highwaters)

    def highwater(self, partition: TopicPartition) -> int | None:
        assert partition in self.highwaters, "Partition is not assigned"
        return self.highwaters[partition]

    async def position(self, partition: TopicPartition) -> int:
        await asyncio.sleep(0)  # a rebalance may take the partition meanwhile
        if partition in self.revoked:
            raise IllegalStateError(f"Partition {partition} is not assigned")
        position = self.positions[partition]
        if position is None:
            await asyncio.Event().wait()  # as aiokafka waits for the committed offset
        assert position is not None
        return position


def tp(partition: int, topic: str = "ticketing.orders") -> TopicPartition:
    return TopicPartition(topic, partition)


async def test_lag_is_highwater_less_position_for_each_partition_known() -> None:
    consumer = FakeConsumer(
        {tp(0): 10, tp(1): 5, tp(2): None, tp(3): 7, tp(4): 3},
        {tp(0): 4, tp(1): 5, tp(2): 0, tp(3): None, tp(4): 9},
    )
    consumer.revoked.add(tp(1))  # taken away while its position was asked for
    started = asyncio.get_running_loop().time()
    lag = await lag_of(consumer)
    assert asyncio.get_running_loop().time() - started < 1  # an unknown position is not awaited
    # 2: no fetch answered yet; 3: no position yet; 4: fetched past the last highwater seen.
    assert lag == {tp(0): 6, tp(4): 0}


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.integers(0, 11),
        st.tuples(st.none() | st.integers(0, 10**6), st.integers(0, 10**6)),
        max_size=12,
    )
)
async def test_lag_is_never_negative_and_covers_every_partition_with_a_highwater(
    partitions: dict[int, tuple[int | None, int]],
) -> None:
    consumer = FakeConsumer(
        {tp(p): high for p, (high, _) in partitions.items()},
        {tp(p): position for p, (_, position) in partitions.items()},
    )
    lag = await lag_of(consumer)
    assert set(lag) == {tp(p) for p, (high, _) in partitions.items() if high is not None}
    for p, (high, position) in partitions.items():
        if high is not None:
            assert lag[tp(p)] == max(0, high - position)


class Subscriber:
    def __init__(self, consumer: FakeConsumer | None) -> None:
        self.consumer = consumer


def scraped(metrics: ConsumerMetrics) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(metrics)
    return registry


async def test_each_subscription_shows_its_lag_and_counts_from_zero() -> None:
    metrics = ConsumerMetrics()
    orders = Subscriber(FakeConsumer({tp(0): 3, tp(1): 8}, {tp(0): 3, tp(1): 2}))
    stopped = Subscriber(None)  # not started yet: no lag to show, its counts still shown
    metrics.track(orders, group="booking-service", topic="ticketing.orders")
    counts = metrics.track(stopped, group="order-service", topic="ticketing.bookings")
    registry = scraped(metrics)
    await metrics.refresh()
    value = registry.get_sample_value
    lag = "consumer_lag_records"
    labels = {"consumer": "booking-service", "topic": "ticketing.orders"}
    assert value(lag, {**labels, "partition": "0"}) == 0
    assert value(lag, {**labels, "partition": "1"}) == 6
    other = {"consumer": "order-service", "topic": "ticketing.bookings"}
    assert value(lag, {**other, "partition": "0"}) is None
    for name in ("consumer_duplicates_total", "consumer_dead_letters_total"):
        assert value(name, labels) == 0
        assert value(name, other) == 0
    counts.duplicate()
    counts.dead_letter()
    counts.dead_letter()
    assert value("consumer_duplicates_total", other) == 1
    assert value("consumer_dead_letters_total", other) == 2
    assert value("consumer_dead_letters_total", labels) == 0


# --- What the runner counts ----------------------------------------------------------------


class DeadLetters:
    def __init__(self) -> None:
        self.published: list[bytes] = []

    async def publish(self, value: bytes, topic: str, **_: Any) -> None:
        self.published.append(value)


class Counts:
    def __init__(self) -> None:
        self.duplicates = 0
        self.dead_letters = 0

    def tally(self) -> Tally:
        def duplicate() -> None:
            self.duplicates += 1

        def dead_letter() -> None:
            self.dead_letters += 1

        return Tally(duplicate=duplicate, dead_letter=dead_letter)


def runner(counts: Counts, accepted: tuple[type[Any], ...]) -> MessageRunner:
    stand_in: Any = DeadLetters()
    return MessageRunner(
        stand_in, dlq_topic="t.dlq", accepted=accepted, max_backoff=0.01, tally=counts.tally()
    )


def delivery(event: Any, offset: int = 0) -> Delivery:
    return Delivery(
        topic="t",
        partition=0,
        offset=offset,
        key=None,
        value=msgspec.json.encode(event),
        headers={EVENT_TYPE_HEADER: type(event).__name__},
    )


def rejected() -> OrderRejected:
    return OrderRejected(
        message_id=uuid.uuid4(),
        booking_id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        reason="insufficient_capacity",
        rejected_at=datetime.now(UTC),
    )


async def test_the_runner_counts_each_dead_letter_once() -> None:
    counts = Counts()
    run = runner(counts, (OrderRejected,))

    async def broken(received: Sequence[Received]) -> None:
        raise ValueError("never applies")

    poison = Delivery("t", 0, 9, None, b"{not json", {EVENT_TYPE_HEADER: "OrderRejected"})
    await run.run_batch([delivery(rejected(), 0), poison, delivery(rejected(), 1)], broken)
    assert counts.dead_letters == 3
    assert counts.duplicates == 0


async def test_a_duplicate_counts_only_under_the_runner_that_handles_it() -> None:
    """Two runners at once (two subscriptions) each count their own; a handler called
    without a runner counts nowhere."""
    first, second = Counts(), Counts()

    async def skips(received: Sequence[Received]) -> None:
        await asyncio.sleep(0)
        tally.applied_before()

    await asyncio.gather(
        runner(first, (OrderRejected,)).run_batch([delivery(rejected())], skips),
        runner(second, (OrderRejected,)).run_batch(
            [delivery(rejected(), n) for n in range(3)], skips
        ),
    )
    await skips([Received(rejected(), None)])
    assert (first.duplicates, second.duplicates) == (1, 1)  # the batch of three was one call
    with counting(first.tally()):
        await skips([Received(rejected(), None)])
    assert first.duplicates == 2


async def booking_service() -> tuple[BookingService, uuid.UUID, uuid.UUID]:
    records, inventory = InMemoryBookingRecords(), InMemoryEvents()
    service = BookingService(records, inventory, max_tickets=4)
    event_id = inventory.schedule(left_capacity=10)
    cause = Cause("box-office")
    customer = await service.create_customer(CustomerCreate("Ada", "ada@example.com"), cause)
    data = BookingCreate(customer.id, event_id, 1)
    accepted = await service.requests.request_booking(
        data, raw_body=msgspec.json.encode(data), cause=cause
    )
    return service, accepted.booking_id, event_id


async def test_booking_counts_an_outcome_the_inbox_applied_before() -> None:
    service, booking_id, event_id = await booking_service()
    counts = Counts()
    run = runner(counts, (OrderConfirmed, OrderRejected))
    outcome = OrderConfirmed(
        message_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        booking_id=booking_id,
        event_id=event_id,
        ticket_count=1,
        total_price="25.00",
        confirmed_at=datetime.now(UTC),
    )
    await run.run_batch([delivery(outcome, 0)], service.apply_saga_answers)
    assert counts.duplicates == 0
    # Redelivered, alone and then beside a new message: counted each time it is skipped.
    await run.run_batch([delivery(outcome, 0)], service.apply_saga_answers)
    other = rejected()
    await run.run_batch([delivery(outcome, 0), delivery(other, 1)], service.apply_saga_answers)
    assert counts.duplicates == 2
    assert counts.dead_letters == 0


async def test_order_counts_a_request_the_inbox_applied_before() -> None:
    records, inventory = InMemoryOrderRecords(), SagaInventory()
    orders = OrderService(records, inventory)
    event_id = inventory.schedule(capacity=3)
    counts = Counts()
    run = runner(counts, (BookingRequested,))
    message = BookingRequested(
        message_id=uuid.uuid4(),
        booking_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        event_id=event_id,
        ticket_count=1,
        unit_price="10.00",
        total_price="10.00",
        requested_at=datetime.now(UTC),
    )
    await run.run_batch([delivery(message)], orders.handle_batch)
    assert counts.duplicates == 0
    await run.run_batch([delivery(message)], orders.handle_batch)
    assert counts.duplicates == 1
