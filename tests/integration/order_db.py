"""Order's database of a test's own, an inventory stand-in that answers as the real one does, and
readers of what order recorded."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.databases import order_records as records
from tests.harness.databases import own_databases
from ticketing.contracts.events import (
    BookingRequested,
)
from ticketing.contracts.inventory import (
    ReleaseItem,
    ReleaseItemResult,
    ReleaseOutcome,
    ReservationItem,
    ReservationItemResult,
    ReservationOutcome,
)
from ticketing.order.inventory_client import InventoryClient
from ticketing.order.service import OrderService
from ticketing.order.tables import event_store, orders
from ticketing.shared.db.engine import create_engine
from ticketing.shared.messaging.consumer import Received
from ticketing.shared.settings import Settings


class Inventory(InventoryClient):
    """Inventory as the saga sees it, answering each booking id as told (reserved unless told
    otherwise) and releasing the seats it reserved (or was given as ``held``), and counting
    the calls."""

    def __init__(
        self,
        answers: dict[uuid.UUID, ReservationOutcome] | None = None,
        *,
        held: dict[uuid.UUID, int] | None = None,
    ) -> None:
        self.answers = answers or {}
        self.held = dict(held or {})  # booking id -> seats reserved
        self.calls: list[list[ReservationItem]] = []
        self.release_calls: list[list[ReleaseItem]] = []

    async def reserve_many(
        self, items: list[ReservationItem], *, correlation_id: str | None = None
    ) -> list[ReservationItemResult]:
        self.calls.append(items)
        answers = []
        for item in items:
            outcome = self.answers.get(item.booking_id, ReservationOutcome.RESERVED)
            if outcome is ReservationOutcome.RESERVED:
                self.held.setdefault(item.booking_id, item.ticket_count)
            answers.append(ReservationItemResult(item.booking_id, outcome))
        return answers

    async def release_many(
        self, items: list[ReleaseItem], *, correlation_id: str | None = None
    ) -> list[ReleaseItemResult]:
        self.release_calls.append(items)
        return [
            ReleaseItemResult(item.booking_id, ReleaseOutcome.RELEASED, self.held[item.booking_id])
            if item.booking_id in self.held
            else ReleaseItemResult(item.booking_id, ReleaseOutcome.NOT_RESERVED)
            for item in items
        ]


def requested(*, ticket_count: int = 2, total_price: str = "50.00") -> BookingRequested:
    return BookingRequested(
        message_id=uuid.uuid4(),
        booking_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        ticket_count=ticket_count,
        unit_price="25.00",
        total_price=total_price,
        requested_at=datetime.now(UTC),
    )


@pytest.fixture
async def order_db() -> AsyncIterator[Settings]:
    """Settings of an order database of this test's own, at head; dropped afterwards."""
    async with own_databases("order") as settings:
        yield settings


@pytest.fixture
async def engine(order_db: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(order_db, "order")
    try:
        yield engine
    finally:
        await engine.dispose()


async def stored(engine: AsyncEngine, booking_ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    """The store's rows of ``booking_ids``' streams, in position order."""
    query = (
        select(event_store)
        .where(event_store.c.stream_id.in_(booking_ids))
        .order_by(event_store.c.position)
    )
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def order_rows(engine: AsyncEngine) -> dict[uuid.UUID, dict[str, Any]]:
    async with engine.connect() as conn:
        return {row.booking_id: dict(row._mapping) for row in await conn.execute(select(orders))}


async def count(engine: AsyncEngine, table: Any) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


async def settle(engine: AsyncEngine, count: int, *, refused_every: int = 3) -> list[uuid.UUID]:
    """``count`` bookings settled through the saga (every ``refused_every``-th rejected); their
    ids."""
    messages = [requested() for _ in range(count)]
    answers = {
        m.booking_id: ReservationOutcome.INSUFFICIENT
        for i, m in enumerate(messages)
        if i % refused_every == 0
    }
    await OrderService(records(engine), Inventory(answers)).handle_batch(
        [Received(m, None) for m in messages]
    )
    return [m.booking_id for m in messages]


async def tamper(engine: AsyncEngine, statement: str, **params: object) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(statement), {k: str(v) for k, v in params.items()})
