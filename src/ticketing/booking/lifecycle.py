"""What each step of a booking's lifecycle decides (ADR 17), in plain Python: the saga's
answers, a confirm, a cancel and the clock, each turned into the events of the booking's stream
from its current state. Every decision is made on the booking's locked row, so that of two
steps racing (a confirm and the expiry, two cancels) one decides from the other's result."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ticketing.booking.domain import (
    BookingConfirmed,
    BookingHeld,
    BookingRejected,
    BookingState,
    CancellationRequested,
    SeatsReturned,
    StreamEvent,
)
from ticketing.contracts.booking import BookingStatus
from ticketing.contracts.events import (
    BookingCancelled,
    HoldExpired,
    OrderConfirmed,
    OrderRejected,
    OrderReleased,
)
from ticketing.shared.errors import Conflict, Forbidden

SagaAnswer = OrderConfirmed | OrderRejected | OrderReleased
NewId = Callable[[], uuid.UUID]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks to confirm or cancel: a token's client, and whether it holds bookings:admin."""

    client_id: str
    admin: bool = False

    def check_may_change(self, state: BookingState) -> None:
        """Only the client that requested a booking, or an admin, may change it."""
        if not self.admin and state.requested_by != self.client_id:
            raise Forbidden(
                f"booking {state.booking.id} was requested by another client: only it, or a "
                "client with bookings:admin, may confirm or cancel it"
            )


def decide_answer(
    state: BookingState | None,
    answer: SagaAnswer,
    now: datetime,
    *,
    hold_for: timedelta,
    new_id: NewId,
) -> list[StreamEvent]:
    """The events the saga's ``answer`` adds to the booking: none when the booking is unknown
    or past the step the answer is for (a second answer is ignored). A hold starts when its
    seats are reserved and lasts ``hold_for``; a booking whose cancel came while it was
    PENDING is cancelled as soon as it is held or confirmed."""
    if state is None:
        return []
    booking = state.booking
    if isinstance(answer, OrderReleased):
        # An expired hold's seats come back too: its state has nothing left to change.
        returned = booking.status is BookingStatus.CANCELLING
        return [SeatsReturned(booking_id=booking.id, returned_at=now)] if returned else []
    if booking.status is not BookingStatus.PENDING:
        return []
    settled = _settled(state, answer, now, hold_for)
    events: list[StreamEvent] = [settled]
    if booking.cancel_requested and not isinstance(settled, BookingRejected):
        events.append(_cancelled(state, now, new_id))
    return events


def _settled(
    state: BookingState, answer: OrderConfirmed | OrderRejected, now: datetime, hold_for: timedelta
) -> BookingHeld | BookingConfirmed | BookingRejected:
    """The event that settles a PENDING booking with the saga's answer."""
    booking_id = state.booking.id
    if isinstance(answer, OrderRejected):
        return BookingRejected(booking_id=booking_id, reason=answer.reason, rejected_at=now)
    if state.booking.hold:
        return BookingHeld(
            booking_id=booking_id, order_id=answer.order_id, expires_at=now + hold_for, held_at=now
        )
    return BookingConfirmed(booking_id=booking_id, order_id=answer.order_id, confirmed_at=now)


def decide_confirm(
    state: BookingState, caller: Caller, now: datetime, new_id: NewId
) -> list[StreamEvent]:
    """Confirm a HELD booking (standing in for its payment). Confirming a CONFIRMED one
    changes nothing; a hold past its time expires now instead (the caller then answers 409)."""
    caller.check_may_change(state)
    booking = state.booking
    if booking.status is BookingStatus.CONFIRMED:
        return []
    if booking.status is BookingStatus.PENDING:
        raise Conflict(
            f"booking {booking.id} is still PENDING: confirm it once it is HELD", retry_after=1
        )
    if booking.status is not BookingStatus.HELD:
        raise Conflict(f"booking {booking.id} is {booking.status}: only a HELD one is confirmed")
    assert booking.order_id is not None
    assert booking.expires_at is not None
    if now >= booking.expires_at:
        return [_expired(state, now, new_id)]
    return [BookingConfirmed(booking_id=booking.id, order_id=booking.order_id, confirmed_at=now)]


def decide_cancel(
    state: BookingState, caller: Caller, now: datetime, new_id: NewId
) -> list[StreamEvent]:
    """Cancel a booking: a HELD or CONFIRMED one goes to CANCELLING (its seats are to go
    back); a PENDING one is cancelled once the saga answers; a repeat changes nothing. A
    hold past its time expires now instead (the caller then answers 409)."""
    caller.check_may_change(state)
    booking = state.booking
    status = booking.status
    if status in (BookingStatus.CANCELLING, BookingStatus.CANCELLED):
        return []
    if status is BookingStatus.PENDING:
        if booking.cancel_requested:
            return []
        return [CancellationRequested(booking_id=booking.id, requested_at=now)]
    if status is BookingStatus.HELD:
        assert booking.expires_at is not None
        if now >= booking.expires_at:
            return [_expired(state, now, new_id)]
    if status in (BookingStatus.HELD, BookingStatus.CONFIRMED):
        return [_cancelled(state, now, new_id)]
    raise Conflict(f"booking {booking.id} is {status}: there is nothing to cancel")


def decide_expiry(state: BookingState, now: datetime, new_id: NewId) -> list[StreamEvent]:
    """Expire a HELD booking whose time is over; anything else is left as it is."""
    booking = state.booking
    if booking.status is not BookingStatus.HELD or booking.expires_at is None:
        return []
    if now < booking.expires_at:
        return []
    return [_expired(state, now, new_id)]


def check_not_expired(state: BookingState) -> None:
    """After a confirm or a cancel: a hold that ran out meanwhile is a 409."""
    booking = state.booking
    if booking.status is BookingStatus.EXPIRED:
        assert booking.expires_at is not None
        raise Conflict(
            f"booking {booking.id}'s hold expired at {booking.expires_at.isoformat()}: "
            "its seats went back to the event"
        )


def _cancelled(state: BookingState, now: datetime, new_id: NewId) -> BookingCancelled:
    booking = state.booking
    return BookingCancelled(
        message_id=new_id(),
        booking_id=booking.id,
        event_id=booking.event_id,
        ticket_count=booking.ticket_count,
        cancelled_at=now,
    )


def _expired(state: BookingState, now: datetime, new_id: NewId) -> HoldExpired:
    booking = state.booking
    return HoldExpired(
        message_id=new_id(),
        booking_id=booking.id,
        event_id=booking.event_id,
        ticket_count=booking.ticket_count,
        expired_at=now,
    )
