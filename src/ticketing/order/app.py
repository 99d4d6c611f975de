"""Order app factory: the saga consumer and its event store's relay, plus health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

from ticketing.order.consumer import build_broker
from ticketing.order.inventory_client import InventoryClient
from ticketing.order.repository import SqlOrderRecords
from ticketing.order.service import CONSUMER, OrderService
from ticketing.order.tables import event_store
from ticketing.shared.app import create_http_app
from ticketing.shared.http.app_metrics import registered, upstream_breakers
from ticketing.shared.messaging.consumer_metrics import ConsumerMetrics
from ticketing.shared.runtime import calling_runtime, consuming
from ticketing.shared.settings import Settings


def create_app(settings: Settings | None = None, *, run_relay: bool = True) -> Litestar:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def runtime(app: Litestar) -> AsyncIterator[None]:
        async with calling_runtime(app, settings, "order", event_store, upstream="inventory") as (
            shared,
            inventory,
        ):
            service = OrderService(
                SqlOrderRecords(shared.engine, consumer=CONSUMER),
                InventoryClient(inventory),
                after_commit=shared.relay.wake,
            )
            consumer_metrics = ConsumerMetrics()
            broker, runner = build_broker(settings, service, consumer_metrics)
            app.state.orders = service
            app.state.runner = runner
            jobs = [shared.relay_job()] if run_relay else []
            with registered(
                app.state.metrics, consumer_metrics, upstream_breakers("order", inventory)
            ):
                async with consuming(app, broker, *jobs):
                    yield

    return create_http_app(
        service="order",
        settings=settings,
        route_handlers=[],
        lifespan=[runtime],
        description="The order saga. No public API: health and metrics only.",
        authenticate=False,
    )
