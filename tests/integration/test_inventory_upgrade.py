"""Upgrading an inventory database of revision 0001 to the event store (0002) loses nothing.

Each test fills a database of its own at revision 0001 the way the 0001 code wrote rows (one
``created_at`` per transaction, a reservation's ``left_capacity`` after it, a refusal's what was
left), upgrades it, and compares the backfilled events with the rows they came from.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import insert, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness import head_of, own_databases
from tests.integration.test_cli_db import run_cli
from ticketing.contracts.inventory import ReservationItem, ReservationOutcome
from ticketing.inventory import projections
from ticketing.inventory.domain import (
    EventScheduled,
    InventoryEvent,
    ReservationRefused,
    SeatsReserved,
    VenueRegistered,
)
from ticketing.inventory.records import SqlInventoryRecords
from ticketing.inventory.repository import STORE
from ticketing.inventory.service import InventoryService
from ticketing.inventory.tables import events, reservations, venues
from ticketing.shared.db import create_engine
from ticketing.shared.eventstore import Cause
from ticketing.shared.migrations import alembic_config
from ticketing.shared.settings import Settings

T0 = datetime(2026, 11, 30, 9, 0, 0, 123456)  # naive UTC, as DATETIME(6) columns hold times

ReservationEvent = SeatsReserved | ReservationRefused


@dataclasses.dataclass(frozen=True)
class Written:
    """A row the 0001 code wrote, as the event it should become, and the row's ``created_at``."""

    event: InventoryEvent
    at: datetime


@dataclasses.dataclass(frozen=True)
class OldInventory:
    """What a 0001 database holds; ``reservations`` in the order they were decided."""

    venues: list[Written]
    events: list[Written]
    reservations: list[Written]
    left: dict[uuid.UUID, int]

    def decided(self, event_id: uuid.UUID) -> list[ReservationEvent]:
        """The reservation events of one event's stream, in the order they were decided."""
        return [
            w.event
            for w in self.reservations
            if isinstance(w.event, SeatsReserved | ReservationRefused)
            and w.event.event_id == event_id
        ]


Request = tuple[uuid.UUID, uuid.UUID, int]  # event id, booking id, ticket count


def decide_as_0001(
    totals: dict[uuid.UUID, int], batches: Sequence[tuple[datetime, Sequence[Request]]]
) -> tuple[list[Written], dict[uuid.UUID, int]]:
    """The rows the 0001 code recorded for ``batches`` (one transaction, one time each), decided
    in request order: reserve when enough seats are left; and the seats left at the end."""
    left = dict(totals)
    written: list[Written] = []
    for at, requests in batches:
        for event_id, booking_id, count in requests:
            fact: ReservationEvent
            if left[event_id] >= count:
                left[event_id] -= count
                fact = SeatsReserved(
                    event_id=event_id,
                    booking_id=booking_id,
                    ticket_count=count,
                    left_capacity=left[event_id],
                )
            else:
                fact = ReservationRefused(
                    event_id=event_id,
                    booking_id=booking_id,
                    ticket_count=count,
                    left_capacity=left[event_id],
                )
            written.append(Written(fact, at))
    return written, left


def booking(rank: int, name: str) -> uuid.UUID:
    """A booking id that sorts as ``rank`` does, both as text and as MariaDB's UUID type (which
    compares the last group first)."""
    tail = uuid.uuid5(uuid.NAMESPACE_URL, name).hex
    return uuid.UUID(f"{rank:02x}{tail[2:20]}{rank:02x}{tail[22:]}")


def entity(name: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"upgrade/{name}")


V1, V2 = entity("venue-1"), entity("venue-2")
E1, E2, E3 = entity("event-1"), entity("event-2"), entity("event-3")


