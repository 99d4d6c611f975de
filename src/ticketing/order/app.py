"""Order app factory: the saga consumer and the outbox relay, plus health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

from ticketing.order.consumer import build_broker
from ticketing.order.inventory_client import InventoryClient
from ticketing.order.service import OrderService
from ticketing.order.tables import outbox
from ticketing.shared.auth import OidcDiscovery
from ticketing.shared.http import create_http_app
from ticketing.shared.httpclient import new_session
from ticketing.shared.oauth_client import ClientCredentials
from ticketing.shared.runtime import consuming, service_runtime
from ticketing.shared.security import IDP_TIMEOUT_SECONDS
from ticketing.shared.settings import Settings
from ticketing.shared.upstream import Upstream


def create_app(settings: Settings | None = None, *, run_relay: bool = True) -> Litestar:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def runtime(app: Litestar) -> AsyncIterator[None]:
        http = new_session(timeout=IDP_TIMEOUT_SECONDS)
        credentials = ClientCredentials(
            OidcDiscovery(settings.oidc_issuer, http, settings.oidc_discovery_url),
            http,
            settings.order_client_id,
            settings.order_client_secret,
        )
        inventory = Upstream(
            "inventory",
            settings.base_url("inventory"),
            timeout=settings.upstream_timeout,
            credentials=credentials,
        )
        async with service_runtime(app, settings, "order", outbox) as shared:
            service = OrderService(
                shared.engine, InventoryClient(inventory), after_commit=shared.relay.wake
            )
            broker, runner = build_broker(settings, service)
            app.state.orders = service
            app.state.runner = runner
            jobs = [shared.relay.run()] if run_relay else []
            try:
                async with consuming(app, broker, *jobs):
                    yield
            finally:
                await inventory.aclose()
                await http.close()

    return create_http_app(
        service="order",
        settings=settings,
        route_handlers=[],
        lifespan=[runtime],
        description="The order saga. No public API: health and metrics only.",
        authenticate=False,
    )
