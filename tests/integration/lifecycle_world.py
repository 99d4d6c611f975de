"""A small world for the lifecycle under faults: two replicas of booking, order and inventory on
databases of their own, topics that deliver each store's events at least once (redelivered, in
batches, to two replicas at once), and an order replica that dies right after inventory answered."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.databases import own_databases
from ticketing.booking import repository as booking_repo
from ticketing.booking.records import SqlBookingRecords
from ticketing.booking.service import BookingService
from ticketing.booking.settlement import CONSUMER as BOOKING_CONSUMER
from ticketing.contracts.inventory import (
    Event,
    ReleaseItem,
    ReleaseItemResult,
    ReservationItem,
    ReservationItemResult,
)
from ticketing.inventory.records import SqlInventoryRecords
from ticketing.inventory.service import InventoryService
from ticketing.order import repository as order_repo
from ticketing.order.repository import SqlOrderRecords
from ticketing.order.service import CONSUMER as ORDER_CONSUMER
from ticketing.order.service import OrderService
from ticketing.shared.db.engine import create_engine
from ticketing.shared.messaging.consumer import Received
from ticketing.shared.store.eventstore import Cause, EventStore

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
        engines = {s: [create_engine(settings, s) for _ in range(2)] for s in SERVICES}
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


SERVICES: tuple[Any, ...] = ("booking", "order", "inventory")


async def repeat_until(
    stop: asyncio.Event, every: float, call: Callable[[], Awaitable[Any]]
) -> None:
    while not stop.is_set():
        await call()
        await asyncio.sleep(every)


async def deliver_until(stop: asyncio.Event, topic: Topic) -> None:
    while not stop.is_set():
        if not await topic.step():
            await asyncio.sleep(0.01)


async def settle(w: World) -> None:
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
