"""An inventory database of a test's own, an engine on it, a sale in it, and the JSON Lines an
export writes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.databases import drop_databases, engine_of
from ticketing.contracts.inventory import EventCreate, VenueCreate
from ticketing.inventory.service import InventoryService
from ticketing.shared.db.migrations import upgrade
from ticketing.shared.settings import Settings
from ticketing.shared.store.eventstore import Cause

CAUSE = Cause(actor="test")


@pytest.fixture
async def settings(base_settings: Settings) -> AsyncIterator[Settings]:
    settings = dataclasses.replace(
        base_settings, db_prefix=f"ticketing_events_{uuid.uuid4().hex[:8]}_"
    )
    await asyncio.to_thread(upgrade, settings, "inventory")
    try:
        yield settings
    finally:
        await drop_databases(settings)


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    async with engine_of(settings, "inventory") as engine:
        yield engine


async def sale(service: InventoryService, capacity: int, limit: int | None = None) -> uuid.UUID:
    """An event of ``capacity`` seats in a venue of its own, at most ``limit`` per customer."""
    venue = await service.create_venue(VenueCreate("Hall", "1 Road", capacity), CAUSE)
    data = EventCreate("Gig", venue.id, capacity, "5.00", max_tickets_per_customer=limit)
    return (await service.create_event(data, CAUSE)).id


def lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines()]
