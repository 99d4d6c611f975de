"""The gateway in front of the real stack: routing, auth, limits and breakers."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
from litestar import Litestar, get
from litestar.params import FromPath
from sqlalchemy import select

from tests.harness.processes import free_port
from tests.harness.serving import Gateway, Stack, bearer, gateway_settings, serve
from ticketing.booking.tables import event_store as booking_store
from ticketing.gateway.app import create_app as create_gateway_app

PROBLEM = "application/problem+json"


async def poll_confirmed(client: httpx.AsyncClient, booking_id: str) -> dict[str, Any]:
    for _ in range(600):
        body: dict[str, Any] = (await client.get(f"/api/v1/bookings/{booking_id}")).json()
        if body["status"] != "PENDING":
            return body
        await asyncio.sleep(0.05)
    raise AssertionError("booking never settled")


async def test_a_booking_through_the_gateway_confirms(gateway: Gateway, stack: Stack) -> None:
    async with gateway.client("admin") as admin, gateway.client("client") as client:
        venue = (
            await admin.post(
                "/api/v1/venues",
                json={"name": "Dome", "address": "2 Side St", "total_capacity": 50},
            )
        ).json()
        event = (
            await admin.post(
                "/api/v1/events",
                json={
                    "name": "Show",
                    "venue_id": venue["id"],
                    "total_capacity": 50,
                    "ticket_price": "10.00",
                },
            )
        ).json()
        customer = await client.post(
            "/api/v1/customers",
            json={"name": "Bo", "email": f"bo.{uuid.uuid4().hex[:8]}@example.com"},
        )
        assert customer.status_code == 201
        response = await client.post(
            "/api/v1/bookings",
            json={"customer_id": customer.json()["id"], "event_id": event["id"], "ticket_count": 2},
            headers={"X-Request-ID": "trace-through-gateway"},
        )
        assert response.status_code == 202, response.text
        assert response.headers["x-request-id"] == "trace-through-gateway"
        assert response.headers["location"].startswith("/api/v1/bookings/")
        assert int(response.headers["ratelimit-remaining"]) >= 0
        final = await poll_confirmed(client, response.json()["id"])
        assert final["status"] == "CONFIRMED"
        left = (await client.get(f"/api/v1/events/{event['id']}")).json()["left_capacity"]
        assert left == 48
    # The request id travelled to the booking service and into the event it published.
    async with stack.engines["booking"].connect() as conn:
        correlation_id = await conn.scalar(
            select(booking_store.c.correlation_id).where(
                booking_store.c.stream_id == uuid.UUID(response.json()["id"]),
                booking_store.c.event_type == "BookingRequested",
            )
        )
    assert correlation_id == "trace-through-gateway"


async def test_tokens_and_permissions_are_enforced_at_the_door(gateway: Gateway) -> None:
    async with gateway.client(None) as anonymous:
        response = await anonymous.get("/api/v1/events")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert response.headers["content-type"] == PROBLEM
        bad = await anonymous.get("/api/v1/events", headers={"Authorization": "Bearer x.y.z"})
        assert bad.status_code == 401
    async with gateway.client("client") as client:
        assert (await client.get("/api/v1/events")).status_code == 200
        refused = await client.post(
            "/api/v1/venues", json={"name": "N", "address": "A", "total_capacity": 1}
        )
        assert refused.status_code == 403
        assert "inventory:write" in refused.json()["detail"]
    async with gateway.client("order") as order:
        refused = await order.post(
            "/api/v1/customers", json={"name": "N", "email": "n@example.com"}
        )
        assert refused.status_code == 403


async def test_internal_paths_are_never_routed(gateway: Gateway) -> None:
    async with gateway.client("order") as order:
        path = f"/internal/v1/events/{uuid.uuid4()}/reservations"
        response = await order.post(path, json={"booking_id": str(uuid.uuid4()), "ticket_count": 1})
        assert response.status_code == 404
        for sneaky in (
            "/api/v1/events/../../internal/v1/events",
            "/api/v1/events/%2e%2e/%2e%2e/internal/v1/events",
            "/api/v1/events%2f..%2f..%2finternal",
        ):
            request = order.build_request("GET", "http://placeholder")
            request.url = httpx.URL(gateway.url + sneaky)
            got = await order.send(request)
            assert got.status_code in (400, 404), sneaky
        unknown = await order.get("/api/v1/payments")
        assert unknown.status_code == 404
        assert unknown.headers["content-type"] == PROBLEM


async def test_bodies_over_the_limit_are_413(gateway: Gateway) -> None:
    async with gateway.client("admin") as admin:
        big = b'{"name": "' + b"x" * (gateway.settings.max_request_body_bytes + 10) + b'"}'
        declared = await admin.post(
            "/api/v1/venues", content=big, headers={"Content-Type": "application/json"}
        )
        assert declared.status_code == 413
        assert declared.headers["content-type"] == PROBLEM

        async def chunks() -> Any:
            for _ in range(100):
                yield b"x" * 1024

        streamed = await admin.post(
            "/api/v1/venues", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413


async def test_health_and_metrics_show_upstreams_and_breakers(gateway: Gateway) -> None:
    async with gateway.client(None) as anonymous:
        ready = await anonymous.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"inventory": "ok", "booking": "ok"}
        breakers = ready.json()["breakers"]
        assert breakers == {
            "inventory": {gateway.settings.base_url("inventory"): "closed"},
            "booking": {gateway.settings.base_url("booking"): "closed"},
        }
        assert (await anonymous.get("/metrics")).status_code == 401  # the public door
    async with gateway.client("client") as client:
        metrics = (await client.get("/metrics")).text
        booking = gateway.settings.base_url("booking")
        assert f'gateway_breaker_state{{replica="{booking}",upstream="booking"}} 0.0' in metrics
        assert "gateway_upstream_duration_seconds_bucket" in metrics


async def test_rate_limit_per_client_answers_429(stack: Stack, tokens: dict[str, str]) -> None:
    settings = gateway_settings(
        stack, gateway_rate_limit_per_second=0.5, gateway_rate_limit_burst=3
    )
    async with (
        serve(create_gateway_app(settings)) as url,
        httpx.AsyncClient(base_url=url, headers=bearer(tokens["client"])) as client,
        httpx.AsyncClient(base_url=url, headers=bearer(tokens["admin"])) as other,
    ):
        statuses = [(await client.get("/api/v1/events")).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        limited = await client.get("/api/v1/events")
        assert limited.status_code == 429
        assert limited.headers["content-type"] == PROBLEM
        assert limited.headers["ratelimit-limit"] == "3"
        assert limited.headers["ratelimit-remaining"] == "0"
        assert int(limited.headers["retry-after"]) >= 1
        assert (await other.get("/api/v1/events")).status_code == 200  # per client


async def test_a_dead_upstream_opens_its_breaker_and_spares_the_others(
    stack: Stack, tokens: dict[str, str]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    settings = gateway_settings(stack, booking_url=dead, breaker_open_seconds=30)
    async with (
        serve(create_gateway_app(settings)) as url,
        httpx.AsyncClient(base_url=url, headers=bearer(tokens["admin"])) as client,
    ):
        for _ in range(4):
            failed = await client.get(f"/api/v1/bookings/{uuid.uuid4()}")
            assert failed.status_code == 503
            assert failed.headers["content-type"] == PROBLEM
            assert failed.json()["service"] == "booking"
            assert "booking" in failed.json()["detail"]
            assert "retry-after" in failed.headers
        started = time.monotonic()
        fast = await client.get(f"/api/v1/bookings/{uuid.uuid4()}")
        assert fast.status_code == 503
        assert int(fast.headers["retry-after"]) >= 25  # the breaker is open: no call was made
        assert time.monotonic() - started < 0.5
        assert (await client.get("/api/v1/events")).status_code == 200
        ready = await client.get("/health/ready")
        # The gateway still serves (inventory answers, booking's 503 names it): it stays in
        # its balancer, and says which upstream is missing.
        assert ready.status_code == 200
        assert ready.json()["checks"]["booking"] == "unavailable"
        assert ready.json()["breakers"]["booking"] == {dead: "open"}
        assert ready.json()["checks"]["inventory"] == "ok"
        metrics = (await client.get("/metrics")).text
        assert f'gateway_breaker_state{{replica="{dead}",upstream="booking"}} 2.0' in metrics


async def test_a_dead_replica_is_passed_over_while_a_live_one_answers(
    stack: Stack, tokens: dict[str, str]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    live = str(stack.booking.base_url).rstrip("/")
    settings = gateway_settings(stack, booking_url=f"{dead},{live}")
    async with (
        serve(create_gateway_app(settings)) as url,
        httpx.AsyncClient(base_url=url, headers=bearer(tokens["admin"])) as client,
    ):
        created = [
            await client.post(
                "/api/v1/customers",
                json={"name": "Replica", "email": f"replica.{uuid.uuid4().hex}@example.com"},
            )
            for _ in range(6)
        ]
        # Writes too: a refused connection means the dead replica never saw them.
        assert [r.status_code for r in created] == [201] * 6, created[-1].text
        ready = await client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["breakers"]["booking"][live] == "closed"


async def test_a_hanging_upstream_costs_at_most_the_timeout(
    stack: Stack, tokens: dict[str, str]
) -> None:
    release = asyncio.Event()

    @get("/api/v1/bookings/{booking_id:str}")
    async def hang(booking_id: FromPath[str]) -> None:
        await asyncio.wait_for(release.wait(), 30)

    async with serve(Litestar([hang])) as slow_url:
        settings = gateway_settings(stack, booking_url=slow_url, upstream_timeout=0.5)
        async with (
            serve(create_gateway_app(settings)) as url,
            httpx.AsyncClient(base_url=url, headers=bearer(tokens["admin"])) as client,
        ):
            started = time.monotonic()
            response = await client.get("/api/v1/bookings/anything")
            elapsed = time.monotonic() - started
            release.set()
    assert response.status_code == 503
    assert elapsed < 3
