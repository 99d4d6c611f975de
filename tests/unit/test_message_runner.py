"""The consumer runner's batch path, with an in-memory stand-in for the broker (logic only; the
real broker and database are in tests/integration)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest
from aiokafka.errors import KafkaConnectionError

from tests.fakes.dead_letters import DeadLetters
from tests.unit.deliveries import delivery
from ticketing.contracts.events import OrderRejected
from ticketing.shared.errors import Unavailable
from ticketing.shared.messaging.consumer import MessageRunner, Received


def runner() -> tuple[MessageRunner, DeadLetters]:
    broker = DeadLetters()
    stand_in: Any = broker  # only publish() is used, for dead letters
    run = MessageRunner(stand_in, dlq_topic="t.dlq", accepted=(OrderRejected,), max_backoff=0.01)
    return run, broker


async def test_a_batch_goes_to_the_handler_once_without_its_poison() -> None:
    run, dead = runner()
    sizes: list[int] = []

    async def handler(received: Sequence[Received]) -> None:
        sizes.append(len(received))

    await run.run_batch([delivery(0), delivery(1, valid=False), delivery(2)], handler)
    assert sizes == [2]
    assert dead.published == [b"{not json"]


async def test_an_unavailable_dependency_retries_the_batch_as_a_batch() -> None:
    run, _ = runner()
    sizes: list[int] = []

    async def handler(received: Sequence[Received]) -> None:
        sizes.append(len(received))
        if len(sizes) < 3:
            raise Unavailable("inventory is away")

    await run.run_batch([delivery(0), delivery(1)], handler)
    assert sizes == [2, 2, 2]


async def test_any_other_batch_failure_hands_each_record_over_alone() -> None:
    run, dead = runner()
    alone: list[Any] = []

    async def handler(received: Sequence[Received]) -> None:
        if len(received) > 1:
            raise ValueError("something in this batch is wrong")
        alone.append(received[0].event)

    records = [delivery(0), delivery(1), delivery(2)]
    await run.run_batch(records, handler)
    assert sorted(str(e.message_id) for e in alone) == sorted(
        msgspec.json.decode(r.value)["message_id"] for r in records
    )
    assert dead.published == []


async def test_a_record_that_keeps_failing_is_dead_lettered_after_its_attempts() -> None:
    run, dead = runner()
    calls = 0

    async def handler(received: Sequence[Received]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Unavailable("waited out, not counted")
        raise ValueError("this record is broken")

    record = delivery(0)
    await run.run_batch([record], handler)
    assert calls == 1 + 5  # one unavailable, then the five attempts it is allowed
    assert dead.published == [record.value]


class FailingDeadLetters(DeadLetters):
    """A dead-letter topic that refuses the first ``failures`` publishes (forever when None)."""

    def __init__(self, failures: int | None) -> None:
        super().__init__()
        self.failures = failures
        self.refused = 0

    async def publish(self, value: bytes, topic: str, **options: Any) -> None:
        if self.failures is None or self.refused < self.failures:
            self.refused += 1
            raise KafkaConnectionError("the dead-letter topic is unreachable")
        await super().publish(value, topic, **options)


def runner_with(dead: DeadLetters) -> MessageRunner:
    stand_in: Any = dead
    return MessageRunner(stand_in, dlq_topic="t.dlq", accepted=(OrderRejected,), max_backoff=0.01)


async def test_a_dead_letter_publish_that_fails_is_retried_until_it_goes_through() -> None:
    dead = FailingDeadLetters(failures=4)
    run = runner_with(dead)
    poison = delivery(0, valid=False)
    await run.run_batch([poison, delivery(1)], ignore)
    assert dead.refused == 4
    assert dead.published == [poison.value]
    assert run.dead_lettered == 1


async def ignore(_: Sequence[Received]) -> None:
    return None


async def test_a_dead_letter_publish_that_keeps_failing_stops_when_cancelled() -> None:
    dead = FailingDeadLetters(failures=None)
    run = runner_with(dead)
    task = asyncio.create_task(run.run_batch([delivery(0, valid=False)], ignore))
    async with asyncio.timeout(2):
        while dead.refused < 3 and not task.done():  # it keeps trying: nothing is dropped
            await asyncio.sleep(0.01)
    assert not task.done()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=2)
    assert done
    assert task.cancelled()
    assert dead.published == []


class BreaksLater(dict[str, str]):
    """Headers that read fine twice (the batch's decoding) and then break: a stand-in for any
    bug that escapes the handling of one record."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.reads = 0

    def get(self, *args: Any) -> Any:
        self.reads += 1
        if self.reads > 2:
            raise AttributeError("broken")
        return super().get(*args)


async def test_a_record_that_fails_unexpectedly_stops_the_rest_of_its_batch() -> None:
    """The batch will be delivered again: none of its records may still run on meanwhile."""
    run, _ = runner()
    cancelled: list[bool] = []

    async def handler(received: Sequence[Received]) -> None:
        if len(received) > 1:
            raise ValueError("handed over one at a time")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    healthy = delivery(0)
    broken = dataclasses.replace(delivery(1), headers=BreaksLater(delivery(1).headers))
    with pytest.raises(AttributeError):
        await asyncio.wait_for(run.run_batch([healthy, broken], handler), timeout=2)
    assert cancelled == [True]
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0  # the caller is not left cancelled (see run_all)
