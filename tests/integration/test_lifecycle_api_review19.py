"""Review of issue 19 through the gateway: refused requests change nothing and answer 4xx, bad
input never gives a 5xx, and who may spend a customer's limit."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.harness import Gateway
from tests.integration.test_lifecycle_flow import Shop


async def _history(client: httpx.AsyncClient, booking_id: str) -> list[str]:
    page = await client.get(f"/api/v1/bookings/{booking_id}/history?limit=100")
    return [item["type"] for item in page.json()["items"]]


async def test_bad_ids_and_bodies_on_confirm_and_cancel_are_4xx_never_5xx(
    gateway: Gateway,
) -> None:
    sale = await Shop(gateway).open(10)
    try:
        booking_id = await sale.book(1, hold=True)
        assert (await sale.settled(booking_id))["status"] == "HELD"
        before = await _history(sale.client, booking_id)
        for action in ("confirm", "cancel"):
            for bad in ("not-a-uuid", "1" * 5000, "%00", "..", uuid.uuid4().hex + "x"):
                answer = await sale.client.post(f"/api/v1/bookings/{bad}/{action}")
                assert 400 <= answer.status_code < 500, (action, bad[:20], answer.status_code)
            # Wrong methods on the lifecycle's paths.
            for method in ("GET", "PUT", "DELETE", "PATCH"):
                answer = await sale.client.request(
                    method, f"/api/v1/bookings/{booking_id}/{action}"
                )
                assert answer.status_code == 405, (method, action, answer.status_code)
        # A cancel with a token lacking bookings:write (the order service's) is refused.
        async with gateway.client("order") as order:
            for action in ("confirm", "cancel"):
                refused = await order.post(f"/api/v1/bookings/{booking_id}/{action}")
                assert refused.status_code == 403, refused.text
        assert await _history(sale.client, booking_id) == before
        # Bodies on confirm: not JSON, and large; never a 5xx.
        for body in (b"{not json", b"[" * 10_000, b"x" * 900_000):
            answer = await sale.client.post(
                f"/api/v1/bookings/{booking_id}/confirm",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            assert answer.status_code < 500, (body[:10], answer.status_code, answer.text[:200])
    finally:
        await sale.close()


async def test_confirming_a_pending_booking_is_409_with_retry_after_and_changes_nothing(
    gateway: Gateway,
) -> None:
    sale = await Shop(gateway).open(10)
    try:
        for _ in range(5):  # confirmed at once after the request: before the saga answers
            booking_id = await sale.book(1, hold=True)
            answer = await sale.client.post(f"/api/v1/bookings/{booking_id}/confirm")
            if answer.status_code == 409:
                break
        assert answer.status_code == 409, answer.text
        assert "PENDING" in answer.json()["detail"]
        assert answer.headers.get("retry-after") == "1"
        assert await _history(sale.client, booking_id) == ["BookingRequested"]
        settled: dict[str, Any] = await sale.settled(booking_id)
        assert settled["status"] == "HELD"  # the refused confirm left no mark
    finally:
        await sale.close()


async def test_the_customers_own_client_cannot_undo_another_clients_booking_for_it(
    gateway: Gateway,
) -> None:
    sale = await Shop(gateway).open(100, limit=2)
    try:
        taken = await sale.partner.post(
            "/api/v1/bookings",
            json={"customer_id": sale.customer_id, "event_id": sale.event_id, "ticket_count": 2},
        )
        stolen = taken.json()["id"]
        assert (await sale.settled(stolen))["status"] == "CONFIRMED"
        undo = await sale.client.post(f"/api/v1/bookings/{stolen}/cancel")
        # Pinned: ownership is by client; the customer's client gets 403.
        assert undo.status_code == 403
    finally:
        await sale.close()
