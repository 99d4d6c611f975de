"""A booking database at revision 0002, filled the way the 0002 code wrote rows (a booking and its
BookingRequested outbox row in one transaction, the settlement an update of the row, published
outbox rows purged after a while), and the checks that its upgrade to the event store kept them."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from alembic import command
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.databases import engine_of, own_databases, run_alembic, tables
from ticketing.booking import projections
from ticketing.booking.domain import BookingConfirmed, BookingRejected, CustomerRegistered
from ticketing.booking.repository import STORE
from ticketing.booking.tables import bookings, event_store
from ticketing.contracts.events import BOOKINGS_TOPIC, BookingRequested
from ticketing.shared.settings import Settings

T0 = datetime(2026, 12, 1, 9, 0, 0, 123456)  # naive UTC, as DATETIME(6) columns hold times


@dataclasses.dataclass(frozen=True)
class OldBooking:
    """A booking as the 0002 code left it: its row, its outbox row (None once purged)."""

    requested: BookingRequested
    status: str
    order_id: uuid.UUID | None
    reason: str | None
    settled_at: datetime | None
    outbox: str  # "pending", "published" or "purged"
    correlation_id: str | None = None


def requested(customer_id: uuid.UUID, minutes: int, price: str) -> BookingRequested:
    return BookingRequested(
        message_id=uuid.uuid4(),
        booking_id=uuid.uuid4(),
        customer_id=customer_id,
        event_id=uuid.uuid4(),
        ticket_count=2,
        unit_price=price,
        total_price=str(2 * float(price)) + "0",
        requested_at=(T0 + timedelta(minutes=minutes)).replace(tzinfo=UTC),
    )


CUSTOMERS = [
    (uuid.uuid4(), "Ada", "ada@example.com", "1 Analytical Way"),
    (uuid.uuid4(), 'Ünal "Quote" O\'Brien', "unal@example.com", None),
]


def old_bookings() -> list[OldBooking]:
    ada, unal = CUSTOMERS[0][0], CUSTOMERS[1][0]
    return [
        OldBooking(requested(ada, 1, "12.50"), "PENDING", None, None, None, "pending", "trace-a"),
        OldBooking(
            requested(unal, 2, "10.00"),
            "CONFIRMED",
            uuid.uuid4(),
            None,
            T0 + timedelta(minutes=2, seconds=1),
            "published",
            "x" * 200,  # longer than the store's ids: kept as no correlation
        ),
        OldBooking(
            requested(ada, 3, "7.00"),
            "REJECTED",
            None,
            "insufficient_capacity",
            T0 + timedelta(minutes=3, seconds=1),
            "purged",
        ),
        OldBooking(
            requested(unal, 4, "3.00"),
            "CONFIRMED",
            uuid.uuid4(),
            None,
            T0 + timedelta(minutes=4, seconds=1),
            "purged",
        ),
    ]


def naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


async def fill_as_0002(engine: AsyncEngine, old: list[OldBooking]) -> None:
    async with engine.begin() as conn:
        for customer_id, name, email, address in CUSTOMERS:
            await conn.execute(
                text(
                    "INSERT INTO customers (id, name, email, address, created_at) "
                    "VALUES (:id, :name, :email, :address, :at)"
                ),
                {
                    "id": str(customer_id),
                    "name": name,
                    "email": email,
                    "address": address,
                    "at": T0,
                },
            )
        for item in old:
            event = item.requested
            created = naive(event.requested_at)
            await conn.execute(
                text(
                    "INSERT INTO bookings (id, customer_id, event_id, ticket_count, unit_price, "
                    "total_price, status, order_id, reason, created_at, updated_at) VALUES "
                    "(:id, :c, :e, :n, :unit, :total, :status, :order, :reason, :at, :updated)"
                ),
                {
                    "id": str(event.booking_id),
                    "c": str(event.customer_id),
                    "e": str(event.event_id),
                    "n": event.ticket_count,
                    "unit": event.unit_price,
                    "total": event.total_price,
                    "status": item.status,
                    "order": None if item.order_id is None else str(item.order_id),
                    "reason": item.reason,
                    "at": created,
                    "updated": item.settled_at or created,
                },
            )
            if item.outbox == "purged":
                continue
            headers = {
                "event_type": "BookingRequested",
                "message_id": str(event.message_id),
                "correlation_id": item.correlation_id or str(event.message_id),
                "content-type": "application/json",
            }
            await conn.execute(
                text(
                    "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, topic, "
                    "message_key, event_type, payload, headers, created_at, published_at) "
                    "VALUES (:id, 'booking', :agg, :topic, :key, 'BookingRequested', :payload, "
                    ":headers, :at, :published)"
                ),
                {
                    "id": str(event.message_id),
                    "agg": str(event.booking_id),
                    "topic": BOOKINGS_TOPIC,
                    "key": str(event.event_id),
                    "payload": msgspec.json.encode(event).decode(),
                    "headers": json.dumps(headers),
                    "at": created,
                    "published": None if item.outbox == "pending" else created,
                },
            )


@pytest.fixture
async def at_0002() -> AsyncIterator[Settings]:
    """Settings of a booking database of this test's own at revision 0002; dropped afterwards."""
    async with own_databases("booking", revision="0002") as settings:
        yield settings


