"""Order rules, in plain Python (no I/O, no framework).

Order is event-sourced (ADR 12): a booking's order stream (stream id = the booking id) holds
the saga's verdict on the request as version 1, the published contract
:class:`~ticketing.contracts.events.OrderConfirmed` or
:class:`~ticketing.contracts.events.OrderRejected`, stored as it is sent; a confirmed order
whose seats went back to the event (the booking was cancelled, or its hold expired) holds
:class:`~ticketing.contracts.events.OrderReleased` as version 2, and nothing ever follows it.
The store's ``UNIQUE (stream_id, version)`` refuses a second event of either version, and
:func:`evolve` refuses any other history. The ``orders`` row is :func:`evolve`'s result.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from ticketing.contracts.events import (
    BookingCancelled,
    BookingRequested,
    OrderConfirmed,
    OrderRejected,
    OrderReleased,
    ReleaseReason,
    SeatRelease,
)
from ticketing.contracts.inventory import (
    ReleaseItemResult,
    ReleaseOutcome,
    ReservationOutcome,
    ReservationStatus,
)
from ticketing.shared.errors import ImpossibleHistory

ORDER_STREAM = "order"

OrderEvent = OrderConfirmed | OrderRejected | OrderReleased
Verdict = OrderConfirmed | OrderRejected  # the saga's answer to a booking request
EVENT_TYPES: tuple[type[OrderEvent], ...] = (OrderConfirmed, OrderRejected, OrderReleased)


class OrderStatus(StrEnum):
    CONFIRMED = "CONFIRMED"
    REJECTED = "REJECTED"
    RELEASED = "RELEASED"  # was CONFIRMED; its seats went back to the event


class RejectionReason(StrEnum):
    INSUFFICIENT_CAPACITY = "insufficient_capacity"
    EVENT_NOT_FOUND = "event_not_found"
    RESERVATION_CONFLICT = "reservation_conflict"
    CUSTOMER_LIMIT_REACHED = "customer_limit_reached"  # the event's max_tickets_per_customer


class ImpossibleRelease(ImpossibleHistory):
    """A release that cannot be: booking asks for one only once it received the order's
    OrderConfirmed, and inventory holds the seats of every confirmed order. A producer or the
    data is broken, so the message is never acknowledged: its consumer's runner retries it,
    then dead-letters it for an operator."""


@dataclass(frozen=True, slots=True)
class OrderState:
    """A booking's order, as its stream says: what the ``orders`` row holds."""

    id: uuid.UUID  # the order id; a rejection has no order, so its event's id
    booking_id: uuid.UUID
    event_id: uuid.UUID
    status: OrderStatus
    # Why it is what it is: a rejection's reason, or a release's ("cancelled", "expired").
    reason: str | None
    # What was ordered: a rejection does not say (the booking keeps what was asked).
    ticket_count: int | None
    total_price: Decimal | None
    version: int


def order_status_of(reservation: ReservationStatus) -> tuple[OrderStatus, RejectionReason | None]:
    """What inventory's answer to one reservation means for its booking."""
    return order_status_of_answer(ReservationOutcome(reservation.value))


_REFUSALS = {
    ReservationOutcome.INSUFFICIENT: RejectionReason.INSUFFICIENT_CAPACITY,
    ReservationOutcome.EVENT_NOT_FOUND: RejectionReason.EVENT_NOT_FOUND,
    ReservationOutcome.CONFLICT: RejectionReason.RESERVATION_CONFLICT,
    ReservationOutcome.OVER_LIMIT: RejectionReason.CUSTOMER_LIMIT_REACHED,
}


def order_status_of_answer(
    answer: ReservationOutcome,
) -> tuple[OrderStatus, RejectionReason | None]:
    """What one answer of a batch reservation means for its booking."""
    if answer is ReservationOutcome.RESERVED:
        return OrderStatus.CONFIRMED, None
    return OrderStatus.REJECTED, _REFUSALS[answer]


def decide_verdict(
    requested: BookingRequested,
    reservation: ReservationOutcome,
    *,
    order_id: uuid.UUID,
    message_id: uuid.UUID,
    now: datetime,
) -> Verdict:
    """The saga's verdict on ``requested`` once inventory answered ``reservation``: the order
    (``order_id``) or the rejection, as the event ``message_id`` decided at ``now`` (aware)."""
    status, reason = order_status_of_answer(reservation)
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


