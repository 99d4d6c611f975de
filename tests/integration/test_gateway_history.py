"""An event's history and past state through the gateway, after a booking the saga reserved."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from tests.conftest import Gateway, Stack
from tests.harness import DEV_CLIENTS


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
                text("SELECT event_id FROM outbox WHERE aggregate_id = :b"),
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


async def test_the_merged_openapi_lists_the_history_and_as_of(gateway: Gateway) -> None:
    async with gateway.client(None) as anonymous:
        spec = (await anonymous.get("/docs/openapi.json")).json()
    assert "get" in spec["paths"]["/api/v1/events/{event_id}/history"]
    get_event = spec["paths"]["/api/v1/events/{event_id}"]["get"]
    assert "as_of" in {p["name"] for p in get_event["parameters"]}
