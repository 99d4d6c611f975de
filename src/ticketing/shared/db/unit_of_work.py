"""The unit of work: one transaction of a use case, whose writes go with its ``COMMIT``.

A use case reads through ``uow.conn`` as it decides (a read runs at once: the rows it locks are
the state it decides from), and records what it decided: the events to append, the projection
rows, the inbox claims, each a statement its service's repository builds. They are queued and
sent together with the ``COMMIT`` in one round trip (:func:`ticketing.shared.db.sql.commit_all`),
so a booking costs the database as few round trips as the data allows. A use case that raises
before the end writes nothing: its connection goes back to the pool uncommitted and is rolled
back there. Deadlocks and lock wait timeouts run the whole unit again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ticketing.shared.db import sql
from ticketing.shared.db.engine import retried

T = TypeVar("T")


class AlreadyRecorded(Exception):
    """A unit of work broke a unique key: something it records is there already (a message
    applied before, a stream version taken). Nothing of the unit was written."""


class UnitOfWork:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self._writes: list[sql.Statement] = []

    def write(self, *statements: sql.Statement) -> None:
        """Queue ``statements``: they go, in this order, with the ``COMMIT``."""
        self._writes.extend(statements)

    async def write_now(self, statement: sql.Statement) -> int:
        """Run ``statement`` at once, for a write whose count decides what else is written;
        the number of rows it changed."""
        return await sql.run(self.conn, statement)

    async def commit(self) -> None:
        """Send the queued writes and the ``COMMIT`` in one round trip."""
        if self._writes:
            await sql.commit_all(self.conn, self._writes)
        else:
            await sql.execute(self.conn, "COMMIT")
        self._writes = []


async def in_unit_of_work(
    engine: AsyncEngine, work: Callable[[UnitOfWork], Awaitable[T]], *, attempts: int = 5
) -> T:
    """Run ``work`` as one unit of work (committed once it returns); its result."""

    async def unit(conn: AsyncConnection) -> T:
        uow = UnitOfWork(conn)
        result = await work(uow)
        await uow.commit()
        return result

    return await retried(engine, unit, attempts=attempts)
