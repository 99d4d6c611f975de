"""Inventory's public API against the real database: happy paths, pagination, bad input."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.helpers import create_event, create_venue
from ticketing.inventory.tables import events, venues

PROBLEM = "application/problem+json"


async def row_counts(engine: AsyncEngine) -> tuple[int, int]:
    async with engine.connect() as conn:
        venue_count = await conn.scalar(select(func.count()).select_from(venues))
        event_count = await conn.scalar(select(func.count()).select_from(events))
    return int(venue_count or 0), int(event_count or 0)


async def test_venue_and_event_round_trip(inventory: httpx.AsyncClient) -> None:
    venue = await create_venue(inventory, capacity=300)
    fetched = await inventory.get(f"/api/v1/venues/{venue['id']}")
    assert fetched.json() == venue
    assert uuid.UUID(venue["id"]).version == 7

    created = await inventory.post(
        "/api/v1/events",
        json={
            "name": "Opening night",
            "venue_id": venue["id"],
            "total_capacity": 300,
            "ticket_price": "49.5",
            "starts_at": "2027-03-01T19:30:00+01:00",
        },
    )
    assert created.status_code == 201, created.text
    event = created.json()
    assert created.headers["location"] == f"/api/v1/events/{event['id']}"
    assert event["venue"] == venue
    assert event["left_capacity"] == event["total_capacity"] == 300
    assert event["ticket_price"] == "49.50"
    assert event["starts_at"] == "2027-03-01T18:30:00Z"
    assert (await inventory.get(f"/api/v1/events/{event['id']}")).json() == event


async def test_events_are_listed_in_pages_without_gaps_or_repeats(
    inventory: httpx.AsyncClient,
) -> None:
    created = {(await create_event(inventory, capacity=10))["id"] for _ in range(5)}
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(1000):
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await inventory.get("/api/v1/events", params=params)).json()
        assert len(page["items"]) <= 2
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert created <= set(seen)


async def test_unknown_ids_are_404_problems(inventory: httpx.AsyncClient) -> None:
    for path in (f"/api/v1/venues/{uuid.uuid4()}", f"/api/v1/events/{uuid.uuid4()}"):
        response = await inventory.get(path)
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM
        body = response.json()
        assert body["status"] == 404
        assert body["instance"] == path
        assert "does not exist" in body["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"address": "x", "total_capacity": 10}, "name"),
        ({"name": "x", "address": "x", "total_capacity": 0}, "total_capacity"),
        ({"name": "x", "address": "x", "total_capacity": -5}, "total_capacity"),
        ({"name": "x", "address": "x", "total_capacity": "ten"}, "total_capacity"),
        ({"name": "x" * 201, "address": "x", "total_capacity": 10}, "name"),
        ({"name": "", "address": "x", "total_capacity": 10}, "name"),
        ({"name": "x", "address": "x", "total_capacity": 10, "extra": 1}, "extra"),
    ],
)
async def test_bad_venues_are_400_and_write_nothing(
    inventory: httpx.AsyncClient, inventory_db: AsyncEngine, body: dict[str, Any], field: str
) -> None:
    before = await row_counts(inventory_db)
    response = await inventory.post("/api/v1/venues", json=body)
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert field in response.json()["detail"]
    assert await row_counts(inventory_db) == before


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"ticket_price": "abc"}, 400, "ticket_price"),
        ({"ticket_price": 49.0}, 400, "ticket_price"),
        ({"ticket_price": "-1.00"}, 400, "ticket_price"),
        ({"ticket_price": "1.005"}, 400, "ticket_price"),
        ({"total_capacity": 0}, 400, "total_capacity"),
        ({"total_capacity": 101}, 400, "total_capacity"),
        ({"venue_id": "not-a-uuid"}, 400, "venue_id"),
        ({"venue_id": str(uuid.UUID(int=1))}, 404, "venue"),
        ({"starts_at": "2027-01-01T20:00:00"}, 400, "starts_at"),
        ({"name": "y" * 1000}, 400, "name"),
    ],
)
async def test_bad_events_are_rejected_and_write_nothing(
    inventory: httpx.AsyncClient,
    inventory_db: AsyncEngine,
    change: dict[str, Any],
    status: int,
    field: str,
) -> None:
    venue = await create_venue(inventory, capacity=100)
    body = {"name": "x", "venue_id": venue["id"], "total_capacity": 100, "ticket_price": "10.00"}
    before = await row_counts(inventory_db)
    response = await inventory.post("/api/v1/events", json={**body, **change})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert field in response.json()["detail"]
    assert await row_counts(inventory_db) == before


async def test_malformed_requests_are_clear_4xx(inventory: httpx.AsyncClient) -> None:
    malformed = await inventory.post(
        "/api/v1/venues", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.headers["content-type"] == PROBLEM
    bad_id = await inventory.get("/api/v1/venues/not-a-uuid")
    assert bad_id.status_code == 404
    assert bad_id.headers["content-type"] == PROBLEM
    oversized = await inventory.post(
        "/api/v1/venues", content=b"x" * (1024 * 1024), headers={"content-type": "application/json"}
    )
    assert oversized.status_code == 413
    bad_page = await inventory.get("/api/v1/events", params={"limit": 0})
    assert bad_page.status_code == 400
    assert "limit" in bad_page.json()["detail"]
    bad_cursor = await inventory.get("/api/v1/events", params={"cursor": "@@@"})
    assert bad_cursor.status_code == 400
    assert "cursor" in bad_cursor.json()["detail"]


async def test_health_metrics_and_correlation_id(inventory: httpx.AsyncClient) -> None:
    assert (await inventory.get("/health/live")).json() == {"status": "ok"}
    ready = await inventory.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok"}

    echoed = await inventory.get("/health/live", headers={"X-Request-ID": "trace-123"})
    assert echoed.headers["x-request-id"] == "trace-123"
    assert len((await inventory.get("/health/live")).headers["x-request-id"]) == 32

    await inventory.get(f"/api/v1/events/{uuid.uuid4()}")
    metrics = (await inventory.get("/metrics")).text
    assert 'route="/api/v1/events/{event_id}"' in metrics
    assert 'status="404"' in metrics
    assert "http_request_duration_seconds_bucket" in metrics


async def test_openapi_documents_the_public_paths(inventory: httpx.AsyncClient) -> None:
    spec = (await inventory.get("/schema/openapi.json")).json()
    assert {"/api/v1/venues", "/api/v1/events", "/api/v1/events/{event_id}"} <= set(spec["paths"])
    assert "/health/live" not in spec["paths"]