@pytest.fixture
async def engine(at_0002: Settings) -> AsyncIterator[AsyncEngine]:
    async with engine_of(at_0002, "booking") as engine:
        yield engine


@pytest.fixture
async def old(engine: AsyncEngine) -> list[OldBooking]:
    """The bookings of ``old_bookings``, written into this test's database as 0002 wrote them."""
    written = old_bookings()
    await fill_as_0002(engine, written)
    return written


async def migrate(settings: Settings, to: str) -> None:
    step = command.downgrade if to == "0002" else command.upgrade
    await run_alembic(settings, "booking", step, to)


async def store_rows(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return list(await conn.execute(event_store.select().order_by(event_store.c.position)))


def expected_correlation(item: OldBooking) -> str | None:
    """The correlation id kept: the outbox row's header (the message id when the request had
    none), unless it is longer than the store's ids; none when the row was purged."""
    if item.outbox == "purged":
        return None
    if item.correlation_id is None:
        return str(item.requested.message_id)
    return item.correlation_id if len(item.correlation_id) <= 128 else None


async def check_backfill(engine: AsyncEngine, old: list[OldBooking]) -> None:
    assert "outbox" not in await tables(engine)
    rows = await store_rows(engine)
    async with engine.connect() as conn:
        decoded = {(r.stream_id, r.version): r for r in await STORE.page(conn, after=0, limit=100)}
        query = select(bookings.c.id, bookings.c.version)
        versions = {row.id: row.version for row in await conn.execute(query)}
    by_stream = {(row.stream_id, row.version): row for row in rows}
    assert len(rows) == len(CUSTOMERS) + len(old) + sum(b.status != "PENDING" for b in old)
    for customer_id, name, email, address in CUSTOMERS:
        row = by_stream[(customer_id, 1)]
        assert (row.event_type, row.actor, row.topic) == ("CustomerRegistered", "migration", None)
        assert row.published_at == row.recorded_at == T0  # internal: never waits for the relay
        assert decoded[(customer_id, 1)].event == CustomerRegistered(
            customer_id=customer_id,
            name=name,
            email=email,
            address=address,
            registered_at=T0.replace(tzinfo=UTC),
        )
    for item in old:
        event = item.requested
        first = by_stream[(event.booking_id, 1)]
        assert (first.event_type, first.topic, first.message_key) == (
            "BookingRequested",
            BOOKINGS_TOPIC,
            str(event.event_id),
        )
        assert first.recorded_at == naive(event.requested_at)
        stored = decoded[(event.booking_id, 1)].event
        assert stored.message_id == first.event_id  # a published event's id is its message id
        if item.outbox == "purged":
            assert stored == dataclasses.replace(event, message_id=first.event_id)
            assert first.published_at == first.recorded_at
        else:
            assert stored == event
            assert first.event_id == event.message_id
            assert first.published_at == (None if item.outbox == "pending" else first.recorded_at)
        assert first.correlation_id == expected_correlation(item)
        if item.status == "PENDING":
            assert (event.booking_id, 2) not in by_stream
            assert versions[event.booking_id] == 1
            continue
        second = by_stream[(event.booking_id, 2)]
        assert item.settled_at is not None
        assert second.recorded_at == item.settled_at
        assert second.position > first.position
        assert second.published_at is not None
        assert second.topic is None
        settled_at = item.settled_at.replace(tzinfo=UTC)
        if item.status == "CONFIRMED":
            assert item.order_id is not None
            expected: Any = BookingConfirmed(
                booking_id=event.booking_id, order_id=item.order_id, confirmed_at=settled_at
            )
        else:
            assert item.reason is not None
            expected = BookingRejected(
                booking_id=event.booking_id, reason=item.reason, rejected_at=settled_at
            )
        assert decoded[(event.booking_id, 2)].event == expected
        assert versions[event.booking_id] == 2
    assert [row.recorded_at for row in rows] == sorted(row.recorded_at for row in rows)
    assert await projections.verify(engine) == []
