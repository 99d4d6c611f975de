import asyncio
import uuid
from typing import Any, cast

import httpx
import msgspec

from ticketing.booking.inventory_client import InventoryClient
from ticketing.contracts.inventory import Event, Venue
from ticketing.shared.errors import NotFound
from ticketing.shared.http.upstream import Upstream

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


class SlowUpstream(CountingUpstream):
    def __init__(self, answer: int = 200) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.answer = answer

    async def request(self, method: str, path: str, **_: Any) -> httpx.Response:
        self.calls += 1
        await self.release.wait()
        if self.answer != 200:
            return httpx.Response(self.answer)
        return httpx.Response(200, content=msgspec.json.encode(EVENT))


async def test_requests_during_a_read_wait_for_it_instead_of_reading_again() -> None:
    upstream = SlowUpstream()
    client = InventoryClient(cast(Upstream, upstream), cache_seconds=1.0)
    readers = [asyncio.create_task(client.get_event(EVENT.id)) for _ in range(50)]
    await asyncio.sleep(0.01)
    readers[0].cancel()  # a caller that goes away does not take the read with it
    upstream.release.set()
    results = await asyncio.gather(*readers[1:])
    assert results == [EVENT] * 49
    assert upstream.calls == 1


async def test_a_failed_read_fails_its_waiters_and_is_not_kept() -> None:
    upstream = SlowUpstream(answer=404)
    client = InventoryClient(cast(Upstream, upstream), cache_seconds=1.0)
    readers = [asyncio.create_task(client.get_event(EVENT.id)) for _ in range(3)]
    await asyncio.sleep(0.01)
    upstream.release.set()
    outcomes = await asyncio.gather(*readers, return_exceptions=True)
    assert all(isinstance(outcome, NotFound) for outcome in outcomes)
    upstream.answer = 200
    assert await client.get_event(EVENT.id) == EVENT
    assert upstream.calls == 2
