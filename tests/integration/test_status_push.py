"""Booking's status push over HTTP on the running stack: the long-poll answers on settlement, a
stream sends each change with its store position and resumes after ``Last-Event-ID``, and the
open waits and streams of a client are limited and freed when closed. Every step of the
lifecycle is told: HELD (with its expiry), CANCELLING, CANCELLED and EXPIRED, and a long-poll
begun on a CANCELLING booking answers once it is CANCELLED."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx

from tests.harness.serving import Gateway, Stack, bearer

PROBLEM = "application/problem+json"


async def sale(stack: Stack, capacity: int = 50) -> tuple[str, str]:
    """A new event and customer: (customer id, event id)."""
    venue = await stack.inventory.post(
        "/api/v1/venues", json={"name": "Push", "address": "1 Wire St", "total_capacity": 1000}
    )
    event = await stack.inventory.post(
        "/api/v1/events",
        json={
            "name": "Push",
            "venue_id": venue.json()["id"],
            "total_capacity": capacity,
            "ticket_price": "5.00",
        },
    )
    customer = await stack.booking.post(
        "/api/v1/customers", json={"name": "P", "email": f"p.{uuid.uuid4().hex}@example.com"}
    )
    return customer.json()["id"], event.json()["id"]


async def book(stack: Stack, customer_id: str, event_id: str) -> str:
    accepted = await stack.booking.post(
        "/api/v1/bookings",
        json={"customer_id": customer_id, "event_id": event_id, "ticket_count": 1},
    )
    assert accepted.status_code == 202, accepted.text
    booking_id: str = accepted.json()["id"]
    return booking_id


async def events_of(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The server-sent events of a streamed answer, comments left out."""
    fields: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if not line:
            if "data" in fields:
                yield fields
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


async def test_a_long_poll_answers_as_soon_as_the_booking_settles(stack: Stack) -> None:
    customer_id, event_id = await sale(stack)
    booking_id = await book(stack, customer_id, event_id)
    started = asyncio.get_running_loop().time()
    answer = await stack.booking.get(f"/api/v1/bookings/{booking_id}", params={"wait": 20})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "CONFIRMED"
    assert asyncio.get_running_loop().time() - started < 10
    again = await stack.booking.get(f"/api/v1/bookings/{booking_id}", params={"wait": 20})
    assert again.json()["status"] == "CONFIRMED"  # settled before the wait: at once


async def test_a_wait_is_checked_like_any_parameter(stack: Stack) -> None:
    customer_id, event_id = await sale(stack)
    booking_id = await book(stack, customer_id, event_id)
    path = f"/api/v1/bookings/{booking_id}"
    for wait in ("0", "-1", "31", "soon"):
        refused = await stack.booking.get(path, params={"wait": wait})
        assert refused.status_code == 400, wait
        assert refused.headers["content-type"] == PROBLEM
    both = await stack.booking.get(path, params={"wait": "1", "as_of": "2026-01-01T00:00:00Z"})
    assert both.status_code == 400
    missing = await stack.booking.get(f"/api/v1/bookings/{uuid.uuid4()}", params={"wait": 20})
    assert missing.status_code == 404  # at once, not after the wait


async def test_a_stream_sends_each_change_and_resumes_after_the_last_id(stack: Stack) -> None:
    customer_id, event_id = await sale(stack)
    path = f"/api/v1/customers/{customer_id}/bookings/stream"
    seen: list[dict[str, Any]] = []
    async with stack.booking.stream("GET", path) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        booking_id = await book(stack, customer_id, event_id)
        async with asyncio.timeout(15):
            async for event in events_of(response):
                seen.append(event)
                if json.loads(event["data"])["status"] == "CONFIRMED":
                    break
    changes = [json.loads(e["data"]) for e in seen]
    assert [(c["booking_id"], c["status"]) for c in changes] == [
        (booking_id, "PENDING"),
        (booking_id, "CONFIRMED"),
    ]
    assert all(e["event"] == "booking" for e in seen)
    ids = [int(e["id"]) for e in seen]
    assert ids == sorted(ids)
    # Reconnected after the first: the second again, from the store.
    headers = {"Last-Event-ID": str(ids[0])}
    async with stack.booking.stream("GET", path, headers=headers) as resumed:
        async with asyncio.timeout(15):
            event = await anext(events_of(resumed))
    assert int(event["id"]) == ids[1]
    assert json.loads(event["data"])["status"] == "CONFIRMED"


