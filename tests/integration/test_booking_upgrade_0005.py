"""Revision 0005 (the booking lifecycle) on a booking database with bookings of before it (v1
events, no requester): who may cancel them, an upgrade run again, and a downgrade stopped
halfway."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fakes.booking import InMemoryEvents
from tests.harness.databases import run_alembic
from tests.integration.booking_at_0002 import OldBooking, at_0002, engine, old
from ticketing.booking import projections
from ticketing.booking.lifecycle import Caller
from ticketing.booking.records import SqlBookingRecords
from ticketing.booking.service import BookingService
from ticketing.booking.settlement import CONSUMER
from ticketing.contracts.booking import BookingStatus
from ticketing.contracts.events import OrderReleased
from ticketing.shared.errors import Forbidden
from ticketing.shared.messaging.consumer import Received
from ticketing.shared.settings import Settings
from ticketing.shared.store.eventstore import Cause

INDEX = "ix_bookings_status_expires_at"

__all__ = ["at_0002", "engine", "old"]  # fixtures


async def _columns(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return {row[0] for row in await conn.execute(text("SHOW COLUMNS FROM bookings"))}


async def test_old_bookings_have_no_requester_so_only_an_admin_may_cancel_them(
    at_0002: Settings, engine: AsyncEngine, old: list[OldBooking]
) -> None:
    await run_alembic(at_0002, "booking", command.upgrade, "head")
    assert await projections.verify(engine) == []
    service = BookingService(
        SqlBookingRecords(engine, consumer=CONSUMER), InMemoryEvents(), max_tickets=10
    )
    confirmed = next(item for item in old if item.status == "CONFIRMED")
    booking_id = confirmed.requested.booking_id
    cause = Cause("ticketing-client")
    for client in ("ticketing-client", "", "migration", "None"):
        with pytest.raises(Forbidden):
            await service.cancel(booking_id, Caller(client), cause)
        with pytest.raises(Forbidden):
            await service.confirm(booking_id, Caller(client), cause)
    cancelling = await service.cancel(booking_id, Caller("ops", admin=True), Cause("ops"))
    assert cancelling.status is BookingStatus.CANCELLING
    await service.apply_saga_answers(
        [
            Received(
                OrderReleased(
                    message_id=uuid.uuid4(),
                    order_id=confirmed.order_id or uuid.uuid4(),
                    booking_id=booking_id,
                    event_id=confirmed.requested.event_id,
                    ticket_count=confirmed.requested.ticket_count,
                    reason="cancelled",
                    released_at=datetime.now(UTC),
                ),
                None,
            )
        ]
    )
    assert (await service.get_booking(booking_id)).status is BookingStatus.CANCELLED
    assert await projections.verify(engine) == []
    rebuilt = await projections.rebuild(engine)
    assert sum(rebuilt.written.values()) == 0, rebuilt.written
    assert await projections.verify(engine) == []


async def test_the_upgrade_stopped_after_some_columns_finishes_when_run_again(
    at_0002: Settings, engine: AsyncEngine, old: list[OldBooking]
) -> None:
    await run_alembic(at_0002, "booking", command.upgrade, "0004")
    async with engine.begin() as conn:  # what a run stopped after two columns left
        await conn.execute(text("ALTER TABLE bookings ADD COLUMN hold BOOLEAN NOT NULL DEFAULT 0"))
        await conn.execute(text("ALTER TABLE bookings ADD COLUMN expires_at DATETIME(6) NULL"))
    await run_alembic(at_0002, "booking", command.upgrade, "head")
    assert {"hold", "expires_at", "cancel_requested", "requested_by"} <= await _columns(engine)
    assert await projections.verify(engine) == []


async def test_a_downgrade_stopped_halfway_can_be_run_again(
    at_0002: Settings, engine: AsyncEngine, old: list[OldBooking]
) -> None:
    """Inventory's 0005 downgrade is guarded for this (its test "can be run again halfway");
    booking's drops the index and each column unconditionally: once the server committed the
    first DROP (each DDL statement commits), running the downgrade again fails for good."""
    await run_alembic(at_0002, "booking", command.upgrade, "head")
    async with engine.begin() as conn:  # a downgrade stopped after its first statement
        await conn.execute(text(f"DROP INDEX {INDEX} ON bookings"))
    await run_alembic(at_0002, "booking", command.downgrade, "0004")
    assert not {"hold", "expires_at", "cancel_requested", "requested_by"} & await _columns(engine)
