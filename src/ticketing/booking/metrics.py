"""Booking's own metrics, told by the service once a change is committed (the port
:class:`~ticketing.booking.ports.CommitObserver`), so that they count only what was recorded:
each status a booking reaches (a confirmed hold counts as HELD, then as CONFIRMED), and the
saga's time from a request to its settlement. Names and labels are as published."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from prometheus_client import Counter, Histogram, Metric
from prometheus_client.registry import Collector

from ticketing.booking.changes import Change
from ticketing.booking.domain import BookingConfirmed, BookingHeld, BookingRejected, SeatsReturned
from ticketing.contracts.booking import BookingStatus
from ticketing.contracts.events import HoldExpired

# The status each counted event brings a booking to: the ``outcome`` label it is counted under.
STATUS_REACHED_BY: dict[type, BookingStatus] = {
    BookingConfirmed: BookingStatus.CONFIRMED,
    BookingHeld: BookingStatus.HELD,
    BookingRejected: BookingStatus.REJECTED,
    HoldExpired: BookingStatus.EXPIRED,
    SeatsReturned: BookingStatus.CANCELLED,
}
# The events that settle a PENDING booking with the saga's answer.
SETTLEMENTS = (BookingConfirmed, BookingHeld, BookingRejected)
SAGA_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class BookingMetrics(Collector):
    """``booking_outcomes_total{outcome}`` and ``booking_saga_duration_seconds{outcome}``,
    every child made up front: a scrape shows each status from the start (at 0), and a change
    costs no label lookup."""

    def __init__(self) -> None:
        self._reached = Counter(
            "booking_outcomes",
            "Bookings that reached each outcome (a confirmed hold counts as HELD, then CONFIRMED)",
            ["outcome"],
            registry=None,
        )
        self._saga = Histogram(
            "booking_saga_duration_seconds",
            "Time from a booking's request (its 202) to the saga's settlement of it",
            ["outcome"],
            buckets=SAGA_BUCKETS,
            registry=None,
        )
        self._counted: dict[type, Counter] = {
            cls: self._reached.labels(s.value) for cls, s in STATUS_REACHED_BY.items()
        }
        self._timed: dict[type, Histogram] = {
            cls: self._saga.labels(STATUS_REACHED_BY[cls].value) for cls in SETTLEMENTS
        }

    def committed(self, changes: Sequence[Change]) -> None:
        for change in changes:
            for event in change.events:
                counter = self._counted.get(type(event))
                if counter is not None:
                    counter.inc()

    def settled(self, changes: Sequence[Change], now: datetime) -> None:
        for change in changes:
            requested = change.state.booking.created_at
            if requested.tzinfo is None:
                requested = requested.replace(tzinfo=UTC)
            for event in change.events:
                timer = self._timed.get(type(event))
                if timer is not None:
                    timer.observe(max(0.0, (now - requested).total_seconds()))
                    break

    def describe(self) -> Iterator[Metric]:
        yield from self._reached.describe()
        yield from self._saga.describe()

    def collect(self) -> Iterator[Metric]:
        yield from self._reached.collect()
        yield from self._saga.collect()
