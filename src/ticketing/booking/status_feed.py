"""Booking's status feed: each replica follows booking's event store and tells its clients when
their bookings change, so that none has to poll (issue 20, ADR 16).

The store is shared by every replica, so a client waiting on replica A hears of a settlement
that replica B applied. The feed reads the store by position; positions are handed out when a
transaction writes and become visible when it commits, so a lower one can appear after a higher
one. Waiters are woken at the first sight of their booking's event (they read the booking
again anyway; the replica that commits a change wakes its own waiters itself, see
:class:`~ticketing.booking.status_listeners.OwnCommits`), but a stream passes a change on only
once every lower position is either seen or has stayed missing for ``grace`` (a rolled-back
transaction leaves a hole for good): a client that resumes after the last id it saw then misses
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from ticketing.booking.domain import (
    BOOKING_STREAM,
    BookingConfirmed,
    BookingHeld,
    BookingRejected,
    CancellationRequested,
    SeatsReturned,
)
from ticketing.booking.status_listeners import StatusListeners
from ticketing.contracts.booking import BookingStatus, BookingStatusChange
from ticketing.contracts.events import BookingCancelled, BookingRequested, HoldExpired
from ticketing.shared.cancellation import stop_if_cancelled
from ticketing.shared.store.eventstore import Recorded

log = structlog.get_logger(__name__)
PAGE = 1000
# How far back, at start, the feed reads again: transactions that wrote before then and
# commit later are still seen.
START_MARGIN = timedelta(seconds=10)


class StatusLog(Protocol):
    """What the feed reads of booking's store (the SQL adapter is
    :class:`ticketing.booking.records.SqlStatusLog`)."""

    async def start_position(self, before: datetime) -> int:
        """The last position recorded before ``before`` (aware; 0 when none)."""

    async def after(self, position: int, limit: int) -> list[Recorded]:
        """Up to ``limit`` events after ``position``, every stream's, in position order; one
        this code cannot decode comes with ``event`` None."""

    async def customers_of(self, booking_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
        """The customer of each of ``booking_ids`` that exists."""

    async def of_customer(
        self, customer_id: uuid.UUID, *, after: int, upto: int, limit: int
    ) -> list[Recorded]:
        """Up to ``limit`` events of the customer's bookings' streams with ``after`` <
        position <= ``upto``, in position order."""


# The status each event of a booking's stream leaves it in (a cancel asked for while PENDING
# leaves it PENDING: the stream still tells, with cancel_requested).
STATUS_AFTER: dict[type[Any], BookingStatus] = {
    BookingRequested: BookingStatus.PENDING,
    CancellationRequested: BookingStatus.PENDING,
    BookingHeld: BookingStatus.HELD,
    BookingConfirmed: BookingStatus.CONFIRMED,
    BookingRejected: BookingStatus.REJECTED,
    BookingCancelled: BookingStatus.CANCELLING,
    HoldExpired: BookingStatus.EXPIRED,
    SeatsReturned: BookingStatus.CANCELLED,
}


def change_of(recorded: Recorded) -> BookingStatusChange | None:
    """The change of a booking's state an event records, or None for any other event."""
    event = recorded.event
    status = STATUS_AFTER.get(type(event))
    if recorded.stream_type != BOOKING_STREAM or status is None:
        return None
    return BookingStatusChange(
        booking_id=recorded.stream_id,
        status=status,
        event_type=recorded.event_type,
        recorded_at=recorded.recorded_at,
        order_id=getattr(event, "order_id", None),
        reason=getattr(event, "reason", None),
        expires_at=getattr(event, "expires_at", None),
    )


