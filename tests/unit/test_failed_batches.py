"""A batch that fails is delivered again, on every partition it spans, and its offsets are never
committed (stand-ins for aiokafka's consumer; the real broker is in
tests/integration/test_consumer_redelivery.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from faststream.kafka.message import KafkaAckableMessage

from tests.unit.deliveries import delivery
from ticketing.contracts.events import OrderRejected
from ticketing.shared.cancellation import CancelledElsewhere, run_all
from ticketing.shared.messaging.consumer import Delivery, MessageRunner, Received


class Consumer:
    """Records seeks and commits; like aiokafka's, refuses to seek a partition not assigned."""

    def __init__(self, *assigned: int, commit_error: Exception | None = None) -> None:
        self.assigned = {TopicPartition("t", partition) for partition in assigned}
        self.commit_error = commit_error
        self.seeks: list[tuple[int, int]] = []
        self.commits = 0

    def seek(self, partition: TopicPartition, offset: int) -> None:
        if partition not in self.assigned:
            raise IllegalStateError(f"{partition} is not assigned")
        self.seeks.append((partition.partition, offset))

    async def commit(self) -> None:
        if self.commit_error is not None:
            raise self.commit_error
        self.commits += 1


def record(partition: int, offset: int) -> Any:
    return ConsumerRecord("t", partition, offset, 0, 0, None, b"{}", None, 0, 2, [])


def rejected(partition: int, offset: int) -> Any:
    """A record holding a valid OrderRejected event."""
    valid = delivery(offset)
    headers = [(name, value.encode()) for name, value in valid.headers.items()]
    return ConsumerRecord("t", partition, offset, 0, 0, None, valid.value, None, 0, 2, headers)


def batch(consumer: Consumer, *records: Any) -> KafkaAckableMessage:
    """The message FastStream hands our batch subscriber: the records and the consumer."""
    return KafkaAckableMessage(raw_message=records, body=b"", consumer=consumer)


class Runner(MessageRunner):
    """Runs batches by ``outcome``: an exception to raise, or None to succeed."""

    def __init__(self, *outcomes: BaseException | None) -> None:
        stand_in: Any = object()  # the broker; no record is dead-lettered here
        super().__init__(stand_in, dlq_topic="t.dlq", accepted=(OrderRejected,), max_backoff=0.01)
        self.outcomes = list(outcomes)
        self.ran: list[list[tuple[int, int]]] = []

    async def run_batch(self, deliveries: list[Delivery], *_: Any) -> None:
        self.ran.append([(d.partition, d.offset) for d in deliveries])
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome


async def ignore(_: Sequence[Received]) -> None:
    return None


async def test_a_failed_batch_goes_back_to_its_first_record_on_every_partition() -> None:
    consumer = Consumer(0, 1, 2)
    runner = Runner(RuntimeError("a bug"), None)
    failed = batch(consumer, record(0, 5), record(1, 9), record(0, 6), record(2, 3), record(1, 10))
    await runner.complete(failed, ignore)  # the failure is handled: logged, sought back
    assert sorted(consumer.seeks) == [(0, 5), (1, 9), (2, 3)]
    assert consumer.commits == 0
    await runner.complete(batch(consumer, record(0, 5), record(0, 6)), ignore)
    assert consumer.commits == 1


async def test_a_partition_lost_to_a_rebalance_does_not_keep_the_others_from_going_back() -> None:
    consumer = Consumer(1, 2)  # partition 0 went to another member, which starts at its commit
    runner = Runner(RuntimeError("a bug"))
    await runner.complete(batch(consumer, record(0, 5), record(1, 9), record(2, 3)), ignore)
    assert sorted(consumer.seeks) == [(1, 9), (2, 3)]
    assert consumer.commits == 0


async def test_a_batch_cut_off_by_a_stop_goes_back_and_the_stop_goes_on() -> None:
    consumer = Consumer(0)
    runner = Runner(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await runner.complete(batch(consumer, record(0, 4), record(0, 5)), ignore)
    assert consumer.seeks == [(0, 4)]
    assert consumer.commits == 0


async def test_a_failed_commit_of_applied_records_does_not_send_them_back() -> None:
    """The records were applied: a later commit covers them, or a redelivery skips them."""
    consumer = Consumer(0, commit_error=CommitFailedError("rebalanced"))
    runner = Runner(None)
    await runner.complete(batch(consumer, record(0, 4)), ignore)
    assert consumer.seeks == []


async def test_a_single_record_is_handled_as_a_batch_of_one() -> None:
    consumer = Consumer(0)
    runner = Runner(RuntimeError("a bug"))
    single = KafkaAckableMessage(raw_message=record(0, 8), body=b"", consumer=consumer)
    await runner.complete(single, ignore)
    assert runner.ran == [[(0, 8)]]
    assert consumer.seeks == [(0, 8)]


class OneRecordBreaks(MessageRunner):
    """The real ``run_batch``, with a record whose run raises (a bug escaping its handling)."""

    def __init__(self) -> None:
        stand_in: Any = object()
        super().__init__(stand_in, dlq_topic="t.dlq", accepted=(OrderRejected,), max_backoff=0.01)

    async def run(self, delivery: Delivery, handler: Any, traceparent: str | None = None) -> None:
        if delivery.offset == 1:
            raise RuntimeError("a bug in one record")
        await asyncio.sleep(0.05)


async def test_a_record_that_breaks_leaves_the_consumer_running_not_cancelled() -> None:
    # With an asyncio.TaskGroup (Python 3.11) the failing child left this task cancelled, so
    # complete() raised CancelledError and the consume loop ended for good.
    consumer = Consumer(0)
    runner = OneRecordBreaks()

    async def refuses_batches(received: Sequence[Received]) -> None:
        if len(received) > 1:
            raise ValueError("handed over one at a time")

    await runner.complete(
        batch(consumer, rejected(0, 0), rejected(0, 1), rejected(0, 2)), refuses_batches
    )
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    assert consumer.seeks == [(0, 0)]
    assert consumer.commits == 0


async def test_a_handler_cancelled_from_elsewhere_is_retried_not_counted_as_done() -> None:
    # A handler awaiting a shared future that someone else cancelled raised CancelledError;
    # the batch then counted as complete and was committed past a record never applied.
    consumer = Consumer(0)
    stand_in: Any = object()
    runner = MessageRunner(stand_in, dlq_topic="t.dlq", accepted=(OrderRejected,))
    applied: list[Any] = []
    attempts = 0

    async def handler(received: Sequence[Received]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            shared = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(shared.cancel)  # someone else cancels it
            await shared
        applied.extend(item.event for item in received)

    await runner.complete(batch(consumer, rejected(0, 7)), handler)
    assert len(applied) == 1  # retried, then applied
    assert consumer.commits == 1


async def test_a_record_task_that_ends_cancelled_fails_its_batch() -> None:
    async def fine() -> None:
        await asyncio.sleep(0)

    async def cancelled_from_elsewhere() -> None:
        raise asyncio.CancelledError

    with pytest.raises(CancelledElsewhere):
        await run_all([fine(), cancelled_from_elsewhere()])
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_a_stop_while_records_run_stops_them_all() -> None:
    started = asyncio.Event()
    stopped: list[int] = []

    async def long(index: int) -> None:
        try:
            started.set()
            await asyncio.sleep(10)
        finally:
            stopped.append(index)

    runner = asyncio.ensure_future(run_all([long(0), long(1)]))
    await started.wait()
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert sorted(stopped) == [0, 1]
