"""Order rules, in plain Python (no I/O, no framework).

Order is event-sourced (ADR 12): a booking's order stream (stream id = the booking id) holds
exactly one event, the saga's outcome: the published contract
:class:`~ticketing.contracts.events.OrderConfirmed` or
:class:`~ticketing.contracts.events.OrderRejected`, stored as it is sent. A second event for a
booking is impossible: the store's ``UNIQUE (stream_id, version)`` refuses a second version 1,
and :func:`evolve` refuses a second event. The ``orders`` row is :func:`evolve`'s result.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from ticketing.contracts.events import BookingRequested, OrderConfirmed, OrderRejected
from ticketing.contracts.inventory import ReservationOutcome, ReservationStatus
from ticketing.shared.errors import ImpossibleHistory

ORDER_STREAM = "order"

OrderEvent = OrderConfirmed | OrderRejected
EVENT_TYPES: tuple[type[OrderEvent], ...] = (OrderConfirmed, OrderRejected)


class OrderStatus(StrEnum):
    CONFIRMED = "CONFIRMED"
    REJECTED = "REJECTED"


class RejectionReason(StrEnum):
    INSUFFICIENT_CAPACITY = "insufficient_capacity"
    EVENT_NOT_FOUND = "event_not_found"
    RESERVATION_CONFLICT = "reservation_conflict"


@dataclass(frozen=True, slots=True)
class OrderState:
    """A booking's order, as its one event says: what the ``orders`` row holds."""

    id: uuid.UUID  # the order id; a rejection has no order, so its event's id
    booking_id: uuid.UUID
    event_id: uuid.UUID
    status: OrderStatus
    reason: str | None
    # What was ordered: a rejection does not say (the booking keeps what was asked).
    ticket_count: int | None
    total_price: Decimal | None
    version: int


def outcome_of(reservation: ReservationStatus) -> tuple[OrderStatus, RejectionReason | None]:
    return outcome_of_item(ReservationOutcome(reservation.value))


def outcome_of_item(outcome: ReservationOutcome) -> tuple[OrderStatus, RejectionReason | None]:
    """What one answer of a batch reservation means for its booking."""
    if outcome is ReservationOutcome.RESERVED:
        return OrderStatus.CONFIRMED, None
    if outcome is ReservationOutcome.EVENT_NOT_FOUND:
        return OrderStatus.REJECTED, RejectionReason.EVENT_NOT_FOUND
    if outcome is ReservationOutcome.CONFLICT:
        return OrderStatus.REJECTED, RejectionReason.RESERVATION_CONFLICT
    return OrderStatus.REJECTED, RejectionReason.INSUFFICIENT_CAPACITY


def decide(
    requested: BookingRequested,
    outcome: ReservationOutcome,
    *,
    order_id: uuid.UUID,
    message_id: uuid.UUID,
    now: datetime,
) -> OrderEvent:
    """The saga's outcome for ``requested`` once inventory answered ``outcome``: the order
    (``order_id``) or the rejection, as the event ``message_id`` decided at ``now`` (aware)."""
    status, reason = outcome_of_item(outcome)
    if status is OrderStatus.CONFIRMED:
        return OrderConfirmed(
            message_id=message_id,
            order_id=order_id,
            booking_id=requested.booking_id,
            event_id=requested.event_id,
            ticket_count=requested.ticket_count,
            total_price=requested.total_price,
            confirmed_at=now,
        )
    assert reason is not None
    return OrderRejected(
        message_id=message_id,
        booking_id=requested.booking_id,
        event_id=requested.event_id,
        reason=reason.value,
        rejected_at=now,
    )


def evolve(state: OrderState | None, event: OrderEvent) -> OrderState:
    """The order after ``event`` (``state``: its stream's state before it, None before the
    first event). An outcome is final: any event after the first is impossible."""
    if state is not None:
        raise ImpossibleHistory(
            f"booking {state.booking_id} already has its outcome ({state.status.value}): "
            f"{type(event).__name__} cannot follow it"
        )
    match event:
        case OrderConfirmed():
            return OrderState(
                id=event.order_id,
                booking_id=event.booking_id,
                event_id=event.event_id,
                status=OrderStatus.CONFIRMED,
                reason=None,
                ticket_count=event.ticket_count,
                total_price=Decimal(event.total_price),
                version=1,
            )
        case OrderRejected():
            return OrderState(
                id=event.message_id,
                booking_id=event.booking_id,
                event_id=event.event_id,
                status=OrderStatus.REJECTED,
                reason=event.reason,
                ticket_count=None,
                total_price=None,
                version=1,
            )
    raise ImpossibleHistory(f"not an order event: {event!r}")
