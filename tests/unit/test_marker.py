"""The relay's marker: retries a failed mark, and keeps a batch's ids out of the relay's reads
until its mark committed (stand-in transactions; the real ones are in
tests/integration/test_outbox_relay.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ticketing.shared import relay
from ticketing.shared.relay import Marker


class Transactions:
    """Stands in for ``run_transaction``: fails the first ``failures`` calls, and lets each
    call finish only when the test releases it."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.release = asyncio.Event()

    async def __call__(self, _: Any, __: Callable[[Any], Awaitable[Any]], **___: Any) -> None:
        self.calls += 1
        await self.release.wait()
        self.release.clear()
        if self.calls <= self.failures:
            raise ConnectionError("MySQL went away")


async def eventually(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.005)


async def test_a_failed_mark_is_retried_and_its_batch_stays_unmarked_until_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    transactions = Transactions(failures=1)
    monkeypatch.setattr(relay, "run_transaction", transactions)
    counted: list[int] = []
    engine: Any = object()
    marker = Marker(engine, "UPDATE", max_backoff=0.01, linger=0, counted=counted.append)
    task = asyncio.create_task(marker.run())
    try:
        marker.add(1, 3, [1, 2, 3])
        await eventually(lambda: transactions.calls == 1)
        marker.add(4, 4, [4])  # acknowledged while the first mark runs
        assert marker.unmarked() == [(1, 3), (4, 4)]
        transactions.release.set()  # the first mark fails
        await eventually(lambda: transactions.calls == 2)  # the retry, with both batches
        assert marker.unmarked() == [(1, 3), (4, 4)]
        assert counted == []
        transactions.release.set()  # the retry commits
        await eventually(lambda: counted == [4])
        assert marker.unmarked() == []
        assert transactions.calls == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_many_unmarked_batches_are_left_out_as_one_range() -> None:
    engine: Any = object()
    marker = Marker(engine, "UPDATE", max_backoff=0.01)
    for first in range(10, 10 + 3 * (Marker.MAX_RANGES + 1), 3):
        marker.add(first, first + 1, [first, first + 1])
    assert marker.unmarked() == [(10, 10 + 3 * Marker.MAX_RANGES + 1)]
