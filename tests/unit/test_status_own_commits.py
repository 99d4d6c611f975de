"""A replica's own commits reach its waiters at once: a waiter whose booking this replica
settled is answered without the feed's read and without reading the booking again; other
bookings' waiters sleep on."""

from __future__ import annotations

import asyncio
import uuid

from tests.fakes.status_log import InMemoryStatusLog
from tests.unit.status_events import booking, confirmed
from ticketing.booking.changes import Change
from ticketing.booking.domain import BookingState
from ticketing.booking.status_feed import StatusFeed
from ticketing.booking.status_listeners import RECHECK_SECONDS, OwnCommits
from ticketing.contracts.booking import Booking, BookingStatus
from ticketing.shared.store.eventstore import Cause


def change_to(booking_id: uuid.UUID, status: BookingStatus) -> Change:
    state = BookingState(booking(booking_id, status), version=2)
    return Change([confirmed(booking_id)], Cause("test"), after_version=1, state=state)


def slow_feed(log: InMemoryStatusLog) -> StatusFeed:
    """A feed that would read again only after the test is over."""
    return StatusFeed(log, interval=60, idle_interval=60)


class PendingReads:
    """The read of a waiter whose booking the store still holds PENDING, counted."""

    def __init__(self, booking_id: uuid.UUID) -> None:
        self.booking_id = booking_id
        self.count = 0

    async def __call__(self) -> Booking:
        self.count += 1
        return booking(self.booking_id, BookingStatus.PENDING)


async def waiting_on(feed: StatusFeed, read: PendingReads) -> asyncio.Task[Booking]:
    """A long-poll of 30 s on ``read``'s booking, registered with the feed."""
    waiting = asyncio.create_task(feed.until_settled(read.booking_id, read, 30))
    await asyncio.sleep(0.05)
    return waiting


async def test_a_waiter_is_answered_by_its_replicas_commit_without_the_feed_or_a_read() -> None:
    feed, booking_id = slow_feed(InMemoryStatusLog()), uuid.uuid4()
    reads = PendingReads(booking_id)
    waiting = await waiting_on(feed, reads)
    change = change_to(booking_id, BookingStatus.CONFIRMED)
    started = asyncio.get_running_loop().time()
    OwnCommits(feed).committed([change])
    answer = await asyncio.wait_for(waiting, RECHECK_SECONDS * 2)
    # Woken by the commit: the feed never ran and the waiter's own recheck is a second away;
    # answered with the booking as committed, not read again.
    assert asyncio.get_running_loop().time() - started < RECHECK_SECONDS / 2
    assert answer == change.state.booking
    assert reads.count == 1


async def test_a_commit_that_leaves_the_booking_pending_does_not_end_the_wait() -> None:
    feed, booking_id = slow_feed(InMemoryStatusLog()), uuid.uuid4()
    waiting = await waiting_on(feed, PendingReads(booking_id))
    OwnCommits(feed).committed([change_to(booking_id, BookingStatus.PENDING)])  # a cancel asked
    await asyncio.sleep(0.05)
    assert not waiting.done()
    confirmed_now = change_to(booking_id, BookingStatus.CONFIRMED)
    OwnCommits(feed).committed([confirmed_now])
    assert await asyncio.wait_for(waiting, 1) == confirmed_now.state.booking


async def test_another_bookings_commit_wakes_no_one() -> None:
    feed, booking_id = slow_feed(InMemoryStatusLog()), uuid.uuid4()
    reads = PendingReads(booking_id)
    waiting = await waiting_on(feed, reads)
    OwnCommits(feed).committed([change_to(uuid.uuid4(), BookingStatus.CONFIRMED)])
    await asyncio.sleep(0.1)
    assert reads.count == 1
    assert not waiting.done()
    waiting.cancel()
