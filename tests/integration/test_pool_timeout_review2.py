"""Review: a connection pool that hands out no connection in time (SQLAlchemy's pool
``TimeoutError``) is the database being unavailable, as a lost connection is.

SQLAlchemy's ``sqlalchemy.exc.TimeoutError`` is not the builtin ``TimeoutError`` that
``is_transient`` and ``GroupCommit`` look for, so:

- the consumer runner counts a pool timeout as the message's own failure and, after
  ``max_attempts``, dead-letters a perfectly good outcome (its booking stays PENDING);
- a group commit whose checkout timed out is retried item by item, each item waiting a whole
  ``pool_timeout`` again: the last caller of a group of N waits (N + 1) pool timeouts (with the
  defaults, 100 items x 30 s), and the writer serves nobody else meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import msgspec
import pytest
import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.harness import drop_databases
from tests.integration.test_booking_events import confirmation, customer, pending_bookings, status
from ticketing.booking.records import SqlBookingRecords
from ticketing.booking.service import BookingService
from ticketing.booking.settlement import CONSUMER
from ticketing.contracts.events import EVENT_TYPE_HEADER, OrderConfirmed, OrderRejected
from ticketing.shared.consumer import Delivery, MessageRunner
from ticketing.shared.db import create_engine
from ticketing.shared.group_commit import GroupCommit
from ticketing.shared.migrations import upgrade
from ticketing.shared.settings import Settings
from ticketing.shared.unit_of_work import UnitOfWork

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
