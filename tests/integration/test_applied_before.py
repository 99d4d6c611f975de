"""A duplicate key that is not the message's own inbox claim is not "applied before".

A batch of one treats every duplicate-key error as the message having been applied already, and
the runner then commits its offset. But the write can also fail on a key of the event store or
of a projection: the store's ``(stream_id, version)`` when the bookings row that booking decided
from lags its stream (the store documents that such a writer "decides again"), or order's
unique ``orders.booking_id`` when that projection holds a row its store has no event for. Then
the outcome is acknowledged without its inbox claim, its event or its projection change:
lost, with nothing in the dead-letter topic, while order and inventory hold the reservation
and the booking stays PENDING for good (a later rebuild does not bring the message back).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.databases import order_records as records
from tests.harness.databases import own_databases
from tests.integration.booking_db import customer, pending_bookings, status
from tests.integration.order_db import Inventory, requested
from tests.unit.booking_world import confirmation
from ticketing.booking import tables as booking_tables
from ticketing.booking.records import SqlBookingRecords
from ticketing.booking.service import BookingService
from ticketing.booking.settlement import CONSUMER
from ticketing.order import tables as order_tables
from ticketing.order.service import OrderService
from ticketing.shared.db.engine import create_engine
from ticketing.shared.db.unit_of_work import AlreadyRecorded
from ticketing.shared.messaging.consumer import Received


@pytest.fixture
async def engines() -> AsyncIterator[dict[str, AsyncEngine]]:
    """Booking and order databases of this test's own (no relay, no saga)."""
    async with own_databases("booking", "order") as settings:
        engines = {service: create_engine(settings, service) for service in ("booking", "order")}
        try:
            yield engines
        finally:
            for engine in engines.values():
                await engine.dispose()


async def test_an_outcome_decided_from_a_lagging_row_is_not_acked_as_applied_before(
    engines: dict[str, AsyncEngine],
) -> None:
    engine = engines["booking"]
    service = BookingService(
        SqlBookingRecords(engine, consumer=CONSUMER), cast(Any, None), max_tickets=10
    )
    (booking,) = await pending_bookings(engine, await customer(service), 1)
    async with engine.begin() as conn:  # the row lags its stream (version 1 is written)
        bookings = booking_tables.bookings
        await conn.execute(update(bookings).where(bookings.c.id == booking.id).values(version=0))
    outcome = confirmation(booking.id)
    try:
        await service.apply_saga_answers([Received(outcome, None)])
    except AlreadyRecorded:  # refused: the runner retries, then dead-letters it
        return
    # Returned: the runner commits the offset, so the outcome must have been applied.
    async with engine.connect() as conn:
        inbox = booking_tables.inbox
        claimed = await conn.scalar(
            select(func.count()).select_from(inbox).where(inbox.c.message_id == outcome.message_id)
        )
    assert claimed == 1, "the outcome was acknowledged as applied before, but never claimed"
    assert (await status(engine, booking.id))[0] == "CONFIRMED"


async def test_an_outcome_whose_projection_row_has_no_event_is_not_acked_as_applied_before(
    engines: dict[str, AsyncEngine],
) -> None:
    engine = engines["order"]
    message = requested()
    orders = order_tables.orders
    async with engine.begin() as conn:  # a projection row no event accounts for
        await conn.execute(
            insert(orders).values(
                id=uuid.uuid4(),
                booking_id=message.booking_id,
                event_id=message.event_id,
                status="REJECTED",
                reason="reservation_conflict",
                created_at=datetime.now(UTC).replace(tzinfo=None),
            )
        )
    try:
        await OrderService(records(engine), Inventory()).handle_batch([Received(message, None)])
    except AlreadyRecorded:  # refused: the runner retries, then dead-letters it
        return
    store = order_tables.event_store
    async with engine.connect() as conn:
        events = await conn.scalar(
            select(func.count()).select_from(store).where(store.c.stream_id == message.booking_id)
        )
    assert events == 1, (
        "the request was acknowledged as applied before, but its booking's stream holds no "
        "outcome: nothing will ever be published to settle the booking"
    )
