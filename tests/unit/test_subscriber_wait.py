"""Our batch subscribers wait for records instead of sleeping between polls (a stand-in
consumer; the real loop against a real broker runs in tests/integration and tests/e2e)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import ConsumerStoppedError
from faststream.kafka import KafkaBroker

from ticketing.contracts.events import OrderRejected, Subscription
from ticketing.shared.messaging.subscription import IDLE_WAIT_MS, subscribe
from ticketing.shared.settings import Settings


class Consumer:
    """Answers ``getmany`` with the batches it was given, then with nothing; stops (as aiokafka's
    consumer does when stopped) after ``polls`` calls."""

    def __init__(self, *batches: dict[str, list[str]], polls: int = 100) -> None:
        self.batches = list(batches)
        self.polls = polls
        self.asked: list[dict[str, Any]] = []

    async def getmany(self, **options: Any) -> dict[str, list[str]]:
        if len(self.asked) == self.polls:
            raise ConsumerStoppedError
        self.asked.append(options)
        return self.batches.pop(0) if self.batches else {}


def subscriber(batch_size: int) -> Any:
    broker = KafkaBroker("127.0.0.1:9")  # never connected

    async def ignore(_: Any) -> None:
        return None

    subscription = Subscription(
        group="g", topic="t", dlq_topic="t.dlq", events=(OrderRejected,), effect="test"
    )
    subscribe(broker, Settings(consumer_batch_size=batch_size), subscription, handle=ignore)
    (only,) = broker.subscribers
    return only


async def test_an_empty_poll_returns_at_once_and_the_next_one_waits_for_records() -> None:
    polling = subscriber(batch_size=7)
    consumer = Consumer({"p0": ["a", "b"], "p1": ["c"]})
    assert await polling.get_msg(consumer) == ("a", "b", "c")
    # FastStream's own sleeps here (as long as its batch timeout, 200 ms by default) before it
    # returns; ours returns at once, and its caller asks again.
    assert await asyncio.wait_for(polling.get_msg(consumer), timeout=0.1) == ()
    assert consumer.asked == [{"timeout_ms": IDLE_WAIT_MS, "max_records": 7}] * 2


async def test_faststreams_own_loop_polls_through_ours_without_sleeping() -> None:
    """FastStream's consume loop (private, so checked here) must call the replaced ``get_msg``:
    five empty polls return at once, where FastStream's own would sleep 200 ms after each."""
    polling = subscriber(batch_size=3)
    polling.running = True
    consumer = Consumer(polls=5)
    await asyncio.wait_for(polling._run_consume_loop(consumer), timeout=0.5)
    assert consumer.asked == [{"timeout_ms": IDLE_WAIT_MS, "max_records": 3}] * 5
