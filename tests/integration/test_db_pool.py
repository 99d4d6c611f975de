"""The database pool: a connection that died while idle is replaced at checkout, a read or a
commit leaves no transaction open, and a pool that hands out no connection in time (SQLAlchemy's
pool ``TimeoutError``) is the database being unavailable, as a lost connection is."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import msgspec
import pytest
import sqlalchemy.exc
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from tests.harness.databases import drop_databases
from tests.integration.booking_db import customer, pending_bookings, status
from tests.unit.booking_world import confirmation
from ticketing.booking.records import SqlBookingRecords
from ticketing.booking.service import BookingService
from ticketing.booking.settlement import CONSUMER
from ticketing.booking.tables import bookings
from ticketing.contracts.events import EVENT_TYPE_HEADER, OrderConfirmed, OrderRejected
from ticketing.shared.db import engine as db
from ticketing.shared.db.engine import create_engine
from ticketing.shared.db.group_commit import GroupCommit
from ticketing.shared.db.migrations import upgrade
from ticketing.shared.db.unit_of_work import UnitOfWork
from ticketing.shared.messaging.consumer import Delivery, MessageRunner
from ticketing.shared.settings import Settings

POOL_TIMEOUT = 0.3


class DeadLetters:
    def __init__(self) -> None:
        self.published: list[bytes] = []

    async def publish(self, value: bytes, topic: str, **_: Any) -> None:
        self.published.append(value)


@pytest.fixture
async def booking_db() -> AsyncIterator[Settings]:
    """A booking database of this test's own (no relay, no saga), with a pool of one
    connection that times out quickly."""
    settings = dataclasses.replace(
        Settings.from_env(),
        db_prefix=f"ticketing_pool_{uuid.uuid4().hex[:8]}_",
        db_pool_size=1,
        db_max_overflow=0,
        db_pool_timeout=POOL_TIMEOUT,
    )
    try:
        await asyncio.to_thread(upgrade, settings, "booking")
        yield settings
    finally:
        await drop_databases(settings)


async def test_a_group_whose_checkout_timed_out_fails_at_once_not_once_per_item() -> None:
    """Retried item by item, each item would wait a whole pool timeout again, and the writer would
    serve nobody else meanwhile."""
    settings = Settings.from_env()
    engine = create_async_engine(
        settings.mysql_url, pool_size=1, max_overflow=0, pool_timeout=POOL_TIMEOUT
    )

    async def write(uow: UnitOfWork, items: Sequence[int]) -> None:
        await uow.conn.execute(text("SELECT 1"))

    writer: GroupCommit[int] = GroupCommit(engine, write, max_batch=10)
    loop = asyncio.get_running_loop()
    try:
        async with engine.connect() as busy:  # the pool's one connection, in use
            await busy.execute(text("SELECT 1"))
            started = loop.time()
            results = await asyncio.gather(
                *(writer.write(i) for i in range(10)), return_exceptions=True
            )
            waited = loop.time() - started
    finally:
        await engine.dispose()
    assert all(isinstance(r, sqlalchemy.exc.TimeoutError) for r in results), results
    assert waited < 4 * POOL_TIMEOUT, (
        f"callers waited {waited:.1f} s for a group of 10 whose connection never came "
        f"(pool timeout {POOL_TIMEOUT} s): the group was retried item by item"
    )


async def test_an_outcome_that_waited_for_a_busy_pool_is_applied_not_dead_lettered(
    booking_db: Settings,
) -> None:
    """Counted as the message's own failure, a pool timeout would dead-letter a good outcome after
    ``max_attempts`` and leave its booking PENDING."""
    engine = create_engine(booking_db, "booking")
    service = BookingService(
        SqlBookingRecords(engine, consumer=CONSUMER), cast(Any, None), max_tickets=10
    )
    dead = DeadLetters()
    runner = MessageRunner(
        cast(Any, dead),
        dlq_topic="orders.dlq",
        accepted=(OrderConfirmed, OrderRejected),
        max_attempts=3,
        max_backoff=0.01,
    )
    try:
        (booking,) = await pending_bookings(engine, await customer(service), 1)
        outcome = confirmation(booking.id)
        delivery = Delivery(
            topic="orders",
            partition=0,
            offset=0,
            key=None,
            value=msgspec.json.encode(outcome),
            headers={EVENT_TYPE_HEADER: "OrderConfirmed"},
        )
        async with engine.connect() as busy:  # the database is saturated for two seconds
            await busy.execute(text("SELECT 1"))
            running = asyncio.create_task(runner.run_batch([delivery], service.apply_saga_answers))
            await asyncio.sleep(2.0)
        await asyncio.wait_for(running, timeout=30)
        settled = await status(engine, booking.id)
    finally:
        await engine.dispose()
    assert dead.published == [], "a valid outcome was dead-lettered because the pool was busy"
    assert settled == ("CONFIRMED", 2)


async def test_a_pooled_connection_that_died_while_idle_is_replaced_at_checkout(
    databases: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(databases, "order")
    try:
        async with engine.connect() as conn:
            victim = await conn.scalar(text("SELECT CONNECTION_ID()"))
        async with engine.connect() as conn:  # checked out again at once: not pinged, the same
            assert await conn.scalar(text("SELECT CONNECTION_ID()")) == victim
        killer = create_engine(databases, "order")
        async with killer.connect() as conn:
            await conn.execute(text(f"KILL CONNECTION {int(victim)}"))
        await killer.dispose()
        monkeypatch.setattr(db, "PING_AFTER_IDLE", 0.0)
        async with engine.connect() as conn:  # idle long enough: pinged, found dead, replaced
            replacement = await conn.scalar(text("SELECT CONNECTION_ID()"))
        assert replacement != victim
    finally:
        await engine.dispose()


async def session_rollbacks(conn: AsyncConnection) -> int:
    row = (await conn.execute(text("SHOW SESSION STATUS LIKE 'Com_rollback'"))).one()
    return int(row[1])


async def test_a_committed_transaction_costs_no_rollback_and_a_read_leaves_nothing_open(
    databases: Settings,
) -> None:
    engine = create_engine(databases, "booking")  # one connection, reused for every step
    try:
        async with engine.connect() as conn:
            before = await session_rollbacks(conn)
            await conn.execute(select(func.count()).select_from(bookings))
            assert await conn.scalar(text("SELECT @@in_transaction")) == 1
        async with engine.connect() as conn:  # the read's transaction was rolled back on return
            assert await conn.scalar(text("SELECT @@in_transaction")) == 0
            assert await session_rollbacks(conn) == before + 1

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(select(func.count()).select_from(bookings))

        await db.run_transaction(engine, work)
        async with engine.connect() as conn:  # committed: nothing rolled back on return
            assert await conn.scalar(text("SELECT @@in_transaction")) == 0
            assert await session_rollbacks(conn) == before + 2  # only the previous read's
    finally:
        await engine.dispose()
