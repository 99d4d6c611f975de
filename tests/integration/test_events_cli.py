"""``ticketing events export`` writes a service's events as JSON Lines, as a real process."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from tests.integration.cli_process import run_cli
from tests.integration.own_inventory import lines, settings
from ticketing.contracts.inventory import EventCreate, ReservationItem, VenueCreate
from ticketing.inventory.records import SqlInventoryRecords
from ticketing.inventory.service import InventoryService
from ticketing.shared.db.engine import create_engine
from ticketing.shared.settings import Settings
from ticketing.shared.store.eventstore import Cause

__all__ = ["settings"]  # fixtures


async def test_export_writes_each_event_once_oldest_first_and_filters(settings: Settings) -> None:
    engine = create_engine(settings, "inventory")
    try:
        service = InventoryService(SqlInventoryRecords(engine), engine)
        cause = Cause(actor="box-office", correlation_id="corr-1", causation_id="req-1")
        venue = await service.create_venue(VenueCreate('Hall "A"', "1 Road", 10), cause)
        event = await service.create_event(EventCreate("Gig", venue.id, 2, "9.50"), cause)
        bookings = [uuid.uuid4() for _ in range(3)]
        await service.reserve_many(
            [ReservationItem(event.id, booking_id, 1) for booking_id in bookings], cause
        )
    finally:
        await engine.dispose()

    everything = await asyncio.to_thread(
        run_cli, "events", "export", "--service", "inventory", prefix=settings.db_prefix
    )
    assert everything.returncode == 0, everything.stderr
    assert "5 event(s) exported" in everything.stderr
    exported = lines(everything.stdout)
    assert [e["event_type"] for e in exported] == [
        "VenueRegistered",
        "EventScheduled",
        "SeatsReserved",
        "SeatsReserved",
        "ReservationRefused",
    ]
    positions = [e["position"] for e in exported]
    assert positions == sorted(set(positions))
    assert exported[0]["data"] == {
        "venue_id": str(venue.id),
        "name": 'Hall "A"',
        "address": "1 Road",
        "total_capacity": 10,
    }
    assert {(e["actor"], e["correlation_id"], e["causation_id"]) for e in exported} == {
        ("box-office", "corr-1", "req-1")
    }
    assert [e["version"] for e in exported if e["stream_id"] == str(event.id)] == [1, 2, 3, 4]

    one_stream = await asyncio.to_thread(
        run_cli,
        "events",
        "export",
        "--service",
        "inventory",
        "--stream",
        str(event.id),
        "--type",
        "SeatsReserved",
        prefix=settings.db_prefix,
    )
    assert [e["data"]["booking_id"] for e in lines(one_stream.stdout)] == [
        str(b) for b in bookings[:2]
    ]

    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    none_yet = await asyncio.to_thread(
        run_cli,
        "events",
        "export",
        "--service",
        "inventory",
        "--since",
        later,
        prefix=settings.db_prefix,
    )
    assert none_yet.returncode == 0
    assert none_yet.stdout == ""


async def test_export_refuses_a_service_that_keeps_no_events(settings: Settings) -> None:
    refused = await asyncio.to_thread(
        run_cli, "events", "export", "--service", "gateway", prefix=settings.db_prefix
    )
    assert refused.returncode == 2
    assert "invalid choice" in refused.stderr
