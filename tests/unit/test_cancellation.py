"""Loops that retry every failure still stop when cancelled, even when a clean-up failure has
replaced the CancelledError with an ordinary exception (stand-ins; the real case, a
connection cut off mid-statement, is in tests/integration/test_outbox_relay.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import MetaData

from ticketing.shared.messaging.consumer import MessageRunner
from ticketing.shared.messaging.relay import OutboxRelay
from ticketing.shared.store.table import event_store_table


class CleanupFails(RuntimeError):
    """What a failed clean-up raises in place of the cancellation it interrupted."""


async def wait_forever(*, fail_cleanup: bool) -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        if fail_cleanup:
            raise CleanupFails("rolling back a dead connection") from None
        raise


class StuckConnection:
    """Waits inside its first statement, as a relay waiting for the leader lock does."""

    async def execution_options(self, **_: Any) -> None:
        return None

    async def scalar(self, *_: Any, **__: Any) -> int:
        await asyncio.Event().wait()
        return 1


class Engine:
    def __init__(self) -> None:
        self.connects = 0

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[StuckConnection]:
        self.connects += 1
        try:
            yield StuckConnection()
        except asyncio.CancelledError:
            if self.connects == 1:  # only once: a relay that restarts can still be stopped
                raise CleanupFails("returning the connection to the pool") from None
            raise


async def stops_when_cancelled(task: asyncio.Task[Any]) -> bool:
    await asyncio.sleep(0.05)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=2)
    if not done:  # it went on: stop it for good (the stand-ins fail only the first clean-up)
        task.cancel()
        await asyncio.wait([task], timeout=2)
    return bool(done) and task.cancelled()


async def test_a_relay_stops_when_its_cleanup_fails_during_cancellation() -> None:
    engine = Engine()
    stand_in: Any = engine
    relay = OutboxRelay(
        stand_in,
        event_store_table(MetaData()),
        lock_name="test",
        producer_factory=lambda: stand_in,
        max_backoff=0.01,
    )
    assert await stops_when_cancelled(asyncio.create_task(relay.run()))
    assert engine.connects == 1  # never restarted


async def test_the_consumer_runner_stops_retrying_when_cancelled() -> None:
    stand_in: Any = object()  # the broker: only dead letters use it, and none is sent here
    runner = MessageRunner(stand_in, dlq_topic="t.dlq", accepted=(), max_backoff=0.01)
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        await wait_forever(fail_cleanup=calls == 1)

    task = asyncio.create_task(runner._retrying(call, give_up=lambda _: False))
    assert await stops_when_cancelled(task)
    assert calls == 1