async def test_a_stream_of_an_unknown_customer_or_with_a_bad_last_id_is_refused(
    stack: Stack,
) -> None:
    missing = await stack.booking.get(f"/api/v1/customers/{uuid.uuid4()}/bookings/stream")
    assert missing.status_code == 404
    customer_id, _ = await sale(stack)
    bad = await stack.booking.get(
        f"/api/v1/customers/{customer_id}/bookings/stream", headers={"Last-Event-ID": "x1"}
    )
    assert bad.status_code == 400
    assert bad.headers["content-type"] == PROBLEM


async def test_open_streams_and_waits_are_limited_per_client_and_freed_when_closed(
    stack: Stack, tokens: dict[str, str]
) -> None:
    customer_id, _ = await sale(stack)
    path = f"/api/v1/customers/{customer_id}/bookings/stream"
    limit = stack.settings.status_max_open_per_client
    limits = httpx.Limits(max_connections=limit + 5)
    async with (
        httpx.AsyncClient(
            base_url=stack.booking.base_url, headers=bearer(tokens["client"]), limits=limits
        ) as client,
        httpx.AsyncClient(
            base_url=stack.booking.base_url, headers=bearer(tokens["admin"])
        ) as other,
        contextlib.AsyncExitStack() as opened,
    ):
        for _ in range(limit):
            response = await opened.enter_async_context(client.stream("GET", path))
            assert response.status_code == 200
        refused = await client.get(path)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["content-type"] == PROBLEM
        wait = await client.get(f"/api/v1/bookings/{uuid.uuid4()}", params={"wait": 1})
        assert wait.status_code == 429  # waits and streams share the limit
        async with other.stream("GET", path) as theirs:  # another client: its own limit
            assert theirs.status_code == 200
        await opened.aclose()  # the client closes its streams: their slots are free at once
        async with asyncio.timeout(5):
            while (
                await client.get(f"/api/v1/bookings/{uuid.uuid4()}", params={"wait": 0.1})
            ).status_code == 429:
                await asyncio.sleep(0.05)


async def test_through_the_gateway_a_wait_runs_its_length_and_a_stream_flows(
    stack: Stack, gateway: Gateway
) -> None:
    customer_id, event_id = await sale(stack)
    async with gateway.client("admin") as api:
        path = f"/api/v1/customers/{customer_id}/bookings/stream"
        async with api.stream("GET", path) as stream:
            assert stream.status_code == 200
            booking_id = await book(stack, customer_id, event_id)
            settled = await api.get(f"/api/v1/bookings/{booking_id}", params={"wait": 20})
            assert settled.json()["status"] == "CONFIRMED"
            async with asyncio.timeout(10):
                statuses = []
                async for event in events_of(stream):
                    statuses.append(json.loads(event["data"])["status"])
                    if statuses[-1] == "CONFIRMED":
                        break
        assert statuses == ["PENDING", "CONFIRMED"]
        # A wait longer than the gateway's usual upstream timeout, on a booking that never
        # settles while it runs: a customer id names no booking, so it is 404 at once instead.
        quick = await api.get(f"/api/v1/bookings/{uuid.uuid4()}", params={"wait": 20})
        assert quick.status_code == 404


