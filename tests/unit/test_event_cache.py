import uuid
from typing import Any, cast

import httpx
import msgspec

from ticketing.booking.inventory_client import InventoryClient
from ticketing.contracts.inventory import Event, Venue
from ticketing.shared.upstream import Upstream

EVENT = Event(
    id=uuid.uuid4(),
    name="E",
    venue=Venue(id=uuid.uuid4(), name="V", address="A", total_capacity=10),
    total_capacity=10,
    left_capacity=10,
    ticket_price="1.00",
    starts_at=None,
)


class CountingUpstream:
    def __init__(self) -> None:
        self.calls = 0

    async def request(self, method: str, path: str, **_: Any) -> httpx.Response:
        self.calls += 1
        return httpx.Response(200, content=msgspec.json.encode(EVENT))


async def test_event_reads_are_kept_for_the_cache_period() -> None:
    upstream = CountingUpstream()
    now = [0.0]
    client = InventoryClient(cast(Upstream, upstream), cache_seconds=1.0, clock=lambda: now[0])
    assert await client.get_event(EVENT.id) == EVENT
    await client.get_event(EVENT.id)
    assert upstream.calls == 1
    now[0] = 1.01
    await client.get_event(EVENT.id)
    assert upstream.calls == 2


async def test_no_cache_by_default() -> None:
    upstream = CountingUpstream()
    client = InventoryClient(cast(Upstream, upstream))
    await client.get_event(EVENT.id)
    await client.get_event(EVENT.id)
    assert upstream.calls == 2
