"""``projections verify|rebuild`` with limits per customer and releases: the rows a rebuild
writes from the events are the rows the service wrote, column for column."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.cli_process import run_cli
from tests.integration.own_inventory import CAUSE, engine, sale, settings
from ticketing.contracts.inventory import (
    ReleaseItem,
    ReservationItem,
    ReservationOutcome,
)
from ticketing.inventory import projections
from ticketing.inventory.records import SqlInventoryRecords
from ticketing.inventory.service import InventoryService
from ticketing.shared.settings import Settings

__all__ = ["engine", "settings"]  # fixtures: an inventory database of the test's own


async def rows(engine: AsyncEngine) -> dict[str, list[dict[str, Any]]]:
    """Every row of the events and reservations tables, every column."""
    async with engine.connect() as conn:
        return {
            table: [
                dict(row._mapping)
                for row in await conn.execute(text(f"SELECT * FROM {table} ORDER BY {key}"))
            ]
            for table, key in (("events", "id"), ("reservations", "booking_id"))
        }


async def test_a_rebuild_from_the_events_writes_the_rows_the_service_wrote(
    engine: AsyncEngine, settings: Settings
) -> None:
    service = InventoryService(SqlInventoryRecords(engine), engine)
    limited, free = await sale(service, 10, limit=2), await sale(service, 3, limit=None)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    items = [
        ReservationItem(limited, uuid.uuid4(), 2, customer_id=alice),
        ReservationItem(limited, uuid.uuid4(), 1, customer_id=alice),  # over the limit
        ReservationItem(limited, uuid.uuid4(), 1, customer_id=bob),
        ReservationItem(free, uuid.uuid4(), 3),
        ReservationItem(free, uuid.uuid4(), 1, customer_id=bob),  # insufficient
    ]
    outcomes = [r.outcome for r in await service.reserve_many(items, CAUSE)]
    assert outcomes[1] is ReservationOutcome.OVER_LIMIT
    await service.release_many(
        [
            ReleaseItem(limited, items[0].booking_id, "cancelled"),
            ReleaseItem(free, items[3].booking_id, "expired"),
        ],
        CAUSE,
    )
    assert await projections.verify(engine) == []
    written = await rows(engine)
    assert [r["release_reason"] for r in written["reservations"]].count(None) == 3

    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM reservations"))
        await conn.execute(
            text(
                "UPDATE events SET left_capacity = total_capacity, version = 1,"
                " max_tickets_per_customer = NULL"
            )
        )
    assert len(await projections.verify(engine)) == 7  # two events, five reservations
    cli = await asyncio.to_thread(
        run_cli, "projections", "rebuild", "--service", "inventory", prefix=settings.db_prefix
    )
    assert cli.returncode == 0, cli.stderr
    assert await rows(engine) == written
    assert await projections.verify(engine) == []


@pytest.mark.parametrize(
    ("change", "difference"),
    [
        (
            "UPDATE reservations SET released_at = NULL, release_reason = NULL,"
            " release_left_capacity = NULL WHERE booking_id = :b",
            "release=None",
        ),
        ("UPDATE reservations SET customer_id = NULL WHERE booking_id = :b", "customer_id=None"),
        (
            "UPDATE events SET max_tickets_per_customer = 9 WHERE id = :e",
            "max_tickets_per_customer=9",
        ),
    ],
)
async def test_verify_names_a_release_a_customer_or_a_limit_the_events_do_not_say(
    engine: AsyncEngine, change: str, difference: str
) -> None:
    service = InventoryService(SqlInventoryRecords(engine), engine)
    event_id = await sale(service, 5, limit=4)
    booking = uuid.uuid4()
    await service.reserve_many(
        [ReservationItem(event_id, booking, 2, customer_id=uuid.uuid4())], CAUSE
    )
    await service.release_many([ReleaseItem(event_id, booking, "expired")], CAUSE)
    async with engine.begin() as conn:
        await conn.execute(text(change), {"b": str(booking), "e": str(event_id)})
    (problem,) = await projections.verify(engine)
    assert difference in problem
    done = await projections.rebuild(engine)
    assert sum(done.written.values()) == 1
    assert await projections.verify(engine) == []


async def test_rebuilds_while_customers_reserve_and_release_lose_and_double_nothing(
    engine: AsyncEngine,
) -> None:
    service = InventoryService(SqlInventoryRecords(engine), engine)
    rng = random.Random(5)
    events = [await sale(service, 30, limit=4) for _ in range(2)]
    customers = [uuid.uuid4() for _ in range(5)]
    stop = asyncio.Event()

    async def buyers() -> None:
        for _ in range(20):
            items = [
                ReservationItem(rng.choice(events), uuid.uuid4(), rng.randint(1, 2), customer_id=c)
                for c in rng.sample(customers, 3)
            ]
            results = await service.reserve_many(items, CAUSE)
            await service.release_many(
                [
                    ReleaseItem(item.event_id, item.booking_id, "cancelled")
                    for item, result in zip(items, results, strict=True)
                    if result.outcome is ReservationOutcome.RESERVED and rng.random() < 0.5
                ]
                or [ReleaseItem(events[0], uuid.uuid4(), "cancelled")],
                CAUSE,
            )
        stop.set()

    async def rebuilds() -> None:
        while not stop.is_set():
            await projections.rebuild(engine)

    await asyncio.gather(buyers(), rebuilds())
    assert await projections.verify(engine) == []
    async with engine.connect() as conn:
        for event_id in events:
            held = await conn.scalar(
                text(
                    "SELECT COALESCE(SUM(ticket_count), 0) FROM reservations WHERE event_id = :e"
                    " AND status = 'reserved' AND released_at IS NULL"
                ),
                {"e": str(event_id)},
            )
            left = await conn.scalar(
                text("SELECT left_capacity FROM events WHERE id = :e"), {"e": str(event_id)}
            )
            assert left == 30 - held
