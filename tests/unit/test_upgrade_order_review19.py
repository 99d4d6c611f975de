"""Review of issue 19: what a rolling upgrade meets, pinned. Nothing in the change says in
which order to upgrade the services, and each wrong order loses messages:

- order upgraded before inventory: its reservation items now name ``customer_id``, which the
  previous inventory's contract (``forbid_unknown_fields``) refuses with a 400; order takes a
  400 for a malformed request (InventoryRefused, not transient), so every BookingRequested of
  that window goes to the dead-letter topic and its booking stays PENDING;
- booking upgraded before order: the previous order consumer accepts BookingRequested only,
  so each BookingCancelled or HoldExpired is a poison message, dead-lettered at once: those
  seats never go back and cancelled bookings stay CANCELLING, even after order is upgraded.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec
import pytest

from ticketing.contracts.events import EVENT_TYPE_HEADER, BookingCancelled, BookingRequested
from ticketing.contracts.inventory import ReservationBatch, TicketCount
from ticketing.order.service import reservation_item
from ticketing.shared.consumer import Delivery, PoisonMessage, decode_event


class PreviousReservationItem(msgspec.Struct, forbid_unknown_fields=True):
    """The item as inventory before issue 19 decodes it (contracts/inventory.py on main)."""

    event_id: uuid.UUID
    booking_id: uuid.UUID
    ticket_count: TicketCount
    causation_id: str | None = None
    correlation_id: str | None = None


class PreviousReservationBatch(msgspec.Struct, forbid_unknown_fields=True):
    items: list[PreviousReservationItem]


def _requested() -> BookingRequested:
    return BookingRequested(
        message_id=uuid.uuid4(),
        booking_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        ticket_count=1,
        unit_price="10.00",
        total_price="10.00",
        requested_at=datetime.now(UTC),
    )


def test_the_previous_inventory_refuses_what_the_new_order_sends() -> None:
    body = msgspec.json.encode(ReservationBatch(items=[reservation_item(_requested(), None)]))
    with pytest.raises(msgspec.ValidationError, match="customer_id"):
        msgspec.json.decode(body, type=PreviousReservationBatch)


def test_the_previous_order_dead_letters_a_cancellation_at_once() -> None:
    requested = _requested()
    cancelled = BookingCancelled(
        message_id=uuid.uuid4(),
        booking_id=requested.booking_id,
        event_id=requested.event_id,
        ticket_count=1,
        cancelled_at=datetime.now(UTC),
    )
    delivery = Delivery(
        topic="ticketing.bookings",
        partition=0,
        offset=0,
        key=None,
        value=msgspec.json.encode(cancelled),
        headers={EVENT_TYPE_HEADER: "BookingCancelled"},
    )
    with pytest.raises(PoisonMessage):
        decode_event(delivery, (BookingRequested,))  # the previous order's accepted types
