"""Loops that survive every failure must still stop when they are told to.

A task is told to stop by cancellation. But a clean-up that fails while the CancelledError
unwinds (a connection rolled back after its statement was cut off, say) replaces it with an
ordinary exception, and a loop that retries ordinary failures would then carry on: the service
stopping it would wait forever, and a consumer could even dead-letter a good message for an
error that only the shutdown caused. Such loops call :func:`stop_if_cancelled` with the failure
before retrying.
"""

from __future__ import annotations

import asyncio


def stopping() -> bool:
    """Whether the running task has been told to stop (cancelled)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def stop_if_cancelled(failure: Exception) -> None:
    """Raise CancelledError (from ``failure``) once the running task has been cancelled,
    whatever exception is unwinding now; return otherwise."""
    if stopping():
        raise asyncio.CancelledError from failure
