"""Booking's view of inventory: read an event (price, tickets left) over REST."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import msgspec

from ticketing.contracts.inventory import Event
from ticketing.shared.errors import NotFound, Unavailable
from ticketing.shared.http.upstream import Upstream

MAX_CACHED_EVENTS = 10_000


class InventoryClient:
    """Reads events from inventory, keeping each answer for ``cache_seconds``.

    Booking reads an event for its price and for the advisory capacity check only (inventory's
    reservation decides), so an answer a moment old is good enough, and a hot event during a
    flash sale costs inventory one read per interval instead of one per request. When an entry
    runs out, the requests that arrive while it is being read again wait for that one read
    rather than each sending its own.
    Because a read is shared, it carries booking's own token (the upstream's credentials), never a
    caller's: one caller's bad token must not become the failure of the callers sharing its read.
    """

    def __init__(
        self,
        upstream: Upstream,
        *,
        cache_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._upstream = upstream
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[uuid.UUID, tuple[Event, float]] = {}
        self._reading: dict[uuid.UUID, asyncio.Future[Event]] = {}

    async def get_event(
        self,
        event_id: uuid.UUID,
        *,
        correlation_id: str | None = None,
    ) -> Event:
        if self._cache_seconds <= 0:
            return await self._fetch(event_id, correlation_id)
        cached = self._cache.get(event_id)
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        reading = self._reading.get(event_id)
        if reading is None:
            reading = asyncio.ensure_future(self._read(event_id, correlation_id))
            self._reading[event_id] = reading
            reading.add_done_callback(lambda done: self._read_done(event_id, done))
        # Shielded: a caller that goes away does not cancel the read the others wait for.
        return await asyncio.shield(reading)

    async def _read(self, event_id: uuid.UUID, correlation_id: str | None) -> Event:
        event = await self._fetch(event_id, correlation_id)
        if len(self._cache) > MAX_CACHED_EVENTS:
            self._cache.clear()
        self._cache[event_id] = (event, self._clock() + self._cache_seconds)
        return event

    def _read_done(self, event_id: uuid.UUID, done: asyncio.Future[Event]) -> None:
        if self._reading.get(event_id) is done:
            del self._reading[event_id]
        if not done.cancelled():
            done.exception()  # retrieved here too, in case every caller went away

    async def _fetch(self, event_id: uuid.UUID, correlation_id: str | None) -> Event:
        headers = {}
        if correlation_id:
            headers["X-Request-ID"] = correlation_id
        response = await self._upstream.request(
            "GET", f"/api/v1/events/{event_id}", headers=headers
        )
        if response.status_code == 404:
            raise NotFound(f"event {event_id} does not exist")
        if response.status_code != 200:
            raise Unavailable(f"inventory answered {response.status_code} for event {event_id}")
        return msgspec.json.decode(response.content, type=Event)