def release_reason(release: SeatRelease) -> ReleaseReason:
    return "cancelled" if isinstance(release, BookingCancelled) else "expired"


def to_release(state: OrderState | None, release: SeatRelease) -> bool:
    """Whether the seats of ``release``'s booking are still to go back: yes for its confirmed
    order, no once that order is released (by this message before, or by another). Raises
    :class:`ImpossibleRelease` for a booking with no order or a rejected one, and for a
    release that names other seats than its order holds."""
    name = type(release).__name__
    if state is None:
        raise ImpossibleRelease(f"{name} for booking {release.booking_id}, which has no order")
    if state.status is OrderStatus.RELEASED:
        return False
    if state.status is not OrderStatus.CONFIRMED:
        raise ImpossibleRelease(
            f"{name} for booking {release.booking_id}, whose order is {state.status.value}: "
            "it holds no seats"
        )
    if (release.event_id, release.ticket_count) != (state.event_id, state.ticket_count):
        raise ImpossibleRelease(
            f"{name} for booking {release.booking_id} names {release.ticket_count} seat(s) at "
            f"event {release.event_id}; its order holds {state.ticket_count} at {state.event_id}"
        )
    return True


def check_released(state: OrderState, answer: ReleaseItemResult) -> None:
    """Raise :class:`ImpossibleRelease` unless inventory's ``answer`` gave back exactly the
    seats of ``state``'s confirmed order: inventory holds every confirmed order's seats, so an
    answer that it held none, or other seats, means the data is broken."""
    if answer.outcome is not ReleaseOutcome.RELEASED or answer.ticket_count != state.ticket_count:
        raise ImpossibleRelease(
            f"inventory answered {answer.outcome.value} ({answer.ticket_count} seat(s)) to the "
            f"release of booking {state.booking_id}, whose confirmed order holds "
            f"{state.ticket_count} seat(s) at event {state.event_id}"
        )


def decide_release(
    state: OrderState,
    release: SeatRelease,
    answer: ReleaseItemResult,
    *,
    message_id: uuid.UUID,
    now: datetime,
) -> OrderReleased:
    """The release of ``state``'s confirmed order once inventory answered ``answer`` for it
    (:func:`check_released`), as the event ``message_id`` decided at ``now`` (aware)."""
    check_released(state, answer)
    return OrderReleased(
        message_id=message_id,
        order_id=state.id,
        booking_id=state.booking_id,
        event_id=state.event_id,
        ticket_count=answer.ticket_count,
        reason=release_reason(release),
        released_at=now,
    )


def version_of(event: OrderEvent) -> int:
    """The version ``event`` has in its booking's stream: a verdict is the first event, a
    release the second (it follows the confirmation)."""
    return 2 if isinstance(event, OrderReleased) else 1


def evolve(state: OrderState | None, event: OrderEvent) -> OrderState:
    """The order after ``event`` (``state``: its stream's state before it, None before the
    first event). A verdict comes first and once; a confirmed order may then be released,
    once; nothing follows a rejection or a release."""
    match event:
        case OrderConfirmed() if state is None:
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
        case OrderRejected() if state is None:
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
        case OrderReleased() if state is not None and state.status is OrderStatus.CONFIRMED:
            held = (state.id, state.booking_id, state.event_id, state.ticket_count)
            if (event.order_id, event.booking_id, event.event_id, event.ticket_count) != held:
                raise ImpossibleHistory(
                    f"the release of order {event.order_id} (booking {event.booking_id}, "
                    f"{event.ticket_count} seat(s) at {event.event_id}) is not of order "
                    f"{state.id} (booking {state.booking_id}, {state.ticket_count} seat(s) at "
                    f"{state.event_id})"
                )
            return dataclasses.replace(
                state, status=OrderStatus.RELEASED, reason=event.reason, version=state.version + 1
            )
        case OrderConfirmed() | OrderRejected() | OrderReleased():
            raise ImpossibleHistory(_cannot_follow(state, event))
    raise ImpossibleHistory(f"not an order event: {event!r}")


def _cannot_follow(state: OrderState | None, event: OrderEvent) -> str:
    name = type(event).__name__
    if state is None:
        return f"booking {event.booking_id} has no order: {name} cannot come first"
    if state.version == 1 and not isinstance(event, OrderReleased):
        return (
            f"booking {state.booking_id} already has its outcome ({state.status.value}): "
            f"{name} cannot follow it"
        )
    return f"booking {state.booking_id}'s order is {state.status.value}: {name} cannot follow it"