class StatusFeed(StatusListeners):
    """Follows the store from one position on: wakes the waiters and feeds the subscriptions
    registered with it."""

    def __init__(
        self,
        store: StatusLog,
        *,
        interval: float,
        idle_interval: float,
        grace: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = store
        self._interval = interval
        self._idle_interval = idle_interval
        self._grace = grace
        self._clock = clock
        super().__init__()
        self._above: dict[int, Recorded] = {}  # seen, above the mark
        self._passed: list[Recorded] = []  # passed by the mark, not yet offered to streams
        # When the positions not seen went missing, as ranges (a jump of the auto-increment is
        # one entry, not one per position): each (below, since) times every position under
        # ``below`` and above the entry before it.
        self._missing: deque[tuple[int, float]] = deque()
        self._timed = 0  # the highest position timed in _missing
        self._customers: dict[uuid.UUID, uuid.UUID] = {}  # booking -> customer, as learned
        self.started = False

    async def start(self) -> None:
        self.mark = await self._log.start_position(datetime.now(UTC) - START_MARGIN)
        self.started = True

    async def run(self) -> None:
        """Read the store until cancelled: often while anyone listens, seldom otherwise."""
        if not self.started:
            await self.start()
        failing = False
        while True:
            self._listening.clear()  # a listener that comes during the read is not missed
            try:
                await self.poll()
            except Exception as error:  # noqa: BLE001 - the feed must outlive a failed read
                stop_if_cancelled(error)
                if not failing:  # once per outage, not once per read
                    log.warning("status feed read failed", error=repr(error))
                failing = True
            else:
                if failing:
                    log.info("status feed reads again")
                failing = False
            listening = bool(self._waiters or self._subscriptions)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._listening.wait(),
                    self._interval if listening else self._idle_interval,
                )

    async def poll(self) -> None:
        """Read what is new above the mark, wake its waiters, move the mark on and pass what
        it passed to the subscriptions."""
        cursor = self.mark
        while True:
            page = await self._log.after(cursor, PAGE)
            for recorded in page:
                if recorded.position in self._above:
                    continue
                self._above[recorded.position] = recorded
                if recorded.event is None:
                    log.warning(
                        "status feed passes an event it cannot decode",
                        position=recorded.position,
                        event_type=recorded.event_type,
                    )
                for waiter in self._waiters.get(recorded.stream_id, ()):
                    waiter.wake()
            # Passed for good: a failed lookup of their customers leaves them to the next read.
            self._passed.extend(self._advance())
            await self._deliver(self._passed)
            self._passed.clear()
            if len(page) < PAGE:
                return
            # On past this page even when a hole keeps the mark below it (read again from the
            # mark by the next poll): else the same page would be read until the hole passes.
            cursor = max(self.mark, page[-1].position)

    async def _deliver(self, passed: Sequence[Recorded]) -> None:
        """Offer each change the mark passed to the streams of its booking's customer; raises,
        having offered none, when their customers cannot be looked up."""
        if not self._subscriptions:
            return
        changes = [(r, change) for r in passed if (change := change_of(r)) is not None]
        for recorded, _ in changes:
            if isinstance(recorded.event, BookingRequested):
                self._remember(recorded.stream_id, recorded.event.customer_id)
        unknown = {r.stream_id for r, _ in changes if r.stream_id not in self._customers}
        if unknown:
            for booking_id, customer_id in (await self._log.customers_of(list(unknown))).items():
                self._remember(booking_id, customer_id)
        for recorded, change in changes:
            customer = self._customers.get(recorded.stream_id)
            for subscription in tuple(self._subscriptions.get(customer, ()) if customer else ()):
                subscription.offer(recorded.position, change)
                if subscription.overflowed:  # its reader may never come back to unsubscribe
                    self.unsubscribe(subscription)

    def _remember(self, booking_id: uuid.UUID, customer_id: uuid.UUID) -> None:
        if len(self._customers) >= 100_000:
            self._customers.clear()  # looked up again when needed
        self._customers[booking_id] = customer_id

    def _advance(self) -> list[Recorded]:
        """Move the mark over every position seen or missing for ``grace``; what it passed."""
        now = self._clock()
        passed: list[Recorded] = []
        if self._above:
            highest = max(self._above)
            if highest > max(self._timed, self.mark):
                self._missing.append((highest, now))
                self._timed = highest
        while self._above:
            following = self.mark + 1
            recorded = self._above.pop(following, None)
            if recorded is not None:
                passed.append(recorded)
                self.mark = following
                continue
            below, since = self._missing_at(following)
            if now - since < self._grace:
                break
            # Holes for good, up to the next position seen or timed later.
            self.mark = min(below, *self._above) - 1
        return passed

    def _missing_at(self, position: int) -> tuple[int, float]:
        """The range of missing positions ``position`` is in: where it ends, and since when."""
        while self._missing and self._missing[0][0] <= position:
            self._missing.popleft()  # wholly at or below the mark
        if not self._missing:
            return position + 1, self._clock()  # untimed yet: missing from now on
        return self._missing[0]

    async def history(
        self, customer_id: uuid.UUID, *, after: int, upto: int
    ) -> AsyncIterator[tuple[int, BookingStatusChange]]:
        """The customer's changes with ``after`` < position <= ``upto``, from the store."""
        while after < upto:
            page = await self._log.of_customer(customer_id, after=after, upto=upto, limit=PAGE)
            for recorded in page:
                change = change_of(recorded)
                if change is not None:
                    yield recorded.position, change
            if len(page) < PAGE:
                return
            after = page[-1].position
