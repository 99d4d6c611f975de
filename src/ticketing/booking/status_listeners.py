"""Who listens to booking's status feed on this replica: the long-poll's waiters, each woken
when its booking's stream moves, and the customers' streams, each fed the changes of its
customer's bookings; and how many of them each client may hold open (issue 20, ADR 16)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ticketing.booking.changes import Change
from ticketing.contracts.booking import (
    TRANSIENT_STATUSES,
    Booking,
    BookingStatus,
    BookingStatusChange,
)
from ticketing.shared.errors import RateLimited

# A booking in one of these states is still on its way: a waiter waits on.
UNSETTLED = TRANSIENT_STATUSES
# How often a waiter reads its booking again even if the feed said nothing (the feed may be
# behind, or stopped): the wait never depends on the feed alone.
RECHECK_SECONDS = 1.0


@dataclass(eq=False)
class Subscription:
    """A stream's place at the feed: the changes of one customer's bookings, in position order,
    at most ``capacity`` behind; a reader that falls further behind is dropped (``overflowed``)
    and resumes from the store."""

    customer_id: uuid.UUID
    capacity: int
    on_overflow: Callable[[], object] = lambda: None
    changes: asyncio.Queue[tuple[int, BookingStatusChange]] = field(init=False)
    overflowed: bool = False

    def __post_init__(self) -> None:
        self.changes = asyncio.Queue(self.capacity)

    def offer(self, position: int, change: BookingStatusChange) -> None:
        if self.overflowed:
            return
        try:
            self.changes.put_nowait((position, change))
        except asyncio.QueueFull:
            self.overflowed = True
            self.on_overflow()


@dataclass(eq=False)
class Waiter:
    """A long-poll's place at the feed: ``woken`` when its booking's stream moved, with the
    booking as this replica committed it when it was this replica that moved it."""

    woken: asyncio.Event = field(default_factory=asyncio.Event)
    committed: Booking | None = None

    def wake(self, committed: Booking | None = None) -> None:
        if committed is not None:
            self.committed = committed
        self.woken.set()

    def take_committed(self) -> Booking | None:
        committed, self.committed = self.committed, None
        return committed


class OpenLimit:
    """The waits and streams each client holds open on this replica, at most ``limit``."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._open: dict[str, int] = {}

    def check(self, client: str) -> None:
        """Raise :class:`RateLimited` when ``client`` may open no more."""
        count = self._open.get(client, 0)
        if count >= self._limit:
            raise RateLimited(
                f"client {client} holds {count} open waits and streams on this replica, the "
                "most allowed; close one or retry later",
                retry_after=1,
            )

    def acquire(self, client: str) -> None:
        self.check(client)
        self._open[client] = self._open.get(client, 0) + 1

    def release(self, client: str) -> None:
        left = self._open[client] - 1
        if left:
            self._open[client] = left
        else:
            del self._open[client]

    @contextlib.contextmanager
    def held(self, client: str) -> Iterator[None]:
        self.acquire(client)
        try:
            yield
        finally:
            self.release(client)

    def open_count(self, client: str) -> int:
        return self._open.get(client, 0)


class StatusListeners:
    """The waiters and subscriptions of one replica, and the mark that splits what the store
    tells a new subscription (at or below it) from what the feed will offer it (above)."""

    def __init__(self) -> None:
        self.mark = 0  # every position up to here was seen, or is a hole for good
        self._waiters: dict[uuid.UUID, set[Waiter]] = {}
        self._subscriptions: dict[uuid.UUID, set[Subscription]] = {}
        self._listening = asyncio.Event()  # set when a listener comes, so the feed reads now

    async def until_settled(
        self, booking_id: uuid.UUID, read: Callable[[], Awaitable[Booking]], seconds: float
    ) -> Booking:
        """The booking once it left PENDING or CANCELLING, or as it is when ``seconds`` are over;
        a booking settled before the wait began is answered at once."""
        waiter = Waiter()
        self._waiters.setdefault(booking_id, set()).add(waiter)
        self._listening.set()
        try:
            deadline = asyncio.get_running_loop().time() + seconds
            booking = await read()
            while booking.status in UNSETTLED:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.woken.wait(), min(remaining, RECHECK_SECONDS))
                waiter.woken.clear()  # a wake after this is seen below or by the next wait
                answered = _answered(waiter.take_committed(), booking)
                booking = answered if answered is not None else await read()
            return booking
        finally:
            waiters = self._waiters[booking_id]
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[booking_id]

    @contextlib.asynccontextmanager
    async def subscribed(
        self,
        customer_id: uuid.UUID,
        capacity: int,
        on_overflow: Callable[[], object] = lambda: None,
    ) -> AsyncIterator[tuple[Subscription, int]]:
        """A subscription to the customer's changes above the mark it is taken at (yielded
        with it): what is at or below that mark is the store's to tell. ``on_overflow`` is
        called once the reader is ``capacity`` changes behind."""
        subscription, mark = self.subscribe(customer_id, capacity, on_overflow)
        try:
            yield subscription, mark
        finally:
            self.unsubscribe(subscription)

    def subscribe(
        self,
        customer_id: uuid.UUID,
        capacity: int,
        on_overflow: Callable[[], object] = lambda: None,
    ) -> tuple[Subscription, int]:
        """:meth:`subscribed` for a caller that ends it with :meth:`unsubscribe` itself."""
        subscription = Subscription(customer_id, capacity, on_overflow)
        self._subscriptions.setdefault(customer_id, set()).add(subscription)
        self._listening.set()
        return subscription, self.mark

    def changed(self, bookings: Iterable[Booking]) -> None:
        """This replica committed ``bookings`` as they are given: wake their waiters with them
        now rather than at the feed's next read (other replicas' commits still come through the
        feed). Streams wait for the feed: they need the changes in position order, and a read
        per commit would keep the feed reading back to back under load."""
        for booking in bookings:
            for waiter in self._waiters.get(booking.id, ()):
                waiter.wake(booking)

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop feeding ``subscription``; a no-op when it was dropped already."""
        subscriptions = self._subscriptions.get(subscription.customer_id)
        if subscriptions is None:
            return
        subscriptions.discard(subscription)
        if not subscriptions:
            del self._subscriptions[subscription.customer_id]


def _answered(committed: Booking | None, last_read: Booking) -> Booking | None:
    """``committed`` when it may answer without a read: it settles the booking, which the last
    read found PENDING (nothing goes back to it), so it came later; else None, to read, since
    its observer runs once the commit has returned, maybe after another replica moved the
    booking on (a cancel after CONFIRMED) and the waiter read that or is woken by it now."""
    if committed is None or committed.status in UNSETTLED:
        return None
    return committed if last_read.status is BookingStatus.PENDING else None


class OwnCommits:
    """Tells the replica's listeners of the changes it commits itself (a
    :class:`~ticketing.booking.ports.CommitObserver`), so that a waiter on the replica that
    settled its booking is answered without waiting for the feed's read."""

    def __init__(self, listeners: StatusListeners) -> None:
        self._listeners = listeners

    def committed(self, changes: Sequence[Change]) -> None:
        self._listeners.changed(change.state.booking for change in changes)

    def settled(self, changes: Sequence[Change], now: datetime) -> None:
        pass  # told by committed() already
