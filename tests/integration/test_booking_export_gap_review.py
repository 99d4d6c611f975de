"""Review: two ``ticketing events export`` runs split at one moment (``--until T``, then
``--since T``) must together hold every booking event.

The export waits for the transactions begun before ``T`` (``wait_for_writers``), which covers
an event whose time is read inside its transaction. A batch settlement reads its time before it
even has a connection (and keeps it through deadlock retries): when the pool is busy, its
transaction begins after ``T`` and commits an event recorded before ``T``, which the first export
could not see and the second one leaves out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from sqlalchemy import text

from tests.harness import own_databases
from tests.integration.test_booking_events import confirmation, customer, pending_bookings
from ticketing.booking.records import SqlBookingRecords
from ticketing.booking.repository import STORE
from ticketing.booking.service import BookingService
from ticketing.booking.settlement import CONSUMER
from ticketing.cli.events import wait_for_writers
from ticketing.shared.clock import utcnow
from ticketing.shared.consumer import Received
from ticketing.shared.db import create_engine
from ticketing.shared.settings import Settings


@pytest.fixture
async def own_booking_db() -> AsyncIterator[Settings]:
    """A booking database of this test's own: no running relay publishes its bookings, so no
    saga settles them behind the test's back."""
    async with own_databases("booking") as settings:
        yield settings


async def exported(settings: Settings, **bounds: Any) -> set[tuple[uuid.UUID, int]]:
    """What ``events export --service booking`` with ``bounds`` writes: (stream, version)."""
    engine = create_engine(settings, "booking")
    try:
        async with engine.connect() as conn:
            if bounds.get("until") is not None:
                await wait_for_writers(conn, bounds["until"], seconds=5)
            page = await STORE.page(conn, after=0, limit=100_000, **bounds)
    finally:
        await engine.dispose()
    return {(r.stream_id, r.version) for r in page}


async def test_a_settlement_waiting_for_a_connection_is_in_one_of_two_split_exports(
    own_booking_db: Settings,
) -> None:
    databases = own_booking_db
    one_connection = dataclasses.replace(databases, db_pool_size=1, db_max_overflow=0)
    engine = create_engine(one_connection, "booking")
    service = BookingService(
        SqlBookingRecords(engine, consumer=CONSUMER), cast(Any, None), max_tickets=10
    )
    try:
        (booking,) = await pending_bookings(engine, await customer(service), 1)
        async with engine.connect() as busy:  # the pool's one connection, in use
            await busy.execute(text("SELECT 1"))
            settling = asyncio.create_task(
                service.apply_saga_answers([Received(confirmation(booking.id), None)])
            )
            await asyncio.sleep(0.2)
            split = utcnow()  # after the settlement read its time
            await asyncio.sleep(1.5)  # its transaction has not begun by split + 1 s
            before = await exported(databases, until=split)
        await settling
        after = await exported(databases, since=split)
    finally:
        await engine.dispose()
    assert (booking.id, 1) in before
    assert (booking.id, 2) in before | after, "the settlement is in neither export"
