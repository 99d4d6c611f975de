"""A fault scenario's run: steady booking load and the mixed load through every gateway replica,
with faults beside them, then the consistency check."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import httpx

from tests.e2e.careful import Load
from tests.e2e.consistency import check_consistency
from tests.e2e.devprocess import DevProcess
from tests.e2e.load import HOLD_SECONDS, MIX, prepare_sale, steady_load

RATE = 20.0  # plain bookings a second
MIXED_RATE = 8.0  # bookings a second walked through their lifecycle
SCENARIO_ENV = {
    "TICKETING_IDEMPOTENCY_INFLIGHT_SECONDS": "3",
    "TICKETING_HOLD_SECONDS": str(HOLD_SECONDS),
}


@contextlib.asynccontextmanager
async def gateway_clients(
    dev: DevProcess, client: str = "ticketing-admin", connections: int = 100
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One client per gateway replica, with ``client``'s token."""
    token = await dev.token(client, f"{client}-secret")
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=url,
                    headers=headers,
                    limits=limits,
                    timeout=httpx.Timeout(10, pool=None),
                )
            )
            for url in dev.urls("gateway")
        ]


async def under_load(
    dev: DevProcess,
    seconds: float,
    *faults: Coroutine[Any, Any, None],
    capacity: int | None = None,
    events_count: int = 2,
    before_check: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, int]:
    """Steady booking load and the mixed load (as another client, ``ticketing-client``, which
    confirms and cancels its own bookings) with ``faults`` running beside them, then the
    consistency check.

    Without a ``capacity``, every event has seats for every request the loads could send it (up
    to three tickets each), so a fault must never show as a rejection.
    """
    if capacity is None:
        capacity = math.ceil((RATE + MIXED_RATE) * seconds * 3 / events_count) + 10
    load = Load()
    async with gateway_clients(dev) as apis, gateway_clients(dev, "ticketing-client") as own:
        sale = await prepare_sale(apis[0], events_count=events_count, capacity=capacity)
        await asyncio.gather(
            steady_load(apis, sale, rate=RATE, seconds=seconds, load=load),
            steady_load(own, sale, rate=MIXED_RATE, seconds=seconds, load=load, mixed=True),
            *faults,
        )
    await dev.wait_healthy()
    if before_check is not None:
        await before_check()
    return await check_consistency(dev, load, sale)


def lifecycle_exercised(summary: dict[str, int]) -> None:
    """Every plan of the mixed load ended as meant at least once: holds confirmed, left to
    expire, and cancellations of HELD, CONFIRMED and PENDING bookings."""
    missing = [kind for kind, _, _ in MIX if not summary.get(kind)]
    assert not missing, f"no booking of these plans ended as meant: {missing}; {summary}"
