"""A replica's own commit told late, or with the feed at once: the observer runs once the commit
has returned, so by then another replica may have moved the booking on, and the waiter may have
read that newer state. It must never be answered with an older state, nor sleep through the
feed's wake because its own commit's booking is still on its way."""

from __future__ import annotations

import asyncio
import uuid

import msgspec

from tests.fakes.status_log import InMemoryStatusLog, recorded
from tests.unit.status_events import booking, confirmed
from ticketing.booking.changes import Change
from ticketing.booking.domain import BookingState
from ticketing.booking.status_feed import StatusFeed
from ticketing.booking.status_listeners import RECHECK_SECONDS, OwnCommits
from ticketing.contracts.booking import Booking, BookingStatus
from ticketing.shared.store.eventstore import Cause


class Store:
    """The booking as the store holds it now, which the waiter reads (counted)."""

    def __init__(self, booking_id: uuid.UUID) -> None:
        self.booking = booking(booking_id, BookingStatus.PENDING)
        self.reads = 0

    def moves_to(self, status: BookingStatus, **fields: object) -> Booking:
        self.booking = msgspec.structs.replace(self.booking, status=status, **fields)
        return self.booking

    async def read(self) -> Booking:
        self.reads += 1
        return self.booking


def committed(feed: StatusFeed, state: Booking, version: int) -> None:
    """This replica's commit of ``state``, told to its listeners (maybe late)."""
    change = Change([confirmed(state.id)], Cause("test"), version - 1, BookingState(state, version))
    OwnCommits(feed).committed([change])


async def feed_sees(feed: StatusFeed, log: InMemoryStatusLog, booking_id: uuid.UUID) -> None:
    """The feed reads a new event of the booking (another replica's commit)."""
    position = len(log.events) + 1
    log.commit(recorded(position, confirmed(booking_id), stream_id=booking_id, version=position))
    await feed.poll()


async def test_a_commit_told_after_the_waiter_read_a_later_state_is_not_answered() -> None:
    log, booking_id = InMemoryStatusLog(), uuid.uuid4()
    feed, store = StatusFeed(log, interval=60, idle_interval=60), Store(booking_id)
    waiting = asyncio.create_task(feed.until_settled(booking_id, store.read, 30))
    await asyncio.sleep(0.05)
    # This replica confirms; before its observer runs, another replica cancels, and its
    # feed wakes the waiter, which reads CANCELLING and waits on.
    confirmed_here = store.moves_to(BookingStatus.CONFIRMED, order_id=uuid.uuid4())
    store.moves_to(BookingStatus.CANCELLING)
    await feed_sees(feed, log, booking_id)
    await asyncio.sleep(0.05)
    assert not waiting.done()
    committed(feed, confirmed_here, version=2)  # told late: older than what was read
    await asyncio.sleep(0.05)
    assert not waiting.done(), f"answered {waiting.result().status}, older than CANCELLING"
    cancelled = store.moves_to(BookingStatus.CANCELLED)
    committed(feed, cancelled, version=4)
    assert await asyncio.wait_for(waiting, RECHECK_SECONDS / 2) == cancelled


async def test_a_feed_wake_is_not_lost_to_an_own_commit_still_on_its_way() -> None:
    log, booking_id = InMemoryStatusLog(), uuid.uuid4()
    feed, store = StatusFeed(log, interval=60, idle_interval=60), Store(booking_id)
    waiting = asyncio.create_task(feed.until_settled(booking_id, store.read, 30))
    await asyncio.sleep(0.05)
    # This replica records a cancel of the PENDING booking, another then applies the saga's
    # rejection: the waiter is told of both at once.
    asked = store.moves_to(BookingStatus.PENDING, cancel_requested=True)
    rejected = store.moves_to(BookingStatus.REJECTED, reason="sold out")
    committed(feed, asked, version=2)
    await feed_sees(feed, log, booking_id)
    # Answered from a read now, not after the once-a-second recheck.
    assert await asyncio.wait_for(waiting, RECHECK_SECONDS / 2) == rejected
