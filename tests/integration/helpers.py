from __future__ import annotations

from typing import Any

import httpx


async def create_venue(client: httpx.AsyncClient, capacity: int = 1000) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/venues", json={"name": "Arena", "address": "1 Main St", "total_capacity": capacity}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def create_event(
    client: httpx.AsyncClient, capacity: int, price: str = "49.00"
) -> dict[str, Any]:
    venue = await create_venue(client, capacity)
    response = await client.post(
        "/api/v1/events",
        json={
            "name": "Concert",
            "venue_id": venue["id"],
            "total_capacity": capacity,
            "ticket_price": price,
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
