"""The booking lifecycle end to end through the gateway: a hold, its confirmation, a cancel that
gives the seats back, a hold that expires, a cancel while PENDING, who may change a booking, the
limit per customer, and refused requests that change nothing and answer 4xx, never 5xx; every
service real (MariaDB, the Kafka-protocol broker, the OIDC server, HTTP over loopback). The test
stack holds seats 4 s."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx

from tests.harness.serving import Gateway
from tests.integration.shop import Shop, shop

PROBLEM = "application/problem+json"


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
