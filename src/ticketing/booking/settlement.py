"""Booking's settlement use case: the order saga's answers applied to their bookings, a batch
of messages in one transaction, each message once (ADR 17)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import structlog

from ticketing.booking import lifecycle
from ticketing.booking.changes import Change, noting
from ticketing.booking.domain import BookingState, StreamEvent, evolve_all
from ticketing.booking.ports import BookingRecords, CommitObserver, SettleBookings
from ticketing.contracts.events import BOOKING_SUBSCRIPTION
from ticketing.shared import tally
from ticketing.shared.db.unit_of_work import AlreadyRecorded
from ticketing.shared.ids import new_id
from ticketing.shared.messaging.consumer import Received
from ticketing.shared.store.eventstore import Cause

CONSUMER = BOOKING_SUBSCRIPTION.group  # also its inbox's name and its settlements' actor
log = structlog.get_logger(__name__)


class SagaSettlement:
    """Settles bookings with the saga's answers: held, confirmed or rejected, or their seats
    returned after a cancel."""

    def __init__(
        self, records: BookingRecords, observer: CommitObserver, *, hold_for: timedelta
    ) -> None:
        self._records = records
        self._observer = observer
        self._hold_for = hold_for

    async def apply_saga_answers(self, received: Sequence[Received]) -> None:
        """Settle the bookings of a batch of saga answers in one transaction, each message once.

        Each answer is decided from its booking's locked state
        (:func:`~ticketing.booking.lifecycle.decide_answer`: a booking missing or settled
        already is left as it is), and recorded with the inbox claims. A message applied before
        fails the inbox claim and nothing of the batch is written: alone, it was simply applied
        already (the inbox says so); in a batch, the error goes to the consumer's runner, which
        hands each message over alone.
        """
        firsts: dict[uuid.UUID, Received] = {}
        for item in received:
            firsts.setdefault(item.event.message_id, item)
        ignored: list[int] = [0]

        def decide_at(locked: Mapping[uuid.UUID, BookingState], now: datetime) -> list[Change]:
            states = dict(locked)
            decided: dict[uuid.UUID, list[StreamEvent]] = {}
            causes: dict[uuid.UUID, Cause] = {}
            ignored[0] = 0
            for item in firsts.values():
                answer, booking_id = item.event, item.event.booking_id
                state = states.get(booking_id)
                events = lifecycle.decide_answer(
                    state, answer, now, hold_for=self._hold_for, new_id=new_id
                )
                if state is None or not events:
                    ignored[0] += 1
                    continue
                states[booking_id] = evolve_all(state, events)
                decided.setdefault(booking_id, []).extend(events)
                causes.setdefault(booking_id, item.caused(CONSUMER))
            return [
                Change(events, causes[id_], locked[id_].version, states[id_])
                for id_, events in decided.items()
            ]

        booking_ids = [item.event.booking_id for item in firsts.values()]
        committed: list[tuple[Sequence[Change], datetime]] = []
        try:
            await self._records.settle(
                SettleBookings(list(firsts), booking_ids, noting(decide_at, committed))
            )
        except AlreadyRecorded:
            alone = next(iter(firsts)) if len(firsts) == 1 else None
            if alone is None:
                raise
            if not await self._records.has_seen(alone):
                raise  # another key (a projection row lagging its stream): never acked
            log.info("saga answer applied before", message_id=str(alone))
            tally.applied_before()
            return
        for changes, now in committed:
            self._observer.committed(changes)
            self._observer.settled(changes, now)
        if ignored[0]:
            log.warning("saga answers ignored: bookings missing or past them", count=ignored[0])
