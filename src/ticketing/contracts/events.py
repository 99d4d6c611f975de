"""Kafka event contracts: topics, headers and payloads.

Payloads are dataclasses (FastStream's AsyncAPI generator documents them; msgspec encodes and
validates them). ``message_id`` is the outbox event id: consumers deduplicate on it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

BOOKINGS_TOPIC: Final = "ticketing.bookings"
BOOKINGS_DLQ_TOPIC: Final = "ticketing.bookings.dlq"
ORDERS_TOPIC: Final = "ticketing.orders"
ORDERS_DLQ_TOPIC: Final = "ticketing.orders.dlq"

# Headers every message carries (values are UTF-8 strings).
EVENT_TYPE_HEADER: Final = "event_type"
MESSAGE_ID_HEADER: Final = "message_id"
CORRELATION_ID_HEADER: Final = "correlation_id"


@dataclass(frozen=True, slots=True, kw_only=True)
class BookingRequested:
    """A customer asked for tickets; key = event id. Published by booking."""

    message_id: uuid.UUID
    booking_id: uuid.UUID
    customer_id: uuid.UUID
    event_id: uuid.UUID
    ticket_count: int
    unit_price: str
    total_price: str
    requested_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderConfirmed:
    """Inventory reserved the tickets and the order exists; key = booking id. Published by order."""

    message_id: uuid.UUID
    order_id: uuid.UUID
    booking_id: uuid.UUID
    event_id: uuid.UUID
    ticket_count: int
    total_price: str
    confirmed_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRejected:
    """The booking cannot be fulfilled (e.g. not enough tickets); key = booking id."""

    message_id: uuid.UUID
    booking_id: uuid.UUID
    event_id: uuid.UUID
    reason: str
    rejected_at: datetime


OrderOutcome = OrderConfirmed | OrderRejected
EVENT_TYPES: Final[dict[str, type[BookingRequested | OrderConfirmed | OrderRejected]]] = {
    cls.__name__: cls for cls in (BookingRequested, OrderConfirmed, OrderRejected)
}
