"""The status feed on an in-memory store whose events commit in any order: waiters woken at
once, streams fed in position order with nothing skipped and nothing twice, holes waited for
and then passed (cheaply, whatever the jump in positions), and the open-request limit."""

from __future__ import annotations

import asyncio
import tracemalloc
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes.status_log import InMemoryStatusLog, recorded
from tests.unit.status_events import CUSTOMER, Clock, booking, confirmed, feed_on, requested
from ticketing.booking.domain import BookingRejected
from ticketing.booking.status_feed import PAGE
from ticketing.booking.status_listeners import OpenLimit, Waiter
from ticketing.contracts.booking import Booking, BookingStatus
from ticketing.shared.errors import RateLimited
from ticketing.shared.store.eventstore import Recorded


async def test_a_waiter_is_woken_by_the_settlement_it_waits_for() -> None:
    log, booking_id = InMemoryStatusLog(), uuid.uuid4()
    log.commit(recorded(1, requested(booking_id), stream_id=booking_id, version=1))
    feed = feed_on(log)
    await feed.start()
    state = {"status": BookingStatus.PENDING}
    reads = 0

    async def read() -> Booking:
        nonlocal reads
        reads += 1
        return booking(booking_id, state["status"])

    async def settle() -> None:
        await asyncio.sleep(0.05)
        state["status"] = BookingStatus.CONFIRMED
        log.commit(recorded(2, confirmed(booking_id), stream_id=booking_id, version=2))

    running = asyncio.create_task(feed.run())
    try:
        started = asyncio.get_running_loop().time()
        answer, _ = await asyncio.gather(feed.until_settled(booking_id, read, 10), settle())
        waited = asyncio.get_running_loop().time() - started
    finally:
        running.cancel()
    assert answer.status is BookingStatus.CONFIRMED
    assert waited < 0.5  # woken by the feed, not by the once-a-second read
    assert reads == 2  # before the wait, and once woken


async def test_a_booking_settled_before_the_wait_is_answered_at_once() -> None:
    feed = feed_on(InMemoryStatusLog())
    booking_id = uuid.uuid4()

    async def read() -> Booking:
        return booking(booking_id, BookingStatus.REJECTED)

    answer = await asyncio.wait_for(feed.until_settled(booking_id, read, 30), 0.5)
    assert answer.status is BookingStatus.REJECTED


async def test_a_wait_that_runs_out_answers_the_booking_as_it_is() -> None:
    feed = feed_on(InMemoryStatusLog())
    booking_id = uuid.uuid4()

    async def read() -> Booking:
        return booking(booking_id, BookingStatus.PENDING)

    started = asyncio.get_running_loop().time()
    answer = await feed.until_settled(booking_id, read, 0.3)
    assert answer.status is BookingStatus.PENDING
    assert 0.3 <= asyncio.get_running_loop().time() - started < 1.0
    assert not feed._waiters  # nothing left behind


async def test_a_change_waits_for_a_lower_position_until_it_commits_or_stays_a_hole() -> None:
    log, clock = InMemoryStatusLog(), Clock()
    feed = feed_on(log, clock)
    await feed.start()
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with feed.subscribed(CUSTOMER, 100) as (live, mark):
        assert mark == 0
        log.commit(recorded(2, requested(second), stream_id=second, version=1))
        log.commit(recorded(4, requested(third), stream_id=third, version=1))
        await feed.poll()
        assert live.changes.empty()  # 1 and 3 may still commit
        log.commit(recorded(1, requested(first), stream_id=first, version=1))
        await feed.poll()
        assert [live.changes.get_nowait()[0] for _ in range(2)] == [1, 2]
        clock.now += 1.9
        await feed.poll()
        assert live.changes.empty()  # 3 is missing, not for long enough
        clock.now += 0.2
        await feed.poll()
        assert live.changes.get_nowait()[0] == 4  # 3 stayed a hole: passed
        assert feed.mark == 4


@settings(max_examples=200, deadline=None)
@given(
    order=st.permutations(list(range(1, 13))),
    holes=st.sets(st.integers(1, 12), max_size=4),
    polls=st.lists(st.integers(0, 3), min_size=12, max_size=12),
)
async def test_a_stream_gets_every_committed_change_once_in_position_order(
    order: list[int], holes: set[int], polls: list[int]
) -> None:
    """Whatever order the positions commit in, whichever never commit and however the reads
    fall between the commits: each committed change reaches the stream once, in order."""
    log, clock = InMemoryStatusLog(), Clock()
    feed = feed_on(log, clock)
    await feed.start()
    booking_ids = {p: uuid.uuid4() for p in range(1, 13)}
    got: list[int] = []
    async with feed.subscribed(CUSTOMER, 100) as (live, _):
        for position, reads in zip(order, polls, strict=True):
            if position not in holes:
                b = booking_ids[position]
                log.commit(recorded(position, requested(b), stream_id=b, version=1))
            for _ in range(reads):
                await feed.poll()
            clock.now += 0.1  # a commit comes well within the grace after its neighbours
        await feed.poll()  # a hole is timed from when the feed first finds it missing
        clock.now += 10
        await feed.poll()
        while not live.changes.empty():
            got.append(live.changes.get_nowait()[0])
    committed = sorted(set(range(1, 13)) - holes)
    assert got == committed