async def test_a_stream_closed_at_the_gateway_frees_its_slot_at_booking(
    stack: Stack, gateway: Gateway, tokens: dict[str, str]
) -> None:
    customer_id, _ = await sale(stack)
    path = f"/api/v1/customers/{customer_id}/bookings/stream"
    limit = stack.settings.status_max_open_per_client
    async with gateway.client("client", limits=httpx.Limits(max_connections=limit + 5)) as api:
        async with contextlib.AsyncExitStack() as opened:
            for _ in range(limit):
                response = await opened.enter_async_context(api.stream("GET", path))
                assert response.status_code == 200
            refused = await api.get(path)
            assert refused.status_code == 429  # booking's limit, passed through
        # Closed at the gateway: the gateway closes its upstream, and booking frees the slots.
        async with asyncio.timeout(5):
            while await opening(api, path) == 429:
                await asyncio.sleep(0.05)


async def opening(api: httpx.AsyncClient, path: str) -> int:
    """The status a stream opens with (closed again at once)."""
    async with api.stream("GET", path) as response:
        return response.status_code


async def _book(stack: Stack, customer_id: str, event_id: str, *, hold: bool) -> str:
    accepted = await stack.booking.post(
        "/api/v1/bookings",
        json={"customer_id": customer_id, "event_id": event_id, "ticket_count": 1, "hold": hold},
    )
    assert accepted.status_code == 202, accepted.text
    booking_id: str = accepted.json()["id"]
    return booking_id


async def test_a_stream_sends_every_step_of_the_lifecycle(stack: Stack) -> None:
    customer_id, event_id = await sale(stack)
    path = f"/api/v1/customers/{customer_id}/bookings/stream"
    seen: dict[str, list[dict[str, Any]]] = {}
    async with stack.booking.stream("GET", path) as response:
        assert response.status_code == 200
        cancelled = await _book(stack, customer_id, event_id, hold=True)
        left = await _book(stack, customer_id, event_id, hold=True)  # expires (4 s)
        pending_cancel = await _book(stack, customer_id, event_id, hold=False)
        early = await stack.booking.post(f"/api/v1/bookings/{pending_cancel}/cancel")
        assert early.status_code == 202, early.text
        waited = await stack.booking.get(f"/api/v1/bookings/{cancelled}", params={"wait": 20})
        assert waited.json()["status"] == "HELD"
        held_at_once = await stack.booking.get(
            f"/api/v1/bookings/{cancelled}", params={"wait": 20}, timeout=5
        )
        assert held_at_once.json()["status"] == "HELD"  # not transient: answered at once
        answer = await stack.booking.post(f"/api/v1/bookings/{cancelled}/cancel")
        assert answer.status_code == 202
        if answer.json()["status"] == "CANCELLING":
            done = await stack.booking.get(f"/api/v1/bookings/{cancelled}", params={"wait": 20})
            assert done.json()["status"] == "CANCELLED"

        async def read() -> None:
            async for event in events_of(response):
                change = json.loads(event["data"])
                seen.setdefault(change["booking_id"], []).append(change)
                statuses = {b: [c["status"] for c in cs] for b, cs in seen.items()}
                if (
                    statuses.get(cancelled, [])[-1:] == ["CANCELLED"]
                    and statuses.get(left, [])[-1:] == ["EXPIRED"]
                    and statuses.get(pending_cancel, [])[-1:] == ["CANCELLED"]
                ):
                    return

        await asyncio.wait_for(read(), 30)
    steps = {b: [c["status"] for c in changes] for b, changes in seen.items()}
    assert steps[cancelled] == ["PENDING", "HELD", "CANCELLING", "CANCELLED"]
    assert steps[left] == ["PENDING", "HELD", "EXPIRED"]
    assert steps[pending_cancel] in (
        ["PENDING", "PENDING", "CONFIRMED", "CANCELLING", "CANCELLED"],  # cancel before the saga
        ["PENDING", "CONFIRMED", "CANCELLING", "CANCELLED"],  # after it
    )
    held = next(c for c in seen[left] if c["status"] == "HELD")
    assert held["expires_at"] is not None
    assert held["order_id"] is not None
