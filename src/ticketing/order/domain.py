"""Order rules, in plain Python: what a reservation answer means for the booking."""

from __future__ import annotations

from enum import StrEnum

from ticketing.contracts.inventory import ReservationOutcome, ReservationStatus


class OrderStatus(StrEnum):
    CONFIRMED = "CONFIRMED"
    REJECTED = "REJECTED"


class RejectionReason(StrEnum):
    INSUFFICIENT_CAPACITY = "insufficient_capacity"
    EVENT_NOT_FOUND = "event_not_found"
    RESERVATION_CONFLICT = "reservation_conflict"


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
