"""How the load generator talks to the gateway: a setup client, a lean one for fixed-rate load,
and the sale every scenario books into."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import httpx

from tests.e2e.devprocess import DevProcess
from ticketing.shared.http.client import new_session


async def api(dev: DevProcess, connections: int = 100) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=dev.gateway,
        headers={"Authorization": f"Bearer {await dev.token()}"},
        timeout=60,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


class LeanClient:
    """A fixed-rate load generator's HTTP client: an aiohttp session (the services' own client
    stack), not httpx, whose own CPU use at a few hundred requests per second took a third of a
    core from the system under test on this two-core machine."""

    def __init__(self, base_url: str, authorization: str, connections: int) -> None:
        self._base_url = base_url.rstrip("/")
        self._session = new_session(timeout=60, max_connections=connections)
        self._headers = {"authorization": authorization, "content-type": "application/json"}

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        async with self._session.post(
            self._base_url + path, data=body, headers=self._headers
        ) as response:
            return response.status, await response.read()

    async def get(self, path: str, params: dict[str, str] | None = None) -> tuple[int, bytes]:
        async with self._session.get(
            self._base_url + path, params=params, headers=self._headers
        ) as response:
            return response.status, await response.read()

    async def aclose(self) -> None:
        await self._session.close()


async def sale(client: httpx.AsyncClient, capacity: int) -> tuple[str, str]:
    venue = await client.post(
        "/api/v1/venues",
        json={"name": "Bench", "address": "1 Fast Ln", "total_capacity": 1_000_000},
    )
    event = await client.post(
        "/api/v1/events",
        json={
            "name": "Bench",
            "venue_id": venue.json()["id"],
            "total_capacity": capacity,
            "ticket_price": "10.00",
        },
    )
    customer = await client.post(
        "/api/v1/customers", json={"name": "B", "email": f"b.{uuid.uuid4().hex}@example.com"}
    )
    return customer.json()["id"], event.json()["id"]


async def at_fixed_rate(
    rate: float, seconds: float, one: Callable[[int], Coroutine[Any, Any, None]], lean: LeanClient
) -> None:
    """Start ``one(index)`` ``rate`` times a second for ``seconds``, each on the tick of its
    index whatever the earlier ones take, wait for them all, then close ``lean``."""
    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    try:
        for index in range(int(rate * seconds)):
            tasks.append(asyncio.create_task(one(index)))
            await asyncio.sleep(max(0.0, started + (index + 1) / rate - time.perf_counter()))
        await asyncio.gather(*tasks)
    finally:
        await lean.aclose()
