"""An inventory database at revision 0001, filled the way the 0001 code wrote rows (one
``created_at`` per transaction, a reservation's ``left_capacity`` after it, a refusal's what was
left), and the checks that its upgrade to the event store kept them."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.databases import engine_of, own_databases
from ticketing.inventory.domain import (
    EventScheduled,
    InventoryEvent,
    ReservationRefused,
    SeatsReserved,
    VenueRegistered,
)
from ticketing.inventory.tables import events, reservations, venues
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
    async with engine_of(at_0001, "inventory") as engine:
        yield engine


@pytest.fixture
async def old(engine: AsyncEngine) -> OldInventory:
    """The rows of ``old_inventory``, written into this test's database as 0001 wrote them."""
    written = old_inventory()
    await fill_as_0001(engine, written)
    return written