def old_inventory() -> OldInventory:
    """Two venues and three events (one never booked), with single reservations and batches.

    In the batch at T0+20s a refusal comes before the reservations (more seats asked than
    left). Each refusal there that records as many seats as a reservation before it left has a
    booking id sorting after that reservation's: the migration's order is right for these only
    by that (``test_a_refusal_batched_after_...`` has them the other way round)."""
    the_venues = [
        Written(
            VenueRegistered(
                venue_id=V1,
                name='Salle "Pleyel" – Zürich \\ 東京 🎵',
                address='1 O\'Connell St \\ Back "door"',
                total_capacity=100,
            ),
            T0,
        ),
        Written(
            VenueRegistered(venue_id=V2, name="Plain Hall", address="2 Main St", total_capacity=50),
            T0 + timedelta(milliseconds=500),
        ),
    ]
    the_events = [
        Written(
            EventScheduled(
                event_id=E1,
                venue_id=V1,
                name="Rock 'n' Roll \"Night\" \\ ünïcødé 🎸",
                total_capacity=10,
                ticket_price="19.99",
                starts_at=datetime(2027, 3, 14, 19, 30, 0, 123456, tzinfo=UTC),
            ),
            T0 + timedelta(seconds=1),
        ),
        Written(
            EventScheduled(
                event_id=E2,
                venue_id=V1,
                name="Free\tentry\nall night",
                total_capacity=5,
                ticket_price="0.00",
                starts_at=None,
            ),
            T0 + timedelta(seconds=2),
        ),
        Written(
            EventScheduled(
                event_id=E3,
                venue_id=V2,
                name="Nobody came",
                total_capacity=3,
                ticket_price="1234.50",
                starts_at=datetime(2027, 1, 1, tzinfo=UTC),
            ),
            T0 + timedelta(seconds=3),
        ),
    ]
    batches: list[tuple[datetime, list[Request]]] = [
        (T0 + timedelta(seconds=10), [(E1, booking(0x10, "a"), 3)]),
        (
            T0 + timedelta(seconds=20),
            [
                (E1, booking(0xF0, "b"), 8),  # refused: 7 left
                (E1, booking(0x20, "c"), 5),  # 2 left
                (E2, booking(0x30, "d"), 5),  # 0 left
                (E1, booking(0x40, "e"), 4),  # refused: 2 left
                (E2, booking(0x50, "f"), 1),  # refused: 0 left
                (E1, booking(0x60, "g"), 1),  # 1 left
            ],
        ),
        (T0 + timedelta(seconds=30), [(E1, booking(0x05, "h"), 2)]),  # refused: 1 left
    ]
    totals = {E1: 10, E2: 5, E3: 3}
    written, left = decide_as_0001(totals, batches)
    return OldInventory(the_venues, the_events, written, left)


def tied_inventory() -> OldInventory:
    """One batch: a reservation takes the last seats, then a refusal records the 0 left; the
    refusal's booking id sorts before the reservation's."""
    the_venues = [
        Written(VenueRegistered(venue_id=V1, name="Hall", address="Street", total_capacity=10), T0)
    ]
    the_events = [
        Written(
            EventScheduled(
                event_id=E1,
                venue_id=V1,
                name="Sold out",
                total_capacity=4,
                ticket_price="10.00",
                starts_at=None,
            ),
            T0 + timedelta(seconds=1),
        )
    ]
    batch = [(E1, booking(0x90, "takes-all"), 4), (E1, booking(0x10, "too-late"), 1)]
    written, left = decide_as_0001({E1: 4}, [(T0 + timedelta(seconds=5), batch)])
    return OldInventory(the_venues, the_events, written, left)


async def fill_as_0001(engine: AsyncEngine, old: OldInventory) -> None:
    """Write ``old``'s rows into the 0001 tables (no versions, no store)."""
    async with engine.begin() as conn:
        for w in old.venues:
            assert isinstance(w.event, VenueRegistered)
            await conn.execute(
                insert(venues).values(
                    id=w.event.venue_id,
                    name=w.event.name,
                    address=w.event.address,
                    total_capacity=w.event.total_capacity,
                    created_at=w.at,
                )
            )
        for w in old.events:
            assert isinstance(w.event, EventScheduled)
            starts_at = w.event.starts_at
            await conn.execute(
                insert(events).values(
                    id=w.event.event_id,
                    venue_id=w.event.venue_id,
                    name=w.event.name,
                    total_capacity=w.event.total_capacity,
                    left_capacity=old.left[w.event.event_id],
                    ticket_price=w.event.ticket_price,
                    starts_at=None if starts_at is None else starts_at.replace(tzinfo=None),
                    created_at=w.at,
                )
            )
        for w in old.reservations:
            assert isinstance(w.event, SeatsReserved | ReservationRefused)
            await conn.execute(
                insert(reservations).values(
                    booking_id=w.event.booking_id,
                    event_id=w.event.event_id,
                    ticket_count=w.event.ticket_count,
                    status="reserved" if isinstance(w.event, SeatsReserved) else "insufficient",
                    left_capacity=w.event.left_capacity,
                    created_at=w.at,
                )
            )


