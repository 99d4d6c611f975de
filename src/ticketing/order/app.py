"""Order app factory: the saga consumer and the outbox relay, plus health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

from ticketing.order.consumer import build_broker
from ticketing.order.inventory_client import InventoryClient
from ticketing.order.service import OrderService
from ticketing.order.tables import outbox
from ticketing.shared.db import create_engine, ping
from ticketing.shared.http import create_http_app, register_readiness
from ticketing.shared.messaging import ping as ping_broker
from ticketing.shared.messaging import start_with_retry
from ticketing.shared.relay import OutboxRelay, create_producer, relay_lock_name
from ticketing.shared.settings import Settings
from ticketing.shared.upstream import Upstream


def create_app(settings: Settings | None = None, *, run_relay: bool = True) -> Litestar:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def runtime(app: Litestar) -> AsyncIterator[None]:
        engine = create_engine(settings, "order")
        inventory = Upstream(
            "inventory", settings.base_url("inventory"), timeout=settings.upstream_timeout
        )
        relay = OutboxRelay(
            engine,
            outbox,
            lock_name=relay_lock_name(settings, "order"),
            producer_factory=lambda: create_producer(settings, "order-relay"),
            batch_size=settings.relay_batch_size,
            poll_interval=settings.relay_poll_interval,
        )
        service = OrderService(engine, InventoryClient(inventory), after_commit=relay.wake)
        broker, runner = build_broker(settings, service)
        app.state.orders = service
        app.state.relay = relay
        app.state.runner = runner
        register_readiness(app, "database", lambda: ping(engine))
        register_readiness(app, "kafka", lambda: ping_broker(broker))
        tasks = [asyncio.create_task(start_with_retry(broker), name="order-consumers")]
        if run_relay:
            tasks.append(asyncio.create_task(relay.run(), name="order-relay"))
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
        service="order",
        settings=settings,
        route_handlers=[],
        lifespan=[runtime],
        description="The order saga. No public API: health and metrics only.",
    )
