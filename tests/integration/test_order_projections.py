"""``order.projections``: verify names every ``orders`` row its events disagree with, rebuild
puts them back (and deletes rows no stream accounts for), while the saga goes on."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.order_db import (
    engine,
    order_db,
    order_rows,
    settle,
    tamper,
)
from ticketing.order import projections
from ticketing.order.projections import TABLES

__all__ = ["engine", "order_db"]  # fixtures: an order database of the test's own


async def test_rebuild_puts_back_every_row_the_events_disagree_with(engine: AsyncEngine) -> None:
    bookings = await settle(engine, 9)
    assert await projections.verify(engine) == []
    before = await order_rows(engine)
    rejected, confirmed, lost, renamed = bookings[0], bookings[1], bookings[2], bookings[3]
    stray = uuid.uuid4()
    await tamper(
        engine,
        "UPDATE orders SET status = 'CONFIRMED', ticket_count = 1, total_price = 5.00 "
        "WHERE booking_id = :b",
        b=rejected,
    )
    await tamper(engine, "UPDATE orders SET total_price = 1.00 WHERE booking_id = :b", b=confirmed)
    await tamper(engine, "DELETE FROM orders WHERE booking_id = :b", b=lost)
    await tamper(engine, "UPDATE orders SET id = UUID() WHERE booking_id = :b", b=renamed)
    await tamper(
        engine,
        "INSERT INTO orders VALUES (UUID(), :b, UUID(), 1, 10.00, 'CONFIRMED', NULL, NOW(6))",
        b=stray,
    )

    problems = await projections.verify(engine)
    assert len(problems) == 5, problems
    by_booking = {p.split()[1].rstrip(":"): p for p in problems}
    assert by_booking[str(rejected)].startswith(f"orders {rejected}: the table holds ")
    assert (
        "the events say ticket_count=None, total_price=None, status=REJECTED"
        in by_booking[str(rejected)]
    )
    assert "total_price=1.00" in by_booking[str(confirmed)]
    assert by_booking[str(lost)].startswith(f"orders {lost}: missing; the events say id=")
    assert by_booking[str(stray)].endswith("has no events")

    done = await projections.rebuild(engine)
    assert done.written == {"orders": 4}
    assert done.deleted == {"orders": 1}
    assert done.broken == []
    assert done.lines() == ["orders: 4 written, 1 deleted"]
    assert await projections.verify(engine) == []
    assert await order_rows(engine) == before
    again = await projections.rebuild(engine)
    assert (again.written, again.deleted) == (
        dict.fromkeys(TABLES, 0),
        dict.fromkeys(TABLES, 0),
    )


async def test_a_rebuild_of_empty_tables_gives_the_same_table(engine: AsyncEngine) -> None:
    """A rejected order's id is its event's, and every row's time its event's: the rows the
    saga wrote are exactly the ones a rebuild writes."""
    await settle(engine, 7, refused_every=2)
    before = await order_rows(engine)
    await tamper(engine, "DELETE FROM orders")
    done = await projections.rebuild(engine)
    assert done.written == {"orders": 7}
    assert await order_rows(engine) == before


async def test_a_stream_that_cannot_be_folded_is_named_and_left_as_it_is(
    engine: AsyncEngine,
) -> None:
    """A second outcome for a booking cannot be (the saga never appends one): verify and
    rebuild name it, and rebuild leaves its row."""
    broken, fine = await settle(engine, 2, refused_every=5)
    await tamper(
        engine,
        "INSERT INTO event_store (event_id, stream_id, stream_type, version, event_type, "
        "schema_version, payload, actor, recorded_at, topic, message_key, published_at) "
        "SELECT UUID(), stream_id, stream_type, 2, event_type, schema_version, payload, "
        "'tamper', recorded_at, NULL, NULL, recorded_at FROM event_store WHERE stream_id = :b",
        b=broken,
    )
    await tamper(engine, "UPDATE orders SET ticket_count = 9")
    problems = await projections.verify(engine)
    assert any(
        p.startswith(f"stream {broken} cannot be folded at position ") and "already has" in p
        for p in problems
    ), problems
    done = await projections.rebuild(engine)
    assert done.written == {"orders": 1}  # the other booking's row
    (problem,) = done.broken
    assert problem.startswith(f"stream {broken} cannot be folded at position ")
    assert problem.endswith("already has its outcome (REJECTED): OrderRejected cannot follow it")
    assert done.lines()[-1] == f"not rebuilt: {done.broken[0]}"
    rows = await order_rows(engine)
    assert rows[broken]["ticket_count"] == 9
    assert rows[fine]["ticket_count"] == 2


async def test_an_outcome_recorded_while_a_rebuild_runs_keeps_its_row(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rebuilds over and over while the saga records outcomes: no row is lost or deleted, and
    the table agrees with the events at the end."""
    stop = asyncio.Event()

    async def saga() -> None:
        for _ in range(15):
            await settle(engine, 5)
        stop.set()

    async def rebuilds() -> int:
        count = 0
        while not stop.is_set():
            done = await projections.rebuild(engine)
            assert done.deleted == {"orders": 0}
            assert done.written == {"orders": 0}
            count += 1
        return count

    monkeypatch.setattr(projections, "PAGE", 7)  # many pages, so that writes fall between them
    _, rebuilt = await asyncio.gather(saga(), rebuilds())
    assert rebuilt > 0
    assert await projections.verify(engine) == []
    assert len(await order_rows(engine)) == 75