@pytest.fixture
async def at_0001() -> AsyncIterator[Settings]:
    """Settings of an inventory database of this test's own, migrated to revision 0001 only;
    dropped afterwards. (No OIDC server: nothing here checks a token.)"""
    async with own_databases("inventory", revision="0001") as settings:
        yield settings


@pytest.fixture
async def engine(at_0001: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(at_0001, "inventory")
    try:
        yield engine
    finally:
        await engine.dispose()


async def revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        found: str | None = await conn.scalar(text("SELECT version_num FROM alembic_version"))
        return found


async def upgrade_to_head(settings: Settings) -> None:
    """Alembic's command API on the project's inventory environment (each env.py run has its
    own event loop, hence the thread)."""
    await asyncio.to_thread(command.upgrade, alembic_config(settings, "inventory"), "head")


async def downgrade_to_0001(settings: Settings) -> None:
    await asyncio.to_thread(command.downgrade, alembic_config(settings, "inventory"), "0001")


async def store_rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every row of the event store, in position order, as stored, but for the event ids (new
    ones each time rows are turned into events)."""
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT * FROM event_store ORDER BY position"))
        stored = [dict(row._mapping) for row in rows]
    ids = [row.pop("event_id") for row in stored]
    assert len(set(ids)) == len(ids)
    return stored


async def versions(engine: AsyncEngine, table: str) -> dict[uuid.UUID, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(text(f"SELECT id, version FROM {table}"))
        return {uuid.UUID(str(row.id)): row.version for row in rows}


async def check_backfill(engine: AsyncEngine, old: OldInventory) -> None:
    """The store holds exactly the rows' history, in the order it happened, and the tables
    agree with it."""
    assert await projections.verify(engine) == []
    rows = await store_rows(engine)
    assert len(rows) == len(old.venues) + len(old.events) + len(old.reservations)
    assert all(
        (r["actor"], r["correlation_id"], r["causation_id"], r["schema_version"])
        == ("migration", None, None, 1)
        for r in rows
    )
    times = [r["recorded_at"] for r in rows]
    assert times == sorted(times), "positions follow the recorded times"
    written = {_key(w.event): w.at for w in [*old.venues, *old.events, *old.reservations]}
    async with engine.connect() as conn:
        recorded = await STORE.page(conn, limit=len(rows) + 1)
        for w in old.venues:
            assert isinstance(w.event, VenueRegistered)
            (only,) = await STORE.stream(conn, w.event.venue_id)
            assert (only.stream_type, only.version, only.event) == ("venue", 1, w.event)
        for w in old.events:
            assert isinstance(w.event, EventScheduled)
            stream = await STORE.stream(conn, w.event.event_id)
            assert [r.event for r in stream] == [w.event, *old.decided(w.event.event_id)]
            assert [r.version for r in stream] == list(range(1, len(stream) + 1))
            assert {r.stream_type for r in stream} == {"event"}
            starts_at = stream[0].event.starts_at
            assert starts_at is None or starts_at.utcoffset() == timedelta(0)
    assert [r.recorded_at for r in recorded] == [
        written[_key(r.event)].replace(tzinfo=UTC) for r in recorded
    ]
    venue_ids = [_key(w.event)[1] for w in old.venues]
    event_ids = [_key(w.event)[1] for w in old.events]
    assert await versions(engine, "venues") == dict.fromkeys(venue_ids, 1)
    assert await versions(engine, "events") == {e: 1 + len(old.decided(e)) for e in event_ids}


def _key(event: InventoryEvent) -> tuple[str, uuid.UUID]:
    """The row an event comes from: its table and primary key."""
    match event:
        case VenueRegistered():
            return ("venues", event.venue_id)
        case EventScheduled():
            return ("events", event.event_id)
        case SeatsReserved() | ReservationRefused():
            return ("reservations", event.booking_id)
    raise TypeError(event)


async def test_upgrade_turns_every_row_into_its_event_in_the_order_decided(
    at_0001: Settings, engine: AsyncEngine
) -> None:
    old = old_inventory()
    await fill_as_0001(engine, old)
    await upgrade_to_head(at_0001)
    assert await revision(engine) == head_of("inventory")
    await check_backfill(engine, old)


async def test_reservations_after_the_upgrade_append_the_next_versions(
    at_0001: Settings, engine: AsyncEngine
) -> None:
    old = old_inventory()
    await fill_as_0001(engine, old)
    await upgrade_to_head(at_0001)
    before = await versions(engine, "events")
    new_e1, new_e3 = uuid.uuid4(), uuid.uuid4()
    results = await InventoryService(SqlInventoryRecords(engine), engine).reserve_many(
        [ReservationItem(E1, new_e1, 1), ReservationItem(E3, new_e3, 2)],
        Cause("upgrade-test", correlation_id="after-upgrade"),
    )
    assert [(r.outcome, r.left_capacity) for r in results] == [
        (ReservationOutcome.RESERVED, old.left[E1] - 1),
        (ReservationOutcome.RESERVED, old.left[E3] - 2),
    ]
    async with engine.connect() as conn:
        e1 = await STORE.stream(conn, E1)
        e3 = await STORE.stream(conn, E3)
    assert (e1[-1].version, e1[-1].event.booking_id, e1[-1].actor) == (
        before[E1] + 1,
        new_e1,
        "upgrade-test",
    )
    assert [(r.version, type(r.event)) for r in e3] == [(1, EventScheduled), (2, SeatsReserved)]
    assert await versions(engine, "events") == {**before, E1: before[E1] + 1, E3: 2}
    assert await projections.verify(engine) == []


async def test_downgrade_then_upgrade_again_rebuilds_the_same_store(
    at_0001: Settings, engine: AsyncEngine
) -> None:
    old = old_inventory()
    await fill_as_0001(engine, old)
    await upgrade_to_head(at_0001)
    first = await store_rows(engine)
    await downgrade_to_0001(at_0001)
    assert await revision(engine) == "0001"
    async with engine.connect() as conn:
        tables = set((await conn.execute(text("SHOW TABLES"))).scalars())
        columns = set((await conn.execute(text("SHOW COLUMNS FROM events"))).scalars())
    assert "event_store" not in tables
    assert "version" not in columns
    await upgrade_to_head(at_0001)
    assert await store_rows(engine) == first
    await check_backfill(engine, old)


async def test_a_refusal_batched_after_the_reservation_that_left_its_seats_comes_after_it(
    at_0001: Settings, engine: AsyncEngine
) -> None:
    """Both rows record 0 seats left and share a time; only the reservation can have come
    first (a refusal leaves the count as it was), whatever their booking ids."""
    old = tied_inventory()
    await fill_as_0001(engine, old)
    await upgrade_to_head(at_0001)
    async with engine.connect() as conn:
        stream = await STORE.stream(conn, E1)
    assert [type(r.event) for r in stream] == [EventScheduled, SeatsReserved, ReservationRefused]
    await check_backfill(engine, old)


async def test_projections_verify_agrees_after_the_upgrade_and_names_a_tampered_event(
    at_0001: Settings, engine: AsyncEngine
) -> None:
    await fill_as_0001(engine, old_inventory())
    prefix = at_0001.db_prefix
    upgraded = await asyncio.to_thread(run_cli, "db", "upgrade", "inventory", prefix=prefix)
    assert upgraded.returncode == 0, upgraded.stderr
    agree = await asyncio.to_thread(
        run_cli, "projections", "verify", "--service", "inventory", prefix=prefix
    )
    assert agree.returncode == 0, agree.stdout + agree.stderr
    assert agree.stdout.splitlines() == ["inventory: agree"]

    async with engine.begin() as conn:
        await conn.execute(
            update(events).where(events.c.id == E1).values(left_capacity=events.c.left_capacity - 1)
        )
    tampered = await asyncio.to_thread(
        run_cli, "projections", "verify", "--service", "inventory", prefix=prefix
    )
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    lines = tampered.stdout.splitlines()
    assert lines[-1] == "inventory: 1 difference(s)"
    (line,) = lines[:-1]
    assert line.startswith(f"inventory: events {E1}: the table holds ")
    assert f"left_capacity={old_inventory().left[E1] - 1}" in line
