"""Booking's transitions after settlement (ADR 17): a client's confirm or cancel, and the
expiry of holds past their time, each decided on the booking's locked row."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import structlog

from ticketing.booking import lifecycle
from ticketing.booking.changes import Change, noting
from ticketing.booking.domain import BookingState, StreamEvent, evolve_all
from ticketing.booking.ports import BookingRecords, CommitObserver
from ticketing.contracts.booking import Booking
from ticketing.shared.errors import NotFound
from ticketing.shared.ids import new_id
from ticketing.shared.store.eventstore import Cause

SWEEPER = "booking-hold-expiry"  # the actor of the events the expiry of holds records
EXPIRY_BATCH = 100
log = structlog.get_logger(__name__)


class BookingTransitions:
    """Moves settled bookings on: confirmed, cancelled or expired."""

    def __init__(self, records: BookingRecords, observer: CommitObserver) -> None:
        self._records = records
        self._observer = observer

    async def confirm(
        self, booking_id: uuid.UUID, caller: lifecycle.Caller, cause: Cause
    ) -> Booking:
        """Confirm a HELD booking; the booking as it is then."""
        state = await self._change(
            booking_id, lambda s, now: lifecycle.decide_confirm(s, caller, now, new_id), cause
        )
        lifecycle.check_not_expired(state)
        log.info("booking confirmed", booking_id=str(booking_id))
        return state.booking

    async def cancel(
        self, booking_id: uuid.UUID, caller: lifecycle.Caller, cause: Cause
    ) -> Booking:
        """Cancel a booking: its seats go back once inventory released them (or once the saga
        answers, for a PENDING one); the booking as it is then."""
        state = await self._change(
            booking_id, lambda s, now: lifecycle.decide_cancel(s, caller, now, new_id), cause
        )
        lifecycle.check_not_expired(state)
        log.info("booking cancelled", booking_id=str(booking_id), status=state.booking.status)
        return state.booking

    async def expire_holds(self) -> int:
        """Expire HELD bookings past their time, a batch at a time; how many. Replicas may run
        this at once: each locks other bookings, and a locked booking is decided once."""

        def decide_at(locked: Mapping[uuid.UUID, BookingState], now: datetime) -> list[Change]:
            changes = []
            for state in locked.values():
                events = lifecycle.decide_expiry(state, now, new_id)
                if events:
                    after = evolve_all(state, events)
                    changes.append(Change(events, Cause(SWEEPER), state.version, after))
            return changes

        expired = 0
        while True:
            committed: list[tuple[Sequence[Change], datetime]] = []
            await self._records.expire(EXPIRY_BATCH, noting(decide_at, committed))
            count = sum(len(changes) for changes, _ in committed)
            for changes, _ in committed:
                self._observer.committed(changes)
            expired += count
            if count < EXPIRY_BATCH:
                if expired:
                    log.info("holds expired", count=expired)
                return expired

    async def _change(
        self,
        booking_id: uuid.UUID,
        decide: Callable[[BookingState, datetime], list[StreamEvent]],
        cause: Cause,
    ) -> BookingState:
        """Decide on the booking's locked row and record what was decided; its state then."""
        after: list[BookingState] = []

        def decide_at(locked: Mapping[uuid.UUID, BookingState], now: datetime) -> list[Change]:
            after.clear()  # a deadlock runs the unit again
            state = locked.get(booking_id)
            if state is None:
                raise NotFound(f"booking {booking_id} does not exist")
            events = decide(state, now)
            after.append(evolve_all(state, events))
            return [Change(events, cause, state.version, after[0])] if events else []

        committed: list[tuple[Sequence[Change], datetime]] = []
        await self._records.change([booking_id], noting(decide_at, committed))
        for changes, _ in committed:
            self._observer.committed(changes)
        return after[0]
