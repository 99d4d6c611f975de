"""Booking's database of a test's own, its service, and the customers, pending bookings and
outcomes the tests settle there."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import msgspec
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.databases import engine_of, own_databases
from ticketing.booking.idempotency import KeyClaim
from ticketing.booking.records import SqlBookingRecords, write_bookings
from ticketing.booking.repository import STORE, NewBooking
from ticketing.booking.service import BookingService
from ticketing.booking.settlement import CONSUMER
from ticketing.booking.tables import bookings
from ticketing.contracts.booking import Booking, BookingStatus, CustomerCreate
from ticketing.contracts.events import BookingRequested
from ticketing.shared.db.group_commit import GroupCommit
from ticketing.shared.ids import new_id
from ticketing.shared.store.eventstore import Cause

CLIENT = Cause("box-office", correlation_id="req-1", causation_id="req-1")


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    """A booking database of this test's own: no running relay publishes its bookings (the
    saga would settle them behind the test's back), and verify sees only what it wrote."""
    async with own_databases("booking") as settings, engine_of(settings, "booking") as engine:
        yield engine


@pytest.fixture
def service(engine: AsyncEngine) -> BookingService:
    # Settlements and customers never ask inventory anything.
    return BookingService(
        SqlBookingRecords(engine, consumer=CONSUMER), cast(Any, None), max_tickets=10
    )


async def customer(service: BookingService) -> uuid.UUID:
    email = f"cy.{uuid.uuid4().hex[:10]}@example.com"
    return (await service.create_customer(CustomerCreate("Cy", email), CLIENT)).id


def new_booking(
    customer_id: uuid.UUID,
    claim: KeyClaim | None = None,
    *,
    event_id: uuid.UUID | None = None,
    tickets: int = 2,
    unit_price: str = "25.00",
    cause: Cause = CLIENT,
    at: datetime | None = None,
) -> NewBooking:
    """One accepted booking as the service hands it to its group commit."""
    total = str(Decimal(unit_price) * tickets)
    booking = Booking(
        id=new_id(),
        status=BookingStatus.PENDING,
        customer_id=customer_id,
        event_id=event_id or uuid.uuid4(),
        ticket_count=tickets,
        unit_price=unit_price,
        total_price=total,
        created_at=at or datetime.now(UTC),
    )
    requested = BookingRequested(
        message_id=new_id(),
        booking_id=booking.id,
        customer_id=customer_id,
        event_id=booking.event_id,
        ticket_count=tickets,
        unit_price=unit_price,
        total_price=total,
        requested_at=booking.created_at,
    )
    return NewBooking(booking, requested, cause, claim)


async def pending_bookings(engine: AsyncEngine, customer_id: uuid.UUID, count: int) -> list[Any]:
    """``count`` accepted bookings, written as the service writes them."""
    now = datetime.now(UTC)
    items = [new_booking(customer_id, unit_price="10.00", at=now) for _ in range(count)]
    writer = GroupCommit(engine, write_bookings)
    await asyncio.gather(*(writer.write(item) for item in items))
    return [msgspec.json.decode(item.answer[0], type=Booking) for item in items]


async def stream(engine: AsyncEngine, stream_id: uuid.UUID) -> list[Any]:
    async with engine.connect() as conn:
        return await STORE.stream(conn, stream_id)


async def status(engine: AsyncEngine, booking_id: uuid.UUID) -> tuple[str, int]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(bookings.c.status, bookings.c.version).where(bookings.c.id == booking_id)
            )
        ).one()
    return row.status, row.version
