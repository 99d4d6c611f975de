"""Loops that survive every failure must still stop when they are told to.

A task is told to stop by cancellation. But a clean-up that fails while the CancelledError
unwinds (a connection rolled back after its statement was cut off, say) replaces it with an
ordinary exception, and a loop that retries ordinary failures would then carry on: the service
stopping it would wait forever, and a consumer could even dead-letter a good message for an
error that only the shutdown caused. Such loops call :func:`stop_if_cancelled` with the failure
before retrying. Concurrent calls go through :func:`run_all`, which tells such a stop from a
cancellation that came from elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence


def stopping() -> bool:
    """Whether the running task has been told to stop (cancelled)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def stop_if_cancelled(failure: Exception) -> None:
    """Raise CancelledError (from ``failure``) once the running task has been cancelled,
    whatever exception is unwinding now; return otherwise."""
    if stopping():
        raise asyncio.CancelledError from failure


class CancelledElsewhere(Exception):
    """A call raised CancelledError although this task was not being stopped."""


async def run_all(calls: Sequence[Awaitable[None]]) -> None:
    """Run ``calls`` concurrently until all are done; the first failure stops the others and
    is raised once they have stopped, so none runs on beside its own redelivery.

    Not an ``asyncio.TaskGroup``: on Python 3.11 a task group whose child fails while the
    parent waits in its exit leaves the parent cancelled (CPython gh-116720), which would stop
    the consumer for good. And a call that ends cancelled without this task being stopped is a
    failure here (TaskGroup counts it as done), so its batch is delivered again.
    """
    tasks = [asyncio.ensure_future(call) for call in calls]
    if not tasks:
        return
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()  # a no-op for the finished ones
        await asyncio.gather(*tasks, return_exceptions=True)
    failures = [t.exception() for t in tasks if not t.cancelled() and t.exception() is not None]
    if failures:
        raise failures[0]  # type: ignore[misc]
    if any(task.cancelled() for task in tasks):
        raise CancelledElsewhere("a record's handling ended cancelled")
