"""Long-polls and event streams through the gateway, against an upstream on a raw socket that
holds its answers as booking's status push does and notes when the gateway hangs up on it:
their timeouts, events passed on as they come, the upstream freed as soon as the caller leaves,
and a stream's breaker outcome taken from its head."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.harness.serving import bearer, serve
from tests.integration.held_upstream import FakeBooking, event, raw_get
from ticketing.gateway.app import create_app as create_gateway_app
from ticketing.shared.settings import Settings

UPSTREAM_TIMEOUT = 1.0
HEARTBEAT = 0.3  # the gateway's; so a stream silent for 0.9 s counts as dead
UPSTREAM_CONNECTIONS = 200  # the connections the gateway pools for each upstream


@pytest.fixture(scope="module")
async def booking() -> AsyncIterator[FakeBooking]:
    fake = FakeBooking()
    # A backlog for every connection the gateway pools, opened at once.
    listening = await asyncio.start_server(fake.handle, "127.0.0.1", 0, backlog=1024)
    fake.url = f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}"
    try:
        yield fake
    finally:
        listening.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(listening.wait_closed(), 2)


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


UPSTREAM_2XX = 'gateway_upstream_duration_seconds_count{status="2xx",upstream="booking"}'


async def metric(client: httpx.AsyncClient, series: str) -> float:
    """The value of ``series`` (name and labels, as exposed) on the gateway's /metrics."""
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_a_long_poll_may_outlast_the_usual_timeout(
    client: httpx.AsyncClient, reset: FakeBooking
) -> None:
    held = UPSTREAM_TIMEOUT + 1  # booking settles the booking, and answers, after this long
    upstream_answers = await metric(client, UPSTREAM_2XX)
    waited, seconds = await timed_get(client, f"/api/v1/bookings/{held}?wait=5")
    assert waited.status_code == 200, waited.text
    assert waited.json() == {"id": str(held), "status": "CONFIRMED"}
    assert seconds >= held
    # Its head came when the wait was over: that is no measure of the upstream's latency.
    assert await metric(client, UPSTREAM_2XX) == upstream_answers
    assert (await client.get("/api/v1/bookings/0")).status_code == 200
    assert await metric(client, UPSTREAM_2XX) == upstream_answers + 1
    for query in ("", "?wait=abc", "?wait=-3"):  # no wait (booking refuses the others itself)
        usual, seconds = await timed_get(client, f"/api/v1/bookings/{held}{query}")
        assert usual.status_code == 503, query
        assert usual.json()["service"] == "booking"
        assert seconds < held, query


async def test_stream_events_pass_through_as_they_come(
    client: httpx.AsyncClient, reset: FakeBooking
) -> None:
    async with client.stream("GET", "/api/v1/customers/quiet/bookings/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["x-accel-buffering"] == "no"
        assert "content-length" not in response.headers
        received = response.aiter_raw()
        # The upstream sends nothing after its first event until told to: the event must not
        # wait in the gateway for whatever comes next.
        async with asyncio.timeout(HEARTBEAT * 3 * 0.8):
            assert await anext(received) == event(1)
        reset.go.set()
        async with asyncio.timeout(HEARTBEAT * 3 * 0.8):
            assert await anext(received) == event(2)


async def test_a_live_stream_has_no_total_timeout_and_a_silent_one_is_cut(
    client: httpx.AsyncClient, reset: FakeBooking
) -> None:
    received = b""
    async with client.stream("GET", "/api/v1/customers/live/bookings/stream") as response:
        started = time.monotonic()
        async for data in response.aiter_raw():  # heartbeats every 0.2 s, for 2.5 timeouts
            received += data
            if time.monotonic() - started > 2.5 * UPSTREAM_TIMEOUT:
                break
    assert received.startswith(event(1))
    assert b": heartbeat" in received
    assert reset.hung_up.is_set()  # closing the stream closed the upstream's connection

    silent = b""
    with pytest.raises(httpx.RemoteProtocolError):  # noqa: PT012 - the read is what fails
        async with (
            asyncio.timeout(10),
            client.stream("GET", "/api/v1/customers/quiet/bookings/stream") as response,
        ):
            started = time.monotonic()
            async for data in response.aiter_raw():
                silent += data
    assert silent == event(1)  # and then it ended incomplete: the caller can tell
    assert HEARTBEAT * 3 <= time.monotonic() - started < HEARTBEAT * 3 + 2


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


@pytest.mark.parametrize(
    "target",
    [
        "/api/v1/bookings/refuse-429?wait=5",
        "/api/v1/bookings/refuse-503?wait=5",
        "/api/v1/customers/refuse-429/bookings/stream",
        "/api/v1/customers/refuse-503/bookings/stream",
    ],
)
async def test_a_refusal_passes_through_unchanged(
    client: httpx.AsyncClient, reset: FakeBooking, target: str
) -> None:
    refused = await client.get(target)
    status = target.split("refuse-")[1][:3]
    assert refused.status_code == int(status)
    assert refused.headers["retry-after"] == "7"
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json() == {"title": "refused", "status": status}  # booking's, not the gateway's


async def test_a_stream_does_not_keep_a_half_open_breaker_from_closing(
    base_settings: Settings, tokens: dict[str, str], reset: FakeBooking
) -> None:
    breaker = {
        "breaker_window": 2,
        "breaker_min_calls": 2,
        "breaker_open_seconds": 0.5,
        "breaker_half_open_probes": 1,
    }
    async with (
        gateway(base_settings, reset, **breaker) as url,
        httpx.AsyncClient(base_url=url, headers=bearer(tokens["client"]), timeout=30) as client,
    ):
        reset.failing = True
        assert [(await client.get("/api/v1/bookings/0")).status_code for _ in range(2)] == [500] * 2
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
    breaker = {
        "breaker_window": 2,
        "breaker_min_calls": 2,
        "breaker_open_seconds": 0.5,
        "breaker_half_open_probes": 1,
    }
    async with (
        gateway(base_settings, reset, **breaker) as url,
        httpx.AsyncClient(base_url=url, headers=bearer(tokens["client"]), timeout=30) as client,
    ):
        reset.failing = True
        assert [(await client.get("/api/v1/bookings/0")).status_code for _ in range(2)] == [500] * 2
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
