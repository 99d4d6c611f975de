"""Helpers for tests that drive the booking saga through the running services."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import select

from tests.harness.databases import order_records
from tests.harness.serving import Stack
from tests.integration.helpers import create_event
from ticketing.booking.tables import bookings
from ticketing.order.inventory_client import InventoryClient
from ticketing.order.service import OrderService
from ticketing.shared.auth.client_credentials import ClientCredentials
from ticketing.shared.auth.tokens import OidcDiscovery
from ticketing.shared.http.client import new_session
from ticketing.shared.http.upstream import Upstream


async def create_customer(booking: httpx.AsyncClient) -> dict[str, Any]:
    response = await booking.post(
        "/api/v1/customers",
        json={"name": "Ada", "email": f"ada.{uuid.uuid4().hex[:12]}@example.com"},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def book(
    stack: Stack, customer_id: str, event_id: str, count: int = 1, **headers: str
) -> httpx.Response:
    return await stack.booking.post(
        "/api/v1/bookings",
        json={"customer_id": customer_id, "event_id": event_id, "ticket_count": count},
        headers=headers,
    )


async def settled(stack: Stack, booking_id: str, timeout: float = 30) -> dict[str, Any]:
    """Poll until the booking leaves PENDING."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        body: dict[str, Any] = (await stack.booking.get(f"/api/v1/bookings/{booking_id}")).json()
        if body["status"] != "PENDING":
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"booking {booking_id} still PENDING after {timeout} s")
        await asyncio.sleep(0.05)


async def setup_sale(stack: Stack, capacity: int) -> tuple[str, str]:
    """An event with ``capacity`` seats and a customer: (customer id, event id)."""
    event = await create_event(stack.inventory, capacity=capacity, price="25.00")
    customer = await create_customer(stack.booking)
    return customer["id"], event["id"]


async def bookings_of(stack: Stack, event_id: str) -> list[uuid.UUID]:
    async with stack.engines["booking"].connect() as conn:
        rows = await conn.execute(
            select(bookings.c.id).where(bookings.c.event_id == uuid.UUID(event_id))
        )
        return [row.id for row in rows]


@asynccontextmanager
async def order_service(stack: Stack) -> AsyncIterator[tuple[OrderService, ClientCredentials]]:
    """Order's service on the stack's order database, calling the stack's inventory with the
    token order-service fetches (the credentials, to count the fetches)."""
    async with new_session(timeout=5) as http:
        credentials = ClientCredentials(
            OidcDiscovery(stack.settings.oidc_issuer, http),
            http,
            "order-service",
            "order-service-secret",
        )
        upstream = Upstream(
            "inventory", stack.settings.base_url("inventory"), credentials=credentials
        )
        service = OrderService(order_records(stack.engines["order"]), InventoryClient(upstream))
        try:
            yield service, credentials
        finally:
            await upstream.aclose()
