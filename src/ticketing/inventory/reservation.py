"""A booking id's reservation, in plain Python: the first answer inventory gave it (its seats
reserved, or refused), and the release of its seats if they went back. The ``reservations``
rows hold these, one per booking id, as the events of the event streams record them."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass

from ticketing.contracts.events import ReleaseReason
from ticketing.contracts.inventory import ReservationOutcome
from ticketing.inventory.domain import ReservationRefused, SeatsReleased, SeatsReserved
from ticketing.shared.errors import Conflict, ImpossibleHistory


@dataclass(frozen=True, slots=True)
class Release:
    """Why a reservation's seats went back, and the seats left right after."""

    reason: ReleaseReason
    left_capacity: int


@dataclass(frozen=True, slots=True)
class Reservation:
    """The first answer given for a booking id; every repeat gets this answer again (a release
    later gives its seats back, but not the booking id)."""

    booking_id: uuid.UUID
    event_id: uuid.UUID
    ticket_count: int
    status: ReservationOutcome  # RESERVED, INSUFFICIENT or OVER_LIMIT
    left_capacity: int
    customer_id: uuid.UUID | None = None
    release: Release | None = None

    @property
    def holds_seats(self) -> bool:
        """Whether its seats are taken now: reserved, and not released since."""
        return self.status is ReservationOutcome.RESERVED and self.release is None

    def is_repeat(self, event_id: uuid.UUID, ticket_count: int) -> bool:
        """Whether a request asks for exactly what this reservation holds."""
        return event_id == self.event_id and ticket_count == self.ticket_count

    def check_repeat(self, event_id: uuid.UUID, ticket_count: int) -> None:
        """A repeat must ask for the same thing; otherwise the booking id was reused by mistake."""
        if not self.is_repeat(event_id, ticket_count):
            raise Conflict(
                f"booking {self.booking_id} already holds a reservation for "
                f"{self.ticket_count} ticket(s) of event {self.event_id}"
            )


def reservation_of(event: SeatsReserved | ReservationRefused) -> Reservation:
    """The reservation a reservation event records for its booking id."""
    status = (
        ReservationOutcome.RESERVED
        if isinstance(event, SeatsReserved)
        else ReservationOutcome(event.reason)
    )
    return Reservation(
        event.booking_id,
        event.event_id,
        event.ticket_count,
        status,
        event.left_capacity,
        event.customer_id,
    )


def released(reservation: Reservation, event: SeatsReleased) -> Reservation:
    """The reservation once ``event`` gave its seats back; ImpossibleHistory when it held
    none to give (another booking's, refused, or released already)."""
    if (
        not reservation.holds_seats
        or reservation.event_id != event.event_id
        or reservation.ticket_count != event.ticket_count
    ):
        raise ImpossibleHistory(f"{event!r} cannot release {reservation!r}")
    return dataclasses.replace(reservation, release=Release(event.reason, event.left_capacity))
