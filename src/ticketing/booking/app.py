"""Booking app factory: HTTP API, the ``ticketing.orders`` consumer and the outbox relay."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import structlog
from litestar import Litestar

from ticketing.booking.api import BookingController, CustomerController
from ticketing.booking.consumer import build_broker
from ticketing.booking.inventory_client import InventoryClient
from ticketing.booking.service import BookingService
from ticketing.booking.tables import outbox
from ticketing.shared.db import create_engine, ping
from ticketing.shared.http import create_http_app, register_readiness
from ticketing.shared.messaging import ping as ping_broker
from ticketing.shared.messaging import start_with_retry
from ticketing.shared.relay import OutboxRelay, create_producer, relay_lock_name
from ticketing.shared.settings import Settings
from ticketing.shared.upstream import Upstream

log = structlog.get_logger(__name__)
PURGE_EVERY_SECONDS = 3600


def create_app(settings: Settings | None = None, *, run_relay: bool = True) -> Litestar:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def runtime(app: Litestar) -> AsyncIterator[None]:
        engine = create_engine(settings, "booking")
        inventory = Upstream(
            "inventory", settings.base_url("inventory"), timeout=settings.upstream_timeout
        )
        relay = OutboxRelay(
            engine,
            outbox,
            lock_name=relay_lock_name(settings, "booking"),
            producer_factory=lambda: create_producer(settings, "booking-relay"),
            batch_size=settings.relay_batch_size,
            poll_interval=settings.relay_poll_interval,
        )
        service = BookingService(
            engine,
            InventoryClient(inventory),
            max_tickets=settings.booking_max_tickets,
            after_commit=relay.wake,
        )
        app.state.bookings = service
        app.state.relay = relay
        broker = build_broker(settings, service)
        register_readiness(app, "database", lambda: ping(engine))
        register_readiness(app, "kafka", lambda: ping_broker(broker))
        tasks = [asyncio.create_task(start_with_retry(broker), name="booking-consumers")]
        if run_relay:
            tasks.append(asyncio.create_task(relay.run(), name="booking-relay"))
        tasks.append(asyncio.create_task(_purge_keys(service, settings), name="purge-keys"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await broker.stop()
            await inventory.aclose()
            await engine.dispose()

    return create_http_app(
        service="booking",
        settings=settings,
        route_handlers=[CustomerController, BookingController],
        lifespan=[runtime],
        description="Customers and bookings. A booking is accepted at once (202) and settles "
        "to CONFIRMED or REJECTED through the order saga.",
    )


async def _purge_keys(service: BookingService, settings: Settings) -> None:
    """Forget idempotency keys past their retention, once an hour."""
    while True:
        try:
            purged = await service.purge_idempotency_keys(
                timedelta(hours=settings.idempotency_ttl_hours)
            )
            if purged:
                log.info("idempotency keys purged", count=purged)
        except Exception as error:  # noqa: BLE001 - retried at the next round
            log.warning("purging idempotency keys failed", error=repr(error))
        await asyncio.sleep(PURGE_EVERY_SECONDS)
