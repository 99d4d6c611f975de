"""Session-wide test infrastructure. Markers follow the folder: unit, integration, e2e."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness import drop_databases, kafka_broker, serve
from ticketing.inventory.app import create_app as create_inventory_app
from ticketing.platform.db import create_engine
from ticketing.platform.migrations import upgrade
from ticketing.platform.settings import Settings

TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kind = Path(str(item.fspath)).relative_to(TESTS).parts[0]
        if kind in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    """Settings from the environment with a prefix of this run's own: databases are isolated."""
    run = uuid.uuid4().hex[:8]
    return dataclasses.replace(
        Settings.from_env(), db_prefix=f"ticketing_test_{run}_", db_pool_size=10
    )


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with kafka_broker() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
async def databases(base_settings: Settings) -> AsyncIterator[Settings]:
    """Create and migrate the service databases once; drop them when the session ends."""
    try:
        await asyncio.to_thread(upgrade, base_settings, "inventory")
        yield base_settings
    finally:
        await drop_databases(base_settings)


@pytest.fixture(scope="session")
async def inventory_url(databases: Settings) -> AsyncIterator[str]:
    async with serve(create_inventory_app(databases)) as url:
        yield url


@pytest.fixture
async def inventory(inventory_url: str) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=inventory_url, limits=limits, timeout=30) as client:
        yield client


@pytest.fixture
async def inventory_db(databases: Settings) -> AsyncIterator[AsyncEngine]:
    """Direct access to the inventory database, for checking what the API wrote."""
    engine = create_engine(databases, "inventory")
    try:
        yield engine
    finally:
        await engine.dispose()
