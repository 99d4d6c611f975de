"""Booking app factory: HTTP API, the ``ticketing.orders`` consumer and the outbox relay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import structlog
from litestar import Litestar

from ticketing.booking.api.booking_request import document_request_booking, request_booking
from ticketing.booking.api.controllers import BookingController, CustomerController
from ticketing.booking.consumer import build_broker
from ticketing.booking.inventory_client import InventoryClient
from ticketing.booking.metrics import BookingMetrics
from ticketing.booking.ports import CommitObservers
from ticketing.booking.push import StatusPush
from ticketing.booking.records import SqlBookingRecords, SqlStatusLog
from ticketing.booking.requests import BookingRequests
from ticketing.booking.service import BookingService
from ticketing.booking.settlement import CONSUMER
from ticketing.booking.status_feed import StatusFeed
from ticketing.booking.status_listeners import OwnCommits
from ticketing.booking.tables import event_store
from ticketing.shared.app import create_http_app
from ticketing.shared.cancellation import stop_if_cancelled
from ticketing.shared.http.app_metrics import registered, upstream_breakers
from ticketing.shared.messaging.consumer_metrics import ConsumerMetrics
from ticketing.shared.runtime import calling_runtime, consuming
from ticketing.shared.settings import Settings

log = structlog.get_logger(__name__)
PURGE_EVERY_SECONDS = 3600


def create_app(settings: Settings | None = None, *, run_relay: bool = True) -> Litestar:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def runtime(app: Litestar) -> AsyncIterator[None]:
        async with calling_runtime(app, settings, "booking", event_store, upstream="inventory") as (
            shared,
            inventory,
        ):
            booking_metrics, consumer_metrics = BookingMetrics(), ConsumerMetrics()
            feed = StatusFeed(
                SqlStatusLog(shared.engine),
                interval=settings.status_poll_interval,
                idle_interval=settings.status_idle_poll_interval,
                grace=settings.status_hole_seconds,
            )
            service = BookingService(
                SqlBookingRecords(shared.engine, consumer=CONSUMER, after_commit=shared.relay.wake),
                InventoryClient(inventory, cache_seconds=settings.event_cache_seconds),
                max_tickets=settings.booking_max_tickets,
                abandoned_after=timedelta(seconds=settings.idempotency_inflight_seconds),
                hold_for=timedelta(seconds=settings.hold_seconds),
                observer=CommitObservers(booking_metrics, OwnCommits(feed)),
            )
            app.state.bookings = service
            await feed.start()
            app.state.status_push = StatusPush.create(feed, settings)
            jobs = [
                _purge_keys(service.requests, settings),
                _expire_holds(service, settings),
                feed.run(),
            ]
            if run_relay:
                jobs.append(shared.relay_job())
            broker = build_broker(settings, service, consumer_metrics)
            with registered(
                app.state.metrics,
                booking_metrics,
                consumer_metrics,
                upstream_breakers("booking", inventory),
            ):
                async with consuming(app, broker, *jobs):
                    yield

    app = create_http_app(
        service="booking",
        settings=settings,
        route_handlers=[CustomerController, BookingController, request_booking],
        lifespan=[runtime],
        description="Customers and bookings. A booking is accepted at once (202) and settles "
        "to CONFIRMED, HELD or REJECTED through the order saga; a hold is confirmed or "
        "expires, and a booking may be cancelled.",
    )
    app.on_startup.append(document_request_booking)
    return app


async def _purge_keys(requests: BookingRequests, settings: Settings) -> None:
    """Forget idempotency keys past their retention, once an hour."""
    while True:
        try:
            purged = await requests.purge_idempotency_keys(
                timedelta(hours=settings.idempotency_ttl_hours)
            )
            if purged:
                log.info("idempotency keys purged", count=purged)
        except Exception as error:  # noqa: BLE001 - retried at the next round
            stop_if_cancelled(error)
            log.warning("purging idempotency keys failed", error=repr(error))
        await asyncio.sleep(PURGE_EVERY_SECONDS)


async def _expire_holds(service: BookingService, settings: Settings) -> None:
    """Expire the holds past their time, every ``TICKETING_HOLD_SWEEP_SECONDS``: every replica
    does, each taking other bookings (ADR 17)."""
    failing = False
    while True:
        try:
            await service.expire_holds()
        except Exception as error:  # noqa: BLE001 - retried at the next round
            stop_if_cancelled(error)
            if not failing:  # once per outage, not once per round
                log.warning("expiring holds failed", error=repr(error))
            failing = True
        else:
            failing = False
        await asyncio.sleep(settings.hold_sweep_seconds)
