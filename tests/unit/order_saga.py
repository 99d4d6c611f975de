"""Order's saga on in-memory stand-ins, and the messages it is handed: a booking requested,
cancelled or expired, delivered at an offset."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec

from tests.fakes.order import InMemoryOrderRecords, SagaInventory
from ticketing.contracts.events import (
    BOOKINGS_TOPIC,
    BookingCancelled,
    BookingRequested,
    HoldExpired,
    OrderConfirmed,
    SeatRelease,
)
from ticketing.order.service import OrderService
from ticketing.shared.messaging.consumer import Delivery, Received
from ticketing.shared.messaging.publishing import message_headers


def requested(event_id: uuid.UUID, tickets: int = 1) -> BookingRequested:
    return BookingRequested(
        message_id=uuid.uuid4(),
        booking_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        event_id=event_id,
        ticket_count=tickets,
        unit_price="10.00",
        total_price=f"{10 * tickets}.00",
        requested_at=datetime.now(UTC),
    )


def cancelled(booked: BookingRequested) -> BookingCancelled:
    return BookingCancelled(
        message_id=uuid.uuid4(),
        booking_id=booked.booking_id,
        event_id=booked.event_id,
        ticket_count=booked.ticket_count,
        cancelled_at=datetime.now(UTC),
    )


def expired(booked: BookingRequested) -> HoldExpired:
    return HoldExpired(
        message_id=uuid.uuid4(),
        booking_id=booked.booking_id,
        event_id=booked.event_id,
        ticket_count=booked.ticket_count,
        expired_at=datetime.now(UTC),
    )


class Saga:
    """The order service on in-memory records and inventory, with a sale of ``capacity``."""

    def __init__(self, capacity: int = 10) -> None:
        self.records = InMemoryOrderRecords()
        self.inventory = SagaInventory()
        self.wakes = 0
        self.service = OrderService(self.records, self.inventory, after_commit=self.wake)
        self.event_id = self.inventory.schedule(capacity)

    def wake(self) -> None:
        self.wakes += 1

    async def booked(self, tickets: int = 2) -> BookingRequested:
        """A booking whose order is confirmed."""
        message = requested(self.event_id, tickets)
        await self.service.handle_batch([Received(message, None)])
        assert isinstance(self.records.outcomes[message.booking_id][0], OrderConfirmed)
        return message

    async def handle(self, *messages: object, correlation_id: str | None = None) -> None:
        await self.service.handle_batch([Received(m, correlation_id) for m in messages])

    def left(self) -> int:
        return self.inventory.left(self.event_id)


def delivered(offset: int, message: BookingRequested | SeatRelease) -> Delivery:
    """``message`` as the runner receives it from the bookings topic."""
    headers = message_headers(type(message).__name__, message.message_id, None)
    decoded = {name: value.decode() for name, value in headers}
    return Delivery(BOOKINGS_TOPIC, 0, offset, None, msgspec.json.encode(message), decoded)
