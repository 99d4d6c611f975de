"""Order's projections after releases: verify and rebuild put back released rows, a release that
cannot follow its stream is named, and releases committed while a rebuild runs keep their rows."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.databases import order_records as records
from tests.integration.order_db import (
    Inventory,
    engine,
    order_db,
    order_rows,
    requested,
    settle,
    tamper,
)
from tests.unit.order_saga import cancelled, expired
from ticketing.order import projections
from ticketing.order.repository import read_streams
from ticketing.order.service import OrderService
from ticketing.shared.db.engine import run_transaction
from ticketing.shared.messaging.consumer import Received

__all__ = ["engine", "order_db"]  # fixtures: an order database of the test's own


async def settle_and_release(engine: AsyncEngine, count: int) -> tuple[list[uuid.UUID], Inventory]:
    """``count`` bookings confirmed, every other one then released; their ids."""
    inventory = Inventory()
    service = OrderService(records(engine), inventory)
    messages = [requested() for _ in range(count)]
    await service.handle_batch([Received(m, None) for m in messages])
    releases = [cancelled(m) if n % 4 else expired(m) for n, m in enumerate(messages) if n % 2 == 0]
    await service.handle_batch([Received(r, None) for r in releases])
    return [m.booking_id for m in messages], inventory


async def test_verify_and_rebuild_put_back_released_rows(engine: AsyncEngine) -> None:
    bookings, _ = await settle_and_release(engine, 6)
    assert await projections.verify(engine) == []
    before = await order_rows(engine)
    assert [before[b]["status"] for b in bookings] == ["RELEASED", "CONFIRMED"] * 3
    unreleased, lost, released = bookings[0], bookings[2], bookings[1]
    await tamper(
        engine,
        "UPDATE orders SET status = 'CONFIRMED', reason = NULL WHERE booking_id = :b",
        b=unreleased,
    )
    await tamper(engine, "DELETE FROM orders WHERE booking_id = :b", b=lost)
    await tamper(
        engine,
        "UPDATE orders SET status = 'RELEASED', reason = 'cancelled' WHERE booking_id = :b",
        b=released,
    )
    problems = await projections.verify(engine)
    assert len(problems) == 3, problems
    by_booking = {p.split()[1].rstrip(":"): p for p in problems}
    assert by_booking[str(unreleased)].endswith("the events say status=RELEASED, reason=expired")
    assert by_booking[str(released)].endswith("the events say status=CONFIRMED, reason=None")
    assert "status=RELEASED, reason=cancelled" in by_booking[str(lost)]
    done = await projections.rebuild(engine)
    assert (done.written, done.deleted, done.broken) == ({"orders": 3}, {"orders": 0}, [])
    assert await order_rows(engine) == before
    await tamper(engine, "DELETE FROM orders")
    assert (await projections.rebuild(engine)).written == {"orders": 6}
    assert await order_rows(engine) == before  # as the saga wrote them, times and all


async def test_a_release_after_a_rejection_or_a_second_release_cannot_be_folded(
    engine: AsyncEngine,
) -> None:
    bookings, _ = await settle_and_release(engine, 2)
    released, _confirmed = bookings
    rejected = (await settle(engine, 1, refused_every=1))[0]
    copy = (
        "INSERT INTO event_store (event_id, stream_id, stream_type, version, event_type, "
        "schema_version, payload, actor, recorded_at, topic, message_key, published_at) "
        "SELECT UUID(), :target, stream_type, :version, event_type, schema_version, "
        "REPLACE(payload, :b, :target), "
        "'tamper', recorded_at, NULL, NULL, recorded_at FROM event_store "
        "WHERE stream_id = :b AND version = 2"
    )
    await tamper(engine, copy, target=rejected, version=2, b=released)
    await tamper(engine, copy, target=released, version=3, b=released)
    problems = await projections.verify(engine)
    assert sorted(p.split()[1] for p in problems) == sorted([str(released), str(rejected)])
    assert all("cannot be folded" in p for p in problems), problems
    assert "order is REJECTED: OrderReleased cannot follow it" in " ".join(problems)
    assert "order is RELEASED: OrderReleased cannot follow it" in " ".join(problems)
    done = await projections.rebuild(engine)
    assert len(done.broken) == 2
    assert done.written == {"orders": 0}


async def test_a_release_committed_while_a_rebuild_reads_the_store_is_not_undone(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rebuild has read a page holding only the confirmation when the release commits:
    it folds the streams again under the rows' locks, so it does not write the confirmation
    back over the release."""
    inventory = Inventory()
    service = OrderService(records(engine), inventory)
    booked = requested()
    await service.handle_batch([Received(booked, None)])
    real = run_transaction

    async def release_first(engine: AsyncEngine, work: Any) -> Any:
        await service.handle_batch([Received(cancelled(booked), None)])
        return await real(engine, work)

    monkeypatch.setattr(projections, "run_transaction", release_first)
    done = await projections.rebuild(engine)
    monkeypatch.undo()
    assert done.written == {"orders": 0}
    assert (await order_rows(engine))[booked.booking_id]["status"] == "RELEASED"
    assert await projections.verify(engine) == []


async def test_a_release_waiting_for_a_rebuilds_lock_changes_the_row_after_it(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The release's row change waits for the rebuild's lock, whose transaction read the stream
    without the release: the rebuild writes what it read, then the release its change."""
    inventory = Inventory()
    service = OrderService(records(engine), inventory)
    booked = requested()
    await service.handle_batch([Received(booked, None)])
    await tamper(
        engine, "UPDATE orders SET ticket_count = 9 WHERE booking_id = :b", b=booked.booking_id
    )
    real = read_streams
    releasing: list[asyncio.Task[None]] = []

    async def release_meanwhile(conn: Any, bookings: Any) -> Any:
        streams = await real(conn, bookings)
        if not releasing:  # the first page's transaction
            cancel = cancelled(booked)
            releasing.append(asyncio.create_task(service.handle_batch([Received(cancel, None)])))
            await asyncio.sleep(0.5)  # the release is sent, and waits for the row's lock
            assert not releasing[0].done()
        return streams

    monkeypatch.setattr(projections, "read_streams", release_meanwhile)
    done = await projections.rebuild(engine)
    await releasing[0]
    assert done.written == {"orders": 1}
    row = (await order_rows(engine))[booked.booking_id]
    assert (row["status"], row["ticket_count"]) == ("RELEASED", booked.ticket_count)
    assert await projections.verify(engine) == []


async def test_releases_while_a_rebuild_runs_keep_their_rows(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop = asyncio.Event()
    inventory = Inventory()
    service = OrderService(records(engine), inventory)

    async def saga() -> None:
        for _ in range(10):
            messages = [requested() for _ in range(5)]
            await service.handle_batch([Received(m, None) for m in messages])
            await service.handle_batch([Received(cancelled(m), None) for m in messages[::2]])
        stop.set()

    async def rebuilds() -> int:
        count = 0
        while not stop.is_set():
            done = await projections.rebuild(engine)
            assert (done.written, done.deleted) == ({"orders": 0}, {"orders": 0})
            count += 1
        return count

    monkeypatch.setattr(projections, "PAGE", 7)
    _, rebuilt = await asyncio.gather(saga(), rebuilds())
    assert rebuilt > 0
    assert await projections.verify(engine) == []
    statuses = [row["status"] for row in (await order_rows(engine)).values()]
    assert (statuses.count("RELEASED"), statuses.count("CONFIRMED")) == (30, 20)
