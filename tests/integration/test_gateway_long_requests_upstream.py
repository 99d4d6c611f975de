"""What a long-poll or an event stream through the gateway holds of its upstream: the upstream
freed as soon as the caller leaves, no half-open breaker kept from closing (a stream's outcome
is taken from its head), and no pooled connection kept from ordinary calls."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

import httpx

from tests.harness.serving import bearer
from tests.integration.held_gateway import (
    UPSTREAM_CONNECTIONS,
    UPSTREAM_TIMEOUT,
    booking,
    gateway,
    gateway_url,
    reset,
    timed_get,
)
from tests.integration.held_upstream import FakeBooking, raw_get
from ticketing.shared.settings import Settings

__all__ = ["booking", "gateway_url", "reset"]  # fixtures


async def test_a_caller_leaving_a_long_poll_frees_the_upstream_at_once(
    gateway_url: str, tokens: dict[str, str], reset: FakeBooking
) -> None:
    target = "/api/v1/bookings/20?wait=25"
    _, writer = await raw_get(gateway_url, target, tokens["client"])
    await asyncio.sleep(0.3)  # the gateway is waiting for booking's answer
    assert not reset.hung_up.is_set()
    writer.close()
    async with asyncio.timeout(1):
        await reset.hung_up.wait()
    assert reset.left == [target]
    # Counted as nginx counts a caller that left (499), not as a failure of the gateway's.
    async with httpx.AsyncClient(base_url=gateway_url, headers=bearer(tokens["client"])) as c:
        metrics = (await c.get("/metrics")).text
    left = r'http_requests_total\{[^}]*route="/api/v1/bookings/\*\?wait"[^}]*status="499"\} 1\.0'
    assert re.search(left, metrics), metrics


async def test_a_caller_leaving_a_stream_frees_the_upstream_at_once(
    gateway_url: str, tokens: dict[str, str], reset: FakeBooking
) -> None:
    # Live: its heartbeats keep the read timeout from ending it in the gateway's stead.
    target = "/api/v1/customers/live/bookings/stream"
    reader, writer = await raw_get(gateway_url, target, tokens["client"])
    async with asyncio.timeout(2):
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.readuntil(b"\n\n")  # the first event
    assert head.startswith(b"HTTP/1.1 200")
    writer.close()
    async with asyncio.timeout(1):
        await reset.hung_up.wait()
    assert reset.left == [target]


@contextlib.asynccontextmanager
async def tripped(
    base: Settings, upstream: FakeBooking, token: str
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a gateway of its own whose breaker for ``upstream`` two failed calls have
    just opened, ``upstream`` still failing: where both half-open tests start."""
    breaker = {
        "breaker_window": 2,
        "breaker_min_calls": 2,
        "breaker_open_seconds": 0.5,
        "breaker_half_open_probes": 1,
    }
    async with (
        gateway(base, upstream, **breaker) as url,
        httpx.AsyncClient(base_url=url, headers=bearer(token), timeout=30) as client,
    ):
        upstream.failing = True
        assert [(await client.get("/api/v1/bookings/0")).status_code for _ in range(2)] == [500] * 2
        yield client


async def test_a_stream_does_not_keep_a_half_open_breaker_from_closing(
    base_settings: Settings, tokens: dict[str, str], reset: FakeBooking
) -> None:
    async with tripped(base_settings, reset, tokens["client"]) as client:
        refused = await client.get("/api/v1/bookings/0")
        assert refused.status_code == 503
        assert refused.json()["service"] == "booking"  # the gateway's: the breaker is open
        reset.failing = False
        await asyncio.sleep(0.6)  # half-open: one probe may go
        async with client.stream("GET", "/api/v1/customers/live/bookings/stream") as stream:
            assert stream.status_code == 200
            # The stream probed and succeeded with its head; it holds no slot while it lasts.
            assert (await client.get("/api/v1/bookings/0")).status_code == 200
            health = (await client.get("/health/ready")).json()
            assert health["breakers"]["booking"] == {reset.url: "closed"}
            received = b""
            async for data in stream.aiter_raw():
                received += data
                if b": heartbeat" in received:
                    break
        assert (await client.get("/api/v1/bookings/0")).status_code == 200


async def test_a_long_poll_does_not_keep_a_half_open_breaker_from_closing(
    base_settings: Settings, tokens: dict[str, str], reset: FakeBooking
) -> None:
    """A wait of up to 30 s admitted as the half-open breaker's one probe must not refuse every
    other call to the upstream for as long as it waits."""
    async with tripped(base_settings, reset, tokens["client"]) as client:
        reset.failing = False
        await asyncio.sleep(0.6)  # half-open: one probe may go
        waiting = asyncio.create_task(client.get("/api/v1/bookings/3?wait=3"))
        await asyncio.sleep(0.2)  # the wait is upstream, holding whatever it was admitted with
        try:
            assert (await client.get("/api/v1/bookings/0")).status_code == 200
        finally:
            assert (await waiting).status_code == 200


async def test_waits_holding_every_pooled_connection_leave_ordinary_calls_unharmed(
    gateway_url: str, tokens: dict[str, str], reset: FakeBooking
) -> None:
    """Each wait and stream holds its upstream connection for as long as it lasts: as many as
    the gateway pools for the upstream must not leave an ordinary call waiting for one (its
    timeout would fail it, and count against a healthy upstream)."""
    limits = httpx.Limits(max_connections=UPSTREAM_CONNECTIONS + 10)
    async with httpx.AsyncClient(
        base_url=gateway_url, headers=bearer(tokens["client"]), timeout=30, limits=limits
    ) as many:
        waits = [
            asyncio.create_task(many.get("/api/v1/bookings/2.5?wait=3"))
            for _ in range(UPSTREAM_CONNECTIONS)
        ]
        try:
            await asyncio.sleep(1)  # every wait is upstream
            answer, took = await timed_get(many, "/api/v1/bookings/0")
            assert answer.status_code == 200
            assert took < UPSTREAM_TIMEOUT
        finally:
            assert [(await wait).status_code for wait in waits] == [200] * UPSTREAM_CONNECTIONS
