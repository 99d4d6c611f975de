"""``projections.rebuild``: the tables become what the events say, while reservations go on and
while writers commit venues, events and reservations during the rebuild."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.databases import engine_of
from tests.integration.cli_process import run_cli
from tests.integration.own_inventory import CAUSE, engine, sale, settings
from ticketing.contracts.inventory import (
    ReservationItem,
    ReservationOutcome,
)
from ticketing.inventory import projections
from ticketing.inventory import repository as repo
from ticketing.inventory.domain import SeatsReserved
from ticketing.inventory.records import SqlInventoryRecords
from ticketing.inventory.service import InventoryService
from ticketing.shared.clock import utcnow
from ticketing.shared.db import sql
from ticketing.shared.errors import NotFound
from ticketing.shared.settings import Settings
from ticketing.shared.store.eventstore import Pending

__all__ = ["engine", "settings"]  # fixtures: an inventory database of the test's own


async def test_rebuild_puts_back_every_row_the_events_disagree_with(
    engine: AsyncEngine, settings: Settings
) -> None:
    service = InventoryService(SqlInventoryRecords(engine), engine)
    event_id = await sale(service, 5)
    bookings = [uuid.uuid4() for _ in range(7)]
    await service.reserve_many([ReservationItem(event_id, b, 1) for b in bookings], CAUSE)
    second = await sale(service, 3)
    await service.reserve_many([ReservationItem(second, uuid.uuid4(), 2)], CAUSE)
    assert await projections.verify(engine) == []
    async with engine.begin() as conn:
        for statement in (
            "UPDATE events SET left_capacity = left_capacity + 2, version = 2 WHERE id = :e",
            "DELETE FROM reservations WHERE booking_id = :b",  # a lost reservation
            "INSERT INTO reservations (booking_id, event_id, ticket_count, status, left_capacity,"
            " created_at) VALUES (UUID(), :e, 1, 'reserved', 0, NOW(6))",  # a stray
            "UPDATE venues SET name = 'Renamed'",
            "DELETE FROM reservations WHERE event_id = :s",
            "DELETE FROM events WHERE id = :s",  # a whole event gone
            "INSERT INTO venues VALUES (UUID(), 'Ghost', 'Nowhere', 9, NOW(6), 1)",
        ):
            await conn.execute(
                text(statement), {"e": str(event_id), "b": str(bookings[0]), "s": str(second)}
            )
    before = await projections.verify(engine)
    assert len(before) >= 6, before

    done = await projections.rebuild(engine)
    assert await projections.verify(engine) == []
    assert done.deleted == {"venues": 1, "events": 0, "reservations": 1}
    assert done.written["events"] == 2  # the wrong one and the missing one
    again = await projections.rebuild(engine)
    assert again.written == dict.fromkeys(projections.TABLES, 0)
    assert again.deleted == dict.fromkeys(projections.TABLES, 0)

    # The rebuilt row is the snapshot reservations decide from again.
    (late,) = await service.reserve_many([ReservationItem(event_id, uuid.uuid4(), 1)], CAUSE)
    assert late.outcome is ReservationOutcome.INSUFFICIENT
    assert late.left_capacity == 0

    cli = await asyncio.to_thread(
        run_cli, "projections", "rebuild", "--service", "inventory", prefix=settings.db_prefix
    )
    assert cli.returncode == 0, cli.stderr
    assert "inventory: events: 0 written, 0 deleted" in cli.stdout


async def test_a_rebuild_while_reservations_go_on_loses_and_doubles_nothing(
    engine: AsyncEngine,
) -> None:
    """Rebuilds over and over while batches reserve on the same events: every answer given
    stays true, no seat is taken twice, and the tables agree with the events at the end."""
    service = InventoryService(SqlInventoryRecords(engine), engine)
    events = [await sale(service, 40) for _ in range(2)]
    answers: dict[uuid.UUID, ReservationOutcome] = {}
    stop = asyncio.Event()

    async def buyers() -> None:
        for _ in range(25):
            items = [
                ReservationItem(random.choice(events), uuid.uuid4(), random.randint(1, 3))
                for _ in range(4)
            ]
            for item, result in zip(items, await service.reserve_many(items, CAUSE), strict=True):
                answers[item.booking_id] = result.outcome
        stop.set()

    async def rebuilds() -> int:
        count = 0
        while not stop.is_set():
            await projections.rebuild(engine)
            count += 1
        return count

    *_, rebuilt = await asyncio.gather(buyers(), buyers(), rebuilds())
    assert rebuilt > 0
    assert await projections.verify(engine) == []
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT booking_id, status FROM reservations"))).all()
        left = {
            uuid.UUID(str(event_id)): int(seats)
            for event_id, seats in await conn.execute(text("SELECT id, left_capacity FROM events"))
        }
        taken = {
            uuid.UUID(str(event_id)): int(seats)
            for event_id, seats in await conn.execute(
                text(
                    "SELECT event_id, SUM(ticket_count) FROM reservations "
                    "WHERE status = 'reserved' GROUP BY event_id"
                )
            )
        }
    recorded = {uuid.UUID(str(b)): s for b, s in rows}
    assert recorded == {b: o.value for b, o in answers.items()}
    for event_id in events:
        assert left[event_id] == 40 - taken.get(event_id, 0)


async def test_a_venue_and_event_created_while_a_rebuild_runs_keep_their_rows(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rebuild lists the streams first; what is created after that list is no orphan."""
    service = InventoryService(SqlInventoryRecords(engine), engine)
    await sale(service, 5)
    listed = projections._streams
    created: list[uuid.UUID] = []

    async def listed_then_created(
        engine: AsyncEngine,
    ) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        listing = await listed(engine)
        created.append(await sale(service, 4))
        await service.reserve_many([ReservationItem(created[0], uuid.uuid4(), 2)], CAUSE)
        return listing

    monkeypatch.setattr(projections, "_streams", listed_then_created)
    done = await projections.rebuild(engine)
    assert done.deleted == dict.fromkeys(projections.TABLES, 0)
    assert await projections.verify(engine) == []
    event = await service.get_event(created[0])
    assert event.left_capacity == 2


