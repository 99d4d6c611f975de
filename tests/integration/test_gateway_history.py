"""Events' and bookings' histories and past states through the gateway, after a booking the
saga reserved."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from tests.harness.processes import DEV_CLIENTS
from tests.harness.serving import Gateway, Stack
from tests.integration.helpers import create_event


async def test_a_booking_shows_in_the_history_and_as_of_through_the_gateway(
    gateway: Gateway, stack: Stack
) -> None:
    async with gateway.client("admin") as admin, gateway.client("client") as client:
        venue = await admin.post(
            "/api/v1/venues", json={"name": "Hall", "address": "3 Low St", "total_capacity": 8}
        )
        event = (
            await admin.post(
                "/api/v1/events",
                json={
                    "name": "Recital",
                    "venue_id": venue.json()["id"],
                    "total_capacity": 8,
                    "ticket_price": "5.00",
                },
            )
        ).json()
        customer = await client.post(
            "/api/v1/customers",
            json={"name": "Cy", "email": f"cy.{uuid.uuid4().hex[:8]}@example.com"},
        )
        request_id = f"trace-{uuid.uuid4().hex}"
        booking = await client.post(
            "/api/v1/bookings",
            json={"customer_id": customer.json()["id"], "event_id": event["id"], "ticket_count": 3},
            headers={"X-Request-ID": request_id},
        )
        assert booking.status_code == 202, booking.text

        history_path = f"/api/v1/events/{event['id']}/history"
        items: list[dict[str, Any]] = []
        for _ in range(600):  # the saga reserves asynchronously
            items = (await client.get(history_path)).json()["items"]
            if len(items) == 2:
                break
            await asyncio.sleep(0.05)
        assert [(e["type"], e["actor"]) for e in items] == [
            ("EventScheduled", DEV_CLIENTS["admin"][0]),
            ("SeatsReserved", DEV_CLIENTS["order"][0]),
        ]
        assert items[1]["data"]["booking_id"] == booking.json()["id"]
        # One booking's lineage across services: its request's correlation id, and as cause the
        # BookingRequested message the saga reserved for (not the saga's batch request).
        async with stack.engines["booking"].connect() as conn:
            message_id = await conn.scalar(
                text("SELECT event_id FROM event_store WHERE stream_id = :b AND version = 1"),
                {"b": booking.json()["id"]},
            )
        assert items[1]["correlation_id"] == request_id
        assert items[1]["causation_id"] == str(message_id)

        reserved_at = datetime.fromisoformat(items[1]["recorded_at"])
        before = await client.get(
            f"/api/v1/events/{event['id']}",
            params={"as_of": (reserved_at - timedelta(microseconds=1)).isoformat()},
        )
        assert before.status_code == 200, before.text
        assert before.json()["left_capacity"] == 8
        after = await client.get(
            f"/api/v1/events/{event['id']}", params={"as_of": reserved_at.isoformat()}
        )
        assert after.json()["left_capacity"] == 5
        naive = await client.get(
            f"/api/v1/events/{event['id']}", params={"as_of": "2027-01-01T00:00:00"}
        )
        assert naive.status_code == 400
        assert naive.headers["content-type"] == "application/problem+json"


async def test_a_confirmed_bookings_history_shows_who_requested_and_who_confirmed_it(
    gateway: Gateway, stack: Stack
) -> None:
    async with gateway.client("admin") as admin, gateway.client("client") as client:
        event = await create_event(admin, capacity=4, price="7.50")
        customer = await client.post(
            "/api/v1/customers",
            json={"name": "Di", "email": f"di.{uuid.uuid4().hex[:8]}@example.com"},
        )
        request_id = f"trace-{uuid.uuid4().hex}"
        booking = await client.post(
            "/api/v1/bookings",
            json={"customer_id": customer.json()["id"], "event_id": event["id"], "ticket_count": 2},
            headers={"X-Request-ID": request_id},
        )
        assert booking.status_code == 202, booking.text
        booking_path = f"/api/v1/bookings/{booking.json()['id']}"
        items: list[dict[str, Any]] = []
        for _ in range(600):  # the saga settles asynchronously
            items = (await client.get(f"{booking_path}/history")).json()["items"]
            if len(items) == 2:
                break
            await asyncio.sleep(0.05)
        assert [(e["version"], e["type"], e["actor"]) for e in items] == [
            (1, "BookingRequested", DEV_CLIENTS["client"][0]),
            (2, "BookingConfirmed", "booking-service"),
        ]
        requested, confirmed = items
        assert requested["correlation_id"] == confirmed["correlation_id"] == request_id
        assert requested["data"]["ticket_count"] == 2
        assert requested["data"]["total_price"] == "15.00"
        async with stack.engines["order"].connect() as conn:
            outcome_id = await conn.scalar(
                text("SELECT event_id FROM event_store WHERE stream_id = :b"),
                {"b": booking.json()["id"]},
            )
        assert confirmed["causation_id"] == str(outcome_id)  # the OrderConfirmed message
        assert confirmed["data"]["order_id"]

        page = await client.get(f"{booking_path}/history", params={"limit": 1})
        assert [e["type"] for e in page.json()["items"]] == ["BookingRequested"]
        rest = await client.get(
            f"{booking_path}/history", params={"cursor": page.json()["next_cursor"]}
        )
        assert [e["type"] for e in rest.json()["items"]] == ["BookingConfirmed"]
        assert rest.json()["next_cursor"] is None

        confirmed_at = datetime.fromisoformat(confirmed["recorded_at"])
        requested_at = datetime.fromisoformat(requested["recorded_at"])
        before = await client.get(
            booking_path, params={"as_of": (confirmed_at - timedelta(microseconds=1)).isoformat()}
        )
        assert before.status_code == 200, before.text
        assert before.json()["status"] == "PENDING"
        assert "order_id" not in before.json()
        now = await client.get(booking_path, params={"as_of": confirmed_at.isoformat()})
        assert now.json() == (await client.get(booking_path)).json()
        assert now.json()["status"] == "CONFIRMED"
        earlier = await client.get(
            booking_path, params={"as_of": (requested_at - timedelta(seconds=1)).isoformat()}
        )
        assert earlier.status_code == 404
        assert earlier.headers["content-type"] == "application/problem+json"
        unknown = await client.get(f"/api/v1/bookings/{uuid.uuid4()}/history")
        assert unknown.status_code == 404
    async with gateway.client(None) as anonymous:
        assert (await anonymous.get(f"{booking_path}/history")).status_code == 401


async def test_the_merged_openapi_lists_the_history_and_as_of(gateway: Gateway) -> None:
    async with gateway.client(None) as anonymous:
        spec = (await anonymous.get("/docs/openapi.json")).json()
    for resource, name in (("events", "event_id"), ("bookings", "booking_id")):
        assert "get" in spec["paths"][f"/api/v1/{resource}/{{{name}}}/history"]
        get_one = spec["paths"][f"/api/v1/{resource}/{{{name}}}"]["get"]
        assert "as_of" in {p["name"] for p in get_one["parameters"]}
