"""The port inventory's write use cases talk through: where they record what they decide."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
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

    async def reserve(
        self,
        event_ids: Sequence[uuid.UUID],
        decide: DecideBatch,
        cause: Cause,
        causes: Mapping[uuid.UUID, Cause],
        *,
        existing_of: Sequence[uuid.UUID] = (),
        customers: Sequence[CustomerSeats] = (),
    ) -> Decisions:
        """Lock the state of each existing event of ``event_ids`` (its stream's snapshot),
        read the reservations recorded for the booking ids ``existing_of`` (none is read when
        it is empty) and the seats held now by each pair of ``customers`` whose event sets a
        limit (:func:`~ticketing.inventory.decisions.counted`; nothing is read when none
        does), and record what ``decide`` decides from them: its events, each with its
        booking id's cause in ``causes`` or else ``cause``, its reservations and the events'
        new states; the decisions. Raises :class:`AlreadyRecorded` when a booking id holds a
        reservation already or a stream version is taken."""

    async def release(
        self,
        event_ids: Sequence[uuid.UUID],
        booking_ids: Sequence[uuid.UUID],
        decide: DecideReleases,
        cause: Cause,
        causes: Mapping[uuid.UUID, Cause],
    ) -> Releases:
        """Lock the state of each existing event of ``event_ids``, read the reservations of
        ``booking_ids``, and record what ``decide`` decides from them: its events (causes as
        for :meth:`reserve`), the reservations it releases and the events' new states; the
        decisions. Raises :class:`AlreadyRecorded` when a stream version is taken."""
