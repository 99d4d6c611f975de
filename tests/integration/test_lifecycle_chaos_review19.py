"""Review of issue 19: the whole lifecycle on MariaDB with two replicas of booking, order and
inventory, messages delivered at least once (redelivered, mixed in batches, handed to two
order or booking replicas at once), order crashing right after inventory answered (before it
recorded anything), holds expiring while customers confirm and cancel. Once quiet, every
seat is accounted for, none released twice, no booking PENDING or CANCELLING, every
projection agrees with its events, and no customer holds more than an event's limit."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness import own_databases
from ticketing.booking import projections as booking_projections
from ticketing.booking import repository as booking_repo
from ticketing.booking.lifecycle import Caller
from ticketing.booking.records import SqlBookingRecords
from ticketing.booking.service import BookingService
from ticketing.booking.settlement import CONSUMER as BOOKING_CONSUMER
from ticketing.contracts.booking import BookingCreate, BookingStatus, CustomerCreate
from ticketing.contracts.inventory import (
    Event,
    EventCreate,
    ReleaseItem,
    ReleaseItemResult,
    ReservationItem,
    ReservationItemResult,
    VenueCreate,
)
from ticketing.inventory import projections as inventory_projections
from ticketing.inventory.records import SqlInventoryRecords
from ticketing.inventory.service import InventoryService
from ticketing.order import projections as order_projections
from ticketing.order import repository as order_repo
from ticketing.order.repository import SqlOrderRecords
from ticketing.order.service import CONSUMER as ORDER_CONSUMER
from ticketing.order.service import OrderService
from ticketing.shared.consumer import Received
from ticketing.shared.db import create_engine
from ticketing.shared.errors import TicketingError
from ticketing.shared.eventstore import Cause, EventStore

OWNER = "box-office"
HOLD = timedelta(milliseconds=600)


class Crash(Exception):
    """The order replica died after inventory answered, before it recorded anything."""


@dataclass
class CrashingInventory:
    """Inventory as one order replica calls it; now and then the replica dies right after
    inventory did what it was asked."""

    service: InventoryService
    rng: random.Random
    crash_rate: float
    crashes: list[int] = field(default_factory=lambda: [0])

    def _maybe_crash(self) -> None:
        if self.rng.random() < self.crash_rate:
            self.crashes[0] += 1
            raise Crash

    async def reserve_many(
        self, items: list[ReservationItem], *, correlation_id: str | None = None
    ) -> list[ReservationItemResult]:
        answers = await self.service.reserve_many(items, Cause("order-service"))
        self._maybe_crash()
        return answers

    async def release_many(
        self, items: list[ReleaseItem], *, correlation_id: str | None = None
    ) -> list[ReleaseItemResult]:
        answers = await self.service.release_many(items, Cause("order-service"))
        self._maybe_crash()
        return answers


@dataclass
class Lookup:
    service: InventoryService

    async def get_event(self, event_id: uuid.UUID, *, correlation_id: str | None = None) -> Event:
        return await self.service.get_event(event_id)


Handler = Callable[[Sequence[Received]], Awaitable[None]]


class Topic:
    """One topic and its consumer group: the published events of a store, delivered at least
    once, in batches, to one replica or (as in a rebalance) to two at once."""

    def __init__(
        self,
        engine: AsyncEngine,
        store: EventStore,
        types: set[str],
        handlers: list[Handler],
        rng: random.Random,
    ) -> None:
        self.engine, self.store, self.types = engine, store, types
        self.handlers, self.rng = handlers, rng
        self.log: list[Received] = []
        self.seen: set[uuid.UUID] = set()
        self.committed = 0
        self.failures: list[BaseException] = []

    async def fetch(self) -> None:
        # The whole store each time: a position committed late is never skipped.
        async with self.engine.connect() as conn:
            page = await self.store.page(conn, after=0, limit=100_000)
        for recorded in page:
            if recorded.event_type in self.types and recorded.event_id not in self.seen:
                self.seen.add(recorded.event_id)
                self.log.append(Received(recorded.event, recorded.correlation_id))

    async def _alone(self, handle: Handler, item: Received) -> None:
        for _ in range(20):
            try:
                await handle([item])
            except Crash:
                continue
            except Exception as error:  # a message that never goes through: dead-lettered
                self.failures.append(error)
                raise
            return
        raise AssertionError("a message kept crashing")

    async def _as_the_runner_does(self, handle: Handler, batch: list[Received]) -> None:
        try:
            await handle(batch)
        except Exception:  # noqa: BLE001 - as the runner: any failure, each message alone
            if len(batch) == 1:
                await self._alone(handle, batch[0])
                return
            await asyncio.gather(*(self._alone(handle, item) for item in batch))

    async def step(self) -> bool:
        """Deliver one batch; whether there was anything to deliver."""
        await self.fetch()
        if self.committed >= len(self.log):
            return False
        size = self.rng.randint(1, 8)
        batch = self.log[self.committed : self.committed + size]
        size = len(batch)
        if self.committed and self.rng.random() < 0.3:  # redelivered after a lost commit
            batch = [self.rng.choice(self.log[: self.committed]), *batch]
        if self.rng.random() < 0.25:  # two replicas handed the same records at once
            await asyncio.gather(*(self._as_the_runner_does(h, batch) for h in self.handlers))
        else:
            await self._as_the_runner_does(self.rng.choice(self.handlers), batch)
        self.committed += size
        return True


@dataclass
class World:
    rng: random.Random
    inventory: list[InventoryService]
    bookings: list[BookingService]
    orders: list[OrderService]
    engines: dict[str, list[AsyncEngine]]
    to_order: Topic
    to_booking: Topic
    crashes: list[int]


@contextlib.asynccontextmanager
async def world(seed: int) -> AsyncIterator[World]:
    rng = random.Random(seed)
    async with own_databases("booking", "order", "inventory") as settings:
        engines = {s: [create_engine(settings, s) for _ in range(2)] for s in _SERVICES}
        try:
            inventory = [InventoryService(SqlInventoryRecords(e), e) for e in engines["inventory"]]
            crashes = [0]
            orders = [
                OrderService(
                    SqlOrderRecords(e, consumer=ORDER_CONSUMER),
                    CrashingInventory(inv, rng, 0.15, crashes),
                )
                for e, inv in zip(engines["order"], inventory, strict=True)
            ]
            bookings = [
                BookingService(
                    SqlBookingRecords(e, consumer=BOOKING_CONSUMER),
                    Lookup(inv),
                    max_tickets=4,
                    hold_for=HOLD,
                )
                for e, inv in zip(engines["booking"], inventory, strict=True)
            ]
            to_order = Topic(
                engines["booking"][0],
                booking_repo.STORE,
                {"BookingRequested", "BookingCancelled", "HoldExpired"},
                [o.handle_batch for o in orders],
                rng,
            )
            to_booking = Topic(
                engines["order"][0],
                order_repo.STORE,
                {"OrderConfirmed", "OrderRejected", "OrderReleased"},
                [b.apply_saga_answers for b in bookings],
                rng,
            )
            yield World(rng, inventory, bookings, orders, engines, to_order, to_booking, crashes)
        finally:
            for group in engines.values():
                for engine in group:
                    await engine.dispose()


_SERVICES: tuple[Any, ...] = ("booking", "order", "inventory")


async def _until(stop: asyncio.Event, every: float, call: Callable[[], Awaitable[Any]]) -> None:
    while not stop.is_set():
        await call()
        await asyncio.sleep(every)


async def _deliver_until(stop: asyncio.Event, topic: Topic) -> None:
    while not stop.is_set():
        if not await topic.step():
            await asyncio.sleep(0.01)


async def _settle(w: World) -> None:
    """Sweep and deliver until nothing moves: every hold expired or confirmed, every message
    delivered, and no booking waiting for the saga."""
    for _ in range(400):
        for service in w.bookings:
            await service.expire_holds()
        moved = await w.to_order.step() or await w.to_booking.step()
        if moved:
            continue
        async with w.engines["booking"][0].connect() as conn:
            waiting = await conn.scalar(
                text(
                    "SELECT COUNT(*) FROM bookings WHERE status IN ('PENDING','HELD','CANCELLING')"
                )
            )
        if not waiting:
            return
        await asyncio.sleep(0.05)
    async with w.engines["booking"][0].connect() as conn:
        rows = list(
            await conn.execute(
                text(
                    "SELECT b.id, b.status, b.hold, b.cancel_requested, b.expires_at, "
                    "(SELECT GROUP_CONCAT(event_type ORDER BY version) FROM event_store s "
                    "WHERE s.stream_id = b.id) AS h FROM bookings b "
                    "WHERE status IN ('PENDING','HELD','CANCELLING')"
                )
            )
        )
    raise AssertionError(f"the saga never went quiet: {rows[:5]}")


async def _run(seed: int) -> None:
    async with world(seed) as w:
        rng = w.rng
        admin = Cause("admin")
        inv = w.inventory[0]
        venue = await inv.create_venue(VenueCreate("Hall", "1 Road", 1000), admin)
        limited = await inv.create_event(
            EventCreate("Limited", venue.id, 20, "10.00", max_tickets_per_customer=3), admin
        )
        open_sale = await inv.create_event(EventCreate("Open", venue.id, 15, "10.00"), admin)
        events = [limited, open_sale]
        customers = [
            (
                await w.bookings[0].create_customer(
                    CustomerCreate(f"C{n}", f"c{n}.{uuid.uuid4().hex[:8]}@example.com"),
                    Cause(OWNER),
                )
            ).id
            for n in range(5)
        ]
        owner = Caller(OWNER)
        stop = asyncio.Event()

        async def customer_acts(n: int) -> None:
            await asyncio.sleep(rng.uniform(0, 1.5))
            service = rng.choice(w.bookings)
            data = BookingCreate(
                rng.choice(customers),
                rng.choice(events).id,
                rng.randint(1, 2),
                hold=rng.random() < 0.6,
            )
            try:
                accepted = await service.request_booking(
                    data, raw_body=msgspec.json.encode(data), cause=Cause(OWNER)
                )
            except TicketingError:
                return  # sold out as far as booking can see
            what = rng.random()
            await asyncio.sleep(rng.choice([0, 0, rng.uniform(0, 0.8)]))
            actor = rng.choice(w.bookings)
            with contextlib.suppress(TicketingError):
                if what < 0.35:
                    await actor.cancel(accepted.booking_id, owner, Cause(OWNER))
                elif what < 0.7:
                    for _ in range(20):  # a PENDING booking is 409 to retry
                        try:
                            await actor.confirm(accepted.booking_id, owner, Cause(OWNER))
                            break
                        except TicketingError as error:
                            if "PENDING" not in str(error):
                                raise
                            await asyncio.sleep(0.05)
                    if rng.random() < 0.4:
                        await asyncio.sleep(rng.uniform(0, 0.3))
                        await rng.choice(w.bookings).cancel(
                            accepted.booking_id, owner, Cause(OWNER)
                        )

        background = [
            asyncio.create_task(_until(stop, 0.05, s.expire_holds)) for s in w.bookings
        ] + [asyncio.create_task(_deliver_until(stop, t)) for t in (w.to_order, w.to_booking)]
        try:
            await asyncio.gather(*(customer_acts(n) for n in range(70)))
        finally:
            stop.set()
            await asyncio.gather(*background)
        await _settle(w)
        assert not w.to_order.failures, w.to_order.failures
        assert not w.to_booking.failures, w.to_booking.failures
        await _check(w, events, customers)


async def _check(w: World, events: list[Event], customers: list[uuid.UUID]) -> None:
    async with w.engines["booking"][0].connect() as conn:
        rows = list(
            await conn.execute(
                text("SELECT id, customer_id, event_id, ticket_count, status FROM bookings")
            )
        )
    stuck = [row for row in rows if row.status in ("PENDING", "CANCELLING", "HELD")]
    assert not stuck, stuck
    async with w.engines["inventory"][0].connect() as conn:
        left = {
            str(row[0]): row[1]
            for row in await conn.execute(text("SELECT id, left_capacity FROM events"))
        }
        held = {
            str(row.booking_id): row
            for row in await conn.execute(
                text(
                    "SELECT booking_id, ticket_count, released_at FROM reservations "
                    "WHERE status = 'reserved'"
                )
            )
        }
        releases = list(
            await conn.execute(
                text(
                    "SELECT JSON_VALUE(payload, '$.booking_id') AS b, COUNT(*) AS n "
                    "FROM event_store WHERE event_type = 'SeatsReleased' GROUP BY b"
                )
            )
        )
    assert all(row.n == 1 for row in releases), releases
    confirmed = [row for row in rows if row.status == BookingStatus.CONFIRMED.value]
    for event in events:
        seats = sum(r.ticket_count for r in confirmed if str(r.event_id) == str(event.id))
        taken = event.total_capacity - left[str(event.id)]
        assert taken == seats, (event.name, taken, seats)
    for row in rows:
        reservation = held.get(str(row.id))
        holds_now = reservation is not None and reservation.released_at is None
        assert holds_now == (row.status == BookingStatus.CONFIRMED.value), (row, reservation)
    limited = events[0]
    for customer in customers:
        mine = sum(
            r.ticket_count
            for r in confirmed
            if r.customer_id == customer and r.event_id == limited.id
        )
        assert mine <= 3, (customer, mine)
    assert await booking_projections.verify(w.engines["booking"][0]) == []
    assert await order_projections.verify(w.engines["order"][0]) == []
    assert await inventory_projections.verify(w.engines["inventory"][0]) == []
    # The rows already say what the events say: a rebuild writes and deletes nothing.
    for module, service in (
        (booking_projections, "booking"),
        (order_projections, "order"),
        (inventory_projections, "inventory"),
    ):
        rebuilt = await module.rebuild(w.engines[service][0])
        assert not any(rebuilt.written.values()), (service, rebuilt.written)
        assert not any(rebuilt.deleted.values()), (service, rebuilt.deleted)
        assert not rebuilt.broken, (service, rebuilt.broken)
    statuses = {row.status for row in rows}
    assert {"CONFIRMED", "CANCELLED", "EXPIRED"} <= statuses, statuses  # the run did it all
    assert w.crashes[0] > 0


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_mixed_lifecycle_under_redelivery_replicas_and_crashes_accounts_for_every_seat(
    seed: int,
) -> None:
    await _run(seed)
