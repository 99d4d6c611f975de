"""The booking lifecycle end to end through the gateway (issue 19): a hold, its confirmation,
a cancel that gives the seats back, a hold that expires, a cancel while PENDING, who may
change a booking, and the limit per customer; every service real (MariaDB, the Kafka-protocol
broker, the OIDC server, HTTP over loopback). The test stack holds seats 4 s."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx

from tests.harness import Gateway

PROBLEM = "application/problem+json"


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


async def test_a_hold_is_confirmed_then_cancelled_and_its_seats_come_back(
    gateway: Gateway,
) -> None:
    sale = await shop(gateway)
    try:
        booking_id = await sale.book(3, hold=True)
        held = await sale.settled(booking_id)
        assert held["status"] == "HELD"
        assert held["hold"] is True
        assert held["expires_at"] > held["created_at"]
        assert await sale.left() == 7  # held seats are taken
        confirmed = await sale.client.post(f"/api/v1/bookings/{booking_id}/confirm")
        assert confirmed.status_code == 200, confirmed.text
        assert confirmed.json()["status"] == "CONFIRMED"
        assert "expires_at" not in confirmed.json()
        again = await sale.client.post(f"/api/v1/bookings/{booking_id}/confirm")
        assert (again.status_code, again.json()) == (200, confirmed.json())

        cancelling = await sale.client.post(f"/api/v1/bookings/{booking_id}/cancel")
        assert cancelling.status_code == 202, cancelling.text
        assert cancelling.json()["status"] in ("CANCELLING", "CANCELLED")
        assert (await sale.settled(booking_id))["status"] == "CANCELLED"
        await sale.left_becomes(10)
        repeat = await sale.client.post(f"/api/v1/bookings/{booking_id}/cancel")
        assert (repeat.status_code, repeat.json()["status"]) == (202, "CANCELLED")
        late = await sale.client.post(f"/api/v1/bookings/{booking_id}/confirm")
        assert late.status_code == 409
        assert late.headers["content-type"].startswith(PROBLEM)
        assert await sale.booking_history(booking_id) == [
            "BookingRequested",
            "BookingHeld",
            "BookingConfirmed",
            "BookingCancelled",
            "SeatsReturned",
        ]
        history = await sale.event_history()
        assert [item["type"] for item in history] == [
            "EventScheduled",
            "SeatsReserved",
            "SeatsReleased",
        ]
        assert history[-1]["data"]["reason"] == "cancelled"
    finally:
        await sale.close()


async def test_a_hold_left_alone_expires_and_its_seats_come_back(gateway: Gateway) -> None:
    sale = await shop(gateway)
    try:
        booking_id = await sale.book(4, hold=True)
        assert (await sale.settled(booking_id))["status"] == "HELD"
        assert await sale.left() == 6
        for _ in range(200):  # 4 s of hold, then the next sweep
            booking = (await sale.client.get(f"/api/v1/bookings/{booking_id}")).json()
            if booking["status"] != "HELD":
                break
            await asyncio.sleep(0.05)
        assert booking["status"] == "EXPIRED"
        await sale.left_becomes(10)
        for action in ("confirm", "cancel"):
            refused = await sale.client.post(f"/api/v1/bookings/{booking_id}/{action}")
            assert refused.status_code == 409, refused.text
            assert "retry-after" not in refused.headers
        assert (await sale.booking_history(booking_id))[-1] == "HoldExpired"
        released = (await sale.event_history())[-1]
        assert (released["type"], released["data"]["reason"]) == ("SeatsReleased", "expired")
    finally:
        await sale.close()


async def test_a_cancel_while_pending_is_never_lost(gateway: Gateway) -> None:
    sale = await shop(gateway)
    try:
        ids = [await sale.book(1, hold=n % 2 == 0) for n in range(6)]
        answers = await asyncio.gather(
            *(sale.client.post(f"/api/v1/bookings/{booking_id}/cancel") for booking_id in ids)
        )
        for answer in answers:
            assert answer.status_code == 202, answer.text
        for booking_id in ids:
            assert (await sale.settled(booking_id))["status"] == "CANCELLED"
        await sale.left_becomes(10)
    finally:
        await sale.close()


async def test_only_the_requesting_client_or_an_admin_may_change_a_booking(
    gateway: Gateway,
) -> None:
    sale = await shop(gateway)
    try:
        booking_id = await sale.book(1, hold=True)
        assert (await sale.settled(booking_id))["status"] == "HELD"
        for action in ("confirm", "cancel"):
            refused = await sale.partner.post(f"/api/v1/bookings/{booking_id}/{action}")
            assert refused.status_code == 403, refused.text
            assert refused.headers["content-type"].startswith(PROBLEM)
        assert (await sale.settled(booking_id))["status"] == "HELD"  # nothing changed
        async with httpx.AsyncClient(base_url=gateway.url) as anonymous:
            assert (
                await anonymous.post(f"/api/v1/bookings/{booking_id}/cancel")
            ).status_code == 401
        missing = await sale.admin.post(f"/api/v1/bookings/{uuid.uuid4()}/cancel")
        assert missing.status_code == 404
        cancelled = await sale.admin.post(f"/api/v1/bookings/{booking_id}/cancel")
        assert cancelled.status_code == 202, cancelled.text
        assert (await sale.settled(booking_id))["status"] == "CANCELLED"
    finally:
        await sale.close()


async def test_a_customer_cannot_pass_the_limit_even_with_concurrent_requests(
    gateway: Gateway,
) -> None:
    sale = await shop(gateway, capacity=100, limit=5)
    try:
        event = (await sale.client.get(f"/api/v1/events/{sale.event_id}")).json()
        assert event["max_tickets_per_customer"] == 5
        ids = await asyncio.gather(*(sale.book(1, hold=n % 2 == 0) for n in range(50)))
        final = [await sale.settled(booking_id) for booking_id in ids]
        taken = [b for b in final if b["status"] in ("HELD", "CONFIRMED")]
        assert len(taken) == 5
        refused = [b for b in final if b["status"] == "REJECTED"]
        assert len(refused) == 45
        assert {b["reason"] for b in refused} == {"customer_limit_reached"}
        assert await sale.left() == 95
        # A cancelled booking's seats stop counting toward the limit.
        cancelled = await sale.client.post(f"/api/v1/bookings/{taken[0]['id']}/cancel")
        assert cancelled.status_code == 202
        assert (await sale.settled(taken[0]["id"]))["status"] == "CANCELLED"
        again = await sale.settled(await sale.book(1))
        assert again["status"] == "CONFIRMED"
    finally:
        await sale.close()


async def test_the_gateway_documents_the_lifecycle(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as anonymous:
        spec = (await anonymous.get("/docs/openapi.json")).json()
        events = (await anonymous.get("/docs/asyncapi.json")).json()
    paths = spec["paths"]
    assert set(paths["/api/v1/bookings/{booking_id}/confirm"]) == {"post"}
    assert set(paths["/api/v1/bookings/{booking_id}/cancel"]) == {"post"}
    assert "403" in paths["/api/v1/bookings/{booking_id}/cancel"]["post"]["responses"]
    schemas = spec["components"]["schemas"]
    assert "HELD" in schemas["BookingStatus"]["enum"]
    assert "max_tickets_per_customer" in schemas["EventCreate"]["properties"]
    messages = json.dumps(events["components"]["messages"])
    for name in ("BookingCancelled", "HoldExpired", "OrderReleased"):
        assert name in messages
