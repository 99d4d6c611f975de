"""Ending a request's work as soon as its caller leaves.

uvicorn neither cancels an ASGI app whose client disconnected nor fails its ``send``: an app
waiting on something else (an upstream holding a long-poll, an endless event stream) would hold
that upstream's connection until the upstream ends on its own. The caller's leaving shows only
as an ``http.disconnect`` from ``receive``, which :func:`until_caller_leaves` watches for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from litestar.types import Receive

# nginx's status for a caller that left before its answer: logged and counted, never sent.
CALLER_LEFT = 499


@dataclass(slots=True)
class Caller:
    left: bool = False


@asynccontextmanager
async def until_caller_leaves(receive: Receive) -> AsyncIterator[Caller]:
    """Run the block until it ends or its caller disconnects: then the block is cancelled and
    ends quietly, with ``left`` set. For use once the request body was read: the watch takes
    every message ``receive`` gives."""
    task = asyncio.current_task()
    assert task is not None, "called from a task"
    caller = Caller()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        caller.left = True
        task.cancel()  # delivered in the block: this runs only while the block awaits

    watcher = asyncio.create_task(watch())
    try:
        yield caller
    except asyncio.CancelledError:
        # Ours to swallow only when nobody else cancelled the task too (a server stopping).
        if not caller.left or task.uncancel() > 0:
            raise
    finally:
        # Not awaited: a cancellation of this task arriving meanwhile would be lost.
        watcher.cancel()
