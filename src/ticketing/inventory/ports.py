"""The port inventory's write use cases talk through: where they record what they decide."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Protocol

from ticketing.inventory.decisions import (
    CustomerSeats,
    DecideBatch,
    DecideReleases,
    Decisions,
    Releases,
)
from ticketing.inventory.domain import EventScheduled, VenueRegistered, VenueState
from ticketing.shared.store.eventstore import Cause


@dataclass(frozen=True, slots=True)
class ReserveSeats:
    """One batch of reservations for :meth:`InventoryRecords.reserve`, as one value so that the
    port, its adapter and its stand-ins name what the call takes once."""

    event_ids: Sequence[uuid.UUID]
    decide: DecideBatch
    cause: Cause
    causes: Mapping[uuid.UUID, Cause]
    _: KW_ONLY
    existing_of: Sequence[uuid.UUID] = ()
    customers: Sequence[CustomerSeats] = ()


@dataclass(frozen=True, slots=True)
class ReleaseSeats:
    """One batch of releases for :meth:`InventoryRecords.release` (see :class:`ReserveSeats`)."""

    event_ids: Sequence[uuid.UUID]
    booking_ids: Sequence[uuid.UUID]
    decide: DecideReleases
    cause: Cause
    causes: Mapping[uuid.UUID, Cause]


class InventoryRecords(Protocol):
    """Where the write use cases record what they decide, each call one transaction (the port
    they need; the SQL adapter is :class:`ticketing.inventory.records.SqlInventoryRecords`).
    A call that raises records nothing."""

    async def register_venue(self, registered: VenueRegistered, cause: Cause) -> None:
        """Record the venue's first event and its projection row. Raises
        :class:`AlreadyRecorded` when the venue exists."""

    async def schedule_event(
        self, venue_id: uuid.UUID, decide: Callable[[VenueState], EventScheduled], cause: Cause
    ) -> tuple[VenueState, EventScheduled] | None:
        """Read the venue's state and record the event ``decide`` schedules there, with its
        projection row; the venue and that event, or None when the venue does not exist.
        Raises :class:`AlreadyRecorded` when the event exists."""

    async def reserve(self, batch: ReserveSeats) -> Decisions:
        """Lock the state of each existing event of the batch's ``event_ids`` (its stream's
        snapshot), read the reservations recorded for the booking ids ``existing_of`` (none is
        read when it is empty) and the seats held now by each pair of ``customers`` whose event
        sets a limit (:func:`~ticketing.inventory.decisions.counted`; nothing is read when none
        does), and record what ``decide`` decides from them: its events, each with its booking
        id's cause in ``causes`` or else ``cause``, its reservations and the events' new
        states; the decisions. Raises :class:`AlreadyRecorded` when a booking id holds a
        reservation already or a stream version is taken."""

    async def release(self, batch: ReleaseSeats) -> Releases:
        """Lock the state of each existing event of the batch's ``event_ids``, read the
        reservations of its ``booking_ids``, and record what ``decide`` decides from them: its
        events (causes as for :meth:`reserve`), the reservations it releases and the events'
        new states; the decisions. Raises :class:`AlreadyRecorded` when a stream version is
        taken."""
