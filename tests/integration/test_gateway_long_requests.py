"""Long-polls and event streams through the gateway, against an upstream on a raw socket that
holds its answers as booking's status push does: their timeouts, events passed on as they come,
and refusals passed on unchanged."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.integration.held_gateway import (
    HEARTBEAT,
    UPSTREAM_TIMEOUT,
    booking,
    client,
    gateway_url,
    reset,
    timed_get,
)
from tests.integration.held_upstream import FakeBooking, event

__all__ = ["booking", "client", "gateway_url", "reset"]  # fixtures


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
