"""Session-wide fixtures and hooks. Markers follow the folder: unit, integration, e2e (tests/bench
holds the benchmark tools' tests, marked by what they need)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness.broker import create_topics, kafka_broker
from tests.harness.databases import drop_databases
from tests.harness.processes import DEV_CLIENTS, dev_idp, fetch_token
from tests.harness.serving import Gateway, Stack, bearer, gateway_settings, serve, until_ready
from ticketing.booking.app import create_app as create_booking_app
from ticketing.contracts.events import (
    BOOKINGS_DLQ_TOPIC,
    BOOKINGS_TOPIC,
    ORDERS_DLQ_TOPIC,
    ORDERS_TOPIC,
)
from ticketing.gateway.app import create_app as create_gateway_app
from ticketing.inventory.app import create_app as create_inventory_app
from ticketing.order.app import create_app as create_order_app
from ticketing.shared.db.engine import create_engine
from ticketing.shared.db.migrations import upgrade
from ticketing.shared.settings import DATABASE_SERVICES, Settings

TESTS = Path(__file__).parent


# The benchmark tools' tests sit apart from the product's, yet run with the kind of test they are:
# the one that writes to MariaDB is an integration test, the others are unit tests.
BENCH_KINDS = {"test_bench_ceiling.py": "integration"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath)).relative_to(TESTS)
        kind = path.parts[0]
        if kind == "bench":
            kind = BENCH_KINDS.get(path.name, "unit")
        if kind in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(scope="session")
def oidc_issuer() -> Iterator[str]:
    """A real OIDC server (deploy/dev-idp, oidc-provider) shaped like a Keycloak realm."""
    with dev_idp() as issuer:
        yield issuer


@pytest.fixture(scope="session")
def tokens(oidc_issuer: str) -> dict[str, str]:
    """Access tokens of the dev clients: admin (inventory:write bookings:write), client
    (bookings:write) and order (inventory:reserve)."""
    return {name: fetch_token(oidc_issuer, name) for name in DEV_CLIENTS}


@pytest.fixture(scope="session")
def base_settings(oidc_issuer: str) -> Settings:
    """Settings from the environment with a prefix of this run's own (isolated databases) and
    the test OIDC server as issuer."""
    run = uuid.uuid4().hex[:8]
    return dataclasses.replace(
        Settings.from_env(),
        db_prefix=f"ticketing_test_{run}_",
        db_pool_size=10,
        oidc_issuer=oidc_issuer,
        jwks_min_refresh_seconds=1.0,
    )


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with kafka_broker() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
async def databases(base_settings: Settings) -> AsyncIterator[Settings]:
    """Create and migrate the service databases once; drop them when the session ends."""
    try:
        for service in DATABASE_SERVICES:
            await asyncio.to_thread(upgrade, base_settings, service)
        yield base_settings
    finally:
        await drop_databases(base_settings)


@pytest.fixture(scope="session")
async def inventory_url(databases: Settings) -> AsyncIterator[str]:
    async with serve(create_inventory_app(databases)) as url:
        yield url


@pytest.fixture
async def inventory(inventory_url: str, tokens: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """A client of inventory holding the admin token."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        base_url=inventory_url, limits=limits, timeout=30, headers=bearer(tokens["admin"])
    ) as client:
        yield client


@pytest.fixture
async def inventory_db(databases: Settings) -> AsyncIterator[AsyncEngine]:
    """Direct access to the inventory database, for checking what the API wrote."""
    engine = create_engine(databases, "inventory")
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
async def stack(
    databases: Settings, kafka_bootstrap: str, inventory_url: str, tokens: dict[str, str]
) -> AsyncIterator[Stack]:
    settings = dataclasses.replace(
        databases,
        kafka_bootstrap=kafka_bootstrap,
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=300,
        inventory_url=inventory_url,
        relay_poll_interval=0.05,
        consumer_max_attempts=3,
        # Holds short enough for a test to see one expire (test_lifecycle_flow.py).
        hold_seconds=4.0,
        hold_sweep_seconds=0.2,
    )
    await create_topics(
        kafka_bootstrap, 3, BOOKINGS_TOPIC, ORDERS_TOPIC, BOOKINGS_DLQ_TOPIC, ORDERS_DLQ_TOPIC
    )
    engines: dict[str, AsyncEngine] = {n: create_engine(settings, n) for n in DATABASE_SERVICES}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with (
        serve(create_booking_app(settings)) as booking_url,
        serve(create_order_app(settings)) as order_url,
        httpx.AsyncClient(
            base_url=inventory_url, limits=limits, timeout=30, headers=bearer(tokens["admin"])
        ) as inventory,
        httpx.AsyncClient(
            base_url=booking_url, limits=limits, timeout=30, headers=bearer(tokens["admin"])
        ) as booking,
    ):
        try:
            # Booking and order are ready once their consumers joined: tests start from there.
            await asyncio.gather(until_ready(booking_url), until_ready(order_url))
            yield Stack(settings, inventory, booking, order_url, engines)
        finally:
            for engine in engines.values():
                await engine.dispose()


@pytest.fixture(scope="session")
async def gateway(stack: Stack, tokens: dict[str, str]) -> AsyncIterator[Gateway]:
    """The gateway in front of the running stack."""
    settings = gateway_settings(stack)
    async with serve(create_gateway_app(settings)) as url:
        yield Gateway(url, settings, tokens)
