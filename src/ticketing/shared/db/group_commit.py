"""Group commit: concurrent writes of one kind share one transaction.

Under load, many requests want the same small write at once (a booking row and its outbox row).
Giving each its own transaction costs a checkout, three or four round trips and a log flush per
request; :class:`GroupCommit` writes every request waiting at that moment in one transaction with
multi-row statements instead. Nothing about the answer changes: :meth:`GroupCommit.write`
returns only after the transaction carrying the item committed, and raises if it did not.

- Alone, an item is written at once (no timer, no added latency); while one transaction is
  being written, the items that arrive meanwhile gather for the next.
- A shared transaction that fails because the database is unavailable fails every item in it
  (none of them was written). One that fails for any other reason (a value the database
  refuses) is retried item by item, so a bad item fails only its own request.
- A caller cancelled while its item is being written learns of the cancellation only after the
  outcome is known, so its clean-up never races a commit that is still under way.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from ticketing.shared.db.engine import unavailable
from ticketing.shared.db.unit_of_work import UnitOfWork, in_unit_of_work

T = TypeVar("T")
WriteMany = Callable[[UnitOfWork, Sequence[T]], Awaitable[None]]


class GroupCommit(Generic[T]):
    def __init__(
        self,
        engine: AsyncEngine,
        write_many: WriteMany[T],
        *,
        max_batch: int = 100,
        writers: int = 2,
        after_commit: Callable[[], None] = lambda: None,
    ) -> None:
        if max_batch < 1 or writers < 1:
            raise ValueError("max_batch and writers must be at least 1")
        self._engine = engine
        self._write_many = write_many
        self._max_batch = max_batch
        self._writers = writers
        self._after_commit = after_commit
        self._queue: deque[tuple[T, asyncio.Future[None]]] = deque()
        self._active = 0  # writer tasks draining the queue
        self._tasks: set[asyncio.Task[None]] = set()
        self.transactions = 0  # committed transactions, for tests and metrics

    async def write(self, item: T) -> None:
        """Write ``item`` in the next transaction; return once it committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._active < self._writers:
            self._active += 1
            # A fresh context: the writer serves many requests and must not log as this one.
            task = asyncio.create_task(self._drain(), context=contextvars.Context())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            if not future.done():
                await asyncio.wait([future])
            if not future.cancelled():
                future.exception()  # retrieved: the caller hears of its cancellation instead
            raise

    async def _drain(self) -> None:
        try:
            # No await between the emptiness check and the decrement below: a write() that
            # finds every writer busy can rely on one of them to see its item.
            while self._queue:
                count = min(len(self._queue), self._max_batch)
                await self._commit([self._queue.popleft() for _ in range(count)])
        except asyncio.CancelledError:
            for _, future in self._queue:
                future.cancel()
            self._queue.clear()
            raise
        finally:
            self._active -= 1

    async def _commit(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        items = [item for item, _ in batch]
        try:
            await in_unit_of_work(self._engine, lambda uow: self._write_many(uow, items))
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as error:  # noqa: BLE001 - handed to the waiting callers
            # A database that cannot serve fails every item alike: no point in one by one.
            if len(batch) > 1 and not (unavailable(error) or isinstance(error, TimeoutError)):
                for one in batch:
                    await self._commit([one])
                return
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        self.transactions += 1
        for _, future in batch:
            if not future.done():
                future.set_result(None)
        self._after_commit()
