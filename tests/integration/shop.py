"""A box office seen through the gateway: one event, one customer, and the clients that book,
watch and change its bookings."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.harness.serving import Gateway


class Shop:
    """One event, one customer, and the gateway seen by three clients: the one that books,
    another plain client, and an admin (bookings:admin)."""

    def __init__(self, gateway: Gateway) -> None:
        self.client = gateway.client("client")
        self.partner = gateway.client("partner")
        self.admin = gateway.client("admin")
        self.event_id = ""
        self.customer_id = ""

    async def open(self, capacity: int, limit: int | None = None) -> Shop:
        venue = await self.admin.post(
            "/api/v1/venues", json={"name": "Hall", "address": "1 Road", "total_capacity": 1000}
        )
        body: dict[str, Any] = {
            "name": "Show",
            "venue_id": venue.json()["id"],
            "total_capacity": capacity,
            "ticket_price": "10.00",
        }
        if limit is not None:
            body["max_tickets_per_customer"] = limit
        event = await self.admin.post("/api/v1/events", json=body)
        assert event.status_code == 201, event.text
        self.event_id = event.json()["id"]
        customer = await self.client.post(
            "/api/v1/customers",
            json={"name": "Ada", "email": f"ada.{uuid.uuid4().hex[:12]}@example.com"},
        )
        self.customer_id = customer.json()["id"]
        return self

    async def close(self) -> None:
        for client in (self.client, self.partner, self.admin):
            await client.aclose()

    async def book(self, tickets: int = 2, *, hold: bool = False) -> str:
        response = await self.client.post(
            "/api/v1/bookings",
            json={
                "customer_id": self.customer_id,
                "event_id": self.event_id,
                "ticket_count": tickets,
                "hold": hold,
            },
        )
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "PENDING"
        booking_id: str = response.json()["id"]
        return booking_id

    async def settled(self, booking_id: str) -> dict[str, Any]:
        """The booking once it left PENDING (and CANCELLING)."""
        response = await self.client.get(f"/api/v1/bookings/{booking_id}", params={"wait": 20})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def left(self) -> int:
        event = await self.client.get(f"/api/v1/events/{self.event_id}")
        left: int = event.json()["left_capacity"]
        return left

    async def left_becomes(self, expected: int, seconds: float = 20) -> None:
        """Seats go back a saga leg after the booking changed: wait for them."""
        for _ in range(int(seconds / 0.05)):
            if await self.left() == expected:
                return
            await asyncio.sleep(0.05)
        assert await self.left() == expected

    async def event_history(self) -> list[dict[str, Any]]:
        page = await self.client.get(f"/api/v1/events/{self.event_id}/history?limit=100")
        items: list[dict[str, Any]] = page.json()["items"]
        return items

    async def booking_history(self, booking_id: str) -> list[str]:
        page = await self.client.get(f"/api/v1/bookings/{booking_id}/history?limit=100")
        return [item["type"] for item in page.json()["items"]]


async def shop(gateway: Gateway, capacity: int = 10, limit: int | None = None) -> Shop:
    return await Shop(gateway).open(capacity, limit)
