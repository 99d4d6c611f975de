"""The status feed on the real store, with two replicas' feeds on one database: a waiter on
replica A hears of a settlement replica B applied, a waiter on the replica that settled its
booking is answered without the feed, and a stream resumed after an id misses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fakes.booking import InMemoryEvents
from tests.harness.databases import own_databases
from ticketing.booking.domain import BookingConfirmed
from ticketing.booking.records import SqlBookingRecords, SqlStatusLog
from ticketing.booking.repository import last_position_before
from ticketing.booking.service import BookingService
from ticketing.booking.settlement import CONSUMER
from ticketing.booking.status_feed import StatusFeed
from ticketing.booking.status_listeners import RECHECK_SECONDS, OwnCommits
from ticketing.contracts.booking import (
    BookingCreate,
    BookingStatus,
    BookingStatusChange,
    CustomerCreate,
)
from ticketing.contracts.events import OrderConfirmed
from ticketing.shared.clock import naive_utc
from ticketing.shared.db.engine import create_engine
from ticketing.shared.ids import new_id
from ticketing.shared.messaging.consumer import Received
from ticketing.shared.store.eventstore import Cause

CLIENT = Cause("box-office", correlation_id="req", causation_id="req")


class Replica:
    """One booking replica's service and status feed, on an engine of its own."""

    def __init__(self, settings: Any, events: InMemoryEvents, *, interval: float = 0.01) -> None:
        self.engine = create_engine(settings, "booking")
        self.feed = StatusFeed(
            SqlStatusLog(self.engine), interval=interval, idle_interval=max(interval, 0.05)
        )
        self.service = BookingService(
            SqlBookingRecords(self.engine, consumer=CONSUMER),
            events,
            max_tickets=10,
            observer=OwnCommits(self.feed),  # as the app wires it
        )


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[Replica, Replica, InMemoryEvents]]:
    events = InMemoryEvents()
    async with own_databases("booking") as settings:
        a, b = Replica(settings, events), Replica(settings, events)
        tasks = []
        try:
            for replica in (a, b):
                await replica.feed.start()
                tasks.append(asyncio.create_task(replica.feed.run()))
            yield a, b, events
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for replica in (a, b):
                await replica.engine.dispose()


async def book(replica: Replica, events: InMemoryEvents) -> tuple[uuid.UUID, uuid.UUID]:
    """A new customer's PENDING booking: (customer, booking)."""
    customer = await replica.service.create_customer(
        CustomerCreate(name="Ada", email=f"ada.{uuid.uuid4().hex}@example.com"), CLIENT
    )
    data = BookingCreate(customer_id=customer.id, event_id=events.schedule(10), ticket_count=1)
    accepted = await replica.service.requests.request_booking(data, raw_body=b"{}", cause=CLIENT)
    return customer.id, accepted.booking_id


async def settle(replica: Replica, booking_id: uuid.UUID) -> None:
    confirmed = OrderConfirmed(
        message_id=new_id(),
        order_id=new_id(),
        booking_id=booking_id,
        event_id=uuid.uuid4(),
        ticket_count=1,
        total_price="25.00",
        confirmed_at=datetime.now(UTC),
    )
    await replica.service.apply_saga_answers([Received(confirmed, "trace")])


async def test_a_waiter_on_one_replica_hears_of_a_settlement_applied_by_another(
    replicas: tuple[Replica, Replica, InMemoryEvents],
) -> None:
    a, b, events = replicas
    _, booking_id = await book(a, events)

    async def later() -> None:
        await asyncio.sleep(0.2)
        await settle(b, booking_id)

    started = asyncio.get_running_loop().time()
    answer, _ = await asyncio.gather(
        a.feed.until_settled(booking_id, lambda: a.service.get_booking(booking_id), 10), later()
    )
    assert answer.status is BookingStatus.CONFIRMED
    # Woken by A's feed reading B's event, not by the once-a-second read of the booking.
    assert asyncio.get_running_loop().time() - started < 0.8


async def test_a_waiter_on_the_replica_that_settled_its_booking_is_answered_without_the_feed() -> (
    None
):
    async with own_databases("booking") as settings:
        events = InMemoryEvents()
        replica = Replica(settings, events, interval=60)  # its feed is never run
        try:
            _, booking_id = await book(replica, events)
            waiting = asyncio.create_task(
                replica.feed.until_settled(
                    booking_id, lambda: replica.service.get_booking(booking_id), 10
                )
            )
            await asyncio.sleep(0.1)
            assert not waiting.done()
            settled_at = asyncio.get_running_loop().time()
            await settle(replica, booking_id)
            answer = await asyncio.wait_for(waiting, 5)
            assert answer.status is BookingStatus.CONFIRMED
            # Woken by the settlement's commit, not by the once-a-second read of the booking.
            assert asyncio.get_running_loop().time() - settled_at < RECHECK_SECONDS / 2
            # Answered with the booking as committed, which is what a read finds.
            assert answer == await replica.service.get_booking(booking_id)
        finally:
            await replica.engine.dispose()


