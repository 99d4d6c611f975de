"""A gateway in front of the held upstream (``held_upstream.FakeBooking``), with short upstream
timeouts and heartbeats so that the long-request tests see them pass, and its fixtures."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.harness.serving import bearer, serve, serve_raw
from tests.integration.held_upstream import FakeBooking
from ticketing.gateway.app import create_app as create_gateway_app
from ticketing.shared.settings import Settings

UPSTREAM_TIMEOUT = 1.0
HEARTBEAT = 0.3  # the gateway's; so a stream silent for 0.9 s counts as dead
UPSTREAM_CONNECTIONS = 200  # the connections the gateway pools for each upstream


@pytest.fixture(scope="module")
async def booking() -> AsyncIterator[FakeBooking]:
    fake = FakeBooking()
    # A backlog for every connection the gateway pools, opened at once.
    async with serve_raw(fake.handle, backlog=1024) as fake.url:
        yield fake


@pytest.fixture
def reset(booking: FakeBooking) -> FakeBooking:
    booking.failing = False
    booking.go.clear()
    booking.left.clear()
    booking.hung_up.clear()
    booking.first_event_sent.clear()
    return booking


@contextlib.asynccontextmanager
async def gateway(base: Settings, upstream: FakeBooking, **changes: Any) -> AsyncIterator[str]:
    settings = dataclasses.replace(
        base,
        booking_url=upstream.url,
        inventory_url=upstream.url,
        upstream_timeout=UPSTREAM_TIMEOUT,
        stream_heartbeat_seconds=HEARTBEAT,
        gateway_rate_limit_per_second=1_000_000.0,
        gateway_rate_limit_burst=1_000_000,
        **changes,
    )
    async with serve(create_gateway_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
async def gateway_url(base_settings: Settings, booking: FakeBooking) -> AsyncIterator[str]:
    """A gateway whose breaker never opens: the timeouts some tests provoke count as failures."""
    async with gateway(base_settings, booking, breaker_min_calls=1_000_000) as url:
        yield url


@pytest.fixture
async def client(gateway_url: str, tokens: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=gateway_url, headers=bearer(tokens["client"]), timeout=30
    ) as client:
        yield client


async def timed_get(client: httpx.AsyncClient, target: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.get(target)
    return response, time.monotonic() - started
