"""Limits per customer and releases under real concurrency on MariaDB: two inventory replicas
(two services, each with its own engine and pool) deciding at once."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.databases import own_databases
from ticketing.contracts.inventory import (
    EventCreate,
    ReleaseItem,
    ReleaseItemResult,
    ReleaseOutcome,
    ReservationItem,
    ReservationItemResult,
    ReservationOutcome,
    VenueCreate,
)
from ticketing.inventory import projections
from ticketing.inventory.domain import SeatsReleased, SeatsReserved
from ticketing.inventory.records import SqlInventoryRecords
from ticketing.inventory.repository import STORE
from ticketing.inventory.service import InventoryService
from ticketing.shared.db.engine import create_engine
from ticketing.shared.store.eventstore import Cause

CAUSE = Cause(actor="order")


@pytest.fixture(scope="module")
async def replicas() -> AsyncIterator[list[tuple[InventoryService, AsyncEngine]]]:
    """Two inventory services on one database of this module's own, each with its own engine."""
    async with own_databases("inventory") as settings:
        engines = [create_engine(settings, "inventory") for _ in range(2)]
        try:
            yield [(InventoryService(SqlInventoryRecords(e), e), e) for e in engines]
        finally:
            for engine in engines:
                await engine.dispose()


async def sale(service: InventoryService, capacity: int, limit: int | None) -> uuid.UUID:
    venue = await service.create_venue(VenueCreate("Hall", "1 Road", capacity), CAUSE)
    data = EventCreate("Gig", venue.id, capacity, "5.00", max_tickets_per_customer=limit)
    return (await service.create_event(data, CAUSE)).id


async def held_throughout(engine: AsyncEngine, event_id: uuid.UUID) -> list[dict[Any, int]]:
    """The seats each customer held after each event of the stream, in version order."""
    async with engine.connect() as conn:
        stream = await STORE.stream(conn, event_id)
    assert [r.version for r in stream] == list(range(1, len(stream) + 1))
    held: dict[Any, int] = {}
    owner: dict[uuid.UUID, tuple[Any, int]] = {}
    after: list[dict[Any, int]] = []
    for recorded in stream:
        event = recorded.event
        if isinstance(event, SeatsReserved):
            owner[event.booking_id] = (event.customer_id, event.ticket_count)
            held[event.customer_id] = held.get(event.customer_id, 0) + event.ticket_count
        elif isinstance(event, SeatsReleased):
            customer, count = owner.pop(event.booking_id)
            held[customer] -= count
        after.append(dict(held))
    return after


async def test_fifty_concurrent_requests_of_one_customer_never_get_past_the_limit(
    replicas: list[tuple[InventoryService, AsyncEngine]],
) -> None:
    (first, engine), (second, _) = replicas
    event_id = await sale(first, capacity=100, limit=4)
    customer = uuid.uuid4()
    counts = [1 + i % 2 for i in range(50)]  # ones and twos
    requests = [
        (first if i % 2 else second).reserve_many(
            [ReservationItem(event_id, uuid.uuid4(), count, customer_id=customer)], CAUSE
        )
        for i, count in enumerate(counts)
    ]
    answers: list[list[ReservationItemResult]] = await asyncio.gather(*requests)
    outcomes = [result.outcome for (result,) in answers]
    reserved = sum(
        count
        for count, outcome in zip(counts, outcomes, strict=True)
        if outcome is ReservationOutcome.RESERVED
    )
    assert set(outcomes) == {ReservationOutcome.RESERVED, ReservationOutcome.OVER_LIMIT}
    assert 3 <= reserved <= 4  # a 2 refused at 3 leaves room for a 1 only
    event = await first.get_event(event_id)
    assert event.left_capacity == 100 - reserved
    assert all(held.get(customer, 0) <= 4 for held in await held_throughout(engine, event_id))
    assert await projections.verify(engine) == []


async def test_concurrent_releases_of_one_booking_release_it_once(
    replicas: list[tuple[InventoryService, AsyncEngine]],
) -> None:
    (first, engine), (second, _) = replicas
    event_id = await sale(first, capacity=10, limit=None)
    booking = uuid.uuid4()
    await first.reserve_many([ReservationItem(event_id, booking, 3)], CAUSE)
    others = [ReservationItem(event_id, uuid.uuid4(), 1) for _ in range(4)]
    releases = [
        (first if i % 2 else second).release_many(
            [ReleaseItem(event_id, booking, "expired" if i % 3 else "cancelled")], CAUSE
        )
        for i in range(20)
    ]
    reserves = [second.reserve_many([item], CAUSE) for item in others]
    done, _ = await asyncio.gather(asyncio.gather(*releases), asyncio.gather(*reserves))
    answers = [result for (result,) in done]
    result = answers[0]
    assert all(answer == result for answer in answers)  # every one answers the one release
    assert (result.booking_id, result.outcome, result.ticket_count) == (
        booking,
        ReleaseOutcome.RELEASED,
        3,
    )
    async with engine.connect() as conn:
        stream = await STORE.stream(conn, event_id)
    released = [r.event for r in stream if isinstance(r.event, SeatsReleased)]
    assert len(released) == 1
    assert released[0].left_capacity == result.left_capacity
    assert (await first.get_event(event_id)).left_capacity == 10 - 4
    assert await projections.verify(engine) == []


async def test_releases_racing_new_requests_of_the_same_customer_keep_the_limit(
    replicas: list[tuple[InventoryService, AsyncEngine]],
) -> None:
    """While a customer's held bookings are released, new requests of the same customer come
    in on both replicas: after every event of the stream the customer holds at most the
    limit, and every seat released is taken at most once more."""
    (first, engine), (second, _) = replicas
    rng = random.Random(19)
    event_id = await sale(first, capacity=50, limit=3)
    customer = uuid.uuid4()
    held = [ReservationItem(event_id, uuid.uuid4(), 1, customer_id=customer) for _ in range(3)]
    await first.reserve_many(held, CAUSE)
    news = [ReservationItem(event_id, uuid.uuid4(), 1, customer_id=customer) for _ in range(30)]
    calls: list[Any] = [
        rng.choice((first, second)).release_many(
            [ReleaseItem(event_id, item.booking_id, "cancelled")], CAUSE
        )
        for item in held
    ] + [rng.choice((first, second)).reserve_many([item], CAUSE) for item in news]
    rng.shuffle(calls)
    results: Sequence[list[ReservationItemResult | ReleaseItemResult]] = await asyncio.gather(
        *calls
    )
    released = [r for (r,) in results if isinstance(r, ReleaseItemResult)]
    reserved = [
        r
        for (r,) in results
        if isinstance(r, ReservationItemResult) and r.outcome.value == "reserved"
    ]
    assert [r.outcome for r in released] == [ReleaseOutcome.RELEASED] * 3
    assert 1 <= len(reserved) <= 3
    assert all(h.get(customer, 0) <= 3 for h in await held_throughout(engine, event_id))
    assert (await first.get_event(event_id)).left_capacity == 50 - len(reserved)
    assert await projections.verify(engine) == []
