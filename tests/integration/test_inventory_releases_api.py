"""Limits per customer and releases through the real inventory app: the internal release path,
who may call it, and the event's history of every reserve, refusal and release."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.harness.serving import bearer
from tests.integration.helpers import create_venue

PROBLEM = "application/problem+json"


async def limited_event(inventory: httpx.AsyncClient, capacity: int, limit: int) -> dict[str, Any]:
    venue = await create_venue(inventory, capacity)
    response = await inventory.post(
        "/api/v1/events",
        json={
            "name": "Flash sale",
            "venue_id": venue["id"],
            "total_capacity": capacity,
            "ticket_price": "20.00",
            "max_tickets_per_customer": limit,
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def post(
    inventory: httpx.AsyncClient, token: str, path: str, items: list[dict[str, Any]]
) -> httpx.Response:
    return await inventory.post(path, json={"items": items}, headers=bearer(token))


async def test_an_event_with_a_limit_serves_it_and_a_bad_limit_is_400(
    inventory: httpx.AsyncClient,
) -> None:
    event = await limited_event(inventory, capacity=10, limit=4)
    assert event["max_tickets_per_customer"] == 4
    assert (await inventory.get(f"/api/v1/events/{event['id']}")).json() == event
    listed = (await inventory.get("/api/v1/events", params={"limit": 100})).json()["items"]
    assert all("max_tickets_per_customer" in e for e in listed)
    venue = await create_venue(inventory, 10)
    for bad in (0, -1, 1_000_001, "many"):
        response = await inventory.post(
            "/api/v1/events",
            json={
                "name": "Bad",
                "venue_id": venue["id"],
                "total_capacity": 10,
                "ticket_price": "1.00",
                "max_tickets_per_customer": bad,
            },
        )
        assert response.status_code == 400, (bad, response.text)
        assert response.headers["content-type"] == PROBLEM


async def test_releases_answer_in_request_order_and_history_shows_every_step(
    inventory: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    event = await limited_event(inventory, capacity=10, limit=3)
    event_id, customer = event["id"], str(uuid.uuid4())
    kept, over, released = (str(uuid.uuid4()) for _ in range(3))
    reserve = [
        {"event_id": event_id, "booking_id": kept, "ticket_count": 1, "customer_id": customer},
        {"event_id": event_id, "booking_id": released, "ticket_count": 2, "customer_id": customer},
        {"event_id": event_id, "booking_id": over, "ticket_count": 1, "customer_id": customer},
    ]
    reserved = await post(inventory, tokens["order"], "/internal/v1/reservations", reserve)
    assert reserved.status_code == 200, reserved.text
    assert [(r["outcome"], r["left_capacity"]) for r in reserved.json()["items"]] == [
        ("reserved", 9),
        ("reserved", 7),
        ("over_limit", 7),
    ]
    nowhere = str(uuid.uuid4())
    release = [
        {"event_id": event_id, "booking_id": released, "reason": "expired"},
        {"event_id": event_id, "booking_id": over, "reason": "cancelled"},
        {"event_id": event_id, "booking_id": nowhere, "reason": "cancelled"},
        {"event_id": event_id, "booking_id": released, "reason": "cancelled"},
    ]
    answered = await post(inventory, tokens["order"], "/internal/v1/releases", release)
    assert answered.status_code == 200, answered.text
    first = {"booking_id": released, "outcome": "released", "ticket_count": 2, "left_capacity": 9}
    assert answered.json() == {
        "items": [
            first,
            {
                "booking_id": over,
                "outcome": "not_reserved",
                "ticket_count": 0,
                "left_capacity": None,
            },
            {
                "booking_id": nowhere,
                "outcome": "not_reserved",
                "ticket_count": 0,
                "left_capacity": None,
            },
            first,
        ]
    }
    again = await post(inventory, tokens["order"], "/internal/v1/releases", release[:1])
    assert again.json() == {"items": [first]}
    assert (await inventory.get(f"/api/v1/events/{event_id}")).json()["left_capacity"] == 9

    history = await inventory.get(f"/api/v1/events/{event_id}/history", params={"limit": 100})
    steps = [(e["type"], e["data"]) for e in history.json()["items"]]
    assert [t for t, _ in steps] == [
        "EventScheduled",
        "SeatsReserved",
        "SeatsReserved",
        "ReservationRefused",
        "SeatsReleased",
    ]
    assert steps[0][1]["max_tickets_per_customer"] == 3
    assert steps[1][1]["customer_id"] == customer
    assert steps[3][1] == {
        "event_id": event_id,
        "booking_id": over,
        "ticket_count": 1,
        "left_capacity": 7,
        "reason": "over_limit",
        "customer_id": customer,
    }
    assert steps[4][1] == {
        "event_id": event_id,
        "booking_id": released,
        "ticket_count": 2,
        "left_capacity": 9,
        "reason": "expired",
    }


async def test_only_the_order_saga_may_release_and_a_malformed_batch_is_400(
    inventory: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    event = await limited_event(inventory, capacity=5, limit=5)
    booking = str(uuid.uuid4())
    item = {"event_id": event["id"], "booking_id": booking, "ticket_count": 2}
    await post(inventory, tokens["order"], "/internal/v1/reservations", [item])
    release = {"event_id": event["id"], "booking_id": booking, "reason": "cancelled"}
    for who in ("admin", "client"):
        refused = await post(inventory, tokens[who], "/internal/v1/releases", [release])
        assert refused.status_code == 403, who
    for items in ([], [{**release, "reason": "refunded"}], [release] * 501, [{**release, "x": 1}]):
        response = await post(inventory, tokens["order"], "/internal/v1/releases", items)
        assert response.status_code == 400, items
        assert response.headers["content-type"] == PROBLEM
    assert (await inventory.get(f"/api/v1/events/{event['id']}")).json()["left_capacity"] == 3
    spec = (await inventory.get("/schema/openapi.json")).json()
    assert "ReleaseBatch" in str(spec["paths"]["/internal/v1/releases"]["post"])
