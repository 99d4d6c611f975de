"""A race for one Idempotency-Key: the same keyed request sent twice through booking, each held at
inventory until the test opens its gate, and the first made to look abandoned."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx

from tests.harness.serving import Stack
from ticketing.booking.inventory_client import InventoryClient
from ticketing.booking.tables import idempotency_keys
from ticketing.contracts.inventory import Event
from ticketing.shared.clock import utcnow
from ticketing.shared.http.upstream import Upstream

ABANDONED_AFTER = timedelta(seconds=30)


class GatedInventory(InventoryClient):
    """Holds every read of an event until the test opens its gate: the request has claimed its
    key by then and waits, as a request stuck on a slow dependency or a busy pool does."""

    def __init__(self, upstream: Upstream) -> None:
        super().__init__(upstream)
        self.arrived: asyncio.Queue[asyncio.Event] = asyncio.Queue()
        self.gates: list[asyncio.Event] = []

    def open_all(self) -> None:
        """Let every request go (a failed test must not leave one waiting at shutdown)."""
        for gate in self.gates:
            gate.set()

    async def get_event(
        self,
        event_id: uuid.UUID,
        *,
        correlation_id: str | None = None,
    ) -> Event:
        gate = asyncio.Event()
        self.gates.append(gate)
        await self.arrived.put(gate)
        await gate.wait()
        return await super().get_event(event_id, correlation_id=correlation_id)


class Race:
    """The same keyed request sent twice; each waits at inventory until its gate opens."""

    def __init__(self, booking: httpx.AsyncClient, inventory: GatedInventory, event_id: str):
        self.booking = booking
        self.inventory = inventory
        self.key = f"race-{uuid.uuid4()}"
        self.event_id = event_id

    async def send(self, customer_id: str) -> httpx.Response:
        body = {"customer_id": customer_id, "event_id": self.event_id, "ticket_count": 1}
        headers = {"Idempotency-Key": self.key}
        return await self.booking.post("/api/v1/bookings", json=body, headers=headers)

    async def start(self, customer_id: str) -> tuple[asyncio.Task[httpx.Response], asyncio.Event]:
        task = asyncio.create_task(self.send(customer_id))
        return task, await self.inventory.arrived.get()  # it holds the key now

    async def abandon(self, stack: Stack) -> None:
        """Make the request holding the key look in flight for longer than the service waits
        before a retry may take the key over."""
        async with stack.engines["booking"].begin() as conn:
            await conn.execute(
                idempotency_keys.update()
                .where(idempotency_keys.c.idem_key == self.key)
                .values(created_at=utcnow() - 2 * ABANDONED_AFTER)
            )
