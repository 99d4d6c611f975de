"""Hostile cases for ``projections.rebuild``: writers that commit while it runs."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.test_projections_rebuild import CAUSE, engine, sale, settings
from ticketing.contracts.inventory import ReservationItem, ReservationOutcome
from ticketing.inventory import projections
from ticketing.inventory.records import SqlInventoryRecords
from ticketing.inventory.service import InventoryService
from ticketing.shared.errors import NotFound

__all__ = ["engine", "settings"]  # fixtures


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
