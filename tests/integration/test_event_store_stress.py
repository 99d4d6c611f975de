"""Hostile interleavings of the event-sourced reservation path, checked with projections.verify."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.helpers import create_event
from ticketing.contracts.inventory import ReservationItem, ReservationOutcome
from ticketing.inventory import holdings, projections
from ticketing.inventory.records import SqlInventoryRecords
from ticketing.inventory.service import InventoryService
from ticketing.shared.store.eventstore import Cause

CAUSE = Cause(actor="stress")


async def test_overlapping_batches_with_repeats_and_cancellations_all_answer_and_stay_consistent(
    inventory: httpx.AsyncClient, inventory_db: AsyncEngine
) -> None:
    rng = random.Random(7)
    event_ids = [uuid.UUID((await create_event(inventory, capacity=25))["id"]) for _ in range(4)]
    wants = {uuid.uuid4(): (rng.choice(event_ids), rng.randint(1, 3)) for _ in range(80)}
    pool = list(wants)
    service = InventoryService(SqlInventoryRecords(inventory_db), inventory_db)

    def batch() -> list[ReservationItem]:
        return [ReservationItem(wants[b][0], b, wants[b][1]) for b in rng.sample(pool, 8)]

    batches = [batch() for _ in range(60)]
    tasks = [asyncio.create_task(service.reserve_many(items, CAUSE)) for items in batches]
    await asyncio.sleep(0.01)
    for task in rng.sample(tasks, 10):
        task.cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    for outcome in outcomes:
        if isinstance(outcome, list):  # every booking id asks for the same seats each time
            assert ReservationOutcome.CONFLICT not in {r.outcome for r in outcome}
    assert await projections.verify(inventory_db) == []
    async with inventory_db.connect() as conn:
        for event_id in event_ids:
            versions = [
                row[0]
                for row in await conn.execute(
                    text("SELECT version FROM event_store WHERE stream_id = :s ORDER BY version"),
                    {"s": str(event_id)},
                )
            ]
            assert versions == list(range(1, len(versions) + 1))
            reserved = await conn.scalar(
                text(
                    "SELECT COALESCE(SUM(ticket_count), 0) FROM reservations "
                    "WHERE event_id = :e AND status = 'reserved'"
                ),
                {"e": str(event_id)},
            )
            left = await conn.scalar(
                text("SELECT left_capacity FROM events WHERE id = :e"), {"e": str(event_id)}
            )
            assert left == 25 - reserved
            assert left >= 0
    # Every batch holds only valid, repeatable requests: none may end in an error (a 500).
    assert Counter(type(e).__name__ for e in errors) == {"CancelledError": 10}


async def test_a_batch_whose_booking_ids_keep_arriving_concurrently_still_gets_its_answers(
    inventory: httpx.AsyncClient, inventory_db: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each attempt of a batch reads the reservations recorded so far, then waits for the event's
    lock; a concurrent request for another of its booking ids (a redelivery, the same seats)
    commits in that wait. Every such request is a repeat the batch should answer as one, but each
    one costs an attempt, and after DUPLICATE_RETRIES the batch fails with the duplicate key."""
    event_id = uuid.UUID((await create_event(inventory, capacity=50))["id"])
    items = [ReservationItem(event_id, uuid.uuid4(), 1) for _ in range(6)]
    service = InventoryService(SqlInventoryRecords(inventory_db), inventory_db)
    lock_states = holdings.lock_states
    arriving = iter(items)
    inside = False

    async def lock_after_a_concurrent_repeat(conn: Any, event_ids: Any) -> Any:
        nonlocal inside
        if not inside:
            inside = True
            try:
                await service.reserve_many([next(arriving)], CAUSE)
            finally:
                inside = False
        return await lock_states(conn, event_ids)

    monkeypatch.setattr(holdings, "lock_states", lock_after_a_concurrent_repeat)
    results = await service.reserve_many(items, CAUSE)
    assert [r.outcome for r in results] == [ReservationOutcome.RESERVED] * len(items)
    assert await projections.verify(inventory_db) == []
