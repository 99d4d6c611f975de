"""Booking's service on in-memory records and an in-memory inventory, and the outcomes its tests
settle bookings with."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from tests.fakes.booking import InMemoryBookingRecords, InMemoryEvents
from ticketing.booking.requests import Accepted
from ticketing.booking.service import BookingService
from ticketing.contracts.booking import BookingCreate, BookingStatus, CustomerCreate
from ticketing.contracts.events import OrderConfirmed, OrderRejected
from ticketing.shared.store.eventstore import Cause

CLIENT = Cause("box-office", correlation_id="req-1", causation_id="req-1")
ABANDONED_AFTER = timedelta(seconds=30)


class World:
    """A booking service on in-memory records, with one customer and one event of 10 seats."""

    def __init__(self) -> None:
        self.records = InMemoryBookingRecords()
        self.inventory = InMemoryEvents()
        self.service = BookingService(
            self.records, self.inventory, max_tickets=4, abandoned_after=ABANDONED_AFTER
        )
        self.event_id = self.inventory.schedule(left_capacity=10)
        self.customer_id = uuid.uuid4()

    async def register(self, email: str = "ada@example.com") -> uuid.UUID:
        self.customer_id = (
            await self.service.create_customer(CustomerCreate("Ada", email), CLIENT)
        ).id
        return self.customer_id

    def request(self, tickets: int = 2, event_id: uuid.UUID | None = None) -> BookingCreate:
        return BookingCreate(self.customer_id, event_id or self.event_id, tickets)

    async def book(
        self, data: BookingCreate, key: str | None = None, cause: Cause = CLIENT
    ) -> Accepted:
        return await self.service.requests.request_booking(
            data, raw_body=msgspec.json.encode(data), cause=cause, idempotency_key=key
        )

    async def pending(self, count: int) -> list[uuid.UUID]:
        return [(await self.book(self.request(1))).booking_id for _ in range(count)]

    def status(self, booking_id: uuid.UUID) -> tuple[BookingStatus, int]:
        state = self.records.bookings[booking_id]
        return state.booking.status, state.version


@pytest.fixture
async def world() -> World:
    world = World()
    await world.register()
    return world


def confirmation(booking_id: uuid.UUID) -> OrderConfirmed:
    return OrderConfirmed(
        message_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        booking_id=booking_id,
        event_id=uuid.uuid4(),
        ticket_count=1,
        total_price="25.00",
        confirmed_at=datetime.now(UTC),
    )


def rejection(booking_id: uuid.UUID) -> OrderRejected:
    return OrderRejected(
        message_id=uuid.uuid4(),
        booking_id=booking_id,
        event_id=uuid.uuid4(),
        reason="insufficient_capacity",
        rejected_at=datetime.now(UTC),
    )