async def test_a_rebuild_keeps_an_event_scheduled_and_reserved_while_it_runs(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rebuild lists the streams once, rebuilds them one by one, then deletes every row no
    listed stream accounts for. A venue, an event and a reservation committed after the list
    was read (inventory keeps serving meanwhile) are not strays: their streams exist."""
    service = InventoryService(SqlInventoryRecords(engine), engine)
    await sale(service, 5)  # a stream to rebuild, so that the rebuild takes its time
    listed = projections._streams
    late: list[uuid.UUID] = []

    async def writers_commit_after_the_listing(
        engine: AsyncEngine,
    ) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        streams = await listed(engine)
        late.append(await sale(service, 4))
        booking = uuid.uuid4()
        (answer,) = await service.reserve_many([ReservationItem(late[0], booking, 3)], CAUSE)
        assert answer.outcome is ReservationOutcome.RESERVED
        late.append(booking)
        return streams

    monkeypatch.setattr(projections, "_streams", writers_commit_after_the_listing)
    done = await projections.rebuild(engine)
    monkeypatch.undo()

    event_id, booking = late
    (repeat,) = await service.reserve_many([ReservationItem(event_id, booking, 3)], CAUSE)
    assert repeat.outcome is ReservationOutcome.RESERVED  # the first answer, given back
    assert repeat.left_capacity == 1
    assert done.deleted == dict.fromkeys(projections.TABLES, 0), done.deleted
    assert await projections.verify(engine) == []


async def test_events_scheduled_during_rebuilds_are_still_there_when_they_stop(
    engine: AsyncEngine,
) -> None:
    """No hook this time: rebuilds run over and over while an organiser schedules events and
    sells a seat of each. Every event scheduled is still served afterwards."""
    service = InventoryService(SqlInventoryRecords(engine), engine)
    await sale(service, 5)
    scheduled: list[uuid.UUID] = []
    stop = asyncio.Event()

    async def organiser() -> None:
        for _ in range(30):
            event_id = await sale(service, 3)
            await service.reserve_many([ReservationItem(event_id, uuid.uuid4(), 1)], CAUSE)
            scheduled.append(event_id)
        stop.set()

    async def rebuilds() -> None:
        while not stop.is_set():
            await projections.rebuild(engine)

    await asyncio.gather(organiser(), rebuilds())
    missing = []
    for event_id in scheduled:
        try:
            await service.get_event(event_id)
        except NotFound:
            missing.append(event_id)
    assert missing == []
    assert await projections.verify(engine) == []


async def test_verify_reports_a_stream_that_cannot_be_folded_instead_of_crashing(
    settings: Settings,
) -> None:
    """A reservation event on a stream that was never scheduled (say, a reservation row of an
    event deleted by hand before the upgrade) is a difference to print, with exit code 1."""
    orphan = SeatsReserved(
        event_id=uuid.uuid4(), booking_id=uuid.uuid4(), ticket_count=1, left_capacity=0
    )
    statement = repo.STORE.append([Pending(orphan.event_id, "event", 1, orphan)], CAUSE, utcnow())
    async with engine_of(settings, "inventory") as engine, engine.begin() as conn:
        await sql.run(conn, statement)
    verify = await asyncio.to_thread(run_cli, "projections", "verify", prefix=settings.db_prefix)
    assert verify.returncode == 1
    assert "Traceback" not in verify.stderr, verify.stderr
    assert str(orphan.event_id) in verify.stdout
    rebuild = await asyncio.to_thread(
        run_cli, "projections", "rebuild", "--service", "inventory", prefix=settings.db_prefix
    )
    assert rebuild.returncode == 1
    assert "Traceback" not in rebuild.stderr, rebuild.stderr
    assert f"not rebuilt: stream {orphan.event_id}" in rebuild.stdout
