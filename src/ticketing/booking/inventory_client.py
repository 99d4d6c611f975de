"""Booking's view of inventory: read an event (price, tickets left) over REST."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import msgspec

from ticketing.contracts.inventory import Event
from ticketing.shared.errors import NotFound, Unavailable
from ticketing.shared.upstream import Upstream

MAX_CACHED_EVENTS = 10_000


class InventoryClient:
    """Reads events from inventory, keeping each answer for ``cache_seconds``.

    Booking reads an event for its price and for the advisory capacity check only (inventory's
    reservation decides), so an answer a moment old is good enough, and a hot event during a
    flash sale costs inventory one read per interval instead of one per request.
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

    async def get_event(
        self,
        event_id: uuid.UUID,
        *,
        correlation_id: str | None = None,
        authorization: str | None = None,
    ) -> Event:
        cached = self._cache.get(event_id)
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        event = await self._fetch(event_id, correlation_id, authorization)
        if self._cache_seconds > 0:
            if len(self._cache) > MAX_CACHED_EVENTS:
                self._cache.clear()
            self._cache[event_id] = (event, self._clock() + self._cache_seconds)
        return event

    async def _fetch(
        self, event_id: uuid.UUID, correlation_id: str | None, authorization: str | None
    ) -> Event:
        headers = {}
        if correlation_id:
            headers["X-Request-ID"] = correlation_id
        if authorization:
            headers["Authorization"] = authorization
        response = await self._upstream.request(
            "GET", f"/api/v1/events/{event_id}", headers=headers
        )
        if response.status_code == 404:
            raise NotFound(f"event {event_id} does not exist")
        if response.status_code != 200:
            raise Unavailable(f"inventory answered {response.status_code} for event {event_id}")
        return msgspec.json.decode(response.content, type=Event)
