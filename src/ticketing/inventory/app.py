"""Inventory app factory: builds the Litestar app from settings; I/O starts in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

from ticketing.inventory.api import (
    EventController,
    ReleaseBatchController,
    ReservationBatchController,
    ReservationController,
    VenueController,
)
from ticketing.inventory.records import SqlInventoryRecords
from ticketing.inventory.service import InventoryService
from ticketing.shared.app import create_http_app, register_readiness
from ticketing.shared.db.engine import create_engine, ping
from ticketing.shared.settings import Settings


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def database(app: Litestar) -> AsyncIterator[None]:
        engine = create_engine(settings, "inventory")
        app.state.inventory = InventoryService(SqlInventoryRecords(engine), engine)
        register_readiness(app, "database", lambda: ping(engine))
        try:
            yield
        finally:
            await engine.dispose()

    return create_http_app(
        service="inventory",
        settings=settings,
        route_handlers=[
            VenueController,
            EventController,
            ReservationController,
            ReservationBatchController,
            ReleaseBatchController,
        ],
        lifespan=[database],
        description="Venues, events and the authoritative ticket capacity.",
    )