async def test_a_stream_resumed_after_an_id_misses_nothing(
    replicas: tuple[Replica, Replica, InMemoryEvents],
) -> None:
    a, b, events = replicas
    customer_id, first = await book(a, events)
    async with a.feed.subscribed(customer_id, 100) as (live, mark):
        second = await book_for(b, events, customer_id)
        await settle(b, first)
        await settle(a, second)
        got: list[tuple[int, BookingStatusChange]] = []
        while not got or got[-1][1].booking_id != second or got[-1][1].status != "CONFIRMED":
            got.append(await asyncio.wait_for(live.changes.get(), 5))
    if (got[0][1].booking_id, got[0][1].status) == (first, BookingStatus.PENDING):
        del got[0]  # the first request came after the mark the subscription started from
    assert [(c.booking_id, c.status) for _, c in got] == [
        (second, BookingStatus.PENDING),
        (first, BookingStatus.CONFIRMED),
        (second, BookingStatus.CONFIRMED),
    ]
    positions = [p for p, _ in got]
    assert positions == sorted(positions)
    assert positions[0] > mark
    # A client that saw the first of them reconnects (to the other replica): the store tells
    # the rest up to that replica's mark, which has passed them.
    async with asyncio.timeout(5):
        while b.feed.mark < positions[-1]:
            await asyncio.sleep(0.01)
    resumed = [
        p async for p, _ in b.feed.history(customer_id, after=positions[0], upto=b.feed.mark)
    ]
    assert resumed == positions[1:]
    everything = [p async for p, _ in b.feed.history(customer_id, after=0, upto=b.feed.mark)]
    assert everything[-3:] == positions
    assert len(everything) == 4  # and the first request


async def book_for(replica: Replica, events: InMemoryEvents, customer_id: uuid.UUID) -> uuid.UUID:
    data = BookingCreate(customer_id=customer_id, event_id=events.schedule(10), ticket_count=1)
    accepted = await replica.service.requests.request_booking(data, raw_body=b"{}", cause=CLIENT)
    return accepted.booking_id


async def write_unreadable(engine: AsyncEngine, stream_id: uuid.UUID) -> None:
    """An event of a newer schema than this code reads, as a replica of the next release
    writes it during a rolling deployment."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO event_store (event_id, stream_id, stream_type, version, event_type,"
                " schema_version, payload, actor, recorded_at, published_at) VALUES (:event_id,"
                " :stream_id, 'booking', 99, 'BookingConfirmed', :schema, '{}', 'next-release',"
                " UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))"
            ),
            {
                "event_id": str(uuid.uuid4()),
                "stream_id": str(stream_id),
                "schema": BookingConfirmed.SCHEMA_VERSION + 1,
            },
        )


async def test_an_event_this_code_cannot_read_does_not_stop_the_feed_or_the_history(
    replicas: tuple[Replica, Replica, InMemoryEvents],
) -> None:
    a, b, events = replicas
    customer_id, booking_id = await book(a, events)
    async with a.feed.subscribed(customer_id, 100) as (live, _):
        await write_unreadable(b.engine, booking_id)
        await settle(b, booking_id)
        got: list[BookingStatusChange] = []
        async with asyncio.timeout(5):
            while not got or got[-1].status is not BookingStatus.CONFIRMED:
                got.append((await live.changes.get())[1])
    told = [c.status async for _, c in a.feed.history(customer_id, after=0, upto=a.feed.mark)]
    assert told == [BookingStatus.PENDING, BookingStatus.CONFIRMED]


async def test_where_the_feed_starts_is_found_without_reading_every_earlier_event() -> None:
    async with own_databases("booking") as settings:
        engine = create_engine(settings, "booking")
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO event_store (event_id, stream_id, stream_type, version,"
                        " event_type, schema_version, payload, actor, recorded_at, published_at)"
                        " SELECT UUID(), UUID(), 'booking', 1, 'BookingRequested', 1, '{}', 'x',"
                        " UTC_TIMESTAMP(6) - INTERVAL 1 HOUR, UTC_TIMESTAMP(6) FROM seq_1_to_2000"
                    )
                )
            async with engine.connect() as conn:
                await conn.execute(text("FLUSH STATUS"))
                start = await last_position_before(conn, naive_utc(datetime.now(UTC)))
                shown = await conn.execute(text("SHOW STATUS LIKE 'Handler_read%'"))
                reads = {str(name): int(value) for name, value in shown.all()}
        finally:
            await engine.dispose()
    assert start == 2000
    assert reads["Handler_read_next"] + reads["Handler_read_prev"] < 10