async def test_another_customers_changes_are_not_sent() -> None:
    log = InMemoryStatusLog()
    feed = feed_on(log)
    await feed.start()
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    async with feed.subscribed(CUSTOMER, 100) as (live, _):
        log.commit(recorded(1, requested(theirs, uuid.uuid4()), stream_id=theirs, version=1))
        log.commit(recorded(2, requested(mine), stream_id=mine, version=1))
        log.commit(recorded(3, confirmed(mine), stream_id=mine, version=2))
        await feed.poll()
        changes = [live.changes.get_nowait() for _ in range(live.changes.qsize())]
    assert [(p, c.status) for p, c in changes] == [
        (2, BookingStatus.PENDING),
        (3, BookingStatus.CONFIRMED),
    ]


async def test_a_settlement_of_a_booking_requested_before_the_feed_started_finds_its_customer() -> (
    None
):
    log = InMemoryStatusLog()
    old = uuid.uuid4()
    log.commit(recorded(1, requested(old), stream_id=old, version=1))
    feed = feed_on(log)
    feed.mark = 1  # started after the request
    async with feed.subscribed(CUSTOMER, 100) as (live, _):
        rejected = BookingRejected(booking_id=old, reason="sold_out", rejected_at=datetime.now(UTC))
        log.commit(recorded(2, rejected, stream_id=old, version=2))
        await feed.poll()
        position, change = live.changes.get_nowait()
    assert (position, change.status, change.reason) == (2, BookingStatus.REJECTED, "sold_out")


async def test_history_tells_what_came_before_the_mark() -> None:
    log = InMemoryStatusLog()
    b = uuid.uuid4()
    log.commit(
        recorded(1, requested(b), stream_id=b, version=1),
        recorded(2, confirmed(b), stream_id=b, version=2),
    )
    feed = feed_on(log)
    told = [(p, c.status) async for p, c in feed.history(CUSTOMER, after=0, upto=2)]
    assert told == [(1, BookingStatus.PENDING), (2, BookingStatus.CONFIRMED)]
    assert [p async for p, _ in feed.history(CUSTOMER, after=1, upto=2)] == [2]


def test_each_client_holds_at_most_its_limit_of_open_requests() -> None:
    limit = OpenLimit(2)
    with limit.held("a"), limit.held("a"):
        with pytest.raises(RateLimited) as refused:
            limit.acquire("a")
        assert refused.value.extensions["retry_after"] == 1
        with limit.held("b"):  # each client its own
            pass
    assert limit.open_count("a") == 0
    limit.acquire("a")
    limit.release("a")
    assert limit.open_count("a") == 0


class FlakyCustomers(InMemoryStatusLog):
    """A store whose next lookup of bookings' customers fails, as a dropped connection does."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next = False

    async def customers_of(self, booking_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionResetError("connection lost")
        return await super().customers_of(booking_ids)


async def test_a_change_whose_customer_lookup_failed_reaches_the_stream_on_the_next_read() -> None:
    log = FlakyCustomers()
    old = uuid.uuid4()
    log.commit(recorded(1, requested(old), stream_id=old, version=1))
    feed = feed_on(log)
    feed.mark = 1  # started after the request: the settlement's customer must be looked up
    async with feed.subscribed(CUSTOMER, 100) as (live, _):
        log.commit(recorded(2, confirmed(old), stream_id=old, version=2))
        log.fail_next = True
        with pytest.raises(ConnectionResetError):
            await feed.poll()
        await feed.poll()  # as the feed's loop reads again
        assert live.changes.get_nowait()[0] == 2


class CountedReads(InMemoryStatusLog):
    """A store that refuses to be read more than ``most`` times."""

    def __init__(self, most: int) -> None:
        super().__init__()
        self.most = most

    async def after(self, position: int, limit: int) -> list[Recorded]:
        if self.reads >= self.most:
            raise AssertionError(f"read {self.reads + 1} times in one poll")
        return await super().after(position, limit)


async def test_a_hole_below_a_full_page_neither_spins_nor_hides_what_lies_beyond() -> None:
    log, clock = CountedReads(most=2), Clock()
    feed = feed_on(log, clock)
    await feed.start()
    last = PAGE + 101  # position 1 is still being written: every other one is above it
    for position in range(2, last + 1):
        b = uuid.uuid4()
        log.commit(recorded(position, requested(b), stream_id=b, version=1))
    beyond = log.events[last].stream_id
    waiter = Waiter()
    feed._waiters[beyond] = {waiter}
    await feed.poll()  # the clock stands still: the hole is as young as ever
    assert waiter.woken.is_set()  # its event lies on the second page
    assert feed.mark == 0


async def test_a_jump_in_positions_costs_neither_memory_nor_time_per_position() -> None:
    """An auto-increment that jumps (a restore, a reset AUTO_INCREMENT, a large failed insert)
    leaves a million-position gap: the feed must not keep or walk each of its positions."""
    log, clock = InMemoryStatusLog(), Clock()
    feed = feed_on(log, clock)
    await feed.start()
    far = 1_000_002
    for position in (1, far):
        b = uuid.uuid4()
        log.commit(recorded(position, requested(b), stream_id=b, version=1))
    async with feed.subscribed(CUSTOMER, 100) as (live, _):
        tracemalloc.start()
        try:
            await feed.poll()
            clock.now += 1
            await feed.poll()
            clock.now += 1.5
            await feed.poll()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert [live.changes.get_nowait()[0] for _ in range(2)] == [1, far]
    assert feed.mark == far
    assert peak < 5_000_000
