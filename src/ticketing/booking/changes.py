"""Changes to bookings decided on their locked rows: what one decision makes of a row, and how
a use case decides them (no I/O; :mod:`ticketing.booking.change_statements` locks the rows and
records the changes)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ticketing.booking.domain import BookingState, StreamEvent
from ticketing.shared.store.eventstore import Cause


@dataclass(frozen=True, slots=True)
class Change:
    """What one decision made of a booking's locked row: the events it appends after
    ``after_version`` (with the cause of the message or request that brought them), and the
    state they lead to, which the projection row becomes."""

    events: Sequence[StreamEvent]
    cause: Cause
    after_version: int
    state: BookingState


# How a use case decides changes from the bookings' locked states, at a time (aware).
DecideChanges = Callable[[Mapping[uuid.UUID, BookingState], datetime], Sequence[Change]]


def noting(
    decide_at: DecideChanges, into: list[tuple[Sequence[Change], datetime]]
) -> DecideChanges:
    """``decide_at``, keeping in ``into`` what its last run decided and when: a deadlock runs
    the unit, and the decision, again, and only the last run is what the commit recorded."""

    def noted(locked: Mapping[uuid.UUID, BookingState], now: datetime) -> list[Change]:
        changes = list(decide_at(locked, now))
        into[:] = [(changes, now)]
        return changes

    return noted
